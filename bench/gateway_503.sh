#!/usr/bin/env bash
# How soon the gateway answers 503 once the broker refuses connections
# (docs/command-contract.md, kafka.message.timeout.ms): starts `ordo
# ingest` on the local stack, posts one command, kills the stack's Kafka
# (SIGKILL), posts three more, one after the other, and prints each
# answer's status and time; then restarts Kafka (infra/stack up).
# Disruptive: run it on a stack nothing else uses.
#   bench/gateway_503.sh [ORDO] [-X key=value ...]
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ORDO=$ROOT/build/runtime/cli/ordo
if [ $# -gt 0 ] && [ "$1" != "-X" ]; then
        ORDO=$1
        shift
fi
PORT=18080
cd "$ROOT"
infra/stack up >/dev/null || exit 1
eval "$(infra/stack env)"
"$ORDO" -X metrics.listen= "$@" ingest --listen 127.0.0.1:$PORT \
        >/tmp/gateway_503.log 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null; infra/stack up >/dev/null' EXIT
sleep 2
post() {
        curl -s -o /dev/null -w "$1: %{http_code} in %{time_total} s\n" \
                -d "{\"type\":\"ConfirmReceipt\",\"order_id\":\"g503$1$RANDOM\"}" \
                127.0.0.1:$PORT/v1/commands
}
post up
kill -9 "$(cat .stack/kafka/kafka.pid)"
sleep 3
for i in 1 2 3; do post "down$i"; done
