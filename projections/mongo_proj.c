/*
 * ordo - MongoDB read models (DESIGN.md "Read models"): activities, orders,
 * commissions, earnings, referrals.
 *
 * Workload: batches from the Kafka consume loop, re-applied whole or in part
 * after a crash or an outage; or, for a rebuild (buffered mode), the
 * whole log folded in memory and written once per document (decision
 * 0021). The events of one document are folded into one write.
 *
 * Idempotence, documents found by _id alone. The event that creates a
 * document (ActivityCreated, OrderOpened, CommissionAccrued,
 * ReferrerBound), with the batch's later events of it folded in, is one
 * whole document in an unordered bulk insert: FerretDB writes those 100
 * to a transaction, where an upsert costs a find and a transaction of its
 * own and keeps SQLite's WAL from ever being checkpointed (0021). An
 * insert that meets the _id (a redelivery) is followed by the same fields
 * as a guarded update. Every later event of the aggregate is an update
 * filtered on "_id and version < v": a no-op when it is old. Within a
 * partition the creating event always comes first, so the document
 * exists when a later one arrives.
 *
 * Earnings sum events of many orders (many partitions), so a version cannot
 * guard them: each earnings document keeps, under `offsets`, the last
 * applied offset of every source partition ("commission-events/3"; FerretDB
 * forbids '.' and a leading '$' in keys). A batch reads those offsets,
 * adds the events newer than them, and writes one $inc per beneficiary
 * filtered on the offsets it read (flush_earnings). Only FerretDB-supported
 * operators are used ($set, $inc, $in, $exists, inserts, upserts;
 * STACK.md).
 */
#include "projection.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "mongo_conn.h"

enum { C_ACTIVITIES, C_ORDERS, C_COMMISSIONS, C_EARNINGS, C_REFERRALS, C__N };

static const char *coll_names[C__N] = { "activities", "orders", "commissions",
                                        "earnings", "referrals" };

struct ordo_mongo_proj_s {
        ordo_store_answer_fn *answered; /* may be NULL */
        void *answered_arg;
        mongoc_client_t *client;
        mongoc_database_t *db;
        mongoc_collection_t *coll[C__N];
        int indexes_ok;
        struct batch_s *buf; /* buffered mode: the window being folded */
        size_t window;       /* documents and earnings entries per window */
        int64_t refused;     /* buffered mode: writes refused, logged */
};

/* One document of the batch, all its events folded: either the whole
 * document (create: its creating event is in the batch, written by an
 * insert) or only what later events set (written by an update guarded
 * on the version). */
typedef struct doc_s {
        int c;
        int create;    /* set is the whole document */
        int versioned; /* the document carries `version` */
        int dup;       /* its insert met an existing document */
        int refused;   /* buffered mode: the store refused it, skipped */
        char id[ORDO_ID_MAX + 24];
        int64_t version;
        bson_t *set; /* fields, without _id and version */
} doc_t;

/* One commission event's change to its beneficiary's earnings. */
typedef struct earn_s {
        char user[ORDO_ID_MAX + 1];
        char entry[ORDO_ID_MAX + 24]; /* the commission: "<order>:<level>" */
        char path[120];               /* "offsets.<source>/<partition>" */
        int64_t offset, d[3];
        size_t folded; /* index + 1 of the user's update: earn_fold */
} earn_t;

/* The documents of one batch (or window), indexed by an open-addressing
 * table of slots, and its earnings changes in order. */
typedef struct batch_s {
        ordo_mongo_proj_t *p;
        doc_t *doc;
        size_t n_doc, cap_doc;
        size_t *slot;  /* index + 1 into doc; 0: empty */
        size_t n_slot; /* a power of two, more than 2 * n_doc */
        earn_t *earn;
        size_t n_earn, cap_earn;
        int alone; /* one event applied alone: its refusal is its own */
        volatile sig_atomic_t *stop; /* flush: stop between chunks */
} batch_t;

static void batch_fini(batch_t *b);

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
        char q[1024];
        snprintf(errstr, errstr_size, "mongo %s: %s (domain %u code %u)", what,
                 e->message, e->domain, e->code);
        ORDO_LOG(WARN, "projection",
                 "msg=\"mongo write failed\" err=%s "
                 "what=%s domain=%u code=%u detail=\"%s\"",
                 ordo_err_name(err), what, e->domain, e->code,
                 ordo_log_quote(q, sizeof(q), e->message));
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

/* libmongoc's own log lines as ordo's (key=value, the configured
 * level), not in its format on stderr. */
static void on_mongoc_log(mongoc_log_level_t level, const char *domain,
                          const char *message, void *opaque) {
        char q[1024];
        (void)opaque;
        /* FerretDB has no endSessions, which mongoc sends as a client
         * closes: nothing is lost, say so only when asked */
        if (strstr(message, "\"endSessions\""))
                level = MONGOC_LOG_LEVEL_DEBUG;
        ordo_log_quote(q, sizeof(q), message);
        switch (level) {
        case MONGOC_LOG_LEVEL_ERROR:
        case MONGOC_LOG_LEVEL_CRITICAL:
                ORDO_LOG(ERROR, "mongoc", "domain=%s msg=\"%s\"", domain, q);
                break;
        case MONGOC_LOG_LEVEL_WARNING:
                ORDO_LOG(WARN, "mongoc", "domain=%s msg=\"%s\"", domain, q);
                break;
        case MONGOC_LOG_LEVEL_MESSAGE:
        case MONGOC_LOG_LEVEL_INFO:
                ORDO_LOG(INFO, "mongoc", "domain=%s msg=\"%s\"", domain, q);
                break;
        default:
                ORDO_LOG(DEBUG, "mongoc", "domain=%s msg=\"%s\"", domain, q);
        }
}

static void mongo_init_once(void) {
        char name[32];
        mongoc_log_set_handler(on_mongoc_log, NULL);
        mongoc_init();
        /* libmongoc's name for it (mongoc-counters.c) */
        snprintf(name, sizeof(name), "/mongoc-%u", (unsigned)getpid());
        shm_unlink(name);
}

void ordo_mongo_init(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, mongo_init_once);
}

ordo_mongo_proj_t *ordo_mongo_proj_new(const char *uri_str, const char *db,
                                       ordo_err_t *why, char *errstr,
                                       size_t errstr_size) {
        ordo_mongo_proj_t *p;
        bson_error_t e;
        int i;
        ordo_err_t unused;

        if (!why)
                why = &unused;
        *why = ORDO_ERR_CONFIG;
        if (!uri_str || !db || !*db) {
                snprintf(errstr, errstr_size, "mongo: uri and db required");
                return NULL;
        }
        p = calloc(1, sizeof(*p));
        if (!p) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->client = ordo_mongo_client(uri_str, &ordo_mongo_waits_retrying,
                                      "ordo-projection", errstr, errstr_size);
        if (!p->client) {
                free(p);
                return NULL;
        }
        p->db = mongoc_client_get_database(p->client, db);
        for (i = 0; i < C__N; i++)
                p->coll[i] =
                    mongoc_client_get_collection(p->client, db, coll_names[i]);
        if (!ensure_indexes(p, &e)) {
                char q[1024];
                if (classify(&e) != ORDO_ERR_UNAVAILABLE) {
                        *why = ORDO_ERR_UNAVAILABLE; /* may pass */
                        snprintf(errstr, errstr_size,
                                 "mongo: creating indexes: %s", e.message);
                        ordo_mongo_proj_destroy(p);
                        return NULL;
                }
                ORDO_LOG(WARN, "projection",
                         "msg=\"mongo unreachable; indexes deferred to the "
                         "first apply\" detail=\"%s\"",
                         ordo_log_quote(q, sizeof(q), e.message));
        }
        return p;
}

