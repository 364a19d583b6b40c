#!/usr/bin/env python3
"""A log written in a previous version of a schema still works
(decision 0024: StockReserved version 2, schemas/previous/).

A rolling upgrade, as an operator would run it: `ordo run` first writes
StockReserved in version 1 (`schemas.write.previous=StockReserved.v1`,
as while instances of the older release still read the topics), then
restarts without it and writes version 2. The checks:

- the first reservations are version 1 on the wire (fastavro, with
  schemas/previous/StockReserved.v1.avsc alone), the later ones version
  2, carrying the order's amount and pay deadline;
- the restarted activity stage restores from the mixed log: the stock
  left is right and the next order is decided on it;
- every order hash and document is what the order stage's events say;
- `ordo replay` prints a version-1 message with its own fields (no
  amount_cents: 0 would be a lie), a version-2 one with the new ones;
- `ordo reconcile` finds no difference: it re-decides the log and
  compares each stored event in the version it was written in, and
  rebuilds both read models from the mixed log.

    test_upgrade.py ORDO_BINARY

Uses its own topic prefix, Mongo database and Redis prefix; exit 0 only
if every check passed.
"""
import argparse
import io
import json
import os
import sys
import time

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

import test_e2e as E

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PRICE, STOCK, TIMEOUT = 990, 10, 900000


def schema(path):
    parsed = fastavro.parse_schema(json.load(open(path)))
    fp = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
    return bytes.fromhex(fp), parsed


V1 = schema(os.path.join(ROOT, "schemas", "previous",
                         "StockReserved.v1.avsc"))
V2 = schema(os.path.join(ROOT, "schemas", "StockReserved.avsc"))


def reservations(topic):
    """{order_id: (version, record)} of every committed StockReserved,
    each read with the schema its fingerprint names."""
    out = {}
    for m in E.read_committed(topic):
        if dict(m.headers).get("ordo.type") != b"StockReserved":
            continue
        for version, (fp, parsed) in ((1, V1), (2, V2)):
            if m.value[2:10] == fp:
                rec = fastavro.schemaless_reader(io.BytesIO(m.value[10:]),
                                                 parsed)
                out[rec["order_id"]] = (version, rec)
                break
        else:
            out["?"] = (0, m.value[:10].hex())
    return out


