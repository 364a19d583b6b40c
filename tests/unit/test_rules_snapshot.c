/*
 * ordo - snapshots of the four rule states (rules.h "Snapshots").
 *
 * The contract under test: a loaded state has the digest of the saved
 * one AND decides every later input into byte-identical output, saving
 * is deterministic and leaves the state alone, and a load of anything
 * but an intact snapshot of the right kind gives NULL and a reason.
 *
 * Exactness is checked the way test_rules_property.c checks replay: a
 * seeded random stream A through the four processors wired as in
 * DESIGN.md, a snapshot, then the same random stream B into the
 * original world and into a world whose processor (or all four) comes
 * from the snapshot; every message of B must match byte for byte. The
 * stream is the property test's generator, trimmed: payments,
 * cancellations, receipts, refunds and bindings mostly hit live orders,
 * and Ticks fire the timers of RULES.md "Timers".
 *
 * The corruption tests also forge snapshots by hand from the format
 * documented in rules_snap.h (including the checksum), so a test can
 * reach the structural checks behind a valid checksum.
 */
#include <criterion/criterion.h>

#include "rules_snap.h" /* ORDO__SNAP_*: the documented format */
#include "test_rules_util.h"

#define N_ACT    3
#define N_USERS  40
#define N_ORDERS 500
#define SEEDS    8
#define STEPS_A  2500
#define STEPS_B  800

/* after the sizes it uses */
#include "test_rules_random.h"

static void setup(world_t *w, uint64_t seed) {
        int a;
        random_begin(seed);
        world_init(w);
        for (a = 0; a < N_ACT; a++) {
                ordo_msg_t c = random_create(a);
                world_send(w, &c);
        }
}

static void run(world_t *w, int steps) {
        int i;
        for (i = 0; i < steps; i++) {
                ordo_msg_t c = random_cmd();
                world_send(w, &c);
                learn(w);
        }
}

/* ---- the four processors behind one interface ---- */

enum { ACT, ORD, REF, COM, N_PROC };
static const char *const names[N_PROC] = { "activity", "order", "referral",
                                           "commission" };

static void save(const world_t *w, int p, ordo_buf_t *out) {
        switch (p) {
        case ACT:
                ordo_activity_state_save(w->act, out);
                break;
        case ORD:
                ordo_order_state_save(w->ord, out);
                break;
        case REF:
                ordo_referral_state_save(w->ref, out);
                break;
        default:
                ordo_commission_state_save(w->com, out);
                break;
        }
}

/* Loads a snapshot as processor p's state: the state (to destroy with
 * drop) or NULL. */
static void *load(int p, const void *data, size_t len, char *err,
                  size_t err_size) {
        switch (p) {
        case ACT:
                return ordo_activity_state_load(data, len, err, err_size);
        case ORD:
                return ordo_order_state_load(data, len, err, err_size);
        case REF:
                return ordo_referral_state_load(data, len, err, err_size);
        default:
                return ordo_commission_state_load(data, len, err, err_size);
        }
}

static void drop(int p, void *s) {
        switch (p) {
        case ACT:
                ordo_activity_state_destroy(s);
                break;
        case ORD:
                ordo_order_state_destroy(s);
                break;
        case REF:
                ordo_referral_state_destroy(s);
                break;
        default:
                ordo_commission_state_destroy(s);
                break;
        }
}

static uint64_t digest(const world_t *w, int p) {
        switch (p) {
        case ACT:
                return ordo_activity_state_digest(w->act);
        case ORD:
                return ordo_order_state_digest(w->ord);
        case REF:
                return ordo_referral_state_digest(w->ref);
        default:
                return ordo_commission_state_digest(w->com);
        }
}

/* Puts a loaded state in processor p's place in w. */
static void install(world_t *w, int p, void *s) {
        cr_assert_not_null(s);
        switch (p) {
        case ACT:
                ordo_activity_state_destroy(w->act);
                w->act = s;
                break;
        case ORD:
                ordo_order_state_destroy(w->ord);
                w->ord = s;
                break;
        case REF:
                ordo_referral_state_destroy(w->ref);
                w->ref = s;
                break;
        default:
                ordo_commission_state_destroy(w->com);
                w->com = s;
                break;
        }
}

/* r's processor p := load(save(w's)), checking the digest and that the
 * loaded state saves to the very same bytes. */
