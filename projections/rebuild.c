/*
 * ordo rebuild: the read models again, from offset 0 of the event log,
 * into a database or key prefix of their own; then the switch.
 *
 * Workload: every event ever written, once, as fast as the store takes
 * it. One assign-only consumer over all partitions of the four event
 * topics, batches of batch.max events, the live projection's adapters
 * (so the result is what the live projection would have written). Each
 * partition is read to the end it had at the start, so the rebuild
 * finishes even while the engine keeps writing.
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

#include <hiredis/hiredis.h>
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "commands.h"
#include "kafka.h"
#include "log.h"
#include "projection.h"
#include "redis_conn.h"
#include "stages.h"
#include "clock.h"

#define BACKOFF_MAX_MS 5000

/* A projection stage's inputs: every event topic (stages.h). */
#define N_TOPICS ORDO_STAGE_INPUTS_MAX

static const char *mongo_colls[] = { "activities", "orders", "commissions",
                                     "earnings", "referrals" };

typedef struct {
        char name[256];
        int np;
        int64_t *end;  /* high watermark at the start, per partition */
        int64_t *next; /* next offset to read (the offset to commit) */
} topic_t;

void ordo__redis_glob_escape(const char *s, char *out) {
        for (; *s; s++) {
                if (strchr("*?[]\\^", *s))
                        *out++ = '\\';
                *out++ = *s;
        }
        *out = '\0';
}

static int is_live(const char *which, const ordo_config_t *conf,
                   const char *into) {
        return !strcmp(into, ordo_config_get(conf, !strcmp(which, "mongo")
                                                       ? "mongo.db"
                                                       : "redis.prefix"));
}

/* Calls fn for every key matching pattern, in SCAN batches; stops early
 * when fn returns non-zero. -1 on a Redis error. */
static int scan_keys(redisContext *c, const char *pattern,
                     int (*fn)(redisContext *, redisReply *, void *),
                     void *opaque) {
        char cursor[32] = "0";
        do {
                redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000",
                                             cursor, pattern);
                int stop;
                if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                        if (r)
                                freeReplyObject(r);
                        return -1;
                }
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                stop = r->element[1]->elements && fn(c, r->element[1], opaque);
                freeReplyObject(r);
                if (stop)
                        return 0;
        } while (strcmp(cursor, "0"));
        return 0;
}

static int found_any(redisContext *c, redisReply *keys, void *opaque) {
        (void)c;
        (void)keys;
        *(int *)opaque = 1;
        return 1;
}

static int delete_keys(redisContext *c, redisReply *keys, void *opaque) {
        size_t i;
        for (i = 0; i < keys->elements; i++)
                redisAppendCommand(c, "UNLINK %b", keys->element[i]->str,
                                   (size_t)keys->element[i]->len);
        for (i = 0; i < keys->elements; i++) {
                redisReply *r = NULL;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                        *(int *)opaque = -1;
                        return 1;
                }
                freeReplyObject(r);
        }
        return 0;
}

/* For each pattern "<prefix>*" and "{<prefix>*" (guard keys): fn. */
static int redis_each_prefix_key(redisContext *c, const char *prefix,
                                 int (*fn)(redisContext *, redisReply *,
                                           void *),
                                 void *opaque) {
        char esc[160], pat[170];
        ordo__redis_glob_escape(prefix, esc);
        snprintf(pat, sizeof(pat), "%s*", esc);
        if (scan_keys(c, pat, fn, opaque))
                return -1;
        snprintf(pat, sizeof(pat), "{%s*", esc);
        return scan_keys(c, pat, fn, opaque);
}

static mongoc_client_t *mongo_connect(const ordo_config_t *conf, char *errstr,
                                      size_t errstr_size) {
        bson_error_t e;
        mongoc_uri_t *uri;
        mongoc_client_t *client;
        mongoc_init();
        uri = mongoc_uri_new_with_error(ordo_config_get(conf, "mongo.uri"), &e);
        if (!uri) {
                snprintf(errstr, errstr_size, "mongo: %s", e.message);
                return NULL;
        }
        if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
                mongoc_uri_set_option_as_int32(
                    uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 10000);
        client = mongoc_client_new_from_uri_with_error(uri, &e);
        mongoc_uri_destroy(uri);
        if (!client)
                snprintf(errstr, errstr_size, "mongo: %s", e.message);
        else
                mongoc_client_set_error_api(client, 2);
        return client;
}

