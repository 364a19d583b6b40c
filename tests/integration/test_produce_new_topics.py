#!/usr/bin/env python3
"""Nothing reported as sent is missing (issue 14, item 0).

usage: test_produce_new_topics.py ORDO_BINARY [--rounds N] [--lines N]
       [--budget SECONDS] [--seed N]

Each round creates a fresh topic prefix, lets `ordo produce` create the
topics and send N command lines into them at once (the case where
librdkafka 2.0.2 "implicitly acked" a first batch the new partition had
refused with NOT_LEADER), and then counts what the log holds: the end
offsets of every partition of the command topics.  An idempotent,
non-transactional producer writes one offset per message, so

    written  >=  sent          (nothing reported as sent is missing)
    written  <=  queued        (nothing appears from nowhere)

where sent and not-delivered come from produce's own summary and queued
is one message per line plus one per partition for each Tick.  A round
that reports a line as not delivered is fine (the caller retries it); a
line reported sent and not in the log is the failure.

Rounds stop after --rounds or once --budget seconds are spent (CI keeps
it near two minutes).  The topics of each round are deleted afterwards.
Ends with criterion's synthesis line, which the CI script sums.
"""

import argparse
import os
import random
import re
import subprocess
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

COMMAND_TOPICS = ("activity-commands", "order-commands", "referral-commands")
SUMMARY = re.compile(r"ordo produce: (\d+) command\(s\) sent, (\d+) refused, "
                     r"(\d+) not delivered")


def write_lines(path, n, rnd, tag):
    """n command lines over many keys, so every partition gets a few."""
    lines = 0
    with open(path, "w") as f:
        for i in range(n):
            k = rnd.randrange(6)
            if k == 0:
                f.write('{"type":"BindReferrer","user_id":"u%d-%d",'
                        '"referrer_id":"r%d"}\n' % (i, rnd.randrange(1 << 30),
                                                     rnd.randrange(50)))
            elif k == 1:
                f.write('{"type":"ConfirmPayment","order_id":"o-%s-%d",'
                        '"payment_id":"p%d","amount_cents":100}\n'
                        % (tag, i, i))
            else:
                f.write('{"type":"PlaceOrder","order_id":"o-%s-%d",'
                        '"activity_id":"a%d","user_id":"u%d","qty":1}\n'
                        % (tag, i, rnd.randrange(1000), i))
            lines += 1
    return lines


def end_offsets(bootstrap, topics):
    c = KafkaConsumer(bootstrap_servers=bootstrap,
                      isolation_level="read_uncommitted")
    try:
        total = {}
        for t in topics:
            parts = c.partitions_for_topic(t) or set()
            tps = [TopicPartition(t, p) for p in sorted(parts)]
            ends = c.end_offsets(tps)
            begins = c.beginning_offsets(tps)
            total[t] = {tp.partition: ends[tp] - begins[tp] for tp in tps}
        return total
    finally:
        c.close()


def delete_topics(bootstrap, prefix):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names, timeout_ms=30000)
    except Exception as e:  # cleanup only: report, do not fail the test
        print("  cleanup of %s*: %s" % (prefix, e))
    finally:
        admin.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--budget", type=float, default=110)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    bootstrap = os.environ.get("ORDO_KAFKA_BOOTSTRAP_SERVERS",
                               "127.0.0.1:9092")
    rnd = random.Random(args.seed)
    run_tag = "pnt%d-%d" % (os.getpid(), args.seed)
    workdir = os.environ.get("TMPDIR", "/tmp")
    path = os.path.join(workdir, "%s.jsonl" % run_tag)
    passed = failed = 0
    totals = dict(sent=0, lost=0, undelivered=0, rounds=0)
    t0 = time.time()
    for r in range(args.rounds):
        if r and time.time() - t0 > args.budget:
            break
        prefix = "%s-%d." % (run_tag, r)
        n = write_lines(path, args.lines, rnd, "%s-%d" % (run_tag, r))
        p = subprocess.run([args.ordo, "-X", "topic.prefix=" + prefix,
                            "-X", "group.prefix=" + prefix, "produce", path],
                           capture_output=True, text=True, timeout=300)
        m = SUMMARY.search(p.stderr)
        try:
            if not m:
                raise AssertionError("no summary (exit %d): %s"
                                     % (p.returncode, p.stderr[-2000:]))
            sent, refused, undelivered = map(int, m.groups())
            offs = end_offsets(bootstrap,
                               [prefix + t for t in COMMAND_TOPICS])
            written = sum(sum(v.values()) for v in offs.values())
            ok = (refused == 0 and sent + undelivered == n
                  and written >= sent and written <= n
                  and (p.returncode == 0) == (undelivered == 0))
            totals["lost"] += max(0, sent - written)
            print("round %2d: %s sent=%d not-delivered=%d written=%d "
                  "exit=%d %s" % (r, prefix, sent, undelivered, written,
                                  p.returncode, "ok" if ok else "FAIL"))
            if not ok:
                print("  partitions: %s" % offs)
                print("  " + p.stderr[-1500:].replace("\n", "\n  "))
                raise AssertionError("round %d: %d reported sent, %d in "
                                     "the log" % (r, sent, written))
            passed += 1
            totals["sent"] += sent
            totals["undelivered"] += undelivered
        except AssertionError as e:
            print("  " + str(e))
            failed += 1
        finally:
            totals["rounds"] += 1
            delete_topics(bootstrap, prefix)
    os.unlink(path)
    print("%(rounds)d rounds, %(sent)d commands reported sent, "
          "%(undelivered)d reported not delivered, %(lost)d lost" % totals)
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
          "Crashing: 0" % (passed + failed, passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
