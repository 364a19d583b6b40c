/*
 * ordo - the exactly-once consume-decide-produce loop.
 *
 * One static function per step, after librdkafka's examples/transactions.c:
 * consume a batch, decide each message (events go to the same partition
 * of the processor's own event topic, outbound commands to their topic
 * by key) into the outbox, begin, produce it, send the consumed offsets,
 * commit. Pipelined (docs/decisions/0018): the end of a batch (offsets,
 * delivery reports, commit) runs in a worker thread while the next batch
 * is consumed and decided; if it fails, the next batch's decisions are
 * dropped with it. An abortable error aborts and rewinds: the consumer
 * goes back to the committed offsets and the partitions' state is
 * restored from the event log, so aborted events never linger in memory.
 * A fatal error or a fence loses the partitions: the loop leaves the
 * group, drops all state, opens a new producer and joins again (Kafka
 * Streams' "task migrated"). processing.guarantee=at_least_once runs the
 * same loop without transactions (docs/decisions/0019).
 *
 * Snapshots (docs/decisions/0005) bound restore time: once a partition
 * has folded snapshot.events new events, the next transaction starts by
 * writing its state, in chunks, to the partition of the same number of
 * the processor's compacted snapshot topic, with the event offset the
 * state reflects. A restore loads the latest snapshot and folds only
 * the events after it.
 *
 * Files by concern: this one is the loop (consume, decide, recover,
 * rejoin); stream_outbox.c holds a batch's decided output,
 * stream_commit.c begins and ends a batch (the worker); stream_restore.c
 * restores and rewinds,
 * stream_snapshot.c writes and reads snapshots, stream_join.c is the
 * commission join; stream_int.h holds what they share.
 *
 * Ticks (docs/decisions/0008): a time-driven processor (the order
 * processor) writes a Tick stamped with the wall clock to each input
 * partition it owns every tick.interval.ms, inside a transaction, so
 * its timers fire without `ordo tick` and the rules still read no clock.
 */
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "kafka_io.h"
#include "log.h"
#include "metrics.h"

/* Identifiers must be non-empty (RULES.md); a message from a foreign
 * producer that skipped validation is refused here, not decided. */
static int structurally_valid(const ordo_msg_t *m, char *errstr,
                              size_t errstr_size) {
        const char *empty = ordo_msg_empty_id(m);
        if (empty)
                snprintf(errstr, errstr_size, "field \"%s\": empty", empty);
        return !empty;
}

void ordo__produce(ordo__proc_t *p, const char *topic, int32_t partition,
                   const void *key, size_t key_len, const void *value,
                   size_t len, rd_kafka_headers_t *hdrs) {
        const ordo_kafka_out_t m = { topic, partition, key,  key_len,
                                     value, len,       hdrs, NULL };
        rd_kafka_resp_err_t err = ordo_kafka_produce(
            p->producer, &m, RD_KAFKA_MSG_F_COPY, ORDO_PRODUCE_WAIT);
        if (err) {
                if (!p->produce_err)
                        p->produce_err = err;
                return;
        }
        p->stats->produced++;
}

static int is_purge(rd_kafka_resp_err_t err) {
        return err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
               err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
}

void ordo__on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                       void *opaque) {
        ordo__proc_t *p = opaque;
        rd_kafka_resp_err_t err = ordo_kafka_delivery_err(m);
        (void)rk;
        /* the first failure, but a purge (librdkafka's reaction to
         * another failure) gives way to its cause, for the log line */
        if (!err ||
            (p->delivery_err && (!is_purge(p->delivery_err) || is_purge(err))))
                return;
        p->delivery_err = err;
        p->delivery_partition = m->partition;
        ordo_strlcpy(p->delivery_topic, rd_kafka_topic_name(m->rkt),
                     sizeof(p->delivery_topic));
}

/* The rules' sink: events to our own partition, commands by key. */
static void emit(void *opaque, const ordo_msg_t *m) {
        ordo__proc_t *p = opaque;
        size_t len;
        const char *key = ordo_msg_key(m);
        rd_kafka_headers_t *hdrs;
        char err[256];
        int is_event = ordo_msg_is_event(m->type);

        p->emitted++;
        p->emitted_by_timer += (uint64_t)ordo_msg_stamped_by_timer(m);

        if (ordo_codec_encode(p->codec, m, p->buf, sizeof(p->buf), &len, err,
                              sizeof(err))) {
                /* Our own rules produced something we cannot encode: a
                 * bug. Abort the batch rather than lose it. */
                ORDO_LOG(ERROR, p->def->name, "msg=\"cannot encode %s: %s\"",
                         ordo_msg_type_name(m->type), err);
                if (!p->produce_err)
                        p->produce_err = RD_KAFKA_RESP_ERR__BAD_MSG;
                return;
        }
        hdrs = rd_kafka_headers_new(1);
        rd_kafka_header_add(hdrs, ORDO_TYPE_HEADER, -1,
                            ordo_msg_type_name(m->type), -1);
        if (m->type == ORDO_MSG_COMMAND_REJECTED) {
                p->stats->rejected++;
                ordo_metrics_decision(p->def->name, m->u.rejected.command_type,
                                      m->u.rejected.reason, m->meta.ts_ms);
        }
        if (is_event) {
                /* no key (a bound referrer, on one partition): a null,
                 * not "" (analysts.md) */
                ordo__outbox_add(&p->outbox, p->events, p->partition,
                                 *key ? key : NULL, strlen(key), p->buf, len,
                                 hdrs);
                p->parts[p->partition].since_snapshot++;
        } else
                ordo__outbox_add(&p->outbox, p->outbound, RD_KAFKA_PARTITION_UA,
                                 key, strlen(key), p->buf, len, hdrs);
}

static void dead_letter(ordo__proc_t *p, const rd_kafka_message_t *rkm,
                        const char *kind, const char *reason) {
        ordo_kafka_out_t dl;
        char q[1024];
        ORDO_LOG(WARN, p->def->name,
                 "msg=dead-letter topic=%s partition=%d offset=%lld "
                 "reason=\"%s\"",
                 rd_kafka_topic_name(rkm->rkt), (int)rkm->partition,
                 (long long)rkm->offset, ordo_log_quote(q, sizeof(q), reason));
        ordo_dead_letter(rkm, kind, reason, p->def->name, &dl);
        ordo__outbox_add(&p->outbox, p->dead, RD_KAFKA_PARTITION_UA, dl.key,
                         dl.key_len, dl.value, dl.len, dl.hdrs);
        ordo_metrics_dead_letter(p->def->name, kind);
        p->stats->dead_lettered++;
}

