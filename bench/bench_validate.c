/*
 * ordo - cost of the door: ordo_validate_command() on a 136-byte
 * PlaceOrder (the command a flash sale receives most, as an API adapter
 * sends it: no ts_ms, no command_id), and ordo_msg_to_json() back. The
 * gateway and `ordo produce` pay the first once per command; STACK.md
 * expects about 2 us per command for jansson parse + field checks; the
 * bare jansson parse of the same text is printed beside it, so what the
 * field checks add can be read off on a machine that is busy.
 *
 * usage: bench_validate [ITERATIONS]   (default 1000000; best of 5 runs)
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_out.h"
#include "validate.h"

#define RUNS 5

static const char PLACE_ORDER[] =
    "{\"type\":\"PlaceOrder\",\"order_id\":\"o-20261111-000123456\","
    "\"activity_id\":\"act-double11-phone\","
    "\"user_id\":\"wx-oA3f9xQ2kLm7Nb-0000042\",\"qty\":1}";

static uint64_t sink; /* keeps the optimiser from dropping the work */

static double now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double run_validate(long iters) {
        ordo_msg_t m;
        char err[256];
        double t0 = now_ns();
        long i;

        for (i = 0; i < iters; i++) {
                if (ordo_validate_command(PLACE_ORDER, sizeof(PLACE_ORDER) - 1,
                                          NULL, &m, NULL, err, sizeof(err))) {
                        fprintf(stderr, "bench_validate: %s\n", err);
                        exit(1);
                }
                sink += (uint64_t)m.u.place.qty;
        }
        return (now_ns() - t0) / (double)iters;
}

static double run_parse_only(long iters) {
        json_error_t e;
        double t0 = now_ns();
        long i;

        for (i = 0; i < iters; i++) {
                json_t *j = json_loadb(PLACE_ORDER, sizeof(PLACE_ORDER) - 1,
                                       JSON_REJECT_DUPLICATES, &e);
                if (!j)
                        exit(1);
                sink += json_object_size(j);
                json_decref(j);
        }
        return (now_ns() - t0) / (double)iters;
}

static double run_to_json(long iters, const ordo_msg_t *m) {
        double t0 = now_ns();
        long i;

        for (i = 0; i < iters; i++) {
                char *s = ordo_msg_to_json(m);
                if (!s)
                        exit(1);
                sink += (uint64_t)s[1];
                free(s);
        }
        return (now_ns() - t0) / (double)iters;
}

int main(int argc, char **argv) {
        long iters = argc > 1 ? atol(argv[1]) : 1000000;
        double best_v = 1e18, best_p = 1e18, best_j = 1e18, t;
        ordo_msg_t m;
        int r;

        if (iters < 1)
                iters = 1;
        if (ordo_validate_command(PLACE_ORDER, sizeof(PLACE_ORDER) - 1, NULL,
                                  &m, NULL, NULL, 0))
                return 1;
        m.meta.ts_ms = 1762790400123; /* as the producer would stamp it */
        for (r = 0; r < RUNS; r++) {
                if ((t = run_validate(iters)) < best_v)
                        best_v = t;
                if ((t = run_parse_only(iters)) < best_p)
                        best_p = t;
                if ((t = run_to_json(iters, &m)) < best_j)
                        best_j = t;
        }
        printf("validate PlaceOrder (%zu bytes): %.0f ns/op, %.0f ops/s\n",
               sizeof(PLACE_ORDER) - 1, best_v, 1e9 / best_v);
        printf("jansson parse alone:  %.0f ns/op, %.0f ops/s\n", best_p,
               1e9 / best_p);
        printf("to_json  PlaceOrder: %.0f ns/op, %.0f ops/s\n", best_j,
               1e9 / best_j);
        return sink == 0;
}
