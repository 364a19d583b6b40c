/*
 * ordo - the flat-object fast path of the door (see json_flat.h).
 */
#include "json_flat.h"

/* Any integer of at most 18 decimal digits fits in int64; longer ones go
 * to jansson, which knows where int64 ends. */
#define FLAT_MAX_DIGITS 18

/* JSON's whitespace, exactly: jansson accepts these four and no other. */
static const char *skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

int ordo_json_blank(const char *buf, size_t len) {
        return skip_ws(buf, buf + len) == buf + len;
}

/* p at an opening quote: a string of printable ASCII without escapes.
 * Returns the byte after the closing quote, or NULL. */
static const char *plain_string(const char *p, const char *end, const char **s,
                                size_t *n) {
        const char *q = p + 1;

        for (; q < end; q++) {
                unsigned char c = (unsigned char)*q;
                if (c == '"') {
                        *s = p + 1;
                        *n = (size_t)(q - p - 1);
                        return q + 1;
                }
                if (c < 0x20 || c >= 0x7F || c == '\\')
                        return NULL;
        }
        return NULL;
}

/* An integer as JSON writes it (-?(0|[1-9][0-9]*)), short enough that it
 * cannot overflow, and not the start of a real. Returns the byte after
 * it, or NULL. */
static const char *plain_integer(const char *p, const char *end,
                                 json_int_t *out) {
        json_int_t v = 0;
        int neg = 0, digits = 0;

        if (p < end && *p == '-') {
                neg = 1;
                p++;
        }
        if (p >= end || *p < '0' || *p > '9')
                return NULL;
        if (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9')
                return NULL;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
                if (++digits > FLAT_MAX_DIGITS)
                        return NULL;
                v = v * 10 + (*p - '0');
        }
        if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
                return NULL;
        *out = neg ? -v : v;
        return p;
}

/* One "key": value pair into obj; p at the key's quote. Returns the byte
 * after the value, or NULL (obj may then hold the pairs before it). */
static const char *pair(json_t *obj, const char *p, const char *end) {
        const char *key, *s;
        size_t klen, slen;
        json_int_t i;
        json_t *v;

        if (p >= end || *p != '"' || !(p = plain_string(p, end, &key, &klen)))
                return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':')
                return NULL;
        p = skip_ws(p + 1, end);
        if (p < end && *p == '"') {
                if (!(p = plain_string(p, end, &s, &slen)))
                        return NULL;
                v = json_stringn_nocheck(s, slen);
        } else {
                if (!(p = plain_integer(p, end, &i)))
                        return NULL;
                v = json_integer(i);
        }
        /* a duplicate is jansson's to refuse, in its words */
        if (!v || json_object_getn(obj, key, klen)) {
                json_decref(v);
                return NULL;
        }
        /* takes v, also when it fails */
        if (json_object_setn_new_nocheck(obj, key, klen, v))
                return NULL;
        return p;
}

json_t *ordo_json_flat_parse(const char *buf, size_t len) {
        const char *p, *end = buf + len;
        json_t *obj;

        p = skip_ws(buf, end);
        if (p >= end || *p != '{' || !(obj = json_object()))
                return NULL;
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
                p++;
        } else {
                for (;;) {
                        if (!(p = pair(obj, p, end)))
                                goto not_mine;
                        p = skip_ws(p, end);
                        if (p < end && *p == ',') {
                                p = skip_ws(p + 1, end);
                                continue;
                        }
                        if (p < end && *p == '}') {
                                p++;
                                break;
                        }
                        goto not_mine;
                }
        }
        if (skip_ws(p, end) == end)
                return obj;
not_mine:
        json_decref(obj);
        return NULL;
}
