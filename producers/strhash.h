/*
 * ordo - FNV-1a over a C string, for the gateway's keyed tables
 * (ratelimit.c, budget.c). Keys are short and chosen by clients; a
 * collision only costs a probe, and each table bounds its probes.
 */
#ifndef ORDO_STRHASH_H
#define ORDO_STRHASH_H

#include <stddef.h>
#include <stdint.h>

static inline size_t ordo_str_hash(const char *s) {
        uint64_t h = 1469598103934665603ULL;
        while (*s)
                h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
        return (size_t)h;
}

#endif
