/*
 * ordo - the order processor (RULES.md "Order lifecycle and payment"):
 * the order state machine, payments, refunds, and its three timers.
 *
 * Each order has at most one timer at a time (payment timeout while
 * PENDING_PAYMENT, automatic receipt while PAID, settlement while
 * RECEIVED), kept in one min-heap per partition ordered by (first ts at
 * which it is due, deadline, order id), so a Tick fires every due timer
 * of the partition in deadline order, ties broken by order id, and costs
 * O(log n) per timer fired. The heap is updated by the fold (apply), so
 * restoring from order-events rebuilds it exactly.
 *
 * Aggregate: the order. OrderOpened is version 1, each order event adds
 * 1; CommandRejected (aggregate = the order named) carries the current
 * version, 0 if unknown.
 */
#include "rules.h"

#include <stdlib.h>
#include <string.h>

#include "rules_alloc.h"
#include "rules_arith.h"
#include "rules_digest.h"
#include "rules_map.h"
#include "rules_out.h"
#include "rules_snap.h"
#include "rules_strtab.h"
#include "rules_vec.h"

#define MAX_REFUNDS 50 /* RULES.md: WeChat Pay's limit */

enum status {
        PENDING_PAYMENT = 1,
        PAID,
        RECEIVED,
        SETTLED,
        CANCELLED,
        REFUNDED
};

typedef struct refund_s {
        struct refund_s *next;
        const char *id;
} refund_t;

typedef struct order_s {
        const char *id;
        const char *activity_id; /* interned */
        const char *user_id;     /* interned */
        const char *payment_id;  /* NULL until paid */
        refund_t *refunds;       /* applied refund ids, newest first */
        int64_t qty, amount_cents, placed_ms, pay_deadline_ms;
        int64_t auto_receive_ms, freeze_ms;
        int64_t paid_ms, received_ms, settled_ms, refunded_cents, version;
        int64_t deadline;  /* of its timer */
        int64_t due;       /* first ts at which the timer fires */
        uint32_t heap_pos; /* ORDO__NONE: no timer */
        int32_t n_refunds;
        int32_t status;
} order_t;

struct ordo_order_state_s {
        ordo__arena_t arena;
        ordo__strings_t strings; /* activity and user ids */
        ordo__map_t by_id;       /* order id -> index into orders */
        ordo__vec_t orders;      /* order_t */
        uint32_t *heap;          /* order indices */
        uint32_t heap_n, heap_cap;
};

ordo_order_state_t *ordo_order_state_new(void) {
        ordo_order_state_t *s = ordo__xcalloc(1, sizeof(*s));
        s->strings.arena = &s->arena;
        return s;
}

void ordo_order_state_destroy(ordo_order_state_t *s) {
        if (!s)
                return;
        ordo__map_fini(&s->strings.map);
        ordo__map_fini(&s->by_id);
        free(s->orders.data);
        free(s->heap);
        ordo__arena_fini(&s->arena);
        free(s);
}

static order_t *at(const ordo_order_state_t *s, uint32_t i) {
        return ORDO__VEC_AT(&s->orders, order_t, i);
}

static uint32_t find(const ordo_order_state_t *s, const char *id) {
        size_t len = strlen(id);
        ordo__slot_t *sl =
            ordo__map_find(&s->by_id, id, len, ordo__hash(id, len));
        return sl ? sl->val : ORDO__NONE;
}

/* ---- timers ---- */

/* RULES.md "Timers": the payment timeout fires when ts > deadline, the
 * other two when ts >= deadline. */
static int is_due(const order_t *o, int64_t ts) {
        return o->status == PENDING_PAYMENT ? ts > o->deadline
                                            : ts >= o->deadline;
}

static int before(const ordo_order_state_t *s, uint32_t a, uint32_t b) {
        const order_t *x = at(s, a), *y = at(s, b);
        if (x->due != y->due)
                return x->due < y->due;
        if (x->deadline != y->deadline)
                return x->deadline < y->deadline;
        return strcmp(x->id, y->id) < 0;
}

