#!/usr/bin/env python3
"""Restart after SIGKILL: time from starting `ordo run activity order` to
the order stage's first committed transaction (its msg=first-commit
line), over K kills, with static membership (the default, decision 0009)
and without it (-X kafka.group.instance.id= , dynamic membership).

    bench_restart.py ORDO_BINARY [--kills K] [--orders N] [--mode static|dynamic|both]

A backlog of N PlaceOrders is decided first (so restores read a state
and a snapshot); then the process is killed 0.3-2 s after its first
commit and restarted at once, K times. The order stage commits a
transaction right after its assignment because it ticks
(tick.interval.ms=1000), so no producer is needed while it is killed.
Prints median, p90, p99 and max in ms. Uses its own topic prefix and
deletes its topics at the end.
"""
import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from bench_topics import delete_topics_of


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_mode(ordo, mode, kills, orders, work, rnd):
    tag = "benchrs%s%d" % (mode[:3], rnd.randrange(10 ** 8))
    x = ["-X", "topic.prefix=%s." % tag, "-X", "group.prefix=%s." % tag,
         "-X", "snapshot.events=%d" % max(100, orders // 4),
         "-X", "kafka.session.timeout.ms=6000",
         "-X", "kafka.heartbeat.interval.ms=500"]
    if mode == "dynamic":
        x += ["-X", "kafka.group.instance.id="]
    subprocess.run([ordo] + x + ["topics"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = os.path.join(work, tag + ".jsonl")
    t0 = int(time.time() * 1000)
    with open(path, "w") as f:
        f.write(json.dumps(dict(type="CreateActivity", activity_id="a",
                                sku="s", price_cents=100, stock=10 ** 9,
                                per_user_limit=10 ** 6, start_ms=t0 - 1000,
                                end_ms=t0 + 10 ** 8, ts_ms=t0)) + "\n")
        for i in range(orders):
            f.write(json.dumps(dict(type="PlaceOrder", order_id="o%d" % i,
                                    activity_id="a", user_id="u%d" % (i % 997),
                                    qty=1, ts_ms=t0 + i)) + "\n")
    subprocess.run([ordo] + x + ["produce", "--keep-ts", path], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for k in range(kills + 1):
        log = os.path.join(work, "%s-%03d.log" % (tag, k))
        with open(log, "w") as f:
            start = time.monotonic()
            p = subprocess.Popen([ordo] + x + ["run", "activity", "order"],
                                 stdout=f, stderr=subprocess.STDOUT)
        got = None
        while time.monotonic() - start < 90 and p.poll() is None:
            with open(log) as f:
                for ln in f:
                    if "msg=first-commit" in ln and "order" in ln:
                        got = time.monotonic() - start
                        break
            if got is not None:
                break
            time.sleep(0.01)
        if got is None:
            print("  %s: no first commit in 90 s (run %d, log %s)" % (
                mode, k, log), flush=True)
        else:
            times.append(got * 1000)
        if k == kills:
            p.send_signal(signal.SIGTERM)
            p.wait(60)
            break
        time.sleep(rnd.uniform(0.3, 2.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
    first, rest = times[:1], times[1:]
    return tag, first, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--orders", type=int, default=20000)
    ap.add_argument("--mode", default="both",
                    choices=("static", "dynamic", "both"))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="ordo-restart-")
    modes = ["static", "dynamic"] if a.mode == "both" else [a.mode]
    tags = []
    for mode in modes:
        tag, first, rest = run_mode(os.path.abspath(a.ordo), mode, a.kills,
                                    a.orders, work, rnd)
        tags.append(tag)
        if rest:
            print("%-8s kills=%d first_start_ms=%s restart_to_first_commit_ms"
                  " median=%.0f p90=%.0f p99=%.0f max=%.0f" % (
                      mode, len(rest), ["%.0f" % t for t in first],
                      statistics.median(rest), pct(rest, 0.9),
                      pct(rest, 0.99), max(rest)), flush=True)
    delete_topics_of(tags)
    print("logs in %s" % work)


if __name__ == "__main__":
    sys.exit(main())
