/*
 * ordo - the output context of the rule modules: what one input message emits,
 * with ids derived from the input's position (rules.h).
 */
#ifndef ORDO_RULES_OUT_H
#define ORDO_RULES_OUT_H

#include "rules.h"

/* The output context of one input message. */
typedef struct ordo__out_s {
        const ordo_msg_t *in;
        const ordo_pos_t *pos;
        const ordo_sink_t *sink;
        int index;         /* of the next message */
        size_t prefix_len; /* of "<source>-<partition>-<offset>-" */
        char prefix[ORDO_MSG_ID_MAX + 1];
        ordo_msg_t msg; /* the message being built */
} ordo__out_t;

void ordo__out_init(ordo__out_t *o, const ordo_msg_t *in, const ordo_pos_t *pos,
                    const ordo_sink_t *sink);
/* Zeroes o->msg and fills its type and metadata; returns it. */
ordo_msg_t *ordo__out_begin(ordo__out_t *o, ordo_msg_type_t type,
                            int64_t ts_ms);
/* Hands o->msg to the sink and counts it. */
void ordo__out_emit(ordo__out_t *o);
/* Begins a CommandRejected for the input, with its aggregate. */
ordo_msg_t *ordo__out_reject(ordo__out_t *o, const char *aggregate_id,
                             int64_t version, const char *reason);

/* Copies a code or id into a field (truncating, never overflowing). */
#define ORDO__SET(field, src) ordo_strlcpy((field), (src), sizeof(field))

#endif
