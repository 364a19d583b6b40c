/*
 * ordo - the exactly-once stream loop that runs a processor: consume a
 * batch of input, decide it with the pure rules, produce the events and
 * outbound commands and send the consumed offsets in one Kafka
 * transaction, commit. State is the fold of the processor's own event
 * partition, restored on assignment (DESIGN.md "Processors").
 */
#ifndef ORDO_STREAM_H
#define ORDO_STREAM_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "kafka.h"
#include "rules.h"

/* A processor's join (docs/decisions/0004): its decisions also depend on
 * a topic it does not own (one partition; the commission processor's
 * referral graph from referral-events). The loop follows that topic from
 * its start and, before each batch, reads it to its last stable offset
 * as of then, binding every message of `type` into each state it holds
 * and, on a restore, into the restored state. A restore also replays the
 * input below the committed offset through observe: facts the state
 * learnt from inputs already decided, whose effects are in its own log.
 * The loop knows no more than this (stream_join.c). */
typedef struct ordo_join_s {
        ordo_topic_t topic;
        ordo_msg_type_t type;
        void (*bind)(void *state, const ordo_msg_t *m); /* idempotent */
        void (*observe)(void *state, const ordo_msg_t *input);
        /* The processor that writes `topic` (its consumer group's stage
         * name) and its input, a single partition: before deciding, the
         * loop waits (join.wait.ms) until that group has committed what
         * was written to its input by then (decision 0025). */
        const char *writer;
        ordo_topic_t writer_input;
        /* the input type whose decision reads the joined state (waited
         * for only when a run of inputs holds one) */
        ordo_msg_type_t reader;
} ordo_join_t;

/* What differs between the four processors; the loop is the same. */
typedef struct ordo_processor_def_s {
        const char *name;        /* stage name: "activity", ... */
        ordo_topic_t input;      /* consumed in the group */
        ordo_topic_t events;     /* its own event topic, co-partitioned */
        ordo_topic_t outbound;   /* commands it sends, or ORDO_TOPIC__COUNT */
        ordo_topic_t snapshots;  /* its compacted snapshot topic */
        const ordo_join_t *join; /* NULL: none */
        void *(*state_new)(void);
        void (*state_destroy)(void *state);
        void (*handle)(void *state, const ordo_msg_t *in, const ordo_pos_t *pos,
                       const ordo_sink_t *sink);
        void (*apply)(void *state, const ordo_msg_t *event);
        void (*save)(const void *state, ordo_buf_t *out);
        void *(*load)(const void *data, size_t len, char *errstr,
                      size_t errstr_size);
        /* 1 if this message type is valid input for the processor */
        int (*accepts)(ordo_msg_type_t type);
        size_t (*state_bytes)(const void *state); /* ordo_state_bytes */
} ordo_processor_def_t;

/* Why a processor sends a decoded input to dead-letters instead of
 * deciding it, as the reason of ordo_dead_letters_total
 * ("unexpected_type": not a type of its input; "wrong_partition": a
 * keyed command on another partition than ordo's producers put it, where
 * its aggregate's state is not), with details in why; NULL: decided.
 * partition: where it was read, of partitions. The stream loop and
 * `ordo reconcile` ask the same. */
const char *ordo_processor_refuses(const ordo_processor_def_t *def,
                                   const ordo_msg_t *m, int32_t partition,
                                   int32_t partitions, char *why,
                                   size_t why_size);

/* The four processors of DESIGN.md; NULL if the name is unknown. */
const ordo_processor_def_t *ordo_processor_find(const char *name);
extern const ordo_processor_def_t *const ordo_processors[4];

/* Counters of one stage, logged periodically and at exit. */
typedef struct ordo_stage_stats_s {
        int64_t consumed;
        int64_t produced;
        int64_t rejected;
        int64_t dead_lettered;
        int64_t transactions;
        int64_t txn_ms; /* in committed transactions, begin to commit */
        int64_t aborts;
        int64_t restored_events;
        int64_t restore_ms;
        int64_t snapshots;        /* written */
        int64_t snapshot_bytes;   /* written */
        int64_t ticks;            /* Ticks written (tick.interval.ms) */
        int64_t assignments;      /* partition sets the group gave us */
        int64_t kept;             /* partitions assigned again, state kept */
        int64_t revoke_committed; /* inputs decided when their partitions
                                   * were revoked, committed then */
        int64_t rejoins;          /* partitions given up after a fatal error */
        int64_t renewals;  /* producers replaced after a fatal producer error,
                           * keeping the partitions */
        int64_t discarded; /* inputs decided, then dropped: the previous
                            * transaction aborted (decision 0018) */
        int64_t commit_wait_ms; /* the loop waiting for a commit */
        int64_t decide_ms;      /* decoding, deciding, encoding */
        int64_t consume_ms;     /* in consume_batch, deciding included */
        int64_t produce_ms;     /* handing the outbox to librdkafka */
        int64_t idle_ms;        /* polls that brought nothing */
        /* where committed transactions spent their end (stream_commit.c):
         * the offsets into the transaction (AddOffsetsToTxn,
         * TxnOffsetCommit), the delivery reports, the commit (EndTxn) */
        int64_t offsets_ms, deliveries_ms, end_txn_ms;
} ordo_stage_stats_t;

/* Runs a processor until *stop becomes non-zero or a fatal error.
 * Returns ORDO_ERR_OK on a clean stop. */
ordo_err_t ordo_processor_run(const ordo_processor_def_t *def,
                              const ordo_config_t *conf,
                              volatile sig_atomic_t *stop,
                              ordo_stage_stats_t *stats, char *errstr,
                              size_t errstr_size);

#endif
