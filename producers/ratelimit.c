#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "messages.h"
#include "random.h"
#include "strhash.h"

#define PROBE 8    /* slots looked at per key */
#define MILLI 1000 /* one token, in thousandths */

typedef struct {
        char key[ORDO_ID_MAX + 1]; /* "" = free */
        int64_t milli;             /* tokens * 1000 at last_ms */
        int64_t last_ms;
} bucket_t;

struct ordo_ratelimit_s {
        pthread_mutex_t lock;
        int64_t rate, burst;
        uint64_t seed; /* of the hash */
        size_t mask;
        bucket_t *b;
};

ordo_ratelimit_t *ordo_ratelimit_new(int64_t rate, int64_t burst,
                                     size_t capacity) {
        ordo_ratelimit_t *rl = calloc(1, sizeof(*rl));
        size_t n = 16;
        if (!rl)
                return NULL;
        while (n < capacity)
                n <<= 1;
        rl->b = calloc(n, sizeof(*rl->b));
        if (!rl->b) {
                free(rl);
                return NULL;
        }
        rl->mask = n - 1;
        ordo_random_bytes(&rl->seed, sizeof(rl->seed));
        rl->rate = rate;
        rl->burst = burst < 1 ? 1 : burst;
        pthread_mutex_init(&rl->lock, NULL);
        return rl;
}

int64_t ordo_ratelimit_burst(const ordo_ratelimit_t *rl) {
        return rl->rate <= 0 ? INT64_MAX : rl->burst;
}

void ordo_ratelimit_destroy(ordo_ratelimit_t *rl) {
        if (!rl)
                return;
        pthread_mutex_destroy(&rl->lock);
        free(rl->b);
        free(rl);
}

/* Adds the tokens earned since b was last refilled, up to the burst. */
static void refill(const ordo_ratelimit_t *rl, bucket_t *b, int64_t now_ms) {
        int64_t cap = rl->burst * MILLI, elapsed = now_ms - b->last_ms;
        /* A clock step backwards refills nothing; rate tokens/s is rate
         * thousandths per ms. Cap elapsed first so the product cannot
         * overflow. */
        if (elapsed > 0) {
                if (elapsed > cap / rl->rate + 1)
                        elapsed = cap / rl->rate + 1;
                b->milli += elapsed * rl->rate;
                if (b->milli > cap)
                        b->milli = cap;
                b->last_ms = now_ms;
        }
}

/* key's bucket; a new key takes a free slot of its probe window, or
 * recycles the bucket there that holds the most tokens now. A full one
 * is as good as new, so nothing is lost; an emptied one is recycled last,
 * so that other keys cannot refill a drained bucket by pushing it out. */
static bucket_t *lookup(ordo_ratelimit_t *rl, const char *key, int64_t now_ms) {
        size_t h = ordo_str_hash(key, rl->seed), i;
        bucket_t *victim = NULL;

        for (i = 0; i < PROBE; i++) {
                bucket_t *b = &rl->b[(h + i) & rl->mask];
                if (!b->key[0]) {
                        if (!victim || victim->key[0])
                                victim = b;
                        continue;
                }
                if (!strcmp(b->key, key))
                        return b;
                refill(rl, b, now_ms);
                if (!victim || (victim->key[0] && b->milli > victim->milli))
                        victim = b;
        }
        ordo_strlcpy(victim->key, key, sizeof(victim->key));
        victim->milli = rl->burst * MILLI;
        victim->last_ms = now_ms;
        return victim;
}

/* The wait until b holds n tokens, in ms (0: it does). */
static int64_t wait_for(const ordo_ratelimit_t *rl, const bucket_t *b,
                        int64_t n) {
        return b->milli >= n * MILLI
                   ? 0
                   : (n * MILLI - b->milli + rl->rate - 1) / rl->rate;
}

int ordo_ratelimit_take(ordo_ratelimit_t *rl, const char *key, int64_t now_ms) {
        bucket_t *b;
        int taken;

        if (rl->rate <= 0)
                return 1;
        pthread_mutex_lock(&rl->lock);
        b = lookup(rl, key, now_ms);
        refill(rl, b, now_ms);
        taken = b->milli >= MILLI;
        if (taken)
                b->milli -= MILLI;
        pthread_mutex_unlock(&rl->lock);
        return taken;
}

int64_t ordo_ratelimit_wait(ordo_ratelimit_t *rl, const char *key,
                            int64_t now_ms, int64_t n) {
        bucket_t *b;
        int64_t wait;

        if (rl->rate <= 0)
                return 0;
        if (n > rl->burst)
                return INT64_MAX;
        pthread_mutex_lock(&rl->lock);
        b = lookup(rl, key, now_ms);
        refill(rl, b, now_ms);
        wait = wait_for(rl, b, n);
        pthread_mutex_unlock(&rl->lock);
        return wait;
}

void ordo_ratelimit_give(ordo_ratelimit_t *rl, const char *key,
                         int64_t now_ms) {
        bucket_t *b;

        if (rl->rate <= 0)
                return;
        pthread_mutex_lock(&rl->lock);
        b = lookup(rl, key, now_ms);
        b->milli += MILLI;
        if (b->milli > rl->burst * MILLI)
                b->milli = rl->burst * MILLI;
        pthread_mutex_unlock(&rl->lock);
}
