/*
 * ordo rebuild: the read models again, from offset 0 of the event log,
 * into a database or key prefix of their own; then the switch.
 *
 * Workload: every event ever written, once, as fast as the store takes
 * it. One assign-only consumer over all partitions of the four event
 * topics, batches of projection.batch.max events, the live projection's
 * adapters (so the result is what the live projection would have
 * written). Each partition is read to the end it had at the start, so
 * the rebuild finishes even while the engine keeps writing.
 *
 * The switch (docs/read-models.md, "Rebuild and switch"): the rebuild
 * commits the offsets it reached to a new consumer group; `ordo project
 * mongo|redis -X mongo.db=NAME -X group.prefix=P` then continues from
 * exactly there, so nothing written during the rebuild is missed and
 * nothing is applied twice (the guards would absorb it anyway). The old
 * target stays until dropped.
 */
#include "rebuild.h"

#include "project.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "commands.h"
#include "kafka.h"
#include "kafka_io.h"
#include "log.h"
#include "projection.h"
#include "stages.h"
#include "clock.h"

/* A projection stage's inputs: every event topic (stages.h). */
#define N_TOPICS ORDO_STAGE_INPUTS_MAX

typedef struct {
        char name[256];
        int np;
        int64_t *end;  /* stable end at the start, per partition */
        int64_t *next; /* next offset to read (the offset to commit) */
} topic_t;

/* Whether `name` may be a rebuild's target or a drop's: never the live
 * one, nor anything whose keys could be the live read model's, nor a
 * database that is not a plain name. 0, or -1 with the reason. */
ordo_err_t ordo__rebuild_target_check(const char *which,
                                      const ordo_config_t *conf,
                                      const char *name, char *errstr,
                                      size_t errstr_size) {
        size_t len = name ? strlen(name) : 0;

        if (ordo_store_name_check(which, name ? name : "", errstr, errstr_size))
                return ORDO_ERR_INVALID_ARG;
        if (!strcmp(which, "redis")) {
                const char *live = ordo_config_get(conf, "redis.prefix");
                size_t ll = strlen(live);
                if (!strncmp(live, name, len))
                        snprintf(errstr, errstr_size,
                                 "\"%s\" is the live prefix \"%s\" or a "
                                 "prefix of it: its keys include the live "
                                 "read model",
                                 name, live);
                else if (!strncmp(name, live, ll))
                        snprintf(errstr, errstr_size,
                                 "\"%s\" starts with the live prefix \"%s\": "
                                 "its keys are among the live read model's",
                                 name, live);
                else
                        return ORDO_ERR_OK;
                return ORDO_ERR_INVALID_ARG;
        }
        if (!strcmp(name, ordo_config_get(conf, "mongo.db")))
                snprintf(errstr, errstr_size,
                         "\"%s\" is the live database (mongo.db)", name);
        else if (!strcmp(name, "admin") || !strcmp(name, "local") ||
                 !strcmp(name, "config"))
                snprintf(errstr, errstr_size, "\"%s\" is a system database",
                         name);
        else
                return ORDO_ERR_OK;
        return ORDO_ERR_INVALID_ARG;
}

/* A target that a running projection writes to (its heartbeat, store.h)
 * is refused: dropped, it would be refilled at once (decision 0029), the
 * drop undone and the box loaded by it. */
ordo_err_t ordo_rebuild_drop(const char *which, const ordo_config_t *conf,
                             const char *into, char *errstr,
                             size_t errstr_size) {
        ordo_err_t err =
            ordo__rebuild_target_check(which, conf, into, errstr, errstr_size);
        int64_t left;
        if (err)
                return err;
        left = ordo_store_alive_left(which, conf, into, errstr, errstr_size);
        if (left < 0)
                return ORDO_ERR_UNAVAILABLE;
        if (left > 0) {
                snprintf(errstr, errstr_size,
                         "\"%s\" is written by a running `ordo project %s` "
                         "(or `ordo run`, or `ordo rebuild` into it): stop "
                         "it first, or it refills what is dropped (it "
                         "renews its heartbeat in the target every %d s, "
                         "and removes it when it stops; killed, it would "
                         "end %lld s from now)",
                         into, which, ORDO_ALIVE_RENEW_MS / 1000,
                         (long long)(left + 999) / 1000);
                return ORDO_ERR_INVALID_ARG;
        }
        return ordo_store_drop(which, conf, into, errstr, errstr_size);
}

/* An event the store refuses for good: logged and counted; the rebuild
 * goes on (the live projection parked the same event). */
