#!/usr/bin/env python3
"""A command on another partition than its key's is dead-lettered, not
decided (processors.c ordo_processor_refuses).

ordo's producers place a command by its aggregate's key (murmur2, as
Kafka's Java clients do), and a processor's state for that aggregate
lives on that partition. A foreign writer that picks the partition
itself could make a second activity of the same id, with a stock of its
own, and oversell; it was decided so before (found by a review of the
command line). Here a CreateActivity sent by `ordo produce` is copied,
byte for byte, to the next partition of activity-commands:

- the activity stage writes one ActivityCreated, not two;
- the copy is in dead-letters, its ordo.error naming the partition the
  key belongs to, its ordo.source.* headers where it was read and its
  ordo.type the source's, and
  `ordo replay dead-letters` shows both with the message ("dead_letter");
- a PlaceOrder for that activity still reserves from the one stock;
- `ordo reconcile` re-decides the log the same way;
- garbage written to activity-events afterwards (a foreign writer) is
  sent to dead-letters by the Redis projection, which goes on.

And a dead letter keeps the bytes it came with: an empty value stays
empty and a null value or key stays null, as Kafka tells them apart (an
empty value was written null before).

    test_partition.py ORDO_BINARY

Uses its own topic prefix, Mongo database and Redis prefix; exit 0 only
if every check passed.
"""
import argparse
import json
import os
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

import test_e2e as E

