/*
 * ordo - MongoDB read models (DESIGN.md "Read models"): activities, orders,
 * commissions, earnings, referrals.
 *
 * Workload: batches from the Kafka consume loop, re-applied whole or in part
 * after a crash or an outage. One ordered bulk per collection per batch;
 * the later events of one document are folded into one update (advance).
 *
 * Idempotence without write errors. A guarded upsert ("filter version < v,
 * upsert") raises a duplicate-key error whenever the guard fails, and an
 * ordered bulk stops at the first error (FerretDB even ignores `ordered`
 * on update), so redelivery would cost a round trip per old event. Instead
 * the event that creates a document (ActivityCreated, OrderOpened,
 * CommissionAccrued, ReferrerBound) is an upsert filtered on _id alone
 * with $setOnInsert: a no-op when the document exists. Every later event
 * of the aggregate is a plain update filtered on "_id and version < v": a
 * no-op when it is old. Within a partition the creating event always comes
 * first, so the document exists when a later one arrives.
 *
 * Earnings sum events of many orders (many partitions), so a version cannot
 * guard them: each earnings document keeps, under `offsets`, the last
 * applied offset of every source partition ("commission-events/3"; FerretDB
 * forbids '.' and a leading '$' in keys). A batch reads those offsets,
 * adds the events newer than them, and writes one $inc per beneficiary
 * filtered on the offsets it read (flush_earnings). Only FerretDB-supported
 * operators are used ($set, $setOnInsert, $inc, $in, $exists, upserts;
 * STACK.md).
 */
#include "projection.h"

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum { C_ACTIVITIES, C_ORDERS, C_COMMISSIONS, C_EARNINGS, C_REFERRALS, C__N };

static const char *coll_names[C__N] = { "activities", "orders", "commissions",
                                        "earnings", "referrals" };

struct ordo_mongo_proj_s {
        mongoc_client_t *client;
        mongoc_database_t *db;
        mongoc_collection_t *coll[C__N];
        int indexes_ok;
};

/* A later event's $set, folded with the batch's other later events of
 * the same document (coalescing): one update per document per batch. */
typedef struct adv_s {
        int c;
        char id[ORDO_ID_MAX + 24];
        int64_t version;
        bson_t *set;
} adv_t;

/* One commission event's change to its beneficiary's earnings. */
typedef struct earn_s {
        const char *user;
        char path[120]; /* "offsets.<source>/<partition>" */
        int64_t offset, d[3];
        size_t folded; /* index + 1 of the user's update: earn_fold */
} earn_t;

/* The bulks of one apply call, created on first use, and the folded
 * updates (adv, indexed by an open-addressing table of slots). */
typedef struct batch_s {
        ordo_mongo_proj_t *p;
        mongoc_bulk_operation_t *bulk[C__N];
        size_t ops[C__N];
        adv_t *adv;
        size_t n_adv, cap_adv;
        size_t *slot;  /* index + 1 into adv; 0: empty */
        size_t n_slot; /* a power of two, at least 2 * cap_adv */
        earn_t *earn;  /* the batch's earnings changes, in order */
        size_t n_earn;
} batch_t;

/* Server error codes of a write the server refuses for what it says, not
 * for when it is said: retrying it can never succeed (an $inc beyond
 * int64, a value of the wrong type, a document too large). Only these are
 * permanent; every other error (network, shutdown, not primary, a
 * duplicate key from a racing upsert, an unknown code) pauses and retries,
 * so a misconfigured or sick server never makes us park good events. */
static int refused_code(uint32_t code) {
        switch (code) {
        case 2:     /* BadValue (FerretDB and MongoDB: $inc overflow) */
        case 9:     /* FailedToParse */
        case 14:    /* TypeMismatch */
        case 15:    /* Overflow */
        case 28:    /* PathNotViable */
        case 52:    /* DollarPrefixedFieldName */
        case 55:    /* InvalidDBRef */
        case 56:    /* EmptyFieldName */
        case 57:    /* DottedFieldName */
        case 66:    /* ImmutableField */
        case 10334: /* BSONObjectTooLarge */
        case 17419: /* document too large after update */
                return 1;
        default:
                return 0;
        }
}

/* ORDO_ERR_MONGO: permanent (projection.h); ORDO_ERR_UNAVAILABLE: retry. */
static ordo_err_t classify(const bson_error_t *e) {
        if (e->domain == MONGOC_ERROR_SERVER && refused_code(e->code))
                return ORDO_ERR_MONGO;
        return ORDO_ERR_UNAVAILABLE;
}

