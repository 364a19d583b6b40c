/*
 * ordo - the commission processor against RULES.md "Commission" and
 * "Earnings", driven through the four processors wired as in DESIGN.md.
 * Expected amounts are computed here from the formulas of RULES.md.
 */
#include <criterion/criterion.h>

#include "test_rules_util.h"

#define PAY_AT 2000

static world_t w;

/* Activity "act" at price with the given levels; chain buyer -> p1 ->
 * p2 -> p3 bound at ts 100. */
static void setup(int64_t price, const int64_t *bps, int n) {
        ordo_msg_t m = t_create("act", 100, price, 10, 0, 1000000000);
        int i;
        world_init(&w);
        m.u.activity.n_commission_bps = n;
        for (i = 0; i < n; i++)
                m.u.activity.commission_bps[i] = bps[i];
        m.u.activity.pay_timeout_ms = 1000000;
        m.u.activity.auto_receive_ms = 1000000;
        m.u.activity.freeze_ms = 1000000;
        world_send(&w, &m);
        m = t_bind("buyer", "p1", 100);
        world_send(&w, &m);
        m = t_bind("p1", "p2", 100);
        world_send(&w, &m);
        m = t_bind("p2", "p3", 100);
        world_send(&w, &m);
}

static void send(ordo_msg_t m) {
        world_send(&w, &m);
}

static void buy_and_pay(const char *order, int64_t price, int64_t ts) {
        send(t_place(order, "act", "buyer", 1, 1000));
        send(t_pay(order, "pay", price, ts));
}

static const ordo_msg_t *nth(const tout_t *o, ordo_msg_type_t type, int n) {
        size_t i;
        for (i = 0; i < o->n; i++)
                if (o->v[i].type == type && n-- == 0)
                        return &o->v[i];
        return NULL;
}

static void check_conservation(void) {
        /* RULES.md Earnings: summed over all users, pending + settled +
         * reversed equals the total accrued */
        ordo_earnings_t sum;
        int64_t accrued = 0, total;
        size_t i;
        for (i = 0; i < w.log.n; i++)
                if (w.log.v[i].type == ORDO_MSG_COMMISSION_ACCRUED)
                        accrued += w.log.v[i].u.commission.amount_cents;
        ordo_commission_totals(w.com, &sum, &total);
        cr_assert_eq(total, accrued);
        cr_assert_eq(sum.pending_cents + sum.settled_cents + sum.reversed_cents,
                     accrued);
}

Test(commission, rounding_333_and_77_bps) {
        /* RULES.md On PAID: accrued = floor(amount_cents * bps / 10000);
         * level 1 is the buyer's parent, level 2 its parent */
        int64_t bps[2] = { 333, 77 };
        const ordo_msg_t *a1, *a2;
        ordo_earnings_t e;
        setup(9999, bps, 2);
        buy_and_pay("o1", 9999, PAY_AT);
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED), 2);
        a1 = nth(&w.step, ORDO_MSG_COMMISSION_ACCRUED, 0);
        a2 = nth(&w.step, ORDO_MSG_COMMISSION_ACCRUED, 1);
        cr_assert_eq(a1->u.commission.level, 1);
        cr_assert_str_eq(a1->u.commission.beneficiary_id, "p1");
        cr_assert_str_eq(a1->u.commission.buyer_id, "buyer");
        cr_assert_eq(a1->u.commission.accrued_cents, 9999 * 333 / 10000);
        cr_assert_eq(a1->u.commission.accrued_cents, 332);
        cr_assert_eq(a1->u.commission.rate_bps, 333);
        cr_assert_str_eq(a1->u.commission.status, "PENDING");
        cr_assert_eq(a2->u.commission.level, 2);
        cr_assert_str_eq(a2->u.commission.beneficiary_id, "p2");
        cr_assert_eq(a2->u.commission.accrued_cents, 9999 * 77 / 10000);
        cr_assert_eq(a2->meta.version, 2, "one aggregate per order");
        cr_assert_str_eq(a2->meta.aggregate_id, "o1");
        cr_assert_eq(ordo_commission_earnings(w.com, "p1", &e), 0);
        cr_assert_eq(e.pending_cents, 332);
        cr_assert_eq(ordo_commission_earnings(w.com, "p3", &e), -1,
                     "two levels only");
        check_conservation();
        world_fini(&w);
}

