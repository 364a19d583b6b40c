/*
 * ordo - the referral processor against RULES.md "Referral binding".
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "test_rules_util.h"

static tout_t out;

static void bind(ordo_referral_state_t *s, const char *u, const char *r,
                 int64_t ts) {
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("referral-commands");
        ordo_msg_t m = t_bind(u, r, ts);
        tout_clear(&out);
        ordo_referral_handle(s, &m, &pos, &sink);
}

/* Graph before each row: b -> a, c -> b, d -> c (a is the root). */
static ordo_referral_state_t *graph(void) {
        ordo_referral_state_t *s = ordo_referral_state_new();
        bind(s, "b", "a", 1);
        bind(s, "c", "b", 2);
        bind(s, "d", "c", 3);
        return s;
}

typedef struct case_s {
        char rule[96];
        char user[8], referrer[8];
        char expect[32];
} case_t;

static case_t cases[] = {
        { "user_id == referrer_id -> SELF", "x", "x", "SELF" },
        { "SELF for a bound user too", "b", "b", "SELF" },
        { "already has a parent, the same one -> ignored", "b", "a", "" },
        { "already has a parent, another -> ALREADY_BOUND", "b", "x",
          "ALREADY_BOUND" },
        { "first binding wins: even towards a descendant", "c", "d",
          "ALREADY_BOUND" },
        { "user_id is an ancestor of referrer_id -> CYCLE (parent)", "a", "b",
          "CYCLE" },
        { "user_id is an ancestor of referrer_id -> CYCLE (3 up)", "a", "d",
          "CYCLE" },
        { "a new user under a leaf is bound", "e", "d", "ACCEPTED" },
        { "a root under a stranger is bound", "a", "x", "ACCEPTED" },
        { "two strangers are bound", "x", "y", "ACCEPTED" },
};

ParameterizedTestParameters(referral, reasons) {
        return cr_make_param_array(case_t, cases,
                                   sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(case_t *c, referral, reasons) {
        ordo_referral_state_t *s = graph();
        bind(s, c->user, c->referrer, 50);
        cr_assert_str_eq(tout_outcome(&out), c->expect, "%s", c->rule);
        if (!strcmp(c->expect, "ACCEPTED")) {
                cr_assert_eq(out.v[0].type, ORDO_MSG_REFERRER_BOUND);
                cr_assert_eq(out.v[0].u.bind.bound_ms, 50, "bound_ms = ts_ms");
                cr_assert_str_eq(out.v[0].meta.aggregate_id, c->user);
                cr_assert_eq(out.v[0].meta.version, 1);
        } else if (out.n) {
                cr_assert_str_eq(out.v[0].u.rejected.command_type,
                                 "BindReferrer");
                cr_assert_str_eq(out.v[0].u.rejected.user_id, c->user);
        }
        ordo_referral_state_destroy(s);
}

Test(referral, replay_equality) {
        ordo_referral_state_t *s = ordo_referral_state_new();
        ordo_referral_state_t *r = ordo_referral_state_new();
        tout_t all = { 0 };
        char u[16], p[16];
        unsigned x = 7;
        int i;
        size_t k;
        for (i = 0; i < 500; i++) {
                x = x * 1103515245u + 12345u;
                snprintf(u, sizeof(u), "u%u", (x >> 8) % 60);
                snprintf(p, sizeof(p), "u%u", (x >> 20) % 60);
                bind(s, u, p, i);
                for (k = 0; k < out.n; k++)
                        tout_emit(&all, &out.v[k]);
        }
        for (k = 0; k < all.n; k++)
                ordo_referral_apply(r, &all.v[k]);
        cr_assert_eq(ordo_referral_state_digest(r),
                     ordo_referral_state_digest(s));
        /* and the rebuilt graph decides the same */
        for (i = 0; i < 60; i++) {
                snprintf(u, sizeof(u), "u%d", i);
                snprintf(p, sizeof(p), "u%d", (i * 7) % 60);
                bind(s, u, p, 1000);
                k = out.n;
                tout_emit(&all, k ? &out.v[0] : &all.v[0]);
                bind(r, u, p, 1000);
                cr_assert_eq(out.n, k);
                if (k)
                        cr_assert_str_eq(out.v[0].u.rejected.reason,
                                         all.v[all.n - 1].u.rejected.reason);
        }
        tout_free(&all);
        {
                /* 60 users bound: more than a fresh state holds */
                ordo_referral_state_t *fresh = ordo_referral_state_new();
                cr_assert_gt(ordo_referral_state_bytes(s),
                             ordo_referral_state_bytes(fresh) +
                                 60 * sizeof(uint32_t));
                ordo_referral_state_destroy(fresh);
        }
        ordo_referral_state_destroy(s);
        ordo_referral_state_destroy(r);
        ordo_referral_state_destroy(NULL);
}

Test(referral, ignores_other_types) {
        ordo_referral_state_t *s = ordo_referral_state_new();
        ordo_sink_t sink = tout_sink(&out);
        ordo_pos_t pos = t_pos("referral-commands");
        ordo_msg_t m = t_tick(5);
        tout_clear(&out);
        ordo_referral_handle(s, &m, &pos, &sink);
        cr_assert_eq(out.n, 0);
        ordo_referral_state_destroy(s);
}
