/*
 * ordo - interned strings (rules_strtab.h).
 */
#include "rules_strtab.h"

#include <stdlib.h>
#include <string.h>

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