static void park(void *opaque, const ordo_event_rec_t *rec, ordo_err_t err,
                 const char *reason) {
        ordo_rebuild_stats_t *st = opaque;
        char q[1024];
        ORDO_LOG(ERROR, "rebuild",
                 "msg=\"event refused by the store, parked\" topic=%s "
                 "partition=%d offset=%lld type=%s err=%s reason=\"%s\"",
                 rec->source, (int)rec->partition, (long long)rec->offset,
                 ordo_msg_type_name(rec->msg->type), ordo_err_name(err),
                 ordo_log_quote(q, sizeof(q), reason));
        st->parked++;
}

/* The group must be new: committing into a live group would move a
 * running projection. 1 if it has offsets on our topics, -1 on error. */
static int group_has_offsets(rd_kafka_t *g, topic_t *t) {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(64);
        int i, p, found = 0;
        for (i = 0; i < N_TOPICS; i++)
                for (p = 0; p < t[i].np; p++)
                        rd_kafka_topic_partition_list_add(l, t[i].name, p);
        if (rd_kafka_committed(g, l, 10000))
                found = -1;
        for (i = 0; i < l->cnt && !found; i++)
                if (l->elems[i].offset >= 0)
                        found = 1;
        rd_kafka_topic_partition_list_destroy(l);
        return found;
}

static ordo_err_t commit_reached(rd_kafka_t *g, topic_t *t, char *errstr,
                                 size_t errstr_size) {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(64);
        rd_kafka_resp_err_t err;
        int i, p;
        for (i = 0; i < N_TOPICS; i++)
                for (p = 0; p < t[i].np; p++)
                        rd_kafka_topic_partition_list_add(l, t[i].name, p)
                            ->offset = t[i].next[p];
        err = rd_kafka_commit(g, l, 0);
        rd_kafka_topic_partition_list_destroy(l);
        if (err) {
                snprintf(errstr, errstr_size, "committing offsets: %s",
                         rd_kafka_err2str(err));
                return ORDO_ERR_KAFKA;
        }
        return ORDO_ERR_OK;
}

static topic_t *find_topic(topic_t *t, const char *name) {
        int i;
        for (i = 0; i < N_TOPICS; i++)
                if (!strcmp(t[i].name, name))
                        return &t[i];
        return NULL;
}

static void progress(const char *which, const char *into,
                     const ordo_rebuild_stats_t *s, int64_t t0) {
        int64_t ms = ordo_monotonic_ms() - t0;
        fprintf(stderr,
                "ordo rebuild: %s into %s - %lld of ~%lld events, %.0f "
                "events/s\n",
                which, into, (long long)s->applied, (long long)s->total,
                ms > 0 ? (double)s->applied * 1000.0 / (double)ms : 0.0);
}

/* One rebuild: the consumer fixed at the ends of the start, the batch
 * being read, and the store it goes to. */
typedef struct {
        const char *which, *into;
        const ordo_stage_t *stage;
        topic_t t[N_TOPICS];
        ordo_store_t store;
        rd_kafka_t *rk, *wm, *group;
        ordo_codec_t *codec;
        size_t max, n; /* projection.batch.max; events in the batch */
        rd_kafka_message_t **rkms; /* the batch as read */
        ordo_msg_t *msgs;
        ordo_event_rec_t *recs;
        int open; /* partitions not yet read to their end */
        ordo_rebuild_stats_t *stats;
        volatile sig_atomic_t *stop;
        int64_t t0;        /* when the run started (ordo_monotonic_ms) */
        char alive_id[96]; /* its heartbeat's name in the target... */
        int alive_ours;    /* ...removed at the end (not the caller's) */
        int64_t alive_ms;  /* ...last renewed (0: none written) */
        int store_failed;  /* the last call to the store failed */
} rebuild_t;

