/*
 * ordo - the one door every command enters by: `ordo produce`, the HTTP
 * gateway (`ordo ingest`) and `ordo tick`. Admitting a command is three
 * steps, in this order:
 *   validate  its structure (validate.h; the caller's opts say what the
 *             source may supply)
 *   stamp     ts_ms with the door's clock, unless the source is trusted to
 *             keep its own (opts->keep_ts)
 *   name      a command_id when it has none, and an order_id for a
 *             PlaceOrder without one when opts->generate_order_id
 * Ids come from one generator (idgen.h), so every door makes them alike.
 */
#ifndef ORDO_ADMIT_H
#define ORDO_ADMIT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "idgen.h"
#include "messages.h"
#include "validate.h"

/* One door of a process (the gateway's threads share it): its ids and
 * what its stamps must keep. A BindReferrer stamped in the millisecond
 * of a ConfirmPayment admitted before it would count for that payment
 * (bound_ms <= paid_ms) only if the referral processor bound it before
 * the commission processor decided the payment, a matter of timing
 * (docs/rules.md "Commission"): it waits for the clock's next
 * millisecond, so that it is stamped after that payment and before any
 * admitted after it. */
typedef struct ordo_door_s {
        ordo_idgen_t ids;
        _Atomic int64_t paid_ms; /* the latest ConfirmPayment's stamp */
        int64_t (*clock)(void);  /* read again while waiting: wall ms */
} ordo_door_t;

void ordo_door_init(ordo_door_t *d, uint32_t instance);
void ordo_door_fini(ordo_door_t *d);

/* Validate, stamp and name one JSON command; validate.h's errors, fault
 * and errstr. now_ms is the stamp and the time of generated ids. */
ordo_err_t ordo_admit(ordo_door_t *door, const char *json, size_t len,
                      const ordo_validate_opts_t *opts, int64_t now_ms,
                      ordo_msg_t *out, ordo_field_fault_t *fault, char *errstr,
                      size_t errstr_size);

/* Stamp and name a command the caller built itself (a Tick): the last two
 * steps of ordo_admit. */
void ordo_admit_stamp(ordo_door_t *door, const ordo_validate_opts_t *opts,
                      int64_t now_ms, ordo_msg_t *m);

/* An instance id for a generator when none is configured: random, so
 * concurrent processes almost never share one. */
uint32_t ordo_admit_random_instance(void);

#endif
