#!/usr/bin/env python3
"""A deployment moved by replay decides as the old one (decision 0030).

operating.md moves a deployment (a new topic.prefix, to grow or to start
afresh) by `ordo replay` of each command topic into `ordo produce
--keep-ts -`. The old one ran with the stages ticking by themselves:
its order-commands hold, on each partition, that partition's Ticks
among its commands. Twelve orders are paid two seconds before their
deadline there (all PAID), and the old stages tick on past it. Replayed into a new deployment (no ticks of
its own, as operating.md says), every order must be PAID again and the
new log must hold as many Ticks as the old one: each replayed Tick goes
back to its own partition. (Before, each replayed Tick went to every
partition: a later Tick of partition 0 reached the other partitions
ahead of their own payments and cancelled most orders, and there were
six times the Ticks.) A Tick line naming a partition the topic does not
have is refused, naming it.

    test_migrate.py ORDO_BINARY

Uses its own topic prefixes, Mongo databases and Redis prefixes; exit 0
only if every check passed.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import test_e2e as E

PAY_TIMEOUT_MS = 15000  # the places and pays are in the log well before it
N_ORDERS = 12


def statuses(r, ordo, oids):
    return {o: (E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:" + o))
                or {}).get("status") for o in oids}


def ticks(ordo):
    lines = ordo.call("replay", "order-commands").stdout.splitlines()
    return sum(1 for ln in lines if '"type":"Tick"' in ln)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    binary = os.path.abspath(args.ordo)
    workdir = tempfile.mkdtemp(prefix="ordo-migrate-")
    old = E.Ordo(binary, "e2emigold%s" % os.urandom(3).hex(), workdir)
    old.flags += ["-X", "tick.interval.ms=300", "-X", "tick.lag.ms=200"]
    new = E.Ordo(binary, "e2emignew%s" % os.urandom(3).hex(), workdir)
    r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("ORDO_REDIS_PORT", "6379")))
    stages = ["activity", "order", "redis"]
    oids = ["o%d" % i for i in range(N_ORDERS)]
    results = []

    def check(name, ok, detail=""):
        print("  %s: %s%s" % ("ok" if ok else "FAIL", name,
                              "" if ok else " (%s)" % detail))
        results.append((name, ok))

    def wait(ordo):
        w = ordo.call("wait", "--timeout", "60", *stages, check=False)
        return w.returncode == 0, w.stdout[-800:] + w.stderr[-800:]

    def settle(ordo, want, timeout=60):
        return E.eventually(lambda: statuses(r, ordo, oids),
                            lambda got: set(got.values()) == {want}, timeout)

    try:
        old.call("topics")
        old.start(stages)
        now = int(time.time() * 1000)
        old.produce([E.create("a1", 500, 100, 1, now - 60000, now + 3600000,
                              now, pay_timeout_ms=PAY_TIMEOUT_MS)], "sale")
        # the stages have joined: the deadlines below are the orders' own
        stock = E.eventually(lambda: r.cmd("GET", old.prefix + "stock:a1"),
                             timeout=60)
        check("the old deployment opened the sale", stock == "100", stock)
        t0 = int(time.time() * 1000)
        old.produce([E.place(o, "a1", "u" + o, 1, t0) for o in oids],
                    "places")
        got = settle(old, "PENDING_PAYMENT")
        check("the old deployment placed the orders",
              set(got.values()) == {"PENDING_PAYMENT"}, repr(got))
        old.produce([E.pay(o, "p" + o, 500, t0 + PAY_TIMEOUT_MS - 2000)
                     for o in oids], "pays")
        got = settle(old, "PAID")
        check("... and paid them on time", set(got.values()) == {"PAID"},
              repr(got))
        # its Ticks go on past every deadline
        time.sleep(max(0.0, (t0 + PAY_TIMEOUT_MS + 2000) / 1000.0 -
                       time.time()))
        ok, out = wait(old)
        check("the old deployment caught up", ok, out)
        old.stop()
        n_old = ticks(old)
        check("the old deployment ticked by itself", n_old > 6, n_old)

        new.call("topics")
        new.start(stages)
        for topic in ("activity-commands", "order-commands"):
            replay = subprocess.Popen([binary] + old.flags +
                                      ["replay", topic],
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
            produce = subprocess.run([binary] + new.flags +
                                     ["produce", "--keep-ts", "-"],
                                     stdin=replay.stdout,
                                     capture_output=True, text=True)
            replay.stdout.close()
            replay.wait()
            # The engine's own OpenOrders are refused, as they should be
            # (the new deployment makes its own): nothing else.
            summary = produce.stderr.strip().splitlines()[-1:]
            check("%s replayed into the new deployment" % topic,
                  replay.returncode == 0 and (produce.returncode == 0 or (
                      summary and " 0 not delivered" in summary[0] and
                      summary[0].endswith("(refused: INTERNAL_TYPE=%d)" %
                                          N_ORDERS))),
                  repr((replay.returncode, produce.returncode,
                        produce.stderr[-800:])))
            ok, out = wait(new)
            check("... and decided", ok, out)
        got = settle(new, "PAID", 15)
        check("every order PAID in the new deployment too",
              set(got.values()) == {"PAID"}, repr(got))
        n_new = ticks(new)
        check("as many Ticks as the old log (%d), each on its partition" %
              n_old, n_new == n_old, n_new)
        p = subprocess.run([binary] + new.flags +
                           ["produce", "--keep-ts", "-"],
                           input='{"type":"Tick","ts_ms":1,"partition":999}\n',
                           capture_output=True, text=True)
        check("a Tick for a partition the topic lacks is refused, named",
              p.returncode != 0 and "partition 999" in p.stderr and
              "0 command(s) sent, 1 refused, 0 not delivered" in p.stderr and
              "NO_SUCH_PARTITION=1" in p.stderr,
              repr((p.returncode, p.stderr[-300:])))
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    rc = new.stop()
    if rc not in (None, 0):
        check("ordo run of the new deployment stopped cleanly", False, rc)
    if any(not ok for _, ok in results):
        print("  old run log tail:\n" + old.log_tail())
        print("  new run log tail:\n" + new.log_tail())
    if not args.keep:
        E.cleanup(old, None, r)
        E.cleanup(new, None, r)
    return E.synthesis(results)


if __name__ == "__main__":
    sys.exit(main())
