#include "seen.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PROBE 16

typedef struct {
        uint64_t a, b;      /* the first 128 bits of the digest */
        int64_t expires_ms; /* 0 = free */
} entry_t;

struct ordo_seen_s {
        pthread_mutex_t lock;
        size_t mask;
        uint64_t evictions;
        entry_t *e;
};

ordo_seen_t *ordo_seen_new(size_t capacity) {
        ordo_seen_t *s = calloc(1, sizeof(*s));
        size_t n = 16;
        if (!s)
                return NULL;
        while (n < capacity)
                n <<= 1;
        s->e = calloc(n, sizeof(*s->e));
        if (!s->e) {
                free(s);
                return NULL;
        }
        s->mask = n - 1;
        pthread_mutex_init(&s->lock, NULL);
        return s;
}

void ordo_seen_destroy(ordo_seen_t *s) {
        if (!s)
                return;
        pthread_mutex_destroy(&s->lock);
        free(s->e);
        free(s);
}

int ordo_seen_check_add(ordo_seen_t *s, const unsigned char *digest,
                        int64_t expires_ms, int64_t now_ms) {
        uint64_t a, b;
        size_t i;
        entry_t *victim = NULL;
        int replay = 0;

        /* An HMAC output is uniform, so its own bits are the hash. */
        memcpy(&a, digest, 8);
        memcpy(&b, digest + 8, 8);
        pthread_mutex_lock(&s->lock);
        for (i = 0; i < PROBE; i++) {
                entry_t *e = &s->e[(a + i) & s->mask];
                int live = e->expires_ms > now_ms;
                if (live && e->a == a && e->b == b) {
                        replay = 1;
                        break;
                }
                if (!live) {
                        if (!victim || victim->expires_ms > now_ms)
                                victim = e;
                } else if (!victim || (victim->expires_ms > now_ms &&
                                       e->expires_ms < victim->expires_ms))
                        victim = e;
        }
        if (!replay) {
                if (victim->expires_ms > now_ms)
                        s->evictions++;
                victim->a = a;
                victim->b = b;
                victim->expires_ms =
                    expires_ms > now_ms ? expires_ms : now_ms + 1;
        }
        pthread_mutex_unlock(&s->lock);
        return replay;
}

uint64_t ordo_seen_evictions(ordo_seen_t *s) {
        uint64_t n;
        pthread_mutex_lock(&s->lock);
        n = s->evictions;
        pthread_mutex_unlock(&s->lock);
        return n;
}
