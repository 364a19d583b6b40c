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

/* which: "mongo" or "redis". Runs until *stop; a store outage pauses the
 * stage with retries and backoff, it never skips a batch. */
ordo_err_t ordo_projection_run(const char *which, const ordo_config_t *conf,
                               volatile sig_atomic_t *stop, char *errstr,
                               size_t errstr_size);

#endif
