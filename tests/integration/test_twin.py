#!/usr/bin/env python3
"""Two live processes with one stage and instance.id (decision 0018).

With static membership each one's rejoin fences the other's group
member, for ever. `ordo process activity` A runs; B starts with the
same instance.id. Within 90 s one of them must stop by itself with
a non-zero status and an error naming instance.id, at its third fence
(one or two are lost partitions, not the end: a broker's trouble can
fence a lone process), after rejoining, and the other must
go on running (a plain fenced-and-rejoin loop, the old behaviour, keeps
both alive and fails the test). The same for `ordo project redis`,
whose first fence once ended the process.

Then each paused (SIGSTOP) while a process with its instance.id starts,
and resumed: the resumed one must stop, naming the pause, and the new
one go on.

    test_twin.py ORDO_BINARY [--seed N]

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--seed", type=int, default=1)  # for the suite's form
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tag = "e2etwin%s" % os.urandom(4).hex()
    workdir = tempfile.mkdtemp(prefix="ordo-twin-")
    ordo = E.Ordo(os.path.abspath(args.ordo), tag, workdir)
    flags = ordo.flags + ["-X", "metrics.listen="]
    results, procs, logs = [], [], []

    def check(name, ok, detail=""):
        print("  %s: %s%s" % ("ok" if ok else "FAIL", name,
                              "" if ok else " (%s)" % detail))
        results.append((name, ok))

    def start(name, stage):
        path = os.path.join(workdir, "%s.log" % name)
        logs.append(path)
        procs.append(subprocess.Popen(
            [ordo.binary] + flags + stage,
            stdout=open(path, "w"), stderr=subprocess.STDOUT))
        return path

    def twins(stage):
        """A runs stage; B starts with the same instance.id."""
        label = " ".join(stage)
        first = len(procs)
        check("%s: A assigned" % label, E.wait_for_text(
            start("A-" + stage[-1], stage), "msg=assigned", 60))
        start("B-" + stage[-1], stage)
        mine = procs[first:]
        deadline = time.time() + 90
        while time.time() < deadline and \
                all(p.poll() is None for p in mine):
            time.sleep(0.2)
        ended = [i for i, p in enumerate(mine) if p.poll() is not None]
        check("%s: one of the twins stopped by itself" % label,
              len(ended) == 1, "ended: %s" % ended)
        if len(ended) != 1:
            return
        i = ended[0]
        with open(logs[first + i]) as f:
            log = f.read()
        check("%s: with a non-zero status" % label, mine[i].returncode != 0,
              "status %s" % mine[i].returncode)
        check("%s: naming instance.id" % label, "another live process "
              "runs this stage with instance.id 0" in log, log[-1500:])
        # Its first fence was a lost partition set, not the end.
        check("%s: after rejoining once" % label,
              "giving up our partitions and rejoining" in log, log[-1500:])
        time.sleep(3)
        check("%s: the other goes on" % label, mine[1 - i].poll() is None)
        mine[1 - i].terminate()
        mine[1 - i].wait(60)

    def replaced(stage):
        """A runs stage and is paused (SIGSTOP); B starts with its
        instance.id meanwhile; A resumes (SIGCONT): A must stop, B go on
        (an outside audit saw the new one stop, the resumed one stay)."""
        label = "paused " + " ".join(stage)
        first = len(procs)
        check("%s: A assigned" % label, E.wait_for_text(
            start("A-paused-" + stage[-1], stage), "msg=assigned", 60))
        procs[first].send_signal(signal.SIGSTOP)
        t0 = time.time()
        check("%s: B assigned while A is paused" % label, E.wait_for_text(
            start("B-new-" + stage[-1], stage), "msg=assigned", 60))
        time.sleep(max(0.0, 7 - (time.time() - t0)))  # a pause of 7 s
        procs[first].send_signal(signal.SIGCONT)
        a, b = procs[first], procs[first + 1]
        try:
            a.wait(60)
        except subprocess.TimeoutExpired:
            pass
        with open(logs[first]) as f:
            log = f.read()
        check("%s: the resumed one stops, non-zero" % label,
              a.poll() not in (None, 0) and "this process was paused" in
              log, "status %s: %s" % (a.poll(), log[-1200:]))
        time.sleep(3)
        check("%s: the new one goes on" % label, b.poll() is None)
        b.terminate()
        b.wait(60)

    try:
        ordo.call("topics")
        twins(["process", "activity"])
        twins(["project", "redis"])
        replaced(["process", "activity"])
        replaced(["project", "redis"])
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        if any(not ok for _, ok in results):
            E.print_tails(logs)
        if not args.keep:
            E.cleanup(ordo, None, E.Redis(
                os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("ORDO_REDIS_PORT", "6379"))))
    return E.synthesis(results)


if __name__ == "__main__":
    sys.exit(main())
