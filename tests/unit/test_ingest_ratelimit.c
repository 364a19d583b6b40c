/*
 * The gateway's per-user token bucket (producers/ratelimit.h), checked
 * against the definition of a token bucket: `burst` at once, then `rate` a
 * second; time from the test, not the clock.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "ratelimit.h"

Test(ratelimit, burst_then_refused_with_retry) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(5, 10, 1024);
        int i;

        for (i = 0; i < 10; i++)
                cr_assert(ordo_ratelimit_take(rl, "u1", 1000),
                          "take %d of the burst", i);
        cr_assert_not(ordo_ratelimit_take(rl, "u1", 1000));
        /* 5 tokens/s: the next one is 200 ms away. */
        cr_assert_eq(ordo_ratelimit_wait(rl, "u1", 1000, 1), 200);
        cr_assert_not(ordo_ratelimit_take(rl, "u1", 1199));
        cr_assert_eq(ordo_ratelimit_wait(rl, "u1", 1199, 1), 1);
        cr_assert(ordo_ratelimit_take(rl, "u1", 1200));
        cr_assert_not(ordo_ratelimit_take(rl, "u1", 1200));
        ordo_ratelimit_destroy(rl);
}

Test(ratelimit, users_are_independent) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(1, 2, 1024);
        cr_assert(ordo_ratelimit_take(rl, "bot", 0));
        cr_assert(ordo_ratelimit_take(rl, "bot", 0));
        cr_assert_not(ordo_ratelimit_take(rl, "bot", 0));
        cr_assert(ordo_ratelimit_take(rl, "human", 0));
        ordo_ratelimit_destroy(rl);
}

/* Over any interval of T ms a key gets at most burst + rate * T / 1000
 * tokens, and a key asking every ms gets at least rate * T / 1000. */
Test(ratelimit, long_run_matches_the_rate) {
        const int64_t rate = 7, burst = 3, T = 60000;
        ordo_ratelimit_t *rl = ordo_ratelimit_new(rate, burst, 1024);
        int64_t t, got = 0;

        for (t = 0; t < T; t++)
                got += ordo_ratelimit_take(rl, "u", t);
        cr_assert_leq(got, burst + rate * T / 1000);
        cr_assert_geq(got, rate * T / 1000);
        ordo_ratelimit_destroy(rl);
}

Test(ratelimit, idle_refills_only_up_to_burst) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(100, 4, 1024);
        int i, got = 0;
        for (i = 0; i < 4; i++)
                ordo_ratelimit_take(rl, "u", 0);
        for (i = 0; i < 10; i++)
                got += ordo_ratelimit_take(rl, "u", 3600000);
        cr_assert_eq(got, 4);
        ordo_ratelimit_destroy(rl);
}

Test(ratelimit, clock_going_back_refills_nothing) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(1, 1, 1024);
        cr_assert(ordo_ratelimit_take(rl, "u", 10000));
        cr_assert_not(ordo_ratelimit_take(rl, "u", 5000));
        cr_assert_not(ordo_ratelimit_take(rl, "u", 10000));
        cr_assert(ordo_ratelimit_take(rl, "u", 11000));
        ordo_ratelimit_destroy(rl);
}

Test(ratelimit, zero_rate_is_no_limit) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(0, 1, 16);
        int i;
        for (i = 0; i < 1000; i++)
                cr_assert(ordo_ratelimit_take(rl, "u", 0));
        ordo_ratelimit_destroy(rl);
}

/* More users than the table holds: every user still gets at most its
 * burst at once (a recycled bucket starts full, never fuller). */
Test(ratelimit, full_table_never_exceeds_burst) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(1, 2, 16);
        char key[32];
        int u, i, got;
        for (u = 0; u < 500; u++) {
                snprintf(key, sizeof(key), "user-%d", u);
                for (got = 0, i = 0; i < 5; i++)
                        got += ordo_ratelimit_take(rl, key, 0);
                cr_assert_eq(got, 2, "user %d got %d", u, got);
        }
        ordo_ratelimit_destroy(rl);
}

/* Other keys cannot refill a drained bucket by pushing it out of a full
 * table: the bucket holding the most tokens is recycled, and a drained
 * one holds the fewest (it was the longest idle, and came back full). */
Test(ratelimit, other_keys_cannot_refill_a_drained_bucket) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(1, 10, 16);
        char key[32];
        int u, i;
        for (i = 0; i < 10; i++)
                cr_assert(ordo_ratelimit_take(rl, "victim", 0));
        cr_assert_not(ordo_ratelimit_take(rl, "victim", 0));
        for (u = 0; u < 200; u++) {
                snprintf(key, sizeof(key), "other-%d", u);
                cr_assert(ordo_ratelimit_take(rl, key, 1));
        }
        cr_assert_not(ordo_ratelimit_take(rl, "victim", 1),
                      "the victim's bucket was recycled full");
        ordo_ratelimit_destroy(rl);
}

/* A refused request gives back what it took: the bucket is as before. */
Test(ratelimit, give_restores_a_take) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(1, 3, 1024);
        int i, got = 0;

        cr_assert(ordo_ratelimit_take(rl, "k", 0));
        cr_assert(ordo_ratelimit_take(rl, "k", 0));
        ordo_ratelimit_give(rl, "k", 0);
        ordo_ratelimit_give(rl, "k", 0);
        for (i = 0; i < 5; i++)
                got += ordo_ratelimit_take(rl, "k", 0);
        cr_assert_eq(got, 3, "the whole burst is back, no more: %d", got);
        /* Never above burst. */
        ordo_ratelimit_give(rl, "k", 0);
        ordo_ratelimit_give(rl, "k", 0);
        ordo_ratelimit_give(rl, "k", 0);
        ordo_ratelimit_give(rl, "k", 0);
        for (got = 0, i = 0; i < 5; i++)
                got += ordo_ratelimit_take(rl, "k", 0);
        cr_assert_eq(got, 3);
        ordo_ratelimit_destroy(rl);
}

/* A batch needing n tokens of one bucket waits for all n, not for the
 * first (an outside audit: honouring the one-token wait gave two more
 * 429s). Asking takes nothing. */
Test(ratelimit, wait_for_several_tokens) {
        ordo_ratelimit_t *rl = ordo_ratelimit_new(10, 5, 64);
        int i;

        for (i = 0; i < 5; i++)
                cr_assert(ordo_ratelimit_take(rl, "u", 0));
        cr_assert_eq(ordo_ratelimit_wait(rl, "u", 0, 1), 100);
        cr_assert_eq(ordo_ratelimit_wait(rl, "u", 0, 3), 300);
        cr_assert_eq(ordo_ratelimit_wait(rl, "u", 100, 3), 200);
        cr_assert_eq(ordo_ratelimit_wait(rl, "u", 100, 6), INT64_MAX);
        cr_assert_eq(ordo_ratelimit_wait(rl, "v", 100, 5), 0, "a new key");
        /* the token earned by t = 100 is still there: the waits took
         * nothing */
        cr_assert(ordo_ratelimit_take(rl, "u", 100));
        cr_assert_not(ordo_ratelimit_take(rl, "u", 100));
        ordo_ratelimit_destroy(rl);
}
