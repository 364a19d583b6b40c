/*
 * ordo - the order processor against RULES.md "Order lifecycle and
 * payment" (reason codes, timers, DUPLICATE_ORDER_ID). Each table row
 * cites the rule it checks.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "test_rules_util.h"

#define T0           10000
#define AMOUNT       5000
#define PAY_TIMEOUT  100
#define AUTO_RECEIVE 1000
#define FREEZE       5000
#define DEADLINE     (T0 + PAY_TIMEOUT)
#define PAID_AT      (T0 + 10)
#define RECEIVED_AT  (T0 + 20)
#define CMD_TS       (T0 + 50)

static tout_t out;

static void run(ordo_order_state_t *s, ordo_msg_t m) {
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("order-commands");
        tout_clear(&out);
        ordo_order_handle(s, &m, &pos, &sink);
}

static void open_order(ordo_order_state_t *s, const char *id, int64_t ts,
                       int64_t freeze) {
        run(s, t_open(id, "act", "buyer", 2, AMOUNT, ts, PAY_TIMEOUT,
                      AUTO_RECEIVE, freeze));
}

enum setup {
        NONE,
        PENDING,
        PAID,
        RECEIVED,
        SETTLED,
        CANCELLED,
        REFUNDED,
        PARTIAL
};

/* Order "o1" brought to a status by the commands RULES.md allows. */
static ordo_order_state_t *order_in(enum setup st) {
        ordo_order_state_t *s = ordo_order_state_new();
        if (st == NONE)
                return s;
        open_order(s, "o1", T0, st == SETTLED ? 0 : FREEZE);
        if (st == CANCELLED)
                run(s, t_cancel("o1", "buyer", T0 + 5));
        if (st == PENDING || st == CANCELLED)
                return s;
        run(s, t_pay("o1", "pay-1", AMOUNT, PAID_AT));
        if (st == RECEIVED || st == SETTLED)
                run(s, t_receipt("o1", RECEIVED_AT));
        if (st == REFUNDED)
                run(s, t_refund("o1", "r-full", AMOUNT, T0 + 30));
        if (st == PARTIAL)
                run(s, t_refund("o1", "r-part", 1000, T0 + 30));
        return s;
}

typedef struct case_s {
        char rule[96];
        enum setup setup;
        ordo_msg_type_t type;
        char order[8], id[16], user[16]; /* payment/refund id, user */
        int64_t amount;
        char expect[32];       /* reason, "" ignored, or "ACCEPTED" */
        ordo_msg_type_t event; /* when accepted */
        int needs_refund;
} case_t;

#define PAY     ORDO_MSG_CONFIRM_PAYMENT
#define CANCEL  ORDO_MSG_CANCEL_ORDER
#define RECEIPT ORDO_MSG_CONFIRM_RECEIPT
#define REFUND  ORDO_MSG_REFUND_ORDER