/* The stage exists, the target is a new one. */
static ordo_err_t check_target(rebuild_t *rb, const ordo_config_t *conf,
                               char *errstr, size_t errstr_size) {
        char why[300];
        int used;
        if (!rb->stage || rb->stage->n_inputs != N_TOPICS) {
                snprintf(errstr, errstr_size, "mongo or redis, not \"%s\"",
                         rb->which);
                return ORDO_ERR_INVALID_ARG;
        }
        if (ordo__rebuild_target_check(rb->which, conf, rb->into, why,
                                       sizeof(why))) {
                snprintf(errstr, errstr_size,
                         "--into: %s; rebuild into a new name (not the live "
                         "target), then switch",
                         why);
                return ORDO_ERR_INVALID_ARG;
        }
        used = ordo_store_target_used(rb->which, conf, rb->into, errstr,
                                      errstr_size);
        if (used > 0)
                snprintf(errstr, errstr_size,
                         "%s \"%s\" already holds read-model data; drop it "
                         "first or choose another name",
                         !strcmp(rb->which, "mongo") ? "database" : "prefix",
                         rb->into);
        return !used      ? ORDO_ERR_OK
               : used > 0 ? ORDO_ERR_INVALID_ARG
                          : ORDO_ERR_UNAVAILABLE;
}

/* The batch, the codec, the consumers and the store. */
static ordo_err_t open_all(rebuild_t *rb, const ordo_config_t *conf,
                           const char *commit_group, char *errstr,
                           size_t errstr_size) {
        rb->max = (size_t)ordo_config_get_int(conf, "projection.batch.max");
        if (rb->max < 1)
                rb->max = 1;
        rb->rkms = calloc(rb->max, sizeof(*rb->rkms));
        rb->msgs = calloc(rb->max, sizeof(*rb->msgs));
        rb->recs = calloc(rb->max, sizeof(*rb->recs));
        rb->codec = ordo_codec_new(errstr, errstr_size);
        rb->rk = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                         errstr_size);
        if (rb->rk)
                rb->wm =
                    ordo_kafka_watermark_client_new(conf, errstr, errstr_size);
        if (!rb->rkms || !rb->msgs || !rb->recs) {
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_NOMEM;
        }
        if (!rb->codec || !rb->rk || !rb->wm)
                return ORDO_ERR_CONFIG;
        if (commit_group &&
            !(rb->group = ordo_kafka_consumer_new(conf, commit_group, NULL,
                                                  NULL, errstr, errstr_size)))
                return ORDO_ERR_CONFIG;
        return ORDO_ERR_OK;
}

/* A heartbeat in the target, as a live projection keeps one (store.h):
 * a drop by hand of a target still being rebuilt is refused, where it
 * would leave the rebuild writing into nothing and committing offsets
 * for a read model that is not there. ttl_ms 0 removes it. */
static void keep_alive(rebuild_t *rb, int64_t ttl_ms) {
        char errstr[256];
        if (ttl_ms && !ordo_store_alive_due(rb->alive_ms))
                return;
        rb->store_failed = ordo_store_alive(&rb->store, rb->alive_id, ttl_ms,
                                            errstr, sizeof(errstr)) != 0;
        rb->alive_ms = ordo_monotonic_ms();
}

/* MongoDB's answers come between whole bulk writes: the heartbeat is
 * renewed there too, through a buffered rebuild's writing of its folded
 * documents (minutes, in one flush). Not Redis's: they come within a
 * pipeline, where no other command may go. */
static void answered(void *opaque) {
        rebuild_t *rb = opaque;
        rb->store_failed = 0;
        keep_alive(rb, ORDO_ALIVE_TTL_MS);
}

/* The target, once everything else is known to be right: opening it
 * creates MongoDB's collections (their indexes), which a refused
 * rebuild must not leave behind. */
static ordo_err_t open_target(rebuild_t *rb, const ordo_config_t *conf,
                              char *errstr, size_t errstr_size) {
        ordo_err_t err = ordo_store_open(&rb->store, rb->which, conf, rb->into,
                                         errstr, errstr_size);
        if (err)
                return err == ORDO_ERR_CONFIG ? err : ORDO_ERR_INVALID_ARG;
        keep_alive(rb, ORDO_ALIVE_TTL_MS);
        if (!strcmp(rb->which, "mongo"))
                ordo_store_on_answer(&rb->store, answered, rb);
        /* Checked new, ours alone, and read by nobody before the switch:
         * MongoDB folds the whole log in memory and writes each document
         * once (0021), Redis skips guards it need not read (0022). */
        return ordo_store_fresh_target(&rb->store, rb->stop);
}

/* Every partition of topic t from offset 0 (a partition that lost its
 * first records is refused) to its stable end now (the end it has, once
 * no transaction is open below it), added to assign. */
