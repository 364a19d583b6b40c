/*
 * Structural validation of JSON commands (producers/validate.h).
 *
 * The reference is RULES.md: its command table ("Commands (what front ends
 * send ...)") gives the fields each command must carry, "Units" the limits
 * of identifiers, and "Rejections" the line between structural faults
 * (refused here, with field and reason) and value faults (accepted here,
 * rejected by the rules later). The reason codes are those of
 * docs/command-contract.md.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

static const ordo_validate_opts_t EXTERNAL = { 0 };
static const ordo_validate_opts_t BATCH = { .keep_ts = 1, .allow_internal = 0 };
static const ordo_validate_opts_t TOOLS = { .keep_ts = 1, .allow_internal = 1 };

static void expect_fault_(const char *json, size_t len,
                          const ordo_validate_opts_t *o, ordo_err_t want,
                          const char *field, const char *reason,
                          const char *file, int line) {
        ordo_msg_t m;
        ordo_field_fault_t f;
        char err[256];
        ordo_err_t got;

        got = ordo_validate_command(json, len, o, &m, &f, err, sizeof(err));
        cr_expect_eq(got, want, "%s:%d: %.100s: got %s, want %s (%s)", file,
                     line, json, ordo_err_name(got), ordo_err_name(want), err);
        cr_expect_str_eq(f.field, field, "%s:%d: field \"%s\", want \"%s\"",
                         file, line, f.field, field);
        cr_expect_str_eq(f.reason, reason, "%s:%d: reason %s, want %s (%s)",
                         file, line, f.reason, reason, err);
        if (want == ORDO_ERR_OK) {
                cr_expect_str_eq(err, "", "%s:%d: errstr on success", file,
                                 line);
                return;
        }
        /* The message names the field (issue 6: "400 naming the field and
         * reason") and is one printable line. */
        cr_expect(err[0] != '\0', "%s:%d: empty errstr", file, line);
        if (*field) {
                char quoted[80];
                snprintf(quoted, sizeof(quoted), "field \"%s\"", field);
                cr_expect(strstr(err, quoted) != NULL,
                          "%s:%d: errstr \"%s\" does not name %s", file, line,
                          err, quoted);
        }
        cr_expect(strchr(err, '\n') == NULL, "%s:%d: newline in errstr", file,
                  line);
}

#define EXPECT_FAULT(json, o, want, field, reason)                             \
        expect_fault_(json, strlen(json), o, want, field, reason, __FILE__,    \
                      __LINE__)
#define EXPECT_OK(json, o)                                                     \
        expect_fault_(json, strlen(json), o, ORDO_ERR_OK, "", "", __FILE__,    \
                      __LINE__)

static ordo_msg_t parse_ok(const char *json, const ordo_validate_opts_t *o) {
        ordo_msg_t m;
        char err[256];
        ordo_err_t e;

        e = ordo_validate_command(json, strlen(json), o, &m, NULL, err,
                                  sizeof(err));
        cr_assert_eq(e, ORDO_ERR_OK, "%s: %s", json, err);
        return m;
}

/* PlaceOrder with one member given as raw JSON text. */
static const char *place_with(const char *key, const char *raw) {
        static char buf[4096];
        json_t *o = json_loads("{\"type\":\"PlaceOrder\",\"order_id\":\"o1\","
                               "\"activity_id\":\"a1\",\"user_id\":\"u1\","
                               "\"qty\":1}",
                               0, NULL);
        char *s;

        json_object_del(o, key);
        s = json_dumps(o, JSON_COMPACT);
        cr_assert(s != NULL);
        /* Append the member by hand: raw may be text jansson would refuse
         * to build (invalid UTF-8, huge numbers, duplicates). */
        snprintf(buf, sizeof(buf), "%.*s,\"%s\":%s}", (int)strlen(s) - 1, s,
                 key, raw);
        free(s);
        json_decref(o);
        return buf;
}

/* n copies of unit, then tail, as a JSON string literal. */
static const char *rep(const char *unit, int n, const char *tail) {
        static char buf[1024];
        size_t len = 0;
        int i;

        buf[len++] = '"';
        for (i = 0; i < n; i++) {
                memcpy(buf + len, unit, strlen(unit));
                len += strlen(unit);
        }
        memcpy(buf + len, tail, strlen(tail));
        len += strlen(tail);
        buf[len++] = '"';
        buf[len] = '\0';
        return buf;
}

/* RULES.md command table: every command, the minimal valid form and the
 * fields it must carry. OpenOrder and ReleaseStock are the engine's own
 * (DESIGN.md topics): accepted from tools only. */
static const struct {
        const char *json;
        const char *required[12];
        int internal;
} COMMANDS[] = {
        { "{\"type\":\"CreateActivity\",\"activity_id\":\"a1\",\"sku\":\"SKU-"
          "1\","
          "\"price_cents\":990,\"stock\":100,\"per_user_limit\":2,"
          "\"start_ms\":1000,\"end_ms\":2000}",
          { "activity_id", "sku", "price_cents", "stock", "per_user_limit",
            "start_ms", "end_ms" },
          0 },
        { "{\"type\":\"PlaceOrder\",\"order_id\":\"o1\",\"activity_id\":\"a1\","
          "\"user_id\":\"u1\",\"qty\":1}",
          { "order_id", "activity_id", "user_id", "qty" },
          0 },
        { "{\"type\":\"CancelOrder\",\"order_id\":\"o1\",\"user_id\":\"u1\"}",
          { "order_id", "user_id" },
          0 },
        { "{\"type\":\"ConfirmPayment\",\"order_id\":\"o1\",\"payment_id\":"
          "\"p1\","
          "\"amount_cents\":990}",
          { "order_id", "payment_id", "amount_cents" },
          0 },
        { "{\"type\":\"ConfirmReceipt\",\"order_id\":\"o1\"}",
          { "order_id" },
          0 },
        { "{\"type\":\"RefundOrder\",\"order_id\":\"o1\",\"refund_id\":\"r1\","
          "\"amount_cents\":100}",
          { "order_id", "refund_id", "amount_cents" },
          0 },
        { "{\"type\":\"BindReferrer\",\"user_id\":\"u1\",\"referrer_id\":"
          "\"u0\"}",
          { "user_id", "referrer_id" },
          0 },
        { "{\"type\":\"Tick\"}", { NULL }, 0 },
        { "{\"type\":\"OpenOrder\",\"order_id\":\"o1\",\"activity_id\":\"a1\","
          "\"user_id\":\"u1\",\"qty\":1,\"amount_cents\":990,\"placed_ms\":"
          "1500,"
          "\"pay_deadline_ms\":901500,\"auto_receive_ms\":864000000,"
          "\"freeze_ms\":604800000}",
          { "order_id", "activity_id", "user_id", "qty", "amount_cents",
            "placed_ms", "pay_deadline_ms", "auto_receive_ms", "freeze_ms" },
          1 },
        { "{\"type\":\"ReleaseStock\",\"order_id\":\"o1\",\"activity_id\":"
          "\"a1\","
          "\"user_id\":\"u1\",\"qty\":1,\"reason\":\"USER\"}",
          { "order_id", "activity_id", "user_id", "qty", "reason" },
          1 },
};
#define N_COMMANDS (sizeof(COMMANDS) / sizeof(COMMANDS[0]))

