/*
 * ordo - field tables of every command and event (see messages.h).
 */
#include "messages.h"

#include <string.h>

#define OFF(member) offsetof(ordo_msg_t, member)
#define SZ(member)  sizeof(((ordo_msg_t *)0)->member)

/* Required identifier: 1..ORDO_ID_MAX bytes. */
#define ID(name, member)                                                       \
        { name, ORDO_FIELD_STRING, OFF(member), SZ(member), 0, 1, 0, 1 }
/* Required string that may be empty (codes chosen by the engine). */
#define STR(name, member)                                                      \
        { name, ORDO_FIELD_STRING, OFF(member), SZ(member), 0, 1, 0, 0 }
/* Optional string, empty when absent. */
#define OPT_STR(name, member)                                                  \
        { name, ORDO_FIELD_STRING, OFF(member), SZ(member), 0, 0, 0, 0 }
#define LONG(name, member)                                                     \
        { name, ORDO_FIELD_LONG, OFF(member), SZ(member), 0, 1, 0, 0 }
#define OPT_LONG(name, member, def)                                            \
        { name, ORDO_FIELD_LONG, OFF(member), SZ(member), 0, 0, def, 0 }
#define BOOL(name, member)                                                     \
        { name, ORDO_FIELD_BOOL, OFF(member), SZ(member), 0, 1, 0, 0 }
#define LONGS(name, member, count)                                             \
        { name, ORDO_FIELD_LONGS, OFF(member), SZ(member), OFF(count), 0, 0, 0 }

/* command_id is optional on input: the ingest generates one when absent.
 * ts_ms is optional here; whether the caller must supply it is the
 * producer's policy (--keep-ts). */
#define COMMAND_META                                                           \
        OPT_STR("command_id", meta.id), OPT_LONG("ts_ms", meta.ts_ms, 0),      \
            OPT_STR("causation_id", meta.causation_id),                        \
            OPT_STR("correlation_id", meta.correlation_id)

#define EVENT_META                                                             \
        STR("event_id", meta.id), STR("aggregate_id", meta.aggregate_id),      \
            LONG("version", meta.version), LONG("ts_ms", meta.ts_ms),          \
            STR("causation_id", meta.causation_id),                            \
            STR("correlation_id", meta.correlation_id)

#define ACTIVITY_BODY                                                          \
        ID("activity_id", u.activity.activity_id), ID("sku", u.activity.sku),  \
            LONG("price_cents", u.activity.price_cents),                       \
            LONG("stock", u.activity.stock),                                   \
            LONG("per_user_limit", u.activity.per_user_limit),                 \
            LONG("start_ms", u.activity.start_ms),                             \
            LONG("end_ms", u.activity.end_ms),                                 \
            OPT_LONG("pay_timeout_ms", u.activity.pay_timeout_ms,              \
                     ORDO_DEFAULT_PAY_TIMEOUT_MS),                             \
            OPT_LONG("auto_receive_ms", u.activity.auto_receive_ms,            \
                     ORDO_DEFAULT_AUTO_RECEIVE_MS),                            \
            OPT_LONG("freeze_ms", u.activity.freeze_ms,                        \
                     ORDO_DEFAULT_FREEZE_MS),                                  \
            LONGS("commission_bps", u.activity.commission_bps,                 \
                  u.activity.n_commission_bps)

#define OPEN_BODY                                                              \
        ID("order_id", u.open.order_id),                                       \
            ID("activity_id", u.open.activity_id),                             \
            ID("user_id", u.open.user_id), LONG("qty", u.open.qty),            \
            LONG("amount_cents", u.open.amount_cents),                         \
            LONG("placed_ms", u.open.placed_ms),                               \
            LONG("pay_deadline_ms", u.open.pay_deadline_ms),                   \
            LONG("auto_receive_ms", u.open.auto_receive_ms),                   \
            LONG("freeze_ms", u.open.freeze_ms),                               \
            LONGS("commission_bps", u.open.commission_bps,                     \
                  u.open.n_commission_bps)

#define RELEASE_BODY                                                           \
        ID("order_id", u.release.order_id),                                    \
            ID("activity_id", u.release.activity_id),                          \
            ID("user_id", u.release.user_id), LONG("qty", u.release.qty),      \
            STR("reason", u.release.reason)

#define STOCK_BODY                                                             \
        ID("activity_id", u.stock.activity_id),                                \
            ID("order_id", u.stock.order_id), ID("user_id", u.stock.user_id),  \
            LONG("qty", u.stock.qty), LONG("remaining", u.stock.remaining),    \
            STR("reason", u.stock.reason)

