/*
 * ordo - Prometheus metrics: one exposition writer (text format 0.0.4),
 * the process-wide registry of the names DESIGN.md and docs/operating.md
 * promise, stage health, and the HTTP listener for /metrics and /healthz.
 *
 * Tuned for stages that are threads of one process: every update is one
 * short critical section on a mutex; a family holds few label sets (no
 * ids in labels), so a linear search finds a series. One registry per
 * process, as in every Prometheus client, so that a hook in a stage loop
 * is one call (docs/decisions/0010).
 */
#ifndef ORDO_METRICS_H
#define ORDO_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>

#include "config.h"
#include "err.h"

/* ---- the writer: any family, to a FILE (open_memstream for HTTP) ---- */

#define ORDO_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* "# HELP" and "# TYPE" lines; type: counter, gauge or histogram. */
void ordo_prom_family(FILE *f, const char *name, const char *type,
                      const char *help);
/* One sample. labels: name, value, name, value, ..., NULL (or NULL for
 * none); values are escaped (\\, \", \n). */
void ordo_prom_sample(FILE *f, const char *name, const char *const *labels,
                      double value);
/* A family of one sample: HELP, TYPE and the sample. */
void ordo_prom_single(FILE *f, const char *name, const char *type,
                      const char *help, const char *const *labels,
                      double value);
/* A histogram's series: counts[i] observations in (bounds[i-1],
 * bounds[i]], counts[n] above the last bound; written cumulative with
 * _bucket{le}, _sum and _count. */
void ordo_prom_histogram(FILE *f, const char *name, const char *const *labels,
                         const double *bounds, const uint64_t *counts, size_t n,
                         double sum);
/* process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds and ordo_build_info. */
void ordo_prom_process(FILE *f);

/* ---- the registry ---- */

/* Record one decided command: result "accepted" or "rejected" with the
 * reason code ("" when accepted); ts_ms is the command's ts_ms (the
 * gateway's stamp), for the sent-to-decided histogram. */
void ordo_metrics_decision(const char *stage, const char *command,
                           const char *reason, int64_t ts_ms);
/* A command the rules ignored (a retry: RULES.md's "-> ignored"): result
 * "ignored", reason "". */
void ordo_metrics_ignored(const char *stage, const char *command,
                          int64_t ts_ms);
void ordo_metrics_transaction(const char *stage, int64_t ms);
/* The steps of a committed transaction's end (stream_commit.c): offsets
 * into the transaction, delivery reports, the commit itself. */
void ordo_metrics_transaction_end(const char *stage, int64_t offsets_ms,
                                  int64_t deliveries_ms, int64_t commit_ms);
void ordo_metrics_abort(const char *stage);
/* reason: a short class, not the message text (labels stay few). */
void ordo_metrics_dead_letter(const char *stage, const char *reason);
/* A stage starts (processor: 1 for a processor, 0 for a projection): its
 * abort and dead-letter counters appear at 0, so that increase() sees the
 * first abort or dead letter (a series that first appears at 1 shows no
 * increase, and its alert never fires). */
void ordo_metrics_stage_start(const char *stage, int processor);
void ordo_metrics_restore(const char *stage, int64_t ms);
/* The memory a processor's state holds now (ordo_state_bytes). */
void ordo_metrics_state_bytes(const char *stage, size_t bytes);
/* A projection's store is reachable (1) or not (0): ordo_store_up, and
 * /healthz's reason while it is not. */
void ordo_metrics_store_up(const char *stage, int up);
/* A projection begins (1) or ends (0) a call to its store, and says
 * when the store answers within a long one (answered). A call
 * unanswered for ORDO_STORE_WAIT_MS reads as the store away
 * (ordo_store_up 0), and /healthz says the stage waits for it: a hung
 * server (SIGSTOP) otherwise looked up for the socket timeout, then
 * like a stalled stage (an outside audit). */
#define ORDO_STORE_WAIT_MS 10000
void ordo_metrics_store_call(const char *stage, int begin);
void ordo_metrics_store_answered(const char *stage);
/* One event applied to a read model; ts_ms is the event's. */
void ordo_metrics_applied(const char *store, int64_t ts_ms);

/* Consumer lag of every partition assigned to `consumer` (an
 * rd_kafka_t *), from its position and the end offsets it last fetched:
 * the position moves past transaction markers as they are polled, so a
 * caught-up stage shows 0. Also the stage's heartbeat for /healthz.
 * Cheap to call every loop turn: it works at most once a second. */
void ordo_metrics_poll(const char *stage, void *consumer);

