/*
 * ordo - the entry point: global options, configuration, and one table of
 * subcommands (after Redis's command table).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "commands.h"
#include "kafka.h"
#include "log.h"
#include "store.h"

volatile sig_atomic_t ordo_stop = 0;

/* The first SIGINT or SIGTERM asks every command to stop (and sum up);
 * a second Ctrl-C ends the process at once, as a user pressing it again
 * expects: for the processors as safe as a SIGKILL (exactly-once); for
 * `ordo produce` the lines still queued are lost, unreported. */
static void on_signal(int sig) {
        if (ordo_stop && sig == SIGINT) {
                signal(sig, SIG_DFL);
                raise(sig);
        }
        ordo_stop = 1;
}

static int cmd_help(ordo_config_t *conf, int argc, char **argv);

static const struct {
        const char *name;
        int (*proc)(ordo_config_t *conf, int argc, char **argv);
        const char *usage;
        const char *summary;
} commands[] = {
        { "produce", ordo_cmd_produce, "[FILE] [--keep-ts] [--dry-run]",
          "validate JSON-lines commands and send them to Kafka" },
        { "ingest", ordo_cmd_ingest, "[--listen HOST:PORT]",
          "HTTP gateway: POST JSON commands, 202 once Kafka has them" },
        { "run", ordo_cmd_run, "[STAGE...]",
          "run stages in one process (all by default): activity order "
          "referral commission mongo redis" },
        { "process", ordo_cmd_process, "NAME",
          "run one processor: activity, order, referral or commission" },
        { "project", ordo_cmd_project, "mongo|redis",
          "run one projection into MongoDB or Redis" },
        { "tick", ordo_cmd_tick, "[--ts TIME [--future]]",
          "send a Tick to every partition of order-commands (fires timers)" },
        { "lag", ordo_cmd_lag, "[STAGE...]",
          "consumer lag per stage and partition" },
        { "wait", ordo_cmd_wait, "[--timeout SECONDS] [STAGE...]",
          "return when the stages have caught up (exit 1 on timeout)" },
        { "replay", ordo_cmd_replay,
          "TOPIC [--meta] [--partition N] [--from-offset N | --from-ts "
          "TIME] [--to-ts TIME]",
          "decode a topic to JSON lines on stdout" },
        { "rebuild", ordo_cmd_rebuild,
          "mongo|redis [--into NAME] [--group-prefix P] [--no-commit] | "
          "mongo|redis --drop NAME",
          "rebuild a read model from offset 0 into NAME; prints the switch" },
        { "reconcile", ordo_cmd_reconcile, "[--skip-read-models] [--limit N]",
          "re-run the rules, compare events and read models; list "
          "differences" },
        { "topics", ordo_cmd_topics, "",
          "create the topics of DESIGN.md that are missing" },
        { "dash", ordo_cmd_dash, "[--listen HOST:PORT]",
          "a live page of the sale, from the read models and metrics" },
        { "config", ordo_cmd_config, "",
          "print the effective configuration (secrets redacted)" },
        { "help", cmd_help, "[COMMAND]", "this help" },
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out) {
        size_t i;
        fprintf(out, "ordo - event-sourced order and commission engine\n\n"
                     "Usage: ordo [-c FILE] [-X key=value]... [--log-level L] "
                     "COMMAND [ARGS]\n\n"
                     "Commands:\n");
        for (i = 0; i < N_COMMANDS; i++)
                fprintf(out, "  %-9s %s\n", commands[i].name,
                        commands[i].summary);
        fprintf(out,
                "\nOptions (before or after COMMAND):\n"
                "  -c FILE          key=value configuration file (several: "
                "in order)\n"
                "  -X key=value     set one configuration key; kafka.* keys "
                "go to librdkafka\n"
                "  --log-level L    error, warn, info or debug\n"
                "  -h, --help       help (`ordo COMMAND --help` for one "
                "command)\n"
                "  --version        ordo's version and the librdkafka it "
                "runs with\n\n"
                "Configuration: defaults, then -c FILE, then ORDO_* "
                "environment\nvariables (ORDO_TOPIC_PREFIX=... sets "
                "topic.prefix), then -X.\n`ordo config` prints the result.\n");
}

/* The library's file too: Debian's 2.0.2 and the one infra/stack
 * rebuilds (decision 0031) have the same version. */
static void version(void) {
        printf("ordo %s\nlibrdkafka %s %s\n", ORDO_VERSION,
               rd_kafka_version_str(), ordo_kafka_library().file);
}

