/*
 * ordo - extreme values through the four processors (RULES.md
 * "Activity": the bounds of stock and price_cents; docs/rules.md
 * "Arithmetic"). Run under UBSan in CI: a signed overflow anywhere in the
 * rules fails the build there, so these tests push every amount, quantity
 * and deadline to its limit. Expected figures are computed here in 128
 * bits from the formulas of RULES.md.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "test_rules_util.h"

__extension__ typedef __int128 i128;

#define QMAX ORDO_STOCK_MAX
#define PMAX ORDO_PRICE_MAX
#define AMAX (QMAX * PMAX) /* 10^18, the largest order */

static world_t w;

static void send(ordo_msg_t m) {
        world_send(&w, &m);
}

/* The outcome of one command: the reason of its rejection, or "". */
static const char *rejection(void) {
        const ordo_msg_t *r = tout_find(&w.step, ORDO_MSG_COMMAND_REJECTED);
        return r ? r->u.rejected.reason : "";
}

/* A maximal activity: stock and price at their bounds, every timer as
 * long as int64 allows, the given levels; chain buyer -> p1 -> p2 -> p3
 * bound at ts 0. */
static void maximal(const char *act, const int64_t *bps, int n) {
        ordo_msg_t m = t_create(act, QMAX, PMAX, INT64_MAX, 0, INT64_MAX);
        int i;
        m.u.activity.n_commission_bps = n;
        for (i = 0; i < n; i++)
                m.u.activity.commission_bps[i] = bps[i];
        m.u.activity.pay_timeout_ms = INT64_MAX;
        m.u.activity.auto_receive_ms = INT64_MAX;
        m.u.activity.freeze_ms = INT64_MAX;
        send(m);
        cr_assert_str_eq(tout_outcome(&w.step), "ACCEPTED", "%s", act);
}

static void chain(void) {
        send(t_bind("buyer", "p1", 0));
        send(t_bind("p1", "p2", 0));
        send(t_bind("p2", "p3", 0));
}

/* ---- RULES.md "Activity": the bounds ---- */

typedef struct bound_case_s {
        char rule[80];
        int64_t stock, price;
        char expect[32];
} bound_case_t;

static bound_case_t bound_cases[] = {
        { "stock <= 10,000,000", QMAX, 100, "ACCEPTED" },
        { "stock <= 10,000,000 (over)", QMAX + 1, 100, "INVALID_ACTIVITY" },
        { "stock INT64_MAX", INT64_MAX, 1, "INVALID_ACTIVITY" },
        { "stock INT64_MIN", INT64_MIN, 1, "INVALID_ACTIVITY" },
        { "price_cents <= 100,000,000,000", 1, PMAX, "ACCEPTED" },
        { "price_cents <= 100,000,000,000 (over)", 1, PMAX + 1,
          "INVALID_ACTIVITY" },
        { "issue 14: price_cents INT64_MAX", 1, INT64_MAX, "INVALID_ACTIVITY" },
        { "price_cents INT64_MIN", 1, INT64_MIN, "INVALID_ACTIVITY" },
        { "both at their bounds", QMAX, PMAX, "ACCEPTED" },
};

ParameterizedTestParameters(extreme, bounds) {
        return cr_make_param_array(bound_case_t, bound_cases,
                                   sizeof(bound_cases) /
                                       sizeof(bound_cases[0]));
}

ParameterizedTest(bound_case_t *c, extreme, bounds) {
        ordo_msg_t m =
            t_create("a", c->stock, c->price, INT64_MAX, INT64_MIN, INT64_MAX);
        world_init(&w);
        send(m);
        cr_assert_str_eq(tout_outcome(&w.step), c->expect, "%s", c->rule);
        world_fini(&w);
}

/* ---- the largest order, refunded to the last cent ---- */

