/*
 * ordo - projections: apply decoded events to the read models of DESIGN.md
 * ("Read models (the query contract)") in MongoDB and Redis.
 *
 * Tuned for the Kafka consume loop: batches of a few hundred to a few
 * thousand events, one MongoDB bulk per collection and one Redis pipeline
 * per batch. Every write is idempotent, so the caller may re-apply the same
 * batch, or any overlapping prefix of it, after a crash or an outage:
 *   - a per-aggregate document or hash (activity, order, commission entry,
 *     stock) changes only when the event's version is newer than the one
 *     stored with it;
 *   - a cross-aggregate total (earnings, leaderboard) changes only when the
 *     event's source partition offset is newer than the one stored beside
 *     the total (same document in MongoDB, same Lua call in Redis).
 * The caller commits its Kafka offsets only after apply returns OK.
 *
 * A handle is not thread-safe (it holds one mongoc client or one hiredis
 * connection): use one per consuming thread.
 *
 * docs/read-models.md describes the result for front-end developers.
 */
#ifndef ORDO_PROJECTION_H
#define ORDO_PROJECTION_H

#include <stddef.h>
#include <stdint.h>

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
} ordo_event_rec_t;

typedef struct ordo_mongo_proj_s ordo_mongo_proj_t;

/* uri e.g. "mongodb://127.0.0.1:27017", db e.g. "ordo". Creates the
 * indexes a front end needs (orders by user_id+status, by activity_id;
 * commissions by beneficiary_id; referrals by parent_id). If the server
 * is unreachable now, that is not an error: the indexes are created by the
 * first apply that reaches it. NULL and errstr on a bad URI or a server
 * that refuses the indexes. */
ordo_mongo_proj_t *ordo_mongo_proj_new(const char *uri, const char *db,
                                       char *errstr, size_t errstr_size);
/* Accepts NULL. */
void ordo_mongo_proj_destroy(ordo_mongo_proj_t *p);
/* Apply a batch in order; returns OK only when every write is
 * acknowledged. On ORDO_ERR_UNAVAILABLE / ORDO_ERR_MONGO the caller retries
 * the same batch later: re-applying a prefix or the whole batch never
 * double counts. Events that have no MongoDB read model are skipped. */
ordo_err_t ordo_mongo_proj_apply(ordo_mongo_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size);

typedef struct ordo_redis_proj_s ordo_redis_proj_t;

/* prefix: "ordo:" by default (at most 64 bytes); rejected_ttl_s: how long
 * the status of a rejected PlaceOrder lives (86400). Connects now; an
 * unreachable server is not an error here (apply reports it). NULL and
 * errstr only on bad arguments. */
ordo_redis_proj_t *ordo_redis_proj_new(const char *host, int port,
                                       const char *prefix,
                                       int64_t rejected_ttl_s, char *errstr,
                                       size_t errstr_size);
/* Accepts NULL. */
void ordo_redis_proj_destroy(ordo_redis_proj_t *p);
/* AUTH and SELECT on every (re)connection (redis_conn.h); login's strings
 * must outlive p. */
struct ordo_redis_login_s;
void ordo_redis_proj_set_login(ordo_redis_proj_t *p,
                               const struct ordo_redis_login_s *login);
/* As ordo_mongo_proj_apply. ORDO_ERR_UNAVAILABLE when Redis cannot be
 * reached or is loading; the next call reconnects on its own.
 * ORDO_ERR_REDIS for a reply error (a key of the wrong type, OOM). */
ordo_err_t ordo_redis_proj_apply(ordo_redis_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size);

#endif
