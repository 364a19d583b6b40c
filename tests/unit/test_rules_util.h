/*
 * ordo - helpers for the rule tests: a sink that records what the rules
 * emit, command builders, and a "world" that wires the four processors
 * the way DESIGN.md's topics do (OpenOrder to the order processor,
 * ReleaseStock back to the activity, order events to the commission
 * processor, referral events to its graph). Header-only: each test file
 * is its own executable.
 */
#ifndef ORDO_TEST_RULES_UTIL_H
#define ORDO_TEST_RULES_UTIL_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

typedef struct tout_s {
        ordo_msg_t *v;
        size_t n, cap;
} tout_t;

static void tout_emit(void *opaque, const ordo_msg_t *m) {
        tout_t *o = opaque;
        if (o->n == o->cap) {
                o->cap = o->cap ? o->cap * 2 : 16;
                o->v = realloc(o->v, o->cap * sizeof(*o->v));
                if (!o->v)
                        abort();
        }
        o->v[o->n++] = *m;
}

static inline ordo_sink_t tout_sink(tout_t *o) {
        ordo_sink_t s = { tout_emit, o };
        return s;
}

static inline void tout_clear(tout_t *o) {
        o->n = 0;
}

static inline void tout_free(tout_t *o) {
        free(o->v);
        memset(o, 0, sizeof(*o));
}

static inline size_t tout_count(const tout_t *o, ordo_msg_type_t type) {
        size_t i, n = 0;
        for (i = 0; i < o->n; i++)
                n += o->v[i].type == type;
        return n;
}

/* The first message of a type, or NULL. */
static inline const ordo_msg_t *tout_find(const tout_t *o,
                                          ordo_msg_type_t type) {
        size_t i;
        for (i = 0; i < o->n; i++)
                if (o->v[i].type == type)
                        return &o->v[i];
        return NULL;
}

/* The reason of the only message if it is a rejection, "" if no output,
 * "ACCEPTED" otherwise. */
static inline const char *tout_outcome(const tout_t *o) {
        if (!o->n)
                return "";
        if (o->n == 1 && o->v[0].type == ORDO_MSG_COMMAND_REJECTED)
                return o->v[0].u.rejected.reason;
        return "ACCEPTED";
}

static int64_t t_offset; /* the next input offset */

static inline ordo_pos_t t_pos(const char *source) {
        ordo_pos_t p = { source, 0, t_offset++ };
        return p;
}

static inline ordo_msg_t t_cmd(ordo_msg_type_t type, int64_t ts) {
        ordo_msg_t m;
        ordo_msg_init(&m, type);
        m.meta.ts_ms = ts;
        snprintf(m.meta.id, sizeof(m.meta.id), "cmd-%lld", (long long)t_offset);
        return m;
}

static inline ordo_msg_t t_create(const char *id, int64_t stock, int64_t price,
                                  int64_t limit, int64_t start, int64_t end) {
        ordo_msg_t m = t_cmd(ORDO_MSG_CREATE_ACTIVITY, start);
        ordo_activity_body_t *b = &m.u.activity;
        ordo_strlcpy(b->activity_id, id, sizeof(b->activity_id));
        ordo_strlcpy(b->sku, "sku-1", sizeof(b->sku));
        b->stock = stock;
        b->price_cents = price;
        b->per_user_limit = limit;
        b->start_ms = start;
        b->end_ms = end;
        return m;
}

static inline ordo_msg_t t_place(const char *order, const char *act,
                                 const char *user, int64_t qty, int64_t ts) {
        ordo_msg_t m = t_cmd(ORDO_MSG_PLACE_ORDER, ts);
        ordo_strlcpy(m.u.place.order_id, order, sizeof(m.u.place.order_id));
        ordo_strlcpy(m.u.place.activity_id, act, sizeof(m.u.place.activity_id));
        ordo_strlcpy(m.u.place.user_id, user, sizeof(m.u.place.user_id));
        m.u.place.qty = qty;
        return m;
}

