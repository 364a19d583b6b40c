#!/usr/bin/env python3
"""End-to-end test: drive the `ordo` binary on the real local stack and
compare its read models with the reference model (model.py).

usage: test_e2e.py ORDO_BINARY [--seed N] [--scenario NAME]... [--keep]
       [--small] [--restart-snapshots N]

Each scenario runs against its own topics, consumer groups, MongoDB
database and Redis prefix (random, printed), so runs never see each other:

    ordo topics; ordo run &; then per phase: ordo produce --keep-ts FILE;
    ordo wait; ... ; compare; SIGTERM ordo run; drop the db and keys.

With --restart-snapshots N, processors snapshot their state every N
events (snapshot.events) and `ordo run` is stopped and started again
before every phase, so each phase is decided by states restored from a
snapshot plus the events after it; the read models must still equal the
model, and the logs must show snapshots written and used.

Commands are sent phase by phase (produce, then wait until every stage has
caught up) so that the expected outcome never depends on how partitions
interleave: Kafka guarantees order per key only.  Inside a phase the
commands that interact (PlaceOrders of one activity, the commands of one
order) share a partition and keep their order.

Prints every difference (expected vs actual, per document and field),
checks invariants that need no model, and ends with one line in
criterion's format, which the CI script sums:
    [====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: 0
Exit status 0 only if everything passed.

Needs the stack up (infra/stack up) and the venv of `infra/stack env`
(pymongo).  Redis is spoken to with a small RESP client below.
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402

try:
    import pymongo
except ImportError:  # pragma: no cover
    sys.exit("test_e2e.py: pymongo missing; run with $ORDO_PYTHON "
             "(eval \"$(infra/stack env)\")")

MAX_DIFFS_SHOWN = 60


# --------------------------------------------------------------- redis
class Redis:
    """Just enough RESP2 for GET/HGETALL/ZRANGE/SCAN/DEL, pipelined."""

    def __init__(self, host, port):
        self.addr = (host, port)
        self.sock = None

    def _connect(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = socket.create_connection(self.addr, timeout=30)
        self.f = self.sock.makefile("rb")

    @staticmethod
    def _enc(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode()
        if t == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise ValueError("bad RESP reply %r" % line)

    def pipeline(self, cmds, chunk=500):
        # Idle connections may be closed by the server between phases:
        # connect afresh for every call (the calls are few and large).
        self._connect()
        out = []
        for i in range(0, len(cmds), chunk):
            part = cmds[i:i + chunk]
            self.sock.sendall(b"".join(self._enc(c) for c in part))
            out.extend(self._read() for _ in part)
        return out

    def cmd(self, *args):
        return self.pipeline([args])[0]

    def scan(self, pattern):
        cur, keys = "0", []
        while True:
            cur, batch = self.cmd("SCAN", cur, "MATCH", pattern, "COUNT",
                                  1000)
            keys.extend(batch)
            if cur == "0":
                return sorted(set(keys))


def hash_of(reply):
    if reply is None or isinstance(reply, Exception):
        return reply
    return dict(zip(reply[0::2], reply[1::2]))


# ----------------------------------------------------------- the binary
class Ordo:
    def __init__(self, binary, tag, workdir):
        self.binary = binary
        self.tag = tag
        self.workdir = workdir
        self.flags = ["-X", "topic.prefix=%s." % tag,
                      "-X", "group.prefix=%s." % tag,
                      "-X", "mongo.db=%s" % tag.replace("e2e", "e2e_"),
                      "-X", "redis.prefix=%s:" % tag,
                      # The scenarios drive time with their own Ticks
                      # (docs/decisions/0008): no wall-clock Ticks.
                      "-X", "tick.interval.ms=0"]
        self.db = tag.replace("e2e", "e2e_")
        self.prefix = tag + ":"
        self.env = dict(os.environ)
        self.run_proc = None
        self.run_log = os.path.join(workdir, "run-%s.log" % tag)

    def call(self, *args, timeout=600, check=True):
        cmd = [self.binary] + self.flags + list(args)
        p = subprocess.run(cmd, env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("%s exited %d\nstdout: %s\nstderr: %s" % (
                " ".join(cmd), p.returncode, p.stdout[-2000:],
                p.stderr[-4000:]))
        return p

    def produce(self, cmds, name, check=True):
        """Writes cmds to WORKDIR/NAME.jsonl; `ordo produce --keep-ts` it."""
        path = os.path.join(self.workdir, name + ".jsonl")
        with open(path, "w") as f:
            f.write("".join(json.dumps(c) + "\n" for c in cmds))
        return self.call("produce", "--keep-ts", path, check=check)

    def start(self, stages=()):
        log = open(self.run_log, "a")
        self.run_proc = subprocess.Popen(
            [self.binary] + self.flags + ["run"] + list(stages),
            env=self.env,
            stdout=log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.run_proc is not None and self.run_proc.poll() is None

    def stop(self):
        if self.run_proc is None:
            return None
        if self.run_proc.poll() is None:
            self.run_proc.send_signal(signal.SIGTERM)
            try:
                self.run_proc.wait(60)
            except subprocess.TimeoutExpired:
                print("  ordo run did not stop within 60 s of SIGTERM; "
                      "killing it")
                self.run_proc.kill()
                self.run_proc.wait()
        return self.run_proc.returncode

    def wait(self, timeout, skip_stages=()):
        """`ordo wait`, or, when some stages are not run, the same idea
        from `ordo lag`: every row of the other stages "(caught up)" and
        the offsets unchanged over two passes."""
        if not skip_stages:
            w = self.call("wait", "--timeout", str(timeout), check=False)
            return w.returncode == 0, w.stdout[-1500:] + w.stderr[-1500:]
        deadline = time.time() + timeout
        prev = None
        while time.time() < deadline:
            p = self.call("lag", check=False)
            rows = [ln.split() for ln in p.stdout.splitlines()[1:]
                    if ln.strip() and not ln.startswith("partitions")]
            rows = [r for r in rows if r and r[0] not in skip_stages]
            done = rows and all(ln.endswith("(caught up)") for ln in (
                " ".join(r) for r in rows))
            snap = [tuple(r[:5]) for r in rows]
            if done and snap == prev:
                return True, ""
            prev = snap if done else None
            time.sleep(1)
        return False, p.stdout[-3000:]

    def log_tail(self, n=30):
        try:
            with open(self.run_log) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


# ---------------------------------------------------------- comparison
class Diffs:
    def __init__(self):
        self.lines = []

    def add(self, where, field, exp, act):
        self.lines.append("%s: %s expected %r, actual %r" % (
            where, field, exp, act))

    def note(self, text):
        self.lines.append(text)

    def show(self, title):
        if not self.lines:
            print("  %s: ok" % title)
            return
        print("  %s: %d difference(s)" % (title, len(self.lines)))
        for ln in self.lines[:MAX_DIFFS_SHOWN]:
            print("    " + ln)
        if len(self.lines) > MAX_DIFFS_SHOWN:
            print("    ... and %d more" % (len(self.lines) -
                                           MAX_DIFFS_SHOWN))


def norm(v):
    # Mongo may hand back Int64/int/float for a number; compare integers.
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def compare_docs(d, coll, expected, actual, fields):
    for k in sorted(expected.keys() - actual.keys()):
        d.note("%s[%s]: missing (expected %s)" % (
            coll, k, json.dumps(expected[k], sort_keys=True)))
    for k in sorted(actual.keys() - expected.keys()):
        a = {f: norm(actual[k].get(f)) for f in fields if f in actual[k]}
        d.note("%s[%s]: unexpected document %s" % (
            coll, k, json.dumps(a, sort_keys=True, default=str)))
    # DESIGN.md: a field not reached yet (expected None) is absent or
    # null, never 0 or "".
    for k in sorted(expected.keys() & actual.keys()):
        e, a = expected[k], actual[k]
        for f in fields:
            if f not in e:
                continue
            want = e[f]
            if want is None:
                if a.get(f) is not None:
                    d.add("%s[%s]" % (coll, k), f, "<absent>", norm(a[f]))
            elif f not in a:
                d.add("%s[%s]" % (coll, k), f, want, "<absent>")
            elif norm(a[f]) != want:
                d.add("%s[%s]" % (coll, k), f, want, norm(a[f]))


def read_mongo(mdb, coll):
    return {str(doc["_id"]): doc for doc in mdb[coll].find({})}


ORDER_FIELDS = ["activity_id", "user_id", "qty", "amount_cents", "status",
                "reason", "payment_id", "refunded_cents", "placed_ms",
                "pay_deadline_ms", "paid_ms", "received_ms", "settled_ms"]
ACTIVITY_FIELDS = ["sku", "price_cents", "stock", "remaining", "start_ms",
                   "end_ms"]
COMMISSION_FIELDS = ["order_id", "buyer_id", "beneficiary_id", "level",
                     "rate_bps", "accrued_cents", "reversed_cents",
                     "settled_cents", "status"]
EARNING_FIELDS = ["pending_cents", "settled_cents", "reversed_cents"]
REFERRAL_FIELDS = ["parent_id", "bound_ms"]


def compare_all(model, mdb, r, prefix):
    """Every read model against the model; returns a Diffs.
    mdb None: Redis only."""
    d = Diffs()
    if mdb is not None:
        compare_mongo(d, model, mdb)
    compare_redis(d, model, r, prefix)
    return d


def compare_mongo(d, model, mdb):
    compare_docs(d, "activities", model.mongo_activities(),
                 read_mongo(mdb, "activities"), ACTIVITY_FIELDS)
    compare_docs(d, "orders", model.mongo_orders(),
                 read_mongo(mdb, "orders"), ORDER_FIELDS)
    compare_docs(d, "commissions", model.mongo_commissions(),
                 read_mongo(mdb, "commissions"), COMMISSION_FIELDS)
    compare_docs(d, "earnings", model.earnings(),
                 read_mongo(mdb, "earnings"), EARNING_FIELDS)
    compare_docs(d, "referrals", model.mongo_referrals(),
                 read_mongo(mdb, "referrals"), REFERRAL_FIELDS)


def compare_redis(d, model, r, prefix):
    # Redis stock
    acts = model.mongo_activities()
    keys = r.scan(prefix + "stock:*")
    actual = {k[len(prefix) + 6:]: k for k in keys}
    for aid in sorted(acts.keys() | actual.keys()):
        if aid not in actual:
            d.note("redis %sstock:%s: missing (expected %d)" % (
                prefix, aid, acts[aid]["remaining"]))
            continue
        v = r.cmd("GET", actual[aid])
        if aid not in acts:
            d.note("redis %sstock:%s: unexpected key = %r" % (
                prefix, aid, v))
        elif v is None or int(v) != acts[aid]["remaining"]:
            d.add("redis %sstock:%s" % (prefix, aid), "value",
                  acts[aid]["remaining"], v)

    # Redis orders (placed and rejected attempts)
    exp = model.redis_orders()
    keys = set(r.scan(prefix + "order:*"))
    ids = sorted(exp)
    replies = r.pipeline([("HGETALL", prefix + "order:" + i) for i in ids])
    for oid, rep in zip(ids, replies):
        h = hash_of(rep)
        where = "redis %sorder:%s" % (prefix, oid)
        if not h:
            d.note("%s: missing (expected %s)" % (
                where, json.dumps(exp[oid], sort_keys=True)))
            continue
        for f, v in exp[oid].items():
            if v is None:
                if f in h:
                    d.add(where, f, "<absent>", h[f])
            elif h.get(f) != v:
                d.add(where, f, v, h.get(f, "<absent>"))
    # docs/read-models.md: a REJECTED hash expires (24 h by default), a
    # placed order's never does.
    ttls = r.pipeline([("TTL", prefix + "order:" + i) for i in ids])
    bad_ttl = [(oid, exp[oid]["status"], t) for oid, t in zip(ids, ttls)
               if t != -2 and ((exp[oid]["status"] == "REJECTED") !=
                               (isinstance(t, int) and t > 0))]
    for oid, st, t in bad_ttl[:10]:
        d.note("redis %sorder:%s: status %s with TTL %r" % (prefix, oid,
                                                           st, t))
    if len(bad_ttl) > 10:
        d.note("... and %d more order keys with a wrong TTL" % (
            len(bad_ttl) - 10))
    for k in sorted(keys - {prefix + "order:" + i for i in ids}):
        d.note("redis %s: unexpected key %s" % (
            k, json.dumps(hash_of(r.cmd("HGETALL", k)), sort_keys=True)))
    # last refused command on a placed order (docs/read-models.md)
    lr_ids = [o.order_id for o in model.orders.values()
              if o.last_rejection and o.last_rejection[0] != "OpenOrder"]
    replies = r.pipeline([("HGET", prefix + "order:" + i,
                           "last_rejection_reason") for i in lr_ids])
    for oid, rep in zip(lr_ids, replies):
        want = model.orders[oid].last_rejection
        if rep != want[1]:
            d.add("redis %sorder:%s" % (prefix, oid),
                  "last_rejection_reason (after %s)" % want[0], want[1], rep)

    # Redis earnings
    earn = model.earnings()
    keys = r.scan(prefix + "earnings:*")
    actual = {k[len(prefix) + 9:]: k for k in keys}
    for u in sorted(earn.keys() | actual.keys()):
        where = "redis %searnings:%s" % (prefix, u)
        if u not in actual:
            d.note("%s: missing (expected %s)" % (where, earn[u]))
            continue
        h = hash_of(r.cmd("HGETALL", actual[u]))
        if u not in earn:
            d.note("%s: unexpected key %s" % (where, h))
            continue
        for f in EARNING_FIELDS:
            got = h.get(f)
            if got is None or int(got) != earn[u][f]:
                d.add(where, f, earn[u][f], got)

    # Leaderboard: users with settled commission; a 0 score for a user
    # whose entries all ended REVERSED is tolerated (docs are silent).
    lb = r.cmd("ZRANGE", prefix + "leaderboard:settled", 0, -1,
               "WITHSCORES") or []
    act_lb = {m: float(s) for m, s in zip(lb[0::2], lb[1::2])}
    exp_lb = model.leaderboard()
    for u in sorted(exp_lb.keys() | act_lb.keys()):
        e, a = exp_lb.get(u, 0), act_lb.get(u)
        if a is None:
            if e > 0:
                d.add("redis leaderboard", u, e, "<absent>")
        elif a != e:
            d.add("redis leaderboard", u, e, a)


# ------------------------------------------------------------ invariants
def invariants(mdb, r, prefix):
    """Checks that need no model. Returns [(name, Diffs)]."""
    acts = read_mongo(mdb, "activities")
    orders = read_mongo(mdb, "orders")
    comms = read_mongo(mdb, "commissions")
    earn = read_mongo(mdb, "earnings")
    out = []

    d = Diffs()  # stock conservation, no oversell
    held = {}
    for o in orders.values():
        if o.get("status") != "CANCELLED":
            held[o["activity_id"]] = held.get(o["activity_id"], 0) + \
                norm(o["qty"])
    for aid, a in sorted(acts.items()):
        st, rem = norm(a["stock"]), norm(a["remaining"])
        if rem < 0:
            d.note("activities[%s]: remaining %d < 0 (oversold)" % (aid,
                                                                   rem))
        if st - rem != held.get(aid, 0):
            d.note("activities[%s]: stock %d - remaining %d = %d, but the "
                   "orders not cancelled hold %d units" % (
                       aid, st, rem, st - rem, held.get(aid, 0)))
        rv = r.cmd("GET", prefix + "stock:" + aid)
        if rv is None or int(rv) != rem:
            d.note("redis stock:%s = %r but mongo remaining = %d" % (
                aid, rv, rem))
    for aid in sorted(held.keys() - acts.keys()):
        d.note("orders reference activity %s that has no document" % aid)
    out.append(("invariant: stock (sold - released + remaining == stock)",
                d))

    d = Diffs()  # orders
    rs = r.pipeline([("HGETALL", prefix + "order:" + k) for k in orders])
    for (oid, o), rep in zip(orders.items(), rs):
        amt, ref = norm(o["amount_cents"]), norm(o["refunded_cents"])
        price = norm(acts.get(o["activity_id"], {}).get("price_cents", 0))
        if amt != norm(o["qty"]) * price:
            d.note("orders[%s]: amount %d != qty %d * price %d" % (
                oid, amt, norm(o["qty"]), price))
        if ref > amt or ref < 0:
            d.note("orders[%s]: refunded %d outside 0..%d" % (oid, ref,
                                                             amt))
        if (o["status"] == "REFUNDED") != (ref == amt):
            d.note("orders[%s]: status %s with refunded %d of %d" % (
                oid, o["status"], ref, amt))
        h = hash_of(rep) or {}
        if h.get("status") != o["status"]:
            d.note("orders[%s]: mongo status %s, redis status %s" % (
                oid, o["status"], h.get("status")))
    out.append(("invariant: orders (refunds <= paid, redis == mongo)", d))

    d = Diffs()  # commission entries
    for k, c in sorted(comms.items()):
        acc, rev, setl = (norm(c["accrued_cents"]),
                          norm(c["reversed_cents"]),
                          norm(c["settled_cents"]))
        pend = acc - rev - setl
        if pend < 0 or rev < 0 or setl < 0:
            d.note("commissions[%s]: accrued %d reversed %d settled %d" % (
                k, acc, rev, setl))
        if c["status"] != "PENDING" and pend != 0:
            d.note("commissions[%s]: %s with %d still pending" % (
                k, c["status"], pend))
        if c["status"] == "SETTLED" and setl == 0:
            d.note("commissions[%s]: SETTLED with settled 0" % k)
        o = orders.get(c["order_id"])
        if o is None:
            d.note("commissions[%s]: order %s has no document" % (
                k, c["order_id"]))
            continue
        if acc != norm(o["amount_cents"]) * norm(c["rate_bps"]) // 10000:
            d.note("commissions[%s]: accrued %d != floor(%d * %d / 10000)"
                   % (k, acc, norm(o["amount_cents"]), norm(c["rate_bps"])))
        amt, ref = norm(o["amount_cents"]), norm(o["refunded_cents"])
        if rev != acc * ref // amt:
            d.note("commissions[%s]: reversed %d != floor(%d * %d / %d)" % (
                k, rev, acc, ref, amt))
        if (o["status"] == "SETTLED") != (setl > 0 or c["status"] ==
                                          "SETTLED"):
            if not (o["status"] == "SETTLED" and rev == acc):
                d.note("commissions[%s]: settled %d but order is %s" % (
                    k, setl, o["status"]))
    out.append(("invariant: commission entries (accrued == pending + "
                "settled + reversed)", d))

    d = Diffs()  # earnings are the sums of the entries, in both stores
    sums = {}
    for c in comms.values():
        s = sums.setdefault(c["beneficiary_id"], [0, 0, 0])
        acc, rev, setl = (norm(c["accrued_cents"]),
                          norm(c["reversed_cents"]),
                          norm(c["settled_cents"]))
        s[0] += acc - rev - setl
        s[1] += setl
        s[2] += rev
    for u in sorted(sums.keys() | earn.keys()):
        want = sums.get(u, [0, 0, 0])
        e = earn.get(u, {})
        got = [norm(e.get(f, 0)) for f in EARNING_FIELDS]
        if got != want:
            d.note("earnings[%s]: %s, but its entries sum to %s" % (
                u, got, want))
        h = hash_of(r.cmd("HGETALL", prefix + "earnings:" + u)) or {}
        gotr = [int(h.get(f, 0)) for f in EARNING_FIELDS]
        if gotr != want:
            d.note("redis earnings:%s: %s, but entries sum to %s" % (
                u, gotr, want))
    tot = [sum(s[i] for s in sums.values()) for i in range(3)]
    acc = sum(norm(c["accrued_cents"]) for c in comms.values())
    if sum(tot) != acc:
        d.note("total pending+settled+reversed %d != total accrued %d" % (
            sum(tot), acc))
    lb = r.cmd("ZRANGE", prefix + "leaderboard:settled", 0, -1,
               "WITHSCORES") or []
    for m, s in zip(lb[0::2], lb[1::2]):
        if float(s) != sums.get(m, [0, 0, 0])[1]:
            d.note("leaderboard %s = %s, settled total %d" % (
                m, s, sums.get(m, [0, 0, 0])[1]))
    out.append(("invariant: earnings (sums conserved, redis == mongo)", d))
    return out


# ------------------------------------------------------------ scenarios
def create(aid, price, stock, limit, start, end, ts, **kw):
    c = {"type": "CreateActivity", "activity_id": aid, "sku": "sku-" + aid,
         "price_cents": price, "stock": stock, "per_user_limit": limit,
         "start_ms": start, "end_ms": end, "ts_ms": ts}
    c.update(kw)
    return c


def place(oid, aid, uid, qty, ts):
    return {"type": "PlaceOrder", "order_id": oid, "activity_id": aid,
            "user_id": uid, "qty": qty, "ts_ms": ts}


def pay(oid, pid, amt, ts):
    return {"type": "ConfirmPayment", "order_id": oid, "payment_id": pid,
            "amount_cents": amt, "ts_ms": ts}


def cancel(oid, uid, ts):
    return {"type": "CancelOrder", "order_id": oid, "user_id": uid,
            "ts_ms": ts}


def receipt(oid, ts):
    return {"type": "ConfirmReceipt", "order_id": oid, "ts_ms": ts}


def refund(oid, rid, amt, ts):
    return {"type": "RefundOrder", "order_id": oid, "refund_id": rid,
            "amount_cents": amt, "ts_ms": ts}


def bind(uid, ref, ts):
    return {"type": "BindReferrer", "user_id": uid, "referrer_id": ref,
            "ts_ms": ts}


def tick(ts):
    return {"type": "Tick", "ts_ms": ts}


def by_ts(cmds):
    """Stable sort on ts: per-key order is kept for equal ts."""
    return [c for _, _, c in sorted((c["ts_ms"], i, c)
                                    for i, c in enumerate(cmds))]


def scenario_flash(rng, m, t0, small):
    """A hot flash sale: one hot activity with little stock, cold ones,
    invalid and duplicate activities, thousands of PlaceOrders."""
    hot_stock = rng.randint(40, 60)
    acts = [
        create("hot", 1999, hot_stock, 2, t0 + 10000, t0 + 600000, t0,
               pay_timeout_ms=60000),
        create("cold1", 350, 5000, 5, t0, t0 + 2000000, t0,
               pay_timeout_ms=1000000),
        create("cold2", 12345, 300, 3, t0 + 1000, t0 + 100000, t0,
               pay_timeout_ms=500000, commission_bps=[]),
        create("dups", 100, 100000, 100000, t0, t0 + 2000000, t0),
        create("hot", 1, 1, 1, t0, t0 + 1, t0 + 1),       # DUPLICATE
        create("bad_stock", 100, 0, 1, t0, t0 + 10, t0 + 1),
        create("bad_price", 0, 10, 1, t0, t0 + 10, t0 + 1),
        create("bad_limit", 100, 10, 0, t0, t0 + 10, t0 + 1),
        create("bad_window", 100, 10, 1, t0 + 10, t0 + 10, t0 + 1),
        create("bad_pay", 100, 10, 1, t0, t0 + 10, t0 + 1,
               pay_timeout_ms=0),
        create("bad_auto", 100, 10, 1, t0, t0 + 10, t0 + 1,
               auto_receive_ms=0),
        create("bad_freeze", 100, 10, 1, t0, t0 + 10, t0 + 1,
               freeze_ms=-1),
        create("bad_levels", 100, 10, 1, t0, t0 + 10, t0 + 1,
               commission_bps=[100, 100, 100, 100]),
        create("bad_sum", 100, 10, 1, t0, t0 + 10, t0 + 1,
               commission_bps=[3000, 2001]),
        create("bad_rate", 100, 10, 1, t0, t0 + 10, t0 + 1,
               commission_bps=[-1, 100]),
        create("bad_rate2", 100, 10, 1, t0, t0 + 10, t0 + 1,
               commission_bps=[10001]),
        create("ok_edge", 100, 1, 1, t0, t0 + 1, t0 + 2,
               commission_bps=[2500, 2500, 0], freeze_ms=0),
    ]
    yield "activities", acts

    n_orders = 600 if small else 2200
    users = ["u%03d" % i for i in range(300)]
    heavy = users[:15]
    weights = [("hot", 50), ("cold1", 22), ("cold2", 15), ("nope", 4),
               ("bad_stock", 2), ("ok_edge", 1), ("dups", 6)]
    names = [w[0] for w in weights]
    cum = [w[1] for w in weights]
    cmds, placed = [], []
    ts = t0 + 5000
    # edges around the hot sale's start
    cmds.append(place("edge-start-1", "hot", "u299", 1, t0 + 9999))
    cmds.append(place("edge-start", "hot", "u298", 1, t0 + 10000))
    step = (200000 - 10000) // n_orders
    for i in range(n_orders):
        ts += rng.randint(0, 2 * step)
        if i == n_orders // 20:
            ts = max(ts, t0 + 10001)
        if placed and rng.random() < 0.08:
            # a retry: the same order_id in the same activity
            oid, aid, uid = rng.choice(placed)
            cmds.append(place(oid, aid, uid, rng.randint(0, 3), ts))
            continue
        aid = rng.choices(names, cum)[0]
        uid = rng.choice(heavy) if rng.random() < 0.3 else \
            rng.choice(users)
        qty = rng.choices([0, 1, 2, 3], [4, 50, 30, 16])[0]
        oid = "o%05d" % i
        placed.append((oid, aid, uid))
        cmds.append(place(oid, aid, uid, qty, ts))
    yield "wave 1: %d PlaceOrder" % len(cmds), cmds

    # The same order ids again in another activity: DUPLICATE_ORDER_ID
    # at the order processor, the reservation released.  "dups" has stock
    # and limits to spare so ReleaseStock timing cannot matter; into
    # "hot" only while it is sold out (rejected at the activity, the
    # placed order wins in Redis).
    ts = max(ts, t0 + 200000) + 1
    opened = sorted(m.orders)
    cmds = []
    for oid in rng.sample(opened, min(60, len(opened))):
        ts += 1
        uid = rng.choice(users)
        cmds.append(place(oid, "dups", uid, rng.randint(1, 3), ts))
        if rng.random() < 0.2:
            cmds.append(place(oid, "dups", uid, 1, ts))   # retry
    if m.activities["hot"].remaining == 0:
        for oid in rng.sample(opened, min(15, len(opened))):
            if m.orders[oid].activity_id != "hot":
                ts += 1
                cmds.append(place(oid, "hot", rng.choice(users), 1, ts))
    rejected = sorted(o for o, r in m.rejected_attempts.items()
                      if o not in m.orders and r[0] != "UNKNOWN_ACTIVITY")
    for oid in rng.sample(rejected, min(15, len(rejected))):
        ts += 1
        cmds.append(place(oid, "cold1", "late-" + oid, 1, ts))
    yield "duplicate order ids", cmds

    # Payments (right amount) and cancellations; hot orders placed more
    # than 60 s ago time out first (ORDER_CANCELLED, needs_refund).
    ts = t0 + 210000
    cmds = []
    pending = sorted(oid for oid, o in m.orders.items()
                     if o.status == M.PENDING)
    rng.shuffle(pending)
    for oid in pending:
        o = m.orders[oid]
        ts += rng.randint(0, 60)
        r = rng.random()
        if r < 0.55:
            cmds.append(pay(oid, "pay-" + oid, o.amount_cents, ts))
        elif r < 0.62:
            cmds.append(pay(oid, "pay-" + oid, o.amount_cents + 1, ts))
        elif r < 0.72:
            cmds.append(cancel(oid, o.user_id, ts))
        elif r < 0.75:
            cmds.append(cancel(oid, "someone-else", ts))
    yield "payments and cancellations", cmds

    yield "tick after the hot payment deadlines", [tick(t0 + 300000)]

    # Wave 2: the released stock sells again; paid orders still count
    # towards the per-user limit; the last ones arrive after the end.
    n2 = 150 if small else 600
    cmds = []
    ts = t0 + 310000
    for i in range(n2):
        ts += rng.randint(0, 900)
        aid = "hot" if rng.random() < 0.8 else "cold1"
        uid = rng.choice(heavy) if rng.random() < 0.4 else \
            rng.choice(users)
        cmds.append(place("w%05d" % i, aid, uid,
                          rng.choices([1, 2, 3], [60, 30, 10])[0], ts))
    cmds.append(place("edge-end-1", "hot", "u297", 1, t0 + 599999))
    cmds.append(place("edge-end", "hot", "u296", 1, t0 + 600000))
    for i in range(20):
        cmds.append(place("late%02d" % i, "hot", rng.choice(users), 1,
                          t0 + 600001 + i))
    cmds = by_ts(cmds)
    yield "wave 2: %d PlaceOrder" % len(cmds), cmds

    cmds = []
    for o in sorted(m.orders.values(), key=lambda o: o.order_id):
        if o.status == M.PENDING and rng.random() < 0.5:
            cmds.append(pay(o.order_id, "pay-" + o.order_id,
                            o.amount_cents, t0 + 650000))
    yield "wave 2 payments", cmds
    yield "final tick", [tick(t0 + 700000)]


def scenario_lifecycle(rng, m, t0, small):
    """Payments, cancellations, receipts, refunds and timers, with Ticks at
    and 1 ms around the deadlines."""
    PT, AR, FZ = 60000, 120000, 60000
    yield "activities", [
        create("L1", 1000, 100000, 1000, t0, t0 + 3600000, t0,
               pay_timeout_ms=PT, auto_receive_ms=AR, freeze_ms=FZ),
        create("L2", 777, 100000, 1000, t0, t0 + 3600000, t0,
               pay_timeout_ms=PT, auto_receive_ms=30000, freeze_ms=0,
               commission_bps=[333, 77]),
    ]
    cmds = []
    for i in range(40):
        cmds.append(bind("b%03d" % i, "p%d" % (i % 5), t0 + 100 + i))
    for i in range(5):
        cmds.append(bind("p%d" % i, "q%d" % (i % 2), t0 + 200 + i))
    yield "bindings", cmds

    n = 80 if small else 240
    cmds = []
    ts = t0 + 1000
    for i in range(n):
        ts += rng.randint(1, 20)
        aid = "L1" if i % 3 else "L2"
        cmds.append(place("l%04d" % i, aid, "b%03d" % rng.randrange(40),
                          rng.randint(1, 3), ts))
    yield "orders", cmds

    scripts = ["timeout", "pay_at_deadline", "pay_after_deadline",
               "mismatch_then_pay", "cancel_paths", "pay_then_cancel",
               "receipt_twice", "receipt_edges", "refund_full_parts",
               "refund_window", "refund_faults", "receipt_pending",
               "auto", "too_many", "full_refund_received",
               "refund_cancelled"]
    cmds = []
    ticks = set()
    for k, oid in enumerate(sorted(m.orders)):
        o = m.orders[oid]
        s = scripts[k % len(scripts)]
        dl = o.pay_deadline_ms
        p = "pay-" + oid
        amt = o.amount_cents
        t = o.placed_ms + rng.randint(1000, 30000)
        ar, fz = o.auto_receive_ms, o.freeze_ms
        if s == "timeout":
            ticks.update([dl - 1, dl, dl + 1])
        elif s == "pay_at_deadline":
            cmds.append(pay(oid, p, amt, dl))
            ticks.add(dl)
        elif s == "pay_after_deadline":
            cmds.append(pay(oid, p, amt, dl + 1))
        elif s == "mismatch_then_pay":
            cmds += [pay(oid, p, amt - 1, t), pay(oid, p, amt, t + 1),
                     pay(oid, p, amt, t + 2), pay(oid, p, amt + 5, t + 3),
                     pay(oid, p + "-2", amt, t + 4)]
        elif s == "cancel_paths":
            cmds += [cancel(oid, "not-" + o.user_id, t),
                     cancel(oid, o.user_id, t + 1),
                     cancel(oid, o.user_id, t + 2),
                     cancel(oid, "not-" + o.user_id, t + 3),
                     pay(oid, p, amt, t + 4),
                     receipt(oid, t + 5), refund(oid, "r1", 1, t + 6)]
        elif s == "pay_then_cancel":
            cmds += [pay(oid, p, amt, t), cancel(oid, o.user_id, t + 1)]
        elif s == "receipt_twice":
            cmds += [pay(oid, p, amt, t), receipt(oid, t + 10),
                     receipt(oid, t + 11)]
            ticks.update([t + 10 + fz - 1, t + 10 + fz])
        elif s == "receipt_edges":
            # receipt 1 ms before automatic receipt, or exactly at it
            at = t + ar - 1 if rng.random() < 0.5 else t + ar
            cmds += [pay(oid, p, amt, t), receipt(oid, at)]
        elif s == "refund_full_parts":
            # up to four parts; fewer when the amount is a few cents
            cuts = [0] + sorted(rng.sample(range(1, amt), min(3, amt - 1))) \
                + [amt]
            amounts = [b - a for a, b in zip(cuts, cuts[1:])]
            cmds.append(pay(oid, p, amt, t))
            for j, a in enumerate(amounts):
                cmds.append(refund(oid, "r%d" % j, a, t + 10 + 2 * j))
                cmds.append(refund(oid, "r%d" % j, a, t + 11 + 2 * j))
            cmds += [receipt(oid, t + 30), pay(oid, p, amt, t + 31),
                     pay(oid, p + "-2", amt, t + 32),
                     refund(oid, "r0", 1, t + 33),
                     refund(oid, "r9", 1, t + 34)]
        elif s == "refund_window":
            rcv = t + 100
            cmds += [pay(oid, p, amt, t), refund(oid, "r1", amt // 3, t + 1),
                     receipt(oid, rcv)]
            if fz:
                cmds += [refund(oid, "r2", 7, rcv + fz - 1),
                         refund(oid, "r3", 5, rcv + fz),
                         refund(oid, "r2", 7, rcv + fz + 1)]
            else:
                cmds += [refund(oid, "r2", 7, rcv)]
        elif s == "refund_faults":
            cmds += [refund(oid, "r1", 10, t), pay(oid, p, amt, t + 1),
                     refund(oid, "r1", 0, t + 2),
                     refund(oid, "r1", amt + 1, t + 3),
                     refund(oid, "r1", 11, t + 4),
                     refund(oid, "r2", amt - 11, t + 5),
                     refund(oid, "r3", 1, t + 6),
                     refund(oid, "r2", 1, t + 7)]
        elif s == "receipt_pending":
            cmds += [receipt(oid, t), pay(oid, p, amt, t + 1)]
        elif s == "auto":
            cmds.append(pay(oid, p, amt, t))
            ticks.update([t + ar - 1, t + ar, t + ar + fz - 1,
                          t + ar + fz])
        elif s == "too_many":
            cmds.append(pay(oid, p, amt, t))
            for j in range(50):
                cmds.append(refund(oid, "m%02d" % j, 1, t + 1 + j))
            cmds += [refund(oid, "m50", amt, t + 60),
                     refund(oid, "m50", 1, t + 61),
                     refund(oid, "m00", 1, t + 62)]
        elif s == "full_refund_received":
            cmds += [pay(oid, p, amt, t), receipt(oid, t + 5),
                     refund(oid, "all", amt, t + 6),
                     receipt(oid, t + 7)]
        elif s == "refund_cancelled":
            cmds += [refund(oid, "r1", 1, dl + 5)]
    for oid in ("ghost1", "ghost2"):
        t = t0 + 5000
        cmds += [pay(oid, "p", 100, t), cancel(oid, "u", t),
                 receipt(oid, t), refund(oid, "r", 1, t)]
    # Keep the whole lifecycle within 250 s so that nothing reaches the
    # final tick's settlement except what should.
    cmds += [tick(x) for x in sorted(ticks) if x < t0 + 250000]
    cmds = by_ts(cmds)
    yield "lifecycle: %d commands" % len(cmds), cmds
    yield "final tick", [tick(t0 + 1000000)]


def scenario_referral(rng, m, t0, small):
    """Referral bindings and multi-level commissions with odd rates,
    temporal joins, partial and full refunds, settlement."""
    acts = [
        create("R1", 997, 100000, 1000, t0, t0 + 3600000, t0,
               commission_bps=[333, 77], auto_receive_ms=100000,
               freeze_ms=100000, pay_timeout_ms=900000),
        create("R2", 1234, 100000, 1000, t0, t0 + 3600000, t0,
               commission_bps=[2000, 1500, 1000], auto_receive_ms=50000,
               freeze_ms=0, pay_timeout_ms=900000),
        create("R3", 501, 100000, 1000, t0, t0 + 3600000, t0,
               commission_bps=[0, 700, 300], auto_receive_ms=100000,
               freeze_ms=100000, pay_timeout_ms=900000),
        create("R4", 3, 100000, 1000, t0, t0 + 3600000, t0,
               auto_receive_ms=100000, freeze_ms=100000,
               pay_timeout_ms=900000),
        create("R5", 99999, 100000, 1000, t0, t0 + 3600000, t0,
               commission_bps=[2500, 2500], auto_receive_ms=100000,
               freeze_ms=100000, pay_timeout_ms=900000),
    ]
    yield "activities", acts

    PAY_EDGE = t0 + 300000
    LATE = t0 + 900000
    users = ["c%d" % i for i in range(1, 6)] + \
        ["t%02d" % i for i in range(60 if not small else 25)]
    b = []
    ts = t0 + 1000
    # chain c1 -> c2 -> c3 -> c4 -> c5 (parent on the right); c3's own
    # binding is late: for c1's orders level 3 is not reached.
    b += [bind("c1", "c2", ts), bind("c2", "c3", ts + 1),
          bind("c3", "c4", LATE), bind("c4", "c5", ts + 2)]
    b += [bind("x", "x", ts + 3),                  # SELF
          bind("c1", "c2", ts + 4),                # same parent: ignored
          bind("c1", "c5", ts + 5),                # ALREADY_BOUND
          bind("c5", "c1", ts + 6),                # CYCLE
          bind("c4", "c1", ts + 7),                # ALREADY_BOUND first
          bind("c5", "c3", ts + 8),                # CYCLE (c5 above c3)
          bind("edge1", "c2", PAY_EDGE),           # bound == paid_ms
          bind("edge2", "c2", PAY_EDGE + 1),       # bound after paid_ms
          bind("late1", "c1", LATE)]
    ts += 100
    tree = users[5:]
    for i, u in enumerate(tree):
        ts += 1
        if i > 0 and rng.random() < 0.85:
            b.append(bind(u, rng.choice(users[:5] + tree[:i]), ts))
    for _ in range(40):
        ts += 1
        u, r = rng.choice(tree), rng.choice(users + tree)
        b.append(bind(u, r, ts))
    yield "bindings", b

    buyers = users + ["edge1", "edge2", "late1", "loner"]
    n = 60 if small else 180
    cmds = []
    ts = t0 + 10000
    for i in range(n):
        ts += rng.randint(1, 50)
        aid = rng.choice(["R1", "R1", "R2", "R3", "R4", "R5"])
        uid = buyers[i] if i < len(buyers) else rng.choice(buyers)
        qty = rng.randint(1, 3)
        cmds.append(place("k%04d" % i, aid, uid, qty, ts))
    yield "orders", cmds

    cmds = []
    ts = t0 + 200000
    edge_ids = []
    for oid in sorted(m.orders):
        o = m.orders[oid]
        if o.user_id in ("edge1", "edge2"):
            edge_ids.append(oid)
            cmds.append(pay(oid, "pay-" + oid, o.amount_cents, PAY_EDGE))
        elif rng.random() < 0.9:
            ts += rng.randint(1, 300)
            cmds.append(pay(oid, "pay-" + oid, o.amount_cents, ts))
    yield "payments", by_ts(cmds)

    cmds = []
    ts = t0 + 310000
    for oid in sorted(m.orders):
        o = m.orders[oid]
        if o.status != M.PAID:
            continue
        r = rng.random()
        ts += rng.randint(1, 100)
        if r < 0.25:
            a = rng.randint(1, o.amount_cents - 1)
            cmds += [refund(oid, "p1", a, ts), refund(oid, "p1", a, ts + 1)]
            if rng.random() < 0.5:
                cmds.append(refund(oid, "p2", rng.randint(
                    1, o.amount_cents - a), ts + 2))
        elif r < 0.4:
            cmds.append(refund(oid, "all", o.amount_cents, ts))
        elif r < 0.55:
            a = rng.randint(1, o.amount_cents - 1)
            cmds += [refund(oid, "p1", a, ts),
                     refund(oid, "p2", o.amount_cents - a, ts + 1),
                     receipt(oid, ts + 2)]
        elif r < 0.75:
            cmds.append(receipt(oid, ts))
            if rng.random() < 0.5:
                cmds.append(refund(oid, "after", rng.randint(
                    1, o.amount_cents), ts + 1))
    yield "refunds and receipts", by_ts(cmds)
    yield "final tick (settles everything)", [tick(t0 + 1000000)]


SCENARIOS = [("flash", scenario_flash), ("lifecycle", scenario_lifecycle),
             ("referral", scenario_referral)]


# --------------------------------------------------------------- driver
def snapshot_use(log_text):
    """(snapshots written, restores that started from one) in an ordo
    log (the msg=snapshot and msg=restored lines of processors/stream.c)."""
    return (len(re.findall(r"msg=snapshot ", log_text)),
            len(re.findall(r"msg=restored .*snapshot_bytes=[1-9]",
                           log_text)))


def outcome_summary(outcomes):
    hist = {}
    for t, r in outcomes:
        hist["%s:%s" % (t, r)] = hist.get("%s:%s" % (t, r), 0) + 1
    return ", ".join("%s %d" % (k, v) for k, v in sorted(hist.items()))


def cleanup(ordo, mongo, r):
    try:
        if mongo is not None:
            mongo.drop_database(ordo.db)
    except Exception as e:  # noqa: BLE001 (best effort)
        print("  cleanup: mongo drop failed: %s" % e)
    try:
        keys = r.scan(ordo.prefix + "*") + r.scan("{" + ordo.prefix + "*")
        for i in range(0, len(keys), 500):
            r.cmd("DEL", *keys[i:i + 500])
    except Exception as e:  # noqa: BLE001
        print("  cleanup: redis failed: %s" % e)
    drop_kafka(ordo.tag)


def read_committed(topic):
    """Every committed record of topic, read to its end with kafka-python
    (records with .partition, .offset, .key, .value, .headers)."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=os.environ.get(
        "ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        isolation_level="read_committed", enable_auto_commit=False,
        consumer_timeout_ms=5000)
    parts = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic)]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    ends = c.end_offsets(parts)
    out = []
    while any(c.position(p) < ends[p] for p in parts):
        for recs in c.poll(timeout_ms=1000).values():
            out += recs
    c.close()
    return out