Test(extreme, maximal_order_refunded_in_full) {
        /* RULES.md: amount_cents = qty * price_cents (10^18 here);
         * accrued = floor(amount * bps / 10000); reversed total =
         * floor(accrued * R / P); a full refund reverses every entry */
        int64_t bps[3] = { 3333, 1111, 556 },
                refunds[4] = { 1, AMAX / 3, 7, 0 };
        int64_t acc[3], rev[3] = { 0, 0, 0 }, R = 0;
        ordo_earnings_t e, sum;
        int64_t total;
        int i, l;
        char id[8];
        world_init(&w);
        maximal("max", bps, 3);
        chain();
        send(t_place("o1", "max", "buyer", QMAX, INT64_MAX - 10));
        cr_assert_eq(
            tout_find(&w.step, ORDO_MSG_ORDER_OPENED)->u.open.amount_cents,
            AMAX);
        cr_assert_eq(
            tout_find(&w.step, ORDO_MSG_ORDER_OPENED)->u.open.pay_deadline_ms,
            INT64_MAX, "ts + pay_timeout saturates");
        send(t_place("o2", "max", "other", 1, INT64_MAX - 10));
        cr_assert_str_eq(rejection(), "SOLD_OUT");
        send(t_pay("o1", "pay", INT64_MAX, INT64_MAX - 9));
        cr_assert_str_eq(rejection(), "AMOUNT_MISMATCH");
        send(t_pay("o1", "pay", AMAX, INT64_MAX - 9));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED), 3);
        for (l = 0; l < 3; l++) {
                acc[l] = (int64_t)((i128)AMAX * bps[l] / 10000);
                cr_assert_eq(
                    w.step.v[w.step.n - 3 + l].u.commission.amount_cents,
                    acc[l], "level %d", l + 1);
        }
        send(t_refund("o1", "too-much", INT64_MAX, INT64_MAX - 8));
        cr_assert_str_eq(rejection(), "EXCEEDS_PAID");
        send(t_refund("o1", "negative", INT64_MIN, INT64_MAX - 8));
        cr_assert_str_eq(rejection(), "INVALID_AMOUNT");
        refunds[3] = AMAX - refunds[0] - refunds[1] - refunds[2];
        for (i = 0; i < 4; i++) {
                snprintf(id, sizeof(id), "r%d", i);
                send(t_refund("o1", id, refunds[i], INT64_MAX - 7 + i));
                R += refunds[i];
                cr_assert_str_eq(rejection(), "", "refund %d", i);
                for (l = 0; l < 3; l++) {
                        int64_t want = (int64_t)((i128)acc[l] * R / AMAX);
                        size_t k;
                        for (k = 0; k < w.step.n; k++) {
                                const ordo_msg_t *m = &w.step.v[k];
                                if (m->type == ORDO_MSG_COMMISSION_REVERSED &&
                                    m->u.commission.level == l + 1) {
                                        cr_assert_eq(
                                            m->u.commission.amount_cents,
                                            want - rev[l]);
                                        rev[l] = m->u.commission.reversed_cents;
                                }
                        }
                        cr_assert_eq(rev[l], want, "refund %d level %d", i,
                                     l + 1);
                }
                if (i < 3) { /* refunded_cents > 0: never summed with it */
                        snprintf(id, sizeof(id), "x%d", i);
                        send(t_refund("o1", id, INT64_MAX, INT64_MAX - 7 + i));
                        cr_assert_str_eq(rejection(), "EXCEEDS_PAID");
                }
        }
        cr_assert_not_null(tout_find(&w.step, ORDO_MSG_ORDER_REFUNDED));
        cr_assert(tout_find(&w.step, ORDO_MSG_ORDER_REFUNDED)->u.refund.full);
        send(t_refund("o1", "after", 1, INT64_MAX - 1));
        cr_assert_str_eq(rejection(), "INVALID_STATE");
        for (l = 0; l < 3; l++)
                cr_assert_eq(rev[l], acc[l], "everything reversed");
        ordo_commission_earnings(w.com, "p1", &e);
        cr_assert_eq(e.pending_cents, 0);
        cr_assert_eq(e.reversed_cents, acc[0]);
        ordo_commission_totals(w.com, &sum, &total);
        cr_assert_eq(total, acc[0] + acc[1] + acc[2]);
        cr_assert_eq(sum.reversed_cents, total);
        send(t_tick(INT64_MAX));
        cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_SETTLED), 0,
                     "REFUNDED never settles");
        world_fini(&w);
}