/* 1 if the target holds read-model data, 0 if not, -1 on error. */
static int target_used(const char *which, const ordo_config_t *conf,
                       const char *into, char *errstr, size_t errstr_size) {
        int used = 0;
        size_t i;
        if (!strcmp(which, "redis")) {
                redisContext *c =
                    ordo_redis_connect(conf, 10, errstr, errstr_size);
                if (!c)
                        return -1;
                if (redis_each_prefix_key(c, into, found_any, &used)) {
                        snprintf(errstr, errstr_size, "redis SCAN failed");
                        used = -1;
                }
                redisFree(c);
                return used;
        }
        mongoc_client_t *client = mongo_connect(conf, errstr, errstr_size);
        if (!client)
                return -1;
        for (i = 0; i < 5 && !used; i++) {
                mongoc_collection_t *coll =
                    mongoc_client_get_collection(client, into, mongo_colls[i]);
                bson_t filter = BSON_INITIALIZER;
                bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
                bson_error_t e;
                int64_t n = mongoc_collection_count_documents(
                    coll, &filter, opts, NULL, NULL, &e);
                if (n < 0) {
                        snprintf(errstr, errstr_size, "mongo: %s", e.message);
                        used = -1;
                } else if (n > 0)
                        used = 1;
                bson_destroy(opts);
                mongoc_collection_destroy(coll);
        }
        mongoc_client_destroy(client);
        return used;
}

ordo_err_t ordo_rebuild_drop(const char *which, const ordo_config_t *conf,
                             const char *into, char *errstr,
                             size_t errstr_size) {
        ordo_err_t err = ORDO_ERR_OK;
        if (is_live(which, conf, into)) {
                snprintf(errstr, errstr_size,
                         "refusing to drop the live target \"%s\"", into);
                return ORDO_ERR_INVALID_ARG;
        }
        if (!strcmp(which, "redis")) {
                int bad = 0;
                redisContext *c =
                    ordo_redis_connect(conf, 10, errstr, errstr_size);
                if (!c)
                        return ORDO_ERR_UNAVAILABLE;
                if (redis_each_prefix_key(c, into, delete_keys, &bad) || bad) {
                        snprintf(errstr, errstr_size,
                                 "redis: deleting %s* failed", into);
                        err = ORDO_ERR_REDIS;
                }
                redisFree(c);
                return err;
        }
        mongoc_client_t *client = mongo_connect(conf, errstr, errstr_size);
        mongoc_database_t *db;
        bson_error_t e;
        if (!client)
                return ORDO_ERR_UNAVAILABLE;
        db = mongoc_client_get_database(client, into);
        if (!mongoc_database_drop(db, &e)) {
                snprintf(errstr, errstr_size, "mongo: dropping %s: %s", into,
                         e.message);
                err = ORDO_ERR_MONGO;
        }
        mongoc_database_destroy(db);
        mongoc_client_destroy(client);
        return err;
}

/* As the live projection: a store outage pauses, it never skips. */
static ordo_err_t apply_until_done(ordo_store_t *s,
                                   const ordo_event_rec_t *recs, size_t n,
                                   volatile sig_atomic_t *stop, char *errstr,
                                   size_t errstr_size) {
        int backoff = 100;
        ordo_err_t err;
        while ((err = ordo_store_apply(s, recs, n, errstr, errstr_size)) &&
               (err == ORDO_ERR_UNAVAILABLE || err == ORDO_ERR_MONGO ||
                err == ORDO_ERR_REDIS) &&
               !*stop) {
                ORDO_LOG(WARN, "rebuild",
                         "msg=\"store unavailable, retrying\" backoff_ms=%d "
                         "error=\"%s\"",
                         backoff, errstr);
                usleep((useconds_t)backoff * 1000);
                backoff =
                    backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        }
        return err;
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
                "ordo rebuild: %s into %s: %lld of ~%lld events, %.0f "
                "events/s\n",
                which, into, (long long)s->applied, (long long)s->total,
                ms > 0 ? (double)s->applied * 1000.0 / (double)ms : 0.0);
}

