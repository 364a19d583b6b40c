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

    test_store_lost.py ORDO_BINARY

Uses its own topic prefix, Mongo database and Redis prefix; exit 0 only
if every check passed.
"""
import argparse
import os
import sys
import tempfile
import time

import pymongo

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tag = "e2elost%s" % os.urandom(4).hex()
    workdir = tempfile.mkdtemp(prefix="ordo-lost-")
    ordo = E.Ordo(os.path.abspath(args.ordo), tag, workdir)
    r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("ORDO_REDIS_PORT", "6379")))
    mongo = pymongo.MongoClient(os.environ.get(
        "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"),
        serverSelectionTimeoutMS=10000)
    results = []
    stages = ["activity", "order", "redis", "mongo"]

    def wait():
        w = ordo.call("wait", "--timeout", "120", *stages, check=False)
        return w.returncode == 0, w.stdout[-1500:] + w.stderr[-1500:]

    def check(name, ok, detail=""):
        print("  %s: %s%s" % ("ok" if ok else "FAIL", name,
                              "" if ok else " (%s)" % detail))
        results.append((name, ok))

    try:
        ordo.call("topics")
        ordo.start(stages)
        now = int(time.time() * 1000)
        ordo.produce([E.create("a1", 990, 10, 2, now - 60000, now + 3600000,
                               now),
                      E.place("o1", "a1", "u1", 1, now + 1),
                      E.place("o2", "a1", "u2", 2, now + 2)], "sale")
        ok, out = wait()
        check("the sale applied", ok, out)
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
        deadline = time.time() + 30
        after = snapshot(ordo, mongo, r)
        while after != before and time.time() < deadline:
            time.sleep(0.3)
            after = snapshot(ordo, mongo, r)
        check("read models refilled as before", after == before,
              "before %s, after %s" % (before, after))
        log = open(ordo.run_log).read()
        check("each projection said why it reads again",
              log.count("reading the inputs again from the beginning") == 2,
              "%d lines" % log.count("reading the inputs again"))
        rec = ordo.call("reconcile", check=False)
        check("ordo reconcile finds no difference", rec.returncode == 0,
              rec.stdout[-1500:] + rec.stderr[-500:])
        check("ordo run still running", ordo.alive())
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    return E.finish(ordo, results, mongo, r, args.keep)


if __name__ == "__main__":
    sys.exit(main())
