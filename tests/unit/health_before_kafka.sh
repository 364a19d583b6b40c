#!/bin/sh
# `ordo run` serves /metrics and /healthz while its topic check waits for
# an unreachable Kafka (an operator audit found nothing listening for
# up to 30 s): /healthz answers 503 with the reason, /metrics answers
# 200, and a SIGINT then ends the run with status 0.
ordo=$1
tmp=$(mktemp -d) || exit 1
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
"$ordo" -X kafka.bootstrap.servers=127.0.0.1:1 \
    -X metrics.listen=127.0.0.1:0 run 2>"$tmp/err" &
pid=$!
port=
for _ in $(seq 50); do
        port=$(sed -n 's/.*stage=metrics msg=listening addr=127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/err")
        [ -n "$port" ] && break
        sleep 0.1
done
[ -n "$port" ] || { echo "no metrics listener logged"; cat "$tmp/err"; exit 1; }
python3 - "$port" <<'PY' || exit 1
import sys, urllib.request, urllib.error
base = "http://127.0.0.1:%s" % sys.argv[1]
try:
    urllib.request.urlopen(base + "/healthz", timeout=5)
    sys.exit("healthz answered 200 before any stage ran")
except urllib.error.HTTPError as e:
    body = e.read().decode()
    print("healthz", e.code, body.strip())
    if e.code != 503 or "checking its topics at Kafka 127.0.0.1:1" not in body:
        sys.exit("unexpected healthz answer")
with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
    text = r.read().decode()
    if r.status != 200 or "# TYPE ordo_decisions_total counter" not in text:
        sys.exit("unexpected metrics answer")
PY
kill -INT $pid
wait $pid
rc=$?
pid=
[ $rc -eq 0 ] || { echo "run exited $rc after SIGINT"; grep -v stage=kafka "$tmp/err"; exit 1; }
