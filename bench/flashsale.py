#!/usr/bin/env python3
"""The flash-sale benchmark (issue 7): one realistic sale through ordo on
the real local stack, side by side with the Redis+Lua seckill approach and
with the broker's own limit, in one run on one machine.

usage: bench/flashsale [options]
       (the wrapper: builds ordo and the two baselines in build-rel/ with a
       release buildtype, installs gnuplot-nox if missing, starts the stack
       if it is not up, then runs this script with the stack's venv)
       $ORDO_PYTHON bench/flashsale.py --build build-rel [options]

What one run does, in order:
  1. setup     a topic/group prefix, MongoDB database and Redis key prefix
               of its own (the run's tag); `ordo run` (all six stages) on
               them; CreateActivity for one hot activity (small stock,
               per-user limit 2) and --cold-activities cold ones, and
               BindReferrer for part of the users (two levels: users to
               promoters to top promoters, plus a SELF, an ALREADY_BOUND
               and a CYCLE attempt); waits until every stage caught up.
  2. warm-up   --warmup-seconds at --warmup-rate PlaceOrders, mostly on
               the cold activities; some on the hot one before it starts
               (NOT_STARTED).
  3. burst     after a 1 s pause, --orders PlaceOrders at --burst-rate (0:
               unpaced, to measure capacity), most on the hot activity,
               users drawn with a skew (LIMIT_EXCEEDED), a few qty 0
               (INVALID_QTY); once stock is gone SOLD_OUT.
               Warm-up and burst lines are paced into one `ordo produce
               --keep-ts -` (a chunk every 5 ms); each command_id carries
               its send time (F<microseconds>x<index>).
               Measured meanwhile: the first appearance in Redis of every
               --redis-sample-th order (keyspace notifications on
               <tag>:order:*0 for 1 in 10: the driver adds
               "Kh" to the shared Redis's notify-keyspace-events and puts
               the old value back at the end; 0: not watched),
               --mongo-sample of the
               orders the model predicts accepted, polled in MongoDB
               by _id (rejected attempts never become documents), CPU
               and memory of ordo, Kafka, FerretDB, Redis and this driver
               every 0.5 s. Rates come afterwards from the Kafka message
               timestamps (kcat): commands in = PlaceOrders produced to
               activity-commands per second, decisions = their events in
               activity-events per second.
  4. after-sale  for the orders the event log shows accepted: payments
               for --pay-share of them (with a wrong amount first, provider
               retries and a second payment_id here and there), a few user
               cancellations, a Tick after the payment deadline (the
               unpaid ones time out and release their stock), late
               payments (ORDER_CANCELLED), refunds (--refund-share: half
               full, half partial) and receipts (--receipt-share), a Tick
               30 days later that settles everything, and a refund after
               settlement (WINDOW_CLOSED). Sent at full speed.
  5. checks    from the event log (`ordo replay`), Redis and MongoDB:
               no oversell (per activity, and remaining stock in Redis and
               MongoDB), PlaceOrder outcomes by reason equal to an
               independent model of RULES.md in this script (and to the
               Lua baseline's), stock released and final order statuses
               and rejections of the after-sale as the model expects,
               money conserved (paid - refunded in the log, Redis and
               MongoDB), commissions accrued == pending + settled +
               reversed over earnings (Redis and MongoDB; pending 0 after
               the settlement Tick; totals as the model computes them),
               referral outcomes, read models agree with the event log for
               sampled order ids, no dead letters, `ordo reconcile
               --skip-read-models`. MongoDB comparisons are skipped (and
               said so) when the mongo projection has not caught up within
               --mongo-timeout.
  6. baselines (after ordo stopped, not concurrently) bench_lua_seckill on
               the sale's PlaceOrders, bench_kafka_raw for the sale's
               message sizes; both from the build directory, skipped with a
               message when not built (or with --skip-baselines).
  7. output    a report on stdout, DIR/flashsale.json (everything),
               DIR/timeseries.csv (per second), a gnuplot PNG; progress on
               stderr. Then the run's Redis keys, MongoDB database,
               topics and consumer groups are deleted (--keep keeps them).

Time in the commands is logical (RULES.md "Units"): ts_ms comes from the
driver's virtual clock, fixed by the schedule and --seed, and is sent with
--keep-ts; so the same options give the same commands and decisions every
run. Only the send times in command_id are wall-clock.

Exit status: 0 when every check passed, 1 when a check failed, 2 on usage
or setup errors.
"""

import argparse
import bisect
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

V0 = 1_800_000_000_000           # virtual clock origin (ms), any fixed value
DAY = 86_400_000
PAY_TIMEOUT = 900_000            # RULES.md defaults
AUTO_RECEIVE = 864_000_000
FREEZE = 604_800_000
BPS = [1000, 500]


def log(msg):
    sys.stderr.write("[flashsale] %s\n" % msg)
    sys.stderr.flush()


# ------------------------------------------------------------------ Redis