Test(valid, every_command_minimal) {
        size_t i;
        for (i = 0; i < N_COMMANDS; i++) {
                const ordo_validate_opts_t *o =
                    COMMANDS[i].internal ? &TOOLS : &EXTERNAL;
                char *with_ts = NULL;
                if (COMMANDS[i].internal) {
                        /* Tools run with --keep-ts: add a ts_ms. */
                        size_t n = strlen(COMMANDS[i].json);
                        with_ts = malloc(n + 32);
                        snprintf(with_ts, n + 32, "%.*s,\"ts_ms\":1500}",
                                 (int)n - 1, COMMANDS[i].json);
                }
                EXPECT_OK(with_ts ? with_ts : COMMANDS[i].json, o);
                free(with_ts);
        }
}

Test(valid, place_order_fields_land) {
        ordo_msg_t m = parse_ok(COMMANDS[1].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_PLACE_ORDER);
        cr_expect_str_eq(m.u.place.order_id, "o1");
        cr_expect_str_eq(m.u.place.activity_id, "a1");
        cr_expect_str_eq(m.u.place.user_id, "u1");
        cr_expect_eq(m.u.place.qty, 1);
        /* RULES.md: command_id is generated by the ingest when absent;
         * ts_ms is stamped by the ingest. Both left to the producer. */
        cr_expect_str_eq(m.meta.id, "");
        cr_expect_eq(m.meta.ts_ms, 0);
}

Test(valid, every_command_fields_land) {
        ordo_msg_t m;

        m = parse_ok(COMMANDS[2].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_CANCEL_ORDER);
        cr_expect_str_eq(m.u.cancel.order_id, "o1");
        cr_expect_str_eq(m.u.cancel.user_id, "u1");
        m = parse_ok(COMMANDS[3].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_CONFIRM_PAYMENT);
        cr_expect_str_eq(m.u.payment.payment_id, "p1");
        cr_expect_eq(m.u.payment.amount_cents, 990);
        m = parse_ok(COMMANDS[4].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_CONFIRM_RECEIPT);
        cr_expect_str_eq(m.u.receipt.order_id, "o1");
        m = parse_ok(COMMANDS[5].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_REFUND_ORDER);
        cr_expect_str_eq(m.u.refund.refund_id, "r1");
        cr_expect_eq(m.u.refund.amount_cents, 100);
        m = parse_ok(COMMANDS[6].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_BIND_REFERRER);
        cr_expect_str_eq(m.u.bind.user_id, "u1");
        cr_expect_str_eq(m.u.bind.referrer_id, "u0");
        m = parse_ok(COMMANDS[7].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_TICK);
}

/* RULES.md command table: pay_timeout_ms (default 900000),
 * auto_receive_ms (default 864000000), freeze_ms (default 604800000),
 * commission_bps (array, default [1000, 500]). */
Test(valid, create_activity_defaults) {
        ordo_msg_t m = parse_ok(COMMANDS[0].json, &EXTERNAL);
        cr_expect_eq(m.type, ORDO_MSG_CREATE_ACTIVITY);
        cr_expect_str_eq(m.u.activity.activity_id, "a1");
        cr_expect_str_eq(m.u.activity.sku, "SKU-1");
        cr_expect_eq(m.u.activity.price_cents, 990);
        cr_expect_eq(m.u.activity.stock, 100);
        cr_expect_eq(m.u.activity.per_user_limit, 2);
        cr_expect_eq(m.u.activity.start_ms, 1000);
        cr_expect_eq(m.u.activity.end_ms, 2000);
        cr_expect_eq(m.u.activity.pay_timeout_ms, 900000);
        cr_expect_eq(m.u.activity.auto_receive_ms, 864000000);
        cr_expect_eq(m.u.activity.freeze_ms, 604800000);
        cr_expect_eq(m.u.activity.n_commission_bps, 2);
        cr_expect_eq(m.u.activity.commission_bps[0], 1000);
        cr_expect_eq(m.u.activity.commission_bps[1], 500);
}

Test(valid, create_activity_full) {
        ordo_msg_t m = parse_ok(
            "{\"type\":\"CreateActivity\",\"command_id\":\"c-1\","
            "\"correlation_id\":\"req-9\",\"ts_ms\":1700000000000,"
            "\"activity_id\":\"a1\",\"sku\":\"SKU-1\",\"price_cents\":990,"
            "\"stock\":100,\"per_user_limit\":2,\"start_ms\":1000,"
            "\"end_ms\":2000,\"pay_timeout_ms\":60000,"
            "\"auto_receive_ms\":120000,\"freeze_ms\":0,"
            "\"commission_bps\":[300]}",
            &BATCH);
        cr_expect_str_eq(m.meta.id, "c-1");
        cr_expect_str_eq(m.meta.correlation_id, "req-9");
        cr_expect_eq(m.meta.ts_ms, 1700000000000LL);
        cr_expect_eq(m.u.activity.pay_timeout_ms, 60000);
        cr_expect_eq(m.u.activity.auto_receive_ms, 120000);
        cr_expect_eq(m.u.activity.freeze_ms, 0);
        cr_expect_eq(m.u.activity.n_commission_bps, 1);
        cr_expect_eq(m.u.activity.commission_bps[0], 300);
}

Test(valid, empty_commission_array_means_no_levels) {
        ordo_msg_t m = parse_ok(
            "{\"type\":\"CreateActivity\",\"activity_id\":\"a1\",\"sku\":\"s\","
            "\"price_cents\":1,\"stock\":1,\"per_user_limit\":1,"
            "\"start_ms\":0,\"end_ms\":1,\"commission_bps\":[]}",
            &EXTERNAL);
        cr_expect_eq(m.u.activity.n_commission_bps, 0);
}

