#!/usr/bin/env python3
"""A processor instance killed in the middle of a transaction and not
restarted (decision 0034): the time from its SIGKILL until `ordo wait
activity` returns, i.e. until the surviving instance has taken its
partitions over and decided everything.

    bench_takeover.py ORDO_BINARY [--orders N] [--rounds R]
                      [--txn-timeouts MS,MS] [--kill-after S]

Each round: a fresh topic prefix with a backlog of N PlaceOrders over 12
activities; two `ordo process activity` instances (instance.id 1 and 2)
start draining it; instance 2 is SIGKILLed --kill-after seconds after
both hold partitions (mid-drain: a transaction is nearly always open)
and stays dead. The rounds alternate the producer's
transaction.timeout.ms values given. Prints each round's seconds and
whether the survivor logged that its committed-offset read waited, then
the median per value. Bounded by the group's session timeout (10 s) and
by when the broker aborts the dead instance's transaction (its timeout,
checked every transaction.abort.timed.out.transaction.cleanup.interval.ms:
1 s on infra/'s broker). Deletes its topics at the end.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench_topics import delete_topics_of

T0 = 1796650000000


def write_input(work, orders):
    acts = os.path.join(work, "acts.jsonl")
    with open(acts, "w") as f:
        for i in range(12):
            f.write(json.dumps(dict(
                type="CreateActivity", activity_id="B%d" % i, sku="s",
                price_cents=100, stock=10000000, per_user_limit=10 ** 9,
                start_ms=T0, end_ms=T0 + 10 ** 9, ts_ms=T0,
                commission_bps=[])) + "\n")
    backlog = os.path.join(work, "orders.jsonl")
    with open(backlog, "w") as f:
        for n in range(orders):
            f.write(json.dumps(dict(
                type="PlaceOrder", order_id="o%d" % n,
                activity_id="B%d" % (n % 12), user_id="u%d" % (n % 5000),
                qty=1, ts_ms=T0 + 1 + n)) + "\n")
    return acts, backlog


def holds(log):
    with open(log) as f:
        return "msg=assigned" in f.read()


def one_round(ordo, work, tag, txn_ms, acts, backlog, kill_after):
    x = ["-X", "topic.prefix=%s." % tag, "-X", "tick.interval.ms=0",
         "-X", "metrics.listen=", "-X", "snapshot.events=0",
         "-X", "kafka.transaction.timeout.ms=%d" % txn_ms]
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([ordo] + x + ["topics"], check=True, **quiet)
    for path in (acts, backlog):
        subprocess.run([ordo] + x + ["produce", "--keep-ts", path],
                       check=True, **quiet)
    logs = [os.path.join(work, "%s.%d.log" % (tag, i)) for i in (1, 2)]
    procs = []
    for i, log in zip((1, 2), logs):
        with open(log, "w") as f:
            procs.append(subprocess.Popen(
                [ordo] + x + ["-X", "instance.id=%d" % i, "process",
                              "activity"], stdout=f, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 60
    while not all(holds(log) for log in logs):
        if time.monotonic() > deadline:
            raise RuntimeError("instances not assigned in 60 s")
        time.sleep(0.02)
    time.sleep(kill_after)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    w = subprocess.run([ordo] + x + ["wait", "activity", "--timeout", "120"],
                       **quiet)
    took = time.monotonic() - killed
    procs[0].send_signal(signal.SIGINT)
    procs[0].wait(60)
    procs[1].wait()
    with open(logs[0]) as f:
        waited = "committed offsets not answered" in f.read()
    return took if w.returncode == 0 else None, waited


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--orders", type=int, default=800000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--txn-timeouts", default="10000,20000")
    ap.add_argument("--kill-after", type=float, default=0.4)
    a = ap.parse_args()
    ordo = os.path.abspath(a.ordo)
    work = tempfile.mkdtemp(prefix="ordo-takeover-")
    acts, backlog = write_input(work, a.orders)
    values = [int(v) for v in a.txn_timeouts.split(",")]
    run = "tko%s" % os.urandom(3).hex()
    tags, took = [], {v: [] for v in values}
    for r in range(a.rounds):
        v = values[r % len(values)]
        tag = "%s%d" % (run, r)
        tags.append(tag)
        t, waited = one_round(ordo, work, tag, v, acts, backlog,
                              a.kill_after)
        print("round %d transaction.timeout.ms=%d: %s%s" % (
            r, v, "%.1f s from the kill to caught up" % t if t is not None
            else "not caught up in 120 s",
            ", the survivor's offset read waited" if waited else ""),
            flush=True)
        if t is not None:
            took[v].append(t)
    for v in values:
        if took[v]:
            print("transaction.timeout.ms=%d: median %.1f s (%s)" % (
                v, statistics.median(took[v]),
                ", ".join("%.1f" % t for t in took[v])))
    delete_topics_of(tags)
    print("logs in %s" % work)


if __name__ == "__main__":
    sys.exit(main())