static void restore_into(const world_t *w, world_t *r, int p) {
        ordo_buf_t a = { 0 }, b = { 0 };
        char err[256] = "";
        void *s;
        save(w, p, &a);
        s = load(p, a.data, a.len, err, sizeof(err));
        cr_assert_not_null(s, "%s: %s", names[p], err);
        install(r, p, s);
        cr_assert_eq(digest(r, p), digest(w, p), "%s digest", names[p]);
        save(r, p, &b);
        cr_assert_eq(a.len, b.len, "%s re-save length", names[p]);
        cr_assert(!memcmp(a.data, b.data, a.len), "%s re-save bytes", names[p]);
        ordo_buf_fini(&a);
        ordo_buf_fini(&b);
}

/* What B exercised, so a test cannot pass on a stream that never
 * reached the saved structures. */
typedef struct seen_s {
        int timeouts, auto_received, settled; /* timers fired */
        int refunds, retries_ignored, reserved;
        int bound, bind_rejected;
        int accrued, reversed, com_settled, late_accrued;
} seen_t;

static void tally(seen_t *t, const ordo_msg_t *in, const tout_t *out) {
        size_t k;
        if (in->type == ORDO_MSG_PLACE_ORDER && !out->n)
                t->retries_ignored++;
        for (k = 0; k < out->n; k++) {
                const ordo_msg_t *m = &out->v[k];
                switch (m->type) {
                case ORDO_MSG_ORDER_CANCELLED:
                        t->timeouts += !strcmp(m->u.release.reason, "TIMEOUT");
                        break;
                case ORDO_MSG_ORDER_RECEIVED:
                        t->auto_received += m->u.received.automatic;
                        break;
                case ORDO_MSG_ORDER_SETTLED:
                        t->settled++;
                        break;
                case ORDO_MSG_ORDER_REFUNDED:
                        t->refunds++;
                        break;
                case ORDO_MSG_STOCK_RESERVED:
                        t->reserved++;
                        break;
                case ORDO_MSG_REFERRER_BOUND:
                        t->bound++;
                        break;
                case ORDO_MSG_COMMAND_REJECTED:
                        t->bind_rejected +=
                            !strcmp(m->u.rejected.command_type, "BindReferrer");
                        break;
                case ORDO_MSG_COMMISSION_ACCRUED:
                        t->accrued++;
                        break;
                case ORDO_MSG_COMMISSION_REVERSED:
                        t->reversed++;
                        break;
                case ORDO_MSG_COMMISSION_SETTLED:
                        t->com_settled++;
                        break;
                default:
                        break;
                }
        }
}

/* Sends c to both worlds: the same output, byte for byte. */
static void send_both(world_t *w, world_t *r, const ordo_msg_t *c,
                      uint64_t seed, int i) {
        size_t k;
        world_send(w, c);
        world_send(r, c);
        cr_assert_eq(w->step.n, r->step.n, "seed %llu step %d",
                     (unsigned long long)seed, i);
        for (k = 0; k < w->step.n; k++)
                cr_assert(
                    !memcmp(&w->step.v[k], &r->step.v[k], sizeof(ordo_msg_t)),
                    "seed %llu step %d: %s %s", (unsigned long long)seed, i,
                    ordo_msg_type_name(w->step.v[k].type),
                    w->step.v[k].meta.id);
}

/* Order events dated anywhere in the past, straight to the commission
 * processor: the temporal join (RULES.md "using only bindings with
 * bound_ms <= paid_ms") then consults every saved bound_ms, which a
 * stream whose clock only moves forward never does. */
static void late_payments(world_t *w, world_t *r, uint64_t seed, seen_t *t) {
        int k;
        for (k = 0; k < 100; k++) {
                ordo_msg_t ev;
                int64_t paid = 1000 + rnd((uint32_t)(now - 1000));
                ordo_msg_init(&ev, ORDO_MSG_ORDER_OPENED);
                snprintf(ev.meta.id, sizeof(ev.meta.id), "late-open-%d", k);
                snprintf(ev.meta.aggregate_id, sizeof(ev.meta.aggregate_id),
                         "late%d", k);
                snprintf(ev.u.open.order_id, sizeof(ev.u.open.order_id),
                         "late%d", k);
                snprintf(ev.u.open.user_id, sizeof(ev.u.open.user_id), "u%u",
                         rnd(N_USERS));
                strcpy(ev.u.open.activity_id, "act0");
                ev.u.open.qty = 1;
                ev.u.open.amount_cents = 1 + rnd(100000);
                ev.u.open.n_commission_bps = 3;
                ev.u.open.commission_bps[0] = 1000;
                ev.u.open.commission_bps[1] = 500;
                ev.u.open.commission_bps[2] = 250;
                ev.meta.ts_ms = ev.u.open.placed_ms = paid - 1;
                send_both(w, r, &ev, seed, -1);
                ev.type = ORDO_MSG_ORDER_PAID;
                memset(&ev.u, 0, sizeof(ev.u));
                snprintf(ev.meta.id, sizeof(ev.meta.id), "late-paid-%d", k);
                snprintf(ev.u.payment.order_id, sizeof(ev.u.payment.order_id),
                         "late%d", k);
                strcpy(ev.u.payment.payment_id, "p");
                ev.meta.ts_ms = ev.u.payment.paid_ms = paid;
                send_both(w, r, &ev, seed, -1);
                t->late_accrued +=
                    (int)tout_count(&w->step, ORDO_MSG_COMMISSION_ACCRUED);
        }
        /* and OrderPaid delivered again (docs/rules.md: a redelivery
         * accrues nothing), which needs the saved "paid" facts */
        for (k = 0; k < 40 && w->log.n; k++) {
                ordo_msg_t ev = w->log.v[rnd((uint32_t)w->log.n)];
                if (ev.type == ORDO_MSG_ORDER_PAID)
                        send_both(w, r, &ev, seed, -2);
        }
}