void ordo_mongo_proj_on_answer(ordo_mongo_proj_t *p, ordo_store_answer_fn *fn,
                               void *arg) {
        p->answered = fn;
        p->answered_arg = arg;
}

void ordo_mongo_proj_destroy(ordo_mongo_proj_t *p) {
        int i;

        if (!p)
                return;
        if (p->buf) {
                batch_fini(p->buf);
                free(p->buf);
        }
        for (i = 0; i < C__N; i++)
                if (p->coll[i])
                        mongoc_collection_destroy(p->coll[i]);
        if (p->db)
                mongoc_database_destroy(p->db);
        if (p->client)
                mongoc_client_destroy(p->client);
        free(p);
}

static size_t hash_id(int c, const char *id) {
        size_t h = 1469598103934665603ULL ^ (size_t)c;
        for (; *id; id++)
                h = (h ^ (unsigned char)*id) * 1099511628211ULL;
        return h;
}

/* Room for one more document and one more earnings entry. */
static int batch_grow(batch_t *b) {
        size_t i;

        if (b->n_doc == b->cap_doc) {
                size_t cap = b->cap_doc ? 2 * b->cap_doc : 256;
                doc_t *d = realloc(b->doc, cap * sizeof(*d));
                if (!d)
                        return 0;
                b->doc = d;
                b->cap_doc = cap;
        }
        if (2 * (b->n_doc + 1) >= b->n_slot) {
                size_t n = b->n_slot ? 2 * b->n_slot : 1024;
                size_t *slot = calloc(n, sizeof(*slot));
                if (!slot)
                        return 0;
                for (i = 0; i < b->n_doc; i++) {
                        size_t k = hash_id(b->doc[i].c, b->doc[i].id) & (n - 1);
                        while (slot[k])
                                k = (k + 1) & (n - 1);
                        slot[k] = i + 1;
                }
                free(b->slot);
                b->slot = slot;
                b->n_slot = n;
        }
        if (b->n_earn == b->cap_earn) {
                size_t cap = b->cap_earn ? 2 * b->cap_earn : 256;
                earn_t *x = realloc(b->earn, cap * sizeof(*x));
                if (!x)
                        return 0;
                b->earn = x;
                b->cap_earn = cap;
        }
        return 1;
}

/* The batch's document (c, id), added empty when new (*fresh = 1). */
static doc_t *doc_get(batch_t *b, int c, const char *id, int *fresh) {
        size_t i;
        doc_t *d;

        *fresh = 0;
        if (!batch_grow(b))
                return NULL;
        for (i = hash_id(c, id) & (b->n_slot - 1); b->slot[i];
             i = (i + 1) & (b->n_slot - 1)) {
                d = &b->doc[b->slot[i] - 1];
                if (d->c == c && !strcmp(d->id, id))
                        return d;
        }
        d = &b->doc[b->n_doc];
        memset(d, 0, sizeof(*d));
        d->c = c;
        snprintf(d->id, sizeof(d->id), "%s", id);
        b->slot[i] = ++b->n_doc;
        *fresh = 1;
        return d;
}

/* base's fields that over does not have, then over's: over wins. Takes
 * ownership of both. */
static bson_t *overlay(bson_t *base, bson_t *over) {
        bson_t *m = bson_new();
        bson_iter_t it;

        if (bson_iter_init(&it, base))
                while (bson_iter_next(&it))
                        if (!bson_has_field(over, bson_iter_key(&it)))
                                bson_append_iter(m, NULL, 0, &it);
        bson_concat(m, over);
        bson_destroy(base);
        bson_destroy(over);
        return m;
}

/* doc_get, or NULL with e set and fields freed (out of memory). */
static doc_t *doc_for(batch_t *b, int c, const char *id, bson_t *fields,
                      int *fresh, bson_error_t *e) {
        doc_t *d = doc_get(b, c, id, fresh);

        if (!d) {
                bson_destroy(fields);
                bson_set_error(e, MONGOC_ERROR_CLIENT, 0, "out of memory");
        }
        return d;
}

/* The creating event (version < 0: the document has none). Written as an
 * insert of the whole document, with the batch's later events of it
 * folded in; if the document exists already (a redelivery), the insert
 * fails on its _id and the document is updated under the version guard
 * instead (flush). Never overwritten by a second creating event. */
static int create(batch_t *b, int c, const char *id, int64_t version,
                  bson_t *fields, bson_error_t *e) {
        int fresh;
        doc_t *d = doc_for(b, c, id, fields, &fresh, e);

        if (!d)
                return 0;
        if (fresh) {
                d->set = fields;
                d->version = version;
        } else if (d->create) {
                bson_destroy(fields); /* the first one stays */
                return 1;
        } else {
                /* Later events came first (they cannot within one
                 * partition): the whole document, then theirs. */
                d->set = overlay(fields, d->set);
                if (version > d->version)
                        d->version = version;
        }
        d->create = 1;
        d->versioned = version >= 0;
        return 1;
}

/* A later event of the aggregate: only when newer than what is stored.
 * Folded into the batch's document: its fields overwrite the earlier
 * events' and the version is the newest; an event not newer than one
 * folded already is dropped. That equals applying the events one by one
 * under their guards whatever version is stored: a field keeps the value
 * of the newest event that sets it, and the events are the same on every
 * delivery. */
static int advance(batch_t *b, int c, const char *id, int64_t version,
                   bson_t *set, bson_error_t *e) {
        int fresh;
        doc_t *d = doc_for(b, c, id, set, &fresh, e);

        if (!d)
                return 0;
        if (fresh) {
                d->set = set;
                d->version = version;
                d->versioned = 1;
                return 1;
        }
        if (d->versioned && version <= d->version) {
                /* not newer than an event already folded (a copy written
                 * to the log later): its guard would refuse it */
                bson_destroy(set);
                return 1;
        }
        d->set = overlay(d->set, set);
        d->version = version;
        return 1;
}

/* Earnings: add (dp, ds, dr) to a beneficiary once per source offset.
 * Queued here, written by flush_earnings. */
