/*
 * ordo - the commission processor's join (docs/decisions/0004): it
 * follows referral-events with an assign-only consumer and binds every
 * ReferrerBound into each partition's state.
 */
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

static ordo_err_t keep_binding(ordo__proc_t *p, const ordo_msg_t *m) {
        int i;
        if (p->n_bindings == p->cap_bindings) {
                size_t cap = p->cap_bindings ? p->cap_bindings * 2 : 1024;
                ordo_msg_t *nb = realloc(p->bindings, cap * sizeof(*nb));
                if (!nb) {
                        snprintf(p->errstr, sizeof(p->errstr), "out of memory");
                        return ORDO_ERR_NOMEM;
                }
                p->bindings = nb;
                p->cap_bindings = cap;
        }
        p->bindings[p->n_bindings++] = *m;
        for (i = 0; i < p->n_states; i++)
                if (p->states[i])
                        ordo_commission_bind(p->states[i], m);
        return ORDO_ERR_OK;
}

/* The commission processor's join: before each batch of order events,
 * read referral-events up to its stable end as of now, so a binding
 * committed before a payment was decided is always seen by it. */
ordo_err_t ordo__follow_referrals(ordo__proc_t *p) {
        rd_kafka_message_t *rkm;
        ordo_msg_t m;
        char why[256];
        int64_t lo, end, deadline = ordo_monotonic_ms() + 10000;
        ordo_err_t err = ORDO_ERR_OK;

        if ((err = ordo_kafka_watermarks(p->referrals, p->refs, 0, &lo, &end,
                                         p->errstr, sizeof(p->errstr))))
                return err;
        while (!err && p->refs_end < end && !*p->stop) {
                if (ordo_monotonic_ms() >= deadline) {
                        ORDO_LOG(WARN, p->def->name,
                                 "msg=\"referral-events not read to its end "
                                 "in 10 s; deciding with what was read\" "
                                 "read_to=%lld end=%lld",
                                 (long long)p->refs_end, (long long)end);
                        break;
                }
                if (!(rkm = rd_kafka_consumer_poll(p->referrals, 100)))
                        continue;
                if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        p->refs_end = rkm->offset;
                else if (!rkm->err &&
                         !ordo__decode(p, rkm, &m, why, sizeof(why)) &&
                         m.type == ORDO_MSG_REFERRER_BOUND)
                        err = keep_binding(p, &m);
                rd_kafka_message_destroy(rkm);
        }
        return err;
}
