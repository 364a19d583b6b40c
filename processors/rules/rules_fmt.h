/*
 * ordo - text into fixed buffers for the rule modules (event ids, snapshot
 * errors) without stdio: each appends at len, never past size - 1, keeps
 * the buffer NUL-terminated and returns the new length.
 */
#ifndef ORDO_RULES_FMT_H
#define ORDO_RULES_FMT_H

#include <stddef.h>
#include <stdint.h>

/* The decimal form of v. */
size_t ordo__put_i64(char *buf, size_t len, size_t size, int64_t v);
/* s. */
size_t ordo__put_str(char *buf, size_t len, size_t size, const char *s);

#endif
