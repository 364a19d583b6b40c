#!/usr/bin/env python3
"""Exactly-once under crashes and under scale-out, on the real local Kafka.

usage: test_crash.py ORDO_BINARY [--orders N] [--seed S] [--kills K]
       [--fast-kills K] [--only crash|fast|scale] [--keep]

A seeded flash sale (a few activities with small stock and per-user
limits, N PlaceOrders, some retries and value faults), then CancelOrders
for some accepted orders (ReleaseStock flows back to the activity), then
a second wave of PlaceOrders that can buy the released stock. The same
three files go to independent prefixes (topics, groups):

  A  uninterrupted: `ordo run activity order`, phase by phase, without
     snapshots (snapshot.events=0): every restore folds the whole log;
  B  the same, while the process is kill -9'd at seeded random points
     (0.5-3 s after its stages are assigned, sometimes during the group
     join and restore) and restarted, at least K times; snapshots every
     --snapshot-events events, so restores start from snapshots;
  D  a crash loop: kill -9 every 0.3-4 s wherever the process is, at
     least --fast-kills times over the three phases; it must still
     finish (a restart resumes at once: static membership, decision
     0009) and match A;
  C  scale-out: two `ordo process activity` and two `ordo process order`
     (distinct instance.id); mid-stream one of each is stopped (SIGTERM)
     and a third started, while a backlog is pending; snapshots as B.

Phases are separated by a stage-scoped wait (the activity and order groups
have read everything), because only then is the outcome independent of
timing: a CancelOrder must find its OrderOpened, and the second wave must
find the releases (Kafka orders per partition only).

Checks, B, C and D each against A (and A against a reference model of the
PlaceOrder rules, RULES.md "Activity"):
  - command topics: phase 1 of activity-commands holds the same records at
    the same offsets (the assumption that makes activity event ids equal);
  - activity-events per activity: the phase-1 sequence is identical,
    event_id included (ids derive from input positions, RULES.md "Units");
    the releases of phase 2 are the same multiset (their order on an
    activity partition depends on how the order partitions' transactions
    interleave); the phase-3 sequence is identical but for event_id
    (phase-3 offsets shift by the aborted and interleaved ReleaseStocks);
  - order-events per order: the same sequence, ignoring event_id (and the
    causation_id of phase-3 OrderOpened, which is an OpenOrder's
    position-derived id): order-commands offsets depend on how activity
    transactions interleave;
  - no duplicate (causation_id, type) per key; no oversell (RULES.md:
    remaining never below zero, reserved - released <= stock, each event's
    remaining consistent with the fold); every accepted order opened
    exactly once; nothing dead-lettered.

Ends with criterion's line:
    [====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: 0
Exit status 0 only if everything passed.
"""

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

import test_e2e as E  # noqa: E402 (snapshot_use)

try:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
except ImportError:  # pragma: no cover
    sys.exit("test_crash.py: kafka-python missing; run with $ORDO_PYTHON")

