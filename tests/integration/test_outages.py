#!/usr/bin/env python3
"""Projections under failure, on the real local stack (issue 5):

  - the two projections run as their own processes (`ordo project mongo`,
    `ordo project redis`) and are killed with SIGKILL and restarted again
    and again while events flow;
  - FerretDB is stopped (its process killed) and started again
    (infra/stack up) mid-stream; Redis is frozen (SIGSTOP, then SIGCONT)
    and has its clients' connections cut (CLIENT KILL) mid-stream: the
    projections wait, retry and converge. (Redis runs without
    persistence here, so a Redis restart loses the read model; a
    projection that then starts refills it, test_store_lost.py.)

Then every stage is let to catch up and `ordo reconcile` must report zero
differences: the read models equal a rebuild from the event log, with no
event lost or counted twice, and the events equal a re-run of the rules.

usage: test_outages.py ORDO_BINARY [--seed N] [--keep]
Ends with criterion's line:
    [====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: 0
"""

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import test_e2e as E  # noqa: E402
import test_reconcile as R  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STACK = os.path.join(ROOT, "infra", "stack")


def pid_of(service):
    path = os.path.join(ROOT, ".stack", service, service + ".pid")
    with open(path) as f:
        return int(f.read().strip())


class Projections:
    """`ordo project mongo` and `ordo project redis`, each restartable."""

    def __init__(self, ordo, workdir):
        self.ordo, self.workdir, self.procs, self.starts = ordo, workdir, {}, 0

    def start(self, which):
        self.starts += 1
        log = open(os.path.join(self.workdir, "project-%s-%d.log" % (
            which, self.starts)), "w")
        self.procs[which] = subprocess.Popen(
            [self.ordo.binary] + self.ordo.flags + ["project", which],
            env=self.ordo.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, which):
        p = self.procs[which]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop_all(self):
        codes = []
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            codes.append(p.returncode)
        return codes


KILLS = ["kill-mongo", "kill-redis"]
OUTAGES = ["ferretdb", "redis-freeze", "redis-cut"]


def chaos(proj, rng, stop, log):
    """Until stop is set: one fault every 1-3 s, seeded. The first two
    are a projection kill and a store outage: a short run has both (the
    scenario's length varies with how soon `ordo wait` returns)."""
    first = [rng.choice(KILLS), rng.choice(OUTAGES)]
    while not stop.is_set():
        time.sleep(rng.uniform(1.0, 3.0))
        if stop.is_set():
            break
        fault = first.pop(0) if first else rng.choice(KILLS + OUTAGES)
        if fault.startswith("kill-"):
            which = fault[5:]
            proj.kill(which)
            time.sleep(rng.uniform(0.1, 1.0))
            proj.start(which)
        elif fault == "ferretdb":
            os.kill(pid_of("ferretdb"), signal.SIGKILL)
            time.sleep(rng.uniform(1.0, 3.0))
            subprocess.run([STACK, "up"], check=True,
                           stdout=subprocess.DEVNULL)
        elif fault == "redis-freeze":
            pid = pid_of("redis")
            os.kill(pid, signal.SIGSTOP)
            time.sleep(rng.uniform(1.0, 3.0))
            os.kill(pid, signal.SIGCONT)
        else:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "CLIENT", "KILL",
                            "TYPE", "normal"], stdout=subprocess.DEVNULL)
        log.append(fault)


def main():
    args, seed = R.parse_args("test_outages")
    workdir = tempfile.mkdtemp(prefix="ordo-outage-")
    tag = "ot%s" % os.urandom(4).hex()
    ordo = E.Ordo(args.ordo, tag, workdir)
    print("topics %s.*, db %s, redis %s*, logs %s" % (
        tag, ordo.db, ordo.prefix, workdir))
    m = M.Model()
    t0 = (int(time.time()) // 60) * 60000
    proj = Projections(ordo, workdir)
    stop, faults = threading.Event(), []
    rng = random.Random(seed)
    try:
        ordo.call("topics")
        ordo.start(("activity", "order", "referral", "commission"))
        proj.start("mongo")
        proj.start("redis")
        time.sleep(1)
        t = threading.Thread(target=chaos, args=(proj, rng, stop, faults))
        t.start()
        try:
            for gen, base in ((E.scenario_referral, t0),
                              (E.scenario_lifecycle, t0 + 1000000)):
                R.run_phases(ordo, R.scenario(gen, seed, m, base), workdir,
                             m)
            E.eventually(lambda: len(faults), lambda n: n >= 2, timeout=30)
        finally:
            stop.set()
            t.join()
        print("  faults: %s" % ", ".join(faults))
        R.check("faults were injected (projection kills and store "
                "outages)", any(f.startswith("kill") for f in faults) and
                any(not f.startswith("kill") for f in faults),
                "only: %s" % faults)
        subprocess.run([STACK, "up"], check=True, stdout=subprocess.DEVNULL)
        ok, why = ordo.wait(600)
        R.check("every stage caught up after the faults", ok, why)
        rc = ordo.stop()
        codes = proj.stop_all()
        R.check("processors and projections stop cleanly",
                rc == 0 and all(c == 0 for c in codes),
                "run %s, projections %s" % (rc, codes))
        rc, out, err = R.reconcile(ordo)
        R.check("reconcile: zero differences (read models == rebuild from "
                "the log, events == re-run of the rules)",
                rc == 0 and "reconcile: 0 difference(s)" in out,
                "exit %d\n%s\n%s" % (rc, out[-3000:], err[-2000:]))
        # Not an outage: a mongo.uri that cannot be a server's stops the
        # projection at once, naming the key (it was retried for ever).
        p = ordo.call("-X", "mongo.uri=notauri", "project", "mongo",
                      check=False, timeout=30)
        R.check("a mongo.uri that does not parse stops the projection, "
                "naming it", p.returncode == 1 and "mongo.uri" in p.stderr,
                "exit %d: %s" % (p.returncode, p.stderr[-500:]))
    except Exception as e:  # a crash of the test is a failure, said so
        R.check("no exception", False, repr(e))
        stop.set()
    finally:
        ordo.stop()
        proj.stop_all()
        if not args.keep:
            try:
                import pymongo
                pymongo.MongoClient(os.environ.get(
                    "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"),
                    serverSelectionTimeoutMS=10000).drop_database(ordo.db)
                r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                            int(os.environ.get("ORDO_REDIS_PORT", "6379")))
                keys = r.scan(ordo.prefix + "*")
                if keys:
                    r.pipeline([("DEL", k) for k in keys])
            except Exception as e:
                print("  cleanup: %r" % e)
            E.drop_kafka(ordo.tag)
    passed = sum(1 for _, ok in R.RESULTS if ok)
    failed = len(R.RESULTS) - passed
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
          "Crashing: 0" % (len(R.RESULTS), passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