/* Decode a message; 0 on success, else the reason in errstr. */
int ordo__decode(ordo__proc_t *p, const rd_kafka_message_t *rkm, ordo_msg_t *m,
                 char *errstr, size_t errstr_size) {
        if (!rkm->payload) {
                snprintf(errstr, errstr_size, "empty message");
                return -1;
        }
        if (ordo_codec_decode(p->codec, rkm->payload, rkm->len, m, errstr,
                              errstr_size))
                return -1;
        return structurally_valid(m, errstr, errstr_size) ? 0 : -1;
}

/* p->errstr names a condition no retry mends: the stage stops. */
static void stop_for_good(ordo__proc_t *p) {
        if (!p->unmendable)
                snprintf(p->unmendable_why, sizeof(p->unmendable_why), "%s",
                         p->errstr);
        p->unmendable = 1;
}

static void end_batch(ordo__proc_t *p, rd_kafka_message_t **msgs, size_t n);

/* On revocation, the inputs of the half-built batch already decided are
 * committed in a transaction of their own, as Kafka Streams commits its
 * tasks on revocation: nothing decided is thrown away, and the states
 * hold nothing uncommitted, so that those assigned again are kept. */
static void commit_on_revoke(ordo__proc_t *p) {
        size_t n = p->batch_decided;
        p->batch_committed = 0;
        if (!n || p->failed || p->produce_err || p->outbox.oom ||
            rd_kafka_assignment_lost(p->consumer))
                return;
        if (ordo__txn_begin(p) != ORDO__TXN_OK)
                return;
        end_batch(p, p->batch, n);
        /* (a produce error aborted it before any commit began) */
        if (ordo__commit_wait(p) == ORDO__TXN_OK && !p->failed) {
                p->batch_committed = n;
                p->stats->revoke_committed += (int64_t)n;
        }
}

/* A revoked partition's state is kept for the next assignment when it
 * holds only committed inputs (exactly once: at least once may have
 * written events past the committed offset). */
static int keepable(ordo__proc_t *p, int32_t q) {
        const ordo__part_t *part = &p->parts[q];
        return p->states[q] && !p->failed && !p->at_least_once &&
               !rd_kafka_assignment_lost(p->consumer) &&
               part->decided_next <= part->input_next;
}

/* A kept state serves again if nobody committed the partition since we
 * did: the events it folded are then still all the events there are
 * (events are written only in transactions that also move the input
 * offset; a commit in flight elsewhere is waited for, the committed
 * offsets being read stable under read_committed). */
static int reusable(const ordo__proc_t *p, int32_t q, int64_t committed) {
        return p->parts[q].kept && p->states[q] && committed >= 0 &&
               committed == p->parts[q].input_next;
}

/* "0,2,5" for the log, cut with "..." to fit. */
static const char *partition_list(const rd_kafka_topic_partition_list_t *l,
                                  char *buf, size_t size) {
        size_t len = 0;
        int i;
        buf[0] = '\0';
        for (i = 0; i < l->cnt; i++) {
                int w = snprintf(buf + len, size - len, "%s%d", i ? "," : "",
                                 (int)l->elems[i].partition);
                if (w < 0 || (size_t)w >= size - len) {
                        snprintf(buf + (size > 4 ? size - 4 : 0),
                                 size > 4 ? 4 : size, "...");
                        break;
                }
                len += (size_t)w;
        }
        return buf;
}

static void forget(ordo__proc_t *p, int32_t q) {
        p->def->state_destroy(p->states[q]);
        p->states[q] = NULL;
        p->parts[q].kept = 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
        ordo__proc_t *p = opaque;
        char list[256];
        int i, kept = 0;

        p->rebalanced = 1;
        /* The batch's undecided messages are dropped: an end met after
         * them must not be committed past them (batch_offsets). */
        ordo__forget_ends(p);
        /* The commit in flight ends first (its failure is kept for the
         * loop): the partitions change hands at its committed offsets,
         * and a restore must not wait on our own open transaction. */
        ordo__commit_wait(p);
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                /* The group's committed offsets, in one request, before
                 * any restore reads its stable end: the events of the
                 * transaction that committed an offset are then below
                 * that end. */
                int ok;
                ordo_health_restoring(p->def->name, 1);
                ok = !ordo__committed_wait(p, rk, parts);
                for (i = 0; i < parts->cnt; i++) {
                        int32_t q = parts->elems[i].partition;
                        int64_t c =
                            ok ? ordo__committed_of(&parts->elems[i]) : -1;
                        ordo_err_t rerr;
                        /* Start where the state is, from the offsets
                         * read here: librdkafka 2.0.2's own fetch of
                         * them failing (NOT_COORDINATOR just after a
                         * broker stall) left a stage assigned and never
                         * fetching. Unknown: rejoin instead. */
                        parts->elems[i].offset = c;
                        if (q < p->n_states && reusable(p, q, c)) {
                                p->parts[q].kept = 0;
                                kept++;
                                continue;
                        }
                        if (c < 0)
                                snprintf(p->errstr, sizeof(p->errstr),
                                         "committed offset of %s [%d] not "
                                         "read",
                                         p->input, (int)q);
                        rerr = c < 0 ? ORDO_ERR_KAFKA : ordo__restore(p, q, c);
                        if (rerr) {
                                if (rerr == ORDO_ERR_CONFIG)
                                        stop_for_good(p);
                                ORDO_LOG(ERROR, p->def->name,
                                         "msg=\"restore failed\" "
                                         "partition=%d error=\"%s\"",
                                         (int)q, p->errstr);
                                /* Leave the group rather than decide on
                                 * a state we could not rebuild. */
                                rd_kafka_assign(rk, NULL);
                                p->restore_failed = 1;
                                ordo_health_restoring(p->def->name, 0);
                                return;
                        }
                }
                for (i = 0; i < p->n_states; i++)
                        if (p->parts[i].kept &&
                            !rd_kafka_topic_partition_list_find(parts, p->input,
                                                                i))
                                forget(p, i);
                ORDO_LOG(INFO, p->def->name,
                         "msg=assigned partitions=%d kept=%d list=%s",
                         parts->cnt, kept,
                         partition_list(parts, list, sizeof(list)));
                p->stats->assignments++;
                p->stats->kept += kept;
                rd_kafka_assign(rk, parts);
                p->assigned = parts->cnt;
                ordo_health_restoring(p->def->name, 0);
                /* Tick the new partitions at once: timers that fell due
                 * while nobody owned them fire now (decision 0008). */
                p->next_tick = 0;
        } else {
                commit_on_revoke(p);
                for (i = 0; i < parts->cnt; i++) {
                        int32_t q = parts->elems[i].partition;
                        if (q >= p->n_states)
                                continue;
                        if (keepable(p, q)) {
                                p->parts[q].kept = 1;
                                kept++;
                        } else
                                forget(p, q);
                }
                /* Whatever was not committed goes now: a second
                 * revocation served by the same poll must find no batch
                 * to commit again under the next generation. */
                if (!p->batch_committed)
                        ordo__outbox_discard(&p->outbox);
                p->batch_decided = 0;
                ORDO_LOG(INFO, p->def->name,
                         "msg=revoked partitions=%d committed=%zu kept=%d",
                         parts->cnt, p->batch_committed, kept);
                rd_kafka_assign(rk, NULL);
                p->assigned = 0;
        }
}

