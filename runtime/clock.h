/*
 * ordo - the clocks of the plumbing (timeouts, backoff, stamping commands
 * at the door). The rules never read a clock: their time is ts_ms.
 */
#ifndef ORDO_CLOCK_H
#define ORDO_CLOCK_H

#include <stdint.h>

/* Milliseconds on a clock that never goes back: for timeouts. */
int64_t ordo_monotonic_ms(void);
/* Milliseconds since the Unix epoch, UTC: for ts_ms and ids. */
int64_t ordo_wall_ms(void);

/* A time given by a person: ms since the epoch (0 to INT64_MAX), or an
 * ISO-8601 / RFC 3339 date and time with a zone, to the ms
 * (YYYY-MM-DDTHH:MM[:SS[.fff]] then Z, +HH:MM, +HHMM or +HH), not before
 * 1970. 0, or -1 (then ORDO_TIME_EXPECTED says what is). */
int ordo_time_parse(const char *s, int64_t *ms);
#define ORDO_TIME_EXPECTED                                                     \
        "expected ms since the epoch or an ISO-8601 time with a zone "         \
        "(2026-12-04T03:00:00Z, 2026-12-04T04:00:00.250+01:00)"

#endif