/* Property 1: A, snapshot of processor p (or all of them, p < 0) into a
 * replayed world, then B into both: identical output. */
static void check_continue(int p, seen_t *t) {
        uint64_t seed;
        memset(t, 0, sizeof(*t));
        for (seed = 1; seed <= SEEDS; seed++) {
                world_t w, r;
                int i, q;
                setup(&w, seed);
                run(&w, STEPS_A);
                world_replay(&w, &r);
                for (q = 0; q < N_PROC; q++)
                        if (p < 0 || q == p)
                                restore_into(&w, &r, q);
                for (i = 0; i < STEPS_B; i++) {
                        ordo_msg_t c = random_cmd();
                        send_both(&w, &r, &c, seed, i);
                        learn(&w);
                        tally(t, &c, &w.step);
                }
                late_payments(&w, &r, seed, t);
                for (q = 0; q < N_PROC; q++)
                        cr_assert_eq(digest(&w, q), digest(&r, q));
                world_fini(&r);
                world_fini(&w);
        }
}

Test(snapshot, continue_activity, .timeout = 120) {
        seen_t t;
        check_continue(ACT, &t);
        /* RULES.md rule 2 (retries ignored), 5 and 6 over saved state */
        cr_assert_gt(t.retries_ignored, 0);
        cr_assert_gt(t.reserved, 0);
}

Test(snapshot, continue_order, .timeout = 120) {
        seen_t t;
        check_continue(ORD, &t);
        /* RULES.md "Timers": saved timers fired after the load */
        cr_assert_gt(t.timeouts, 0);
        cr_assert_gt(t.auto_received, 0);
        cr_assert_gt(t.settled, 0);
        cr_assert_gt(t.refunds, 0);
}

Test(snapshot, continue_referral, .timeout = 120) {
        seen_t t;
        check_continue(REF, &t);
        /* RULES.md "Referral binding": first binding wins, CYCLE */
        cr_assert_gt(t.bound, 0);
        cr_assert_gt(t.bind_rejected, 0);
}

Test(snapshot, continue_commission, .timeout = 120) {
        seen_t t;
        check_continue(COM, &t);
        /* RULES.md "Commission": accrual, reversal, settlement */
        cr_assert_gt(t.accrued, 0);
        cr_assert_gt(t.reversed, 0);
        cr_assert_gt(t.com_settled, 0);
        cr_assert_gt(t.late_accrued, 0);
}

Test(snapshot, continue_all_four, .timeout = 120) {
        seen_t t;
        check_continue(-1, &t);
        cr_assert_gt(t.accrued, 0);
}

/* Property 2: the empty state. */
Test(snapshot, empty_round_trip) {
        world_t w, r;
        int p, i;
        world_init(&w);
        world_init(&r);
        for (p = 0; p < N_PROC; p++)
                restore_into(&w, &r, p);
        rng = 42;
        now = 1000;
        n_known = 0;
        for (i = 0; i < 200; i++) {
                ordo_msg_t c = random_cmd();
                world_send(&w, &c);
                world_send(&r, &c);
                cr_assert_eq(w.step.n, r.step.n);
                cr_assert(!w.step.n || !memcmp(w.step.v, r.step.v,
                                               w.step.n * sizeof(*w.step.v)));
        }
        world_fini(&w);
        world_fini(&r);
}

