/*
 * ordo - the commission processor (RULES.md "Commission", "Earnings"):
 * multi-level accrual on payment by a temporal join with the referral
 * graph, proportional reversal on refunds, settlement, and earnings per
 * beneficiary.
 *
 * Per order it keeps the facts order-events carry (buyer, amount, rates)
 * and up to ORDO_LEVELS_MAX entries inline, so a payment costs one order
 * lookup, at most three parent hops and one earnings lookup per entry.
 *
 * Aggregate: the commission of one order (aggregate_id = order_id, the
 * key of commission-events). Each commission event adds 1 to its
 * version, whichever entry (level) it concerns.
 */
#include "rules.h"

#include <stdlib.h>
#include <string.h>

#include "rules_alloc.h"
#include "rules_arith.h"
#include "rules_digest.h"
#include "rules_graph.h"
#include "rules_map.h"
#include "rules_out.h"
#include "rules_snap.h"
#include "rules_strtab.h"
#include "rules_vec.h"

enum entry_status { E_PENDING = 1, E_SETTLED, E_REVERSED };

static const char *const status_names[] = { "", "PENDING", "SETTLED",
                                            "REVERSED" };

typedef struct entry_s {
        const char *beneficiary; /* interned */
        int64_t level;           /* 1-based */
        int64_t rate_bps;
        int64_t accrued_cents;
        int64_t reversed_cents;
        int32_t status;
} entry_t;

typedef struct corder_s {
        const char *id;
        const char *buyer; /* interned; NULL until known */
        int64_t amount_cents;
        int64_t commission_bps[ORDO_LEVELS_MAX];
        int32_t n_commission_bps;
        int32_t opened; /* OrderOpened observed: the facts are known */
        int32_t paid;   /* OrderPaid observed, or an entry folded */
        int32_t n_entries;
        int64_t version;
        entry_t entries[ORDO_LEVELS_MAX];
} corder_t;

typedef struct earner_s {
        const char *id;
        ordo_earnings_t e;
} earner_t;

struct ordo_commission_state_s {
        ordo__graph_t graph;
        ordo__arena_t arena;
        ordo__strings_t strings; /* buyers and beneficiaries */
        ordo__map_t orders;      /* order id -> index into corders */
        ordo__vec_t corders;
        ordo__map_t earners; /* user id -> index into earners_v */
        ordo__vec_t earners_v;
        int64_t accrued_total;
};

ordo_commission_state_t *ordo_commission_state_new(void) {
        ordo_commission_state_t *s = ordo__xcalloc(1, sizeof(*s));
        s->strings.arena = &s->arena;
        return s;
}

void ordo_commission_state_destroy(ordo_commission_state_t *s) {
        if (!s)
                return;
        ordo__graph_fini(&s->graph);
        ordo__map_fini(&s->strings.map);
        ordo__map_fini(&s->orders);
        ordo__map_fini(&s->earners);
        free(s->corders.data);
        free(s->earners_v.data);
        ordo__arena_fini(&s->arena);
        free(s);
}

static corder_t *corder(const ordo_commission_state_t *s, uint32_t i) {
        return ORDO__VEC_AT(&s->corders, corder_t, i);
}

static corder_t *find_order(const ordo_commission_state_t *s, const char *id) {
        size_t len = strlen(id);
        ordo__slot_t *sl =
            ordo__map_find(&s->orders, id, len, ordo__hash(id, len));
        return sl ? corder(s, sl->val) : NULL;
}

static corder_t *get_order(ordo_commission_state_t *s, const char *id) {
        size_t len = strlen(id);
        uint32_t h = ordo__hash(id, len), i;
        ordo__slot_t *sl = ordo__map_find(&s->orders, id, len, h);
        corder_t *c;
        if (sl)
                return corder(s, sl->val);
        i = ordo__vec_push(&s->corders, sizeof(corder_t));
        c = corder(s, i);
        c->id = ordo__arena_strdup(&s->arena, id, len);
        ordo__map_insert(&s->orders, c->id, h, i);
        return c;
}

