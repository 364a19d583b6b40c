/*
 * Messages as JSON lines (producers/json_out.h).
 *
 * Properties checked: a command written out and read back through the
 * door (with keep_ts and allow_internal, as `ordo replay` output fed to
 * `ordo produce --keep-ts` would be) is the same command; an event's JSON
 * has "type" and exactly the fields of its table, which DESIGN.md "Avro"
 * makes the .avsc field names; the output is always one line of valid
 * JSON, whatever bytes a string holds.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_out.h"
#include "validate.h"

static const ordo_validate_opts_t TOOLS = { .keep_ts = 1, .allow_internal = 1 };

static char *field_str(ordo_msg_t *m, const ordo_field_t *f) {
        return (char *)m + f->offset;
}

/* Every field of m set to a value unlike its default and unlike the
 * others: strings with characters JSON must escape, integers at the
 * int64 edges. */
static void fill(ordo_msg_t *m, ordo_msg_type_t type) {
        static const char *pieces[] = {
                "q\"uote",     "back\\slash",       "tab\there",
                "nl\nx",       "\xc3\xa9t\xc3\xa9", "\xf0\x9f\x98\x80",
                "ctl\x01\x1f", "del\x7f",           "/slash"
        };
        const ordo_field_t *fields;
        size_t n, i;

        ordo_msg_init(m, type);
        fields = ordo_msg_fields(type, &n);
        for (i = 0; i < n; i++) {
                const ordo_field_t *f = &fields[i];
                char *p = field_str(m, f);
                int64_t v;
                int32_t b, count;
                switch (f->kind) {
                case ORDO_FIELD_STRING:
                        snprintf(
                            p, f->size, "%zu-%s", i,
                            pieces[i % (sizeof(pieces) / sizeof(pieces[0]))]);
                        break;
                case ORDO_FIELD_LONG:
                        v = i % 3 == 0   ? INT64_MIN + (int64_t)i
                            : i % 3 == 1 ? INT64_MAX - (int64_t)i
                                         : -(int64_t)i * 1000003;
                        memcpy(p, &v, sizeof(v));
                        break;
                case ORDO_FIELD_BOOL:
                        b = 1;
                        memcpy(p, &b, sizeof(b));
                        break;
                case ORDO_FIELD_LONGS:
                        count = 3;
                        for (b = 0; b < count; b++) {
                                v = b == 2 ? INT64_MAX : 100 * (b + 1);
                                memcpy(p + b * sizeof(v), &v, sizeof(v));
                        }
                        memcpy((char *)m + f->count_offset, &count,
                               sizeof(count));
                        break;
                }
        }
}

/* Field by field through the table (padding and unused tails ignored). */
static void expect_same(const ordo_msg_t *a, const ordo_msg_t *b) {
        const ordo_field_t *fields;
        size_t n, i;

        cr_assert_eq(a->type, b->type);
        fields = ordo_msg_fields(a->type, &n);
        for (i = 0; i < n; i++) {
                const ordo_field_t *f = &fields[i];
                const char *pa = (const char *)a + f->offset;
                const char *pb = (const char *)b + f->offset;
                int32_t ca, cb;
                switch (f->kind) {
                case ORDO_FIELD_STRING:
                        cr_expect(strncmp(pa, pb, f->size) == 0,
                                  "%s.%s: \"%s\" != \"%s\"",
                                  ordo_msg_type_name(a->type), f->name, pa, pb);
                        break;
                case ORDO_FIELD_LONG:
                        cr_expect(memcmp(pa, pb, sizeof(int64_t)) == 0, "%s.%s",
                                  ordo_msg_type_name(a->type), f->name);
                        break;
                case ORDO_FIELD_BOOL:
                        cr_expect(memcmp(pa, pb, sizeof(int32_t)) == 0, "%s.%s",
                                  ordo_msg_type_name(a->type), f->name);
                        break;
                case ORDO_FIELD_LONGS:
                        memcpy(&ca, (const char *)a + f->count_offset, 4);
                        memcpy(&cb, (const char *)b + f->count_offset, 4);
                        cr_expect_eq(ca, cb, "%s.%s count",
                                     ordo_msg_type_name(a->type), f->name);
                        if (ca == cb)
                                cr_expect(
                                    memcmp(pa, pb,
                                           (size_t)ca * sizeof(int64_t)) == 0,
                                    "%s.%s", ordo_msg_type_name(a->type),
                                    f->name);
                        break;
                }
        }
}

