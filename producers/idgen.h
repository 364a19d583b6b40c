/*
 * ordo - identifiers the gateway generates (order_id when a PlaceOrder has
 * none, command_id when a command has none): time-ordered and unique
 * across gateway instances without talking to anything.
 *
 * An id is a one-letter prefix, then 21 characters of Crockford base32
 * (0-9, A-Z without I, L, O, U; ascending in ASCII):
 *   9 characters: milliseconds since the Unix epoch (45 bits, to year 3084)
 *   4 characters: the instance (20 bits, ingest.instance.id)
 *   4 characters: the generator's own random number (20 bits)
 *   4 characters: a counter within the millisecond (20 bits)
 * e.g. "o01HV3K9Q70000K7Q20003". Ids of one generator are strictly
 * increasing as strings, even if the clock steps back (the last time is
 * kept) or more than 2^20 ids are asked for in one millisecond (time runs
 * ahead of the clock until it catches up). Two instances never collide as
 * long as their instance ids differ. The random part keeps a restarted
 * instance (same instance id) from repeating the ids of its previous run
 * when the clock is behind where that run stopped (a step back by NTP, a
 * VM restored): they then collide only if both runs drew the same
 * number, one chance in 2^20 (an outside audit: 65 of 546 PlaceOrders
 * took another buyer's order id, and were ignored as its retries).
 */
#ifndef ORDO_IDGEN_H
#define ORDO_IDGEN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define ORDO_IDGEN_LEN          22      /* prefix + 21 characters */
#define ORDO_IDGEN_INSTANCE_MAX 0xFFFFF /* 20 bits */

/* Caller-owned; _init before use, _fini after. Thread-safe. */
typedef struct ordo_idgen_s {
        pthread_mutex_t lock;
        uint32_t instance;
        uint32_t run; /* random, drawn by _init */
        int64_t last_ms;
        uint32_t seq;
} ordo_idgen_t;

/* instance: 0..ORDO_IDGEN_INSTANCE_MAX (higher bits are dropped). */
void ordo_idgen_init(ordo_idgen_t *g, uint32_t instance);
void ordo_idgen_fini(ordo_idgen_t *g);

/* Writes prefix and the next id at now_ms into buf (at least
 * ORDO_IDGEN_LEN + 1 bytes); 0, or -1 if size is too small. */
int ordo_idgen_next(ordo_idgen_t *g, char prefix, int64_t now_ms, char *buf,
                    size_t size);

#endif