static int earn(batch_t *b, const ordo_event_rec_t *r, const char *user,
                const char *entry, int64_t dp, int64_t ds, int64_t dr,
                bson_error_t *e) {
        earn_t *x;

        if (!batch_grow(b)) {
                bson_set_error(e, MONGOC_ERROR_CLIENT, 0, "out of memory");
                return 0;
        }
        x = &b->earn[b->n_earn++];
        snprintf(x->user, sizeof(x->user), "%s", user);
        snprintf(x->entry, sizeof(x->entry), "%s", entry);
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

/* The stored total field of d, 0 when absent (no document yet). */
static int64_t stored_total(const bson_t *d, const char *field) {
        bson_iter_t it;

        if (d && bson_iter_init_find(&it, d, field) &&
            BSON_ITER_HOLDS_NUMBER(&it))
                return bson_iter_as_int64(&it);
        return 0;
}

/* Writes per command: a flush checks its stop flag between them. */
#define CHUNK 1000

/* A write the server refused for good in buffered mode: logged and
 * counted (rebuild reports it as parked), the rest goes on. */
static void refuse(batch_t *b, const char *coll, const char *id, uint32_t code,
                   const char *msg) {
        char qid[300], qmsg[1024];
        b->p->refused++;
        ORDO_LOG(ERROR, "projection",
                 "msg=\"write refused by the store, skipped\" "
                 "collection=%s _id=\"%s\" code=%u detail=\"%s\"",
                 coll, ordo_log_quote(qid, sizeof(qid), id), code,
                 ordo_log_quote(qmsg, sizeof(qmsg), msg));
}

/* Executes bulk (idx[k]: the document of its k-th write, inserts when
 * dup_ok; or ids[k]: the user of an earnings write). Write errors come
 * back one by one in the reply: a duplicate _id on an insert marks the
 * document dup (updated under its guard next), a refusal is
 * permanent (ORDO_ERR_MONGO; buffered mode logs it and goes on), any
 * other error is retried (ORDO_ERR_UNAVAILABLE). *matched (may be NULL):
 * matched + upserted. */
static ordo_err_t run_bulk(batch_t *b, int c, mongoc_bulk_operation_t *bulk,
                           int dup_ok, const size_t *idx,
                           const char *const *ids, int64_t *matched,
                           char *errstr, size_t errstr_size) {
        bson_t reply;
        bson_error_t e;
        bson_iter_t it, we;
        ordo_err_t err = ORDO_ERR_OK;
        int any = 0, ok = (int)mongoc_bulk_operation_execute(bulk, &reply, &e);

        /* an answer, whatever it says; a network error is none */
        if (b->p->answered && (ok || e.domain == MONGOC_ERROR_SERVER ||
                               e.domain == MONGOC_ERROR_WRITE_CONCERN))
                b->p->answered(b->p->answered_arg);

        if (matched) { /* the writes that went through, errors or not */
                *matched = 0;
                if (bson_iter_init_find(&it, &reply, "nMatched"))
                        *matched += bson_iter_as_int64(&it);
                if (bson_iter_init_find(&it, &reply, "nUpserted"))
                        *matched += bson_iter_as_int64(&it);
        }
        if (ok) {
                bson_destroy(&reply);
                return ORDO_ERR_OK;
        }
        if (bson_iter_init_find(&it, &reply, "writeErrors") &&
            BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &we))
                while (bson_iter_next(&we) && !err) {
                        bson_iter_t f;
                        uint32_t code = 0;
                        size_t k = 0;
                        const char *msg = "";
                        any = 1;
                        if (!BSON_ITER_HOLDS_DOCUMENT(&we) ||
                            !bson_iter_recurse(&we, &f))
                                continue;
                        while (bson_iter_next(&f)) {
                                const char *key = bson_iter_key(&f);
                                if (!strcmp(key, "index"))
                                        k = (size_t)bson_iter_as_int64(&f);
                                else if (!strcmp(key, "code"))
                                        code = (uint32_t)bson_iter_as_int64(&f);
                                else if (!strcmp(key, "errmsg") &&
                                         BSON_ITER_HOLDS_UTF8(&f))
                                        msg = bson_iter_utf8(&f, NULL);
                        }
                        if (code == 11000 && dup_ok)
                                b->doc[idx[k]].dup = 1;
                        else if (refused_code(code) && b->p->buf) {
                                if (idx)
                                        b->doc[idx[k]].refused = 1;
                                refuse(b, coll_names[c],
                                       ids ? ids[k] : b->doc[idx[k]].id, code,
                                       msg);
                        } else {
                                bson_set_error(&e, MONGOC_ERROR_SERVER, code,
                                               "%s", msg);
                                err = fail(
                                    refused_code(code) ? ORDO_ERR_MONGO
                                                       : ORDO_ERR_UNAVAILABLE,
                                    coll_names[c], &e, errstr, errstr_size);
                        }
                }
        if (!any) /* not a write's error: the command's, the network's */
                err =
                    fail(classify(&e), coll_names[c], &e, errstr, errstr_size);
        bson_destroy(&reply);
        return err;
}

static mongoc_bulk_operation_t *new_bulk(batch_t *b, int c) {
        bson_t *bo = BCON_NEW("ordered", BCON_BOOL(false));
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(b->p->coll[c],
                                                              bo);
        bson_destroy(bo);
        return bulk;
}

/* The whole document of d, or its guarded update (sel, upd). */
static bson_t *whole(const doc_t *d) {
        bson_t *doc = BCON_NEW("_id", BCON_UTF8(d->id));
        bson_concat(doc, d->set);
        if (d->versioned)
                BSON_APPEND_INT64(doc, "version", d->version);
        return doc;
}

static void guarded(const doc_t *d, bson_t **sel, bson_t **upd) {
        bson_t set;
        *sel = BCON_NEW("_id", BCON_UTF8(d->id), "version", "{", "$lt",
                        BCON_INT64(d->version), "}");
        *upd = bson_new();
        BSON_APPEND_DOCUMENT_BEGIN(*upd, "$set", &set);
        bson_concat(&set, d->set);
        BSON_APPEND_INT64(&set, "version", d->version);
        bson_append_document_end(*upd, &set);
}

/* One command: the inserts (pass 0) or guarded updates (pass 1) of the
 * documents idx[0..n). FerretDB stops an update command at a statement
 * it refuses, whatever `ordered` says, so in buffered mode a refused
 * update is dropped from the chunk and the rest sent again (they are
 * guarded: what already went through changes nothing). */
