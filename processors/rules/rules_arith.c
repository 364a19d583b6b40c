/*
 * ordo - checked arithmetic (rules_arith.h).
 */
#include "rules_arith.h"

int64_t ordo__sat_add(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_add_overflow(a, b, &r))
                return b > 0 ? INT64_MAX : INT64_MIN;
        return r;
}

int ordo__add(int64_t a, int64_t b, int64_t *sum) {
        return !__builtin_add_overflow(a, b, sum);
}

int64_t ordo__sat_sub(int64_t a, int64_t b) {
        int64_t r;
        if (__builtin_sub_overflow(a, b, &r))
                return b < 0 ? INT64_MAX : INT64_MIN;
        return r;
}

int64_t ordo__muldiv(int64_t a, int64_t b, int64_t c) {
        __extension__ typedef __int128 i128;
        i128 p = (i128)a * b;
        return (int64_t)(p / c);
}