/* "Usage: ordo CMD ARGS" and the summary, before a command's own help. */
static void command_usage(size_t c) {
        printf("Usage: ordo %s%s%s\n\n%s\n", commands[c].name,
               *commands[c].usage ? " " : "", commands[c].usage,
               commands[c].summary);
}

static int cmd_help(ordo_config_t *conf, int argc, char **argv) {
        size_t i;
        if (ordo_wants_help(argc, argv))
                return 0; /* `ordo help --help`: its usage is printed */
        if (argc > 1) {
                for (i = 0; i < N_COMMANDS; i++)
                        if (!strcmp(commands[i].name, argv[1])) {
                                char *args[] = { argv[1], "--help", NULL };
                                command_usage(i);
                                return commands[i].proc(conf, 2, args);
                        }
                fprintf(stderr,
                        "ordo help: unknown command \"%s\" (see `ordo "
                        "--help`)\n",
                        argv[1]);
                return 2;
        }
        usage(stdout);
        return 0;
}

int ordo_wants_help(int argc, char **argv) {
        int i;
        for (i = 1; i < argc; i++)
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
                        return 1;
        return 0;
}

int ordo_option_repeated(char **argv, int i, const char *cmd) {
        int j;
        for (j = 1; j < i; j++)
                if (!strcmp(argv[j], argv[i])) {
                        fprintf(stderr,
                                "ordo %s: %s given twice (which one was "
                                "meant?)\n",
                                cmd, argv[i]);
                        return 1;
                }
        return 0;
}

const char *ordo_option_value(int argc, char **argv, int *i, const char *cmd) {
        if (*i + 1 >= argc) {
                fprintf(stderr, "ordo %s: %s needs a value\n", cmd, argv[*i]);
                return NULL;
        }
        if (ordo_option_repeated(argv, *i, cmd))
                return NULL;
        return argv[++*i];
}

int ordo_option_count(int argc, char **argv, int *i, const char *cmd,
                      const char *what, int64_t *out) {
        const char *v = ordo_option_value(argc, argv, i, cmd);
        char *end;
        if (!v)
                return -1;
        errno = 0;
        *out = strtoll(v, &end, 10);
        if (!*v || *end || errno || *out < 0) {
                fprintf(stderr, "ordo %s: %s: expected %s (>= 0), got \"%s\"\n",
                        cmd, argv[*i - 1], what, v);
                return -1;
        }
        return 0;
}

int ordo_option_time(const char *cmd, const char *opt, const char *v,
                     int64_t *out) {
        if (!ordo_time_parse(v, out))
                return 0;
        fprintf(stderr, "ordo %s: %s: %s, got \"%s\"\n", cmd, opt,
                ORDO_TIME_EXPECTED, v);
        return -1;
}

/* A command's status, 1 where it was 0 but its output did not reach its
 * file (a full disk, a closed pipe): that is no success. */
static int output_written(const char *command, int rc) {
        int e = fflush(stdout) ? errno : 0;

        if (!e && !ferror(stdout))
                return rc;
        fprintf(stderr,
                "ordo %s: writing standard output: %s; the output is "
                "incomplete\n",
                command, e ? strerror(e) : "a write failed");
        return rc ? rc : 1;
}

/* The tools that ask Kafka and end: their stop also ends the questions
 * they wait on (ordo_kafka_queries_stop_on). */
