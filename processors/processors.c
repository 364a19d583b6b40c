/*
 * ordo - the four processors of DESIGN.md: which topics each reads and
 * writes, and which rules decide it. The loop itself is stream.c.
 */
#include "stream.h"

#include <string.h>

/* Valid input of a processor: what the message table routes to its input
 * topic. The commission processor also reads the CommandRejected the order
 * processor writes to order-events. */
static int routed_to(ordo_msg_type_t t, ordo_topic_t input) {
        const char *to = ordo_msg_routed_to(t);
        return to && !strcmp(to, ordo_topic_short(input));
}

static int activity_accepts(ordo_msg_type_t t) {
        return routed_to(t, ORDO_TOPIC_ACTIVITY_COMMANDS);
}

static int order_accepts(ordo_msg_type_t t) {
        return routed_to(t, ORDO_TOPIC_ORDER_COMMANDS);
}

static int referral_accepts(ordo_msg_type_t t) {
        return routed_to(t, ORDO_TOPIC_REFERRAL_COMMANDS);
}

static int commission_accepts(ordo_msg_type_t t) {
        return routed_to(t, ORDO_TOPIC_ORDER_EVENTS) ||
               t == ORDO_MSG_COMMAND_REJECTED;
}

/* Thin casts from the loop's void * state to each aggregate's type. */
#define PROCESSOR_GLUE(agg)                                                    \
        static void *agg##_new(void) {                                         \
                return ordo_##agg##_state_new();                               \
        }                                                                      \
        static void agg##_destroy(void *s) {                                   \
                ordo_##agg##_state_destroy(s);                                 \
        }                                                                      \
        static void agg##_handle(void *s, const ordo_msg_t *m,                 \
                                 const ordo_pos_t *pos,                        \
                                 const ordo_sink_t *sink) {                    \
                ordo_##agg##_handle(s, m, pos, sink);                          \
        }                                                                      \
        static void agg##_apply(void *s, const ordo_msg_t *m) {                \
                ordo_##agg##_apply(s, m);                                      \
        }                                                                      \
        static void agg##_save(const void *s, ordo_buf_t *out) {               \
                ordo_##agg##_state_save(s, out);                               \
        }                                                                      \
        static void *agg##_load(const void *data, size_t len, char *errstr,    \
                                size_t errstr_size) {                          \
                return ordo_##agg##_state_load(data, len, errstr,              \
                                               errstr_size);                   \
        }

PROCESSOR_GLUE(activity)
PROCESSOR_GLUE(order)
PROCESSOR_GLUE(referral)
PROCESSOR_GLUE(commission)

static const ordo_processor_def_t activity = { "activity",
                                               ORDO_TOPIC_ACTIVITY_COMMANDS,
                                               ORDO_TOPIC_ACTIVITY_EVENTS,
                                               ORDO_TOPIC_ORDER_COMMANDS,
                                               ORDO_TOPIC_ACTIVITY_SNAPSHOTS,
                                               0,
                                               0,
                                               activity_new,
                                               activity_destroy,
                                               activity_handle,
                                               activity_apply,
                                               activity_save,
                                               activity_load,
                                               activity_accepts };

static const ordo_processor_def_t order = { "order",
                                            ORDO_TOPIC_ORDER_COMMANDS,
                                            ORDO_TOPIC_ORDER_EVENTS,
                                            ORDO_TOPIC_ACTIVITY_COMMANDS,
                                            ORDO_TOPIC_ORDER_SNAPSHOTS,
                                            0,
                                            1,
                                            order_new,
                                            order_destroy,
                                            order_handle,
                                            order_apply,
                                            order_save,
                                            order_load,
                                            order_accepts };

static const ordo_processor_def_t referral = { "referral",
                                               ORDO_TOPIC_REFERRAL_COMMANDS,
                                               ORDO_TOPIC_REFERRAL_EVENTS,
                                               ORDO_TOPIC__COUNT,
                                               ORDO_TOPIC_REFERRAL_SNAPSHOTS,
                                               0,
                                               0,
                                               referral_new,
                                               referral_destroy,
                                               referral_handle,
                                               referral_apply,
                                               referral_save,
                                               referral_load,
                                               referral_accepts };

static const ordo_processor_def_t commission = {
        "commission",
        ORDO_TOPIC_ORDER_EVENTS,
        ORDO_TOPIC_COMMISSION_EVENTS,
        ORDO_TOPIC__COUNT,
        ORDO_TOPIC_COMMISSION_SNAPSHOTS,
        1,
        0,
        commission_new,
        commission_destroy,
        commission_handle,
        commission_apply,
        commission_save,
        commission_load,
        commission_accepts
};

const ordo_processor_def_t *const ordo_processors[4] = { &activity, &order,
                                                         &referral,
                                                         &commission };

const ordo_processor_def_t *ordo_processor_find(const char *name) {
        size_t i;
        for (i = 0; i < 4; i++)
                if (!strcmp(ordo_processors[i]->name, name))
                        return ordo_processors[i];
        return NULL;
}
