/*
 * ordo - random bytes for the plumbing's identifiers (id generators'
 * instances, the read model's mark). Never for the rules.
 */
#ifndef ORDO_RANDOM_H
#define ORDO_RANDOM_H

#include <stddef.h>

/* n bytes from /dev/urandom; where it cannot be read, the wall clock,
 * the monotonic clock and the process id mixed in instead: unique enough
 * between processes, never an error. */
void ordo_random_bytes(void *buf, size_t n);

#endif