static ordo_err_t fix_topic_ends(rebuild_t *rb, topic_t *t,
                                 rd_kafka_topic_partition_list_t *assign,
                                 char *errstr, size_t errstr_size) {
        const ordo_stable_end_opts_t so = { "rebuild", 0, 120000, rb->stop };
        int64_t lo, hi;
        ordo_err_t err;
        int p;
        t->np = ordo_kafka_partitions(rb->rk, t->name, errstr, errstr_size);
        if (t->np < 0)
                return ORDO_ERR_KAFKA;
        t->end = calloc((size_t)t->np + 1, sizeof(int64_t));
        t->next = calloc((size_t)t->np + 1, sizeof(int64_t));
        if (!t->end || !t->next)
                return ORDO_ERR_NOMEM;
        for (p = 0; p < t->np; p++) {
                if ((err = ordo_kafka_stable_end(rb->rk, rb->wm, t->name, p,
                                                 &so, &lo, &hi, errstr,
                                                 errstr_size)) ||
                    (err = ordo_kafka_check_start(t->name, p, lo, 0, errstr,
                                                  errstr_size)))
                        return err;
                t->end[p] = hi;
                t->next[p] = hi; /* unless read below */
                if (hi > lo) {
                        t->next[p] = lo;
                        rd_kafka_topic_partition_list_add(assign, t->name, p)
                            ->offset = lo;
                        rb->stats->total += hi - lo;
                        rb->open++;
                }
        }
        return ORDO_ERR_OK;
}

/* The ends, fixed now: what arrives later is the live projection's, from
 * the offsets committed at the end. Assigns the consumer to them once the
 * commit group is known to be new. */
static ordo_err_t assign_to_ends(rebuild_t *rb, const ordo_config_t *conf,
                                 const char *commit_group, char *errstr,
                                 size_t errstr_size) {
        rd_kafka_topic_partition_list_t *assign =
            rd_kafka_topic_partition_list_new(64);
        ordo_err_t err = ORDO_ERR_OK;
        int i;
        for (i = 0; i < N_TOPICS && !err; i++) {
                ordo_topic_name(conf, rb->stage->inputs[i], rb->t[i].name,
                                sizeof(rb->t[i].name));
                err =
                    fix_topic_ends(rb, &rb->t[i], assign, errstr, errstr_size);
        }
        if (!err && rb->group) {
                int has = group_has_offsets(rb->group, rb->t);
                if (has) {
                        snprintf(errstr, errstr_size,
                                 has > 0 ? "consumer group \"%s\" already "
                                           "has offsets (a rebuild into this "
                                           "name before, or a projection): "
                                           "give --group-prefix a new one, "
                                           "or delete that group once "
                                           "nothing uses it "
                                           "(kafka-consumer-groups --delete "
                                           "--group ...); the target was not "
                                           "touched"
                                         : "cannot read the offsets of "
                                           "consumer group \"%s\"",
                                 commit_group);
                        err = has > 0 ? ORDO_ERR_INVALID_ARG : ORDO_ERR_KAFKA;
                }
        }
        if (!err && rb->open)
                rd_kafka_assign(rb->rk, assign);
        rd_kafka_topic_partition_list_destroy(assign);
        return err;
}

/* A partition read to its end: paused, and its end is the offset to
 * commit (markers may sit between the last message and the end). */
static void end_partition(rebuild_t *rb, topic_t *tp, int32_t part) {
        rd_kafka_topic_partition_list_t *one =
            rd_kafka_topic_partition_list_new(1);
        tp->next[part] = tp->end[part];
        rd_kafka_topic_partition_list_add(one, tp->name, part);
        rd_kafka_pause_partitions(rb->rk, one);
        rd_kafka_topic_partition_list_destroy(one);
        rb->open--;
}

/* Read and decode: one message into the batch (or the end of its
 * partition); consumes m. */
static void take_message(rebuild_t *rb, rd_kafka_message_t *m) {
        topic_t *tp =
            m->rkt ? find_topic(rb->t, rd_kafka_topic_name(m->rkt)) : NULL;
        int32_t part = m->partition;
        int done_part = 0;
        if (!tp || part < 0 || part >= tp->np ||
            tp->next[part] >= tp->end[part]) {
                rd_kafka_message_destroy(m);
                return;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* Short of the end: a transaction still open at the
                 * start; wait for it. */
                done_part = m->offset >= tp->end[part];
        } else if (m->offset < tp->end[part]) {
                char why[256];
                if (ordo_decode_event(
                        rb->codec, m,
                        ordo_topic_short(rb->stage->inputs[tp - rb->t]),
                        &rb->msgs[rb->n], &rb->recs[rb->n], why, sizeof(why))) {
                        /* the live projection sent it to dead-letters */
                        ORDO_LOG(ERROR, "rebuild",
                                 "msg=\"foreign event skipped\" "
                                 "topic=%s partition=%d offset=%lld "
                                 "reason=\"%s\"",
                                 rd_kafka_topic_name(m->rkt), (int)part,
                                 (long long)m->offset, why);
                        rb->stats->skipped++;
                } else {
                        rb->n++;
                }
                tp->next[part] = m->offset + 1;
                if (m->offset + 1 >= tp->end[part])
                        done_part = 1;
        } else
                done_part = 1;
        if (done_part)
                end_partition(rb, tp, part);
        rd_kafka_message_destroy(m);
}

