#!/usr/bin/env python3
"""A fenced producer costs no rebalance (decision 0009, amendment;
issue 12 item 4: "a real second instance keeps what it owns").

Two `ordo process activity` run in one group with their own
instance.ids, A and B, and share its six partitions. A third client
then takes A's transactional id (kafka-python's init_transactions
bumps its epoch): A's producer is fenced at its next transaction, as
librdkafka also fences it by itself after a transaction timeout. A must
replace its producer and restore its own partitions without leaving the
group, so that:

- A logs the renewal and never "giving up our partitions";
- neither A nor B is assigned or revoked anything after the fence;
- every PlaceOrder, before and after the fence, is decided once: one
  StockReserved per order (none lost with A's fenced transaction, none
  twice), and `ordo reconcile` re-decides the same activity events;
- both still run, and stop cleanly.

Then C joins while more rounds are sent: A and B keep the state of
every partition the group gives them again and restore only the new
ones (decision 0009: the revocation commits what was decided, and a
state is kept if nobody committed its partition since).

The old behaviour (leave and rejoin on any fatal error) revokes and
assigns B's partitions twice and fails the second check.

    test_fence.py ORDO_BINARY

Uses its own topic prefix; exit 0 only if every check passed.
"""
import argparse
import os
import re
import subprocess
import sys
import threading
import time

from kafka import KafkaProducer

import test_e2e as E

BOOTSTRAP = os.environ.get("ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
ACTIVITIES = 12  # over the six partitions
ORDERS = 100     # per activity and round


def orders(rnd, ts):
    return [E.place("o%d-%d-%d" % (rnd, a, i), "a%d" % a, "u%d-%d" % (rnd, i),
                    1, ts + i)
            for a in range(ACTIVITIES) for i in range(ORDERS)]


def count(path, needle):
    with open(path) as f:
        return f.read().count(needle)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    t = E.SingleRun(a.ordo, "fence", ["activity"])
    o = t.ordo
    procs, logs = {}, {}
    ts = 1900500000000

    def start(name):
        logs[name] = os.path.join(t.workdir, "%s.log" % name)
        procs[name] = subprocess.Popen(
            [o.binary] + o.flags + ["-X", "instance.id=%s" % name,
                                    "-X", "metrics.listen=",
                                    "process", "activity"],
            stdout=open(logs[name], "w"), stderr=subprocess.STDOUT)

    def membership():
        return {n: (count(p, "msg=assigned"), count(p, "msg=revoked"))
                for n, p in logs.items()}

    try:
        o.call("topics")
        o.produce([E.create("a%d" % i, 100, 10 ** 6, 10, ts, ts + 10 ** 9,
                            ts) for i in range(ACTIVITIES)], "create")
        start("a")
        t.check("A assigned", E.wait_for_text(logs["a"], "msg=assigned", 60))
        start("b")
        t.check("B assigned", E.wait_for_text(logs["b"], "msg=assigned", 60))
        o.produce(orders(1, ts + 1000), "round1")
        ok, out = t.wait()
        t.check("round 1 decided", ok, out)
        # The group has settled: B's join rebalanced A once.
        time.sleep(3)
        before = membership()
        last = {n: re.findall(r"msg=assigned partitions=(\d+)",
                              open(p).read())[-1] for n, p in logs.items()}
        t.check("both own partitions", all(
            0 < int(k) < 6 for k in last.values()), last)
        group = re.search(r"group=(\S+)", open(logs["a"]).read()).group(1)
        fencer = KafkaProducer(bootstrap_servers=BOOTSTRAP,
                               transactional_id="%s.a" % group)
        fencer.init_transactions()
        fencer.close()
        o.produce(orders(2, ts + 2000), "round2")
        ok, out = t.wait()
        t.check("round 2 decided", ok, out)
        time.sleep(2)
        t.check("A replaced its fenced producer",
                count(logs["a"], "fatal producer error: replacing") >= 1,
                open(logs["a"]).read()[-1500:])
        t.check("A never gave up its partitions",
                count(logs["a"], "giving up our partitions") == 0)
        after = membership()
        t.check("no assignment or revocation after the fence",
                after == before, "%s -> %s" % (before, after))
        # Scale-out under load: C joins while rounds are sent. The
        # eager rebalance revokes every partition of A and B; what each
        # of them is assigned again it keeps, restoring only what is new
        # to it (the revocation commits what was decided, so even a busy
        # partition's state holds nothing uncommitted).
        start_mark = {n: len(open(p).read()) for n, p in logs.items()}
        rounds = [2]

        def send_until_c_owns():
            while rounds[0] < 30 and (
                    "c" not in logs or
                    count(logs["c"], "msg=assigned partitions=") == 0):
                rounds[0] += 1
                o.produce(orders(rounds[0], ts + 1000 * rounds[0]),
                          "round%d" % rounds[0])

        sender = threading.Thread(target=send_until_c_owns)
        sender.start()
        time.sleep(0.3)
        start("c")
        sender.join()
        ok, out = t.wait()
        t.check("the rounds sent while C joined decided (%d rounds)" % (
            rounds[0] - 2), ok, out)
        t.check("C assigned", "msg=assigned partitions=0" not in
                open(logs["c"]).read())
        for n in ("a", "b"):
            text = open(logs[n]).read()
            lists = re.findall(r"msg=assigned partitions=\d+ kept=(\d+) "
                               r"list=([\d,]*)", text)
            prev = set(lists[-2][1].split(",")) if len(lists) > 1 else set()
            kept, new = int(lists[-1][0]), set(lists[-1][1].split(","))
            restored = set(re.findall(r"msg=restored \S+ partition=(\d+)",
                                      text[start_mark[n]:]))
            t.check("%s was assigned again after C joined" % n,
                    len(lists) == before[n][0] + 1, lists)
            t.check("%s kept the state of each partition it owned before "
                    "(%s -> %s)" % (n, sorted(prev), sorted(new)),
                    kept == len(prev & new) and kept > 0, kept)
            t.check("%s restored only what is new to it" % n,
                    restored == new - prev, sorted(restored))
        reserved = {}
        for m in E.read_committed(o.tag + ".activity-events"):
            if dict(m.headers).get("ordo.type") == b"StockReserved":
                reserved[m.key] = reserved.get(m.key, 0) + 1
        want = rounds[0] * ORDERS
        t.check("one StockReserved per order",
                sorted(reserved) == sorted(("a%d" % i).encode()
                                           for i in range(ACTIVITIES)) and
                all(n == want for n in reserved.values()), reserved)
        # (only the activity stage runs: the order stage's events are
        # missing by design)
        rec = o.call("reconcile", "--skip-read-models", check=False)
        t.check("ordo reconcile finds the activity events the same",
                re.search(r"reconcile: activity: .* 0 difference",
                          rec.stderr) is not None, rec.stderr[-1500:])
        for n, p in procs.items():
            t.check("%s still running" % n, p.poll() is None)
            p.terminate()
            t.check("%s stops cleanly" % n, p.wait(60) == 0, p.returncode)
    except Exception as e:  # noqa: BLE001 (report and count it)
        t.check("no error", False, "%s: %s" % (type(e).__name__, e))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        if any(not ok for _, ok in t.results):
            E.print_tails(logs.values(), 25)
    return t.finish(a.keep)


if __name__ == "__main__":
    sys.exit(main())
