/*
 * ordo - internals of the stream loop shared by its files: the loop
 * (stream.c), the decided-but-unsent messages (stream_outbox.c), the
 * commit in flight (stream_commit.c), restore and rewind
 * (stream_restore.c), snapshots (stream_snapshot.c) and the commission
 * join (stream_join.c).
 */
#ifndef ORDO_STREAM_INT_H
#define ORDO_STREAM_INT_H

#include <pthread.h>

#include "codec.h"
#include "kafka_io.h"
#include "stream.h"

#define ORDO__ENCODE_MAX 8192

/* The join's follower (stream_join.c), when the definition has one. */
typedef struct ordo__join_s {
        rd_kafka_t *rk; /* assign-only, on the joined topic */
        ordo_kafka_reader_t reader;
        char topic[256];
        /* the writer's group (only asked for its committed offset) */
        rd_kafka_t *writer;
        char writer_input[256];
        int64_t wait_ms;          /* join.wait.ms */
        int64_t writer_committed; /* its input offset committed, known */
        int64_t caught_up_to;     /* its input's end, all bound */
        /* Every message of the join's type so far, as it came (the
         * encoded bytes, each after its length as 4 bytes): a decoded
         * ordo_msg_t holds every field's longest string (832 bytes), a
         * binding's encoding about an eighth of that. */
        char *kept;
        size_t kept_len, cap_kept;
        ordo_msg_t seeding; /* one decoded again for a restored state */
} ordo__join_t;

/* What the loop knows about one partition it may own. */
typedef struct ordo__part_s {
        int64_t input_next;     /* committed input offset */
        int64_t since_snapshot; /* events folded since the last snapshot */
        /* Extra events to wait before the next attempt: it doubles (plus
         * snapshot.events) with each aborted transaction that carried a
         * snapshot of this partition, so one that cannot be written (too
         * big for the broker, too slow for the transaction timeout)
         * never stops the partition; a committed one clears it. */
        int64_t snapshot_delay;
        int snapshot_in_txn; /* the open transaction carries one */
        /* one past the last input decided into the state: the state holds
         * nothing uncommitted while decided_next <= input_next */
        int64_t decided_next;
        /* revoked with nothing uncommitted: the state waits for the next
         * assignment, which keeps it if nobody committed since */
        int kept;
        /* where the partition's end was last met since it was last
         * positioned (its EOF: the next fetch, past the transaction
         * markers), every message before it delivered; -1: not met.
         * Forgotten whenever delivered messages may go undecided (a
         * rebalance, a rewind). */
        int64_t end_next;
} ordo__part_t;

/* One decided message waiting for its transaction (stream_outbox.c). */
typedef struct ordo__out_msg_s {
        const char *topic; /* one of the proc's topic names */
        int32_t partition;
        size_t key, key_len, value, len; /* offsets into the outbox data */
        /* a null key or value stays null, an empty one empty: a dead
         * letter keeps the bytes it came with */
        int key_null, value_null;
        rd_kafka_headers_t *hdrs; /* owned until produced */
} ordo__out_msg_t;

/* The output of a batch decided while the previous batch commits
 * (docs/decisions/0018): produced once its own transaction begins, or
 * discarded with the batch when the previous one aborts. */
typedef struct ordo__outbox_s {
        char *data;
        size_t len, cap;
        ordo__out_msg_t *msgs;
        size_t n, cap_msgs;
        int oom; /* an add failed: the batch must not commit */
} ordo__outbox_t;

typedef enum {
        ORDO__TXN_OK,
        ORDO__TXN_ABORTED, /* rewind and restore */
        ORDO__TXN_FATAL    /* lose the partitions and rejoin (0009) */
} ordo__txn_result_t;

/* The end of one batch's transaction, run by a worker thread while the
 * loop decides the next batch (stream_commit.c, decision 0018). While
 * `running`, the worker owns the producer: the loop touches it again
 * only after ordo__commit_wait(). */
typedef struct ordo__commit_s {
        pthread_t thread;
        int pending;  /* started, not yet waited for */
        int threaded; /* by the worker thread */
        int done;     /* the worker has finished (atomic) */
        rd_kafka_topic_partition_list_t *offsets; /* one past each input */
        rd_kafka_consumer_group_metadata_t *cgmd;
        int64_t t0;             /* monotonic ms when the transaction began */
        int64_t started, ended; /* ...when the worker started, ended */
        /* the worker's steps, ms: offsets into the transaction, waiting
         * for the delivery reports, the commit itself */
        int64_t offsets_ms, deliveries_ms, end_ms;
        size_t inputs, outputs; /* the batch's size, for the debug log */
        ordo__txn_result_t result;
        char errstr[1024];
} ordo__commit_t;