static void heap_set(ordo_order_state_t *s, uint32_t pos, uint32_t idx) {
        s->heap[pos] = idx;
        at(s, idx)->heap_pos = pos;
}

static void sift_up(ordo_order_state_t *s, uint32_t pos) {
        uint32_t idx = s->heap[pos], parent;
        while (pos > 0) {
                parent = (pos - 1) / 2;
                if (!before(s, idx, s->heap[parent]))
                        break;
                heap_set(s, pos, s->heap[parent]);
                pos = parent;
        }
        heap_set(s, pos, idx);
}

static void sift_down(ordo_order_state_t *s, uint32_t pos) {
        uint32_t idx = s->heap[pos], child;
        for (;;) {
                child = 2 * pos + 1;
                if (child >= s->heap_n)
                        break;
                if (child + 1 < s->heap_n &&
                    before(s, s->heap[child + 1], s->heap[child]))
                        child++;
                if (!before(s, s->heap[child], idx))
                        break;
                heap_set(s, pos, s->heap[child]);
                pos = child;
        }
        heap_set(s, pos, idx);
}

static void heap_remove(ordo_order_state_t *s, uint32_t idx) {
        uint32_t pos = at(s, idx)->heap_pos, last;
        at(s, idx)->heap_pos = ORDO__NONE;
        last = s->heap[--s->heap_n];
        if (pos == s->heap_n)
                return;
        heap_set(s, pos, last);
        sift_up(s, pos);
        sift_down(s, at(s, last)->heap_pos);
}

/* Sets the order's deadline and due from its status; 0 if its status
 * has no timer, or none that a ts_ms can reach: RULES.md adds paid_ms +
 * auto_receive_ms (received_ms + freeze_ms) as numbers, and a sum
 * beyond int64 is later than every ts_ms (docs/rules.md); a pay timeout
 * needs ts > deadline, which no ts_ms is beyond INT64_MAX (and in the
 * heap such a timer would hold back the others due at INT64_MAX). */
static int set_timer(order_t *o) {
        switch (o->status) {
        case PENDING_PAYMENT:
                if (o->pay_deadline_ms == INT64_MAX)
                        return 0;
                o->deadline = o->pay_deadline_ms;
                o->due = ordo__sat_add(o->deadline, 1);
                return 1;
        case PAID:
                if (!ordo__add(o->paid_ms, o->auto_receive_ms, &o->deadline))
                        return 0;
                o->due = o->deadline;
                return 1;
        case RECEIVED:
                if (!ordo__add(o->received_ms, o->freeze_ms, &o->deadline))
                        return 0;
                o->due = o->deadline;
                return 1;
        default:
                return 0;
        }
}

/* Sets the order's timer from its status and puts it in the heap. */
static void reschedule(ordo_order_state_t *s, uint32_t idx) {
        order_t *o = at(s, idx);
        int armed = set_timer(o);
        if (o->heap_pos != ORDO__NONE)
                heap_remove(s, idx);
        if (!armed)
                return;
        if (s->heap_n == s->heap_cap) {
                s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 64;
                s->heap =
                    ordo__xrealloc(s->heap, s->heap_cap * sizeof(*s->heap));
        }
        s->heap[s->heap_n] = idx;
        at(s, idx)->heap_pos = s->heap_n++;
        sift_up(s, s->heap_n - 1);
}

/* ---- folding ---- */

static void apply_opened(ordo_order_state_t *s, const ordo_msg_t *ev) {
        const ordo_open_body_t *b = &ev->u.open;
        size_t len = strlen(b->order_id);
        uint32_t h = ordo__hash(b->order_id, len), i;
        order_t *o;
        if (ordo__map_find(&s->by_id, b->order_id, len, h))
                return;
        i = ordo__vec_push(&s->orders, sizeof(order_t));
        o = at(s, i);
        o->id = ordo__arena_strdup(&s->arena, b->order_id, len);
        o->activity_id = ordo__intern(&s->strings, b->activity_id);
        o->user_id = ordo__intern(&s->strings, b->user_id);
        o->qty = b->qty;
        o->amount_cents = b->amount_cents;
        o->placed_ms = b->placed_ms;
        o->pay_deadline_ms = b->pay_deadline_ms;
        o->auto_receive_ms = b->auto_receive_ms;
        o->freeze_ms = b->freeze_ms;
        o->status = PENDING_PAYMENT;
        o->version = ev->meta.version;
        o->heap_pos = ORDO__NONE;
        ordo__map_insert(&s->by_id, o->id, h, i);
        reschedule(s, i);
}

