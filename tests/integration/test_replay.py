#!/usr/bin/env python3
"""`ordo replay` for analysts, on the real local Kafka (issue 15 item 7).

usage: test_replay.py ORDO_BINARY [--seed N] [--keep]

One run on its own topics (prefix rpl<random>.). Messages are written here,
not by the processors, so that every case is known: Avro single-object
records encoded with fastavro from schemas/*.avsc, some with empty
strings, keys on chosen partitions, one message without a key, an
undecodable one, and an aborted transaction (kafka-python's transactional
producer). The reference is the same topic read back with kafka-python
(read_committed) and decoded with fastavro. Checks:
  - --meta: every line carries topic, partition, offset and key, equal to
    the reference message by message; the fields equal fastavro's
    decoding, every field of the .avsc present, empty strings kept; the
    aborted messages never show;
  - --partition N: that partition only; a partition the topic lacks is a
    usage error naming the range;
  - without --to-ts nothing is cut, not even ts_ms 2^63-1;
  - --from-ts / --to-ts as ISO-8601 (Z, an offset, milliseconds) select
    exactly what the same times in ms select, and what ts_ms says;
  - the stable end: with a transaction open, replay waits for it and,
    once it commits, prints its messages (not stopping short at the open
    transaction);
  - bad flags exit 2 with a message naming the flag.

Ends with criterion's line:
    [====] Synthesis: Tested: N | Passing: N | Failing: N | Crashing: 0
"""

import argparse
import datetime
import glob
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BOOTSTRAP = os.environ.get("ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 4
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok)))
    print("  [%s] %s%s" % ("PASS" if ok else "FAIL", name,
                           ("\n      " + str(detail).replace("\n", "\n      "))
                           if detail and not ok else ""))


# ------------------------------------------------------------------ avro
SCHEMAS = {}     # name -> parsed schema
BY_PRINT = {}    # 8 fingerprint bytes as on the wire -> parsed schema
FIELDS = {}      # name -> field names in .avsc order
for path in glob.glob(os.path.join(ROOT, "schemas", "*.avsc")):
    raw = json.load(open(path))
    parsed = fastavro.parse_schema(raw)
    SCHEMAS[raw["name"]] = parsed
    fp = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
    BY_PRINT[bytes.fromhex(fp)] = parsed
    FIELDS[raw["name"]] = [f["name"] for f in raw["fields"]]


def encode(rec_type, rec):
    schema = SCHEMAS[rec_type]
    fp = fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, rec)
    return b"\xc3\x01" + bytes.fromhex(fp) + buf.getvalue()


def decode(value):
    schema = BY_PRINT[value[2:10]]
    rec = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)
    rec["type"] = schema["name"].split(".")[-1]
    return rec


def order_paid(rng, i, ts, empty):
    oid = "o%04d" % i
    return {"event_id": "order-commands-0-%d-0" % i, "aggregate_id": oid,
            "version": 2, "ts_ms": ts,
            "causation_id": "" if empty else "cmd-%d" % i,
            "correlation_id": "" if empty else "corr-%d" % i,
            "order_id": oid, "payment_id": "pay-%d" % i,
            "amount_cents": rng.randint(1, 10**6), "paid_ms": ts}


# ----------------------------------------------------------------- kafka
def reference(topic):
    """Every committed message: [(partition, offset, key, value)]."""
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP,
                      isolation_level="read_committed",
                      enable_auto_commit=False, consumer_timeout_ms=5000)
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    ends = c.end_offsets(parts)
    out = []
    while any(c.position(p) < ends[p] for p in parts):
        batch = c.poll(timeout_ms=1000)
        for recs in batch.values():
            for m in recs:
                out.append((m.partition, m.offset,
                            m.key.decode() if m.key is not None else None,
                            m.value))
    c.close()
    out.sort(key=lambda x: (x[0], x[1]))
    return out


def replay(binary, *args, timeout=180):
    p = subprocess.run([binary] + list(args), capture_output=True,
                       text=True, timeout=timeout)
    lines = [json.loads(s) for s in p.stdout.splitlines() if s.strip()]
    return p.returncode, lines, p.stderr