Test(commission, partial_refunds_sum_to_total) {
        /* RULES.md On every refund: reversed total = floor(accrued * R /
         * P); a full refund reverses every entry exactly, REVERSED */
        int64_t bps[2] = { 333, 77 }, refunds[3] = { 1234, 4321, 4444 };
        int64_t acc[2] = { 9999 * 333 / 10000, 9999 * 77 / 10000 };
        int64_t rev[2] = { 0, 0 }, R = 0, want;
        ordo_earnings_t e;
        char id[8];
        int i, l;
        setup(9999, bps, 2);
        buy_and_pay("o1", 9999, PAY_AT);
        for (i = 0; i < 3; i++) {
                snprintf(id, sizeof(id), "r%d", i);
                send(t_refund("o1", id, refunds[i], PAY_AT + 1 + i));
                R += refunds[i];
                for (l = 0; l < 2; l++) {
                        const ordo_msg_t *m = NULL;
                        size_t k;
                        for (k = 0; k < w.step.n; k++)
                                if (w.step.v[k].type ==
                                        ORDO_MSG_COMMISSION_REVERSED &&
                                    w.step.v[k].u.commission.level == l + 1)
                                        m = &w.step.v[k];
                        want = acc[l] * R / 9999;
                        if (want == rev[l]) {
                                cr_assert_null(m, "no zero reversal");
                                continue;
                        }
                        cr_assert_not_null(m);
                        cr_assert_eq(m->u.commission.amount_cents,
                                     want - rev[l]);
                        cr_assert_eq(m->u.commission.reversed_cents, want);
                        cr_assert_str_eq(m->u.commission.status,
                                         i == 2 ? "REVERSED" : "PENDING");
                        rev[l] = want;
                }
        }
        cr_assert_eq(rev[0], acc[0]);
        cr_assert_eq(rev[1], acc[1]);
        ordo_commission_earnings(w.com, "p1", &e);
        cr_assert_eq(e.pending_cents, 0);
        cr_assert_eq(e.reversed_cents, acc[0]);
        /* REFUNDED never settles */
        send(t_tick(INT64_MAX / 4));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_SETTLED), 0);
        check_conservation();
        world_fini(&w);
}

Test(commission, settlement_after_partial_refund) {
        /* RULES.md On SETTLED: each entry settles its remainder accrued -
         * reversed */
        int64_t bps[2] = { 1000, 500 };
        int64_t acc = 9999 * 1000 / 10000, rev = acc * 1000 / 9999;
        const ordo_msg_t *s1;
        ordo_earnings_t e;
        setup(9999, bps, 2);
        buy_and_pay("o1", 9999, PAY_AT);
        send(t_refund("o1", "r1", 1000, PAY_AT + 1));
        send(t_receipt("o1", PAY_AT + 2));
        send(t_tick(PAY_AT + 2 + 1000000));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_SETTLED), 2);
        s1 = nth(&w.step, ORDO_MSG_COMMISSION_SETTLED, 0);
        cr_assert_eq(s1->u.commission.amount_cents, acc - rev);
        cr_assert_str_eq(s1->u.commission.status, "SETTLED");
        cr_assert_eq(s1->meta.ts_ms, PAY_AT + 2 + 1000000,
                     "the settlement deadline");
        ordo_commission_earnings(w.com, "p1", &e);
        cr_assert_eq(e.settled_cents, acc - rev);
        cr_assert_eq(e.reversed_cents, rev);
        cr_assert_eq(e.pending_cents, 0);
        check_conservation();
        world_fini(&w);
}

