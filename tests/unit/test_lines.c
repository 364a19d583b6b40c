/*
 * Bounded lines (producers/lines.h), the reader of `ordo produce`: a line
 * over the limit is skipped and measured, never held; everything else
 * comes back byte for byte, NULs and CRs included, whatever the read
 * sizes of a pipe.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lines.h"

/* A pipe fed by a thread, so inputs larger than the pipe's buffer work. */
typedef struct {
        int fd;
        const char *data;
        size_t len, chunk;
} feeder_t;

static void *feed(void *arg) {
        feeder_t *f = arg;
        size_t off = 0;
        while (off < f->len) {
                size_t n = f->len - off < f->chunk ? f->len - off : f->chunk;
                ssize_t w = write(f->fd, f->data + off, n);
                if (w <= 0)
                        break;
                off += (size_t)w;
        }
        close(f->fd);
        return NULL;
}

typedef struct {
        ordo_lines_t r;
        pthread_t thread;
        feeder_t f;
        int rfd;
} source_t;

static void open_source(source_t *s, const char *data, size_t len, size_t chunk,
                        size_t max) {
        int fds[2];
        cr_assert_eq(pipe(fds), 0);
        s->rfd = fds[0];
        s->f = (feeder_t){ fds[1], data, len, chunk };
        cr_assert_eq(pthread_create(&s->thread, NULL, feed, &s->f), 0);
        cr_assert_eq(ordo_lines_init(&s->r, fds[0], max), 0);
}

static void close_source(source_t *s) {
        ordo_lines_fini(&s->r);
        close(s->rfd);
        pthread_join(s->thread, NULL);
}

static void expect_line(source_t *s, const char *want, size_t want_len) {
        const char *line;
        size_t len;
        cr_assert_eq(ordo_lines_next(&s->r, &line, &len), ORDO_LINE_OK);
        cr_assert_eq(len, want_len, "length %zu, want %zu", len, want_len);
        cr_assert_eq(memcmp(line, want, len), 0);
}

static void expect_too_long(source_t *s, size_t want_len) {
        const char *line;
        size_t len;
        cr_assert_eq(ordo_lines_next(&s->r, &line, &len), ORDO_LINE_TOO_LONG);
        cr_assert_eq(len, want_len, "length %zu, want %zu", len, want_len);
}

static void expect_end(source_t *s) {
        const char *line;
        size_t len;
        cr_assert_eq(ordo_lines_next(&s->r, &line, &len), ORDO_LINE_END);
        cr_assert_eq(ordo_lines_next(&s->r, &line, &len), ORDO_LINE_END);
}

/* Every read size from one byte up gives the same lines. */
Test(lines, same_lines_whatever_the_read_size) {
        static const char in[] = "first\n\nthird\r\n\0nul\0\nlast";
        size_t chunk;

        for (chunk = 1; chunk <= sizeof(in); chunk++) {
                source_t s;
                open_source(&s, in, sizeof(in) - 1, chunk, 16);
                expect_line(&s, "first", 5);
                expect_line(&s, "", 0);
                expect_line(&s, "third\r", 6);
                expect_line(&s, "\0nul\0", 5);
                expect_line(&s, "last", 4);
                expect_end(&s);
                close_source(&s);
        }
}

/* At the limit a line is held; one byte over it is skipped and measured,
 * and the next line is read as usual. */
Test(lines, over_the_limit_is_skipped_and_measured) {
        char in[64];
        size_t chunk;

        memset(in, 'a', 8);
        in[8] = '\n';
        memset(in + 9, 'b', 9);
        in[18] = '\n';
        memcpy(in + 19, "ok\n", 3);
        memset(in + 22, 'c', 20); /* a last line, over, without '\n' */
        for (chunk = 1; chunk <= 42; chunk++) {
                source_t s;
                open_source(&s, in, 42, chunk, 8);
                expect_line(&s, "aaaaaaaa", 8);
                expect_too_long(&s, 9);
                expect_line(&s, "ok", 2);
                expect_too_long(&s, 20);
                expect_end(&s);
                close_source(&s);
        }
}

/* A line over the limit is measured without its "\r\n" ending, as
 * the command size limit counts (an outside audit: one byte over, when
 * the line was longer than the reader's buffer). */