static int asks_kafka_and_ends(const char *command) {
        static const char *const tools[] = { "replay", "lag",       "wait",
                                             "tick",   "reconcile", "rebuild" };
        size_t i;
        for (i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
                if (!strcmp(tools[i], command))
                        return 1;
        return 0;
}

/* No command, or -h / --help in its place: ordo's own usage. */
static int asks_usage(int n_rest, char **rest) {
        return !n_rest || !strcmp(rest[0], "-h") || !strcmp(rest[0], "--help");
}

/* Defaults, then -c FILEs, ORDO_* variables, -X pairs and --log-level,
 * each checked, and librdkafka's own check of the kafka.* keys (for
 * every command alike: they were found only by the commands that make a
 * client, and not as a configuration error). 0, or -1 (errstr). */
static int load_config(ordo_config_t *conf, char **files, int n_files,
                       char **sets, int n_sets, const char *log_level_flag,
                       char *errstr, size_t errstr_size) {
        ordo_log_level_t level;
        rd_kafka_conf_t *kc;
        int i;

        /* several: in the order given, a later one's keys winning */
        for (i = 0; i < n_files; i++)
                if (ordo_config_load_file(conf, files[i], errstr, errstr_size))
                        return -1;
        if (ordo_config_load_env(conf, errstr, errstr_size))
                return -1;
        for (i = 0; i < n_sets; i++)
                if (ordo_config_set_pair(conf, sets[i], errstr, errstr_size))
                        return -1;
        if (log_level_flag && ordo_config_set(conf, "log.level", log_level_flag,
                                              errstr, errstr_size))
                return -1;
        if (ordo_log_level_parse(ordo_config_get(conf, "log.level"), &level)) {
                snprintf(errstr, errstr_size,
                         "log.level: expected error, warn, info or debug, "
                         "got \"%s\"",
                         ordo_config_get(conf, "log.level"));
                return -1;
        }
        ordo_log_set_level(level);
        if (!(kc = ordo_kafka_conf(conf, errstr, errstr_size)))
                return -1;
        rd_kafka_conf_destroy(kc);
        /* needs the schemas, which the configuration does not know */
        if (ordo_codec_previous_check(
                ordo_config_get(conf, "schemas.write.previous"), errstr,
                errstr_size))
                return -1;
        return 0;
}

int main(int argc, char **argv) {
        ordo_config_t *conf = ordo_config_new();
        char **files;
        char errstr[512];
        char **rest, **sets;
        int n_rest = 0, n_sets = 0, n_files = 0, i, rc;
        const char *log_level_flag = NULL;
        size_t c;

        if (!conf) {
                fprintf(stderr, "ordo: out of memory\n");
                return 2;
        }
        rest = calloc((size_t)argc + 1, sizeof(*rest));
        sets = calloc((size_t)argc + 1, sizeof(*sets));
        files = calloc((size_t)argc + 1, sizeof(*files));
        if (!rest || !sets || !files) {
                fprintf(stderr, "ordo: out of memory\n");
                return 2;
        }
        /* Global options may come anywhere; the rest goes to the
         * subcommand in order. */
        for (i = 1; i < argc; i++) {
                if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "-X") ||
                     !strcmp(argv[i], "--log-level")) &&
                    i + 1 >= argc) {
                        fprintf(stderr, "ordo: %s needs a value\n", argv[i]);
                        return 2;
                }
                if (!strcmp(argv[i], "-c"))
                        files[n_files++] = argv[++i];
                else if (!strcmp(argv[i], "-X"))
                        sets[n_sets++] = argv[++i];
                else if (!strcmp(argv[i], "--log-level"))
                        log_level_flag = argv[++i];
                else
                        rest[n_rest++] = argv[i];
        }
        /* before the configuration: a bad one does not hide the version */
        if (n_rest && !strcmp(rest[0], "--version")) {
                version();
                rc = output_written("--version", 0);
                goto out;
        }
        /* Help answers whatever the configuration (a stray ORDO_*
         * variable must not hide how to fix it), with a note of it. */
        if (load_config(conf, files, n_files, sets, n_sets, log_level_flag,
                        errstr, sizeof(errstr))) {
                if (!asks_usage(n_rest, rest) && strcmp(rest[0], "help") &&
                    !ordo_wants_help(n_rest, rest))
                        goto config_error;
                fprintf(stderr, "ordo: note: %s\n", errstr);
        }

        if (asks_usage(n_rest, rest)) {
                usage(n_rest ? stdout : stderr);
                rc = n_rest ? 0 : 2;
                goto out;
        }
        ordo_stores_init();
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGPIPE, SIG_IGN);
        for (c = 0; c < N_COMMANDS; c++)
                if (!strcmp(commands[c].name, rest[0])) {
                        if (ordo_wants_help(n_rest, rest))
                                command_usage(c);
                        if (asks_kafka_and_ends(rest[0]))
                                ordo_kafka_queries_stop_on(&ordo_stop);
                        rc = output_written(
                            rest[0], commands[c].proc(conf, n_rest, rest));
                        goto out;
                }
        fprintf(stderr, "ordo: unknown %s \"%s\" (see `ordo --help`)\n",
                rest[0][0] == '-' ? "option" : "command", rest[0]);
        rc = 2;
        goto out;

config_error:
        fprintf(stderr, "ordo: %s\n", errstr);
        rc = 2;
out:
        free(rest);
        free(sets);
        free(files);
        ordo_config_destroy(conf);
        return rc;
}
