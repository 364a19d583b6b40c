/*
 * ordo - snapshot save and load of big rule states (rules.h
 * "Snapshots"), on one core.
 *
 *   activity:   the flash sale of bench_rules: 1 activity, 10,000
 *               stock, N PlaceOrder from N/5 users (N order ids
 *               remembered, nearly all SEEN);
 *   order:      N orders opened, every other one paid, every tenth
 *               of those refunded in part (timers in the heap);
 *   referral:   N/5 users, each bound to user i/2;
 *   commission: that graph, N orders observed and paid (2 levels).
 *
 * For each: the snapshot's size, the CPU time to save it and to load
 * it, and a check that the loaded state has the same digest and saves to
 * the same bytes. States are built by folding events (*_apply), which
 * is faster than deciding and gives the same structures.
 *
 * Usage: bench_snapshot [orders [state]]   (default 1000000, all four)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rules.h"

/* CPU time of this thread: the machine is shared, and wall time then
 * measures the neighbours too. */
static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One line of figures; exits non-zero if the round trip was not exact. */
static void report(const char *what, const ordo_buf_t *a, const ordo_buf_t *b,
                   double save_s, double load_s, int same_digest) {
        int same = a->len == b->len && !memcmp(a->data, b->data, a->len);
        printf("%-11s %8.1f MB  save %6.3f s (%6.0f MB/s)  load %6.3f s "
               "(%6.0f MB/s)  %s\n",
               what, (double)a->len / 1e6, save_s,
               (double)a->len / 1e6 / save_s, load_s,
               (double)a->len / 1e6 / load_s,
               same && same_digest ? "exact" : "MISMATCH");
        if (!same || !same_digest)
                exit(1);
}

static void activity(long n) {
        ordo_activity_state_t *s = ordo_activity_state_new(), *t;
        ordo_buf_t a = { 0 }, b = { 0 };
        char err[256];
        ordo_msg_t ev;
        double t0, t1, t2;
        long i;
        ordo_msg_init(&ev, ORDO_MSG_ACTIVITY_CREATED);
        strcpy(ev.u.activity.activity_id, "flash");
        ev.u.activity.stock = 10000;
        ev.u.activity.per_user_limit = 1;
        ev.u.activity.end_ms = 1LL << 40;
        ev.meta.version = 1;
        ordo_activity_apply(s, &ev);
        for (i = 0; i < n; i++) {
                int reserved = i < 10000;
                ordo_msg_init(&ev, reserved ? ORDO_MSG_STOCK_RESERVED
                                            : ORDO_MSG_COMMAND_REJECTED);
                if (reserved) {
                        strcpy(ev.u.stock.activity_id, "flash");
                        snprintf(ev.u.stock.order_id,
                                 sizeof(ev.u.stock.order_id), "o%ld", i);
                        snprintf(ev.u.stock.user_id, sizeof(ev.u.stock.user_id),
                                 "u%ld", i % (n / 5));
                        ev.u.stock.qty = 1;
                        ev.meta.version = i + 2;
                } else {
                        strcpy(ev.u.rejected.command_type, "PlaceOrder");
                        strcpy(ev.u.rejected.activity_id, "flash");
                        snprintf(ev.u.rejected.order_id,
                                 sizeof(ev.u.rejected.order_id), "o%ld", i);
                }
                ordo_activity_apply(s, &ev);
        }
        t0 = now_s();
        ordo_activity_state_save(s, &a);
        t1 = now_s();
        t = ordo_activity_state_load(a.data, a.len, err, sizeof(err));
        t2 = now_s();
        if (!t) {
                fprintf(stderr, "%s\n", err);
                exit(1);
        }
        ordo_activity_state_save(t, &b);
        report("activity", &a, &b, t1 - t0, t2 - t1,
               ordo_activity_state_digest(s) == ordo_activity_state_digest(t));
        ordo_activity_state_destroy(s);
        ordo_activity_state_destroy(t);
        ordo_buf_fini(&a);
        ordo_buf_fini(&b);
}