static ordo_earnings_t *earnings(ordo_commission_state_t *s, const char *user) {
        size_t len = strlen(user);
        uint32_t h = ordo__hash(user, len), i;
        ordo__slot_t *sl = ordo__map_find(&s->earners, user, len, h);
        earner_t *e;
        if (sl)
                return &ORDO__VEC_AT(&s->earners_v, earner_t, sl->val)->e;
        i = ordo__vec_push(&s->earners_v, sizeof(earner_t));
        e = ORDO__VEC_AT(&s->earners_v, earner_t, i);
        e->id = ordo__intern(&s->strings, user);
        ordo__map_insert(&s->earners, e->id, h, i);
        return &e->e;
}

static entry_t *entry(corder_t *c, int64_t level) {
        int i;
        for (i = 0; i < c->n_entries; i++)
                if (c->entries[i].level == level)
                        return &c->entries[i];
        return NULL;
}

static int32_t parse_status(const char *s) {
        int32_t i;
        for (i = E_PENDING; i <= E_REVERSED; i++)
                if (!strcmp(s, status_names[i]))
                        return i;
        return E_PENDING;
}

/* ---- the graph and the order facts ---- */

void ordo_commission_bind(ordo_commission_state_t *s,
                          const ordo_msg_t *referrer_bound) {
        if (referrer_bound->type != ORDO_MSG_REFERRER_BOUND)
                return;
        ordo__graph_bind(&s->graph, referrer_bound->u.bind.user_id,
                         referrer_bound->u.bind.referrer_id,
                         referrer_bound->u.bind.bound_ms);
}

void ordo_commission_observe(ordo_commission_state_t *s, const ordo_msg_t *ev) {
        const ordo_open_body_t *b = &ev->u.open;
        corder_t *c;
        int k;
        if (ev->type == ORDO_MSG_ORDER_PAID) {
                get_order(s, ev->u.payment.order_id)->paid = 1;
                return;
        }
        if (ev->type != ORDO_MSG_ORDER_OPENED)
                return;
        c = get_order(s, b->order_id);
        if (c->opened)
                return;
        c->opened = 1;
        c->buyer = ordo__intern(&s->strings, b->user_id);
        c->amount_cents = b->amount_cents;
        c->n_commission_bps = b->n_commission_bps < ORDO_LEVELS_MAX
                                  ? b->n_commission_bps
                                  : ORDO_LEVELS_MAX;
        for (k = 0; k < c->n_commission_bps; k++)
                c->commission_bps[k] = b->commission_bps[k];
}

/* ---- folding ---- */

/* Moves cents from one earnings total to another. Totals add up over
 * every order of a beneficiary, so unlike the amounts of one order
 * (docs/rules.md "Arithmetic") they are not bounded: they saturate
 * rather than overflow. */
static void move(int64_t *from, int64_t *to, int64_t cents) {
        *from = ordo__sat_sub(*from, cents);
        *to = ordo__sat_add(*to, cents);
}

void ordo_commission_apply(ordo_commission_state_t *s, const ordo_msg_t *ev) {
        const ordo_commission_body_t *b = &ev->u.commission;
        ordo_earnings_t *earn;
        corder_t *c;
        entry_t *e;
        if (ev->type < ORDO_MSG_COMMISSION_ACCRUED ||
            ev->type > ORDO_MSG_COMMISSION_SETTLED)
                return;
        c = get_order(s, b->order_id);
        e = entry(c, b->level);
        if (ev->type == ORDO_MSG_COMMISSION_ACCRUED) {
                if (e || c->n_entries == ORDO_LEVELS_MAX)
                        return;
                e = &c->entries[c->n_entries++];
                e->beneficiary = ordo__intern(&s->strings, b->beneficiary_id);
                e->level = b->level;
                e->rate_bps = b->rate_bps;
                e->accrued_cents = b->accrued_cents;
                e->status = E_PENDING;
                if (!c->buyer)
                        c->buyer = ordo__intern(&s->strings, b->buyer_id);
                c->paid = 1;
                earn = earnings(s, b->beneficiary_id);
                earn->pending_cents =
                    ordo__sat_add(earn->pending_cents, b->amount_cents);
                s->accrued_total =
                    ordo__sat_add(s->accrued_total, b->amount_cents);
        } else if (e) {
                earn = earnings(s, e->beneficiary);
                e->reversed_cents = b->reversed_cents;
                e->status = parse_status(b->status);
                if (ev->type == ORDO_MSG_COMMISSION_REVERSED) {
                        move(&earn->pending_cents, &earn->reversed_cents,
                             b->amount_cents);
                } else if (e->status == E_SETTLED) {
                        move(&earn->pending_cents, &earn->settled_cents,
                             b->amount_cents);
                }
        } else {
                return;
        }
        c->version = ev->meta.version;
}