class Resp:
    """A minimal RESP2 client: enough for CONFIG, SCAN, UNLINK, pipelined
    reads and PSUBSCRIBE, without a package."""

    def __init__(self, host, port, timeout=30):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()
        self.pos = 0

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise ConnectionError("redis closed the connection")
        if self.pos > 65536:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                ln = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return ln
            self._fill()

    def read(self):
        ln = self._line()
        t, rest = ln[:1], ln[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError("redis: " + rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._fill()
            v = bytes(self.buf[self.pos:self.pos + n])
            self.pos += n + 2
            return v.decode()
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("redis: bad reply %r" % ln)

    def call(self, *args):
        self.s.sendall(self.encode(args))
        return self.read()

    def pipeline(self, cmds, chunk=1000):
        out = []
        for i in range(0, len(cmds), chunk):
            part = cmds[i:i + chunk]
            self.s.sendall(b"".join(self.encode(c) for c in part))
            out.extend(self.read() for _ in part)
        return out

    def scan_delete(self, pattern):
        n, cur = 0, "0"
        while True:
            cur, keys = self.call("SCAN", cur, "MATCH", pattern,
                                  "COUNT", 2000)
            if keys:
                n += self.call("UNLINK", *keys)
            if cur == "0":
                return n

    def close(self):
        self.s.close()


def redis_subscriber(host, port, pattern, out_path):
    """Child process: first keyspace notification per order key, with the
    wall time (µs) of the read that brought it. Stops on SIGTERM."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    r = Resp(host, port)
    r.s.sendall(Resp.encode(["PSUBSCRIBE", pattern]))
    r.read()
    r.s.settimeout(0.2)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    cut = pattern.index("*")
    first = {}
    events = 0
    while not stop:
        try:
            r._fill()
        except socket.timeout:
            continue
        now = int(time.time() * 1e6)
        # Parse every complete message in the buffer.
        while True:
            save = r.pos
            try:
                # only complete frames: peek for the final CRLF first
                if r.buf.find(b"\r\n", r.pos) < 0:
                    break
                msg = _read_nofill(r)
            except _Incomplete:
                r.pos = save
                break
            events += 1
            if msg and msg[0] == "pmessage":
                key = msg[2][cut:]
                if key not in first:
                    first[key] = now
    with open(out_path, "w") as f:
        for k, t in first.items():
            f.write("%s %d\n" % (k, t))
    sys.stdout.write("events %d keys %d\n" % (events, len(first)))


class _Incomplete(Exception):
    pass


def _read_nofill(r):
    """Resp.read() on the buffered bytes only; _Incomplete if a frame is
    not all there yet."""
    def line():
        i = r.buf.find(b"\r\n", r.pos)
        if i < 0:
            raise _Incomplete()
        ln = bytes(r.buf[r.pos:i])
        r.pos = i + 2
        return ln

    def one():
        ln = line()
        t, rest = ln[:1], ln[1:]
        if t == b"$":
            n = int(rest)
            if len(r.buf) - r.pos < n + 2:
                raise _Incomplete()
            v = bytes(r.buf[r.pos:r.pos + n]).decode()
            r.pos += n + 2
            return v
        if t == b"*":
            return [one() for _ in range(int(rest))]
        if t == b":":
            return int(rest)
        return rest.decode()
    return one()


# ---------------------------------------------------------------- MongoDB

def mongo_poller(uri, db, ids_path, out_path, start_wall, interval,
                 timeout, threads=2):
    """Child process: polls orders for the ids whose planned send time has
    passed; records when each first appears, and when it was last seen
    missing (the document appeared in between: the figure's resolution).

    FerretDB on SQLite answers only an _id equality from its index (~2 ms);
    anything else, an $in included, decodes the whole collection (~1.4 s
    for 8,000 orders here, and a core of FerretDB while it lasts). So one
    find by _id per due id, in send order. One poller in series falls
    behind as soon as documents appear faster than it can look them up
    (2,000 samples in a 5 s burst: the "latency" was the poller's queue,
    2-4 s, bench/RESULTS.md), so `threads` pollers share the ids."""
    import threading
    from pymongo import MongoClient
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    ids = []
    for ln in open(ids_path):
        oid, off = ln.split()
        ids.append((float(off), oid))
    ids.sort()
    client = MongoClient(uri, serverSelectionTimeoutMS=10000,
                         maxPoolSize=max(1, threads))
    coll = client[db].orders
    seen, missed = {}, {}
    deadline = start_wall + (ids[-1][0] if ids else 0) + timeout
    polls = [0]

    def poll(mine):
        while not stop and len(seen) < len(ids) and time.time() < deadline:
            t0 = time.time()
            due = [oid for off, oid in mine
                   if start_wall + off <= t0 and oid not in seen]
            # after 20 misses in a row the rest are most likely not there
            # yet either and wait for the next poll (which can only make a
            # document's time late, never early)
            misses = 0
            for oid in due:
                if misses >= 20 or stop:
                    break
                try:
                    hit = coll.find_one({"_id": oid}, {"_id": 1}) is not None
                except Exception as e:  # keep polling: FerretDB is busy
                    sys.stderr.write("mongo poll: %s\n" % e)
                    break
                now = int(time.time() * 1e6)
                if hit:
                    seen[oid] = now
                    misses = 0
                else:
                    missed[oid] = now
                    misses += 1
            polls[0] += 1
            d = interval - (time.time() - t0)
            if d > 0:
                time.sleep(d)

    workers = [threading.Thread(target=poll, args=(ids[t::threads],),
                                daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        time.sleep(0.5)
    with open(out_path, "w") as f:
        for k, t in seen.items():
            f.write("%s %d %d\n" % (k, t, missed.get(k, 0)))
    sys.stdout.write("polls %d seen %d of %d\n" % (polls[0], len(seen),
                                                     len(ids)))


# ---------------------------------------------------------------- sampler

def read_proc(pid):
    """(cpu seconds, rss bytes, hwm bytes) of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss = hwm = 0
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    rss = int(ln.split()[1]) * 1024
                elif ln.startswith("VmHWM:"):
                    hwm = int(ln.split()[1]) * 1024
        return cpu, rss, hwm
    except (OSError, ValueError, IndexError):
        return None


class Sampler(threading.Thread):
    """Every 0.5 s: CPU and memory of the named processes. Names can be
    added while it runs (the driver's children come and go)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pids = {}                    # name -> set of pids
        self.samples = []                 # (wall, {name: cpu}, {name: rss})
        self.peak_rss = collections.Counter()
        self.hwm = {}                     # name -> sum of its pids' HWM
        self.pid_hwm = {}
        self.cpu_done = collections.Counter()   # cpu of exited pids
        self.last = {}                    # pid -> last cpu
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def watch(self, name, pid):
        with self.lock:
            self.pids.setdefault(name, set()).add(pid)

    def sample(self):
        with self.lock:
            rss = collections.Counter()
            for name, pids in self.pids.items():
                for pid in list(pids):
                    v = read_proc(pid)
                    if v is None:
                        # exited: keep the CPU it used
                        self.cpu_done[name] += self.last.pop(pid, 0)
                        pids.discard(pid)
                        continue
                    self.last[pid] = v[0]
                    rss[name] += v[1]
                    self.pid_hwm[(name, pid)] = v[2]
            cpu = collections.Counter(self.cpu_done)
            for name, pids in self.pids.items():
                cpu[name] += sum(self.last.get(p, 0) for p in pids)
            for name in rss:
                self.peak_rss[name] = max(self.peak_rss[name], rss[name])
            hwm = collections.Counter()
            for (name, pid), v in self.pid_hwm.items():
                hwm[name] += v
            self.hwm = dict(hwm)
            self.samples.append((time.time(), dict(cpu), dict(rss)))

    def run(self):
        while not self.stopping.wait(0.5):
            self.sample()

    def cpu_between(self, t0, t1):
        """CPU seconds per name between the samples nearest t0 and t1."""
        if not self.samples:
            return {}
        ts = [s[0] for s in self.samples]
        i = max(0, bisect.bisect_left(ts, t0) - 1)
        j = min(len(ts) - 1, bisect.bisect_left(ts, t1))
        a, b = self.samples[i][1], self.samples[j][1]
        wall = self.samples[j][0] - self.samples[i][0]
        out = {}
        for name in b:
            used = b[name] - a.get(name, 0)
            out[name] = dict(cpu_s=round(used, 2),
                             cores=round(used / wall, 2) if wall else 0)
        return out


# ---------------------------------------------------------------- the sale

class Sale:
    """The workload, generated from --seed, with an independent model of
    the activity rules of RULES.md to predict every PlaceOrder decision."""

    def __init__(self, a):
        self.a = a
        rnd = random.Random(a.seed)
        self.rnd = rnd
        self.v_setup = V0
        self.v_warm = V0 + 60_000
        self.v_burst = self.v_warm + a.warmup_seconds * 1000 + 1000
        self.acts = {}
        self.acts["hot"] = dict(price=9900, stock=a.hot_stock, limit=2,
                                start=self.v_burst,
                                end=self.v_burst + 3_600_000)
        for k in range(1, a.cold_activities + 1):
            self.acts["cold%d" % k] = dict(price=1990 + 500 * k,
                                           stock=a.cold_stock, limit=5,
                                           start=self.v_warm - 1000,
                                           end=self.v_burst + DAY)
        self.cold = [k for k in self.acts if k != "hot"]
        self.users = ["u%07d" % i for i in range(a.users)]
        n_prom = max(5, a.users // 100)
        self.promoters = ["p%05d" % i for i in range(n_prom)]
        self.tops = ["t%04d" % i for i in range(max(2, n_prom // 10))]
        self.parent = {}
        # orders: (index, order_id, activity, user, qty, ts, planned_s)
        self.orders = []
        n_warm = int(a.warmup_rate * a.warmup_seconds)
        self.n_warm = n_warm
        for i in range(n_warm):
            if self.cold and rnd.random() < 0.9:
                act = rnd.choice(self.cold)
            else:
                act = "hot"              # too early: NOT_STARTED
            self._order(i, act, self.v_warm + i * 1000 // a.warmup_rate,
                        i / a.warmup_rate)
        burst0 = a.warmup_seconds + 1.0   # a 1 s pause before the burst
        self.burst_offset = burst0
        # --burst-rate 0: no pacing, every line due at once (a backlog);
        # the virtual clock still advances 20,000 orders a second
        vrate = a.burst_rate or 20000
        for j in range(a.orders):
            act = "hot"
            if self.cold and rnd.random() < a.cold_share:
                act = rnd.choice(self.cold)
            self._order(n_warm + j, act,
                        self.v_burst + j * 1000 // vrate,
                        burst0 + (j / a.burst_rate if a.burst_rate else 0))
        self.v_end = self.orders[-1][5] if self.orders else self.v_burst
        self.model()

    def _order(self, i, act, ts, planned):
        rnd = self.rnd
        # a skewed choice: some users click far more than others
        u = self.users[int(len(self.users) * rnd.random() ** 1.6)]
        r = rnd.random()
        qty = 0 if r < self.a.bad_share else (2 if r < 0.15 else 1)
        self.orders.append((i, "o%08d" % i, act, u, qty, ts, planned))

    def setup_lines(self):
        out = []
        for k, v in self.acts.items():
            out.append(dict(type="CreateActivity", command_id="ca-" + k,
                            ts_ms=self.v_setup, activity_id=k,
                            sku="SKU-" + k.upper(), price_cents=v["price"],
                            stock=v["stock"], per_user_limit=v["limit"],
                            start_ms=v["start"], end_ms=v["end"],
                            pay_timeout_ms=PAY_TIMEOUT,
                            auto_receive_ms=AUTO_RECEIVE, freeze_ms=FREEZE,
                            commission_bps=BPS))
        rnd = random.Random(self.a.seed + 1)
        t = self.v_setup + 1000
        for p in self.promoters:
            top = rnd.choice(self.tops)
            self.parent[p] = top
            out.append(dict(type="BindReferrer", ts_ms=t, user_id=p,
                            referrer_id=top))
        t += 1000
        for u in self.users:
            if rnd.random() < self.a.referred_share:
                p = rnd.choice(self.promoters)
                self.parent[u] = p
                out.append(dict(type="BindReferrer", ts_ms=t, user_id=u,
                                referrer_id=p))
        t += 1000
        # value faults the rules reject: SELF, ALREADY_BOUND, CYCLE
        bound = [u for u in self.users if u in self.parent]
        out.append(dict(type="BindReferrer", ts_ms=t, user_id=self.users[0],
                        referrer_id=self.users[0]))
        if bound:
            u = bound[0]
            other = [p for p in self.promoters if p != self.parent[u]][0]
            out.append(dict(type="BindReferrer", ts_ms=t, user_id=u,
                            referrer_id=other))
        p0 = self.promoters[0]
        out.append(dict(type="BindReferrer", ts_ms=t,
                        user_id=self.parent[p0], referrer_id=p0))
        self.expect_ref = dict(bound=len(self.parent), rejected=dict(
            SELF=1, ALREADY_BOUND=1 if bound else 0, CYCLE=1))
        return [json.dumps(x, separators=(",", ":")) + "\n" for x in out]

    def model(self):
        """RULES.md "Activity", PlaceOrder checks 3-7, in send order (the
        per-activity order is the partition order)."""
        rem = {k: v["stock"] for k, v in self.acts.items()}
        active = collections.Counter()
        self.decision = {}
        self.reasons = collections.Counter()
        self.accepted = collections.Counter()
        for (i, oid, act, u, qty, ts, _) in self.orders:
            v = self.acts[act]
            if qty < 1:
                r = "INVALID_QTY"
            elif ts < v["start"]:
                r = "NOT_STARTED"
            elif ts >= v["end"]:
                r = "ENDED"
            elif active[(act, u)] + qty > v["limit"]:
                r = "LIMIT_EXCEEDED"
            elif rem[act] == 0:
                r = "SOLD_OUT"
            elif rem[act] < qty:
                r = "INSUFFICIENT_STOCK"
            else:
                r = "ACCEPTED"
                rem[act] -= qty
                active[(act, u)] += qty
                self.accepted[act] += 1
            self.decision[oid] = r
            self.reasons[r] += 1

    def line(self, o, send_us):
        i, oid, act, u, qty, ts, _ = o
        return ('{"type":"PlaceOrder","command_id":"F%dx%d","ts_ms":%d,'
                '"order_id":"%s","activity_id":"%s","user_id":"%s",'
                '"qty":%d}\n' % (send_us, i, ts, oid, act, u, qty))

    def lua_lines(self):
        """The same sale for bench_lua_seckill: the CreateActivity lines
        and every PlaceOrder in send order (its script checks time, qty
        and the per-user limit in RULES.md's order too)."""
        out = self.setup_lines()[:len(self.acts)]
        for o in self.orders:
            out.append(self.line(o, 0))
        return out

    def after_sale(self, accepted):
        """accepted: {order_id: (activity, user, qty, amount, placed_ms)}
        from the event log. Returns (lines, expectations)."""
        rnd = random.Random(self.a.seed + 2)
        a = self.a
        cmds = []        # (ts, seq, dict)
        seq = [0]

        def add(ts, **kw):
            seq[0] += 1
            kw["ts_ms"] = ts
            cmds.append((ts, seq[0], kw))
        paid, unpaid = [], []
        for oid in sorted(accepted, key=lambda o: accepted[o][4]):
            (paid if rnd.random() < a.pay_share else unpaid).append(oid)
        exp = dict(paid=0, paid_cents=0, refunded_cents=0, cancelled_user=0,
                   cancelled_timeout=0, refunded_full=0, settled=0,
                   released_qty=collections.Counter(),
                   accrued=0, reversed=0, settled_comm=0,
                   rejected=collections.Counter())
        tick1 = self.v_end + PAY_TIMEOUT + 60_000
        for oid in paid:
            act, u, qty, amount, placed = accepted[oid]
            t = placed + rnd.randrange(1000, PAY_TIMEOUT // 2)
            r = rnd.random()
            if r < 0.01:
                add(t - 500, type="ConfirmPayment", order_id=oid,
                    payment_id="pw-" + oid, amount_cents=1)
                exp["rejected"]["ConfirmPayment AMOUNT_MISMATCH"] += 1
            add(t, type="ConfirmPayment", order_id=oid,
                payment_id="pay-" + oid, amount_cents=amount)
            if 0.01 <= r < 0.03:     # the provider retries: ignored
                add(t + 2000, type="ConfirmPayment", order_id=oid,
                    payment_id="pay-" + oid, amount_cents=amount)
            elif 0.03 <= r < 0.035:  # a second payment: needs a refund
                add(t + 3000, type="ConfirmPayment", order_id=oid,
                    payment_id="pay2-" + oid, amount_cents=amount)
                exp["rejected"]["ConfirmPayment DUPLICATE_PAYMENT"] += 1
            exp["paid"] += 1
            exp["paid_cents"] += amount
        for n, oid in enumerate(unpaid):
            act, u, qty, amount, placed = accepted[oid]
            exp["released_qty"][act] += qty
            if rnd.random() < 0.1:
                add(placed + rnd.randrange(1000, PAY_TIMEOUT // 2),
                    type="CancelOrder", order_id=oid, user_id=u)
                exp["cancelled_user"] += 1
            else:
                exp["cancelled_timeout"] += 1
                if n % 200 == 0:     # pays after the deadline
                    add(tick1 + 1000, type="ConfirmPayment", order_id=oid,
                        payment_id="late-" + oid, amount_cents=amount)
                    exp["rejected"]["ConfirmPayment ORDER_CANCELLED"] += 1
        if paid:                     # someone else tries to cancel
            oid = paid[0]
            add(accepted[oid][4] + PAY_TIMEOUT // 2 + 10, type="CancelOrder",
                order_id=oid, user_id="intruder")
            exp["rejected"]["CancelOrder NOT_OWNER"] += 1
        add(tick1, type="Tick")
        t_ref = tick1 + 3_600_000
        refunded = {}
        for oid in paid:
            r = rnd.random()
            amount = accepted[oid][3]
            if r < a.refund_share / 2:
                refunded[oid] = amount
                add(t_ref, type="RefundOrder", order_id=oid,
                    refund_id="rf-" + oid, amount_cents=amount)
            elif r < a.refund_share:
                refunded[oid] = amount // 3
                add(t_ref, type="RefundOrder", order_id=oid,
                    refund_id="rf-" + oid, amount_cents=amount // 3)
                if len(refunded) % 50 == 1:    # too much on top
                    add(t_ref + 1, type="RefundOrder", order_id=oid,
                        refund_id="rf2-" + oid, amount_cents=amount)
                    exp["rejected"]["RefundOrder EXCEEDS_PAID"] += 1
            elif r < a.refund_share + a.receipt_share:
                add(t_ref + 3_600_000, type="ConfirmReceipt", order_id=oid)
        tick2 = self.v_end + 30 * DAY
        add(tick2, type="Tick")
        if paid:
            oid = [o for o in paid if o not in refunded][0:1]
            if oid:
                add(tick2 + 1000, type="RefundOrder", order_id=oid[0],
                    refund_id="late-rf-" + oid[0],
                    amount_cents=accepted[oid[0]][3])
                exp["rejected"]["RefundOrder WINDOW_CLOSED"] += 1
        # the expected end state (RULES.md "Order lifecycle", "Commission")
        for oid in paid:
            act, u, qty, amount, placed = accepted[oid]
            rf = refunded.get(oid, 0)
            exp["refunded_cents"] += rf
            full = rf == amount
            exp["refunded_full"] += full
            exp["settled"] += not full
            b, level = u, 0
            while level < len(BPS) and b in self.parent:
                b = self.parent[b]
                acc = amount * BPS[level] // 10000
                level += 1
                if acc == 0:
                    continue
                rev = acc if full else acc * rf // amount
                exp["accrued"] += acc
                exp["reversed"] += rev
                exp["settled_comm"] += acc - rev
        exp["final"] = {}
        for oid in paid:
            exp["final"][oid] = ("REFUNDED" if refunded.get(oid) ==
                                 accepted[oid][3] else "SETTLED")
        for oid in unpaid:
            exp["final"][oid] = "CANCELLED"
        exp["paid_orders"] = paid
        cmds.sort(key=lambda c: (c[0], c[1]))
        lines = [json.dumps(c[2], separators=(",", ":")) + "\n"
                 for c in cmds]
        return lines, exp


# ------------------------------------------------------------- the runner

def pct(xs, q):
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(q * len(xs) + 0.999999) - 1))
    return xs[k]


def lat_summary(ms):
    ms = sorted(ms)
    return dict(n=len(ms), p50_ms=r1(pct(ms, 0.5)), p99_ms=r1(pct(ms, 0.99)),
                p999_ms=r1(pct(ms, 0.999)), max_ms=r1(ms[-1] if ms else None))


def r1(x):
    return None if x is None else round(x, 1)


class Run:
    def __init__(self, a):
        self.a = a
        self.tag = "fs%d" % random.SystemRandom().randrange(10 ** 8)
        self.ordo = os.path.join(a.build, "runtime", "cli", "ordo")
        self.boot = os.environ.get("ORDO_KAFKA_BOOTSTRAP_SERVERS",
                                   "127.0.0.1:9092")
        self.mongo_uri = os.environ.get("ORDO_MONGO_URI",
                                        "mongodb://127.0.0.1:27017/")
        self.rhost = os.environ.get("ORDO_REDIS_HOST", "127.0.0.1")
        self.rport = int(os.environ.get("ORDO_REDIS_PORT", "6379"))
        self.stack_dir = os.environ.get("ORDO_STACK_DIR",
                                        os.path.join(ROOT, ".stack"))
        self.rprefix = self.tag + ":"
        self.x = ["-X", "topic.prefix=%s." % self.tag,
                  "-X", "group.prefix=%s." % self.tag,
                  "-X", "mongo.db=%s" % self.tag,
                  "-X", "mongo.uri=%s" % self.mongo_uri,
                  "-X", "redis.host=%s" % self.rhost,
                  "-X", "redis.port=%d" % self.rport,
                  "-X", "redis.prefix=%s" % self.rprefix,
                  "-X", "kafka.bootstrap.servers=%s" % self.boot,
                  "-X", "topic.partitions=%d" % a.partitions,
                  # virtual time: the schedule sends its own Ticks, no
                  # wall-clock ones (docs/decisions/0008)
                  "-X", "tick.interval.ms=0"]
        for kv in a.X:
            self.x += ["-X", kv]
        self.out = a.out or os.path.join(
            ROOT, "bench", "out", "flashsale-" + time.strftime(
                "%Y%m%d-%H%M%S"))
        os.makedirs(self.out, exist_ok=True)
        self.res = dict(tag=self.tag, args=vars(a), checks={},
                        machine=machine())
        self.children = []
        self.phases = []              # (name, {process: cpu}) of baselines
        self.tool_rss = {}
        self.sampler = Sampler()
        self.notify_saved = None
        self.ordo_proc = None

    # -- helpers
    def ordo_cmd(self, *args, **kw):
        return subprocess.run([self.ordo] + self.x + list(args), **kw)

    def wait_stages(self, stages, timeout, what):
        t = time.time()
        log("waiting for %s (ordo wait, at most %d s)" % (what, timeout))
        while True:
            left = timeout - (time.time() - t)
            if left <= 0:
                log("%s: not caught up after %d s" % (what, timeout))
                return False
            step = int(min(30, max(1, left)))
            p = self.ordo_cmd("wait", "--timeout", str(step), *stages,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
            if p.returncode == 0:
                log("%s: caught up in %.1f s" % (what, time.time() - t))
                return True
            if self.ordo_proc.poll() is not None:
                raise RuntimeError("ordo run exited with status %d, see %s"
                                   % (self.ordo_proc.returncode,
                                      self.ordo_log))
            log("%s: still behind after %.0f s" % (what, time.time() - t))

    def stack_pid(self, name):
        try:
            with open(os.path.join(self.stack_dir, name,
                                   name + ".pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            pat = {"kafka": "kafka.Kafka", "ferretdb": "ferretdb",
                   "redis": "redis-server"}[name]
            p = subprocess.run(["pgrep", "-f", pat], capture_output=True,
                               text=True).stdout.split()
            return int(p[0]) if p else None

    def note_broker_age(self, pid):
        """A broker started minutes ago is still compiling its hot paths:
        its JIT took a quarter of the box through the first sale after a
        start (bench/RESULTS.md "Session 9"). Said, not corrected."""
        up = subprocess.run(["ps", "-o", "etimes=", "-p", str(pid)],
                            capture_output=True, text=True).stdout.strip()
        if up.isdigit():
            self.res["machine"]["broker_up_s"] = int(up)
            if int(up) < 600:
                log("the broker started %s s ago: its JIT may still compete "
                    "with this sale (a second run is steadier)" % up)

    def note_other_ordo(self):
        """Other ordo processes share the box: the stack's app that
        scripts/demo leaves running (`ordo run` and `ordo dash`, which
        scrapes every 2 s) took 0.12 s of CPU in 7 s of an unpaced
        sale (bench/RESULTS.md "Session 32"). Said, not stopped."""
        me = os.path.realpath(self.ordo)
        others = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                exe = os.readlink("/proc/%s/exe" % pid)
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if os.path.basename(exe) != "ordo":
                continue
            # the command: the first word that is not an option or the
            # value of one (-c FILE, -X key=value, --log-level L)
            words, cmd = iter(argv[1:]), "?"
            for w in words:
                if w in (b"-c", b"-X", b"--log-level"):
                    next(words, None)
                elif w and not w.startswith(b"-"):
                    cmd = w.decode(errors="replace")
                    break
            others.append("%s (ordo %s%s)" % (
                pid, cmd, "" if exe == me else ", another build"))
        self.res["machine"]["other_ordo"] = others
        if others:
            log("%d other ordo process(es) running, sharing the box: %s "
                "(the demo's: infra/stack app stop)"
                % (len(others), ", ".join(others)))

    # -- phases
    @staticmethod
    def fresh():
        log("--fresh: infra/stack reset, then infra/stack up")
        for c in ("reset", "up"):
            subprocess.run([os.path.join(ROOT, "infra", "stack"), c],
                           check=True, stdout=sys.stderr)

    def start(self):
        for name in ("kafka", "ferretdb", "redis"):
            pid = self.stack_pid(name)
            if pid:
                self.sampler.watch(name, pid)
            else:
                log("no pid found for %s: not sampled" % name)
            if name == "kafka" and pid:
                self.note_broker_age(pid)
        self.note_other_ordo()
        self.sampler.watch("driver", os.getpid())
        self.sampler.start()
        log("run tag %s (topics %s.*, groups %s.*, mongo db %s, redis "
            "prefix %s), output %s" % (self.tag, self.tag, self.tag,
                                       self.tag, self.rprefix, self.out))
        self.ordo_cmd("topics", check=True, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
        self.sub_out = os.path.join(self.out, "redis-first.txt")
        self.sub = None
        if self.a.redis_sample:
            self.start_subscriber()
        self.ordo_log = os.path.join(self.out, "ordo-run.log")
        self.ordo_proc = subprocess.Popen(
            [self.ordo] + self.x + ["run"],
            stdout=open(self.ordo_log, "w"), stderr=subprocess.STDOUT)
        self.children.append(self.ordo_proc)
        self.sampler.watch("ordo", self.ordo_proc.pid)

    def start_subscriber(self):
        # Keyspace notifications for hashes; the previous setting is put
        # back at the end (the Redis is shared).
        r = Resp(self.rhost, self.rport)
        self.notify_saved = r.call("CONFIG", "GET",
                                   "notify-keyspace-events")[1]
        flags = set(self.notify_saved) | set("Kh")
        if "A" in flags:
            flags.discard("h")
        r.call("CONFIG", "SET", "notify-keyspace-events", "".join(flags))
        r.close()
        self.sub = subprocess.Popen(
            [sys.executable, __file__, "_redis-sub", self.rhost,
             str(self.rport), "__keyspace@0__:%sorder:*%s" % (
                 self.rprefix, "0" * len(str(self.a.redis_sample)[1:])),
             self.sub_out], stdout=subprocess.PIPE, text=True)
        self.children.append(self.sub)
        assert self.sub.stdout.readline().strip() == "ready"
        self.sampler.watch("driver", self.sub.pid)

    def setup(self, sale):
        lines = sale.setup_lines()
        path = os.path.join(self.out, "setup.jsonl")
        open(path, "w").writelines(lines)
        log("setup: %d activities, %d BindReferrer" % (
            len(sale.acts), len(lines) - len(sale.acts)))
        self.ordo_cmd("produce", "--keep-ts", path, check=True,
                      stdout=subprocess.DEVNULL)
        if not self.wait_stages([], self.a.setup_timeout, "setup"):
            raise RuntimeError("setup not decided in time")

    def drive(self, sale):
        a = self.a
        # the MongoDB sample: accepted orders as the model predicts them
        acc = [o for o in sale.orders if sale.decision[o[1]] == "ACCEPTED"]
        step = max(1, len(acc) // a.mongo_sample) if a.mongo_sample else 0
        self.mongo_ids = [o[1] for o in acc[::step]] if step else []
        ids_path = os.path.join(self.out, "mongo-sample.txt")
        with open(ids_path, "w") as f:
            for o in acc[::step] if step else []:
                f.write("%s %.6f\n" % (o[1], o[6]))
        prod = subprocess.Popen([self.ordo] + self.x +
                                ["produce", "--keep-ts", "-"],
                                stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(
                                    self.out, "produce.log"), "w"))
        self.children.append(prod)
        self.sampler.watch("driver", prod.pid)
        time.sleep(1.0)          # let `ordo produce` connect
        t0 = time.time()
        self.t0 = t0
        if self.mongo_ids:
            self.poller = subprocess.Popen(
                [sys.executable, __file__, "_mongo-poll", self.mongo_uri,
                 self.tag, ids_path, os.path.join(self.out,
                                                  "mongo-first.txt"),
                 repr(t0), str(a.mongo_interval), str(a.mongo_timeout),
                 str(a.mongo_threads)],
                stdout=subprocess.PIPE, text=True)
            self.children.append(self.poller)
            self.sampler.watch("driver", self.poller.pid)
        else:
            self.poller = None
        n = len(sale.orders)
        self.send_us = [0] * n
        chunk_s = 0.005
        i = 0
        last_log = t0
        log("warm-up: %d orders at %d/s, then burst: %d orders at %d/s"
            % (sale.n_warm, a.warmup_rate, a.orders, a.burst_rate)
            + ("" if a.burst_rate else " (0: unpaced)"))
        w = prod.stdin
        while i < n:
            now = time.time()
            # everything whose planned time has come, at most 5 ms ahead
            j = i
            limit = now - t0 + chunk_s
            # at most 2000 lines a write, so send times stay honest when
            # the pipe pushes back
            while j < n and j - i < 2000 and sale.orders[j][6] <= limit:
                j += 1
            if j == i:
                d = t0 + sale.orders[i][6] - now
                time.sleep(min(max(d, 0.0005), chunk_s))
                continue
            us = int(now * 1e6)
            buf = []
            for k in range(i, j):
                buf.append(sale.line(sale.orders[k], us))
                self.send_us[k] = us
            w.write("".join(buf).encode())
            w.flush()
            i = j
            if now - last_log >= 2:
                last_log = now
                late = (now - t0) - sale.orders[i - 1][6]
                log("sending: %d/%d at t=%.1f s (%.2f s behind schedule)"
                    % (i, n, now - t0, max(0.0, late)))
        self.t_sent = time.time()
        w.close()
        prod.wait()
        self.t_produced = time.time()
        log("sent %d PlaceOrders in %.1f s; ordo produce exited %d"
            % (n, self.t_sent - t0, prod.returncode))
        if prod.returncode:
            raise RuntimeError("ordo produce failed: %s/produce.log"
                               % self.out)
        self.t_burst0 = t0 + sale.burst_offset

    def drain(self, sale):
        a = self.a
        if a.catch_up:
            # issue 15's aim: each tier's catch-up time from the start of
            # the burst's produce (the warm-up was decided by then). One
            # `ordo wait` per tier, all started at once, so that no tier's
            # figure includes another's wait.
            cu = self.res["catch_up"] = {}
            tiers = [("processors", ["activity", "order"], a.drain_timeout),
                     ("redis", ["redis"], a.drain_timeout),
                     ("mongo", ["mongo"], a.mongo_timeout)]
            procs = {n: subprocess.Popen(
                [self.ordo] + self.x + ["wait", "--timeout", str(tmo)] + st,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for n, st, tmo in tiers}
            for n, p in procs.items():
                self.children.append(p)
            left = dict(procs)
            ok = True
            while left:
                for n, p in list(left.items()):
                    if p.poll() is not None:
                        del left[n]
                        done = time.time()
                        cu[n + "_s"] = round(done - self.t_burst0, 2) \
                            if p.returncode == 0 else None
                        if n == "redis":
                            self.t_drained = done
                            ok = p.returncode == 0
                        if n == "mongo":
                            self.t_sale_mongo = done
                        log("the sale's %s: %s %.1f s after the burst's "
                            "start" % (n, "caught up" if p.returncode == 0
                                       else "NOT caught up",
                                       done - self.t_burst0))
                time.sleep(0.05)
            ok = ok and cu["processors_s"] is not None
            cu["ferretdb_cpu"] = self.sampler.cpu_between(
                self.t_burst0, self.t_sale_mongo).get("ferretdb")
            if ok:
                cu["ratio"] = round(max(cu["redis_s"], cu["mongo_s"] or 1e9)
                                    / cu["processors_s"], 2)
            log("catch-up from the burst's start: %s" % cu)
        else:
            ok = self.wait_stages(["activity", "order", "redis"],
                                  a.drain_timeout, "the sale (activity, "
                                  "order, redis)")
            self.t_drained = time.time()
        self.res["sale_drained"] = ok
        time.sleep(0.5)
        if self.sub:
            self.sub.send_signal(signal.SIGTERM)
            info = self.sub.communicate(timeout=60)[0].strip()
            log("redis subscriber: %s" % info)
            self.restore_notify()
        if self.poller:
            log("waiting for the MongoDB poller (at most %d s after the "
                "last send)" % a.mongo_timeout)
            info = self.poller.communicate()[0].strip()
            log("mongo poller: %s" % info)
        self.t_mongo_done = time.time()

    def restore_notify(self):
        if self.notify_saved is None:
            return
        try:
            r = Resp(self.rhost, self.rport)
            r.call("CONFIG", "SET", "notify-keyspace-events",
                   self.notify_saved)
            r.close()
            self.notify_saved = None
        except OSError as e:
            log("could not restore notify-keyspace-events: %s" % e)

    def after_sale(self, sale):
        a = self.a
        ev = self.replay("activity-events")
        accepted = {}
        for e in ev:
            if e["type"] == "StockReserved":
                act = sale.acts[e["activity_id"]]
                accepted[e["order_id"]] = (e["activity_id"], e["user_id"],
                                           e["qty"], e["qty"] * act["price"],
                                           e["ts_ms"])
        lines, exp = sale.after_sale(accepted)
        self.exp = exp
        path = os.path.join(self.out, "after-sale.jsonl")
        open(path, "w").writelines(lines)
        log("after-sale: %d commands (%d orders paid, %d unpaid), sent at "
            "full speed" % (len(lines), exp["paid"],
                            exp["cancelled_user"] + exp["cancelled_timeout"]))
        self.t_after0 = time.time()
        self.ordo_cmd("produce", "--keep-ts", path, check=True,
                      stdout=subprocess.DEVNULL)
        self.t_after_sent = time.time()
        self.n_after = len(lines)
        ok = self.wait_stages(["activity", "order", "referral",
                               "commission", "redis"], a.drain_timeout,
                              "the after-sale (processors, redis)")
        self.t_after_done = time.time()
        self.res["after_sale_drained"] = ok
        self.mongo_caught_up = self.wait_stages(
            ["mongo"], a.mongo_timeout, "the mongo projection (FerretDB)")
        self.t_mongo_caught = time.time()

    def stage_stats(self):
        st = {}
        for ln in open(self.ordo_log, errors="replace"):
            if "msg=stopped" in ln:
                m = re.search(r"stage=(\w+)", ln)
                st[m.group(1)] = {k: int(v) for k, v in re.findall(
                    r"(\w+)=(\d+)(?:\s|$)", ln)}
        return st

    def stop_ordo(self):
        if self.ordo_proc and self.ordo_proc.poll() is None:
            self.ordo_proc.send_signal(signal.SIGTERM)
            try:
                self.ordo_proc.wait(60)
            except subprocess.TimeoutExpired:
                self.ordo_proc.kill()
                self.ordo_proc.wait()
        # the whole lifetime of `ordo run`: VmHWM is its own peak
        self.sampler.sample()

    # -- reading the log
    def replay(self, topic):
        p = self.ordo_cmd("replay", topic, capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError("ordo replay %s: %s" % (topic, p.stderr))
        return [json.loads(x) for x in p.stdout.splitlines() if x.strip()]

    def kcat(self, topic):
        """[(create_time_ms, type, payload bytes)] of a topic, committed
        messages only."""
        p = subprocess.run(
            ["kcat", "-C", "-b", self.boot, "-t", "%s.%s" % (self.tag, topic),
             "-e", "-q", "-X", "isolation.level=read_committed",
             "-f", "%T %S %h\n%s\n"], capture_output=True)
        if p.returncode:
            raise RuntimeError("kcat %s: %s" % (topic, p.stderr[-500:]))
        b, pos, out = p.stdout, 0, []
        while pos < len(b):
            nl = b.index(b"\n", pos)
            head = b[pos:nl].split(b" ", 2)
            size = int(head[1])
            typ = b""
            for h in head[2].split(b","):
                if h.startswith(b"ordo.type="):
                    typ = h[10:]
            payload = b[nl + 1:nl + 1 + max(size, 0)]
            out.append((int(head[0]), typ.decode(), payload))
            pos = nl + 1 + max(size, 0) + 1
        return out


def machine():
    m = dict(cores=os.cpu_count())
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                m["cpu"] = ln.split(":", 1)[1].strip()
                break
        for ln in open("/proc/meminfo"):
            if ln.startswith("MemTotal"):
                m["mem_gb"] = round(int(ln.split()[1]) / 2 ** 20, 1)
        m["kernel"] = os.uname().release
        m["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return m


CMD_RE = re.compile(rb"F(\d{10,17})x(\d+)")


def analyse(run, sale):
    """Rates, latencies and the per-second series."""
    a, res = run.a, run.res
    n_warm = sale.n_warm
    by_oid = {o[1]: o[0] for o in sale.orders}
    # Kafka: commands in, decisions out, by message CreateTime (ms)
    log("reading the topics (kcat) for the rates")
    cmds = run.kcat("activity-commands")
    aev = run.kcat("activity-events")
    oev = run.kcat("order-events")
    cev = run.kcat("commission-events")
    sizes = dict(command=avg([len(p) for t, ty, p in cmds
                              if ty == "PlaceOrder"]),
                 activity_event=avg([len(p) for t, ty, p in aev]),
                 order_event=avg([len(p) for t, ty, p in oev]))
    res["message_bytes"] = sizes
    burst_cmd_ts, warm_cmd_ts = [], []
    written = {}                 # index -> command's CreateTime (ms)
    for t, ty, p in cmds:
        m = CMD_RE.search(p) if ty == "PlaceOrder" else None
        if m:
            (burst_cmd_ts if int(m.group(2)) >= n_warm
             else warm_cmd_ts).append(t)
            written[int(m.group(2))] = t
    decided = {}                 # index -> (event ms, reserved?)
    for t, ty, p in aev:
        m = CMD_RE.search(p)
        if m:
            decided[int(m.group(2))] = t
    opened = {}                  # index -> its OrderOpened's CreateTime
    for t, ty, p in oev:
        m = CMD_RE.search(p) if ty == "OrderOpened" else None
        if m:                    # the PlaceOrder's id: correlation_id
            opened[int(m.group(2))] = t
    t0_ms = run.t0 * 1000
    tb_ms = run.t_burst0 * 1000
    burst_dec = [decided[i] for i in decided if i >= n_warm]
    res["sale"] = dict(
        placeorders=len(sale.orders), warmup=n_warm, burst=a.orders,
        planned_rate=a.burst_rate,
        send_s=round(run.t_sent - run.t0 - sale.burst_offset, 2),
        sent_per_s=round(a.orders / max(1e-9, run.t_sent - run.t_burst0)),
        decided=len(decided))
    s = res["sale"]
    if burst_cmd_ts:
        span = (max(burst_cmd_ts) - min(burst_cmd_ts)) / 1000.0
        s["commands_in_per_s"] = round(len(burst_cmd_ts) / max(span, 1e-3))
    if burst_dec and burst_cmd_ts:
        span = (max(burst_dec) - min(burst_cmd_ts)) / 1000.0
        s["decisions_per_s"] = round(len(burst_dec) / max(span, 1e-3))
        s["decision_span_s"] = round(span, 2)
        # all events of the sale window: activity + order events
        lo, hi = min(burst_cmd_ts), max(burst_dec)
        allev = sum(1 for t, _, _ in aev if lo <= t <= hi) + \
            sum(1 for t, _, _ in oev if lo <= t <= hi)
        s["events_per_s"] = round(allev / max(span, 1e-3))
        # decided within 0.5 s of the last send: the offered rate decided
        s["kept_up"] = bool(a.burst_rate) and (
            max(burst_dec) - max(burst_cmd_ts) < 500 or
            s["decisions_per_s"] >= 0.97 * s.get("commands_in_per_s", 0))
    # after-sale: its commands were produced from run.t_after0 on
    ta = run.t_after0 * 1000
    after_ev = [t for t, _, _ in oev if t >= ta] + \
        [t for t, _, _ in cev if t >= ta] + \
        [t for t, _, _ in aev if t >= ta]
    if after_ev:
        span = (max(after_ev) - ta) / 1000.0
        res["after_sale"] = dict(
            commands=run.n_after, events=len(after_ev),
            produce_s=round(run.t_after_sent - run.t_after0, 2),
            events_per_s=round(len(after_ev) / max(span, 1e-3)),
            commands_per_s=round(run.n_after / max(span, 1e-3)))
    # latencies
    first = {}
    if os.path.exists(run.sub_out):
        for ln in open(run.sub_out):
            k, t = ln.split()
            if k in by_oid:
                first[by_oid[k]] = int(t)
    mfirst, mmissed = {}, {}
    mpath = os.path.join(run.out, "mongo-first.txt")
    if os.path.exists(mpath):
        for ln in open(mpath):
            k, t, miss = ln.split()
            mfirst[by_oid[k]] = int(t)
            if int(miss):
                mmissed[by_oid[k]] = int(miss)
    su = run.send_us

    def lat(d, idx):
        return [(d[i] - su[i]) / 1000.0 for i in idx if i in d]
    burst_idx = range(n_warm, len(sale.orders))
    warm_idx = range(0, n_warm)

    def dlat(idx):
        return [decided[i] - su[i] / 1000.0 for i in idx if i in decided]
    res["latency"] = dict(
        redis_burst=lat_summary(lat(first, burst_idx)),
        redis_warmup=lat_summary(lat(first, warm_idx)),
        decided_burst=lat_summary(dlat(burst_idx)),
        mongo_burst=lat_summary(lat(mfirst, [by_oid[o] for o in run.mongo_ids
                                             if by_oid[o] >= n_warm])),
        mongo_warmup=lat_summary(lat(mfirst, [by_oid[o] for o in
                                              run.mongo_ids
                                              if by_oid[o] < n_warm])))
    # the split: decided (the event's CreateTime) -> status in Redis,
    # which is the projection's part plus the processor's commit
    L = res["latency"]
    # the MongoDB figure is an upper bound (the poller's hit); the
    # document was still missing at the poller's last miss: a lower bound
    L["mongo_burst_missing"] = lat_summary(
        [max(0, mmissed.get(i, 0) - su[i]) / 1000.0
         for i in mfirst if i >= n_warm])
    # sent -> decided split at the command's CreateTime: the ingest's
    # part (`ordo produce`: pipe, linger) and the activity stage's part
    L["written_burst"] = lat_summary(
        [written[i] - su[i] / 1000.0 for i in burst_idx if i in written])
    L["written_to_decided_burst"] = lat_summary(
        [decided[i] - written[i] for i in burst_idx
         if i in decided and i in written])
    L["decided_to_redis_burst"] = lat_summary(
        [first[i] / 1000.0 - decided[i] for i in burst_idx
         if i in first and i in decided])
    # accepted orders' status comes from another event than rejected
    # attempts' (decision 0024): the two apart
    acc_idx = [i for i in burst_idx
               if sale.decision[sale.orders[i][1]] == "ACCEPTED"]
    rej_idx = [i for i in burst_idx
               if sale.decision[sale.orders[i][1]] != "ACCEPTED"]
    L["redis_burst_accepted"] = lat_summary(lat(first, acc_idx))
    L["redis_burst_rejected"] = lat_summary(lat(first, rej_idx))

    def dlat_redis(idx):
        return [first[i] / 1000.0 - decided[i] for i in idx
                if i in first and i in decided]
    L["decided_to_redis_accepted"] = lat_summary(dlat_redis(acc_idx))
    L["decided_to_redis_rejected"] = lat_summary(dlat_redis(rej_idx))
    # the order stage's OrderOpened written -> status in Redis: negative
    # when the reservation showed the order first (decision 0024)
    L["opened_to_redis_accepted"] = lat_summary(
        [first[i] / 1000.0 - opened[i] for i in acc_idx
         if i in first and i in opened])
    L["redis_burst"]["of"] = a.orders // a.redis_sample if a.redis_sample \
        else 0
    L["mongo_burst"]["of"] = sum(1 for o in run.mongo_ids
                                 if by_oid[o] >= n_warm)
    L["mongo_warmup"]["of"] = len(run.mongo_ids) - L["mongo_burst"]["of"]
    L["redis_warmup"]["of"] = n_warm // a.redis_sample if a.redis_sample \
        else 0
    # per-second series, t from the first send
    # the sale only: from the first send to the start of the after-sale
    nsec = max(1, int(run.t_after0 - run.t0))
    sent = [0] * nsec
    produced = [0] * nsec
    dec = [0] * nsec
    rvis = [0] * nsec
    mvis = [0] * nsec
    rlat = [[] for _ in range(nsec)]
    mlat = [[] for _ in range(nsec)]
    dlats = [[] for _ in range(nsec)]

    def sec(wall_s):
        k = int(wall_s - run.t0)
        return k if 0 <= k < nsec else None
    for i, us in enumerate(su):
        k = sec(us / 1e6)
        if k is not None:
            sent[k] += 1
            if i in decided:
                dlats[k].append(decided[i] - us / 1000.0)
            if i in first:
                rlat[k].append((first[i] - us) / 1000.0)
            if i in mfirst:
                mlat[k].append((mfirst[i] - us) / 1000.0)
    for t in burst_cmd_ts + warm_cmd_ts:
        k = sec(t / 1000.0)
        if k is not None:
            produced[k] += 1
    for t, _, _ in aev + oev:
        k = sec(t / 1000.0)
        if k is not None:
            dec[k] += 1
    for t in first.values():
        k = sec(t / 1e6)
        if k is not None:
            rvis[k] += 1
    for t in mfirst.values():
        k = sec(t / 1e6)
        if k is not None:
            mvis[k] += 1
    rows = []
    for k in range(nsec):
        rl, ml, dl = sorted(rlat[k]), sorted(mlat[k]), sorted(dlats[k])
        rows.append(dict(t=k, sent=sent[k], produced=produced[k],
                         decisions=dec[k], redis_visible=rvis[k],
                         mongo_visible=mvis[k],
                         decided_p99_ms=r1(pct(dl, 0.99)),
                         redis_p99_ms=r1(pct(rl, 0.99)),
                         mongo_p99_ms=r1(pct(ml, 0.99))))
    run.rows = rows
    s["peak_events_1s"] = max(dec) if dec else 0
    res["burst_starts_at_s"] = round(sale.burst_offset, 2)
    return aev, oev, cev


def avg(xs):
    return round(sum(xs) / len(xs)) if xs else 0


# ------------------------------------------------------------------ checks

def checks(run, sale):
    C = run.res["checks"]
    exp = run.exp

    def check(name, ok, detail):
        C[name] = dict(ok=bool(ok), detail=detail)
        if not ok:
            log("CHECK FAILED %s: %s" % (name, detail))
    log("checking the end state")
    aev = run.replay("activity-events")
    oev = run.replay("order-events")
    cev = run.replay("commission-events")
    rev = run.replay("referral-events")
    reserved, released = collections.Counter(), collections.Counter()
    accepted = collections.Counter()
    reasons = collections.Counter()
    for e in aev:
        if e["type"] == "StockReserved":
            reserved[e["activity_id"]] += e["qty"]
            accepted[e["activity_id"]] += 1
            reasons["ACCEPTED"] += 1
        elif e["type"] == "StockReleased":
            released[e["activity_id"]] += e["qty"]
        elif e["type"] == "CommandRejected" and \
                e["command_type"] == "PlaceOrder":
            reasons[e["reason"]] += 1
    r = Resp(run.rhost, run.rport)
    rstock = dict(zip(sale.acts, r.pipeline(
        [("GET", "%sstock:%s" % (run.rprefix, k)) for k in sale.acts])))
    from pymongo import MongoClient
    db = MongoClient(run.mongo_uri, serverSelectionTimeoutMS=10000)[run.tag]
    mrem = {d["_id"]: d.get("remaining") for d in db.activities.find()}
    over = {}
    for k, v in sale.acts.items():
        left = v["stock"] - reserved[k] + released[k]
        ok = reserved[k] - released[k] <= v["stock"] and \
            str(left) == str(rstock[k]) and \
            (not run.mongo_caught_up or mrem.get(k) == left)
        over[k] = dict(stock=v["stock"], reserved=reserved[k],
                       released=released[k], remaining_log=left,
                       redis=rstock[k], mongo=mrem.get(k), ok=ok)
    check("no_oversell", all(x["ok"] for x in over.values()),
          "per activity: reserved - released <= stock, and the remaining "
          "stock in Redis%s equals stock - reserved + released: %s" % (
              " and MongoDB" if run.mongo_caught_up else "", over))
    run.res["activities"] = over
    want = {k: v for k, v in sale.reasons.items() if v}
    check("decisions_match_model",
          dict(reasons) == want and dict(accepted) == dict(sale.accepted),
          "PlaceOrder outcomes in activity-events %s, model of RULES.md %s"
          % (dict(reasons), want))
    run.res["decisions"] = dict(reasons)
    exp_rel = exp["released_qty"]
    check("released_match_model", dict(released) == dict(exp_rel),
          "stock released by cancellations %s, expected %s"
          % (dict(released), dict(exp_rel)))
    # orders: final status from the log
    status, paid_c, refunded_c = {}, 0, 0
    orej = collections.Counter()
    for e in oev:
        t = e["type"]
        if t == "OrderOpened":
            status[e["order_id"]] = "PENDING_PAYMENT"
        elif t == "OrderPaid":
            status[e["order_id"]] = "PAID"
            paid_c += e["amount_cents"]
        elif t == "OrderReceived":
            status[e["order_id"]] = "RECEIVED"
        elif t == "OrderSettled":
            status[e["order_id"]] = "SETTLED"
        elif t == "OrderCancelled":
            status[e["order_id"]] = "CANCELLED"
        elif t == "OrderRefunded":
            refunded_c += e["amount_cents"]
            if e["full"]:
                status[e["order_id"]] = "REFUNDED"
        elif t == "CommandRejected":
            orej["%s %s" % (e["command_type"], e["reason"])] += 1
    final = collections.Counter(status.values())
    want_final = collections.Counter(exp["final"].values())
    check("order_lifecycle_matches_model",
          final == want_final and orej == exp["rejected"],
          "final statuses %s (expected %s); rejections %s (expected %s)"
          % (dict(final), dict(want_final), dict(orej),
             dict(exp["rejected"])))
    run.res["orders_final"] = dict(final)
    # money
    paid_orders = exp["paid_orders"]
    rh = r.pipeline([("HMGET", "%sorder:%s" % (run.rprefix, o), "status",
                      "amount_cents", "refunded_cents") for o in paid_orders])
    r_net = sum(int(h[1] or 0) - int(h[2] or 0) for h in rh)
    m_net = None
    if run.mongo_caught_up:
        m_net = 0
        for d in db.orders.find({"paid_ms": {"$gt": 0}},
                                {"amount_cents": 1, "refunded_cents": 1}):
            m_net += d["amount_cents"] - d["refunded_cents"]
    want_net = exp["paid_cents"] - exp["refunded_cents"]
    check("money_conserved",
          paid_c == exp["paid_cents"] and refunded_c == exp["refunded_cents"]
          and r_net == want_net and (m_net is None or m_net == want_net),
          "paid %d - refunded %d = %d cents in order-events; expected %d - "
          "%d; Redis orders %d; MongoDB orders %s" % (
              paid_c, refunded_c, paid_c - refunded_c, exp["paid_cents"],
              exp["refunded_cents"], r_net,
              m_net if m_net is not None else "(not caught up: skipped)"))
    run.res["money"] = dict(paid_cents=paid_c, refunded_cents=refunded_c)
    # commissions
    acc = sum(e["amount_cents"] for e in cev
              if e["type"] == "CommissionAccrued")
    sett = sum(e["amount_cents"] for e in cev
               if e["type"] == "CommissionSettled")
    revd = sum(e["amount_cents"] for e in cev
               if e["type"] == "CommissionReversed")
    bens = sorted({e["beneficiary_id"] for e in cev})
    eh = r.pipeline([("HMGET", "%searnings:%s" % (run.rprefix, b),
                      "pending_cents", "settled_cents", "reversed_cents")
                     for b in bens])
    rs = [sum(int(h[i] or 0) for h in eh) for i in range(3)]
    ms = None
    if run.mongo_caught_up:
        ms = [0, 0, 0]
        for d in db.earnings.find():
            for i, f in enumerate(("pending_cents", "settled_cents",
                                   "reversed_cents")):
                ms[i] += d.get(f, 0)
        bad = sum(
            1 for d in db.commissions.find()
            if d["status"] != "PENDING" and d["accrued_cents"] !=
            d["settled_cents"] + d["reversed_cents"])
    else:
        bad = 0
    ok = acc == exp["accrued"] and sum(rs) == acc and rs[0] == 0 and \
        rs[1] == exp["settled_comm"] and rs[2] == exp["reversed"] and \
        (ms is None or (ms == rs and bad == 0))
    check("commissions_conserved", ok,
          "accrued %d (expected %d) == pending + settled + reversed over "
          "earnings: Redis %s, MongoDB %s; settled %d, reversed %d in the "
          "events; expected settled %d, reversed %d, pending 0 after the "
          "settlement Tick%s" % (
              acc, exp["accrued"], rs, ms if ms else "(skipped)", sett, revd,
              exp["settled_comm"], exp["reversed"],
              "" if ms is None else "; closed entries not fully settled or "
              "reversed: %d" % bad))
    run.res["commissions"] = dict(accrued=acc, settled=sett, reversed=revd,
                                  beneficiaries=len(bens))
    nbound = sum(1 for e in rev if e["type"] == "ReferrerBound")
    rrej = collections.Counter(e["reason"] for e in rev
                               if e["type"] == "CommandRejected")
    check("referrals_match_model",
          nbound == sale.expect_ref["bound"] and
          rrej == collections.Counter({k: v for k, v in
                                       sale.expect_ref["rejected"].items()
                                       if v}),
          "%d bound, rejected %s; expected %d, %s" % (
              nbound, dict(rrej), sale.expect_ref["bound"],
              sale.expect_ref["rejected"]))
    # read models against the log, for a sample of order ids
    rnd = random.Random(5)
    placed = sorted(status)
    sample = rnd.sample(placed, min(len(placed), run.a.check_sample))
    rejected_ids = [o[1] for o in sale.orders
                    if sale.decision[o[1]] != "ACCEPTED"]
    rsample = rnd.sample(rejected_ids, min(len(rejected_ids),
                                           run.a.check_sample))
    rh = r.pipeline([("HMGET", "%sorder:%s" % (run.rprefix, o), "status",
                      "reason") for o in sample + rsample])
    bad = []
    for o, h in zip(sample, rh):
        if h[0] != status[o]:
            bad.append(("redis", o, h[0], status[o]))
    for o, h in zip(rsample, rh[len(sample):]):
        if h[0] != "REJECTED" or h[1] != sale.decision[o]:
            bad.append(("redis", o, h, sale.decision[o]))
    mchecked = 0
    if run.mongo_caught_up:
        docs = {}
        for i in range(0, len(sample), 500):
            for d in db.orders.find({"_id": {"$in": sample[i:i + 500]}},
                                    {"status": 1}):
                docs[d["_id"]] = d["status"]
        for o in sample:
            if docs.get(o) != status[o]:
                bad.append(("mongo", o, docs.get(o), status[o]))
        if db.orders.count_documents({"_id": {"$in": rsample}}):
            bad.append(("mongo", "a rejected attempt became a document"))
        mchecked = len(sample)
    check("read_models_agree", not bad,
          "%d placed and %d rejected order ids sampled: Redis%s against "
          "the event log; differences: %s" % (
              len(sample), len(rsample),
              " and MongoDB (%d)" % mchecked if mchecked else
              " (MongoDB not caught up: skipped)", bad[:10]))
    run.res["mongo_caught_up"] = run.mongo_caught_up
    r.close()


# ---------------------------------------------------------------- baselines

def run_tool(run, name, argv):
    """Runs a baseline tool; returns (exit status, stdout). Its own CPU
    comes from wait4's rusage (exact even for a short run), its peak RSS
    from VmHWM read every 20 ms; the services' from the sampler."""
    t0 = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE)
    run.sampler.watch(name, p.pid)
    hwm = [0]
    done = threading.Event()

    def watch_hwm():
        # VmHWM every 20 ms until it exits (wait4's ru_maxrss would
        # include this Python's image from before the exec)
        while not done.wait(0.02):
            v = read_proc(p.pid)
            if v:
                hwm[0] = max(hwm[0], v[2])
    w = threading.Thread(target=watch_hwm, daemon=True)
    w.start()
    out = p.stdout.read().decode(errors="replace")
    done.set()
    w.join()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    t1 = time.time()
    run.sampler.sample()
    cpu = run.sampler.cpu_between(t0, t1)
    used = ru.ru_utime + ru.ru_stime
    cpu[name] = dict(cpu_s=round(used, 2),
                     cores=round(used / max(t1 - t0, 1e-3), 2))
    run.tool_rss[name] = max(run.tool_rss.get(name, 0), hwm[0])
    run.phases.append((name, cpu))
    return p.returncode, out


def baselines(run, sale):
    a, res = run.a, run.res
    bdir = os.path.join(a.build, "bench")
    lua = os.path.join(bdir, "bench_lua_seckill")
    raw = os.path.join(bdir, "bench_kafka_raw")
    res["lua"] = res["kafka_raw"] = None
    if a.skip_baselines:
        log("baselines skipped (--skip-baselines)")
        res["baselines_skipped"] = "--skip-baselines"
        return
    if os.access(lua, os.X_OK):
        path = os.path.join(run.out, "lua-workload.jsonl")
        lines = sale.lua_lines()
        open(path, "w").writelines(lines)
        log("bench_lua_seckill on %d PlaceOrders (pipeline %d)" % (
            len(lines) - len(sale.acts), a.lua_pipeline))
        rc, out = run_tool(run, "bench_lua_seckill", [
            lua, "--host", run.rhost, "--port", str(run.rport), "--prefix",
            run.rprefix + "lua:", "--pipeline", str(a.lua_pipeline), path])
        try:
            res["lua"] = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError, AttributeError):
            log("bench_lua_seckill: no JSON line (exit %d)" % rc)
            res["lua"] = dict(error="exit %d, output %r" % (rc, out[-300:]))
        lua_acc = res["lua"].get("accepted")
        ordo = dict(run.res.get("decisions", {}))
        ordo_acc = ordo.pop("ACCEPTED", None)
        lua_rej = {k: v for k, v in (res["lua"].get("rejected") or
                                     {}).items() if v}
        ok = lua_acc == ordo_acc and lua_rej == ordo and \
            res["lua"].get("checks") == "ok"
        run.res["checks"]["accepted_equals_lua"] = dict(
            ok=ok,
            detail="on the same %d PlaceOrders: ordo accepted %s, rejected "
            "%s; Lua accepted %s, rejected %s, ignored %s, its own end-state "
            "checks %s" % (
                len(lines) - len(sale.acts), ordo_acc, ordo, lua_acc,
                lua_rej, res["lua"].get("ignored"),
                res["lua"].get("checks")))
        if not ok:
            log("CHECK FAILED accepted_equals_lua: %s" %
                run.res["checks"]["accepted_equals_lua"]["detail"])
    else:
        log("%s not built: the Lua baseline is skipped" % lua)
        res["lua"] = dict(skipped="%s not built" % lua)
    if os.access(raw, os.X_OK):
        res["kafka_raw"] = []
        sz = res.get("message_bytes", {})
        n = max(a.raw_messages, 10000)
        runs = [("commands, plain", sz.get("command") or 150, []),
                ("events, transactional", sz.get("activity_event") or 200,
                 ["--transactional", "--batch", str(a.raw_batch)])]
        for what, size, extra in runs:
            log("bench_kafka_raw: %s, %d messages of %d bytes" % (
                what, n, size))
            rc, out = run_tool(run, "bench_kafka_raw", [
                raw, "--bootstrap", run.boot, "--partitions",
                str(a.partitions), "--messages", str(n), "--size",
                str(size)] + extra)
            try:
                j = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError, AttributeError):
                j = dict(error="exit %d, output %r" % (rc, out[-300:]))
            j["what"] = what
            res["kafka_raw"].append(j)
    else:
        log("%s not built: the raw Kafka baseline is skipped" % raw)
        res["kafka_raw"] = dict(skipped="%s not built" % raw)


# ------------------------------------------------------------------ output

def fmt(x, unit=""):
    if x is None:
        return "-"
    if isinstance(x, float):
        return "%.1f%s" % (x, unit)
    if isinstance(x, int):
        return "{:,}{}".format(x, unit)
    return str(x) + unit


def report(run):
    res, a = run.res, run.a
    s = res.get("sale", {})
    L = res.get("latency", {})
    out = []
    p = out.append
    p("ordo flash-sale benchmark, run %s, %s" % (
        res["tag"], time.strftime("%Y-%m-%d %H:%M:%S")))
    m = res["machine"]
    p("machine: %s cores, %s, %s GB, load at start %s, broker up %s s" % (
        m.get("cores"), m.get("cpu"), m.get("mem_gb"),
        " ".join(m.get("loadavg_start", [])), fmt(m.get("broker_up_s"))))
    if m.get("other_ordo"):
        p("other ordo processes sharing the box: %s"
          % ", ".join(m["other_ordo"]))
    p("sale: %s users, %s PlaceOrders (%s warm-up at %s/s, %s burst at "
      "%s), hot stock %s, %d cold activities of %s, %d partitions" % (
          fmt(a.users), fmt(s.get("placeorders")), fmt(s.get("warmup")),
          fmt(a.warmup_rate), fmt(a.orders),
          "%s/s" % fmt(a.burst_rate) if a.burst_rate else "full speed",
          fmt(a.hot_stock), a.cold_activities, fmt(a.cold_stock),
          a.partitions))
    p("")
    p("%-46s %s" % ("what", "figure"))
    p("-" * 78)
    p("%-46s %s" % ("burst commands in (PlaceOrders produced)/s",
                    fmt(s.get("commands_in_per_s"))))
    p("%-46s %s" % ("  driver's achieved send rate/s",
                    fmt(s.get("sent_per_s"))))
    p("%-46s %s  (over %s s; busiest second of the sale: %s events)" % (
        "burst decisions/s (PlaceOrder, activity)",
        fmt(s.get("decisions_per_s")), fmt(s.get("decision_span_s")),
        fmt(s.get("peak_events_1s"))))
    p("%-46s %s" % ("  activity+order events/s in that window",
                    fmt(s.get("events_per_s"))))
    if s.get("kept_up"):
        p("  (ordo kept up with the offered rate: decisions/s is the rate "
          "sent, not ordo's")
        p("   capacity; raise --burst-rate to find the limit)")
    af = res.get("after_sale") or {}
    p("%-46s %s  (%s commands, %s events)" % (
        "after-sale events/s (pay, timeout, refund, settle)",
        fmt(af.get("events_per_s")), fmt(af.get("commands")),
        fmt(af.get("events"))))

    def latrow(name, d):
        if not d or not d.get("n"):
            p("%-46s -" % name)
            return
        p("%-46s p50 %s  p99 %s  p99.9 %s  max %s ms  (%s of %s)" % (
            name, fmt(d["p50_ms"]), fmt(d["p99_ms"]), fmt(d["p999_ms"]),
            fmt(d["max_ms"]), fmt(d["n"]), fmt(d.get("of", d["n"]))))
    latrow("sent -> decided (event written), burst", L.get("decided_burst"))
    latrow("  sent -> command written (ingest)", L.get("written_burst"))
    latrow("  command written -> decided (activity stage)",
           L.get("written_to_decided_burst"))
    latrow("sent -> status in Redis, burst", L.get("redis_burst"))
    latrow("decided -> status in Redis, burst (commit + projection)",
           L.get("decided_to_redis_burst"))
    latrow("  accepted orders", L.get("redis_burst_accepted"))
    latrow("  rejected attempts", L.get("redis_burst_rejected"))
    latrow("decided -> status in Redis, accepted orders",
           L.get("decided_to_redis_accepted"))
    latrow("decided -> status in Redis, rejected attempts",
           L.get("decided_to_redis_rejected"))
    latrow("OrderOpened written -> status in Redis",
           L.get("opened_to_redis_accepted"))
    latrow("sent -> status in Redis, warm-up", L.get("redis_warmup"))
    latrow("sent -> document in MongoDB, burst sample (poller's hit)",
           L.get("mongo_burst"))
    latrow("  lower bound: sent -> last seen missing",
           L.get("mongo_burst_missing"))
    latrow("sent -> document in MongoDB, warm-up sample",
           L.get("mongo_warmup"))
    lua = res.get("lua")
    if lua and "decisions_per_s" in lua:
        p("%-46s %s  (accepted %s, p50 %s  p99 %s  p99.9 %s us)" % (
            "Redis+Lua seckill decisions/s (pipelined)",
            fmt(lua.get("decisions_per_s")), fmt(lua.get("accepted")),
            fmt(lua.get("p50_us")), fmt(lua.get("p99_us")),
            fmt(lua.get("p999_us"))))
        if s.get("decisions_per_s") and lua.get("decisions_per_s"):
            p("%-46s %.3f  (Lua is %.1fx)%s" % (
                "ratio ordo/Lua decisions/s",
                s["decisions_per_s"] / lua["decisions_per_s"],
                lua["decisions_per_s"] / s["decisions_per_s"],
                "  ordo not saturated: a floor" if s.get("kept_up")
                else ""))
    else:
        p("%-46s %s" % ("Redis+Lua seckill", (lua or {}).get(
            "skipped") or (lua or {}).get("error") or
            res.get("baselines_skipped", "-")))
    raw = res.get("kafka_raw")
    if isinstance(raw, list):
        for j in raw:
            if "produce_msgs_per_s" in j:
                p("%-46s produce %s/s  consume %s/s  (%s B)" % (
                    "raw Kafka, " + j["what"],
                    fmt(j.get("produce_msgs_per_s")),
                    fmt(j.get("consume_msgs_per_s")), fmt(j.get("size"))))
            else:
                p("%-46s %s" % ("raw Kafka, " + j["what"], j.get("error")))
        pl = [j for j in raw if "produce_msgs_per_s" in j]
        note = "  (the offered rate, not ordo's limit)" \
            if s.get("kept_up") else ""
        if pl and s.get("commands_in_per_s"):
            p("%-46s %.1f %%%s" % ("ordo commands in / raw produce",
                                    100.0 * s["commands_in_per_s"] /
                                    pl[0]["produce_msgs_per_s"], note))
        if len(pl) > 1 and s.get("decisions_per_s"):
            p("%-46s %.1f %%%s" % ("ordo decisions / raw transactional "
                                    "produce", 100.0 * s["decisions_per_s"] /
                                    pl[1]["produce_msgs_per_s"], note))
    else:
        p("%-46s %s" % ("raw Kafka", (raw or {}).get("skipped") or
                        res.get("baselines_skipped", "-")))
    p("")
    p("CPU and memory, sampled every 0.5 s (phases: burst = first burst "
      "send to Redis")
    p("caught up; sale = warm-up to MongoDB sample seen; baselines: the "
      "tool's own CPU")
    p("from wait4). Kafka, FerretDB and Redis are shared: their CPU "
      "includes anyone")
    p("else's load, and VmHWM is since they started; driver = this script "
      "and its")
    p("children (ordo produce, Redis subscriber, MongoDB poller).")
    p("%-18s %-10s %9s %7s %12s %12s" % ("process", "phase", "cpu s",
                                         "cores", "peak RSS", "VmHWM"))
    ph = res.get("cpu", {})
    main = ("burst", "sale", "after-sale")
    phases = list(main) + [k for k in ph if k not in main]
    for name in ("ordo", "kafka", "ferretdb", "redis", "driver",
                 "bench_lua_seckill", "bench_kafka_raw"):
        for phase in phases:
            c = ph.get(phase, {}).get(name)
            if not c or (phase not in main and not c["cpu_s"]):
                continue
            p("%-18s %-10s %9.1f %7.2f %12s %12s" % (
                name, phase, c["cpu_s"], c["cores"],
                mb(res["memory"].get(name, {}).get("peak_rss")),
                mb(res["memory"].get(name, {}).get("vmhwm"))))
    st = res.get("stages") or {}
    if st:
        p("")
        p("ordo stages at stop (transactions/aborts, or events applied): " +
          ", ".join("%s %s" % (k, "%d/%d" % (v.get("transactions", 0),
                                             v.get("aborts", 0))
                               if "transactions" in v else
                               fmt(v.get("applied")))
                    for k, v in sorted(st.items())))
    p("")
    p("checks:")
    for k, v in res["checks"].items():
        p("  %-32s %s" % (k, "OK" if v["ok"] else "FAILED"))
        if not v["ok"] or a.verbose:
            p("      " + v["detail"][:600])
    if not res.get("mongo_caught_up", True):
        p("  (MongoDB had not caught up within --mongo-timeout: its "
          "comparisons were skipped)")
    p("")
    p("output: %s" % run.out)
    return "\n".join(out)


def mb(x):
    return "-" if not x else "%.0f MB" % (x / 2 ** 20)


def write_outputs(run):
    res = run.res
    rows = getattr(run, "rows", [])
    csv = os.path.join(run.out, "timeseries.csv")
    cols = ["t", "sent", "produced", "decisions", "redis_visible",
            "mongo_visible", "decided_p99_ms", "redis_p99_ms", "mongo_p99_ms"]
    with open(csv, "w") as f:
        f.write(",".join(cols) + "\n")
        for r in rows:
            f.write(",".join("" if r[c] is None else str(r[c])
                             for c in cols) + "\n")
    res["timeseries_csv"] = csv
    png = run.a.png and os.path.join(ROOT, "bench", "flashsale.png") or \
        os.path.join(run.out, "flashsale.png")
    if rows and shutil.which("gnuplot"):
        gp = os.path.join(run.out, "plot.gp")
        last = max([r["t"] for r in rows if r["sent"] or r["decisions"] or
                    r["redis_visible"] or r["mongo_visible"]] + [1])
        with open(gp, "w") as f:
            f.write("""set terminal pngcairo size 1100,560 font ",10"
set output '%s'
set datafile separator ','
set datafile columnheaders
set key below
set title "ordo flash sale: %s burst orders at %s (run %s)"
set xlabel 'seconds since the first PlaceOrder was sent'
set ylabel 'per second'
set y2label 'p99 latency, ms (log)'
set logscale y2
set y2tics
set ytics nomirror
set grid
set xrange [0:%d]
set arrow from %s, graph 0 to %s, graph 1 nohead dt 2 lc rgb 'gray'
plot '%s' using 1:2 with steps lw 2 title 'PlaceOrders sent', \\
     '' using 1:4 with steps lw 2 title 'decisions (activity+order events)', \\
     '' using 1:5 with steps lw 1 title 'statuses visible in Redis', \\
     '' using 1:7 axes x1y2 with linespoints pt 7 ps 0.5 title 'p99 sent->Redis (by send second)', \\
     '' using 1:8 axes x1y2 with linespoints pt 5 ps 0.5 title 'p99 sent->MongoDB (sample)'
""" % (png, "{:,}".format(run.a.orders),
                "{:,}/s".format(run.a.burst_rate) if run.a.burst_rate
                else "full speed (unpaced)",
                run.tag, last + 2, res.get("burst_starts_at_s", 0),
                res.get("burst_starts_at_s", 0), csv))
        p = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
        if p.returncode == 0:
            res["png"] = png
        else:
            log("gnuplot failed: %s" % p.stderr.strip()[:300])
    elif rows:
        log("gnuplot not found: no PNG (bench/flashsale installs it)")
    with open(os.path.join(run.out, "flashsale.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)


def cleanup(run):
    if run.a.keep:
        log("--keep: topics %s.*, MongoDB database %s and Redis keys %s* "
            "kept" % (run.tag, run.tag, run.rprefix))
        return
    try:
        r = Resp(run.rhost, run.rport)
        n = r.scan_delete(run.rprefix + "*") + \
            r.scan_delete("{" + run.rprefix + "*")
        r.close()
        log("deleted %d Redis keys of %s" % (n, run.rprefix))
    except Exception as e:
        log("redis cleanup: %s" % e)
    try:
        from pymongo import MongoClient
        MongoClient(run.mongo_uri,
                    serverSelectionTimeoutMS=10000).drop_database(run.tag)
        log("dropped MongoDB database %s" % run.tag)
    except Exception as e:
        log("mongo cleanup: %s" % e)
    try:
        from kafka.admin import KafkaAdminClient
        adm = KafkaAdminClient(bootstrap_servers=run.boot)
        mine = [t for t in adm.list_topics()
                if t.startswith(run.tag + ".")]
        if mine:
            adm.delete_topics(mine)
        try:
            groups = [g["group_id"] for g in adm.list_groups()
                      if g["group_id"].startswith(run.tag + ".")]
            if groups:
                adm.delete_groups(groups)
        except Exception as e:
            log("consumer groups not deleted: %s" % e)
            groups = []
        adm.close()
        log("deleted %d topics and %d consumer groups of %s" % (
            len(mine), len(groups), run.tag))
    except Exception as e:
        log("kafka cleanup: %s" % e)


# -------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench/flashsale", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2])
    g = ap.add_argument_group("scale")
    g.add_argument("--users", type=int, default=None,
                   help="distinct users (default orders/4, at least 100)")
    g.add_argument("--orders", type=int, default=20000,
                   help="PlaceOrders in the burst (default 20000)")
    g.add_argument("--burst-rate", type=int, default=2000,
                   help="burst send rate, PlaceOrders/s (default 2000); 0 "
                   "sends the burst unpaced, as fast as `ordo produce` takes "
                   "it: decisions/s is then ordo's capacity and the "
                   "latencies are queueing")
    g.add_argument("--warmup-rate", type=int, default=200,
                   help="warm-up send rate (default 200/s)")
    g.add_argument("--warmup-seconds", type=int, default=5,
                   help="warm-up length (default 5)")
    g.add_argument("--hot-stock", type=int, default=1000,
                   help="units of the hot activity (default 1000)")
    g.add_argument("--cold-activities", type=int, default=4,
                   help="cold activities (default 4)")
    g.add_argument("--cold-stock", type=int, default=2000,
                   help="units of each cold activity (default 2000)")
    g.add_argument("--cold-share", type=float, default=0.1,
                   help="share of burst orders on cold activities (0.1)")
    g.add_argument("--referred-share", type=float, default=0.2,
                   help="share of users bound to a promoter (0.2)")
    g.add_argument("--bad-share", type=float, default=0.001,
                   help="share of PlaceOrders with qty 0 (0.001)")
    g.add_argument("--pay-share", type=float, default=0.7,
                   help="share of accepted orders paid (0.7)")
    g.add_argument("--refund-share", type=float, default=0.1,
                   help="share of paid orders refunded, half in full (0.1)")
    g.add_argument("--receipt-share", type=float, default=0.3,
                   help="share of paid orders confirmed received (0.3)")
    g.add_argument("--seed", type=int, default=7,
                   help="workload seed (default 7)")
    g.add_argument("--partitions", type=int,
                   default=int(os.environ.get("ORDO_PARTITIONS", "6")),
                   help="partitions of the run's topics (ORDO_PARTITIONS "
                   "or 6)")
    g = ap.add_argument_group("measuring")
    g.add_argument("--mongo-sample", type=int, default=500,
                   help="accepted orders polled in MongoDB (default 500; "
                   "0: none). Each poll is a FerretDB query of ~2 ms of "
                   "its CPU: 2,000 in a 5 s burst took most of a core")
    g.add_argument("--redis-sample", type=int, default=10,
                   choices=(0, 1, 10, 100),
                   help="watch 1 in N orders in Redis (ids ending in "
                   "'0' for 10; default 10; 0: none, and no keyspace "
                   "notifications). Every watched order is a "
                   "keyspace notification parsed in Python, on the box "
                   "it measures")
    g.add_argument("--mongo-threads", type=int, default=2,
                   help="parallel MongoDB pollers (default 2)")
    g.add_argument("--mongo-interval", type=float, default=0.15,
                   help="MongoDB poll interval, s (0.15)")
    g.add_argument("--mongo-timeout", type=int, default=300,
                   help="how long to wait for MongoDB after the last send, "
                   "and for the mongo projection to catch up (300 s)")
    g.add_argument("--setup-timeout", type=int, default=600,
                   help="wait for the setup to be decided and projected "
                   "(600 s)")
    g.add_argument("--drain-timeout", type=int, default=600,
                   help="wait for processors and Redis after each phase "
                   "(600 s)")
    g.add_argument("--catch-up", action="store_true",
                   help="after the burst, one `ordo wait` each for the "
                   "processors, redis and mongo, started together; report "
                   "when each caught up, from the burst's start, and "
                   "FerretDB's CPU (issue 15's 1.5x aim)")
    g.add_argument("--check-sample", type=int, default=2000,
                   help="order ids compared between the log and the read "
                   "models (2000 placed + 2000 rejected)")
    g.add_argument("--no-reconcile", action="store_true",
                   help="skip `ordo reconcile --skip-read-models`")
    g.add_argument("--reconcile-full", action="store_true",
                   help="full `ordo reconcile` (rebuilds both read models: "
                   "slow on FerretDB)")
    g = ap.add_argument_group("baselines")
    g.add_argument("--skip-baselines", action="store_true",
                   help="do not run bench_lua_seckill / bench_kafka_raw")
    g.add_argument("--lua-pipeline", type=int, default=64,
                   help="bench_lua_seckill --pipeline (64)")
    g.add_argument("--raw-messages", type=int, default=0,
                   help="bench_kafka_raw --messages (default: --orders, "
                   "at least 200000)")
    g.add_argument("--raw-batch", type=int, default=2000,
                   help="bench_kafka_raw --batch for the transactional run "
                   "(2000)")
    g = ap.add_argument_group("running")
    g.add_argument("--build", default=os.path.join(ROOT, "build-rel"),
                   help="build directory with runtime/cli/ordo and bench/ "
                   "(build-rel)")
    g.add_argument("--out", help="output directory (default "
                   "bench/out/flashsale-<time>/)")
    g.add_argument("--png", action="store_true",
                   help="write the plot to bench/flashsale.png (else into "
                   "the output directory)")
    g.add_argument("--fresh", action="store_true",
                   help="infra/stack reset and infra/stack up first: "
                   "DELETES ALL STACK DATA of everyone on this machine; for "
                   "final figures only")
    g.add_argument("--keep", action="store_true",
                   help="keep the run's topics, MongoDB database and Redis "
                   "keys")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="print every check's detail")
    g.add_argument("-X", action="append", default=[], metavar="KEY=VALUE",
                   help="ordo configuration for every ordo command (e.g. "
                   "-X batch.max=10000)")
    a = ap.parse_args(argv)
    if a.users is None:
        a.users = max(100, a.orders // 4)
    if not a.raw_messages:
        a.raw_messages = max(a.orders, 200000)
    if a.orders < 1 or a.burst_rate < 0 or a.warmup_rate < 1 or \
            a.users < 10 or a.hot_stock < 1 or a.cold_stock < 1:
        ap.error("--orders, rates, --users (>= 10) and stocks must be "
                 "positive")
    return a


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_redis-sub":
        h, port, pat, out = sys.argv[2:6]
        return redis_subscriber(h, int(port), pat, out)
    if len(sys.argv) > 1 and sys.argv[1] == "_mongo-poll":
        uri, db, ids, out, t0, iv, to, th = sys.argv[2:10]
        return mongo_poller(uri, db, ids, out, float(t0), float(iv),
                            float(to), int(th))
    a = parse_args(sys.argv[1:])
    a.build = os.path.abspath(a.build)
    if not os.access(os.path.join(a.build, "runtime", "cli", "ordo"),
                     os.X_OK):
        log("no ordo in %s (bench/flashsale builds it)" % a.build)
        return 2
    for tool in ("kcat",):
        if not shutil.which(tool):
            log("%s not found" % tool)
            return 2
    if a.fresh:
        Run.fresh()
    log("generating the sale (seed %d)" % a.seed)
    sale = Sale(a)
    run = Run(a)
    rc = 1

    def on_signal(sig, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    try:
        run.start()
        t_start = time.time()
        run.setup(sale)
        run.drive(sale)
        run.drain(sale)
        t_sale_end = time.time()
        run.after_sale(sale)
        run.stop_ordo()
        t_after_end = time.time()
        analyse(run, sale)
        checks(run, sale)
        st = run.res["stages"] = run.stage_stats()
        dl = sum(v.get("dead_lettered", 0) for v in st.values())
        run.res["checks"]["no_dead_letters"] = dict(
            ok=dl == 0 and len(st) == 6,
            detail="dead-lettered inputs over the stages: %d; stages that "
            "logged msg=stopped: %s" % (dl, sorted(st)))
        if not a.no_reconcile:
            args = [] if a.reconcile_full else ["--skip-read-models"]
            log("ordo reconcile %s" % " ".join(args))
            p = run.ordo_cmd("reconcile", "--limit", "20", *args,
                             capture_output=True, text=True)
            run.res["checks"]["reconcile"] = dict(
                ok=p.returncode == 0,
                detail=("ordo reconcile %s: exit %d; %s" % (
                    " ".join(args), p.returncode,
                    (p.stdout.strip().splitlines() or [""])[-1]))[:600])
        t_base = time.time()
        baselines(run, sale)
        t_base_end = time.time()
        run.sampler.sample()
        run.sampler.stopping.set()
        run.sampler.sample()
        run.res["cpu"] = {
            "burst": run.sampler.cpu_between(run.t_burst0, run.t_drained),
            "sale": run.sampler.cpu_between(run.t0, t_sale_end),
            "after-sale": run.sampler.cpu_between(run.t_after0,
                                                  t_after_end)}
        for k, (name, cpu) in enumerate(run.phases):
            label = "lua" if name == "bench_lua_seckill" else \
                "raw-txn" if "raw-plain" in run.res["cpu"] else "raw-plain"
            # only the services and the tool itself ran in this phase
            run.res["cpu"][label] = {
                n: c for n, c in cpu.items()
                if n in ("kafka", "redis", name)}
        run.res["wall_s"] = dict(
            setup=round(run.t0 - t_start, 1),
            sale=round(t_sale_end - run.t0, 1),
            after_sale=round(t_after_end - run.t_after0, 1),
            baselines=round(t_base_end - t_base, 1))
        run.res["memory"] = {
            n: dict(peak_rss=run.sampler.peak_rss.get(n),
                    vmhwm=run.sampler.hwm.get(n))
            for n in set(run.sampler.peak_rss) | set(run.sampler.hwm)}
        for n, v in run.tool_rss.items():
            run.res["memory"][n] = dict(peak_rss=v, vmhwm=v)
        write_outputs(run)
        print(report(run))
        rc = 0 if all(v["ok"] for v in run.res["checks"].values()) else 1
    except KeyboardInterrupt:
        log("interrupted")
        rc = 2
    except Exception as e:
        log("error: %s" % e)
        import traceback
        traceback.print_exc()
        rc = 2
    finally:
        run.restore_notify()
        run.stop_ordo()
        for c in run.children:
            if c.poll() is None:
                c.terminate()
                try:
                    c.wait(10)
                except subprocess.TimeoutExpired:
                    c.kill()
        run.sampler.stopping.set()
        cleanup(run)
    return rc


if __name__ == "__main__":
    sys.exit(main())
