/*
 * ordo - the vocabulary of the engine: every command and event as a plain
 * C struct, and one table that describes their fields.
 *
 * Pure: no I/O, no allocation, no third-party headers. The Avro codec
 * (schemas/), the JSON validation (producers/) and the projections walk
 * ordo_msg_fields() instead of repeating field lists; the rules use the
 * structs directly.
 *
 * Strings are fixed NUL-terminated arrays so a message can be copied and
 * stored without allocation; a length limit is part of the contract
 * (RULES.md: identifiers are 1..64 bytes).
 */
#ifndef ORDO_MESSAGES_H
#define ORDO_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

#define ORDO_ID_MAX      64  /* business identifiers, bytes, RULES.md */
#define ORDO_MSG_ID_MAX  127 /* command, event, causation, correlation ids */
#define ORDO_SKU_MAX     128
#define ORDO_CODE_MAX    31 /* reason codes and command type names */
#define ORDO_LEVELS_MAX  3  /* commission levels allowed by RULES.md */
#define ORDO_LEVELS_WIRE 8  /* more than this is refused at the door */

/* RULES.md defaults of CreateActivity */
#define ORDO_DEFAULT_PAY_TIMEOUT_MS  900000LL
#define ORDO_DEFAULT_AUTO_RECEIVE_MS 864000000LL
#define ORDO_DEFAULT_FREEZE_MS       604800000LL

/* X(enum suffix, Avro/JSON name, is_event, body member, routed to).
 * routed to: the short name of the topic the type goes to (DESIGN.md
 * "Topics and keys"): a command's command topic, an event's event topic.
 * CommandRejected has none: each processor writes it to its own. */
#define ORDO_MSG_TYPES(X)                                                      \
        X(CREATE_ACTIVITY, "CreateActivity", 0, activity, "activity-commands") \
        X(PLACE_ORDER, "PlaceOrder", 0, place, "activity-commands")            \
        X(RELEASE_STOCK, "ReleaseStock", 0, release, "activity-commands")      \
        X(OPEN_ORDER, "OpenOrder", 0, open, "order-commands")                  \
        X(CANCEL_ORDER, "CancelOrder", 0, cancel, "order-commands")            \
        X(CONFIRM_PAYMENT, "ConfirmPayment", 0, payment, "order-commands")     \
        X(CONFIRM_RECEIPT, "ConfirmReceipt", 0, receipt, "order-commands")     \
        X(REFUND_ORDER, "RefundOrder", 0, refund, "order-commands")            \
        X(BIND_REFERRER, "BindReferrer", 0, bind, "referral-commands")         \
        X(TICK, "Tick", 0, tick, "order-commands")                             \
        X(ACTIVITY_CREATED, "ActivityCreated", 1, activity, "activity-events") \
        X(STOCK_RESERVED, "StockReserved", 1, stock, "activity-events")        \
        X(STOCK_RELEASED, "StockReleased", 1, stock, "activity-events")        \
        X(ORDER_OPENED, "OrderOpened", 1, open, "order-events")                \
        X(ORDER_PAID, "OrderPaid", 1, payment, "order-events")                 \
        X(ORDER_CANCELLED, "OrderCancelled", 1, release, "order-events")       \
        X(ORDER_RECEIVED, "OrderReceived", 1, received, "order-events")        \
        X(ORDER_REFUNDED, "OrderRefunded", 1, refund, "order-events")          \
        X(ORDER_SETTLED, "OrderSettled", 1, settled, "order-events")           \
        X(REFERRER_BOUND, "ReferrerBound", 1, bind, "referral-events")         \
        X(COMMISSION_ACCRUED, "CommissionAccrued", 1, commission,              \
          "commission-events")                                                 \
        X(COMMISSION_REVERSED, "CommissionReversed", 1, commission,            \
          "commission-events")                                                 \
        X(COMMISSION_SETTLED, "CommissionSettled", 1, commission,              \
          "commission-events")                                                 \
        X(COMMAND_REJECTED, "CommandRejected", 1, rejected, NULL)

typedef enum {
        ORDO_MSG_NONE = 0,
#define X(e, n, ev, b, to) ORDO_MSG_##e,
        ORDO_MSG_TYPES(X)
#undef X
            ORDO_MSG__COUNT
} ordo_msg_type_t;

/* Metadata every message carries. Commands use id as command_id; events
 * also carry the aggregate they belong to and its version after them. */
typedef struct ordo_meta_s {
        char id[ORDO_MSG_ID_MAX + 1];
        char causation_id[ORDO_MSG_ID_MAX + 1];
        char correlation_id[ORDO_MSG_ID_MAX + 1];
        char aggregate_id[ORDO_ID_MAX + 1]; /* events only */
        int64_t version;                    /* events only */
        int64_t ts_ms;
} ordo_meta_t;

/* CreateActivity, ActivityCreated */
typedef struct ordo_activity_body_s {
        char activity_id[ORDO_ID_MAX + 1];
        char sku[ORDO_SKU_MAX + 1];
        int64_t price_cents;
        int64_t stock;
        int64_t per_user_limit;
        int64_t start_ms;
        int64_t end_ms;
        int64_t pay_timeout_ms;
        int64_t auto_receive_ms;
        int64_t freeze_ms;
        int64_t commission_bps[ORDO_LEVELS_WIRE];
        int32_t n_commission_bps;
} ordo_activity_body_t;

