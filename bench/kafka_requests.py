#!/usr/bin/env python3
"""The broker's own account of the requests of transactions.

Reads Kafka's request metrics (kafka.network:type=RequestMetrics) over
JMX with Kafka's JmxTool and prints, per request type, how many were
handled, where their time went (queued for an I/O thread, handled,
waiting in purgatory, queued for the network thread, sent) and which
errors the broker answered. Counts and maxima are since the broker
started; percentiles are Kafka's (a reservoir biased to the last
minutes). Take one snapshot before and one after a run and compare the
counts.

The broker must have been started with JMX on, e.g.

    infra/stack down
    ORDO_STACK_KAFKA_JVM_OPTS="-Dcom.sun.management.jmxremote.port=9999 \\
      -Dcom.sun.management.jmxremote.host=127.0.0.1 \\
      -Djava.rmi.server.hostname=127.0.0.1 \\
      -Dcom.sun.management.jmxremote.authenticate=false \\
      -Dcom.sun.management.jmxremote.ssl=false" infra/stack up

    $ORDO_PYTHON bench/kafka_requests.py [--jmx HOST:PORT]

(bench/RESULTS.md "Session 8" used it.) Needs `java` and the jars of
infra/stack (ORDO_STACK_KAFKA_CLASSPATH, from `infra/stack env`).
"""
import argparse
import collections
import os
import re
import subprocess
import sys

REQUESTS = ["Produce", "AddPartitionsToTxn", "AddOffsetsToTxn",
            "TxnOffsetCommit", "EndTxn", "WriteTxnMarkers", "OffsetCommit",
            "Heartbeat", "FindCoordinator", "InitProducerId"]
PHASES = [("RequestQueueTimeMs", "queued"), ("LocalTimeMs", "handled"),
          ("RemoteTimeMs", "purgatory"), ("ResponseQueueTimeMs", "resp.queued"),
          ("ResponseSendTimeMs", "sent"), ("TotalTimeMs", "total")]
LINE = re.compile(r"kafka\.network:type=RequestMetrics,name=(\w+),"
                  r"request=(\w+)(?:,error=(\w+))?(?:,version=\d+)?:(\w+)=(.*)")


def jmx(url, names, attrs):
    cp = os.environ.get("ORDO_STACK_KAFKA_CLASSPATH")
    if not cp:
        sys.exit("kafka_requests: ORDO_STACK_KAFKA_CLASSPATH is not set "
                 "(eval \"$(infra/stack env)\")")
    cmd = ["java", "-cp", cp, "org.apache.kafka.tools.JmxTool",
           "--jmx-url", url, "--attributes", attrs, "--one-time", "true",
           "--report-format", "properties"]
    for n in names:
        cmd += ["--object-name", n]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0 or "time=" not in p.stdout:
        sys.exit("kafka_requests: JmxTool failed (is the broker's JMX on? "
                 "see --help):\n" + (p.stderr or p.stdout)[-2000:])
    return p.stdout.splitlines()


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jmx", default="127.0.0.1:9999",
                    help="the broker's JMX address (default %(default)s)")
    a = ap.parse_args()
    url = "service:jmx:rmi:///jndi/rmi://%s/jmxrmi" % a.jmx
    names = ["kafka.network:type=RequestMetrics,name=%s,request=%s" % (m, r)
             for r in REQUESTS for m, _ in PHASES]
    times = collections.defaultdict(dict)
    for ln in jmx(url, names, "Count,Mean,99thPercentile,Max"):
        m = LINE.match(ln.strip())
        if m:
            times[(m.group(2), m.group(1))][m.group(4)] = float(m.group(5))
    errors = collections.defaultdict(dict)
    for ln in jmx(url, ["kafka.network:type=RequestMetrics,"
                        "name=ErrorsPerSec,*"], "Count"):
        m = LINE.match(ln.strip())
        if m and m.group(3) and m.group(3) != "NONE" and m.group(2) in \
                REQUESTS and float(m.group(5)) > 0:
            errors[m.group(2)][m.group(3)] = int(float(m.group(5)))
    print("ms: mean / p99 / max per phase")
    print("%-19s %9s  %s" % ("request", "count", "  ".join(
        "%-17s" % label for _, label in PHASES)))
    for r in REQUESTS:
        n = times[(r, "TotalTimeMs")].get("Count", 0)
        if not n:
            continue
        cells = []
        for metric, _ in PHASES:
            t = times[(r, metric)]
            cells.append("%-17s" % ("%.1f / %.0f / %.0f" % (
                t.get("Mean", 0), t.get("99thPercentile", 0),
                t.get("Max", 0))))
        print("%-19s %9d  %s" % (r, n, "  ".join(cells)))
        for err, c in sorted(errors[r].items()):
            print("%-19s %9d  answered %s" % ("", c, err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
