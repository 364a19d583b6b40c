/*
 * ordo run | process | tick: the stages as threads of one process, one
 * processor alone, and the Tick that drives the order processor's timers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "commands.h"
#include "log.h"
#include "project.h"
#include "stream.h"
#include "clock.h"

typedef struct {
        const char *name;
        const ordo_processor_def_t *def; /* NULL for a projection */
        const ordo_config_t *conf;
        ordo_stage_stats_t stats;
        ordo_err_t err;
        char errstr[512];
        pthread_t thread;
} stage_t;

static const char *const all_stages[] = { "activity",   "order", "referral",
                                          "commission", "mongo", "redis" };
#define N_STAGES (sizeof(all_stages) / sizeof(all_stages[0]))

static void *stage_main(void *arg) {
        stage_t *s = arg;
        if (s->def)
                s->err =
                    ordo_processor_run(s->def, s->conf, &ordo_stop, &s->stats,
                                       s->errstr, sizeof(s->errstr));
        else
                s->err = ordo_projection_run(s->name, s->conf, &ordo_stop,
                                             s->errstr, sizeof(s->errstr));
        if (s->err) {
                ORDO_LOG(ERROR, s->name, "msg=\"stage failed\" error=\"%s\"",
                         s->errstr);
                /* One failed stage stops the process: a supervisor
                 * restarts it whole, and exactly-once makes that safe. */
                ordo_stop = 1;
        }
        return NULL;
}

static int known_stage(const char *name) {
        size_t i;
        for (i = 0; i < N_STAGES; i++)
                if (!strcmp(all_stages[i], name))
                        return 1;
        return 0;
}

static int run_stages(ordo_config_t *conf, const char *const *names, size_t n) {
        stage_t *stages = calloc(n, sizeof(*stages));
        char errstr[512];
        size_t i;
        int rc = 0;

        if (!stages)
                return 2;
        if (ordo_kafka_ensure_topics(conf, errstr, sizeof(errstr))) {
                fprintf(stderr, "ordo: %s\n", errstr);
                free(stages);
                return 1;
        }
        for (i = 0; i < n; i++) {
                stages[i].name = names[i];
                stages[i].def = ordo_processor_find(names[i]);
                stages[i].conf = conf;
                if (pthread_create(&stages[i].thread, NULL, stage_main,
                                   &stages[i])) {
                        fprintf(stderr, "ordo: cannot start %s\n", names[i]);
                        ordo_stop = 1;
                        n = i;
                        rc = 1;
                        break;
                }
        }
        for (i = 0; i < n; i++) {
                pthread_join(stages[i].thread, NULL);
                if (stages[i].err) {
                        fprintf(stderr, "ordo: %s\n", stages[i].errstr);
                        rc = 1;
                }
        }
        free(stages);
        return rc;
}

int ordo_cmd_run(ordo_config_t *conf, int argc, char **argv) {
        int i;
        if (ordo_wants_help(argc, argv)) {
                printf("\nRuns the given stages (all six by default) as "
                       "threads until SIGINT or\nSIGTERM. Processors: "
                       "activity, order, referral, commission (exactly-once\n"
                       "Kafka transactions). Projections: mongo, redis. "
                       "Missing topics are created.\nA stage that fails "
                       "stops the process with a non-zero status.\n");
                return 0;
        }
        for (i = 1; i < argc; i++)
                if (!known_stage(argv[i])) {
                        fprintf(stderr,
                                "ordo run: unknown stage \"%s\" (activity, "
                                "order, referral, commission, mongo, redis)\n",
                                argv[i]);
                        return 2;
                }
        if (argc > 1)
                return run_stages(conf, (const char *const *)argv + 1,
                                  (size_t)argc - 1);
        return run_stages(conf, all_stages, N_STAGES);
}

int ordo_cmd_process(ordo_config_t *conf, int argc, char **argv) {
        if (ordo_wants_help(argc, argv)) {
                printf("\nRuns one processor until SIGINT or SIGTERM. Start "
                       "more instances with\ndistinct -X instance.id=N to "
                       "share partitions in its consumer group.\n");
                return 0;
        }
        if (argc != 2 || !ordo_processor_find(argv[1])) {
                fprintf(stderr, "ordo process: expected one of activity, "
                                "order, referral, commission\n");
                return 2;
        }
        return run_stages(conf, (const char *const *)argv + 1, 1);
}