Test(commission, temporal_join) {
        /* RULES.md On PAID: only bindings with bound_ms <= paid_ms */
        int64_t bps[3] = { 1000, 500, 250 };
        setup(10000, bps, 3);
        send(t_bind("late", "p1", 5000));
        send(t_place("o1", "act", "late", 1, 1000));
        send(t_pay("o1", "pay", 10000, 4999));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED), 0,
                     "bound 1 ms after payment");
        send(t_place("o2", "act", "late", 1, 1000));
        send(t_pay("o2", "pay", 10000, 5000));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED), 3,
                     "bound_ms == paid_ms counts; 3 levels");
        cr_assert_eq(nth(&w.step, ORDO_MSG_COMMISSION_ACCRUED, 2)
                         ->u.commission.accrued_cents,
                     250);
        /* a later upper binding does not extend an earlier payment */
        send(t_bind("p3", "p4", 6000));
        send(t_bind("top", "late", 6000));
        send(t_place("o3", "act", "buyer", 1, 1000));
        send(t_pay("o3", "pay", 10000, 5500));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED), 3);
        check_conservation();
        world_fini(&w);
}

Test(commission, zero_accrual_creates_no_entry) {
        /* RULES.md: an entry whose accrued is 0 is not created */
        int64_t bps[2] = { 500, 1000 };
        const ordo_msg_t *a;
        setup(10, bps, 2);
        buy_and_pay("o1", 10, PAY_AT);
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED), 1);
        a = tout_find(&w.step, ORDO_MSG_COMMISSION_ACCRUED);
        cr_assert_eq(a->u.commission.level, 2);
        cr_assert_str_eq(a->u.commission.beneficiary_id, "p2");
        cr_assert_eq(a->u.commission.accrued_cents, 1);
        world_fini(&w);
}

Test(commission, no_referrer_no_entry) {
        int64_t bps[2] = { 1000, 500 };
        setup(1000, bps, 2);
        send(t_place("o1", "act", "p3", 1, 1000));
        send(t_pay("o1", "pay", 1000, PAY_AT));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED), 0);
        send(t_refund("o1", "r", 1000, PAY_AT + 1));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_REVERSED), 0);
        world_fini(&w);
}

Test(commission, redelivery_and_restore) {
        /* handle is idempotent for a redelivered order event, and a state
         * restored from commission-events (apply), order-events (observe)
         * and referral-events (bind) decides the same as the original */
        int64_t bps[2] = { 333, 77 };
        ordo_commission_state_t *r = ordo_commission_state_new();
        tout_t a = { 0 }, b = { 0 };
        ordo_sink_t sa = tout_sink(&a), sb = tout_sink(&b);
        ordo_pos_t pos;
        const ordo_msg_t *paid;
        ordo_msg_t ev;
        size_t i;
        setup(9999, bps, 2);
        buy_and_pay("o1", 9999, PAY_AT);
        buy_and_pay("o2", 9999, PAY_AT);
        send(t_place("o3", "act", "buyer", 1, 1000)); /* opened, unpaid */
        paid = nth(&w.log, ORDO_MSG_ORDER_PAID, 0);
        ev = *paid;
        pos = t_pos("order-events");
        ordo_commission_handle(w.com, &ev, &pos, &sa);
        cr_assert_eq(a.n, 0, "a redelivered OrderPaid accrues nothing");
        for (i = 0; i < w.log.n; i++) {
                const ordo_msg_t *m = &w.log.v[i];
                if (m->type == ORDO_MSG_REFERRER_BOUND)
                        ordo_commission_bind(r, m);
                else if (m->type >= ORDO_MSG_COMMISSION_ACCRUED &&
                         m->type <= ORDO_MSG_COMMISSION_SETTLED)
                        ordo_commission_apply(r, m);
        }
        for (i = 0; i < w.log.n; i++)
                ordo_commission_observe(r, &w.log.v[i]);
        cr_assert_eq(ordo_commission_state_digest(r),
                     ordo_commission_state_digest(w.com));
        /* continue both: refund o1 partially, pay o3, settle o2 */
        send(t_refund("o1", "r1", 4000, PAY_AT + 5));
        send(t_pay("o3", "pay", 9999, PAY_AT + 6));
        send(t_receipt("o2", PAY_AT + 7));
        send(t_tick(PAY_AT + 7 + 1000000));
        for (i = 0; i < w.log.n; i++) {
                const ordo_msg_t *m = &w.log.v[i];
                if (m->type < ORDO_MSG_ORDER_PAID ||
                    m->type > ORDO_MSG_ORDER_SETTLED ||
                    m->meta.ts_ms < PAY_AT + 5)
                        continue;
                pos = t_pos("order-events");
                ordo_commission_handle(r, m, &pos, &sb);
        }
        for (i = 0; i < w.log.n; i++)
                if (w.log.v[i].type >= ORDO_MSG_COMMISSION_ACCRUED &&
                    w.log.v[i].type <= ORDO_MSG_COMMISSION_SETTLED &&
                    w.log.v[i].meta.ts_ms >= PAY_AT + 5)
                        tout_emit(&a, &w.log.v[i]);
        cr_assert_eq(a.n, b.n);
        cr_assert_gt(a.n, 4);
        for (i = 0; i < a.n; i++) {
                cr_assert_eq(a.v[i].type, b.v[i].type);
                cr_assert(!memcmp(&a.v[i].u.commission, &b.v[i].u.commission,
                                  sizeof(a.v[i].u.commission)));
                cr_assert_eq(a.v[i].meta.version, b.v[i].meta.version);
        }
        cr_assert_eq(ordo_commission_state_digest(r),
                     ordo_commission_state_digest(w.com));
        cr_assert_gt(ordo_commission_state_bytes(r), 0);
        check_conservation();
        tout_free(&a);
        tout_free(&b);
        ordo_commission_state_destroy(r);
        ordo_commission_state_destroy(NULL);
        world_fini(&w);
}

