/*
 * The door's flat fast path (producers/json_flat.h): for any input it
 * declines (NULL) or gives the very tree json_loadb gives. Inputs it must
 * take are the shapes adapters send; inputs it must decline are the ones
 * whose meaning or fault only jansson knows. tests/fuzz checks the same
 * equality on random inputs.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <string.h>

#include "json_flat.h"

static json_t *reference(const char *s) {
        return json_loadb(s, strlen(s),
                          JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
}

static const char *const TAKEN[] = {
        "{\"type\":\"PlaceOrder\",\"order_id\":\"o1\",\"activity_id\":\"a\","
        "\"user_id\":\"u\",\"qty\":1,\"ts_ms\":1800000000000}",
        " \t\r\n{ \"a\" : \"b\" , \"n\" : -42 }\r\n ",
        "{}",
        "{ }",
        "{\"\":\"\"}",
        "{\"zero\":0,\"neg_zero\":-0,\"max18\":999999999999999999,"
        "\"min18\":-999999999999999999}",
        "{\"printable\":\" !#$%&'()*+,-./:;<=>?@[]^_`{|}~\"}",
        "{\"a\":1,\"A\":2}",
};

static const char *const DECLINED[] = {
        "",
        "   ",
        "[]",
        "\"just a string\"",
        "42",
        "{\"a\":\"b\\\"c\"}",    /* an escape */
        "{\"a\":\"\\u00e9\"}",   /* a \u escape */
        "{\"a\":\"\xc3\xa9\"}",  /* UTF-8 beyond ASCII */
        "{\"a\":\"\xff\"}",      /* not UTF-8 at all */
        "{\"a\":\"tab\there\"}", /* a control byte */
        "{\"a\":\"\x7f\"}",      /* DEL */
        "{\"a\":1,\"a\":2}",     /* a duplicate key */
        "{\"a\":01}",            /* a leading zero */
        "{\"a\":-}",
        "{\"a\":1.5}", /* a real */
        "{\"a\":1e3}",
        "{\"a\":1E3}",
        "{\"a\":1000000000000000000}", /* 19 digits */
        "{\"a\":9223372036854775808}", /* beyond int64 */
        "{\"a\":[1,2]}",               /* an array */
        "{\"a\":{}}",                  /* a nested object */
        "{\"a\":true}",
        "{\"a\":null}",
        "{\"a\":1,}", /* a trailing comma */
        "{\"a\" 1}",  /* no colon */
        "{\"a\":1",   /* unterminated */
        "{\"a\":\"b",
        "{\"a\":1}x", /* trailing bytes */
        "{\"a\":1}{}",
        "{\"a\":1x}",
        "{'a':1}",
        "{a:1}",
        "{\"a\":+1}",
        "\xef\xbb\xbf{\"a\":1}", /* a byte-order mark */
        "{\"a\":1}\f",           /* not JSON whitespace */
};

Test(json_flat, takes_flat_objects_as_jansson_reads_them) {
        size_t i;

        for (i = 0; i < sizeof(TAKEN) / sizeof(TAKEN[0]); i++) {
                json_t *flat = ordo_json_flat_parse(TAKEN[i], strlen(TAKEN[i]));
                json_t *ref = reference(TAKEN[i]);

                cr_assert(flat, "declined: %s", TAKEN[i]);
                cr_assert(ref, "jansson refuses: %s", TAKEN[i]);
                cr_assert(json_equal(flat, ref), "differs: %s", TAKEN[i]);
                cr_assert_eq(json_object_size(flat), json_object_size(ref));
                json_decref(flat);
                json_decref(ref);
        }
}

Test(json_flat, declines_what_only_jansson_knows) {
        size_t i;

        for (i = 0; i < sizeof(DECLINED) / sizeof(DECLINED[0]); i++) {
                json_t *flat =
                    ordo_json_flat_parse(DECLINED[i], strlen(DECLINED[i]));

                cr_assert_null(flat, "taken: %s", DECLINED[i]);
        }
}

/* The buffer is not NUL-terminated: nothing past len is read, and a NUL
 * inside it is a control byte. */
Test(json_flat, reads_only_len_bytes) {
        static const char buf[] = "{\"a\":12}{\"b\":3}";
        static const char nul[] = "{\"a\":\"x\0y\"}";
        json_t *flat = ordo_json_flat_parse(buf, 8);

        cr_assert(flat);
        cr_assert_eq(json_integer_value(json_object_get(flat, "a")), 12);
        json_decref(flat);
        cr_assert_null(ordo_json_flat_parse(buf, 7));
        cr_assert_null(ordo_json_flat_parse(nul, sizeof(nul) - 1));
}

/* The values themselves, beyond json_equal: lengths and exact integers. */
Test(json_flat, values_exact) {
        static const char s[] =
            "{\"id\":\"o-0001\",\"big\":-123456789012345678,\"e\":\"\"}";
        json_t *flat = ordo_json_flat_parse(s, sizeof(s) - 1);

        cr_assert(flat);
        cr_assert_str_eq(json_string_value(json_object_get(flat, "id")),
                         "o-0001");
        cr_assert_eq(json_string_length(json_object_get(flat, "e")), 0);
        cr_assert_eq(json_integer_value(json_object_get(flat, "big")),
                     -123456789012345678LL);
        json_decref(flat);
}