void ordo_order_apply(ordo_order_state_t *s, const ordo_msg_t *ev) {
        uint32_t i;
        order_t *o;
        refund_t *r;
        if (ev->type == ORDO_MSG_ORDER_OPENED) {
                apply_opened(s, ev);
                return;
        }
        if (ev->type < ORDO_MSG_ORDER_PAID || ev->type > ORDO_MSG_ORDER_SETTLED)
                return; /* CommandRejected changes nothing */
        i = find(s, ordo_msg_key(ev));
        if (i == ORDO__NONE)
                return;
        o = at(s, i);
        switch (ev->type) {
        case ORDO_MSG_ORDER_PAID:
                o->status = PAID;
                o->paid_ms = ev->u.payment.paid_ms;
                o->payment_id =
                    ordo__arena_strdup(&s->arena, ev->u.payment.payment_id,
                                       strlen(ev->u.payment.payment_id));
                break;
        case ORDO_MSG_ORDER_CANCELLED:
                o->status = CANCELLED;
                break;
        case ORDO_MSG_ORDER_RECEIVED:
                o->status = RECEIVED;
                o->received_ms = ev->u.received.received_ms;
                break;
        case ORDO_MSG_ORDER_REFUNDED:
                r = ordo__arena_alloc(&s->arena, sizeof(*r));
                r->id = ordo__arena_strdup(&s->arena, ev->u.refund.refund_id,
                                           strlen(ev->u.refund.refund_id));
                r->next = o->refunds;
                o->refunds = r;
                o->n_refunds++;
                o->refunded_cents = ev->u.refund.refunded_cents;
                if (ev->u.refund.full)
                        o->status = REFUNDED;
                break;
        default: /* ORDO_MSG_ORDER_SETTLED */
                o->status = SETTLED;
                o->settled_ms = ev->u.settled.settled_ms;
                break;
        }
        o->version = ev->meta.version;
        reschedule(s, i);
}

/* ---- deciding ---- */

static void fold_emit(ordo_order_state_t *s, ordo__out_t *out) {
        ordo_order_apply(s, &out->msg);
        ordo__out_emit(out);
}

static ordo_msg_t *begin_event(ordo__out_t *out, ordo_msg_type_t type,
                               int64_t ts, const order_t *o) {
        ordo_msg_t *m = ordo__out_begin(out, type, ts);
        ORDO__SET(m->meta.aggregate_id, o->id);
        m->meta.version = o->version + 1;
        return m;
}

/* OrderCancelled, then ReleaseStock to the activity (reason USER or
 * TIMEOUT): RULES.md "stock released". */
static void cancel_now(ordo_order_state_t *s, ordo__out_t *out, uint32_t i,
                       int64_t ts, const char *reason) {
        order_t *o = at(s, i);
        ordo_release_body_t body;
        ordo_msg_t *m;
        memset(&body, 0, sizeof(body));
        ORDO__SET(body.order_id, o->id);
        ORDO__SET(body.activity_id, o->activity_id);
        ORDO__SET(body.user_id, o->user_id);
        body.qty = o->qty;
        ORDO__SET(body.reason, reason);
        m = begin_event(out, ORDO_MSG_ORDER_CANCELLED, ts, o);
        m->u.release = body;
        fold_emit(s, out);
        m = ordo__out_begin(out, ORDO_MSG_RELEASE_STOCK, ts);
        m->u.release = body;
        ordo__out_emit(out);
}