/* The same for a consumer whose partitions are paused (a projection
 * waiting for its store): they are not fetched, and the batch in hand
 * is past the position, so the lag is counted from the group's
 * committed offsets to the ends the broker gives now. Blocks for two
 * round trips (500 ms each at most), once a second at most; when the
 * broker does not answer, the last series stay. */
void ordo_metrics_poll_paused(const char *stage, void *consumer);

/* The stage gave its consumer up (a rejoin): it holds nothing, and is
 * not yet a member again, until its next poll; its lag series go (they
 * would stay frozen at their last values). */
void ordo_metrics_lost(const char *stage);

/* Writes every family of the registry and the process metrics. */
void ordo_metrics_write(FILE *f);

/* ---- stage health, for /healthz ---- */

/* A stage thread starts, stops (err 0) or fails. A stage is healthy
 * while it runs and reported within the last 30 s (ordo_metrics_poll),
 * holding at least one partition, or standing by with none while
 * another stage of the process holds some. */
void ordo_health_start(const char *stage);
void ordo_health_stop(const char *stage, ordo_err_t err);
/* A projection reads its inputs again from the start into a read model
 * that lost them (decision 0023): not healthy (not ready) until its next
 * poll that finds every partition caught up. */
void ordo_health_refilling(const char *stage);
/* 1 while stage is refilling (until that poll). */
int ordo_health_is_refilling(const char *stage);
/* A processor restores the state of partitions assigned to it (1), or
 * has done so (0): not ready meanwhile. */
void ordo_health_restoring(const char *stage, int on);
/* For a stage without a consumer (the dash's sampler): alive, working. */
void ordo_health_beat(const char *stage);
/* What the process does before its first stage starts (waiting for
 * Kafka to check its topics): /healthz's reason until then. NULL: none. */
void ordo_health_starting(const char *what);
/* 1 if healthy; otherwise 0 and the first reason in why. */
int ordo_health_check(char *why, size_t why_size);

/* ---- the listener ---- */

typedef struct ordo_metrics_server_s ordo_metrics_server_t;

/* The address metrics.listen gives for a command: "auto" takes
 * auto_default (NULL: off), "" is off. Returns NULL when off. */
const char *ordo_metrics_address(const ordo_config_t *conf,
                                 const char *auto_default);
/* What a server answers: write puts the exposition to f; health returns
 * /healthz's HTTP status with its body (malloc'd) and content type. */
typedef struct {
        void (*write)(FILE *f, void *arg);
        unsigned (*health)(void *arg, char **body, const char **type);
        void *arg;
} ordo_metrics_source_t;
/* Serves GET /metrics and /healthz on IPv4 HOST:PORT in its own thread,
 * from src (NULL: the registry and the stages' health, "ok: ..." or
 * "unavailable: ..."). NULL with the reason in errstr if the address is
 * bad or taken. */
ordo_metrics_server_t *ordo_metrics_serve(const char *listen,
                                          const ordo_metrics_source_t *src,
                                          char *errstr, size_t errstr_size);
/* What `ordo run|process|project|dash` do: serve on metrics.listen;
 * with "auto" a taken port is logged and metrics stay off, so a second
 * process on one host still runs; an explicit address that cannot be
 * served is an error (NULL, *failed = 1). */
ordo_metrics_server_t *ordo_metrics_start(const ordo_config_t *conf,
                                          const char *auto_default,
                                          int *failed);
void ordo_metrics_server_stop(ordo_metrics_server_t *s); /* NULL ok */

struct MHD_Connection;
/* Queues one libmicrohttpd response (Cache-Control: no-store; a 405
 * says Allow: GET, HEAD, the methods of the read-only servers that use
 * it). must_free:
 * body was malloc'd and is given away, even on failure; else it must
 * outlive the response (a static string). Returns an enum MHD_Result. */
int ordo_http_reply(struct MHD_Connection *c, unsigned status, const char *type,
                    const char *body, size_t len, int must_free);
/* libmicrohttpd's error log (MHD_OPTION_EXTERNAL_LOGGER, cls the stage
 * name to log under) as WARN lines, without its "Failed to bind to port
 * 0", which names the wrong port: the caller says which address. */
void ordo_http_log(void *stage, const char *fmt, va_list ap);
struct MHD_Daemon;
struct sockaddr_in;
/* The port a daemon started on sa listens on: the one the OS chose for
 * port 0, else (libmicrohttpd cannot say) sa's own. */
unsigned ordo_http_bound_port(struct MHD_Daemon *d,
                              const struct sockaddr_in *sa);

#endif
