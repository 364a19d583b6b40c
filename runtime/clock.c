#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static int64_t ms(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ordo_monotonic_ms(void) {
        return ms(CLOCK_MONOTONIC);
}

int64_t ordo_wall_ms(void) {
        return ms(CLOCK_REALTIME);
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
        int64_t era, yoe, doy, doe;
        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

/* n digits at *p as a number, advancing *p; -1 if they are not digits. */
static int digits(const char **p, int n) {
        int v = 0, i;
        for (i = 0; i < n; i++) {
                if ((*p)[i] < '0' || (*p)[i] > '9')
                        return -1;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        return v;
}

/* ISO-8601 / RFC 3339 date and time with a zone, to ms since the epoch:
 * YYYY-MM-DDTHH:MM[:SS[.fff]](Z|+HH:MM|-HH:MM|+HHMM|+HH). 0 or -1. */
static int parse_iso(const char *s, int64_t *out) {
        static const int mdays[] = { 31, 29, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31 };
        const char *p = s;
        int y, mo, d, h, mi, sec = 0, ms = 0, tz = 0, sign, th, tm = 0, i;

        y = digits(&p, 4);
        if (y < 0 || *p++ != '-' || (mo = digits(&p, 2)) < 1 || mo > 12 ||
            *p++ != '-' || (d = digits(&p, 2)) < 1 || d > mdays[mo - 1] ||
            (mo == 2 && d == 29 && (y % 4 || (y % 100 == 0 && y % 400))) ||
            (*p != 'T' && *p != 't' && *p != ' '))
                return -1;
        p++;
        if ((h = digits(&p, 2)) < 0 || h > 23 || *p++ != ':' ||
            (mi = digits(&p, 2)) < 0 || mi > 59)
                return -1;
        if (*p == ':') {
                p++;
                if ((sec = digits(&p, 2)) < 0 || sec > 59)
                        return -1;
                if (*p == '.' || *p == ',') {
                        p++;
                        if (*p < '0' || *p > '9')
                                return -1;
                        /* milliseconds: the first three digits count */
                        for (i = 0; *p >= '0' && *p <= '9'; i++, p++)
                                if (i < 3)
                                        ms = ms * 10 + (*p - '0');
                        for (; i < 3; i++)
                                ms *= 10;
                }
        }
        if (*p == 'Z' || *p == 'z') {
                p++;
        } else if (*p == '+' || *p == '-') {
                sign = *p++ == '-' ? -1 : 1;
                if ((th = digits(&p, 2)) < 0 || th > 23)
                        return -1;
                /* +01, +0100 or +01:00; "+01:" is cut short */
                if (*p == ':' && !*++p)
                        return -1;
                if (*p && ((tm = digits(&p, 2)) < 0 || tm > 59))
                        return -1;
                tz = sign * (th * 60 + tm);
        } else {
                return -1; /* no zone: local time would be a guess */
        }
        if (*p)
                return -1;
        *out = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
                 (int64_t)tz * 60) *
                1000) +
               ms;
        return 0;
}

int ordo_time_parse(const char *s, int64_t *ms) {
        char *end;

        if (*s < '0' || *s > '9') /* no sign, no blank */
                return -1;
        errno = 0;
        *ms = strtoll(s, &end, 10);
        if (!*end)
                return errno ? -1 : 0;
        return parse_iso(s, ms) || *ms < 0 ? -1 : 0;
}
