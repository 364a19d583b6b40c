#include "stages.h"

#include <stdio.h>
#include <string.h>

#include "processors.h"
#include "project.h"

static ordo_err_t run_processor(const ordo_stage_t *s,
                                const ordo_config_t *conf,
                                volatile sig_atomic_t *stop,
                                ordo_stage_stats_t *stats, char *errstr,
                                size_t errstr_size) {
        return ordo_processor_run(s->processor, conf, stop, stats, errstr,
                                  errstr_size);
}

static ordo_err_t run_projection(const ordo_stage_t *s,
                                 const ordo_config_t *conf,
                                 volatile sig_atomic_t *stop,
                                 ordo_stage_stats_t *stats, char *errstr,
                                 size_t errstr_size) {
        (void)stats;
        return ordo_projection_run(s, conf, stop, errstr, errstr_size);
}

/* The processors' group is their name: the stream loop builds it so. */
#define PROCESSOR_STAGE(agg, in, ev, out, snap, joins)                         \
        {                                                                      \
                #agg,                                                          \
                ORDO_STAGE_PROCESSOR,                                          \
                { ORDO_TOPIC_##in },                                           \
                1,                                                             \
                ORDO_TOPIC_##ev,                                               \
                #agg,                                                          \
                &ordo_processor_##agg,                                         \
                run_processor                                                  \
        },

/* A projection reads every event topic. */
#define PROJECTION_STAGE(which)                                                \
        { which,                                                               \
          ORDO_STAGE_PROJECTION,                                               \
          { ORDO_TOPIC_ACTIVITY_EVENTS, ORDO_TOPIC_ORDER_EVENTS,               \
            ORDO_TOPIC_REFERRAL_EVENTS, ORDO_TOPIC_COMMISSION_EVENTS },        \
          4,                                                                   \
          ORDO_TOPIC__COUNT,                                                   \
          "project." which,                                                    \
          NULL,                                                                \
          run_projection },

const ordo_stage_t ordo_stages[] = { ORDO_PROCESSORS(
    PROCESSOR_STAGE) PROJECTION_STAGE("mongo") PROJECTION_STAGE("redis") };
const size_t ordo_n_stages = sizeof(ordo_stages) / sizeof(ordo_stages[0]);
_Static_assert(sizeof(ordo_stages) / sizeof(ordo_stages[0]) <= ORDO_STAGES_MAX,
               "raise ORDO_STAGES_MAX");

const ordo_stage_t *ordo_stage_find(const char *name) {
        size_t i;
        for (i = 0; i < ordo_n_stages; i++)
                if (!strcmp(ordo_stages[i].name, name))
                        return &ordo_stages[i];
        return NULL;
}

const ordo_stage_t *ordo_stage_find_kind(const char *name,
                                         ordo_stage_kind_t kind) {
        const ordo_stage_t *s = ordo_stage_find(name);
        return s && s->kind == kind ? s : NULL;
}

const char *ordo_stage_metrics_default(const ordo_stage_t *stage) {
        static char addrs[ORDO_STAGES_MAX][32];
        size_t i = (size_t)(stage - ordo_stages);
        if (i >= ordo_n_stages)
                return NULL;
        if (!addrs[i][0])
                snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d",
                         9465 + (int)i);
        return addrs[i];
}

const char *ordo_stage_names(void) {
        static char buf[256];
        size_t i, n = 0;
        if (!buf[0])
                for (i = 0; i < ordo_n_stages && n < sizeof(buf); i++)
                        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s",
                                              i ? ", " : "",
                                              ordo_stages[i].name);
        return buf;
}
