/*
 * ordo - the projection loop. At-least-once delivery plus idempotent
 * writes (version and offset guards in projection.c's adapters) gives
 * read models that count every event exactly once.
 */
#include "project.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "kafka.h"
#include "kafka_io.h"
#include "log.h"
#include "metrics.h"
#include "projection.h"
#include "stages.h"
#include "clock.h"

#define IDLE_CHECK_MS 1000
#define MARK_CHECK_MS 1000
/* The metadata of the offsets a refill commits: a process that stops
 * during a refill leaves it with them, and whoever is assigned those
 * partitions next knows that the read model is not whole yet. */
#define REFILL_META "ordo:refill"

/* An event the store refused, held until the batch's end (park). */
struct refused {
        size_t rec; /* its record in the batch */
        ordo_err_t err;
        char reason[512];
};

/* One live projection: the consumer in the stage's group, the batch
 * being read, the store it goes to, and the dead-letter producer that
 * parking writes to (project.h). */
typedef struct {
        const char *which;
        const ordo_stage_t *stage;
        ordo_store_t store;
        rd_kafka_t *consumer, *dlq;
        char group[256], dead[256];
        ordo_codec_t *codec;
        size_t max, n, k; /* projection.batch.max; polled; decoded */
        size_t plen;      /* topic.prefix's length */
        int wait_ms;      /* batch.ms */
        rd_kafka_message_t **rkms;
        ordo_msg_t *msgs;
        ordo_event_rec_t *recs;
        size_t *msg_of; /* for each record, the index of its message */
        rd_kafka_topic_partition_list_t *paused;
        int64_t applied, skipped, parked;
        struct refused *held; /* the batch's refused events (park) */
        size_t n_held, held_cap;
        int letters_batch;    /* dead letters not confirmed yet */
        char letter_err[160]; /* the batch's first letter not written */
        int from_start;       /* the store lost what the group had applied */
        int lost;             /* ...while we ran: read the inputs again */
        int refilling;        /* commits carry REFILL_META until caught up */
        char mark[ORDO_MARK_MAX]; /* the target's mark, "" not known yet */
        int64_t mark_ms;          /* monotonic ms it was last read */
        int64_t alive_ms;         /* ...and the heartbeat last renewed */
        int64_t store_ok_ms;      /* monotonic ms an apply last worked */
        int64_t fenced_ms[2];     /* the last two FENCED_INSTANCE_ID */
        char rejoin_why[256];     /* set: rejoin at the loop's next turn */
        /* set (pause_and_poll): records lost, the stage stops */
        char records_lost[512];
        const ordo_config_t *conf;
        volatile sig_atomic_t *stop;
} loop_t;

static int group_has_read(loop_t *lp, const ordo_config_t *conf);

/* The dead-letter producer's delivery reports (served by its flush, in
 * the loop's thread): the batch's first failure. */
static void on_letter(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque) {
        loop_t *s = opaque;
        rd_kafka_resp_err_t err = ordo_kafka_delivery_err(m);
        (void)rk;
        if (err && !s->letter_err[0])
                snprintf(s->letter_err, sizeof(s->letter_err),
                         "a dead letter was not written: %s",
                         rd_kafka_err2str(err));
}

/* An input onto dead-letters with the reason in its headers, counted
 * under kind (operating.md, ordo_dead_letters_total); acknowledged before
 * the batch's offsets are committed (confirm_letters). */
static void dead_letter(loop_t *s, const rd_kafka_message_t *m,
                        const char *kind, const char *reason) {
        char stage[32];
        ordo_kafka_out_t dl = {
                s->dead, RD_KAFKA_PARTITION_UA, NULL, 0, NULL, 0, NULL, NULL
        };
        rd_kafka_resp_err_t kerr;

        snprintf(stage, sizeof(stage), "project.%s", s->which);
        s->letters_batch++;
        ordo_metrics_dead_letter(s->which, kind);
        ordo_dead_letter(m, kind, reason, stage, &dl);
        /* waits for room rather than lose the letter to a full queue */
        kerr = ordo_kafka_produce(s->dlq, &dl, RD_KAFKA_MSG_F_COPY,
                                  ORDO_PRODUCE_WAIT);
        if (kerr && !s->letter_err[0])
                snprintf(s->letter_err, sizeof(s->letter_err),
                         "a dead letter was not queued: %s",
                         rd_kafka_err2str(kerr));
}

/* The batch's dead letters acknowledged before its offsets go past
 * them; 0 if so. Else nothing of the batch may be committed: the loop
 * rejoins and reads it again from the committed offsets (the writes to
 * the store are idempotent; the letters are written again). */