/* ---- deciding ---- */

static ordo_msg_t *begin(ordo__out_t *out, ordo_msg_type_t type,
                         const corder_t *c, const entry_t *e) {
        ordo_msg_t *m = ordo__out_begin(out, type, out->in->meta.ts_ms);
        ordo_commission_body_t *b = &m->u.commission;
        ORDO__SET(m->meta.aggregate_id, c->id);
        m->meta.version = c->version + 1;
        ORDO__SET(b->order_id, c->id);
        ORDO__SET(b->buyer_id, c->buyer ? c->buyer : "");
        if (e) {
                ORDO__SET(b->beneficiary_id, e->beneficiary);
                b->level = e->level;
                b->rate_bps = e->rate_bps;
                b->accrued_cents = e->accrued_cents;
                b->reversed_cents = e->reversed_cents;
        }
        return m;
}

static void fold_emit(ordo_commission_state_t *s, ordo__out_t *out) {
        ordo_commission_apply(s, &out->msg);
        ordo__out_emit(out);
}

/* RULES.md "On PAID": walk up from the buyer, using only bindings with
 * bound_ms <= paid_ms; a level whose accrual rounds to 0 gets no entry
 * but the walk goes on. */
static void accrue(ordo_commission_state_t *s, ordo__out_t *out, corder_t *c,
                   int64_t paid_ms) {
        uint32_t node = ordo__graph_find(&s->graph, c->buyer);
        const ordo__node_t *n;
        int k;
        for (k = 0; k < c->n_commission_bps && node != ORDO__NONE; k++) {
                int64_t accrued;
                ordo_msg_t *m;
                n = ordo__graph_node(&s->graph, node);
                if (n->parent == ORDO__NONE || n->bound_ms > paid_ms)
                        break;
                node = n->parent;
                accrued =
                    ordo__muldiv(c->amount_cents, c->commission_bps[k], 10000);
                if (accrued <= 0)
                        continue;
                m = begin(out, ORDO_MSG_COMMISSION_ACCRUED, c, NULL);
                ORDO__SET(m->u.commission.beneficiary_id,
                          ordo__graph_node(&s->graph, node)->id);
                m->u.commission.level = k + 1;
                m->u.commission.rate_bps = c->commission_bps[k];
                m->u.commission.amount_cents = accrued;
                m->u.commission.accrued_cents = accrued;
                ORDO__SET(m->u.commission.status, "PENDING");
                fold_emit(s, out);
        }
}

/* RULES.md "On every refund": reversed total = floor(accrued * R / P);
 * a full refund reverses every entry and marks it REVERSED. */
static void reverse(ordo_commission_state_t *s, ordo__out_t *out, corder_t *c,
                    const ordo_refund_body_t *r) {
        int i;
        for (i = 0; i < c->n_entries; i++) {
                entry_t *e = &c->entries[i];
                int64_t total;
                ordo_msg_t *m;
                if (e->status != E_PENDING)
                        continue;
                if (r->full || c->amount_cents <= 0 ||
                    r->refunded_cents >= c->amount_cents)
                        total = e->accrued_cents;
                else
                        total =
                            ordo__muldiv(e->accrued_cents, r->refunded_cents,
                                         c->amount_cents);
                if (total <= e->reversed_cents && !r->full)
                        continue;
                m = begin(out, ORDO_MSG_COMMISSION_REVERSED, c, e);
                m->u.commission.amount_cents = total - e->reversed_cents;
                m->u.commission.reversed_cents = total;
                ORDO__SET(m->u.commission.status,
                          r->full ? "REVERSED" : "PENDING");
                fold_emit(s, out);
        }
}

