/*
 * ordo - Avro single-object codec, hand-written and driven by the field
 * table of messages.h (docs/decisions/0001-avro-single-object.md).
 *
 * Our records are flat: strings, longs, booleans and one array of longs.
 * Their Avro binary encoding is zigzag varints, length-prefixed bytes, one
 * byte per boolean and arrays in counted blocks, so walking
 * ordo_msg_fields() reads and writes the standard encoding directly into
 * ordo_msg_t, with no allocation and no intermediate value tree. avro-c's
 * generic API does the same job with an allocation per decoded string;
 * the tests use it as an independent check of this file.
 *
 * Decoding faces whatever is on a topic: every length is checked against
 * the input and the field before anything is copied.
 */
#include "codec.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemas_int.h"

#define FP_SLOTS 64 /* a power of two, more than twice the schemas */

/* A writer schema the codec reads: its type and its field table. */
typedef struct writer_schema_s {
        uint64_t fp;
        ordo_msg_type_t type; /* ORDO_MSG_NONE: an empty slot */
        const ordo_field_t *fields;
        size_t n;
} writer_schema_t;

struct ordo_codec_s {
        /* fingerprint -> schema, open addressing on the low bits: the
         * fingerprints are CRCs, so their low bits are already well mixed.
         * The current schema of every type, then the previous versions
         * (schemas/previous/, decision 0024). */
        writer_schema_t by_fp[FP_SLOTS];
        /* the schema each type is written with: its current one, or a
         * previous version (ordo_codec_write_previous) */
        const writer_schema_t *write[ORDO_MSG__COUNT];
};

typedef struct reader_s {
        const uint8_t *p;
        const uint8_t *end;
        const char *why; /* the reason, on failure */
} reader_t;

typedef struct writer_s {
        uint8_t *p;
        uint8_t *end;
        const char *why;
} writer_t;

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...) {
        va_list ap;
        if (!errstr || !errstr_size)
                return;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

uint64_t ordo__crc64_avro(const void *buf, size_t len) {
        const uint64_t empty = UINT64_C(0xc15d213aa4d7a795);
        const uint8_t *b = buf;
        uint64_t fp = empty;
        size_t i;
        int k;
        /* Bit at a time: the byte table of the specification gives the
         * same result; this is only used by tools and tests. */
        for (i = 0; i < len; i++) {
                fp ^= b[i];
                for (k = 0; k < 8; k++)
                        fp = (fp >> 1) ^ (empty & (0 - (fp & 1)));
        }
        return fp;
}

static int valid_type(ordo_msg_type_t t) {
        return t > ORDO_MSG_NONE && t < ORDO_MSG__COUNT;
}

const char *ordo_schema_json(ordo_msg_type_t t) {
        return valid_type(t) ? ordo__schemas[t].json : NULL;
}

uint64_t ordo_schema_fingerprint(ordo_msg_type_t t) {
        return valid_type(t) ? ordo__schemas[t].fingerprint : 0;
}

const char *ordo__schema_pcf(ordo_msg_type_t t) {
        return valid_type(t) ? ordo__schemas[t].pcf : NULL;
}

/* Adds a writer schema; NULL with errstr set when its fingerprint is
 * taken (two schemas with one fingerprint could not be told apart). */
static const writer_schema_t *add_schema(ordo_codec_t *c, ordo_msg_type_t t,
                                         uint64_t fp,
                                         const ordo_field_t *fields, size_t n,
                                         char *errstr, size_t errstr_size) {
        size_t i = fp & (FP_SLOTS - 1), probes = 0;

        while (c->by_fp[i].type != ORDO_MSG_NONE) {
                if (c->by_fp[i].fp == fp) {
                        set_err(errstr, errstr_size,
                                "codec: %s and %s share fingerprint "
                                "%016" PRIx64,
                                ordo_msg_type_name(c->by_fp[i].type),
                                ordo_msg_type_name(t), fp);
                        return NULL;
                }
                if (++probes == FP_SLOTS) {
                        set_err(errstr, errstr_size,
                                "codec: more than %d schemas", FP_SLOTS);
                        return NULL;
                }
                i = (i + 1) & (FP_SLOTS - 1);
        }
        c->by_fp[i] = (writer_schema_t){ fp, t, fields, n };
        return &c->by_fp[i];
}

ordo_codec_t *ordo_codec_new(char *errstr, size_t errstr_size) {
        ordo_codec_t *c = calloc(1, sizeof(*c));
        const ordo__previous_schema_t *p;
        const ordo_field_t *fields;
        size_t n;
        int t;
        if (!c) {
                set_err(errstr, errstr_size, "codec: out of memory");
                return NULL;
        }
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                if (!ordo__schemas[t].json) {
                        /* a type added to messages.h without its .avsc */
                        set_err(errstr, errstr_size,
                                "codec: no schema for type %s",
                                ordo_msg_type_name((ordo_msg_type_t)t));
                        goto fail;
                }
                fields = ordo_msg_fields((ordo_msg_type_t)t, &n);
                if (!(c->write[t] = add_schema(c, (ordo_msg_type_t)t,
                                               ordo__schemas[t].fingerprint,
                                               fields, n, errstr, errstr_size)))
                        goto fail;
        }
        for (p = ordo__previous_schemas; p->type != ORDO_MSG_NONE; p++) {
                fields = ordo_msg_previous_fields(p->type, p->version, &n);
                if (!fields) {
                        /* a schemas/previous/ file without its table */
                        set_err(errstr, errstr_size,
                                "codec: no field table for %s version %d",
                                ordo_msg_type_name(p->type), p->version);
                        goto fail;
                }
                if (!add_schema(c, p->type, p->schema.fingerprint, fields, n,
                                errstr, errstr_size))
                        goto fail;
        }
        return c;
fail:
        free(c);
        return NULL;
}

