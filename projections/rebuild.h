/*
 * ordo - rebuilding a read model from the event log: offset 0 of the four
 * event topics, through the same adapters as the live projection
 * (projection.h), into a database or key prefix of its own. `ordo
 * rebuild` and `ordo reconcile` (which rebuilds into a temporary target
 * and compares) share it.
 */
#ifndef ORDO_REBUILD_H
#define ORDO_REBUILD_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

typedef struct ordo_rebuild_stats_s {
        int64_t total;   /* offsets to read at the start (approximate:
                            * transaction markers take offsets too) */
        int64_t applied; /* events handed to the adapter */
        int64_t skipped; /* undecodable messages (a foreign writer) */
        int64_t parked;  /* events the store refused for good (logged) */
        int written;     /* events went to the store (perhaps in part) */
        int64_t elapsed_ms;
} ordo_rebuild_stats_t;

/* Builds the read model of `which` ("mongo" or "redis") into `into` (a
 * MongoDB database name, or a Redis key prefix) from offset 0 of every
 * partition of the four event topics up to the end each had when the
 * call started (read_committed, assign, no consumer group). Refuses when
 * `into` is the live target of conf (mongo.db, redis.prefix) or already
 * holds read-model data.
 *
 * commit_group: NULL, or a consumer group that must not exist yet; the
 * offsets reached are committed to it at the end, so a projection run
 * with that group continues exactly where the rebuild stopped.
 * progress_s: seconds between progress lines on stderr (0: none).
 * alive_id: the name of the heartbeat kept in `into` while it runs
 * (store.h), left on at the end for the caller to renew and remove
 * (reconcile, which goes on to compare); NULL: "rebuild.<pid>", removed
 * at the end.
 * A store outage pauses with retries as the live projection does.
 * ORDO_ERR_OK only when every event up to the ends was acknowledged. */
ordo_err_t ordo_rebuild_run(const char *which, const ordo_config_t *conf,
                            const char *into, const char *commit_group,
                            int progress_s, const char *alive_id,
                            volatile sig_atomic_t *stop,
                            ordo_rebuild_stats_t *stats, char *errstr,
                            size_t errstr_size);

/* Removes what a rebuild wrote under `into`: deletes the keys of the
 * prefix and their guard keys (the prefix matched literally), or drops the
 * database when it holds only read-model collections. Refuses what
 * ordo__rebuild_target_check refuses. */
ordo_err_t ordo_rebuild_drop(const char *which, const ordo_config_t *conf,
                             const char *into, char *errstr,
                             size_t errstr_size);

/* Whether `name` may be the target of a rebuild or a drop: not the live
 * one (mongo.db, redis.prefix); a Redis prefix neither empty, nor a prefix
 * of the live prefix, nor starting with it (their keys overlap), at most
 * 64 bytes; a MongoDB name of at most 63 bytes, no system database.
 * ORDO_ERR_INVALID_ARG and the reason otherwise. */
ordo_err_t ordo__rebuild_target_check(const char *which,
                                      const ordo_config_t *conf,
                                      const char *name, char *errstr,
                                      size_t errstr_size);

#endif
