#!/usr/bin/env python3
"""Exactly-once runtime benchmark on the real local Kafka (bench/RESULTS.md).

usage: bench_runtime.py ORDO [throughput|latency|restore|drain]...
       [--orders N] [--rate R] [--seconds S] [--activities K]
       [--configs NAME,...] [--repeat R] [-X key=value]...

  throughput  pre-produce N PlaceOrders (a flash sale: 4 activities, stock
              1 % of N, per-user limit 2), then `ordo run activity order`
              and time the drain: decisions/s = N / (caught up - first
              partition assigned), from the activity group's committed
              offsets sampled every 0.2 s (`ordo lag`).
  latency     `ordo run activity order` idle, then PlaceOrders at R/s for
              S seconds through `ordo produce -` (one line = one command
              whose command_id carries the send time in microseconds); a
              read_committed consumer of activity-events takes each event's
              causation_id and computes receive time - send time.
  restore     N PlaceOrders decided (activity only), then two restarts:
              one from the snapshots the run wrote (set -X
              snapshot.events=K), one from offset 0 (snapshot.events=0);
              for each, sums the "msg=restored" lines of the new process
              (snapshot bytes, events folded after it, ms).

  drain       the backlog drain of issue 12: N PlaceOrders on K activities
              (default 1: one hot activity, so one busy partition)
              pre-produced, then `ordo run activity` alone, timed from
              "assigned" to the committed offsets covering the backlog;
              once per config of --configs (default eos,alo,serial: see
              CONFIGS), repeated --repeat times in turn, each with its own
              topics (deleted afterwards); the config "baseline" runs the
              --baseline binary instead. Reports decisions/s, the ratio
              to the first config of the round, the stage's own counters
              and the CPU seconds of the ordo process during the drain.
  scaleout    N PlaceOrders on 12 activities decided by two `ordo process
              activity` (instance.ids a, b); then a third (c) joins: the
              time from c's start to every member's next assignment (from
              the log lines' ts), each of a and b's revoked-to-assigned
              time, and the events a and b restored. With --baseline, the
              other binary on its own topics in the same round.

Each run uses its own topic/group prefix. Run with $ORDO_PYTHON after
`eval "$(infra/stack env)"`.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

T0 = 1700000000000
BOOT = "127.0.0.1:9092"


def workload(path, n, prefix="b", ts_now=False, activities=4):
    rnd = random.Random(7)
    with open(path, "w") as f:
        for i in range(activities):
            f.write(json.dumps(dict(
                type="CreateActivity", command_id="ca%d" % i, ts_ms=T0,
                activity_id="act%d" % i, sku="s", price_cents=990,
                stock=max(10, n // 400), per_user_limit=2, start_ms=T0,
                end_ms=T0 + 10 ** 12)) + "\n")
        for i in range(n):
            f.write('{"type":"PlaceOrder","command_id":"%s%d","ts_ms":%d,'
                    '"order_id":"o%d","activity_id":"act%d",'
                    '"user_id":"u%d","qty":1}\n'
                    % (prefix, i, T0 + 1 + i, i, rnd.randrange(activities),
                       rnd.randrange(max(10, n // 10))))


class Env:
    def __init__(self, ordo, extra):
        self.ordo = ordo
        self.tag = "bench%d" % random.SystemRandom().randrange(10 ** 8)
        self.x = ["-X", "topic.prefix=%s." % self.tag,
                  "-X", "group.prefix=%s." % self.tag,
                  "-X", "kafka.session.timeout.ms=6000",
                  # back-dated commands: no wall-clock Ticks (decision 0008)
                  "-X", "tick.interval.ms=0"] + extra

    def run(self, *a, **kw):
        return subprocess.run([self.ordo] + self.x + list(a), **kw)

    def start(self, logpath, *a):
        f = open(logpath, "w")
        return subprocess.Popen([self.ordo] + self.x + list(a), stdout=f,
                                stderr=subprocess.STDOUT)

    def committed(self, stage="activity"):
        """(sum of committed offsets, partitions behind) of a stage."""
        out = self.run("lag", stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL).stdout.decode()
        s = behind = 0
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 6 and f[0] == stage:
                s += int(f[3])
                behind += "(caught up)" not in line
        return s, behind


def wait_assigned(logpath, n, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with open(logpath) as f:
            if f.read().count("msg=assigned") >= n:
                return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError("not assigned: " + logpath)


def stop(p):
    p.send_signal(signal.SIGTERM)
    p.wait(60)


def throughput(a, work):
    env = Env(a.ordo, a.X)
    path = os.path.join(work, "tp.jsonl")
    workload(path, a.orders)
    env.run("topics", stdout=subprocess.DEVNULL)
    t = time.monotonic()
    env.run("produce", "--keep-ts", path, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, check=True)
    prod = time.monotonic() - t
    log = os.path.join(work, env.tag + ".log")
    p = env.start(log, "run", "activity", "order")
    ta = wait_assigned(log, 2)
    while True:
        s, behind = env.committed("activity")
        if s >= a.orders + 4:
            break
        time.sleep(0.2)
    td = time.monotonic()
    # the order processor's share (OpenOrders) for completeness
    while env.committed("order")[1]:
        time.sleep(0.2)
    to = time.monotonic()
    stop(p)
    stats = [l for l in open(log) if "msg=stopped" in l]
    n = a.orders + 4
    print(json.dumps(dict(
        test="throughput", x=a.X, orders=n, produce_s=round(prod, 2),
        produce_per_s=round(n / prod), drain_s=round(td - ta, 2),
        decisions_per_s=round(n / (td - ta)),
        with_order_stage_s=round(to - ta, 2),
        stats=[re.sub(r"^.*stage=(\w+) msg=stopped", r"\1", l.strip())
               for l in stats])), flush=True)


CONSUMER = r'''
import sys, time, re
from kafka import KafkaConsumer
topic, n = sys.argv[1], int(sys.argv[2])
c = KafkaConsumer(topic, bootstrap_servers="%s", group_id=None,
                  isolation_level="read_committed", auto_offset_reset="earliest",
                  fetch_max_wait_ms=5, enable_auto_commit=False)
pat = re.compile(rb"L(\d{16})x(\d+)")
skip = int(sys.argv[3])  # the first seconds: ordo produce still starting
lat = []
t_end = time.time() + 600
while len(lat) < n - skip and time.time() < t_end:
    for recs in c.poll(timeout_ms=100).values():
        now = time.time() * 1e6
        for r in recs:
            m = pat.search(r.value)
            if m and int(m.group(2)) >= skip:
                lat.append((now - int(m.group(1))) / 1000.0)
lat.sort()
print(len(lat), lat[len(lat) // 2], lat[int(len(lat) * 0.99)],
      lat[int(len(lat) * 0.999)], lat[-1], flush=True)
''' % BOOT


def latency(a, work):
    env = Env(a.ordo, a.X)
    env.run("topics", stdout=subprocess.DEVNULL)
    log = os.path.join(work, env.tag + ".log")
    path = os.path.join(work, "lat-setup.jsonl")
    workload(path, 0)
    env.run("produce", "--keep-ts", path, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, check=True)
    p = env.start(log, "run", "activity", "order")
    wait_assigned(log, 2)
    n = a.rate * a.seconds
    cons = subprocess.Popen([sys.executable, "-c", CONSUMER,
                             env.tag + ".activity-events", str(n),
                             str(2 * a.rate)],
                            stdout=subprocess.PIPE)
    time.sleep(2)
    prod = subprocess.Popen([a.ordo] + env.x + ["produce", "--keep-ts",
                                                "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rnd = random.Random(3)
    chunk = max(1, a.rate // 200)          # every 5 ms
    t0 = time.time()
    i = 0
    while i < n:
        due = t0 + i / a.rate
        d = due - time.time()
        if d > 0:
            time.sleep(d)
        us = int(time.time() * 1e6)
        lines = []
        for j in range(i, min(n, i + chunk)):
            lines.append(
                '{"type":"PlaceOrder","command_id":"L%dx%d","ts_ms":%d,'
                '"order_id":"l%d","activity_id":"act%d","user_id":"u%d",'
                '"qty":1}\n' % (us, j, T0 + 1 + j, j, rnd.randrange(4),
                                rnd.randrange(n)))
        prod.stdin.write("".join(lines).encode())
        prod.stdin.flush()
        i += chunk
    sent_s = time.time() - t0
    prod.stdin.close()
    prod.wait()
    out = cons.communicate()[0].decode().split()
    stop(p)
    got, p50, p99, p999, mx = out
    print(json.dumps(dict(test="latency", x=a.X, rate=a.rate,
                          sent=n, sent_s=round(sent_s, 2), received=int(got),
                          p50_ms=round(float(p50), 1),
                          p99_ms=round(float(p99), 1),
                          p999_ms=round(float(p999), 1),
                          max_ms=round(float(mx), 1))), flush=True)


def restore(a, work):
    env = Env(a.ordo, a.X)
    path = os.path.join(work, "rs.jsonl")
    workload(path, a.orders)
    env.run("topics", stdout=subprocess.DEVNULL)
    env.run("produce", "--keep-ts", path, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, check=True)
    log = os.path.join(work, env.tag + "-1.log")
    p = env.start(log, "run", "activity")
    wait_assigned(log, 1, 120)
    while env.committed("activity")[0] < a.orders + 4:
        time.sleep(0.5)
    stop(p)
    # The same log restored twice: from the snapshots the run wrote (if
    # snapshot.events allowed), then from offset 0 (snapshot.events=0).
    for i, (mode, extra) in enumerate((("snapshots", []),
                                       ("full", ["-X", "snapshot.events=0"]))):
        log2 = os.path.join(work, "%s-%d.log" % (env.tag, i + 2))
        t = time.monotonic()
        p = env.start(log2, *(extra + ["run", "activity"]))
        wait_assigned(log2, 1, 600)
        wall = time.monotonic() - t
        stop(p)
        ev = ms = snap = 0
        for line in open(log2):
            m = re.search(r"msg=restored .* snapshot_bytes=(\d+) .* "
                          r"events=(\d+) .* ms=(\d+)", line)
            if m:
                snap += int(m.group(1))
                ev += int(m.group(2))
                ms += int(m.group(3))
        print(json.dumps(dict(test="restore", mode=mode, x=a.X,
                              log_events=a.orders + 4,
                              snapshot_bytes=snap, events_folded=ev,
                              restore_ms_sum=ms,
                              start_to_assigned_s=round(wall, 2))),
              flush=True)


# drain's configurations: processing.* keys (docs/decisions/0018, 0019)
CONFIGS = {
    "default": [],
    "eos": ["-X", "processing.guarantee=exactly_once"],
    "alo": ["-X", "processing.guarantee=at_least_once"],
    "serial": ["-X", "processing.pipeline=0"],
    "alo-serial": ["-X", "processing.guarantee=at_least_once",
                   "-X", "processing.pipeline=0"],
    # fetch up to 8 MiB of a partition per request instead of 1 MiB
    "eos-fetch8": ["-X", "kafka.max.partition.fetch.bytes=8388608"],
    "alo-fetch8": ["-X", "processing.guarantee=at_least_once",
                   "-X", "kafka.max.partition.fetch.bytes=8388608"],
    "serial-fetch8": ["-X", "processing.pipeline=0",
                      "-X", "kafka.max.partition.fetch.bytes=8388608"],
}


def cpu_s(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid():
    """The local Kafka broker's pid (for its CPU time), or None."""
    out = subprocess.run(["pgrep", "-f", "kafka.Kafka"],
                         stdout=subprocess.PIPE).stdout.split()
    return int(out[0]) if out else None


