/*
 * ordo - the activity processor (RULES.md "Activity"): flash-sale stock,
 * per-user limits and idempotent PlaceOrder retries.
 *
 * Tuned for one hot activity taking a million PlaceOrder from hundreds
 * of thousands of users, nearly all of them rejected: every order id is
 * remembered (rule 2: a retry is ignored, accepted or rejected), so the
 * per-activity order table is the biggest structure. A rejected order
 * costs one map slot and its id in the arena, no record; a reservation
 * adds a 16-byte record; a user gets a record only once reserved.
 *
 * Aggregate: the activity. ActivityCreated is version 1 and every
 * StockReserved and StockReleased adds 1; CommandRejected (aggregate =
 * the activity named) carries the current version, 0 if unknown.
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
#include "rules_vec.h"

#define SEEN ORDO__NONE /* order map value: rejected, nothing reserved */

typedef struct activity_s {
        const char *id;
        int64_t price_cents, stock, per_user_limit, start_ms, end_ms;
        int64_t pay_timeout_ms, auto_receive_ms, freeze_ms;
        int64_t commission_bps[ORDO_LEVELS_MAX];
        int32_t n_commission_bps;
        int64_t reserved, released, version;
        ordo__map_t orders; /* order id -> index into resvs, or SEEN */
        ordo__map_t users;  /* user id -> index into users */
} activity_t;

typedef struct resv_s {
        uint32_t user; /* index into users */
        uint32_t released;
        int64_t qty;
} resv_t;

typedef struct user_s {
        const char *id;
        int64_t active; /* reserved and not released, RULES.md rule 5 */
} user_t;

struct ordo_activity_state_s {
        ordo__arena_t arena;
        ordo__map_t by_id; /* activity id -> index into activities */
        ordo__vec_t activities;
        ordo__vec_t resvs;
        ordo__vec_t users;
};

ordo_activity_state_t *ordo_activity_state_new(void) {
        return ordo__xcalloc(1, sizeof(ordo_activity_state_t));
}

void ordo_activity_state_destroy(ordo_activity_state_t *s) {
        uint32_t i;
        if (!s)
                return;
        for (i = 0; i < s->activities.n; i++) {
                activity_t *a = ORDO__VEC_AT(&s->activities, activity_t, i);
                ordo__map_fini(&a->orders);
                ordo__map_fini(&a->users);
        }
        free(s->activities.data);
        free(s->resvs.data);
        free(s->users.data);
        ordo__map_fini(&s->by_id);
        ordo__arena_fini(&s->arena);
        free(s);
}

static activity_t *find_activity(const ordo_activity_state_t *s,
                                 const char *id) {
        size_t len = strlen(id);
        ordo__slot_t *sl =
            ordo__map_find(&s->by_id, id, len, ordo__hash(id, len));
        return sl ? ORDO__VEC_AT(&s->activities, activity_t, sl->val) : NULL;
}

static ordo__slot_t *find_in(const ordo__map_t *m, const char *key) {
        size_t len = strlen(key);
        return ordo__map_find(m, key, len, ordo__hash(key, len));
}

static int64_t remaining(const activity_t *a) {
        return a->stock - a->reserved + a->released;
}

int64_t ordo_activity_remaining(const ordo_activity_state_t *s,
                                const char *activity_id) {
        const activity_t *a = find_activity(s, activity_id);
        return a ? remaining(a) : -1;
}

/* ---- folding ---- */

static void apply_created(ordo_activity_state_t *s, const ordo_msg_t *ev) {
        const ordo_activity_body_t *b = &ev->u.activity;
        size_t len = strlen(b->activity_id);
        uint32_t h = ordo__hash(b->activity_id, len), i;
        activity_t *a;
        int k;
        if (ordo__map_find(&s->by_id, b->activity_id, len, h))
                return;
        i = ordo__vec_push(&s->activities, sizeof(activity_t));
        a = ORDO__VEC_AT(&s->activities, activity_t, i);
        a->id = ordo__arena_strdup(&s->arena, b->activity_id, len);
        a->price_cents = b->price_cents;
        a->stock = b->stock;
        a->per_user_limit = b->per_user_limit;
        a->start_ms = b->start_ms;
        a->end_ms = b->end_ms;
        a->pay_timeout_ms = b->pay_timeout_ms;
        a->auto_receive_ms = b->auto_receive_ms;
        a->freeze_ms = b->freeze_ms;
        a->n_commission_bps = b->n_commission_bps < ORDO_LEVELS_MAX
                                  ? b->n_commission_bps
                                  : ORDO_LEVELS_MAX;
        for (k = 0; k < a->n_commission_bps; k++)
                a->commission_bps[k] = b->commission_bps[k];
        a->version = ev->meta.version;
        ordo__map_insert(&s->by_id, a->id, h, i);
}

