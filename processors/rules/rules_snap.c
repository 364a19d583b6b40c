/*
 * ordo - snapshot I/O (rules_snap.h).
 */
#include "rules_snap.h"

#include <stdlib.h>
#include <string.h>

#include "rules_fmt.h"
#include "rules_vec.h"

/* ---- snapshots: checksum ---- */

static uint64_t load_le64(const uint8_t *p, size_t n) {
        uint64_t w = 0;
        size_t i;
        for (i = 0; i < n; i++)
                w |= (uint64_t)p[i] << (8 * i);
        return w;
}

uint64_t ordo__sum64(const void *data, size_t n) {
        const uint8_t *p = data;
        uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
        size_t left = n;
        for (;;) {
                size_t k = left < 8 ? left : 8;
                if (!k)
                        break;
                h = (h ^ load_le64(p, k)) * 0xff51afd7ed558ccdULL;
                h ^= h >> 32;
                p += k;
                left -= k;
        }
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

/* ---- snapshots: writer ---- */

void ordo_buf_fini(ordo_buf_t *b) {
        free(b->data);
        memset(b, 0, sizeof(*b));
}

static uint8_t *reserve(ordo_buf_t *b, size_t n) {
        if (b->cap - b->len < n) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap - b->len < n) {
                        if (cap > SIZE_MAX / 2)
                                ordo__oom();
                        cap *= 2;
                }
                b->data = ordo__xrealloc(b->data, cap);
                b->cap = cap;
        }
        return b->data + b->len;
}

void ordo__wr_bytes(ordo_buf_t *b, const void *p, size_t n) {
        if (!n)
                return;
        memcpy(reserve(b, n), p, n);
        b->len += n;
}

void ordo__wr_u8(ordo_buf_t *b, uint8_t v) {
        *reserve(b, 1) = v;
        b->len++;
}

static void wr_le(ordo_buf_t *b, uint64_t v, size_t n) {
        uint8_t *p = reserve(b, n);
        size_t i;
        for (i = 0; i < n; i++)
                p[i] = (uint8_t)(v >> (8 * i));
        b->len += n;
}

void ordo__wr_u32(ordo_buf_t *b, uint32_t v) {
        wr_le(b, v, 4);
}

void ordo__wr_u64(ordo_buf_t *b, uint64_t v) {
        wr_le(b, v, 8);
}

