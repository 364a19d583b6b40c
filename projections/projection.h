/*
 * ordo - projections: apply decoded events to the read models of DESIGN.md
 * ("Read models (the query contract)") in MongoDB and Redis.
 *
 * Tuned for the Kafka consume loop: batches of a few hundred to a few
 * thousand events, one MongoDB bulk per collection and one Redis pipeline
 * per batch, with the batch's events of one document or key folded into
 * one guarded write (decision 0015). Every write is idempotent, so the
 * caller may re-apply the same batch, or any overlapping prefix of it,
 * after a crash or an outage:
 *   - a per-aggregate document or hash (activity, order, commission entry,
 *     stock) changes only when the event's version is newer than the one
 *     stored with it;
 *   - a cross-aggregate total (earnings, leaderboard) changes only when the
 *     event's source partition offset is newer than the one stored beside
 *     the total (same document in MongoDB, same Lua call in Redis).
 * The caller commits its Kafka offsets only after apply returns OK.
 *
 * Errors come in two kinds:
 *   - ORDO_ERR_UNAVAILABLE: not now (network, shutdown, not primary,
 *     loading, or a cause not known to be the data's): retry the same
 *     batch later;
 *   - anything else (ORDO_ERR_MONGO, ORDO_ERR_REDIS, ORDO_ERR_INVALID_ARG):
 *     the store refuses a write of this batch (an int64 total overflowing,
 *     a key of the wrong type): retrying can never succeed. Nothing of a
 *     refused event's own write is applied; the rest of the batch may be.
 *     ordo_store_apply_parking (project.h) narrows it to the events.
 *
 * A handle is not thread-safe (it holds one mongoc client or one hiredis
 * connection): use one per consuming thread.
 *
 * docs/read-models.md describes the result for front-end developers.
 */
#ifndef ORDO_PROJECTION_H
#define ORDO_PROJECTION_H

#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "messages.h"

/* One decoded event and where it came from (for offset guards). */
typedef struct ordo_event_rec_s {
        const ordo_msg_t *msg;
        const char *source; /* short topic name: "activity-events",
                             * "order-events", "referral-events",
                             * "commission-events" */
        int32_t partition;
        int64_t offset;
        /* when its stage wrote it (the record's CreateTime), 0 unknown:
         * a rejected attempt's Redis status expires that long after */
        int64_t written_ms;
} ordo_event_rec_t;

typedef struct ordo_mongo_proj_s ordo_mongo_proj_t;

/* Called after each answer of the server within an apply (a bulk write,
 * a pipelined chunk's replies): a caller that watches for a hung store
 * measures from the last answer, not from the start of a long batch. */
typedef void ordo_store_answer_fn(void *arg);

/* libmongoc's once-per-process set-up; every function here calls it.
 * Debian's libmongoc initialises itself as it is loaded, and its
 * performance counters live in /dev/shm/mongoc-PID, removed by its
 * clean-up at a normal exit only: each killed process (SIGKILL, a crash
 * loop, the OOM killer) left 4 KB there, and a later process given the
 * same PID logged "Falling back to malloc for counters". ordo reads no
 * counters, so the file is removed at once; the mapping stays valid. */
void ordo_mongo_init(void);

/* uri e.g. "mongodb://127.0.0.1:27017", db e.g. "ordo". Creates the
 * indexes a front end needs (orders by user_id+status, by activity_id;
 * commissions by beneficiary_id; referrals by parent_id). If the server
 * is unreachable now, that is not an error: the indexes are created by the
 * first apply that reaches it. NULL and errstr on a bad URI (*why, if
 * not NULL, is then ORDO_ERR_CONFIG) or a server that refuses the
 * indexes (ORDO_ERR_UNAVAILABLE: it may pass). */
ordo_mongo_proj_t *ordo_mongo_proj_new(const char *uri, const char *db,
                                       ordo_err_t *why, char *errstr,
                                       size_t errstr_size);
/* Accepts NULL. */
void ordo_mongo_proj_destroy(ordo_mongo_proj_t *p);
void ordo_mongo_proj_on_answer(ordo_mongo_proj_t *p, ordo_store_answer_fn *fn,
                               void *arg);
/* Apply a batch in order; returns OK only when every write is
 * acknowledged. On ORDO_ERR_UNAVAILABLE the caller retries the same batch
 * later; ORDO_ERR_MONGO is permanent (above). Re-applying a prefix or the
 * whole batch never double counts. Events that have no MongoDB read model
 * are skipped. */