/* Remembers an order id in an activity; the slot, or NULL if known. */
static ordo__slot_t *remember(ordo_activity_state_t *s, activity_t *a,
                              const char *order_id, uint32_t val) {
        size_t len = strlen(order_id);
        uint32_t h = ordo__hash(order_id, len);
        if (ordo__map_find(&a->orders, order_id, len, h))
                return NULL;
        return ordo__map_insert(
            &a->orders, ordo__arena_strdup(&s->arena, order_id, len), h, val);
}

static uint32_t get_user(ordo_activity_state_t *s, activity_t *a,
                         const char *user_id) {
        size_t len = strlen(user_id);
        uint32_t h = ordo__hash(user_id, len), i;
        ordo__slot_t *sl = ordo__map_find(&a->users, user_id, len, h);
        user_t *u;
        if (sl)
                return sl->val;
        i = ordo__vec_push(&s->users, sizeof(user_t));
        u = ORDO__VEC_AT(&s->users, user_t, i);
        u->id = ordo__arena_strdup(&s->arena, user_id, len);
        ordo__map_insert(&a->users, u->id, h, i);
        return i;
}

static void apply_reserved(ordo_activity_state_t *s, const ordo_msg_t *ev) {
        const ordo_stock_body_t *b = &ev->u.stock;
        activity_t *a = find_activity(s, b->activity_id);
        ordo__slot_t *sl;
        resv_t *r;
        uint32_t i;
        if (!a || !(sl = remember(s, a, b->order_id, 0)))
                return;
        i = ordo__vec_push(&s->resvs, sizeof(resv_t));
        sl->val = i;
        r = ORDO__VEC_AT(&s->resvs, resv_t, i);
        r->qty = b->qty;
        r->user = get_user(s, a, b->user_id);
        ORDO__VEC_AT(&s->users, user_t, r->user)->active += b->qty;
        a->reserved += b->qty;
        a->version = ev->meta.version;
}

static void apply_released(ordo_activity_state_t *s, const ordo_msg_t *ev) {
        const ordo_stock_body_t *b = &ev->u.stock;
        activity_t *a = find_activity(s, b->activity_id);
        ordo__slot_t *sl = a ? find_in(&a->orders, b->order_id) : NULL;
        resv_t *r;
        if (!sl || sl->val == SEEN)
                return;
        r = ORDO__VEC_AT(&s->resvs, resv_t, sl->val);
        if (r->released)
                return;
        r->released = 1;
        ORDO__VEC_AT(&s->users, user_t, r->user)->active -= r->qty;
        a->released += r->qty;
        a->version = ev->meta.version;
}

static void apply_rejected(ordo_activity_state_t *s, const ordo_msg_t *ev) {
        const ordo_rejected_body_t *b = &ev->u.rejected;
        activity_t *a;
        /* RULES.md rule 2: a rejected PlaceOrder is "seen" too. */
        if (strcmp(b->command_type, "PlaceOrder") != 0)
                return;
        a = find_activity(s, b->activity_id);
        if (a)
                remember(s, a, b->order_id, SEEN);
}

void ordo_activity_apply(ordo_activity_state_t *s, const ordo_msg_t *ev) {
        switch (ev->type) {
        case ORDO_MSG_ACTIVITY_CREATED:
                apply_created(s, ev);
                break;
        case ORDO_MSG_STOCK_RESERVED:
                apply_reserved(s, ev);
                break;
        case ORDO_MSG_STOCK_RELEASED:
                apply_released(s, ev);
                break;
        case ORDO_MSG_COMMAND_REJECTED:
                apply_rejected(s, ev);
                break;
        default:
                break;
        }
}

/* ---- deciding ---- */

/* Emits o->msg after folding it. */
static void fold_emit(ordo_activity_state_t *s, ordo__out_t *o) {
        ordo_activity_apply(s, &o->msg);
        ordo__out_emit(o);
}

