/*
 * ordo - logging: one line per event, key=value, to stderr. The level is
 * checked before anything is formatted. The rules never log.
 */
#ifndef ORDO_LOG_H
#define ORDO_LOG_H

#include <stddef.h>

typedef enum {
        ORDO_LOG_ERROR = 0,
        ORDO_LOG_WARN = 1,
        ORDO_LOG_INFO = 2,
        ORDO_LOG_DEBUG = 3,
} ordo_log_level_t;

extern ordo_log_level_t ordo__log_level;

void ordo_log_set_level(ordo_log_level_t level);
/* "error", "warn", "info", "debug"; returns -1 if unknown. */
int ordo_log_level_parse(const char *s, ordo_log_level_t *level);

/* s made safe for a quoted log value ("...%s..."): backslash and double
 * quote escaped, control bytes as \n, \t or \xNN, so that a value
 * taken from input (an id, a store's or a library's message) cannot end
 * the value early or split the line. Truncated to fit; returns out. */
const char *ordo_log_quote(char *out, size_t out_size, const char *s);

void ordo__log(ordo_log_level_t level, const char *component, const char *fmt,
               ...) __attribute__((format(printf, 3, 4)));

/* ORDO_LOG(INFO, "stream", "msg=assigned partition=%d", p) */
#define ORDO_LOG(lvl, component, ...)                                          \
        do {                                                                   \
                if (ORDO_LOG_##lvl <= ordo__log_level)                         \
                        ordo__log(ORDO_LOG_##lvl, component, __VA_ARGS__);     \
        } while (0)

#endif