static case_t cases[] = {
        /* ConfirmPayment */
        { "ConfirmPayment 1. unknown order -> UNKNOWN_ORDER", NONE, PAY, "o1",
          "pay-1", "", AMOUNT, "UNKNOWN_ORDER", 0, 0 },
        { "ConfirmPayment 3. PAID, the same payment_id -> ignored", PAID, PAY,
          "o1", "pay-1", "", AMOUNT, "", 0, 0 },
        { "ConfirmPayment 3. PAID, another payment_id -> DUPLICATE_PAYMENT",
          PAID, PAY, "o1", "pay-2", "", AMOUNT, "DUPLICATE_PAYMENT", 0, 1 },
        { "ConfirmPayment 3. RECEIVED, another -> DUPLICATE_PAYMENT", RECEIVED,
          PAY, "o1", "pay-2", "", AMOUNT, "DUPLICATE_PAYMENT", 0, 1 },
        { "ConfirmPayment 3. SETTLED, another -> DUPLICATE_PAYMENT", SETTLED,
          PAY, "o1", "pay-2", "", AMOUNT, "DUPLICATE_PAYMENT", 0, 1 },
        { "ConfirmPayment 3. SETTLED, the same -> ignored", SETTLED, PAY, "o1",
          "pay-1", "", AMOUNT, "", 0, 0 },
        { "ConfirmPayment 3. REFUNDED, the same -> ignored", REFUNDED, PAY,
          "o1", "pay-1", "", AMOUNT, "", 0, 0 },
        { "ConfirmPayment 3. REFUNDED, another -> DUPLICATE_PAYMENT", REFUNDED,
          PAY, "o1", "pay-2", "", 1, "DUPLICATE_PAYMENT", 0, 1 },
        { "ConfirmPayment 4. CANCELLED -> ORDER_CANCELLED (needs_refund)",
          CANCELLED, PAY, "o1", "pay-1", "", AMOUNT, "ORDER_CANCELLED", 0, 1 },
        { "ConfirmPayment 5. amount != order's -> AMOUNT_MISMATCH", PENDING,
          PAY, "o1", "pay-1", "", AMOUNT - 1, "AMOUNT_MISMATCH", 0, 0 },
        { "ConfirmPayment 6. PAID", PENDING, PAY, "o1", "pay-1", "", AMOUNT,
          "ACCEPTED", ORDO_MSG_ORDER_PAID, 0 },
        /* CancelOrder */
        { "CancelOrder: unknown -> UNKNOWN_ORDER", NONE, CANCEL, "o1", "",
          "buyer", 0, "UNKNOWN_ORDER", 0, 0 },
        { "CancelOrder: user_id not the buyer -> NOT_OWNER", PENDING, CANCEL,
          "o1", "", "mallory", 0, "NOT_OWNER", 0, 0 },
        { "CancelOrder: NOT_OWNER is checked before already CANCELLED",
          CANCELLED, CANCEL, "o1", "", "mallory", 0, "NOT_OWNER", 0, 0 },
        { "CancelOrder: already CANCELLED -> ignored", CANCELLED, CANCEL, "o1",
          "", "buyer", 0, "", 0, 0 },
        { "CancelOrder: not PENDING_PAYMENT -> NOT_PENDING", PAID, CANCEL, "o1",
          "", "buyer", 0, "NOT_PENDING", 0, 0 },
        { "CancelOrder: REFUNDED -> NOT_PENDING", REFUNDED, CANCEL, "o1", "",
          "buyer", 0, "NOT_PENDING", 0, 0 },
        { "CancelOrder: CANCELLED (reason USER)", PENDING, CANCEL, "o1", "",
          "buyer", 0, "ACCEPTED", ORDO_MSG_ORDER_CANCELLED, 0 },
        /* ConfirmReceipt */
        { "ConfirmReceipt: unknown -> UNKNOWN_ORDER", NONE, RECEIPT, "o1", "",
          "", 0, "UNKNOWN_ORDER", 0, 0 },
        { "ConfirmReceipt: RECEIVED -> ignored", RECEIVED, RECEIPT, "o1", "",
          "", 0, "", 0, 0 },
        { "ConfirmReceipt: SETTLED -> ignored", SETTLED, RECEIPT, "o1", "", "",
          0, "", 0, 0 },
        { "ConfirmReceipt: not PAID (pending) -> INVALID_STATE", PENDING,
          RECEIPT, "o1", "", "", 0, "INVALID_STATE", 0, 0 },
        { "ConfirmReceipt: not PAID (cancelled) -> INVALID_STATE", CANCELLED,
          RECEIPT, "o1", "", "", 0, "INVALID_STATE", 0, 0 },
        { "ConfirmReceipt: not PAID (refunded) -> INVALID_STATE", REFUNDED,
          RECEIPT, "o1", "", "", 0, "INVALID_STATE", 0, 0 },
        { "ConfirmReceipt: RECEIVED", PAID, RECEIPT, "o1", "", "", 0,
          "ACCEPTED", ORDO_MSG_ORDER_RECEIVED, 0 },
        /* RefundOrder */
        { "RefundOrder 1. unknown -> UNKNOWN_ORDER", NONE, REFUND, "o1", "r1",
          "", 10, "UNKNOWN_ORDER", 0, 0 },
        { "RefundOrder 3. refund_id already applied -> ignored", PARTIAL,
          REFUND, "o1", "r-part", "", 1000, "", 0, 0 },
        { "RefundOrder 3 before 4: applied id on a REFUNDED order -> ignored",
          REFUNDED, REFUND, "o1", "r-full", "", AMOUNT, "", 0, 0 },
        { "RefundOrder 4. SETTLED -> WINDOW_CLOSED", SETTLED, REFUND, "o1",
          "r1", "", 10, "WINDOW_CLOSED", 0, 0 },
        { "RefundOrder 4 before 5: SETTLED and amount 0 -> WINDOW_CLOSED",
          SETTLED, REFUND, "o1", "r1", "", 0, "WINDOW_CLOSED", 0, 0 },
        { "RefundOrder 4. not PAID or RECEIVED (pending) -> INVALID_STATE",
          PENDING, REFUND, "o1", "r1", "", 10, "INVALID_STATE", 0, 0 },
        { "RefundOrder 4. not PAID or RECEIVED (cancelled) -> INVALID_STATE",
          CANCELLED, REFUND, "o1", "r1", "", 10, "INVALID_STATE", 0, 0 },
        { "RefundOrder 4. not PAID or RECEIVED (refunded) -> INVALID_STATE",
          REFUNDED, REFUND, "o1", "r1", "", 10, "INVALID_STATE", 0, 0 },
        { "RefundOrder 5. amount_cents < 1 -> INVALID_AMOUNT", PAID, REFUND,
          "o1", "r1", "", 0, "INVALID_AMOUNT", 0, 0 },
        { "RefundOrder 5. refunded + amount > amount -> EXCEEDS_PAID", PAID,
          REFUND, "o1", "r1", "", AMOUNT + 1, "EXCEEDS_PAID", 0, 0 },
        { "RefundOrder 5. EXCEEDS_PAID counts earlier refunds", PARTIAL, REFUND,
          "o1", "r1", "", AMOUNT - 1000 + 1, "EXCEEDS_PAID", 0, 0 },
        { "RefundOrder 6. the rest refunds in full", PARTIAL, REFUND, "o1",
          "r1", "", AMOUNT - 1000, "ACCEPTED", ORDO_MSG_ORDER_REFUNDED, 0 },
        { "RefundOrder 6. PAID, partial", PAID, REFUND, "o1", "r1", "", 1,
          "ACCEPTED", ORDO_MSG_ORDER_REFUNDED, 0 },
        { "RefundOrder 6. RECEIVED, partial", RECEIVED, REFUND, "o1", "r1", "",
          10, "ACCEPTED", ORDO_MSG_ORDER_REFUNDED, 0 },
};

