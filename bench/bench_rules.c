/*
 * ordo - decisions per second of the pure rules on one core, and their
 * memory (bench/RESULTS.md "rules").
 *
 *   flash sale: 1 activity, 10,000 stock, limit 1, 1,000,000 PlaceOrder
 *               from 200,000 users (every user retries 5 times with new
 *               order ids), through ordo_activity_handle;
 *   payments:   N orders opened, then N ConfirmPayment through
 *               ordo_order_handle, each OrderPaid through
 *               ordo_commission_handle (2 levels: every buyer has a
 *               parent and a grandparent);
 *   memory:     state bytes per remembered order id, per reservation,
 *               per open order, per paid order, and ru_maxrss.
 *
 * Command ids are prepared before the clock starts; the timed loop
 * copies them into one reusable message (a few ns), as a decoder would
 * fill it. The sink only counts: encoding is the codec's cost, measured
 * elsewhere (STACK.md).
 *
 * Usage: bench_rules [orders] [users]   (defaults 1000000 200000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "rules.h"

typedef char id_t16[16];

static long long emitted;

static void count(void *opaque, const ordo_msg_t *m) {
        (void)opaque;
        emitted += m->type != ORDO_MSG_NONE;
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static id_t16 *ids(const char *prefix, long n) {
        id_t16 *v = malloc((size_t)n * sizeof(*v));
        long i;
        if (!v)
                abort();
        for (i = 0; i < n; i++)
                snprintf(v[i], sizeof(v[i]), "%s%ld", prefix, i % 1000000000);
        return v;
}

static void report(const char *what, long n, double secs) {
        printf("%-34s %9ld in %7.3f s  %6.2f M/s  %6.1f ns each\n", what, n,
               secs, (double)n / secs / 1e6, secs * 1e9 / (double)n);
}

static void create(ordo_activity_state_t *s, int64_t stock, int64_t limit,
                   const ordo_sink_t *sink) {
        ordo_msg_t m;
        ordo_pos_t pos = { "activity-commands", 0, 0 };
        ordo_msg_init(&m, ORDO_MSG_CREATE_ACTIVITY);
        strcpy(m.meta.id, "create");
        strcpy(m.u.activity.activity_id, "flash");
        strcpy(m.u.activity.sku, "sku");
        m.u.activity.price_cents = 9999;
        m.u.activity.stock = stock;
        m.u.activity.per_user_limit = limit;
        m.u.activity.start_ms = 0;
        m.u.activity.end_ms = 1LL << 40;
        ordo_activity_handle(s, &m, &pos, sink);
}

/* n PlaceOrder of qty 1 from users i % n_users; returns the seconds. */
static double place_all(ordo_activity_state_t *s, id_t16 *orders, id_t16 *users,
                        long n, long n_users, const ordo_sink_t *sink) {
        static ordo_msg_t m;
        ordo_pos_t pos = { "activity-commands", 0, 1 };
        double t0;
        long i;
        ordo_msg_init(&m, ORDO_MSG_PLACE_ORDER);
        strcpy(m.u.place.activity_id, "flash");
        m.u.place.qty = 1;
        t0 = now_s();
        for (i = 0; i < n; i++) {
                memcpy(m.meta.id, orders[i], sizeof(*orders));
                memcpy(m.u.place.order_id, orders[i], sizeof(*orders));
                memcpy(m.u.place.user_id, users[i % n_users], sizeof(*users));
                m.meta.ts_ms = 1000 + i / 1000;
                pos.offset = i + 1;
                ordo_activity_handle(s, &m, &pos, sink);
        }
        return now_s() - t0;
}

