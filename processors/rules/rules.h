/*
 * ordo - the pure rules: decide(state, command) -> events, and
 * apply(state, event) -> state, for the four processors of DESIGN.md.
 *
 * Every function here is deterministic: no I/O, no clock, no floats, no
 * randomness, and the same input sequence gives the same output bytes on
 * any machine. Deciding and folding share one code path: *_handle()
 * builds each event, folds it with the same code as *_apply(), and only
 * then hands it to the sink, so replaying the emitted events into a fresh
 * state reproduces the deciding state (tests/unit/test_rules_property.c).
 *
 * Tuned for a hot flash sale: a million PlaceOrder on one activity. All
 * lookups are open-addressing hash tables over strings kept in arenas;
 * tables and arrays grow geometrically, so a decision allocates nothing
 * except when a table doubles. Allocation failure aborts the process:
 * a processor cannot decide without memory, and Kafka's exactly-once
 * restart is the recovery (docs/rules.md).
 *
 * Semantics where RULES.md is silent are written down in docs/rules.md.
 */
#ifndef ORDO_RULES_H
#define ORDO_RULES_H

#include <stdint.h>

#include "messages.h"

/* Where an input message came from: event and outbound command ids are
 * derived from it (RULES.md: ids from the input's position, never
 * random). */
typedef struct ordo_pos_s {
        const char *source; /* short topic name, e.g. "order-commands" */
        int32_t partition;
        int64_t offset;
} ordo_pos_t;

/* The rules hand every event and outbound command here, in order. Events
 * have already been applied to the state when emit is called. The
 * message is only valid during the call: copy it to keep it. */
typedef struct ordo_sink_s {
        void (*emit)(void *opaque, const ordo_msg_t *msg);
        void *opaque;
} ordo_sink_t;

/* Every emitted message gets:
 *   meta.id             "<source>-<partition>-<offset>-<index>", index
 *                       counting the messages emitted for this input
 *   meta.causation_id   the input's meta.id
 *   meta.correlation_id the input's correlation_id, or its id if empty
 *   meta.ts_ms          the input's ts_ms, or a timer's deadline
 * and events also aggregate_id and version (the aggregate's version
 * after the event; a CommandRejected carries the current version, 0 when
 * the aggregate does not exist, and does not change it). */

/* ------------------------------------------------------------------ */
/* Activity processor: the state of one partition of activity-commands. */

/* RULES.md "Activity": upper bounds of a valid CreateActivity. With them
 * no amount of one activity reaches 10^18 cents (stock * price), so the
 * rules' sums fit in int64 (docs/rules.md "Arithmetic"). */
#define ORDO_STOCK_MAX 10000000LL
#define ORDO_PRICE_MAX 100000000000LL
typedef struct ordo_activity_state_s ordo_activity_state_t;

ordo_activity_state_t *ordo_activity_state_new(void);
void ordo_activity_state_destroy(ordo_activity_state_t *s); /* NULL ok */
/* CreateActivity, PlaceOrder, ReleaseStock -> ActivityCreated,
 * StockReserved, StockReleased, CommandRejected events and OpenOrder
 * commands. Other types are ignored (no output). */
void ordo_activity_handle(ordo_activity_state_t *s, const ordo_msg_t *cmd,
                          const ordo_pos_t *pos, const ordo_sink_t *sink);
/* Folds one of its own events (restore from activity-events). */
void ordo_activity_apply(ordo_activity_state_t *s, const ordo_msg_t *ev);
/* Remaining stock of an activity, or -1 if unknown. */
int64_t ordo_activity_remaining(const ordo_activity_state_t *s,
                                const char *activity_id);
/* Order-independent digest of the whole state (replay equality,
 * reconciliation). Equal states give equal digests. */
uint64_t ordo_activity_state_digest(const ordo_activity_state_t *s);

/* ------------------------------------------------------------------ */
/* Order processor: the state of one partition of order-commands. */
typedef struct ordo_order_state_s ordo_order_state_t;

ordo_order_state_t *ordo_order_state_new(void);
void ordo_order_state_destroy(ordo_order_state_t *s); /* NULL ok */
/* OpenOrder, ConfirmPayment, CancelOrder, ConfirmReceipt, RefundOrder,
 * Tick -> OrderOpened, OrderPaid, OrderCancelled, OrderReceived,
 * OrderRefunded, OrderSettled, CommandRejected events and ReleaseStock
 * commands. Timers fire as RULES.md "Timers" says. */
void ordo_order_handle(ordo_order_state_t *s, const ordo_msg_t *cmd,
                       const ordo_pos_t *pos, const ordo_sink_t *sink);
void ordo_order_apply(ordo_order_state_t *s, const ordo_msg_t *ev);
uint64_t ordo_order_state_digest(const ordo_order_state_t *s);

/* ------------------------------------------------------------------ */
/* Referral processor: the single partition of referral-commands. */
typedef struct ordo_referral_state_s ordo_referral_state_t;

ordo_referral_state_t *ordo_referral_state_new(void);
void ordo_referral_state_destroy(ordo_referral_state_t *s); /* NULL ok */
/* BindReferrer -> ReferrerBound or CommandRejected. */
void ordo_referral_handle(ordo_referral_state_t *s, const ordo_msg_t *cmd,
                          const ordo_pos_t *pos, const ordo_sink_t *sink);
