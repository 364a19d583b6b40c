/*
 * The door (admit.h): validate, stamp ts_ms, make the ids, the same for
 * every source.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "admit.h"

static char errstr[512];

static ordo_err_t admit(ordo_door_t *ids, const char *json,
                        const ordo_validate_opts_t *o, ordo_msg_t *m,
                        ordo_field_fault_t *f) {
        return ordo_admit(ids, json, strlen(json), o, 5000, m, f, errstr,
                          sizeof(errstr));
}

#define PLACE                                                                  \
        "{\"type\":\"PlaceOrder\",\"activity_id\":\"a\",\"user_id\":\"u\","    \
        "\"qty\":1"

Test(admit, stamps_and_names_a_command) {
        ordo_door_t ids;
        ordo_msg_t m;
        ordo_field_fault_t f;
        ordo_validate_opts_t o = { .generate_order_id = 1 };
        ordo_door_init(&ids, 7);
        cr_assert_eq(admit(&ids, PLACE "}", &o, &m, &f), ORDO_ERR_OK, "%s",
                     errstr);
        cr_expect_eq(m.meta.ts_ms, 5000);
        cr_expect_eq(m.meta.id[0], 'c');
        cr_expect_eq(strlen(m.meta.id), ORDO_IDGEN_LEN);
        cr_expect_eq(m.u.place.order_id[0], 'o');
        ordo_door_fini(&ids);
}

Test(admit, keeps_what_the_source_supplies) {
        ordo_door_t ids;
        ordo_msg_t m;
        ordo_field_fault_t f;
        ordo_validate_opts_t o = { .keep_ts = 1 };
        ordo_door_init(&ids, 7);
        cr_assert_eq(admit(&ids,
                           PLACE ",\"order_id\":\"o1\",\"command_id\":\"k1\","
                                 "\"ts_ms\":42}",
                           &o, &m, &f),
                     ORDO_ERR_OK, "%s", errstr);
        cr_expect_eq(m.meta.ts_ms, 42);
        cr_expect_str_eq(m.meta.id, "k1");
        cr_expect_str_eq(m.u.place.order_id, "o1");
        ordo_door_fini(&ids);
}

/* `ordo produce` without --keep-ts: a ts_ms is checked, then stamped over;
 * the gateway's ordinary keys refuse it. One validation either way. */
Test(admit, ts_ms_refused_or_stamped_over) {
        ordo_door_t ids;
        ordo_msg_t m;
        ordo_field_fault_t f;
        ordo_validate_opts_t refuse = { .keep_ts = 0 },
                             ignore = { .keep_ts = 0, .ignore_ts = 1 };
        ordo_door_init(&ids, 7);
        cr_assert_eq(admit(&ids, PLACE ",\"order_id\":\"o1\",\"ts_ms\":42}",
                           &refuse, &m, &f),
                     ORDO_ERR_PARSE);
        cr_expect_str_eq(f.reason, "NOT_ALLOWED");
        cr_assert_eq(admit(&ids, PLACE ",\"order_id\":\"o1\",\"ts_ms\":42}",
                           &ignore, &m, &f),
                     ORDO_ERR_OK, "%s", errstr);
        cr_expect_eq(m.meta.ts_ms, 5000);
        cr_assert_eq(admit(&ids, PLACE ",\"order_id\":\"o1\",\"ts_ms\":\"x\"}",
                           &ignore, &m, &f),
                     ORDO_ERR_WRONG_TYPE);
        cr_expect_str_eq(f.field, "ts_ms");
        cr_assert_eq(
            admit(&ids, PLACE ",\"order_id\":\"o1\"}", &ignore, &m, &f),
            ORDO_ERR_OK, "%s", errstr);
        ordo_door_fini(&ids);
}

Test(admit, a_tick_built_by_hand) {
        ordo_door_t ids;
        ordo_msg_t m;
        ordo_validate_opts_t o = { .keep_ts = 1 };
        ordo_door_init(&ids, 7);
        ordo_msg_init(&m, ORDO_MSG_TICK);
        m.meta.ts_ms = 99;
        ordo_admit_stamp(&ids, &o, 5000, &m);
        cr_expect_eq(m.meta.ts_ms, 99);
        cr_expect_eq(m.meta.id[0], 'c');
        ordo_door_fini(&ids);
}

/* The door's clock while a binding waits: 5000 twice more, then 5001. */
static int clock_reads;
static int64_t slow_clock(void) {
        return ++clock_reads <= 2 ? 5000 : 5001;
}

/* A binding admitted in the millisecond of a payment waits for the
 * next one: it is stamped after that payment, never in the future, and
 * a payment admitted after it is not stamped before it (where a binding
 * counted for a payment or not by timing, docs/rules.md "Commission");
 * a trusted source's ts_ms is kept. */
Test(admit, a_binding_after_a_payment_waits_for_the_next_millisecond) {
        static const char pay[] = "{\"type\":\"ConfirmPayment\",\"order_id\":"
                                  "\"o1\",\"payment_id\":\"p1\","
                                  "\"amount_cents\":100}";
        static const char bind[] = "{\"type\":\"BindReferrer\",\"user_id\":"
                                   "\"u1\",\"referrer_id\":\"r1\"";
        ordo_door_t door;
        ordo_msg_t m;
        ordo_field_fault_t f;
        ordo_validate_opts_t o = { 0 }, trusted = { .keep_ts = 1 };
        char line[256];
        ordo_door_init(&door, 7);
        door.clock = slow_clock;
        snprintf(line, sizeof(line), "%s}", bind);
        cr_assert_eq(admit(&door, line, &o, &m, &f), ORDO_ERR_OK, "%s", errstr);
        cr_expect_eq(m.meta.ts_ms, 5000, "no payment before it: no wait");
        cr_expect_eq(clock_reads, 0);
        cr_assert_eq(admit(&door, pay, &o, &m, &f), ORDO_ERR_OK, "%s", errstr);
        cr_expect_eq(m.meta.ts_ms, 5000);
        cr_assert_eq(admit(&door, line, &o, &m, &f), ORDO_ERR_OK, "%s", errstr);
        cr_expect_eq(m.meta.ts_ms, 5001, "the clock's next millisecond");
        cr_expect_eq(clock_reads, 3, "it waited for the clock to move on");
        /* a clock gone back is taken as it is: no wait, no future */
        cr_assert_eq(ordo_admit(&door, line, strlen(line), &o, 4000, &m, &f,
                                errstr, sizeof(errstr)),
                     ORDO_ERR_OK, "%s", errstr);
        cr_expect_eq(m.meta.ts_ms, 4000);
        snprintf(line, sizeof(line), "%s,\"ts_ms\":4000}", bind);
        cr_assert_eq(ordo_admit(&door, line, strlen(line), &trusted, 5000, &m,
                                &f, errstr, sizeof(errstr)),
                     ORDO_ERR_OK, "%s", errstr);
        cr_expect_eq(m.meta.ts_ms, 4000, "a trusted source's time is its own");
        ordo_door_fini(&door);
}