/* RULES.md "Activity": the conditions of a valid CreateActivity. The
 * upper bounds of stock and price keep every amount of the activity (at
 * most stock * price_cents <= 10^18) inside int64. */
static int valid_activity(const ordo_activity_body_t *b) {
        int64_t sum = 0;
        int k;
        if (b->stock < 1 || b->stock > ORDO_STOCK_MAX || b->price_cents < 1 ||
            b->price_cents > ORDO_PRICE_MAX || b->per_user_limit < 1 ||
            b->start_ms >= b->end_ms || b->pay_timeout_ms < 1 ||
            b->auto_receive_ms < 1 || b->freeze_ms < 0 ||
            b->n_commission_bps < 0 || b->n_commission_bps > ORDO_LEVELS_MAX)
                return 0;
        for (k = 0; k < b->n_commission_bps; k++) {
                if (b->commission_bps[k] < 0 || b->commission_bps[k] > 10000)
                        return 0;
                sum += b->commission_bps[k];
        }
        return sum <= 5000;
}

static void create(ordo_activity_state_t *s, ordo__out_t *o) {
        const ordo_activity_body_t *b = &o->in->u.activity;
        const activity_t *a = find_activity(s, b->activity_id);
        ordo_msg_t *m;
        const char *reason = NULL;
        if (!valid_activity(b))
                reason = "INVALID_ACTIVITY";
        else if (a)
                reason = "DUPLICATE_ACTIVITY";
        if (reason) {
                m = ordo__out_reject(o, b->activity_id, a ? a->version : 0,
                                     reason);
                ORDO__SET(m->u.rejected.activity_id, b->activity_id);
                ordo__out_emit(o);
                return;
        }
        m = ordo__out_begin(o, ORDO_MSG_ACTIVITY_CREATED, o->in->meta.ts_ms);
        ORDO__SET(m->meta.aggregate_id, b->activity_id);
        m->meta.version = 1;
        m->u.activity = *b;
        fold_emit(s, o);
}

static void reject_place(ordo_activity_state_t *s, ordo__out_t *o,
                         int64_t version, const char *reason) {
        const ordo_place_body_t *b = &o->in->u.place;
        ordo_msg_t *m = ordo__out_reject(o, b->activity_id, version, reason);
        ORDO__SET(m->u.rejected.order_id, b->order_id);
        ORDO__SET(m->u.rejected.activity_id, b->activity_id);
        ORDO__SET(m->u.rejected.user_id, b->user_id);
        m->u.rejected.qty = b->qty;
        fold_emit(s, o);
}

static void accept_place(ordo_activity_state_t *s, ordo__out_t *o,
                         activity_t *a) {
        const ordo_place_body_t *b = &o->in->u.place;
        int64_t ts = o->in->meta.ts_ms;
        int64_t amount = b->qty * a->price_cents; /* <= 10^18: create */
        int64_t deadline = ordo__sat_add(ts, a->pay_timeout_ms);
        ordo_msg_t *m;
        ordo_open_body_t *op;
        int k;

        m = ordo__out_begin(o, ORDO_MSG_STOCK_RESERVED, ts);
        ORDO__SET(m->meta.aggregate_id, a->id);
        m->meta.version = a->version + 1;
        ORDO__SET(m->u.stock.activity_id, a->id);
        ORDO__SET(m->u.stock.order_id, b->order_id);
        ORDO__SET(m->u.stock.user_id, b->user_id);
        m->u.stock.qty = b->qty;
        m->u.stock.remaining = remaining(a) - b->qty;
        /* rule 7's terms, also on the reservation: the order's read model
         * can show them before the order stage opens it (decision 0024) */
        m->u.stock.amount_cents = amount;
        m->u.stock.pay_deadline_ms = deadline;
        fold_emit(s, o);

        /* rule 7: the order opens (an outbound command, key order_id) */
        m = ordo__out_begin(o, ORDO_MSG_OPEN_ORDER, ts);
        op = &m->u.open;
        ORDO__SET(op->order_id, b->order_id);
        ORDO__SET(op->activity_id, a->id);
        ORDO__SET(op->user_id, b->user_id);
        op->qty = b->qty;
        op->amount_cents = amount;
        op->placed_ms = ts;
        op->pay_deadline_ms = deadline;
        op->auto_receive_ms = a->auto_receive_ms;
        op->freeze_ms = a->freeze_ms;
        op->n_commission_bps = a->n_commission_bps;
        for (k = 0; k < a->n_commission_bps; k++)
                op->commission_bps[k] = a->commission_bps[k];
        ordo__out_emit(o);
}