static void decide(ordo__proc_t *p, const rd_kafka_message_t *rkm);

/* A join is read before msgs[from..to) are decided, after its writer
 * has caught up: every input here was written before this moment
 * (decision 0025). If that fails, the batch aborts. */
static void join_first(ordo__proc_t *p, rd_kafka_message_t **msgs, size_t from,
                       size_t to) {
        ordo_err_t err;
        if (from < to && !p->produce_err &&
            (err = ordo__join_catch_up(p, msgs + from, to - from))) {
                if (err == ORDO_ERR_CONFIG || err == ORDO_ERR_NOMEM)
                        stop_for_good(p); /* NOMEM: a binding read, lost */
                else
                        ORDO_LOG(WARN, p->def->name,
                                 "msg=\"join not read, aborting the "
                                 "batch\" error=\"%s\"",
                                 p->errstr);
                p->produce_err = RD_KAFKA_RESP_ERR__TRANSPORT;
                p->join_unread = 1; /* the abort names the join */
        }
}

/* Decides msgs[from..to) into the outbox, the join read first; returns
 * to. */
static size_t decide_range(ordo__proc_t *p, rd_kafka_message_t **msgs,
                           size_t from, size_t to) {
        int64_t t = ordo_monotonic_ms();
        join_first(p, msgs, from, to);
        for (; from < to && !p->produce_err; from++)
                decide(p, msgs[from]);
        p->stats->decide_ms += ordo_monotonic_ms() - t;
        return to;
}

/* The worker has finished the commit in flight (or there is none). */
static int commit_done(const ordo__proc_t *p) {
        return !p->commit.pending ||
               __atomic_load_n(&p->commit.done, __ATOMIC_ACQUIRE);
}

/* Up to batch.max messages, waiting at most batch.ms for the first.
 * Overlapped (decision 0018: a commit is in flight), the messages are
 * decided into the outbox as they arrive (in runs of up to 512, and
 * whenever the queue is momentarily empty), and the batch is whatever arrived
 * until that commit ended: the broker's commit time is spent deciding,
 * and the batch grows with the input rate. */
static size_t consume_batch(ordo__proc_t *p, rd_kafka_message_t **msgs,
                            size_t max, int wait_ms, int overlap) {
        size_t n = 0, i, decided = 0;
        int64_t deadline = ordo_monotonic_ms() + wait_ms;
        p->rebalanced = 0;
        p->batch = msgs;
        p->batch_decided = p->batch_committed = 0;
        while (n < max) {
                int64_t left = deadline - ordo_monotonic_ms();
                int done = overlap && commit_done(p);
                /* overlapped: poll briefly, to see the commit end */
                int timeout = overlap ? (done ? 0 : 1)
                              : n     ? 0
                                      : (int)(left > 0 ? left : 0);
                rd_kafka_message_t *rkm =
                    rd_kafka_consumer_poll(p->consumer, timeout);
                if (p->rebalanced) {
                        /* Messages taken before a rebalance come again
                         * from the committed offsets if the partition
                         * stays ours: deciding them twice would emit
                         * their events twice. Those decided were
                         * committed by the revocation, or else dropped
                         * with their state. */
                        for (i = 0; i < n; i++)
                                rd_kafka_message_destroy(msgs[i]);
                        p->stats->discarded +=
                            (int64_t)(decided - p->batch_committed);
                        ordo__outbox_discard(&p->outbox);
                        p->produce_err = RD_KAFKA_RESP_ERR_NO_ERROR;
                        p->join_unread = 0;
                        n = decided = 0;
                        p->batch_decided = p->batch_committed = 0;
                        p->rebalanced = 0;
                }
                if (!rkm) {
                        if (overlap)
                                p->batch_decided = decided =
                                    decide_range(p, msgs, decided, n);
                        if (overlap ? done
                                    : n || ordo_monotonic_ms() >= deadline)
                                break;
                        continue;
                }
                if (rkm->err == RD_KAFKA_RESP_ERR__FATAL) {
                        /* e.g. FENCED_INSTANCE_ID: a newer member with
                         * our group.instance.id */
                        if (rd_kafka_fatal_error(p->consumer, p->errstr,
                                                 sizeof(p->errstr)) ==
                            RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID)
                                p->duplicate_instance =
                                    ordo_kafka_fenced(p->instance_fenced_ms);
                        p->consumer_fatal = 1;
                        rd_kafka_message_destroy(rkm);
                        break;
                }
                if (ordo_kafka_records_lost(rkm, p->errstr,
                                            sizeof(p->errstr))) {
                        /* what came before the gap is decided and
                         * committed; then the stage stops */
                        stop_for_good(p);
                        rd_kafka_message_destroy(rkm);
                        break;
                }
                if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                    rkm->partition >= 0 && rkm->partition < p->n_states)
                        p->parts[rkm->partition].end_next = rkm->offset;
                if (rkm->err) {
                        if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                ORDO_LOG(WARN, p->def->name,
                                         "msg=\"consume error\" "
                                         "error=\"%s\"",
                                         rd_kafka_message_errstr(rkm));
                        rd_kafka_message_destroy(rkm);
                        continue;
                }
                msgs[n++] = rkm;
                if (overlap && n - decided >= 512)
                        p->batch_decided = decided =
                            decide_range(p, msgs, decided, n);
        }
        if (overlap)
                decide_range(p, msgs, decided, n);
        /* from here the batch is send_batch's */
        p->batch_decided = 0;
        return n;
}