ordo_err_t ordo_rebuild_run(const char *which, const ordo_config_t *conf,
                            const char *into, const char *commit_group,
                            int progress_s, volatile sig_atomic_t *stop,
                            ordo_rebuild_stats_t *stats, char *errstr,
                            size_t errstr_size) {
        topic_t t[N_TOPICS];
        ordo_store_t store = { NULL, NULL };
        rd_kafka_t *rk = NULL, *group = NULL;
        rd_kafka_topic_partition_list_t *assign;
        ordo_codec_t *codec = NULL;
        size_t max = (size_t)ordo_config_get_int(conf, "batch.max"), n = 0;
        ordo_msg_t *msgs = NULL;
        ordo_event_rec_t *recs = NULL;
        int64_t t0 = ordo_monotonic_ms(), last = t0, lo, hi;
        int i, p, open = 0, used;
        ordo_err_t err = ORDO_ERR_OK;
        const ordo_stage_t *stage =
            ordo_stage_find_kind(which, ORDO_STAGE_PROJECTION);

        memset(stats, 0, sizeof(*stats));
        memset(t, 0, sizeof(t));
        if (!stage || stage->n_inputs != N_TOPICS) {
                snprintf(errstr, errstr_size, "mongo or redis, not \"%s\"",
                         which);
                return ORDO_ERR_INVALID_ARG;
        }
        if (!into || !*into || is_live(which, conf, into)) {
                snprintf(errstr, errstr_size,
                         "--into \"%s\" is the live target (%s); rebuild into "
                         "a new name, then switch",
                         into ? into : "",
                         !strcmp(which, "mongo") ? "mongo.db" : "redis.prefix");
                return ORDO_ERR_INVALID_ARG;
        }
        used = target_used(which, conf, into, errstr, errstr_size);
        if (used) {
                if (used > 0)
                        snprintf(errstr, errstr_size,
                                 "%s \"%s\" already holds read-model data; "
                                 "drop it first or choose another name",
                                 !strcmp(which, "mongo") ? "database"
                                                         : "prefix",
                                 into);
                return used > 0 ? ORDO_ERR_INVALID_ARG : ORDO_ERR_UNAVAILABLE;
        }
        if (max < 1)
                max = 1;
        msgs = calloc(max, sizeof(*msgs));
        recs = calloc(max, sizeof(*recs));
        codec = ordo_codec_new(errstr, errstr_size);
        rk = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                     errstr_size);
        if (!msgs || !recs) {
                snprintf(errstr, errstr_size, "out of memory");
                err = ORDO_ERR_NOMEM;
                goto done;
        }
        if (!codec || !rk) {
                err = ORDO_ERR_CONFIG;
                goto done;
        }
        if (commit_group &&
            !(group = ordo_kafka_consumer_new(conf, commit_group, NULL, NULL,
                                              errstr, errstr_size))) {
                err = ORDO_ERR_CONFIG;
                goto done;
        }
        if (ordo_store_open(&store, which, conf, into, errstr, errstr_size)) {
                err = ORDO_ERR_INVALID_ARG;
                goto done;
        }

        /* The ends, fixed now: what arrives later is the live
         * projection's, from the offsets committed below. */
        assign = rd_kafka_topic_partition_list_new(64);
        for (i = 0; i < N_TOPICS && !err; i++) {
                ordo_topic_name(conf, stage->inputs[i], t[i].name,
                                sizeof(t[i].name));
                t[i].np =
                    ordo_kafka_partitions(rk, t[i].name, errstr, errstr_size);
                if (t[i].np < 0) {
                        err = ORDO_ERR_KAFKA;
                        break;
                }
                t[i].end = calloc((size_t)t[i].np + 1, sizeof(int64_t));
                t[i].next = calloc((size_t)t[i].np + 1, sizeof(int64_t));
                if (!t[i].end || !t[i].next) {
                        err = ORDO_ERR_NOMEM;
                        break;
                }
                for (p = 0; p < t[i].np; p++) {
                        if (ordo_kafka_watermarks(rk, t[i].name, p, &lo, &hi,
                                                  errstr, errstr_size)) {
                                err = ORDO_ERR_KAFKA;
                                break;
                        }
                        t[i].end[p] = hi;
                        t[i].next[p] = hi; /* unless read below */
                        if (hi > lo) {
                                t[i].next[p] = lo;
                                rd_kafka_topic_partition_list_add(assign,
                                                                  t[i].name, p)
                                    ->offset = lo;
                                stats->total += hi - lo;
                                open++;
                        }
                }
        }
        if (!err && group) {
                int has = group_has_offsets(group, t);
                if (has) {
                        snprintf(errstr, errstr_size,
                                 has > 0 ? "consumer group \"%s\" already "
                                           "has offsets; choose a new one"
                                         : "cannot read the offsets of "
                                           "consumer group \"%s\"",
                                 commit_group);
                        err = has > 0 ? ORDO_ERR_INVALID_ARG : ORDO_ERR_KAFKA;
                }
        }
        if (!err && open)
                rd_kafka_assign(rk, assign);
        rd_kafka_topic_partition_list_destroy(assign);
        if (err)
                goto done;

        while (open > 0 || n > 0) {
                rd_kafka_message_t *m = NULL;
                int flush = n == max || (open == 0 && n > 0);
                if (*stop) {
                        snprintf(errstr, errstr_size, "interrupted");
                        err = ORDO_ERR_INTERRUPTED;
                        break;
                }
                if (!flush) {
                        m = rd_kafka_consumer_poll(rk, n ? 0 : 500);
                        if (!m && n)
                                flush = 1;
                }
                if (m) {
                        topic_t *tp =
                            m->rkt ? find_topic(t, rd_kafka_topic_name(m->rkt))
                                   : NULL;
                        int32_t part = m->partition;
                        int done_part = 0;
                        if (!tp || part < 0 || part >= tp->np ||
                            tp->next[part] >= tp->end[part]) {
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                /* Short of the end: a transaction still
                                 * open at the start; wait for it. */
                                done_part = m->offset >= tp->end[part];
                        } else if (m->err) {
                                ORDO_LOG(WARN, "rebuild",
                                         "msg=\"consume error\" error=\"%s\"",
                                         rd_kafka_message_errstr(m));
                        } else if (m->offset < tp->end[part]) {
                                char why[256];
                                if (!m->payload ||
                                    ordo_codec_decode(codec, m->payload, m->len,
                                                      &msgs[n], why,
                                                      sizeof(why))) {
                                        ORDO_LOG(ERROR, "rebuild",
                                                 "msg=\"undecodable event "
                                                 "skipped\" topic=%s "
                                                 "partition=%d offset=%lld",
                                                 tp->name, (int)part,
                                                 (long long)m->offset);
                                        stats->skipped++;
                                } else {
                                        recs[n].msg = &msgs[n];
                                        recs[n].source = ordo_topic_short(
                                            stage->inputs[tp - t]);
                                        recs[n].partition = part;
                                        recs[n].offset = m->offset;
                                        n++;
                                }
                                tp->next[part] = m->offset + 1;
                                if (m->offset + 1 >= tp->end[part])
                                        done_part = 1;
                        } else
                                done_part = 1;
                        if (done_part) {
                                /* Markers may sit between the last message
                                 * and the end: the end is the offset to
                                 * commit. */
                                rd_kafka_topic_partition_list_t *one =
                                    rd_kafka_topic_partition_list_new(1);
                                tp->next[part] = tp->end[part];
                                rd_kafka_topic_partition_list_add(one, tp->name,
                                                                  part);
                                rd_kafka_pause_partitions(rk, one);
                                rd_kafka_topic_partition_list_destroy(one);
                                open--;
                        }
                        rd_kafka_message_destroy(m);
                }
                if (flush && n) {
                        err = apply_until_done(&store, recs, n, stop, errstr,
                                               errstr_size);
                        if (err)
                                break;
                        stats->applied += (int64_t)n;
                        n = 0;
                }
                if (progress_s > 0 &&
                    ordo_monotonic_ms() - last >= progress_s * 1000) {
                        progress(which, into, stats, t0);
                        last = ordo_monotonic_ms();
                }
        }
        if (!err && group)
                err = commit_reached(group, t, errstr, errstr_size);