/* ---- deadlines at the end of time ---- */

Test(extreme, deadlines_beyond_int64_never_come) {
        /* RULES.md adds paid_ms + auto_receive_ms and received_ms +
         * freeze_ms as numbers: beyond int64 they are later than every
         * ts_ms, so neither timer fires, not even at a Tick of INT64_MAX
         * (docs/rules.md; they used to saturate and fire there). Nor do
         * they wrap into the past. */
        int64_t bps[1] = { 5000 };
        world_init(&w);
        maximal("max", bps, 1);
        chain();
        send(t_place("o1", "max", "buyer", 1, 5));
        send(t_tick(INT64_MAX));
        cr_assert_null(tout_find(&w.step, ORDO_MSG_ORDER_CANCELLED),
                       "ts > INT64_MAX never holds");
        send(t_pay("o1", "pay", PMAX, 10));
        send(t_tick(INT64_MAX));
        cr_assert_eq(w.step.n, 0, "10 + INT64_MAX: never received");
        send(t_receipt("o1", 20));
        cr_assert_not_null(tout_find(&w.step, ORDO_MSG_ORDER_RECEIVED));
        send(t_tick(INT64_MAX));
        cr_assert_eq(w.step.n, 0, "20 + INT64_MAX: never settled");
        world_fini(&w);
}

Test(extreme, deadlines_at_int64_max_come_at_int64_max) {
        /* The same timers with sums of exactly INT64_MAX: due at a Tick
         * of INT64_MAX and not a millisecond before. */
        int64_t bps[1] = { 5000 };
        ordo_msg_t c = t_create("edge", QMAX, PMAX, INT64_MAX, 0, INT64_MAX);
        const ordo_msg_t *m;
        world_init(&w);
        c.u.activity.n_commission_bps = 1;
        c.u.activity.commission_bps[0] = bps[0];
        c.u.activity.auto_receive_ms = INT64_MAX - 10;
        c.u.activity.freeze_ms = 0;
        send(c);
        cr_assert_str_eq(tout_outcome(&w.step), "ACCEPTED");
        chain();
        send(t_place("o1", "edge", "buyer", 1, 5));
        send(t_pay("o1", "pay", PMAX, 10));
        send(t_tick(INT64_MAX - 1));
        cr_assert_eq(w.step.n, 0, "not due before INT64_MAX");
        send(t_tick(INT64_MAX));
        m = tout_find(&w.step, ORDO_MSG_ORDER_RECEIVED);
        cr_assert_not_null(m);
        cr_assert_eq(m->u.received.received_ms, INT64_MAX);
        m = tout_find(&w.step, ORDO_MSG_ORDER_SETTLED);
        cr_assert_not_null(m, "freeze_ms 0: settled at once");
        cr_assert_eq(m->u.settled.settled_ms, INT64_MAX);
        m = tout_find(&w.step, ORDO_MSG_COMMISSION_SETTLED);
        cr_assert_not_null(m);
        cr_assert_eq(m->u.commission.amount_cents, PMAX / 2);
        world_fini(&w);
}

Test(extreme, a_pay_deadline_of_int64_max_holds_back_no_other_timer) {
        /* A pending order whose pay deadline is INT64_MAX can never time
         * out (ts > INT64_MAX never holds); it must not stop a Tick of
         * INT64_MAX from firing another order's timer due then, whatever
         * their ids (found by an outside review: "a" sorted first in the
         * timer heap and the Tick stopped at it). */
        int64_t bps[1] = { 5000 };
        ordo_msg_t c = t_create("edge", QMAX, PMAX, INT64_MAX, 0, INT64_MAX);
        world_init(&w);
        c.u.activity.n_commission_bps = 1;
        c.u.activity.commission_bps[0] = bps[0];
        c.u.activity.pay_timeout_ms = INT64_MAX;
        c.u.activity.auto_receive_ms = INT64_MAX - 10;
        send(c);
        cr_assert_str_eq(tout_outcome(&w.step), "ACCEPTED");
        send(t_place("b", "edge", "buyer", 1, 5));
        send(t_pay("b", "pay", PMAX, 10)); /* receipt due at INT64_MAX */
        send(t_place("a", "edge", "other", 1, 5)); /* never times out */
        send(t_tick(INT64_MAX));
        cr_assert_not_null(tout_find(&w.step, ORDO_MSG_ORDER_RECEIVED),
                           "b's receipt fires at INT64_MAX");
        cr_assert_null(tout_find(&w.step, ORDO_MSG_ORDER_CANCELLED),
                       "a never times out");
        world_fini(&w);
}

