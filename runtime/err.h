/*
 * ordo - error codes shared by every stage. A rejected order is a result
 * (an event), never an error: these are for faults of input and plumbing.
 */
#ifndef ORDO_ERR_H
#define ORDO_ERR_H

#include <stddef.h>

/* X(name, message). When each is returned:
 *  INVALID_ARG     a caller's argument (a flag, a name) is refused
 *  NOMEM           an allocation failed
 *  IO              a file cannot be read or written
 *  INTERRUPTED     a signal asked a long operation to stop before its end
 *  PARSE .. OVERSIZE  input (JSON, a command) is malformed; the field and
 *                  reason go with it (docs/command-contract.md)
 *  BAD_ENCODING, FINGERPRINT  bytes on a topic are not ordo's Avro
 *  CONFIG_UNKNOWN  ordo_config_set: no such key (librdkafka's
 *                  RD_KAFKA_CONF_UNKNOWN)
 *  CONFIG_INVALID  ordo_config_set: the key's value is refused
 *                  (RD_KAFKA_CONF_INVALID)
 *  CONFIG          a client (Kafka, MongoDB) cannot be made from the
 *                  configuration, or the topics do not fit it
 *                  (co-partitioning)
 *  KAFKA           a Kafka call failed; the caller may retry or give up
 *  KAFKA_FATAL     the producer is fenced or fatally failed: exit
 *  TIMEOUT         waited for longer than allowed
 *  MONGO, REDIS    a store call failed
 *  UNAVAILABLE     a service is not reachable (yet) */
#define ORDO_ERRORS(X)                                                         \
        X(OK, "success")                                                       \
        X(INVALID_ARG, "invalid argument")                                     \
        X(NOMEM, "out of memory")                                              \
        X(IO, "input/output error")                                            \
        X(INTERRUPTED, "interrupted")                                          \
        X(PARSE, "malformed input")                                            \
        X(UNKNOWN_TYPE, "unknown message type")                                \
        X(MISSING_FIELD, "missing field")                                      \
        X(WRONG_TYPE, "field has the wrong type")                              \
        X(OVERSIZE, "field or message too large")                              \
        X(BAD_ENCODING, "not a valid single-object Avro message")              \
        X(FINGERPRINT, "unknown writer schema fingerprint")                    \
        X(CONFIG_UNKNOWN, "unknown configuration key")                         \
        X(CONFIG_INVALID, "invalid configuration value")                       \
        X(CONFIG, "configuration error")                                       \
        X(KAFKA, "Kafka error")                                                \
        X(KAFKA_FATAL, "fatal Kafka error")                                    \
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