/* Fires the order's timer at its own deadline. */
static void fire(ordo_order_state_t *s, ordo__out_t *out, uint32_t i) {
        order_t *o = at(s, i);
        int64_t d = o->deadline;
        ordo_msg_t *m;
        switch (o->status) {
        case PENDING_PAYMENT:
                cancel_now(s, out, i, d, "TIMEOUT");
                return;
        case PAID:
                m = begin_event(out, ORDO_MSG_ORDER_RECEIVED, d, o);
                ORDO__SET(m->u.received.order_id, o->id);
                m->u.received.received_ms = d;
                m->u.received.automatic = 1;
                break;
        default: /* RECEIVED: the only other status with a timer */
                m = begin_event(out, ORDO_MSG_ORDER_SETTLED, d, o);
                ORDO__SET(m->u.settled.order_id, o->id);
                m->u.settled.settled_ms = d;
                break;
        }
        fold_emit(s, out);
}

/* The order's due timers, each at its own deadline (a receipt may make
 * the settlement due too). */
static void fire_order(ordo_order_state_t *s, ordo__out_t *out, uint32_t i,
                       int64_t ts) {
        while (at(s, i)->heap_pos != ORDO__NONE && is_due(at(s, i), ts))
                fire(s, out, i);
}

/* Tick: every due timer of the partition, in deadline order. */
static void fire_all(ordo_order_state_t *s, ordo__out_t *out, int64_t ts) {
        while (s->heap_n && is_due(at(s, s->heap[0]), ts))
                fire(s, out, s->heap[0]);
}

static ordo_msg_t *reject(ordo__out_t *out, const char *order_id,
                          const order_t *o, const char *reason) {
        ordo_msg_t *m =
            ordo__out_reject(out, order_id, o ? o->version : 0, reason);
        ORDO__SET(m->u.rejected.order_id, order_id);
        return m;
}

static void open_order(ordo_order_state_t *s, ordo__out_t *out) {
        const ordo_open_body_t *b = &out->in->u.open;
        int64_t ts = out->in->meta.ts_ms;
        uint32_t i = find(s, b->order_id);
        ordo_msg_t *m;
        if (i != ORDO__NONE) {
                /* docs/rules.md: the same OpenOrder again (same
                 * activity) is a redelivery, ignored; releasing its
                 * stock would free the live order's reservation. */
                if (!strcmp(at(s, i)->activity_id, b->activity_id))
                        return;
                m = reject(out, b->order_id, at(s, i), "DUPLICATE_ORDER_ID");
                ORDO__SET(m->u.rejected.activity_id, b->activity_id);
                ORDO__SET(m->u.rejected.user_id, b->user_id);
                m->u.rejected.qty = b->qty;
                m->u.rejected.amount_cents = b->amount_cents;
                ordo__out_emit(out);
                m = ordo__out_begin(out, ORDO_MSG_RELEASE_STOCK, ts);
                ORDO__SET(m->u.release.order_id, b->order_id);
                ORDO__SET(m->u.release.activity_id, b->activity_id);
                ORDO__SET(m->u.release.user_id, b->user_id);
                m->u.release.qty = b->qty;
                ORDO__SET(m->u.release.reason, "DUPLICATE_ORDER_ID");
                ordo__out_emit(out);
                return;
        }
        m = ordo__out_begin(out, ORDO_MSG_ORDER_OPENED, ts);
        ORDO__SET(m->meta.aggregate_id, b->order_id);
        m->meta.version = 1;
        m->u.open = *b;
        fold_emit(s, out);
        fire_order(s, out, find(s, b->order_id), ts);
}