#define COMMISSION_BODY                                                        \
        ID("order_id", u.commission.order_id),                                 \
            ID("buyer_id", u.commission.buyer_id),                             \
            ID("beneficiary_id", u.commission.beneficiary_id),                 \
            LONG("level", u.commission.level),                                 \
            LONG("rate_bps", u.commission.rate_bps),                           \
            LONG("amount_cents", u.commission.amount_cents),                   \
            LONG("accrued_cents", u.commission.accrued_cents),                 \
            LONG("reversed_cents", u.commission.reversed_cents),               \
            STR("status", u.commission.status)

static const ordo_field_t create_activity[] = { COMMAND_META, ACTIVITY_BODY };
static const ordo_field_t place_order[] = {
        COMMAND_META, ID("order_id", u.place.order_id),
        ID("activity_id", u.place.activity_id), ID("user_id", u.place.user_id),
        LONG("qty", u.place.qty)
};
static const ordo_field_t release_stock[] = { COMMAND_META, RELEASE_BODY };
static const ordo_field_t open_order[] = { COMMAND_META, OPEN_BODY };
static const ordo_field_t cancel_order[] = { COMMAND_META,
                                             ID("order_id", u.cancel.order_id),
                                             ID("user_id", u.cancel.user_id) };
static const ordo_field_t confirm_payment[] = {
        COMMAND_META, ID("order_id", u.payment.order_id),
        ID("payment_id", u.payment.payment_id),
        LONG("amount_cents", u.payment.amount_cents)
};
static const ordo_field_t confirm_receipt[] = {
        COMMAND_META, ID("order_id", u.receipt.order_id)
};
static const ordo_field_t refund_order[] = {
        COMMAND_META, ID("order_id", u.refund.order_id),
        ID("refund_id", u.refund.refund_id),
        LONG("amount_cents", u.refund.amount_cents)
};
static const ordo_field_t bind_referrer[] = {
        COMMAND_META, ID("user_id", u.bind.user_id),
        ID("referrer_id", u.bind.referrer_id)
};
static const ordo_field_t tick[] = { COMMAND_META };

static const ordo_field_t activity_created[] = { EVENT_META, ACTIVITY_BODY };
static const ordo_field_t stock_reserved[] = {
        EVENT_META, STOCK_BODY,
        OPT_LONG("amount_cents", u.stock.amount_cents, 0),
        OPT_LONG("pay_deadline_ms", u.stock.pay_deadline_ms, 0)
};
static const ordo_field_t stock_reserved_v1[] = { EVENT_META, STOCK_BODY };
static const ordo_field_t stock_released[] = { EVENT_META, STOCK_BODY };
static const ordo_field_t order_opened[] = { EVENT_META, OPEN_BODY };
static const ordo_field_t order_paid[] = {
        EVENT_META, ID("order_id", u.payment.order_id),
        ID("payment_id", u.payment.payment_id),
        LONG("amount_cents", u.payment.amount_cents),
        LONG("paid_ms", u.payment.paid_ms)
};
static const ordo_field_t order_cancelled[] = { EVENT_META, RELEASE_BODY };
static const ordo_field_t order_received[] = {
        EVENT_META, ID("order_id", u.received.order_id),
        LONG("received_ms", u.received.received_ms),
        BOOL("automatic", u.received.automatic)
};
static const ordo_field_t order_refunded[] = {
        EVENT_META,
        ID("order_id", u.refund.order_id),
        ID("refund_id", u.refund.refund_id),
        LONG("amount_cents", u.refund.amount_cents),
        LONG("refunded_cents", u.refund.refunded_cents),
        BOOL("full", u.refund.full)
};
static const ordo_field_t order_settled[] = {
        EVENT_META, ID("order_id", u.settled.order_id),
        LONG("settled_ms", u.settled.settled_ms)
};
static const ordo_field_t referrer_bound[] = {
        EVENT_META, ID("user_id", u.bind.user_id),
        ID("referrer_id", u.bind.referrer_id), LONG("bound_ms", u.bind.bound_ms)
};
static const ordo_field_t commission_accrued[] = { EVENT_META,
                                                   COMMISSION_BODY };
static const ordo_field_t commission_reversed[] = { EVENT_META,
                                                    COMMISSION_BODY };
static const ordo_field_t commission_settled[] = { EVENT_META,
                                                   COMMISSION_BODY };
