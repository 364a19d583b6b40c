#include "budget.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "messages.h"
#include "random.h"
#include "strhash.h"

#define PROBE 8 /* slots looked at per key */

typedef struct {
        char key[INET6_ADDRSTRLEN]; /* "" = free */
        int64_t held;
} entry_t;

struct ordo_budget_s {
        pthread_mutex_t lock;
        int64_t total_max, key_max, total;
        uint64_t seed; /* of the hash */
        size_t mask;
        entry_t *e;
};

ordo_budget_t *ordo_budget_new(int64_t total_max, int64_t key_max,
                               size_t capacity) {
        ordo_budget_t *b = calloc(1, sizeof(*b));
        size_t n = 16;
        if (!b)
                return NULL;
        while (n < capacity)
                n <<= 1;
        if (!(b->e = calloc(n, sizeof(*b->e)))) {
                free(b);
                return NULL;
        }
        b->mask = n - 1;
        ordo_random_bytes(&b->seed, sizeof(b->seed));
        b->total_max = total_max < 1 ? 1 : total_max;
        b->key_max = key_max < 1              ? 1
                     : key_max > b->total_max ? b->total_max
                                              : key_max;
        pthread_mutex_init(&b->lock, NULL);
        return b;
}

void ordo_budget_destroy(ordo_budget_t *b) {
        if (!b)
                return;
        pthread_mutex_destroy(&b->lock);
        free(b->e);
        free(b);
}

/* key's entry; if it has none, a free slot in its window when `make`
 * (the caller fills it), else NULL. The whole window is searched: a
 * freed slot does not end a key's probe sequence. */
static entry_t *find(ordo_budget_t *b, const char *key, int make) {
        size_t h = ordo_str_hash(key, b->seed), i;
        entry_t *free_slot = NULL;
        for (i = 0; i < PROBE; i++) {
                entry_t *e = &b->e[(h + i) & b->mask];
                if (!e->key[0]) {
                        if (!free_slot)
                                free_slot = e;
                } else if (!strcmp(e->key, key))
                        return e;
        }
        return make ? free_slot : NULL;
}

ordo_budget_result_t ordo_budget_take(ordo_budget_t *b, const char *key,
                                      int64_t n) {
        ordo_budget_result_t r = ORDO_BUDGET_OK;
        entry_t *e;
        if (n <= 0)
                return ORDO_BUDGET_OK;
        pthread_mutex_lock(&b->lock);
        e = find(b, key, 1);
        if (n > b->total_max - b->total)
                r = ORDO_BUDGET_TOTAL;
        else if (!e)
                r = ORDO_BUDGET_TABLE;
        else if (n > b->key_max - (e->key[0] ? e->held : 0))
                r = ORDO_BUDGET_KEY;
        else {
                if (!e->key[0]) {
                        ordo_strlcpy(e->key, key, sizeof(e->key));
                        e->held = 0;
                }
                e->held += n;
                b->total += n;
        }
        pthread_mutex_unlock(&b->lock);
        return r;
}

void ordo_budget_give(ordo_budget_t *b, const char *key, int64_t n) {
        entry_t *e;
        if (n <= 0)
                return;
        pthread_mutex_lock(&b->lock);
        if ((e = find(b, key, 0))) {
                if (n > e->held)
                        n = e->held; /* never below zero */
                e->held -= n;
                b->total -= n;
                if (!e->held)
                        e->key[0] = '\0';
        }
        pthread_mutex_unlock(&b->lock);
}

int64_t ordo_budget_total(ordo_budget_t *b) {
        int64_t t;
        pthread_mutex_lock(&b->lock);
        t = b->total;
        pthread_mutex_unlock(&b->lock);
        return t;
}

int64_t ordo_budget_held(ordo_budget_t *b, const char *key) {
        entry_t *e;
        int64_t h;
        pthread_mutex_lock(&b->lock);
        e = find(b, key, 0);
        h = e ? e->held : 0;
        pthread_mutex_unlock(&b->lock);
        return h;
}
