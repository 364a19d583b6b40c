/*
 * ordo - error codes shared by every stage. A rejected order is a result
 * (an event), never an error: these are for faults of input and plumbing.
 */
#ifndef ORDO_ERR_H
#define ORDO_ERR_H

#include <stddef.h>

#define ORDO_ERRORS(X)                                                         \
        X(OK, "success")                                                       \
        X(INVALID_ARG, "invalid argument")                                     \
        X(NOMEM, "out of memory")                                              \
        X(IO, "input/output error")                                            \
        X(PARSE, "malformed input")                                            \
        X(UNKNOWN_TYPE, "unknown message type")                                \
        X(MISSING_FIELD, "missing field")                                      \
        X(WRONG_TYPE, "field has the wrong type")                              \
        X(OVERSIZE, "field or message too large")                              \
        X(BAD_ENCODING, "not a valid single-object Avro message")              \
        X(FINGERPRINT, "unknown writer schema fingerprint")                    \
        X(CONFIG, "configuration error")                                       \
        X(KAFKA, "Kafka error")                                                \
        X(KAFKA_RETRIABLE, "retriable Kafka error")                            \
        X(KAFKA_ABORTABLE, "Kafka transaction must be aborted")                \
        X(KAFKA_FATAL, "fatal Kafka error")                                    \
        X(QUEUE_FULL, "producer queue full")                                   \
        X(TIMEOUT, "timed out")                                                \
        X(MONGO, "MongoDB error")                                              \
        X(REDIS, "Redis error")                                                \
        X(UNAVAILABLE, "service unavailable")

typedef enum {
#define X(e, s) ORDO_ERR_##e,
        ORDO_ERRORS(X)
#undef X
            ORDO_ERR__COUNT
} ordo_err_t;

const char *ordo_err_str(ordo_err_t err);
const char *ordo_err_name(ordo_err_t err);

#endif