void ordo_referral_apply(ordo_referral_state_t *s, const ordo_msg_t *ev);
uint64_t ordo_referral_state_digest(const ordo_referral_state_t *s);

/* ------------------------------------------------------------------ */
/* Commission processor: one partition of order-events and the
 * co-partitioned commission-events, joined with the whole referral
 * graph. */
typedef struct ordo_commission_state_s ordo_commission_state_t;

ordo_commission_state_t *ordo_commission_state_new(void);
void ordo_commission_state_destroy(ordo_commission_state_t *s);
/* An order event (OrderOpened, OrderPaid, OrderRefunded, OrderSettled;
 * OrderCancelled and OrderReceived change nothing) -> CommissionAccrued,
 * CommissionReversed, CommissionSettled events. */
void ordo_commission_handle(ordo_commission_state_t *s,
                            const ordo_msg_t *order_event,
                            const ordo_pos_t *pos, const ordo_sink_t *sink);
/* The referral graph, fed from referral-events (ReferrerBound), kept
 * with bound_ms for the temporal join. First binding of a user wins. */
void ordo_commission_bind(ordo_commission_state_t *s,
                          const ordo_msg_t *referrer_bound);
/* Folds one of its own events (restore from commission-events). */
void ordo_commission_apply(ordo_commission_state_t *s,
                           const ordo_msg_t *commission_event);
/* Records the order facts an order event carries (buyer, amount, rates
 * from OrderOpened; paid from OrderPaid) without deciding anything.
 * Restore needs it: commission-events do not carry an order's amount or
 * an unpaid order's buyer and rates, so a restoring processor folds its
 * commission-events with _apply() AND re-reads its order-events
 * partition up to the committed offset with _observe() (any
 * interleaving). _handle() calls it itself. */
void ordo_commission_observe(ordo_commission_state_t *s,
                             const ordo_msg_t *order_event);

/* Earnings of one beneficiary (RULES.md "Earnings"). */
typedef struct ordo_earnings_s {
        int64_t pending_cents;
        int64_t settled_cents;
        int64_t reversed_cents;
} ordo_earnings_t;
/* 0 and *out filled, or -1 (all zero) if the user never earned. */
int ordo_commission_earnings(const ordo_commission_state_t *s,
                             const char *user_id, ordo_earnings_t *out);
/* Sums over all beneficiaries, and the total ever accrued. */
void ordo_commission_totals(const ordo_commission_state_t *s,
                            ordo_earnings_t *sum, int64_t *accrued_cents);
/* Digest of entries and earnings (not of the order facts, which
 * observe() restores separately). */
uint64_t ordo_commission_state_digest(const ordo_commission_state_t *s);

/* ------------------------------------------------------------------ */
/* Memory held by a state, in bytes (tables, arrays and arenas), for the
 * figures in docs/rules.md and for operators. */
size_t ordo_activity_state_bytes(const ordo_activity_state_t *s);
size_t ordo_order_state_bytes(const ordo_order_state_t *s);
size_t ordo_commission_state_bytes(const ordo_commission_state_t *s);
size_t ordo_referral_state_bytes(const ordo_referral_state_t *s);

/* ------------------------------------------------------------------ */
/* Snapshots: a whole state as bytes, and back, so a restoring processor
 * starts from its latest snapshot instead of the start of its event
 * partition (processors/stream.c keeps them in the snapshots topic).
 *
 * The bytes are private to the rules: a magic, a format version and a
 * checksum, then the state. Saving and loading are exact: a loaded
 * state has the same digest as the saved one AND decides every later
 * input into byte-identical output (timer order, table order and
 * interned strings included). Saving does not change the state.
 *
 * *_load() never trusts its input: a wrong magic, version or checksum,
 * truncated bytes or an inconsistent structure gives NULL and a reason
 * in errstr, and the caller falls back to a full restore. */
typedef struct ordo_buf_s {
        uint8_t *data;
        size_t len;
        size_t cap;
} ordo_buf_t;

/* Frees the bytes and empties the buffer (a zeroed buffer is empty). */
void ordo_buf_fini(ordo_buf_t *b);

/* Each save appends to out (which may hold earlier bytes). */
void ordo_activity_state_save(const ordo_activity_state_t *s, ordo_buf_t *out);
ordo_activity_state_t *ordo_activity_state_load(const void *data, size_t len,
                                                char *errstr,
                                                size_t errstr_size);
void ordo_order_state_save(const ordo_order_state_t *s, ordo_buf_t *out);
ordo_order_state_t *ordo_order_state_load(const void *data, size_t len,
                                          char *errstr, size_t errstr_size);
void ordo_referral_state_save(const ordo_referral_state_t *s, ordo_buf_t *out);
ordo_referral_state_t *ordo_referral_state_load(const void *data, size_t len,
                                                char *errstr,
                                                size_t errstr_size);
/* The commission snapshot holds everything: entries, earnings, the
 * order facts observe() gathered and the referral graph. */
void ordo_commission_state_save(const ordo_commission_state_t *s,
                                ordo_buf_t *out);
ordo_commission_state_t *ordo_commission_state_load(const void *data,
                                                    size_t len, char *errstr,
                                                    size_t errstr_size);

#endif