/* RULES.md "On SETTLED": the remainder settles. */
static void settle(ordo_commission_state_t *s, ordo__out_t *out, corder_t *c) {
        int i;
        for (i = 0; i < c->n_entries; i++) {
                entry_t *e = &c->entries[i];
                int64_t rest = e->accrued_cents - e->reversed_cents;
                ordo_msg_t *m;
                if (e->status != E_PENDING)
                        continue;
                m = begin(out, ORDO_MSG_COMMISSION_SETTLED, c, e);
                m->u.commission.amount_cents = rest;
                ORDO__SET(m->u.commission.status,
                          rest > 0 ? "SETTLED" : "REVERSED");
                fold_emit(s, out);
        }
}

void ordo_commission_handle(ordo_commission_state_t *s, const ordo_msg_t *ev,
                            const ordo_pos_t *pos, const ordo_sink_t *sink) {
        ordo__out_t out;
        corder_t *c = find_order(s, ordo_msg_key(ev));
        int was_paid = c && c->paid;

        ordo_commission_observe(s, ev);
        ordo__out_init(&out, ev, pos, sink);
        c = find_order(s, ordo_msg_key(ev));
        if (!c || !c->opened)
                return; /* docs/rules.md: no facts, nothing to decide */
        switch (ev->type) {
        case ORDO_MSG_ORDER_PAID:
                if (!was_paid) /* else a redelivery */
                        accrue(s, &out, c, ev->u.payment.paid_ms);
                break;
        case ORDO_MSG_ORDER_REFUNDED:
                reverse(s, &out, c, &ev->u.refund);
                break;
        case ORDO_MSG_ORDER_SETTLED:
                settle(s, &out, c);
                break;
        default:
                break; /* OrderOpened, OrderCancelled, OrderReceived */
        }
}

/* ---- queries ---- */

int ordo_commission_earnings(const ordo_commission_state_t *s,
                             const char *user_id, ordo_earnings_t *out) {
        size_t len = strlen(user_id);
        ordo__slot_t *sl =
            ordo__map_find(&s->earners, user_id, len, ordo__hash(user_id, len));
        if (!sl) {
                memset(out, 0, sizeof(*out));
                return -1;
        }
        *out = ORDO__VEC_AT(&s->earners_v, earner_t, sl->val)->e;
        return 0;
}

void ordo_commission_totals(const ordo_commission_state_t *s,
                            ordo_earnings_t *sum, int64_t *accrued_cents) {
        uint32_t i;
        memset(sum, 0, sizeof(*sum));
        for (i = 0; i < s->earners_v.n; i++) {
                const ordo_earnings_t *e =
                    &ORDO__VEC_AT(&s->earners_v, earner_t, i)->e;
                sum->pending_cents =
                    ordo__sat_add(sum->pending_cents, e->pending_cents);
                sum->settled_cents =
                    ordo__sat_add(sum->settled_cents, e->settled_cents);
                sum->reversed_cents =
                    ordo__sat_add(sum->reversed_cents, e->reversed_cents);
        }
        *accrued_cents = s->accrued_total;
}

uint64_t ordo_commission_state_digest(const ordo_commission_state_t *s) {
        uint64_t d = 0, h;
        uint32_t i;
        int k;
        for (i = 0; i < s->corders.n; i++) {
                const corder_t *c = corder(s, i);
                if (!c->n_entries)
                        continue;
                h = ordo__mix_str(0, c->id);
                h = ordo__mix(h, (uint64_t)c->version);
                for (k = 0; k < c->n_entries; k++) {
                        const entry_t *e = &c->entries[k];
                        h = ordo__mix_str(h, e->beneficiary);
                        h = ordo__mix(h, (uint64_t)e->level);
                        h = ordo__mix(h, (uint64_t)e->rate_bps);
                        h = ordo__mix(h, (uint64_t)e->accrued_cents);
                        h = ordo__mix(h, (uint64_t)e->reversed_cents);
                        h = ordo__mix(h, (uint64_t)e->status);
                }
                d += h;
        }
        for (i = 0; i < s->earners_v.n; i++) {
                const earner_t *e = ORDO__VEC_AT(&s->earners_v, earner_t, i);
                h = ordo__mix_str(0, e->id);
                h = ordo__mix(h, (uint64_t)e->e.pending_cents);
                h = ordo__mix(h, (uint64_t)e->e.settled_cents);
                d += ordo__mix(h, (uint64_t)e->e.reversed_cents);
        }
        return d + ordo__mix((uint64_t)s->accrued_total, 3);
}

