/*
 * ordo - the output context (rules_out.h).
 */
#include "rules_out.h"

#include <string.h>

#include "rules_fmt.h"

void ordo__out_init(ordo__out_t *o, const ordo_msg_t *in, const ordo_pos_t *pos,
                    const ordo_sink_t *sink) {
        o->in = in;
        o->pos = pos;
        o->sink = sink;
        o->index = 0;
        o->prefix_len = 0;
}

ordo_msg_t *ordo__out_begin(ordo__out_t *o, ordo_msg_type_t type,
                            int64_t ts_ms) {
        ordo_msg_t *m = &o->msg;
        const ordo_meta_t *in = &o->in->meta;
        size_t sz = sizeof(o->prefix), n;
        if (!o->prefix_len) {
                n = ordo__put_str(o->prefix, 0, sz, o->pos->source);
                n = ordo__put_str(o->prefix, n, sz, "-");
                n = ordo__put_i64(o->prefix, n, sz, o->pos->partition);
                n = ordo__put_str(o->prefix, n, sz, "-");
                n = ordo__put_i64(o->prefix, n, sz, o->pos->offset);
                o->prefix_len = ordo__put_str(o->prefix, n, sz, "-");
        }
        memset(m, 0, sizeof(*m));
        m->type = type;
        memcpy(m->meta.id, o->prefix, o->prefix_len);
        ordo__put_i64(m->meta.id, o->prefix_len, sizeof(m->meta.id), o->index);
        ORDO__SET(m->meta.causation_id, in->id);
        ORDO__SET(m->meta.correlation_id,
                  in->correlation_id[0] ? in->correlation_id : in->id);
        m->meta.ts_ms = ts_ms;
        return m;
}

void ordo__out_emit(ordo__out_t *o) {
        o->sink->emit(o->sink->opaque, &o->msg);
        o->index++;
}

ordo_msg_t *ordo__out_reject(ordo__out_t *o, const char *aggregate_id,
                             int64_t version, const char *reason) {
        ordo_msg_t *m =
            ordo__out_begin(o, ORDO_MSG_COMMAND_REJECTED, o->in->meta.ts_ms);
        ORDO__SET(m->meta.aggregate_id, aggregate_id);
        m->meta.version = version;
        ORDO__SET(m->u.rejected.command_type, ordo_msg_type_name(o->in->type));
        ORDO__SET(m->u.rejected.reason, reason);
        return m;
}