/* RULES.md "PlaceOrder is checked in this order". */
static void place(ordo_activity_state_t *s, ordo__out_t *o) {
        const ordo_place_body_t *b = &o->in->u.place;
        int64_t ts = o->in->meta.ts_ms, active = 0, left;
        activity_t *a = find_activity(s, b->activity_id);
        ordo__slot_t *sl;

        if (!a) { /* 1 */
                reject_place(s, o, 0, "UNKNOWN_ACTIVITY");
                return;
        }
        if (find_in(&a->orders, b->order_id)) /* 2: a retry */
                return;
        if (b->qty < 1) { /* 3 */
                reject_place(s, o, a->version, "INVALID_QTY");
                return;
        }
        if (ts < a->start_ms || ts >= a->end_ms) { /* 4 */
                reject_place(s, o, a->version,
                             ts < a->start_ms ? "NOT_STARTED" : "ENDED");
                return;
        }
        sl = find_in(&a->users, b->user_id);
        if (sl)
                active = ORDO__VEC_AT(&s->users, user_t, sl->val)->active;
        if (b->qty > a->per_user_limit - active) { /* 5, without overflow */
                reject_place(s, o, a->version, "LIMIT_EXCEEDED");
                return;
        }
        left = remaining(a);
        if (left < b->qty) { /* 6 */
                reject_place(s, o, a->version,
                             left == 0 ? "SOLD_OUT" : "INSUFFICIENT_STOCK");
                return;
        }
        accept_place(s, o, a); /* 7 */
}

/* docs/rules.md: ReleaseStock trusts the reservation, not the command,
 * for user and qty, and releases each reservation at most once. */
static void release(ordo_activity_state_t *s, ordo__out_t *o) {
        const ordo_release_body_t *b = &o->in->u.release;
        activity_t *a = find_activity(s, b->activity_id);
        ordo__slot_t *sl = a ? find_in(&a->orders, b->order_id) : NULL;
        const resv_t *r;
        ordo_msg_t *m;

        if (!sl || sl->val == SEEN) {
                m = ordo__out_reject(o, b->activity_id, a ? a->version : 0,
                                     a ? "UNKNOWN_ORDER" : "UNKNOWN_ACTIVITY");
                ORDO__SET(m->u.rejected.order_id, b->order_id);
                ORDO__SET(m->u.rejected.activity_id, b->activity_id);
                ORDO__SET(m->u.rejected.user_id, b->user_id);
                m->u.rejected.qty = b->qty;
                ordo__out_emit(o);
                return;
        }
        r = ORDO__VEC_AT(&s->resvs, resv_t, sl->val);
        if (r->released)
                return; /* already released: idempotent */
        m = ordo__out_begin(o, ORDO_MSG_STOCK_RELEASED, o->in->meta.ts_ms);
        ORDO__SET(m->meta.aggregate_id, a->id);
        m->meta.version = a->version + 1;
        ORDO__SET(m->u.stock.activity_id, a->id);
        ORDO__SET(m->u.stock.order_id, b->order_id);
        ORDO__SET(m->u.stock.user_id,
                  ORDO__VEC_AT(&s->users, user_t, r->user)->id);
        m->u.stock.qty = r->qty;
        m->u.stock.remaining = remaining(a) + r->qty;
        ORDO__SET(m->u.stock.reason, b->reason);
        fold_emit(s, o);
}

void ordo_activity_handle(ordo_activity_state_t *s, const ordo_msg_t *cmd,
                          const ordo_pos_t *pos, const ordo_sink_t *sink) {
        ordo__out_t o;
        ordo__out_init(&o, cmd, pos, sink);
        switch (cmd->type) {
        case ORDO_MSG_CREATE_ACTIVITY:
                create(s, &o);
                break;
        case ORDO_MSG_PLACE_ORDER:
                place(s, &o);
                break;
        case ORDO_MSG_RELEASE_STOCK:
                release(s, &o);
                break;
        default:
                break; /* Tick and others: nothing to decide here */
        }
}

