#!/usr/bin/env python3
"""A read-model store that lost everything comes back by itself.

`ordo run activity order redis mongo` applies a small sale; it is
stopped; the run's Redis keys and MongoDB database are deleted, as a
Redis restarted without persistence or a database dropped by hand
would leave them, while the groups' committed offsets remain. Started
again, each projection must see its store empty, log that it reads its
inputs again from the beginning, and refill the store: the same order
hash, stock and documents as before, and `ordo reconcile` finds no
difference. (Before, the projections went on from their committed
offsets and the read models stayed empty until someone ran `ordo
rebuild`.)

With --dropped, both stores are emptied while `ordo run` runs and
stays up (MongoDB's database dropped, the Redis keys deleted: no write
fails, so no outage shows): each projection must find its mark gone
(decision 0029) and refill the store with no new event; then emptied
again and an order sent at once, whose writes may land in the emptied
stores before the check (partial documents the version guards would
never complete): the read models must be whole again, that order too.
Then emptied with a refund on its way, whose commission reversal may
meet the emptied earnings before the check: applied in the refill, and
never parked as a refusal. Then emptied under a bigger sale and `ordo run` killed (SIGKILL) while
it refills: restarted, it must refill again and be whole. Last, with a
key and a collection not ordo's in the stores, the marks deleted: the
drop before the refill is refused, an ERROR.

With --live, the store goes away while `ordo run` runs: a Redis of the
test's own (no persistence, on a free port) is killed and started again
empty. The idle Redis projection must find it empty within its check
(a PING each idle second), log it, and read its inputs again from the
beginning, so that the order hashes and stock of before the restart
come back with no new event; then a new order is applied on top. Then
the same after 4 s away, long enough for the projection to retry.
Then away while an order comes: ordo_consumer_lag must show its events
waiting, in the batch in hand and in the paused partitions. Last,
MongoDB hangs (the test's proxy to it freezes) while an order comes:
the MongoDB projection's thread waits in its write for the socket
timeout (60 s), and its ordo_consumer_lag must show the events waiting
once the call has gone unanswered for 10 s (it stayed 0).

    test_store_lost.py ORDO_BINARY [--live | --dropped]

Uses its own topic prefix, Mongo database and Redis prefix; exit 0 only
if every check passed.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from kafka import KafkaAdminClient

import test_e2e as E


def wipe(ordo, mongo, r):
    mongo.drop_database(ordo.db)
    keys = r.scan(ordo.prefix + "*") + r.scan("{" + ordo.prefix + "*")
    for i in range(0, len(keys), 500):
        r.cmd("DEL", *keys[i:i + 500])
    return len(keys)


def snapshot(ordo, mongo, r):
    db = mongo[ordo.db]
    return dict(
        order=E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:o1")),
        stock=r.cmd("GET", ordo.prefix + "stock:a1"),
        orders=sorted(d["_id"] for d in db.orders.find({}, {"_id": 1})),
        activity=(db.activities.find_one({"_id": "a1"}) or {}).get(
            "remaining"))


def start_sale(run, limit):
    """`ordo run` started on the test's topics, then a sale (a1: 10 units,
    `limit` per user; o1 takes 1, o2 takes 2) sent and waited for.
    Returns the sale's time base."""
    run.ordo.call("topics")
    run.ordo.start(run.stages)
    now = int(time.time() * 1000)
    run.ordo.produce([E.create("a1", 990, 10, limit, now - 60000,
                               now + 3600000, now),
                      E.place("o1", "a1", "u1", 1, now + 1),
                      E.place("o2", "a1", "u2", 2, now + 2)], "sale")
    ok, out = run.wait()
    run.check("the sale applied", ok, out)
    return now


free_port = E.free_port


def private_redis(port, workdir):
    """A redis-server of the test's own, without persistence."""
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind",
                          "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", workdir],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return p
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("redis-server on port %d did not start" % port)


def scrape(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=5) as f:
            return f.status, f.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:  # not listening yet
        return 0, str(e)


def run_id(r):
    """The Redis server's run_id, new at every start (None: no answer)."""
    info = r.cmd("INFO", "server")
    m = re.search(r"run_id:(\w+)", info) if isinstance(info, str) else None
    return m.group(1) if m else None


