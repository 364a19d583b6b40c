/*
 * ordo - every stage of DESIGN.md in one table: the four processors and
 * the two projections. run, process, project, lag, wait, rebuild and
 * reconcile all read it; a stage's name is stable (it is what `ordo run`
 * takes, and what logs and metrics are labelled with).
 */
#ifndef ORDO_STAGES_H
#define ORDO_STAGES_H

#include <signal.h>
#include <stddef.h>

#include "config.h"
#include "err.h"
#include "kafka.h"
#include "stream.h"

typedef enum { ORDO_STAGE_PROCESSOR, ORDO_STAGE_PROJECTION } ordo_stage_kind_t;

#define ORDO_STAGE_INPUTS_MAX 4

typedef struct ordo_stage_s ordo_stage_t;

/* Runs the stage until *stop becomes non-zero or a fatal error. */
typedef ordo_err_t(ordo_stage_main_t)(const ordo_stage_t *stage,
                                      const ordo_config_t *conf,
                                      volatile sig_atomic_t *stop,
                                      ordo_stage_stats_t *stats, char *errstr,
                                      size_t errstr_size);

struct ordo_stage_s {
        const char *name; /* "activity" ... "commission", "mongo", "redis" */
        ordo_stage_kind_t kind;
        ordo_topic_t inputs[ORDO_STAGE_INPUTS_MAX]; /* consumed in its group */
        int n_inputs;
        ordo_topic_t events; /* a processor's event topic, else __COUNT */
        const char *group;   /* consumer group (and transactional id) after
                                group.prefix: ordo_kafka_group() */
        const ordo_processor_def_t *processor; /* processors only */
        ordo_stage_main_t *main;
};

#define ORDO_STAGES_MAX 16 /* room for the table to grow */
extern const ordo_stage_t ordo_stages[];
extern const size_t ordo_n_stages;

/* NULL if no stage has that name. */
const ordo_stage_t *ordo_stage_find(const char *name);
/* Same, of the given kind only. */
const ordo_stage_t *ordo_stage_find_kind(const char *name,
                                         ordo_stage_kind_t kind);

/* Where `ordo process|project NAME` serves /metrics and /healthz when
 * metrics.listen is "auto": 127.0.0.1:9465 onwards in table order, so
 * one process per stage on a host does not clash (`ordo run`: 9464). */
const char *ordo_stage_metrics_default(const ordo_stage_t *stage);

/* "activity, order, referral, commission, mongo, redis": for messages. */
const char *ordo_stage_names(void);

#endif
