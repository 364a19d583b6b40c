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
#include "projection.h"
#include "clock.h"

#define BACKOFF_MAX_MS 5000

static const ordo_topic_t event_topics[] = { ORDO_TOPIC_ACTIVITY_EVENTS,
                                             ORDO_TOPIC_ORDER_EVENTS,
                                             ORDO_TOPIC_REFERRAL_EVENTS,
                                             ORDO_TOPIC_COMMISSION_EVENTS };
#define N_EVENT_TOPICS (sizeof(event_topics) / sizeof(event_topics[0]))

typedef struct {
        const char *which;
        ordo_store_t store;
        /* Parking (project.h): the batch's messages, and for each record
         * the index of its message. */
        rd_kafka_t *dlq;
        char dead[256];
        rd_kafka_message_t **rkms;
        const ordo_event_rec_t *recs;
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

/* Retries the batch until it is acknowledged (or parked, event by event)
 * or we are asked to stop. The consumer is paused meanwhile, and polled
 * so the group keeps us. */
static ordo_err_t apply_until_done(store_t *s, rd_kafka_t *consumer,
                                   const ordo_event_rec_t *recs, size_t n,
                                   volatile sig_atomic_t *stop) {
        char errstr[512];
        int backoff = 100, paused = 0;
        size_t off = 0, settled;
        ordo_err_t err;
        rd_kafka_topic_partition_list_t *a = NULL;

        while ((err = ordo_store_apply_parking(&s->store, recs + off, n - off,
                                               park, s, &settled, errstr,
                                               sizeof(errstr)))) {
                off += settled;
                if (!paused && !rd_kafka_assignment(consumer, &a)) {
                        rd_kafka_pause_partitions(consumer, a);
                        paused = 1;
                }
                ORDO_LOG(WARN, s->which,
                         "msg=\"store unavailable, retrying\" backoff_ms=%d "
                         "error=\"%s\"",
                         backoff, errstr);
                if (*stop)
                        break;
                usleep((useconds_t)backoff * 1000);
                rd_kafka_consumer_poll(consumer, 0);
                backoff =
                    backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        }
        if (paused) {
                rd_kafka_resume_partitions(consumer, a);
                if (!err)
                        ORDO_LOG(INFO, s->which, "msg=\"store back\"");
        }
        if (a)
                rd_kafka_topic_partition_list_destroy(a);
        /* The dead letters are written before the offsets that skip their
         * events are committed. */
        if (!err && s->parked_batch &&
            rd_kafka_flush(s->dlq, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
                ORDO_LOG(ERROR, s->which,
                         "msg=\"dead letters not confirmed; the log lines "
                         "above name the parked events\"");
        s->parked_batch = 0;
        return err;
}

ordo_err_t ordo_projection_run(const char *which, const ordo_config_t *conf,
                               volatile sig_atomic_t *stop, char *errstr,
                               size_t errstr_size) {
        store_t store;
        char group[256], name[256], why[256];
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
        snprintf(group, sizeof(group), "%sproject.%s",
                 ordo_config_get(conf, "group.prefix"), which);
        consumer = ordo_kafka_consumer_new(conf, group, NULL, NULL, errstr,
                                           errstr_size);
        if (!rkms || !msgs || !recs || !store.msg_of) {
                snprintf(errstr, errstr_size, "out of memory");
                err = ORDO_ERR_NOMEM;
                goto done;
        }
        if (!store.dlq || !codec || !consumer) {
                err = ORDO_ERR_CONFIG;
                goto done;
        }
        topics = rd_kafka_topic_partition_list_new(N_EVENT_TOPICS);
        for (i = 0; i < N_EVENT_TOPICS; i++) {
                ordo_topic_name(conf, event_topics[i], name, sizeof(name));
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
                int64_t deadline = ordo_monotonic_ms() + wait_ms;
                size_t k = 0;
                rd_kafka_topic_partition_list_t *offsets;
                n = 0;
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
                if (!n)
                        continue;
                for (i = 0; i < n; i++) {
                        const char *t = rd_kafka_topic_name(rkms[i]->rkt);
                        size_t plen =
                            strlen(ordo_config_get(conf, "topic.prefix"));
                        if (!rkms[i]->payload ||
                            ordo_codec_decode(codec, rkms[i]->payload,
                                              rkms[i]->len, &msgs[k], why,
                                              sizeof(why))) {
                                /* Only processors write these topics, so
                                 * this is a foreign writer: skip, loudly. */
                                ORDO_LOG(ERROR, which,
                                         "msg=\"undecodable event skipped\" "
                                         "topic=%s partition=%d offset=%lld "
                                         "reason=\"%s\"",
                                         t, (int)rkms[i]->partition,
                                         (long long)rkms[i]->offset, why);
                                skipped++;
                                continue;
                        }
                        recs[k].msg = &msgs[k];
                        recs[k].source = strlen(t) > plen ? t + plen : t;
                        recs[k].partition = rkms[i]->partition;
                        recs[k].offset = rkms[i]->offset;
                        store.msg_of[k] = i;
                        k++;
                }
                err = k ? apply_until_done(&store, consumer, recs, k, stop)
                        : ORDO_ERR_OK;
                if (err) {
                        /* Stopping mid-outage: nothing committed, the
                         * batch comes again on restart. */
                        snprintf(errstr, errstr_size,
                                 "stopped while the store was unavailable");
                        err = ORDO_ERR_OK;
                        for (i = 0; i < n; i++)
                                rd_kafka_message_destroy(rkms[i]);
                        break;
                }
                offsets = rd_kafka_topic_partition_list_new(8);
                for (i = 0; i < n; i++) {
                        const char *t = rd_kafka_topic_name(rkms[i]->rkt);
                        rd_kafka_topic_partition_t *e =
                            rd_kafka_topic_partition_list_find(
                                offsets, t, rkms[i]->partition);
                        if (!e)
                                e = rd_kafka_topic_partition_list_add(
                                    offsets, t, rkms[i]->partition);
                        e->offset = rkms[i]->offset + 1;
                        rd_kafka_message_destroy(rkms[i]);
                }
                /* Issued only after the writes are acknowledged, and
                 * asynchronous: waiting for the coordinator's answer would
                 * add a round trip to every batch's latency. A lost or
                 * failed commit means redelivery, which the guards absorb
                 * (read-models.md "Idempotence and recovery"). */
                if (rd_kafka_commit(consumer, offsets, 1))
                        ORDO_LOG(WARN, which, "msg=\"offset commit failed\"");
                rd_kafka_topic_partition_list_destroy(offsets);
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