static ordo_err_t write_chunk(batch_t *b, int c, int pass, size_t *idx,
                              size_t n, char *errstr, size_t errstr_size) {
        ordo_err_t err;
        int64_t before;

        do {
                mongoc_bulk_operation_t *bulk = new_bulk(b, c);
                bson_error_t e;
                size_t k, m = 0;
                int ok = 1;

                for (k = 0; k < n && ok; k++) {
                        doc_t *d = &b->doc[idx[k]];
                        bson_t *sel, *upd;
                        if (d->refused)
                                continue;
                        idx[m++] = idx[k];
                        if (pass == 0) {
                                d->dup = 0;
                                sel = whole(d);
                                ok = mongoc_bulk_operation_insert_with_opts(
                                    bulk, sel, NULL, &e);
                                bson_destroy(sel);
                        } else {
                                guarded(d, &sel, &upd);
                                ok = mongoc_bulk_operation_update_one_with_opts(
                                    bulk, sel, upd, NULL, &e);
                                bson_destroy(sel);
                                bson_destroy(upd);
                        }
                }
                n = m;
                before = b->p->refused;
                if (!ok)
                        err = fail(ORDO_ERR_MONGO, "queueing", &e, errstr,
                                   errstr_size);
                else
                        err = n ? run_bulk(b, c, bulk, pass == 0, idx, NULL,
                                           NULL, errstr, errstr_size)
                                : ORDO_ERR_OK;
                mongoc_bulk_operation_destroy(bulk);
        } while (!err && pass == 1 && b->p->refused > before);
        return err;
}

/* Inserts (pass 0) or guarded updates (pass 1) of collection c, CHUNK
 * writes per command. Pass 1 takes the documents created before this
 * batch, and those whose insert met an existing one (a redelivery; a
 * document without version, a referral, then stays as it was: first
 * binding wins). */
static ordo_err_t write_docs(batch_t *b, int c, int pass, char *errstr,
                             size_t errstr_size) {
        size_t i, n = 0, *idx = malloc(CHUNK * sizeof(*idx));
        ordo_err_t err = ORDO_ERR_OK;

        if (!idx) {
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_UNAVAILABLE;
        }
        for (i = 0; i <= b->n_doc && !err; i++) {
                if (i < b->n_doc) {
                        doc_t *d = &b->doc[i];
                        if (d->c == c && !d->refused &&
                            (pass == 0
                                 ? d->create
                                 : !d->create || (d->dup && d->versioned)))
                                idx[n++] = i;
                }
                if (n && (n == CHUNK || i == b->n_doc)) {
                        err = write_chunk(b, c, pass, idx, n, errstr,
                                          errstr_size);
                        n = 0;
                        if (!err && b->stop && *b->stop && i < b->n_doc) {
                                snprintf(errstr, errstr_size,
                                         "interrupted while writing");
                                err = ORDO_ERR_UNAVAILABLE;
                        }
                }
        }
        free(idx);
        return err;
}

/* Runs the earnings bulk of n compare-and-sets (users[k]: the k-th's
 * beneficiary); each must match or have been refused (buffered mode),
 * else a guard moved between our read and our write: read again. */
static ordo_err_t run_earnings(batch_t *b, mongoc_bulk_operation_t *bulk,
                               const char **users, size_t n, char *errstr,
                               size_t errstr_size) {
        int64_t before = b->p->refused, matched = 0;
        ordo_err_t err = run_bulk(b, C_EARNINGS, bulk, 0, NULL, users, &matched,
                                  errstr, errstr_size);

        n -= (size_t)(b->p->refused - before);
        if (!err && matched != (int64_t)n) {
                snprintf(errstr, errstr_size,
                         "mongo earnings: %lld of %zu updates matched; "
                         "retrying",
                         (long long)matched, n);
                err = ORDO_ERR_UNAVAILABLE;
        }
        return err;
}

/* An earnings document's list of commission entries refused before,
 * each "<order>:<level>@<offset of the refused event>": none of the
 * entry's events from that offset on counts (guard data, like offsets).
 * An entry without its offset was written before session 18. */
#define REFUSED_ENTRIES "refused_entries"
static const char refused_before[] =
    "an earlier event of this commission entry was refused, so none of "
    "its later events counts";

/* The mark of x's entry, into buf. */
static const char *refused_mark(const earn_t *x, char *buf, size_t size) {
        snprintf(buf, size, "%s@%lld", x->entry, (long long)x->offset);
        return buf;
}

/* 1 if d lists x's entry as refused at or before x's offset, or
 * entries[0..n) (this flush's refusals) has the entry. below: x is at or
 * below its partition's guard, so applied unless refused; a mark without
 * an offset then says nothing. */
static int entry_refused(const bson_t *d, const earn_t *x, int below,
                         const earn_t *const *entries, size_t n) {
        size_t i, len = strlen(x->entry);
        bson_iter_t it, a;

        for (i = 0; i < n; i++)
                if (!strcmp(entries[i]->entry, x->entry))
                        return 1;
        if (d && bson_iter_init_find(&it, d, REFUSED_ENTRIES) &&
            BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &a))
                while (bson_iter_next(&a)) {
                        const char *m;
                        if (!BSON_ITER_HOLDS_UTF8(&a))
                                continue;
                        m = bson_iter_utf8(&a, NULL);
                        if (strncmp(m, x->entry, len))
                                continue;
                        if (!m[len] && !below)
                                return 1;
                        if (m[len] == '@' &&
                            x->offset >= strtoll(m + len + 1, NULL, 10))
                                return 1;
                }
        return 0;
}

/* Lists x's entry as refused in its beneficiary's document (created with
 * zero totals if need be). ORDO_ERR_MONGO, the refusal, once it is
 * written; an outage retries the event, which is refused again. */
static ordo_err_t mark_refused(batch_t *b, const earn_t *x, char *errstr,
                               size_t errstr_size) {
        char mark[sizeof(x->entry) + 24];
        bson_t *sel = BCON_NEW("_id", BCON_UTF8(x->user));
        bson_t *upd = BCON_NEW("$addToSet", "{", REFUSED_ENTRIES,
                               BCON_UTF8(refused_mark(x, mark, sizeof(mark))),
                               "}", "$setOnInsert", "{", "pending_cents",
                               BCON_INT64(0), "settled_cents", BCON_INT64(0),
                               "reversed_cents", BCON_INT64(0), "}");
        bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
        bson_error_t e;
        ordo_err_t err = ORDO_ERR_MONGO;

        if (!mongoc_collection_update_one(b->p->coll[C_EARNINGS], sel, upd,
                                          opts, NULL, &e))
                err = fail(classify(&e), "earnings", &e, errstr, errstr_size);
        bson_destroy(sel);
        bson_destroy(upd);
        bson_destroy(opts);
        return err;
}

static const char totals_why[] =
    "a total would leave the int64 range, or go below 0 (a settlement "
    "or reversal of an entry whose accrual was refused)";

/* t := sum + d, and 1 if stored + t stays in 0..INT64_MAX for each of the
 * three totals. An entry's events are in one partition, its accrual
 * first, so in any order of partitions a total goes below 0 only for an
 * entry whose accrual was refused before (RULES.md: refused "rather than
 * corrupting"). */
static int totals_in_range(const int64_t stored[3], const int64_t sum[3],
                           const int64_t d[3], int64_t t[3]) {
        int64_t total;
        int k;
        for (k = 0; k < 3; k++)
                if (__builtin_add_overflow(sum[k], d[k], &t[k]) ||
                    __builtin_add_overflow(stored[k], t[k], &total) ||
                    total < 0)
                        return 0;
        return 1;
}

/* Ids per find of the stored earnings: a rebuild's window holds up to
 * MONGO_WINDOW beneficiaries, and one $in of them all (about 80 bytes
 * an id at the 64-byte limit) would pass MongoDB's 16 MB command. */