static void order(long n) {
        ordo_order_state_t *s = ordo_order_state_new(), *t;
        ordo_buf_t a = { 0 }, b = { 0 };
        char err[256];
        ordo_msg_t ev;
        double t0, t1, t2;
        long i;
        for (i = 0; i < n; i++) {
                ordo_msg_init(&ev, ORDO_MSG_ORDER_OPENED);
                snprintf(ev.u.open.order_id, sizeof(ev.u.open.order_id), "o%ld",
                         i);
                strcpy(ev.meta.aggregate_id, ev.u.open.order_id);
                strcpy(ev.u.open.activity_id, "flash");
                snprintf(ev.u.open.user_id, sizeof(ev.u.open.user_id), "u%ld",
                         i % (n / 5));
                ev.u.open.qty = 1;
                ev.u.open.amount_cents = 9999;
                ev.u.open.placed_ms = 1700000000000LL + i;
                ev.u.open.pay_deadline_ms = ev.u.open.placed_ms + 900000;
                ev.u.open.auto_receive_ms = 864000000;
                ev.u.open.freeze_ms = 604800000;
                ev.meta.version = 1;
                ordo_order_apply(s, &ev);
                if (i % 2)
                        continue;
                ordo_msg_init(&ev, ORDO_MSG_ORDER_PAID);
                snprintf(ev.meta.aggregate_id, sizeof(ev.meta.aggregate_id),
                         "o%ld", i);
                strcpy(ev.u.payment.order_id, ev.meta.aggregate_id);
                snprintf(ev.u.payment.payment_id,
                         sizeof(ev.u.payment.payment_id), "pay%ld", i);
                ev.u.payment.paid_ms = 1700000001000LL + i;
                ev.meta.version = 2;
                ordo_order_apply(s, &ev);
                if (i % 20)
                        continue;
                ordo_msg_init(&ev, ORDO_MSG_ORDER_REFUNDED);
                snprintf(ev.meta.aggregate_id, sizeof(ev.meta.aggregate_id),
                         "o%ld", i);
                strcpy(ev.u.refund.order_id, ev.meta.aggregate_id);
                strcpy(ev.u.refund.refund_id, "r1");
                ev.u.refund.refunded_cents = 100;
                ev.meta.version = 3;
                ordo_order_apply(s, &ev);
        }
        t0 = now_s();
        ordo_order_state_save(s, &a);
        t1 = now_s();
        t = ordo_order_state_load(a.data, a.len, err, sizeof(err));
        t2 = now_s();
        if (!t) {
                fprintf(stderr, "%s\n", err);
                exit(1);
        }
        ordo_order_state_save(t, &b);
        report("order", &a, &b, t1 - t0, t2 - t1,
               ordo_order_state_digest(s) == ordo_order_state_digest(t));
        ordo_order_state_destroy(s);
        ordo_order_state_destroy(t);
        ordo_buf_fini(&a);
        ordo_buf_fini(&b);
}

static void bind_all(long users, ordo_referral_state_t *ref,
                     ordo_commission_state_t *com) {
        ordo_msg_t ev;
        long i;
        ordo_msg_init(&ev, ORDO_MSG_REFERRER_BOUND);
        for (i = 1; i < users; i++) {
                snprintf(ev.u.bind.user_id, sizeof(ev.u.bind.user_id), "u%ld",
                         i);
                snprintf(ev.u.bind.referrer_id, sizeof(ev.u.bind.referrer_id),
                         "u%ld", i / 2);
                ev.u.bind.bound_ms = i;
                if (ref)
                        ordo_referral_apply(ref, &ev);
                if (com)
                        ordo_commission_bind(com, &ev);
        }
}