def delete_topics(env):
    from kafka.admin import KafkaAdminClient
    adm = KafkaAdminClient(bootstrap_servers=BOOT)
    try:
        mine = [t for t in adm.list_topics() if t.startswith(env.tag + ".")]
        if mine:
            adm.delete_topics(mine)
    finally:
        adm.close()


def drain_one(a, work, name, path, n):
    # "baseline": --baseline's binary (another build, e.g. main's serial
    # loop) with its defaults
    env = Env(a.baseline, a.X) if name == "baseline" else \
        Env(a.ordo, a.X + CONFIGS[name])
    env.run("topics", stdout=subprocess.DEVNULL)
    env.run("produce", "--keep-ts", path, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, check=True)
    from kafka.admin import KafkaAdminClient
    adm = KafkaAdminClient(bootstrap_servers=BOOT)
    log = os.path.join(work, env.tag + ".log")
    p = env.start(log, "run", "activity")
    try:
        ta = wait_assigned(log, 1, 120)
        c0 = cpu_s(p.pid)
        kpid = broker_pid()
        k0 = cpu_s(kpid) if kpid else 0
        # the group's committed offsets every 20 ms on one connection
        # (`ordo lag` takes a process start and a metadata round each)
        group = env.tag + ".activity"
        while sum(o.offset for o in adm.list_group_offsets(group)
                  .get(group, {}).values()) < n:
            time.sleep(0.02)
        td = time.monotonic()
        c1 = cpu_s(p.pid)
        k1 = cpu_s(kpid) if kpid else 0
        load1 = os.getloadavg()[0]
    finally:
        stop(p)
        adm.close()
    stats = [l.strip() for l in open(log) if "msg=stopped" in l]
    delete_topics(env)
    return dict(config=name, decisions_per_s=round(n / (td - ta)),
                drain_s=round(td - ta, 2),
                ordo_cores=round((c1 - c0) / (td - ta), 2),
                kafka_cores=round((k1 - k0) / (td - ta), 2),
                load1=round(load1, 1),
                stats=re.sub(r"^.*msg=stopped ", "", stats[0]) if stats
                else None)