int ordo_cmd_project(ordo_config_t *conf, int argc, char **argv) {
        if (ordo_wants_help(argc, argv)) {
                printf("\nRuns one projection of the event topics into "
                       "MongoDB (mongo.uri, mongo.db)\nor Redis (redis.host, "
                       "redis.port, redis.prefix) until SIGINT or SIGTERM.\n");
                return 0;
        }
        if (argc != 2 ||
            (strcmp(argv[1], "mongo") && strcmp(argv[1], "redis"))) {
                fprintf(stderr, "ordo project: expected mongo or redis\n");
                return 2;
        }
        return run_stages(conf, (const char *const *)argv + 1, 1);
}

static void tick_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                           void *opaque) {
        (void)rk;
        (void)opaque;
        if (m->err)
                *(int *)m->_private = 1;
}

int ordo_cmd_tick(ordo_config_t *conf, int argc, char **argv) {
        int64_t ts = ordo_wall_ms();
        char errstr[512], topic[256], buf[1024], id[128];
        rd_kafka_t *rk;
        ordo_codec_t *codec;
        ordo_msg_t m;
        size_t len;
        int i, parts, failed = 0;

        if (ordo_wants_help(argc, argv)) {
                printf("\n--ts MS   the Tick's ts_ms (default: now)\n\n"
                       "Timers due at or before ts fire at their own "
                       "deadlines, in deadline order.\nThe order processor "
                       "also ticks by itself every tick.interval.ms;\n"
                       "batch runs with old timestamps set it to 0 and "
                       "send their own Ticks.\n");
                return 0;
        }
        for (i = 1; i < argc; i++) {
                char *end;
                if (!strcmp(argv[i], "--ts") && i + 1 < argc) {
                        ts = strtoll(argv[++i], &end, 10);
                        if (*end || !*argv[i]) {
                                fprintf(stderr,
                                        "ordo tick: --ts: expected "
                                        "milliseconds, got \"%s\"\n",
                                        argv[i]);
                                return 2;
                        }
                } else {
                        fprintf(stderr, "ordo tick: unknown argument %s\n",
                                argv[i]);
                        return 2;
                }
        }
        rk = ordo_kafka_producer_new(conf, NULL, tick_delivered, NULL, errstr,
                                     sizeof(errstr));
        codec = ordo_codec_new(errstr, sizeof(errstr));
        if (!rk || !codec) {
                fprintf(stderr, "ordo tick: %s\n", errstr);
                return 1;
        }
        ordo_topic_name(conf, ORDO_TOPIC_ORDER_COMMANDS, topic, sizeof(topic));
        parts = ordo_kafka_partitions(rk, topic, errstr, sizeof(errstr));
        if (parts < 0) {
                fprintf(stderr, "ordo tick: %s\n", errstr);
                rd_kafka_destroy(rk);
                ordo_codec_destroy(codec);
                return 1;
        }
        for (i = 0; i < parts; i++) {
                ordo_msg_init(&m, ORDO_MSG_TICK);
                m.meta.ts_ms = ts;
                snprintf(id, sizeof(id), "tick-%lld-%d", (long long)ts, i);
                ordo_strlcpy(m.meta.id, id, sizeof(m.meta.id));
                if (ordo_codec_encode(codec, &m, buf, sizeof(buf), &len, errstr,
                                      sizeof(errstr)) ||
                    rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(i),
                        RD_KAFKA_V_VALUE(buf, len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                        RD_KAFKA_V_HEADER(ORDO_TYPE_HEADER, "Tick", -1),
                        RD_KAFKA_V_OPAQUE(&failed), RD_KAFKA_V_END))
                        failed = 1;
        }
        if (rd_kafka_flush(rk, 30000))
                failed = 1;
        rd_kafka_destroy(rk);
        ordo_codec_destroy(codec);
        if (failed) {
                fprintf(stderr, "ordo tick: could not deliver every Tick\n");
                return 1;
        }
        printf("tick ts_ms=%lld partitions=%d\n", (long long)ts, parts);
        return 0;
}