/* ---- digest and size ---- */

uint64_t ordo_activity_state_digest(const ordo_activity_state_t *s) {
        uint64_t d = 0, h;
        uint32_t i, j;
        int k;
        for (i = 0; i < s->activities.n; i++) {
                const activity_t *a =
                    ORDO__VEC_AT(&s->activities, activity_t, i);
                uint64_t ah = ordo__mix_str(0, a->id);
                h = ah;
                h = ordo__mix(h, (uint64_t)a->price_cents);
                h = ordo__mix(h, (uint64_t)a->stock);
                h = ordo__mix(h, (uint64_t)a->per_user_limit);
                h = ordo__mix(h, (uint64_t)a->start_ms);
                h = ordo__mix(h, (uint64_t)a->end_ms);
                h = ordo__mix(h, (uint64_t)a->pay_timeout_ms);
                h = ordo__mix(h, (uint64_t)a->auto_receive_ms);
                h = ordo__mix(h, (uint64_t)a->freeze_ms);
                for (k = 0; k < a->n_commission_bps; k++)
                        h = ordo__mix(h, (uint64_t)a->commission_bps[k]);
                h = ordo__mix(h, (uint64_t)a->reserved);
                h = ordo__mix(h, (uint64_t)a->released);
                d += ordo__mix(h, (uint64_t)a->version);
                for (j = 0; j < a->orders.cap; j++) {
                        const ordo__slot_t *sl = &a->orders.slots[j];
                        const resv_t *r;
                        if (!sl->key)
                                continue;
                        h = ordo__mix_str(ordo__mix(ah, 1), sl->key);
                        if (sl->val != SEEN) {
                                r = ORDO__VEC_AT(&s->resvs, resv_t, sl->val);
                                h = ordo__mix_str(
                                    h, ORDO__VEC_AT(&s->users, user_t, r->user)
                                           ->id);
                                h = ordo__mix(h, (uint64_t)r->qty);
                                h = ordo__mix(h, r->released);
                        }
                        d += h;
                }
                for (j = 0; j < a->users.cap; j++) {
                        const ordo__slot_t *sl = &a->users.slots[j];
                        if (!sl->key)
                                continue;
                        h = ordo__mix_str(ordo__mix(ah, 2), sl->key);
                        d += ordo__mix(h, (uint64_t)ORDO__VEC_AT(
                                              &s->users, user_t, sl->val)
                                              ->active);
                }
        }
        return d;
}

size_t ordo_activity_state_bytes(const ordo_activity_state_t *s) {
        size_t n = sizeof(*s) + ordo__map_bytes(&s->by_id) + s->arena.bytes +
                   (size_t)s->activities.cap * sizeof(activity_t) +
                   (size_t)s->resvs.cap * sizeof(resv_t) +
                   (size_t)s->users.cap * sizeof(user_t);
        uint32_t i;
        for (i = 0; i < s->activities.n; i++) {
                const activity_t *a =
                    ORDO__VEC_AT(&s->activities, activity_t, i);
                n += ordo__map_bytes(&a->orders) + ordo__map_bytes(&a->users);
        }
        return n;
}

/* ---- snapshot ----
 * activities (index order): id, the CreateActivity fields, rates,
 *   reserved, released, version;
 * users (index order): activity index, id, active;
 * reservations (index order): user index, released, qty;
 * per activity, its order ids in layout order: id, then 0 for SEEN or
 *   1 + reservation index.
 * by_id and each activity's user map were built by inserting in index
 * order, and are rebuilt so; the order maps mix SEEN ids with
 * reservations, so they keep their layout order instead. */

static void save_activity(const activity_t *a, ordo_buf_t *b) {
        int k;
        ordo__wr_str(b, a->id);
        ordo__wr_i64(b, a->price_cents);
        ordo__wr_i64(b, a->stock);
        ordo__wr_i64(b, a->per_user_limit);
        ordo__wr_i64(b, a->start_ms);
        ordo__wr_i64(b, a->end_ms);
        ordo__wr_i64(b, a->pay_timeout_ms);
        ordo__wr_i64(b, a->auto_receive_ms);
        ordo__wr_i64(b, a->freeze_ms);
        ordo__wr_u8(b, (uint8_t)a->n_commission_bps);
        for (k = 0; k < a->n_commission_bps; k++)
                ordo__wr_i64(b, a->commission_bps[k]);
        ordo__wr_i64(b, a->reserved);
        ordo__wr_i64(b, a->released);
        ordo__wr_i64(b, a->version);
}

