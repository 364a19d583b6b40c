#!/usr/bin/env python3
"""Processors survive broker restarts by themselves (issue 12 item 4,
docs/decisions/0009): a private single-node Kafka on other ports (never
the shared one) is killed with SIGKILL and restarted repeatedly while
`ordo run activity order redis` decides and projects a streamed flash
sale. The stages must never exit (a fenced producer, a fenced projection
consumer or any fatal Kafka error loses their partitions, not the
process), and the outcome must equal an uninterrupted run on the same
private broker (test_crash's checks).

--long-down S makes the first outage last S seconds; past
transaction.timeout.ms (10 s) the restarted coordinator aborts what was
open and may fence a producer (the log's rejoin count says whether it
did). Off in CI: with 25 s, in one run of three the broker was up only
twice for a few seconds (between the next two kills, each time still
loading its transaction coordinator, so no producer id) in the
streaming `ordo produce`'s 60 s flush; it reported 3,452 lines not
delivered, as it should, the harness sent the whole phase again, and the
duplicated commands (a second CreateActivity, repeated UNKNOWN_ACTIVITY
attempts) make the logs differ from the uninterrupted run's by
construction.

usage: test_broker_kills.py ORDO_BINARY [--orders N] [--kills K]
       [--long-down S] [--seed S] [--port P] [--workdir DIR] [--keep]

Needs Java and the Kafka jars that infra/stack installs
($ORDO_STACK_KAFKA_CLASSPATH, from `infra/stack env`). Ends with criterion's
Synthesis line; exit 0 only if everything passed.
"""
import argparse
import base64
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

