#!/usr/bin/env bash
# Exactly-once of the `ordo` stream loop on the real local stack: kill -9
# during a flash sale, and instances leaving and joining (test_crash.py).
# usage: run_crash.sh ORDO_BINARY [test_crash.py options: --orders N ...]
# ORDO_CRASH_ORDERS (default 20000) and ORDO_CRASH_SEED set the workload.
# Starts the stack if it is down (infra/stack up is idempotent).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ $# -lt 1 ]; then
        echo "usage: $0 ORDO_BINARY [options]" >&2
        exit 2
fi
if ! "$ROOT/infra/stack" status >/dev/null 2>&1; then
        echo "run_crash: stack not up; starting it"
        "$ROOT/infra/stack" up
fi
eval "$("$ROOT/infra/stack" env)"
# `ordo` reads ORDO_KAFKA_* as kafka.* keys; these two are not for it.
export ORDO_CRASH_BOOTSTRAP="$ORDO_KAFKA_BOOTSTRAP"
unset ORDO_KAFKA_BOOTSTRAP ORDO_KAFKA_CLASSPATH
exec "$ORDO_PYTHON" -u "$HERE/test_crash.py" "$@"