static const ordo_field_t command_rejected[] = {
        EVENT_META,
        STR("command_type", u.rejected.command_type),
        STR("reason", u.rejected.reason),
        BOOL("needs_refund", u.rejected.needs_refund),
        STR("order_id", u.rejected.order_id),
        STR("activity_id", u.rejected.activity_id),
        STR("user_id", u.rejected.user_id),
        LONG("qty", u.rejected.qty),
        STR("payment_id", u.rejected.payment_id),
        LONG("amount_cents", u.rejected.amount_cents)
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Name, kind and route come from the ORDO_MSG_TYPES table; the field lists
 * above are indexed by type. */
static const struct {
        const char *name;
        int is_event;
        const char *routed_to;
} types[ORDO_MSG__COUNT] = {
#define X(e, n, ev, b, to) [ORDO_MSG_##e] = { n, ev, to },
        ORDO_MSG_TYPES(X)
#undef X
};

#define FIELDS(e, a) [ORDO_MSG_##e] = { a, N(a) }
static const struct {
        const ordo_field_t *fields;
        size_t n;
} fields[ORDO_MSG__COUNT] = {
        FIELDS(CREATE_ACTIVITY, create_activity),
        FIELDS(PLACE_ORDER, place_order),
        FIELDS(RELEASE_STOCK, release_stock),
        FIELDS(OPEN_ORDER, open_order),
        FIELDS(CANCEL_ORDER, cancel_order),
        FIELDS(CONFIRM_PAYMENT, confirm_payment),
        FIELDS(CONFIRM_RECEIPT, confirm_receipt),
        FIELDS(REFUND_ORDER, refund_order),
        FIELDS(BIND_REFERRER, bind_referrer),
        FIELDS(TICK, tick),
        FIELDS(ACTIVITY_CREATED, activity_created),
        FIELDS(STOCK_RESERVED, stock_reserved),
        FIELDS(STOCK_RELEASED, stock_released),
        FIELDS(ORDER_OPENED, order_opened),
        FIELDS(ORDER_PAID, order_paid),
        FIELDS(ORDER_CANCELLED, order_cancelled),
        FIELDS(ORDER_RECEIVED, order_received),
        FIELDS(ORDER_REFUNDED, order_refunded),
        FIELDS(ORDER_SETTLED, order_settled),
        FIELDS(REFERRER_BOUND, referrer_bound),
        FIELDS(COMMISSION_ACCRUED, commission_accrued),
        FIELDS(COMMISSION_REVERSED, commission_reversed),
        FIELDS(COMMISSION_SETTLED, commission_settled),
        FIELDS(COMMAND_REJECTED, command_rejected),
};

static int valid_type(ordo_msg_type_t type) {
        return type > ORDO_MSG_NONE && type < ORDO_MSG__COUNT;
}

const ordo_field_t *ordo_msg_fields(ordo_msg_type_t type, size_t *n) {
        if (!valid_type(type)) {
                *n = 0;
                return NULL;
        }
        *n = fields[type].n;
        return fields[type].fields;
}

const char *ordo_msg_empty_id(const ordo_msg_t *m) {
        size_t n, i;
        const ordo_field_t *f = ordo_msg_fields(m->type, &n);
        for (i = 0; i < n; i++)
                if (f[i].kind == ORDO_FIELD_STRING && f[i].min_len > 0 &&
                    !((const char *)m + f[i].offset)[0])
                        return f[i].name;
        return NULL;
}

/* schemas/previous/: one entry per file (codec.c checks each has one). */
static const struct {
        ordo_msg_type_t type;
        int version;
        const ordo_field_t *fields;
        size_t n;
} previous[] = {
        { ORDO_MSG_STOCK_RESERVED, 1, stock_reserved_v1, N(stock_reserved_v1) },
};

const ordo_field_t *ordo_msg_previous_fields(ordo_msg_type_t type, int version,
                                             size_t *n) {
        size_t i;
        for (i = 0; i < N(previous); i++)
                if (previous[i].type == type &&
                    previous[i].version == version) {
                        *n = previous[i].n;
                        return previous[i].fields;
                }
        *n = 0;
        return NULL;
}

const char *ordo_msg_type_name(ordo_msg_type_t type) {
        return valid_type(type) ? types[type].name : "?";
}

ordo_msg_type_t ordo_msg_type_from_name(const char *name) {
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++)
                if (!strcmp(types[t].name, name))
                        return (ordo_msg_type_t)t;
        return ORDO_MSG_NONE;
}

int ordo_msg_is_event(ordo_msg_type_t type) {
        return valid_type(type) && types[type].is_event;
}

