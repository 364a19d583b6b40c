/*
 * ordo - text into fixed buffers (rules_fmt.h).
 */
#include "rules_fmt.h"

/* Appends the decimal form of v; returns the new length. */
size_t ordo__put_i64(char *buf, size_t len, size_t size, int64_t v) {
        char tmp[24];
        size_t n = 0;
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        do {
                tmp[n++] = (char)('0' + u % 10);
                u /= 10;
        } while (u);
        if (v < 0)
                tmp[n++] = '-';
        while (n && len + 1 < size)
                buf[len++] = tmp[--n];
        buf[len] = '\0';
        return len;
}

size_t ordo__put_str(char *buf, size_t len, size_t size, const char *s) {
        while (*s && len + 1 < size)
                buf[len++] = *s++;
        buf[len] = '\0';
        return len;
}