def redis_lag(metrics, stage="redis"):
    """A projection's ordo_consumer_lag: {topic's short name: summed over
    its partitions}."""
    _, text = scrape(metrics, "/metrics")
    lag = {}
    for m in re.finditer(r'^ordo_consumer_lag\{stage="%s",topic="[^"]*?'
                         r'\.([a-z-]+)",partition="\d+"\} (\S+)$' % stage,
                         text, re.M):
        lag[m.group(1)] = lag.get(m.group(1), 0) + float(m.group(2))
    return lag


def live(args):
    port, metrics = free_port(), free_port()
    run = E.SingleRun(args.ordo, "live", ["activity", "order", "redis",
                                          "mongo"], redis_port=port)
    ordo, r, check = run.ordo, run.r, run.check
    uri = urllib.parse.urlparse(os.environ.get(
        "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"))
    proxy = E.FreezableProxy((uri.hostname or "127.0.0.1", uri.port or 27017))
    ordo.flags += ["-X", "metrics.listen=127.0.0.1:%d" % metrics,
                   "-X", "mongo.uri=mongodb://127.0.0.1:%d/" % proxy.port]
    server = private_redis(port, run.workdir)

    def model():
        return dict(
            stock=r.cmd("GET", ordo.prefix + "stock:a1"),
            orders={o: E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:" +
                                       o)).get("status")
                    for o in ("o1", "o2", "o3")})

    def said_either(name, times):
        """Found on its next write (came back empty), or by its mark
        when a check of the mark reached the new server first."""
        log = open(ordo.run_log).read()
        n = (log.count("came back empty while the group had applied") +
             log.count("the read model lost its mark"))
        check(name, n == times, "%d lines" % n)

    def model_becomes(want):
        return E.eventually(model, lambda m: m == want) == want

    try:
        now = start_sale(run, 3)
        before = dict(stock="7", orders=dict(o1="PENDING_PAYMENT",
                                             o2="PENDING_PAYMENT", o3=None))
        check("read model holds the sale", model() == before, model())
        old_id = run_id(r)
        server.kill()
        server.wait()
        server = private_redis(port, run.workdir)
        # A new server, which keeps nothing: the idle projection may
        # already have marked it (a DBSIZE of 0 raced that).
        check("redis restarted (a new server, no persistence)",
              run_id(r) not in (None, old_id), old_id)
        check("refilled with no new event (the idle projection's check)",
              model_becomes(before), model())
        check("/healthz 200 again once the refill has caught up",
              E.eventually(lambda: scrape(metrics, "/healthz")[0],
                           lambda st: st == 200, 30) == 200)
        ordo.produce([E.place("o3", "a1", "u3", 3, now + 3)], "after")
        ok, out = run.wait()
        check("caught up after the restart", ok, out)
        check("the read model of before the restart is back, with o3",
              model_becomes(dict(stock="4", orders=dict(
                  o1="PENDING_PAYMENT", o2="PENDING_PAYMENT",
                  o3="PENDING_PAYMENT"))), model())
        said_either("the projection said why it reads again", 1)
        # Away for longer than the first backoff steps: the projection
        # meets the outage, retries, and must ask again before a retry
        # writes to the Redis that came back (it wrote to it, and the
        # read model of before stayed lost: an outside audit).
        after = dict(stock="4", orders=dict(
            o1="PENDING_PAYMENT", o2="PENDING_PAYMENT", o3="PENDING_PAYMENT"))
        server.kill()
        server.wait()
        time.sleep(4)
        # Meanwhile the outage shows (it showed nowhere for 30 s, and
        # the paused consumer's lag does not move).
        _, text = scrape(metrics, "/metrics")
        check("ordo_store_up is 0 while Redis is away",
              'ordo_store_up{stage="redis"} 0' in text,
              [ln for ln in text.splitlines() if "store_up" in ln])
        status, body = scrape(metrics, "/healthz")
        check("/healthz says why", status == 503 and
              "redis cannot use its store" in body, (status, body))
        server = private_redis(port, run.workdir)
        check("after 4 s away, refilled with no new event",
              model_becomes(after), model())
        said_either("... and said why", 2)
        # (set once the refill's batch is applied, just after its writes)
        text = E.eventually(lambda: scrape(metrics, "/metrics")[1],
                            lambda t: 'ordo_store_up{stage="redis"} 1' in t)
        check("ordo_store_up is 1 again", 'ordo_store_up{stage="redis"} 1'
              in text, [ln for ln in text.splitlines() if "store_up" in ln])
        # Away while events come: the backlog shows in ordo_consumer_lag
        # (the paused partitions' ends were not fetched, and it said 0).
        server.kill()
        server.wait()
        killed = time.time()
        ordo.produce([E.place("o4", "a1", "u4", 1, now + 4)], "away")
        # o4's reservation (in the batch in hand, past the position) and
        # its order (arrived while the partitions were paused)
        waiting = ("activity-events", "order-events")
        lag = E.eventually(lambda: redis_lag(metrics),
                           lambda g: all(g.get(t) for t in waiting),
                           timeout=15)
        check("ordo_consumer_lag shows the events waiting for Redis",
              all(lag.get(t) for t in waiting), lag)
        # ... and goes on growing past 10 s away, when its store call
        # counts as unanswered (it froze at its value then)
        time.sleep(max(0.0, killed + 12 - time.time()))
        ordo.produce([E.place("o4b", "a1", "u4b", 1, now + 4)], "away2")
        more = E.eventually(lambda: redis_lag(metrics),
                            lambda g: sum(g.values()) > sum(lag.values()),
                            timeout=15)
        check("... and grows with what comes after 10 s away",
              sum(more.values()) > sum(lag.values()), repr((lag, more)))
        server = private_redis(port, run.workdir)
        check("o4 applied once Redis is back", E.eventually(
            lambda: E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:o4"))
            .get("status")) == "PENDING_PAYMENT")
        check("and the lag is 0 again",
              not any(E.eventually(lambda: redis_lag(metrics),
                                   lambda g: not any(g.values()),
                                   timeout=15).values()))
        # MongoDB hangs while an order comes: the projection's thread
        # sits in its write, and cannot poll its lag.
        ok, out = run.wait()
        check("caught up before MongoDB hangs", ok, out)
        proxy.open.clear()
        ordo.produce([E.place("o5", "a1", "u5", 1, now + 5)], "hung")
        lag = E.eventually(lambda: redis_lag(metrics, "mongo"),
                           lambda g: all(g.get(t) for t in waiting),
                           timeout=25)
        check("MongoDB hung: ordo_consumer_lag shows the events waiting "
              "in the held write", all(lag.get(t) for t in waiting), lag)
        proxy.open.set()
        check("o5's document once MongoDB answers", E.eventually(
            lambda: run.mongo[ordo.db].orders.find_one({"_id": "o5"}),
            timeout=60))
        check("and the MongoDB projection's lag is 0 again",
              not any(E.eventually(lambda: redis_lag(metrics, "mongo"),
                                   lambda g: not any(g.values()),
                                   timeout=15).values()))
        run.reconciled_and_running()
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    try:
        return run.finish(args.keep)
    finally:
        proxy.close()
        server.kill()
        server.wait()