typedef struct ordo__proc_s {
        const ordo_processor_def_t *def;
        const ordo_config_t *conf;
        ordo_stage_stats_t *stats;
        uint64_t emitted; /* messages the rules emitted: none, ignored */
        uint64_t emitted_by_timer; /* ...of them stamped by a timer */
        rd_kafka_t *producer;
        rd_kafka_t *consumer;
        rd_kafka_t *restorer;   /* assign-only, reads event partitions */
        rd_kafka_t *watermarks; /* read_uncommitted, for ordo__stable_end() */
        ordo_codec_t *codec;
        char input[256], events[256], outbound[256], dead[256];
        char snaps[256];
        char group[256];
        void **states;       /* by input partition */
        ordo__part_t *parts; /* by input partition */
        int n_states;
        int64_t snapshot_every; /* 0: no snapshots */
        int64_t tick_every;     /* ms; 0: no Ticks */
        int64_t tick_lag;       /* ms the Ticks' time trails the wall clock */
        int64_t next_tick;      /* monotonic ms of the next Ticks */
        int64_t state_counted;  /* monotonic ms ordo_state_bytes was set */
        int assigned;           /* partitions assigned to us now */
        ordo_buf_t snap;        /* a snapshot being written or read */
        ordo__join_t join;
        /* the sink's context while deciding one input message */
        int32_t partition;
        rd_kafka_resp_err_t produce_err;
        int join_unread; /* produce_err set because the join was not read */
        /* The first failed delivery report of the open transaction
         * (ordo_kafka_delivery_err: an error, or an "implicit ack"
         * without an offset): the transaction aborts instead of
         * committing offsets past a message that is not in the log. */
        rd_kafka_resp_err_t delivery_err;
        int32_t delivery_partition;
        char delivery_topic[256];
        int restore_failed;
        /* a condition no retry mends (the log lost records the state
         * needs, topics not co-partitioned): the stage stops, saying
         * unmendable_why (p->errstr then: a later failure, the batch's
         * abort, would overwrite it there) */
        int unmendable;
        char unmendable_why[1024]; /* as errstr */
        int rebalanced; /* set by rebalance_cb: drop a half-built batch */
        /* the batch consume_batch is building, its first batch_decided
         * messages decided into the outbox: a revocation commits them
         * (batch_committed) rather than throwing the work away */
        rd_kafka_message_t **batch;
        size_t batch_decided, batch_committed;
        int consumer_fatal; /* the group consumer raised a fatal error */
        int64_t instance_fenced_ms[2];   /* the last two FENCED_INSTANCE_ID */
        ordo_fence_t duplicate_instance; /* not REJOIN: stop */
        volatile sig_atomic_t *stop;
        int at_least_once; /* processing.guarantee=at_least_once */
        int pipelined;     /* processing.pipeline=1 */
        ordo__outbox_t outbox;
        ordo__commit_t commit;
        /* The last commit's failure, for the loop to act on (set where
         * the commit is waited for, the rebalance callback included). */
        ordo__txn_result_t failed;
        char buf[ORDO__ENCODE_MAX];
        char errstr[1024];
} ordo__proc_t;

/* stream.c: produce inside the open transaction (back-pressure on a full
 * queue; the first error is kept in produce_err), decode and validate. */
void ordo__produce(ordo__proc_t *p, const char *topic, int32_t partition,
                   const void *key, size_t key_len, const void *value,
                   size_t len, rd_kafka_headers_t *hdrs);
/* The transactional producer's delivery callback (opaque: the proc):
 * keeps the first failed report in delivery_err (a purge gives way to
 * the failure that caused it). */
void ordo__on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                       void *opaque);
int ordo__decode(ordo__proc_t *p, const rd_kafka_message_t *rkm, ordo_msg_t *m,
                 char *errstr, size_t errstr_size);

/* stream_outbox.c: add copies key and value and takes hdrs; flush
 * produces everything into the open transaction (ordo__produce) and
 * empties the outbox; discard drops it. */
void ordo__outbox_add(ordo__outbox_t *o, const char *topic, int32_t partition,
                      const void *key, size_t key_len, const void *value,
                      size_t len, rd_kafka_headers_t *hdrs);
