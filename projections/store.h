/*
 * ordo - one read-model store, MongoDB or Redis: what the live
 * projection, rebuild and reconcile drive it through (open, apply, drop,
 * diff, close). Only the mongo side (mongo_proj.c, mongo_diff.c) calls
 * libmongoc and only the redis side (redis_*.c) calls hiredis.
 */
#ifndef ORDO_STORE_H
#define ORDO_STORE_H

#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "err.h"
#include "projection.h"

typedef struct ordo_store_s {
        ordo_mongo_proj_t *mongo;
        ordo_redis_proj_t *redis;
} ordo_store_t;

/* The stores' libraries' once-per-process set-up (each store also does
 * it on first use): a process that uses no store leaves nothing behind
 * when killed (ordo_mongo_init). */
void ordo_stores_init(void);

/* The configuration key that names which's live target: "mongo.db" or
 * "redis.prefix". */
const char *ordo_store_target_key(const char *which);

/* which: "mongo" or "redis"; target: the database or key prefix, NULL
 * for the configured one (ordo_store_target_key). */
ordo_err_t ordo_store_open(ordo_store_t *s, const char *which,
                           const ordo_config_t *conf, const char *target,
                           char *errstr, size_t errstr_size);
/* n == 0 asks the store whether it still answers: Redis is sent a PING
 * (an idle projection finds a restarted server then); MongoDB answers
 * OK without a round trip. */
ordo_err_t ordo_store_apply(ordo_store_t *s, const ordo_event_rec_t *recs,
                            size_t n, char *errstr, size_t errstr_size);
void ordo_store_close(ordo_store_t *s);

/* Whether the store can come back from an outage empty, so that a live
 * projection waiting for it should ask (decision 0023): Redis, which the
 * local stack runs without persistence. Not MongoDB: its restarts keep
 * the data, and asking a server that is down costs mongoc's server
 * selection (10 s) per attempt. */
int ordo_store_may_come_back_empty(const ordo_store_t *s);
/* fn(arg) after each answer of the store within an apply (projection.h). */
void ordo_store_on_answer(ordo_store_t *s, ordo_store_answer_fn *fn, void *arg);
/* The live read model's mark (decision 0029): a token the live
 * projection keeps in its target where no event writes, and reads again
 * before it writes, so that a target dropped or emptied under it
 * (dropDatabase, FLUSHDB: no write fails) is found. The mark alone is no
 * read model (ordo_store_target_used). put: write it unless the target
 * has one (instances starting at once agree on the first). Then tok is
 * the target's ("" when there is none). ORDO_ERR_UNAVAILABLE: cannot be
 * asked. */
ordo_err_t ordo_store_mark(ordo_store_t *s, const char *put,
                           char tok[ORDO_MARK_MAX], char *errstr,
                           size_t errstr_size);
/* fn(arg, target) for each of which's targets whose name begins with
 * start (projection.h: ordo_mongo_dbs_named, ordo_redis_prefixes_named):
 * 0, or -1 (errstr). */
int ordo_store_targets_named(const char *which, const ordo_config_t *conf,
                             const char *start, ordo_target_fn *fn, void *arg,
                             char *errstr, size_t errstr_size);
/* A new token for ordo_store_mark: random, 32 hex digits. */
void ordo_store_new_mark(char tok[ORDO_MARK_MAX]);
/* A live projection's heartbeat, beside the mark: "instance writes
 * here" for ttl_ms more (renewed well before it ends), by the wall
 * clock; ttl_ms 0 removes it (a stop). A drop by hand refuses a target
 * with a heartbeat still on (ordo_rebuild_drop): the projection would
 * refill it. No read model, as the mark is none. */
#define ORDO_ALIVE_RENEW_MS 5000
#define ORDO_ALIVE_TTL_MS   15000
ordo_err_t ordo_store_alive(ordo_store_t *s, const char *instance,
                            int64_t ttl_ms, char *errstr, size_t errstr_size);
/* 1 when a heartbeat last renewed at renewed_ms (monotonic; 0: never)
 * is due for renewal. */