static ordo_err_t fail(ordo_err_t err, const char *what, const bson_error_t *e,
                       char *errstr, size_t errstr_size) {
        snprintf(errstr, errstr_size, "mongo %s: %s (domain %u code %u)", what,
                 e->message, e->domain, e->code);
        ORDO_LOG(WARN, "projection",
                 "msg=\"mongo write failed\" err=%s "
                 "what=%s domain=%u code=%u detail=\"%s\"",
                 ordo_err_name(err), what, e->domain, e->code, e->message);
        return err;
}

/* createIndexes for one collection; idempotent on the server. */
static int create_indexes(ordo_mongo_proj_t *p, const char *coll,
                          const bson_t *indexes, bson_error_t *e) {
        bson_t cmd = BSON_INITIALIZER, reply;
        int ok;

        BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
        BSON_APPEND_ARRAY(&cmd, "indexes", indexes);
        ok = mongoc_database_write_command_with_opts(p->db, &cmd, NULL, &reply,
                                                     e);
        bson_destroy(&reply);
        bson_destroy(&cmd);
        return ok;
}

/* The queries of docs/read-models.md: a user's orders by status, an
 * activity's orders, a beneficiary's commission entries, a user's
 * referred users. */
static int ensure_indexes(ordo_mongo_proj_t *p, bson_error_t *e) {
        bson_t *orders, *orders_act, *commissions, *referrals;
        int ok;

        if (p->indexes_ok)
                return 1;
        /* One index per createIndexes: FerretDB 1.24.2 panics (closes
         * the connection, "slice bounds out of range [:2:1]") on a
         * createIndexes of two indexes that both exist already, i.e. on
         * every restart. */
        orders = BCON_NEW("0", "{", "key", "{", "user_id", BCON_INT32(1),
                          "status", BCON_INT32(1), "}", "name",
                          BCON_UTF8("user_id_1_status_1"), "}");
        orders_act =
            BCON_NEW("0", "{", "key", "{", "activity_id", BCON_INT32(1), "}",
                     "name", BCON_UTF8("activity_id_1"), "}");
        commissions =
            BCON_NEW("0", "{", "key", "{", "beneficiary_id", BCON_INT32(1), "}",
                     "name", BCON_UTF8("beneficiary_id_1"), "}");
        referrals = BCON_NEW("0", "{", "key", "{", "parent_id", BCON_INT32(1),
                             "}", "name", BCON_UTF8("parent_id_1"), "}");
        ok = create_indexes(p, "orders", orders, e) &&
             create_indexes(p, "orders", orders_act, e) &&
             create_indexes(p, "commissions", commissions, e) &&
             create_indexes(p, "referrals", referrals, e);
        bson_destroy(orders);
        bson_destroy(orders_act);
        bson_destroy(commissions);
        bson_destroy(referrals);
        if (ok)
                p->indexes_ok = 1;
        return ok;
}

/* A URI option the caller did not set gets a value that suits a loop that
 * retries: fail within seconds when the server is away, not minutes. */
static void default_opt(mongoc_uri_t *uri, const char *key, int32_t v) {
        if (!mongoc_uri_has_option(uri, key))
                mongoc_uri_set_option_as_int32(uri, key, v);
}