Test(valid, internal_commands_carry_their_fields) {
        ordo_msg_t m = parse_ok(
            "{\"type\":\"OpenOrder\",\"command_id\":\"ordo.activity-events:3:"
            "12345:0\",\"causation_id\":\"c-1\",\"ts_ms\":1500,"
            "\"order_id\":\"o1\",\"activity_id\":\"a1\",\"user_id\":\"u1\","
            "\"qty\":2,\"amount_cents\":1980,\"placed_ms\":1500,"
            "\"pay_deadline_ms\":901500,\"auto_receive_ms\":864000000,"
            "\"freeze_ms\":604800000,\"commission_bps\":[1000,500]}",
            &TOOLS);
        cr_expect_eq(m.type, ORDO_MSG_OPEN_ORDER);
        cr_expect_str_eq(m.meta.causation_id, "c-1");
        cr_expect_eq(m.u.open.amount_cents, 1980);
        cr_expect_eq(m.u.open.n_commission_bps, 2);
        cr_expect_eq(m.u.open.commission_bps[1], 500);
        m = parse_ok(COMMANDS[9].json,
                     &(ordo_validate_opts_t){ .allow_internal = 1 });
        cr_expect_str_eq(m.u.release.reason, "USER");
        /* without commission_bps: OpenOrder.avsc's default, as a reader
         * of the schema would take it (it was [], no commission) */
        m = parse_ok(
            "{\"type\":\"OpenOrder\",\"ts_ms\":1500,\"order_id\":\"o1\","
            "\"activity_id\":\"a1\",\"user_id\":\"u1\",\"qty\":2,"
            "\"amount_cents\":1980,\"placed_ms\":1500,"
            "\"pay_deadline_ms\":901500,\"auto_receive_ms\":1,"
            "\"freeze_ms\":0}",
            &TOOLS);
        cr_expect_eq(m.u.open.n_commission_bps, 2);
        cr_expect_eq(m.u.open.commission_bps[0], 1000);
        cr_expect_eq(m.u.open.commission_bps[1], 500);
}

/* RULES.md "Rejections": value faults in well-formed commands go to Kafka
 * and come back as rejections; the door lets them through. */
Test(valid, value_faults_pass_the_door) {
        EXPECT_OK(place_with("qty", "0"), &EXTERNAL);  /* INVALID_QTY */
        EXPECT_OK(place_with("qty", "-5"), &EXTERNAL); /* INVALID_QTY */
        EXPECT_OK(place_with("qty", "9223372036854775807"), &EXTERNAL);
        EXPECT_OK(place_with("qty", "-9223372036854775808"), &EXTERNAL);
        /* INVALID_AMOUNT */
        EXPECT_OK("{\"type\":\"RefundOrder\",\"order_id\":\"o1\","
                  "\"refund_id\":\"r1\",\"amount_cents\":0}",
                  &EXTERNAL);
        EXPECT_OK("{\"type\":\"ConfirmPayment\",\"order_id\":\"o1\","
                  "\"payment_id\":\"p1\",\"amount_cents\":-1}",
                  &EXTERNAL);
        /* INVALID_ACTIVITY: 4 levels, a level over 10000, sum over 5000,
         * start_ms >= end_ms, stock 0, negative freeze. 8 levels is the
         * most the wire carries (messages.h ORDO_LEVELS_WIRE). */
        EXPECT_OK("{\"type\":\"CreateActivity\",\"activity_id\":\"a1\","
                  "\"sku\":\"s\",\"price_cents\":0,\"stock\":0,"
                  "\"per_user_limit\":0,\"start_ms\":5,\"end_ms\":5,"
                  "\"freeze_ms\":-1,\"pay_timeout_ms\":0,"
                  "\"commission_bps\":[20000,1,2,3,4,5,6,-7]}",
                  &EXTERNAL);
        EXPECT_OK("{\"type\":\"BindReferrer\",\"user_id\":\"u1\","
                  "\"referrer_id\":\"u1\"}",
                  &EXTERNAL); /* SELF */
}

Test(valid, ignores_whitespace_and_key_order) {
        ordo_msg_t m = parse_ok(" \t{ \"qty\" : 3 ,\"user_id\":\"u1\",\r\n"
                                "\"order_id\":\"o1\", \"type\": \"PlaceOrder\","
                                "\"activity_id\":\"a1\"}\n",
                                &EXTERNAL);
        cr_expect_eq(m.u.place.qty, 3);
}

/* RULES.md "Rejections": a missing field is structural. */
Test(missing, every_required_field_of_every_command) {
        size_t i, k;
        for (i = 0; i < N_COMMANDS; i++) {
                for (k = 0; COMMANDS[i].required[k]; k++) {
                        const char *name = COMMANDS[i].required[k];
                        json_t *o = json_loads(COMMANDS[i].json, 0, NULL);
                        char *s;
                        cr_assert(o != NULL);
                        cr_assert_eq(json_object_del(o, name), 0, "%s", name);
                        json_object_set_new(o, "ts_ms", json_integer(1));
                        s = json_dumps(o, JSON_COMPACT);
                        EXPECT_FAULT(s, &TOOLS, ORDO_ERR_MISSING_FIELD, name,
                                     "MISSING");
                        free(s);
                        json_decref(o);
                }
        }
}

Test(missing, type) {
        EXPECT_FAULT("{\"order_id\":\"o1\"}", &EXTERNAL, ORDO_ERR_MISSING_FIELD,
                     "type", "MISSING");
        EXPECT_FAULT("{}", &EXTERNAL, ORDO_ERR_MISSING_FIELD, "type",
                     "MISSING");
}

/* RULES.md "Units": identifiers are non-empty. */
Test(missing, empty_identifiers) {
        EXPECT_FAULT(place_with("order_id", "\"\""), &EXTERNAL,
                     ORDO_ERR_MISSING_FIELD, "order_id", "EMPTY");
        EXPECT_FAULT(place_with("activity_id", "\"\""), &EXTERNAL,
                     ORDO_ERR_MISSING_FIELD, "activity_id", "EMPTY");
        EXPECT_FAULT(place_with("user_id", "\"\""), &EXTERNAL,
                     ORDO_ERR_MISSING_FIELD, "user_id", "EMPTY");
        EXPECT_FAULT(place_with("command_id", "\"\""), &EXTERNAL,
                     ORDO_ERR_MISSING_FIELD, "command_id", "EMPTY");
        EXPECT_FAULT("{\"type\":\"ConfirmPayment\",\"order_id\":\"o1\","
                     "\"payment_id\":\"\",\"amount_cents\":1}",
                     &EXTERNAL, ORDO_ERR_MISSING_FIELD, "payment_id", "EMPTY");
        EXPECT_FAULT("{\"type\":\"RefundOrder\",\"order_id\":\"o1\","
                     "\"refund_id\":\"\",\"amount_cents\":1}",
                     &EXTERNAL, ORDO_ERR_MISSING_FIELD, "refund_id", "EMPTY");
        EXPECT_FAULT("{\"type\":\"CreateActivity\",\"activity_id\":\"a1\","
                     "\"sku\":\"\",\"price_cents\":1,\"stock\":1,"
                     "\"per_user_limit\":1,\"start_ms\":0,\"end_ms\":1}",
                     &EXTERNAL, ORDO_ERR_MISSING_FIELD, "sku", "EMPTY");
}