BIG_ORDERS = 4000


def reversal_after_emptying(run, now):
    """r9 earns on o9 (u9's, paid once the saga opened it); the stores are emptied and o9 is
    refunded at once. Returns (whole, redis earnings, mongo earnings):
    whole when both stores say pending 0, reversed the commission."""
    ordo, r, mongo = run.ordo, run.r, run.mongo
    ordo.produce([E.bind("u9", "r9", now + 10),
                  E.place("o9", "a1", "u9", 1, now + 11)], "place")
    ok, out = run.wait()
    run.check("the order placed", ok, out)
    ordo.produce([E.pay("o9", "p9", 990, now + 12)], "pay")
    ok, out = run.wait()
    run.check("the paid order's commission applied", ok, out)

    def earnings():
        h = E.hash_of(r.cmd("HGETALL", ordo.prefix + "earnings:r9")) or {}
        d = mongo[ordo.db].earnings.find_one({"_id": "r9"}) or {}
        return ({k: int(v) for k, v in h.items() if k.endswith("_cents")},
                {k: d.get(k) for k in ("pending_cents", "reversed_cents")})
    accrued = E.eventually(earnings, lambda e: e[0].get("pending_cents", 0)
                           > 0 and e[1]["pending_cents"])[0]["pending_cents"]
    wipe(ordo, mongo, r)
    ordo.produce([E.refund("o9", "f9", 990, now + 13)], "refund")
    ok, out = run.wait()
    run.check("caught up after the refund", ok, out)
    want = ({"pending_cents": 0, "settled_cents": 0,
             "reversed_cents": accrued},
            {"pending_cents": 0, "reversed_cents": accrued})
    got = E.eventually(earnings, lambda e: e == want)
    return (got == want,) + got