void ordo_activity_state_save(const ordo_activity_state_t *s, ordo_buf_t *out) {
        size_t start = ordo__snap_begin(out, ORDO__SNAP_ACTIVITY);
        uint32_t *user_act = ordo__xcalloc(s->users.n, sizeof(*user_act));
        uint32_t i;
        ordo__map_iter_t it;
        const ordo__slot_t *sl;

        ordo__wr_varint(out, s->activities.n);
        for (i = 0; i < s->activities.n; i++) {
                const activity_t *a =
                    ORDO__VEC_AT(&s->activities, activity_t, i);
                save_activity(a, out);
                ordo__map_iter_init(&it, &a->users);
                while ((sl = ordo__map_iter_next(&it)))
                        user_act[sl->val] = i;
        }
        ordo__wr_varint(out, s->users.n);
        for (i = 0; i < s->users.n; i++) {
                const user_t *u = ORDO__VEC_AT(&s->users, user_t, i);
                ordo__wr_varint(out, user_act[i]);
                ordo__wr_str(out, u->id);
                ordo__wr_i64(out, u->active);
        }
        free(user_act);
        ordo__wr_varint(out, s->resvs.n);
        for (i = 0; i < s->resvs.n; i++) {
                const resv_t *r = ORDO__VEC_AT(&s->resvs, resv_t, i);
                ordo__wr_varint(out, r->user);
                ordo__wr_u8(out, (uint8_t)r->released);
                ordo__wr_i64(out, r->qty);
        }
        for (i = 0; i < s->activities.n; i++) {
                const activity_t *a =
                    ORDO__VEC_AT(&s->activities, activity_t, i);
                ordo__wr_varint(out, a->orders.n);
                ordo__map_iter_init(&it, &a->orders);
                while ((sl = ordo__map_iter_next(&it))) {
                        ordo__wr_str(out, sl->key);
                        ordo__wr_varint(
                            out, sl->val == SEEN ? 0 : (uint64_t)sl->val + 1);
                }
        }
        ordo__snap_end(out, start);
}

static void load_activity(ordo_activity_state_t *s, ordo__rd_t *r) {
        size_t len;
        const char *id = ordo__rd_str(r, &s->arena, &len);
        uint32_t h = ordo__hash(id, len), i;
        activity_t a;
        int k;
        memset(&a, 0, sizeof(a));
        a.id = id;
        a.price_cents = ordo__rd_i64(r);
        a.stock = ordo__rd_i64(r);
        a.per_user_limit = ordo__rd_i64(r);
        a.start_ms = ordo__rd_i64(r);
        a.end_ms = ordo__rd_i64(r);
        a.pay_timeout_ms = ordo__rd_i64(r);
        a.auto_receive_ms = ordo__rd_i64(r);
        a.freeze_ms = ordo__rd_i64(r);
        a.n_commission_bps = (int32_t)ordo__rd_upto(r, ORDO_LEVELS_MAX,
                                                    "too many commission "
                                                    "levels");
        for (k = 0; k < a.n_commission_bps; k++)
                a.commission_bps[k] = ordo__rd_i64(r);
        a.reserved = ordo__rd_i64(r);
        a.released = ordo__rd_i64(r);
        a.version = ordo__rd_i64(r);
        if (r->why)
                return;
        if (!ordo__map_add(&s->by_id, id, len, h, s->activities.n)) {
                ordo__rd_fail(r, "duplicate activity");
                return;
        }
        i = ordo__vec_push(&s->activities, sizeof(activity_t));
        *ORDO__VEC_AT(&s->activities, activity_t, i) = a;
}

/* user_act: the activity of each user; used: each reservation belongs
 * to exactly one order id. */