static void confirm_payment(ordo_order_state_t *s, ordo__out_t *out) {
        const ordo_payment_body_t *b = &out->in->u.payment;
        int64_t ts = out->in->meta.ts_ms;
        uint32_t i = find(s, b->order_id);
        const char *reason = NULL;
        int needs_refund = 0;
        order_t *o;
        ordo_msg_t *m;

        if (i != ORDO__NONE) {
                fire_order(s, out, i, ts); /* 2 */
                o = at(s, i);
                if (o->status == PENDING_PAYMENT) {
                        if (b->amount_cents != o->amount_cents) /* 5 */
                                reason = "AMOUNT_MISMATCH";
                } else if (o->status == CANCELLED) { /* 4 */
                        reason = "ORDER_CANCELLED";
                        needs_refund = 1;
                } else if (!strcmp(o->payment_id, b->payment_id)) {
                        return; /* 3: the provider's retry */
                } else {
                        reason = "DUPLICATE_PAYMENT";
                        needs_refund = 1;
                }
        } else {
                reason = "UNKNOWN_ORDER"; /* 1 */
        }
        if (reason) {
                m = reject(out, b->order_id, i == ORDO__NONE ? NULL : at(s, i),
                           reason);
                ORDO__SET(m->u.rejected.payment_id, b->payment_id);
                m->u.rejected.amount_cents = b->amount_cents;
                m->u.rejected.needs_refund = needs_refund;
                ordo__out_emit(out);
                return;
        }
        m = begin_event(out, ORDO_MSG_ORDER_PAID, ts, at(s, i)); /* 6 */
        ORDO__SET(m->u.payment.order_id, b->order_id);
        ORDO__SET(m->u.payment.payment_id, b->payment_id);
        m->u.payment.amount_cents = b->amount_cents;
        m->u.payment.paid_ms = ts;
        fold_emit(s, out);
        fire_order(s, out, i, ts);
}

static void cancel_order(ordo_order_state_t *s, ordo__out_t *out) {
        const ordo_cancel_body_t *b = &out->in->u.cancel;
        int64_t ts = out->in->meta.ts_ms;
        uint32_t i = find(s, b->order_id);
        const char *reason = NULL;
        const order_t *o = NULL;
        ordo_msg_t *m;

        if (i == ORDO__NONE) {
                reason = "UNKNOWN_ORDER";
        } else {
                fire_order(s, out, i, ts);
                o = at(s, i);
                if (strcmp(o->user_id, b->user_id) != 0)
                        reason = "NOT_OWNER";
                else if (o->status == CANCELLED)
                        return; /* already cancelled: ignored */
                else if (o->status != PENDING_PAYMENT)
                        reason = "NOT_PENDING";
        }
        if (reason) {
                m = reject(out, b->order_id, o, reason);
                ORDO__SET(m->u.rejected.user_id, b->user_id);
                ordo__out_emit(out);
                return;
        }
        cancel_now(s, out, i, ts, "USER");
        fire_order(s, out, i, ts);
}

static void confirm_receipt(ordo_order_state_t *s, ordo__out_t *out) {
        const ordo_receipt_body_t *b = &out->in->u.receipt;
        int64_t ts = out->in->meta.ts_ms;
        uint32_t i = find(s, b->order_id);
        const order_t *o = NULL;
        ordo_msg_t *m;
        if (i != ORDO__NONE) {
                fire_order(s, out, i, ts);
                o = at(s, i);
                if (o->status == RECEIVED || o->status == SETTLED)
                        return; /* ignored */
        }
        if (!o || o->status != PAID) {
                reject(out, b->order_id, o,
                       o ? "INVALID_STATE" : "UNKNOWN_ORDER");
                ordo__out_emit(out);
                return;
        }
        m = begin_event(out, ORDO_MSG_ORDER_RECEIVED, ts, o);
        ORDO__SET(m->u.received.order_id, b->order_id);
        m->u.received.received_ms = ts;
        fold_emit(s, out);
        fire_order(s, out, i, ts); /* freeze_ms = 0 settles at once */
}

static int refund_applied(const order_t *o, const char *refund_id) {
        const refund_t *r;
        for (r = o->refunds; r; r = r->next)
                if (!strcmp(r->id, refund_id))
                        return 1;
        return 0;
}

