#include "admit.h"

#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "random.h"

void ordo_door_init(ordo_door_t *d, uint32_t instance) {
        ordo_idgen_init(&d->ids, instance);
        atomic_init(&d->paid_ms, INT64_MIN);
        d->clock = ordo_wall_ms;
}

void ordo_door_fini(ordo_door_t *d) {
        ordo_idgen_fini(&d->ids);
}

ordo_err_t ordo_admit(ordo_door_t *door, const char *json, size_t len,
                      const ordo_validate_opts_t *opts, int64_t now_ms,
                      ordo_msg_t *out, ordo_field_fault_t *fault, char *errstr,
                      size_t errstr_size) {
        ordo_err_t err = ordo_validate_command(json, len, opts, out, fault,
                                               errstr, errstr_size);
        if (!err)
                ordo_admit_stamp(door, opts, now_ms, out);
        return err;
}

/* The stamp of m: now_ms, but a BindReferrer in the millisecond of the
 * latest ConfirmPayment waits for the next one (admit.h; at most 1 ms,
 * and never for a clock that went back: it takes the clock then). */
static int64_t door_stamp(ordo_door_t *d, const ordo_msg_t *m, int64_t now_ms) {
        static const struct timespec a_little = { 0, 50000 };
        int64_t paid = atomic_load(&d->paid_ms);
        if (m->type == ORDO_MSG_CONFIRM_PAYMENT)
                while (now_ms > paid && !atomic_compare_exchange_weak(
                                            &d->paid_ms, &paid, now_ms))
                        ;
        else if (m->type == ORDO_MSG_BIND_REFERRER)
                while (now_ms == paid) {
                        nanosleep(&a_little, NULL);
                        now_ms = d->clock();
                }
        return now_ms;
}

void ordo_admit_stamp(ordo_door_t *door, const ordo_validate_opts_t *opts,
                      int64_t now_ms, ordo_msg_t *m) {
        if (!opts->keep_ts)
                m->meta.ts_ms = door_stamp(door, m, now_ms);
        if (!m->meta.id[0])
                ordo_idgen_next(&door->ids, 'c', now_ms, m->meta.id,
                                sizeof(m->meta.id));
        if (opts->generate_order_id && m->type == ORDO_MSG_PLACE_ORDER &&
            !m->u.place.order_id[0])
                ordo_idgen_next(&door->ids, 'o', now_ms, m->u.place.order_id,
                                sizeof(m->u.place.order_id));
}

uint32_t ordo_admit_random_instance(void) {
        uint32_t v;
        ordo_random_bytes(&v, sizeof(v));
        return (v ^ (uint32_t)getpid() ^ (uint32_t)ordo_wall_ms()) &
               ORDO_IDGEN_INSTANCE_MAX;
}
