#include "codec_samples.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Byte lengths 1, 2, 3 and 4 of UTF-8. */
static const char *const glyphs[] = { "a", "\xc3\xa9", "\xe4\xb8\xad",
                                      "\xf0\x9f\x98\x80" };

static const int64_t edge_longs[] = {
        INT64_MIN,
        INT64_MAX,
        0,
        -1,
        1,
        63,
        64,
        -64,
        -65,
        8191,
        -8192,
        INT64_MIN + 1,
        INT64_MAX - 1,
        (int64_t)1 << 62,
        -((int64_t)1 << 62),
        1700000000000LL,
        900000,
};
#define N_EDGE (sizeof(edge_longs) / sizeof(edge_longs[0]))

/* xorshift64*: deterministic, seeded by the variant */
static uint64_t next(uint64_t *s) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * UINT64_C(2685821657736338717);
}

/* Exactly len bytes of valid UTF-8, mixing glyph widths. */
static void fill_string(char *dst, size_t len, uint64_t *s) {
        size_t at = 0;
        while (at < len) {
                const char *g = glyphs[next(s) % 4];
                size_t gl = strlen(g);
                if (gl > len - at)
                        g = "x", gl = 1;
                memcpy(dst + at, g, gl);
                at += gl;
        }
        dst[len] = '\0';
}

static int64_t random_long(uint64_t *s) {
        /* any bit width, so every varint length appears */
        unsigned bits = (unsigned)(next(s) % 64);
        uint64_t v = next(s) >> (63 - bits);
        return (int64_t)v;
}

void ordo_sample_fill(ordo_msg_t *m, ordo_msg_type_t type, unsigned variant) {
        uint64_t s = UINT64_C(0x9e3779b97f4a7c15) * (variant + 1) + type;
        int edge = variant < ORDO_SAMPLE_EDGES;
        const ordo_field_t *f;
        size_t n, i;
        int32_t k;

        ordo_msg_init(m, type);
        f = ordo_msg_fields(type, &n);
        for (i = 0; i < n; i++) {
                char *base = (char *)m;
                size_t len;
                int64_t *a;
                int32_t cnt;
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        len = !edge          ? next(&s) % f[i].size
                              : variant == 1 ? 0
                              : variant == 2 ? 1
                                             : f[i].size - 1;
                        fill_string(base + f[i].offset, len, &s);
                        break;
                case ORDO_FIELD_LONG:
                        *(int64_t *)(base + f[i].offset) =
                            edge ? edge_longs[(i + variant * 5) % N_EDGE]
                                 : random_long(&s);
                        break;
                case ORDO_FIELD_BOOL:
                        *(int32_t *)(base + f[i].offset) =
                            (int32_t)((edge ? i + variant : next(&s)) & 1);
                        break;
                case ORDO_FIELD_LONGS:
                        a = (int64_t *)(base + f[i].offset);
                        cnt =
                            (int32_t)(edge ? variant % (ORDO_LEVELS_WIRE + 1)
                                           : next(&s) % (ORDO_LEVELS_WIRE + 1));
                        memset(a, 0, ORDO_LEVELS_WIRE * sizeof(*a));
                        for (k = 0; k < cnt; k++)
                                a[k] = edge ? edge_longs[(k + variant) % N_EDGE]
                                            : random_long(&s);
                        *(int32_t *)(base + f[i].count_offset) = cnt;
                        break;
                }
        }
}

int ordo_sample_equal(const ordo_msg_t *a, const ordo_msg_t *b, char *why,
                      size_t why_size) {
        const ordo_field_t *f;
        size_t n, i;
        int32_t k;

        if (a->type != b->type) {
                snprintf(why, why_size, "type %d != %d", (int)a->type,
                         (int)b->type);
                return 0;
        }
        f = ordo_msg_fields(a->type, &n);
        for (i = 0; i < n; i++) {
                const char *pa = (const char *)a + f[i].offset;
                const char *pb = (const char *)b + f[i].offset;
                const int64_t *la = (const int64_t *)pa;
                const int64_t *lb = (const int64_t *)pb;
                int32_t ca, cb;
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        if (strcmp(pa, pb)) {
                                snprintf(why, why_size, "%s: \"%s\" != \"%s\"",
                                         f[i].name, pa, pb);
                                return 0;
                        }
                        break;
                case ORDO_FIELD_LONG:
                        if (*la != *lb) {
                                snprintf(why, why_size,
                                         "%s: %" PRId64 " != %" PRId64,
                                         f[i].name, *la, *lb);
                                return 0;
                        }
                        break;
                case ORDO_FIELD_BOOL:
                        if (*(const int32_t *)pa != *(const int32_t *)pb) {
                                snprintf(why, why_size, "%s: %d != %d",
                                         f[i].name, *(const int32_t *)pa,
                                         *(const int32_t *)pb);
                                return 0;
                        }
                        break;
                case ORDO_FIELD_LONGS:
                        ca = *(const int32_t *)((const char *)a +
                                                f[i].count_offset);
                        cb = *(const int32_t *)((const char *)b +
                                                f[i].count_offset);
                        if (ca != cb) {
                                snprintf(why, why_size, "%s: %d != %d items",
                                         f[i].name, ca, cb);
                                return 0;
                        }
                        for (k = 0; k < ca; k++)
                                if (la[k] != lb[k]) {
                                        snprintf(why, why_size,
                                                 "%s[%d]: %" PRId64
                                                 " != %" PRId64,
                                                 f[i].name, k, la[k], lb[k]);
                                        return 0;
                                }
                        break;
                }
        }
        return 1;
}
