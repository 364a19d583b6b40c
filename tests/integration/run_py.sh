#!/usr/bin/env bash
# Runs one of the Python integration tests against the `ordo` binary on the
# real local stack, starting the stack if it is down (infra/stack up is
# idempotent), with infra/stack's Python (pymongo, fastavro, kafka-python).
# usage: run_py.sh TEST.py ORDO_BINARY [the test's options]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
if [ $# -lt 2 ]; then
        echo "usage: $0 TEST.py ORDO_BINARY [options]" >&2
        exit 2
fi
test_py=$1
shift
if ! "$ROOT/infra/stack" status >/dev/null 2>&1; then
        echo "$(basename "$test_py"): stack not up; starting it"
        "$ROOT/infra/stack" up
fi
eval "$("$ROOT/infra/stack" env)"
exec "$ORDO_PYTHON" -u "$HERE/$test_py" "$@"