/* Property 3: determinism, a state left alone, and appending. */
Test(snapshot, deterministic) {
        world_t w;
        int p;
        setup(&w, 7);
        run(&w, 1500);
        for (p = 0; p < N_PROC; p++) {
                ordo_buf_t a = { 0 }, b = { 0 };
                uint64_t d = digest(&w, p);
                char err[256] = "";
                void *s;
                save(&w, p, &a);
                cr_assert_eq(digest(&w, p), d, "%s: save changed it", names[p]);
                /* rules.h: a save appends to what out holds */
                b.data = malloc(5);
                cr_assert_not_null(b.data);
                memcpy(b.data, "junk!", 5);
                b.len = b.cap = 5;
                save(&w, p, &b);
                cr_assert_eq(b.len, 5 + a.len, "%s", names[p]);
                cr_assert(!memcmp(b.data, "junk!", 5));
                cr_assert(!memcmp(b.data + 5, a.data, a.len), "%s", names[p]);
                s = load(p, b.data + 5, a.len, err, sizeof(err));
                cr_assert_not_null(s, "%s: %s", names[p], err);
                drop(p, s);
                ordo_buf_fini(&a);
                ordo_buf_fini(&b);
                cr_assert_null(a.data);
                cr_assert_eq(a.len + a.cap, 0);
        }
        world_fini(&w);
}

/* ---- property 4: corruption ---- */

/* A small world's snapshot of each processor. */
static void small_snaps(ordo_buf_t snap[N_PROC]) {
        world_t w;
        int p;
        setup(&w, 3);
        run(&w, 400);
        for (p = 0; p < N_PROC; p++) {
                memset(&snap[p], 0, sizeof(snap[p]));
                save(&w, p, &snap[p]);
        }
        world_fini(&w);
}

static void free_snaps(ordo_buf_t snap[N_PROC]) {
        int p;
        for (p = 0; p < N_PROC; p++)
                ordo_buf_fini(&snap[p]);
}

/* The load fails, with a reason that contains want (if given). */
static void expect_fail(int p, const void *data, size_t len, const char *want) {
        char err[256] = "";
        void *s = load(p, data, len, err, sizeof(err));
        if (s)
                drop(p, s);
        cr_assert_null(s, "%s: %zu bytes loaded", names[p], len);
        cr_assert(!strncmp(err, "snapshot: ", 10), "reason '%s'", err);
        if (want)
                cr_assert(strstr(err, want), "%s: got '%s', want '%s'",
                          names[p], err, want);
}

Test(snapshot, every_truncation_fails) {
        ordo_buf_t snap[N_PROC];
        size_t n;
        int p;
        small_snaps(snap);
        for (p = 0; p < N_PROC; p++) {
                cr_assert_gt(snap[p].len, 64, "%s", names[p]);
                for (n = 0; n < snap[p].len; n++)
                        expect_fail(p, snap[p].data, n,
                                    n < 8 ? "bad magic" : "truncated");
        }
        free_snaps(snap);
}

/* rules_snap.h: the checksum covers every byte before it, so flipping
 * any one byte is caught (magic, version and length first). */
Test(snapshot, every_byte_flip_fails) {
        static const uint8_t masks[] = { 0x01, 0x80, 0xff };
        ordo_buf_t snap[N_PROC];
        size_t i, m;
        int p;
        small_snaps(snap);
        for (p = 0; p < N_PROC; p++) {
                uint8_t *d = snap[p].data;
                for (i = 0; i < snap[p].len; i++)
                        for (m = 0; m < sizeof(masks); m++) {
                                const char *want = "checksum mismatch";
                                if (i < 8)
                                        want = "bad magic";
                                else if (i < 12)
                                        want = "format version";
                                else if (i >= 13 && i < 21)
                                        want = NULL; /* length: truncated
                                                        or trailing */
                                d[i] ^= masks[m];
                                expect_fail(p, d, snap[p].len, want);
                                d[i] ^= masks[m];
                        }
        }
        free_snaps(snap);
}

Test(snapshot, wrong_kind_fails) {
        ordo_buf_t snap[N_PROC];
        char want[64];
        int p, q;
        small_snaps(snap);
        for (p = 0; p < N_PROC; p++)
                for (q = 0; q < N_PROC; q++) {
                        if (p == q)
                                continue;
                        snprintf(want, sizeof(want), "kind is %s, expected %s",
                                 names[p], names[q]);
                        expect_fail(q, snap[p].data, snap[p].len, want);
                }
        free_snaps(snap);
}

/* ---- forging: the documented format, built here ---- */

