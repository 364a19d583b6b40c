/*
 * ordo - digests (rules_digest.h).
 */
#include "rules_digest.h"

#include <stddef.h>

uint64_t ordo__mix(uint64_t h, uint64_t v) {
        h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdULL;
        return h ^ (h >> 29);
}

uint64_t ordo__mix_str(uint64_t h, const char *s) {
        uint64_t f = 0xcbf29ce484222325ULL; /* FNV-1a */
        if (!s)
                return ordo__mix(h, 0);
        for (; *s; s++)
                f = (f ^ (unsigned char)*s) * 0x100000001b3ULL;
        return ordo__mix(h, f);
}
