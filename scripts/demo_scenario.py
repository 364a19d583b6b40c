#!/usr/bin/env python3
"""Writes the flash-sale demo as JSON-lines commands (stdlib only).

One hot activity (small stock, a per-user limit) hit by a burst of orders
from many users, a cold one, referral bindings two levels deep, payments
for part of the accepted orders, a cancellation, a refund, a receipt, and
a few lines that are not valid commands (refused at the door, never sent).
Timers (payment timeout, automatic receipt, settlement) are driven by a
final Tick in the future. Every command carries ts_ms: the demo is a
trusted batch (ordo produce --keep-ts), so it decides the same every run.

usage: demo_scenario.py RUN_ID BASE_MS  > phase1.jsonl, and with --phase 2
for the payments (which need to know which orders were accepted: read
from stdin as order ids, one per line).
"""
import json
import random
import sys


def line(**kw):
    return json.dumps(kw, separators=(",", ":"))


def phase1(run, base):
    rnd = random.Random(run)
    hot, cold = f"hot-{run}", f"cold-{run}"
    out = []
    out.append(line(type="CreateActivity", activity_id=hot, sku="SKU-TEA-1",
                    price_cents=9900, stock=100, per_user_limit=2,
                    start_ms=base, end_ms=base + 3_600_000,
                    pay_timeout_ms=60_000, auto_receive_ms=120_000,
                    freeze_ms=60_000, commission_bps=[1000, 500],
                    ts_ms=base - 1000))
    out.append(line(type="CreateActivity", activity_id=cold, sku="SKU-CUP-2",
                    price_cents=2500, stock=1000, per_user_limit=5,
                    start_ms=base, end_ms=base + 3_600_000, ts_ms=base - 1000))
    # referral tree: u-<run>-<i> bound to promoters p1..p5, p1..p5 bound to
    # a top promoter; bound before the sale starts
    top = f"top-{run}"
    for p in range(1, 6):
        out.append(line(type="BindReferrer", user_id=f"p{p}-{run}",
                        referrer_id=top, ts_ms=base - 500))
    for u in range(0, 400, 2):
        out.append(line(type="BindReferrer", user_id=f"u-{run}-{u}",
                        referrer_id=f"p{u % 5 + 1}-{run}", ts_ms=base - 400))
    # a cycle attempt and a self-binding: rejected by the rules
    out.append(line(type="BindReferrer", user_id=top,
                    referrer_id=f"p1-{run}", ts_ms=base - 300))
    out.append(line(type="BindReferrer", user_id=f"x-{run}",
                    referrer_id=f"x-{run}", ts_ms=base - 300))
    # too early
    out.append(line(type="PlaceOrder", order_id=f"o-{run}-early",
                    activity_id=hot, user_id=f"u-{run}-1", qty=1,
                    ts_ms=base - 10))
    # the burst: 2,000 orders from 400 users within 2 seconds
    for i in range(2000):
        u = rnd.randrange(400)
        qty = rnd.choice([1, 1, 1, 2, 3])
        out.append(line(type="PlaceOrder", order_id=f"o-{run}-{i}",
                        activity_id=hot, user_id=f"u-{run}-{u}", qty=qty,
                        ts_ms=base + i))
        if i % 100 == 0:
            out.append(line(type="PlaceOrder", order_id=f"c-{run}-{i}",
                            activity_id=cold, user_id=f"u-{run}-{u}", qty=1,
                            ts_ms=base + i))
    # a retry of an accepted-or-not order id: ignored (idempotent)
    out.append(line(type="PlaceOrder", order_id=f"o-{run}-0",
                    activity_id=hot, user_id=f"u-{run}-0", qty=1,
                    ts_ms=base + 2500))
    # value faults: go to Kafka, come back as rejections
    out.append(line(type="PlaceOrder", order_id=f"o-{run}-zero",
                    activity_id=hot, user_id=f"u-{run}-3", qty=0,
                    ts_ms=base + 2600))
    out.append(line(type="PlaceOrder", order_id=f"o-{run}-nowhere",
                    activity_id=f"missing-{run}", user_id=f"u-{run}-3",
                    qty=1, ts_ms=base + 2600))
    # structural faults: refused at the door, never sent
    out.append('{"type":"PlaceOrder","order_id":"bad-1","activity_id":"x",'
               '"user_id":"u","qty":"two","ts_ms":1}')
    out.append('{"type":"PlaceOrder","order_id":"","activity_id":"x",'
               '"user_id":"u","qty":1,"ts_ms":1}')
    out.append('{"type":"Teleport","ts_ms":1}')
    out.append('this is not json')
    return out


def phase2(run, base, accepted):
    """accepted: list of (order_id, amount_cents) in acceptance order."""
    out = []
    t = base + 10_000
    for n, (oid, amount) in enumerate(accepted):
        if n % 4 == 3:
            continue  # left unpaid: cancelled by the payment timeout
        if n == 0:
            # a wrong amount first (rejected, the order stays pending)
            out.append(line(type="ConfirmPayment", order_id=oid,
                            payment_id=f"pay-{oid}-x", amount_cents=1,
                            ts_ms=t))
        out.append(line(type="ConfirmPayment", order_id=oid,
                        payment_id=f"pay-{oid}", amount_cents=amount,
                        ts_ms=t + n))
        if n == 0:
            # the provider retries its notification: ignored
            out.append(line(type="ConfirmPayment", order_id=oid,
                            payment_id=f"pay-{oid}", amount_cents=amount,
                            ts_ms=t + n + 1))
    if len(accepted) > 6:
        oid, amount = accepted[1]
        out.append(line(type="RefundOrder", order_id=oid,
                        refund_id=f"rf-{oid}-1", amount_cents=amount // 3,
                        ts_ms=t + 5000))
        oid, amount = accepted[2]
        out.append(line(type="RefundOrder", order_id=oid,
                        refund_id=f"rf-{oid}-1", amount_cents=amount,
                        ts_ms=t + 5000))
        oid, amount = accepted[4]
        out.append(line(type="ConfirmReceipt", order_id=oid, ts_ms=t + 6000))
        oid, amount = accepted[5]
        out.append(line(type="CancelOrder", order_id=oid,
                        user_id="someone-else", ts_ms=t + 6000))
    # an hour later: unpaid orders time out, paid ones are received
    # automatically and settle after the freeze
    out.append(line(type="Tick", ts_ms=base + 3_600_000))
    return out


def main():
    args = sys.argv[1:]
    phase = 1
    if args and args[0] == "--phase":
        phase = int(args[1])
        args = args[2:]
    run, base = args[0], int(args[1])
    if phase == 1:
        lines = phase1(run, base)
    else:
        accepted = []
        for l in sys.stdin:
            l = l.strip()
            if l:
                oid, amount = l.split()
                accepted.append((oid, int(amount)))
        lines = phase2(run, base, accepted)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