void ordo_codec_destroy(ordo_codec_t *c) {
        free(c);
}

static const writer_schema_t *lookup(const ordo_codec_t *c, uint64_t fp) {
        size_t i = fp & (FP_SLOTS - 1), probes;
        for (probes = 0; probes < FP_SLOTS && c->by_fp[i].type != ORDO_MSG_NONE;
             probes++) {
                if (c->by_fp[i].fp == fp)
                        return &c->by_fp[i];
                i = (i + 1) & (FP_SLOTS - 1);
        }
        return NULL;
}

uint64_t ordo_codec_writer_fingerprint(const void *buf, size_t len) {
        const uint8_t *b = buf;
        uint64_t fp = 0;
        size_t i;
        if (len < ORDO_CODEC_HEADER_SIZE || b[0] != 0xc3 || b[1] != 0x01)
                return 0;
        for (i = 0; i < 8; i++)
                fp |= (uint64_t)b[2 + i] << (8 * i);
        return fp;
}

const ordo_field_t *ordo_codec_writer_fields(const ordo_codec_t *c, uint64_t fp,
                                             ordo_msg_type_t type, size_t *n) {
        const writer_schema_t *w = lookup(c, fp);
        if (!w || w->type != type) {
                *n = 0;
                return NULL;
        }
        *n = w->n;
        return w->fields;
}

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF) without a NUL byte. Avro strings are UTF-8 and MongoDB refuses
 * anything else, so a bad string stops here rather than in a projection;
 * a C string cannot carry a NUL, so one is refused rather than cut.
 * Identifiers are mostly ASCII: eight bytes are checked at a time. */
static int ascii8(const uint8_t *s) {
        uint64_t w;
        memcpy(&w, s, 8);
        /* no high bit and no zero byte */
        return !((w | ((w - ONES) & ~w)) & HIGHS);
}