size_t ordo_commission_state_bytes(const ordo_commission_state_t *s) {
        return sizeof(*s) + ordo__graph_bytes(&s->graph) + s->arena.bytes +
               ordo__map_bytes(&s->strings.map) + ordo__map_bytes(&s->orders) +
               ordo__map_bytes(&s->earners) +
               (size_t)s->corders.cap * sizeof(corder_t) +
               (size_t)s->earners_v.cap * sizeof(earner_t);
}

/* ---- snapshot ----
 * the referral graph (ordo__graph_save);
 * the interned buyer and beneficiary ids (ordo__strtab_t);
 * orders (index order): id, buyer (optional reference), amount, rates,
 *   opened, paid, version, entries (beneficiary reference, level, rate,
 *   accrued, reversed, status);
 * earners (index order): id (reference), pending, settled, reversed;
 * the total accrued.
 * The order and earner maps are rebuilt from their vectors. */

static void save_corder(const corder_t *c, ordo__strtab_t *st, ordo_buf_t *b) {
        int k;
        ordo__wr_str(b, c->id);
        ordo__strtab_wr(st, b, c->buyer);
        ordo__wr_i64(b, c->amount_cents);
        ordo__wr_u8(b, (uint8_t)c->n_commission_bps);
        for (k = 0; k < c->n_commission_bps; k++)
                ordo__wr_i64(b, c->commission_bps[k]);
        ordo__wr_u8(b, (uint8_t)c->opened);
        ordo__wr_u8(b, (uint8_t)c->paid);
        ordo__wr_i64(b, c->version);
        ordo__wr_u8(b, (uint8_t)c->n_entries);
        for (k = 0; k < c->n_entries; k++) {
                const entry_t *e = &c->entries[k];
                ordo__strtab_wr(st, b, e->beneficiary);
                ordo__wr_i64(b, e->level);
                ordo__wr_i64(b, e->rate_bps);
                ordo__wr_i64(b, e->accrued_cents);
                ordo__wr_i64(b, e->reversed_cents);
                ordo__wr_u8(b, (uint8_t)e->status);
        }
}

void ordo_commission_state_save(const ordo_commission_state_t *s,
                                ordo_buf_t *out) {
        size_t start = ordo__snap_begin(out, ORDO__SNAP_COMMISSION);
        ordo__strtab_t st;
        uint32_t i;
        ordo__graph_save(&s->graph, out);
        ordo__strtab_save(&st, &s->strings, out);
        ordo__wr_varint(out, s->corders.n);
        for (i = 0; i < s->corders.n; i++) {
                if (i + 8 < s->corders.n) { /* hide the table's misses */
                        const corder_t *c = corder(s, i + 8);
                        int k;
                        ordo__strtab_prefetch(&st, c->buyer);
                        for (k = 0; k < c->n_entries; k++)
                                ordo__strtab_prefetch(
                                    &st, c->entries[k].beneficiary);
                }
                save_corder(corder(s, i), &st, out);
        }
        ordo__wr_varint(out, s->earners_v.n);
        for (i = 0; i < s->earners_v.n; i++) {
                const earner_t *e = ORDO__VEC_AT(&s->earners_v, earner_t, i);
                ordo__strtab_wr(&st, out, e->id);
                ordo__wr_i64(out, e->e.pending_cents);
                ordo__wr_i64(out, e->e.settled_cents);
                ordo__wr_i64(out, e->e.reversed_cents);
        }
        ordo__strtab_fini(&st);
        ordo__wr_i64(out, s->accrued_total);
        ordo__snap_end(out, start);
}