ParameterizedTestParameters(order, reasons) {
        return cr_make_param_array(case_t, cases,
                                   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(case_t *c, order, reasons) {
        ordo_order_state_t *s = order_in(c->setup);
        ordo_msg_t m;
        switch (c->type) {
        case PAY:
                m = t_pay(c->order, c->id, c->amount, CMD_TS);
                break;
        case CANCEL:
                m = t_cancel(c->order, c->user, CMD_TS);
                break;
        case RECEIPT:
                m = t_receipt(c->order, CMD_TS);
                break;
        default:
                m = t_refund(c->order, c->id, c->amount, CMD_TS);
                break;
        }
        run(s, m);
        cr_assert_str_eq(tout_outcome(&out), c->expect, "%s", c->rule);
        if (out.n && out.v[0].type == ORDO_MSG_COMMAND_REJECTED) {
                /* RULES.md Rejections: command type, aggregate id,
                 * needs_refund where it applies */
                cr_assert_str_eq(out.v[0].u.rejected.command_type,
                                 ordo_msg_type_name(c->type));
                cr_assert_str_eq(out.v[0].meta.aggregate_id, "o1");
                cr_assert_str_eq(out.v[0].u.rejected.order_id, "o1");
                cr_assert_eq(out.v[0].u.rejected.needs_refund, c->needs_refund,
                             "%s", c->rule);
                cr_assert_eq(out.v[0].meta.version,
                             c->setup == NONE ? 0 : out.v[0].meta.version);
        } else if (!strcmp(c->expect, "ACCEPTED")) {
                cr_assert_eq(out.v[0].type, c->event, "%s", c->rule);
                cr_assert_str_eq(out.v[0].meta.aggregate_id, "o1");
        }
        ordo_order_state_destroy(s);
}

/* ---- versions and the accepted events' contents ---- */

Test(order, versions_and_fields) {
        ordo_order_state_t *s = order_in(NONE);
        open_order(s, "o1", T0, FREEZE);
        cr_assert_eq(out.n, 1);
        cr_assert_eq(out.v[0].type, ORDO_MSG_ORDER_OPENED);
        cr_assert_eq(out.v[0].meta.version, 1);
        cr_assert_eq(out.v[0].u.open.n_commission_bps, 2);
        run(s, t_pay("o1", "pay-1", AMOUNT - 1, PAID_AT));
        cr_assert_eq(out.v[0].meta.version, 1, "a rejection changes nothing");
        run(s, t_pay("o1", "pay-1", AMOUNT, PAID_AT));
        cr_assert_eq(out.v[0].meta.version, 2);
        cr_assert_eq(out.v[0].u.payment.paid_ms, PAID_AT, "paid_ms = ts_ms");
        run(s, t_refund("o1", "r1", 2000, PAID_AT + 1));
        cr_assert_eq(out.v[0].meta.version, 3);
        cr_assert_eq(out.v[0].u.refund.refunded_cents, 2000);
        cr_assert_eq(out.v[0].u.refund.full, 0);
        run(s, t_refund("o1", "r2", 3000, PAID_AT + 2));
        cr_assert_eq(out.v[0].u.refund.refunded_cents, AMOUNT);
        cr_assert_eq(out.v[0].u.refund.full, 1, "refunded == amount: REFUNDED");
        /* REFUNDED never settles */
        run(s, t_tick(INT64_MAX / 2));
        cr_assert_eq(out.n, 0);
        cr_assert_gt(ordo_order_state_bytes(s), 0);
        ordo_order_state_destroy(s);
}

Test(order, cancel_releases_stock) {
        /* RULES.md: CANCELLED (reason USER), stock released */
        ordo_order_state_t *s = order_in(PENDING);
        run(s, t_cancel("o1", "buyer", CMD_TS));
        cr_assert_eq(out.n, 2);
        cr_assert_str_eq(out.v[0].u.release.reason, "USER");
        cr_assert_eq(out.v[1].type, ORDO_MSG_RELEASE_STOCK);
        cr_assert_str_eq(ordo_msg_key(&out.v[1]), "act");
        cr_assert_str_eq(out.v[1].u.release.order_id, "o1");
        cr_assert_str_eq(out.v[1].u.release.user_id, "buyer");
        cr_assert_eq(out.v[1].u.release.qty, 2);
        ordo_order_state_destroy(s);
}

Test(order, too_many_refunds) {
        /* RULES.md RefundOrder 5: the order already has 50 refunds ->
         * TOO_MANY_REFUNDS */
        ordo_order_state_t *s = order_in(PAID);
        char id[16];
        int i;
        for (i = 0; i < 50; i++) {
                snprintf(id, sizeof(id), "r%d", i);
                run(s, t_refund("o1", id, 1, CMD_TS));
                cr_assert_str_eq(tout_outcome(&out), "ACCEPTED");
        }
        run(s, t_refund("o1", "r50", 1, CMD_TS));
        cr_assert_str_eq(tout_outcome(&out), "TOO_MANY_REFUNDS");
        run(s, t_refund("o1", "r51", AMOUNT, CMD_TS));
        cr_assert_str_eq(tout_outcome(&out), "EXCEEDS_PAID",
                         "EXCEEDS_PAID is checked first");
        ordo_order_state_destroy(s);
}

Test(order, duplicate_order_id) {
        /* RULES.md: OpenOrder for an existing order_id (another activity)
         * -> DUPLICATE_ORDER_ID, existing order untouched, the new
         * reservation released */
        ordo_order_state_t *s = order_in(PENDING);
        uint64_t before = ordo_order_state_digest(s);
        run(s, t_open("o1", "act-2", "other", 1, 77, T0 + 1, 5, 5, 5));
        cr_assert_eq(out.n, 2);
        cr_assert_str_eq(out.v[0].u.rejected.reason, "DUPLICATE_ORDER_ID");
        cr_assert_eq(out.v[0].meta.version, 1, "the existing order's");
        cr_assert_eq(out.v[1].type, ORDO_MSG_RELEASE_STOCK);
        cr_assert_str_eq(out.v[1].u.release.activity_id, "act-2");
        cr_assert_str_eq(out.v[1].u.release.user_id, "other");
        cr_assert_eq(out.v[1].u.release.qty, 1);
        cr_assert_str_eq(out.v[1].u.release.reason, "DUPLICATE_ORDER_ID");
        cr_assert_eq(ordo_order_state_digest(s), before, "untouched");
        /* docs/rules.md: the same OpenOrder again is a redelivery */
        open_order(s, "o1", T0, FREEZE);
        cr_assert_eq(out.n, 0);
        ordo_order_state_destroy(s);
}

/* ---- timers: boundaries at the deadline and 1 ms either side ---- */

typedef struct timer_case_s {
        char rule[96];
        enum setup setup;
        int64_t tick_ts;
        ordo_msg_type_t fires; /* 0: nothing */
        int64_t event_ts;
} timer_case_t;

#define AUTO_AT   (PAID_AT + AUTO_RECEIVE)
#define SETTLE_AT (RECEIVED_AT + FREEZE)
static timer_case_t timer_cases[] = {
        { "PENDING_PAYMENT and ts > pay_deadline: at deadline - 1", PENDING,
          DEADLINE - 1, 0, 0 },
        { "PENDING_PAYMENT and ts > pay_deadline: at the deadline", PENDING,
          DEADLINE, 0, 0 },
        { "PENDING_PAYMENT and ts > pay_deadline: at deadline + 1", PENDING,
          DEADLINE + 1, ORDO_MSG_ORDER_CANCELLED, DEADLINE },
        { "PAID and ts >= paid_ms + auto_receive_ms: - 1", PAID, AUTO_AT - 1, 0,
          0 },
        { "PAID and ts >= paid_ms + auto_receive_ms: at", PAID, AUTO_AT,
          ORDO_MSG_ORDER_RECEIVED, AUTO_AT },
        { "PAID and ts >= paid_ms + auto_receive_ms: + 1", PAID, AUTO_AT + 1,
          ORDO_MSG_ORDER_RECEIVED, AUTO_AT },
        { "RECEIVED and ts >= received_ms + freeze_ms: - 1", RECEIVED,
          SETTLE_AT - 1, 0, 0 },
        { "RECEIVED and ts >= received_ms + freeze_ms: at", RECEIVED, SETTLE_AT,
          ORDO_MSG_ORDER_SETTLED, SETTLE_AT },
        { "RECEIVED and ts >= received_ms + freeze_ms: + 1", RECEIVED,
          SETTLE_AT + 1, ORDO_MSG_ORDER_SETTLED, SETTLE_AT },
};

ParameterizedTestParameters(order, timer_boundaries) {
        return cr_make_param_array(timer_case_t, timer_cases,
                                   sizeof(timer_cases) /
                                       sizeof(timer_cases[0]));
}

ParameterizedTest(timer_case_t *c, order, timer_boundaries) {
        ordo_order_state_t *s = order_in(c->setup);
        run(s, t_tick(c->tick_ts));
        if (!c->fires) {
                cr_assert_eq(out.n, 0, "%s", c->rule);
        } else {
                cr_assert_geq(out.n, 1, "%s", c->rule);
                cr_assert_eq(out.v[0].type, c->fires, "%s", c->rule);
                /* "each at its own deadline, never at the tick's time" */
                cr_assert_eq(out.v[0].meta.ts_ms, c->event_ts, "%s", c->rule);
        }
        if (c->fires == ORDO_MSG_ORDER_CANCELLED) {
                cr_assert_str_eq(out.v[0].u.release.reason, "TIMEOUT");
                cr_assert_eq(out.v[1].type, ORDO_MSG_RELEASE_STOCK,
                             "stock released");
                cr_assert_eq(out.v[1].meta.ts_ms, DEADLINE);
        }
        if (c->fires == ORDO_MSG_ORDER_RECEIVED) {
                cr_assert_eq(out.v[0].u.received.received_ms, AUTO_AT);
                cr_assert_eq(out.v[0].u.received.automatic, 1);
        }
        if (c->fires == ORDO_MSG_ORDER_SETTLED)
                cr_assert_eq(out.v[0].u.settled.settled_ms, SETTLE_AT);
        ordo_order_state_destroy(s);
}

/* The same boundaries reached by a command instead of a Tick: "before a
 * command touches an order, the order's due timers fire first". */
Test(order, payment_at_deadline_boundaries) {
        int64_t ts[3] = { DEADLINE - 1, DEADLINE, DEADLINE + 1 };
        int i;
        for (i = 0; i < 3; i++) {
                ordo_order_state_t *s = order_in(PENDING);
                run(s, t_pay("o1", "pay-1", AMOUNT, ts[i]));
                if (i < 2) {
                        cr_assert_str_eq(tout_outcome(&out), "ACCEPTED");
                        cr_assert_eq(out.n, 1);
                        cr_assert_eq(out.v[0].type, ORDO_MSG_ORDER_PAID);
                } else {
                        cr_assert_eq(out.n, 3);
                        cr_assert_eq(out.v[0].type, ORDO_MSG_ORDER_CANCELLED);
                        cr_assert_eq(out.v[0].meta.ts_ms, DEADLINE);
                        cr_assert_eq(out.v[1].type, ORDO_MSG_RELEASE_STOCK);
                        cr_assert_str_eq(out.v[2].u.rejected.reason,
                                         "ORDER_CANCELLED");
                        cr_assert_eq(out.v[2].u.rejected.needs_refund, 1);
                        cr_assert_eq(out.v[2].meta.ts_ms, DEADLINE + 1);
                }
                ordo_order_state_destroy(s);
        }
}

Test(order, cancel_after_timeout_is_ignored) {
        ordo_order_state_t *s = order_in(PENDING);
        run(s, t_cancel("o1", "buyer", DEADLINE + 1));
        cr_assert_eq(out.n, 2, "only the timeout: then already CANCELLED");
        cr_assert_str_eq(out.v[0].u.release.reason, "TIMEOUT");
        ordo_order_state_destroy(s);
}

Test(order, refund_after_freeze_window_closed) {
        /* timers fire first: received, settled, then WINDOW_CLOSED */
        ordo_order_state_t *s = order_in(PAID);
        int64_t ts = AUTO_AT + FREEZE;
        run(s, t_refund("o1", "r1", 1, ts));
        cr_assert_eq(out.n, 3);
        cr_assert_eq(out.v[0].type, ORDO_MSG_ORDER_RECEIVED);
        cr_assert_eq(out.v[0].meta.ts_ms, AUTO_AT);
        cr_assert_eq(out.v[1].type, ORDO_MSG_ORDER_SETTLED);
        cr_assert_eq(out.v[1].meta.ts_ms, AUTO_AT + FREEZE);
        cr_assert_str_eq(out.v[2].u.rejected.reason, "WINDOW_CLOSED");
        ordo_order_state_destroy(s);
}

Test(order, receipt_with_zero_freeze_settles_at_once) {
        /* RULES.md: "so ConfirmReceipt with freeze_ms = 0 settles at
         * once" */
        ordo_order_state_t *s = order_in(NONE);
        open_order(s, "o1", T0, 0);
        run(s, t_pay("o1", "pay-1", AMOUNT, PAID_AT));
        run(s, t_receipt("o1", RECEIVED_AT));
        cr_assert_eq(out.n, 2);
        cr_assert_eq(out.v[0].type, ORDO_MSG_ORDER_RECEIVED);
        cr_assert_eq(out.v[0].u.received.automatic, 0);
        cr_assert_eq(out.v[1].type, ORDO_MSG_ORDER_SETTLED);
        cr_assert_eq(out.v[1].u.settled.settled_ms, RECEIVED_AT);
        cr_assert_str_eq(out.v[1].meta.id + strlen(out.v[1].meta.id) - 2, "-1",
                         "index counts messages of one input");
        ordo_order_state_destroy(s);
}

Test(order, tick_fires_in_deadline_order) {
        /* RULES.md: a Tick fires the due timers of every order on its
         * partition, in deadline order (docs/rules.md: by the first ts at
         * which each is due, then deadline, then order id) */
        ordo_order_state_t *s = order_in(NONE);
        size_t i;
        open_order(s, "b", T0 + 30, FREEZE); /* deadline T0+130 */
        open_order(s, "c", T0, FREEZE);      /* T0+100 */
        open_order(s, "a", T0, FREEZE);      /* T0+100 */
        open_order(s, "d", T0 + 10, FREEZE); /* paid: received at +1010 */
        run(s, t_pay("d", "p", AMOUNT, T0 + 10));
        run(s, t_tick(T0 + 100000));
        /* a, c at T0+100; b at T0+130; d received T0+1010, settled
         * T0+6010: each a cancel + release, or one event */
        cr_assert_eq(out.n, 8);
        cr_assert_str_eq(ordo_msg_key(&out.v[0]), "a");
        cr_assert_str_eq(ordo_msg_key(&out.v[2]), "c");
        cr_assert_str_eq(ordo_msg_key(&out.v[4]), "b");
        cr_assert_eq(out.v[6].type, ORDO_MSG_ORDER_RECEIVED);
        cr_assert_eq(out.v[7].type, ORDO_MSG_ORDER_SETTLED);
        for (i = 1; i < out.n; i++)
                cr_assert_leq(out.v[i - 1].meta.ts_ms, out.v[i].meta.ts_ms);
        cr_assert_eq(out.v[7].meta.ts_ms, T0 + 10 + AUTO_RECEIVE + FREEZE);
        ordo_order_state_destroy(s);
}

/* docs/rules.md: at an equal deadline a receipt (due at it) fires before
 * a payment timeout (due only after it), whether one Tick or two cover
 * them; and a chain (receipt, then settlement) sorts by the same key. */
Test(order, a_tie_at_a_deadline_fires_what_was_due_first) {
        int ticks;
        for (ticks = 1; ticks <= 2; ticks++) {
                ordo_order_state_t *s = order_in(NONE);
                /* b's receipt is due at DEADLINE, a's timeout after it */
                run(s, t_open("b", "act", "buyer", 1, AMOUNT,
                              DEADLINE - AUTO_RECEIVE - 50, PAY_TIMEOUT,
                              AUTO_RECEIVE, FREEZE));
                run(s, t_pay("b", "p", AMOUNT, DEADLINE - AUTO_RECEIVE));
                open_order(s, "a", T0, FREEZE);
                if (ticks == 2) {
                        run(s, t_tick(DEADLINE));
                        cr_assert_eq(out.n, 1);
                        cr_assert_str_eq(ordo_msg_key(&out.v[0]), "b");
                }
                run(s, t_tick(DEADLINE + 1));
                cr_assert_eq(out.n, ticks == 2 ? 2 : 3, "ticks %d", ticks);
                if (ticks == 1) {
                        cr_assert_eq(out.v[0].type, ORDO_MSG_ORDER_RECEIVED);
                        cr_assert_str_eq(ordo_msg_key(&out.v[0]), "b");
                }
                cr_assert_eq(out.v[out.n - 2].type, ORDO_MSG_ORDER_CANCELLED);
                cr_assert_str_eq(ordo_msg_key(&out.v[out.n - 2]), "a");
                cr_assert_eq(out.v[out.n - 2].meta.ts_ms, DEADLINE);
                ordo_order_state_destroy(s);
        }
        {
                ordo_order_state_t *s = order_in(NONE);
                open_order(s, "b", T0, 0);
                open_order(s, "a", T0, 0);
                run(s, t_pay("b", "p", AMOUNT, PAID_AT));
                run(s, t_pay("a", "p", AMOUNT, PAID_AT));
                run(s, t_tick(PAID_AT + AUTO_RECEIVE));
                cr_assert_eq(out.n, 4);
                cr_assert_str_eq(ordo_msg_key(&out.v[0]), "a");
                cr_assert_eq(out.v[0].type, ORDO_MSG_ORDER_RECEIVED);
                cr_assert_str_eq(ordo_msg_key(&out.v[1]), "a");
                cr_assert_eq(out.v[1].type, ORDO_MSG_ORDER_SETTLED);
                cr_assert_str_eq(ordo_msg_key(&out.v[2]), "b");
                cr_assert_eq(out.v[2].type, ORDO_MSG_ORDER_RECEIVED);
                cr_assert_str_eq(ordo_msg_key(&out.v[3]), "b");
                cr_assert_eq(out.v[3].type, ORDO_MSG_ORDER_SETTLED);
                ordo_order_state_destroy(s);
        }
}

Test(order, final_state_does_not_depend_on_ticks) {
        /* RULES.md: "The final state therefore does not depend on how
         * often ticks come." */
        ordo_order_state_t *a = order_in(NONE), *b = order_in(NONE);
        ordo_msg_t cmds[64];
        char id[16];
        int n = 0, i, every;
        int64_t ts;
        for (i = 0; i < 16; i++) {
                snprintf(id, sizeof(id), "o%d", i);
                ts = T0 + i * 37;
                cmds[n++] = t_open(id, "act", "buyer", 1, AMOUNT, ts, 200,
                                   400 + i * 13, i % 3 ? 300 : 0);
                if (i % 4)
                        cmds[n++] = t_pay(id, "p", AMOUNT, ts + 150);
                if (i % 4 == 2)
                        cmds[n++] = t_receipt(id, ts + 300);
        }
        for (every = 0; every < 2; every++) {
                ordo_order_state_t *s = every ? b : a;
                int64_t next = T0;
                for (i = 0; i < n; i++) {
                        while (every && next < cmds[i].meta.ts_ms) {
                                run(s, t_tick(next));
                                next += 17;
                        }
                        run(s, cmds[i]);
                }
                run(s, t_tick(T0 + 100000));
        }
        cr_assert_eq(ordo_order_state_digest(a), ordo_order_state_digest(b));
        ordo_order_state_destroy(a);
        ordo_order_state_destroy(b);
        ordo_order_state_destroy(NULL);
}

Test(order, ignores_other_types) {
        ordo_order_state_t *s = order_in(PENDING);
        run(s, t_place("x", "act", "u", 1, T0));
        cr_assert_eq(out.n, 0);
        ordo_order_state_destroy(s);
}

Test(order, replay_equality) {
        /* apply(emitted events) rebuilds the deciding state, timers
         * included: both then decide a Tick identically */
        ordo_order_state_t *s = order_in(NONE), *r = order_in(NONE);
        tout_t all = { 0 };
        ordo_sink_t sink = tout_sink(&all);
        ordo_msg_t m;
        ordo_pos_t pos;
        char id[16];
        size_t i, n_a;
        for (i = 0; i < 300; i++) {
                snprintf(id, sizeof(id), "o%zu", i / 6);
                switch (i % 6) {
                case 0:
                case 1:
                        m = t_open(id, "act", "buyer", 1, AMOUNT,
                                   T0 + (int64_t)i * 10, 50, 500, 700);
                        break;
                case 2:
                        m = t_pay(id, "p", AMOUNT, T0 + (int64_t)i * 10);
                        break;
                case 3:
                        m = t_refund(id, id, 100, T0 + (int64_t)i * 10);
                        break;
                case 4:
                        m = t_receipt(id, T0 + (int64_t)i * 10);
                        break;
                default:
                        m = t_tick(T0 + (int64_t)i * 10);
                        break;
                }
                pos = t_pos("order-commands");
                ordo_order_handle(s, &m, &pos, &sink);
        }
        for (i = 0; i < all.n; i++)
                if (ordo_msg_is_event(all.v[i].type))
                        ordo_order_apply(r, &all.v[i]);
        cr_assert_eq(ordo_order_state_digest(r), ordo_order_state_digest(s));
        tout_clear(&all);
        m = t_tick(T0 + 1000000);
        pos = t_pos("order-commands");
        ordo_order_handle(s, &m, &pos, &sink);
        n_a = all.n;
        ordo_order_handle(r, &m, &pos, &sink);
        cr_assert_eq(all.n, 2 * n_a);
        cr_assert_gt(n_a, 0);
        cr_assert(!memcmp(all.v, all.v + n_a, n_a * sizeof(*all.v)));
        tout_free(&all);
        ordo_order_state_destroy(s);
        ordo_order_state_destroy(r);
}