static void load_orders(ordo_activity_state_t *s, ordo__rd_t *r, activity_t *a,
                        uint32_t ai, const uint32_t *user_act, uint8_t *used) {
        uint32_t n = ordo__rd_count(r, 2), i;
        if (r->why)
                return;
        ordo__map_reserve(&a->orders, n);
        for (i = 0; i < n && !r->why; i++) {
                size_t len;
                const char *id = ordo__rd_str(r, &s->arena, &len);
                uint64_t ref =
                    ordo__rd_upto(r, s->resvs.n, "reservation out of range");
                uint32_t h = ordo__hash(id, len), v = SEEN;
                if (r->why)
                        return;
                if (ref) {
                        v = (uint32_t)(ref - 1);
                        if (used[v] ||
                            user_act[ORDO__VEC_AT(&s->resvs, resv_t, v)
                                         ->user] != ai) {
                                ordo__rd_fail(r, "reservation shared or of "
                                                 "another activity");
                                return;
                        }
                        used[v] = 1;
                }
                if (!ordo__map_add(&a->orders, id, len, h, v)) {
                        ordo__rd_fail(r, "duplicate order id");
                        return;
                }
        }
}

static void load_body(ordo_activity_state_t *s, ordo__rd_t *r) {
        uint32_t n, i, *user_act = NULL;
        uint8_t *used = NULL;

        n = ordo__rd_count(r, 13);
        ordo__vec_reserve(&s->activities, sizeof(activity_t), n);
        ordo__map_reserve(&s->by_id, n);
        for (i = 0; i < n && !r->why; i++)
                load_activity(s, r);

        n = ordo__rd_count(r, 3);
        ordo__vec_reserve(&s->users, sizeof(user_t), n);
        user_act = ordo__xcalloc(n, sizeof(*user_act));
        for (i = 0; i < n && !r->why; i++) {
                uint32_t ai = (uint32_t)ordo__rd_upto(
                    r, s->activities.n ? s->activities.n - 1 : 0,
                    "activity out of range");
                size_t len;
                const char *id = ordo__rd_str(r, &s->arena, &len);
                int64_t active = ordo__rd_i64(r);
                uint32_t h = ordo__hash(id, len), k;
                activity_t *a;
                user_t *u;
                if (r->why)
                        break;
                if (!s->activities.n) {
                        ordo__rd_fail(r, "user without activity");
                        break;
                }
                a = ORDO__VEC_AT(&s->activities, activity_t, ai);
                if (!ordo__map_add(&a->users, id, len, h, s->users.n)) {
                        ordo__rd_fail(r, "duplicate user");
                        break;
                }
                k = ordo__vec_push(&s->users, sizeof(user_t));
                u = ORDO__VEC_AT(&s->users, user_t, k);
                u->id = id;
                u->active = active;
                user_act[k] = ai;
        }

        n = ordo__rd_count(r, 3);
        ordo__vec_reserve(&s->resvs, sizeof(resv_t), n);
        for (i = 0; i < n && !r->why; i++) {
                uint32_t user = (uint32_t)ordo__rd_upto(
                    r, s->users.n ? s->users.n - 1 : 0, "user out of range");
                uint32_t released =
                    (uint32_t)ordo__rd_upto(r, 1, "bad released flag");
                int64_t qty = ordo__rd_i64(r);
                resv_t *rv;
                if (r->why)
                        break;
                if (!s->users.n) {
                        ordo__rd_fail(r, "reservation without user");
                        break;
                }
                rv = ORDO__VEC_AT(&s->resvs, resv_t,
                                  ordo__vec_push(&s->resvs, sizeof(resv_t)));
                rv->user = user;
                rv->released = released;
                rv->qty = qty;
        }

        used = ordo__xcalloc(s->resvs.n, 1);
        for (i = 0; i < s->activities.n && !r->why; i++)
                load_orders(s, r, ORDO__VEC_AT(&s->activities, activity_t, i),
                            i, user_act, used);
        for (i = 0; i < s->resvs.n && !r->why; i++)
                if (!used[i])
                        ordo__rd_fail(r, "reservation without order id");
        free(used);
        free(user_act);
}

ordo_activity_state_t *ordo_activity_state_load(const void *data, size_t len,
                                                char *errstr,
                                                size_t errstr_size) {
        ordo__rd_t r;
        ordo_activity_state_t *s;
        if (ordo__snap_open(&r, data, len, ORDO__SNAP_ACTIVITY, errstr,
                            errstr_size))
                return NULL;
        s = ordo_activity_state_new();
        load_body(s, &r);
        if (ordo__snap_close(&r, errstr, errstr_size)) {
                ordo_activity_state_destroy(s);
                return NULL;
        }
        return s;
}
