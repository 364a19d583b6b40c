#include "admit.h"

#include <stdatomic.h>
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

/* The latest ts_ms this process's door stamped on a ConfirmPayment. A
 * BindReferrer stamped in the same millisecond would count for that
 * payment only if the referral processor bound it before the commission
 * processor decided the payment, a matter of timing (docs/rules.md
 * "Commission"): one admitted after a payment is stamped after it. */
static _Atomic int64_t paid_stamp_max = INT64_MIN;

static int64_t door_stamp(const ordo_msg_t *m, int64_t now_ms) {
        int64_t seen = atomic_load(&paid_stamp_max);
        if (m->type == ORDO_MSG_CONFIRM_PAYMENT)
                while (now_ms > seen && !atomic_compare_exchange_weak(
                                            &paid_stamp_max, &seen, now_ms))
                        ;
        else if (m->type == ORDO_MSG_BIND_REFERRER && now_ms <= seen)
                return seen + 1;
        return now_ms;
}

void ordo_admit_stamp(ordo_idgen_t *ids, const ordo_validate_opts_t *opts,
                      int64_t now_ms, ordo_msg_t *m) {
        if (!opts->keep_ts)
                m->meta.ts_ms = door_stamp(m, now_ms);
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
