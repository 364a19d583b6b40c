/*
 * What a stage pays per decision for its metrics: ordo_metrics_decision
 * (one counter and one histogram observation under the registry's mutex)
 * from 1, 2 and 4 threads at once, as `ordo run`'s processors call it.
 *
 * usage: bench_metrics [CALLS_PER_THREAD]   (default 2,000,000)
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "bench_args.h"
#include "clock.h"
#include "metrics.h"

static long calls = 2000000;

static void *worker(void *arg) {
        static const char *reasons[] = { NULL, "SOLD_OUT", "LIMIT_EXCEEDED",
                                         NULL };
        const char *stage = arg;
        int64_t ts = ordo_wall_ms();
        long i;
        for (i = 0; i < calls; i++)
                ordo_metrics_decision(stage, "PlaceOrder", reasons[i & 3], ts);
        return NULL;
}

static double now_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
        static const char *stages[] = { "activity", "order", "referral",
                                        "commission" };
        int threads[] = { 1, 2, 4 }, k, i;
        if (argc > 1 && parse_long(argv[1], 1, 1000000000L, &calls)) {
                fprintf(stderr, "usage: bench_metrics [CALLS_PER_THREAD]\n");
                return 2;
        }
        printf("threads  calls/thread  ns/call  calls/s (all threads)\n");
        for (k = 0; k < 3; k++) {
                pthread_t t[4];
                double t0 = now_s(), dt;
                for (i = 0; i < threads[k]; i++)
                        pthread_create(&t[i], NULL, worker, (void *)stages[i]);
                for (i = 0; i < threads[k]; i++)
                        pthread_join(t[i], NULL);
                dt = now_s() - t0;
                printf("%7d  %12ld  %7.0f  %.2fM\n", threads[k], calls,
                       dt * 1e9 / (double)calls,
                       (double)calls * threads[k] / dt / 1e6);
        }
        return 0;
}
