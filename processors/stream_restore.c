/*
 * ordo - restore and rewind: a partition's state is its latest snapshot
 * plus the fold of its event partition read to its stable end
 * (docs/decisions/0004, 0005); after an abort every assigned partition is
 * restored and the consumer goes back to the committed offsets.
 */
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kafka_io.h"
#include "log.h"
#include "metrics.h"

/* The end of one of our own partitions (events, snapshots) once no
 * transaction is open on it: a restore that stopped at the last stable
 * offset while Kafka writes a commit's markers would miss events the
 * previous owner committed (kafka_io.h). */
ordo_err_t ordo__stable_end(ordo__proc_t *p, const char *topic,
                            int32_t partition, int64_t *lo, int64_t *end) {
        const ordo_stable_end_opts_t own = { p->def->name, 1, 120000, NULL };
        return ordo_kafka_stable_end(p->restorer, p->watermarks, topic,
                                     partition, &own, lo, end, p->errstr,
                                     sizeof(p->errstr));
}

typedef struct read_s {
        ordo__proc_t *p;
        void (*fn)(ordo__proc_t *, const rd_kafka_message_t *, void *);
        void *arg;
} read_t;

static void read_one(const rd_kafka_message_t *m, void *arg) {
        read_t *r = arg;
        r->fn(r->p, m, r->arg);
}

/* Reads topic/partition from `from` (inclusive) to `end` (exclusive, a
 * stable end) with the restorer, handing every message to fn. */
void ordo__read_range(ordo__proc_t *p, const char *topic, int32_t partition,
                      int64_t from, int64_t end,
                      void (*fn)(ordo__proc_t *, const rd_kafka_message_t *,
                                 void *),
                      void *arg) {
        read_t r = { p, fn, arg };
        /* cut short by a stop only: ordo__restore then fails */
        ordo_kafka_read_range(p->restorer, topic, partition, from, end,
                              p->def->name, p->stop, read_one, &r);
}

/* A decoded-message reader on top of read_range. */
typedef struct fold_s {
        void (*fn)(void *state, const ordo_msg_t *m);
        void *state;
        int64_t count;
        int own;   /* the processor's own events: its state */
        int newer; /* one of them is a newer release's (p->errstr) */
} fold_t;

/* An event of ours (its ordo.type header names one of our types) in a
 * schema version this release does not know: a newer release wrote it.
 * Folding on without it would decide on a state that lacks it. */
static int newer_release(ordo__proc_t *p, const rd_kafka_message_t *rkm) {
        ordo_msg_t m;
        char type[64];
        size_t len;
        const void *v = ordo_kafka_header(rkm, ORDO_TYPE_HEADER, &len);
        if (!v || len >= sizeof(type) || !rkm->payload ||
            ordo_codec_decode(p->codec, rkm->payload, rkm->len, &m, NULL, 0) !=
                ORDO_ERR_FINGERPRINT)
                return 0;
        memcpy(type, v, len);
        type[len] = '\0';
        if (ordo_msg_type_from_name(type) == ORDO_MSG_NONE)
                return 0;
        snprintf(p->errstr, sizeof(p->errstr),
                 "%s [%d] offset %lld: a %s in a schema version this release "
                 "does not know, written by a newer release; the state "
                 "cannot be restored without it (going back to an older "
                 "release once the newer one has written its version is not "
                 "supported: docs/operating.md \"Upgrading\")",
                 rd_kafka_topic_name(rkm->rkt), (int)rkm->partition,
                 (long long)rkm->offset, type);
        return 1;
}

static void fold_message(ordo__proc_t *p, const rd_kafka_message_t *rkm,
                         void *arg) {
        fold_t *f = arg;
        ordo_msg_t m;
        char why[256];
        if (f->newer)
                return;
        if (ordo__decode(p, rkm, &m, why, sizeof(why))) {
                if (f->own && (f->newer = newer_release(p, rkm)))
                        return;
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"undecodable event skipped in restore\" "
                         "topic=%s partition=%d offset=%lld reason=\"%s\"",
                         rd_kafka_topic_name(rkm->rkt), (int)rkm->partition,
                         (long long)rkm->offset, why);
                return;
        }
        f->fn(f->state, &m);
        f->count++;
}

/* How long a committed-offset read is asked again while it times out. */
#define COMMITTED_PATIENCE_MS 60000

