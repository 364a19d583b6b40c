/*
 * ordo - what the stand-alone benchmark programs share for their
 * command lines.
 */
#ifndef ORDO_BENCH_ARGS_H
#define ORDO_BENCH_ARGS_H

#include <errno.h>
#include <stdlib.h>

/* A decimal integer in [lo, hi], the whole string: 0, or -1. */
static inline int parse_long(const char *s, long lo, long hi, long *out) {
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi)
                return -1;
        *out = v;
        return 0;
}

#endif
