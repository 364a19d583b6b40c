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
