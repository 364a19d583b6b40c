/*
 * ordo run | process | project: stages of the table in stages.h as
 * threads of one process, or one stage alone.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "commands.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "stages.h"

typedef struct {
        const ordo_stage_t *stage;
        const ordo_config_t *conf;
        ordo_stage_stats_t stats;
        ordo_err_t err;
        char errstr[512];
        pthread_t thread;
        int joined;
} running_t;

static void *stage_main(void *arg) {
        running_t *r = arg;
        char name[16]; /* the kernel's limit, with its NUL */
        /* "ordo:redis" in top -H, perf and /proc/PID/task/TID/comm */
        snprintf(name, sizeof(name), "ordo:%s", r->stage->name);
        pthread_setname_np(pthread_self(), name);
        ordo_health_start(r->stage->name);
        ordo_metrics_stage_start(r->stage->name,
                                 r->stage->kind == ORDO_STAGE_PROCESSOR);
        r->err = r->stage->main(r->stage, r->conf, &ordo_stop, &r->stats,
                                r->errstr, sizeof(r->errstr));
        ordo_health_stop(r->stage->name, r->err);
        if (r->err) {
                char q[1024];
                ORDO_LOG(ERROR, r->stage->name,
                         "msg=\"stage failed\" error=\"%s\"",
                         ordo_log_quote(q, sizeof(q), r->errstr));
                /* One failed stage stops the process: a supervisor
                 * restarts it whole, and exactly-once makes that safe. */
                ordo_stop = 1;
        }
        return NULL;
}

/* Exits the process, status 1, naming the stages still running
 * stop_ms after the stop: exactly-once makes it as safe as a SIGKILL,
 * and a supervisor gets its process back. */
static void give_up(const running_t *run, size_t n, int64_t stop_ms) {
        char stuck[256] = "";
        size_t i, len = 0;
        for (i = 0; i < n; i++)
                if (!run[i].joined && len < sizeof(stuck))
                        len += (size_t)snprintf(
                            stuck + len, sizeof(stuck) - len, "%s%s",
                            len ? "," : "", run[i].stage->name);
        ORDO_LOG(ERROR, "run",
                 "msg=\"stages did not stop in time; exiting\" stages=%s "
                 "stop_timeout_ms=%lld",
                 stuck, (long long)stop_ms);
        fprintf(stderr,
                "ordo: %s did not stop within %lld ms (stop.timeout.ms); "
                "exiting\n",
                stuck, (long long)stop_ms);
        fflush(NULL);
        /* not exit(): the libraries' clean-up would run under the stages
         * still using them */
        _exit(1);
}

/* Waits for every stage. Once the process is stopping, each has
 * stop_ms to finish (0: for ever): a stage can hang in librdkafka's
 * rd_kafka_destroy, which waits for ever when a topic it reads was
 * deleted under it (librdkafka issues 3007, 4362). 1 when a stage
 * failed. */
static int join_stages(running_t *run, size_t n, int64_t stop_ms) {
        const struct timespec step = { 0, 50 * 1000000L };
        int64_t stopping_since = -1;
        size_t left = n, i;
        int failed = 0;

        while (left) {
                for (i = 0; i < n; i++) {
                        if (run[i].joined ||
                            pthread_tryjoin_np(run[i].thread, NULL))
                                continue;
                        run[i].joined = 1;
                        left--;
                        if (run[i].err) {
                                fprintf(stderr, "ordo: %s\n", run[i].errstr);
                                failed = 1;
                        }
                }
                if (!left)
                        break;
                if (ordo_stop && stop_ms > 0) {
                        if (stopping_since < 0)
                                stopping_since = ordo_monotonic_ms();
                        else if (ordo_monotonic_ms() - stopping_since >=
                                 stop_ms)
                                give_up(run, n, stop_ms);
                }
                nanosleep(&step, NULL);
        }
        return failed;
}

/* metrics_auto: the address metrics.listen "auto" stands for. */
static int run_stages(ordo_config_t *conf, const ordo_stage_t *const *stages,
                      size_t n, const char *metrics_auto) {
        running_t *run = calloc(n, sizeof(*run));
        ordo_metrics_server_t *metrics;
        char errstr[512];
        size_t i;
        int rc = 0, failed;

        if (!run)
                return 2;
        ordo_kafka_log_library("run");
        /* Served from the start: a scrape or a probe while Kafka keeps
         * the topic check waiting (up to 30 s) learns why, rather than
         * finding nothing listening. The reason is set first: a probe
         * answered as soon as the server listens has it too. */
        snprintf(errstr, sizeof(errstr), "checking its topics at Kafka %s",
                 ordo_config_get(conf, "kafka.bootstrap.servers"));
        ordo_health_starting(errstr);
        metrics = ordo_metrics_start(conf, metrics_auto, &failed);
        if (failed) {
                ordo_health_starting(NULL);
                free(run);
                return 1;
        }
        switch (ordo_kafka_ensure_topics(conf, &ordo_stop, errstr,
                                         sizeof(errstr))) {
        case ORDO_ERR_OK:
                break;
        case ORDO_ERR_INTERRUPTED: /* asked to stop before any stage ran */
                rc = -1;
                break;
        default:
                fprintf(stderr, "ordo: %s\n", errstr);
                rc = 1;
        }
        ordo_health_starting(rc ? NULL : "starting its stages");
        if (rc) {
                ordo_metrics_server_stop(metrics);
                free(run);
                return rc < 0 ? 0 : rc;
        }
        for (i = 0; i < n; i++) {
                run[i].stage = stages[i];
                run[i].conf = conf;
                if (pthread_create(&run[i].thread, NULL, stage_main, &run[i])) {
                        fprintf(stderr, "ordo: cannot start %s\n",
                                stages[i]->name);
                        ordo_stop = 1;
                        n = i;
                        rc = 1;
                        break;
                }
        }
        if (join_stages(run, n, ordo_config_get_int(conf, "stop.timeout.ms")))
                rc = 1;
        ordo_metrics_server_stop(metrics);
        free(run);
        return rc;
}