Test(missing, exact_message) {
        char err[128];
        ordo_msg_t m;
        const char *j = place_with("order_id", "\"\"");
        ordo_validate_command(j, strlen(j), &EXTERNAL, &m, NULL, err,
                              sizeof(err));
        cr_expect_str_eq(err, "field \"order_id\": empty");
}

Test(wrong_type, integers) {
        const char *bad[] = { "\"1\"", "1.0",  "1e2", "1.5",      "true",
                              "false", "null", "[1]", "{\"n\":1}" };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                EXPECT_FAULT(place_with("qty", bad[i]), &EXTERNAL,
                             ORDO_ERR_WRONG_TYPE, "qty", "WRONG_TYPE");
}

Test(wrong_type, strings) {
        const char *bad[] = { "123",  "1.5",      "true",
                              "null", "[\"u1\"]", "{\"id\":\"u1\"}" };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                EXPECT_FAULT(place_with("user_id", bad[i]), &EXTERNAL,
                             ORDO_ERR_WRONG_TYPE, "user_id", "WRONG_TYPE");
                EXPECT_FAULT(place_with("command_id", bad[i]), &EXTERNAL,
                             ORDO_ERR_WRONG_TYPE, "command_id", "WRONG_TYPE");
                EXPECT_FAULT(place_with("correlation_id", bad[i]), &EXTERNAL,
                             ORDO_ERR_WRONG_TYPE, "correlation_id",
                             "WRONG_TYPE");
        }
}

Test(wrong_type, type_field) {
        EXPECT_FAULT("{\"type\":5}", &EXTERNAL, ORDO_ERR_WRONG_TYPE, "type",
                     "WRONG_TYPE");
        EXPECT_FAULT("{\"type\":[\"PlaceOrder\"]}", &EXTERNAL,
                     ORDO_ERR_WRONG_TYPE, "type", "WRONG_TYPE");
}

Test(wrong_type, commission_bps) {
        const char *head =
            "{\"type\":\"CreateActivity\",\"activity_id\":\"a1\",\"sku\":\"s\","
            "\"price_cents\":1,\"stock\":1,\"per_user_limit\":1,"
            "\"start_ms\":0,\"end_ms\":1,\"commission_bps\":";
        const char *bad[] = { "1000",       "\"1000,500\"", "[1000,\"500\"]",
                              "[1000,5.5]", "[[1000]]",     "[true]",
                              "null",       "{\"1\":1000}" };
        char buf[512];
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                snprintf(buf, sizeof(buf), "%s%s}", head, bad[i]);
                EXPECT_FAULT(buf, &EXTERNAL, ORDO_ERR_WRONG_TYPE,
                             "commission_bps", "WRONG_TYPE");
        }
}

Test(wrong_type, ts_ms_from_batch) {
        EXPECT_FAULT(place_with("ts_ms", "\"1700000000000\""), &BATCH,
                     ORDO_ERR_WRONG_TYPE, "ts_ms", "WRONG_TYPE");
        EXPECT_FAULT(place_with("ts_ms", "1.7e12"), &BATCH, ORDO_ERR_WRONG_TYPE,
                     "ts_ms", "WRONG_TYPE");
}

/* The brief's example wording: the field, what was expected, what came. */
Test(wrong_type, exact_message) {
        char err[128];
        ordo_msg_t m;
        const char *j = place_with("qty", "\"1\"");
        ordo_validate_command(j, strlen(j), &EXTERNAL, &m, NULL, err,
                              sizeof(err));
        cr_expect_str_eq(err, "field \"qty\": expected an integer, got string");
}

Test(unknown_type, refused) {
        EXPECT_FAULT("{\"type\":\"Foo\"}", &EXTERNAL, ORDO_ERR_UNKNOWN_TYPE,
                     "type", "UNKNOWN_TYPE");
        EXPECT_FAULT("{\"type\":\"placeorder\"}", &EXTERNAL,
                     ORDO_ERR_UNKNOWN_TYPE, "type", "UNKNOWN_TYPE");
        EXPECT_FAULT("{\"type\":\"\"}", &EXTERNAL, ORDO_ERR_UNKNOWN_TYPE,
                     "type", "UNKNOWN_TYPE");
        /* Events are written by processors only (DESIGN.md topics). */
        EXPECT_FAULT("{\"type\":\"OrderPaid\"}", &TOOLS, ORDO_ERR_UNKNOWN_TYPE,
                     "type", "UNKNOWN_TYPE");
        EXPECT_FAULT("{\"type\":\"CommandRejected\"}", &TOOLS,
                     ORDO_ERR_UNKNOWN_TYPE, "type", "UNKNOWN_TYPE");
}

Test(unknown_type, names_the_command) {
        char err[128];
        ordo_msg_t m;
        const char *j = "{\"type\":\"Foo\"}";
        ordo_validate_command(j, strlen(j), &EXTERNAL, &m, NULL, err,
                              sizeof(err));
        cr_expect_str_eq(err, "field \"type\": unknown command \"Foo\"");
}

/* DESIGN.md topics: OpenOrder is written by the activity processor,
 * ReleaseStock by the order processor; no front end sends them. */
Test(unknown_type, internal_refused_from_outside) {
        size_t i;
        for (i = 0; i < N_COMMANDS; i++)
                if (COMMANDS[i].internal) {
                        EXPECT_FAULT(COMMANDS[i].json, &EXTERNAL,
                                     ORDO_ERR_UNKNOWN_TYPE, "type",
                                     "INTERNAL_TYPE");
                        EXPECT_FAULT(COMMANDS[i].json, &BATCH,
                                     ORDO_ERR_UNKNOWN_TYPE, "type",
                                     "INTERNAL_TYPE");
                }
}

Test(oversize, whole_line) {
        /* Issue 6: 413 for oversize bodies; a 64 KiB line at most. */
        size_t n = ORDO_COMMAND_MAX_BYTES + 1;
        char *big = malloc(n + 1);
        const char *j = COMMANDS[1].json;
        memset(big, ' ', n);
        memcpy(big, j, strlen(j));
        big[n] = '\0';
        expect_fault_(big, n, &EXTERNAL, ORDO_ERR_OVERSIZE, "", "TOO_LARGE",
                      __FILE__, __LINE__);
        /* Exactly the limit is taken. */
        expect_fault_(big, n - 1, &EXTERNAL, ORDO_ERR_OK, "", "", __FILE__,
                      __LINE__);
        free(big);
}

/* RULES.md "Units": identifiers are at most 64 bytes; bytes, not
 * characters. */
