#!/usr/bin/env python3
"""`ordo wait` returns under a steady stream of commands, and only once
what was sent before it, and what that caused, has been read.

`ordo run activity redis` and `ordo run order` (a second process)
while `ordo produce` reads PlaceOrders from a pipe, STREAM_RATE a second,
for as long as the test runs (on a sold-out activity: each one is
decided and projected). Then, on activity B, an order id that activity A
already holds: B reserves the unit (stock 4), the order stage refuses
the OpenOrder as DUPLICATE_ORDER_ID and sends ReleaseStock, and B's
StockReleased gives the unit back (stock 5): three topics past the
command. The order stage's process is stopped (SIGSTOP) before it is
sent, so that the chain takes longer than the wait's passes. `ordo wait`
run right after it must still be waiting STOP_S later, having said (every
5 s) that it waits for the order stage, and once the
order stage goes on, return 0 while the stream goes on (it waited for a
quiet moment before, which never came), with B's stock back at 5 in
Redis when it does. (The chain's last hops are faster than a pass of
the wait here: the bound of three hops, lag.c's CONSEQUENCE_HOPS, rests
on the rules, not on this test.)

    test_wait.py ORDO_BINARY [--seed N]

Uses its own topic prefix and Redis prefix; exit 0 only if every check
passed.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import test_e2e as E

STREAM_RATE = 200  # PlaceOrders a second, under the wait
STOP_S = 6  # the order stage stopped, under the session timeout (10 s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    tag = "e2ewait%s" % os.urandom(4).hex()
    workdir = tempfile.mkdtemp(prefix="ordo-wait-")
    ordo = E.Ordo(os.path.abspath(args.ordo), tag, workdir)
    ordo.flags += ["-X", "metrics.listen=127.0.0.1:%d" % E.free_port()]
    r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("ORDO_REDIS_PORT", "6379")))
    results = []

    def check(name, ok, detail=""):
        print("  %s: %s%s" % ("ok" if ok else "FAIL", name,
                              "" if ok else " (%s)" % detail))
        results.append((name, ok))

    run = "r%d" % rnd.randrange(10 ** 6)
    hot, a, b = run + "hot", run + "A", run + "B"
    stop = threading.Event()
    sent = [0]
    stream = order = None

    def feed():
        """PlaceOrders on the sold-out activity, STREAM_RATE a second."""
        t0, n = time.time(), 0
        while not stop.is_set():
            now = int(time.time() * 1000)
            line = json.dumps(E.place("%s-s%d" % (run, n), hot,
                                      "s%d" % n, 1, now)) + "\n"
            try:
                stream.stdin.write(line)
                stream.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            n += 1
            sent[0] = n
            time.sleep(max(0.0, t0 + n / STREAM_RATE - time.time()))

    def stock(aid):
        return r.cmd("GET", ordo.prefix + "stock:" + aid)

    feeder = None
    try:
        ordo.call("topics")
        ordo.start(["activity", "redis"])
        order = subprocess.Popen(
            [ordo.binary] + ordo.flags +
            ["-X", "metrics.listen=127.0.0.1:%d" % E.free_port(), "run",
             "order"], stdout=open(ordo.run_log + ".order", "a"),
            stderr=subprocess.STDOUT)
        now = int(time.time() * 1000)
        ordo.produce([E.create(hot, 100, 1, 1, now - 60000, now + 3600000,
                               now),
                      E.create(a, 100, 5, 1, now - 60000, now + 3600000,
                               now),
                      E.create(b, 100, 5, 1, now - 60000, now + 3600000,
                               now),
                      E.place(run + "-dup", a, "u1", 1, now)], "setup")
        st = E.eventually(
            lambda: (E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:" +
                                     run + "-dup")) or {}).get("status"),
            lambda s: s == "PENDING_PAYMENT", 60)
        check("the setup is decided (A's order PENDING_PAYMENT)",
              st == "PENDING_PAYMENT", "status %s" % st)
        stream = subprocess.Popen(
            [ordo.binary] + ordo.flags + ["produce"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        time.sleep(3)  # the stream under way, the stages busy with it
        order.send_signal(signal.SIGSTOP)
        now = int(time.time() * 1000)
        ordo.produce([E.place(run + "-dup", b, "u2", 1, now)], "dup")
        before = sent[0]
        t0 = time.time()
        w = subprocess.Popen(
            [ordo.binary] + ordo.flags +
            ["wait", "activity", "order", "redis", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(STOP_S)
        check("ordo wait waits for the stopped order stage",
              w.poll() is None, "exit %s after %.1f s, stock %r" % (
                  w.poll(), time.time() - t0, stock(b)))
        order.send_signal(signal.SIGCONT)
        out, err = w.communicate(timeout=90)
        took = time.time() - t0
        left = stock(b)
        # created, reserved, released: not a wait that returned before the
        # reservation was projected (its stock would read 5 too)
        version = r.cmd("GET", "{%sstock:%s}:version" % (ordo.prefix, b))
        during = sent[0] - before
        check("ordo wait returns 0 under a steady stream of commands",
              w.returncode == 0, "exit %d after %.1f s: %s" % (
                  w.returncode, took, err[-500:]))
        check("meanwhile it said which stage it was waiting for",
              "still behind after" in err and "order " in err.split(
                  "still behind after")[1], repr(err[-500:]))
        check("the stream went on while it waited (%d commands sent)" %
              during, during >= STREAM_RATE * took * 0.5 and feeder.is_alive(),
              "%d sent in %.1f s" % (during, took))
        check("what the command caused three topics on is in Redis when "
              "it returns (B's unit released: stock 5)", left == "5",
              "stock:%s is %r" % (b, left))
        check("...after its reservation (B's stock at version 3)",
              version == "3", "version %r" % version)
        # the refusal itself, for the record
        events = [json.loads(x) for x in ordo.call(
            "replay", "order-events").stdout.splitlines()]
        check("the order stage refused the second OpenOrder",
              any(e.get("type") == "CommandRejected" and
                  e.get("reason") == "DUPLICATE_ORDER_ID" for e in events),
              "%d order events" % len(events))
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    finally:
        stop.set()
        if feeder:
            feeder.join(5)
        if order:
            order.send_signal(signal.SIGCONT)
            order.terminate()
            try:
                order.wait(60)
            except subprocess.TimeoutExpired:
                order.kill()
        if stream:
            try:
                stream.stdin.close()
            except OSError:
                pass
            try:
                stream.wait(30)
            except subprocess.TimeoutExpired:
                stream.kill()
    return E.finish(ordo, results, None, r, args.keep)


if __name__ == "__main__":
    sys.exit(main())
