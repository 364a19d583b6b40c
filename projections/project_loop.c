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
#include "redis_conn.h"
#include "stages.h"
#include "clock.h"

#define BACKOFF_MAX_MS 5000

typedef struct {
        const char *which;
        ordo_store_t store;
} store_t;

ordo_err_t ordo_store_open(ordo_store_t *s, const char *which,
                           const ordo_config_t *conf, const char *target,
                           char *errstr, size_t errstr_size) {
        s->mongo = NULL;
        s->redis = NULL;
        if (!strcmp(which, "mongo"))
                s->mongo = ordo_mongo_proj_new(
                    ordo_config_get(conf, "mongo.uri"),
                    target ? target : ordo_config_get(conf, "mongo.db"), errstr,
                    errstr_size);
        else
                s->redis = ordo_redis_proj_new(
                    ordo_config_get(conf, "redis.host"),
                    (int)ordo_config_get_int(conf, "redis.port"),
                    target ? target : ordo_config_get(conf, "redis.prefix"),
                    ordo_config_get_int(conf, "redis.rejected.ttl.s"), errstr,
                    errstr_size);
        if (s->redis) {
                ordo_redis_login_t login;
                ordo_redis_login_from(conf, &login);
                ordo_redis_proj_set_login(s->redis, &login);
        }
        return s->mongo || s->redis ? ORDO_ERR_OK : ORDO_ERR_UNAVAILABLE;
}

ordo_err_t ordo_store_apply(ordo_store_t *s, const ordo_event_rec_t *recs,
                            size_t n, char *errstr, size_t errstr_size) {
        if (s->mongo)
                return ordo_mongo_proj_apply(s->mongo, recs, n, errstr,
                                             errstr_size);
        return ordo_redis_proj_apply(s->redis, recs, n, errstr, errstr_size);
}

void ordo_store_close(ordo_store_t *s) {
        ordo_mongo_proj_destroy(s->mongo);
        ordo_redis_proj_destroy(s->redis);
        s->mongo = NULL;
        s->redis = NULL;
}

/* Retries the batch until it is acknowledged or we are asked to stop.
 * The consumer is paused meanwhile, and polled so the group keeps us. */
static ordo_err_t apply_until_done(store_t *s, rd_kafka_t *consumer,
                                   const ordo_event_rec_t *recs, size_t n,
                                   volatile sig_atomic_t *stop) {
        char errstr[512];
        int backoff = 100, paused = 0;
        ordo_err_t err;
        rd_kafka_topic_partition_list_t *a = NULL;

        while ((err = ordo_store_apply(&s->store, recs, n, errstr,
                                       sizeof(errstr)))) {
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
        return err;
}

ordo_err_t ordo_projection_run(const ordo_stage_t *stage,
                               const ordo_config_t *conf,
                               volatile sig_atomic_t *stop, char *errstr,
                               size_t errstr_size) {
        const char *which = stage->name;
        store_t store = { which, { NULL, NULL } };
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
        codec = ordo_codec_new(errstr, errstr_size);
        ordo_kafka_group(conf, stage->group, group, sizeof(group));
        consumer = ordo_kafka_consumer_new(conf, group, NULL, NULL, errstr,
                                           errstr_size);
        if (!rkms || !msgs || !recs) {
                snprintf(errstr, errstr_size, "out of memory");
                err = ORDO_ERR_NOMEM;
                goto done;
        }
        if (!codec || !consumer) {
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
                int64_t deadline = ordo_monotonic_ms() + wait_ms;
                size_t k = 0;
                rd_kafka_topic_partition_list_t *offsets;
                ordo_metrics_poll(which, consumer);
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
                for (i = 0; i < k; i++)
                        ordo_metrics_applied(which, msgs[i].meta.ts_ms);
                applied += (int64_t)k;
                if (ordo_monotonic_ms() - last_log >= 10000) {
                        ORDO_LOG(INFO, which,
                                 "msg=progress applied=%lld skipped=%lld",
                                 (long long)applied, (long long)skipped);
                        last_log = ordo_monotonic_ms();
                }
        }
        ORDO_LOG(INFO, which, "msg=stopped applied=%lld skipped=%lld",
                 (long long)applied, (long long)skipped);
done:
        if (consumer) {
                rd_kafka_consumer_close(consumer);
                rd_kafka_destroy(consumer);
        }
        ordo_codec_destroy(codec);
        ordo_store_close(&store.store);
        free(rkms);
        free(msgs);
        free(recs);
        return err;
}
