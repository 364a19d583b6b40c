/*
 * ordo - reading and writing Kafka, written once for every stage and
 * tool (docs/decisions/0020): a partition's stable end, reading a
 * partition up to an end, consuming a batch, producing with
 * back-pressure, a dead letter's headers. kafka.h makes the clients;
 * this is what they do.
 */
#ifndef ORDO_KAFKA_IO_H
#define ORDO_KAFKA_IO_H

#include <signal.h>
#include <stdint.h>

#include "kafka.h"

/* ---- a partition's stable end ------------------------------------------ */

/* How ordo_kafka_stable_end waits. */
typedef struct ordo_stable_end_opts_s {
        const char *who; /* log component of the "waiting" notes */
        /* 1: a partition only the caller writes (a processor's restore
         * of its own events or snapshots): wait until the last stable
         * offset equals the high watermark as it is then. 0: a topic
         * others may be writing to (replay, reconcile, rebuild): the end
         * is the high watermark when asked, once the last stable offset
         * has reached it; transactions begun later do not hold it back
         * (docs/decisions/0017). */
        int own;
        int64_t wait_ms;             /* then ORDO_ERR_TIMEOUT */
        volatile sig_atomic_t *stop; /* may be NULL; INTERRUPTED */
} ordo_stable_end_opts_t;

/* The end of a partition once no transaction is open below it. Kafka
 * writes a committed transaction's markers just after the commit
 * returns, so for a moment the last stable offset (what read_committed
 * reads to) lags the high watermark: a reader that stopped there would
 * miss committed messages (docs/decisions/0004). committed is a
 * read_committed client (it also answers *lo), uncommitted one made by
 * ordo_kafka_watermark_client_new. Notes at INFO after 2 s, then every
 * 5 s. */
ordo_err_t ordo_kafka_stable_end(rd_kafka_t *committed, rd_kafka_t *uncommitted,
                                 const char *topic, int32_t partition,
                                 const ordo_stable_end_opts_t *opts,
                                 int64_t *lo, int64_t *end, char *errstr,
                                 size_t errstr_size);

/* ORDO_ERR_CONFIG, errstr saying why, when a partition whose low
 * watermark is lo begins above from: its records below lo were deleted
 * (a retention or size limit on the topic; `ordo topics` makes ordo's
 * without one), and a reader that needs them would go on without them:
 * a restored state, a read model or a comparison that is not the log's. */
ordo_err_t ordo_kafka_check_start(const char *topic, int32_t partition,
                                  int64_t lo, int64_t from, char *errstr,
                                  size_t errstr_size);

/* 1, errstr saying which partition and from where, if m is a group
 * member's answer that the offset it was to read next is no longer in
 * the log (RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET: its records were
 * deleted, see ordo_kafka_member_new): nothing after it may be read as
 * if they were not missing. */
int ordo_kafka_records_lost(const rd_kafka_message_t *m, char *errstr,
                            size_t errstr_size);

/* ---- reading one partition up to an end --------------------------------- */

/* A read of one partition of an assign-only consumer (the caller's),
 * from an offset up to an end (exclusive), in offset order. The end may
 * be moved on for a partition that is followed (the commission join):
 * the consumer stays assigned and keeps what it prefetched, unless the
 * reader is parked at its end. */
typedef struct ordo_kafka_reader_s {
        rd_kafka_t *rk;
        const char *topic;
        const char *who; /* log component of read errors */
        int32_t partition;
        int64_t next; /* read up to here: the next offset to deliver */
        int64_t end;
        int done;     /* next >= end */
        int stalled;  /* the last await met its idle limit */
        int assigned; /* the consumer is assigned by us */
        int parked;   /* given back at its end, until extended */
        int at_end;   /* the last thing polled: the partition's end, at next */
        rd_kafka_message_t *held; /* polled past the end, for an extend */
} ordo_kafka_reader_t;

/* Assigns rk to topic/partition at from, which may be a logical offset
 * (RD_KAFKA_OFFSET_BEGINNING), unless from >= end: nothing to read.
 * topic and who must outlive the reader. */
void ordo_kafka_reader_open(ordo_kafka_reader_t *r, rd_kafka_t *rk,
                            const char *topic, int32_t partition, int64_t from,
                            int64_t end, const char *who);
/* A new end for a reader that stays assigned, or was parked: it is
 * assigned again where it left off if there is more to read. */
void ordo_kafka_reader_extend(ordo_kafka_reader_t *r, int64_t end);
/* Unassigns a reader that has reached its end, or met the partition's
 * end as the last thing it polled (at_end: that is its end now), until
 * the next extend past it: a followed partition then costs its broker
 * no fetch between reads (an assigned reader fetches every
 * fetch.wait.max.ms, 10 ms). What was prefetched is dropped, and fetched
 * again. */
void ordo_kafka_reader_park(ordo_kafka_reader_t *r);
/* The next message below the end (the caller destroys it), or NULL when
 * the end is reached (r->done) or nothing came within timeout_ms. A
 * partition's end event moves r->next; the last offsets below an end
 * may be transaction markers, which are never delivered. Read errors are
 * logged (WARN) and skipped. */
rd_kafka_message_t *ordo_kafka_reader_next(ordo_kafka_reader_t *r,
                                           int timeout_ms);