static void referral(long n) {
        ordo_referral_state_t *s = ordo_referral_state_new(), *t;
        ordo_buf_t a = { 0 }, b = { 0 };
        char err[256];
        double t0, t1, t2;
        bind_all(n / 5, s, NULL);
        t0 = now_s();
        ordo_referral_state_save(s, &a);
        t1 = now_s();
        t = ordo_referral_state_load(a.data, a.len, err, sizeof(err));
        t2 = now_s();
        if (!t) {
                fprintf(stderr, "%s\n", err);
                exit(1);
        }
        ordo_referral_state_save(t, &b);
        report("referral", &a, &b, t1 - t0, t2 - t1,
               ordo_referral_state_digest(s) == ordo_referral_state_digest(t));
        ordo_referral_state_destroy(s);
        ordo_referral_state_destroy(t);
        ordo_buf_fini(&a);
        ordo_buf_fini(&b);
}

static void count(void *opaque, const ordo_msg_t *m) {
        (void)opaque;
        (void)m;
}

static void commission(long n) {
        ordo_commission_state_t *s = ordo_commission_state_new(), *t;
        ordo_buf_t a = { 0 }, b = { 0 };
        ordo_sink_t sink = { count, NULL };
        ordo_pos_t pos = { "order-events", 0, 0 };
        char err[256];
        ordo_msg_t ev;
        double t0, t1, t2;
        long i;
        bind_all(n / 5, NULL, s);
        for (i = 0; i < n; i++) {
                ordo_msg_init(&ev, ORDO_MSG_ORDER_OPENED);
                snprintf(ev.meta.id, sizeof(ev.meta.id), "e%ld", i);
                snprintf(ev.u.open.order_id, sizeof(ev.u.open.order_id), "o%ld",
                         i);
                snprintf(ev.u.open.user_id, sizeof(ev.u.open.user_id), "u%ld",
                         4 + i % (n / 5 - 4));
                ev.u.open.amount_cents = 9999;
                ev.u.open.n_commission_bps = 2;
                ev.u.open.commission_bps[0] = 1000;
                ev.u.open.commission_bps[1] = 500;
                ordo_commission_observe(s, &ev);
                ordo_msg_init(&ev, ORDO_MSG_ORDER_PAID);
                snprintf(ev.meta.id, sizeof(ev.meta.id), "e%ld", i);
                snprintf(ev.u.payment.order_id, sizeof(ev.u.payment.order_id),
                         "o%ld", i);
                ev.u.payment.paid_ms = ev.meta.ts_ms = n;
                pos.offset = i;
                ordo_commission_handle(s, &ev, &pos, &sink);
        }
        t0 = now_s();
        ordo_commission_state_save(s, &a);
        t1 = now_s();
        t = ordo_commission_state_load(a.data, a.len, err, sizeof(err));
        t2 = now_s();
        if (!t) {
                fprintf(stderr, "%s\n", err);
                exit(1);
        }
        ordo_commission_state_save(t, &b);
        report("commission", &a, &b, t1 - t0, t2 - t1,
               ordo_commission_state_digest(s) ==
                   ordo_commission_state_digest(t));
        ordo_commission_state_destroy(s);
        ordo_commission_state_destroy(t);
        ordo_buf_fini(&a);
        ordo_buf_fini(&b);
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                void (*run)(long n);
        } states[] = { { "activity", activity },
                       { "order", order },
                       { "referral", referral },
                       { "commission", commission } };
        long n = argc > 1 ? atol(argv[1]) : 1000000;
        const char *only = argc > 2 ? argv[2] : NULL;
        size_t i;
        if (n < 100) {
                fprintf(stderr, "usage: bench_snapshot [orders >= 100] "
                                "[activity|order|referral|commission]\n");
                return 2;
        }
        printf("snapshot benchmark: %ld orders, %ld users\n", n, n / 5);
        for (i = 0; i < sizeof(states) / sizeof(*states); i++)
                if (!only || !strcmp(only, states[i].name))
                        states[i].run(n);
        return 0;
}
