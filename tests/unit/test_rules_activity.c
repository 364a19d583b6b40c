/*
 * ordo - the activity processor against RULES.md "Activity" and
 * "Rejections". Each table row cites the rule it checks.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "test_rules_util.h"

#define ACT   "flash-1"
#define START 1000
#define END   2000
#define PRICE 1999

/* ---- CreateActivity ---- */

/* Parameters are copied into a fresh process (criterion re-executes the
 * binary), so they hold strings by value, never pointers. */
typedef struct create_case_s {
        char rule[80];
        int64_t stock, price, limit, start, end, pay_timeout, auto_receive,
            freeze;
        int n_bps;
        int64_t bps[4];
        char expect[32]; /* "ACCEPTED" or the reason */
} create_case_t;

#define OKV 10, 100, 2, 0, 10, 1, 1, 0
static create_case_t create_cases[] = {
        { "RULES.md Activity: stock >= 1",
          0,
          100,
          2,
          0,
          10,
          1,
          1,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "stock >= 1 (boundary)",
          1,
          100,
          2,
          0,
          10,
          1,
          1,
          0,
          0,
          { 0 },
          "ACCEPTED" },
        { "price_cents >= 1",
          10,
          0,
          2,
          0,
          10,
          1,
          1,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "per_user_limit >= 1",
          10,
          100,
          0,
          0,
          10,
          1,
          1,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "start_ms < end_ms (equal)",
          10,
          100,
          2,
          10,
          10,
          1,
          1,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "start_ms < end_ms (after)",
          10,
          100,
          2,
          11,
          10,
          1,
          1,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "pay_timeout_ms >= 1",
          10,
          100,
          2,
          0,
          10,
          0,
          1,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "auto_receive_ms >= 1",
          10,
          100,
          2,
          0,
          10,
          1,
          0,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "freeze_ms >= 0",
          10,
          100,
          2,
          0,
          10,
          1,
          1,
          -1,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
        { "freeze_ms >= 0 (boundary), no levels", OKV, 0, { 0 }, "ACCEPTED" },
        { "at most 3 commission levels",
          OKV,
          4,
          { 1, 1, 1, 1 },
          "INVALID_ACTIVITY" },
        { "3 commission levels", OKV, 3, { 1000, 1000, 1000 }, "ACCEPTED" },
        { "each level 0..10000 bps (negative)",
          OKV,
          2,
          { -1, 0 },
          "INVALID_ACTIVITY" },
        { "each level 0..10000 bps (over)",
          OKV,
          1,
          { 10001 },
          "INVALID_ACTIVITY" },
        { "sum <= 5000 bps", OKV, 3, { 2000, 2000, 1001 }, "INVALID_ACTIVITY" },
        { "sum <= 5000 bps (boundary)",
          OKV,
          3,
          { 2000, 2000, 1000 },
          "ACCEPTED" },
        { "a level of 0 bps", OKV, 2, { 0, 5000 }, "ACCEPTED" },
        { "price_cents <= 100,000,000,000 (over)",
          10,
          ORDO_PRICE_MAX + 1,
          3,
          0,
          10,
          1,
          1,
          0,
          0,
          { 0 },
          "INVALID_ACTIVITY" },
};

ParameterizedTestParameters(activity, create_checks) {
        return cr_make_param_array(create_case_t, create_cases,
                                   sizeof(create_cases) /
                                       sizeof(create_cases[0]));
}

ParameterizedTest(create_case_t *c, activity, create_checks) {
        ordo_activity_state_t *s = ordo_activity_state_new();
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t m =
            t_create("a", c->stock, c->price, c->limit, c->start, c->end);
        int k;
        m.u.activity.pay_timeout_ms = c->pay_timeout;
        m.u.activity.auto_receive_ms = c->auto_receive;
        m.u.activity.freeze_ms = c->freeze;
        m.u.activity.n_commission_bps = c->n_bps;
        for (k = 0; k < c->n_bps; k++)
                m.u.activity.commission_bps[k] = c->bps[k];
        ordo_activity_handle(s, &m, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), c->expect, "%s", c->rule);
        if (!strcmp(c->expect, "ACCEPTED")) {
                cr_assert_eq(out.v[0].type, ORDO_MSG_ACTIVITY_CREATED);
                cr_assert_eq(out.v[0].meta.version, 1);
                cr_assert_eq(ordo_activity_remaining(s, "a"), c->stock);
        } else {
                cr_assert_eq(ordo_activity_remaining(s, "a"), -1);
        }
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

Test(activity, duplicate_activity) {
        /* RULES.md: a second CreateActivity for an existing activity_id
         * is rejected with DUPLICATE_ACTIVITY */
        ordo_activity_state_t *s = ordo_activity_state_new();
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t m = t_create(ACT, 5, 10, 1, 0, 10);
        ordo_activity_handle(s, &m, &pos, &sink);
        tout_clear(&out);
        m.u.activity.stock = 99;
        ordo_activity_handle(s, &m, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), "DUPLICATE_ACTIVITY");
        cr_assert_str_eq(out.v[0].u.rejected.command_type, "CreateActivity");
        cr_assert_str_eq(out.v[0].meta.aggregate_id, ACT);
        cr_assert_eq(out.v[0].meta.version, 1, "the current version");
        cr_assert_eq(ordo_activity_remaining(s, ACT), 5, "untouched");
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

/* ---- PlaceOrder: the checks in RULES.md order ---- */

/* A sale of stock 5, limit 3 per user, where u1 already holds 2 and
 * "o-seen-ok" / "o-seen-bad" are an accepted and a rejected order. */
static ordo_activity_state_t *sale(int64_t stock) {
        ordo_activity_state_t *s = ordo_activity_state_new();
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_msg_t m[3] = { t_create(ACT, stock, PRICE, 3, START, END),
                            t_place("o-seen-ok", ACT, "u1", 2, START),
                            t_place("o-seen-bad", ACT, "u2", 0, START) };
        int i;
        for (i = 0; i < 3; i++) {
                ordo_pos_t pos = t_pos("activity-commands");
                ordo_activity_handle(s, &m[i], &pos, &sink);
        }
        tout_free(&out);
        return s;
}

typedef struct place_case_s {
        char rule[80];
        int64_t stock;
        char order[16], activity[16], user[16];
        int64_t qty, ts;
        char expect[32]; /* reason, "ACCEPTED" or "" (ignored) */
} place_case_t;

static place_case_t place_cases[] = {
        { "1. unknown activity -> UNKNOWN_ACTIVITY", 5, "o1", "nope", "u3", 1,
          START, "UNKNOWN_ACTIVITY" },
        { "2. order_id already seen (accepted) -> ignored", 5, "o-seen-ok", ACT,
          "u3", 1, START, "" },
        { "2. order_id already seen (rejected) -> ignored", 5, "o-seen-bad",
          ACT, "u3", 1, START, "" },
        { "3. qty < 1 -> INVALID_QTY (0)", 5, "o1", ACT, "u3", 0, START,
          "INVALID_QTY" },
        { "3. qty < 1 -> INVALID_QTY (-1)", 5, "o1", ACT, "u3", -1, START,
          "INVALID_QTY" },
        { "3 before 4: qty 0 and not started", 5, "o1", ACT, "u3", 0, START - 1,
          "INVALID_QTY" },
        { "4. ts_ms < start_ms -> NOT_STARTED", 5, "o1", ACT, "u3", 1,
          START - 1, "NOT_STARTED" },
        { "4. ts_ms == start_ms is open", 5, "o1", ACT, "u3", 1, START,
          "ACCEPTED" },
        { "4. ts_ms == end_ms - 1 is open", 5, "o1", ACT, "u3", 1, END - 1,
          "ACCEPTED" },
        { "4. ts_ms >= end_ms -> ENDED", 5, "o1", ACT, "u3", 1, END, "ENDED" },
        { "4 before 5: ended and over the limit", 5, "o1", ACT, "u1", 2, END,
          "ENDED" },
        { "5. active + qty > per_user_limit -> LIMIT_EXCEEDED", 5, "o1", ACT,
          "u1", 2, START, "LIMIT_EXCEEDED" },
        { "5. active + qty == per_user_limit is allowed", 5, "o1", ACT, "u1", 1,
          START, "ACCEPTED" },
        { "5. a new user over the limit", 5, "o1", ACT, "u3", 4, START,
          "LIMIT_EXCEEDED" },
        { "5 before 6: over the limit and sold out", 2, "o1", ACT, "u1", 2,
          START, "LIMIT_EXCEEDED" },
        { "6. remaining == 0 -> SOLD_OUT", 2, "o1", ACT, "u3", 1, START,
          "SOLD_OUT" },
        { "6. remaining < qty -> INSUFFICIENT_STOCK", 4, "o1", ACT, "u3", 3,
          START, "INSUFFICIENT_STOCK" },
        { "6. remaining == qty is accepted", 4, "o1", ACT, "u3", 2, START,
          "ACCEPTED" },
        { "7. accepted", 5, "o1", ACT, "u3", 3, START, "ACCEPTED" },
};

ParameterizedTestParameters(activity, place_checks) {
        return cr_make_param_array(place_case_t, place_cases,
                                   sizeof(place_cases) /
                                       sizeof(place_cases[0]));
}

ParameterizedTest(place_case_t *c, activity, place_checks) {
        ordo_activity_state_t *s = sale(c->stock);
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t m = t_place(c->order, c->activity, c->user, c->qty, c->ts);
        int64_t before = ordo_activity_remaining(s, ACT);
        ordo_activity_handle(s, &m, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), c->expect, "%s", c->rule);
        if (!strcmp(c->expect, "ACCEPTED")) {
                /* rule 7: remaining -= qty */
                cr_assert_eq(ordo_activity_remaining(s, ACT), before - c->qty);
        } else {
                cr_assert_eq(ordo_activity_remaining(s, ACT), before);
        }
        if (out.n == 1) {
                /* RULES.md Rejections: a rejected PlaceOrder carries
                 * order_id, user_id and qty */
                const ordo_rejected_body_t *r = &out.v[0].u.rejected;
                cr_assert_str_eq(r->command_type, "PlaceOrder");
                cr_assert_str_eq(r->order_id, c->order);
                cr_assert_str_eq(r->user_id, c->user);
                cr_assert_eq(r->qty, c->qty);
                cr_assert_str_eq(out.v[0].meta.aggregate_id, c->activity);
        }
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

Test(activity, accepted_order_opens) {
        /* RULES.md rule 7: amount_cents = qty * price_cents,
         * pay_deadline_ms = ts_ms + pay_timeout_ms, copies of
         * auto_receive_ms, freeze_ms and commission_bps */
        ordo_activity_state_t *s = ordo_activity_state_new();
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t c = t_create(ACT, 10, PRICE, 3, START, END), p;
        const ordo_msg_t *r, *o;
        c.u.activity.pay_timeout_ms = 777;
        c.u.activity.auto_receive_ms = 888;
        c.u.activity.freeze_ms = 999;
        c.u.activity.commission_bps[0] = 333;
        c.u.activity.commission_bps[1] = 77;
        c.u.activity.commission_bps[2] = 1;
        c.u.activity.n_commission_bps = 3;
        ordo_activity_handle(s, &c, &pos, &sink);
        tout_clear(&out);
        p = t_place("o1", ACT, "u1", 3, START + 5);
        ordo_strlcpy(p.meta.id, "place-1", sizeof(p.meta.id));
        ordo_strlcpy(p.meta.correlation_id, "corr-9",
                     sizeof(p.meta.correlation_id));
        pos.source = "activity-commands";
        pos.partition = 7;
        pos.offset = 42;
        ordo_activity_handle(s, &p, &pos, &sink);
        cr_assert_eq(out.n, 2);
        r = &out.v[0];
        o = &out.v[1];
        cr_assert_eq(r->type, ORDO_MSG_STOCK_RESERVED);
        cr_assert_eq(r->u.stock.remaining, 7);
        cr_assert_eq(r->u.stock.qty, 3);
        cr_assert_eq(r->meta.version, 2);
        cr_assert_str_eq(r->meta.aggregate_id, ACT);
        /* RULES.md Units: ids from the input's position */
        cr_assert_str_eq(r->meta.id, "activity-commands-7-42-0");
        cr_assert_str_eq(o->meta.id, "activity-commands-7-42-1");
        cr_assert_str_eq(r->meta.causation_id, "place-1");
        cr_assert_str_eq(r->meta.correlation_id, "corr-9");
        cr_assert_eq(r->meta.ts_ms, START + 5, "the command's ts_ms");
        cr_assert_eq(o->type, ORDO_MSG_OPEN_ORDER);
        cr_assert_str_eq(ordo_msg_key(o), "o1");
        cr_assert_eq(o->u.open.amount_cents, 3 * PRICE);
        cr_assert_eq(o->u.open.placed_ms, START + 5);
        cr_assert_eq(o->u.open.pay_deadline_ms, START + 5 + 777);
        cr_assert_eq(o->u.open.auto_receive_ms, 888);
        cr_assert_eq(o->u.open.freeze_ms, 999);
        /* decision 0024: the reservation carries the terms the order
         * opens with, for the read model */
        cr_assert_eq(r->u.stock.amount_cents, 3 * PRICE);
        cr_assert_eq(r->u.stock.pay_deadline_ms, START + 5 + 777);
        cr_assert_eq(o->u.open.n_commission_bps, 3);
        cr_assert_eq(o->u.open.commission_bps[0], 333);
        cr_assert_eq(o->u.open.commission_bps[1], 77);
        cr_assert_eq(o->u.open.commission_bps[2], 1);
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

Test(activity, correlation_defaults_to_command_id) {
        ordo_activity_state_t *s = ordo_activity_state_new();
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t p = t_place("o1", "none", "u1", 1, 5);
        ordo_strlcpy(p.meta.id, "cmd-x", sizeof(p.meta.id));
        ordo_activity_handle(s, &p, &pos, &sink);
        cr_assert_str_eq(out.v[0].meta.correlation_id, "cmd-x");
        cr_assert_eq(out.v[0].meta.version, 0, "no aggregate: version 0");
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

Test(activity, release_restores_stock_and_user_quantity) {
        /* RULES.md: when an order is cancelled before payment, its stock
         * and the user's quantity come back (ReleaseStock) */
        ordo_activity_state_t *s = sale(5);
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t rel = t_release("o-seen-ok", ACT, "u1", 2, "USER", START);
        ordo_msg_t p = t_place("o2", ACT, "u1", 3, START);
        cr_assert_eq(ordo_activity_remaining(s, ACT), 3);
        ordo_activity_handle(s, &rel, &pos, &sink);
        cr_assert_eq(out.n, 1);
        cr_assert_eq(out.v[0].type, ORDO_MSG_STOCK_RELEASED);
        cr_assert_eq(out.v[0].u.stock.remaining, 5);
        cr_assert_str_eq(out.v[0].u.stock.reason, "USER");
        cr_assert_eq(ordo_activity_remaining(s, ACT), 5);
        /* idempotent: the same release again changes nothing */
        tout_clear(&out);
        ordo_activity_handle(s, &rel, &pos, &sink);
        cr_assert_eq(out.n, 0);
        cr_assert_eq(ordo_activity_remaining(s, ACT), 5);
        /* the user's quantity came back: 3 fits the limit of 3 */
        ordo_activity_handle(s, &p, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), "ACCEPTED");
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

Test(activity, release_unknown) {
        ordo_activity_state_t *s = sale(5);
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t a = t_release("o-x", ACT, "u1", 1, "USER", START);
        ordo_msg_t b = t_release("o-seen-bad", ACT, "u2", 1, "USER", START);
        ordo_msg_t c = t_release("o-seen-ok", "zzz", "u1", 2, "USER", START);
        ordo_activity_handle(s, &a, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), "UNKNOWN_ORDER");
        tout_clear(&out);
        ordo_activity_handle(s, &b, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), "UNKNOWN_ORDER",
                         "a rejected order reserved nothing");
        tout_clear(&out);
        ordo_activity_handle(s, &c, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), "UNKNOWN_ACTIVITY");
        cr_assert_eq(ordo_activity_remaining(s, ACT), 3);
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

Test(activity, ignores_other_types) {
        ordo_activity_state_t *s = sale(5);
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("activity-commands");
        ordo_msg_t t = t_tick(START);
        ordo_activity_handle(s, &t, &pos, &sink);
        cr_assert_eq(out.n, 0);
        tout_free(&out);
        ordo_activity_state_destroy(s);
}

Test(activity, replay_equality) {
        /* Deciding separated from folding: the emitted events rebuild
         * the same state, which then decides the same way. */
        ordo_activity_state_t *s = ordo_activity_state_new();
        ordo_activity_state_t *r = ordo_activity_state_new();
        tout_t out = { 0 }, a = { 0 }, b = { 0 };
        ordo_sink_t sink = tout_sink(&out), sa = tout_sink(&a),
                    sb = tout_sink(&b);
        ordo_msg_t m = t_create(ACT, 50, PRICE, 2, START, END);
        ordo_pos_t pos = t_pos("activity-commands");
        char oid[32], uid[32];
        size_t i;
        ordo_activity_handle(s, &m, &pos, &sink);
        for (i = 0; i < 400; i++) {
                snprintf(oid, sizeof(oid), "o%zu", i % 300);
                snprintf(uid, sizeof(uid), "u%zu", i % 37);
                m = i % 5 == 4 ? t_release(oid, ACT, uid, 1, "USER", START)
                               : t_place(oid, ACT, uid, 1 + (int64_t)i % 2,
                                         START + (int64_t)i);
                pos = t_pos("activity-commands");
                ordo_activity_handle(s, &m, &pos, &sink);
        }
        for (i = 0; i < out.n; i++)
                if (ordo_msg_is_event(out.v[i].type))
                        ordo_activity_apply(r, &out.v[i]);
        cr_assert_eq(ordo_activity_state_digest(r),
                     ordo_activity_state_digest(s));
        cr_assert_eq(ordo_activity_remaining(r, ACT),
                     ordo_activity_remaining(s, ACT));
        for (i = 0; i < 200; i++) {
                snprintf(oid, sizeof(oid), "p%zu", i % 150);
                snprintf(uid, sizeof(uid), "u%zu", i % 41);
                m = t_place(oid, ACT, uid, 1, START + 500);
                pos = t_pos("activity-commands");
                ordo_activity_handle(s, &m, &pos, &sa);
                ordo_activity_handle(r, &m, &pos, &sb);
        }
        cr_assert_eq(a.n, b.n);
        cr_assert(!memcmp(a.v, b.v, a.n * sizeof(*a.v)));
        cr_assert_gt(ordo_activity_state_bytes(s), 0);
        tout_free(&out);
        tout_free(&a);
        tout_free(&b);
        ordo_activity_state_destroy(s);
        ordo_activity_state_destroy(r);
        ordo_activity_state_destroy(NULL);
}