int ordo_store_alive_due(int64_t renewed_ms);
/* The ms the longest heartbeat in which's target has left: 0 none, -1
 * (errstr) cannot tell. */
int64_t ordo_store_alive_left(const char *which, const ordo_config_t *conf,
                              const char *target, char *errstr,
                              size_t errstr_size);

/* The target is new and s its only writer until it is complete (a
 * rebuild). Redis may skip reading guards where applying a batch again in
 * order gives the same result (ordo_redis_proj_set_fresh, decision 0022);
 * MongoDB holds events in memory and writes them later
 * (ordo_mongo_proj_buffer, decision 0021). ordo_store_flush writes what
 * is held, checking *stop between commands; until it returns OK nothing
 * applied since the last flush is known to be written. */
ordo_err_t ordo_store_fresh_target(ordo_store_t *s,
                                   volatile sig_atomic_t *stop);
ordo_err_t ordo_store_flush(ordo_store_t *s, char *errstr, size_t errstr_size);
/* Writes a buffered store refused for good (logged), not yet counted as
 * parked events. */
int64_t ordo_store_refused(const ordo_store_t *s);

/* 1 when err from ordo_store_apply means the store refused a write for
 * good (projection.h), 0 for OK or "not now" (ORDO_ERR_UNAVAILABLE,
 * ORDO_ERR_NOMEM). */
int ordo_store_err_permanent(ordo_err_t err);

/* Called for each event the store refuses for good, with the reason. */
typedef void(ordo_park_fn)(void *opaque, const ordo_event_rec_t *rec,
                           ordo_err_t err, const char *reason);

/* ordo_store_apply, but a permanent refusal does not stop the batch: it
 * is narrowed by applying the events one at a time (the guards absorb
 * what the batch already wrote); each event refused alone goes to park,
 * every other one is applied. Returns OK, or a retriable error; then
 * *settled (may be NULL) says how many leading events are already applied
 * or parked, so that a retry of recs + *settled parks nothing twice. */
ordo_err_t ordo_store_apply_parking(ordo_store_t *s,
                                    const ordo_event_rec_t *recs, size_t n,
                                    ordo_park_fn *park, void *opaque,
                                    size_t *settled, char *errstr,
                                    size_t errstr_size);

/* Called between attempts while the store is unavailable (first: 1 the
 * first time): the live projection pauses and polls its consumer, and
 * asks whether the store came back empty. Non-zero: stop retrying. */
typedef int(ordo_wait_fn)(void *opaque, int first);

/* apply_parking until every event is applied or parked, pausing with a
 * backoff (up to 5 s) while the store is unavailable; wait may be NULL.
 * Returns OK, or the retriable error when *stop was set or wait said to
 * stop meanwhile. */
ordo_err_t ordo_store_apply_until_done(ordo_store_t *s, const char *stage,
                                       const ordo_event_rec_t *recs, size_t n,
                                       ordo_park_fn *park, void *opaque,
                                       ordo_wait_fn *wait, void *wait_opaque,
                                       volatile sig_atomic_t *stop,
                                       char *errstr, size_t errstr_size);

/* which: "mongo" or "redis"; target: a database or key prefix. 1 if it
 * holds read-model data, 0 if not, -1 (errstr) if it cannot tell. */
int ordo_store_target_used(const char *which, const ordo_config_t *conf,
                           const char *target, char *errstr,
                           size_t errstr_size);
/* Removes the target (projection.h: ordo_mongo_db_drop,
 * ordo_redis_prefix_drop). The caller refuses the live one first
 * (rebuild.h: ordo__rebuild_target_check). */
ordo_err_t ordo_store_drop(const char *which, const ordo_config_t *conf,
                           const char *target, char *errstr,
                           size_t errstr_size);
/* Compares the live target (mongo.db, redis.prefix) with expected (a
 * rebuild of it), document by document or key by key: each difference
 * is a line through d (projection.h: ordo_diff_t) and counted there.
 * Guard fields and TTLs are not compared. */
ordo_err_t ordo_store_diff(const char *which, const ordo_config_t *conf,
                           const char *expected, ordo_diff_t *d, char *errstr,
                           size_t errstr_size);

#endif