#define EARNINGS_FIND_MAX 20000

/* docs[j] := users[j]'s stored earnings document (NULL: none), found
 * through slot, the users' hash table of n_slot entries. */
static ordo_err_t read_earnings(batch_t *b, const char **users, size_t n_users,
                                const size_t *slot, size_t n_slot,
                                bson_t **docs, char *errstr,
                                size_t errstr_size) {
        bson_t *opts = BCON_NEW("projection", "{", "offsets", BCON_INT32(1),
                                "pending_cents", BCON_INT32(1), "settled_cents",
                                BCON_INT32(1), "reversed_cents", BCON_INT32(1),
                                REFUSED_ENTRIES, BCON_INT32(1), "}");
        ordo_err_t err = ORDO_ERR_OK;
        size_t from, j, k;

        for (from = 0; from < n_users && !err; from += EARNINGS_FIND_MAX) {
                size_t to = n_users - from < EARNINGS_FIND_MAX
                                ? n_users
                                : from + EARNINGS_FIND_MAX;
                bson_t *filter = bson_new(), in, arr;
                mongoc_cursor_t *cur;
                const bson_t *doc;
                bson_error_t e;
                char key_buf[16];
                const char *key;

                BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &in);
                BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
                for (j = from; j < to; j++) {
                        bson_uint32_to_string((uint32_t)(j - from), &key,
                                              key_buf, sizeof(key_buf));
                        bson_append_utf8(&arr, key, -1, users[j], -1);
                }
                bson_append_array_end(&in, &arr);
                bson_append_document_end(filter, &in);
                cur = mongoc_collection_find_with_opts(b->p->coll[C_EARNINGS],
                                                       filter, opts, NULL);
                while (mongoc_cursor_next(cur, &doc)) {
                        bson_iter_t it;
                        const char *id;
                        if (!bson_iter_init_find(&it, doc, "_id") ||
                            !BSON_ITER_HOLDS_UTF8(&it))
                                continue;
                        id = bson_iter_utf8(&it, NULL);
                        for (k = hash_id(C_EARNINGS, id) & (n_slot - 1);
                             slot[k]; k = (k + 1) & (n_slot - 1))
                                if (!strcmp(users[slot[k] - 1], id)) {
                                        if (!docs[slot[k] - 1])
                                                docs[slot[k] - 1] =
                                                    bson_copy(doc);
                                        break;
                                }
                }
                if (mongoc_cursor_error(cur, &e))
                        err = fail(classify(&e), "earnings", &e, errstr,
                                   errstr_size);
                mongoc_cursor_destroy(cur);
                bson_destroy(filter);
        }
        bson_destroy(opts);
        return err;
}

/* The batch's earnings, folded: one update per beneficiary. A guard is an
 * offset per source partition, so the stored offsets are read first
 * (read_earnings); each event newer than its partition's guard adds its
 * deltas, exactly as applying them one by one would; and the update is
 * filtered on those guards still being what was read (a compare-and-set),
 * upserted when there was no document. A guard that moved meanwhile (a
 * second instance after a rebalance) makes the update match nothing,
 * and the batch is retried (ORDO_ERR_UNAVAILABLE). A sum that would
 * leave int64 is refused (ORDO_ERR_MONGO; in buffered mode that event
 * alone is logged and skipped). */
static ordo_err_t flush_earnings(batch_t *b, char *errstr, size_t errstr_size) {
        bson_t *opts;
        mongoc_bulk_operation_t *bulk = NULL;
        bson_t **docs;
        /* Per source partition of one user: its guard as read, and now. */
        struct {
                const char *path;
                int64_t was, now;
        } *g = NULL;
        bson_error_t e;
        size_t i, j, k, n_users = 0, n_slot, *slot, expect = 0;
        const char **users;
        ordo_err_t err = ORDO_ERR_OK;

        if (!b->n_earn)
                return ORDO_ERR_OK;
        for (n_slot = 16; n_slot < 2 * b->n_earn; n_slot *= 2)
                ;
        users = calloc(b->n_earn, sizeof(*users));
        docs = calloc(b->n_earn, sizeof(*docs));
        slot = calloc(n_slot, sizeof(*slot));
        if (!users || !docs || !slot) {
                free(users);
                free(docs);
                free(slot);
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_UNAVAILABLE;
        }
        /* Distinct users, in order of first appearance. */
        for (i = 0; i < b->n_earn; i++) {
                for (k = hash_id(C_EARNINGS, b->earn[i].user) & (n_slot - 1);
                     slot[k] && strcmp(users[slot[k] - 1], b->earn[i].user);
                     k = (k + 1) & (n_slot - 1))
                        ;
                if (!slot[k]) {
                        users[n_users++] = b->earn[i].user;
                        slot[k] = n_users;
                }
                b->earn[i].folded = slot[k];
        }
        err = read_earnings(b, users, n_users, slot, n_slot, docs, errstr,
                            errstr_size);
        if (!err && !(g = malloc(b->n_earn * sizeof(*g)))) {
                snprintf(errstr, errstr_size, "out of memory");
                err = ORDO_ERR_UNAVAILABLE;
        }

        for (j = 0; j < n_users && !err; j++) {
                size_t n_g = 0; /* g: this user's partitions */
                int64_t sum[3] = { 0, 0, 0 }, t[3], stored[3];
                int any = 0;
                bson_t *sel, *upd, inc, set;
                const char *why;
                /* buffered mode: entries refused in this flush */
                const earn_t **newly = NULL;
                size_t n_new = 0;

                for (k = 0; k < 3; k++)
                        stored[k] = stored_total(docs[j], earn_fields[k]);

                for (i = 0; i < b->n_earn && !err; i++) {
                        earn_t *x = &b->earn[i];
                        if (x->folded != j + 1)
                                continue;
                        for (k = 0; k < n_g; k++)
                                if (!strcmp(g[k].path, x->path))
                                        break;
                        if (k == n_g) { /* n_g <= this user's entries */
                                g[k].path = x->path;
                                g[k].was = g[k].now =
                                    stored_offset(docs[j], x->path);
                                n_g++;
                        }
                        /* At or below the guard: applied, unless its
                         * entry was refused there, and then delivered
                         * again (its dead letter may not have reached
                         * Kafka): parked again. */
                        if (x->offset <= g[k].now &&
                            (b->p->buf ||
                             !entry_refused(docs[j], x, 1, NULL, 0)))
                                continue;
                        why = entry_refused(docs[j], x, 0, newly, n_new)
                                  ? refused_before
                              : !totals_in_range(stored, sum, x->d, t)
                                  ? totals_why
                                  : NULL;
                        if (why && !b->p->buf) {
                                snprintf(errstr, errstr_size,
                                         "mongo earnings: %s", why);
                                err = ORDO_ERR_MONGO;
                                /* Marked only when refused alone: in a
                                 * batch, the narrowing that follows
                                 * decides (store.c). */
                                if (b->alone && why == totals_why)
                                        err = mark_refused(b, x, errstr,
                                                           errstr_size);
                                break;
                        }
                        if (why) {
                                const earn_t **grown;
                                refuse(b, "earnings", x->user, 15, why);
                                if (why == totals_why &&
                                    (grown =
                                         realloc(newly, (n_new + 1) *
                                                            sizeof(*grown)))) {
                                        newly = grown;
                                        newly[n_new++] = x;
                                }
                                continue;
                        }
                        memcpy(sum, t, sizeof(sum));
                        g[k].now = x->offset;
                        any = 1;
                }
                if (err || (!any && !n_new)) {
                        free(newly);
                        continue;
                }
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
                if (n_new) { /* buffered mode's refusals, remembered */
                        bson_t add, each, arr;
                        char key_buf[16];
                        const char *key;
                        BSON_APPEND_DOCUMENT_BEGIN(upd, "$addToSet", &add);
                        BSON_APPEND_DOCUMENT_BEGIN(&add, REFUSED_ENTRIES,
                                                   &each);
                        BSON_APPEND_ARRAY_BEGIN(&each, "$each", &arr);
                        for (k = 0; k < n_new; k++) {
                                char mark[sizeof(newly[k]->entry) + 24];
                                bson_uint32_to_string((uint32_t)k, &key,
                                                      key_buf, sizeof(key_buf));
                                bson_append_utf8(
                                    &arr, key, -1,
                                    refused_mark(newly[k], mark, sizeof(mark)),
                                    -1);
                        }
                        bson_append_array_end(&each, &arr);
                        bson_append_document_end(&add, &each);
                        bson_append_document_end(upd, &add);
                }
                free(newly);
                if (!bulk)
                        bulk = new_bulk(b, C_EARNINGS);
                opts = BCON_NEW("upsert", BCON_BOOL(docs[j] == NULL));
                if (!mongoc_bulk_operation_update_one_with_opts(bulk, sel, upd,
                                                                opts, &e))
                        err = fail(ORDO_ERR_MONGO, "queueing", &e, errstr,
                                   errstr_size);
                bson_destroy(opts);
                bson_destroy(sel);
                bson_destroy(upd);
                users[expect++] = users[j]; /* j >= expect: the k-th write */
                if (b->p->buf && !err) {
                        /* FerretDB stops an update command at a refused
                         * statement: in buffered mode, where a refusal is
                         * skipped, one beneficiary per command. */
                        err = run_earnings(b, bulk, &users[expect - 1], 1,
                                           errstr, errstr_size);
                        mongoc_bulk_operation_destroy(bulk);
                        bulk = NULL;
                }
        }
        if (bulk && !err)
                err = run_earnings(b, bulk, users, expect, errstr, errstr_size);
        if (bulk)
                mongoc_bulk_operation_destroy(bulk);
        for (j = 0; j < n_users; j++)
                if (docs[j])
                        bson_destroy(docs[j]);
        free(g);
        free(docs);
        free(users);
        free(slot);
        return err;
}