static void decide(ordo__proc_t *p, const rd_kafka_message_t *rkm) {
        ordo_msg_t m;
        const char *refused;
        char why[300];
        ordo_sink_t sink = { emit, p };
        ordo_pos_t pos;
        void *state;
        int64_t rejected = p->stats->rejected, ts;
        uint64_t emitted, by_timer;

        p->stats->consumed++;
        if (rkm->partition < p->n_states)
                p->parts[rkm->partition].decided_next = rkm->offset + 1;
        if (ordo__decode(p, rkm, &m, why, sizeof(why))) {
                dead_letter(p, rkm, "undecodable", why);
                return;
        }
        if ((refused = ordo_processor_refuses(p->def, &m, rkm->partition,
                                              p->n_states, why, sizeof(why)))) {
                dead_letter(p, rkm, refused, why);
                return;
        }
        state = rkm->partition < p->n_states ? p->states[rkm->partition] : NULL;
        if (!state) {
                /* Cannot happen: we only consume assigned partitions. */
                p->produce_err = RD_KAFKA_RESP_ERR__STATE;
                return;
        }
        pos.source = ordo_topic_short(p->def->input);
        pos.partition = rkm->partition;
        pos.offset = rkm->offset;
        p->partition = rkm->partition;
        emitted = p->emitted;
        by_timer = p->emitted_by_timer;
        p->def->handle(state, &m, &pos, &sink);
        /* Counted in emit when rejected. A timer's stamp is no latency
         * (a Tick's, a deadline's: ordo_msg_stamped_by_timer). A command
         * (not a Tick, not another stage's event) that emits nothing of
         * its own was ignored: every accepted one emits an event. What
         * timers emit first, the command's ts_ms having passed their
         * deadlines, is not its own (a buyer's ConfirmReceipt after the
         * auto-receipt's deadline: the timer's OrderReceived, then the
         * receipt ignored), unless the command is a timer's itself. */
        if (p->stats->rejected != rejected)
                return;
        if (ordo_msg_stamped_by_timer(&m)) {
                ts = 0;
                by_timer = p->emitted_by_timer; /* all its own */
        } else
                ts = m.meta.ts_ms;
        if (p->emitted - emitted == p->emitted_by_timer - by_timer &&
            m.type != ORDO_MSG_TICK && !ordo_msg_is_event(m.type))
                ordo_metrics_ignored(p->def->name, ordo_msg_type_name(m.type),
                                     ts);
        else
                ordo_metrics_decision(p->def->name, ordo_msg_type_name(m.type),
                                      NULL, ts);
}

/* A Tick stamped with the wall clock, less tick.lag.ms, to each input
 * partition we own. It goes through the log like any command: the rules
 * see it only when they consume it, replay and reconcile see the same
 * Ticks, and being inside our transaction it is written only by the
 * partition's current owner (a fenced zombie's Ticks abort with its
 * transaction). The lag keeps a Tick from overtaking a command that the
 * door stamped before it but that is still on its way to the log
 * (decision 0028). */
static void write_ticks(ordo__proc_t *p) {
        rd_kafka_topic_partition_list_t *a = NULL;
        int64_t ts = ordo_wall_ms() - p->tick_lag;
        char id[128], err[256];
        ordo_msg_t m;
        size_t len;
        int i;

        if (rd_kafka_assignment(p->consumer, &a)) {
                p->produce_err = RD_KAFKA_RESP_ERR__STATE;
                return;
        }
        for (i = 0; i < a->cnt && !p->produce_err; i++) {
                rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
                ordo_msg_init(&m, ORDO_MSG_TICK);
                m.meta.ts_ms = ts;
                snprintf(id, sizeof(id), "autotick-%lld-%d", (long long)ts,
                         (int)a->elems[i].partition);
                ordo_strlcpy(m.meta.id, id, sizeof(m.meta.id));
                if (ordo_codec_encode(p->codec, &m, p->buf, sizeof(p->buf),
                                      &len, err, sizeof(err))) {
                        rd_kafka_headers_destroy(hdrs);
                        p->produce_err = RD_KAFKA_RESP_ERR__BAD_MSG;
                        break;
                }
                rd_kafka_header_add(hdrs, ORDO_TYPE_HEADER, -1, "Tick", -1);
                rd_kafka_header_add(hdrs, ORDO_AUTOTICK_HEADER, -1, "1", -1);
                ordo__outbox_add(&p->outbox, p->input, a->elems[i].partition,
                                 NULL, 0, p->buf, len, hdrs);
                p->stats->ticks++;
        }
        rd_kafka_topic_partition_list_destroy(a);
}

/* The offsets to commit: one past the last message of each partition,
 * or further, where the partition's end was last met: past the
 * transaction markers that librdkafka does not show, so that a stage
 * that has caught up is not left on a marker, whose deletion by
 * retention would read as records lost (docs/operating.md). Every
 * message before an end was decided in this batch or in one committed
 * before it (end_next). */
static rd_kafka_topic_partition_list_t *
batch_offsets(const ordo__proc_t *p, rd_kafka_message_t **msgs, size_t n) {
        rd_kafka_topic_partition_list_t *o =
            rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_t *e;
        size_t i;
        int32_t q;
        for (i = 0; i < n; i++) {
                const char *t = rd_kafka_topic_name(msgs[i]->rkt);
                e = rd_kafka_topic_partition_list_find(o, t,
                                                       msgs[i]->partition);
                if (!e)
                        e = rd_kafka_topic_partition_list_add(
                            o, t, msgs[i]->partition);
                e->offset = msgs[i]->offset + 1;
        }
        for (q = 0; q < p->n_states; q++) {
                int64_t end = p->parts[q].end_next;
                /* a partition whose state is gone (left the group) is
                 * not ours to move */
                if (!p->states[q] || end < 0 || end <= p->parts[q].input_next)
                        continue;
                if (!(e = rd_kafka_topic_partition_list_find(o, p->input, q)))
                        e = rd_kafka_topic_partition_list_add(o, p->input, q);
                else if (e->offset >= end)
                        continue;
                e->offset = end;
        }
        /* A snapshot goes with its partition's offset, moved or not: the
         * group's generation check then aborts the transaction of a
         * zombie (paused past the session timeout), which would label
         * its stale state with the events the new owner committed. */
        for (q = 0; q < p->n_states; q++)
                if (p->states[q] && p->parts[q].snapshot_in_txn &&
                    !rd_kafka_topic_partition_list_find(o, p->input, q))
                        rd_kafka_topic_partition_list_add(o, p->input, q)
                            ->offset = p->parts[q].input_next;
        return o;
}

/* A partition's end past its committed offset (transaction markers). */
static int ends_ahead(const ordo__proc_t *p) {
        int32_t q;
        for (q = 0; q < p->n_states; q++)
                if (p->states[q] &&
                    p->parts[q].end_next > p->parts[q].input_next)
                        return 1;
        return 0;
}

/* Stopping: the ends of the partitions we own whose end is not known
 * past their committed input. A processor learns that a partition ends
 * past a transaction's markers from the empty fetch after its last
 * input, which the broker holds up to fetch.wait.max.ms (a member's:
 * 100 ms); a stop right after a commit would otherwise leave its
 * offsets on the markers. Waits at most twice that wait, plus 200 ms
 * for the round trips. A record that comes meanwhile is not decided, and
 * is as good as the end: nothing deliverable lies between the committed
 * input and it (every record polled before was decided), so the offsets
 * move onto it, not a marker. */