/* The next message below the end, waited for: NULL at the end
 * (r->done), once *stop (may be NULL) is non-zero, or when nothing came
 * for idle_ms (-1: no limit), which sets r->stalled. Below a stable end
 * the messages are there to read, so a minute of nothing is a fault (a
 * broker away, a fetch that keeps failing) that a reader should report
 * rather than wait for ever. Each message starts the count again: a long
 * read that moves is never cut short. */
rd_kafka_message_t *ordo_kafka_reader_await(ordo_kafka_reader_t *r,
                                            int64_t idle_ms,
                                            volatile sig_atomic_t *stop);
/* The idle limit of the tools' reads (replay, reconcile). */
#define ORDO_READ_IDLE_MS 60000
/* Unassigns the consumer. */
void ordo_kafka_reader_close(ordo_kafka_reader_t *r);

/* Reads topic/partition from `from` to `end` (a stable end), handing each
 * message to fn. Returns INTERRUPTED if *stop (may be NULL) became
 * non-zero first; it waits for as long as it takes otherwise, the end
 * being stable. */
ordo_err_t ordo_kafka_read_range(
    rd_kafka_t *rk, const char *topic, int32_t partition, int64_t from,
    int64_t end, const char *who, volatile sig_atomic_t *stop,
    void (*fn)(const rd_kafka_message_t *m, void *arg), void *arg);

/* ---- consuming a batch -------------------------------------------------- */

typedef struct ordo_kafka_batch_opts_s {
        const char *who; /* log component of consume errors */
        /* 1: ends of partitions (err RD_KAFKA_RESP_ERR__PARTITION_EOF)
         * come in msgs too, in their place among the messages, for a
         * reader that stops there (rebuild). */
        int eofs;
} ordo_kafka_batch_opts_t;

/* Up to max messages of a consumer: waits up to wait_ms for the first,
 * then takes only what is already there. Error events are not returned
 * (but ends of partitions if asked): they are logged. A
 * fatal consumer error (e.g. FENCED_INSTANCE_ID) ends the batch: *fatal
 * is set and errstr says why (the messages taken are returned); so do
 * records lost (ordo_kafka_records_lost), *fatal then
 * ORDO_KAFKA_RECORDS_LOST. */
#define ORDO_KAFKA_RECORDS_LOST 2
size_t ordo_kafka_consume_batch(rd_kafka_t *rk,
                                const ordo_kafka_batch_opts_t *opts,
                                rd_kafka_message_t **msgs, size_t max,
                                int wait_ms, int *fatal, char *errstr,
                                size_t errstr_size);

/* ---- producing with back-pressure --------------------------------------- */

/* ordo_kafka_produce's wait: as long as librdkafka's queue is full. */
#define ORDO_PRODUCE_WAIT (-1)

/* One message to produce. partition: RD_KAFKA_PARTITION_UA goes by key
 * (key may be NULL); hdrs may be NULL; opaque is the message's _private
 * in its delivery report. */
typedef struct ordo_kafka_out_s {
        const char *topic;
        int32_t partition;
        const void *key;
        size_t key_len;
        const void *value;
        size_t len;
        rd_kafka_headers_t *hdrs;
        void *opaque;
} ordo_kafka_out_t;

/* Produces m. While librdkafka's queue is full it polls rk, serving
 * delivery reports, which is what frees room: for up to wait_ms, or for
 * as long as it takes with ORDO_PRODUCE_WAIT; 0 refuses at once with
 * _QUEUE_FULL (the gateway then answers 503). msgflags:
 * RD_KAFKA_MSG_F_COPY, or 0 when m->value outlives the delivery report.
 * m->hdrs is taken over whatever the outcome. */
rd_kafka_resp_err_t ordo_kafka_produce(rd_kafka_t *rk,
                                       const ordo_kafka_out_t *m, int msgflags,
                                       int wait_ms);

/* ---- a dead letter ---------------------------------------------------- */

/* The letter for source, into out's key, value and headers (topic and
 * partition are the caller's; out->hdrs is then the caller's to produce
 * or destroy). Why it went to dead-letters and where it was read are in
 * the headers every reader of that topic expects (operating.md):
 * ordo.type (the source's, when it had one), ordo.kind (kind: the reason
 * label of ordo_dead_letters_total, e.g. undecodable, store_refused),
 * ordo.error (reason, the text), ordo.stage (the projection that wrote
 * it; NULL for a processor), ordo.source.topic, ordo.source.partition,
 * ordo.source.offset.
 *
 * A letter must never be refused for its size: that would block the
 * partition it came from. A foreign writer's message can be near the
 * broker's limit in its value, its key or its type header, so each has
 * a budget, and what is over it goes without its bytes (which stay at
 * their source), its length in ordo.payload.omitted, ordo.key.omitted
 * or ordo.type.omitted. The three budgets, the reason's and the rest of
 * the headers stay under librdkafka's default message.max.bytes (10^6). */
#define ORDO_LETTER_PAYLOAD_MAX 900000
#define ORDO_LETTER_KEY_MAX     4096
#define ORDO_LETTER_TYPE_MAX    256
#define ORDO_LETTER_REASON_MAX  4096
void ordo_dead_letter(const rd_kafka_message_t *source, const char *kind,
                      const char *reason, const char *stage,
                      ordo_kafka_out_t *out);

/* m's last header called name: its bytes, not NUL-terminated, and their
 * length in *len; NULL when m has no such header (or a null one). */
const void *ordo_kafka_header(const rd_kafka_message_t *m, const char *name,
                              size_t *len);

#endif