Test(oversize, identifiers) {
        EXPECT_OK(place_with("user_id", rep("a", 64, "")), &EXTERNAL);
        EXPECT_FAULT(place_with("user_id", rep("a", 65, "")), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "user_id", "TOO_LONG");
        EXPECT_OK(place_with("order_id", rep("a", 64, "")), &EXTERNAL);
        EXPECT_FAULT(place_with("order_id", rep("a", 65, "")), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "order_id", "TOO_LONG");
        EXPECT_FAULT(place_with("activity_id", rep("a", 70, "")), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "activity_id", "TOO_LONG");
        /* é is 2 bytes, 中 is 3: 32 x 2 = 64 and 21 x 3 + 1 = 64. */
        EXPECT_OK(place_with("user_id", rep("\xc3\xa9", 32, "")), &EXTERNAL);
        EXPECT_FAULT(place_with("user_id", rep("\xc3\xa9", 32, "x")), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "user_id", "TOO_LONG");
        EXPECT_OK(place_with("user_id", rep("\xe4\xb8\xad", 21, "x")),
                  &EXTERNAL);
        EXPECT_FAULT(place_with("user_id", rep("\xe4\xb8\xad", 22, "")),
                     &EXTERNAL, ORDO_ERR_OVERSIZE, "user_id", "TOO_LONG");
        /* An escape is counted decoded: \u00e9 is the 2 bytes of é. */
        EXPECT_OK(place_with("user_id", rep("\\u00e9", 32, "")), &EXTERNAL);
        EXPECT_FAULT(place_with("user_id", rep("\\u00e9", 33, "")), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "user_id", "TOO_LONG");
}

Test(oversize, exact_message) {
        char err[128];
        ordo_msg_t m;
        const char *j = place_with("user_id", rep("a", 70, ""));
        ordo_validate_command(j, strlen(j), &EXTERNAL, &m, NULL, err,
                              sizeof(err));
        cr_expect_str_eq(err, "field \"user_id\": 70 bytes, at most 64");
}

/* RULES.md "Every command also has command_id": an identifier, 1..64
 * bytes from outside; the engine's own ids may be longer (tools). */
Test(oversize, command_id) {
        EXPECT_OK(place_with("command_id", rep("c", 64, "")), &EXTERNAL);
        EXPECT_FAULT(place_with("command_id", rep("c", 65, "")), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "command_id", "TOO_LONG");
        const ordo_validate_opts_t tools = { .keep_ts = 0,
                                             .allow_internal = 1 };
        EXPECT_OK(place_with("command_id", rep("c", ORDO_MSG_ID_MAX, "")),
                  &tools);
        EXPECT_FAULT(
            place_with("command_id", rep("c", ORDO_MSG_ID_MAX + 1, "")), &tools,
            ORDO_ERR_OVERSIZE, "command_id", "TOO_LONG");
}

Test(oversize, sku) {
        char buf[1024];
        const char *fmt =
            "{\"type\":\"CreateActivity\",\"activity_id\":\"a1\",\"sku\":%s,"
            "\"price_cents\":1,\"stock\":1,\"per_user_limit\":1,"
            "\"start_ms\":0,\"end_ms\":1}";
        snprintf(buf, sizeof(buf), fmt, rep("s", ORDO_SKU_MAX, ""));
        EXPECT_OK(buf, &EXTERNAL);
        snprintf(buf, sizeof(buf), fmt, rep("s", ORDO_SKU_MAX + 1, ""));
        EXPECT_FAULT(buf, &EXTERNAL, ORDO_ERR_OVERSIZE, "sku", "TOO_LONG");
}

Test(oversize, commission_levels_on_the_wire) {
        const char *fmt =
            "{\"type\":\"CreateActivity\",\"activity_id\":\"a1\",\"sku\":\"s\","
            "\"price_cents\":1,\"stock\":1,\"per_user_limit\":1,"
            "\"start_ms\":0,\"end_ms\":1,\"commission_bps\":%s}";
        char buf[512];
        snprintf(buf, sizeof(buf), fmt, "[1,2,3,4,5,6,7,8]");
        EXPECT_OK(buf, &EXTERNAL);
        snprintf(buf, sizeof(buf), fmt, "[1,2,3,4,5,6,7,8,9]");
        EXPECT_FAULT(buf, &EXTERNAL, ORDO_ERR_OVERSIZE, "commission_bps",
                     "TOO_LONG");
}

/* Money and time are int64 (RULES.md "Units"). */
Test(out_of_range, int64) {
        EXPECT_FAULT(place_with("qty", "9223372036854775808"), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "qty", "OUT_OF_RANGE");
        EXPECT_FAULT(place_with("qty", "-9223372036854775809"), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "qty", "OUT_OF_RANGE");
        EXPECT_FAULT(place_with("qty", "123456789012345678901234567890"),
                     &EXTERNAL, ORDO_ERR_OVERSIZE, "qty", "OUT_OF_RANGE");
        EXPECT_FAULT(place_with("qty", "1e400"), &EXTERNAL, ORDO_ERR_OVERSIZE,
                     "qty", "OUT_OF_RANGE");
        EXPECT_FAULT(place_with("ts_ms", "99999999999999999999"), &BATCH,
                     ORDO_ERR_OVERSIZE, "ts_ms", "OUT_OF_RANGE");
        EXPECT_FAULT("{\"type\":\"CreateActivity\",\"activity_id\":\"a1\","
                     "\"sku\":\"s\",\"price_cents\":1,\"stock\":1,"
                     "\"per_user_limit\":1,\"start_ms\":0,\"end_ms\":1,"
                     "\"commission_bps\":[1000, 9223372036854775808]}",
                     &EXTERNAL, ORDO_ERR_OVERSIZE, "commission_bps",
                     "OUT_OF_RANGE");
        /* Out of range where the key comes first in the object. */
        EXPECT_FAULT("{\"amount_cents\":-99999999999999999999,"
                     "\"type\":\"ConfirmPayment\"}",
                     &EXTERNAL, ORDO_ERR_OVERSIZE, "amount_cents",
                     "OUT_OF_RANGE");
}

Test(out_of_range, int64_limits_kept_exactly) {
        ordo_msg_t m;
        m = parse_ok(place_with("qty", "9223372036854775807"), &EXTERNAL);
        cr_expect_eq(m.u.place.qty, INT64_MAX);
        m = parse_ok(place_with("qty", "-9223372036854775808"), &EXTERNAL);
        cr_expect_eq(m.u.place.qty, INT64_MIN);
}

/* RULES.md "Units": identifiers are UTF-8 strings. */
Test(invalid_utf8, in_values) {
        const char *bad[] = {
                "\"u\xff\"",            /* never valid */
                "\"u\xc3\"",            /* truncated sequence */
                "\"\xc0\xaf\"",         /* overlong '/' */
                "\"\xed\xa0\x80\"",     /* UTF-16 surrogate as UTF-8 */
                "\"\xf4\x90\x80\x80\"", /* past U+10FFFF */
                "\"\\ud800\"",          /* lone surrogate escape */
                "\"x\\udc00y\"",        /* lone low surrogate */
        };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                EXPECT_FAULT(place_with("user_id", bad[i]), &EXTERNAL,
                             ORDO_ERR_PARSE, "user_id", "INVALID_UTF8");
        /* A surrogate pair is one valid character (U+1F600, 4 bytes). */
        EXPECT_OK(place_with("user_id", "\"\\ud83d\\ude00\""), &EXTERNAL);
}

