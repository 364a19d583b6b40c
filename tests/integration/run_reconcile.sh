#!/usr/bin/env bash
# `ordo rebuild` and `ordo reconcile` on the real local stack
# (test_reconcile.py). usage: run_reconcile.sh ORDO_BINARY [--seed N] [--keep]
# Starts the stack if it is down (infra/stack up is idempotent).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ $# -lt 1 ]; then
        echo "usage: $0 ORDO_BINARY [options]" >&2
        exit 2
fi
if ! "$ROOT/infra/stack" status >/dev/null 2>&1; then
        echo "run_reconcile: stack not up; starting it"
        "$ROOT/infra/stack" up
fi
eval "$("$ROOT/infra/stack" env)"
# `ordo` reads ORDO_KAFKA_* as kafka.* keys; these two are not for it.
unset ORDO_KAFKA_BOOTSTRAP ORDO_KAFKA_CLASSPATH
exec "$ORDO_PYTHON" -u "$HERE/test_reconcile.py" "$@"
