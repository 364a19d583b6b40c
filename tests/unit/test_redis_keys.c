/*
 * What a Redis drop may touch (projection.h): its prefix matched
 * literally, and only the read model's own key families under it.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "projection.h"

static int ours(const char *prefix, const char *key) {
        return ordo__redis_key_is_ours(prefix, key, strlen(key));
}

Test(redis_keys, the_read_models_families_are_ours) {
        cr_assert(ours("p:", "p:stock:a1"));
        cr_assert(ours("p:", "p:order:o1"));
        cr_assert(ours("p:", "p:earnings:u1"));
        cr_assert(ours("p:", "p:leaderboard:settled"));
        cr_assert(ours("p:", "{p:stock:a1}:version"));
        cr_assert(ours("p:", "{p:earnings:u1}:offsets"));
        cr_assert(ours("p:", "p:mark"));       /* decision 0029 */
        cr_assert(ours("p:", "p:mark:alive")); /* its heartbeats */
}

Test(redis_keys, anything_else_under_the_prefix_is_not) {
        /* "s" on a shared Redis must not take its sessions */
        cr_assert_not(ours("s", "session:42"));
        cr_assert_not(ours("p:", "p:stock:"));        /* no id */
        cr_assert_not(ours("p:", "p:leaderboard:x")); /* not the board */
        cr_assert_not(ours("p:", "p:leaderboard:settledx"));
        cr_assert_not(ours("p:", "p:markx"));
        cr_assert_not(ours("p:", "p:mark:alivex"));
        cr_assert_not(ours("p:", "{p:mark}:version"));
        cr_assert_not(ours("p:", "{p:stock:a1}:offsets"));
        cr_assert_not(ours("p:", "{p:earnings:u1}:version"));
        cr_assert_not(ours("p:", "{p:stock:}:version"));
        cr_assert_not(ours("p:", "{p:other:a}:version"));
        /* another deployment whose prefix starts with ours */
        cr_assert_not(ours("p:", "p:x:stock:a1"));
        cr_assert_not(ours("p:", "{p:x:stock:a1}:version"));
        /* not under the prefix at all */
        cr_assert_not(ours("p:", "q:stock:a1"));
        cr_assert_not(ours("p:", "p"));
        cr_assert_not(ours("p:", ""));
}

Test(redis_keys, keys_are_compared_by_length_not_by_nul) {
        static const char key[] = "p:order:o\0junk";
        cr_assert(ordo__redis_key_is_ours("p:", key, sizeof(key) - 1));
        cr_assert_not(ordo__redis_key_is_ours("p:", "p:order:o1", 8));
}

Test(redis_keys, glob_characters_of_a_prefix_are_escaped) {
        char out[64];
        ordo__redis_glob_escape("a*b?c[d]e\\f^g", out);
        cr_assert_str_eq(out, "a\\*b\\?c\\[d\\]e\\\\f\\^g");
        ordo__redis_glob_escape("plain:", out);
        cr_assert_str_eq(out, "plain:");
}