static void refund_order(ordo_order_state_t *s, ordo__out_t *out) {
        const ordo_refund_body_t *b = &out->in->u.refund;
        int64_t ts = out->in->meta.ts_ms;
        uint32_t i = find(s, b->order_id);
        const char *reason = NULL;
        const order_t *o = NULL;
        ordo_msg_t *m;

        if (i == ORDO__NONE) {
                reason = "UNKNOWN_ORDER"; /* 1 */
        } else {
                fire_order(s, out, i, ts); /* 2 */
                o = at(s, i);
                if (refund_applied(o, b->refund_id)) /* 3 */
                        return;
                if (o->status == SETTLED) /* 4 */
                        reason = "WINDOW_CLOSED";
                else if (o->status != PAID && o->status != RECEIVED)
                        reason = "INVALID_STATE";
                else if (b->amount_cents < 1) /* 5 */
                        reason = "INVALID_AMOUNT";
                else if (b->amount_cents > o->amount_cents - o->refunded_cents)
                        reason = "EXCEEDS_PAID";
                else if (o->n_refunds >= MAX_REFUNDS)
                        reason = "TOO_MANY_REFUNDS";
        }
        if (reason) {
                m = reject(out, b->order_id, o, reason);
                m->u.rejected.amount_cents = b->amount_cents;
                ordo__out_emit(out);
                return;
        }
        m = begin_event(out, ORDO_MSG_ORDER_REFUNDED, ts, o); /* 6 */
        ORDO__SET(m->u.refund.order_id, b->order_id);
        ORDO__SET(m->u.refund.refund_id, b->refund_id);
        m->u.refund.amount_cents = b->amount_cents;
        m->u.refund.refunded_cents = o->refunded_cents + b->amount_cents;
        m->u.refund.full = m->u.refund.refunded_cents == o->amount_cents;
        fold_emit(s, out);
        fire_order(s, out, i, ts);
}

void ordo_order_handle(ordo_order_state_t *s, const ordo_msg_t *cmd,
                       const ordo_pos_t *pos, const ordo_sink_t *sink) {
        ordo__out_t out;
        ordo__out_init(&out, cmd, pos, sink);
        switch (cmd->type) {
        case ORDO_MSG_OPEN_ORDER:
                open_order(s, &out);
                break;
        case ORDO_MSG_CONFIRM_PAYMENT:
                confirm_payment(s, &out);
                break;
        case ORDO_MSG_CANCEL_ORDER:
                cancel_order(s, &out);
                break;
        case ORDO_MSG_CONFIRM_RECEIPT:
                confirm_receipt(s, &out);
                break;
        case ORDO_MSG_REFUND_ORDER:
                refund_order(s, &out);
                break;
        case ORDO_MSG_TICK:
                fire_all(s, &out, cmd->meta.ts_ms);
                break;
        default:
                break;
        }
}

/* ---- digest and size ---- */

uint64_t ordo_order_state_digest(const ordo_order_state_t *s) {
        uint64_t d = 0, h;
        uint32_t i;
        const refund_t *r;
        for (i = 0; i < s->orders.n; i++) {
                const order_t *o = at(s, i);
                h = ordo__mix_str(0, o->id);
                h = ordo__mix_str(h, o->activity_id);
                h = ordo__mix_str(h, o->user_id);
                h = ordo__mix_str(h, o->payment_id);
                h = ordo__mix(h, (uint64_t)o->qty);
                h = ordo__mix(h, (uint64_t)o->amount_cents);
                h = ordo__mix(h, (uint64_t)o->placed_ms);
                h = ordo__mix(h, (uint64_t)o->pay_deadline_ms);
                h = ordo__mix(h, (uint64_t)o->auto_receive_ms);
                h = ordo__mix(h, (uint64_t)o->freeze_ms);
                h = ordo__mix(h, (uint64_t)o->paid_ms);
                h = ordo__mix(h, (uint64_t)o->received_ms);
                h = ordo__mix(h, (uint64_t)o->settled_ms);
                h = ordo__mix(h, (uint64_t)o->refunded_cents);
                h = ordo__mix(h, (uint64_t)o->version);
                h = ordo__mix(h, (uint64_t)o->status);
                h = ordo__mix(h, (uint64_t)o->n_refunds);
                h = ordo__mix(
                    h, o->heap_pos == ORDO__NONE ? 0 : (uint64_t)o->deadline);
                for (r = o->refunds; r; r = r->next)
                        h = ordo__mix_str(h, r->id);
                d += h;
        }
        return d;
}