static inline ordo_msg_t t_release(const char *order, const char *act,
                                   const char *user, int64_t qty,
                                   const char *reason, int64_t ts) {
        ordo_msg_t m = t_cmd(ORDO_MSG_RELEASE_STOCK, ts);
        ordo_release_body_t *b = &m.u.release;
        ordo_strlcpy(b->order_id, order, sizeof(b->order_id));
        ordo_strlcpy(b->activity_id, act, sizeof(b->activity_id));
        ordo_strlcpy(b->user_id, user, sizeof(b->user_id));
        b->qty = qty;
        ordo_strlcpy(b->reason, reason, sizeof(b->reason));
        return m;
}

/* An OpenOrder as the activity would send it. */
static inline ordo_msg_t t_open(const char *order, const char *act,
                                const char *user, int64_t qty, int64_t amount,
                                int64_t ts, int64_t pay_timeout,
                                int64_t auto_receive, int64_t freeze) {
        ordo_msg_t m = t_cmd(ORDO_MSG_OPEN_ORDER, ts);
        ordo_open_body_t *b = &m.u.open;
        ordo_strlcpy(b->order_id, order, sizeof(b->order_id));
        ordo_strlcpy(b->activity_id, act, sizeof(b->activity_id));
        ordo_strlcpy(b->user_id, user, sizeof(b->user_id));
        b->qty = qty;
        b->amount_cents = amount;
        b->placed_ms = ts;
        b->pay_deadline_ms = ts + pay_timeout;
        b->auto_receive_ms = auto_receive;
        b->freeze_ms = freeze;
        b->commission_bps[0] = 1000;
        b->commission_bps[1] = 500;
        b->n_commission_bps = 2;
        return m;
}

static inline ordo_msg_t t_pay(const char *order, const char *payment,
                               int64_t amount, int64_t ts) {
        ordo_msg_t m = t_cmd(ORDO_MSG_CONFIRM_PAYMENT, ts);
        ordo_strlcpy(m.u.payment.order_id, order, sizeof(m.u.payment.order_id));
        ordo_strlcpy(m.u.payment.payment_id, payment,
                     sizeof(m.u.payment.payment_id));
        m.u.payment.amount_cents = amount;
        return m;
}

static inline ordo_msg_t t_cancel(const char *order, const char *user,
                                  int64_t ts) {
        ordo_msg_t m = t_cmd(ORDO_MSG_CANCEL_ORDER, ts);
        ordo_strlcpy(m.u.cancel.order_id, order, sizeof(m.u.cancel.order_id));
        ordo_strlcpy(m.u.cancel.user_id, user, sizeof(m.u.cancel.user_id));
        return m;
}

static inline ordo_msg_t t_receipt(const char *order, int64_t ts) {
        ordo_msg_t m = t_cmd(ORDO_MSG_CONFIRM_RECEIPT, ts);
        ordo_strlcpy(m.u.receipt.order_id, order, sizeof(m.u.receipt.order_id));
        return m;
}

static inline ordo_msg_t t_refund(const char *order, const char *refund,
                                  int64_t amount, int64_t ts) {
        ordo_msg_t m = t_cmd(ORDO_MSG_REFUND_ORDER, ts);
        ordo_strlcpy(m.u.refund.order_id, order, sizeof(m.u.refund.order_id));
        ordo_strlcpy(m.u.refund.refund_id, refund,
                     sizeof(m.u.refund.refund_id));
        m.u.refund.amount_cents = amount;
        return m;
}

static inline ordo_msg_t t_bind(const char *user, const char *referrer,
                                int64_t ts) {
        ordo_msg_t m = t_cmd(ORDO_MSG_BIND_REFERRER, ts);
        ordo_strlcpy(m.u.bind.user_id, user, sizeof(m.u.bind.user_id));
        ordo_strlcpy(m.u.bind.referrer_id, referrer,
                     sizeof(m.u.bind.referrer_id));
        return m;
}

static inline ordo_msg_t t_tick(int64_t ts) {
        return t_cmd(ORDO_MSG_TICK, ts);
}

/* ---- the four processors wired together ---- */

typedef struct world_s {
        ordo_activity_state_t *act;
        ordo_order_state_t *ord;
        ordo_referral_state_t *ref;
        ordo_commission_state_t *com;
        tout_t log;   /* every event and command emitted, in order */
        tout_t step;  /* what the last world_send emitted */
        tout_t queue; /* commands in flight between processors */
        size_t qhead;
        int64_t offset; /* input positions, per world: ids derive from it */
        /* called after the activity processor decided an input */
        void (*on_activity)(void *opaque, const ordo_msg_t *in,
                            const tout_t *out);
        void *opaque;
} world_t;