/* Apply: the batch to the store, through outages. */
static ordo_err_t apply_batch(rebuild_t *rb, char *errstr, size_t errstr_size) {
        ordo_err_t err;

        rb->stats->written |= rb->n > 0;
        err = ordo_store_apply_until_done(&rb->store, "rebuild", rb->recs,
                                          rb->n, park, rb->stats, NULL, NULL,
                                          rb->stop, errstr, errstr_size);
        rb->store_failed = err != ORDO_ERR_OK;
        if (!err) {
                rb->stats->applied += (int64_t)rb->n;
                rb->n = 0;
        }
        return err;
}

/* read -> decode -> apply until every partition is at its end: a batch
 * is what is waiting, up to projection.batch.max. */
static ordo_err_t pipeline(rebuild_t *rb, int progress_s, char *errstr,
                           size_t errstr_size) {
        /* ends of partitions in their place: one after messages of its
         * partition still in the batch must not end it before them */
        const ordo_kafka_batch_opts_t bo = { "rebuild", 1 };
        int64_t last = rb->t0;
        size_t i, got;
        int fatal;
        while (rb->open > 0) {
                if (*rb->stop) {
                        snprintf(errstr, errstr_size, "interrupted");
                        return ORDO_ERR_INTERRUPTED;
                }
                got =
                    ordo_kafka_consume_batch(rb->rk, &bo, rb->rkms, rb->max,
                                             500, &fatal, errstr, errstr_size);
                for (i = 0; i < got; i++)
                        take_message(rb, rb->rkms[i]);
                if (fatal)
                        return ORDO_ERR_KAFKA;
                if (rb->n) {
                        ordo_err_t err = apply_batch(rb, errstr, errstr_size);
                        if (err)
                                return err;
                }
                keep_alive(rb, ORDO_ALIVE_TTL_MS);
                if (progress_s > 0 &&
                    ordo_monotonic_ms() - last >= progress_s * 1000) {
                        progress(rb->which, rb->into, rb->stats, rb->t0);
                        last = ordo_monotonic_ms();
                }
        }
        return ORDO_ERR_OK;
}

/* What the store still holds in memory, written before the offsets are
 * committed; through outages, as apply_batch. */
static ordo_err_t flush_store(rebuild_t *rb, char *errstr, size_t errstr_size) {
        int backoff = 100;
        ordo_err_t err;

        if (!strcmp(rb->which, "mongo"))
                fprintf(stderr,
                        "ordo rebuild: %s into %s - %lld events folded, "
                        "writing the documents\n",
                        rb->which, rb->into, (long long)rb->stats->applied);
        while ((err = ordo_store_flush(&rb->store, errstr, errstr_size)) &&
               !ordo_store_err_permanent(err) && !*rb->stop) {
                ORDO_LOG(WARN, "rebuild",
                         "msg=\"store unavailable, retrying\" backoff_ms=%d "
                         "error=\"%s\"",
                         backoff, errstr);
                usleep((useconds_t)backoff * 1000);
                backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
        }
        rb->stats->parked += ordo_store_refused(&rb->store);
        rb->store_failed = err != ORDO_ERR_OK;
        return err;
}

static void close_all(rebuild_t *rb) {
        int i;
        /* not waiting on a store that failed: it ends by itself */
        if (rb->alive_ms && rb->alive_ours && !rb->store_failed)
                keep_alive(rb, 0);
        if (rb->rk)
                rd_kafka_destroy(rb->rk);
        if (rb->wm)
                rd_kafka_destroy(rb->wm);
        if (rb->group)
                rd_kafka_destroy(rb->group);
        ordo_codec_destroy(rb->codec);
        ordo_store_close(&rb->store);
        for (i = 0; i < N_TOPICS; i++) {
                free(rb->t[i].end);
                free(rb->t[i].next);
        }
        free(rb->rkms);
        free(rb->msgs);
        free(rb->recs);
}