def drop_kafka(tag):
    """Best effort: the topics and consumer groups of prefix tag. (Left
    behind, ten thousand of them once took the shared broker past its
    open-file limit.)"""
    try:
        from kafka.admin import KafkaAdminClient
        adm = KafkaAdminClient(bootstrap_servers=os.environ.get(
            "ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            request_timeout_ms=30000)
        mine = [t for t in adm.list_topics() if t.startswith(tag + ".")]
        if mine:
            adm.delete_topics(mine)
        groups = [g["group_id"] for g in adm.list_groups()
                  if g["group_id"].startswith(tag + ".")]
        if groups:
            adm.delete_groups(groups)
        adm.close()
    except Exception as e:  # noqa: BLE001
        print("  cleanup: kafka failed: %s" % e)


def run_scenario(name, gen, seed, args, mongo, r, workdir):
    rng = random.Random("%d/%s" % (seed, name))
    # The names are unique per run, not per seed: a rerun with the same
    # seed must not find the topics or documents of an earlier one.
    tag = "e2e%s%s" % (os.urandom(4).hex(), name[:4])
    ordo = Ordo(args.ordo, tag, workdir)
    if args.restart_snapshots:
        ordo.flags += ["-X", "snapshot.events=%d" % args.restart_snapshots]
    m = M.Model()
    t0 = (int(time.time()) // 60) * 60000
    results = []   # (test name, passed)
    print("scenario %s: seed %d, topics %s.*, db %s, redis %s*" % (
        name, seed, tag, ordo.db, ordo.prefix))
    mdb = None if args.no_mongo else mongo[ordo.db]
    try:
        ordo.call("topics")
        stages = ([] if not args.no_mongo else
                  ["activity", "order", "referral", "commission", "redis"])
        ordo.start(stages)
        time.sleep(1)
        steps = gen(rng, m, t0, args.small)
        failed_phase = None
        for i, (phase, cmds) in enumerate(steps):
            if not ordo.alive():
                failed_phase = "ordo run exited %s before phase '%s'" % (
                    ordo.run_proc.returncode, phase)
                break
            if args.restart_snapshots and i > 0:
                rc = ordo.stop()
                if rc != 0:
                    failed_phase = "ordo run exited %s on SIGTERM before " \
                        "phase '%s'" % (rc, phase)
                    break
                ordo.start(stages)
            t = time.time()
            p = ordo.produce(cmds, "%s-%02d" % (tag, i), check=False)
            if p.returncode != 0:
                failed_phase = "ordo produce exited %d in phase '%s': %s" % (
                    p.returncode, phase, p.stderr[-2000:])
                break
            ok, why = ordo.wait(300, ["project.mongo"] if args.no_mongo
                                else [])
            if not ok:
                failed_phase = "ordo wait failed after phase '%s': %s" % (
                    phase, why)
                break
            outs = []
            for c in cmds:
                outs.append((c["type"], m.apply(c)))
            print("  phase %d %s: %d commands, %.1f s; model: %s" % (
                i, phase, len(cmds), time.time() - t,
                outcome_summary(outs)))
            if args.checkpoints:
                compare_all(m, mdb, r, ordo.prefix).show(
                    "after phase %d" % i)
        if failed_phase:
            print("  FAIL: " + failed_phase)
            print("  ordo run log tail:\n" + ordo.log_tail())
            results.append(("%s: pipeline" % name, False))
            return results
        d = compare_all(m, mdb, r, ordo.prefix)
        d.show("%s: read models vs model" % name)
        results.append(("%s: read models vs model" % name, not d.lines))
        for iname, idiff in (invariants(mdb, r, ordo.prefix)
                             if mdb is not None else []):
            idiff.show("%s: %s" % (name, iname))
            results.append(("%s: %s" % (name, iname), not idiff.lines))
        if args.restart_snapshots:
            with open(ordo.run_log) as f:
                written, used = snapshot_use(f.read())
            print("  snapshots: %d written, %d restores started from one"
                  % (written, used))
            results.append(("%s: snapshots written" % name, written > 0))
            results.append(("%s: restores from snapshots" % name, used > 0))
        print("  model: %d activities, %d orders, %d commission entries, "
              "%d rejections" % (len(m.activities), len(m.orders),
                                 len(m.entries), len(m.rejections)))
    except Exception as e:  # noqa: BLE001 (report and count it)
        print("  FAIL: %s: %s" % (type(e).__name__, e))
        print("  ordo run log tail:\n" + ordo.log_tail())
        results.append(("%s: error" % name, False))
    finally:
        rc = ordo.stop()
        if rc not in (None, 0):
            print("  ordo run exited %s after SIGTERM; log tail:\n%s" % (
                rc, ordo.log_tail()))
            results.append(("%s: ordo run clean stop" % name, False))
        if not args.keep:
            cleanup(ordo, mongo, r)
        else:
            print("  kept: db %s, redis %s*, topics %s.*, log %s" % (
                ordo.db, ordo.prefix, tag, ordo.run_log))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo", nargs="?", default=os.environ.get("ORDO_BIN"))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--keep", action="store_true",
                    help="keep the db, keys and topics for inspection")
    ap.add_argument("--small", action="store_true",
                    help="fewer commands (quick runs)")
    ap.add_argument("--no-mongo", action="store_true",
                    help="run without the mongo projection; compare Redis "
                    "only")
    ap.add_argument("--restart-snapshots", type=int, default=0, metavar="N",
                    help="snapshot.events=N, and restart `ordo run` "
                    "before every phase")
    ap.add_argument("--checkpoints", action="store_true",
                    help="also compare after every phase")
    args = ap.parse_args()
    if not args.ordo:
        sys.exit("usage: test_e2e.py ORDO_BINARY [--seed N]")
    args.ordo = os.path.abspath(args.ordo)
    seed = args.seed if args.seed is not None else \
        random.SystemRandom().randrange(1 << 31)
    print("test_e2e: seed %d (rerun with --seed %d)" % (seed, seed))
    mongo = pymongo.MongoClient(os.environ.get(
        "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"),
        serverSelectionTimeoutMS=10000)
    r = Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
              int(os.environ.get("ORDO_REDIS_PORT", "6379")))
    workdir = tempfile.mkdtemp(prefix="ordo-e2e-")
    results = []
    for name, gen in SCENARIOS:
        if args.scenario and name not in args.scenario:
            continue
        results += run_scenario(name, gen, seed, args, mongo, r, workdir)
    print("test_e2e: seed %d; work files in %s" % (seed, workdir))
    return synthesis(results)


def finish(ordo, results, mongo, r, keep):
    """The end of a single-run test: `ordo run` stopped (a bad exit is a
    failure), its log tail shown if anything failed, the run's topics,
    groups and read models removed unless keep; the exit status."""
    rc = ordo.stop()
    if rc not in (None, 0):
        print("  FAIL: ordo run clean stop (exit %s)" % rc)
        results.append(("ordo run clean stop", False))
    if any(not ok for _, ok in results):
        print("  ordo run log tail:\n" + ordo.log_tail())
    if not keep:
        cleanup(ordo, mongo, r)
    return synthesis(results)


class SingleRun:
    """The frame of a single-run test: its own tag, work folder and
    `ordo`, clients of Redis (the stack's, or one on redis_port) and
    MongoDB, the checks it counts, `ordo wait` for its stages, and its
    end (finish)."""

    def __init__(self, binary, name, stages, redis_port=None):
        tag = "e2e%s%s" % (name, os.urandom(4).hex())
        self.workdir = tempfile.mkdtemp(prefix="ordo-%s-" % name)
        self.ordo = Ordo(os.path.abspath(binary), tag, self.workdir)
        if redis_port:
            self.ordo.flags += ["-X", "redis.port=%d" % redis_port]
            self.r = Redis("127.0.0.1", redis_port)
        else:
            self.r = Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                           int(os.environ.get("ORDO_REDIS_PORT", "6379")))
        self.mongo = pymongo.MongoClient(os.environ.get(
            "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"),
            serverSelectionTimeoutMS=10000)
        self.stages = stages
        self.results = []

    def check(self, name, ok, detail=""):
        print("  %s: %s%s" % ("ok" if ok else "FAIL", name,
                              "" if ok else " (%s)" % detail))
        self.results.append((name, ok))

    def wait(self):
        """`ordo wait` for the stages: (caught up?, its output's tail)."""
        w = self.ordo.call("wait", "--timeout", "120", *self.stages,
                           check=False)
        return w.returncode == 0, w.stdout[-1500:] + w.stderr[-1500:]

    def reconciled_and_running(self, events_only=False):
        """The usual last checks: `ordo reconcile` is clean (with
        --skip-read-models when the test runs no projection), and `ordo
        run` still runs."""
        rec = self.ordo.call("reconcile", *(["--skip-read-models"]
                                            if events_only else []),
                             check=False)
        self.check("ordo reconcile finds no difference", rec.returncode == 0,
                   rec.stdout[-1500:] + rec.stderr[-500:])
        self.check("ordo run still running", self.ordo.alive())

    def said(self, name, needle, times):
        """A check that `ordo run`'s log has needle exactly times times."""
        n = open(self.ordo.run_log).read().count(needle)
        self.check(name, n == times, "%d lines" % n)

    def finish(self, keep):
        return finish(self.ordo, self.results, self.mongo, self.r, keep)