static void load_corder(ordo_commission_state_t *s, ordo__rd_t *r,
                        const char **tab, uint32_t n_tab) {
        corder_t c;
        int k;
        memset(&c, 0, sizeof(c));
        c.id = ordo__rd_str(r, &s->arena, NULL);
        c.buyer = ordo__strtab_rd(r, tab, n_tab, 1);
        c.amount_cents = ordo__rd_i64(r);
        c.n_commission_bps = (int32_t)ordo__rd_upto(r, ORDO_LEVELS_MAX,
                                                    "too many commission "
                                                    "levels");
        for (k = 0; k < c.n_commission_bps; k++)
                c.commission_bps[k] = ordo__rd_i64(r);
        c.opened = (int32_t)ordo__rd_upto(r, 1, "bad opened flag");
        c.paid = (int32_t)ordo__rd_upto(r, 1, "bad paid flag");
        c.version = ordo__rd_i64(r);
        c.n_entries =
            (int32_t)ordo__rd_upto(r, ORDO_LEVELS_MAX, "too many entries");
        for (k = 0; k < c.n_entries; k++) {
                entry_t *e = &c.entries[k];
                e->beneficiary = ordo__strtab_rd(r, tab, n_tab, 0);
                e->level = ordo__rd_i64(r);
                e->rate_bps = ordo__rd_i64(r);
                e->accrued_cents = ordo__rd_i64(r);
                e->reversed_cents = ordo__rd_i64(r);
                e->status = (int32_t)ordo__rd_u8(r);
                if (!r->why &&
                    (e->status < E_PENDING || e->status > E_REVERSED))
                        ordo__rd_fail(r, "bad entry status");
        }
        if (!r->why && c.opened && !c.buyer) /* accrual looks it up */
                ordo__rd_fail(r, "opened order without buyer");
        if (r->why)
                return;
        *corder(s, ordo__vec_push(&s->corders, sizeof(corder_t))) = c;
}

static void load_earner(ordo_commission_state_t *s, ordo__rd_t *r,
                        const char **tab, uint32_t n_tab) {
        const char *id = ordo__strtab_rd(r, tab, n_tab, 0);
        ordo_earnings_t e;
        uint32_t i;
        e.pending_cents = ordo__rd_i64(r);
        e.settled_cents = ordo__rd_i64(r);
        e.reversed_cents = ordo__rd_i64(r);
        if (r->why)
                return;
        i = ordo__vec_push(&s->earners_v, sizeof(earner_t));
        ORDO__VEC_AT(&s->earners_v, earner_t, i)->id = id;
        ORDO__VEC_AT(&s->earners_v, earner_t, i)->e = e;
}

ordo_commission_state_t *ordo_commission_state_load(const void *data,
                                                    size_t len, char *errstr,
                                                    size_t errstr_size) {
        ordo__rd_t r;
        ordo_commission_state_t *s;
        const char **tab = NULL;
        uint32_t n_tab = 0, n, i;
        if (ordo__snap_open(&r, data, len, ORDO__SNAP_COMMISSION, errstr,
                            errstr_size))
                return NULL;
        s = ordo_commission_state_new();
        if (!ordo__graph_load(&s->graph, &r))
                tab = ordo__strtab_load(&r, &s->strings, &n_tab);
        n = ordo__rd_count(&r, 8);
        ordo__vec_reserve(&s->corders, sizeof(corder_t), n);
        ordo__map_reserve(&s->orders, n);
        for (i = 0; i < n && !r.why; i++)
                load_corder(s, &r, tab, n_tab);
        if (!r.why &&
            ordo__map_index(&s->orders, &s->corders, sizeof(corder_t)))
                ordo__rd_fail(&r, "duplicate order id");
        n = ordo__rd_count(&r, 4);
        ordo__vec_reserve(&s->earners_v, sizeof(earner_t), n);
        ordo__map_reserve(&s->earners, n);
        for (i = 0; i < n && !r.why; i++)
                load_earner(s, &r, tab, n_tab);
        if (!r.why &&
            ordo__map_index(&s->earners, &s->earners_v, sizeof(earner_t)))
                ordo__rd_fail(&r, "duplicate earner");
        free(tab);
        s->accrued_total = ordo__rd_i64(&r);
        if (ordo__snap_close(&r, errstr, errstr_size)) {
                ordo_commission_state_destroy(s);
                return NULL;
        }
        return s;
}