ordo_err_t ordo_mongo_proj_apply(ordo_mongo_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size);
/* Buffered mode, for a rebuild (decision 0021): from now on apply only
 * folds events in memory, one document per _id whatever the number of
 * its events, and writes when window documents and earnings entries are
 * held (before folding the call's events) and at ordo_mongo_proj_flush.
 * The writes are the same idempotent ones as unbuffered, so a failed
 * apply or flush is retried as usual; a flush checks *stop (may be NULL)
 * between commands and then fails ORDO_ERR_UNAVAILABLE, "interrupted".
 * A write the server refuses for good is logged and counted
 * (ordo_mongo_proj_refused) instead of being returned: the events behind
 * it are no longer known one by one. */
ordo_err_t ordo_mongo_proj_buffer(ordo_mongo_proj_t *p, size_t window,
                                  volatile sig_atomic_t *stop);
ordo_err_t ordo_mongo_proj_flush(ordo_mongo_proj_t *p, char *errstr,
                                 size_t errstr_size);
int64_t ordo_mongo_proj_refused(const ordo_mongo_proj_t *p);

typedef struct ordo_redis_proj_s ordo_redis_proj_t;

/* prefix: "ordo:" by default (at most 64 bytes); rejected_ttl_s: how long
 * the status of a rejected PlaceOrder lives (86400). Connects at the
 * first call that needs the server (set_login, apply, mark), so that a
 * login set before it is the first connection's; an unreachable server
 * is an error of that call, not of this one. NULL and errstr only on bad
 * arguments. */
ordo_redis_proj_t *ordo_redis_proj_new(const char *host, int port,
                                       const char *prefix,
                                       int64_t rejected_ttl_s, char *errstr,
                                       size_t errstr_size);
/* Accepts NULL. */
void ordo_redis_proj_destroy(ordo_redis_proj_t *p);
/* AUTH and SELECT on every (re)connection (redis_conn.h); login's strings
 * must outlive p. ORDO_ERR_CONFIG with errstr for a database the server
 * does not have; anything else is retried by apply. */
struct ordo_redis_login_s;
ordo_err_t ordo_redis_proj_set_login(ordo_redis_proj_t *p,
                                     const struct ordo_redis_login_s *login,
                                     char *errstr, size_t errstr_size);
/* The target is new and p its only writer until it is complete (a
 * rebuild): each event comes once, in order, and a batch is retried
 * whole. Writes that give the same result when a batch is applied again
 * in order (an order hash, a stock value, a rejected attempt of an id not
 * placed so far) are then sent as plain commands without reading their
 * guards, for events newer than what p wrote to that key (an older one
 * goes to the script); the guards are still written, for the live
 * projection that continues after the switch. Earnings keep their
 * scripts. Costs ~32 bytes per order hash (decision 0022). */
void ordo_redis_proj_set_fresh(ordo_redis_proj_t *p);
void ordo_redis_proj_on_answer(ordo_redis_proj_t *p, ordo_store_answer_fn *fn,
                               void *arg);
/* As ordo_mongo_proj_apply; the next call reconnects on its own.
 * ORDO_ERR_UNAVAILABLE when Redis cannot be reached, is loading, full
 * (OOM) or refuses our credentials; ORDO_ERR_REDIS (permanent) for a
 * write it refuses (a key of the wrong type, a total that would
 * overflow). n == 0 checks that Redis still answers (PING): an idle
 * projection finds a restarted server then, not at its next event. */
ordo_err_t ordo_redis_proj_apply(ordo_redis_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size);

/* The live read model's mark (store.h, decision 0029): a token kept
 * where no event writes (MongoDB: collection `mark`, document
 * "read-model"; Redis: key "<prefix>mark"). put: write it unless there
 * is one; then tok is the one there ("" when there is none).
 * ORDO_ERR_UNAVAILABLE when the store cannot be asked. */
#define ORDO_MARK_MAX 40
ordo_err_t ordo_mongo_proj_mark(ordo_mongo_proj_t *p, const char *put,
                                char tok[ORDO_MARK_MAX], char *errstr,
                                size_t errstr_size);
ordo_err_t ordo_redis_proj_mark(ordo_redis_proj_t *p, const char *put,
                                char tok[ORDO_MARK_MAX], char *errstr,
                                size_t errstr_size);

/* The live projections' heartbeats beside the mark (store.h:
 * ordo_store_alive), one per instance, by the store's clock. MongoDB:
 * documents "alive:<instance>" of collection `mark`, fields `at` (the
 * last renewal) and ttl_ms; Redis: hash "<prefix>mark:alive", a field
 * per instance, the ms it lasts until, the key expiring with the last
 * renewal. ttl_ms > 0 renews instance's and removes the heartbeats
 * that ended long ago (not renewed for ORDO_ALIVE_FORGET_MS, more than
 * any TTL: instances gone for good, by a new instance.id, scale-in or a
 * kill); 0 removes instance's. */