rd_kafka_resp_err_t ordo__committed_wait(ordo__proc_t *p, rd_kafka_t *rk,
                                         rd_kafka_topic_partition_list_t *tp) {
        int64_t t0 = ordo_monotonic_ms();
        rd_kafka_resp_err_t err;
        int said = 0;
        while ((err = rd_kafka_committed(rk, tp, 10000)) ==
                   RD_KAFKA_RESP_ERR__TIMED_OUT &&
               !*p->stop && ordo_monotonic_ms() - t0 < COMMITTED_PATIENCE_MS)
                if (!said++)
                        ORDO_LOG(WARN, p->def->name,
                                 "msg=\"committed offsets not answered in "
                                 "10 s, asking again: a transaction left "
                                 "open by a process of this stage that "
                                 "stopped (a crash) holds them until the "
                                 "broker aborts it (transaction.timeout.ms)\" "
                                 "topic=%s",
                                 p->input);
        if (said && !err)
                ORDO_LOG(INFO, p->def->name,
                         "msg=\"committed offsets read\" waited_ms=%lld",
                         (long long)(ordo_monotonic_ms() - t0));
        return err;
}

int64_t ordo__committed_of(const rd_kafka_topic_partition_t *e) {
        return e->err ? -1 : e->offset < 0 ? 0 : e->offset;
}

/* The group's committed input offset (0 if none yet). An unanswered
 * query is an error, not 0: restoring the commission processor as if
 * nothing had been consumed would lose every order's facts. */
ordo_err_t ordo__committed_offset(ordo__proc_t *p, int32_t partition,
                                  int64_t *off) {
        rd_kafka_topic_partition_list_t *tp =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_resp_err_t err;
        rd_kafka_topic_partition_list_add(tp, p->input, partition);
        err = ordo__committed_wait(p, p->consumer, tp);
        if (!err)
                err = tp->elems[0].err;
        *off = tp->elems[0].offset < 0 ? 0 : tp->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(tp);
        if (err) {
                snprintf(p->errstr, sizeof(p->errstr),
                         "committed offset of %s [%d]: %s", p->input,
                         (int)partition, rd_kafka_err2str(err));
                return ORDO_ERR_KAFKA;
        }
        return ORDO_ERR_OK;
}

/* The state of a partition: its latest snapshot, then its event
 * partition from there to the stable end (a processor with a join also
 * observes its input up to the committed offset, stream.h). committed:
 * the group's committed input offset, read before this call (-1: not
 * known; a join reads it here). The state is then at that offset. */