int ordo_msg_stamped_by_timer(const ordo_msg_t *m) {
        switch (m->type) {
        case ORDO_MSG_TICK:
        case ORDO_MSG_ORDER_SETTLED:
        case ORDO_MSG_COMMISSION_SETTLED:
                return 1;
        case ORDO_MSG_ORDER_CANCELLED:
        case ORDO_MSG_RELEASE_STOCK:
                return !strcmp(m->u.release.reason, "TIMEOUT");
        case ORDO_MSG_STOCK_RELEASED:
                return !strcmp(m->u.stock.reason, "TIMEOUT");
        case ORDO_MSG_ORDER_RECEIVED:
                return m->u.received.automatic != 0;
        default:
                return 0;
        }
}

int64_t ordo_msg_lag_from_ms(const ordo_msg_t *m, int64_t written_ms) {
        return ordo_msg_stamped_by_timer(m) && written_ms > 0 ? written_ms
                                                              : m->meta.ts_ms;
}

const char *ordo_msg_routed_to(ordo_msg_type_t type) {
        return valid_type(type) ? types[type].routed_to : NULL;
}

int ordo_msg_belongs_on(ordo_msg_type_t type, const char *topic_short) {
        const char *to = ordo_msg_routed_to(type);
        int u;
        if (to)
                return !strcmp(to, topic_short);
        if (!ordo_msg_is_event(type))
                return 0;
        for (u = ORDO_MSG_NONE + 1; u < ORDO_MSG__COUNT; u++)
                if (ordo_msg_is_event((ordo_msg_type_t)u) &&
                    (to = ordo_msg_routed_to((ordo_msg_type_t)u)) &&
                    !strcmp(to, topic_short))
                        return 1;
        return 0;
}

void ordo_msg_init(ordo_msg_t *m, ordo_msg_type_t type) {
        memset(m, 0, sizeof(*m));
        m->type = type;
        if (type == ORDO_MSG_CREATE_ACTIVITY) {
                m->u.activity.pay_timeout_ms = ORDO_DEFAULT_PAY_TIMEOUT_MS;
                m->u.activity.auto_receive_ms = ORDO_DEFAULT_AUTO_RECEIVE_MS;
                m->u.activity.freeze_ms = ORDO_DEFAULT_FREEZE_MS;
                m->u.activity.commission_bps[0] = 1000;
                m->u.activity.commission_bps[1] = 500;
                m->u.activity.n_commission_bps = 2;
        } else if (type == ORDO_MSG_OPEN_ORDER) {
                /* the .avsc's default, for a trusted JSON line without it */
                m->u.open.commission_bps[0] = 1000;
                m->u.open.commission_bps[1] = 500;
                m->u.open.n_commission_bps = 2;
        }
}

const char *ordo_msg_key(const ordo_msg_t *m) {
        switch (m->type) {
        case ORDO_MSG_CREATE_ACTIVITY:
        case ORDO_MSG_ACTIVITY_CREATED:
                return m->u.activity.activity_id;
        case ORDO_MSG_PLACE_ORDER:
                return m->u.place.activity_id;
        case ORDO_MSG_RELEASE_STOCK:
                return m->u.release.activity_id;
        case ORDO_MSG_STOCK_RESERVED:
        case ORDO_MSG_STOCK_RELEASED:
                return m->u.stock.activity_id;
        case ORDO_MSG_OPEN_ORDER:
        case ORDO_MSG_ORDER_OPENED:
                return m->u.open.order_id;
        case ORDO_MSG_CANCEL_ORDER:
                return m->u.cancel.order_id;
        case ORDO_MSG_CONFIRM_PAYMENT:
        case ORDO_MSG_ORDER_PAID:
                return m->u.payment.order_id;
        case ORDO_MSG_CONFIRM_RECEIPT:
                return m->u.receipt.order_id;
        case ORDO_MSG_REFUND_ORDER:
        case ORDO_MSG_ORDER_REFUNDED:
                return m->u.refund.order_id;
        case ORDO_MSG_ORDER_CANCELLED:
                return m->u.release.order_id;
        case ORDO_MSG_ORDER_RECEIVED:
                return m->u.received.order_id;
        case ORDO_MSG_ORDER_SETTLED:
                return m->u.settled.order_id;
        case ORDO_MSG_COMMISSION_ACCRUED:
        case ORDO_MSG_COMMISSION_REVERSED:
        case ORDO_MSG_COMMISSION_SETTLED:
                return m->u.commission.order_id;
        case ORDO_MSG_COMMAND_REJECTED:
                return m->meta.aggregate_id;
        default:
                return "";
        }
}

int ordo_strlcpy(char *dst, const char *src, size_t size) {
        size_t n = strlen(src);
        if (n >= size) {
                memcpy(dst, src, size - 1);
                dst[size - 1] = '\0';
                return -1;
        }
        memcpy(dst, src, n + 1);
        return 0;
}