#define ORDO_ALIVE_FORGET_MS 60000
ordo_err_t ordo_mongo_proj_alive(ordo_mongo_proj_t *p, const char *instance,
                                 int64_t ttl_ms, char *errstr,
                                 size_t errstr_size);
ordo_err_t ordo_redis_proj_alive(ordo_redis_proj_t *p, const char *instance,
                                 int64_t ttl_ms, char *errstr,
                                 size_t errstr_size);
/* The ms a target's heartbeat has left: 0 none, -1 (errstr) cannot tell. */
int64_t ordo_mongo_db_alive_left(const char *uri, const char *db, char *errstr,
                                 size_t errstr_size);
int64_t ordo_redis_prefix_alive_left(const ordo_config_t *conf,
                                     const char *prefix, char *errstr,
                                     size_t errstr_size);

/* fn(arg, name) for each database, or key prefix up to its first ':'
 * after start, whose name begins with start (at most ORDO_TARGETS_MAX);
 * 0, or -1 (errstr) when the store cannot be asked. */
#define ORDO_TARGETS_MAX 64
typedef void ordo_target_fn(void *arg, const char *name);
int ordo_mongo_dbs_named(const char *uri, const char *start, ordo_target_fn *fn,
                         void *arg, char *errstr, size_t errstr_size);
int ordo_redis_prefixes_named(const ordo_config_t *conf, const char *start,
                              ordo_target_fn *fn, void *arg, char *errstr,
                              size_t errstr_size);

/* A whole database or key prefix, as rebuild and reconcile need it: 1 if
 * it holds read-model data, 0 if not, -1 (errstr) if it cannot tell. */
int ordo_mongo_db_used(const char *uri, const char *db, char *errstr,
                       size_t errstr_size);
int ordo_redis_prefix_used(const ordo_config_t *conf, const char *prefix,
                           char *errstr, size_t errstr_size);
/* Drops the database when it holds only read-model collections (at least
 * one), else ORDO_ERR_INVALID_ARG and why. The caller checks that it is
 * not the live one. */
ordo_err_t ordo_mongo_db_drop(const char *uri, const char *db, char *errstr,
                              size_t errstr_size);
/* Deletes every key of the prefix and its guard keys ("{<prefix>..."),
 * connecting as configured (redis_conn.h), the prefix matched literally
 * (at most 64 bytes). When a key under it is not a read model's
 * (ordo__redis_key_is_ours), nothing is deleted: ORDO_ERR_INVALID_ARG,
 * naming it. */
ordo_err_t ordo_redis_prefix_drop(const ordo_config_t *conf, const char *prefix,
                                  char *errstr, size_t errstr_size);
/* Where a diff of two targets reports (store.h: ordo_store_diff). */
typedef struct ordo_diff_s {
        /* Prints one line (no newline in fmt). */
        void (*vline)(void *opaque, const char *fmt, va_list ap);
        void *opaque;
        int64_t diffs;    /* documents or keys/members that differ */
        int64_t notes;    /* lines that may not be differences */
        int64_t compared; /* documents or keys/members compared */
        int errors;       /* could not compare something (on stderr) */
        /* non-zero: stop comparing (a signal); counted as one error */
        const volatile sig_atomic_t *stop;
        int stopped;
        int64_t said_ms; /* the last progress line (monotonic ms), 0: none */
        /* may be NULL: called often as the comparison goes on */
        void (*tick)(void *tick_arg);
        void *tick_arg;
} ordo_diff_t;
/* 1 (after counting an error) when the diff is to stop now. Also says,
 * every 10 s on stderr, how far a long comparison has come. */
int ordo_diff_stopped(ordo_diff_t *d);
void ordo_diff_line(ordo_diff_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The live database or prefix against the expected one, counted and
 * reported in d; an error only when the store cannot be reached or
 * addressed at all. */
ordo_err_t ordo_mongo_diff(const char *uri, const char *live,
                           const char *expected, ordo_diff_t *d, char *errstr,
                           size_t errstr_size);
ordo_err_t ordo_redis_diff(const ordo_config_t *conf, const char *live,
                           const char *expected, ordo_diff_t *d, char *errstr,
                           size_t errstr_size);
/* Escapes glob characters for a Redis SCAN MATCH pattern; out must hold
 * 2 * strlen(s) + 1 bytes. */
void ordo__redis_glob_escape(const char *s, char *out);
/* 1 when key (len bytes) is one of the read model's under prefix:
 * <prefix>stock:ID, order:ID, earnings:USER, leaderboard:settled, the
 * mark <prefix>mark, or a guard {<prefix>stock:ID}:version,
 * {<prefix>earnings:USER}:offsets. */
int ordo__redis_key_is_ours(const char *prefix, const char *key, size_t len);

#endif