BOOTSTRAP = os.environ.get("ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def read_all(topic):
    """Every committed message of topic: [(partition, offset, key, value,
    headers)]."""
    return [(m.partition, m.offset, m.key, m.value, dict(m.headers))
            for m in E.read_committed(topic)]


def partitions(topic):
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    n = len(c.partitions_for_topic(topic))
    c.close()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    t = E.SingleRun(a.ordo, "part", ["activity", "order", "redis"])
    o = t.ordo
    prefix = o.tag + "."
    ts = 1900400000000
    try:
        o.call("topics")
        o.start(t.stages)
        o.produce([E.create("dup", 100, 1, 1, ts, ts + 10 ** 9, ts)],
                  "create")
        ok, out = t.wait()
        t.check("created", ok, out)
        sent = [m for m in read_all(prefix + "activity-commands")
                if m[2] == b"dup"]
        t.check("the CreateActivity is in activity-commands once",
                len(sent) == 1, sent)
        home, _, key, value, headers = sent[0]
        n = partitions(prefix + "activity-commands")
        other = (home + 1) % n
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP)
        p.send(prefix + "activity-commands", key=key, value=value,
               partition=other, headers=list(headers.items())).get(30)
        p.send(prefix + "activity-commands", key=b"empty", value=b"",
               partition=home).get(30)
        p.send(prefix + "activity-commands", key=b"tomb", value=None,
               partition=home).get(30)
        p.send(prefix + "activity-commands", key=None, value=b"x",
               partition=home).get(30)
        p.close()
        ok, out = t.wait()
        t.check("the copy on partition %d consumed" % other, ok, out)
        o.produce([E.place("o1", "dup", "u1", 1, ts + 1),
                   E.place("o2", "dup", "u2", 1, ts + 2)], "orders")
        ok, out = t.wait()
        t.check("orders decided", ok, out)

        created, reserved = 0, []
        for ln in o.call("replay", "activity-events").stdout.splitlines():
            e = json.loads(ln)
            if e.get("type") == "ActivityCreated" and \
                    e.get("activity_id") == "dup":
                created += 1
            if e.get("type") == "StockReserved":
                reserved.append(e["order_id"])
        t.check("one ActivityCreated for dup, not two", created == 1,
                "%d" % created)
        t.check("one stock of 1: one order reserved", len(reserved) == 1,
                reserved)
        dead = read_all(prefix + "dead-letters")
        kept = sorted(((d[2], d[3]) for d in dead if d[2] != b"dup"),
                      key=repr)
        t.check("dead letters keep empty as empty and null as null",
                kept == sorted([(b"empty", b""), (b"tomb", None),
                                (None, b"x")], key=repr),
                kept)
        dead = [d for d in dead if d[2] == b"dup"]
        want = "belongs to partition %d of activity-commands's %d" % (
            home, n)
        t.check("the copy is dead-lettered, its partition named",
                len(dead) == 1 and want in
                dead[0][4].get("ordo.error", b"").decode() and
                dead[0][4].get("ordo.source.partition") ==
                str(other).encode() and dead[0][3] == value and
                dead[0][4].get("ordo.kind") == b"wrong_partition",
                [(d[2], d[4]) for d in dead])
        t.check("the dead letter keeps the source's ordo.type",
                len(dead) == 1 and
                dead[0][4].get("ordo.type") == b"CreateActivity",
                [(d[2], d[4]) for d in dead])
        for flags in ([], ["--meta"]):
            lines = [json.loads(ln) for ln in o.call(
                "replay", "dead-letters", *flags).stdout.splitlines()]
            lines = [ln for ln in lines if ln.get("type")]
            dl = lines[0].get("dead_letter", {}) if len(lines) == 1 else {}
            t.check("ordo replay dead-letters%s: the CreateActivity with "
                    "why and where it was refused" % "".join(
                        " " + f for f in flags),
                    len(lines) == 1 and lines[0].get("type") ==
                    "CreateActivity" and want in dl.get("error", "") and
                    dl.get("source_partition") == str(other) and
                    dl.get("source_topic") == prefix + "activity-commands"
                    and dl.get("stage") == "activity",
                    lines)
        t.reconciled_and_running(events_only=True)

        # Garbage on an events topic (only processors write there: a
        # foreign writer): the projection sends it to dead-letters and
        # goes on. After reconcile, which reports it as an extra event.
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP)
        p.send(prefix + "activity-events", key=b"junk", value=b"\x00junk",
               partition=home).get(30)
        # and a command there, which decodes: no event a processor writes
        p.send(prefix + "activity-events", key=b"cmd", value=value,
               partition=home, headers=list(headers.items())).get(30)
        p.close()
        o.produce([E.place("o3", "dup", "u3", 1, ts + 3)], "after-junk")
        ok, out = t.wait()
        t.check("the projection consumed past the garbage", ok, out)
        junk = [d for d in read_all(prefix + "dead-letters")
                if d[2] == b"junk"]
        t.check("the garbage event is dead-lettered by the projection",
                len(junk) == 1 and junk[0][3] == b"\x00junk" and
                junk[0][4].get("ordo.stage") == b"project.redis" and
                junk[0][4].get("ordo.source.topic") ==
                (prefix + "activity-events").encode() and
                junk[0][4].get("ordo.error") and
                junk[0][4].get("ordo.kind") == b"undecodable",
                [(d[2], d[4]) for d in junk])
        cmd = [d for d in read_all(prefix + "dead-letters")
               if d[2] == b"cmd"]
        t.check("the command on the events topic is dead-lettered by the "
                "projection as unexpected_type",
                len(cmd) == 1 and cmd[0][3] == value and
                cmd[0][4].get("ordo.kind") == b"unexpected_type" and
                cmd[0][4].get("ordo.stage") == b"project.redis" and
                b"CreateActivity" in cmd[0][4].get("ordo.error", b""),
                [(d[2], d[4]) for d in cmd])
        lag = o.call("lag").stdout
        t.check("ordo lag counts them as foreign, not as parked",
                "foreign at the projections 2; parked by project.mongo "
                "0, project.redis 0" in lag and "last parked" not in lag,
                lag[-600:])
        n_act = len([d for d in read_all(prefix + "dead-letters")
                     if d[4].get("ordo.stage") == b"activity"])
        t.check("ordo lag names the processor that wrote its letters",
                n_act >= 2 and "(processors %d: activity %d; " % (
                    n_act, n_act) in lag, lag[-600:])
        # The same on commission-events: reconcile lists it as an extra,
        # and does not blame the join for it (its note on late bindings
        # was printed for a foreign writer's garbage; an outside audit).
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP)
        p.send(prefix + "commission-events", key=b"junk", value=b"\x00junk",
               partition=0).get(30)
        p.close()
        rec = o.call("reconcile", "--skip-read-models", check=False)
        t.check("reconcile: the garbage an extra, not the join's note",
                rec.returncode == 1 and "commission-events/0@" in rec.stdout
                and "extra: undecodable" in rec.stdout and
                "note:" not in rec.stdout, rec.stdout[-800:])
        t.check("an order after the garbage reaches Redis",
                t.r.cmd("HGET", o.prefix + "order:o3", "status") in
                ("REJECTED", b"REJECTED"),
                t.r.cmd("HGETALL", o.prefix + "order:o3"))
        # Last, as it takes the topic away: dead letters that cannot be
        # counted are a failure to ask Kafka (exit 1), not a count of 0
        # with exit 0.
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        admin.delete_topics([prefix + "dead-letters"], timeout_ms=30000)
        admin.close()
        lag = o.call("lag", check=False)
        t.check("ordo lag without its dead-letters topic: exit 1, the "
                "count marked +, the topic named",
                lag.returncode == 1 and "dead letters: 0+" in lag.stdout and
                "partitions behind: " in lag.stdout and
                prefix + "dead-letters" in lag.stderr,
                (lag.returncode, lag.stdout[-300:], lag.stderr[-300:]))
    except Exception as e:  # noqa: BLE001 (report and count it)
        t.check("no error", False, "%s: %s" % (type(e).__name__, e))
    return t.finish(a.keep)


if __name__ == "__main__":
    sys.exit(main())