/* PlaceOrder */
typedef struct ordo_place_body_s {
        char order_id[ORDO_ID_MAX + 1];
        char activity_id[ORDO_ID_MAX + 1];
        char user_id[ORDO_ID_MAX + 1];
        int64_t qty;
} ordo_place_body_t;

/* ReleaseStock (order -> activity), OrderCancelled.
 * reason: USER, TIMEOUT, or DUPLICATE_ORDER_ID (ReleaseStock only). */
typedef struct ordo_release_body_s {
        char order_id[ORDO_ID_MAX + 1];
        char activity_id[ORDO_ID_MAX + 1];
        char user_id[ORDO_ID_MAX + 1];
        int64_t qty;
        char reason[ORDO_CODE_MAX + 1];
} ordo_release_body_t;

/* OpenOrder (activity -> order), OrderOpened */
typedef struct ordo_open_body_s {
        char order_id[ORDO_ID_MAX + 1];
        char activity_id[ORDO_ID_MAX + 1];
        char user_id[ORDO_ID_MAX + 1];
        int64_t qty;
        int64_t amount_cents;
        int64_t placed_ms;
        int64_t pay_deadline_ms;
        int64_t auto_receive_ms;
        int64_t freeze_ms;
        int64_t commission_bps[ORDO_LEVELS_WIRE];
        int32_t n_commission_bps;
} ordo_open_body_t;

/* CancelOrder */
typedef struct ordo_cancel_body_s {
        char order_id[ORDO_ID_MAX + 1];
        char user_id[ORDO_ID_MAX + 1];
} ordo_cancel_body_t;

/* ConfirmPayment, OrderPaid (paid_ms set on the event) */
typedef struct ordo_payment_body_s {
        char order_id[ORDO_ID_MAX + 1];
        char payment_id[ORDO_ID_MAX + 1];
        int64_t amount_cents;
        int64_t paid_ms;
} ordo_payment_body_t;

/* ConfirmReceipt */
typedef struct ordo_receipt_body_s {
        char order_id[ORDO_ID_MAX + 1];
} ordo_receipt_body_t;

/* RefundOrder, OrderRefunded (refunded_cents: the order's total so far;
 * full: the order is now REFUNDED) */
typedef struct ordo_refund_body_s {
        char order_id[ORDO_ID_MAX + 1];
        char refund_id[ORDO_ID_MAX + 1];
        int64_t amount_cents;
        int64_t refunded_cents;
        int32_t full;
} ordo_refund_body_t;

/* BindReferrer, ReferrerBound (bound_ms set on the event) */
typedef struct ordo_bind_body_s {
        char user_id[ORDO_ID_MAX + 1];
        char referrer_id[ORDO_ID_MAX + 1];
        int64_t bound_ms;
} ordo_bind_body_t;

/* Tick: no fields of its own in the log. to_partition is not in the
 * Avro: 1 + the one partition a replayed Tick goes back to (`ordo
 * produce`, decision 0030); 0, every partition. */
typedef struct ordo_tick_body_s {
        int32_t to_partition;
} ordo_tick_body_t;

/* StockReserved, StockReleased: remaining is the activity's after it */
typedef struct ordo_stock_body_s {
        char activity_id[ORDO_ID_MAX + 1];
        char order_id[ORDO_ID_MAX + 1];
        char user_id[ORDO_ID_MAX + 1];
        int64_t qty;
        int64_t remaining;
        char reason[ORDO_CODE_MAX + 1]; /* StockReleased only */
        /* StockReserved only, since its version 2: the terms the order
         * opens with, so a read model can show the order one hop sooner
         * (decision 0024); 0 when written by version 1 */
        int64_t amount_cents;
        int64_t pay_deadline_ms;
} ordo_stock_body_t;

/* OrderReceived */
typedef struct ordo_received_body_s {
        char order_id[ORDO_ID_MAX + 1];
        int64_t received_ms;
        int32_t automatic;
} ordo_received_body_t;

/* OrderSettled */
typedef struct ordo_settled_body_s {
        char order_id[ORDO_ID_MAX + 1];
        int64_t settled_ms;
} ordo_settled_body_t;

/* CommissionAccrued, CommissionReversed, CommissionSettled: one entry
 * (order, level). amount_cents is what this event accrues, reverses or
 * settles; reversed_cents is the entry's reversed total after it; status
 * is PENDING, SETTLED or REVERSED after it. */
typedef struct ordo_commission_body_s {
        char order_id[ORDO_ID_MAX + 1];
        char buyer_id[ORDO_ID_MAX + 1];
        char beneficiary_id[ORDO_ID_MAX + 1];
        int64_t level; /* 1-based */
        int64_t rate_bps;
        int64_t amount_cents;
        int64_t accrued_cents;
        int64_t reversed_cents;
        char status[ORDO_CODE_MAX + 1];
} ordo_commission_body_t;