Test(invalid_utf8, in_a_key) {
        EXPECT_FAULT("{\"type\":\"PlaceOrder\",\"q\xfftty\":1}", &EXTERNAL,
                     ORDO_ERR_PARSE, "", "INVALID_UTF8");
        /* an escaped lone surrogate too (a review: the field was named
         * "qty\ud800", a member that does not exist) */
        EXPECT_FAULT("{\"type\":\"PlaceOrder\",\"qty\\ud800\" :1}", &EXTERNAL,
                     ORDO_ERR_PARSE, "", "INVALID_UTF8");
        EXPECT_FAULT("{\"type\":\"PlaceOrder\",\"\\udc00\":1}", &EXTERNAL,
                     ORDO_ERR_PARSE, "", "INVALID_UTF8");
}

/* A byte that is not UTF-8 between tokens is bad syntax, not a bad
 * string, and no member's fault (it was named after the key before). */
Test(invalid_utf8, between_tokens_is_not_json) {
        const char *bad[] = {
                "{\"type\":\"ConfirmReceipt\",\"order_id\":\"x\"}\xff",
                "{\"type\":\"ConfirmReceipt\",\xff\"order_id\":\"x\"}",
                "{\"type\":\"ConfirmReceipt\",\"order_id\":\"x\",\xff}",
                "{\"type\":\"ConfirmReceipt\",\"order_id\":\"x\"\xff}",
        };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                EXPECT_FAULT(bad[i], &EXTERNAL, ORDO_ERR_PARSE, "", "NOT_JSON");
}

/* Each partition's copy of a Tick adds "-p<partition>" to its
 * command_id: the copies' ids must still be identifiers of at most 64
 * bytes (RULES.md), so a Tick's own is at most 56. */
Test(tick, command_id_leaves_room_for_the_copies) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"type\":\"Tick\",\"command_id\":\"%056d\"}", 7);
        EXPECT_OK(json, &EXTERNAL);
        snprintf(json, sizeof(json),
                 "{\"type\":\"Tick\",\"command_id\":\"%057d\"}", 7);
        EXPECT_FAULT(json, &EXTERNAL, ORDO_ERR_OVERSIZE, "command_id",
                     "TOO_LONG");
}

/* A line of `ordo replay` names a Tick's partition, where `ordo
 * produce` sends it back (decision 0030); nothing else takes one. */
Test(tick, a_replayed_tick_names_its_partition) {
        static const ordo_validate_opts_t produce = { .keep_ts = 1,
                                                      .tick_partition = 1 };
        ordo_msg_t m = parse_ok(
            "{\"type\":\"Tick\",\"ts_ms\":5,\"partition\":3}", &produce);
        cr_assert_eq(m.u.tick.to_partition, 4, "1 + the partition");
        m = parse_ok("{\"type\":\"Tick\",\"ts_ms\":5}", &produce);
        cr_assert_eq(m.u.tick.to_partition, 0, "every partition");
        EXPECT_FAULT("{\"type\":\"Tick\",\"ts_ms\":5,\"partition\":-1}",
                     &produce, ORDO_ERR_PARSE, "partition", "OUT_OF_RANGE");
        EXPECT_FAULT("{\"type\":\"Tick\",\"ts_ms\":5,\"partition\":\"3\"}",
                     &produce, ORDO_ERR_WRONG_TYPE, "partition", "WRONG_TYPE");
        EXPECT_FAULT("{\"type\":\"Tick\",\"ts_ms\":5,\"partition\":3}", &BATCH,
                     ORDO_ERR_PARSE, "partition", "UNKNOWN_FIELD");
        EXPECT_FAULT(place_with("partition", "3"), &produce, ORDO_ERR_PARSE,
                     "partition", "UNKNOWN_FIELD");
}

/* NUL ends C strings: "u\u0000admin" must not become "u". */
Test(nul, in_strings) {
        EXPECT_FAULT(place_with("user_id", "\"u\\u0000admin\""), &EXTERNAL,
                     ORDO_ERR_PARSE, "user_id", "NUL_CHAR");
        EXPECT_FAULT(place_with("order_id", "\"\\u0000\""), &EXTERNAL,
                     ORDO_ERR_PARSE, "order_id", "NUL_CHAR");
        EXPECT_FAULT("{\"type\":\"Place\\u0000Order\"}", &EXTERNAL,
                     ORDO_ERR_PARSE, "type", "NUL_CHAR");
        EXPECT_FAULT("{\"type\":\"PlaceOrder\",\"qty\\u0000\":1}", &EXTERNAL,
                     ORDO_ERR_PARSE, "", "NUL_CHAR");
}

Test(nul, raw_byte) {
        static const char j[] =
            "{\"type\":\"Tick\",\"correlation_id\":\"a\0b\"}";
        static const char t[] = "{\"type\":\"Tick\"}\0";
        expect_fault_(j, sizeof(j) - 1, &EXTERNAL, ORDO_ERR_PARSE, "",
                      "NOT_JSON", __FILE__, __LINE__);
        expect_fault_(t, sizeof(t) - 1, &EXTERNAL, ORDO_ERR_PARSE, "",
                      "NOT_JSON", __FILE__, __LINE__);
}

Test(nul, raw_byte_after_a_number) {
        /* jansson's number lexer stops at a NUL ("7\0" read as 7): the
         * flat parser and jansson alike must not see one. */
        static const char q[] = "{\"type\":\"PlaceOrder\",\"activity_id\":"
                                "\"a\",\"user_id\":\"u\",\"qty\":7\0}";
        static const char b[] =
            "{\"type\":\"CreateActivity\",\"activity_id\":\"a\",\"sku\":"
            "\"s\",\"price_cents\":1,\"stock\":1,\"per_user_limit\":1,"
            "\"start_ms\":0,\"end_ms\":1,\"commission_bps\":[1\0,2]}";
        expect_fault_(q, sizeof(q) - 1, &EXTERNAL, ORDO_ERR_PARSE, "",
                      "NOT_JSON", __FILE__, __LINE__);
        expect_fault_(b, sizeof(b) - 1, &EXTERNAL, ORDO_ERR_PARSE, "",
                      "NOT_JSON", __FILE__, __LINE__);
}