ordo_err_t ordo_rebuild_run(const char *which, const ordo_config_t *conf,
                            const char *into, const char *commit_group,
                            int progress_s, const char *alive_id,
                            volatile sig_atomic_t *stop,
                            ordo_rebuild_stats_t *stats, char *errstr,
                            size_t errstr_size) {
        rebuild_t rb;
        ordo_err_t err;

        memset(stats, 0, sizeof(*stats));
        memset(&rb, 0, sizeof(rb));
        rb.which = which;
        rb.into = into;
        rb.stage = ordo_stage_find_kind(which, ORDO_STAGE_PROJECTION);
        rb.stats = stats;
        rb.stop = stop;
        rb.t0 = ordo_monotonic_ms();
        rb.alive_ours = !alive_id;
        if (alive_id)
                snprintf(rb.alive_id, sizeof(rb.alive_id), "%s", alive_id);
        else
                snprintf(rb.alive_id, sizeof(rb.alive_id), "rebuild.%ld",
                         (long)getpid());
        if ((err = check_target(&rb, conf, errstr, errstr_size)))
                return err;
        err = open_all(&rb, conf, commit_group, errstr, errstr_size);
        if (!err)
                err = assign_to_ends(&rb, conf, commit_group, errstr,
                                     errstr_size);
        if (!err)
                err = open_target(&rb, conf, errstr, errstr_size);
        if (!err)
                err = pipeline(&rb, progress_s, errstr, errstr_size);
        if (!err)
                err = flush_store(&rb, errstr, errstr_size);
        if (!err && rb.group)
                err = commit_reached(rb.group, rb.t, errstr, errstr_size);
        stats->elapsed_ms = ordo_monotonic_ms() - rb.t0;
        close_all(&rb);
        return err;
}

static void rebuild_help(void) {
        printf("\nBuilds the MongoDB (mongo) or Redis (redis) read models "
               "from offset 0 of the\nfour event topics into a new "
               "database or key prefix NAME, with the live\nprojection's "
               "code, up to the end every partition had at the start. It "
               "refuses\nNAME when it is the live target, overlaps it, or "
               "already holds data. The live\nread model is not touched: it "
               "keeps serving, and stays until you drop it.\n\n"
               "The switch: at the end the offsets reached are committed to "
               "a new consumer\ngroup, and the command prints how to run "
               "the projection on NAME from there:\n"
               "  ordo [-X K=V ...] project mongo -X mongo.db=NAME -X "
               "group.prefix=P\n"
               "(redis: -X redis.prefix=NAME), where the -X K=V are every "
               "setting this run\nhad that differs from the defaults (from "
               "-c FILE, ORDO_* or -X; a secret is\nprinted as its "
               "variable, -X K=\"${ORDO_K:?...}\": export it first). "
               "Events written during the "
               "rebuild are applied\nby that projection; then point front "
               "ends at NAME, stop the old projection,\nand drop the old "
               "target (`ordo -X mongo.db=NAME rebuild mongo --drop OLD`).\n\n"
               "  --into NAME          database (mongo) or key prefix "
               "(redis, e.g. ordo2:);\n"
               "                       default: the live one's name with "
               "_rb<UTC time>\n"
               "                       (mongo: ordo_rb20261206171500) or "
               "-rb<UTC time>:\n"
               "                       (redis: ordo-rb20261206171500:)\n"
               "  --group-prefix P     group.prefix of the new projection "
               "(default:\n"
               "                       <group.prefix><NAME>.); its group "
               "P project.<which>\n"
               "                       must be new\n"
               "  --no-commit          do not commit offsets (a copy for "
               "inspection only)\n"
               "  --drop NAME          delete a rebuilt or retired target "
               "instead: exactly\n"
               "                       one; a Redis prefix matched "
               "literally, never empty,\n"
               "                       a prefix of the live one or under "
               "it; a MongoDB\n"
               "                       database only if it holds nothing "
               "but ordo's\n"
               "                       read-model collections, of ordo's "
               "documents, and is\n"
               "                       not live; never a target a "
               "running projection\n"
               "                       or rebuild writes to (it would "
               "refill it): stop it\n"
               "                       first\n\n"
               "Exit status: 0 done, 1 failure, 2 usage. See "
               "docs/read-models.md.\n");
}

