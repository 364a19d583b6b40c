/*
 * ordo run | process | project: the stages as threads of one process, or
 * one stage alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "log.h"
#include "project.h"
#include "stream.h"

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
                       "Missing topics are created.\nThe order processor "
                       "writes a wall-clock Tick to its partitions every\n"
                       "tick.interval.ms (0: off, for batch runs with old "
                       "timestamps). A processor\nthat loses its partitions "
                       "to a Kafka error rejoins by itself; a stage that\n"
                       "fails otherwise (configuration) stops the process "
                       "with a non-zero status.\n");
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
                       "share partitions in its consumer group;\nrestart a "
                       "crashed one with the same id: it takes its "
                       "partitions back at once\n(static membership).\n");
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
