/*
 * ordo - the gateway's budget of unauthenticated body bytes: bytes held
 * before their signature is checked count against a total and against
 * the share of the address that sent them, so one address cannot fill
 * the whole budget and turn every other client away (503 BUSY).
 *
 * A fixed open-addressed table of `capacity` entries, one mutex, no
 * allocation after _new. An entry exists only while its key holds bytes:
 * it is never recycled under a holder, so a full probe window refuses
 * the take (BUSY) rather than lose count.
 */
#ifndef ORDO_BUDGET_H
#define ORDO_BUDGET_H

#include <stddef.h>
#include <stdint.h>

typedef struct ordo_budget_s ordo_budget_t;

typedef enum {
        ORDO_BUDGET_OK = 0,
        ORDO_BUDGET_TOTAL, /* the total would pass total_max */
        ORDO_BUDGET_KEY,   /* the key's share would pass key_max */
        ORDO_BUDGET_TABLE  /* no room to count another key */
} ordo_budget_result_t;

/* total_max, key_max: at least 1 (key_max is clamped to total_max);
 * capacity: number of keys counted at once (rounded up to a power of two,
 * at least 16). NULL when out of memory. */
ordo_budget_t *ordo_budget_new(int64_t total_max, int64_t key_max,
                               size_t capacity);
void ordo_budget_destroy(ordo_budget_t *b); /* NULL ok */

/* Counts n more bytes held by key, if both limits allow; else nothing
 * changes and the result names the limit. Thread-safe. */
ordo_budget_result_t ordo_budget_take(ordo_budget_t *b, const char *key,
                                      int64_t n);

/* Gives back n bytes taken by key (they were authenticated, or the
 * request ended). Thread-safe. */
void ordo_budget_give(ordo_budget_t *b, const char *key, int64_t n);

/* Bytes held in all, and by key. */
int64_t ordo_budget_total(ordo_budget_t *b);
int64_t ordo_budget_held(ordo_budget_t *b, const char *key);

#endif