/* A value as one shell word. */
static void print_shell_word(const char *v) {
        const char *c;
        if (*v &&
            strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789_.,:/=@%+-") == strlen(v)) {
                fputs(v, stdout);
                return;
        }
        putchar('\'');
        for (c = v; *c; c++)
                if (*c == '\'')
                        fputs("'\\''", stdout);
                else
                        putchar(*c);
        putchar('\'');
}

/* A value `ordo config` would not show in full (one list of secrets:
 * ordo_config_redact): a password, or a URI that carries one. */
static int secret_key(const char *key, const char *value) {
        char buf[1024];
        const char *shown = ordo_config_redact(key, value, buf, sizeof(buf));
        return shown != value && strcmp(shown, value) != 0;
}

typedef struct {
        ordo_config_t *defaults;
        const char *skip1, *skip2;
        int secrets;
} flags_t;

/* Settings of this process alone, not of the data: the printed
 * projection runs beside the old one, whose addresses are taken (an
 * outside audit: run as printed, it stopped on metrics.listen's port). */
static int process_local(const char *key) {
        static const char *const keys[] = { "log.level", "metrics.listen",
                                            "dash.listen", "dash.scrape",
                                            "ingest.listen" };
        size_t i;
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                if (!strcmp(key, keys[i]))
                        return 1;
        return 0;
}

static void print_flag(void *opaque, const char *key, const char *value) {
        flags_t *f = opaque;
        const char *def = ordo_config_get(f->defaults, key);
        if ((def && !strcmp(def, value)) || !strcmp(key, f->skip1) ||
            !strcmp(key, f->skip2) || process_local(key))
                return;
        if (secret_key(key, value)) {
                /* Not printed, but not left out either: run as printed
                 * without ORDO_<KEY> set, the shell refuses it instead
                 * of the command quietly using the default. */
                char var[256];
                ordo_config_env_name(key, var, sizeof(var));
                printf(" -X %s=\"${%s:?set it to the %s of the rebuild}\"", key,
                       var, key);
                f->secrets++;
                return;
        }
        printf(" -X ");
        print_shell_word(key);
        putchar('=');
        print_shell_word(value);
}

/* "ordo" and every setting that differs from the defaults (from -c FILE,
 * ORDO_* variables or -X), as -X flags, so the printed command runs with
 * the configuration this one ran with (topics, brokers, stores); not the
 * process's own addresses (process_local). */
static int print_ordo_with_config(const ordo_config_t *conf, const char *skip1,
                                  const char *skip2) {
        flags_t f = { ordo_config_new(), skip1, skip2, 0 };
        fputs("ordo", stdout);
        if (f.defaults)
                ordo_config_foreach(conf, print_flag, &f);
        ordo_config_destroy(f.defaults);
        return f.secrets;
}

/* --into left out (DESIGN.md has it optional): a fresh name beside the
 * live one, by the time of the rebuild: "ordo" gives
 * "ordo_rb20261206171500", "ordo:" gives "ordo-rb20261206171500:". A
 * live name that is such a name already (after a switch) is replaced,
 * not extended. Checked as any --into is (ordo__rebuild_target_check). */
static void default_into(const ordo_config_t *conf, const char *which,
                         char *out, size_t size) {
        int redis = !strcmp(which, "redis");
        const char *live = ordo_config_get(conf, ordo_store_target_key(which));
        size_t n = strlen(live);
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
        if (redis && n && live[n - 1] == ':')
                n--;
        if (n >= 17 && live[n - 17] == (redis ? '-' : '_') &&
            !strncmp(live + n - 16, "rb", 2) &&
            strspn(live + n - 14, "0123456789") >= 14)
                n -= 17; /* "<base>-rb<14 digits>" */
        if (n > 40)
                n = 40;
        snprintf(out, size, redis ? "%.*s-rb%s:" : "%.*s_rb%s", (int)n, live,
                 ts);
}

