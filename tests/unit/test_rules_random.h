/*
 * A seeded random command stream over the world of test_rules_util.h,
 * shared by the property and snapshot tests: PlaceOrders on a few
 * activities (and an unknown one), payments, cancellations, receipts,
 * refunds (mostly on recently opened orders, with the right amounts, so
 * they are decided rather than refused), bindings and Ticks.
 *
 * Include with N_ACT, N_USERS and N_ORDERS defined; activities are
 * named "act0".."act<N_ACT-1>" (a PlaceOrder may also name "nope").
 */
#ifndef ORDO_TEST_RULES_RANDOM_H
#define ORDO_TEST_RULES_RANDOM_H

#include <stdio.h>

#include "test_rules_util.h"

static uint64_t rng;
static int64_t now;

static inline void random_seed(uint64_t seed) {
        rng = seed * 0x9e3779b97f4a7c15ULL;
        now = 1000;
}

static inline uint32_t rnd(uint32_t n) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint32_t)(rng % n);
}

/* Recently opened orders, so payments, receipts and refunds mostly hit
 * live orders with the right amounts. */
typedef struct known_s {
        char id[16], user[16];
        int64_t amount;
} known_t;
static known_t known[64];
static int n_known;

/* Remembers the orders the last delivery opened. */
static inline void learn(const world_t *w) {
        size_t k;
        for (k = 0; k < w->step.n; k++) {
                const ordo_msg_t *v = &w->step.v[k];
                known_t *o;
                if (v->type != ORDO_MSG_ORDER_OPENED)
                        continue;
                o = &known[n_known++ % 64];
                ordo_strlcpy(o->id, v->u.open.order_id, sizeof(o->id));
                ordo_strlcpy(o->user, v->u.open.user_id, sizeof(o->user));
                o->amount = v->u.open.amount_cents;
        }
}

static inline void random_begin(uint64_t seed) {
        random_seed(seed);
        n_known = 0;
}

/* The CreateActivity of activity "act<a>": small stock, a few levels of
 * commission, timers short enough for Ticks to fire them. */
static inline ordo_msg_t random_create(int a) {
        char id[16];
        int64_t stock = 10 + 25 * a + rnd(20);
        int64_t price = 333 + 1000 * a + rnd(5000);
        int64_t limit = 1 + rnd(4);
        int64_t start = now + rnd(200);
        int64_t end = start + 15000 + rnd(30000);
        ordo_msg_t c;
        snprintf(id, sizeof(id), "act%d", a);
        c = t_create(id, stock, price, limit, start, end);
        c.u.activity.pay_timeout_ms = 200 + rnd(2000);
        c.u.activity.auto_receive_ms = 300 + rnd(3000);
        c.u.activity.freeze_ms = a == 0 ? 0 : rnd(3000);
        c.u.activity.n_commission_bps = 1 + a;
        c.u.activity.commission_bps[0] = a == 1 ? 333 : 1000;
        c.u.activity.commission_bps[1] = 77;
        c.u.activity.commission_bps[2] = 4000 - 1410;
        return c;
}

static inline ordo_msg_t random_cmd(void) {
        char order[16], user[16], other[16], id[16], act[16];
        uint32_t a = rnd(N_ACT + 1), k = rnd(100); /* N_ACT: unknown */
        known_t o;
        now += rnd(20);
        snprintf(act, sizeof(act), a < N_ACT ? "act%u" : "nope", a);
        snprintf(order, sizeof(order), "o%u", rnd(N_ORDERS));
        snprintf(user, sizeof(user), "u%u", rnd(N_USERS));
        snprintf(other, sizeof(other), "u%u", rnd(N_USERS));
        snprintf(id, sizeof(id), "x%u", rnd(3));
        if (n_known && rnd(10)) {
                o = known[rnd(n_known < 64 ? (uint32_t)n_known : 64)];
        } else {
                ordo_strlcpy(o.id, order, sizeof(o.id));
                ordo_strlcpy(o.user, user, sizeof(o.user));
                o.amount = 1 + rnd(10000);
        }
        if (k < 40)
                return t_place(order, act, user, (int64_t)rnd(5) - 1 + !!rnd(4),
                               now);
        if (k < 55)
                return t_pay(o.id, id, rnd(10) ? o.amount : o.amount + 1, now);
        if (k < 60)
                return t_cancel(o.id, rnd(4) ? o.user : other, now);
        if (k < 66)
                return t_receipt(o.id, now);
        if (k < 80)
                return t_refund(
                    o.id, id,
                    rnd(4) ? 1 + (int64_t)rnd((uint32_t)o.amount / 2 + 1)
                           : o.amount - (int64_t)rnd(2),
                    now);
        if (k < 88)
                return t_bind(user, other, now);
        return t_tick(now);
}

#endif
