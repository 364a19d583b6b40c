/*
 * ordo - arena, string map, arrays, output context and arithmetic shared
 * by the rule modules (rules_int.h).
 */
#include "rules_int.h"

#include <stdlib.h>
#include <string.h>

void ordo__oom(void) {
        abort();
}

void *ordo__xrealloc(void *p, size_t size) {
        void *q = realloc(p, size ? size : 1);
        if (!q)
                ordo__oom();
        return q;
}

void *ordo__xcalloc(size_t n, size_t size) {
        void *q = calloc(n ? n : 1, size ? size : 1);
        if (!q)
                ordo__oom();
        return q;
}

/* ---- arena ---- */

struct ordo__arena_chunk_s {
        ordo__arena_chunk_t *next;
        size_t cap;
        /* 8-aligned payload follows */
};

#define CHUNK_HDR  ((sizeof(ordo__arena_chunk_t) + 7) & ~(size_t)7)
#define CHUNK_SIZE ((size_t)64 * 1024)

void ordo__arena_fini(ordo__arena_t *a) {
        ordo__arena_chunk_t *c = a->head, *next;
        for (; c; c = next) {
                next = c->next;
                free(c);
        }
        memset(a, 0, sizeof(*a));
}

void *ordo__arena_alloc(ordo__arena_t *a, size_t size) {
        size_t need = (size + 7) & ~(size_t)7;
        ordo__arena_chunk_t *c;
        if (!a->head || a->cap - a->used < need) {
                size_t cap = need > CHUNK_SIZE - CHUNK_HDR
                                 ? need
                                 : CHUNK_SIZE - CHUNK_HDR;
                c = ordo__xrealloc(NULL, CHUNK_HDR + cap);
                c->next = a->head;
                c->cap = cap;
                a->head = c;
                a->used = 0;
                a->cap = cap;
                a->bytes += CHUNK_HDR + cap;
        }
        c = a->head;
        a->used += need;
        return (char *)c + CHUNK_HDR + a->used - need;
}

const char *ordo__arena_strdup(ordo__arena_t *a, const char *s, size_t len) {
        char *p = ordo__arena_alloc(a, len + 1);
        memcpy(p, s, len);
        p[len] = '\0';
        return p;
}

/* ---- map ---- */

uint32_t ordo__hash(const char *s, size_t len) {
        uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)len;
        uint64_t w;
        while (len >= 8) {
                memcpy(&w, s, 8);
                h = (h ^ w) * 0xff51afd7ed558ccdULL;
                h ^= h >> 32;
                s += 8;
                len -= 8;
        }
        if (len) {
                w = 0;
                memcpy(&w, s, len);
                h = (h ^ w) * 0xff51afd7ed558ccdULL;
        }
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return (uint32_t)h;
}

void ordo__map_fini(ordo__map_t *m) {
        free(m->slots);
        memset(m, 0, sizeof(*m));
}

ordo__slot_t *ordo__map_find(const ordo__map_t *m, const char *key, size_t len,
                             uint32_t hash) {
        uint32_t mask, i;
        ordo__slot_t *sl;
        if (!m->cap)
                return NULL;
        mask = m->cap - 1;
        for (i = hash & mask;; i = (i + 1) & mask) {
                sl = &m->slots[i];
                if (!sl->key)
                        return NULL;
                if (sl->hash == hash && !memcmp(sl->key, key, len) &&
                    sl->key[len] == '\0')
                        return sl;
        }
}

static ordo__slot_t *place(ordo__slot_t *slots, uint32_t cap, const char *key,
                           uint32_t hash, uint32_t val) {
        uint32_t mask = cap - 1, i;
        for (i = hash & mask; slots[i].key; i = (i + 1) & mask)
                ;
        slots[i].key = key;
        slots[i].hash = hash;
        slots[i].val = val;
        return &slots[i];
}

static void grow(ordo__map_t *m) {
        uint32_t cap = m->cap ? m->cap * 2 : 16, i;
        ordo__slot_t *slots;
        if (cap < m->cap) /* 2^32 slots: no bigger table exists */
                ordo__oom();
        slots = ordo__xcalloc(cap, sizeof(*slots));
        for (i = 0; i < m->cap; i++)
                if (m->slots[i].key)
                        place(slots, cap, m->slots[i].key, m->slots[i].hash,
                              m->slots[i].val);
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
}

ordo__slot_t *ordo__map_insert(ordo__map_t *m, const char *key, uint32_t hash,
                               uint32_t val) {
        /* at most 70 % full: probes stay short under linear probing */
        if ((uint64_t)(m->n + 1) * 10 > (uint64_t)m->cap * 7)
                grow(m);
        m->n++;
        return place(m->slots, m->cap, key, hash, val);
}