def iso(ms, tz_minutes=0, frac=True):
    tz = datetime.timezone(datetime.timedelta(minutes=tz_minutes))
    t = datetime.datetime.fromtimestamp(ms / 1000, tz)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        s += ".%03d" % (ms % 1000)
    if tz_minutes == 0:
        return s + "Z"
    sign = "+" if tz_minutes > 0 else "-"
    return s + "%s%02d:%02d" % (sign, abs(tz_minutes) // 60,
                                abs(tz_minutes) % 60)


# ----------------------------------------------------------------- cases
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tag = "rpl%08x" % random.SystemRandom().getrandbits(32)
    topic = tag + ".order-events"
    flags = ["-X", "topic.prefix=%s." % tag]
    print("replay test: seed %d, topic %s" % (args.seed, topic))

    adm = KafkaAdminClient(bootstrap_servers=BOOTSTRAP,
                           request_timeout_ms=30000)
    adm.create_topics([NewTopic(topic, PARTITIONS, 1)])
    try:
        run_cases(args, rng, tag, topic, flags)
    finally:
        if not args.keep:
            adm.delete_topics([topic])
        adm.close()
    failed = sum(1 for _, ok in RESULTS if not ok)
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
          "Crashing: 0" % (len(RESULTS), len(RESULTS) - failed, failed))
    return 1 if failed else 0


