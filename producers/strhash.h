/*
 * ordo - the hash of the gateway's keyed tables (ratelimit.c, budget.c):
 * FNV-1a over a C string from a per-table random seed, then mixed
 * (murmur3's finaliser) so that every bit of the seed reaches the slot
 * bits. Keys are chosen by clients: unseeded, a client could compute
 * offline keys that share another's probe window (and push it out of a
 * full window); seeded, it cannot aim. Each table bounds its probes.
 */
#ifndef ORDO_STRHASH_H
#define ORDO_STRHASH_H

#include <stddef.h>
#include <stdint.h>

static inline size_t ordo_str_hash(const char *s, uint64_t seed) {
        uint64_t h = 1469598103934665603ULL ^ seed;
        while (*s)
                h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return (size_t)h;
}

#endif
