/*
 * ordo - the projection stages: consume the event topics in a consumer
 * group, apply each batch to MongoDB or Redis, and commit the offsets
 * only once the writes are acknowledged.
 */
#ifndef ORDO_PROJECT_H
#define ORDO_PROJECT_H

#include <signal.h>

#include "config.h"
#include "err.h"
#include "projection.h"

/* One read-model store, MongoDB or Redis: what the live projection,
 * rebuild and reconcile write through. */
typedef struct ordo_store_s {
        ordo_mongo_proj_t *mongo;
        ordo_redis_proj_t *redis;
} ordo_store_t;

/* which: "mongo" or "redis"; target: the database or key prefix, NULL
 * for the configured one (mongo.db, redis.prefix). */
ordo_err_t ordo_store_open(ordo_store_t *s, const char *which,
                           const ordo_config_t *conf, const char *target,
                           char *errstr, size_t errstr_size);
ordo_err_t ordo_store_apply(ordo_store_t *s, const ordo_event_rec_t *recs,
                            size_t n, char *errstr, size_t errstr_size);
void ordo_store_close(ordo_store_t *s);

/* Runs a projection stage of runtime/cli/stages.h (its name, "mongo" or
 * "redis", picks the store; it reads the stage's inputs in the stage's
 * group) until *stop; a store outage pauses the stage with retries and
 * backoff, it never skips a batch. */
struct ordo_stage_s;
ordo_err_t ordo_projection_run(const struct ordo_stage_s *stage,
                               const ordo_config_t *conf,
                               volatile sig_atomic_t *stop, char *errstr,
                               size_t errstr_size);

#endif
