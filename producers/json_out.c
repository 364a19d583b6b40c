/*
 * ordo - messages to JSON lines (see json_out.h).
 *
 * Written by hand rather than through a jansson tree: one pass, one
 * growing buffer, and a string that is not valid UTF-8 still gives valid
 * JSON (json_string() would refuse it and lose the whole line).
 */
#include "json_out.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf_s {
        char *p;
        size_t len;
        size_t cap;
        int oom;
} buf_t;

static int reserve(buf_t *b, size_t more) {
        size_t cap;
        char *p;

        if (b->oom)
                return -1;
        if (b->len + more + 1 <= b->cap)
                return 0;
        cap = b->cap ? b->cap : 256;
        while (cap < b->len + more + 1)
                cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
                b->oom = 1;
                return -1;
        }
        b->p = p;
        b->cap = cap;
        return 0;
}

static void put(buf_t *b, const char *s, size_t n) {
        if (reserve(b, n))
                return;
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s) {
        put(b, s, strlen(s));
}

size_t ordo__utf8_seq(const unsigned char *s, size_t n) {
        unsigned char c = s[0];
        size_t len, i;
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */

        if (n == 0)
                return 0;
        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                len = 2;
        else if (c >= 0xE0 && c <= 0xEF)
                len = 3;
        else if (c >= 0xF0 && c <= 0xF4)
                len = 4;
        else
                return 0;
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF
         * are invalid (RFC 3629): they narrow the second byte. */
        if (c == 0xE0)
                lo = 0xA0;
        else if (c == 0xED)
                hi = 0x9F;
        else if (c == 0xF0)
                lo = 0x90;
        else if (c == 0xF4)
                hi = 0x8F;
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (i = 2; i < len; i++)
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
        return len;
}

/* A JSON string of the first at most max bytes of s. */
static void put_string(buf_t *b, const char *s, size_t max) {
        const unsigned char *u = (const unsigned char *)s;
        size_t n = strnlen(s, max), i = 0, run = 0, seq;
        char esc[8];

        put(b, "\"", 1);
        while (i < n) {
                seq = ordo__utf8_seq(u + i, n - i);
                if (seq == 1 && u[i] >= 0x20 && u[i] != '"' && u[i] != '\\') {
                        i++;
                        run++;
                        continue;
                }
                if (seq > 1) {
                        i += seq;
                        run += seq;
                        continue;
                }
                /* Flush the plain run, then escape this byte. */
                put(b, (const char *)u + i - run, run);
                run = 0;
                if (seq == 0) {
                        puts_(b, "\\ufffd");
                } else if (u[i] == '"') {
                        puts_(b, "\\\"");
                } else if (u[i] == '\\') {
                        puts_(b, "\\\\");
                } else if (u[i] == '\n') {
                        puts_(b, "\\n");
                } else if (u[i] == '\t') {
                        puts_(b, "\\t");
                } else if (u[i] == '\r') {
                        puts_(b, "\\r");
                } else {
                        snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
                        puts_(b, esc);
                }
                i++;
        }
        put(b, (const char *)u + i - run, run);
        put(b, "\"", 1);
}

static void put_long(buf_t *b, int64_t v) {
        char num[24];
        int n = snprintf(num, sizeof(num), "%" PRId64, v);
        put(b, num, (size_t)n);
}

static void put_field(buf_t *b, const ordo_msg_t *m, const ordo_field_t *f) {
        const char *base = (const char *)m + f->offset;
        int64_t v;
        int32_t i, count;

        put(b, ",", 1);
        put_string(b, f->name, SIZE_MAX);
        put(b, ":", 1);
        switch (f->kind) {
        case ORDO_FIELD_STRING:
                put_string(b, base, f->size);
                break;
        case ORDO_FIELD_LONG:
                memcpy(&v, base, sizeof(v));
                put_long(b, v);
                break;
        case ORDO_FIELD_BOOL:
                memcpy(&i, base, sizeof(i));
                puts_(b, i ? "true" : "false");
                break;
        case ORDO_FIELD_LONGS:
                memcpy(&count, (const char *)m + f->count_offset,
                       sizeof(count));
                if (count < 0)
                        count = 0;
                if (count > ORDO_LEVELS_WIRE)
                        count = ORDO_LEVELS_WIRE;
                put(b, "[", 1);
                for (i = 0; i < count; i++) {
                        if (i)
                                put(b, ",", 1);
                        memcpy(&v, base + (size_t)i * sizeof(v), sizeof(v));
                        put_long(b, v);
                }
                put(b, "]", 1);
                break;
        }
}

static char *to_json(const ordo_msg_t *m, const ordo_field_t *fields, size_t n,
                     int keep_empty) {
        buf_t b = { NULL, 0, 0, 0 };
        size_t i;

        if (!fields)
                return NULL;
        puts_(&b, "{\"type\":");
        put_string(&b, ordo_msg_type_name(m->type), SIZE_MAX);
        for (i = 0; i < n; i++) {
                const ordo_field_t *f = &fields[i];
                /* An empty optional string means "none": leaving it out
                 * keeps the line valid input (an empty command_id is
                 * refused, an absent one is generated). */
                if (!keep_empty && f->kind == ORDO_FIELD_STRING &&
                    !f->required && ((const char *)m + f->offset)[0] == '\0')
                        continue;
                put_field(&b, m, f);
        }
        put(&b, "}", 1);
        if (b.oom) {
                free(b.p);
                return NULL;
        }
        return b.p;
}

char *ordo_msg_to_json(const ordo_msg_t *m) {
        size_t n;
        const ordo_field_t *f = ordo_msg_fields(m->type, &n);
        return to_json(m, f, n, 0);
}

char *ordo_msg_to_json_full(const ordo_msg_t *m, const ordo_field_t *fields,
                            size_t n) {
        if (!fields)
                fields = ordo_msg_fields(m->type, &n);
        return to_json(m, fields, n, 1);
}