done:
        stats->elapsed_ms = ordo_monotonic_ms() - t0;
        if (rk)
                rd_kafka_destroy(rk);
        if (group)
                rd_kafka_destroy(group);
        ordo_codec_destroy(codec);
        ordo_store_close(&store);
        for (i = 0; i < N_TOPICS; i++) {
                free(t[i].end);
                free(t[i].next);
        }
        free(msgs);
        free(recs);
        return err;
}

static void rebuild_help(void) {
        printf("\nBuilds the MongoDB (mongo) or Redis (redis) read models "
               "from offset 0 of the\nfour event topics into a new "
               "database or key prefix NAME, with the live\nprojection's "
               "code, up to the end every partition had at the start. It "
               "refuses\nNAME when it is the live target or already holds "
               "data. The live read model\nis not touched: it keeps "
               "serving, and stays until you drop it.\n\n"
               "The switch: at the end the offsets reached are committed to "
               "a new consumer\ngroup, and the command prints how to run "
               "the projection on NAME from there:\n"
               "  ordo project mongo -X mongo.db=NAME -X group.prefix=P\n"
               "(redis: -X redis.prefix=NAME). Events written during the "
               "rebuild are applied\nby that projection; then point front "
               "ends at NAME, stop the old projection,\nand drop the old "
               "target (`ordo -X mongo.db=NAME rebuild mongo --drop OLD`).\n\n"
               "  --into NAME          database (mongo) or key prefix "
               "(redis, e.g. ordo2:)\n"
               "  --group-prefix P     group.prefix of the new projection "
               "(default:\n"
               "                       <group.prefix><NAME>.); its group "
               "P project.<which>\n"
               "                       must be new\n"
               "  --no-commit          do not commit offsets (a copy for "
               "inspection only)\n"
               "  --drop NAME          delete a rebuilt or retired target "
               "instead (never the\n"
               "                       live one)\n\n"
               "Exit status: 0 done, 1 failure, 2 usage. See "
               "docs/read-models.md.\n");
}

