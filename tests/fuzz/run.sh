#!/bin/sh
# Build the libFuzzer target for JSON command validation and run it for a
# bounded time: tests/fuzz/run.sh [SECONDS] (default 30).
# Needs clang (Debian: apt-get install clang) and libjansson-dev.
# Exits non-zero on a crash, a sanitizer report or a broken invariant;
# the crashing input is left in $ORDO_FUZZ_DIR (default /tmp/ordo-fuzz).
set -eu

seconds=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${ORDO_FUZZ_DIR:-/tmp/ordo-fuzz}
cc=${CLANG:-clang}

command -v "$cc" >/dev/null 2>&1 || {
        echo "run.sh: $cc not found (apt-get install clang)" >&2
        exit 2
}
mkdir -p "$work/corpus"

"$cc" -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -I"$root/producers" -I"$root/schemas" -I"$root/runtime" \
        "$here/fuzz_validate.c" \
        "$root/producers/validate.c" "$root/producers/json_flat.c" \
        "$root/producers/json_out.c" \
        "$root/schemas/messages.c" "$root/runtime/err.c" \
        $(pkg-config --cflags --libs jansson) \
        -o "$work/fuzz_validate"

# New inputs go to $work/corpus; the seeds in the repo are only read.
# max_len above the 64 KiB limit so the size check is reached too.
cd "$work"
exec "$work/fuzz_validate" -max_total_time="$seconds" -max_len=66000 \
        -dict="$here/validate.dict" -print_final_stats=1 \
        -artifact_prefix="$work/" "$work/corpus" "$here/corpus"
