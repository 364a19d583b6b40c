/*
 * ordo - a per-key token bucket, the gateway's brake on bots during a
 * flash sale: each user_id may place `rate` orders a second on average and
 * `burst` at once.
 *
 * Tuned for many keys (every user of a sale) and one look-up per
 * PlaceOrder: a fixed open-addressed table of `capacity` buckets, no
 * allocation after _new, one mutex. Tokens are counted in thousandths so
 * the arithmetic is integer and exact. When a key's probe window is
 * full, the bucket there holding the most tokens is recycled (a full one
 * loses nothing); a recycled user starts with a full bucket, so size the
 * table above the number of users active within burst/rate seconds.
 *
 * The clock is the caller's (now_ms), so the tests drive it.
 */
#ifndef ORDO_RATELIMIT_H
#define ORDO_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ordo_ratelimit_s ordo_ratelimit_t;

/* rate: tokens per second (<= 0: no limit, every take succeeds);
 * burst: bucket size in tokens (at least 1); capacity: number of keys kept
 * (rounded up to a power of two, at least 16). NULL when out of memory. */
ordo_ratelimit_t *ordo_ratelimit_new(int64_t rate, int64_t burst,
                                     size_t capacity);
void ordo_ratelimit_destroy(ordo_ratelimit_t *rl); /* NULL ok */

/* Takes one token from key's bucket at now_ms: 1 if taken, 0 if the bucket
 * is empty (ordo_ratelimit_wait says until when). Thread-safe. */
int ordo_ratelimit_take(ordo_ratelimit_t *rl, const char *key, int64_t now_ms);

/* The wait in ms until key's bucket holds n tokens at once (0: now),
 * taking none; INT64_MAX if n is over the burst. Thread-safe. */
int64_t ordo_ratelimit_wait(ordo_ratelimit_t *rl, const char *key,
                            int64_t now_ms, int64_t n);

/* The most tokens one key can ever take at once (burst); INT64_MAX
 * when there is no limit. */
int64_t ordo_ratelimit_burst(const ordo_ratelimit_t *rl);

/* Gives back one token taken at now_ms (never above burst): a request
 * refused by another limit spends nothing. Thread-safe. */
void ordo_ratelimit_give(ordo_ratelimit_t *rl, const char *key, int64_t now_ms);

#endif