Test(lines, over_the_limit_measured_without_crlf) {
        char in[64];
        size_t chunk;

        memset(in, 'b', 9);
        memcpy(in + 9, "\r\n", 2);
        memset(in + 11, 'd', 30);
        memcpy(in + 41, "\r\nok\r\n", 6);
        for (chunk = 1; chunk <= 47; chunk++) {
                source_t s;
                open_source(&s, in, 47, chunk, 8);
                expect_too_long(&s, 9);
                expect_too_long(&s, 30);
                expect_line(&s, "ok\r", 3);
                expect_end(&s);
                close_source(&s);
        }
}

/* A line of the limit ending in "\r\n" is held: the limit counts a
 * command without its ending; so is a last line's '\r' not counted. */
Test(lines, at_the_limit_with_crlf_is_held) {
        /* each ends in a last line without '\n': at the limit, then over */
        static const char *const ins[] = {
                "aaaaaaaa\r\nbbbbbbbbb\r\ncccccccc\r",
                "aaaaaaaa\r\nbbbbbbbbb\r\ndddddddddddddddddddd\r",
        };
        size_t k, chunk;

        for (k = 0; k < 2; k++) {
                size_t n = strlen(ins[k]);
                for (chunk = 1; chunk <= n; chunk++) {
                        source_t s;
                        open_source(&s, ins[k], n, chunk, 8);
                        expect_line(&s, "aaaaaaaa\r", 9);
                        expect_too_long(&s, 9);
                        if (k == 0)
                                expect_line(&s, "cccccccc\r", 9);
                        else
                                expect_too_long(&s, 20);
                        expect_end(&s);
                        close_source(&s);
                }
        }
}

/* A huge line costs the limit, not its size: 64 MiB through a reader
 * whose buffer holds a few KiB, then a line after it. */
Test(lines, huge_line_in_bounded_memory) {
        size_t big = 64u << 20;
        char *in = malloc(big + 4);
        source_t s;

        cr_assert(in);
        memset(in, 'z', big);
        memcpy(in + big, "\nyo\n", 4);
        open_source(&s, in, big + 4, 1 << 16, 4096);
        expect_too_long(&s, big);
        expect_line(&s, "yo", 2);
        expect_end(&s);
        close_source(&s);
        free(in);
}

Test(lines, read_error_is_reported) {
        const char *line;
        size_t len;
        ordo_lines_t r;
        int fd = open("/proc/self/mem", O_RDONLY); /* page 0: EIO */

        cr_assert_geq(fd, 0);
        cr_assert_eq(ordo_lines_init(&r, fd, 100), 0);
        cr_assert_eq(ordo_lines_next(&r, &line, &len), ORDO_LINE_ERROR);
        cr_assert_eq(errno, EIO);
        ordo_lines_fini(&r);
        close(fd);
}

Test(lines, empty_input) {
        source_t s;
        open_source(&s, "", 0, 1, 10);
        expect_end(&s);
        close_source(&s);
}

/* An error is final: the rest of a line cut by it never comes back as a
 * line of its own (helper review, session 9). A non-blocking pipe makes
 * the error (EAGAIN) in the middle of skipping a long line. */
Test(lines, error_is_final) {
        const char *line;
        size_t len;
        ordo_lines_t r;
        int fds[2];

        cr_assert_eq(pipe(fds), 0);
        cr_assert_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
        cr_assert_eq(write(fds[1], "0123456789", 10), 10);
        cr_assert_eq(ordo_lines_init(&r, fds[0], 4), 0);
        cr_assert_eq(ordo_lines_next(&r, &line, &len), ORDO_LINE_ERROR);
        cr_assert_eq(errno, EAGAIN);
        cr_assert_eq(write(fds[1], "abc\n{}\n", 7), 7);
        cr_assert_eq(ordo_lines_next(&r, &line, &len), ORDO_LINE_ERROR);
        ordo_lines_fini(&r);
        close(fds[0]);
        close(fds[1]);
}

Test(lines, absurd_limit_refused) {
        ordo_lines_t r;
        cr_assert_eq(ordo_lines_init(&r, 0, SIZE_MAX), -1);
        ordo_lines_fini(&r);
}
