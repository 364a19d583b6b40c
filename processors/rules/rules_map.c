/*
 * ordo - the string map (rules_map.h).
 */
#include "rules_map.h"

#include <stdlib.h>
#include <string.h>

#include "rules_alloc.h"

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
