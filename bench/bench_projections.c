/*
 * bench_projections: events applied per second by projections/ to Redis
 * and to the MongoDB-wire server (FerretDB here).
 *
 * usage: bench_projections [redis|mongo|both] [EVENTS] [BATCH] [MIX]
 * Addresses from ORDO_REDIS (127.0.0.1:6379) and ORDO_MONGO_URI
 * (mongodb://127.0.0.1:27017); a private key prefix / database
 * "ordo_bench_<pid>" is used and dropped.
 *
 * The mix is one paid, received and settled flash-sale order per nine
 * events: StockReserved, OrderOpened, OrderPaid, two CommissionAccrued,
 * OrderReceived, OrderSettled, two CommissionSettled; 1000 beneficiaries,
 * 8 partitions. MIX "flash" is instead the write mix of a flash sale's
 * burst, per ten events: a StockReserved of one hot activity, its
 * OrderOpened, and eight rejected PlaceOrder attempts (Redis REJECTED
 * hashes; no MongoDB write). Each run is applied twice: first as new events, then again
 * whole (the redelivery after a crash, every write skipped by its guard).
 */
#include <hiredis/hiredis.h>
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "projection.h"

#define PER_ORDER 9

static double now_s(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int flash_mix;

/* Event i of the flash-sale mix. */
static void make_flash(size_t i, ordo_msg_t *m, ordo_event_rec_t *r) {
        size_t order = i / 10, k = i % 10;

        r->msg = m;
        r->offset = (int64_t)i;
        r->partition = 0;
        if (k == 0) {
                ordo_msg_init(m, ORDO_MSG_STOCK_RESERVED);
                r->source = "activity-events";
                m->meta.version = (int64_t)order + 2;
                ordo_strlcpy(m->u.stock.activity_id, "A0", ORDO_ID_MAX + 1);
                snprintf(m->u.stock.order_id, ORDO_ID_MAX + 1, "o%zu", order);
                m->u.stock.qty = 1;
                m->u.stock.remaining = 1000000000 - (int64_t)order;
        } else if (k == 1) {
                ordo_msg_init(m, ORDO_MSG_ORDER_OPENED);
                r->source = "order-events";
                r->partition = (int)(order % 8);
                m->meta.version = 1;
                snprintf(m->u.open.order_id, ORDO_ID_MAX + 1, "o%zu", order);
                ordo_strlcpy(m->u.open.activity_id, "A0", ORDO_ID_MAX + 1);
                snprintf(m->u.open.user_id, ORDO_ID_MAX + 1, "u%zu", order);
                m->u.open.qty = 1;
                m->u.open.amount_cents = 9900;
                m->u.open.placed_ms = 1000 + (int64_t)i;
                m->u.open.pay_deadline_ms = 901000 + (int64_t)i;
        } else {
                ordo_msg_init(m, ORDO_MSG_COMMAND_REJECTED);
                r->source = "activity-events";
                m->meta.version = (int64_t)order + 2;
                ordo_strlcpy(m->u.rejected.command_type, "PlaceOrder",
                             ORDO_CODE_MAX + 1);
                ordo_strlcpy(m->u.rejected.reason, "SOLD_OUT",
                             ORDO_CODE_MAX + 1);
                snprintf(m->u.rejected.order_id, ORDO_ID_MAX + 1, "r%zu", i);
                snprintf(m->u.rejected.user_id, ORDO_ID_MAX + 1, "v%zu", i);
        }
        m->meta.ts_ms = 1000 + (int64_t)i;
}

/* Event i of the synthetic log, built in place. */
static void make_event(size_t i, ordo_msg_t *m, ordo_event_rec_t *r) {
        static const ordo_msg_type_t types[PER_ORDER] = {
                ORDO_MSG_STOCK_RESERVED,     ORDO_MSG_ORDER_OPENED,
                ORDO_MSG_ORDER_PAID,         ORDO_MSG_COMMISSION_ACCRUED,
                ORDO_MSG_COMMISSION_ACCRUED, ORDO_MSG_ORDER_RECEIVED,
                ORDO_MSG_ORDER_SETTLED,      ORDO_MSG_COMMISSION_SETTLED,
                ORDO_MSG_COMMISSION_SETTLED
        };
        size_t order = i / PER_ORDER, k = i % PER_ORDER;
        int part = (int)(order % 8);

        if (flash_mix) {
                make_flash(i, m, r);
                return;
        }
        char oid[32], act[32];
        ordo_commission_body_t *c;

        snprintf(oid, sizeof(oid), "o%zu", order);
        snprintf(act, sizeof(act), "A%zu", order % 16);
        ordo_msg_init(m, types[k]);
        m->meta.ts_ms = 1000 + (int64_t)i;
        r->msg = m;
        r->partition = part;
        /* per-partition offsets: orders of a partition are consecutive */
        r->offset = (int64_t)((order / 8) * PER_ORDER + k);
        switch (types[k]) {
        case ORDO_MSG_STOCK_RESERVED:
                r->source = "activity-events";
                m->meta.version = (int64_t)(order / 16) + 2;
                ordo_strlcpy(m->u.stock.activity_id, act, ORDO_ID_MAX + 1);
                ordo_strlcpy(m->u.stock.order_id, oid, ORDO_ID_MAX + 1);
                m->u.stock.qty = 1;
                m->u.stock.remaining = 1000000000 - (int64_t)(order / 16);
                break;
        case ORDO_MSG_ORDER_OPENED:
                r->source = "order-events";
                m->meta.version = 1;
                ordo_strlcpy(m->u.open.order_id, oid, ORDO_ID_MAX + 1);
                ordo_strlcpy(m->u.open.activity_id, act, ORDO_ID_MAX + 1);
                snprintf(m->u.open.user_id, ORDO_ID_MAX + 1, "u%zu",
                         order % 50000);
                m->u.open.qty = 1;
                m->u.open.amount_cents = 9900;
                m->u.open.placed_ms = m->meta.ts_ms;
                m->u.open.pay_deadline_ms = m->meta.ts_ms + 900000;
                break;
        case ORDO_MSG_ORDER_PAID:
                r->source = "order-events";
                m->meta.version = 2;
                ordo_strlcpy(m->u.payment.order_id, oid, ORDO_ID_MAX + 1);
                snprintf(m->u.payment.payment_id, ORDO_ID_MAX + 1, "pay-%s",
                         oid);
                m->u.payment.amount_cents = 9900;
                m->u.payment.paid_ms = m->meta.ts_ms;
                break;
        case ORDO_MSG_ORDER_RECEIVED:
                r->source = "order-events";
                m->meta.version = 3;
                ordo_strlcpy(m->u.received.order_id, oid, ORDO_ID_MAX + 1);
                m->u.received.received_ms = m->meta.ts_ms;
                break;
        case ORDO_MSG_ORDER_SETTLED:
                r->source = "order-events";
                m->meta.version = 4;
                ordo_strlcpy(m->u.settled.order_id, oid, ORDO_ID_MAX + 1);
                m->u.settled.settled_ms = m->meta.ts_ms;
                break;
        default: /* commission entries: level 1 then 2 */
                r->source = "commission-events";
                c = &m->u.commission;
                c->level = (k == 3 || k == 7) ? 1 : 2;
                m->meta.version = (k < 7 ? 0 : 2) + c->level;
                ordo_strlcpy(c->order_id, oid, ORDO_ID_MAX + 1);
                snprintf(c->buyer_id, ORDO_ID_MAX + 1, "u%zu", order % 50000);
                snprintf(c->beneficiary_id, ORDO_ID_MAX + 1, "p%zu",
                         (order * 7 + (size_t)c->level) % 1000);
                c->rate_bps = c->level == 1 ? 1000 : 500;
                c->accrued_cents = 9900 * c->rate_bps / 10000;
                c->amount_cents = c->accrued_cents;
                ordo_strlcpy(c->status, k < 7 ? "PENDING" : "SETTLED",
                             ORDO_CODE_MAX + 1);
                break;
        }
}

typedef ordo_err_t (*apply_fn)(void *p, const ordo_event_rec_t *recs, size_t n,
                               char *errstr, size_t errstr_size);

/* The 16 activities the orders reserve from. */
static void seed(apply_fn apply, void *p) {
        static ordo_msg_t msgs[16];
        ordo_event_rec_t recs[16];
        char errstr[512];
        int i;

        for (i = 0; i < 16; i++) {
                ordo_msg_init(&msgs[i], ORDO_MSG_ACTIVITY_CREATED);
                msgs[i].meta.version = 1;
                snprintf(msgs[i].u.activity.activity_id, ORDO_ID_MAX + 1, "A%d",
                         i);
                ordo_strlcpy(msgs[i].u.activity.sku, "SKU", ORDO_SKU_MAX + 1);
                msgs[i].u.activity.price_cents = 9900;
                msgs[i].u.activity.stock = 1000000000;
                msgs[i].u.activity.start_ms = 0;
                msgs[i].u.activity.end_ms = 1LL << 40;
                recs[i].msg = &msgs[i];
                recs[i].source = "activity-events";
                recs[i].partition = i % 8;
                recs[i].offset = i;
        }
        if (apply(p, recs, 16, errstr, sizeof(errstr))) {
                fprintf(stderr, "seed: %s\n", errstr);
                exit(1);
        }
}

static double run(const char *name, apply_fn apply, void *p, size_t events,
                  size_t batch) {
        ordo_msg_t *msgs = calloc(batch, sizeof(*msgs));
        ordo_event_rec_t *recs = calloc(batch, sizeof(*recs));
        char errstr[512];
        double t0, gen = 0, t;
        size_t i, j, n;

        t0 = now_s();
        for (i = 0; i < events; i += n) {
                double g = now_s();
                n = events - i < batch ? events - i : batch;
                for (j = 0; j < n; j++)
                        make_event(i + j, &msgs[j], &recs[j]);
                gen += now_s() - g;
                if (apply(p, recs, n, errstr, sizeof(errstr))) {
                        fprintf(stderr, "%s: %s\n", name, errstr);
                        exit(1);
                }
        }
        t = now_s() - t0 - gen;
        free(msgs);
        free(recs);
        return (double)events / t;
}

static ordo_err_t redis_apply(void *p, const ordo_event_rec_t *r, size_t n,
                              char *e, size_t es) {
        return ordo_redis_proj_apply(p, r, n, e, es);
}

static ordo_err_t mongo_apply(void *p, const ordo_event_rec_t *r, size_t n,
                              char *e, size_t es) {
        return ordo_mongo_proj_apply(p, r, n, e, es);
}

static void bench_redis(size_t events, size_t batch) {
        const char *addr = getenv("ORDO_REDIS");
        char host[256], prefix[64], errstr[256], cmd[1024];
        const char *colon;
        int port = 6379;
        ordo_redis_proj_t *p;
        double first, again;

        if (!addr || !*addr)
                addr = "127.0.0.1:6379";
        colon = strrchr(addr, ':');
        snprintf(host, sizeof(host), "%.*s",
                 colon ? (int)(colon - addr) : (int)strlen(addr), addr);
        if (colon)
                port = atoi(colon + 1);
        snprintf(prefix, sizeof(prefix), "ordo_bench_%d:", (int)getpid());
        p = ordo_redis_proj_new(host, port, prefix, 86400, errstr,
                                sizeof(errstr));
        if (!p) {
                fprintf(stderr, "redis: %s\n", errstr);
                exit(1);
        }
        seed(redis_apply, p);
        first = run("redis", redis_apply, p, events, batch);
        again = run("redis", redis_apply, p, events, batch);
        printf("redis  events=%zu batch=%zu new=%.0f/s redelivered=%.0f/s\n",
               events, batch, first, again);
        ordo_redis_proj_destroy(p);
        /* drop the prefix: data keys and {prefix...} guard keys */
        snprintf(cmd, sizeof(cmd),
                 "for pat in '%s*' '{%s*'; do redis-cli -h %s -p %d --scan "
                 "--pattern \"$pat\" | xargs -r -n 1000 redis-cli -h %s -p %d "
                 "DEL >/dev/null; done",
                 prefix, prefix, host, port, host, port);
        if (system(cmd) != 0)
                fprintf(stderr, "redis: could not drop %s*\n", prefix);
}

static void bench_mongo(size_t events, size_t batch) {
        const char *uri = getenv("ORDO_MONGO_URI");
        char db[64], errstr[256];
        ordo_mongo_proj_t *p;
        mongoc_client_t *c;
        mongoc_database_t *d;
        double first, again;

        if (!uri || !*uri)
                uri = "mongodb://127.0.0.1:27017";
        snprintf(db, sizeof(db), "ordo_bench_%d", (int)getpid());
        p = ordo_mongo_proj_new(uri, db, NULL, errstr, sizeof(errstr));
        if (!p) {
                fprintf(stderr, "mongo: %s\n", errstr);
                exit(1);
        }
        seed(mongo_apply, p);
        first = run("mongo", mongo_apply, p, events, batch);
        again = run("mongo", mongo_apply, p, events, batch);
        printf("mongo  events=%zu batch=%zu new=%.0f/s redelivered=%.0f/s\n",
               events, batch, first, again);
        ordo_mongo_proj_destroy(p);
        c = mongoc_client_new(uri);
        d = mongoc_client_get_database(c, db);
        mongoc_database_drop(d, NULL);
        mongoc_database_destroy(d);
        mongoc_client_destroy(c);
}

int main(int argc, char **argv) {
        const char *what = argc > 1 ? argv[1] : "both";
        size_t events = argc > 2 ? (size_t)atol(argv[2]) : 90000;
        size_t batch = argc > 3 ? (size_t)atol(argv[3]) : 500;

        flash_mix = argc > 4 && !strcmp(argv[4], "flash");
        if (!events || !batch ||
            (argc > 4 && !flash_mix && strcmp(argv[4], "order"))) {
                fprintf(stderr, "usage: bench_projections [redis|mongo|both] "
                                "[EVENTS] [BATCH] [order|flash]\n");
                return 2;
        }
        if (!strcmp(what, "redis") || !strcmp(what, "both"))
                bench_redis(events, batch);
        if (!strcmp(what, "mongo") || !strcmp(what, "both"))
                bench_mongo(events, batch);
        return 0;
}