PROPS = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.num.partitions=2
transaction.state.log.num.partitions=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
"""


class Broker:
    """A private KRaft node; kill() is SIGKILL, start() restarts it on
    the same data directory."""

    def __init__(self, workdir, port):
        # the stack's own jars (`infra/stack env`), not whichever
        # version a cache happens to hold
        cp = os.environ.get("ORDO_STACK_KAFKA_CLASSPATH", "")
        if not glob.glob(cp) or not shutil.which("java"):
            raise RuntimeError("Kafka jars or java missing (infra/stack "
                               "installs them)")
        self.dir = tempfile.mkdtemp(prefix="ordo-broker-", dir=workdir)
        self.port = port
        self.props = os.path.join(self.dir, "server.properties")
        with open(self.props, "w") as f:
            f.write(PROPS.format(port=port, cport=port + 1,
                                 data=os.path.join(self.dir, "data")))
        with open(os.path.join(self.dir, "log4j.properties"), "w") as f:
            f.write("log4j.rootLogger=WARN, file\n"
                    "log4j.appender.file=org.apache.log4j.FileAppender\n"
                    "log4j.appender.file.File=%s/server.log\n"
                    "log4j.appender.file.layout=org.apache.log4j."
                    "PatternLayout\nlog4j.appender.file.layout."
                    "ConversionPattern=[%%d] %%p %%m (%%c)%%n\n" % self.dir)
        self.java = ["java", "-Xms128m", "-Xmx512m", "-XX:+UseG1GC",
                     "-Dlog4j.configuration=file:%s/log4j.properties" %
                     self.dir, "-cp", cp]
        # StorageTool's argument parser takes a cluster id that begins
        # with '-' (one in 64) for an option: draw again
        cid = "-"
        while cid.startswith("-"):
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
        subprocess.run(self.java + ["kafka.tools.StorageTool", "format",
                                    "-t", cid, "-c", self.props],
                       check=True, stdout=subprocess.DEVNULL)
        self.proc = None
        self.boot = "127.0.0.1:%d" % port

    def start(self, timeout=90):
        out = open(os.path.join(self.dir, "stdout.log"), "a")
        self.proc = subprocess.Popen(self.java + ["kafka.Kafka", self.props],
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if subprocess.run(["kcat", "-b", self.boot, "-L", "-m", "2"],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return time.monotonic() - t0
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError("private broker not ready, see %s" % self.dir)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--orders", type=int, default=4000)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--long-down", type=float, default=0.0,
                    help="seconds the broker stays down at the first kill, "
                    "past transaction.timeout.ms (10 s): the restarted "
                    "coordinator aborts the open transactions and may "
                    "fence their producers (default 0: none)")
    ap.add_argument("--rate", type=int, default=150,
                    help="lines/s of the streamed phases")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=19192,
                    help="PLAINTEXT port of the private broker (the "
                    "controller uses the next one)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.ordo = os.path.abspath(a.ordo)
    broker = Broker(a.workdir, a.port)
    # Every ordo command and test_crash's Kafka clients use it.
    os.environ["ORDO_KAFKA_BOOTSTRAP_SERVERS"] = broker.boot
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import test_crash as C

    work = tempfile.mkdtemp(prefix="ordo-bkill-", dir=a.workdir)
    wl = C.Workload(a.orders, a.seed)
    files = wl.write(work)
    rate = a.rate
    ck = C.Checks()
    crashing = 0
    rnd = random.Random(a.seed)
    halt = threading.Event()
    try:
        C.log("private broker up in %.1fs at %s (%s)" % (
            broker.start(), broker.boot, broker.dir))
        A = C.Env(a.ordo, "a", work, 0)
        rc, el = C.run_plain(A, files)
        ck.check("A: clean exit on SIGTERM", rc == 0, rc)
        ra = C.collect(A, len(wl.phases[0]))
        C.log("A (uninterrupted) %s: %.1fs" % (A.tag, el))

        E = C.Env(a.ordo, "e", work, max(50, a.orders // 40))
        E.cmd("topics", stdout=subprocess.DEVNULL)
        run = E.start("run", "activity", "order", "redis")
        kills = []

        def killer():
            # --kills kills while the sale streams in, each after the
            # broker has served for a while; then it stays up so that
            # every stage must converge by itself.
            while len(kills) < a.kills and not halt.wait(
                    rnd.uniform(3.0, 8.0)):
                broker.kill()
                down = rnd.uniform(0.5, 3.0)
                if not kills and a.long_down > 0:
                    down = a.long_down  # while the sale streams in
                time.sleep(down)
                up = broker.start()
                kills.append((round(down, 1), round(up, 1)))
                C.log("E: broker killed, down %.1fs + %.1fs to restart; "
                      "ordo run %s" % (down, up, "alive" if run.poll() is
                                       None else "EXITED"))

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        t0 = time.monotonic()
        lag = C.Lag(E)
        for i, f in enumerate(files):
            for attempt in range(5):   # produce retries past an outage
                try:
                    E.produce(f, rate if i != 1 else 0)
                    break
                except RuntimeError as e:
                    C.log("E: produce failed (%s); idempotent, again" % e)
            lag.wait(600)
        th.join()
        lag.wait(600)
        alive = run.poll() is None
        rc = C.stop(run)
        C.log("E (broker kills) %s: %.1fs, %d kills %s" % (
            E.tag, time.monotonic() - t0, len(kills), kills))
        ck.check("E: at least %d broker kills" % a.kills,
                 len(kills) >= a.kills)
        ck.check("E: ordo run never exited by itself", alive, rc)
        ck.check("E: clean exit on SIGTERM", rc == 0, rc)
        with open(run.logpath) as f:
            text = f.read()
        C.log("E: %d rejoins after fatal errors, %d aborts logged" % (
            text.count("giving up our partitions"),
            text.count("aborting transaction")))
        re_ = C.collect(E, len(wl.phases[0]))
        ck.check("E: phase-1 activity-commands records and offsets "
                 "identical to A", re_["cmds_p1"] == ra["cmds_p1"])
        C.check_invariants(ck, "E", wl, re_["act"], re_["ord"], re_["dead"])
        C.compare(ck, "E", ra, re_)
    except Exception as e:  # noqa: BLE001 (report and count it)
        import traceback
        traceback.print_exc()
        C.log("CRASH:", e)
        crashing = 1
    finally:
        halt.set()
        for p in C.LIVE:
            if p.poll() is None:
                p.kill()
                p.wait()
        broker.kill()
        if not a.keep:
            shutil.rmtree(broker.dir, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    failing = ck.tested - ck.passed
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
          "Crashing: %d" % (ck.tested + crashing, ck.passed, failing,
                            crashing), flush=True)
    return 1 if failing or crashing else 0


if __name__ == "__main__":
    sys.exit(main())
