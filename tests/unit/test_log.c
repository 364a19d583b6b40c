/*
 * Quoted log values (runtime/log.h ordo_log_quote): a value from input or
 * from a library cannot end its quotes early or split the line, and a
 * truncated value never ends inside an escape.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "log.h"

Test(log_quote, escapes_what_would_break_the_line) {
        char q[128];
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), "plain id-1"),
                         "plain id-1");
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), "field \"type\": a\\b"),
                         "field \\\"type\\\": a\\\\b");
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), "two\nlines\tand\r\x7f"),
                         "two\\nlines\\tand\\x0d\\x7f");
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), "\xe4\xbd\xa0 utf-8"),
                         "\xe4\xbd\xa0 utf-8");
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), NULL), "");
}

Test(log_quote, truncates_between_escapes) {
        char q[5];
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), "ab\"cd"), "ab\\\"");
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), "abc\"d"), "abc");
        cr_assert_str_eq(ordo_log_quote(q, sizeof(q), "a\x01"), "a");
        cr_assert_str_eq(ordo_log_quote(q, 1, "abc"), "");
}