def rollback(run, res):
    """Back to an older release after a newer one wrote its version: the
    activity stage's own log holds a StockReserved (its ordo.type says
    so) whose fingerprint this release does not know. Its restore
    refuses, naming it, rather than go on with a state that lacks it
    (skipped, the stock would be counted as if it had not been taken).
    Bytes without an ordo.type header are a foreign writer's, skipped
    as before, and the stage goes on."""
    from kafka import KafkaProducer
    ordo, r, check = run.ordo, run.r, run.check
    topic = ordo.tag + ".activity-events"
    part = {m.partition for m in E.read_committed(topic)
            if dict(m.headers).get("ordo.type") == b"StockReserved"}
    check("a1's events in one partition", len(part) == 1, part)
    part = part.pop()
    unknown = b"\xc3\x01" + bytes(8)  # a fingerprint no schema has
    prod = KafkaProducer(bootstrap_servers=os.environ.get(
        "ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    prod.send(topic, key=b"a1", value=b"not avro", partition=part)
    prod.flush()
    ordo.stop()
    ordo.start(run.stages)
    ordo.produce([E.place("o6", "a1", "u6", 1, int(time.time() * 1000))],
                 "foreign")
    ok, out = run.wait()
    h = E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:o6"))
    check("a foreign writer's bytes skipped: o6 takes the last unit",
          ok and h.get("status") == "PENDING_PAYMENT", (out, h))
    prod.send(topic, key=b"a1", value=unknown + b"\x02o7",
              partition=part, headers=[("ordo.type", b"StockReserved")])
    prod.flush()
    prod.close()
    ordo.stop()
    ordo.start(run.stages)
    deadline, said = time.time() + 60, ""
    while time.time() < deadline and "written by a newer release" not in \
            said:
        time.sleep(0.5)
        said = open(ordo.run_log).read()
    check("a newer release's StockReserved: the restore refuses, naming "
          "it", "a StockReserved in a schema version this release does "
          "not know, written by a newer release" in said and
          "%s [%d] offset" % (topic, part) in said, ordo.log_tail())
    rc = ordo.stop()
    check("... and ordo run exits non-zero, as for a log that lost "
          "records", rc not in (None, 0), rc)
    ordo.run_proc = None  # its end is checked: finish() would not expect it


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    run = E.SingleRun(args.ordo, "upg", ["activity", "order", "redis",
                                         "mongo"])
    ordo, r, mongo, check, wait = run.ordo, run.r, run.mongo, run.check, \
        run.wait
    stages = run.stages

    try:
        ordo.call("topics")
        now = int(time.time() * 1000)
        plain = list(ordo.flags)
        ordo.flags += ["-X", "schemas.write.previous=StockReserved.v1"]
        ordo.start(stages)
        ordo.produce([E.create("a1", PRICE, STOCK, 3, now - 60000,
                               now + 3600000, now),
                      E.place("o1", "a1", "u1", 1, now + 1),
                      E.place("o2", "a1", "u2", 2, now + 2)], "before")
        ok, out = wait()
        check("the older release's format: sale applied", ok, out)
        ordo.stop()
        ordo.flags = plain
        ordo.start(stages)
        ordo.produce([E.place("o3", "a1", "u3", 3, now + 3),
                      E.place("o4", "a1", "u4", 3, now + 4),
                      E.place("o5", "a1", "u5", 3, now + 5)], "after")
        ok, out = wait()
        check("upgraded: sale applied", ok, out)

        res = reservations(ordo.tag + ".activity-events")
        versions = {k: v[0] for k, v in res.items()}
        check("o1, o2 written as version 1, o3, o4 as version 2; o5 "
              "refused (1 left)",
              versions == {"o1": 1, "o2": 1, "o3": 2, "o4": 2},
              versions)
        o3 = res.get("o3", (0, {}))[1]
        check("version 2 carries the order's terms",
              o3.get("amount_cents") == 3 * PRICE and
              o3.get("pay_deadline_ms") == now + 3 + TIMEOUT, o3)
        check("restored from the mixed log: 1 unit left",
              r.cmd("GET", ordo.prefix + "stock:a1") == "1",
              r.cmd("GET", ordo.prefix + "stock:a1"))
        o5 = E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:o5"))
        check("o5 decided on the restored stock",
              o5.get("status") == "REJECTED" and
              o5.get("reason") == "INSUFFICIENT_STOCK", o5)
        bad = []
        for i, (u, q) in enumerate([("u1", 1), ("u2", 2), ("u3", 3),
                                    ("u4", 3)], 1):
            oid = "o%d" % i
            h = E.hash_of(r.cmd("HGETALL", ordo.prefix + "order:" + oid))
            d = mongo[ordo.db].orders.find_one({"_id": oid}) or {}
            want = dict(status="PENDING_PAYMENT", user_id=u, qty=q,
                        amount_cents=q * PRICE, placed_ms=now + i,
                        pay_deadline_ms=now + i + TIMEOUT, version=1)
            got_h = {k: (int(h[k]) if k in ("qty", "amount_cents",
                                             "placed_ms", "pay_deadline_ms",
                                             "version") else h[k])
                     for k in want if k in h}
            got_d = {k: d.get(k) for k in want}
            if got_h != want or got_d != want:
                bad.append((oid, got_h, got_d))
        check("every order hash and document as the order stage says",
              not bad, bad)

        rp = ordo.call("replay", "activity-events")
        lines = [json.loads(s) for s in rp.stdout.splitlines() if s.strip()]
        rs = {x["order_id"]: x for x in lines
              if x.get("type") == "StockReserved"}
        check("replay: version 1 printed with its own fields",
              "o1" in rs and "amount_cents" not in rs["o1"] and
              rs["o1"].get("remaining") == STOCK - 1, rs.get("o1"))
        check("replay: version 2 with the new ones",
              rs.get("o3", {}).get("amount_cents") == 3 * PRICE,
              rs.get("o3"))
        bad_pin = ordo.call("-X", "schemas.write.previous=StockReserved.v7",
                            "process", "activity", check=False)
        check("an unknown previous version is refused, named",
              bad_pin.returncode != 0 and
              "StockReserved.v7" in bad_pin.stderr, bad_pin.stderr[-500:])
        run.reconciled_and_running()  # over the mixed log
        rollback(run, res)
    except Exception as e:  # noqa: BLE001 (report and count it)
        check("no error", False, "%s: %s" % (type(e).__name__, e))
    return run.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
