/*
 * ordo - lines from a file descriptor, each held in a bounded buffer.
 *
 * `ordo produce` reads JSON lines from files and pipes it does not
 * control. getline() would hold a line whole however long it is: a
 * multi-gigabyte line without a newline (a binary file, a broken
 * export) would take that much memory before the 64 KiB command limit
 * could refuse it. Here a line longer than the limit is skipped to its
 * newline and only its length is kept; memory stays at the limit.
 * Embedded NUL bytes stay in the line (its length is explicit), so the
 * validator sees and refuses them.
 */
#ifndef ORDO_LINES_H
#define ORDO_LINES_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ordo_lines_s {
        int fd;
        char *buf;
        size_t max;        /* longest line held, without its "\n" or "\r\n" */
        size_t start, end; /* unread bytes: buf[start..end) */
        int eof;
        int failed; /* a read failed: every later call says so too */
        /* optional: once *stop is set (a SIGINT or SIGTERM handler), the
         * input ends (ORDO_LINE_ERROR, errno EINTR), even while waiting
         * on a silent pipe or terminal */
        volatile sig_atomic_t *stop;
} ordo_lines_t;

typedef enum {
        ORDO_LINE_OK = 0,   /* *line holds *len bytes, without the '\n'
                             * (a '\r' before it stays) */
        ORDO_LINE_TOO_LONG, /* over max: skipped; *len is its length
                             * without its ending ("\n", "\r\n") */
        ORDO_LINE_END,      /* no more input */
        ORDO_LINE_ERROR     /* read(2) failed: errno says why; final */
} ordo_line_result_t;

/* Reads fd (not owned: the caller closes it) in lines of at most max
 * bytes. Returns -1 if the buffer cannot be allocated. */
int ordo_lines_init(ordo_lines_t *r, int fd, size_t max);
void ordo_lines_fini(ordo_lines_t *r);

/* The next line. A last line without a '\n' is a line too. *line stays
 * valid until the next call. */
ordo_line_result_t ordo_lines_next(ordo_lines_t *r, const char **line,
                                   size_t *len);

#endif
