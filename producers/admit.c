#include "admit.h"

#include <unistd.h>

#include "clock.h"
#include "random.h"

ordo_err_t ordo_admit(ordo_idgen_t *ids, const char *json, size_t len,
                      const ordo_validate_opts_t *opts, int64_t now_ms,
                      ordo_msg_t *out, ordo_field_fault_t *fault, char *errstr,
                      size_t errstr_size) {
        ordo_err_t err = ordo_validate_command(json, len, opts, out, fault,
                                               errstr, errstr_size);
        if (!err)
                ordo_admit_stamp(ids, opts, now_ms, out);
        return err;
}

void ordo_admit_stamp(ordo_idgen_t *ids, const ordo_validate_opts_t *opts,
                      int64_t now_ms, ordo_msg_t *m) {
        if (!opts->keep_ts)
                m->meta.ts_ms = now_ms;
        if (!m->meta.id[0])
                ordo_idgen_next(ids, 'c', now_ms, m->meta.id,
                                sizeof(m->meta.id));
        if (opts->generate_order_id && m->type == ORDO_MSG_PLACE_ORDER &&
            !m->u.place.order_id[0])
                ordo_idgen_next(ids, 'o', now_ms, m->u.place.order_id,
                                sizeof(m->u.place.order_id));
}

uint32_t ordo_admit_random_instance(void) {
        uint32_t v;
        ordo_random_bytes(&v, sizeof(v));
        return (v ^ (uint32_t)getpid() ^ (uint32_t)ordo_wall_ms()) &
               ORDO_IDGEN_INSTANCE_MAX;
}
