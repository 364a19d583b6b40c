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
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* The end of a partition once no transaction is open on it. Kafka writes
 * a committed transaction's markers after the commit returns, so for a
 * moment the last stable offset (what read_committed reads to) lags the
 * high watermark: a restore that stopped there would miss events the
 * previous owner of the partition committed. Waits while they differ. */
ordo_err_t ordo__stable_end(ordo__proc_t *p, const char *topic,
                            int32_t partition, int64_t *lo, int64_t *end) {
        int64_t lso, hw, lo2, waited = 0;
        for (;;) {
                if (ordo_kafka_watermarks(p->restorer, topic, partition, lo,
                                          &lso, p->errstr, sizeof(p->errstr)) ||
                    ordo_kafka_watermarks(p->watermarks, topic, partition, &lo2,
                                          &hw, p->errstr, sizeof(p->errstr)))
                        return ORDO_ERR_KAFKA;
                if (lso >= hw) {
                        *end = hw;
                        return ORDO_ERR_OK;
                }
                if (waited % 5000 == 0)
                        ORDO_LOG(INFO, p->def->name,
                                 "msg=\"waiting for an open transaction\" "
                                 "topic=%s partition=%d stable=%lld end=%lld",
                                 topic, (int)partition, (long long)lso,
                                 (long long)hw);
                if (waited >= 120000) {
                        snprintf(p->errstr, sizeof(p->errstr),
                                 "%s [%d]: a transaction stayed open for "
                                 "120 s (stable offset %lld, end %lld)",
                                 topic, (int)partition, (long long)lso,
                                 (long long)hw);
                        return ORDO_ERR_TIMEOUT;
                }
                usleep(100000);
                waited += 100;
        }
}

/* Reads topic/partition from `from` (inclusive) to `end` (exclusive, a
 * stable end), handing every message to fn. */
void ordo__read_range(ordo__proc_t *p, const char *topic, int32_t partition,
                      int64_t from, int64_t end,
                      void (*fn)(ordo__proc_t *, const rd_kafka_message_t *,
                                 void *),
                      void *arg) {
        rd_kafka_topic_partition_list_t *tp;

        if (end <= from)
                return;
        tp = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, topic, partition)->offset = from;
        rd_kafka_assign(p->restorer, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        for (;;) {
                rd_kafka_message_t *rkm =
                    rd_kafka_consumer_poll(p->restorer, 1000);
                int done;
                if (!rkm)
                        continue;
                if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        /* An end short of `end` is from an earlier read
                         * of this handle: keep reading. */
                        done = rkm->offset >= end;
                        rd_kafka_message_destroy(rkm);
                        if (done)
                                break;
                        continue;
                }
                if (rkm->err) {
                        ORDO_LOG(WARN, p->def->name,
                                 "msg=\"restore read error\" error=\"%s\"",
                                 rd_kafka_message_errstr(rkm));
                        rd_kafka_message_destroy(rkm);
                        continue;
                }
                if (rkm->offset >= end) {
                        rd_kafka_message_destroy(rkm);
                        break;
                }
                fn(p, rkm, arg);
                done = rkm->offset + 1 >= end;
                rd_kafka_message_destroy(rkm);
                if (done)
                        break;
        }
        rd_kafka_assign(p->restorer, NULL);
}

/* A decoded-message reader on top of read_range. */
typedef struct fold_s {
        void (*fn)(void *state, const ordo_msg_t *m);
        void *state;
        int64_t count;
} fold_t;

static void fold_message(ordo__proc_t *p, const rd_kafka_message_t *rkm,
                         void *arg) {
        fold_t *f = arg;
        ordo_msg_t m;
        char why[256];
        if (ordo__decode(p, rkm, &m, why, sizeof(why))) {
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

/* The commission processor learns each order's buyer, amount and rates
 * from the order events; those before the committed offset are observed
 * again (deciding nothing), their effects being in our own log. */
static void observe_order(void *state, const ordo_msg_t *m) {
        ordo_commission_observe(state, m);
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
        err = rd_kafka_committed(p->consumer, tp, 10000);
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
 * partition from there to the stable end (the commission processor also
 * observes its input up to the committed offset). */
ordo_err_t ordo__restore(ordo__proc_t *p, int32_t partition) {
        int64_t t0 = ordo_monotonic_ms(), lo, events_end, committed = 0;
        fold_t events = { p->def->apply, NULL, 0 };
        fold_t inputs = { observe_order, NULL, 0 };
        ordo__snap_meta_t meta;
        void *state;
        ordo__part_t *part;
        size_t i;
        ordo_err_t err;

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
        if (p->def->joins_referrals &&
            (err = ordo__committed_offset(p, partition, &committed)))
                return err;
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
        if (p->def->joins_referrals) {
                /* Bindings are idempotent: the snapshot's graph may hold
                 * some already. */
                for (i = 0; i < p->n_bindings; i++)
                        ordo_commission_bind(state, &p->bindings[i]);
                if (meta.offset < 0 || meta.input_next < committed)
                        ordo__read_range(p, p->input, partition,
                                         meta.offset < 0 ? 0 : meta.input_next,
                                         committed, fold_message, &inputs);
        }
        ordo__read_range(p, p->events, partition,
                         meta.offset < 0 ? 0 : meta.events_next, events_end,
                         fold_message, &events);
        p->states[partition] = state;
        part->input_next = committed;
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

/* Rewind after an abort: back to the committed offsets, state from the
 * log. */
ordo_err_t ordo__rewind_all(ordo__proc_t *p) {
        rd_kafka_topic_partition_list_t *a = NULL;
        rd_kafka_error_t *error;
        ordo_err_t err = ORDO_ERR_OK;
        int i;

        if (rd_kafka_assignment(p->consumer, &a))
                return ORDO_ERR_KAFKA;
        if (a->cnt && rd_kafka_committed(p->consumer, a, 10000)) {
                rd_kafka_topic_partition_list_destroy(a);
                snprintf(p->errstr, sizeof(p->errstr),
                         "cannot read committed offsets to rewind");
                return ORDO_ERR_KAFKA;
        }
        for (i = 0; i < a->cnt && !err; i++) {
                if (a->elems[i].offset < 0)
                        a->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
                err = ordo__restore(p, a->elems[i].partition);
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
