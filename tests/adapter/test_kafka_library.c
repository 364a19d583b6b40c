/*
 * The librdkafka a process loads (runtime/kafka.h ordo_kafka_library,
 * decision 0031): found by the loader, so it depends on how the binary
 * was linked, not a pure unit. A test binary is linked as ordo is
 * (scripts/build, meson's run path): the library it loads is the one it
 * was linked against. tests/integration/test_produce_cli.py checks a
 * copy found elsewhere, through `ordo --version` and `ordo run`.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "kafka.h"

Test(library, the_loaded_file_is_the_linked_one) {
        ordo_kafka_library_t lib = ordo_kafka_library();
        cr_assert(strstr(lib.file, "librdkafka"), "file %s", lib.file);
        cr_assert(*lib.linked_dir, "no linked directory");
        cr_assert_eq(lib.as_linked, 1, "%s not in %s", lib.file,
                     lib.linked_dir);
}