class FreezableProxy:
    """A TCP proxy to a store (MongoDB) that can freeze: its connections
    stay open and nothing passes either way, as with a server stopped by
    SIGSTOP, without stopping the shared server."""

    def __init__(self, target):
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.target)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self.pipe, args=(a, b),
                                 daemon=True).start()

    def pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                self.open.wait()
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.open.set()
        self.sock.close()


_PORTS_GIVEN = set()


def free_port():
    """A port nothing listens on, for a server started later: below the
    kernel's ephemeral range, where no client's connection can take it
    meanwhile (the kernel's own choice of port 0 is in that range), and
    never one this process was given before."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    start = max(1025, low - 12000)
    if start >= low:  # no room below the range: the kernel's pick
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    rnd = random.SystemRandom()
    for _ in range(200):
        port = rnd.randrange(start, low)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError("no free port below %d" % low)


def eventually(get, done=bool, timeout=30):
    """get() until done(value) or timeout s; the last value."""
    deadline = time.time() + timeout
    value = get()
    while not done(value) and time.time() < deadline:
        time.sleep(0.2)
        value = get()
    return value


def wait_for_text(path, text, timeout):
    """True once the file at path holds text, False after timeout s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path) as f:
            if text in f.read():
                return True
        time.sleep(0.1)
    return False


def print_tails(paths, lines=15):
    """The last lines of each log, for a failed check."""
    for path in paths:
        with open(path) as f:
            print("  %s tail:\n%s" % (path, "".join(f.readlines()[-lines:])))


def synthesis(results):
    """Criterion's closing line for [(name, passed)]; the exit status."""
    failing = [n for n, ok in results if not ok]
    for n in failing:
        print("  FAILED: " + n)
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
          "Crashing: 0" % (len(results), len(results) - len(failing),
                           len(failing)))
    return 1 if failing or not results else 0


if __name__ == "__main__":
    sys.exit(main())
