/*
 * ordo - allocation and the arena (rules_alloc.h).
 */
#include "rules_alloc.h"

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
