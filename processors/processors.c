/*
 * ordo - the four processors of DESIGN.md: which topics each reads and
 * writes, and which rules decide it. The loop itself is stream.c.
 */
#include "processors.h"

#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

/* Valid input of a processor: what ordo writes to its input topic (a
 * processor reading an event topic, the commission processor, gets the
 * CommandRejected of its writer too). */
static int accepts(ordo_topic_t input, ordo_msg_type_t t) {
        return ordo_msg_belongs_on(t, ordo_topic_short(input));
}

/* The commission processor's temporal join with the referral graph as of
 * paid_ms (DESIGN.md "Processors"): ReferrerBound from referral-events,
 * and the order facts of order-events already decided. */
static void bind_referral(void *s, const ordo_msg_t *m) {
        ordo_commission_bind(s, m);
}
static void observe_order(void *s, const ordo_msg_t *m) {
        ordo_commission_observe(s, m);
}
static const ordo_join_t join_referrals = { ORDO_TOPIC_REFERRAL_EVENTS,
                                            ORDO_MSG_REFERRER_BOUND,
                                            bind_referral,
                                            observe_order,
                                            "referral",
                                            ORDO_TOPIC_REFERRAL_COMMANDS,
                                            ORDO_MSG_ORDER_PAID };
#define JOIN_none      NULL
#define JOIN_referrals (&join_referrals)

/* Thin casts from the loop's void * state to each aggregate's type, and
 * the definition the loop runs. */
#define PROCESSOR(agg, in, ev, out, snap, join)                                \
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
        }                                                                      \
        static int agg##_accepts(ordo_msg_type_t t) {                          \
                return accepts(ORDO_TOPIC_##in, t);                            \
        }                                                                      \
        static size_t agg##_bytes(const void *s) {                             \
                return ordo_##agg##_state_bytes(s);                            \
        }                                                                      \
        const ordo_processor_def_t ordo_processor_##agg = { #agg,              \
                                                            ORDO_TOPIC_##in,   \
                                                            ORDO_TOPIC_##ev,   \
                                                            ORDO_TOPIC_##out,  \
                                                            ORDO_TOPIC_##snap, \
                                                            JOIN_##join,       \
                                                            agg##_new,         \
                                                            agg##_destroy,     \
                                                            agg##_handle,      \
                                                            agg##_apply,       \
                                                            agg##_save,        \
                                                            agg##_load,        \
                                                            agg##_accepts,     \
                                                            agg##_bytes };
ORDO_PROCESSORS(PROCESSOR)
#undef PROCESSOR

const ordo_processor_def_t *const ordo_processors[4] = {
#define X(agg, in, ev, out, snap, join) &ordo_processor_##agg,
        ORDO_PROCESSORS(X)
#undef X
};

const ordo_processor_def_t *ordo_processor_find(const char *name) {
        size_t i;
        for (i = 0; i < 4; i++)
                if (!strcmp(ordo_processors[i]->name, name))
                        return ordo_processors[i];
        return NULL;
}

/* Where ordo's producers put a message with this key (librdkafka's
 * murmur2 partitioner, Java's default). */
static int32_t home_partition(const char *key, int32_t partitions) {
        return rd_kafka_msg_partitioner_murmur2(NULL, key, strlen(key),
                                                partitions, NULL, NULL);
}

const char *ordo_processor_refuses(const ordo_processor_def_t *def,
                                   const ordo_msg_t *m, int32_t partition,
                                   int32_t partitions, char *why,
                                   size_t why_size) {
        const char *key = ordo_msg_key(m);
        if (!def->accepts(m->type)) {
                if (why)
                        snprintf(why, why_size, "unexpected type %s on %s",
                                 ordo_msg_type_name(m->type),
                                 ordo_topic_short(def->input));
                return "unexpected_type";
        }
        /* A foreign writer that chose the partition itself would have
         * the command decided by a state that is not its aggregate's: a
         * second activity of one id, with a stock of its own, could
         * oversell. Events come from ordo's processors only; keyless
         * commands (Ticks) go to every partition. */
        if (ordo_msg_is_event(m->type) || !key[0] || partitions < 1 ||
            partition == home_partition(key, partitions))
                return NULL;
        if (why)
                snprintf(why, why_size,
                         "wrong partition: key \"%.64s\" of %s belongs to "
                         "partition %d of %s's %d (murmur2, as ordo's "
                         "producers place it), not %d",
                         key, ordo_msg_type_name(m->type),
                         (int)home_partition(key, partitions),
                         ordo_topic_short(def->input), (int)partitions,
                         (int)partition);
        return "wrong_partition";
}