void ordo__outbox_flush(ordo__proc_t *p);
void ordo__outbox_discard(ordo__outbox_t *o);
void ordo__outbox_fini(ordo__outbox_t *o);

/* stream_commit.c: begin (no transaction at least once), the end of
 * the batch whose output is produced (in a worker thread when
 * pipelined; takes offsets), waiting for it (a failure is also kept in
 * p->failed), and failing a batch before its end is started (abort:
 * exactly once; wait for what was produced: at least once). */
ordo__txn_result_t ordo__txn_begin(ordo__proc_t *p);
void ordo__commit_start(ordo__proc_t *p,
                        rd_kafka_topic_partition_list_t *offsets);
ordo__txn_result_t ordo__commit_wait(ordo__proc_t *p);
ordo__txn_result_t ordo__txn_abort_now(ordo__proc_t *p, rd_kafka_error_t *error,
                                       const char *step);

/* stream_restore.c */
ordo_err_t ordo__stable_end(ordo__proc_t *p, const char *topic,
                            int32_t partition, int64_t *lo, int64_t *end);
void ordo__read_range(ordo__proc_t *p, const char *topic, int32_t partition,
                      int64_t from, int64_t end,
                      void (*fn)(ordo__proc_t *, const rd_kafka_message_t *,
                                 void *),
                      void *arg);
/* rd_kafka_committed of tp, asked again while it times out (up to a
 * minute, or a stop): a transaction left open by a process that died
 * keeps the group's offsets of its partitions unstable (KIP-447) until
 * the broker aborts it, and one request covers every partition asked.
 * Failing at the first 10 s made the surviving instances rejoin and
 * restore all their partitions (an outside audit). */
rd_kafka_resp_err_t ordo__committed_wait(ordo__proc_t *p, rd_kafka_t *rk,
                                         rd_kafka_topic_partition_list_t *tp);
/* A committed offset as rd_kafka_committed left it in e: -1 if it could
 * not be read, 0 if the group has none yet. */
int64_t ordo__committed_of(const rd_kafka_topic_partition_t *e);
ordo_err_t ordo__committed_offset(ordo__proc_t *p, int32_t partition,
                                  int64_t *off);
ordo_err_t ordo__restore(ordo__proc_t *p, int32_t partition, int64_t committed);
ordo_err_t ordo__rewind_all(ordo__proc_t *p);
/* Every partition's end_next forgotten. */
void ordo__forget_ends(ordo__proc_t *p);

/* stream_snapshot.c (docs/decisions/0005) */
typedef struct ordo__snap_meta_s {
        int64_t offset;      /* of the manifest, -1: none found */
        int64_t chunks;      /* messages of state bytes before it */
        int64_t events_next; /* the state is the fold of events before */
        int64_t input_next;  /* and of input (commission) before */
        int64_t bytes;
        int64_t next_chunk; /* while gathering */
        int bad;            /* while gathering: not the expected chunk */
} ordo__snap_meta_t;
int ordo__snapshot_due(const ordo__proc_t *p);
void ordo__write_due_snapshots(ordo__proc_t *p);
void ordo__snapshots_done(ordo__proc_t *p, int committed);
ordo_err_t ordo__load_snapshot(ordo__proc_t *p, int32_t q, int64_t events_end,
                               int64_t input_committed, void **state,
                               ordo__snap_meta_t *meta);

/* stream_join.c: the definition's join, if it has one (else these do
 * nothing): open and close its follower; before deciding a run of
 * inputs, read the joined topic to its end, or, with a writer, first
 * wait for it to catch up with its input and then read to the stable
 * end (only for a run that holds the join's reader type); bind what was
 * read into a restored state. */
ordo_err_t ordo__join_open(ordo__proc_t *p);
void ordo__join_close(ordo__proc_t *p);
ordo_err_t ordo__join_catch_up(ordo__proc_t *p, rd_kafka_message_t **msgs,
                               size_t n);
void ordo__join_seed(ordo__proc_t *p, void *state);
/* Between batches, idle: a follower still assigned (since the start, or
 * after a read that failed) binds what it has fetched, without waiting,
 * and parks once it has met the partition's end, so that an idle stage
 * costs its broker no fetches. An error: a binding read and not kept
 * (out of memory), lost to this process. */
ordo_err_t ordo__join_idle(ordo__proc_t *p);

#endif