def dropped(args):
    run = E.SingleRun(args.ordo, "dropped", [])
    ordo, r, mongo, check = run.ordo, run.r, run.mongo, run.check
    metrics = free_port()
    ordo.flags += ["-X", "metrics.listen=127.0.0.1:%d" % metrics]

    def whole(want_orders, want_stock):
        """The read models hold the sale, the activity's document whole."""
        snap = snapshot(ordo, mongo, r)
        act = mongo[ordo.db].activities.find_one({"_id": "a1"}) or {}
        return (snap["orders"] == want_orders and
                snap["stock"] == str(want_stock) and
                snap["activity"] == want_stock and
                act.get("sku") == "sku-a1" and act.get("stock") == 10 and
                (snap["order"] or {}).get("user_id") == "u1"), snap, act

    def becomes(*want):
        return E.eventually(lambda: whole(*want), lambda w: w[0])

    def counts():
        """Orders in (MongoDB, Redis)."""
        return (mongo[ordo.db].orders.count_documents({}),
                len(r.scan(ordo.prefix + "order:*")))

    def said_refilling(name):
        """/healthz answers 503 saying the read model is refilling."""
        health = E.eventually(lambda: scrape(metrics, "/healthz"),
                              lambda sb: sb[0] == 503 and
                              "refilling its read model" in sb[1], 60)
        check(name, health[0] == 503 and
              "refilling its read model" in health[1], repr(health))

    try:
        now = start_sale(run, 3)
        ok, snap, act = becomes(["o1", "o2"], 7)
        check("read models hold the sale", ok, repr((snap, act)))
        n = wipe(ordo, mongo, r)
        check("stores emptied under the running projections", n > 0,
              "%d keys" % n)
        ok, snap, act = becomes(["o1", "o2"], 7)
        check("refilled with no new event", ok, repr((snap, act)))
        wipe(ordo, mongo, r)
        ordo.produce([E.place("o3", "a1", "u3", 3, now + 3)], "after")
        ok, out = run.wait()
        check("caught up after the second emptying", ok, out)
        ok, snap, act = becomes(["o1", "o2", "o3"], 4)
        check("whole again, with the order sent at once", ok,
              repr((snap, act)))
        run.said("each projection said why, each time",
                 "the read model lost its mark while the projection ran", 4)
        # Emptied with a refund on its way: its CommissionReversed finds
        # no earnings to take from ("below 0") in the emptied stores if
        # it comes before the once-a-second check; that is the drop, not
        # the rules, and must not be parked as a refusal.
        earned = reversal_after_emptying(run, now)
        check("the refund's reversal applied in the refilled stores",
              earned[0], repr(earned[1:]))
        check("no event parked as refused", "refused by the store" not in
              open(ordo.run_log).read(), ordo.log_tail())
        # Killed during a refill: the restart must refill again, not go
        # on from offsets past what the emptied store holds (an outside
        # audit found the read models cut short for good).
        big = ["b%d" % i for i in range(BIG_ORDERS)]
        ordo.produce([E.create("a2", 100, BIG_ORDERS, 1, now - 60000,
                               now + 3600000, now + 4)] +
                     [E.place(o, "a2", "v" + o, 1, now + 5) for o in big],
                     "big")
        ok, out = run.wait()
        check("a bigger sale applied", ok, out)
        # Small batches from here, so that the refill lasts long enough
        # to be killed in the middle, and its rest to be seen after.
        ordo.stop()
        ordo.flags += ["-X", "projection.batch.max=5"]
        ordo.start(run.stages)
        ok, out = run.wait()
        # `ordo wait` reads committed offsets, already at the end: every
        # stage's start (the projections' after their marks) and the end
        # of any refill are waited for too, on /healthz
        health = E.eventually(lambda: scrape(metrics, "/healthz"),
                              lambda sb: sb[0] == 200, 60)
        check("restarted with small batches", ok and health[0] == 200,
              repr((out, health)))
        wipe(ordo, mongo, r)
        # Killed as soon as both projections' committed offsets say they
        # are refilling (a refill of Redis takes about a second here);
        # meanwhile /healthz must say so: not ready while the read
        # models are partial (it answered 200 throughout).
        admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
        seen_503 = []

        def refilling_now():
            st, body = scrape(metrics, "/healthz")
            if st == 503 and "refilling its read model" in body:
                seen_503.append(body)
            groups = ["%s.project.%s" % (ordo.tag, w)
                      for w in ("mongo", "redis")]
            offsets = admin.list_group_offsets(groups)
            return (open(ordo.run_log).read().count("lost its mark"),
                    [any(m.metadata == "ordo:refill"
                         for m in offsets.get(g, {}).values())
                     for g in groups])
        lost, marked = E.eventually(refilling_now,
                                    lambda lm: lm[0] >= 8 and all(lm[1]), 60)
        ordo.run_proc.kill()
        ordo.run_proc.wait()
        admin.close()
        check("/healthz 503 while refilling, saying so", seen_503)
        # (a refill stopped before /healthz's poll confirmed its end says
        # so too at the next start: counted from here)
        went_on = "a refill stopped before it caught up"
        went_on_before = open(ordo.run_log).read().count(went_on)
        check("killed while both refill (their offsets say so)",
              lost >= 8 and all(marked),
              "%d lines, marked (mongo, redis) %s" % (lost, marked))
        # Restarted: the offsets the refill committed say it had not
        # caught up, and /healthz must say so again. The projections
        # alone, so that no processor's restore is the first reason.
        ordo.start(["mongo", "redis"])
        said_refilling("/healthz 503 refilling after a restart during the "
                       "refill")
        ok, out = run.wait()
        check("caught up after the restart", ok, out)
        health = E.eventually(lambda: scrape(metrics, "/healthz"),
                              lambda sb: sb[0] == 200, 30)
        check("/healthz 200 once the refill it went on with caught up",
              health[0] == 200, repr(health))
        run.said("each projection said it went on with a refill", went_on,
                 went_on_before + 2)
        # Restarted once more, whole: nothing to go on with.
        ordo.stop()
        del ordo.flags[-2:]
        ordo.start(run.stages)
        ok, out = run.wait()
        health = E.eventually(lambda: scrape(metrics, "/healthz"),
                              lambda sb: sb[0] == 200, 30)
        check("restarted after the refill: caught up, 200",
              ok and health[0] == 200, repr((out, health)))
        run.said("and no refill to go on with", went_on, went_on_before + 2)
        want = (4 + BIG_ORDERS, 4 + BIG_ORDERS)  # o1-o3, o9
        got = E.eventually(counts, lambda c: c == want)
        check("the refill killed midway is done again on restart",
              got == want, "orders (mongo, redis) %s, want %s" % (got, want))
        # A key and a collection not ordo's in the stores, and the marks
        # deleted: the drop before the refill is refused (the stores
        # hold something else), and what stays may be partial, which is
        # an ERROR to an operator, not an INFO line (a review).
        r.cmd("SET", ordo.prefix + "notours", "x")
        mongo[ordo.db]["notours"].insert_one({"x": 1})
        r.cmd("DEL", ordo.prefix + "mark")
        mongo[ordo.db]["mark"].drop()
        errors = E.eventually(lambda: open(ordo.run_log).read().count(
            "level=error stage=redis msg=\"the read model could not be "
            "emptied") + open(ordo.run_log).read().count(
            "level=error stage=mongo msg=\"the read model could not be "
            "emptied"), lambda n: n >= 2, 30)
        check("a refused drop before a refill is an ERROR, in each store",
              errors == 2, "%d lines; %s" % (errors, ordo.log_tail(6)))
        r.cmd("DEL", ordo.prefix + "notours")
        mongo[ordo.db]["notours"].drop()
        run.reconciled_and_running()
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    return run.finish(args.keep)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--live", action="store_true")
    ap.add_argument("--dropped", action="store_true")
    args = ap.parse_args()
    if args.live:
        return live(args)
    if args.dropped:
        return dropped(args)
    run = E.SingleRun(args.ordo, "lost", ["activity", "order", "redis",
                                          "mongo"])
    ordo, r, mongo, check, wait = run.ordo, run.r, run.mongo, run.check, \
        run.wait
    stages = run.stages

    try:
        start_sale(run, 2)
        before = snapshot(ordo, mongo, r)
        check("read models hold the sale",
              (before["order"] or {}).get("status") == "PENDING_PAYMENT"
              and before["stock"] == "7" and before["orders"] == ["o1", "o2"]
              and before["activity"] == 7, str(before))
        ordo.stop()
        n = wipe(ordo, mongo, r)
        check("stores wiped", n > 0 and snapshot(ordo, mongo, r)["order"]
              in (None, {}), "%d keys" % n)
        ordo.start(stages)
        ok, out = wait()
        check("caught up again", ok, out)
        after = E.eventually(lambda: snapshot(ordo, mongo, r),
                           lambda a: a == before)
        check("read models refilled as before", after == before,
              "before %s, after %s" % (before, after))
        run.said("each projection said why it reads again",
                 "reading the inputs again from the beginning", 2)
        run.reconciled_and_running()
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    return run.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