size_t ordo__map_bytes(const ordo__map_t *m) {
        return (size_t)m->cap * sizeof(ordo__slot_t);
}

const char *ordo__intern(ordo__strings_t *t, const char *s) {
        size_t len = strlen(s);
        uint32_t h = ordo__hash(s, len);
        ordo__slot_t *sl = ordo__map_find(&t->map, s, len, h);
        const char *p;
        if (sl)
                return sl->key;
        p = ordo__arena_strdup(t->arena, s, len);
        ordo__map_insert(&t->map, p, h, 0);
        return p;
}

/* ---- vec ---- */

uint32_t ordo__vec_push(ordo__vec_t *v, size_t elem) {
        if (v->n == v->cap) {
                uint32_t cap = v->cap ? v->cap * 2 : 64;
                if (cap < v->cap || cap == ORDO__NONE)
                        ordo__oom();
                v->data = ordo__xrealloc(v->data, (size_t)cap * elem);
                v->cap = cap;
        }
        memset((char *)v->data + (size_t)v->n * elem, 0, elem);
        return v->n++;
}

/* ---- output ---- */

/* Appends the decimal form of v; returns the new length. */
static size_t put_i64(char *buf, size_t len, size_t size, int64_t v) {
        char tmp[24];
        size_t n = 0;
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        do {
                tmp[n++] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                tmp[n++] = '-';
        while (n && len + 1 < size)
                buf[len++] = tmp[--n];
        buf[len] = '\0';
        return len;
}

static size_t put_str(char *buf, size_t len, size_t size, const char *s) {
        while (*s && len + 1 < size)
                buf[len++] = *s++;
        buf[len] = '\0';
        return len;
}

void ordo__out_init(ordo__out_t *o, const ordo_msg_t *in, const ordo_pos_t *pos,
                    const ordo_sink_t *sink) {
        o->in = in;
        o->pos = pos;
        o->sink = sink;
        o->index = 0;
        o->prefix_len = 0;
}

ordo_msg_t *ordo__out_begin(ordo__out_t *o, ordo_msg_type_t type,
                            int64_t ts_ms) {
        ordo_msg_t *m = &o->msg;
        const ordo_meta_t *in = &o->in->meta;
        size_t sz = sizeof(o->prefix), n;
        if (!o->prefix_len) {
                n = put_str(o->prefix, 0, sz, o->pos->source);
                n = put_str(o->prefix, n, sz, "-");
                n = put_i64(o->prefix, n, sz, o->pos->partition);
                n = put_str(o->prefix, n, sz, "-");
                n = put_i64(o->prefix, n, sz, o->pos->offset);
                o->prefix_len = put_str(o->prefix, n, sz, "-");
        }
        memset(m, 0, sizeof(*m));
        m->type = type;
        memcpy(m->meta.id, o->prefix, o->prefix_len);
        put_i64(m->meta.id, o->prefix_len, sizeof(m->meta.id), o->index);
        ORDO__SET(m->meta.causation_id, in->id);
        ORDO__SET(m->meta.correlation_id,
                  in->correlation_id[0] ? in->correlation_id : in->id);
        m->meta.ts_ms = ts_ms;
        return m;
}

void ordo__out_emit(ordo__out_t *o) {
        o->sink->emit(o->sink->opaque, &o->msg);
        o->index++;
}

ordo_msg_t *ordo__out_reject(ordo__out_t *o, const char *aggregate_id,
                             int64_t version, const char *reason) {
        ordo_msg_t *m =
            ordo__out_begin(o, ORDO_MSG_COMMAND_REJECTED, o->in->meta.ts_ms);
        ORDO__SET(m->meta.aggregate_id, aggregate_id);
        m->meta.version = version;
        ORDO__SET(m->u.rejected.command_type, ordo_msg_type_name(o->in->type));
        ORDO__SET(m->u.rejected.reason, reason);
        return m;
}

/* ---- arithmetic ---- */

int64_t ordo__sat_add(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_add_overflow(a, b, &r))
                return b > 0 ? INT64_MAX : INT64_MIN;
        return r;
}

int64_t ordo__sat_sub(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_sub_overflow(a, b, &r))
                return b < 0 ? INT64_MAX : INT64_MIN;
        return r;
}

int64_t ordo__muldiv(int64_t a, int64_t b, int64_t c) {
        __extension__ typedef __int128 i128;
        i128 p = (i128)a * b;
        return (int64_t)(p / c);
}

/* ---- digests ---- */

uint64_t ordo__mix(uint64_t h, uint64_t v) {
        h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdULL;
        return h ^ (h >> 29);
}