static inline void world_init(world_t *w) {
        memset(w, 0, sizeof(*w));
        w->act = ordo_activity_state_new();
        w->ord = ordo_order_state_new();
        w->ref = ordo_referral_state_new();
        w->com = ordo_commission_state_new();
}

static inline void world_fini(world_t *w) {
        ordo_activity_state_destroy(w->act);
        ordo_order_state_destroy(w->ord);
        ordo_referral_state_destroy(w->ref);
        ordo_commission_state_destroy(w->com);
        tout_free(&w->log);
        tout_free(&w->step);
        tout_free(&w->queue);
}

static inline int is_order_event(ordo_msg_type_t t) {
        return t >= ORDO_MSG_ORDER_OPENED && t <= ORDO_MSG_ORDER_SETTLED;
}

/* Delivers one message to the processor that reads it, recording what
 * it emits; commands it emits are queued, order events go on to the
 * commission processor and ReferrerBound to its graph. */
static inline void world_deliver(world_t *w, const ordo_msg_t *in) {
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = { "", 0, w->offset++ };
        size_t i;
        switch (in->type) {
        case ORDO_MSG_CREATE_ACTIVITY:
        case ORDO_MSG_PLACE_ORDER:
        case ORDO_MSG_RELEASE_STOCK:
                pos.source = "activity-commands";
                ordo_activity_handle(w->act, in, &pos, &sink);
                if (w->on_activity)
                        w->on_activity(w->opaque, in, &out);
                break;
        case ORDO_MSG_BIND_REFERRER:
                pos.source = "referral-commands";
                ordo_referral_handle(w->ref, in, &pos, &sink);
                break;
        default:
                if (is_order_event(in->type)) {
                        pos.source = "order-events";
                        ordo_commission_handle(w->com, in, &pos, &sink);
                } else {
                        pos.source = "order-commands";
                        ordo_order_handle(w->ord, in, &pos, &sink);
                }
                break;
        }
        for (i = 0; i < out.n; i++) {
                const ordo_msg_t *m = &out.v[i];
                tout_emit(&w->log, m);
                tout_emit(&w->step, m);
                if (!ordo_msg_is_event(m->type) || is_order_event(m->type))
                        tout_emit(&w->queue, m);
                if (m->type == ORDO_MSG_REFERRER_BOUND)
                        ordo_commission_bind(w->com, m);
        }
        tout_free(&out);
}

static inline void world_send(world_t *w, const ordo_msg_t *cmd) {
        tout_clear(&w->step);
        world_deliver(w, cmd);
        while (w->qhead < w->queue.n) {
                ordo_msg_t m = w->queue.v[w->qhead++];
                world_deliver(w, &m);
        }
        tout_clear(&w->queue);
        w->qhead = 0;
}

/* Fresh states folded from w's events: deciding and folding share one
 * code path (rules.h), so r must equal w. */
static inline void world_replay(const world_t *w, world_t *r) {
        size_t k;
        world_init(r);
        for (k = 0; k < w->log.n; k++) {
                const ordo_msg_t *v = &w->log.v[k];
                if (!ordo_msg_is_event(v->type))
                        continue;
                ordo_activity_apply(r->act, v);
                ordo_order_apply(r->ord, v);
                ordo_referral_apply(r->ref, v);
                ordo_commission_bind(r->com, v);
                ordo_commission_observe(r->com, v);
                ordo_commission_apply(r->com, v);
        }
        r->offset = w->offset;
}

/* a and b hold the same state, processor by processor. */
static inline void world_assert_same(const world_t *a, const world_t *b) {
        cr_assert_eq(ordo_activity_state_digest(a->act),
                     ordo_activity_state_digest(b->act));
        cr_assert_eq(ordo_order_state_digest(a->ord),
                     ordo_order_state_digest(b->ord));
        cr_assert_eq(ordo_referral_state_digest(a->ref),
                     ordo_referral_state_digest(b->ref));
        cr_assert_eq(ordo_commission_state_digest(a->com),
                     ordo_commission_state_digest(b->com));
}

#endif