static void await_ends(ordo__proc_t *p) {
        rd_kafka_topic_partition_list_t *a = NULL;
        char wait[32];
        size_t len = sizeof(wait);
        int64_t until;
        int i, open = 0;
        unsigned char *has_record;

        if (rd_kafka_assignment(p->consumer, &a))
                return;
        has_record = calloc((size_t)p->n_states + 1, 1);
        if (rd_kafka_conf_get(rd_kafka_conf(p->consumer), "fetch.wait.max.ms",
                              wait, &len) != RD_KAFKA_CONF_OK)
                snprintf(wait, sizeof(wait), "100");
        until = ordo_monotonic_ms() + 2 * atoll(wait) + 200;
        while (has_record && ordo_monotonic_ms() < until) {
                rd_kafka_message_t *rkm;
                int32_t q;
                for (i = open = 0; i < a->cnt; i++) {
                        q = a->elems[i].partition;
                        open += q >= 0 && q < p->n_states && !has_record[q] &&
                                p->parts[q].end_next < p->parts[q].input_next;
                }
                if (!open || p->rebalanced)
                        break;
                if (!(rkm = rd_kafka_consumer_poll(p->consumer, 10)))
                        continue;
                q = rkm->partition;
                if (q >= 0 && q < p->n_states && !has_record[q] &&
                    (!rkm->err ||
                     rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
                        has_record[q] = !rkm->err;
                        if (rkm->offset > p->parts[q].end_next)
                                p->parts[q].end_next = rkm->offset;
                }
                rd_kafka_message_destroy(rkm);
        }
        if (open)
                ORDO_LOG(INFO, p->def->name,
                         "msg=\"stopping before the ends of %d partitions "
                         "were known\"",
                         open);
        free(has_record);
        rd_kafka_topic_partition_list_destroy(a);
}

/* Whether the cluster answers a metadata request within a second. */
static int kafka_answers(rd_kafka_t *rk) {
        const struct rd_kafka_metadata *md;
        if (rd_kafka_metadata(rk, 0, NULL, &md, 1000))
                return 0;
        rd_kafka_metadata_destroy(md);
        return 1;
}

/* Idle for a second since the last transaction, with ends ahead: a
 * transaction of offsets alone moves them there. At most one a second,
 * and none while inputs keep coming. */
static int ends_due(const ordo__proc_t *p) {
        return ordo_monotonic_ms() - p->commit.t0 >= 1000 && ends_ahead(p);
}

/* Sends a batch (n may be 0 when only Ticks are due) in its own
 * transaction, pipelined (decision 0018): consume_batch has decided it
 * already if it overlapped the previous batch's commit; now wait for
 * that commit. If it failed, this batch was decided on a state that
 * includes the failed one: drop its output (the loop rewinds and
 * restores, as after any abort). Else begin, produce the outbox and
 * start this batch's commit, which the next batch overlaps in turn. */
static void send_batch(ordo__proc_t *p, rd_kafka_message_t **msgs, size_t n,
                       int tick, int overlap) {
        if (tick) {
                write_ticks(p);
                p->next_tick = ordo_monotonic_ms() + p->tick_every;
        }
        if (ordo__commit_wait(p) != ORDO__TXN_OK) {
                p->stats->discarded += (int64_t)(overlap ? n : 0);
                ordo__outbox_discard(&p->outbox);
                return;
        }
        if (ordo__txn_begin(p) != ORDO__TXN_OK) {
                ordo__outbox_discard(&p->outbox);
                return;
        }
        if (!overlap) {
                /* A snapshot begins the transaction at the broker, and
                 * its timeout (10 s) is shorter than the join's wait
                 * (join.wait.ms): the join is read first. */
                if (ordo__snapshot_due(p))
                        join_first(p, msgs, 0, n);
                /* the state of committed events only: nothing in flight */
                if (!p->produce_err)
                        ordo__write_due_snapshots(p);
                decide_range(p, msgs, 0, n);
        }
        end_batch(p, msgs, n);
        if (!p->pipelined)
                ordo__commit_wait(p);
}

/* In the open transaction: produce the outbox, then start the commit of
 * msgs[0..n) (or abort if a message could not be produced). */
static void end_batch(ordo__proc_t *p, rd_kafka_message_t **msgs, size_t n) {
        int64_t t = ordo_monotonic_ms();
        p->commit.inputs = n;
        p->commit.outputs = p->outbox.n;
        ordo__outbox_flush(p);
        p->stats->produce_ms += ordo_monotonic_ms() - t;
        if (p->join_unread) {
                ordo__txn_abort_now(
                    p,
                    rd_kafka_error_new(p->produce_err,
                                       "not read to its end: see the WARN "
                                       "line before"),
                    "join");
                return;
        }
        if (p->produce_err) {
                rd_kafka_error_t *error =
                    rd_kafka_error_new(p->produce_err, "produce: %s",
                                       rd_kafka_err2str(p->produce_err));
                ordo__txn_abort_now(p, error, "produce");
                return;
        }
        ordo__commit_start(p, batch_offsets(p, msgs, n));
}

/* Asks for a topic's metadata now, so that the first message keyed to
 * it is not held until the producer looks it up (measured: ~0.8 s of
 * the first transaction on a fresh producer, bench/RESULTS.md "Pipelined
 * loop"). A missing topic is found out later, as before. */
static void warm_metadata(rd_kafka_t *rk, const char *topic) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt;
        if (!topic[0])
                return;
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rkt && !rd_kafka_metadata(rk, 0, rkt, &md, 5000))
                rd_kafka_metadata_destroy(md);
        if (rkt)
                rd_kafka_topic_destroy(rkt);
}

/* The transactional producer. Also used to replace one whose state we
 * no longer trust (STACK.md: re-create the producer after an ambiguous
 * transaction error). */