int ordo_cmd_run(ordo_config_t *conf, int argc, char **argv) {
        const ordo_stage_t **stages;
        size_t n = 0, i;
        int rc;
        if (ordo_wants_help(argc, argv)) {
                printf(
                    "\nRuns the given stages (all six by default) as "
                    "threads until SIGINT or\nSIGTERM. Processors: "
                    "activity, order, referral, commission (Kafka\n"
                    "transactions, exactly-once unless "
                    "processing.guarantee=at_least_once).\nProjections: "
                    "mongo, redis. Missing topics are created. The order "
                    "processor\nwrites a Tick to its partitions every "
                    "tick.interval.ms (0: off, for batch runs with\nold "
                    "timestamps), stamped tick.lag.ms behind the wall "
                    "clock. A processor whose\nproducer is fenced replaces it "
                    "and keeps its partitions; a stage that loses\nits "
                    "partitions to a Kafka error rejoins by itself; a "
                    "stage that fails otherwise\n"
                    "(configuration, or a second live process with its "
                    "instance.id) stops the\nprocess with a non-zero "
                    "status.\nA stage still running "
                    "stop.timeout.ms (30 s) after the stop ends the "
                    "process\nwith status 1.\n"
                    "Prometheus /metrics and /healthz on metrics.listen "
                    "(auto: 127.0.0.1:9464;\nempty: off).\n");
                return 0;
        }
        stages = calloc(ordo_n_stages + (size_t)argc, sizeof(*stages));
        if (!stages)
                return 2;
        for (i = 1; i < (size_t)argc; i++) {
                size_t j;
                if (!(stages[n++] = ordo_stage_find(argv[i]))) {
                        fprintf(stderr, "ordo run: unknown stage \"%s\" (%s)\n",
                                argv[i], ordo_stage_names());
                        free(stages);
                        return 2;
                }
                /* Twice in one process is one transactional id twice: the
                 * two copies would fence each other. */
                for (j = 0; j + 1 < n; j++)
                        if (stages[j] == stages[n - 1]) {
                                fprintf(stderr,
                                        "ordo run: stage \"%s\" named twice "
                                        "(scale out with ordo process and "
                                        "-X instance.id)\n",
                                        argv[i]);
                                free(stages);
                                return 2;
                        }
        }
        if (!n)
                for (; n < ordo_n_stages; n++)
                        stages[n] = &ordo_stages[n];
        rc = run_stages(conf, stages, n, "127.0.0.1:9464");
        free(stages);
        return rc;
}

/* ordo process | project: one stage of the given kind. */
static int run_one(ordo_config_t *conf, int argc, char **argv,
                   ordo_stage_kind_t kind, const char *help,
                   const char *expected) {
        const ordo_stage_t *s;
        if (ordo_wants_help(argc, argv)) {
                printf("%s", help);
                return 0;
        }
        if (argc != 2 || !(s = ordo_stage_find_kind(argv[1], kind))) {
                fprintf(stderr, "ordo %s: expected %s\n", argv[0], expected);
                return 2;
        }
        return run_stages(conf, &s, 1, ordo_stage_metrics_default(s));
}

int ordo_cmd_process(ordo_config_t *conf, int argc, char **argv) {
        return run_one(conf, argc, argv, ORDO_STAGE_PROCESSOR,
                       "\nRuns one processor until SIGINT or SIGTERM. Start "
                       "more instances with\ndistinct -X instance.id=N to "
                       "share partitions in its consumer group;\nrestart a "
                       "crashed one with the same id: it takes its "
                       "partitions back at once\n(static membership). "
                       "/metrics and /healthz on metrics.listen\n(auto: "
                       "127.0.0.1:9465 activity, 9466 order, 9467 referral, "
                       "9468 commission;\nset it per instance).\n",
                       "one of activity, order, referral, commission");
}

int ordo_cmd_project(ordo_config_t *conf, int argc, char **argv) {
        return run_one(conf, argc, argv, ORDO_STAGE_PROJECTION,
                       "\nRuns one projection of the event topics into "
                       "MongoDB (mongo.uri, mongo.db)\nor Redis (redis.host, "
                       "redis.port, redis.prefix) until SIGINT or SIGTERM.\n"
                       "Like a processor, every live instance needs its own "
                       "-X instance.id=N (its\nstatic group membership), "
                       "also beside an `ordo run` that runs the same\n"
                       "projection: two with one id fence each other, and "
                       "one of them stops,\nwhich may be the `ordo run` "
                       "with all its stages. /metrics and /healthz on\n"
                       "metrics.listen (auto: 127.0.0.1:9469 mongo, 9470 "
                       "redis).\n",
                       "mongo or redis");
}