static void batch_reset(batch_t *b) {
        size_t i;

        for (i = 0; i < b->n_doc; i++)
                bson_destroy(b->doc[i].set);
        b->n_doc = 0;
        b->n_earn = 0;
        if (b->slot)
                memset(b->slot, 0, b->n_slot * sizeof(*b->slot));
}

static void batch_fini(batch_t *b) {
        batch_reset(b);
        free(b->doc);
        free(b->slot);
        free(b->earn);
        memset(b, 0, sizeof(*b));
}

/* Everything folded in b, written: the inserts of every collection, then
 * the guarded updates (including the documents whose insert found them
 * existing), then the earnings. Each step is idempotent, so a flush that
 * fails part-way is simply run again. Emptied on success. */
static ordo_err_t flush(batch_t *b, char *errstr, size_t errstr_size) {
        ordo_err_t err = ORDO_ERR_OK;
        int c, pass;

        for (pass = 0; pass < 2 && !err; pass++)
                for (c = 0; c < C__N && !err; c++)
                        if (c != C_EARNINGS)
                                err =
                                    write_docs(b, c, pass, errstr, errstr_size);
        if (!err)
                err = flush_earnings(b, errstr, errstr_size);
        if (!err)
                batch_reset(b);
        return err;
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
                           b, C_COMMISSIONS, id, m->meta.version,
                           BCON_NEW(
                               "order_id", BCON_UTF8(c->order_id), "buyer_id",
                               BCON_UTF8(c->buyer_id), "beneficiary_id",
                               BCON_UTF8(c->beneficiary_id), "level",
                               BCON_INT64(c->level), "rate_bps",
                               BCON_INT64(c->rate_bps), "accrued_cents",
                               BCON_INT64(c->accrued_cents), "reversed_cents",
                               BCON_INT64(c->reversed_cents), "settled_cents",
                               BCON_INT64(0), "status", BCON_UTF8(c->status)),
                           e) &&
                       earn(b, r, c->beneficiary_id, id, a, 0, 0, e);
        case ORDO_MSG_COMMISSION_REVERSED:
                return advance(b, C_COMMISSIONS, id, m->meta.version,
                               BCON_NEW("accrued_cents",
                                        BCON_INT64(c->accrued_cents),
                                        "reversed_cents",
                                        BCON_INT64(c->reversed_cents), "status",
                                        BCON_UTF8(c->status)),
                               e) &&
                       earn(b, r, c->beneficiary_id, id, -a, 0, a, e);
        default: /* SETTLED: the remainder accrued - reversed, RULES.md */
                return advance(b, C_COMMISSIONS, id, m->meta.version,
                               BCON_NEW("accrued_cents",
                                        BCON_INT64(c->accrued_cents),
                                        "reversed_cents",
                                        BCON_INT64(c->reversed_cents),
                                        "settled_cents", BCON_INT64(a),
                                        "status", BCON_UTF8(c->status)),
                               e) &&
                       earn(b, r, c->beneficiary_id, id, -a, a, 0, e);
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
            b, C_ORDERS, o->order_id, m->meta.version,
            BCON_NEW("activity_id", BCON_UTF8(o->activity_id), "user_id",
                     BCON_UTF8(o->user_id), "qty", BCON_INT64(o->qty),
                     "amount_cents", BCON_INT64(o->amount_cents), "status",
                     BCON_UTF8("PENDING_PAYMENT"), "refunded_cents",
                     BCON_INT64(0), "placed_ms", BCON_INT64(o->placed_ms),
                     "pay_deadline_ms", BCON_INT64(o->pay_deadline_ms)),
            e);
}

