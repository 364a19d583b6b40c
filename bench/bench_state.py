#!/usr/bin/env python3
"""Memory of `ordo run` per order: each processor's state as its rules
count it (ordo_state_bytes{stage}) against the process's resident set.

    bench_state.py ORDO_BINARY [--users U] [--phases P] [--orders N]

U users are bound to referrers first (user u to u // 3: chains of
bindings, one commission level or two for everyone). Then P phases, each
sends N PlaceOrders over 8 activities and pays every one of them, then
confirms the receipt of a quarter and refunds 5.00 of another quarter,
each step followed by `ordo wait`. After the bindings and after each
phase it prints /metrics' ordo_state_bytes and
process_resident_memory_bytes: totals in MB, and the growth per order
since the bindings in bytes. Uses its own prefix (topics, groups, MongoDB
database, Redis keys) and deletes them at the end.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from bench_topics import delete_topics_of


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--phases", type=int, default=5)
    ap.add_argument("--orders", type=int, default=40000)
    a = ap.parse_args()
    tag = "st%x" % int(time.time())
    flags = ["-X", "topic.prefix=%s." % tag, "-X", "group.prefix=%s." % tag,
             "-X", "mongo.db=%s" % tag, "-X", "redis.prefix=%s:" % tag]
    quiet = flags + ["-X", "metrics.listen="]

    def produce(cmds):
        p = subprocess.run([a.ordo] + quiet + ["produce"], text=True,
                           capture_output=True,
                           input="".join(json.dumps(c) + "\n" for c in cmds))
        if p.returncode:
            sys.exit("ordo produce: %s" % p.stderr[-2000:])

    def wait():
        w = subprocess.run([a.ordo] + quiet + ["wait", "--timeout", "900"],
                           text=True, capture_output=True)
        if w.returncode:
            sys.exit("ordo wait: %s" % w.stderr[-2000:])
        time.sleep(1.5)  # ordo_state_bytes is set once a second

    port = free_port()

    def scrape():
        text = urllib.request.urlopen(
            "http://127.0.0.1:%d/metrics" % port).read().decode()
        out = {}
        for ln in text.splitlines():
            if ln.startswith("ordo_state_bytes{"):
                out[ln.split('"')[1]] = float(ln.rsplit(" ", 1)[1])
            elif ln.startswith("process_resident_memory_bytes "):
                out["RSS"] = float(ln.rsplit(" ", 1)[1])
        return out

    print("prefix %s; ordo run's metrics on 127.0.0.1:%d" % (tag, port))
    run = subprocess.Popen(
        [a.ordo] + flags + ["-X", "metrics.listen=127.0.0.1:%d" % port,
                            "-X", "log.level=warn", "run"],
        stderr=open(os.path.join("/tmp", tag + "-run.log"), "w"))
    try:
        produce([{"type": "CreateActivity", "activity_id": "a%d" % i,
                  "sku": "s%d" % i, "price_cents": 1999, "stock": 10000000,
                  "per_user_limit": 10000000, "start_ms": 0,
                  "end_ms": 4102444800000, "pay_timeout_ms": 86400000}
                 for i in range(8)])
        produce([{"type": "BindReferrer", "user_id": "u%d" % u,
                  "referrer_id": "u%d" % (u // 3)}
                 for u in range(1, a.users)])
        wait()
        base = scrape()
        print("after %d bindings, MB: %s" % (a.users - 1, json.dumps(
            {k: round(v / 1e6, 1) for k, v in base.items()})))
        n = 0
        for _ in range(a.phases):
            place, pay, after = [], [], []
            for i in range(a.orders):
                oid = "o%08d" % n
                n += 1
                place.append({"type": "PlaceOrder", "order_id": oid,
                              "activity_id": "a%d" % (n % 8),
                              "user_id": "u%d" % (n % a.users), "qty": 1})
                pay.append({"type": "ConfirmPayment", "order_id": oid,
                            "payment_id": "p" + oid, "amount_cents": 1999})
                if i % 4 == 0:
                    after.append({"type": "ConfirmReceipt",
                                  "order_id": oid})
                elif i % 4 == 1:
                    after.append({"type": "RefundOrder", "order_id": oid,
                                  "refund_id": "r" + oid,
                                  "amount_cents": 500})
            for cmds in (place, pay, after):
                produce(cmds)
                wait()
            m = scrape()
            print("%d orders: MB %s; bytes per order since the bindings %s"
                  % (n, json.dumps({k: round(v / 1e6, 1)
                                    for k, v in m.items()}),
                     json.dumps({k: round((m[k] - base.get(k, 0)) / n)
                                 for k in m})), flush=True)
    finally:
        run.terminate()
        run.wait(60)
        cleanup(tag)


def cleanup(tag):
    """The prefix's topics, MongoDB database and Redis keys (best
    effort: a failure is printed)."""
    delete_topics_of([tag])
    try:
        from pymongo import MongoClient
        MongoClient(os.environ.get("ORDO_MONGO_URI",
                                   "mongodb://127.0.0.1:27017/"),
                    serverSelectionTimeoutMS=10000).drop_database(tag)
        cli = ["redis-cli", "-h", os.environ.get("ORDO_REDIS_HOST",
                                                  "127.0.0.1"),
               "-p", os.environ.get("ORDO_REDIS_PORT", "6379")]
        for pattern in (tag + ":*", "{" + tag + ":*"):
            keys = subprocess.run(cli + ["--scan", "--pattern", pattern],
                                  capture_output=True, text=True,
                                  check=True).stdout.split()
            for i in range(0, len(keys), 1000):
                subprocess.run(cli + ["DEL"] + keys[i:i + 1000],
                               capture_output=True, check=True)
    except Exception as e:  # noqa: BLE001 (cleanup only)
        print("cleanup: %s" % e)


if __name__ == "__main__":
    main()
