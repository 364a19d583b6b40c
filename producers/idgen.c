#include "idgen.h"

#include "random.h"

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void ordo_idgen_init(ordo_idgen_t *g, uint32_t instance) {
        pthread_mutex_init(&g->lock, NULL);
        g->instance = instance & ORDO_IDGEN_INSTANCE_MAX;
        ordo_random_bytes(&g->run, sizeof(g->run));
        g->run &= 0xFFFFF;
        g->last_ms = 0;
        g->seq = 0;
}

void ordo_idgen_fini(ordo_idgen_t *g) {
        pthread_mutex_destroy(&g->lock);
}

/* n base32 digits of v, most significant first (so strings sort as
 * numbers do). */
static void put(char *out, uint64_t v, int n) {
        while (n--) {
                out[n] = b32[v & 31];
                v >>= 5;
        }
}

int ordo_idgen_next(ordo_idgen_t *g, char prefix, int64_t now_ms, char *buf,
                    size_t size) {
        int64_t ms;
        uint32_t seq;

        if (size < ORDO_IDGEN_LEN + 1)
                return -1;
        pthread_mutex_lock(&g->lock);
        if (now_ms > g->last_ms) {
                g->last_ms = now_ms;
                g->seq = 0;
        } else if (++g->seq > 0xFFFFF) {
                /* Counter exhausted (or the clock went back and we are
                 * still ahead of it): borrow the next millisecond. */
                g->last_ms++;
                g->seq = 0;
        }
        ms = g->last_ms;
        seq = g->seq;
        pthread_mutex_unlock(&g->lock);
        buf[0] = prefix;
        put(buf + 1, (uint64_t)ms, 9);
        put(buf + 10, g->instance, 4);
        put(buf + 14, g->run, 4);
        put(buf + 18, seq, 4);
        buf[ORDO_IDGEN_LEN] = '\0';
        return 0;
}
