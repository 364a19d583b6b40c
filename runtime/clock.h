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

#endif
