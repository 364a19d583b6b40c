#!/usr/bin/env python3
"""A log that lost its first records is refused, not trusted.

An outside audit deleted the first record of an activity-events
partition (what a broker's default retention, 7 days, does): `ordo run`
restored without a word and rejected a live sale's orders
UNKNOWN_ACTIVITY, `ordo rebuild` wrote a read model without the
activity and exited 0, and `ordo reconcile` blamed every decision.

Checks: `ordo topics` makes ordo's topics with no retention limit (the
snapshot topics compacted); then, the first records of activity-events
deleted (Kafka's DeleteRecords, as retention does), the activity stage
refuses to restore those partitions (an ERROR naming the offset) and
stops `ordo run` with a non-zero status, deciding nothing; `ordo
rebuild` and `ordo reconcile` refuse too.

    test_retention.py ORDO_BINARY [--keep]

Uses its own topic prefix, Mongo database and Redis prefix; exit 0 only
if every check passed.
"""
import argparse
import os
import sys
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

import test_e2e as E

BOOTSTRAP = os.environ.get("ORDO_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def topic_configs(admin, topic):
    """{name: value} of a topic's own configuration (its overrides)."""
    res = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {k: v["value"] for k, v in res["topic"][topic].items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    t = E.SingleRun(a.ordo, "retention", ["activity", "order"])
    o = t.ordo
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        o.call("topics")
        for name in ("activity-events", "order-commands", "dead-letters"):
            c = topic_configs(admin, "%s.%s" % (o.tag, name))
            t.check("ordo topics: %s kept for ever" % name,
                    c.get("retention.ms") == "-1" and
                    c.get("retention.bytes") == "-1", c)
        c = topic_configs(admin, "%s.activity-snapshots" % o.tag)
        t.check("ordo topics: activity-snapshots compacted",
                c.get("cleanup.policy") == "compact", c)

        t0 = 1900400000000
        aids = ["A%d" % i for i in range(12)]
        o.start(t.stages)
        o.produce([E.create(x, 1000, 10, 1, t0, t0 + 10 ** 9, t0)
                   for x in aids], "create")
        ok, out = t.wait()
        t.check("activities created", ok, out)
        o.stop()

        # Delete the first record of every activity-events partition
        # that has one (each holds an ActivityCreated the state needs).
        topic = "%s.activity-events" % o.tag
        cons = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
        parts = [TopicPartition(topic, p)
                 for p in sorted(cons.partitions_for_topic(topic))]
        ends = cons.end_offsets(parts)
        cons.close()
        cut = {tp: 1 for tp in parts if ends[tp] > 0}
        admin.delete_records(cut)
        t.check("records deleted in %d partition(s)" % len(cut),
                len(cut) > 0)

        with open(o.run_log) as f:
            before = len(f.read())
        o.start(t.stages)
        found = E.eventually(
            lambda: open(o.run_log).read()[before:].count(
                "begins at offset 1, but it is needed from offset 0"),
            timeout=60)
        t.check("ordo run: the activity stage refuses to restore the "
                "partitions that lost records", found >= 1,
                o.log_tail(10))
        try:
            rc = o.run_proc.wait(60)
        except Exception:  # noqa: BLE001 (still running: the check fails)
            rc = None
        t.check("ordo run stops with a non-zero status (no retry mends "
                "a lost log)", rc not in (None, 0), rc)
        if rc is not None:
            o.run_proc = None  # that exit was the point, not a failure
        o.produce([E.place("o-%s" % x, x, "u1", 1, t0 + 5) for x in aids],
                  "place")
        time.sleep(5)
        rep = o.call("replay", "activity-events", check=False)
        decided = [ln for ln in rep.stdout.splitlines() if '"o-A' in ln]
        t.check("nothing decided on a state without its records (every "
                "partition lost some)", not decided, decided[:3])
        o.stop()

        rb = o.call("rebuild", "redis", "--into", o.tag + "rb:",
                    "--no-commit", check=False)
        t.check("ordo rebuild refuses the log (exit 1, says why)",
                rb.returncode == 1 and "begins at offset 1" in rb.stderr,
                repr((rb.returncode, rb.stderr[-600:])))
        rc = o.call("reconcile", "--skip-read-models", check=False)
        t.check("ordo reconcile refuses to compare it (exit 2, says why)",
                rc.returncode == 2 and "begins at offset 1" in rc.stderr,
                repr((rc.returncode, rc.stderr[-600:])))
    except Exception as e:  # noqa: BLE001 (report and count it)
        t.check("no error", False, "%s: %s" % (type(e).__name__, e))
    finally:
        admin.close()
    return t.finish(a.keep)


if __name__ == "__main__":
    sys.exit(main())