int main(int argc, char **argv) {
        long n = argc > 1 ? atol(argv[1]) : 1000000;
        long n_users = argc > 2 ? atol(argv[2]) : 200000;
        long n_pay = n / 5, i;
        id_t16 *orders = ids("o", n), *users = ids("u", n_users);
        ordo_sink_t sink = { count, NULL };
        ordo_activity_state_t *act;
        ordo_order_state_t *ord;
        ordo_referral_state_t *ref;
        ordo_commission_state_t *com;
        static ordo_msg_t m, ev;
        ordo_pos_t pos = { "order-commands", 0, 0 };
        double secs, t0, t_order, t_com;
        struct rusage ru;
        size_t bytes;

        if (n < 10 || n_users < 8) {
                fprintf(stderr, "usage: bench_rules [orders] [users]\n");
                return 2;
        }
        printf("rules benchmark: %ld PlaceOrder, %ld users, %ld payments\n", n,
               n_users, n_pay);

        /* 1. hot flash sale */
        act = ordo_activity_state_new();
        create(act, 10000, 1, &sink);
        emitted = 0;
        secs = place_all(act, orders, users, n, n_users, &sink);
        report("flash sale PlaceOrder decisions", n, secs);
        printf("  events+commands emitted %lld, remaining %lld\n", emitted,
               (long long)ordo_activity_remaining(act, "flash"));
        bytes = ordo_activity_state_bytes(act);
        printf("  activity state %.1f MB: %.1f bytes per order id seen\n",
               (double)bytes / 1e6, (double)bytes / (double)n);
        ordo_activity_state_destroy(act);

        /* memory per reservation (user + order), all accepted */
        act = ordo_activity_state_new();
        create(act, n_users, 1, &sink);
        place_all(act, orders, users, n_users, n_users, &sink);
        bytes = ordo_activity_state_bytes(act);
        printf("  %ld reservations by %ld users: %.1f MB, %.1f bytes "
               "per reservation incl. its user\n",
               n_users, n_users, (double)bytes / 1e6,
               (double)bytes / (double)n_users);
        ordo_activity_state_destroy(act);

        /* 2. payments with 2-level commission */
        ref = ordo_referral_state_new();
        com = ordo_commission_state_new();
        ord = ordo_order_state_new();
        for (i = 1; i < n_users; i++) {
                /* u_i -> u_(i/2): every user at depth >= 2 has 2 levels */
                ordo_msg_init(&m, ORDO_MSG_REFERRER_BOUND);
                memcpy(m.u.bind.user_id, users[i], sizeof(*users));
                memcpy(m.u.bind.referrer_id, users[i / 2], sizeof(*users));
                ordo_commission_bind(com, &m);
        }
        ordo_msg_init(&m, ORDO_MSG_OPEN_ORDER);
        strcpy(m.u.open.activity_id, "flash");
        m.u.open.qty = 1;
        m.u.open.amount_cents = 9999;
        m.u.open.auto_receive_ms = 864000000;
        m.u.open.freeze_ms = 604800000;
        m.u.open.commission_bps[0] = 1000;
        m.u.open.commission_bps[1] = 500;
        m.u.open.n_commission_bps = 2;
        t0 = now_s();
        for (i = 0; i < n_pay; i++) {
                memcpy(m.meta.id, orders[i], sizeof(*orders));
                memcpy(m.u.open.order_id, orders[i], sizeof(*orders));
                memcpy(m.u.open.user_id, users[4 + i % (n_users - 4)],
                       sizeof(*users));
                m.meta.ts_ms = m.u.open.placed_ms = 1000 + i / 1000;
                m.u.open.pay_deadline_ms = m.meta.ts_ms + 900000;
                pos.offset = i;
                ordo_order_handle(ord, &m, &pos, &sink);
        }
        report("OpenOrder decisions", n_pay, now_s() - t0);
        bytes = ordo_order_state_bytes(ord);
        printf("  order state %.1f MB: %.1f bytes per open order\n",
               (double)bytes / 1e6, (double)bytes / (double)n_pay);

        /* the commission processor learns the orders (OrderOpened) */
        ordo_msg_init(&ev, ORDO_MSG_ORDER_OPENED);
        ev.u.open = m.u.open;
        for (i = 0; i < n_pay; i++) {
                memcpy(ev.u.open.order_id, orders[i], sizeof(*orders));
                memcpy(ev.u.open.user_id, users[4 + i % (n_users - 4)],
                       sizeof(*users));
                ordo_commission_observe(com, &ev);
        }

        ordo_msg_init(&m, ORDO_MSG_CONFIRM_PAYMENT);
        m.u.payment.amount_cents = 9999;
        ordo_msg_init(&ev, ORDO_MSG_ORDER_PAID);
        ev.u.payment.amount_cents = 9999;
        t_order = t_com = 0;
        emitted = 0;
        for (i = 0; i < n_pay; i++) {
                memcpy(m.meta.id, orders[i], sizeof(*orders));
                memcpy(m.u.payment.order_id, orders[i], sizeof(*orders));
                memcpy(m.u.payment.payment_id, orders[i], sizeof(*orders));
                m.meta.ts_ms = 2000 + i / 1000;
                pos.offset = n_pay + i;
                t0 = now_s();
                ordo_order_handle(ord, &m, &pos, &sink);
                t_order += now_s() - t0;
                /* what the order processor emitted, as read back */
                memcpy(ev.u.payment.order_id, orders[i], sizeof(*orders));
                memcpy(ev.u.payment.payment_id, orders[i], sizeof(*orders));
                ev.meta.ts_ms = ev.u.payment.paid_ms = m.meta.ts_ms;
                pos.offset = i;
                t0 = now_s();
                ordo_commission_handle(com, &ev, &pos, &sink);
                t_com += now_s() - t0;
        }
        report("ConfirmPayment decisions", n_pay, t_order);
        report("OrderPaid -> 2-level commission", n_pay, t_com);
        report("payment, both processors", n_pay, t_order + t_com);
        printf("  events emitted %lld (OrderPaid + 2 CommissionAccrued "
               "each)\n",
               emitted);
        bytes = ordo_commission_state_bytes(com);
        printf("  commission state %.1f MB incl. graph of %ld users: "
               "%.1f bytes per paid order\n",
               (double)bytes / 1e6, n_users, (double)bytes / (double)n_pay);

        getrusage(RUSAGE_SELF, &ru);
        printf("peak RSS (ru_maxrss) %.1f MB\n", (double)ru.ru_maxrss / 1024);
        ordo_order_state_destroy(ord);
        ordo_commission_state_destroy(com);
        ordo_referral_state_destroy(ref);
        free(orders);
        free(users);
        return 0;
}