/* 1: queued, 0: bson/mongoc refused the operation, -1: bad input. */
static int project(batch_t *b, const ordo_event_rec_t *r, bson_error_t *e) {
        const ordo_msg_t *m = r->msg;
        int64_t v = m->meta.version;

        switch (m->type) {
        case ORDO_MSG_ACTIVITY_CREATED: {
                const ordo_activity_body_t *a = &m->u.activity;
                return create(b, C_ACTIVITIES, a->activity_id, v,
                              BCON_NEW("sku", BCON_UTF8(a->sku), "price_cents",
                                       BCON_INT64(a->price_cents), "stock",
                                       BCON_INT64(a->stock), "remaining",
                                       BCON_INT64(a->stock), "start_ms",
                                       BCON_INT64(a->start_ms), "end_ms",
                                       BCON_INT64(a->end_ms)),
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
                    b, C_REFERRALS, m->u.bind.user_id, -1,
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

/* Folds recs into b. */
static ordo_err_t fold(batch_t *b, const ordo_event_rec_t *recs, size_t n,
                       char *errstr, size_t errstr_size) {
        bson_error_t e;
        size_t i;
        int rc;

        for (i = 0; i < n; i++) {
                if (!recs[i].msg) {
                        snprintf(errstr, errstr_size,
                                 "mongo: event %zu has no message", i);
                        return ORDO_ERR_INVALID_ARG;
                }
                rc = project(b, &recs[i], &e);
                if (rc < 0) {
                        snprintf(errstr, errstr_size,
                                 "mongo: event %zu (%s): source topic name "
                                 "missing or not usable as a key",
                                 i, ordo_msg_type_name(recs[i].msg->type));
                        return ORDO_ERR_INVALID_ARG;
                }
                if (rc == 0)
                        return fail(ORDO_ERR_MONGO, "queueing", &e, errstr,
                                    errstr_size);
        }
        return ORDO_ERR_OK;
}

ordo_err_t ordo_mongo_proj_apply(ordo_mongo_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size) {
        batch_t b;
        bson_error_t e;
        ordo_err_t err;

        if (!p || (n && !recs)) {
                snprintf(errstr, errstr_size, "mongo: invalid arguments");
                return ORDO_ERR_INVALID_ARG;
        }
        if (!n) /* an idle projection's check (store.h): its data lasts */
                return ORDO_ERR_OK;
        if (!ensure_indexes(p, &e))
                return fail(classify(&e), "createIndexes", &e, errstr,
                            errstr_size);
        if (p->buf) {
                /* A full window is written before anything more is
                 * folded, so a retried call folds its events once. (A
                 * call folded twice would still be harmless: each fold is
                 * idempotent, and so is the flush.) */
                if (p->buf->n_doc + p->buf->n_earn >= p->window &&
                    (err = flush(p->buf, errstr, errstr_size)))
                        return err;
                return fold(p->buf, recs, n, errstr, errstr_size);
        }
        memset(&b, 0, sizeof(b));
        b.p = p;
        b.alone = n == 1;
        err = fold(&b, recs, n, errstr, errstr_size);
        if (!err)
                err = flush(&b, errstr, errstr_size);
        batch_fini(&b);
        return err;
}

ordo_err_t ordo_mongo_proj_buffer(ordo_mongo_proj_t *p, size_t window,
                                  volatile sig_atomic_t *stop) {
        if (!p->buf && !(p->buf = calloc(1, sizeof(*p->buf))))
                return ORDO_ERR_NOMEM;
        p->buf->p = p;
        p->buf->stop = stop;
        p->window = window ? window : 1;
        return ORDO_ERR_OK;
}

ordo_err_t ordo_mongo_proj_flush(ordo_mongo_proj_t *p, char *errstr,
                                 size_t errstr_size) {
        bson_error_t e;

        if (!p->buf)
                return ORDO_ERR_OK;
        if (!ensure_indexes(p, &e))
                return fail(classify(&e), "createIndexes", &e, errstr,
                            errstr_size);
        return flush(p->buf, errstr, errstr_size);
}

int64_t ordo_mongo_proj_refused(const ordo_mongo_proj_t *p) {
        return p ? p->refused : 0;
}

/* The mark: a collection of its own, so that no read-model query, index
 * or diff meets it. */
#define MARK_COLL "mark"

ordo_err_t ordo_mongo_proj_mark(ordo_mongo_proj_t *p, const char *put,
                                char tok[ORDO_MARK_MAX], char *errstr,
                                size_t errstr_size) {
        mongoc_collection_t *coll =
            mongoc_database_get_collection(p->db, MARK_COLL);
        bson_t *sel = BCON_NEW("_id", BCON_UTF8("read-model"));
        ordo_err_t err = ORDO_ERR_OK;
        mongoc_cursor_t *cur;
        const bson_t *doc;
        bson_iter_t it;
        bson_error_t e;

        tok[0] = '\0';
        if (put) { /* unless there is one: two instances starting at once */
                bson_t *mark = BCON_NEW("_id", BCON_UTF8("read-model"), "token",
                                        BCON_UTF8(put));
                if (!mongoc_collection_insert_one(coll, mark, NULL, NULL, &e) &&
                    e.code != 11000 /* duplicate key */)
                        err = classify(&e);
                p->indexes_ok = 0; /* a new target: the next apply makes them */
                bson_destroy(mark);
        }
        if (!err) {
                cur = mongoc_collection_find_with_opts(coll, sel, NULL, NULL);
                if (mongoc_cursor_next(cur, &doc) &&
                    bson_iter_init_find(&it, doc, "token") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        snprintf(tok, ORDO_MARK_MAX, "%s",
                                 bson_iter_utf8(&it, NULL));
                if (mongoc_cursor_error(cur, &e))
                        err = classify(&e);
                mongoc_cursor_destroy(cur);
        }
        if (err)
                snprintf(errstr, errstr_size, "mongo: the mark: %s", e.message);
        bson_destroy(sel);
        mongoc_collection_destroy(coll);
        return err;
}

/* The heartbeats not renewed for ORDO_ALIVE_FORGET_MS before the one
 * just written (own, its `at`: the server's clock) are removed. */
static int forget_gone(mongoc_collection_t *coll, const bson_t *own,
                       bson_error_t *e) {
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(coll, own, NULL, NULL);
        const bson_t *doc;
        bson_iter_t at;
        int64_t now = -1;
        bson_t *gone;
        int ok;

        if (mongoc_cursor_next(cur, &doc) &&
            bson_iter_init_find(&at, doc, "at") &&
            BSON_ITER_HOLDS_DATE_TIME(&at))
                now = bson_iter_date_time(&at);
        ok = !mongoc_cursor_error(cur, e);
        mongoc_cursor_destroy(cur);
        if (!ok || now < 0)
                return ok;
        gone = BCON_NEW("at", "{", "$lt",
                        BCON_DATE_TIME(now - ORDO_ALIVE_FORGET_MS), "}",
                        "ttl_ms", "{", "$exists", BCON_BOOL(true), "}");
        ok = mongoc_collection_delete_many(coll, gone, NULL, NULL, e);
        bson_destroy(gone);
        return ok;
}

/* The heartbeats go by the server's clock ($currentDate; hello's
 * localTime to read them), so that a drop asked from another machine
 * compares them with the same clock. */
ordo_err_t ordo_mongo_proj_alive(ordo_mongo_proj_t *p, const char *instance,
                                 int64_t ttl_ms, char *errstr,
                                 size_t errstr_size) {
        mongoc_collection_t *coll =
            mongoc_database_get_collection(p->db, MARK_COLL);
        char id[96];
        bson_t *sel, *upd, *opts;
        ordo_err_t err = ORDO_ERR_OK;
        bson_error_t e;
        int ok;

        snprintf(id, sizeof(id), "alive:%s", instance);
        sel = BCON_NEW("_id", BCON_UTF8(id));
        upd = BCON_NEW("$currentDate", "{", "at", BCON_BOOL(true), "}", "$set",
                       "{", "ttl_ms", BCON_INT64(ttl_ms), "}");
        opts = BCON_NEW("upsert", BCON_BOOL(true));
        ok = ttl_ms > 0
                 ? mongoc_collection_update_one(coll, sel, upd, opts, NULL, &e)
                 : mongoc_collection_delete_one(coll, sel, NULL, NULL, &e);
        if (ok && ttl_ms > 0)
                ok = forget_gone(coll, sel, &e);
        if (!ok) {
                err = classify(&e);
                snprintf(errstr, errstr_size, "mongo: the heartbeat: %s",
                         e.message);
        }
        bson_destroy(opts);
        bson_destroy(upd);
        bson_destroy(sel);
        mongoc_collection_destroy(coll);
        return err;
}

/* ---- a whole database: whether it is used, and dropping it ---------- */

/* Server selection within 10 s, and libmongoc's socket wait: dropping a
 * large database may take minutes. */
static mongoc_client_t *mongo_connect(const char *uri, char *errstr,
                                      size_t errstr_size) {
        static const ordo_mongo_waits_t waits = { 10000, 0, 0 };
        return ordo_mongo_client(uri, &waits, "ordo-rebuild", errstr,
                                 errstr_size);
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
/* A field every document of each collection has (read-models.md): a
 * collection of ordo's name whose documents lack it is someone else's. */
static const char *coll_signature[C__N] = { "version", "version", "version",
                                            "pending_cents", "parent_id" };

/* 1 when every document of collection j of db has its signature field, 0
 * (errstr says which) when one lacks it, -1 when it cannot be asked. */
static int mongo_docs_are_ours(mongoc_database_t *db, const char *name,
                               size_t j, char *errstr, size_t errstr_size) {
        mongoc_collection_t *c =
            mongoc_database_get_collection(db, coll_names[j]);
        bson_t *filter =
            BCON_NEW(coll_signature[j], "{", "$exists", BCON_BOOL(false), "}");
        bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
        bson_error_t e;
        int64_t n =
            mongoc_collection_count_documents(c, filter, opts, NULL, NULL, &e);
        bson_destroy(filter);
        bson_destroy(opts);
        mongoc_collection_destroy(c);
        if (n < 0)
                snprintf(errstr, errstr_size, "mongo: reading %s.%s: %s", name,
                         coll_names[j], e.message);
        else if (n > 0)
                snprintf(errstr, errstr_size,
                         "database \"%s\": %s holds a document without "
                         "\"%s\", which none of ordo's has; not dropped",
                         name, coll_names[j], coll_signature[j]);
        return n < 0 ? -1 : n == 0;
}

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
                if (j == C__N && strcmp(names[i], MARK_COLL)) {
                        snprintf(errstr, errstr_size,
                                 "database \"%s\" holds \"%.80s\", which is "
                                 "not one of ordo's read-model collections; "
                                 "not dropped",
                                 name, names[i]);
                        ok = 0;
                } else if (j < C__N)
                        ok = mongo_docs_are_ours(db, name, j, errstr,
                                                 errstr_size);
        }
        bson_strfreev(names);
        return ok;
}

/* The server's clock, ms: hello's localTime. -1 if it does not say. */
static int64_t mongo_now(mongoc_client_t *client, bson_error_t *e) {
        bson_t *cmd = BCON_NEW("hello", BCON_INT32(1));
        bson_t reply;
        bson_iter_t it;
        int64_t now = -1;
        if (mongoc_client_command_simple(client, "admin", cmd, NULL, &reply,
                                         e) &&
            bson_iter_init_find(&it, &reply, "localTime") &&
            BSON_ITER_HOLDS_DATE_TIME(&it))
                now = bson_iter_date_time(&it);
        else if (!e->message[0])
                bson_set_error(e, 0, 0, "hello said no localTime");
        bson_destroy(&reply);
        bson_destroy(cmd);
        return now;
}

int64_t ordo_mongo_db_alive_left(const char *uri, const char *db, char *errstr,
                                 size_t errstr_size) {
        mongoc_client_t *client = mongo_connect(uri, errstr, errstr_size);
        mongoc_collection_t *coll;
        mongoc_cursor_t *cur;
        const bson_t *doc;
        bson_t *sel;
        bson_iter_t at, ttl;
        bson_error_t e = { 0 };
        int64_t left = 0, now;
        if (!client)
                return -1;
        if ((now = mongo_now(client, &e)) < 0) {
                snprintf(errstr, errstr_size, "mongo: the server's time: %s",
                         e.message);
                mongoc_client_destroy(client);
                return -1;
        }
        coll = mongoc_client_get_collection(client, db, MARK_COLL);
        sel = BCON_NEW("at", "{", "$exists", BCON_BOOL(true), "}");
        cur = mongoc_collection_find_with_opts(coll, sel, NULL, NULL);
        while (mongoc_cursor_next(cur, &doc))
                if (bson_iter_init_find(&at, doc, "at") &&
                    BSON_ITER_HOLDS_DATE_TIME(&at) &&
                    bson_iter_init_find(&ttl, doc, "ttl_ms") &&
                    BSON_ITER_HOLDS_INT64(&ttl)) {
                        int64_t l = bson_iter_date_time(&at) +
                                    bson_iter_int64(&ttl) - now;
                        if (l > left)
                                left = l;
                }
        if (mongoc_cursor_error(cur, &e)) {
                snprintf(errstr, errstr_size, "mongo: reading %s.%s: %s", db,
                         MARK_COLL, e.message);
                left = -1;
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(sel);
        mongoc_collection_destroy(coll);
        mongoc_client_destroy(client);
        return left;
}

int ordo_mongo_dbs_named(const char *uri, const char *start, ordo_target_fn *fn,
                         void *arg, char *errstr, size_t errstr_size) {
        mongoc_client_t *client = mongo_connect(uri, errstr, errstr_size);
        bson_error_t e;
        char **names;
        int i, n = 0;
        if (!client)
                return -1;
        if (!(names = mongoc_client_get_database_names_with_opts(client, NULL,
                                                                 &e))) {
                snprintf(errstr, errstr_size, "mongo: listing databases: %s",
                         e.message);
                mongoc_client_destroy(client);
                return -1;
        }
        for (i = 0; names[i]; i++)
                if (!strncmp(names[i], start, strlen(start)) &&
                    n++ < ORDO_TARGETS_MAX)
                        fn(arg, names[i]);
        bson_strfreev(names);
        mongoc_client_destroy(client);
        return 0;
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
