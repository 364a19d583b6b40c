#!/usr/bin/env python3
"""`ordo run` stops within stop.timeout.ms, whatever its stages do.

Its topics are deleted under a running `ordo run`, then it gets SIGTERM.
librdkafka's rd_kafka_destroy then waits for ever on the deleted topics
(librdkafka issues 3007 and 4362; every try here hung, all six stages),
so without a bound the process never ends and a supervisor must kill
it. With -X stop.timeout.ms=3000 it must end within a few seconds of
that bound: status 0 if every stage stopped, or status 1 and an error
naming the stages that did not. Then a plain run on fresh topics stops
at once with status 0, and so does one stopped while Kafka does not
answer the creation of its topics. Last, a second SIGINT ends at once
a run whose first stop hangs.

    test_stop.py ORDO_BINARY [--seed N]

Uses its own topic prefix; exit 0 only if every check passed.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

import test_e2e as E

STOP_MS = 3000
MARGIN_S = 10  # the bound, plus the time of a stop that goes well


def stop_and_time_signal(proc, sig, timeout):
    """sig; seconds until the process ended, or None after timeout."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - t0


def stop_and_time(proc, timeout):
    return stop_and_time_signal(proc, signal.SIGTERM, timeout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--seed", type=int, default=1)  # for the suite's form
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="ordo-stop-")
    results, procs, logs, ordos = [], [], [], []

    def check(name, ok, detail=""):
        print("  %s: %s%s" % ("ok" if ok else "FAIL", name,
                              "" if ok else " (%s)" % detail))
        results.append((name, ok))

    def start(name, stop_ms=STOP_MS):
        tag = "e2estop%s%s" % (name, os.urandom(4).hex())
        ordo = E.Ordo(os.path.abspath(args.ordo), tag, workdir)
        ordos.append(ordo)
        path = os.path.join(workdir, "%s.log" % name)
        logs.append(path)
        procs.append(subprocess.Popen(
            [ordo.binary] + ordo.flags +
            ["-X", "metrics.listen=", "-X", "tick.interval.ms=1000",
             "-X", "stop.timeout.ms=%d" % stop_ms,
             "run"],
            stdout=open(path, "w"), stderr=subprocess.STDOUT))
        return tag, path, procs[-1]

    try:
        tag, path, proc = start("deleted")
        check("assigned", E.wait_for_text(path, "stage=order msg=assigned", 60))
        E.drop_kafka(tag)
        # long enough for the stages to meet the missing topics (the
        # order stage's Ticks time out, the join's reads fail)
        time.sleep(12)
        took = stop_and_time(proc, STOP_MS / 1000.0 + MARGIN_S)
        check("topics deleted under it: ended within stop.timeout.ms",
              took is not None, "still running %d s after SIGTERM" %
              (STOP_MS / 1000 + MARGIN_S))
        with open(path) as f:
            log = f.read()
        if took is not None and proc.returncode != 0:
            check("a forced stop says so, with status 1",
                  proc.returncode == 1 and
                  "did not stop within %d ms (stop.timeout.ms)" % STOP_MS
                  in log, "status %s; %s" % (proc.returncode, log[-800:]))
        print("  (ended after %s s, status %s)" % (
            "%.1f" % took if took is not None else "-", proc.returncode))

        tag, path, proc = start("plain")
        check("plain run assigned",
              E.wait_for_text(path, "stage=order msg=assigned", 60))
        took = stop_and_time(proc, 30)
        check("plain run: stopped, status 0",
              took is not None and proc.returncode == 0,
              "took %s, status %s" % (took, proc.returncode))
        with open(path) as f:
            check("plain run: no forced stop",
                  "stop.timeout.ms" not in f.read())

        # Stopped before any stage ran, while Kafka does not answer the
        # creation of the topics: at once and with status 0 (it waited
        # out the creation's 30 s, then said it failed, status 1).
        path = os.path.join(workdir, "unreachable.log")
        logs.append(path)
        procs.append(subprocess.Popen(
            [os.path.abspath(args.ordo), "-X",
             "kafka.bootstrap.servers=127.0.0.1:1", "-X", "metrics.listen=",
             "run"], stdout=open(path, "w"), stderr=subprocess.STDOUT))
        time.sleep(1)
        took = stop_and_time(procs[-1], 20)
        check("stopped while creating its topics: ended, status 0",
              took is not None and took < 10 and procs[-1].returncode == 0,
              "took %s, status %s" % (took, procs[-1].returncode))

        # A second Ctrl-C ends at once what the first cannot stop: a run
        # whose topics were deleted under it hangs in librdkafka's
        # destroy (above), here with a stop.timeout.ms of a minute.
        tag, path, proc = start("twice", 60000)
        check("twice: assigned",
              E.wait_for_text(path, "stage=order msg=assigned", 60))
        E.drop_kafka(tag)
        time.sleep(12)
        proc.send_signal(signal.SIGINT)
        time.sleep(2)
        if proc.poll() is not None:
            print("  (the first SIGINT ended it this time, status %s: the "
                  "second is not tried)" % proc.returncode)
        else:
            took = stop_and_time_signal(proc, signal.SIGINT, 10)
            check("a second SIGINT ends ordo run at once (killed by it)",
                  took is not None and proc.returncode == -signal.SIGINT,
                  "took %s, status %s" % (took, proc.returncode))
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if any(not ok for _, ok in results):
            E.print_tails(logs)
        if not args.keep:  # the mongo projection made a database
            mongo = E.pymongo.MongoClient(os.environ.get(
                "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"),
                serverSelectionTimeoutMS=10000)
            r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                        int(os.environ.get("ORDO_REDIS_PORT", "6379")))
            for ordo in ordos:
                E.cleanup(ordo, mongo, r)
    return E.synthesis(results)


if __name__ == "__main__":
    sys.exit(main())