def drain(a, work):
    path = os.path.join(work, "drain.jsonl")
    workload(path, a.orders, activities=a.activities)
    n = a.orders + a.activities
    for r in range(a.repeat):
        base = None
        for name in a.configs.split(","):
            res = drain_one(a, work, name, path, n)
            base = base or res["decisions_per_s"]
            res.update(test="drain", round=r + 1, orders=n,
                       activities=a.activities, x=a.X,
                       ratio_to_first=round(res["decisions_per_s"] / base, 3))
            print(json.dumps(res), flush=True)


def log_ms(line):
    """The ts= of a log line, in ms since the epoch."""
    import datetime
    ts = re.search(r"ts=(\S+)Z", line).group(1)
    return datetime.datetime.fromisoformat(ts).replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1000


def scaleout_one(a, work, name, path, n):
    """A and B own the backlog's partitions; C joins. How long until the
    group is working again, and how much A and B restored."""
    env = Env(a.baseline if name == "baseline" else a.ordo,
              a.X + ["-X", "metrics.listen="])
    env.run("topics", stdout=subprocess.DEVNULL)
    env.run("produce", "--keep-ts", path, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, check=True)
    logs, procs = {}, {}

    def start(m):
        logs[m] = os.path.join(work, "%s-%s.log" % (env.tag, m))
        procs[m] = env.start(logs[m], "-X", "instance.id=" + m, "process",
                             "activity")
    try:
        start("a")
        wait_assigned(logs["a"], 1, 120)
        start("b")
        wait_assigned(logs["b"], 1, 120)
        while env.committed()[0] < n:
            time.sleep(0.2)
        time.sleep(2)
        marks = {m: len(open(p).read()) for m, p in logs.items()}
        start("c")
        for m in ("a", "b", "c"):
            path_m = logs[m]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and "msg=assigned" not in \
                    open(path_m).read()[marks.get(m, 0):]:
                time.sleep(0.05)
        time.sleep(1)
        text = {m: open(p).read()[marks.get(m, 0):] for m, p in logs.items()}
    finally:
        for p in procs.values():
            stop(p)
    delete_topics(env)
    t_join = log_ms(next(l for l in text["c"].splitlines()
                         if "msg=started" in l))
    done = max(log_ms(next(l for l in text[m].splitlines()
                           if "msg=assigned" in l)) for m in "abc")
    restored = sum(int(x) for m in "ab" for x in
                   re.findall(r"msg=restored .* events=(\d+) ", text[m]))
    restore_ms = sum(int(x) for m in "ab" for x in
                     re.findall(r"msg=restored .* ms=(\d+)", text[m]))
    revoked_to_assigned = []
    for m in "ab":
        lines = text[m].splitlines()
        r = next(log_ms(l) for l in lines if "msg=revoked" in l)
        s = next(log_ms(l) for l in lines if "msg=assigned" in l)
        revoked_to_assigned.append(round(s - r))
    return dict(config=name, join_to_all_assigned_ms=round(done - t_join),
                ab_revoked_to_assigned_ms=revoked_to_assigned,
                ab_events_restored=restored, ab_restore_ms=restore_ms,
                kept=re.findall(r"msg=assigned partitions=\d+ kept=\d+",
                                text["a"] + text["b"]))


def scaleout(a, work):
    path = os.path.join(work, "scaleout.jsonl")
    workload(path, a.orders, activities=max(a.activities, 12))
    n = a.orders + max(a.activities, 12)
    names = ["ordo"] + (["baseline"] if a.baseline else [])
    for r in range(a.repeat):
        for name in names:
            res = scaleout_one(a, work, name, path, n)
            res.update(test="scaleout", round=r + 1, orders=n, x=a.X)
            print(json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("tests", nargs="*",
                    default=["throughput", "latency", "restore"])
    ap.add_argument("--orders", type=int, default=200000)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--activities", type=int, default=1)
    ap.add_argument("--configs", default="eos,alo,serial")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline", help="drain: another ordo binary, run as "
                    "the config named baseline")
    ap.add_argument("-X", action="append", default=[])
    a = ap.parse_args()
    a.X = [y for x in a.X for y in ("-X", x)]
    work = tempfile.mkdtemp(prefix="ordo-bench-")
    for t in a.tests:
        {"throughput": throughput, "latency": latency,
         "restore": restore, "drain": drain,
         "scaleout": scaleout}[t](a, work)


if __name__ == "__main__":
    main()
