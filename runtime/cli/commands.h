/*
 * ordo - the subcommands of the `ordo` binary. Each takes the effective
 * configuration and its own arguments (argv[0] is the subcommand name)
 * and returns the process exit status.
 */
#ifndef ORDO_COMMANDS_H
#define ORDO_COMMANDS_H

#include <signal.h>

#include "config.h"

/* Set by SIGINT/SIGTERM; long-running commands stop cleanly. */
extern volatile sig_atomic_t ordo_stop;

int ordo_cmd_produce(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_ingest(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_run(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_process(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_project(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_tick(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_lag(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_wait(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_replay(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_rebuild(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_reconcile(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_topics(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_config(ordo_config_t *conf, int argc, char **argv);
int ordo_cmd_dash(ordo_config_t *conf, int argc, char **argv);

/* 1 if argv has -h or --help (after the subcommand). */
int ordo_wants_help(int argc, char **argv);
/* 1, after "ordo CMD: OPTION given twice" on stderr, when the option
 * argv[i] came before it too (the last one had silently won). */
int ordo_option_repeated(char **argv, int i, const char *cmd);
/* argv[*i] is an option that takes a value: the value, with *i moved onto
 * it; NULL, after "ordo CMD: OPTION needs a value" on stderr, when the
 * option is the last word, or after ordo_option_repeated's message. */
const char *ordo_option_value(int argc, char **argv, int *i, const char *cmd);
/* The same for a whole number >= 0 (what: its unit, for the message);
 * -1 after a message naming the option when it is missing or not one. */
int ordo_option_count(int argc, char **argv, int *i, const char *cmd,
                      const char *what, int64_t *out);
/* v, the value of option opt, as a time (ordo_time_parse: ms since the
 * epoch or ISO-8601 with a zone); -1 after a message naming the option
 * when it is not one. */
int ordo_option_time(const char *cmd, const char *opt, const char *v,
                     int64_t *out);

#endif