static ordo_err_t open_producer(ordo__proc_t *p) {
        char txid[300];
        rd_kafka_error_t *error;

        if (p->producer)
                rd_kafka_destroy(p->producer);
        snprintf(txid, sizeof(txid), "%s.%s", p->group,
                 ordo_config_get(p->conf, "instance.id"));
        /* at least once: idempotent, not transactional (0019) */
        p->producer = ordo_kafka_producer_new(
            p->conf, p->at_least_once ? NULL : txid, ordo__on_delivery, p,
            p->errstr, sizeof(p->errstr));
        if (!p->producer)
                return ORDO_ERR_CONFIG;
        warm_metadata(p->producer, p->outbound);
        warm_metadata(p->producer, p->dead);
        if (p->at_least_once)
                return ORDO_ERR_OK;
        /* Fences any zombie with our transactional id and aborts what it
         * left open, so the restore below reads a stable log. */
        if ((error = rd_kafka_init_transactions(p->producer, 30000))) {
                snprintf(p->errstr, sizeof(p->errstr),
                         "init_transactions (is Kafka up at %s?): %s",
                         ordo_config_get(p->conf, "kafka.bootstrap.servers"),
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return ORDO_ERR_KAFKA;
        }
        return ORDO_ERR_OK;
}

static ordo_err_t open_member(ordo__proc_t *p);

static ordo_err_t open_clients(ordo__proc_t *p) {
        ordo_err_t oerr;
        int np, ni;

        if ((oerr = open_producer(p)))
                return oerr;
        p->restorer = ordo_kafka_consumer_new(p->conf, NULL, NULL, NULL,
                                              p->errstr, sizeof(p->errstr));
        if (!p->restorer)
                return ORDO_ERR_CONFIG;
        p->watermarks = ordo_kafka_watermark_client_new(p->conf, p->errstr,
                                                        sizeof(p->errstr));
        if (!p->watermarks)
                return ORDO_ERR_CONFIG;
        np = ordo_kafka_partitions(p->producer, p->events, p->errstr,
                                   sizeof(p->errstr));
        if (np < 0)
                return ORDO_ERR_KAFKA;
        ni = ordo_kafka_partitions(p->producer, p->input, p->errstr,
                                   sizeof(p->errstr));
        if (ni < 0)
                return ORDO_ERR_KAFKA;
        if (ni != np) {
                /* Events go to the input's partition number: restore of
                 * partition p reads only event partition p. */
                snprintf(p->errstr, sizeof(p->errstr),
                         "%s has %d partitions but %s has %d: they must be "
                         "co-partitioned",
                         p->input, ni, p->events, np);
                return ORDO_ERR_CONFIG;
        }
        if (p->snapshot_every) {
                int ns = ordo_kafka_partitions(p->producer, p->snaps, p->errstr,
                                               sizeof(p->errstr));
                if (ns < 0)
                        return ORDO_ERR_KAFKA;
                if (ns != np) {
                        snprintf(p->errstr, sizeof(p->errstr),
                                 "%s has %d partitions but %s has %d: they "
                                 "must be co-partitioned (or set "
                                 "snapshot.events=0)",
                                 p->snaps, ns, p->events, np);
                        return ORDO_ERR_CONFIG;
                }
        }
        p->n_states = np;
        p->states = calloc((size_t)np, sizeof(*p->states));
        p->parts = calloc((size_t)np, sizeof(*p->parts));
        if (!p->states || !p->parts)
                return ORDO_ERR_NOMEM;

        if ((oerr = ordo__join_open(p)))
                return oerr;

        return open_member(p);
}

/* The group consumer: its rebalance callback restores state. A static
 * member (decision 0009): restarted after a crash, it gets its
 * partitions back without waiting for the session timeout. */
static ordo_err_t open_member(ordo__proc_t *p) {
        rd_kafka_topic_partition_list_t *topics;
        rd_kafka_resp_err_t err;

        p->consumer = ordo_kafka_member_new(p->conf, p->group, rebalance_cb, p,
                                            p->errstr, sizeof(p->errstr));
        if (!p->consumer)
                return ORDO_ERR_CONFIG;
        topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, p->input,
                                          RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(p->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err) {
                snprintf(p->errstr, sizeof(p->errstr), "subscribe %s: %s",
                         p->input, rd_kafka_err2str(err));
                return ORDO_ERR_KAFKA;
        }
        return ORDO_ERR_OK;
}

/* After an abort: back off (a broker refusing the same batch must not be
 * hammered), replace the producer when aborts repeat (librdkafka caches
 * some errors per handle), then rewind. */
static ordo_err_t recover(ordo__proc_t *p, int aborts_in_a_row) {
        int shift = aborts_in_a_row < 7 ? aborts_in_a_row - 1 : 6;
        ordo_err_t err;

        p->failed = ORDO__TXN_OK;
        p->next_tick = 0;                     /* the aborted Ticks again */
        usleep((useconds_t)(50000 << shift)); /* 50 ms .. 3.2 s */
        if (aborts_in_a_row >= 3) {
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"replacing the producer\" aborts_in_a_row=%d",
                         aborts_in_a_row);
                if ((err = open_producer(p)))
                        return err;
        }
        return ordo__rewind_all(p);
}

/* Waits 0.5 s doubling to 32 s with the n-th failure in a row (n >= 1),
 * less if a stop comes: 1 if stopping. */
static int back_off(ordo__proc_t *p, int n) {
        int64_t until =
            ordo_monotonic_ms() + ((int64_t)500 << (n < 7 ? n - 1 : 6));
        while (ordo_monotonic_ms() < until && !*p->stop)
                usleep(50000);
        return *p->stop != 0;
}

/* A fatal producer error (fenced, or librdkafka's spurious "requires
 * epoch bump", STACK.md) while our consumer is still a member: replace
 * the producer (its init_transactions fences the old one and aborts what
 * it left open) and rewind what we own to the committed offsets, keeping
 * our place in the group. Leaving would rebalance every other member of
 * the group too: a real second instance keeps its partitions untouched.
 * If we did lose the partitions, the group says so (a rebalance, or a
 * fenced consumer, which rejoins); if Kafka is away, or the new producer
 * fails fatally too before it commits (a live twin), the caller rejoins:
 * its backoff is spent outside the group, which a member waiting here
 * would hold up in every rebalance. */
static ordo_err_t renew_producer(ordo__proc_t *p) {
        ordo_err_t err;

        ORDO_LOG(WARN, p->def->name,
                 "msg=\"fatal producer error: replacing the producer and "
                 "restoring our partitions (if another process runs this "
                 "stage with the same instance.id, give it its own)\" "
                 "error=\"%s\"",
                 p->errstr);
        p->stats->renewals++;
        ordo__commit_wait(p);
        ordo__outbox_discard(&p->outbox);
        p->failed = ORDO__TXN_OK;
        p->next_tick = 0; /* the aborted Ticks again */
        if ((err = open_producer(p)))
                return err;
        return ordo__rewind_all(p);
}

/* Leaves the group and forgets every partition's state. */
static void close_member(ordo__proc_t *p) {
        int i;
        ordo__commit_wait(p);
        ordo__outbox_discard(&p->outbox);
        /* first: the metrics keep no handle to a consumer destroyed */
        ordo_metrics_lost(p->def->name);
        if (p->consumer) {
                /* Leave the group explicitly: a static member's close
                 * alone would hold its partitions for the session
                 * timeout (scale-in). */
                ordo_kafka_member_leave(p->consumer, 10000);
                rd_kafka_consumer_close(p->consumer);
                rd_kafka_destroy(p->consumer);
                p->consumer = NULL;
        }
        /* No rebalance callback comes after a fatal consumer error: the
         * ends met would otherwise move the offsets of a batch dropped
         * undecided (batch_offsets) */
        ordo__forget_ends(p);
        for (i = 0; i < p->n_states; i++)
                forget(p, i);
        p->assigned = 0;
}

