/*
 * ordo - the HTTP ingest gateway (`ordo ingest`, issue 6): API adapters
 * POST JSON commands; each is validated at the door (validate.h), stamped,
 * encoded (codec.h) and produced to its command topic, and the answer, 202,
 * is sent only once Kafka has acknowledged the write (acks=all, idempotent
 * producer).
 *
 * Tuned for a flash sale: many small concurrent requests (one ~150-byte
 * PlaceOrder each) on a few cores. libmicrohttpd runs a small pool of
 * epoll threads; a request waiting for Kafka is suspended, not parked on a
 * thread, so thousands can wait at once while librdkafka batches their
 * messages (docs/decisions/0003-libmicrohttpd.md).
 *
 * The HTTP contract (paths, headers, status codes, bodies) is
 * docs/command-contract.md, section "HTTP gateway".
 */
#ifndef ORDO_INGEST_H
#define ORDO_INGEST_H

#include <stddef.h>

#include "config.h"
#include "metrics.h"

typedef struct ordo_ingest_s ordo_ingest_t;

/* Starts a gateway on ingest.listen ("HOST:PORT", IPv4; port 0 picks a
 * free port, see ordo_ingest_port()) with a producer for conf's Kafka.
 * Adds gateway defaults to conf when absent (kafka.message.timeout.ms=5000,
 * so a dead broker turns into 503 in seconds). Does not create topics
 * (`ordo topics` does) and does not wait for Kafka: a gateway started
 * before its broker answers 503 until the broker is there.
 * NULL with errstr on failure (bad configuration, unreadable keys file,
 * address in use). */
ordo_ingest_t *ordo_ingest_new(ordo_config_t *conf, char *errstr,
                               size_t errstr_size);

/* Reads ingest.keys.file again and swaps the keys in at once (SIGHUP in
 * `ordo ingest`); requests under way keep the keys they started with. On
 * any fault the old keys stay and errstr says why; -1 also when
 * authentication is off. */
int ordo_ingest_reload_keys(ordo_ingest_t *gw, char *errstr,
                            size_t errstr_size);

/* Its /metrics and /healthz (JSON), which it serves on ingest.listen,
 * for a server on metrics.listen too (DESIGN.md: every long-running
 * command serves them there). */
ordo_metrics_source_t ordo_ingest_metrics_source(ordo_ingest_t *gw);

/* The TCP port it listens on. */
int ordo_ingest_port(const ordo_ingest_t *gw);

/* Stops taking requests, waits (up to 10 s) for the answers of requests
 * already sent to Kafka, then stops. NULL ok. */
void ordo_ingest_destroy(ordo_ingest_t *gw);

#endif