void ordo__wr_varint(ordo_buf_t *b, uint64_t v) {
        uint8_t *p = reserve(b, 10);
        size_t n = 0;
        while (v >= 0x80) {
                p[n++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        p[n++] = (uint8_t)v;
        b->len += n;
}

void ordo__wr_i64(ordo_buf_t *b, int64_t v) {
        uint64_t u = (uint64_t)v;
        ordo__wr_varint(b, (u << 1) ^ (v < 0 ? ~(uint64_t)0 : 0));
}

void ordo__wr_str(ordo_buf_t *b, const char *s) {
        size_t n = strlen(s);
        ordo__wr_varint(b, n);
        ordo__wr_bytes(b, s, n);
}

void ordo__wr_optstr(ordo_buf_t *b, const char *s) {
        size_t n;
        if (!s) {
                ordo__wr_u8(b, 0);
                return;
        }
        n = strlen(s);
        ordo__wr_varint(b, (uint64_t)n + 1);
        ordo__wr_bytes(b, s, n);
}

#define SNAP_MAGIC  "ORDOSNAP"
#define SNAP_HEADER 21 /* magic 8, version 4, kind 1, body length 8 */

static const char *const kind_names[] = { "?", "activity", "order", "referral",
                                          "commission" };

size_t ordo__snap_begin(ordo_buf_t *b, ordo__snap_kind_t kind) {
        size_t start = b->len;
        ordo__wr_bytes(b, SNAP_MAGIC, 8);
        ordo__wr_u32(b, ORDO__SNAP_VERSION);
        ordo__wr_u8(b, (uint8_t)kind);
        ordo__wr_u64(b, 0); /* body length, patched by _end */
        return start;
}

void ordo__snap_end(ordo_buf_t *b, size_t start) {
        uint64_t body = b->len - start - SNAP_HEADER;
        size_t i;
        for (i = 0; i < 8; i++)
                b->data[start + 13 + i] = (uint8_t)(body >> (8 * i));
        ordo__wr_u64(b, ordo__sum64(b->data + start, b->len - start));
}

/* ---- snapshots: reader ---- */

void ordo__rd_fail(ordo__rd_t *r, const char *why) {
        if (r->why)
                return;
        r->why = why;
        r->at = (size_t)(r->p - r->base);
        r->p = r->end; /* nothing more is read */
}

uint8_t ordo__rd_u8(ordo__rd_t *r) {
        if (r->p == r->end) {
                ordo__rd_fail(r, "truncated");
                return 0;
        }
        return *r->p++;
}

uint64_t ordo__rd_varint(ordo__rd_t *r) {
        uint64_t v = 0;
        unsigned shift = 0;
        const uint8_t *p = r->p;
        for (;;) {
                uint8_t c;
                if (p == r->end) {
                        ordo__rd_fail(r, "truncated");
                        return 0;
                }
                c = *p++;
                /* the 10th byte may only hold the top bit */
                if (shift == 63 && c > 1) {
                        ordo__rd_fail(r, "varint overflow");
                        return 0;
                }
                v |= (uint64_t)(c & 0x7f) << shift;
                if (!(c & 0x80))
                        break;
                shift += 7;
        }
        r->p = p;
        return v;
}

int64_t ordo__rd_i64(ordo__rd_t *r) {
        uint64_t u = ordo__rd_varint(r);
        return (int64_t)((u >> 1) ^ (0 - (u & 1)));
}

uint64_t ordo__rd_upto(ordo__rd_t *r, uint64_t max, const char *what) {
        const uint8_t *p = r->p;
        uint64_t v = ordo__rd_varint(r);
        if (!r->why && v > max) {
                r->p = p; /* report where the value starts */
                ordo__rd_fail(r, what);
        }
        return r->why ? 0 : v;
}

uint32_t ordo__rd_count(ordo__rd_t *r, size_t min_size) {
        const uint8_t *p = r->p;
        uint64_t n = ordo__rd_varint(r);
        if (!r->why && (n >= ORDO__NONE || n > (uint64_t)(r->end - r->p) /
                                                   (min_size ? min_size : 1))) {
                r->p = p;
                ordo__rd_fail(r, "count larger than the bytes left");
        }
        return r->why ? 0 : (uint32_t)n;
}

static const uint8_t *rd_chars(ordo__rd_t *r, size_t n) {
        const uint8_t *p = r->p;
        if (r->why)
                return NULL;
        if ((size_t)(r->end - r->p) < n) {
                ordo__rd_fail(r, "truncated");
                return NULL;
        }
        if (memchr(p, '\0', n)) {
                ordo__rd_fail(r, "NUL in a string");
                return NULL;
        }
        r->p += n;
        return p;
}

const char *ordo__rd_str(ordo__rd_t *r, ordo__arena_t *a, size_t *len) {
        size_t n = (size_t)ordo__rd_upto(r, ORDO_ID_MAX, "string too long");
        const uint8_t *p = rd_chars(r, n);
        if (len)
                *len = p ? n : 0;
        return p ? ordo__arena_strdup(a, (const char *)p, n) : "";
}

const char *ordo__rd_optstr(ordo__rd_t *r, ordo__arena_t *a) {
        size_t n = (size_t)ordo__rd_upto(r, ORDO_ID_MAX + 1, "string too long");
        const uint8_t *p;
        if (!n)
                return NULL;
        p = rd_chars(r, n - 1);
        return p ? ordo__arena_strdup(a, (const char *)p, n - 1) : "";
}

/* errstr = a b c, truncated to fit. */
static void set_err(char *errstr, size_t size, const char *a, const char *b,
                    const char *c) {
        size_t n;
        if (!errstr || !size)
                return;
        n = ordo__put_str(errstr, 0, size, a);
        n = ordo__put_str(errstr, n, size, b);
        ordo__put_str(errstr, n, size, c);
}

static const char *kind_name(unsigned k) {
        return k < sizeof(kind_names) / sizeof(*kind_names) ? kind_names[k]
                                                            : "unknown";
}

int ordo__snap_open(ordo__rd_t *r, const void *data, size_t len,
                    ordo__snap_kind_t kind, char *errstr, size_t errstr_size) {
        const uint8_t *p = data;
        char num[48];
        uint64_t body, sum;
        uint32_t version;

        memset(r, 0, sizeof(*r));
        if (!p || len < 8 || memcmp(p, SNAP_MAGIC, 8) != 0) {
                set_err(errstr, errstr_size, "snapshot: bad magic", "", "");
                return -1;
        }
        if (len < SNAP_HEADER + 8) {
                ordo__put_i64(num, 0, sizeof(num), (int64_t)len);
                set_err(errstr, errstr_size,
                        "snapshot: truncated header, length ", num, "");
                return -1;
        }
        version = (uint32_t)load_le64(p + 8, 4);
        if (version != ORDO__SNAP_VERSION) {
                ordo__put_i64(num, 0, sizeof(num), version);
                set_err(errstr, errstr_size, "snapshot: format version ", num,
                        ", expected 1");
                return -1;
        }
        body = load_le64(p + 13, 8);
        if (body > len - SNAP_HEADER - 8) {
                size_t n = ordo__put_i64(num, 0, sizeof(num), (int64_t)len);
                n = ordo__put_str(num, n, sizeof(num), " bytes, header says ");
                ordo__put_i64(num, n, sizeof(num),
                              body > (uint64_t)INT64_MAX - SNAP_HEADER - 8
                                  ? INT64_MAX
                                  : (int64_t)(body + SNAP_HEADER + 8));
                set_err(errstr, errstr_size, "snapshot: truncated: ", num, "");
                return -1;
        }
        if (body < len - SNAP_HEADER - 8) {
                ordo__put_i64(num, 0, sizeof(num),
                              (int64_t)(len - SNAP_HEADER - 8 - body));
                set_err(errstr, errstr_size, "snapshot: ", num,
                        " trailing bytes");
                return -1;
        }
        sum = load_le64(p + len - 8, 8);
        if (sum != ordo__sum64(p, len - 8)) {
                set_err(errstr, errstr_size, "snapshot: checksum mismatch", "",
                        "");
                return -1;
        }
        if (p[12] != kind) {
                size_t n = ordo__put_str(num, 0, sizeof(num), kind_name(p[12]));
                n = ordo__put_str(num, n, sizeof(num), ", expected ");
                ordo__put_str(num, n, sizeof(num), kind_name(kind));
                set_err(errstr, errstr_size, "snapshot: kind is ", num, "");
                return -1;
        }
        r->base = p;
        r->p = p + SNAP_HEADER;
        r->end = p + len - 8;
        return 0;
}

int ordo__snap_close(ordo__rd_t *r, char *errstr, size_t errstr_size) {
        char num[24];
        if (!r->why && r->p != r->end)
                ordo__rd_fail(r, "unread bytes in the body");
        if (!r->why)
                return 0;
        ordo__put_i64(num, 0, sizeof(num), (int64_t)r->at);
        if (errstr && errstr_size) {
                size_t n = ordo__put_str(errstr, 0, errstr_size, "snapshot: ");
                n = ordo__put_str(errstr, n, errstr_size, r->why);
                n = ordo__put_str(errstr, n, errstr_size, " at byte ");
                ordo__put_str(errstr, n, errstr_size, num);
        }
        return -1;
}