/* A fatal consumer error (FENCED_INSTANCE_ID), a restore that failed,
 * or Kafka away while the producer was being replaced or the partitions
 * rewound, as Kafka Streams treats a migrated task: we lost our
 * partitions. Give them up (leave the group,
 * drop all state), then come back as a new member with a new producer
 * (whose init_transactions fences our zombie and aborts what it left
 * open); the group assigns partitions again and the rebalance callback
 * restores exactly those. Retried with a backoff while Kafka is away;
 * the process never exits for it. */
static ordo_err_t rejoin(ordo__proc_t *p, int in_a_row) {
        ordo_err_t err;

        ORDO_LOG(WARN, p->def->name,
                 "msg=\"fatal Kafka error: giving up our partitions and "
                 "rejoining (if another process runs this stage with the "
                 "same instance.id, give it its own)\" error=\"%s\" "
                 "rejoins_in_a_row=%d",
                 p->errstr, in_a_row);
        p->stats->rejoins++;
        close_member(p);
        if (back_off(p, in_a_row)) /* 0.5-32 s */
                return ORDO_ERR_OK;
        if ((err = open_producer(p)))
                return err;
        p->restore_failed = 0;
        p->consumer_fatal = 0;
        p->failed = ORDO__TXN_OK;
        return open_member(p);
}

static void close_clients(ordo__proc_t *p) {
        close_member(p);
        ordo__join_close(p);
        if (p->restorer)
                rd_kafka_destroy(p->restorer);
        if (p->watermarks)
                rd_kafka_destroy(p->watermarks);
        if (p->producer)
                rd_kafka_destroy(p->producer);
        free(p->states);
        free(p->parts);
        ordo_buf_fini(&p->snap);
        ordo__outbox_fini(&p->outbox);
        ordo_codec_destroy(p->codec);
}

/* ordo_state_bytes, once a second at most: the rules' count of every
 * state in memory (kept ones too) and the join's bindings. */
static void count_state(ordo__proc_t *p) {
        int64_t now = ordo_monotonic_ms();
        size_t bytes = p->join.cap_kept;
        int i;
        if (p->state_counted && now - p->state_counted < 1000)
                return;
        p->state_counted = now;
        for (i = 0; i < p->n_states; i++)
                if (p->states[i])
                        bytes += p->def->state_bytes(p->states[i]);
        ordo_metrics_state_bytes(p->def->name, bytes);
}

static void log_stats(const ordo__proc_t *p, const char *what) {
        const ordo_stage_stats_t *s = p->stats;
        ORDO_LOG(INFO, p->def->name,
                 "msg=%s consumed=%lld produced=%lld rejected=%lld "
                 "dead_lettered=%lld transactions=%lld txn_ms_avg=%lld "
                 "aborts=%lld "
                 "restored_events=%lld restore_ms=%lld snapshots=%lld "
                 "snapshot_bytes=%lld ticks=%lld assignments=%lld kept=%lld "
                 "revoke_committed=%lld "
                 "rejoins=%lld renewals=%lld "
                 "discarded=%lld consume_ms=%lld decide_ms=%lld "
                 "produce_ms=%lld commit_wait_ms=%lld idle_ms=%lld "
                 "offsets_ms=%lld deliveries_ms=%lld end_txn_ms=%lld",
                 what, (long long)s->consumed, (long long)s->produced,
                 (long long)s->rejected, (long long)s->dead_lettered,
                 (long long)s->transactions,
                 (long long)(s->transactions ? s->txn_ms / s->transactions : 0),
                 (long long)s->aborts, (long long)s->restored_events,
                 (long long)s->restore_ms, (long long)s->snapshots,
                 (long long)s->snapshot_bytes, (long long)s->ticks,
                 (long long)s->assignments, (long long)s->kept,
                 (long long)s->revoke_committed, (long long)s->rejoins,
                 (long long)s->renewals, (long long)s->discarded,
                 (long long)s->consume_ms, (long long)s->decide_ms,
                 (long long)s->produce_ms, (long long)s->commit_wait_ms,
                 (long long)s->idle_ms, (long long)s->offsets_ms,
                 (long long)s->deliveries_ms, (long long)s->end_txn_ms);
}

/* An error that Kafka may cure (unreachable, fatal, a stable end that
 * never came): the stage rejoins; any other ends it. */
static int kafka_trouble(ordo_err_t err) {
        return err == ORDO_ERR_KAFKA || err == ORDO_ERR_KAFKA_FATAL ||
               err == ORDO_ERR_TIMEOUT;
}

/* After a producer renewal or a rewind: 1 if the partitions are lost
 * (Kafka trouble: rejoin; or a stop cut the restore short, which is no
 * error), -1 if the stage stops with *err, 0 to go on. */
static int recovery_failed(ordo_err_t *err, volatile sig_atomic_t *stop) {
        if (*err == ORDO_ERR_INTERRUPTED && *stop) {
                *err = ORDO_ERR_OK;
                return 1;
        }
        if (kafka_trouble(*err))
                return 1;
        return *err ? -1 : 0;
}

