/*
 * ordo - the projection loop. At-least-once delivery plus idempotent
 * writes (version and offset guards in projection.c's adapters) gives
 * read models that count every event exactly once.
 */
#include "project.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "projection.h"
#include "stages.h"
#include "clock.h"

typedef struct {
        const char *which;
        ordo_store_t store;
        /* Parking (project.h): the batch's messages, and for each record
         * the index of its message. */
        rd_kafka_t *dlq;
        char dead[256];
        rd_kafka_message_t **rkms;
        const ordo_event_rec_t *recs;
        rd_kafka_t *consumer;
        rd_kafka_topic_partition_list_t *paused;
        size_t *msg_of;
        int64_t parked, parked_batch;
} store_t;

/* A refused event: loudly, countably, and onto dead-letters with the
 * reason, so an operator can repair and replay it (operating.md). */
static void park(void *opaque, const ordo_event_rec_t *rec, ordo_err_t err,
                 const char *reason) {
        store_t *s = opaque;
        const rd_kafka_message_t *m = s->rkms[s->msg_of[rec - s->recs]];
        char part[16], off[32], stage[32];
        rd_kafka_resp_err_t kerr;

        snprintf(part, sizeof(part), "%d", (int)m->partition);
        snprintf(off, sizeof(off), "%lld", (long long)m->offset);
        snprintf(stage, sizeof(stage), "project.%s", s->which);
        ORDO_LOG(ERROR, s->which,
                 "msg=\"event refused by the store, parked on dead-letters\" "
                 "topic=%s partition=%d offset=%lld type=%s err=%s "
                 "reason=\"%s\"",
                 rd_kafka_topic_name(m->rkt), (int)m->partition,
                 (long long)m->offset, ordo_msg_type_name(rec->msg->type),
                 ordo_err_name(err), reason);
        s->parked++;
        s->parked_batch++;
        ordo_metrics_dead_letter(s->which, "store_refused");
        kerr = rd_kafka_producev(
            s->dlq, RD_KAFKA_V_TOPIC(s->dead),
            RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(m->payload, m->len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("ordo.error", reason, -1),
            RD_KAFKA_V_HEADER("ordo.stage", stage, -1),
            RD_KAFKA_V_HEADER("ordo.source.topic", rd_kafka_topic_name(m->rkt),
                              -1),
            RD_KAFKA_V_HEADER("ordo.source.partition", part, -1),
            RD_KAFKA_V_HEADER("ordo.source.offset", off, -1), RD_KAFKA_V_END);
        if (kerr)
                ORDO_LOG(ERROR, s->which,
                         "msg=\"cannot queue the dead letter\" error=\"%s\"",
                         rd_kafka_err2str(kerr));
}

/* While the store is away: the consumer is paused, and polled so the
 * group keeps us. */
static void pause_and_poll(void *opaque, int first) {
        store_t *s = opaque;
        if (first && !s->paused &&
            !rd_kafka_assignment(s->consumer, &s->paused)) {
                rd_kafka_pause_partitions(s->consumer, s->paused);
        }
        rd_kafka_consumer_poll(s->consumer, 0);
}

/* The batch applied or parked (or *stop), then the consumer resumed and
 * the dead letters written before the offsets that pass them are
 * committed. */
static ordo_err_t apply_batch(store_t *s, const ordo_event_rec_t *recs,
                              size_t n, volatile sig_atomic_t *stop) {
        char errstr[512];
        ordo_err_t err = ordo_store_apply_until_done(
            &s->store, s->which, recs, n, park, s, pause_and_poll, s, stop,
            errstr, sizeof(errstr));

        if (s->paused) {
                rd_kafka_resume_partitions(s->consumer, s->paused);
                rd_kafka_topic_partition_list_destroy(s->paused);
                s->paused = NULL;
        }
        if (!err && s->parked_batch &&
            rd_kafka_flush(s->dlq, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                ORDO_LOG(ERROR, s->which,
                         "msg=\"dead letters not confirmed; the log lines "
                         "above name the parked events\"");
        s->parked_batch = 0;
        return err;
}

/* Up to max messages: waits up to wait_ms for the first, then takes what
 * is already there. */
static size_t poll_batch(rd_kafka_t *consumer, rd_kafka_message_t **rkms,
                         size_t max, int wait_ms) {
        int64_t deadline = ordo_monotonic_ms() + wait_ms;
        size_t n = 0;

        while (n < max) {
                int64_t left = deadline - ordo_monotonic_ms();
                rd_kafka_message_t *m = rd_kafka_consumer_poll(
                    consumer, n ? 0 : (int)(left > 0 ? left : 0));
                if (!m) {
                        if (n || ordo_monotonic_ms() >= deadline)
                                break;
                        continue;
                }
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                rkms[n++] = m;
        }
        return n;
}

int ordo_decode_event(ordo_codec_t *codec, const rd_kafka_message_t *m,
                      const char *source, const char *stage, ordo_msg_t *msg,
                      ordo_event_rec_t *rec) {
        char why[256];

        if (!m->payload || ordo_codec_decode(codec, m->payload, m->len, msg,
                                             why, sizeof(why))) {
                /* Only processors write these topics, so this is a foreign
                 * writer: skip, loudly. */
                ORDO_LOG(ERROR, stage,
                         "msg=\"undecodable event skipped\" topic=%s "
                         "partition=%d offset=%lld reason=\"%s\"",
                         rd_kafka_topic_name(m->rkt), (int)m->partition,
                         (long long)m->offset,
                         m->payload ? why : "empty message");
                return -1;
        }
        rec->msg = msg;
        rec->source = source;
        rec->partition = m->partition;
        rec->offset = m->offset;
        return 0;
}

/* Commits the offsets after the batch's messages and frees them. Issued
 * only after the writes are acknowledged, and asynchronous: waiting for
 * the coordinator's answer would add a round trip to every batch's
 * latency. A lost or failed commit means redelivery, which the guards
 * absorb (read-models.md "Idempotence and recovery"). */
static void commit_batch(rd_kafka_t *consumer, const char *which,
                         rd_kafka_message_t **rkms, size_t n) {
        rd_kafka_topic_partition_list_t *offsets =
            rd_kafka_topic_partition_list_new(8);
        size_t i;

        for (i = 0; i < n; i++) {
                const char *t = rd_kafka_topic_name(rkms[i]->rkt);
                rd_kafka_topic_partition_t *e =
                    rd_kafka_topic_partition_list_find(offsets, t,
                                                       rkms[i]->partition);
                if (!e)
                        e = rd_kafka_topic_partition_list_add(
                            offsets, t, rkms[i]->partition);
                e->offset = rkms[i]->offset + 1;
                rd_kafka_message_destroy(rkms[i]);
        }
        if (rd_kafka_commit(consumer, offsets, 1))
                ORDO_LOG(WARN, which, "msg=\"offset commit failed\"");
        rd_kafka_topic_partition_list_destroy(offsets);
}

ordo_err_t ordo_projection_run(const ordo_stage_t *stage,
                               const ordo_config_t *conf,
                               volatile sig_atomic_t *stop, char *errstr,
                               size_t errstr_size) {
        const char *which = stage->name;
        store_t store;
        char group[256], name[256];
        rd_kafka_t *consumer = NULL;
        rd_kafka_topic_partition_list_t *topics;
        ordo_codec_t *codec = NULL;
        size_t max = (size_t)ordo_config_get_int(conf, "batch.max"), n, i;
        int wait_ms = (int)ordo_config_get_int(conf, "batch.ms");
        rd_kafka_message_t **rkms = NULL;
        ordo_msg_t *msgs = NULL;
        ordo_event_rec_t *recs = NULL;
        int64_t applied = 0, skipped = 0, last_log = ordo_monotonic_ms();
        ordo_err_t err = ORDO_ERR_OK;

        memset(&store, 0, sizeof(store));
        store.which = which;
        if (max < 1)
                max = 1;
        /* Wait for the store rather than fail: it may start after us. */
        while ((err = ordo_store_open(&store.store, which, conf, NULL, errstr,
                                      errstr_size))) {
                ORDO_LOG(WARN, which,
                         "msg=\"store not reachable, retrying\" error=\"%s\"",
                         errstr);
                if (*stop)
                        return err;
                sleep(1);
        }
        rkms = calloc(max, sizeof(*rkms));
        msgs = calloc(max, sizeof(*msgs));
        recs = calloc(max, sizeof(*recs));
        store.msg_of = calloc(max, sizeof(*store.msg_of));
        store.rkms = rkms;
        store.recs = recs;
        ordo_topic_name(conf, ORDO_TOPIC_DEAD_LETTERS, store.dead,
                        sizeof(store.dead));
        store.dlq = ordo_kafka_producer_new(conf, NULL, NULL, NULL, errstr,
                                            errstr_size);
        codec = ordo_codec_new(errstr, errstr_size);
        ordo_kafka_group(conf, stage->group, group, sizeof(group));
        consumer = ordo_kafka_consumer_new(conf, group, NULL, NULL, errstr,
                                           errstr_size);
        store.consumer = consumer;
        if (!rkms || !msgs || !recs || !store.msg_of) {
                snprintf(errstr, errstr_size, "out of memory");
                err = ORDO_ERR_NOMEM;
                goto done;
        }
        if (!store.dlq || !codec || !consumer) {
                err = ORDO_ERR_CONFIG;
                goto done;
        }
        topics = rd_kafka_topic_partition_list_new(stage->n_inputs);
        for (i = 0; i < (size_t)stage->n_inputs; i++) {
                ordo_topic_name(conf, stage->inputs[i], name, sizeof(name));
                rd_kafka_topic_partition_list_add(topics, name,
                                                  RD_KAFKA_PARTITION_UA);
        }
        if (rd_kafka_subscribe(consumer, topics)) {
                snprintf(errstr, errstr_size, "cannot subscribe");
                err = ORDO_ERR_KAFKA;
        }
        rd_kafka_topic_partition_list_destroy(topics);
        if (err)
                goto done;
        ORDO_LOG(INFO, which, "msg=started group=%s", group);

        while (!*stop) {
                size_t k = 0,
                       plen = strlen(ordo_config_get(conf, "topic.prefix"));
                ordo_metrics_poll(which, consumer);
                n = poll_batch(consumer, rkms, max, wait_ms);
                for (i = 0; i < n; i++) {
                        const char *t = rd_kafka_topic_name(rkms[i]->rkt);
                        if (ordo_decode_event(codec, rkms[i],
                                              strlen(t) > plen ? t + plen : t,
                                              which, &msgs[k], &recs[k])) {
                                skipped++;
                                continue;
                        }
                        store.msg_of[k++] = i;
                }
                if (k && apply_batch(&store, recs, k, stop)) {
                        /* Stopping mid-outage: nothing committed, the
                         * batch comes again on restart. */
                        snprintf(errstr, errstr_size,
                                 "stopped while the store was unavailable");
                        for (i = 0; i < n; i++)
                                rd_kafka_message_destroy(rkms[i]);
                        break;
                }
                if (n)
                        commit_batch(consumer, which, rkms, n);
                for (i = 0; i < k; i++)
                        ordo_metrics_applied(which, msgs[i].meta.ts_ms);
                applied += (int64_t)k;
                if (ordo_monotonic_ms() - last_log >= 10000) {
                        ORDO_LOG(INFO, which,
                                 "msg=progress applied=%lld skipped=%lld "
                                 "parked=%lld",
                                 (long long)applied, (long long)skipped,
                                 (long long)store.parked);
                        last_log = ordo_monotonic_ms();
                }
        }
        ORDO_LOG(
            INFO, which, "msg=stopped applied=%lld skipped=%lld parked=%lld",
            (long long)applied, (long long)skipped, (long long)store.parked);
done:
        if (consumer) {
                rd_kafka_consumer_close(consumer);
                rd_kafka_destroy(consumer);
        }
        ordo_codec_destroy(codec);
        ordo_store_close(&store.store);
        if (store.dlq) {
                rd_kafka_flush(store.dlq, 10000);
                rd_kafka_destroy(store.dlq);
        }
        free(store.msg_of);
        free(rkms);
        free(msgs);
        free(recs);
        return err;
}
