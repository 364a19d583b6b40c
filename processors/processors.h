/*
 * ordo - the four processors of DESIGN.md, one line each: the stage
 * table (runtime/cli/stages.c) and their definitions (processors.c) are
 * made from this list.
 */
#ifndef ORDO_PROCESSORS_H
#define ORDO_PROCESSORS_H

#include "stream.h"

/* X(name, input topic, event topic, outbound command topic, snapshot
 * topic, join), topics as ORDO_TOPIC_ suffixes (_COUNT: none), the join
 * as a suffix of processors.c's JOIN_ (none, referrals). An outbound
 * command that leads to another lengthens the chains of consequences
 * that `ordo wait` follows (runtime/cli/lag.c, CONSEQUENCE_HOPS). */
#define ORDO_PROCESSORS(X)                                                     \
        X(activity, ACTIVITY_COMMANDS, ACTIVITY_EVENTS, ORDER_COMMANDS,        \
          ACTIVITY_SNAPSHOTS, none)                                            \
        X(order, ORDER_COMMANDS, ORDER_EVENTS, ACTIVITY_COMMANDS,              \
          ORDER_SNAPSHOTS, none)                                               \
        X(referral, REFERRAL_COMMANDS, REFERRAL_EVENTS, _COUNT,                \
          REFERRAL_SNAPSHOTS, none)                                            \
        X(commission, ORDER_EVENTS, COMMISSION_EVENTS, _COUNT,                 \
          COMMISSION_SNAPSHOTS, referrals)

/* ordo_processor_activity, ... */
#define X(agg, in, ev, out, snap, join)                                        \
        extern const ordo_processor_def_t ordo_processor_##agg;
ORDO_PROCESSORS(X)
#undef X

#endif