/* RULES.md "Timers": what fires is stamped with its deadline. Every
 * message a timer decides is so stamped and known as such
 * (ordo_msg_stamped_by_timer: the metrics leave their age out of the
 * latency, and a projection counts its lag from when it was written,
 * ordo_msg_lag_from_ms); nothing a sender's command decides is. o1 paid
 * and left to its timers (automatic receipt, then settlement), o2 never
 * paid (timeout): one Tick past every deadline fires them all. */
Test(commission, what_a_timer_decides_is_known_as_timer_stamped) {
        int64_t bps[2] = { 1000, 500 };
        size_t i, timed = 0;
        setup(1000, bps, 2);
        buy_and_pay("o1", 1000, PAY_AT);
        send(t_place("o2", "act", "buyer", 1, 1000));
        for (i = 0; i < w.log.n; i++) {
                cr_expect(!ordo_msg_stamped_by_timer(&w.log.v[i]),
                          "%s decided by a command",
                          ordo_msg_type_name(w.log.v[i].type));
                cr_expect_eq(ordo_msg_lag_from_ms(&w.log.v[i], 77),
                             w.log.v[i].meta.ts_ms);
        }
        send(t_tick(PAY_AT + 10 * 1000000));
        for (i = 0; i < w.step.n; i++) {
                cr_expect(ordo_msg_stamped_by_timer(&w.step.v[i]),
                          "%s decided by a timer",
                          ordo_msg_type_name(w.step.v[i].type));
                cr_expect_eq(ordo_msg_lag_from_ms(&w.step.v[i], 77), 77);
                cr_expect_eq(ordo_msg_lag_from_ms(&w.step.v[i], 0),
                             w.step.v[i].meta.ts_ms, "unknown write time");
                timed += ordo_msg_stamped_by_timer(&w.step.v[i]);
        }
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_ORDER_CANCELLED), 1);
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_RELEASE_STOCK), 1);
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_STOCK_RELEASED), 1);
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_ORDER_RECEIVED), 1);
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_ORDER_SETTLED), 1);
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_SETTLED), 2);
        cr_assert_eq(timed, w.step.n);
        world_fini(&w);
}