Test(duplicate_keys, refused) {
        /* Which of two qty values would count is not a question we want
         * a parser to answer. */
        EXPECT_FAULT(place_with("qty", "1,\"qty\":100"), &EXTERNAL,
                     ORDO_ERR_PARSE, "qty", "DUPLICATE_KEY");
        EXPECT_FAULT("{\"type\":\"PlaceOrder\",\"type\":\"CancelOrder\"}",
                     &EXTERNAL, ORDO_ERR_PARSE, "type", "DUPLICATE_KEY");
        EXPECT_FAULT(place_with("user_id", "\"u1\",\"user_id\":\"u1\""),
                     &EXTERNAL, ORDO_ERR_PARSE, "user_id", "DUPLICATE_KEY");
        /* Named as decoded: "q\u0074y" is qty, as for every other fault. */
        EXPECT_FAULT(place_with("qty", "1,\"q\\u0074y\":100"), &EXTERNAL,
                     ORDO_ERR_PARSE, "qty", "DUPLICATE_KEY");
}

/* Unknown fields are refused: a typo ("qtty") would otherwise pass as a
 * PlaceOrder without its qty... or with it, and the typo unseen. */
Test(unknown_field, refused) {
        EXPECT_FAULT(place_with("qtty", "2"), &EXTERNAL, ORDO_ERR_PARSE, "qtty",
                     "UNKNOWN_FIELD");
        /* A field of another command. */
        EXPECT_FAULT(place_with("amount_cents", "990"), &EXTERNAL,
                     ORDO_ERR_PARSE, "amount_cents", "UNKNOWN_FIELD");
        /* Event metadata is not command metadata. */
        EXPECT_FAULT(place_with("event_id", "\"e1\""), &TOOLS, ORDO_ERR_PARSE,
                     "event_id", "UNKNOWN_FIELD");
        EXPECT_FAULT("{\"type\":\"Tick\",\"order_id\":\"o1\"}", &EXTERNAL,
                     ORDO_ERR_PARSE, "order_id", "UNKNOWN_FIELD");
        /* A key over 63 bytes comes back cut at a UTF-8 boundary: "a" and
         * twenty of its thirty 3-byte characters (61 bytes), no "?". */
        {
                char key[128] = "a", cut[128] = "a", json[256];
                for (int i = 0; i < 30; i++) {
                        strcat(key, "\xe4\xb8\xad"); /* U+4E2D */
                        if (i < 20)
                                strcat(cut, "\xe4\xb8\xad");
                }
                snprintf(json, sizeof(json), "{\"type\":\"Tick\",\"%s\":1}",
                         key);
                EXPECT_FAULT(json, &EXTERNAL, ORDO_ERR_PARSE, cut,
                             "UNKNOWN_FIELD");
        }
}

Test(unknown_field, long_name_is_cut_to_valid_utf8) {
        char buf[512], key[200];
        ordo_field_fault_t f;
        ordo_msg_t m;
        char err[256];
        json_t *s;
        size_t i;
        /* 'x' then 2-byte characters: a cut at 63 bytes falls inside one. */
        key[0] = 'x';
        for (i = 0; i < 80; i++)
                memcpy(key + 1 + 2 * i, "\xc3\xa9", 2);
        key[161] = '\0';
        snprintf(buf, sizeof(buf), "{\"type\":\"Tick\",\"%s\":1}", key);
        cr_assert_eq(ordo_validate_command(buf, strlen(buf), &EXTERNAL, &m, &f,
                                           err, sizeof(err)),
                     ORDO_ERR_PARSE);
        cr_expect_str_eq(f.reason, "UNKNOWN_FIELD");
        cr_expect(strlen(f.field) <= 63);
        cr_expect(strncmp(f.field, key, 61) == 0);
        /* jansson builds strings from valid UTF-8 only. */
        s = json_string(f.field);
        cr_expect(s != NULL, "fault.field is not valid UTF-8");
        json_decref(s);
        s = json_string(err);
        cr_expect(s != NULL, "errstr is not valid UTF-8");
        json_decref(s);
}

Test(not_an_object, refused) {
        const char *bad[] = { "[1]",  "[]",   "1",   "\"PlaceOrder\"",
                              "null", "true", "-0.5" };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                EXPECT_FAULT(bad[i], &EXTERNAL, ORDO_ERR_PARSE, "",
                             "NOT_OBJECT");
}

Test(not_json, empty_and_garbage) {
        const char *bad[] = { "",
                              "\n",
                              "   \t\r\n",
                              "{",
                              "{\"type\":",
                              "{\"type\":\"Tick\"",
                              "type=Tick",
                              "{'type':1}",
                              "{\"type\":\"Tick\",}",
                              "\xef\xbb\xbf{}" };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                EXPECT_FAULT(bad[i], &EXTERNAL, ORDO_ERR_PARSE, "", "NOT_JSON");
}

Test(not_json, trailing_garbage) {
        EXPECT_FAULT("{\"type\":\"Tick\"} x", &EXTERNAL, ORDO_ERR_PARSE, "",
                     "NOT_JSON");
        EXPECT_FAULT("{\"type\":\"Tick\"}{\"type\":\"Tick\"}", &EXTERNAL,
                     ORDO_ERR_PARSE, "", "NOT_JSON");
        /* A JSON line may end in a newline (and CRLF). */
        EXPECT_OK("{\"type\":\"Tick\"}\n", &EXTERNAL);
        EXPECT_OK("{\"type\":\"Tick\"}\r\n", &EXTERNAL);
}

Test(not_json, message_has_position) {
        char err[256];
        ordo_msg_t m;
        const char *j = "{\"type\":\"Tick\"";
        ordo_validate_command(j, strlen(j), &EXTERNAL, &m, NULL, err,
                              sizeof(err));
        cr_expect(strncmp(err, "not JSON: ", 10) == 0, "%s", err);
        cr_expect(strstr(err, "line 1 column") != NULL, "%s", err);
}

/* RULES.md "Units": the ingest stamps ts_ms when a command has none; a
 * trusted batch source (--keep-ts) may supply it. Issue 6: a
 * client-supplied ts_ms is refused unless the key is trusted for batch. */
Test(ts_ms, policy) {
        ordo_msg_t m;
        EXPECT_FAULT(place_with("ts_ms", "1700000000000"), &EXTERNAL,
                     ORDO_ERR_PARSE, "ts_ms", "NOT_ALLOWED");
        /* RULES.md "Rejections": a missing ts_ms where the caller must
         * supply it. */
        EXPECT_FAULT(COMMANDS[1].json, &BATCH, ORDO_ERR_MISSING_FIELD, "ts_ms",
                     "MISSING");
        EXPECT_FAULT("{\"type\":\"Tick\"}", &BATCH, ORDO_ERR_MISSING_FIELD,
                     "ts_ms", "MISSING");
        m = parse_ok(place_with("ts_ms", "1700000000123"), &BATCH);
        cr_expect_eq(m.meta.ts_ms, 1700000000123LL);
        m = parse_ok("{\"type\":\"Tick\",\"ts_ms\":42}", &BATCH);
        cr_expect_eq(m.type, ORDO_MSG_TICK);
        cr_expect_eq(m.meta.ts_ms, 42);
        m = parse_ok(COMMANDS[1].json, NULL); /* NULL opts: from outside */
        cr_expect_eq(m.meta.ts_ms, 0);
        /* ms since the epoch: a batch's negative time is refused... */
        EXPECT_FAULT(place_with("ts_ms", "-5"), &BATCH, ORDO_ERR_OVERSIZE,
                     "ts_ms", "OUT_OF_RANGE");
        EXPECT_FAULT("{\"type\":\"Tick\",\"ts_ms\":-1}", &BATCH,
                     ORDO_ERR_OVERSIZE, "ts_ms", "OUT_OF_RANGE");
        m = parse_ok("{\"type\":\"Tick\",\"ts_ms\":0}", &BATCH);
        cr_expect_eq(m.meta.ts_ms, 0);
        /* ...and ignored where the producer stamps it (`ordo produce`) */
        parse_ok(place_with("ts_ms", "-5"),
                 &(ordo_validate_opts_t){ .ignore_ts = 1 });
}