uint64_t ordo__mix_str(uint64_t h, const char *s) {
        uint64_t f = 0xcbf29ce484222325ULL; /* FNV-1a */
        if (!s)
                return ordo__mix(h, 0);
        for (; *s; s++)
                f = (f ^ (unsigned char)*s) * 0x100000001b3ULL;
        return ordo__mix(h, f);
}

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
        n = put_str(errstr, 0, size, a);
        n = put_str(errstr, n, size, b);
        put_str(errstr, n, size, c);
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
                put_i64(num, 0, sizeof(num), (int64_t)len);
                set_err(errstr, errstr_size,
                        "snapshot: truncated header, length ", num, "");
                return -1;
        }
        version = (uint32_t)load_le64(p + 8, 4);
        if (version != ORDO__SNAP_VERSION) {
                put_i64(num, 0, sizeof(num), version);
                set_err(errstr, errstr_size, "snapshot: format version ", num,
                        ", expected 1");
                return -1;
        }
        body = load_le64(p + 13, 8);
        if (body > len - SNAP_HEADER - 8) {
                size_t n = put_i64(num, 0, sizeof(num), (int64_t)len);
                n = put_str(num, n, sizeof(num), " bytes, header says ");
                put_i64(num, n, sizeof(num),
                        body > (uint64_t)INT64_MAX - SNAP_HEADER - 8
                            ? INT64_MAX
                            : (int64_t)(body + SNAP_HEADER + 8));
                set_err(errstr, errstr_size, "snapshot: truncated: ", num, "");
                return -1;
        }
        if (body < len - SNAP_HEADER - 8) {
                put_i64(num, 0, sizeof(num),
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
                size_t n = put_str(num, 0, sizeof(num), kind_name(p[12]));
                n = put_str(num, n, sizeof(num), ", expected ");
                put_str(num, n, sizeof(num), kind_name(kind));
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
        put_i64(num, 0, sizeof(num), (int64_t)r->at);
        if (errstr && errstr_size) {
                size_t n = put_str(errstr, 0, errstr_size, "snapshot: ");
                n = put_str(errstr, n, errstr_size, r->why);
                n = put_str(errstr, n, errstr_size, " at byte ");
                put_str(errstr, n, errstr_size, num);
        }
        return -1;
}

/* ---- snapshots: tables ---- */

uint32_t ordo__map_cap_for(uint32_t n) {
        uint64_t cap = 16;
        if (!n)
                return 0;
        while ((uint64_t)n * 10 > cap * 7)
                cap *= 2;
        if (cap > UINT32_MAX)
                ordo__oom(); /* ~3e9 keys: no snapshot is that big */
        return (uint32_t)cap;
}

void ordo__map_reserve(ordo__map_t *m, uint32_t n) {
        m->cap = ordo__map_cap_for(n);
        m->n = 0;
        m->slots = m->cap ? ordo__xcalloc(m->cap, sizeof(*m->slots)) : NULL;
}

void ordo__map_iter_init(ordo__map_iter_t *it, const ordo__map_t *m) {
        uint32_t e = 0;
        it->m = m;
        it->left = m->cap;
        /* at most 70 % full: an empty slot exists */
        while (m->cap && m->slots[e].key)
                e++;
        it->i = e;
}

const ordo__slot_t *ordo__map_iter_next(ordo__map_iter_t *it) {
        const ordo__map_t *m = it->m;
        while (it->left) {
                const ordo__slot_t *sl;
                it->i = (it->i + 1) & (m->cap - 1);
                it->left--;
                sl = &m->slots[it->i];
                if (sl->key)
                        return sl;
        }
        return NULL;
}

void ordo__vec_reserve(ordo__vec_t *v, size_t elem, uint32_t n) {
        uint32_t cap = 64;
        if (!n)
                return;
        while (cap < n) {
                if (cap > UINT32_MAX / 2)
                        ordo__oom(); /* over 2^31 records: cannot be */
                cap *= 2;
        }
        v->data = ordo__xrealloc(v->data, (size_t)cap * elem);
        v->cap = cap;
}

int ordo__map_add(ordo__map_t *m, const char *key, size_t len, uint32_t hash,
                  uint32_t val) {
        if (ordo__map_find(m, key, len, hash))
                return 0;
        ordo__map_insert(m, key, hash, val);
        return 1;
}

/* Inserts a key unless present: 1 if inserted. The table has room
 * (reserved), so it never grows and the key lands where the probe
 * ends. */
static int add_new(ordo__map_t *m, const char *key, uint32_t hash,
                   uint32_t val) {
        if (ordo__map_find(m, key, strlen(key), hash))
                return 0;
        place(m->slots, m->cap, key, hash, val);
        m->n++;
        return 1;
}

#define BUCKET_BITS 8

int ordo__map_index(ordo__map_t *m, const ordo__vec_t *v, size_t elem) {
        uint32_t pos[(1 << BUCKET_BITS) + 1], *hash, n = v->n, i, shift = 0;
        ordo__slot_t *sorted;
        int ret = 0;
        if (!n)
                return 0;
        while (((m->cap - 1) >> shift) >> BUCKET_BITS)
                shift++;
        memset(pos, 0, sizeof(pos));
        hash = ordo__xrealloc(NULL, (size_t)n * sizeof(*hash));
        for (i = 0; i < n; i++) {
                const char *k = *(const char *const *)((const char *)v->data +
                                                       (size_t)i * elem);
                hash[i] = ordo__hash(k, strlen(k));
                pos[((hash[i] & (m->cap - 1)) >> shift) + 1]++;
        }
        for (i = 1; i <= 1u << BUCKET_BITS; i++)
                pos[i] += pos[i - 1];
        sorted = ordo__xrealloc(NULL, (size_t)n * sizeof(*sorted));
        for (i = 0; i < n; i++) {
                ordo__slot_t *sl =
                    &sorted[pos[(hash[i] & (m->cap - 1)) >> shift]++];
                sl->key = *(const char *const *)((const char *)v->data +
                                                 (size_t)i * elem);
                sl->hash = hash[i];
                sl->val = i;
        }
        free(hash);
        for (i = 0; i < n && !ret; i++)
                if (!add_new(m, sorted[i].key, sorted[i].hash, sorted[i].val))
                        ret = -1;
        free(sorted);
        return ret;
}

static uint32_t ptr_slot(const ordo__strtab_t *st, const char *p) {
        uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL;
        return (uint32_t)(h >> 32) & st->mask;
}

void ordo__strtab_save(ordo__strtab_t *st, const ordo__strings_t *t,
                       ordo_buf_t *b) {
        ordo__map_iter_t it;
        const ordo__slot_t *sl;
        uint32_t k = 0, cap = 16, i;
        while (cap / 2 < t->map.n) /* at most half full */
                cap *= 2;
        st->slots = ordo__xcalloc(cap, sizeof(*st->slots));
        st->mask = cap - 1;
        st->last = NULL;
        st->last_rank = 0;
        ordo__wr_varint(b, t->map.n);
        ordo__map_iter_init(&it, &t->map);
        while ((sl = ordo__map_iter_next(&it))) {
                for (i = ptr_slot(st, sl->key); st->slots[i].key;
                     i = (i + 1) & st->mask)
                        ;
                st->slots[i].key = sl->key;
                st->slots[i].rank = k++;
                ordo__wr_str(b, sl->key);
        }
}

void ordo__strtab_wr(ordo__strtab_t *st, ordo_buf_t *b, const char *s) {
        uint32_t i;
        if (!s) {
                ordo__wr_u8(b, 0);
                return;
        }
        if (s != st->last) {
                for (i = ptr_slot(st, s); st->slots[i].key != s;
                     i = (i + 1) & st->mask)
                        if (!st->slots[i].key) /* all are interned */
                                abort();
                st->last = s;
                st->last_rank = st->slots[i].rank;
        }
        ordo__wr_varint(b, (uint64_t)st->last_rank + 1);
}

void ordo__strtab_prefetch(const ordo__strtab_t *st, const char *s) {
        if (s)
                __builtin_prefetch(&st->slots[ptr_slot(st, s)]);
}

void ordo__strtab_fini(ordo__strtab_t *st) {
        free(st->slots);
        st->slots = NULL;
}

const char **ordo__strtab_load(ordo__rd_t *r, ordo__strings_t *t, uint32_t *n) {
        uint32_t count = ordo__rd_count(r, 1), i;
        const char **tab;
        *n = 0;
        if (r->why)
                return NULL;
        tab = ordo__xcalloc(count, sizeof(*tab));
        ordo__map_reserve(&t->map, count);
        for (i = 0; i < count; i++) {
                size_t len;
                const char *s = ordo__rd_str(r, t->arena, &len);
                uint32_t h = ordo__hash(s, len);
                if (r->why)
                        break;
                if (!ordo__map_add(&t->map, s, len, h, 0)) {
                        ordo__rd_fail(r, "duplicate interned string");
                        break;
                }
                tab[i] = s;
        }
        if (r->why) {
                free(tab);
                return NULL;
        }
        *n = count;
        return tab;
}

const char *ordo__strtab_rd(ordo__rd_t *r, const char **tab, uint32_t n,
                            int optional) {
        uint64_t ref = ordo__rd_upto(r, n, "string reference out of range");
        if (r->why)
                return "";
        if (!ref) {
                if (!optional)
                        ordo__rd_fail(r, "missing string reference");
                return optional ? NULL : "";
        }
        return tab[ref - 1];
}
