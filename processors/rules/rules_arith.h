/*
 * ordo - checked arithmetic of the rule modules.
 */
#ifndef ORDO_RULES_ARITH_H
#define ORDO_RULES_ARITH_H

#include <stdint.h>

/* a + b, saturating at the int64 limits (deadlines far in the future
 * must not wrap around into the past). */
int64_t ordo__sat_add(int64_t a, int64_t b);
/* a + b into *sum; 0 if the true sum lies outside int64 (*sum is then
 * unset): a timer due beyond int64 is never reached by any ts_ms. */
int ordo__add(int64_t a, int64_t b, int64_t *sum);
/* a - b, saturating likewise (earnings totals, docs/rules.md). */
int64_t ordo__sat_sub(int64_t a, int64_t b);
/* floor(a * b / c) for a, b >= 0, c > 0, exact in 128 bits. */
int64_t ordo__muldiv(int64_t a, int64_t b, int64_t c);

#endif