/* ---- a user who earns on many maximal orders ---- */

Test(extreme, earnings_saturate) {
        /* docs/rules.md "Arithmetic": one beneficiary's totals add up over
         * every order and are not bounded by the activity bounds: 20
         * orders of 10^18 at 5000 bps accrue 10^19 > INT64_MAX, and the
         * totals saturate instead of wrapping negative (issue 14) */
        int64_t bps[1] = { 5000 };
        ordo_earnings_t e;
        char act[16], order[16];
        int i;
        world_init(&w);
        chain();
        for (i = 0; i < 20; i++) {
                snprintf(act, sizeof(act), "max-%d", i);
                snprintf(order, sizeof(order), "o-%d", i);
                maximal(act, bps, 1);
                send(t_place(order, act, "buyer", QMAX, 1));
                send(t_pay(order, "pay", AMAX, 2));
                cr_assert_eq(tout_count(&w.step, ORDO_MSG_COMMISSION_ACCRUED),
                             1);
        }
        ordo_commission_earnings(w.com, "p1", &e);
        cr_assert_eq(e.pending_cents, INT64_MAX);
        send(t_receipt("o-0", 3));
        ordo_commission_earnings(w.com, "p1", &e);
        cr_assert_eq(e.pending_cents, INT64_MAX, "still saturated");
        send(t_refund("o-1", "r", AMAX, 4));
        ordo_commission_earnings(w.com, "p1", &e);
        cr_assert_eq(e.reversed_cents, AMAX / 2);
        cr_assert_eq(e.pending_cents, INT64_MAX - AMAX / 2);
        world_fini(&w);
}

/* ---- quantities ---- */

Test(extreme, qty_limits) {
        /* RULES.md PlaceOrder: rule 5 (user quantity + qty >
         * per_user_limit) and rule 6 compared without overflow */
        int64_t bps[1] = { 0 };
        world_init(&w);
        maximal("max", bps, 1);
        send(t_place("o1", "max", "u", INT64_MAX, 1));
        cr_assert_str_eq(rejection(), "INSUFFICIENT_STOCK");
        send(t_place("o2", "max", "u", QMAX - 1, 1));
        cr_assert_str_eq(rejection(), "");
        send(t_place("o3", "max", "u", INT64_MAX, 1));
        cr_assert_str_eq(rejection(), "LIMIT_EXCEEDED",
                         "(QMAX - 1) + INT64_MAX > INT64_MAX: rule 5 first");
        send(t_place("o4", "max", "u", INT64_MIN, 1));
        cr_assert_str_eq(rejection(), "INVALID_QTY");
        send(t_place("o5", "max", "u", 1, 1));
        cr_assert_str_eq(rejection(), "");
        send(t_place("o6", "max", "u", 1, 1));
        cr_assert_str_eq(rejection(), "SOLD_OUT");
        world_fini(&w);
}

/* ---- random streams of edge values ---- */

static const int64_t edges[] = {
        INT64_MIN,     INT64_MIN + 1, -1,        0,        1,    2,
        9999,          10000,         10001,     QMAX - 1, QMAX, QMAX + 1,
        PMAX - 1,      PMAX,          PMAX + 1,  AMAX - 1, AMAX, AMAX + 1,
        INT64_MAX / 2, INT64_MAX - 1, INT64_MAX,
};
#define N_EDGES (sizeof(edges) / sizeof(edges[0]))

static uint64_t state;

static uint32_t pick(uint32_t n) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return (uint32_t)(state % n);
}

static int64_t edge(void) {
        return edges[pick(N_EDGES)];
}

/* Mostly sensible values, often an edge: so that activities get created
 * and orders opened, paid and refunded with extreme amounts. */