/* RULES.md: command_id is echoed as causation_id on every event it
 * causes; a command's own causation_id is set by the engine. */
Test(meta, ids) {
        ordo_msg_t m;
        m = parse_ok(place_with("command_id", "\"cmd-42\""), &EXTERNAL);
        cr_expect_str_eq(m.meta.id, "cmd-42");
        m = parse_ok(place_with("correlation_id", "\"req-7\""), &EXTERNAL);
        cr_expect_str_eq(m.meta.correlation_id, "req-7");
        m = parse_ok(place_with("correlation_id", "\"\""), &EXTERNAL);
        cr_expect_str_eq(m.meta.correlation_id, "");
        EXPECT_FAULT(place_with("causation_id", "\"c0\""), &EXTERNAL,
                     ORDO_ERR_PARSE, "causation_id", "NOT_ALLOWED");
        /* "": none, as `ordo replay` prints a command from outside. */
        m = parse_ok(place_with("causation_id", "\"\""), &EXTERNAL);
        cr_expect_str_eq(m.meta.causation_id, "");
        EXPECT_FAULT(place_with("correlation_id", rep("r", 128, "")), &EXTERNAL,
                     ORDO_ERR_OVERSIZE, "correlation_id", "TOO_LONG");
        m = parse_ok(place_with("causation_id", "\"c0\""),
                     &(ordo_validate_opts_t){ .allow_internal = 1 });
        cr_expect_str_eq(m.meta.causation_id, "c0");
}

Test(api, errstr_and_fault_are_optional_and_bounded) {
        ordo_msg_t m;
        ordo_field_fault_t f;
        char tiny[8];
        const char *j = place_with("qty", "\"1\"");
        cr_expect_eq(
            ordo_validate_command(j, strlen(j), NULL, &m, NULL, NULL, 0),
            ORDO_ERR_WRONG_TYPE);
        memset(tiny, 'Z', sizeof(tiny));
        cr_expect_eq(ordo_validate_command(j, strlen(j), NULL, &m, &f, tiny,
                                           sizeof(tiny)),
                     ORDO_ERR_WRONG_TYPE);
        cr_expect_eq(tiny[sizeof(tiny) - 1], '\0');
        cr_expect_str_eq(tiny, "field \"");
        cr_expect_str_eq(f.field, "qty");
        /* A later success clears the fault. */
        j = COMMANDS[1].json;
        cr_expect_eq(ordo_validate_command(j, strlen(j), NULL, &m, &f, tiny,
                                           sizeof(tiny)),
                     ORDO_ERR_OK);
        cr_expect_str_eq(f.field, "");
        cr_expect_str_eq(f.reason, "");
        cr_expect_str_eq(tiny, "");
        cr_expect_eq(
            ordo_validate_command(NULL, 0, NULL, &m, &f, tiny, sizeof(tiny)),
            ORDO_ERR_INVALID_ARG);
        cr_expect_eq(ordo_validate_command(j, strlen(j), NULL, NULL, &f, tiny,
                                           sizeof(tiny)),
                     ORDO_ERR_INVALID_ARG);
}

Test(api, errstr_is_one_printable_line) {
        char err[256];
        ordo_msg_t m;
        const char *j = "{\"type\":\"Place\\nOrder\\u001b[31m\"}";
        size_t i;
        cr_assert_eq(ordo_validate_command(j, strlen(j), NULL, &m, NULL, err,
                                           sizeof(err)),
                     ORDO_ERR_UNKNOWN_TYPE);
        for (i = 0; err[i]; i++)
                cr_expect((unsigned char)err[i] >= 0x20, "control byte in %s",
                          err);
        /* Characters that print nothing and change how the rest reads:
         * NEL, CSI, the line separator, a bidi override, the BOM; one '?'
         * each. Printable ones are kept. */
        j = "{\"type\":\"a\\u0085b\\u009bc\\u2028d\\u202ee\\ufefff\\u061cg"
            "\\udb40\\udc41h\\u4e2d\"}";
        cr_assert_eq(ordo_validate_command(j, strlen(j), NULL, &m, NULL, err,
                                           sizeof(err)),
                     ORDO_ERR_UNKNOWN_TYPE);
        cr_expect(strstr(err, "a?b?c?d?e?f?g?h\xe4\xb8\xad"), "%s", err);
}

/* Issue 6: "order ids generated when absent ... and returned". Only the
 * gateway asks for this; only PlaceOrder's order_id may then be absent. */
Test(meta, generated_order_id) {
        const ordo_validate_opts_t gen = { .generate_order_id = 1 };
        const char *j = "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                        "\"user_id\":\"u1\",\"qty\":1}";
        ordo_msg_t m = parse_ok(j, &gen);
        cr_expect_str_eq(m.u.place.order_id, "");
        EXPECT_FAULT(j, &EXTERNAL, ORDO_ERR_MISSING_FIELD, "order_id",
                     "MISSING");
        /* Present is still checked: absent and empty are not the same. */
        EXPECT_FAULT(place_with("order_id", "\"\""), &gen,
                     ORDO_ERR_MISSING_FIELD, "order_id", "EMPTY");
        EXPECT_FAULT(place_with("order_id", rep("o", 65, "")), &gen,
                     ORDO_ERR_OVERSIZE, "order_id", "TOO_LONG");
        /* Other commands name an existing order: never generated. */
        EXPECT_FAULT("{\"type\":\"CancelOrder\",\"user_id\":\"u1\"}", &gen,
                     ORDO_ERR_MISSING_FIELD, "order_id", "MISSING");
        EXPECT_FAULT("{\"type\":\"ConfirmPayment\",\"payment_id\":\"p1\","
                     "\"amount_cents\":1}",
                     &gen, ORDO_ERR_MISSING_FIELD, "order_id", "MISSING");
        /* Still a structural fault for the other required fields. */
        EXPECT_FAULT("{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                     "\"qty\":1}",
                     &gen, ORDO_ERR_MISSING_FIELD, "user_id", "MISSING");
}