size_t ordo_order_state_bytes(const ordo_order_state_t *s) {
        return sizeof(*s) + s->arena.bytes + ordo__map_bytes(&s->strings.map) +
               ordo__map_bytes(&s->by_id) +
               (size_t)s->orders.cap * sizeof(order_t) +
               (size_t)s->heap_cap * sizeof(*s->heap);
}

/* ---- snapshot ----
 * the interned activity and user ids (ordo__strtab_t);
 * orders (index order): id, activity and user (references), payment id
 *   (optional), refund ids newest first, the numbers, status;
 * the timer heap as it is: length, capacity, order indices.
 * deadline and due are not written: they follow from the status
 * (set_timer), and a loaded order out of the heap has them 0, which
 * nothing reads. by_id is rebuilt from the orders. */

static void save_order(const order_t *o, ordo__strtab_t *st, ordo_buf_t *b) {
        const refund_t *r;
        ordo__wr_str(b, o->id);
        ordo__strtab_wr(st, b, o->activity_id);
        ordo__strtab_wr(st, b, o->user_id);
        ordo__wr_optstr(b, o->payment_id);
        ordo__wr_varint(b, (uint64_t)o->n_refunds);
        for (r = o->refunds; r; r = r->next)
                ordo__wr_str(b, r->id);
        ordo__wr_i64(b, o->qty);
        ordo__wr_i64(b, o->amount_cents);
        ordo__wr_i64(b, o->placed_ms);
        ordo__wr_i64(b, o->pay_deadline_ms);
        ordo__wr_i64(b, o->auto_receive_ms);
        ordo__wr_i64(b, o->freeze_ms);
        ordo__wr_i64(b, o->paid_ms);
        ordo__wr_i64(b, o->received_ms);
        ordo__wr_i64(b, o->settled_ms);
        ordo__wr_i64(b, o->refunded_cents);
        ordo__wr_i64(b, o->version);
        ordo__wr_u8(b, (uint8_t)o->status);
}

void ordo_order_state_save(const ordo_order_state_t *s, ordo_buf_t *out) {
        size_t start = ordo__snap_begin(out, ORDO__SNAP_ORDER);
        ordo__strtab_t st;
        uint32_t i;
        ordo__strtab_save(&st, &s->strings, out);
        ordo__wr_varint(out, s->orders.n);
        for (i = 0; i < s->orders.n; i++) {
                if (i + 8 < s->orders.n) /* hide the table's cache miss */
                        ordo__strtab_prefetch(&st, at(s, i + 8)->user_id);
                save_order(at(s, i), &st, out);
        }
        ordo__strtab_fini(&st);
        ordo__wr_varint(out, s->heap_n);
        ordo__wr_varint(out, s->heap_cap);
        for (i = 0; i < s->heap_n; i++)
                ordo__wr_varint(out, s->heap[i]);
        ordo__snap_end(out, start);
}

