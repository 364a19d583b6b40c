/*
 * ordo - bounded lines from a file descriptor (see lines.h).
 */
#include "lines.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Room for a whole line of max bytes plus its "\r\n", and as much
 * again so that one read() brings many short lines. */
static size_t buf_size(const ordo_lines_t *r) {
        return 2 * (r->max + 2);
}

int ordo_lines_init(ordo_lines_t *r, int fd, size_t max) {
        memset(r, 0, sizeof(*r));
        r->fd = fd;
        r->max = max;
        if (max > SIZE_MAX / 2 - 2)
                return -1;
        r->buf = malloc(buf_size(r));
        return r->buf ? 0 : -1;
}

void ordo_lines_fini(ordo_lines_t *r) {
        free(r->buf);
        r->buf = NULL;
}

/* Waits until fd can be read or *stop is set: 0, or -1 (errno EINTR)
 * when stopping. SIGINT and SIGTERM are blocked but for the wait itself
 * (ppoll), so one that comes between the check of *stop and the wait
 * still ends the wait: a pipe or terminal that stays silent cannot hold
 * a stop back. */
static int wait_readable(ordo_lines_t *r) {
        struct pollfd pfd = { r->fd, POLLIN, 0 };
        sigset_t block, orig;
        int rc = 0;

        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &orig);
        while (!*r->stop && ppoll(&pfd, 1, NULL, &orig) < 0 && errno == EINTR)
                ;
        if (*r->stop) {
                errno = EINTR;
                rc = -1;
        }
        pthread_sigmask(SIG_SETMASK, &orig, NULL);
        return rc;
}

/* Moves the unread bytes to the front and reads more after them: 1 if
 * bytes came, 0 at the end of input, -1 on a read error. */
static int fill(ordo_lines_t *r) {
        ssize_t got;

        if (r->eof)
                return 0;
        if (r->start) {
                memmove(r->buf, r->buf + r->start, r->end - r->start);
                r->end -= r->start;
                r->start = 0;
        }
        do
                got = r->stop && wait_readable(r)
                          ? -1
                          : read(r->fd, r->buf + r->end, buf_size(r) - r->end);
        while (got < 0 && errno == EINTR && !(r->stop && *r->stop));
        if (got < 0) {
                /* a line cut by the error must not come back as one */
                r->failed = 1;
                return -1;
        }
        if (got == 0) {
                r->eof = 1;
                return 0;
        }
        r->end += (size_t)got;
        return 1;
}

/* A line's length as the limit counts it: a '\r' that ends it is part of
 * its "\r\n" ending, which callers drop too. */
static size_t counted(const char *line, size_t len) {
        return len - (len && line[len - 1] == '\r');
}

/* Over max: counts the line's bytes up to its '\n' (or the end), its
 * "\r\n" ending not counted. */
static ordo_line_result_t skip_long_line(ordo_lines_t *r, size_t *len) {
        size_t n = 0;
        char *nl, last = '\0';

        for (;;) {
                nl = memchr(r->buf + r->start, '\n', r->end - r->start);
                if (nl) {
                        n += (size_t)(nl - (r->buf + r->start));
                        if (nl > r->buf + r->start)
                                last = nl[-1];
                        r->start = (size_t)(nl - r->buf) + 1;
                        *len = n - (n && last == '\r');
                        return ORDO_LINE_TOO_LONG;
                }
                n += r->end - r->start;
                if (r->end > r->start)
                        last = r->buf[r->end - 1];
                r->start = r->end = 0;
                switch (fill(r)) {
                case 0: /* the last line, measured as counted() does */
                        *len = n - (n && last == '\r');
                        return ORDO_LINE_TOO_LONG;
                case -1:
                        return ORDO_LINE_ERROR;
                }
        }
}

ordo_line_result_t ordo_lines_next(ordo_lines_t *r, const char **line,
                                   size_t *len) {
        size_t scanned = 0; /* bytes already searched for a '\n' */
        char *nl;

        if (r->failed)
                return ORDO_LINE_ERROR;
        for (;;) {
                char *from = r->buf + r->start + scanned;
                size_t avail = r->end - r->start;

                nl = memchr(from, '\n', avail - scanned);
                if (nl) {
                        *line = r->buf + r->start;
                        *len = (size_t)(nl - *line);
                        r->start += *len + 1;
                        if (counted(*line, *len) <= r->max)
                                return ORDO_LINE_OK;
                        *len = counted(*line, *len);
                        return ORDO_LINE_TOO_LONG;
                }
                scanned = avail;
                /* max bytes and a '\r' may still end with their '\n' */
                if (avail > r->max + 1)
                        return skip_long_line(r, len);
                switch (fill(r)) {
                case 0:
                        if (r->end == r->start)
                                return ORDO_LINE_END;
                        /* the last line, without a '\n' */
                        *line = r->buf + r->start;
                        *len = r->end - r->start;
                        r->start = r->end;
                        if (counted(*line, *len) <= r->max)
                                return ORDO_LINE_OK;
                        *len = counted(*line, *len);
                        return ORDO_LINE_TOO_LONG;
                case -1:
                        return ORDO_LINE_ERROR;
                }
        }
}