int ordo_cmd_rebuild(ordo_config_t *conf, int argc, char **argv) {
        const char *which = NULL, *into = NULL, *gp = NULL, *drop = NULL;
        const char *key;
        char errstr[512], group[512], prefix[300], named[64];
        ordo_rebuild_stats_t st;
        int i, commit = 1, secrets, targets = 0;
        ordo_err_t err;

        if (ordo_wants_help(argc, argv)) {
                rebuild_help();
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--into")) {
                        if (!(into =
                                  ordo_option_value(argc, argv, &i, "rebuild")))
                                return 2;
                        targets++;
                } else if (!strcmp(argv[i], "--group-prefix")) {
                        if (!(gp =
                                  ordo_option_value(argc, argv, &i, "rebuild")))
                                return 2;
                } else if (!strcmp(argv[i], "--drop")) {
                        if (!(drop =
                                  ordo_option_value(argc, argv, &i, "rebuild")))
                                return 2;
                        targets++;
                } else if (!strcmp(argv[i], "--no-commit"))
                        commit = 0;
                else if (!which && (!strcmp(argv[i], "mongo") ||
                                    !strcmp(argv[i], "redis")))
                        which = argv[i];
                else {
                        fprintf(stderr,
                                "ordo rebuild: unexpected argument \"%s\" "
                                "(see ordo rebuild --help)\n",
                                argv[i]);
                        return 2;
                }
        }
        if (which && !targets) {
                default_into(conf, which, named, sizeof(named));
                into = named;
                targets++;
                if (ordo__rebuild_target_check(which, conf, into, errstr,
                                               sizeof(errstr))) {
                        /* a live prefix without a separator: "ordo" */
                        fprintf(stderr,
                                "ordo rebuild: no --into given, and the "
                                "default name \"%s\" will not do: %s; give "
                                "--into NAME\n",
                                into, errstr);
                        return 2;
                }
                fprintf(stderr, "ordo rebuild: into %s (no --into given)\n",
                        into);
        }
        if (!which || targets != 1) {
                fprintf(stderr, "ordo rebuild: usage: ordo rebuild "
                                "mongo|redis [--into NAME] | mongo|redis "
                                "--drop NAME (one target at most)\n");
                return 2;
        }
        if (into && !*into) {
                fprintf(stderr, "ordo rebuild: --into needs a NAME\n");
                return 2;
        }
        if (drop && (gp || !commit)) {
                fprintf(stderr,
                        "ordo rebuild: %s goes with --into, not "
                        "--drop\n",
                        gp ? "--group-prefix" : "--no-commit");
                return 2;
        }
        if (drop) {
                if ((err = ordo_rebuild_drop(which, conf, drop, errstr,
                                             sizeof(errstr)))) {
                        fprintf(stderr, "ordo rebuild: --drop: %s\n", errstr);
                        return 1;
                }
                printf("dropped %s %s\n", which, drop);
                return 0;
        }
        if (!gp) {
                snprintf(prefix, sizeof(prefix), "%.200s%.64s.",
                         ordo_config_get(conf, "group.prefix"), into);
                gp = prefix;
        }
        ordo_group_name(gp, ordo_stage_find(which)->group, group,
                        sizeof(group));
        err = ordo_rebuild_run(which, conf, into, commit ? group : NULL, 5,
                               NULL, &ordo_stop, &st, errstr, sizeof(errstr));
        if (err) {
                fprintf(stderr, "ordo rebuild: %s (after %lld events)\n",
                        errstr, (long long)st.applied);
                if (st.written) /* the target may hold part of it */
                        fprintf(stderr,
                                "ordo rebuild: %s %s is incomplete and no "
                                "offsets were committed; drop it (ordo rebuild "
                                "%s --drop %s, with this run's settings) "
                                "before rebuilding into it\n",
                                !strcmp(which, "mongo") ? "database" : "prefix",
                                into, which, into);
                return 1;
        }
        printf("rebuilt %s into %s: %lld events applied, %lld foreign "
               "skipped, %lld refused by the store (logged), %.1f s, %.0f "
               "events/s\n",
               which, into, (long long)st.applied, (long long)st.skipped,
               (long long)st.parked, (double)st.elapsed_ms / 1000.0,
               st.elapsed_ms > 0
                   ? (double)st.applied * 1000.0 / (double)st.elapsed_ms
                   : 0.0);
        key = ordo_store_target_key(which);
        if (!commit)
                return 0;
        printf("offsets reached committed to consumer group %s\nswitch: ",
               group);
        secrets = print_ordo_with_config(conf, key, "group.prefix");
        printf(" project %s -X %s=", which, key);
        print_shell_word(into);
        printf(" -X group.prefix=");
        print_shell_word(gp);
        printf("\nthen point front ends at %s, stop the old projection, and "
               "drop the old target:\n  ",
               into);
        print_ordo_with_config(conf, key, "group.prefix");
        printf(" -X %s=", key);
        print_shell_word(into);
        printf(" rebuild %s --drop ", which);
        print_shell_word(ordo_config_get(conf, key));
        putchar('\n');
        if (secrets)
                printf("(%d secret setting(s) of this run are not printed: "
                       "export the ORDO_* variables named above first)\n",
                       secrets);
        return 0;
}