ordo_mongo_proj_t *ordo_mongo_proj_new(const char *uri_str, const char *db,
                                       char *errstr, size_t errstr_size) {
        ordo_mongo_proj_t *p;
        mongoc_uri_t *uri;
        bson_error_t e;
        int i;

        if (!uri_str || !db || !*db) {
                snprintf(errstr, errstr_size, "mongo: uri and db required");
                return NULL;
        }
        mongoc_init(); /* once per process, guarded inside mongoc */
        uri = mongoc_uri_new_with_error(uri_str, &e);
        if (!uri) {
                snprintf(errstr, errstr_size, "mongo: bad uri \"%s\": %s",
                         uri_str, e.message);
                return NULL;
        }
        default_opt(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
        default_opt(uri, MONGOC_URI_CONNECTTIMEOUTMS, 2000);
        default_opt(uri, MONGOC_URI_SOCKETTIMEOUTMS, 60000);

        p = calloc(1, sizeof(*p));
        if (!p) {
                mongoc_uri_destroy(uri);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->client = mongoc_client_new_from_uri_with_error(uri, &e);
        mongoc_uri_destroy(uri);
        if (!p->client) {
                snprintf(errstr, errstr_size, "mongo: %s", e.message);
                free(p);
                return NULL;
        }
        mongoc_client_set_error_api(p->client, MONGOC_ERROR_API_VERSION_2);
        mongoc_client_set_appname(p->client, "ordo-projection");
        p->db = mongoc_client_get_database(p->client, db);
        for (i = 0; i < C__N; i++)
                p->coll[i] =
                    mongoc_client_get_collection(p->client, db, coll_names[i]);
        if (!ensure_indexes(p, &e)) {
                if (classify(&e) != ORDO_ERR_UNAVAILABLE) {
                        snprintf(errstr, errstr_size,
                                 "mongo: creating indexes: %s", e.message);
                        ordo_mongo_proj_destroy(p);
                        return NULL;
                }
                ORDO_LOG(WARN, "projection",
                         "msg=\"mongo unreachable; indexes deferred to the "
                         "first apply\" detail=\"%s\"",
                         e.message);
        }
        return p;
}

void ordo_mongo_proj_destroy(ordo_mongo_proj_t *p) {
        int i;

        if (!p)
                return;
        for (i = 0; i < C__N; i++)
                if (p->coll[i])
                        mongoc_collection_destroy(p->coll[i]);
        if (p->db)
                mongoc_database_destroy(p->db);
        if (p->client)
                mongoc_client_destroy(p->client);
        free(p);
}

/* Queue one update_one. Takes ownership of sel and upd. */
static int add(batch_t *b, int c, bson_t *sel, bson_t *upd, int upsert,
               bson_error_t *e) {
        bson_t *opts = BCON_NEW("upsert", BCON_BOOL(upsert != 0));
        int ok;

        if (!b->bulk[c]) {
                bson_t *bo = BCON_NEW("ordered", BCON_BOOL(true));
                b->bulk[c] = mongoc_collection_create_bulk_operation_with_opts(
                    b->p->coll[c], bo);
                bson_destroy(bo);
        }
        ok = mongoc_bulk_operation_update_one_with_opts(b->bulk[c], sel, upd,
                                                        opts, e);
        b->ops[c]++;
        bson_destroy(opts);
        bson_destroy(sel);
        bson_destroy(upd);
        return ok;
}

/* The creating event: insert once, never overwrite. */
static int create(batch_t *b, int c, const char *id, bson_t *set_on_insert,
                  bson_error_t *e) {
        bson_t *sel = BCON_NEW("_id", BCON_UTF8(id));
        bson_t *upd = bson_new();

        BSON_APPEND_DOCUMENT(upd, "$setOnInsert", set_on_insert);
        bson_destroy(set_on_insert);
        return add(b, c, sel, upd, 1, e);
}

static size_t hash_id(int c, const char *id) {
        size_t h = 1469598103934665603ULL ^ (size_t)c;
        for (; *id; id++)
                h = (h ^ (unsigned char)*id) * 1099511628211ULL;
        return h;
}

/* A later event of the aggregate: only when newer than what is stored.
 * Folded into the batch's pending update of the same document, if any:
 * its fields overwrite the earlier events' and the version is the newest.
 * That equals applying the events one by one under their guards whatever
 * version is stored: a field keeps the value of the newest event that
 * sets it, and the events are the same on every delivery. */
static int advance(batch_t *b, int c, const char *id, int64_t version,
                   bson_t *set, bson_error_t *e) {
        size_t i = hash_id(c, id) & (b->n_slot - 1);
        adv_t *a;

        (void)e;
        while (b->slot[i]) {
                a = &b->adv[b->slot[i] - 1];
                if (a->c == c && !strcmp(a->id, id)) {
                        bson_t *m = bson_new();
                        bson_iter_t it;
                        if (bson_iter_init(&it, a->set))
                                while (bson_iter_next(&it))
                                        if (!bson_has_field(set,
                                                            bson_iter_key(&it)))
                                                bson_append_iter(m, NULL, 0,
                                                                 &it);
                        bson_concat(m, set);
                        bson_destroy(a->set);
                        bson_destroy(set);
                        a->set = m;
                        if (version > a->version)
                                a->version = version;
                        return 1;
                }
                i = (i + 1) & (b->n_slot - 1);
        }
        a = &b->adv[b->n_adv];
        a->c = c;
        snprintf(a->id, sizeof(a->id), "%s", id);
        a->version = version;
        a->set = set;
        b->slot[i] = ++b->n_adv;
        return 1;
}

/* The folded updates, after every creating upsert of their collection. */
static int flush_advances(batch_t *b, bson_error_t *e) {
        size_t i;

        for (i = 0; i < b->n_adv; i++) {
                adv_t *a = &b->adv[i];
                bson_t *sel = BCON_NEW("_id", BCON_UTF8(a->id), "version", "{",
                                       "$lt", BCON_INT64(a->version), "}");
                bson_t *upd = bson_new();

                BSON_APPEND_INT64(a->set, "version", a->version);
                BSON_APPEND_DOCUMENT(upd, "$set", a->set);
                bson_destroy(a->set);
                a->set = NULL;
                if (!add(b, a->c, sel, upd, 0, e))
                        return 0;
        }
        return 1;
}

/* Earnings: add (dp, ds, dr) to a beneficiary once per source offset.
 * Queued here, written by flush_earnings. */
static int earn(batch_t *b, const ordo_event_rec_t *r, const char *user,
                int64_t dp, int64_t ds, int64_t dr) {
        earn_t *x = &b->earn[b->n_earn++];

        x->user = user;
        snprintf(x->path, sizeof(x->path), "offsets.%s/%d", r->source,
                 (int)r->partition);
        x->offset = r->offset;
        x->d[0] = dp;
        x->d[1] = ds;
        x->d[2] = dr;
        x->folded = 0;
        return 1;
}

static const char *earn_fields[3] = { "pending_cents", "settled_cents",
                                      "reversed_cents" };

/* The stored offset of path in d ("offsets.<key>"), -1 when absent. */
static int64_t stored_offset(const bson_t *d, const char *path) {
        bson_iter_t it, sub;

        if (d && bson_iter_init(&it, d) &&
            bson_iter_find_descendant(&it, path, &sub) &&
            BSON_ITER_HOLDS_NUMBER(&sub))
                return bson_iter_as_int64(&sub);
        return -1;
}

/* The batch's earnings, folded: one update per beneficiary. A guard is an
 * offset per source partition, so the stored offsets are read first
 * (one find); each event newer than its partition's guard adds its
 * deltas, exactly as applying them one by one would; and the update is
 * filtered on those guards still being what was read (a compare-and-set),
 * upserted when there was no document. A guard that moved meanwhile (a
 * second instance after a rebalance) makes the update match nothing:
 * *expect counts the updates, the caller compares it with the reply and
 * retries the batch. 0 with e set (or errstr) on failure; -1: a sum
 * would leave int64 (refused, permanent). */
static int flush_earnings(batch_t *b, size_t *expect, bson_error_t *e) {
        bson_t *filter, *in, *opts;
        mongoc_cursor_t *cur;
        const bson_t *doc;
        bson_t **docs;
        size_t i, j, n_users = 0;
        const char **users;
        int ok = 1;

        *expect = 0;
        if (!b->n_earn)
                return 1;
        users = calloc(b->n_earn, sizeof(*users));
        docs = calloc(b->n_earn, sizeof(*docs));
        if (!users || !docs) {
                free(users);
                free(docs);
                bson_set_error(e, MONGOC_ERROR_CLIENT, 0, "out of memory");
                return 0;
        }
        /* Distinct users, in order of first appearance. */
        for (i = 0; i < b->n_earn; i++) {
                for (j = 0; j < n_users; j++)
                        if (!strcmp(users[j], b->earn[i].user))
                                break;
                if (j == n_users)
                        users[n_users++] = b->earn[i].user;
                b->earn[i].folded = j + 1;
        }
        in = bson_new();
        {
                bson_t arr;
                char k[16];
                const char *key;
                BSON_APPEND_ARRAY_BEGIN(in, "$in", &arr);
                for (j = 0; j < n_users; j++) {
                        bson_uint32_to_string((uint32_t)j, &key, k, sizeof(k));
                        bson_append_utf8(&arr, key, -1, users[j], -1);
                }
                bson_append_array_end(in, &arr);
        }
        filter = bson_new();
        BSON_APPEND_DOCUMENT(filter, "_id", in);
        opts = BCON_NEW("projection", "{", "offsets", BCON_INT32(1), "}");
        cur = mongoc_collection_find_with_opts(b->p->coll[C_EARNINGS], filter,
                                               opts, NULL);
        while (mongoc_cursor_next(cur, &doc)) {
                bson_iter_t it;
                if (!bson_iter_init_find(&it, doc, "_id") ||
                    !BSON_ITER_HOLDS_UTF8(&it))
                        continue;
                for (j = 0; j < n_users; j++)
                        if (!strcmp(users[j], bson_iter_utf8(&it, NULL)) &&
                            !docs[j])
                                docs[j] = bson_copy(doc);
        }
        if (mongoc_cursor_error(cur, e))
                ok = 0;
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(filter);
        bson_destroy(in);

        for (j = 0; j < n_users && ok == 1; j++) {
                /* Per partition of this user: guard as read, guard now. */
                struct {
                        const char *path;
                        int64_t was, now;
                } g[64];
                size_t n_g = 0, k;
                int64_t sum[3] = { 0, 0, 0 };
                int any = 0;
                bson_t *sel, *upd, inc, set;

                for (i = 0; i < b->n_earn && ok == 1; i++) {
                        earn_t *x = &b->earn[i];
                        if (x->folded != j + 1)
                                continue;
                        for (k = 0; k < n_g; k++)
                                if (!strcmp(g[k].path, x->path))
                                        break;
                        if (k == n_g) {
                                if (n_g == 64) {
                                        /* More partitions than we fold:
                                         * the rest in the next batch. */
                                        bson_set_error(e, MONGOC_ERROR_CLIENT,
                                                       1,
                                                       "too many source "
                                                       "partitions for one "
                                                       "user in a batch");
                                        ok = 0;
                                        break;
                                }
                                g[k].path = x->path;
                                g[k].was = g[k].now =
                                    stored_offset(docs[j], x->path);
                                n_g++;
                        }
                        if (x->offset <= g[k].now)
                                continue;
                        g[k].now = x->offset;
                        any = 1;
                        if (__builtin_add_overflow(sum[0], x->d[0], &sum[0]) ||
                            __builtin_add_overflow(sum[1], x->d[1], &sum[1]) ||
                            __builtin_add_overflow(sum[2], x->d[2], &sum[2]))
                                ok = -1;
                }
                if (ok != 1 || !any)
                        continue;
                sel = BCON_NEW("_id", BCON_UTF8(users[j]));
                for (k = 0; k < n_g; k++) {
                        if (g[k].now == g[k].was)
                                continue;
                        if (g[k].was < 0) {
                                bson_t ex;
                                BSON_APPEND_DOCUMENT_BEGIN(sel, g[k].path, &ex);
                                BSON_APPEND_BOOL(&ex, "$exists", false);
                                bson_append_document_end(sel, &ex);
                        } else
                                BSON_APPEND_INT64(sel, g[k].path, g[k].was);
                }
                upd = bson_new();
                BSON_APPEND_DOCUMENT_BEGIN(upd, "$inc", &inc);
                for (k = 0; k < 3; k++)
                        BSON_APPEND_INT64(&inc, earn_fields[k], sum[k]);
                bson_append_document_end(upd, &inc);
                BSON_APPEND_DOCUMENT_BEGIN(upd, "$set", &set);
                for (k = 0; k < n_g; k++)
                        if (g[k].now != g[k].was)
                                BSON_APPEND_INT64(&set, g[k].path, g[k].now);
                bson_append_document_end(upd, &set);
                if (!add(b, C_EARNINGS, sel, upd, docs[j] == NULL, e))
                        ok = 0;
                (*expect)++;
        }
        for (j = 0; j < n_users; j++)
                if (docs[j])
                        bson_destroy(docs[j]);
        free(docs);
        free(users);
        return ok;
}

static int commission(batch_t *b, const ordo_event_rec_t *r, bson_error_t *e) {
        const ordo_msg_t *m = r->msg;
        const ordo_commission_body_t *c = &m->u.commission;
        char id[ORDO_ID_MAX + 24];
        int64_t a = c->amount_cents;

        snprintf(id, sizeof(id), "%s:%lld", c->order_id, (long long)c->level);
        switch (m->type) {
        case ORDO_MSG_COMMISSION_ACCRUED:
                return create(
                           b, C_COMMISSIONS, id,
                           BCON_NEW(
                               "order_id", BCON_UTF8(c->order_id), "buyer_id",
                               BCON_UTF8(c->buyer_id), "beneficiary_id",
                               BCON_UTF8(c->beneficiary_id), "level",
                               BCON_INT64(c->level), "rate_bps",
                               BCON_INT64(c->rate_bps), "accrued_cents",
                               BCON_INT64(c->accrued_cents), "reversed_cents",
                               BCON_INT64(c->reversed_cents), "settled_cents",
                               BCON_INT64(0), "status", BCON_UTF8(c->status),
                               "version", BCON_INT64(m->meta.version)),
                           e) &&
                       earn(b, r, c->beneficiary_id, a, 0, 0);
        case ORDO_MSG_COMMISSION_REVERSED:
                return advance(b, C_COMMISSIONS, id, m->meta.version,
                               BCON_NEW("accrued_cents",
                                        BCON_INT64(c->accrued_cents),
                                        "reversed_cents",
                                        BCON_INT64(c->reversed_cents), "status",
                                        BCON_UTF8(c->status)),
                               e) &&
                       earn(b, r, c->beneficiary_id, -a, 0, a);
        default: /* SETTLED: the remainder accrued - reversed, RULES.md */
                return advance(b, C_COMMISSIONS, id, m->meta.version,
                               BCON_NEW("accrued_cents",
                                        BCON_INT64(c->accrued_cents),
                                        "reversed_cents",
                                        BCON_INT64(c->reversed_cents),
                                        "settled_cents", BCON_INT64(a),
                                        "status", BCON_UTF8(c->status)),
                               e) &&
                       earn(b, r, c->beneficiary_id, -a, a, 0);
        }
}

static int order_opened(batch_t *b, const ordo_msg_t *m, bson_error_t *e) {
        const ordo_open_body_t *o = &m->u.open;

        /* Fields not reached yet (reason, payment_id, paid_ms, received_ms,
         * settled_ms) are absent, not 0 or "": 0 is a real instant to an
         * analyst's tool (DESIGN.md). Absent rather than null: FerretDB
         * 1.24 drops null fields from $setOnInsert, a real MongoDB keeps
         * them, and the read model must look the same on both. */
        return create(
            b, C_ORDERS, o->order_id,
            BCON_NEW("activity_id", BCON_UTF8(o->activity_id), "user_id",
                     BCON_UTF8(o->user_id), "qty", BCON_INT64(o->qty),
                     "amount_cents", BCON_INT64(o->amount_cents), "status",
                     BCON_UTF8("PENDING_PAYMENT"), "refunded_cents",
                     BCON_INT64(0), "placed_ms", BCON_INT64(o->placed_ms),
                     "pay_deadline_ms", BCON_INT64(o->pay_deadline_ms),
                     "version", BCON_INT64(m->meta.version)),
            e);
}

/* 1: queued, 0: bson/mongoc refused the operation, -1: bad input. */
static int project(batch_t *b, const ordo_event_rec_t *r, bson_error_t *e) {
        const ordo_msg_t *m = r->msg;
        int64_t v = m->meta.version;

        switch (m->type) {
        case ORDO_MSG_ACTIVITY_CREATED: {
                const ordo_activity_body_t *a = &m->u.activity;
                return create(b, C_ACTIVITIES, a->activity_id,
                              BCON_NEW("sku", BCON_UTF8(a->sku), "price_cents",
                                       BCON_INT64(a->price_cents), "stock",
                                       BCON_INT64(a->stock), "remaining",
                                       BCON_INT64(a->stock), "start_ms",
                                       BCON_INT64(a->start_ms), "end_ms",
                                       BCON_INT64(a->end_ms), "version",
                                       BCON_INT64(v)),
                              e);
        }
        case ORDO_MSG_STOCK_RESERVED:
        case ORDO_MSG_STOCK_RELEASED:
                return advance(
                    b, C_ACTIVITIES, m->u.stock.activity_id, v,
                    BCON_NEW("remaining", BCON_INT64(m->u.stock.remaining)), e);
        case ORDO_MSG_ORDER_OPENED:
                return order_opened(b, m, e);
        case ORDO_MSG_ORDER_PAID:
                return advance(
                    b, C_ORDERS, m->u.payment.order_id, v,
                    BCON_NEW("status", BCON_UTF8("PAID"), "payment_id",
                             BCON_UTF8(m->u.payment.payment_id), "paid_ms",
                             BCON_INT64(m->u.payment.paid_ms)),
                    e);
        case ORDO_MSG_ORDER_CANCELLED:
                return advance(b, C_ORDERS, m->u.release.order_id, v,
                               BCON_NEW("status", BCON_UTF8("CANCELLED"),
                                        "reason",
                                        BCON_UTF8(m->u.release.reason)),
                               e);
        case ORDO_MSG_ORDER_RECEIVED:
                return advance(b, C_ORDERS, m->u.received.order_id, v,
                               BCON_NEW("status", BCON_UTF8("RECEIVED"),
                                        "received_ms",
                                        BCON_INT64(m->u.received.received_ms)),
                               e);
        case ORDO_MSG_ORDER_REFUNDED: {
                /* refunded_cents is the order's total after this refund; a
                 * partial refund leaves the status as it was. */
                bson_t *set = BCON_NEW("refunded_cents",
                                       BCON_INT64(m->u.refund.refunded_cents));
                if (m->u.refund.full)
                        BSON_APPEND_UTF8(set, "status", "REFUNDED");
                return advance(b, C_ORDERS, m->u.refund.order_id, v, set, e);
        }
        case ORDO_MSG_ORDER_SETTLED:
                return advance(b, C_ORDERS, m->u.settled.order_id, v,
                               BCON_NEW("status", BCON_UTF8("SETTLED"),
                                        "settled_ms",
                                        BCON_INT64(m->u.settled.settled_ms)),
                               e);
        case ORDO_MSG_REFERRER_BOUND:
                /* First binding wins forever (RULES.md): insert once. */
                return create(
                    b, C_REFERRALS, m->u.bind.user_id,
                    BCON_NEW("parent_id", BCON_UTF8(m->u.bind.referrer_id),
                             "bound_ms", BCON_INT64(m->u.bind.bound_ms)),
                    e);
        case ORDO_MSG_COMMISSION_ACCRUED:
        case ORDO_MSG_COMMISSION_REVERSED:
        case ORDO_MSG_COMMISSION_SETTLED:
                if (!r->source || !*r->source || strchr(r->source, '.') ||
                    r->source[0] == '$' || strlen(r->source) > 100)
                        return -1;
                return commission(b, r, e);
        default:
                /* CommandRejected and commands: no MongoDB read model (a
                 * rejected attempt never becomes a document, DESIGN.md). */
                return 1;
        }
}

static void batch_fini(batch_t *b) {
        size_t i;
        int c;

        for (i = 0; i < b->n_adv; i++)
                if (b->adv[i].set)
                        bson_destroy(b->adv[i].set);
        free(b->adv);
        free(b->slot);
        free(b->earn);

        for (c = 0; c < C__N; c++)
                if (b->bulk[c])
                        mongoc_bulk_operation_destroy(b->bulk[c]);
}

ordo_err_t ordo_mongo_proj_apply(ordo_mongo_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size) {
        batch_t b;
        bson_error_t e;
        ordo_err_t err = ORDO_ERR_OK;
        size_t i, expect = 0;
        int c, rc;

        if (!p || (n && !recs)) {
                snprintf(errstr, errstr_size, "mongo: invalid arguments");
                return ORDO_ERR_INVALID_ARG;
        }
        if (!ensure_indexes(p, &e))
                return fail(classify(&e), "createIndexes", &e, errstr,
                            errstr_size);
        memset(&b, 0, sizeof(b));
        b.p = p;
        b.cap_adv = n;
        for (b.n_slot = 16; b.n_slot < 2 * n; b.n_slot *= 2)
                ;
        b.adv = calloc(n ? n : 1, sizeof(*b.adv));
        b.slot = calloc(b.n_slot, sizeof(*b.slot));
        b.earn = calloc(n ? n : 1, sizeof(*b.earn));
        if (!b.adv || !b.slot || !b.earn) {
                batch_fini(&b);
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_UNAVAILABLE;
        }
        for (i = 0; i < n; i++) {
                if (!recs[i].msg) {
                        snprintf(errstr, errstr_size,
                                 "mongo: event %zu has no message", i);
                        batch_fini(&b);
                        return ORDO_ERR_INVALID_ARG;
                }
                rc = project(&b, &recs[i], &e);
                if (rc < 0) {
                        snprintf(errstr, errstr_size,
                                 "mongo: event %zu (%s): source topic name "
                                 "missing or not usable as a key",
                                 i, ordo_msg_type_name(recs[i].msg->type));
                        batch_fini(&b);
                        return ORDO_ERR_INVALID_ARG;
                }
                if (rc == 0) {
                        err = fail(ORDO_ERR_MONGO, "queueing", &e, errstr,
                                   errstr_size);
                        batch_fini(&b);
                        return err;
                }
        }
        if (!flush_advances(&b, &e)) {
                err = fail(ORDO_ERR_MONGO, "queueing", &e, errstr, errstr_size);
                batch_fini(&b);
                return err;
        }
        rc = flush_earnings(&b, &expect, &e);
        if (rc <= 0) {
                if (rc < 0)
                        snprintf(errstr, errstr_size,
                                 "mongo earnings: a total would leave the "
                                 "int64 range");
                err = rc < 0 ? ORDO_ERR_MONGO
                             : fail(e.domain == MONGOC_ERROR_CLIENT
                                        ? ORDO_ERR_UNAVAILABLE
                                        : classify(&e),
                                    "earnings", &e, errstr, errstr_size);
                batch_fini(&b);
                return err;
        }
        /* Collections are independent of each other, so their bulks may run
         * one after the other; order matters only within one. */
        for (c = 0; c < C__N && err == ORDO_ERR_OK; c++) {
                bson_t reply;
                bson_iter_t it;
                int64_t done = 0;

                if (!b.ops[c])
                        continue;
                if (!mongoc_bulk_operation_execute(b.bulk[c], &reply, &e))
                        err = fail(classify(&e), coll_names[c], &e, errstr,
                                   errstr_size);
                else if (c == C_EARNINGS) {
                        if (bson_iter_init_find(&it, &reply, "nMatched"))
                                done += bson_iter_as_int64(&it);
                        if (bson_iter_init_find(&it, &reply, "nUpserted"))
                                done += bson_iter_as_int64(&it);
                        if (done != (int64_t)expect) {
                                /* A guard moved between our read and our
                                 * write: read again. */
                                snprintf(errstr, errstr_size,
                                         "mongo earnings: %lld of %zu "
                                         "updates matched; retrying",
                                         (long long)done, expect);
                                err = ORDO_ERR_UNAVAILABLE;
                        }
                }
                bson_destroy(&reply);
        }
        batch_fini(&b);
        return err;
}

/* ---- a whole database: whether it is used, and dropping it ---------- */

static mongoc_client_t *mongo_connect(const char *uri_str, char *errstr,
                                      size_t errstr_size) {
        bson_error_t e;
        mongoc_uri_t *uri;
        mongoc_client_t *client;
        mongoc_init();
        uri = mongoc_uri_new_with_error(uri_str, &e);
        if (!uri) {
                snprintf(errstr, errstr_size, "mongo: %s", e.message);
                return NULL;
        }
        if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
                mongoc_uri_set_option_as_int32(
                    uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 10000);
        client = mongoc_client_new_from_uri_with_error(uri, &e);
        mongoc_uri_destroy(uri);
        if (!client)
                snprintf(errstr, errstr_size, "mongo: %s", e.message);
        else
                mongoc_client_set_error_api(client, 2);
        return client;
}

int ordo_mongo_db_used(const char *uri, const char *db, char *errstr,
                       size_t errstr_size) {
        int used = 0, i;
        mongoc_client_t *client = mongo_connect(uri, errstr, errstr_size);
        if (!client)
                return -1;
        for (i = 0; i < C__N && !used; i++) {
                mongoc_collection_t *coll =
                    mongoc_client_get_collection(client, db, coll_names[i]);
                bson_t filter = BSON_INITIALIZER;
                bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
                bson_error_t e;
                int64_t n = mongoc_collection_count_documents(
                    coll, &filter, opts, NULL, NULL, &e);
                if (n < 0) {
                        snprintf(errstr, errstr_size, "mongo: %s", e.message);
                        used = -1;
                } else if (n > 0)
                        used = 1;
                bson_destroy(opts);
                mongoc_collection_destroy(coll);
        }
        mongoc_client_destroy(client);
        return used;
}

/* A database ordo may drop holds only read-model collections, at least
 * one. 1 if so, 0 if not (errstr says why), -1 if it cannot tell. */
static int mongo_is_read_model(mongoc_database_t *db, const char *name,
                               char *errstr, size_t errstr_size) {
        bson_error_t e;
        char **names =
            mongoc_database_get_collection_names_with_opts(db, NULL, &e);
        int ok = 1;
        size_t i, j;

        if (!names) {
                snprintf(errstr, errstr_size, "mongo: listing %s: %s", name,
                         e.message);
                return -1;
        }
        if (!names[0]) {
                snprintf(errstr, errstr_size,
                         "database \"%s\" holds no read model; nothing "
                         "dropped",
                         name);
                ok = 0;
        }
        for (i = 0; names[i] && ok; i++) {
                for (j = 0; j < C__N; j++)
                        if (!strcmp(names[i], coll_names[j]))
                                break;
                if (j == C__N) {
                        snprintf(errstr, errstr_size,
                                 "database \"%s\" holds \"%.80s\", which is "
                                 "not one of ordo's read-model collections; "
                                 "not dropped",
                                 name, names[i]);
                        ok = 0;
                }
        }
        bson_strfreev(names);
        return ok;
}

ordo_err_t ordo_mongo_db_drop(const char *uri, const char *into, char *errstr,
                              size_t errstr_size) {
        mongoc_client_t *client = mongo_connect(uri, errstr, errstr_size);
        mongoc_database_t *db;
        ordo_err_t err = ORDO_ERR_OK;
        bson_error_t e;
        int ok;
        if (!client)
                return ORDO_ERR_UNAVAILABLE;
        db = mongoc_client_get_database(client, into);
        ok = mongo_is_read_model(db, into, errstr, errstr_size);
        if (ok <= 0)
                err = ok < 0 ? ORDO_ERR_UNAVAILABLE : ORDO_ERR_INVALID_ARG;
        else if (!mongoc_database_drop(db, &e)) {
                snprintf(errstr, errstr_size, "mongo: dropping %s: %s", into,
                         e.message);
                err = ORDO_ERR_MONGO;
        }
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
        return err;
}