static int64_t value(int64_t sensible) {
        return pick(3) ? sensible : edge();
}

/* Known opened orders and their amounts, to pay and refund them. */
static struct {
        char id[16];
        int64_t amount;
} opened[32];
static int n_opened;

static void learn_opened(void) {
        size_t k;
        for (k = 0; k < w.step.n; k++)
                if (w.step.v[k].type == ORDO_MSG_ORDER_OPENED) {
                        int i = n_opened++ % 32;
                        ordo_strlcpy(opened[i].id, w.step.v[k].u.open.order_id,
                                     sizeof(opened[i].id));
                        opened[i].amount = w.step.v[k].u.open.amount_cents;
                }
}

static void random_step(int step) {
        char id[16], act[8], user[8];
        int64_t ts = value(1000 + step);
        int i = n_opened ? (int)pick(n_opened < 32 ? n_opened : 32) : 0;
        ordo_msg_t m;
        snprintf(act, sizeof(act), "a%u", pick(4));
        snprintf(user, sizeof(user), "u%u", pick(6));
        switch (pick(9)) {
        case 0:
                m = t_create(act, value(QMAX), value(PMAX), value(3), value(0),
                             value(INT64_MAX));
                m.u.activity.pay_timeout_ms = value(1000);
                m.u.activity.auto_receive_ms = value(1000);
                m.u.activity.freeze_ms = value(1000);
                m.u.activity.n_commission_bps = 2;
                m.u.activity.commission_bps[0] = value(3000);
                m.u.activity.commission_bps[1] = value(2000);
                break;
        case 1:
        case 2:
                snprintf(id, sizeof(id), "o%d", step);
                m = t_place(id, act, user, value(1 + pick(3)), ts);
                break;
        case 3:
                m = t_pay(opened[i].id, "pay", value(opened[i].amount), ts);
                break;
        case 4:
                snprintf(id, sizeof(id), "r%d", step);
                m = t_refund(opened[i].id, id,
                             pick(2) ? value(opened[i].amount / 3 + 1)
                                     : opened[i].amount,
                             ts);
                break;
        case 5:
                m = t_receipt(opened[i].id, ts);
                break;
        case 6:
                m = t_cancel(opened[i].id, user, ts);
                break;
        case 7:
                m = t_bind(user, pick(2) ? "p1" : "u0", ts);
                break;
        default:
                m = t_tick(ts);
                break;
        }
        send(m);
        learn_opened();
}

Test(extreme, random_edge_values) {
        /* docs/rules.md "Arithmetic": any stream of edge values leaves
         * UBSan silent (the ASan+UBSan build runs this), never oversells,
         * and replays to the same states */
        uint64_t seed;
        int step, a;
        size_t seen[4] = { 0, 0, 0, 0 };
        for (seed = 1; seed <= 20; seed++) {
                world_t r;
                state = seed * 0x9e3779b97f4a7c15ULL;
                n_opened = 0;
                world_init(&w);
                chain();
                for (step = 0; step < 1500; step++)
                        random_step(step);
                for (a = 0; a < 4; a++) {
                        char act[8];
                        int64_t left;
                        snprintf(act, sizeof(act), "a%d", a);
                        left = ordo_activity_remaining(w.act, act);
                        cr_assert(left >= -1 && left <= QMAX, "%s: %lld", act,
                                  (long long)left);
                }
                seen[0] += tout_count(&w.log, ORDO_MSG_ACTIVITY_CREATED);
                seen[1] += tout_count(&w.log, ORDO_MSG_ORDER_PAID);
                seen[2] += tout_count(&w.log, ORDO_MSG_ORDER_REFUNDED);
                seen[3] += tout_count(&w.log, ORDO_MSG_COMMISSION_REVERSED);
                world_replay(&w, &r);
                world_assert_same(&r, &w);
                world_fini(&r);
                world_fini(&w);
        }
        /* the streams reach every path they are meant to stress */
        cr_log_info("created %zu, paid %zu, refunds %zu, reversals %zu",
                    seen[0], seen[1], seen[2], seen[3]);
        for (a = 0; a < 4; a++)
                cr_assert_gt(seen[a], 0, "path %d never reached", a);
}