static void round_trip(const ordo_msg_t *m) {
        char *json = ordo_msg_to_json(m);
        char err[256];
        ordo_msg_t back;
        ordo_err_t e;

        cr_assert(json != NULL);
        cr_expect(strchr(json, '\n') == NULL, "not one line: %s", json);
        e = ordo_validate_command(json, strlen(json), &TOOLS, &back, NULL, err,
                                  sizeof(err));
        cr_assert_eq(e, ORDO_ERR_OK, "%s: %s", json, err);
        expect_same(m, &back);
        free(json);
}

Test(round_trip, every_command_every_field) {
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                ordo_msg_t m;
                if (ordo_msg_is_event((ordo_msg_type_t)t))
                        continue;
                fill(&m, (ordo_msg_type_t)t);
                round_trip(&m);
        }
}

Test(round_trip, defaults_and_absent_meta) {
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                ordo_msg_t m;
                if (ordo_msg_is_event((ordo_msg_type_t)t))
                        continue;
                /* ordo_msg_init alone: empty ids are refused on input, so
                 * fill only the strings, keep every number at its
                 * default and command_id/correlation_id empty. */
                fill(&m, (ordo_msg_type_t)t);
                ordo_msg_t d;
                ordo_msg_init(&d, (ordo_msg_type_t)t);
                memcpy(&d.u, &m.u, sizeof(d.u));
                if (t == ORDO_MSG_CREATE_ACTIVITY) {
                        d.u.activity.pay_timeout_ms = 900000;
                        d.u.activity.n_commission_bps = 2;
                        d.u.activity.commission_bps[0] = 1000;
                        d.u.activity.commission_bps[1] = 500;
                }
                round_trip(&d);
        }
}

/* RULES.md: "commission_bps (array ...)"; an empty array is no level. */
Test(round_trip, empty_commission_array) {
        ordo_msg_t m;
        fill(&m, ORDO_MSG_CREATE_ACTIVITY);
        m.u.activity.n_commission_bps = 0;
        round_trip(&m);
}

Test(commands, empty_optional_ids_are_left_out) {
        ordo_msg_t m;
        char *json;
        ordo_msg_init(&m, ORDO_MSG_PLACE_ORDER);
        strcpy(m.u.place.order_id, "o1");
        strcpy(m.u.place.activity_id, "a1");
        strcpy(m.u.place.user_id, "u1");
        m.u.place.qty = 2;
        m.meta.ts_ms = 5;
        json = ordo_msg_to_json(&m);
        cr_assert(json != NULL);
        cr_expect_str_eq(json, "{\"type\":\"PlaceOrder\",\"ts_ms\":5,"
                               "\"order_id\":\"o1\",\"activity_id\":\"a1\","
                               "\"user_id\":\"u1\",\"qty\":2}");
        free(json);
}

static void expect_value(const json_t *v, const ordo_msg_t *m,
                         const ordo_field_t *f) {
        const char *p = (const char *)m + f->offset;
        const char *name = f->name;
        int64_t l;
        int32_t b, count, i;

        switch (f->kind) {
        case ORDO_FIELD_STRING:
                cr_expect(json_is_string(v), "%s", name);
                cr_expect_str_eq(json_string_value(v), p, "%s", name);
                break;
        case ORDO_FIELD_LONG:
                memcpy(&l, p, sizeof(l));
                cr_expect(json_is_integer(v), "%s", name);
                cr_expect_eq(json_integer_value(v), l, "%s", name);
                break;
        case ORDO_FIELD_BOOL:
                memcpy(&b, p, sizeof(b));
                cr_expect(json_is_boolean(v), "%s", name);
                cr_expect_eq(json_is_true(v), b, "%s", name);
                break;
        case ORDO_FIELD_LONGS:
                memcpy(&count, (const char *)m + f->count_offset,
                       sizeof(count));
                cr_expect(json_is_array(v), "%s", name);
                cr_expect_eq(json_array_size(v), (size_t)count, "%s", name);
                for (i = 0; i < count && (size_t)i < json_array_size(v); i++) {
                        memcpy(&l, p + i * sizeof(l), sizeof(l));
                        cr_expect_eq(json_integer_value(json_array_get(v, i)),
                                     l, "%s[%d]", name, i);
                }
                break;
        }
}