/* rules_snap.h's definition of the checksum, written from its comment. */
static uint64_t ref_sum64(const uint8_t *p, size_t n) {
        uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
        size_t i, k;
        for (i = 0; i < n; i += 8) {
                uint64_t w = 0;
                for (k = 0; k < 8 && i + k < n; k++)
                        w |= (uint64_t)p[i + k] << (8 * k);
                h = (h ^ w) * 0xff51afd7ed558ccdULL;
                h ^= h >> 32;
        }
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

static void put_le(uint8_t *d, uint64_t v, int n) {
        int i;
        for (i = 0; i < n; i++)
                d[i] = (uint8_t)(v >> (8 * i));
}

/* Sets the body length and the checksum of a snapshot in place. */
static void reseal(uint8_t *d, size_t len) {
        put_le(d + 13, len - 21 - 8, 8);
        put_le(d + len - 8, ref_sum64(d, len - 8), 8);
}

typedef struct fb_s {
        uint8_t d[4096];
        size_t n;
} fb_t;

static void fb_u8(fb_t *b, uint8_t v) {
        cr_assert_lt(b->n, sizeof(b->d));
        b->d[b->n++] = v;
}

static void fb_varint(fb_t *b, uint64_t v) {
        while (v >= 0x80) {
                fb_u8(b, (uint8_t)(v | 0x80));
                v >>= 7;
        }
        fb_u8(b, (uint8_t)v);
}

static void fb_i64(fb_t *b, int64_t v) {
        fb_varint(b, v < 0 ? ~((uint64_t)v << 1) : (uint64_t)v << 1);
}

static void fb_str(fb_t *b, const char *s) {
        fb_varint(b, strlen(s));
        while (*s)
                fb_u8(b, (uint8_t)*s++);
}

static void fb_begin(fb_t *b, int kind) {
        int i;
        b->n = 0;
        for (i = 0; i < 8; i++)
                fb_u8(b, (uint8_t) "ORDOSNAP"[i]);
        for (i = 0; i < 4; i++)
                fb_u8(b, (uint8_t)(ORDO__SNAP_VERSION >> (8 * i)));
        fb_u8(b, (uint8_t)kind);
        for (i = 0; i < 8; i++)
                fb_u8(b, 0);
}

static void fb_seal(fb_t *b) {
        int i;
        for (i = 0; i < 8; i++)
                fb_u8(b, 0);
        reseal(b->d, b->n);
}

Test(snapshot, checksum_is_the_documented_one) {
        ordo_buf_t snap[N_PROC];
        uint8_t bytes[40];
        size_t n;
        int p;
        for (n = 0; n < sizeof(bytes); n++)
                bytes[n] = (uint8_t)(n * 37 + 11);
        for (n = 0; n <= sizeof(bytes); n++)
                cr_assert_eq(ordo__sum64(bytes, n), ref_sum64(bytes, n));
        small_snaps(snap);
        for (p = 0; p < N_PROC; p++) {
                uint8_t *copy = malloc(snap[p].len);
                cr_assert_not_null(copy);
                memcpy(copy, snap[p].data, snap[p].len);
                reseal(copy, snap[p].len);
                cr_assert(!memcmp(copy, snap[p].data, snap[p].len));
                free(copy);
        }
        free_snaps(snap);
}

Test(snapshot, framing) {
        ordo_buf_t snap[N_PROC];
        uint8_t *d;
        size_t n;
        small_snaps(snap);
        n = snap[ORD].len;
        d = malloc(n + 3);
        cr_assert_not_null(d);
        memcpy(d, snap[ORD].data, n);
        memset(d + n, 0, 3);
        expect_fail(ORD, d, n + 3, "3 trailing bytes");
        put_le(d + 8, 2, 4); /* a later format, sealed properly */
        reseal(d, n);
        expect_fail(ORD, d, n, "format version 2, expected 1");
        put_le(d + 8, 1, 4);
        d[12] = 9;
        reseal(d, n);
        expect_fail(ORD, d, n, "kind is unknown, expected order");
        expect_fail(ORD, NULL, 0, "bad magic");
        expect_fail(ORD, "ORDOSNAQ", 8, "bad magic");
        free(d);
        free_snaps(snap);
}

/* Every body byte changed and the snapshot resealed: the structural
 * checks alone stand between the bytes and the state. A load either
 * fails with a position, or gives a state that saves and loads again.
 * ASan and UBSan watch for reads out of bounds and leaks. */
Test(snapshot, forged_bytes_never_crash, .timeout = 240) {
        static const uint8_t masks[] = { 0x01, 0x80, 0xff };
        ordo_buf_t snap[N_PROC];
        size_t i, m;
        int p, failed, loaded;
        small_snaps(snap);
        for (p = 0; p < N_PROC; p++) {
                size_t len = snap[p].len;
                uint8_t *d = malloc(len);
                cr_assert_not_null(d);
                failed = loaded = 0;
                for (i = 21; i < len - 8; i++)
                        for (m = 0; m < sizeof(masks); m++) {
                                char err[256] = "";
                                ordo_buf_t again = { 0 };
                                void *s, *s2;
                                world_t tmp;
                                memcpy(d, snap[p].data, len);
                                d[i] ^= masks[m];
                                reseal(d, len);
                                s = load(p, d, len, err, sizeof(err));
                                if (!s) {
                                        cr_assert(strstr(err, " at byte "),
                                                  "%s", err);
                                        failed++;
                                        continue;
                                }
                                loaded++;
                                memset(&tmp, 0, sizeof(tmp));
                                tmp.act = s;
                                tmp.ord = s;
                                tmp.ref = s;
                                tmp.com = s;
                                save(&tmp, p, &again);
                                s2 = load(p, again.data, again.len, err,
                                          sizeof(err));
                                cr_assert_not_null(s2, "%s", err);
                                drop(p, s2);
                                drop(p, s);
                                ordo_buf_fini(&again);
                        }
                /* both kinds of outcome happened */
                cr_assert_gt(failed, 0, "%s", names[p]);
                cr_assert_gt(loaded, 0, "%s", names[p]);
                /* and truncated bodies, resealed, all fail */
                for (i = 21; i < len - 8; i++) {
                        memcpy(d, snap[p].data, i);
                        memset(d + i, 0, 8);
                        reseal(d, i + 8);
                        expect_fail(p, d, i + 8, " at byte ");
                }
                free(d);
        }
        free_snaps(snap);
}

/* ---- forged referral graphs (RULES.md "Referral binding") ---- */

typedef struct fnode_s {
        const char *id;
        uint64_t parent; /* 0 none, else 1 + index */
        int64_t bound_ms;
} fnode_t;

static void forge_graph(fb_t *b, const fnode_t *v, int n) {
        int i;
        fb_varint(b, (uint64_t)n);
        for (i = 0; i < n; i++) {
                fb_str(b, v[i].id);
                fb_varint(b, v[i].parent);
                fb_i64(b, v[i].bound_ms);
        }
}

static void forge_referral(fb_t *b, const fnode_t *v, int n) {
        fb_begin(b, ORDO__SNAP_REFERRAL);
        forge_graph(b, v, n);
        fb_seal(b);
}

Test(snapshot, forged_referral) {
        static const fnode_t ok[] = { { "a", 2, 5 }, { "b", 0, 0 } };
        static const fnode_t cycle[] = { { "a", 3, 5 },
                                         { "b", 1, 6 },
                                         { "c", 2, 7 } };
        static const fnode_t dup[] = { { "a", 0, 0 }, { "a", 0, 0 } };
        static const fnode_t self[] = { { "a", 1, 5 } };
        static const fnode_t range[] = { { "a", 2, 5 } };
        ordo_referral_state_t *s, *want;
        ordo_msg_t ev, cmd;
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = { "referral-commands", 0, 1 };
        char err[256] = "";
        fb_t b;

        forge_referral(&b, ok, 2);
        s = ordo_referral_state_load(b.d, b.n, err, sizeof(err));
        cr_assert_not_null(s, "%s", err);
        /* the same fact as folding ReferrerBound(a -> b at 5) */
        want = ordo_referral_state_new();
        ordo_msg_init(&ev, ORDO_MSG_REFERRER_BOUND);
        strcpy(ev.u.bind.user_id, "a");
        strcpy(ev.u.bind.referrer_id, "b");
        ev.u.bind.bound_ms = 5;
        ordo_referral_apply(want, &ev);
        cr_assert_eq(ordo_referral_state_digest(s),
                     ordo_referral_state_digest(want));
        /* RULES.md: user_id is an ancestor of referrer_id -> CYCLE */
        cmd = t_bind("b", "a", 10);
        ordo_referral_handle(s, &cmd, &pos, &sink);
        cr_assert_str_eq(tout_outcome(&out), "CYCLE");
        ordo_referral_state_destroy(s);
        ordo_referral_state_destroy(want);
        tout_free(&out);

        forge_referral(&b, cycle, 3);
        expect_fail(REF, b.d, b.n, "cycle in the referral graph");
        forge_referral(&b, dup, 2);
        expect_fail(REF, b.d, b.n, "duplicate user");
        forge_referral(&b, self, 1);
        expect_fail(REF, b.d, b.n, "user bound to itself");
        forge_referral(&b, range, 1);
        expect_fail(REF, b.d, b.n, "parent out of range");

        /* a count the bytes cannot hold is refused before allocating */
        fb_begin(&b, ORDO__SNAP_REFERRAL);
        fb_varint(&b, 1u << 30);
        fb_seal(&b);
        expect_fail(REF, b.d, b.n, "count larger than the bytes left");

        /* strings: at most 64 bytes (RULES.md), no NUL */
        fb_begin(&b, ORDO__SNAP_REFERRAL);
        fb_varint(&b, 1);
        fb_str(&b, "0123456789012345678901234567890123456789012345678901234"
                   "5678901234");
        fb_varint(&b, 0);
        fb_i64(&b, 0);
        fb_seal(&b);
        expect_fail(REF, b.d, b.n, "string too long at byte 22");
        fb_begin(&b, ORDO__SNAP_REFERRAL);
        fb_varint(&b, 1);
        fb_varint(&b, 3);
        fb_u8(&b, 'a');
        fb_u8(&b, 0);
        fb_u8(&b, 'b');
        fb_varint(&b, 0);
        fb_i64(&b, 0);
        fb_seal(&b);
        expect_fail(REF, b.d, b.n, "NUL in a string");
}

/* ---- forged order states: the timer heap (RULES.md "Timers") ---- */

static void forge_order_rec(fb_t *b, const char *id, int64_t pay_deadline,
                            uint64_t user_ref, int status) {
        const int64_t v[11] = { 1, 500, 0, pay_deadline, 1000, 1000, 0, 0,
                                0, 0,   1 };
        int k;
        fb_str(b, id);
        fb_varint(b, 1);        /* activity: "act" */
        fb_varint(b, user_ref); /* user: "u1" */
        fb_varint(b, 0);        /* no payment id */
        fb_varint(b, 0);        /* no refunds */
        for (k = 0; k < 11; k++)
                fb_i64(b, v[k]);
        fb_u8(b, (uint8_t)status);
}

/* Orders o1 (deadline 1000) and o2 (deadline 2000), PENDING_PAYMENT
 * (status 1), with the heap given. */
static void forge_order(fb_t *b, const char *id2, int status2,
                        uint64_t user_ref2, const uint64_t *heap, int heap_n,
                        uint64_t heap_cap) {
        int i;
        fb_begin(b, ORDO__SNAP_ORDER);
        fb_varint(b, 2);
        fb_str(b, "act");
        fb_str(b, "u1");
        fb_varint(b, 2);
        forge_order_rec(b, "o1", 1000, 2, 1);
        forge_order_rec(b, id2, 2000, user_ref2, status2);
        fb_varint(b, (uint64_t)heap_n);
        fb_varint(b, heap_cap);
        for (i = 0; i < heap_n; i++)
                fb_varint(b, heap[i]);
        fb_seal(b);
}

Test(snapshot, forged_order_heap) {
        static const uint64_t good[] = { 0, 1 }, bad[] = { 1, 0 },
                              twice[] = { 0, 0 }, one[] = { 0 };
        ordo_order_state_t *s;
        ordo_msg_t tick;
        tout_t out = { 0 };
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = { "order-commands", 0, 1 };
        const ordo_msg_t *m;
        char err[256] = "";
        fb_t b;

        forge_order(&b, "o2", 1, 2, good, 2, 64);
        s = ordo_order_state_load(b.d, b.n, err, sizeof(err));
        cr_assert_not_null(s, "%s", err);
        /* RULES.md "Timers": PENDING_PAYMENT and ts > pay_deadline_ms
         * -> CANCELLED (TIMEOUT), at its own deadline; o2 not yet due */
        tick = t_tick(1500);
        ordo_order_handle(s, &tick, &pos, &sink);
        cr_assert_eq(tout_count(&out, ORDO_MSG_ORDER_CANCELLED), 1);
        m = tout_find(&out, ORDO_MSG_ORDER_CANCELLED);
        cr_assert_str_eq(m->meta.aggregate_id, "o1");
        cr_assert_str_eq(m->u.release.reason, "TIMEOUT");
        cr_assert_eq(m->meta.ts_ms, 1000);
        cr_assert_eq(tout_count(&out, ORDO_MSG_RELEASE_STOCK), 1);
        ordo_order_state_destroy(s);
        tout_free(&out);

        forge_order(&b, "o2", 1, 2, bad, 2, 64);
        expect_fail(ORD, b.d, b.n, "heap out of order");
        forge_order(&b, "o2", 1, 2, twice, 2, 64);
        expect_fail(ORD, b.d, b.n, "heap entry repeated or without timer");
        forge_order(&b, "o2", 1, 2, one, 1, 64);
        expect_fail(ORD, b.d, b.n, "order timer not in the heap");
        /* CANCELLED (5) has no timer, so it cannot be in the heap */
        forge_order(&b, "o2", 5, 2, good, 2, 64);
        expect_fail(ORD, b.d, b.n, "heap entry repeated or without timer");
        forge_order(&b, "o2", 5, 2, one, 1, 64);
        s = ordo_order_state_load(b.d, b.n, err, sizeof(err));
        cr_assert_not_null(s, "%s", err);
        ordo_order_state_destroy(s);
        forge_order(&b, "o2", 1, 2, good, 2, 63);
        expect_fail(ORD, b.d, b.n, "bad heap capacity");
        forge_order(&b, "o2", 1, 2, good, 2, 128);
        expect_fail(ORD, b.d, b.n, "heap too big");
        forge_order(&b, "o2", 9, 2, good, 2, 64);
        expect_fail(ORD, b.d, b.n, "bad order status");
        forge_order(&b, "o2", 1, 3, good, 2, 64);
        expect_fail(ORD, b.d, b.n, "string reference out of range");
        forge_order(&b, "o2", 1, 0, good, 2, 64);
        expect_fail(ORD, b.d, b.n, "missing string reference");
        forge_order(&b, "o1", 1, 2, good, 2, 64);
        expect_fail(ORD, b.d, b.n, "duplicate order id");
        /* PAID (2) without a payment id: a later ConfirmPayment compares
         * against it (RULES.md "Payment": DUPLICATE_PAYMENT) */
        forge_order(&b, "o2", 2, 2, one, 1, 64);
        expect_fail(ORD, b.d, b.n, "paid order without payment id");
}

/* ---- forged activity: a reservation belongs to one order id ---- */

static void forge_activity(fb_t *b, const uint64_t *refs, int n_refs) {
        int k;
        fb_begin(b, ORDO__SNAP_ACTIVITY);
        fb_varint(b, 1);
        fb_str(b, "act");
        for (k = 0; k < 8; k++)
                fb_i64(b, k == 1 ? 10 : 1); /* price .. freeze; stock 10 */
        fb_varint(b, 0);                    /* no commission levels */
        fb_i64(b, 1);                       /* reserved */
        fb_i64(b, 0);                       /* released */
        fb_i64(b, 2);                       /* version */
        fb_varint(b, 1);                    /* users */
        fb_varint(b, 0);
        fb_str(b, "u1");
        fb_i64(b, 1);
        fb_varint(b, 1); /* reservations */
        fb_varint(b, 0);
        fb_varint(b, 0);
        fb_i64(b, 1);
        fb_varint(b, (uint64_t)n_refs); /* order ids */
        for (k = 0; k < n_refs; k++) {
                char id[16];
                snprintf(id, sizeof(id), "o%d", k);
                fb_str(b, id);
                fb_varint(b, refs[k]);
        }
        fb_seal(b);
}

Test(snapshot, forged_activity) {
        static const uint64_t one[] = { 1, 0 }, shared[] = { 1, 1 },
                              none[] = { 0, 0 }, range[] = { 2 };
        ordo_activity_state_t *s;
        char err[256] = "";
        fb_t b;
        forge_activity(&b, one, 2);
        s = ordo_activity_state_load(b.d, b.n, err, sizeof(err));
        cr_assert_not_null(s, "%s", err);
        /* remaining = stock - reserved + released (RULES.md) */
        cr_assert_eq(ordo_activity_remaining(s, "act"), 9);
        ordo_activity_state_destroy(s);
        forge_activity(&b, shared, 2);
        expect_fail(ACT, b.d, b.n, "reservation shared");
        forge_activity(&b, none, 2);
        expect_fail(ACT, b.d, b.n, "reservation without order id");
        forge_activity(&b, range, 1);
        expect_fail(ACT, b.d, b.n, "reservation out of range");
}

/* ---- forged commission state: an opened order has a buyer ---- */

Test(snapshot, forged_commission_opened_without_buyer) {
        fb_t b;
        fb_begin(&b, ORDO__SNAP_COMMISSION);
        fb_varint(&b, 0); /* no graph nodes */
        fb_varint(&b, 0); /* no interned strings */
        fb_varint(&b, 1); /* one order: */
        fb_str(&b, "o1");
        fb_varint(&b, 0); /* buyer: none */
        fb_i64(&b, 100);  /* amount_cents */
        fb_varint(&b, 1); /* one level at 10 % */
        fb_i64(&b, 1000);
        fb_varint(&b, 1); /* opened */
        fb_varint(&b, 0); /* not paid */
        fb_i64(&b, 1);    /* version */
        fb_varint(&b, 0); /* no entries */
        fb_varint(&b, 0); /* no earners */
        fb_i64(&b, 0);    /* accrued in all */
        fb_seal(&b);
        /* an OrderPaid would look the buyer up in the referral graph to
         * accrue (RULES.md "Commission") */
        expect_fail(COM, b.d, b.n, "opened order without buyer");
}
