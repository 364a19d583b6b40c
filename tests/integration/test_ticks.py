#!/usr/bin/env python3
"""Timers fire by themselves (issue 12, docs/decisions/0008).

`ordo run` with tick.interval.ms=300 and nobody running `ordo tick`:
an unpaid order with a 2 s pay timeout on the last unit of an activity
must be CANCELLED (timed out) within a few seconds of its deadline, and
the unit it held must go to the next buyer instead of SOLD_OUT. With
tick.interval.ms=0 the order stays PENDING_PAYMENT (the test fails),
which is what it guards against. Then `ordo wait` must return while the
stage keeps ticking, and only once a command sent just before it is in
Redis. Last, a payment stamped exactly at its order's deadline that
reaches the log LATE_MS later (a door's queue) must still pay the order:
the stage's Ticks trail the wall clock by tick.lag.ms (decision 0028;
LAG_MS here, well past LATE_MS plus a fresh `ordo produce`'s start);
with --lag-ms 0 they overtake it and the order is CANCELLED. A Tick
sent by hand (`ordo tick` without --ts) trails the wall clock as much.

    test_ticks.py ORDO_BINARY [--seed N]

Uses its own topic prefix, Mongo database and Redis prefix; exit 0 only
if every check passed.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time
import urllib.request

import test_e2e as E

PAY_TIMEOUT_MS = 2000
LATE_MS = 500  # over tick.interval.ms
LAG_MS = 5000  # tick.lag.ms: LATE_MS and produce's start, on a busy box


def status(r, prefix, oid):
    h = E.hash_of(r.cmd("HGETALL", prefix + "order:" + oid))
    return (h or {}).get("status")


def wait_status(r, prefix, oid, want, timeout):
    deadline = time.time() + timeout
    st = None
    while time.time() < deadline:
        st = status(r, prefix, oid)
        if st == want:
            return True, st
        time.sleep(0.1)
    return False, st


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tick-ms", type=int, default=300,
                    help="tick.interval.ms of `ordo run` (0 shows the "
                    "failure this test guards against)")
    ap.add_argument("--lag-ms", type=int, default=LAG_MS,
                    help="tick.lag.ms of `ordo run` (0 shows the late "
                    "payment's failure)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    tag = "e2eticks%s" % os.urandom(4).hex()
    workdir = tempfile.mkdtemp(prefix="ordo-ticks-")
    ordo = E.Ordo(os.path.abspath(args.ordo), tag, workdir)
    ordo.flags += ["-X", "tick.interval.ms=%d" % args.tick_ms]
    ordo.flags += ["-X", "tick.lag.ms=%d" % args.lag_ms]
    metrics_port = E.free_port()
    ordo.flags += ["-X", "metrics.listen=127.0.0.1:%d" % metrics_port]
    r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("ORDO_REDIS_PORT", "6379")))
    results = []

    def check(name, ok, detail=""):
        print("  %s: %s%s" % ("ok" if ok else "FAIL", name,
                              "" if ok else " (%s)" % detail))
        results.append((name, ok))

    aid = "act%d" % rnd.randrange(10 ** 6)
    try:
        ordo.call("topics")
        ordo.start(["activity", "order", "redis"])
        # o1 is pending only until tick.lag.ms past its deadline: start
        # its clock once every stage holds its partitions.
        def healthz():
            try:
                with urllib.request.urlopen(
                        "http://127.0.0.1:%d/healthz" % metrics_port,
                        timeout=5) as h:
                    return h.status
            except OSError:
                return None
        check("every stage holds its partitions (/healthz 200)",
              E.eventually(healthz, lambda st: st == 200, 60) == 200)
        now = int(time.time() * 1000)
        cmds = [E.create(aid, 500, 1, 1, now - 60000, now + 3600000, now,
                         pay_timeout_ms=PAY_TIMEOUT_MS),
                E.place("o1", aid, "u1", 1, now)]
        path = os.path.join(workdir, "cmds.jsonl")
        with open(path, "w") as f:
            f.writelines(json.dumps(c) + "\n" for c in cmds)
        ordo.call("produce", "--keep-ts", path)
        ok, st = wait_status(r, ordo.prefix, "o1", "PENDING_PAYMENT", 60)
        check("o1 placed (PENDING_PAYMENT)", ok, "status %s" % st)
        # Deadline is now + 2 s; allow the first join and a few ticks.
        ok, st = wait_status(r, ordo.prefix, "o1", "CANCELLED",
                             PAY_TIMEOUT_MS / 1000 + 15)
        check("o1 timed out without `ordo tick`", ok, "status %s" % st)
        # The unit it held is back: the next buyer gets it.
        now = int(time.time() * 1000)
        with open(path, "w") as f:
            f.write(json.dumps(E.place("o2", aid, "u2", 1, now)) + "\n")
        ordo.call("produce", "--keep-ts", path)
        ok, st = wait_status(r, ordo.prefix, "o2", "PENDING_PAYMENT", 30)
        check("o2 gets the released unit", ok, "status %s" % st)
        # `ordo wait` while the order stage writes a Tick to each of its
        # partitions every tick.interval.ms: it must not wait for those
        # (it used to, for ever), but still for what was sent: o3 is in
        # Redis when it returns.
        now = int(time.time() * 1000)
        with open(path, "w") as f:
            f.write(json.dumps(E.place("o3", aid, "u3", 1, now)) + "\n")
        ordo.call("produce", "--keep-ts", path)
        t0 = time.time()
        w = ordo.call("wait", "activity", "order", "redis", "--timeout", "60",
                      check=False)
        check("ordo wait returns while the order stage ticks",
              w.returncode == 0, "exit %d after %.1f s: %s" % (
                  w.returncode, time.time() - t0, w.stderr[-500:]))
        st = status(r, ordo.prefix, "o3")
        check("ordo wait waited for what was sent (o3 in Redis)",
              st == "REJECTED", "status %s" % st)
        # A payment stamped at its order's deadline (on time: only ts >
        # deadline times out), written to the log LATE_MS after it.
        aid2 = aid + "b"
        now = int(time.time() * 1000)
        with open(path, "w") as f:
            f.write(json.dumps(E.create(aid2, 500, 5, 1, now - 60000,
                                        now + 3600000, now,
                                        pay_timeout_ms=PAY_TIMEOUT_MS)) + "\n")
            f.write(json.dumps(E.place("o4", aid2, "u4", 1, now)) + "\n")
        ordo.call("produce", "--keep-ts", path)
        ok, st = wait_status(r, ordo.prefix, "o4", "PENDING_PAYMENT", 30)
        check("o4 placed", ok, "status %s" % st)
        deadline = now + PAY_TIMEOUT_MS
        time.sleep(max(0.0, (deadline + LATE_MS) / 1000.0 - time.time()))
        with open(path, "w") as f:
            f.write(json.dumps(E.pay("o4", "p4", 500, deadline)) + "\n")
        ordo.call("produce", "--keep-ts", path)
        ok, st = wait_status(r, ordo.prefix, "o4", "PAID", 15)
        check("a payment at the deadline, %d ms on its way, pays o4" %
              LATE_MS, ok, "status %s" % st)
        # `ordo tick` by hand trails the wall clock as the stage's own
        # Ticks do (an audit: stamped now, it could overtake a command
        # still on its way).
        before = int(time.time() * 1000)
        t = ordo.call("tick").stdout
        after = int(time.time() * 1000)
        ts = int(t.split("ts_ms=")[1].split()[0])
        check("ordo tick is stamped tick.lag.ms behind the wall clock",
              before - args.lag_ms <= ts <= after - args.lag_ms,
              "ts %d, wall %d..%d, lag %d" % (ts, before, after,
                                              args.lag_ms))
        # --ts takes an ISO-8601 time as `ordo replay` does (an outside
        # audit: only ms were taken).
        t = ordo.call("tick", "--ts", "2026-12-04T04:00:00.250+01:00").stdout
        check("ordo tick --ts takes an ISO-8601 time",
              "ts_ms=1796353200250 " in t + " ", t)
        # So is a Tick line that `ordo produce` stamps (an outside
        # audit: it was stamped with the wall clock itself).
        tick_path = os.path.join(workdir, "tick.jsonl")
        with open(tick_path, "w") as f:
            f.write('{"type":"Tick","command_id":"hand-tick"}\n')
        before = int(time.time() * 1000)
        ordo.call("produce", tick_path)
        after = int(time.time() * 1000)
        ticks = [json.loads(x) for x in ordo.call(
            "replay", "order-commands").stdout.splitlines()]
        ts = [x["ts_ms"] for x in ticks
              if x.get("command_id", "").startswith("hand-tick")]
        check("a Tick line ordo produce stamps trails the wall clock by "
              "tick.lag.ms", ts and all(
                  before - args.lag_ms <= t <= after - args.lag_ms
                  for t in ts),
              "ts %s, wall %d..%d, lag %d" % (ts, before, after, args.lag_ms))
        check("ordo run still running", ordo.alive())
        # The order stage decided hundreds of Ticks but four commands
        # (OpenOrder o1, o2, o4; ConfirmPayment o4): only those four
        # have a decision latency. A Tick is stamped tick.lag.ms behind
        # on purpose; counted, it was nearly every observation.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                    metrics_port, timeout=5) as m:
            text = m.read().decode()
        ticks = sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                    if l.startswith("ordo_decisions_total{") and
                    'stage="order"' in l and 'command="Tick"' in l)
        latency = [l for l in text.splitlines() if l.startswith(
            'ordo_decision_latency_seconds_count{stage="order"}')]
        check("decision latency counts the order stage's 4 commands, not "
              "its %d Ticks" % ticks, ticks > 20 and latency and
              float(latency[0].rsplit(" ", 1)[1]) == 4, latency)
        # Nor what a timer decided, stamped with its deadline: o1's
        # ReleaseStock (TIMEOUT) came tick.lag.ms (5 s) and more after
        # its ts_ms; counted, a sale whose holds expire fills the tail
        # (an outside audit).
        def sample(name):
            return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                       if l.startswith(name))
        decided = sample('ordo_decisions_total{stage="activity",')
        releases = sample('ordo_decisions_total{stage="activity",'
                          'command="ReleaseStock"')
        timed = sample('ordo_decision_latency_seconds_count'
                       '{stage="activity"}')
        # o1's ReleaseStock; o2 (never paid) times out too, before or
        # after this scrape, as the box's speed has it.
        check("decision latency leaves out the timeouts' ReleaseStock",
              1 <= releases <= 2 and timed == decided - releases,
              "%d decided, %d ReleaseStock, %d timed" % (decided, releases,
                                                        timed))
        # A buyer's ConfirmReceipt stamped past o4's auto-receipt (10
        # days, the default): its ts_ms fires the timer first (an
        # automatic OrderReceived), then the receipt itself is ignored,
        # and counted so, not as accepted (an outside audit).
        with open(path, "w") as f:
            f.write(json.dumps(E.receipt("o4", deadline + 864000000 + 1)) +
                    "\n")
        ordo.call("produce", "--keep-ts", path)
        ok, st = wait_status(r, ordo.prefix, "o4", "RECEIVED", 30)
        check("o4 received by its timer", ok, "status %s" % st)
        receipts = {}
        for _ in range(50):  # the metric follows the transaction
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                        metrics_port, timeout=5) as m:
                text = m.read().decode()
            receipts = {res: sample(
                'ordo_decisions_total{stage="order",command="ConfirmReceipt",'
                'result="%s"' % res) for res in ("accepted", "ignored")}
            if receipts["ignored"]:
                break
            time.sleep(0.1)
        check("a receipt after the auto-receipt's deadline is counted "
              "ignored, not accepted",
              receipts == {"accepted": 0, "ignored": 1}, str(receipts))
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    return E.finish(ordo, results, None, r, args.keep)


if __name__ == "__main__":
    sys.exit(main())