/* CommandRejected: the command's type and reason code; the ids the
 * command named, so a front end polling them learns why. */
typedef struct ordo_rejected_body_s {
        char command_type[ORDO_CODE_MAX + 1];
        char reason[ORDO_CODE_MAX + 1];
        int32_t needs_refund;
        char order_id[ORDO_ID_MAX + 1];
        char activity_id[ORDO_ID_MAX + 1];
        char user_id[ORDO_ID_MAX + 1];
        int64_t qty;
        char payment_id[ORDO_ID_MAX + 1];
        int64_t amount_cents;
} ordo_rejected_body_t;

typedef struct ordo_msg_s {
        ordo_msg_type_t type;
        ordo_meta_t meta;
        union {
                ordo_activity_body_t activity;
                ordo_place_body_t place;
                ordo_release_body_t release;
                ordo_open_body_t open;
                ordo_cancel_body_t cancel;
                ordo_payment_body_t payment;
                ordo_receipt_body_t receipt;
                ordo_refund_body_t refund;
                ordo_bind_body_t bind;
                ordo_tick_body_t tick;
                ordo_stock_body_t stock;
                ordo_received_body_t received;
                ordo_settled_body_t settled;
                ordo_commission_body_t commission;
                ordo_rejected_body_t rejected;
        } u;
} ordo_msg_t;

/* Field descriptors: what the codecs walk. */
typedef enum {
        ORDO_FIELD_STRING, /* char[size], NUL-terminated */
        ORDO_FIELD_LONG,   /* int64_t */
        ORDO_FIELD_BOOL,   /* int32_t, 0 or 1 */
        ORDO_FIELD_LONGS,  /* int64_t[ORDO_LEVELS_WIRE] + int32_t count */
} ordo_field_kind_t;

typedef struct ordo_field_s {
        const char *name;
        ordo_field_kind_t kind;
        size_t offset;       /* into ordo_msg_t */
        size_t size;         /* STRING: buffer size including NUL */
        size_t count_offset; /* LONGS: offset of the int32_t count */
        int required;        /* 1: an input must carry it */
        int64_t def;         /* LONG default when not required */
        int min_len;         /* STRING: 1 for identifiers, else 0 */
} ordo_field_t;

/* The fields of a type, in Avro schema order (metadata first). */
const ordo_field_t *ordo_msg_fields(ordo_msg_type_t type, size_t *n);

/* The first identifier of m that is empty (RULES.md: identifiers are
 * never empty), or NULL. A message from a foreign producer that skipped
 * validation can carry one; the processors and `ordo reconcile` refuse
 * it alike. */
const char *ordo_msg_empty_id(const ordo_msg_t *m);

/* The fields of an earlier version of a type's schema
 * (schemas/previous/<Type>.v<version>.avsc), which the decoder still
 * reads; NULL when there is no such version. Fields added since are not
 * in it: a message decoded with it has them zero or empty. */
const ordo_field_t *ordo_msg_previous_fields(ordo_msg_type_t type, int version,
                                             size_t *n);

const char *ordo_msg_type_name(ordo_msg_type_t type);
/* ORDO_MSG_NONE when the name is unknown. */
ordo_msg_type_t ordo_msg_type_from_name(const char *name);
int ordo_msg_is_event(ordo_msg_type_t type);
/* 1 when m's ts_ms is a timer's, not a sender's stamp: a Tick (stamped
 * tick.lag.ms behind the clock), and what a timer decided, stamped with
 * its deadline (RULES.md "Timers"): a TIMEOUT's OrderCancelled,
 * ReleaseStock and StockReleased, an automatic OrderReceived, an
 * OrderSettled and its CommissionSettled. Their age is the timer's
 * delay, no latency of ordo's. */
int ordo_msg_stamped_by_timer(const ordo_msg_t *m);
/* When m's age is counted from (the metrics' lag): its ts_ms, the
 * sender's stamp; for a timer's message, written_ms, when its stage
 * wrote it (its record's time), so that the timer's delay is not taken
 * for a reader's. ts_ms when written_ms is unknown (0 or less). */
int64_t ordo_msg_lag_from_ms(const ordo_msg_t *m, int64_t written_ms);
/* The "routed to" column: a topic's short name, or NULL (CommandRejected,
 * unknown types). */
const char *ordo_msg_routed_to(ordo_msg_type_t type);
/* 1 when ordo writes messages of this type to the topic of that short
 * name: what the table routes there, and CommandRejected on any event
 * topic (each processor writes it to its own). */
int ordo_msg_belongs_on(ordo_msg_type_t type, const char *topic_short);

/* Zero the message and set its type and the defaults of RULES.md. */
void ordo_msg_init(ordo_msg_t *m, ordo_msg_type_t type);

/* The key the message is routed by (RULES.md "routed by", DESIGN.md
 * topics); "" for messages with no key (Tick, BindReferrer). */
const char *ordo_msg_key(const ordo_msg_t *m);

/* Bounded string copy into a fixed field; returns 0, or -1 if truncated. */
int ordo_strlcpy(char *dst, const char *src, size_t size);

#endif
