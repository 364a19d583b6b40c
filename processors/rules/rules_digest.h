/*
 * ordo - state digests of the rule modules (rules.h "Digests").
 */
#ifndef ORDO_RULES_DIGEST_H
#define ORDO_RULES_DIGEST_H

#include <stdint.h>

/* Digest helpers: mix values into h; items are combined by addition so
 * the digest does not depend on table layout or insertion order. */
uint64_t ordo__mix(uint64_t h, uint64_t v);
uint64_t ordo__mix_str(uint64_t h, const char *s);

#endif