/* Every event, every field of its table, named as in the table, with its
 * value, and nothing else. */
Test(events, every_field_by_name) {
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                const ordo_field_t *fields;
                size_t n, i;
                ordo_msg_t m;
                json_error_t jerr;
                json_t *o;
                char *json;

                if (!ordo_msg_is_event((ordo_msg_type_t)t))
                        continue;
                fill(&m, (ordo_msg_type_t)t);
                json = ordo_msg_to_json(&m);
                cr_assert(json != NULL);
                o = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
                cr_assert(o != NULL, "%s: %s", json, jerr.text);
                cr_expect_str_eq(json_string_value(json_object_get(o, "type")),
                                 ordo_msg_type_name((ordo_msg_type_t)t));
                fields = ordo_msg_fields((ordo_msg_type_t)t, &n);
                for (i = 0; i < n; i++) {
                        json_t *v = json_object_get(o, fields[i].name);
                        cr_expect(v != NULL, "%s lacks %s",
                                  ordo_msg_type_name((ordo_msg_type_t)t),
                                  fields[i].name);
                        if (v)
                                expect_value(v, &m, &fields[i]);
                }
                cr_expect_eq(json_object_size(o), n + 1, "%s: extra keys",
                             json);
                json_decref(o);
                free(json);
        }
}

/* An event's empty strings (a CommandRejected with no payment_id) are
 * still written: they are required fields of the schema. */
Test(events, empty_strings_written) {
        ordo_msg_t m;
        char *json;
        ordo_msg_init(&m, ORDO_MSG_COMMAND_REJECTED);
        json = ordo_msg_to_json(&m);
        cr_assert(json != NULL);
        cr_expect(strstr(json, "\"payment_id\":\"\"") != NULL, "%s", json);
        cr_expect(strstr(json, "\"needs_refund\":false") != NULL, "%s", json);
        free(json);
}

/* Strings that never went through validation (a foreign producer's Avro)
 * still give valid JSON: a bad byte becomes U+FFFD. */
Test(strings, invalid_utf8_becomes_replacement_character) {
        ordo_msg_t m;
        json_t *o;
        char *json;
        fill(&m, ORDO_MSG_ORDER_PAID);
        strcpy(m.u.payment.payment_id, "p\xff\xc3(\xed\xa0\x80z");
        json = ordo_msg_to_json(&m);
        cr_assert(json != NULL);
        o = json_loads(json, 0, NULL);
        cr_assert(o != NULL, "not valid JSON: %s", json);
        cr_expect_str_eq(
            json_string_value(json_object_get(o, "payment_id")),
            "p\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
        json_decref(o);
        free(json);
}

/* A string buffer filled to the end without a NUL: read to the buffer's
 * size, never past it. */
Test(strings, unterminated_buffer_is_bounded) {
        ordo_msg_t m;
        json_t *o;
        char *json;
        fill(&m, ORDO_MSG_CONFIRM_RECEIPT);
        memset(m.u.receipt.order_id, 'a', sizeof(m.u.receipt.order_id));
        json = ordo_msg_to_json(&m);
        cr_assert(json != NULL);
        o = json_loads(json, 0, NULL);
        cr_assert(o != NULL);
        cr_expect_eq(strlen(json_string_value(json_object_get(o, "order_id"))),
                     sizeof(m.u.receipt.order_id));
        json_decref(o);
        free(json);
}

Test(api, unknown_type_gives_null) {
        ordo_msg_t m;
        memset(&m, 0, sizeof(m));
        cr_expect_null(ordo_msg_to_json(&m));
        m.type = ORDO_MSG__COUNT;
        cr_expect_null(ordo_msg_to_json(&m));
}