def run_cases(args, rng, tag, topic, flags):
    ordo = args.binary
    t0 = 1796000000000 + rng.randint(0, 10**6)
    prod = KafkaProducer(bootstrap_servers=BOOTSTRAP,
                         transactional_id=tag + ".writer",
                         enable_idempotence=True)
    prod.init_transactions()

    # Committed: 40 OrderPaid, ts 1 s apart, every fifth with empty ids,
    # keys on partitions chosen here; one without a key; one undecodable.
    prod.begin_transaction()
    sent = 0
    for i in range(40):
        rec = order_paid(rng, i, t0 + i * 1000, empty=(i % 5 == 0))
        prod.send(topic, key=rec["order_id"].encode(),
                  value=encode("OrderPaid", rec), partition=i % PARTITIONS,
                  headers=[("ordo.type", b"OrderPaid")])
        sent += 1
    rec = order_paid(rng, 99, t0 + 40000, empty=True)
    prod.send(topic, key=None, value=encode("OrderPaid", rec), partition=1)
    prod.send(topic, key=b"junk", value=b"not avro", partition=2)
    # The last ms there is: printed unless --to-ts says otherwise.
    rec = order_paid(rng, 98, 2 ** 63 - 1, empty=False)
    prod.send(topic, key=rec["order_id"].encode(),
              value=encode("OrderPaid", rec), partition=3)
    prod.commit_transaction()
    # Aborted: never to be seen.
    prod.begin_transaction()
    for i in range(5):
        rec = order_paid(rng, 500 + i, t0, empty=False)
        prod.send(topic, key=rec["order_id"].encode(),
                  value=encode("OrderPaid", rec), partition=i % PARTITIONS)
    prod.flush()
    prod.abort_transaction()

    ref = reference(topic)
    ref_ok = [r for r in ref if r[3][:2] == b"\xc3\x01"]
    check("reference: 43 committed messages, aborted ones absent",
          len(ref) == 43, "got %d" % len(ref))

    # Output that cannot be written (a full disk) is no success: the
    # audit's replay to /dev/full exited 0 and said how many it wrote.
    with open("/dev/full", "w") as full:
        p = subprocess.run([ordo] + flags + ["replay", "order-events"],
                           stdout=full, stderr=subprocess.PIPE, text=True,
                           timeout=180)
    check("a full disk: exit 1, the output said incomplete",
          p.returncode == 1 and "the output is incomplete" in p.stderr,
          (p.returncode, p.stderr[-300:]))

    # --meta, whole topic
    rc, lines, err = replay(ordo, *flags, "replay", "order-events", "--meta")
    decoded = [l for l in lines if "undecodable" not in l]
    bad = [l for l in lines if "undecodable" in l]
    check("--meta: exit 0", rc == 0, err)
    where = [(l["partition"], l["offset"], l["key"]) for l in decoded]
    check("--meta: partition, offset, key of every line equal kafka-python's",
          where == [(p, o, k) for p, o, k, _ in ref_ok],
          "replay %s\nref    %s" % (where[:6],
                                    [(p, o, k) for p, o, k, _ in ref_ok][:6]))
    check("--meta: topic on every line, first",
          all(list(l)[0] == "topic" and l["topic"] == topic for l in lines),
          lines[:1])
    fields_ok = True
    detail = ""
    for l, (_, _, _, v) in zip(decoded, ref_ok):
        want = decode(v)
        got = {k: l[k] for k in l if k not in ("topic", "partition",
                                                "offset", "key")}
        if got != want or list(got)[1:] != FIELDS[want["type"]]:
            fields_ok = False
            detail = "replay %s\nfastavro %s" % (got, want)
            break
    check("fields equal fastavro's decoding, in .avsc order", fields_ok,
          detail)
    empties = [l for l in decoded if l["causation_id"] == ""]
    check("empty strings kept (causation_id, correlation_id \"\")",
          len(empties) == 9 and all(l["correlation_id"] == ""
                                    for l in empties),
          "%d lines with causation_id \"\"" % len(empties))
    check("a message without a key has \"key\": null",
          any(l["key"] is None and l["order_id"] == "o0099"
              for l in decoded))
    check("the undecodable message: one line with its place",
          len(bad) == 1 and bad[0]["partition"] == 2 and
          bad[0]["key"] == "junk" and bad[0]["offset"] ==
          [o for p, o, k, v in ref if k == "junk"][0], bad)
    check("aborted messages never show",
          not any(l.get("order_id", "").startswith("o05") for l in decoded))
    check("ts_ms 2^63-1 shows when no --to-ts is given",
          any(l.get("order_id") == "o0098" and l["ts_ms"] == 2 ** 63 - 1
              for l in decoded))
    rc, plain, err = replay(ordo, *flags, "replay", "order-events")
    check("without --meta: no place fields, the same records",
          rc == 0 and all("topic" not in l and "offset" not in l
                          for l in plain if "undecodable" not in l) and
          [l for l in plain if "undecodable" not in l] ==
          [{k: v for k, v in l.items() if k not in ("topic", "partition",
                                                     "offset", "key")}
           for l in decoded], err)

    # --partition
    rc, lines, err = replay(ordo, *flags, "replay", "order-events", "--meta",
                            "--partition", "2")
    want = [(p, o) for p, o, _, _ in ref if p == 2]
    check("--partition 2: exactly partition 2's messages",
          rc == 0 and [(l["partition"], l["offset"]) for l in lines] == want,
          "rc %d got %s want %s %s" % (
              rc, [(l["partition"], l["offset"]) for l in lines], want, err))
    rc, lines, err = replay(ordo, *flags, "replay", "order-events",
                            "--partition", str(PARTITIONS))
    check("--partition past the last: exit 2 naming the range",
          rc == 2 and "0 to %d" % (PARTITIONS - 1) in err and not lines, err)

    # ISO-8601 times
    lo, hi = t0 + 7 * 1000 + 250, t0 + 23 * 1000
    rc1, ms_lines, err1 = replay(ordo, *flags, "replay", "order-events",
                                 "--from-ts", str(lo), "--to-ts", str(hi))
    rc2, iso_lines, err2 = replay(ordo, *flags, "replay", "order-events",
                                  "--from-ts", iso(lo), "--to-ts",
                                  iso(hi, 60))
    want = sorted(decode(v)["order_id"] for _, _, _, v in ref_ok
                  if lo <= decode(v)["ts_ms"] < hi)
    got = sorted(l["order_id"] for l in iso_lines if "order_id" in l)
    check("ISO-8601 --from-ts/--to-ts (Z with ms, +01:00) select by ts_ms",
          rc2 == 0 and got == want and len(want) == 15,
          "rc %d: %s\nwant %s\n%s" % (rc2, got, want, err2))
    check("ISO-8601 and ms give the same lines",
          rc1 == 0 and ms_lines == iso_lines, err1)
    rc, _, err = replay(ordo, *flags, "replay", "order-events",
                        "--from-ts", iso(lo)[:-1])
    check("ISO-8601 without a zone: exit 2 naming --from-ts",
          rc == 2 and "--from-ts" in err, err)
    hi60 = iso(hi, 60)  # ...+01:00
    for zone in ("+0100", "+01"):
        rc, lines, err = replay(ordo, *flags, "replay", "order-events",
                                "--from-ts", iso(lo), "--to-ts",
                                hi60[:-6] + zone)
        check("ISO-8601 zone %s as +01:00" % zone,
              rc == 0 and lines == iso_lines, err)
    rc, _, err = replay(ordo, *flags, "replay", "order-events",
                        "--to-ts", hi60[:-2])
    check("ISO-8601 zone cut short (+01:): exit 2 naming --to-ts",
          rc == 2 and "--to-ts" in err, err)

    # the stable end: an open transaction is waited for
    prod.begin_transaction()
    for i in range(6):
        rec = order_paid(rng, 700 + i, t0 + 50000, empty=False)
        prod.send(topic, key=rec["order_id"].encode(),
                  value=encode("OrderPaid", rec), partition=i % PARTITIONS)
    prod.flush()
    p = subprocess.Popen([ordo] + flags + ["replay", "order-events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(3)
    waiting = p.poll() is None
    prod.commit_transaction()
    try:
        out, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    got = [json.loads(s) for s in out.splitlines()]
    late = [l for l in got if l.get("order_id", "").startswith("o07")]
    check("an open transaction: replay waits for the stable end",
          waiting, "replay exited before the commit: %s" % err)
    check("... and prints the transaction's messages once committed",
          p.returncode == 0 and len(late) == 6,
          "rc %s, %d of 6\n%s" % (p.returncode, len(late), err))

    # stopped by a signal while it waits: it says its output is incomplete
    prod.begin_transaction()
    rec = order_paid(rng, 800, t0 + 60000, empty=False)
    prod.send(topic, key=rec["order_id"].encode(),
              value=encode("OrderPaid", rec), partition=0)
    prod.flush()
    p = subprocess.Popen([ordo] + flags + ["replay", "order-events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    prod.abort_transaction()
    check("stopped by a signal: exit 1, the summary says the output is "
          "incomplete", p.returncode == 1 and "stopped by a signal" in err
          and "incomplete" in err, "rc %s: %s" % (p.returncode, err[-400:]))
    prod.close()

    # bad flags
    for argv, needle in ((["--partition"], "--partition needs a value"),
                         (["--partition", "x"], "--partition"),
                         (["--from-offset", "-3"], "--from-offset"),
                         (["--from-offset", "99999999999999999999"],
                          "--from-offset"),
                         (["--from-ts", "2026-02-30T00:00:00Z"], "--from-ts"),
                         (["--to-ts", "yesterday"], "--to-ts"),
                         (["--from-ts", "-5"], "--from-ts"),
                         (["--from-ts", "99999999999999999999"],
                          "--from-ts"),
                         (["--from-ts", "5", "--to-ts", "5"], "--to-ts"),
                         (["--frm-ts", "5"], "unknown option --frm-ts")):
        rc, lines, err = replay(ordo, *flags, "replay", "order-events",
                                *argv)
        check("bad flag %s: exit 2, says %r" % (" ".join(argv), needle),
              rc == 2 and needle in err and not lines, err)
    # a topic Kafka does not have: at once, a usage error naming it (it
    # waited 30 s for the topic to appear and called it a Kafka failure)
    t = time.time()
    rc, lines, err = replay(ordo, *flags, "replay", "no-such-topic-here")
    check("a topic Kafka does not have: exit 2 at once, naming it",
          rc == 2 and "no topic no-such-topic-here" in err and
          time.time() - t < 10, "exit %d in %.1f s: %s" % (
              rc, time.time() - t, err))
    rc = subprocess.run([ordo, "replay", "--help"], capture_output=True,
                        text=True)
    check("--help names --meta, --partition and ISO-8601",
          rc.returncode == 0 and all(s in rc.stdout for s in (
              "--meta", "--partition", "ISO-8601", "stable end")),
          rc.stdout)


if __name__ == "__main__":
    sys.exit(main())