static void load_order(ordo_order_state_t *s, ordo__rd_t *r, const char **tab,
                       uint32_t n_tab) {
        uint32_t n_refunds, k;
        refund_t **tail;
        order_t o;
        memset(&o, 0, sizeof(o));
        o.id = ordo__rd_str(r, &s->arena, NULL);
        o.activity_id = ordo__strtab_rd(r, tab, n_tab, 0);
        o.user_id = ordo__strtab_rd(r, tab, n_tab, 0);
        o.payment_id = ordo__rd_optstr(r, &s->arena);
        n_refunds = ordo__rd_count(r, 1);
        if (n_refunds > INT32_MAX)
                ordo__rd_fail(r, "too many refunds");
        tail = &o.refunds;
        for (k = 0; k < n_refunds && !r->why; k++) {
                refund_t *rf = ordo__arena_alloc(&s->arena, sizeof(*rf));
                rf->id = ordo__rd_str(r, &s->arena, NULL);
                rf->next = NULL;
                *tail = rf;
                tail = &rf->next;
        }
        o.n_refunds = (int32_t)n_refunds;
        o.qty = ordo__rd_i64(r);
        o.amount_cents = ordo__rd_i64(r);
        o.placed_ms = ordo__rd_i64(r);
        o.pay_deadline_ms = ordo__rd_i64(r);
        o.auto_receive_ms = ordo__rd_i64(r);
        o.freeze_ms = ordo__rd_i64(r);
        o.paid_ms = ordo__rd_i64(r);
        o.received_ms = ordo__rd_i64(r);
        o.settled_ms = ordo__rd_i64(r);
        o.refunded_cents = ordo__rd_i64(r);
        o.version = ordo__rd_i64(r);
        o.status = (int32_t)ordo__rd_u8(r);
        o.heap_pos = ORDO__NONE;
        if (r->why)
                return;
        if (o.status < PENDING_PAYMENT || o.status > REFUNDED) {
                ordo__rd_fail(r, "bad order status");
                return;
        }
        /* Later payments compare against it. */
        if (!o.payment_id && o.status != PENDING_PAYMENT &&
            o.status != CANCELLED) {
                ordo__rd_fail(r, "paid order without payment id");
                return;
        }
        k = ordo__vec_push(&s->orders, sizeof(order_t));
        *at(s, k) = o;
}

/* The heap as saved: every order with a timer exactly once, nothing
 * else, and each entry not before its parent. */
static void load_heap(ordo_order_state_t *s, ordo__rd_t *r) {
        uint32_t n = ordo__rd_count(r, 1), cap, i;
        cap = (uint32_t)ordo__rd_upto(r, s->orders.cap, "heap too big");
        if (r->why)
                return;
        if (n > s->orders.n || cap < n ||
            (cap && (cap < 64 || (cap & (cap - 1))))) {
                ordo__rd_fail(r, "bad heap capacity");
                return;
        }
        s->heap_cap = cap;
        s->heap = cap ? ordo__xrealloc(NULL, cap * sizeof(*s->heap)) : NULL;
        for (i = 0; i < n; i++) {
                uint32_t idx = (uint32_t)ordo__rd_upto(
                    r, s->orders.n - 1, "heap entry out of range");
                order_t *o;
                if (r->why)
                        return;
                o = at(s, idx);
                if (o->heap_pos != ORDO__NONE || !set_timer(o)) {
                        ordo__rd_fail(r, "heap entry repeated or "
                                         "without timer");
                        return;
                }
                s->heap[i] = idx;
                o->heap_pos = i;
                s->heap_n = i + 1;
        }
        for (i = 0; i < s->orders.n; i++) {
                order_t *o = at(s, i);
                if (o->heap_pos == ORDO__NONE && set_timer(o)) {
                        ordo__rd_fail(r, "order timer not in the heap");
                        return;
                }
        }
        for (i = 1; i < s->heap_n; i++)
                if (before(s, s->heap[i], s->heap[(i - 1) / 2])) {
                        ordo__rd_fail(r, "heap out of order");
                        return;
                }
}

ordo_order_state_t *ordo_order_state_load(const void *data, size_t len,
                                          char *errstr, size_t errstr_size) {
        ordo__rd_t r;
        ordo_order_state_t *s;
        const char **tab;
        uint32_t n_tab = 0, n, i;
        if (ordo__snap_open(&r, data, len, ORDO__SNAP_ORDER, errstr,
                            errstr_size))
                return NULL;
        s = ordo_order_state_new();
        tab = ordo__strtab_load(&r, &s->strings, &n_tab);
        n = ordo__rd_count(&r, 17);
        ordo__vec_reserve(&s->orders, sizeof(order_t), n);
        ordo__map_reserve(&s->by_id, n);
        for (i = 0; i < n && !r.why; i++)
                load_order(s, &r, tab, n_tab);
        free(tab);
        if (!r.why && ordo__map_index(&s->by_id, &s->orders, sizeof(order_t)))
                ordo__rd_fail(&r, "duplicate order id");
        load_heap(s, &r);
        if (ordo__snap_close(&r, errstr, errstr_size)) {
                ordo_order_state_destroy(s);
                return NULL;
        }
        return s;
}