ordo_err_t ordo__restore(ordo__proc_t *p, int32_t partition,
                         int64_t committed) {
        int64_t t0 = ordo_monotonic_ms(), lo, events_end;
        fold_t events = { p->def->apply, NULL, 0, 1, 0 };
        /* a join's facts of inputs already decided (deciding nothing:
         * their effects are in our own log) */
        fold_t inputs = { p->def->join ? p->def->join->observe : NULL, NULL, 0,
                          0, 0 };
        ordo__snap_meta_t meta;
        void *state;
        ordo__part_t *part;
        ordo_err_t err;
        int64_t events_from, inputs_from, in_lo, in_hi;

        if (partition >= p->n_states) {
                snprintf(p->errstr, sizeof(p->errstr),
                         "partition %d of %s beyond the %d partitions of %s "
                         "(topics must be co-partitioned)",
                         (int)partition, p->input, p->n_states, p->events);
                return ORDO_ERR_CONFIG;
        }
        part = &p->parts[partition];
        p->def->state_destroy(p->states[partition]);
        p->states[partition] = NULL;
        /* The committed offset first: the events of the transaction that
         * committed it are then below the stable end read next. */
        if (committed < 0 && p->def->join &&
            (err = ordo__committed_offset(p, partition, &committed)))
                return err;
        if (committed < 0)
                committed = 0;
        if ((err = ordo__stable_end(p, p->events, partition, &lo, &events_end)))
                return err;
        if ((err = ordo__load_snapshot(p, partition, events_end, committed,
                                       &state, &meta)))
                return err;
        if (!state && !(state = p->def->state_new())) {
                snprintf(p->errstr, sizeof(p->errstr), "out of memory");
                return ORDO_ERR_NOMEM;
        }
        events.state = inputs.state = state;
        events_from = meta.offset < 0 ? 0 : meta.events_next;
        /* a join observes its inputs decided since the snapshot */
        inputs_from = committed;
        if (p->def->join && meta.offset < 0)
                inputs_from = 0;
        else if (p->def->join && meta.input_next < committed)
                inputs_from = meta.input_next;
        /* a log that lost what the state needs (events since the
         * snapshot, inputs not decided yet): no state, no decision */
        err = ordo_kafka_check_start(p->events, partition, lo, events_from,
                                     p->errstr, sizeof(p->errstr));
        if (!err)
                err = ordo_kafka_watermarks(p->watermarks, p->input, partition,
                                            &in_lo, &in_hi, p->errstr,
                                            sizeof(p->errstr));
        if (!err)
                err = ordo_kafka_check_start(p->input, partition, in_lo,
                                             inputs_from, p->errstr,
                                             sizeof(p->errstr));
        if (err) {
                p->def->state_destroy(state);
                return err;
        }
        if (p->def->join) {
                ordo__join_seed(p, state);
                if (inputs_from < committed)
                        ordo__read_range(p, p->input, partition, inputs_from,
                                         committed, fold_message, &inputs);
        }
        ordo__read_range(p, p->events, partition, events_from, events_end,
                         fold_message, &events);
        if (events.newer || *p->stop) {
                /* a read cut short: the state lacks its end */
                p->def->state_destroy(state);
                if (events.newer)
                        return ORDO_ERR_CONFIG; /* no retry mends it */
                snprintf(p->errstr, sizeof(p->errstr),
                         "stopped during the restore of %s [%d]", p->events,
                         (int)partition);
                return ORDO_ERR_INTERRUPTED;
        }
        p->states[partition] = state;
        part->input_next = part->decided_next = committed;
        part->kept = 0;
        part->since_snapshot = events.count;
        p->stats->restored_events += events.count;
        p->stats->restore_ms += ordo_monotonic_ms() - t0;
        ordo_metrics_restore(p->def->name, ordo_monotonic_ms() - t0);
        ORDO_LOG(INFO, p->def->name,
                 "msg=restored topic=%s partition=%d snapshot_bytes=%lld "
                 "snapshot_events_next=%lld events=%lld replayed_inputs=%lld "
                 "ms=%lld",
                 p->events, (int)partition,
                 (long long)(meta.offset < 0 ? 0 : meta.bytes),
                 (long long)(meta.offset < 0 ? 0 : meta.events_next),
                 (long long)events.count, (long long)inputs.count,
                 (long long)(ordo_monotonic_ms() - t0));
        return ORDO_ERR_OK;
}

void ordo__forget_ends(ordo__proc_t *p) {
        int32_t q;
        for (q = 0; q < p->n_states; q++)
                p->parts[q].end_next = -1;
}

/* Rewind after an abort: back to the committed offsets, state from the
 * log. */
ordo_err_t ordo__rewind_all(ordo__proc_t *p) {
        rd_kafka_topic_partition_list_t *a = NULL;
        rd_kafka_error_t *error;
        ordo_err_t err = ORDO_ERR_OK;
        int i;

        ordo__forget_ends(p);
        if (rd_kafka_assignment(p->consumer, &a))
                return ORDO_ERR_KAFKA;
        if (a->cnt && ordo__committed_wait(p, p->consumer, a)) {
                rd_kafka_topic_partition_list_destroy(a);
                snprintf(p->errstr, sizeof(p->errstr),
                         "cannot read committed offsets to rewind");
                return ORDO_ERR_KAFKA;
        }
        for (i = 0; i < a->cnt && !err; i++) {
                int64_t c = ordo__committed_of(&a->elems[i]);
                /* An offset the answer holds an error for is not "none
                 * yet": restoring as if nothing had been consumed would
                 * decide the partition again from its start. The caller
                 * rejoins, as an assignment does (stream.c). */
                if (c < 0) {
                        snprintf(p->errstr, sizeof(p->errstr),
                                 "committed offset of %s [%d] not read to "
                                 "rewind: %s",
                                 p->input, (int)a->elems[i].partition,
                                 rd_kafka_err2str(a->elems[i].err));
                        err = ORDO_ERR_KAFKA;
                        break;
                }
                err = ordo__restore(p, a->elems[i].partition, c);
                if (a->elems[i].offset < 0)
                        a->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        }
        if (!err && a->cnt &&
            (error = rd_kafka_seek_partitions(p->consumer, a, 10000))) {
                snprintf(p->errstr, sizeof(p->errstr), "seek: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                err = ORDO_ERR_KAFKA;
        }
        rd_kafka_topic_partition_list_destroy(a);
        return err;
}