BOOT = os.environ.get("ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
T0 = 1700000000000
START = T0 + 1000
# A session timeout of 6 s (the broker's minimum) so that a restarted
# process rejoins in seconds: a SIGKILLed member otherwise holds the
# group's rebalance for session.timeout.ms (librdkafka default 45 s).
KAFKA_X = ["-X", "kafka.session.timeout.ms=6000",
           "-X", "kafka.heartbeat.interval.ms=500",
           # back-dated commands (T0): no wall-clock Ticks (decision 0008)
           "-X", "tick.interval.ms=0"]


def log(*a):
    print("[crash]", *a, flush=True)


# ------------------------------------------------------------ workload
class Workload:
    """Three phases of JSON commands and the model's expectations."""

    def __init__(self, n, seed):
        rnd = random.Random(seed)
        self.n = n
        stocks = [max(5, n // 100), max(5, n // 50), max(5, n // 40),
                  max(5, n // 25)]
        limits = [2, 2, 1, 3]
        self.acts = {}
        p1 = []
        for i, (stock, lim) in enumerate(zip(stocks, limits)):
            aid = "act%d" % i
            self.acts[aid] = dict(stock=stock, limit=lim)
            p1.append(dict(type="CreateActivity", command_id="p1-ca-%d" % i,
                           ts_ms=T0 + i, activity_id=aid, sku="sku%d" % i,
                           price_cents=990 + i, stock=stock,
                           per_user_limit=lim, start_ms=START,
                           end_ms=START + 10 ** 9,
                           pay_timeout_ms=10 ** 10))
        users = max(10, n // 8)
        aids = list(self.acts)
        placed = []
        for i in range(n):
            ts = START + i
            r = rnd.random()
            aid = rnd.choice(aids)
            qty = rnd.choice((1, 1, 1, 1, 2, 2, 3))
            oid = "o%07d" % i
            if r < 0.005:
                qty = 0                             # INVALID_QTY
            elif r < 0.008:
                ts = START - 1                      # NOT_STARTED
            elif r < 0.010:
                aid = "no-such-activity"            # UNKNOWN_ACTIVITY
            elif r < 0.015 and placed:
                prev = rnd.choice(placed)           # a retry: ignored
                oid, aid = prev["order_id"], prev["activity_id"]
            c = dict(type="PlaceOrder", command_id="p1-po-%d" % i, ts_ms=ts,
                     order_id=oid, activity_id=aid,
                     user_id="u%05d" % rnd.randrange(users), qty=qty)
            p1.append(c)
            placed.append(c)
        self.model = Model(self.acts)
        self.model.create_all()
        for c in p1[len(self.acts):]:
            self.model.place(c)
        accepted = sorted(self.model.open)
        p2 = []
        t = START + n + 10
        for j, oid in enumerate(rnd.sample(accepted,
                                           int(len(accepted) * 0.4))):
            o = self.model.open[oid]
            p2.append(dict(type="CancelOrder", command_id="p2-c-%d" % j,
                           ts_ms=t + j, order_id=oid, user_id=o["user"]))
        m = len(p2)
        for j in range(max(3, m // 20)):
            oid = rnd.choice(accepted)
            p2.append(dict(type="CancelOrder", command_id="p2-x-%d" % j,
                           ts_ms=t + m + j, order_id=oid,
                           user_id="intruder"))         # NOT_OWNER
            p2.append(dict(type="CancelOrder", command_id="p2-u-%d" % j,
                           ts_ms=t + m + j, order_id="nope%d" % j,
                           user_id="u0"))              # UNKNOWN_ORDER
        for c in p2:
            if c["user_id"] == self.model.open.get(c["order_id"],
                                                   {}).get("user"):
                self.model.release(c["order_id"])
        p3 = []
        t = START + n + 10 + len(p2) + 10
        for i in range(max(10, n // 10)):
            c = dict(type="PlaceOrder", command_id="p3-po-%d" % i,
                     ts_ms=t + i, order_id="w%07d" % i,
                     activity_id=rnd.choice(aids),
                     user_id="u%05d" % rnd.randrange(users),
                     qty=rnd.choice((1, 1, 2)))
            p3.append(c)
            self.model.place(c)
        self.phases = [p1, p2, p3]

    def write(self, d):
        paths = []
        for i, p in enumerate(self.phases):
            path = os.path.join(d, "phase%d.jsonl" % (i + 1))
            with open(path, "w") as f:
                for c in p:
                    f.write(json.dumps(c, separators=(",", ":")) + "\n")
            paths.append(path)
        return paths


class Model:
    """PlaceOrder and ReleaseStock of RULES.md "Activity", nothing more."""

    def __init__(self, acts):
        self.acts = acts
        self.state = {}
        self.open = {}          # order_id -> reservation (not released)
        self.accepted = {}      # order_id -> reservation, ever

    def create_all(self):
        for aid, a in self.acts.items():
            self.state[aid] = dict(remaining=a["stock"], users={},
                                   seen=set())

    def place(self, c):
        s = self.state.get(c["activity_id"])
        if s is None:                               # 1 UNKNOWN_ACTIVITY
            return
        if c["order_id"] in s["seen"]:              # 2 ignored
            return
        s["seen"].add(c["order_id"])
        a = self.acts[c["activity_id"]]
        if c["qty"] < 1 or c["ts_ms"] < START:      # 3, 4
            return
        if s["users"].get(c["user_id"], 0) + c["qty"] > a["limit"]:
            return                                  # 5 LIMIT_EXCEEDED
        if s["remaining"] < c["qty"]:               # 6
            return
        s["remaining"] -= c["qty"]                  # 7 accepted
        s["users"][c["user_id"]] = s["users"].get(c["user_id"], 0) + \
            c["qty"]
        r = dict(activity=c["activity_id"], user=c["user_id"], qty=c["qty"])
        self.open[c["order_id"]] = r
        self.accepted[c["order_id"]] = r

    def release(self, oid):
        r = self.open.pop(oid)
        s = self.state[r["activity"]]
        s["remaining"] += r["qty"]
        s["users"][r["user"]] -= r["qty"]


# ------------------------------------------------------------- running
class Env:
    """One isolated prefix: topics, groups, db, redis keys."""

    def __init__(self, ordo, name, workdir, snapshot_events):
        self.ordo = ordo
        self.tag = "crash%s%d" % (name, random.SystemRandom().randrange(
            10 ** 8))
        self.prefix = self.tag + "."
        self.x = ["-X", "topic.prefix=" + self.prefix,
                  "-X", "group.prefix=" + self.prefix,
                  "-X", "mongo.db=" + self.tag,
                  "-X", "redis.prefix=" + self.tag + ":",
                  "-X", "snapshot.events=%d" % snapshot_events] + KAFKA_X
        self.workdir = workdir
        self.name = name
        self.nlog = 0
        self.logs = []

    def topic(self, short):
        return self.prefix + short

    def cmd(self, *args, check=True, **kw):
        r = subprocess.run([self.ordo] + self.x + list(args), **kw)
        if check and r.returncode:
            raise RuntimeError("ordo %s failed: %d" % (args[0], r.returncode))
        return r

    def start(self, *args):
        self.nlog += 1
        path = os.path.join(self.workdir, "%s-%02d-%s.log" % (
            self.name, self.nlog, "-".join(args[:2]).replace("=", "")))
        f = open(path, "w")
        p = subprocess.Popen([self.ordo] + self.x + list(args), stdout=f,
                             stderr=subprocess.STDOUT)
        p.logpath = path
        f.close()
        LIVE.append(p)
        self.logs.append(path)
        return p

    def snapshot_use(self):
        """(snapshots written, restores that started from one)"""
        written = used = 0
        for path in self.logs:
            with open(path) as f:
                w, u = E.snapshot_use(f.read())
            written += w
            used += u
        return written, used

    def produce(self, path, rate=0):
        """Sends a file; at `rate` lines/s through a pipe if rate > 0
        (one producer process either way: one idempotent producer)."""
        if not rate:
            self.cmd("produce", "--keep-ts", path, stdout=subprocess.DEVNULL)
            return
        p = subprocess.Popen([self.ordo] + self.x + ["produce", "--keep-ts",
                                                     "-"],
                             stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
        with open(path, "rb") as f:
            lines = f.readlines()
        t0 = time.monotonic()
        chunk = max(1, rate // 50)
        for i in range(0, len(lines), chunk):
            due = t0 + i / rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            p.stdin.write(b"".join(lines[i:i + chunk]))
            p.stdin.flush()
        p.stdin.close()
        if p.wait():
            raise RuntimeError("ordo produce failed")


LIVE = []   # every process started, killed on the way out


def stop(p, sig=signal.SIGTERM, timeout=60):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


class Lag:
    """Stage-scoped `ordo wait`: `ordo wait` waits for all six stages'
    groups, so it never returns while only activity and order run. This
    parses `ordo lag` (its read_committed probe: transaction markers take
    offsets, so committed < end does not mean behind) for those two."""

    def __init__(self, env):
        self.env = env

    def close(self):
        pass

    def behind(self):
        r = self.env.cmd("lag", stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
        n, ends_sum, rows = 0, 0, 0
        for line in r.stdout.decode().splitlines():
            f = line.split()
            if len(f) < 6 or f[0] not in ("activity", "order"):
                continue
            rows += 1
            ends_sum += int(f[4])
            if "(caught up)" not in line:
                n += 1
            elif f[5] != "0":  # left behind it: markers, never lag
                raise RuntimeError("caught up with lag %s: %s" % (f[5], line))
        if rows == 0:
            raise RuntimeError("ordo lag printed no rows")
        return n, ends_sum

    def wait(self, timeout=300):
        t0 = time.monotonic()
        prev = None
        while time.monotonic() - t0 < timeout:
            try:
                n, s = self.behind()
            except Exception as e:  # a broker restart: reconnect
                log("lag probe failed (%s); retrying" % e)
                time.sleep(2)
                prev = None
                continue
            if n == 0 and s == prev:
                return time.monotonic() - t0
            prev = s if n == 0 else None
            time.sleep(0.3)
        raise RuntimeError("%s: still behind after %ds" % (self.env.name,
                                                           timeout))


# ------------------------------------------------------------- reading
def replay(env, short):
    r = env.cmd("replay", short, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
    out = []
    for line in r.stdout.decode().splitlines():
        out.append(json.loads(line))
    return out


def raw_records(topic, committed=True):
    """[(partition, offset, key, value, type header)] of a topic."""
    c = KafkaConsumer(bootstrap_servers=BOOT, enable_auto_commit=False,
                      group_id=None,
                      isolation_level="read_committed" if committed
                      else "read_uncommitted")
    parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    ends = c.end_offsets(tps)
    out = []
    idle = 0
    while any(c.position(tp) < ends[tp] for tp in tps) and idle < 20:
        got = c.poll(timeout_ms=500)
        idle = 0 if got else idle + 1
        for recs in got.values():
            for r in recs:
                t = dict(r.headers or []).get("ordo.type", b"").decode()
                out.append((r.partition, r.offset, r.key, r.value, t))
    c.close()
    return sorted(out)


def by_key(events):
    d = collections.OrderedDict()
    for e in events:
        d.setdefault(e["aggregate_id"], []).append(e)
    return d


def phase_of(e):
    c = e.get("causation_id", "")
    if c.startswith("p1-"):
        return 1
    if c.startswith("p3-"):
        return 3
    if e["type"] == "OrderOpened":   # caused by an OpenOrder
        return 3 if e.get("correlation_id", "").startswith("p3-") else 1
    return 2


def without(e, *keys):
    return {k: v for k, v in e.items() if k not in keys}


# -------------------------------------------------------------- checks
class Checks:
    def __init__(self):
        self.tested = self.passed = 0

    def check(self, name, ok, detail=""):
        self.tested += 1
        if ok:
            self.passed += 1
            log("PASS", name)
        else:
            log("FAIL", name, detail)
        return ok


def diff_keys(a, b, norm, limit=5):
    """Keys whose normalised sequences differ, with the first difference."""
    out = []
    for k in sorted(set(a) | set(b)):
        sa = norm(a.get(k, []))
        sb = norm(b.get(k, []))
        if sa != sb:
            first = next((i for i, (x, y) in enumerate(zip(sa, sb))
                          if x != y), min(len(sa), len(sb)))
            out.append("%s: len %d vs %d; first difference at %d: %s vs %s"
                       % (k, len(sa), len(sb), first,
                          json.dumps(sa[first]) if first < len(sa) else "-",
                          json.dumps(sb[first]) if first < len(sb) else "-"))
            if len(out) >= limit:
                break
    return out


def seg(events, ph):
    return [e for e in events if phase_of(e) == ph]


def norm_activity(evs):
    """Phase 1 exact; phase 2 a multiset of what was released; phase 3
    exact but event_id."""
    p2 = sorted(json.dumps([e["type"], e.get("order_id"), e.get("user_id"),
                            e.get("qty"), e.get("reason")])
                for e in seg(evs, 2))
    return ([json.dumps(e, sort_keys=True) for e in seg(evs, 1)] + p2 +
            [json.dumps(without(e, "event_id"), sort_keys=True)
             for e in seg(evs, 3)])


def norm_order(evs):
    out = []
    for e in evs:
        drop = ["event_id"]
        if e["type"] == "OrderOpened" and phase_of(e) == 3:
            drop.append("causation_id")
        out.append(json.dumps(without(e, *drop), sort_keys=True))
    return out


def check_invariants(ck, name, wl, act, orders, dead):
    ak, ok_ = by_key(act), by_key(orders)
    # phases in order per key
    bad = [k for k, evs in ak.items()
           if [phase_of(e) for e in evs] != sorted(phase_of(e) for e in evs)]
    ck.check("%s: activity events in phase order per key" % name, not bad,
             bad[:5])
    dups = []
    for evs in list(ak.values()) + list(ok_.values()):
        seen = collections.Counter((e.get("causation_id"), e["type"])
                                   for e in evs)
        dups += [k for k, n in seen.items() if n > 1]
    ck.check("%s: no duplicate (causation_id, type) per key" % name,
             not dups, dups[:5])
    over = []
    for aid, evs in ak.items():
        if aid not in wl.acts:
            continue
        stock = wl.acts[aid]["stock"]
        rem = stock
        for e in evs:
            if e["type"] == "StockReserved":
                rem -= e["qty"]
            elif e["type"] == "StockReleased":
                rem += e["qty"]
            else:
                continue
            if rem < 0 or rem > stock or e["remaining"] != rem:
                over.append((aid, e["event_id"], rem, e["remaining"]))
    ck.check("%s: no oversell (0 <= remaining <= stock, consistent with "
             "reserved - released, RULES.md Activity)" % name, not over,
             over[:5])
    reserved = collections.Counter(e["order_id"] for e in act
                                   if e["type"] == "StockReserved")
    opened = collections.Counter(e["order_id"] for e in orders
                                 if e["type"] == "OrderOpened")
    ck.check("%s: every accepted order opened exactly once" % name,
             reserved == opened and all(v == 1 for v in opened.values()),
             "reserved %d opened %d" % (len(reserved), len(opened)))
    exp_rem = {a: s["remaining"] for a, s in wl.model.state.items()}
    got_rem = {}
    for e in act:
        if e["type"] in ("StockReserved", "StockReleased"):
            got_rem[e["activity_id"]] = e["remaining"]
    ck.check("%s: final remaining per activity as the model says" % name,
             exp_rem == got_rem, "%s vs %s" % (exp_rem, got_rem))
    ck.check("%s: accepted orders as the model says" % name,
             set(reserved) == set(wl.model.accepted),
             "%d vs model %d" % (len(reserved), len(wl.model.accepted)))
    ck.check("%s: nothing dead-lettered" % name, not dead,
             "%d dead letters" % len(dead))


def compare(ck, name, ref, got):
    d = diff_keys(by_key(ref["act"]), by_key(got["act"]), norm_activity)
    ck.check("%s: activity-events per activity equal to A (phase 1 with "
             "event_id)" % name, not d, "\n  ".join(d))
    d = diff_keys(by_key(ref["ord"]), by_key(got["ord"]), norm_order)
    ck.check("%s: order-events per order equal to A (but event_id)" % name,
             not d, "\n  ".join(d))


def collect(env, n_phase1):
    act = replay(env, "activity-events")
    ords = replay(env, "order-events")
    dead = replay(env, "dead-letters")
    cmds = raw_records(env.topic("activity-commands"))
    # Phase 1 of activity-commands: the file only, no ReleaseStock yet.
    p1 = [r for r in cmds
          if r[4] in ("CreateActivity", "PlaceOrder") and b"p1-" in r[3]]
    return dict(act=act, ord=ords, dead=dead, cmds_p1=p1,
                n_p1=n_phase1)


def aborted_records(env, short):
    """Records written in aborted transactions (evidence the kills landed
    inside transactions): read_uncommitted minus read_committed."""
    t = env.topic(short)
    return len(raw_records(t, False)) - len(raw_records(t, True))


# --------------------------------------------------------------- runs
def run_plain(env, files):
    env.cmd("topics", stdout=subprocess.DEVNULL)
    lag = Lag(env)
    p = env.start("run", "activity", "order")
    t0 = time.monotonic()
    for f in files:
        env.produce(f)
        lag.wait()
    el = time.monotonic() - t0
    rc = stop(p)
    lag.close()
    return rc, el


class Killer(threading.Thread):
    """kill -9 the process at seeded random points and restart it."""

    def __init__(self, env, rnd, args, fast=False):
        super().__init__(daemon=True)
        self.env, self.rnd, self.args = env, rnd, args
        self.fast = fast
        self.proc = env.start(*args)
        self.kills = []
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.unexpected = []

    def assigned(self, p, n_stages, timeout):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout and p.poll() is None:
            with open(p.logpath) as f:
                if f.read().count("msg=assigned") >= n_stages:
                    return True
            time.sleep(0.05)
        return False

    def run(self):
        while not self.halt.is_set():
            p = self.proc
            early = self.rnd.random() < 0.25
            if self.fast:   # a crash loop: every 0.3-4 s, wherever it is
                delay = self.rnd.uniform(0.3, 4.0)
                where = "loop"
            elif early:   # during the group join / restore
                delay = self.rnd.uniform(0.05, 1.0)
                where = "join/restore"
            else:
                self.assigned(p, len(self.args) - 1, 60)
                delay = self.rnd.uniform(0.5, 3.0)
                where = "deciding"
            if self.halt.wait(delay):
                break
            with self.lock:
                if p.poll() is not None:
                    self.unexpected.append((p.logpath, p.returncode))
                else:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    self.kills.append((where, round(delay, 2)))
                self.proc = self.env.start(*self.args)

    def finish(self):
        self.halt.set()
        self.join()
        return self.proc


def run_crash(env, files, rate, min_kills, seed, fast=False):
    env.cmd("topics", stdout=subprocess.DEVNULL)
    lag = Lag(env)
    k = Killer(env, random.Random(seed), ["run", "activity", "order"], fast)
    k.start()
    t0 = time.monotonic()
    for i, f in enumerate(files):
        env.produce(f, rate if i != 1 else 0)
        lag.wait()
        log("%s: phase %d decided, %d kill(s) so far" % (
            env.name.upper(), i + 1, len(k.kills)))
    while len(k.kills) < min_kills:
        time.sleep(0.5)
    p = k.finish()
    lag.wait()
    el = time.monotonic() - t0
    rc = stop(p)
    lag.close()
    return rc, el, k.kills, k.unexpected


def run_scale(env, files, rate):
    """Two instances of each processor; one of each leaves (SIGTERM) and
    a third joins while a backlog is pending, twice."""
    env.cmd("topics", stdout=subprocess.DEVNULL)
    lag = Lag(env)
    procs = {}
    for stage in ("activity", "order"):
        for i in (1, 2):
            procs[(stage, i)] = env.start("process", stage,
                                          "-X", "instance.id=%d" % i)
    events = []
    rcs = []

    def churn(leave, join):
        for stage in ("activity", "order"):
            rcs.append(stop(procs.pop((stage, leave))))
            procs[(stage, join)] = env.start("process", stage,
                                             "-X", "instance.id=%d" % join)
        events.append("instance %d left, %d joined" % (leave, join))

    t0 = time.monotonic()
    # Phase 1 produced at `rate` in the background; the membership changes
    # happen while it streams.
    th = threading.Thread(target=env.produce, args=(files[0], rate))
    th.start()
    time.sleep(2.0)
    churn(1, 3)
    time.sleep(3.0)
    churn(2, 4)
    th.join()
    lag.wait()
    env.produce(files[1])
    time.sleep(0.3)
    churn(3, 5)
    lag.wait()
    th = threading.Thread(target=env.produce, args=(files[2], rate))
    th.start()
    time.sleep(0.5)
    churn(4, 6)
    th.join()
    lag.wait()
    el = time.monotonic() - t0
    for p in procs.values():
        rcs.append(stop(p))
    lag.close()
    return rcs, el, events


def delete_topics(envs):
    try:
        a = KafkaAdminClient(bootstrap_servers=BOOT)
        names = set(a.list_topics())
        for env in envs:
            mine = [t for t in names if t.startswith(env.prefix)]
            if mine:
                a.delete_topics(mine)
        a.close()
    except Exception as e:  # cleanup only
        log("could not delete topics:", e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--orders", type=int,
                    default=int(os.environ.get("ORDO_CRASH_ORDERS", 20000)))
    ap.add_argument("--seed", type=int,
                    default=int(os.environ.get("ORDO_CRASH_SEED", 4)))
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--rate", type=int, default=0,
                    help="lines/s of the streamed phases (default: N/20)")
    ap.add_argument("--snapshot-events", type=int, default=0,
                    help="snapshot.events of B and C (default: N/40)")
    ap.add_argument("--fast-kills", type=int, default=15,
                    help="kills of the fast crash loop D (at least)")
    ap.add_argument("--only", choices=("crash", "fast", "scale"))
    ap.add_argument("--keep", action="store_true",
                    help="keep topics and logs")
    a = ap.parse_args()
    rate = a.rate or max(200, a.orders // 20)
    a.snapshot_events = a.snapshot_events or max(50, a.orders // 40)

    work = tempfile.mkdtemp(prefix="ordo-crash-")
    wl = Workload(a.orders, a.seed)
    files = wl.write(work)
    log("seed %d, %d orders, %d/%d/%d commands per phase, %d accepted in "
        "the model, work dir %s" % (a.seed, a.orders,
                                    *map(len, wl.phases),
                                    len(wl.model.accepted), work))
    ck = Checks()
    crashing = 0
    envs = []
    try:
        A = Env(a.ordo, "a", work, 0)
        envs.append(A)
        rc, el = run_plain(A, files)
        log("A (uninterrupted) %s: %.1fs, exit %d" % (A.tag, el, rc))
        ck.check("A: clean exit on SIGTERM", rc == 0, rc)
        ra = collect(A, len(wl.phases[0]))
        check_invariants(ck, "A", wl, ra["act"], ra["ord"], ra["dead"])
        ck.check("A: phase-1 activity-commands = the file, offsets 0..",
                 len(ra["cmds_p1"]) == len(wl.phases[0]),
                 "%d records" % len(ra["cmds_p1"]))

        if a.only in (None, "crash"):
            B = Env(a.ordo, "b", work, a.snapshot_events)
            envs.append(B)
            rc, el, kills, unexpected = run_crash(B, files, rate, a.kills,
                                                  a.seed)
            log("B (kill -9) %s: %.1fs, %d kills %s, exit %d" % (
                B.tag, el, len(kills), kills, rc))
            ck.check("B: at least %d kills" % a.kills, len(kills) >= a.kills)
            ck.check("B: no incarnation died by itself", not unexpected,
                     unexpected)
            ck.check("B: clean exit on SIGTERM", rc == 0, rc)
            written, used = B.snapshot_use()
            log("B: %d snapshots written, %d restores from one" % (written,
                                                                   used))
            ck.check("B: restores started from snapshots", used > 0,
                     (written, used))
            rb = collect(B, len(wl.phases[0]))
            ab = aborted_records(B, "activity-events")
            ob = aborted_records(B, "order-commands")
            log("B: records in aborted transactions: activity-events %d, "
                "order-commands %d" % (ab, ob))
            ck.check("B: phase-1 activity-commands records and offsets "
                     "identical to A", rb["cmds_p1"] == ra["cmds_p1"])
            check_invariants(ck, "B", wl, rb["act"], rb["ord"], rb["dead"])
            compare(ck, "B", ra, rb)
        if a.only in (None, "fast"):
            # A crash loop: kill -9 every 0.3-4 s wherever the process
            # is (joining, restoring, deciding). Each restart must resume
            # at once (static membership, decision 0009), or the loop
            # never catches up and the lag wait gives up.
            D = Env(a.ordo, "d", work, a.snapshot_events)
            envs.append(D)
            rc, el, kills, unexpected = run_crash(D, files, rate,
                                                  a.fast_kills, a.seed + 1,
                                                  fast=True)
            log("D (crash loop) %s: %.1fs, %d kills, exit %d" % (
                D.tag, el, len(kills), rc))
            ck.check("D: at least %d kills" % a.fast_kills,
                     len(kills) >= a.fast_kills)
            ck.check("D: no incarnation died by itself", not unexpected,
                     unexpected)
            ck.check("D: clean exit on SIGTERM", rc == 0, rc)
            rd = collect(D, len(wl.phases[0]))
            ck.check("D: phase-1 activity-commands records and offsets "
                     "identical to A", rd["cmds_p1"] == ra["cmds_p1"])
            check_invariants(ck, "D", wl, rd["act"], rd["ord"], rd["dead"])
            compare(ck, "D", ra, rd)
        if a.only in (None, "scale"):
            C = Env(a.ordo, "c", work, a.snapshot_events)
            envs.append(C)
            rcs, el, evs = run_scale(C, files, rate)
            log("C (scale-out) %s: %.1fs, %s, exits %s" % (C.tag, el, evs,
                                                          rcs))
            ck.check("C: every instance exited cleanly on SIGTERM",
                     all(r == 0 for r in rcs), rcs)
            written, used = C.snapshot_use()
            log("C: %d snapshots written, %d restores from one" % (written,
                                                                   used))
            ck.check("C: restores started from snapshots", used > 0,
                     (written, used))
            rc_ = collect(C, len(wl.phases[0]))
            ck.check("C: phase-1 activity-commands records and offsets "
                     "identical to A", rc_["cmds_p1"] == ra["cmds_p1"])
            check_invariants(ck, "C", wl, rc_["act"], rc_["ord"],
                             rc_["dead"])
            compare(ck, "C", ra, rc_)
    except Exception as e:
        import traceback
        traceback.print_exc()
        log("CRASH:", e)
        crashing = 1
    finally:
        for p in LIVE:
            if p.poll() is None:
                p.kill()
                p.wait()
        if not a.keep:
            delete_topics(envs)
        else:
            log("kept topics of", [e.tag for e in envs], "and", work)
    failing = ck.tested - ck.passed
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
          "Crashing: %d" % (ck.tested + crashing, ck.passed, failing,
                            crashing), flush=True)
    sys.exit(1 if failing or crashing else 0)


if __name__ == "__main__":
    main()
