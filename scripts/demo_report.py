#!/usr/bin/env python3
"""Prints what the flash-sale demo did, from the event log and both read
models. Needs pymongo (infra/stack's venv) and redis-cli.

usage: demo_report.py ORDO RUN_ID
"""
import collections
import json
import subprocess
import sys

from pymongo import MongoClient


def replay(ordo, topic):
    out = subprocess.run([ordo, "replay", topic], check=True,
                         capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def redis(*args):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379",
                           "--no-raw", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def redis_hash(key):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379",
                          "HGETALL", key], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    if out and out[-1] == "":
        out.pop()  # the final newline; empty values stay in place
    return dict(zip(out[0::2], out[1::2]))


def main():
    ordo, run = sys.argv[1], sys.argv[2]
    hot, cold = f"hot-{run}", f"cold-{run}"
    ours = (hot, cold, f"missing-{run}")

    act = [e for e in replay(ordo, "activity-events")
           if e.get("activity_id") in ours or e.get("aggregate_id") in ours]
    reserved = [e for e in act if e["type"] == "StockReserved"]
    released = [e for e in act if e["type"] == "StockReleased"]
    rejected = collections.Counter(
        e["reason"] for e in act
        if e["type"] == "CommandRejected" and e["command_type"] == "PlaceOrder")
    units = sum(e["qty"] for e in reserved if e["activity_id"] == hot)

    print("== Flash sale (activity %s: 100 units, at most 2 per user)" % hot)
    print("accepted orders: %d (%d units on the hot item)"
          % (sum(1 for e in reserved if e["activity_id"] == hot), units))
    print("accepted orders on the cold item: %d"
          % sum(1 for e in reserved if e["activity_id"] == cold))
    print("rejected orders by reason:")
    for reason, n in rejected.most_common():
        print("  %-20s %d" % (reason, n))
    hot_released = [e for e in released if e["activity_id"] == hot]
    print("stock of the hot item released by cancellations: %d unit(s) in "
          "%d order(s)" % (sum(e["qty"] for e in hot_released),
                           len(hot_released)))

    orders = [e for e in replay(ordo, "order-events")
              if e.get("order_id", "").startswith(("o-%s-" % run,
                                                   "c-%s-" % run))]
    by_type = collections.Counter(e["type"] for e in orders)
    order_rej = collections.Counter(
        "%s %s" % (e["command_type"], e["reason"]) for e in orders
        if e["type"] == "CommandRejected")
    print("\n== Orders and payments (order-events)")
    for t, n in sorted(by_type.items()):
        print("  %-20s %d" % (t, n))
    for r, n in order_rej.most_common():
        print("  rejected %-28s %d" % (r, n))

    refs = [e for e in replay(ordo, "referral-events")
            if run in e.get("user_id", "") or run in e.get("aggregate_id", "")]
    print("\n== Referrals: %d bound, rejected: %s" % (
        sum(1 for e in refs if e["type"] == "ReferrerBound"),
        dict(collections.Counter(e["reason"] for e in refs
                                 if e["type"] == "CommandRejected"))))

    db = MongoClient("mongodb://127.0.0.1:27017",
                     serverSelectionTimeoutMS=5000)["ordo"]
    a = db.activities.find_one({"_id": hot})
    print("\n== Read models")
    print("MongoDB activities[%s]: stock=%s remaining=%s version=%s"
          % (hot, a and a.get("stock"), a and a.get("remaining"),
             a and a.get("version")))
    print("Redis   %sstock:%s = %s" % ("ordo:", hot,
                                       redis("GET", "ordo:stock:" + hot)))
    statuses = collections.Counter(
        d["status"] for d in db.orders.find({"activity_id": hot}))
    print("MongoDB orders of the hot item by status: %s" % dict(statuses))
    sample = db.orders.find_one({"activity_id": hot, "status": "SETTLED"}) \
        or db.orders.find_one({"activity_id": hot})
    if sample:
        print("MongoDB orders sample: %s" % json.dumps(sample, default=str))
        print("Redis   ordo:order:%s = %s" % (
            sample["_id"], redis_hash("ordo:order:" + sample["_id"])))
    rej = next((e for e in act if e["type"] == "CommandRejected"
                and e.get("order_id")), None)
    if rej:
        print("Redis   ordo:order:%s = %s   (a rejected attempt)" % (
            rej["order_id"], redis_hash("ordo:order:" + rej["order_id"])))
    comm = list(db.commissions.find({"order_id": {"$regex": "^o-%s-" % run}}))
    acc = sum(c["accrued_cents"] for c in comm)
    print("MongoDB commissions: %d entries, accrued %d cents, settled %d, "
          "reversed %d" % (len(comm), acc,
                           sum(c["settled_cents"] for c in comm),
                           sum(c["reversed_cents"] for c in comm)))
    top = "top-%s" % run
    e = db.earnings.find_one({"_id": top})
    print("MongoDB earnings[%s] = %s" % (top, e and {
        k: e.get(k) for k in ("pending_cents", "settled_cents",
                              "reversed_cents")}))
    print("Redis   ordo:earnings:%s = %s" % (top, redis_hash(
        "ordo:earnings:" + top)))
    print("Redis   leaderboard top 3: %s" % redis(
        "ZREVRANGE", "ordo:leaderboard:settled", "0", "2", "WITHSCORES")
        .replace("\n", " "))

    # the invariants, checked on what the read models say
    remaining = a.get("remaining") if a else None
    ok = remaining is not None and remaining >= 0 and \
        units - sum(e["qty"] for e in released
                    if e["activity_id"] == hot) + remaining == 100
    print("\ncheck no oversell (sold - released + remaining == stock): %s"
          % ("OK" if ok else "FAILED"))
    bens = {c["beneficiary_id"] for c in comm}
    earned = sum(d.get("pending_cents", 0) + d.get("settled_cents", 0)
                 + d.get("reversed_cents", 0)
                 for d in db.earnings.find({"_id": {"$in": list(bens)}}))
    closed = all(c["settled_cents"] + c["reversed_cents"] == c["accrued_cents"]
                 for c in comm if c["status"] != "PENDING")
    money = earned == acc and closed
    print("check money: accrued %d == earnings pending + settled + "
          "reversed %d, closed entries fully settled or reversed: %s"
          % (acc, earned, "OK" if money else "FAILED"))
    sys.exit(0 if ok and money else 1)


if __name__ == "__main__":
    main()