static int text_valid(const uint8_t *s, size_t n) {
        size_t i = 0;
        for (;;) {
                uint8_t b;
                size_t k, more;
                uint32_t cp;
                while (n - i >= 8 && ascii8(s + i))
                        i += 8;
                /* an ASCII tail: check the last 8 bytes, overlapping */
                if (n - i < 8 && n >= 8 && ascii8(s + n - 8))
                        return 1;
                if (i == n)
                        return 1;
                b = s[i];
                if (b < 0x80) {
                        if (!b)
                                return 0;
                        i++;
                        continue;
                }
                if (b >= 0xc2 && b <= 0xdf) {
                        more = 1;
                        cp = b & 0x1f;
                } else if (b >= 0xe0 && b <= 0xef) {
                        more = 2;
                        cp = b & 0x0f;
                } else if (b >= 0xf0 && b <= 0xf4) {
                        more = 3;
                        cp = b & 0x07;
                } else {
                        return 0;
                }
                if (n - i <= more)
                        return 0;
                for (k = 1; k <= more; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return 0;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if ((more == 2 && cp < 0x800) ||
                    (more == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return 0;
                i += more + 1;
        }
}

/* Encoding */

static int put_long(writer_t *w, int64_t v) {
        /* zigzag without shifting a negative value */
        uint64_t u = ((uint64_t)v << 1) ^ (v < 0 ? UINT64_MAX : 0);
        uint8_t tmp[10], *p;
        size_t n = 0;
        /* straight into the buffer when 10 bytes are free: the usual case */
        p = (size_t)(w->end - w->p) >= sizeof(tmp) ? w->p : tmp;
        while (u >= 0x80) {
                p[n++] = (uint8_t)(u | 0x80);
                u >>= 7;
        }
        p[n++] = (uint8_t)u;
        if (p == tmp) {
                if (n > (size_t)(w->end - w->p)) {
                        w->why = "buffer too small";
                        return ORDO_ERR_OVERSIZE;
                }
                memcpy(w->p, tmp, n);
        }
        w->p += n;
        return ORDO_ERR_OK;
}

static int put_field(writer_t *w, const ordo_field_t *f, const char *base) {
        const char *s;
        const int64_t *a;
        size_t len;
        int32_t i, n;
        int err;

        switch (f->kind) {
        case ORDO_FIELD_STRING:
                s = base + f->offset;
                len = strnlen(s, f->size);
                if (len == f->size) {
                        w->why = "string is not NUL-terminated";
                        return ORDO_ERR_INVALID_ARG;
                }
                if (!text_valid((const uint8_t *)s, len)) {
                        w->why = "string is not valid UTF-8";
                        return ORDO_ERR_INVALID_ARG;
                }
                if ((err = put_long(w, (int64_t)len)))
                        return err;
                if (len > (size_t)(w->end - w->p)) {
                        w->why = "buffer too small";
                        return ORDO_ERR_OVERSIZE;
                }
                memcpy(w->p, s, len);
                w->p += len;
                return ORDO_ERR_OK;
        case ORDO_FIELD_LONG:
                return put_long(w, *(const int64_t *)(base + f->offset));
        case ORDO_FIELD_BOOL:
                if (w->p == w->end) {
                        w->why = "buffer too small";
                        return ORDO_ERR_OVERSIZE;
                }
                *w->p++ = *(const int32_t *)(base + f->offset) ? 1 : 0;
                return ORDO_ERR_OK;
        case ORDO_FIELD_LONGS:
                n = *(const int32_t *)(base + f->count_offset);
                a = (const int64_t *)(base + f->offset);
                if (n < 0 || n > ORDO_LEVELS_WIRE) {
                        w->why = "array count out of range";
                        return ORDO_ERR_INVALID_ARG;
                }
                /* one block of n items, then the empty block that ends
                 * the array (just the 0 when n is 0) */
                if (n > 0 && (err = put_long(w, n)))
                        return err;
                for (i = 0; i < n; i++)
                        if ((err = put_long(w, a[i])))
                                return err;
                return put_long(w, 0);
        }
        w->why = "unknown field kind";
        return ORDO_ERR_INVALID_ARG;
}

/* m, of ws's type, in the writer schema ws. */
static ordo_err_t encode_with(const writer_schema_t *ws, const ordo_msg_t *m,
                              void *buf, size_t size, size_t *len, char *errstr,
                              size_t errstr_size) {
        const ordo_field_t *fields = ws->fields;
        size_t n = ws->n, i;
        writer_t w;
        int err;

        if (size < ORDO_CODEC_HEADER_SIZE) {
                set_err(errstr, errstr_size,
                        "encode %s: buffer of %zu bytes is too small",
                        ordo_msg_type_name(m->type), size);
                return ORDO_ERR_OVERSIZE;
        }
        w.p = buf;
        w.end = w.p + size;
        w.why = NULL;
        w.p[0] = 0xc3;
        w.p[1] = 0x01;
        for (i = 0; i < 8; i++)
                w.p[2 + i] = (uint8_t)(ws->fp >> (8 * i));
        w.p += ORDO_CODEC_HEADER_SIZE;

        for (i = 0; i < n; i++) {
                if ((err = put_field(&w, &fields[i], (const char *)m))) {
                        set_err(errstr, errstr_size,
                                "encode %s.%s: %s (buffer of %zu bytes)",
                                ordo_msg_type_name(m->type), fields[i].name,
                                w.why, size);
                        return (ordo_err_t)err;
                }
        }
        *len = (size_t)(w.p - (uint8_t *)buf);
        return ORDO_ERR_OK;
}

static int known_type(const ordo_msg_t *m, char *errstr, size_t errstr_size) {
        if (valid_type(m->type))
                return 1;
        set_err(errstr, errstr_size, "encode: unknown type %d", (int)m->type);
        return 0;
}

ordo_err_t ordo_codec_encode(ordo_codec_t *c, const ordo_msg_t *m, void *buf,
                             size_t size, size_t *len, char *errstr,
                             size_t errstr_size) {
        if (!known_type(m, errstr, errstr_size))
                return ORDO_ERR_INVALID_ARG;
        return encode_with(c->write[m->type], m, buf, size, len, errstr,
                           errstr_size);
}

/* One "<Type>.v<N>" of a write_previous list: its type and version. */
static int parse_previous(const char *item, size_t len, ordo_msg_type_t *type,
                          int *version) {
        char name[64];
        const char *v = NULL;
        size_t i;
        long n = 0;

        for (i = 0; i + 1 < len; i++)
                if (item[i] == '.' && item[i + 1] == 'v')
                        v = item + i;
        if (!v || (size_t)(v - item) >= sizeof(name) || v + 2 == item + len)
                return 0;
        memcpy(name, item, (size_t)(v - item));
        name[v - item] = '\0';
        for (v += 2; v < item + len; v++) {
                if (*v < '0' || *v > '9' || n > 1000)
                        return 0;
                n = n * 10 + (*v - '0');
        }
        *type = ordo_msg_type_from_name(name);
        *version = (int)n;
        return *type != ORDO_MSG_NONE;
}

/* Each item of spec, its previous schema found (c NULL: only checked). */
static ordo_err_t previous_each(ordo_codec_t *c, const char *spec, char *errstr,
                                size_t errstr_size) {
        const char *p = spec ? spec : "";

        while (*p) {
                size_t len = strcspn(p, ",");
                const ordo__previous_schema_t *s;
                ordo_msg_type_t type = ORDO_MSG_NONE;
                int version = 0, found = 0;

                if (parse_previous(p, len, &type, &version))
                        for (s = ordo__previous_schemas;
                             s->type != ORDO_MSG_NONE && !found; s++)
                                if (s->type == type && s->version == version) {
                                        if (c)
                                                c->write[type] = lookup(
                                                    c, s->schema.fingerprint);
                                        found = 1;
                                }
                if (!found) {
                        set_err(errstr, errstr_size,
                                "schemas.write.previous: \"%.*s\" is not "
                                "<Type>.v<N> of a schema in schemas/previous/",
                                (int)(len > 80 ? 80 : len), p);
                        return ORDO_ERR_CONFIG_INVALID;
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        return ORDO_ERR_OK;
}

ordo_err_t ordo_codec_write_previous(ordo_codec_t *c, const char *spec,
                                     char *errstr, size_t errstr_size) {
        return previous_each(c, spec, errstr, errstr_size);
}

ordo_err_t ordo_codec_previous_check(const char *spec, char *errstr,
                                     size_t errstr_size) {
        return previous_each(NULL, spec, errstr, errstr_size);
}

ordo_err_t ordo_codec_encode_as(ordo_codec_t *c, const ordo_msg_t *m,
                                uint64_t fp, void *buf, size_t size,
                                size_t *len, char *errstr, size_t errstr_size) {
        const writer_schema_t *ws;

        if (!known_type(m, errstr, errstr_size))
                return ORDO_ERR_INVALID_ARG;
        if (!(ws = lookup(c, fp)) || ws->type != m->type) {
                set_err(errstr, errstr_size,
                        "encode %s: no schema of it has fingerprint "
                        "%016" PRIx64,
                        ordo_msg_type_name(m->type), fp);
                return ORDO_ERR_FINGERPRINT;
        }
        return encode_with(ws, m, buf, size, len, errstr, errstr_size);
}

/* Decoding */

/* un-zigzag without a signed overflow */
static int64_t unzigzag(uint64_t u) {
        return (int64_t)((u >> 1) ^ (0 - (u & 1)));
}

static int get_long(reader_t *r, int64_t *v) {
        uint64_t u = 0;
        int i;
        for (i = 0; i < 10; i++) {
                uint8_t b;
                if (r->p == r->end) {
                        r->why = "truncated";
                        return ORDO_ERR_BAD_ENCODING;
                }
                b = *r->p++;
                if (i == 9 && b > 1) {
                        r->why = "varint overflows 64 bits";
                        return ORDO_ERR_BAD_ENCODING;
                }
                u |= (uint64_t)(b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        *v = unzigzag(u);
                        return ORDO_ERR_OK;
                }
        }
        r->why = "varint longer than 10 bytes";
        return ORDO_ERR_BAD_ENCODING;
}

static int get_longs(reader_t *r, const ordo_field_t *f, char *base) {
        int64_t *a = (int64_t *)(base + f->offset);
        int64_t count, bytes, i;
        int32_t n = 0;
        int err;

        /* Blocks until an empty one; a negative count is followed by the
         * block's size in bytes (Avro spec, "Arrays"), which a reader that
         * decodes every item may ignore once it is known to be sane. */
        for (;;) {
                if ((err = get_long(r, &count)))
                        return err;
                if (count == 0)
                        break;
                if (count < 0) {
                        if (count < -ORDO_LEVELS_WIRE) {
                                r->why = "more than ORDO_LEVELS_WIRE items";
                                return ORDO_ERR_OVERSIZE;
                        }
                        count = -count;
                        if ((err = get_long(r, &bytes)))
                                return err;
                        if (bytes < 0 || bytes > r->end - r->p) {
                                r->why = "bad array block size";
                                return ORDO_ERR_BAD_ENCODING;
                        }
                }
                if (count > ORDO_LEVELS_WIRE - n) {
                        r->why = "more than ORDO_LEVELS_WIRE items";
                        return ORDO_ERR_OVERSIZE;
                }
                for (i = 0; i < count; i++)
                        if ((err = get_long(r, &a[n++])))
                                return err;
        }
        *(int32_t *)(base + f->count_offset) = n;
        return ORDO_ERR_OK;
}

static int get_field(reader_t *r, const ordo_field_t *f, char *base) {
        int64_t len;
        char *s;
        int err;

        switch (f->kind) {
        case ORDO_FIELD_STRING:
                if ((err = get_long(r, &len)))
                        return err;
                if (len < 0) {
                        r->why = "negative string length";
                        return ORDO_ERR_BAD_ENCODING;
                }
                if ((uint64_t)len >= f->size) {
                        r->why = "string longer than the field";
                        return ORDO_ERR_OVERSIZE;
                }
                if (len > r->end - r->p) {
                        r->why = "truncated";
                        return ORDO_ERR_BAD_ENCODING;
                }
                if (!text_valid(r->p, (size_t)len)) {
                        /* the slow path only on failure, to say which */
                        r->why = memchr(r->p, 0, (size_t)len)
                                     ? "string contains a NUL byte"
                                     : "string is not valid UTF-8";
                        return ORDO_ERR_BAD_ENCODING;
                }
                s = base + f->offset;
                memcpy(s, r->p, (size_t)len);
                s[len] = '\0';
                r->p += len;
                return ORDO_ERR_OK;
        case ORDO_FIELD_LONG:
                return get_long(r, (int64_t *)(base + f->offset));
        case ORDO_FIELD_BOOL:
                if (r->p == r->end) {
                        r->why = "truncated";
                        return ORDO_ERR_BAD_ENCODING;
                }
                if (*r->p > 1) {
                        r->why = "boolean is neither 0 nor 1";
                        return ORDO_ERR_BAD_ENCODING;
                }
                *(int32_t *)(base + f->offset) = *r->p++;
                return ORDO_ERR_OK;
        case ORDO_FIELD_LONGS:
                return get_longs(r, f, base);
        }
        r->why = "unknown field kind";
        return ORDO_ERR_BAD_ENCODING;
}

ordo_err_t ordo_codec_decode(ordo_codec_t *c, const void *buf, size_t len,
                             ordo_msg_t *out, char *errstr,
                             size_t errstr_size) {
        const uint8_t *b = buf;
        const writer_schema_t *ws;
        const ordo_field_t *fields;
        ordo_msg_type_t type;
        uint64_t fp;
        size_t n, i;
        reader_t r;
        int err;

        if (len < ORDO_CODEC_HEADER_SIZE) {
                set_err(errstr, errstr_size,
                        "decode: %zu bytes, shorter than the %d-byte "
                        "single-object header",
                        len, ORDO_CODEC_HEADER_SIZE);
                return ORDO_ERR_BAD_ENCODING;
        }
        if (b[0] != 0xc3 || b[1] != 0x01) {
                set_err(errstr, errstr_size,
                        "decode: marker %02x %02x, expected c3 01", b[0], b[1]);
                return ORDO_ERR_BAD_ENCODING;
        }
        fp = ordo_codec_writer_fingerprint(b, len);
        if (!(ws = lookup(c, fp))) {
                set_err(errstr, errstr_size,
                        "decode: unknown writer schema fingerprint "
                        "%016" PRIx64,
                        fp);
                return ORDO_ERR_FINGERPRINT;
        }
        type = ws->type;
        fields = ws->fields;
        n = ws->n;
        /* zero first: fields the type (or the writer's version of it)
         * does not carry read as empty, and two decodes of the same bytes
         * compare equal byte for byte */
        memset(out, 0, sizeof(*out));
        out->type = type;
        r.p = b + ORDO_CODEC_HEADER_SIZE;
        r.end = b + len;
        r.why = NULL;
        for (i = 0; i < n; i++) {
                const uint8_t *at = r.p;
                if ((err = get_field(&r, &fields[i], (char *)out))) {
                        set_err(errstr, errstr_size,
                                "decode %s.%s at byte %zu of %zu: %s",
                                ordo_msg_type_name(type), fields[i].name,
                                (size_t)(at - b), len, r.why);
                        return (ordo_err_t)err;
                }
        }
        if (r.p != r.end) {
                set_err(errstr, errstr_size,
                        "decode %s: %zu trailing bytes after the datum",
                        ordo_msg_type_name(type), (size_t)(r.end - r.p));
                return ORDO_ERR_BAD_ENCODING;
        }
        return ORDO_ERR_OK;
}
