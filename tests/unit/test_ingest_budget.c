/*
 * The gateway's budget of unauthenticated body bytes (producers/budget.h):
 * a total and a share per client address, both hard limits; a refused
 * take changes nothing; an address that gives all back leaves no entry,
 * and entries are never recycled under a holder.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "budget.h"

Test(budget, a_peer_cannot_take_more_than_its_share) {
        ordo_budget_t *b = ordo_budget_new(1000, 400, 64);

        cr_assert_eq(ordo_budget_take(b, "10.0.0.1", 300), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_take(b, "10.0.0.1", 101), ORDO_BUDGET_KEY);
        cr_assert_eq(ordo_budget_held(b, "10.0.0.1"), 300,
                     "a refused take counted");
        cr_assert_eq(ordo_budget_take(b, "10.0.0.1", 100), ORDO_BUDGET_OK);
        /* another address still has its whole share */
        cr_assert_eq(ordo_budget_take(b, "10.0.0.2", 400), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_total(b), 800);
        ordo_budget_destroy(b);
}

Test(budget, the_total_binds_before_the_shares) {
        ordo_budget_t *b = ordo_budget_new(1000, 400, 64);

        cr_assert_eq(ordo_budget_take(b, "a", 400), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_take(b, "b", 400), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_take(b, "c", 201), ORDO_BUDGET_TOTAL);
        cr_assert_eq(ordo_budget_take(b, "c", 200), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_take(b, "d", 1), ORDO_BUDGET_TOTAL);
        ordo_budget_give(b, "a", 400);
        cr_assert_eq(ordo_budget_take(b, "d", 400), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_total(b), 1000);
        ordo_budget_destroy(b);
}

Test(budget, a_share_above_the_total_is_the_total) {
        ordo_budget_t *b = ordo_budget_new(100, 1000, 16);

        cr_assert_eq(ordo_budget_take(b, "a", 100), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_take(b, "a", 1), ORDO_BUDGET_TOTAL);
        ordo_budget_destroy(b);
}

Test(budget, giving_back_frees_the_entry_and_never_goes_below_zero) {
        ordo_budget_t *b = ordo_budget_new(1000, 1000, 16);

        cr_assert_eq(ordo_budget_take(b, "a", 10), ORDO_BUDGET_OK);
        ordo_budget_give(b, "a", 25); /* more than held */
        cr_assert_eq(ordo_budget_held(b, "a"), 0);
        cr_assert_eq(ordo_budget_total(b), 0);
        ordo_budget_give(b, "nobody", 5);
        cr_assert_eq(ordo_budget_total(b), 0);
        cr_assert_eq(ordo_budget_take(b, "a", 0), ORDO_BUDGET_OK);
        cr_assert_eq(ordo_budget_held(b, "a"), 0, "0 bytes made an entry");
        ordo_budget_destroy(b);
}

/* 16 slots: more holders than fit are refused (TABLE), never counted in
 * another's entry; once holders give back, their slots serve others. */
Test(budget, a_full_table_refuses_rather_than_recycle_a_holder) {
        ordo_budget_t *b = ordo_budget_new(1000000, 1000, 16);
        char key[32];
        int i, ok = 0, full = 0;

        for (i = 0; i < 64; i++) {
                ordo_budget_result_t r;
                snprintf(key, sizeof(key), "192.0.2.%d", i);
                r = ordo_budget_take(b, key, 10);
                ok += r == ORDO_BUDGET_OK;
                full += r == ORDO_BUDGET_TABLE;
        }
        cr_assert_leq(ok, 16);
        cr_assert_eq(ok + full, 64);
        cr_assert_eq(ordo_budget_total(b), 10 * ok);
        for (i = 0; i < 64; i++) {
                snprintf(key, sizeof(key), "192.0.2.%d", i);
                cr_assert_leq(ordo_budget_held(b, key), 10, "%s", key);
                ordo_budget_give(b, key, 10);
        }
        cr_assert_eq(ordo_budget_total(b), 0);
        for (i = 0; i < 16; i++) {
                snprintf(key, sizeof(key), "198.51.100.%d", i);
                if (ordo_budget_take(b, key, 1) == ORDO_BUDGET_OK)
                        break;
        }
        cr_assert_lt(i, 16, "no slot came free");
        ordo_budget_destroy(b);
}