int ordo_cmd_rebuild(ordo_config_t *conf, int argc, char **argv) {
        const char *which = NULL, *into = NULL, *gp = NULL, *drop = NULL;
        const char *key;
        char errstr[512], group[512], prefix[300];
        ordo_rebuild_stats_t st;
        int i, commit = 1;
        ordo_err_t err;

        if (ordo_wants_help(argc, argv)) {
                rebuild_help();
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--into") && i + 1 < argc)
                        into = argv[++i];
                else if (!strcmp(argv[i], "--group-prefix") && i + 1 < argc)
                        gp = argv[++i];
                else if (!strcmp(argv[i], "--drop") && i + 1 < argc)
                        drop = argv[++i];
                else if (!strcmp(argv[i], "--no-commit"))
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
        if (!which || (!into == !drop)) {
                fprintf(stderr, "ordo rebuild: usage: ordo rebuild "
                                "mongo|redis --into NAME | --drop NAME\n");
                return 2;
        }
        if (drop) {
                if ((err = ordo_rebuild_drop(which, conf, drop, errstr,
                                             sizeof(errstr)))) {
                        fprintf(stderr, "ordo rebuild: %s\n", errstr);
                        return 1;
                }
                printf("dropped %s %s\n", which, drop);
                return 0;
        }
        if (!gp) {
                snprintf(prefix, sizeof(prefix), "%s%s.",
                         ordo_config_get(conf, "group.prefix"), into);
                gp = prefix;
        }
        ordo_group_name(gp, ordo_stage_find(which)->group, group,
                        sizeof(group));
        err = ordo_rebuild_run(which, conf, into, commit ? group : NULL, 5,
                               &ordo_stop, &st, errstr, sizeof(errstr));
        if (err) {
                fprintf(stderr, "ordo rebuild: %s (after %lld events)\n",
                        errstr, (long long)st.applied);
                return 1;
        }
        printf("rebuilt %s into %s: %lld events applied, %lld undecodable "
               "skipped, %.1f s, %.0f events/s\n",
               which, into, (long long)st.applied, (long long)st.skipped,
               (double)st.elapsed_ms / 1000.0,
               st.elapsed_ms > 0
                   ? (double)st.applied * 1000.0 / (double)st.elapsed_ms
                   : 0.0);
        key = !strcmp(which, "mongo") ? "mongo.db" : "redis.prefix";
        if (commit)
                printf("offsets reached committed to consumer group %s\n"
                       "switch: ordo project %s -X %s=%s -X group.prefix=%s\n"
                       "then point front ends at %s, stop the old "
                       "projection, and drop the old target:\n"
                       "  ordo -X %s=%s rebuild %s --drop %s\n",
                       group, which, key, into, gp, into, key, into, which,
                       ordo_config_get(conf, key));
        return 0;
}
