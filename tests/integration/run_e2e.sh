#!/usr/bin/env bash
# End-to-end test of the `ordo` binary on the real local stack
# (test_e2e.py: reference model of RULES.md vs the read models).
# usage: run_e2e.sh ORDO_BINARY [test_e2e.py options: --seed N --small ...]
# Starts the stack if it is down (infra/stack up is idempotent).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ $# -lt 1 ]; then
        echo "usage: $0 ORDO_BINARY [options]" >&2
        exit 2
fi
if ! "$ROOT/infra/stack" status >/dev/null 2>&1; then
        echo "run_e2e: stack not up; starting it"
        "$ROOT/infra/stack" up
fi
eval "$("$ROOT/infra/stack" env)"
# `ordo` reads ORDO_KAFKA_* as kafka.* keys; these two are not for it.
unset ORDO_KAFKA_BOOTSTRAP ORDO_KAFKA_CLASSPATH
exec "$ORDO_PYTHON" -u "$HERE/test_e2e.py" "$@"
