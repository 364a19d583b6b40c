#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

ordo_log_level_t ordo__log_level = ORDO_LOG_INFO;

static const char *names[] = { "error", "warn", "info", "debug" };

void ordo_log_set_level(ordo_log_level_t level) {
        ordo__log_level = level;
}

int ordo_log_level_parse(const char *s, ordo_log_level_t *level) {
        int i;
        for (i = 0; i < 4; i++)
                if (!strcmp(s, names[i])) {
                        *level = (ordo_log_level_t)i;
                        return 0;
                }
        return -1;
}

const char *ordo_log_quote(char *out, size_t out_size, const char *s) {
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        if (!out_size)
                return out;
        for (; s && *s; s++) {
                unsigned char c = (unsigned char)*s;
                char esc[4];
                size_t n = 0;

                if (c == '"' || c == '\\') {
                        esc[n++] = '\\';
                        esc[n++] = (char)c;
                } else if (c == '\n' || c == '\t') {
                        esc[n++] = '\\';
                        esc[n++] = c == '\n' ? 'n' : 't';
                } else if (c < 0x20 || c == 0x7f) {
                        esc[n++] = '\\';
                        esc[n++] = 'x';
                        esc[n++] = hex[c >> 4];
                        esc[n++] = hex[c & 15];
                } else
                        esc[n++] = (char)c;
                if (o + n >= out_size)
                        break;
                memcpy(out + o, esc, n);
                o += n;
        }
        out[o] = '\0';
        return out;
}

void ordo__log(ordo_log_level_t level, const char *component, const char *fmt,
               ...) {
        char line[2048], ts[32];
        struct timeval tv;
        struct tm tm;
        va_list ap;
        int n;

        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(line, sizeof(line), "ts=%s.%03dZ level=%s stage=%s ", ts,
                     (int)(tv.tv_usec / 1000), names[level], component);
        if (n < 0 || (size_t)n >= sizeof(line))
                n = 0;
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        /* One write per line so concurrent stages do not interleave. */
        fprintf(stderr, "%s\n", line);
}
