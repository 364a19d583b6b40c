/*
 * ordo - the projection stages: consume the event topics in a consumer
 * group, apply each batch to MongoDB or Redis, and commit the offsets
 * only once the writes are acknowledged.
 */
#ifndef ORDO_PROJECT_H
#define ORDO_PROJECT_H

#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "config.h"
#include "err.h"
#include "projection.h"
#include "store.h"

/* Decodes one event message into msg and rec (source: the short topic
 * name); 0, or with the reason in why (a foreign writer's) -1 when it
 * does not decode, -2 when it is of a type no processor writes there. */
int ordo_decode_event(ordo_codec_t *codec, const rd_kafka_message_t *m,
                      const char *source, ordo_msg_t *msg,
                      ordo_event_rec_t *rec, char *why, size_t why_size);

/* Runs a projection stage of runtime/cli/stages.h (its name, "mongo" or
 * "redis", picks the store; it reads the stage's inputs in the stage's
 * group) until *stop; a store outage pauses the stage with retries and
 * backoff, it never skips a batch. An event the store refuses for good is
 * parked: an ERROR log line, the parked count (progress lines, metrics)
 * and a copy on the dead-letters topic with the reason in its headers
 * (ordo.error, ordo.stage, ordo.source.*); the stage goes on with every
 * other event. */
struct ordo_stage_s;
ordo_err_t ordo_projection_run(const struct ordo_stage_s *stage,
                               const ordo_config_t *conf,
                               volatile sig_atomic_t *stop, char *errstr,
                               size_t errstr_size);

#endif