static int confirm_letters(loop_t *s) {
        if (s->letters_batch &&
            rd_kafka_flush(s->dlq, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR &&
            !s->letter_err[0])
                snprintf(s->letter_err, sizeof(s->letter_err),
                         "dead letters not acknowledged in 30 s");
        s->letters_batch = 0;
        if (!s->letter_err[0])
                return 0;
        snprintf(s->rejoin_why, sizeof(s->rejoin_why), "%s", s->letter_err);
        s->letter_err[0] = '\0';
        return -1;
}

/* A refused event is held until the batch is applied (send_held):
 * refused by a target dropped under us, it was no refusal. */
static void park(void *opaque, const ordo_event_rec_t *rec, ordo_err_t err,
                 const char *reason) {
        loop_t *s = opaque;
        struct refused *h;

        if (s->n_held == s->held_cap) {
                size_t cap = s->held_cap ? 2 * s->held_cap : 16;
                if (!(h = realloc(s->held, cap * sizeof(*h)))) {
                        /* no room to hold it: sent at once */
                        dead_letter(s, s->rkms[s->msg_of[rec - s->recs]],
                                    "store_refused", reason);
                        s->parked++;
                        return;
                }
                s->held = h;
                s->held_cap = cap;
        }
        h = &s->held[s->n_held++];
        h->rec = (size_t)(rec - s->recs);
        h->err = err;
        snprintf(h->reason, sizeof(h->reason), "%s", reason);
}

/* The database or key prefix the projection keeps its read model in. */
static const char *live_target(const loop_t *lp) {
        return ordo_config_get(lp->conf, ordo_store_target_key(lp->which));
}

/* The WARN line of every refill (decisions 0023, 0029): why, then
 * " reading the inputs again from the beginning"; and /healthz says the
 * read model is not whole until the projection has caught up. */
static void say_refill(loop_t *lp, const char *why) {
        lp->refilling = 1;
        ordo_health_refilling(lp->which);
        ORDO_LOG(WARN, lp->which,
                 "msg=\"%s reading the inputs again from the beginning\" "
                 "target=%s group=%s",
                 why, live_target(lp), lp->group);
}

/* 1 when the store is reachable and holds nothing of the read model
 * while the group has applied events to it (decision 0023). */
static int store_empty_after_use(loop_t *lp) {
        char errstr[256];
        return ordo_store_target_used(lp->which, lp->conf, live_target(lp),
                                      errstr, sizeof(errstr)) == 0 &&
               group_has_read(lp, lp->conf);
}

/* A message polled while the store is away (its partition was not
 * paused): the partition goes back to it, so it is read again when the
 * store is back, not dropped. */
static void read_later(loop_t *s, const rd_kafka_message_t *m) {
        rd_kafka_topic_partition_list_t *back =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_error_t *e;
        rd_kafka_topic_partition_list_add(back, rd_kafka_topic_name(m->rkt),
                                          m->partition)
            ->offset = m->offset;
        if ((e = rd_kafka_seek_partitions(s->consumer, back, 10000))) {
                /* Rejoining reads on from the committed offsets, which
                 * are below it. */
                snprintf(s->rejoin_why, sizeof(s->rejoin_why),
                         "a message read while the store was away could not "
                         "be put back: %s",
                         rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        }
        rd_kafka_pause_partitions(s->consumer, back);
        rd_kafka_topic_partition_list_destroy(back);
}

/* While the store is away: the consumer is paused, and polled so the
 * group keeps us. A store that comes back empty (a Redis restarted
 * without persistence; store.h says which can) ends the wait: the batch
 * is dropped and the inputs are read again from the beginning
 * (pipeline). */
static int pause_and_poll(void *opaque, int first) {
        loop_t *s = opaque;
        rd_kafka_message_t *m;
        if (first && !s->paused &&
            !rd_kafka_assignment(s->consumer, &s->paused)) {
                rd_kafka_pause_partitions(s->consumer, s->paused);
        }
        if (first)
                ordo_metrics_store_up(s->which, 0);
        /* turning, not stalled; and the backlog that grows meanwhile */
        ordo_metrics_poll_paused(s->which, s->consumer);
        m = rd_kafka_consumer_poll(s->consumer, 0);
        if (m && !m->err)
                read_later(s, m);
        else if (m) /* a fatal one is found by pipeline, and this: */
                ordo_kafka_records_lost(m, s->records_lost,
                                        sizeof(s->records_lost));
        if (m)
                rd_kafka_message_destroy(m);
        s->lost = ordo_store_may_come_back_empty(&s->store) &&
                  store_empty_after_use(s);
        return s->lost;
}

/* The mark this projection knows: the target's, or a new one when it
 * has none (new, or found empty). "" when the store cannot be asked:
 * taken at the next check. */
static void mark_take(loop_t *lp) {
        char tok[ORDO_MARK_MAX], errstr[256];
        if (ordo_store_mark(&lp->store, NULL, lp->mark, errstr,
                            sizeof(errstr)) ||
            lp->mark[0])
                return;
        ordo_store_new_mark(tok);
        ordo_store_mark(&lp->store, tok, lp->mark, errstr, sizeof(errstr));
}

/* Asked before a batch is written, at most once a second (decision
 * 0029): 1 when the target is no longer the one the group filled, so
 * that the batch is dropped and the inputs are read again from the
 * beginning. Its mark gone: dropped or emptied under us (no write
 * failed), and what was written to it since (the version guards would
 * keep those partial documents from ever being completed) is removed
 * first. Another mark: another instance of the stage found it gone
 * first and did that. */
static int mark_lost(loop_t *lp) {
        char tok[ORDO_MARK_MAX], errstr[512], q[600];
        ordo_err_t err;

        if (ordo_monotonic_ms() - lp->mark_ms < MARK_CHECK_MS)
                return 0;
        lp->mark_ms = ordo_monotonic_ms();
        if (!lp->mark[0]) {
                /* not known since the start (the store did not answer
                 * then): emptied meanwhile is not new */
                int emptied;
                ordo_metrics_store_call(lp->which, 1);
                emptied = !lp->from_start && store_empty_after_use(lp);
                ordo_metrics_store_call(lp->which, 0);
                mark_take(lp);
                if (emptied)
                        say_refill(lp, "the read model is empty but the "
                                       "group has applied events to it:");
                return emptied;
        }
        ordo_metrics_store_call(lp->which, 1);
        err = ordo_store_mark(&lp->store, NULL, tok, errstr, sizeof(errstr));
        ordo_metrics_store_call(lp->which, 0);
        if (err || !strcmp(tok, lp->mark))
                return 0; /* the same, or the write meets the outage */
        if (tok[0]) {
                say_refill(lp, "the read model was emptied and marked again "
                               "by another instance of this stage:");
                snprintf(lp->mark, sizeof(lp->mark), "%s", tok);
                return 1;
        }
        say_refill(lp, "the read model lost its mark while the projection "
                       "ran (dropped, flushed, or restarted without "
                       "persistence?): removing what was written to it "
                       "since and");
        err = ordo_store_drop(lp->which, lp->conf, live_target(lp), errstr,
                              sizeof(errstr));
        if (err == ORDO_ERR_UNAVAILABLE) {
                lp->mark_ms = 0; /* again before the next batch */
                return 0;
        }
        if (err && ordo_store_target_used(lp->which, lp->conf, live_target(lp),
                                          q, sizeof(q)))
                /* a foreign key or collection under it: left as it is,
                 * and with it what was written since the mark was lost,
                 * which the refill's version guards may then skip */
                ORDO_LOG(ERROR, lp->which,
                         "msg=\"the read model could not be emptied for its "
                         "refill: what was written to it since it lost its "
                         "mark stays, and may be partial (ordo reconcile "
                         "finds it, ordo rebuild repairs it)\" reason=\"%s\"",
                         ordo_log_quote(q, sizeof(q), errstr));
        else if (err) /* nothing there */
                ORDO_LOG(INFO, lp->which, "msg=\"not emptied\" reason=\"%s\"",
                         ordo_log_quote(q, sizeof(q), errstr));
        ordo_store_new_mark(tok);
        ordo_store_mark(&lp->store, tok, lp->mark, errstr, sizeof(errstr));
        lp->alive_ms = 0; /* the drop took the heartbeats: at once */
        return 1;
}

/* The heartbeat beside the mark (store.h): a drop by hand refuses the
 * target while it lasts. A failed renewal is the write's to meet. */
static void keep_alive(loop_t *lp) {
        char errstr[256];
        if (!ordo_store_alive_due(lp->alive_ms))
                return;
        lp->alive_ms = ordo_monotonic_ms();
        ordo_metrics_store_call(lp->which, 1);
        ordo_store_alive(&lp->store, ordo_config_get(lp->conf, "instance.id"),
                         ORDO_ALIVE_TTL_MS, errstr, sizeof(errstr));
        ordo_metrics_store_call(lp->which, 0);
}

/* The batch's refused events, now that it is applied: loudly,
 * countably, and onto dead-letters with the reason, so an operator can
 * repair and replay them (operating.md). Unless the target's mark is
 * gone or another (asked now, not at the once-a-second check): then a
 * drop refused them, not the rules' totals (an emptied earnings hash
 * "going below 0"), and the batch is read again into the refilled
 * target. 1 then. */
static int send_held(loop_t *lp) {
        char q[1024];
        size_t i;
        int lost;

        if (!lp->n_held)
                return 0;
        lp->mark_ms = 0;
        lost = mark_lost(lp);
        for (i = 0; i < lp->n_held && !lost; i++) {
                const struct refused *h = &lp->held[i];
                const rd_kafka_message_t *m = lp->rkms[lp->msg_of[h->rec]];
                ORDO_LOG(ERROR, lp->which,
                         "msg=\"event refused by the store, parked on "
                         "dead-letters\" topic=%s partition=%d offset=%lld "
                         "type=%s err=%s reason=\"%s\"",
                         rd_kafka_topic_name(m->rkt), (int)m->partition,
                         (long long)m->offset,
                         ordo_msg_type_name(lp->recs[h->rec].msg->type),
                         ordo_err_name(h->err),
                         ordo_log_quote(q, sizeof(q), h->reason));
                lp->parked++;
                dead_letter(lp, m, "store_refused", h->reason);
        }
        lp->n_held = 0;
        return lost;
}

/* An offset to commit, marked as a refill's (REFILL_META). */
static void mark_refilling(rd_kafka_topic_partition_t *e) {
        free(e->metadata); /* the list frees what it holds */
        e->metadata = strdup(REFILL_META);
        e->metadata_size = e->metadata ? strlen(REFILL_META) : 0;
}

/* 1 if a committed offset says a refill had not caught up there. */
static int marked_refilling(const rd_kafka_topic_partition_t *e) {
        return e->metadata_size == strlen(REFILL_META) &&
               !memcmp(e->metadata, REFILL_META, e->metadata_size);
}

/* A refill's first step, before anything of it is written: the group's
 * committed offsets of parts go back to the beginning (0). A crash
 * during the refill then starts it again; left where they were, the
 * restarted projection found the store in use and went on from them,
 * the refill cut short for good (an outside audit). */
static void commit_beginning(loop_t *lp, rd_kafka_t *rk,
                             const rd_kafka_topic_partition_list_t *parts) {
        rd_kafka_topic_partition_list_t *c =
            rd_kafka_topic_partition_list_copy(parts);
        rd_kafka_resp_err_t err;
        int i;
        for (i = 0; i < c->cnt; i++) {
                c->elems[i].offset = 0;
                mark_refilling(&c->elems[i]);
        }
        if (c->cnt && (err = rd_kafka_commit(rk, c, 0))) {
                /* rejoin, and try again at the next assignment */
                snprintf(lp->rejoin_why, sizeof(lp->rejoin_why),
                         "the beginning of the inputs could not be committed "
                         "for the refill: %s",
                         rd_kafka_err2str(err));
                lp->from_start = 1;
        }
        rd_kafka_topic_partition_list_destroy(c);
}

/* The read model went away while we ran: every assigned partition from
 * its beginning, the guards make re-applying exact. Rejoining (which
 * starts at the committed offsets, the beginning now) when the consumer
 * cannot seek. */
static void read_again(loop_t *lp) {
        rd_kafka_topic_partition_list_t *parts = NULL;
        rd_kafka_error_t *e;
        int i;

        lp->lost = 0;
        if (rd_kafka_assignment(lp->consumer, &parts))
                return;
        commit_beginning(lp, lp->consumer, parts);
        for (i = 0; i < parts->cnt; i++) /* 0: records lost are refused */
                parts->elems[i].offset = 0;
        if ((e = rd_kafka_seek_partitions(lp->consumer, parts, 10000))) {
                snprintf(lp->rejoin_why, sizeof(lp->rejoin_why),
                         "cannot seek to the beginning for the refill: %s",
                         rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(parts);
}

/* The batch applied or parked (or *stop), then the consumer resumed. */
static ordo_err_t apply_batch(loop_t *s) {
        char errstr[512];
        ordo_err_t err;

        ordo_metrics_store_call(s->which, 1);
        err = ordo_store_apply_until_done(&s->store, s->which, s->recs, s->k,
                                          park, s, pause_and_poll, s, s->stop,
                                          errstr, sizeof(errstr));
        ordo_metrics_store_call(s->which, 0);

        if (s->paused) {
                rd_kafka_resume_partitions(s->consumer, s->paused);
                rd_kafka_topic_partition_list_destroy(s->paused);
                s->paused = NULL;
        }
        if (!err) {
                ordo_metrics_store_up(s->which, 1);
                s->store_ok_ms = ordo_monotonic_ms();
        }
        return err;
}

int ordo_decode_event(ordo_codec_t *codec, const rd_kafka_message_t *m,
                      const char *source, ordo_msg_t *msg,
                      ordo_event_rec_t *rec, char *why, size_t why_size) {
        if (!m->payload) {
                snprintf(why, why_size, "empty message");
                return -1;
        }
        if (ordo_codec_decode(codec, m->payload, m->len, msg, why, why_size))
                return -1;
        if (!ordo_msg_belongs_on(msg->type, source)) {
                snprintf(why, why_size, "unexpected type %s on %s",
                         ordo_msg_type_name(msg->type), source);
                return -2;
        }
        rec->msg = msg;
        rec->source = source;
        rec->partition = m->partition;
        rec->offset = m->offset;
        rec->written_ms = rd_kafka_message_timestamp(m, NULL);
        if (rec->written_ms < 0)
                rec->written_ms = 0;
        return 0;
}

/* Commits the offsets after the batch's messages and frees them; a
 * partition's end (an EOF in the batch) commits where the next fetch
 * starts, past the transaction markers that librdkafka does not show:
 * a projection that has caught up is not left on a marker, whose
 * deletion by retention would read as records lost. Issued
 * only after the writes are acknowledged, and asynchronous: waiting for
 * the coordinator's answer would add a round trip to every batch's
 * latency. A lost or failed commit means redelivery, which the guards
 * absorb (read-models.md "Idempotence and recovery"). While refilling,
 * each offset carries REFILL_META, and the commit is synchronous (once a
 * batch of up to projection.batch.max events): refill_over then knows
 * that the committed offsets are all there is. */
static void commit_batch(rd_kafka_t *consumer, const char *which,
                         rd_kafka_message_t **rkms, size_t n, int refilling) {
        rd_kafka_topic_partition_list_t *offsets =
            rd_kafka_topic_partition_list_new(8);
        int64_t next;
        size_t i;

        for (i = 0; i < n; i++) {
                const char *t = rd_kafka_topic_name(rkms[i]->rkt);
                rd_kafka_topic_partition_t *e =
                    rd_kafka_topic_partition_list_find(offsets, t,
                                                       rkms[i]->partition);
                if (!e) {
                        e = rd_kafka_topic_partition_list_add(
                            offsets, t, rkms[i]->partition);
                        if (refilling)
                                mark_refilling(e);
                }
                next = rkms[i]->offset + (rkms[i]->err ? 0 : 1);
                if (next > e->offset)
                        e->offset = next;
                rd_kafka_message_destroy(rkms[i]);
        }
        if (rd_kafka_commit(consumer, offsets, !refilling))
                ORDO_LOG(WARN, which, "msg=\"offset commit failed\"");
        rd_kafka_topic_partition_list_destroy(offsets);
}

/* A long batch that the store keeps answering is no hung store. */
static void store_answered(void *opaque) {
        const loop_t *lp = opaque;
        ordo_metrics_store_answered(lp->which);
}

/* Waits for the store rather than fail: it may start after us. */
static ordo_err_t wait_for_store(loop_t *lp, const ordo_config_t *conf,
                                 char *errstr, size_t errstr_size) {
        ordo_err_t err;
        char q[512];
        while ((err = ordo_store_open(&lp->store, lp->which, conf, NULL, errstr,
                                      errstr_size))) {
                if (err == ORDO_ERR_CONFIG || *lp->stop)
                        return err;
                ordo_metrics_store_up(lp->which, 0);
                ORDO_LOG(WARN, lp->which,
                         "msg=\"store not reachable, retrying\" error=\"%s\"",
                         ordo_log_quote(q, sizeof(q), errstr));
                sleep(1);
        }
        ordo_metrics_store_up(lp->which, 1);
        ordo_store_on_answer(&lp->store, store_answered, lp);
        return ORDO_ERR_OK;
}

/* Committed offsets that a refill left (REFILL_META): a process that
 * was refilling stopped before it caught up, and this one goes on with
 * the refill from there; /healthz says so until it has caught up. */
static void refill_left(loop_t *lp,
                        const rd_kafka_topic_partition_list_t *parts) {
        int i, n = 0;
        for (i = 0; i < parts->cnt; i++)
                n += marked_refilling(&parts->elems[i]);
        if (!n)
                return;
        /* even when refilling already: /healthz may have found the
         * partitions it held before caught up */
        ordo_health_refilling(lp->which);
        if (lp->refilling)
                return;
        lp->refilling = 1;
        ORDO_LOG(WARN, lp->which,
                 "msg=\"a refill stopped before it caught up (a restart or "
                 "a rebalance during it): going on with it; the read model "
                 "is not whole until then\" partitions=%d target=%s "
                 "group=%s",
                 n, live_target(lp), lp->group);
}

/* The refill caught up (/healthz's poll found every partition so):
 * where the group stands is committed again without REFILL_META, so
 * that the next assignment does not take it for a refill. A refill's
 * commits are synchronous (commit_batch), so the committed offsets are
 * what was applied, with no commit of ours still on its way. Tried
 * again at the next turn until every assigned partition is done. */
static void refill_over(loop_t *lp) {
        rd_kafka_topic_partition_list_t *a = NULL, *c;
        rd_kafka_resp_err_t err;
        int i, undone = 0;
        if (!lp->refilling || ordo_health_is_refilling(lp->which) ||
            lp->rejoin_why[0])
                return;
        if (rd_kafka_assignment(lp->consumer, &a))
                return;
        if (!a->cnt || rd_kafka_committed(lp->consumer, a, 10000)) {
                rd_kafka_topic_partition_list_destroy(a);
                return; /* revoked meanwhile, or not answered */
        }
        c = rd_kafka_topic_partition_list_new(a->cnt);
        for (i = 0; i < a->cnt; i++) {
                if (a->elems[i].err)
                        undone++;
                else if (a->elems[i].offset >= 0)
                        rd_kafka_topic_partition_list_add(c, a->elems[i].topic,
                                                          a->elems[i].partition)
                            ->offset = a->elems[i].offset;
        }
        if (!undone && c->cnt && (err = rd_kafka_commit(lp->consumer, c, 0)))
                ORDO_LOG(WARN, lp->which,
                         "msg=\"offset commit failed\" error=\"%s\"",
                         rd_kafka_err2str(err));
        else if (!undone) {
                lp->refilling = 0;
                ORDO_LOG(INFO, lp->which,
                         "msg=\"refill caught up: the read model is whole "
                         "again\" target=%s partitions=%d",
                         live_target(lp), c->cnt);
        }
        rd_kafka_topic_partition_list_destroy(c);
        rd_kafka_topic_partition_list_destroy(a);
}

/* Assignments start at the group's committed offsets, read here in one
 * request (none committed yet: offset 0), except the first one after
 * store_lost(), which reads from offset 0. Leaving the fetch of them to
 * librdkafka 2.0.2 could leave a stage assigned and never fetching after
 * a broker stall (it failed with NOT_COORDINATOR and did not try again;
 * stream.c does the same). Offsets that cannot be read: no assignment,
 * and the loop rejoins. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
        loop_t *lp = opaque;
        rd_kafka_resp_err_t cerr = RD_KAFKA_RESP_ERR_NO_ERROR;
        int i;
        if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                rd_kafka_assign(rk, NULL);
                return;
        }
        if (!lp->from_start)
                cerr = rd_kafka_committed(rk, parts, 10000);
        for (i = 0; i < parts->cnt && !cerr; i++) {
                rd_kafka_topic_partition_t *e = &parts->elems[i];
                if (e->err && !lp->from_start)
                        cerr = e->err;
                else if (lp->from_start || e->offset < 0)
                        /* 0, not the earliest left: a log that lost
                         * its first records is refused (records lost) */
                        e->offset = 0;
        }
        if (cerr) {
                snprintf(lp->rejoin_why, sizeof(lp->rejoin_why),
                         "committed offsets of the %d assigned partitions "
                         "not read: %s",
                         parts->cnt, rd_kafka_err2str(cerr));
                rd_kafka_assign(rk, NULL);
                return;
        }
        if (lp->from_start) {
                commit_beginning(lp, rk, parts);
                if (lp->rejoin_why[0]) { /* from the start again then */
                        rd_kafka_assign(rk, NULL);
                        return;
                }
        }
        lp->from_start = 0;
        refill_left(lp, parts);
        ORDO_LOG(INFO, lp->which, "msg=assigned partitions=%d", parts->cnt);
        rd_kafka_assign(rk, parts);
        /* Assigned while the store is away (pause_and_poll): paused like
         * the rest, or the poll that keeps us in the group would read
         * them and their messages would be lost to the batch. */
        if (lp->paused) {
                rd_kafka_pause_partitions(rk, parts);
                rd_kafka_topic_partition_list_destroy(lp->paused);
                lp->paused = rd_kafka_topic_partition_list_copy(parts);
        }
}

/* 1 if the group has committed an offset on any input partition. */
static int group_has_read(loop_t *lp, const ordo_config_t *conf) {
        char topic[256], errstr[256];
        int t, i, np, read = 0;
        for (t = 0; t < lp->stage->n_inputs && !read; t++) {
                rd_kafka_topic_partition_list_t *tp;
                ordo_topic_name(conf, lp->stage->inputs[t], topic,
                                sizeof(topic));
                np = ordo_kafka_partitions(lp->consumer, topic, errstr,
                                           sizeof(errstr));
                if (np <= 0)
                        continue;
                tp = rd_kafka_topic_partition_list_new(np);
                for (i = 0; i < np; i++)
                        rd_kafka_topic_partition_list_add(tp, topic, i);
                if (!rd_kafka_committed(lp->consumer, tp, 10000))
                        for (i = 0; i < np; i++)
                                /* 0 everywhere reads from the start
                                 * anyway: nothing a refill would add */
                                read |= tp->elems[i].offset > 0;
                rd_kafka_topic_partition_list_destroy(tp);
        }
        return read;
}

/* A store that holds nothing of the read model while the group has
 * applied events to it before: Redis restarted without persistence, a
 * database dropped by hand. The committed offsets no longer describe
 * the store, so the first assignment reads the inputs from the
 * beginning (the guards make it exact, read-models.md). Asked at start,
 * and again while a store that went away comes back (pause_and_poll);
 * a store that cannot be asked is left as it is. */
static void store_lost(loop_t *lp) {
        if (!store_empty_after_use(lp))
                return;
        lp->from_start = 1;
        say_refill(lp, "the read model is empty but the group has applied "
                       "events to it:");
}

/* The batch, the dead-letter producer, the codec and the consumer. */
static ordo_err_t open_all(loop_t *lp, const ordo_config_t *conf, char *errstr,
                           size_t errstr_size) {
        lp->max = (size_t)ordo_config_get_int(conf, "projection.batch.max");
        if (lp->max < 1)
                lp->max = 1;
        lp->wait_ms = (int)ordo_config_get_int(conf, "batch.ms");
        lp->plen = strlen(ordo_config_get(conf, "topic.prefix"));
        lp->rkms = calloc(lp->max, sizeof(*lp->rkms));
        lp->msgs = calloc(lp->max, sizeof(*lp->msgs));
        lp->recs = calloc(lp->max, sizeof(*lp->recs));
        lp->msg_of = calloc(lp->max, sizeof(*lp->msg_of));
        ordo_topic_name(conf, ORDO_TOPIC_DEAD_LETTERS, lp->dead,
                        sizeof(lp->dead));
        lp->dlq = ordo_kafka_producer_new(conf, NULL, on_letter, lp, errstr,
                                          errstr_size);
        lp->codec = ordo_codec_new(errstr, errstr_size);
        ordo_kafka_group(conf, lp->stage->group, lp->group, sizeof(lp->group));
        /* A static member, as the processors (decision 0009): restarted
         * after a crash it takes its partitions back at once. */
        lp->consumer = ordo_kafka_member_new(conf, lp->group, rebalance_cb, lp,
                                             errstr, errstr_size);
        if (!lp->rkms || !lp->msgs || !lp->recs || !lp->msg_of) {
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_NOMEM;
        }
        if (!lp->dlq || !lp->codec || !lp->consumer)
                return ORDO_ERR_CONFIG;
        return ORDO_ERR_OK;
}

/* The stage's inputs, in its consumer group. */
static ordo_err_t subscribe_inputs(loop_t *lp, const ordo_config_t *conf,
                                   char *errstr, size_t errstr_size) {
        rd_kafka_topic_partition_list_t *topics =
            rd_kafka_topic_partition_list_new(lp->stage->n_inputs);
        char name[256];
        ordo_err_t err = ORDO_ERR_OK;
        int i;
        for (i = 0; i < lp->stage->n_inputs; i++) {
                ordo_topic_name(conf, lp->stage->inputs[i], name, sizeof(name));
                rd_kafka_topic_partition_list_add(topics, name,
                                                  RD_KAFKA_PARTITION_UA);
        }
        if (rd_kafka_subscribe(lp->consumer, topics)) {
                snprintf(errstr, errstr_size, "cannot subscribe");
                err = ORDO_ERR_KAFKA;
        }
        rd_kafka_topic_partition_list_destroy(topics);
        return err;
}

/* Decode: the batch's message i into the next record, or onto
 * dead-letters. Only processors write these topics, so an undecodable
 * one, or one of a type no processor writes there, is a foreign
 * writer's. */
static void take_message(loop_t *lp, size_t i) {
        const rd_kafka_message_t *m = lp->rkms[i];
        const char *t = rd_kafka_topic_name(m->rkt);
        const char *kind;
        char why[256], q[300];
        int r;

        if (m->err) /* a partition's end: only commit_batch wants it */
                return;
        r = ordo_decode_event(
            lp->codec, m, strlen(t) > lp->plen ? t + lp->plen : t,
            &lp->msgs[lp->k], &lp->recs[lp->k], why, sizeof(why));
        if (!r) {
                lp->msg_of[lp->k++] = i;
                return;
        }
        kind = r == -2 ? "unexpected_type" : "undecodable";
        ORDO_LOG(ERROR, lp->which,
                 "msg=\"foreign event, sent to dead-letters\" topic=%s "
                 "partition=%d offset=%lld kind=%s reason=\"%s\"",
                 t, (int)m->partition, (long long)m->offset, kind,
                 ordo_log_quote(q, sizeof(q), why));
        lp->skipped++;
        dead_letter(lp, m, kind, why);
}

/* How long ago the batch's oldest event was written (its CreateTime),
 * now that the batch is applied: where a read model's delay is spent. */
static int64_t oldest_age_ms(const loop_t *lp) {
        int64_t oldest = INT64_MAX, ts;
        size_t i;
        for (i = 0; i < lp->n; i++)
                if ((ts = rd_kafka_message_timestamp(lp->rkms[i], NULL)) >= 0 &&
                    ts < oldest)
                        oldest = ts;
        return oldest == INT64_MAX ? -1 : ordo_wall_ms() - oldest;
}

static void log_counts(const loop_t *lp, const char *what) {
        ORDO_LOG(INFO, lp->which,
                 "msg=%s applied=%lld skipped=%lld parked=%lld", what,
                 (long long)lp->applied, (long long)lp->skipped,
                 (long long)lp->parked);
}

/* read -> decode -> apply -> commit until *stop: a batch is what
 * batch.ms brings, up to projection.batch.max. Ends early on a fatal
 * consumer error (a newer member with our group.instance.id), or an
 * assignment refused for want of its offsets: the consumer is of no more
 * use (rejoin). */
static ordo_err_t pipeline(loop_t *lp, char *errstr, size_t errstr_size) {
        const ordo_kafka_batch_opts_t bo = { lp->which, 1 }; /* commit_batch */
        int64_t last_log = ordo_monotonic_ms(), last_write = last_log;
        ordo_err_t err = ORDO_ERR_OK;
        size_t i;
        int fatal, idle;
        while (!*lp->stop) {
                ordo_metrics_poll(lp->which, lp->consumer);
                /* One raised while the store was away (pause_and_poll). */
                if (rd_kafka_fatal_error(lp->consumer, errstr, errstr_size)) {
                        err = ORDO_ERR_KAFKA_FATAL;
                        break;
                }
                /* said once, while the store was away */
                if (lp->records_lost[0]) {
                        snprintf(errstr, errstr_size, "%s", lp->records_lost);
                        err = ORDO_ERR_CONFIG;
                        break;
                }
                /* set by rebalance_cb, read_later or confirm_letters */
                if (lp->rejoin_why[0]) {
                        char q[512];
                        ORDO_LOG(WARN, lp->which, "msg=\"%s; rejoining\"",
                                 ordo_log_quote(q, sizeof(q), lp->rejoin_why));
                        snprintf(errstr, errstr_size, "%s", lp->rejoin_why);
                        lp->rejoin_why[0] = '\0';
                        err = ORDO_ERR_KAFKA_FATAL;
                        break;
                }
                lp->n = ordo_kafka_consume_batch(lp->consumer, &bo, lp->rkms,
                                                 lp->max, lp->wait_ms, &fatal,
                                                 errstr, errstr_size);
                if (fatal) {
                        /* records lost: no rejoin mends it, the
                         * projection stops (as a processor does) */
                        for (i = 0; i < lp->n; i++)
                                rd_kafka_message_destroy(lp->rkms[i]);
                        err = fatal == ORDO_KAFKA_RECORDS_LOST
                                  ? ORDO_ERR_CONFIG
                                  : ORDO_ERR_KAFKA_FATAL;
                        break;
                }
                lp->n_held = 0; /* a batch dropped before it was applied */
                for (lp->k = 0, i = 0; i < lp->n; i++)
                        take_message(lp, i);
                /* Idle for a second: an empty batch asks the store
                 * whether it still answers (store.h), so that a Redis
                 * restarted meanwhile is found, and refilled, now. */
                idle =
                    !lp->k && ordo_monotonic_ms() - last_write >= IDLE_CHECK_MS;
                if (lp->k || idle) {
                        last_write = ordo_monotonic_ms();
                        keep_alive(lp);
                }
                if ((lp->k || idle) && mark_lost(lp)) {
                        for (i = 0; i < lp->n; i++)
                                rd_kafka_message_destroy(lp->rkms[i]);
                        read_again(lp);
                        continue;
                }
                if ((lp->k || idle) && apply_batch(lp)) {
                        /* Nothing committed: the batch comes again, now
                         * (the store came back empty) or on restart
                         * (stopping mid-outage). */
                        for (i = 0; i < lp->n; i++)
                                rd_kafka_message_destroy(lp->rkms[i]);
                        if (lp->lost) {
                                say_refill(lp, "the read model came back "
                                               "empty while the group had "
                                               "applied events to it (a "
                                               "restart without "
                                               "persistence?):");
                                /* gone with it: a new one now (the
                                 * store just answered), or the next
                                 * check would refill a second time */
                                lp->mark[0] = '\0';
                                mark_take(lp);
                                read_again(lp);
                                continue;
                        }
                        snprintf(errstr, errstr_size,
                                 "stopped while the store was unavailable");
                        break;
                }
                if (send_held(lp)) {
                        for (i = 0; i < lp->n; i++)
                                rd_kafka_message_destroy(lp->rkms[i]);
                        read_again(lp);
                        continue;
                }
                if (lp->k)
                        ORDO_LOG(DEBUG, lp->which,
                                 "msg=batch events=%zu apply_ms=%lld "
                                 "oldest_age_ms=%lld",
                                 lp->k,
                                 (long long)(ordo_monotonic_ms() - last_write),
                                 (long long)oldest_age_ms(lp));
                if (confirm_letters(lp)) {
                        for (i = 0; i < lp->n; i++)
                                rd_kafka_message_destroy(lp->rkms[i]);
                        continue; /* rejoin_why is set */
                }
                if (lp->n)
                        commit_batch(lp->consumer, lp->which, lp->rkms, lp->n,
                                     lp->refilling);
                refill_over(lp);
                for (i = 0; i < lp->k; i++)
                        ordo_metrics_applied(
                            lp->which,
                            ordo_msg_lag_from_ms(&lp->msgs[i],
                                                 lp->recs[i].written_ms));
                lp->applied += (int64_t)lp->k;
                if (ordo_monotonic_ms() - last_log >= 10000) {
                        log_counts(lp, "progress");
                        last_log = ordo_monotonic_ms();
                }
        }
        log_counts(lp, "stopped");
        return err;
}

static void close_consumer(loop_t *lp) {
        if (lp->consumer) {
                ordo_metrics_lost(lp->which); /* its lag goes with it */
                /* a static member's close does not leave the group */
                ordo_kafka_member_leave(lp->consumer, 10000);
                rd_kafka_consumer_close(lp->consumer);
                rd_kafka_destroy(lp->consumer);
                lp->consumer = NULL;
        }
}

/* After a fatal consumer error or a rejoin_why, as a processor does
 * (stream.c): we lost our partitions, and come back as a new member that
 * reads on from the committed offsets (the writes are idempotent),
 * unless the fence shows a live twin or that this process was replaced
 * while paused (kafka.h: ordo_kafka_fenced). */
static ordo_err_t rejoin(loop_t *lp, char *errstr, size_t errstr_size) {
        int64_t until = ordo_monotonic_ms() + 500;
        ordo_fence_t why;
        char q[512];

        if (rd_kafka_fatal_error(lp->consumer, NULL, 0) ==
                RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID &&
            (why = ordo_kafka_fenced(lp->fenced_ms)) != ORDO_FENCE_REJOIN) {
                ordo_kafka_twin_error(lp->conf, lp->group, why, errstr,
                                      errstr_size);
                return ORDO_ERR_CONFIG;
        }
        if (rd_kafka_fatal_error(lp->consumer, NULL, 0))
                ORDO_LOG(WARN, lp->which,
                         "msg=\"fatal Kafka error: giving up our partitions "
                         "and rejoining (if another process runs this stage "
                         "with the same instance.id, give it its own)\" "
                         "error=\"%s\"",
                         ordo_log_quote(q, sizeof(q), errstr));
        close_consumer(lp);
        while (ordo_monotonic_ms() < until && !*lp->stop)
                usleep(50000);
        lp->consumer = ordo_kafka_member_new(lp->conf, lp->group, rebalance_cb,
                                             lp, errstr, errstr_size);
        if (!lp->consumer)
                return ORDO_ERR_CONFIG;
        return subscribe_inputs(lp, lp->conf, errstr, errstr_size);
}

static void close_all(loop_t *lp) {
        char errstr[256];
        close_consumer(lp);
        ordo_codec_destroy(lp->codec);
        /* not writing any more: a drop need not wait for it (nor we
         * for a store that has not answered lately: the heartbeat
         * ends by itself) */
        if (lp->alive_ms && ordo_monotonic_ms() - lp->store_ok_ms < 2000)
                ordo_store_alive(&lp->store,
                                 ordo_config_get(lp->conf, "instance.id"), 0,
                                 errstr, sizeof(errstr));
        ordo_store_close(&lp->store);
        if (lp->dlq) {
                rd_kafka_flush(lp->dlq, 10000);
                rd_kafka_destroy(lp->dlq);
        }
        free(lp->held);
        free(lp->msg_of);
        free(lp->rkms);
        free(lp->msgs);
        free(lp->recs);
}

ordo_err_t ordo_projection_run(const ordo_stage_t *stage,
                               const ordo_config_t *conf,
                               volatile sig_atomic_t *stop, char *errstr,
                               size_t errstr_size) {
        loop_t lp;
        ordo_err_t err;

        memset(&lp, 0, sizeof(lp));
        lp.which = stage->name;
        lp.stage = stage;
        lp.conf = conf;
        lp.stop = stop;
        if ((err = wait_for_store(&lp, conf, errstr, errstr_size)))
                return err;
        err = open_all(&lp, conf, errstr, errstr_size);
        if (!err) {
                /* the mark at once, and before store_lost asks whether
                 * the target is empty: a target emptied before the
                 * first check was taken for a new one, never refilled */
                mark_take(&lp);
                lp.mark_ms = ordo_monotonic_ms();
                store_lost(&lp);
                err = subscribe_inputs(&lp, conf, errstr, errstr_size);
        }
        if (!err)
                ORDO_LOG(INFO, lp.which, "msg=started group=%s", lp.group);
        while (!err) {
                err = pipeline(&lp, errstr, errstr_size);
                if (err != ORDO_ERR_KAFKA_FATAL || *stop)
                        break;
                err = rejoin(&lp, errstr, errstr_size);
        }
        close_all(&lp);
        return err;
}