ordo_err_t ordo_processor_run(const ordo_processor_def_t *def,
                              const ordo_config_t *conf,
                              volatile sig_atomic_t *stop,
                              ordo_stage_stats_t *stats, char *errstr,
                              size_t errstr_size) {
        ordo__proc_t p;
        rd_kafka_message_t **msgs;
        size_t max = (size_t)ordo_config_get_int(conf, "batch.max"), n, i;
        int wait_ms = (int)ordo_config_get_int(conf, "batch.ms");
        int64_t last_stats = ordo_monotonic_ms(), t_start = last_stats;
        int committed = 0;
        int aborts_in_a_row = 0, rejoins_in_a_row = 0, renewals_in_a_row = 0;
        ordo_err_t err = ORDO_ERR_OK;

        memset(&p, 0, sizeof(p));
        p.def = def;
        p.conf = conf;
        p.stop = stop;
        p.stats = stats;
        ordo_topic_name(conf, def->input, p.input, sizeof(p.input));
        ordo_topic_name(conf, def->events, p.events, sizeof(p.events));
        if (def->outbound != ORDO_TOPIC__COUNT)
                ordo_topic_name(conf, def->outbound, p.outbound,
                                sizeof(p.outbound));
        ordo_topic_name(conf, ORDO_TOPIC_DEAD_LETTERS, p.dead, sizeof(p.dead));
        ordo_topic_name(conf, def->snapshots, p.snaps, sizeof(p.snaps));
        p.snapshot_every = ordo_config_get_int(conf, "snapshot.events");
        if (p.snapshot_every < 0)
                p.snapshot_every = 0;
        p.tick_every =
            /* time-driven: Ticks are its input */
            def->accepts(ORDO_MSG_TICK)
                ? ordo_config_get_int(conf, "tick.interval.ms")
                : 0;
        if (p.tick_every < 0)
                p.tick_every = 0;
        p.tick_lag = ordo_config_get_int(conf, "tick.lag.ms");
        p.at_least_once = !strcmp(ordo_config_get(conf, "processing.guarantee"),
                                  "at_least_once");
        p.pipelined = ordo_config_get_int(conf, "processing.pipeline") != 0;
        ordo_kafka_group(conf, def->name, p.group, sizeof(p.group));
        if (max < 1)
                max = 1;
        msgs = calloc(max, sizeof(*msgs));
        p.codec = ordo_codec_new(p.errstr, sizeof(p.errstr));
        if (!msgs || !p.codec) {
                snprintf(errstr, errstr_size, "%s: %s", def->name,
                         msgs ? p.errstr : "out of memory");
                free(msgs);
                ordo_codec_destroy(p.codec);
                return ORDO_ERR_NOMEM;
        }
        if ((err = ordo_codec_write_previous(
                 p.codec, ordo_config_get(conf, "schemas.write.previous"),
                 p.errstr, sizeof(p.errstr)))) {
                snprintf(errstr, errstr_size, "%s: %s", def->name, p.errstr);
                free(msgs);
                ordo_codec_destroy(p.codec);
                return err;
        }
        if ((err = open_clients(&p)))
                goto done;
        ORDO_LOG(INFO, def->name,
                 "msg=started input=%s events=%s group=%s tick_ms=%lld "
                 "tick_lag_ms=%lld guarantee=%s pipelined=%d",
                 p.input, p.events, p.group, (long long)p.tick_every,
                 (long long)p.tick_lag,
                 p.at_least_once ? "at_least_once" : "exactly_once",
                 p.pipelined);

        while (!*stop) {
                int64_t txns = stats->transactions, t;
                int tick, lost = 0, overlap, failed;
                if (p.consumer) /* NULL only while rejoining */
                        ordo_metrics_poll(def->name, p.consumer);
                count_state(&p);
                /* A snapshot due waits for the commit in flight: it saves
                 * the state of committed events only. */
                overlap =
                    p.pipelined && p.commit.pending && !ordo__snapshot_due(&p);
                p.produce_err = RD_KAFKA_RESP_ERR_NO_ERROR;
                p.join_unread = 0;
                t = ordo_monotonic_ms();
                n = lost ? 0 : consume_batch(&p, msgs, max, wait_ms, overlap);
                if (n)
                        stats->consume_ms += ordo_monotonic_ms() - t;
                else
                        stats->idle_ms += ordo_monotonic_ms() - t;
                if (p.duplicate_instance) {
                        ordo_kafka_twin_error(conf, p.group,
                                              p.duplicate_instance, p.errstr,
                                              sizeof(p.errstr));
                        err = ORDO_ERR_CONFIG;
                        break;
                }
                if (p.restore_failed || p.consumer_fatal)
                        lost = 1;
                /* The first Ticks right after an assignment: timers that
                 * fell due while nobody owned the partition fire now. */
                tick = !lost && p.tick_every && p.assigned &&
                       ordo_monotonic_ms() >= p.next_tick;
                if (!lost && !p.failed && (n || tick || ends_due(&p)))
                        send_batch(&p, msgs, n, tick, overlap);
                else {
                        /* idle: book the commit in flight */
                        ordo__commit_wait(&p);
                        if (p.failed || lost)
                                ordo__outbox_discard(&p.outbox);
                        else if (!*stop && ordo__join_idle(&p))
                                stop_for_good(&p);
                }
                for (i = 0; i < n; i++)
                        rd_kafka_message_destroy(msgs[i]);
                if (p.unmendable) {
                        ordo__commit_wait(&p);
                        snprintf(p.errstr, sizeof(p.errstr), "%s",
                                 p.unmendable_why);
                        err = ORDO_ERR_CONFIG;
                        break;
                }
                if (stats->transactions > txns) {
                        rejoins_in_a_row = aborts_in_a_row = renewals_in_a_row =
                            0;
                        if (!committed++)
                                /* restart to first commit
                                 * (bench/bench_restart.py) */
                                ORDO_LOG(
                                    INFO, def->name,
                                    "msg=first-commit "
                                    "since_start_ms=%lld",
                                    (long long)(ordo_monotonic_ms() - t_start));
                }
                if (p.failed == ORDO__TXN_FATAL && !lost) {
                        err = ++renewals_in_a_row > 1 ? ORDO_ERR_KAFKA_FATAL
                                                      : renew_producer(&p);
                        if ((failed = recovery_failed(&err, stop)) < 0)
                                break;
                        lost |= failed;
                } else if (p.failed == ORDO__TXN_ABORTED && !lost && !*stop) {
                        /* (stopping: nothing more is decided, and the
                         * failure keeps the revocation from committing;
                         * a restore now would only delay the stop) */
                        err = recover(&p, ++aborts_in_a_row);
                        if ((failed = recovery_failed(&err, stop)) < 0)
                                break;
                        lost |= failed;
                }
                if (lost && !*stop) {
                        /* Kafka Streams' "task migrated": rejoin, never
                         * exit (a supervisor would only do the same);
                         * not when stopping: close_clients ends them. */
                        do
                                err = rejoin(&p, ++rejoins_in_a_row);
                        while (kafka_trouble(err) && !*stop);
                        if (err && !*stop)
                                break;
                        err = ORDO_ERR_OK;
                        aborts_in_a_row = 0;
                }
                if (ordo_monotonic_ms() - last_stats >= 10000) {
                        log_stats(&p, "progress");
                        last_stats = ordo_monotonic_ms();
                }
        }
        /* A clean stop does not leave its offsets on a marker either: it
         * moves them to the ends now rather than after the idle second,
         * once the commit in flight is settled (it may have carried them)
         * and the ends not yet met have come, if Kafka answers at once
         * (a stop during an outage is not held by a transaction that
         * cannot end). */
        if (!err && p.consumer)
                ordo__commit_wait(&p);
        if (!err && !p.failed && !p.restore_failed && !p.consumer_fatal &&
            p.consumer) {
                await_ends(&p);
                if (ends_ahead(&p) && kafka_answers(p.producer)) {
                        send_batch(&p, msgs, 0, 0, 0);
                        ordo__commit_wait(&p);
                }
        }
done:
        if (err)
                snprintf(errstr, errstr_size, "%s: %s", def->name, p.errstr);
        log_stats(&p, "stopped");
        close_clients(&p);
        free(msgs);
        return err;
}
