#!/usr/bin/env python3
"""The live page and the metrics, end to end on the real local stack.

usage: test_dash.py ORDO_BINARY [--seed N] [--screenshot PNG] [--keep]

A small sale runs on its own topics, groups, database and Redis prefix:
`ordo run` (metrics on a free port) and `ordo dash` (page and metrics on
free ports) start, the sale's commands go in phase by phase, and then
- each /metrics passes `promtool check metrics` (when promtool is
  installed) and /healthz answers 200;
- ordo_decisions_total counts the sale's decisions by result and reason,
  and ordo_consumer_lag is 0 everywhere once `ordo wait` returns (the
  transaction markers are discounted);
- headless Chromium renders the page (--dump-dom), and its numbers equal
  Redis (remaining stock, the leaderboard), MongoDB (accepted orders,
  holds, commission totals) and the sale as sent (rejections by reason).
Ends with criterion's synthesis line. Needs the stack up and Debian's
chromium (infra/stack install).
"""

import argparse
import colorsys
import html.parser
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_e2e as E  # noqa: E402  (Ordo, Redis, the command builders)
import pymongo  # noqa: E402  (test_e2e made sure it is there)

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


free_port = E.free_port


def http(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)  # not listening (yet)


def metric_lines(text, name):
    """{labels-string: value} of one family's samples."""
    out = {}
    for ln in text.splitlines():
        if ln.startswith(name + "{") or ln.startswith(name + " "):
            k, v = ln.rsplit(" ", 1)
            out[k] = float(v)
    return out


def hue_lightness(css):
    """(hue in degrees, lightness in %) of "#rrggbb" or "hsl(h, s%, l%)"."""
    m = re.match(r"hsl\(\s*([\d.]+),\s*[\d.]+%,\s*([\d.]+)%\)", css)
    if m:
        return float(m.group(1)), float(m.group(2))
    m = re.match(r"rgb\((\d+),\s*(\d+),\s*(\d+)\)", css)
    rgb = ([int(x) for x in m.groups()] if m else
           [int(css[k:k + 2], 16) for k in (1, 3, 5)])
    h, lum, _ = colorsys.rgb_to_hls(*[x / 255 for x in rgb])
    return h * 360, lum * 100


def apart(a, b):
    """Two colours a reader tells apart: 20 degrees of hue or 20 points
    of lightness."""
    dh = abs(a[0] - b[0])
    return min(dh, 360 - dh) >= 20 or abs(a[1] - b[1]) >= 20


class Dom(html.parser.HTMLParser):
    """Collects the text of elements by class, within data-* scopes."""

    def __init__(self):
        super().__init__()
        self.stack = []   # (tag, attrs) of open elements
        self.found = []   # (scope attrs, class, text)
        self.cur = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.stack.append((tag, a))
        if a.get("class"):
            self.cur = [a["class"], "", self.scope(), a]

    def handle_endtag(self, tag):
        if self.cur is not None:
            self.found.append(tuple(self.cur))
            self.cur = None
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        if self.cur is not None:
            self.cur[1] += data

    def scope(self):
        s = {}
        for _, a in self.stack:
            for k, v in a.items():
                if k.startswith("data-"):
                    s[k] = v
        return s

    def get_id(self, ident):
        for c, text, sc, a in self.found:
            if a.get("id") == ident:
                return text.strip()
        return None

    def get(self, cls, **scope):
        for c, text, sc, a in self.found:
            merged = dict(sc, **{k: v for k, v in a.items()
                                 if k.startswith("data-")})
            if cls in c.split() and all(
                    merged.get("data-" + k) == v for k, v in scope.items()):
                return text.strip()
        return None


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def eq(self, what, expected, actual):
        if expected == actual:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s: expected %r, got %r" % (what, expected, actual))

    def true(self, what, cond, detail=""):
        self.eq(what + (" (%s)" % detail if detail else ""), True,
                bool(cond))

    def finish(self):
        """criterion's synthesis line, which the CI script sums; exits."""
        print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
              "Crashing: 0" % (self.passed + self.failed, self.passed,
                               self.failed))
        sys.exit(1 if self.failed else 0)


class HostileMetrics(BaseHTTPRequestHandler):
    """A scrape target that is not ordo's: a label that is not UTF-8 (the
    dash wrote to a freed object), a sample with a timestamp (read as its
    value), a NaN, and latency buckets with most of the count above 60 s
    (the +Inf bucket was lost: the quantiles came out in milliseconds).
    The counts rise with each scrape, as a live stage's do."""
    scrapes = 0

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok: hostile"
        else:
            HostileMetrics.scrapes += 1
            n = HostileMetrics.scrapes
            body = (
                b'ordo_consumer_lag{stage="\xff\xfe",topic="t",'
                b'partition="0"} 5\n'
                b'ordo_decisions_total{stage="hostile",command="PlaceOrder",'
                b'result="accepted",reason=""} 7 1700000000000\n'
                b'ordo_decisions_total{stage="hostile",command="PlaceOrder",'
                b'result="rejected",reason="SOLD_OUT"} NaN\n'
                b'ordo_decisions_total{stage="hostile",command="PlaceOrder",'
                b'result="rejected",reason="LIMIT_EXCEEDED"} 3\n' +
                ('ordo_decision_latency_seconds_bucket{stage="activity",'
                 'le="0.01"} %d\n'
                 'ordo_decision_latency_seconds_bucket{stage="activity",'
                 'le="60"} %d\n'
                 'ordo_decision_latency_seconds_bucket{stage="activity",'
                 'le="+Inf"} %d\n' % (10 * n, 10 * n, 100 * n)).encode())
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def endless_target(sock):
    """Answers every connection with a 200 and bytes without end (the
    dash's reader grew without bound, and never sampled again)."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return

        def pour(conn=conn):
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
                while True:
                    conn.sendall(b"x" * 65536)
            except OSError:
                conn.close()
        threading.Thread(target=pour, daemon=True).start()


def mongo_hangs(c, ordo, workdir, r):
    """A MongoDB that hangs (the proxy frozen) shows on the page within
    seconds as mongo_error, and goes when it answers again: the dash's
    loop waited minutes on libmongoc's default socket timeout, the page
    on old figures and no error (an outside audit). Meanwhile the rest
    of the page stays live: samples every 2 s, Redis's remaining stock
    as it is (the sampler waited on each MongoDB read, ~16 s)."""
    uri = urllib.parse.urlparse(os.environ.get(
        "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"))
    proxy = E.FreezableProxy((uri.hostname or "127.0.0.1", uri.port or 27017))
    port = free_port()
    dash = subprocess.Popen(
        [ordo.binary] + ordo.flags +
        ["-X", "mongo.uri=mongodb://127.0.0.1:%d/" % proxy.port,
         "-X", "metrics.listen=", "-X", "dash.scrape=", "dash", "--listen",
         "127.0.0.1:%d" % port],
        env=ordo.env, stdout=open(os.path.join(workdir, "dash-hung.log"), "w"),
        stderr=subprocess.STDOUT)

    def state():
        st, body = http("http://127.0.0.1:%d/api/state" % port)
        return json.loads(body) if st == 200 else {}

    try:
        s = E.eventually(state, lambda v: v and "mongo_error" not in v, 30)
        c.true("through the proxy: a sample without mongo_error",
               s and "mongo_error" not in s, str(s)[:300])
        before = s
        proxy.open.clear()
        t0 = time.time()
        # the samples go on meanwhile (the sampler waited on the read
        # that met the hang, its 10 s socket timeout and more), with
        # Redis's figures of now
        aid = before["activities"][0]["id"]
        key = ordo.prefix + "stock:" + aid
        kept = r.cmd("GET", key)
        r.cmd("SET", key, "777001")
        seen, live = set(), None
        while time.time() < t0 + 12:
            v = state()
            seen.add(v.get("now_ms"))
            if live is None and {a["id"]: a.get("remaining") for a in
                                 v.get("activities", [])}.get(aid) == 777001:
                live = time.time() - t0
            time.sleep(0.5)
        c.true("MongoDB hung: samples go on every 2 s (%d in its first "
               "12 s)" % len(seen - {None}), len(seen - {None}) >= 4,
               sorted(seen - {None}))
        c.true("MongoDB hung: Redis's remaining stock is live within its "
               "first 12 s", live is not None, live)
        if kept is None:
            r.cmd("DEL", key)
        else:
            r.cmd("SET", key, kept)
        s = E.eventually(state, lambda v: "mongo_error" in v, 45)
        c.true("MongoDB hung: /api/state has mongo_error within 45 s "
               "(%.0f s)" % (time.time() - t0), "mongo_error" in s,
               str(s)[:300])
        # ... with the last figures read, and when, not an empty sale
        # with commissions of 0 (an outside audit)
        c.true("MongoDB hung: the last activities and commissions read, "
               "with mongo_as_of_ms",
               before.get("activities") and s.get("mongo_as_of_ms") and
               [a["id"] for a in s.get("activities", [])] ==
               [a["id"] for a in before["activities"]] and
               s["commissions"]["pending_cents"] ==
               before["commissions"]["pending_cents"], str(s)[:300])
        E.eventually(state, lambda v: "mongo_error" in v and
                     v.get("now_ms", 0) > s["now_ms"] + 5000, 45)
        proxy.open.set()
        s = E.eventually(state, lambda v: v and "mongo_error" not in v, 45)
        c.true("MongoDB answers again: mongo_error gone",
               s and "mongo_error" not in s, str(s)[:300])
    finally:
        proxy.close()
        dash.terminate()
        dash.wait(30)
    with open(os.path.join(workdir, "dash-hung.log")) as f:
        text = f.read()
    # (a first read slower than the first sample's wait logs "not read
    # yet" before the outage: not the outage's line)
    c.eq("MongoDB hung: logged once however the error's words vary", 1,
         sum(1 for ln in text.splitlines() if "cannot read MongoDB" in ln
             and "not read yet" not in ln))


def hostile_scrape_targets(c, ordo, workdir, chromium, prof):
    hostile = ThreadingHTTPServer(("127.0.0.1", 0), HostileMetrics)
    threading.Thread(target=hostile.serve_forever, daemon=True).start()
    endless = socket.socket()
    endless.bind(("127.0.0.1", 0))
    endless.listen(8)
    threading.Thread(target=endless_target, args=(endless,),
                     daemon=True).start()
    port = free_port()
    dash = subprocess.Popen(
        [ordo.binary] + ordo.flags +
        ["-X", "mongo.db=" + ordo.db + "x", "-X", "metrics.listen=",
         "-X", "dash.scrape=127.0.0.1:%d,127.0.0.1:%d" % (
             endless.getsockname()[1], hostile.server_address[1]),
         "dash", "--listen", "127.0.0.1:%d" % port],
        env=ordo.env, stdout=open(os.path.join(workdir, "dash-hostile.log"),
                                  "w"), stderr=subprocess.STDOUT)
    state, dom, page = {}, Dom(), ""
    try:
        for _ in range(40):
            st, body = http("http://127.0.0.1:%d/api/state" % port)
            if st == 200:
                state = json.loads(body)
                break
            time.sleep(0.5)
        page = subprocess.run([chromium] + CHROMIUM_FLAGS +
                              ["--user-data-dir=" + prof,
                               "--virtual-time-budget=5000", "--dump-dom",
                               "http://127.0.0.1:%d/" % port],
                              capture_output=True, text=True,
                              timeout=120).stdout
        dom.feed(page)
    finally:
        dash.terminate()
        rc = dash.wait(30)
        hostile.shutdown()
        endless.close()
    c.true("an endless scrape target does not hold the sampler",
           state.get("processes"), str(state)[:300])
    c.eq("the endless target is unreachable, the other healthy",
         [False, True], [p["healthy"] for p in state.get("processes", [])])
    c.eq("a sample's value, not its timestamp; NaN adds nothing",
         {"decisions": 10.0, "rejections": {"LIMIT_EXCEEDED": 3}},
         {"decisions": state.get("stages", {}).get("hostile", {}).get(
             "decisions"), "rejections": state.get("rejections")})
    c.eq("a label that is not UTF-8 is skipped",
         ["hostile"], sorted(k for k in state.get("stages", {})
                             if k != "activity"))
    c.eq("latency quantiles count the +Inf bucket, said to be past 60 s",
         (60.0, 60.0, True, True),
         tuple(state.get("latency", {}).get(k) for k in
               ("p50_s", "p95_s", "p50_over", "p95_over")))
    # an outside audit: a missed scrape counted as no rejections, and the
    # next one drew the whole sale's rejections again as a spike
    c.eq("a target that did not answer: rejections unknown (null), not 0",
         (False, {None}),
         (state.get("scrape_complete"),
          {h.get("rejected", 0) for h in state.get("history", [])}))
    # ... and the page does not show the answering one's counts as the
    # whole sale's (an outside audit)
    c.eq("a target that did not answer: the page shows the counts it "
         "has, said to be incomplete",
         ("3", True), (dom.get("rej-n", reason="LIMIT_EXCEEDED"),
                       "incomplete: a stage process is not answering"
                       in page))
    c.eq("the dash stops on SIGTERM", 0, rc)


def stop_all(c, ordo, *procs):
    """SIGTERM the helper processes, then `ordo run`, which must exit 0."""
    for p in procs:
        if p is not None:
            p.terminate()
            p.wait(30)
    c.eq("ordo run exit status on SIGTERM", 0, ordo.stop())


def drop_database(name):
    """Best effort: a test's database goes with the test."""
    try:
        pymongo.MongoClient(os.environ.get(
            "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/")).drop_database(
                name)
    except Exception as e:  # pragma: no cover
        print("cleanup: %s" % e)


def sale(tag, now):
    """Phase 1: activities, bindings, orders; phase 2: payments and
    receipts; then a Tick past the freeze settles the received ones."""
    hot, cold = "hot-" + tag, "cold-" + tag
    p1 = [E.create(hot, 1000, 10, 2, now - 1000, now + 3600000, now,
                   pay_timeout_ms=600000, auto_receive_ms=3600000,
                   freeze_ms=1000, commission_bps=[1000, 500]),
          E.create(cold, 500, 100, 1, now - 1000, now + 3600000, now,
                   pay_timeout_ms=600000)]
    p1 += [E.bind("u%d-%s" % (i, tag), "p1-" + tag, now + 1)
           for i in range(5)]
    p1.append(E.bind("p1-" + tag, "top-" + tag, now))
    orders = []
    for i in range(30):  # 10 accepted, 20 SOLD_OUT
        oid = "o%d-%s" % (i, tag)
        p1.append(E.place(oid, hot, "u%d-%s" % (i, tag), 1, now + 10 + i))
        orders.append(oid)
    for i in range(5):
        p1.append(E.place("c%d-%s" % (i, tag), cold, "u%d-%s" % (i, tag), 1,
                          now + 50 + i))
    p1.append(E.place("c9-" + tag, cold, "u0-" + tag, 1, now + 60))
    p2 = [E.pay(orders[i], "pay-%d-%s" % (i, tag), 1000, now + 100 + i)
          for i in range(6)]
    # retries, which the rules ignore: counted as such, not as accepted
    p2 += [E.place(orders[0], hot, "u0-" + tag, 1, now + 10),
           E.pay(orders[0], "pay-0-" + tag, 1000, now + 100)]
    p3 = [E.receipt(orders[i], now + 200 + i) for i in range(4)]
    expect = {"accepted": {hot: 10, cold: 5}, "holds": {hot: 4, cold: 5},
              "stock": {hot: 10, cold: 100},
              "rejections": {"SOLD_OUT": 20, "LIMIT_EXCEEDED": 1}}
    return [p1, p2, p3], expect


def produce(ordo, cmds, workdir, name):
    ordo.produce(cmds, name)
    ok, out = ordo.wait(180)
    if not ok:
        raise RuntimeError("ordo wait: " + out)


def second_instance(c, ordo, workdir, run_port):
    """Scaled out to two `ordo run`s: the referral processor reads one
    partition, so one of them holds nothing for it. It stands by, and
    both answer 200 (an outside audit: the one without it was 503 for
    good, and a supervisor would have restarted it for ever); the
    standby is named."""
    port = free_port()
    log = open(os.path.join(workdir, "run2.log"), "w")
    second = subprocess.Popen(
        [ordo.binary] + ordo.flags +
        ["-X", "metrics.listen=127.0.0.1:%d" % port,
         "-X", "instance.id=second", "run"],
        env=ordo.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        answers, deadline = [], time.time() + 90
        while time.time() < deadline:
            time.sleep(0.5)
            answers = [http("http://127.0.0.1:%d/healthz" % q, 2)
                       for q in (run_port, port)]
            if all(st == 200 for st, _ in answers) and sum(
                    "standing by" in b for _, b in answers) == 1:
                break
        c.eq("two ordo runs: both 200", [200, 200],
             [st for st, _ in answers])
        c.true("two ordo runs: one stands by for the referral stage, "
               "named", sum(b.strip().endswith(
                   "; standing by with no partition: referral")
                   for _, b in answers) == 1, answers)
    finally:
        second.terminate()
        second.wait(60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--screenshot")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    # Fresh topics every run: old events must not count twice.
    tag = "dash%d%x%s" % (a.seed, int(time.time()), os.urandom(2).hex())
    workdir = tempfile.mkdtemp(prefix="ordo-dash-")
    chromium = shutil.which("chromium")
    promtool = shutil.which("promtool")
    ordo = E.Ordo(os.path.abspath(a.ordo), tag, workdir)
    run_port, dash_port, dash_metrics = free_port(), free_port(), free_port()
    ordo.flags += ["-X", "metrics.listen=127.0.0.1:%d" % run_port]
    r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("ORDO_REDIS_PORT", "6379")))
    c = Checks()
    dash = None
    print("test_dash: tag %s, work dir %s" % (tag, workdir))
    try:
        ordo.call("topics")
        ordo.start()
        # /healthz while the stages join their groups, then once they hold
        # their partitions. The listener starts before the stages, so the
        # first answer comes before any group is joined.
        answers, deadline = [], time.time() + 60
        while time.time() < deadline:
            st, body = http("http://127.0.0.1:%d/healthz" % run_port, 2)
            if st:
                answers.append((st, body.strip()))
            if st == 200:
                break
            time.sleep(0.05)
        c.true("healthz 503 before the stages hold partitions",
               answers and answers[0][0] == 503 and (
                   "not joined" in answers[0][1] or
                   "no partition" in answers[0][1] or
                   "no stage started" in answers[0][1]), answers[:1])
        c.eq("healthz 200 once every stage holds partitions", 200,
             answers[-1][0] if answers else None)
        dash_log = open(os.path.join(workdir, "dash.log"), "w")
        dash = subprocess.Popen(
            [ordo.binary] + ordo.flags +
            ["-X", "metrics.listen=127.0.0.1:%d" % dash_metrics,
             "-X", "dash.scrape=127.0.0.1:%d" % run_port,
             "dash", "--listen", "127.0.0.1:%d" % dash_port],
            env=ordo.env, stdout=dash_log, stderr=subprocess.STDOUT)
        now = int(time.time() * 1000)
        phases, expect = sale(tag, now)
        for i, p in enumerate(phases):
            produce(ordo, p, workdir, "phase%d" % i)
        ordo.call("tick", "--ts", str(now + 60000), "--future")
        ok, out = ordo.wait(180)
        c.true("caught up after the tick", ok, out)
        # The read models are whole, settlements included, only now: a
        # mark taken before the Tick let a MongoDB read of pending
        # earnings pass for the last one (CI, stop 42).
        caught_ms = int(time.time() * 1000)
        time.sleep(2)  # one more turn of every loop: lag and health

        # /metrics and /healthz of `ordo run` and of the dash.
        for name, port in (("run", run_port), ("dash", dash_metrics)):
            st, text = http("http://127.0.0.1:%d/metrics" % port)
            c.eq(name + " /metrics status", 200, st)
            if promtool:
                p = subprocess.run([promtool, "check", "metrics"],
                                   input=text, capture_output=True,
                                   text=True)
                c.eq(name + " promtool check metrics", "",
                     (p.stdout + p.stderr).strip())
            st, body = http("http://127.0.0.1:%d/healthz" % port)
            c.eq(name + " /healthz", 200, st)
        # Read-only servers: a POST is 405 with the methods allowed
        # (RFC 9110), on the page's port too.
        for name, port, path in (("run", run_port, "/metrics"),
                                 ("dash", dash_metrics, "/metrics"),
                                 ("dash page", dash_port, "/")):
            req = urllib.request.Request(
                "http://127.0.0.1:%d%s" % (port, path), data=b"x",
                method="POST")
            try:
                urllib.request.urlopen(req, timeout=5)
                st, allow = 200, None
            except urllib.error.HTTPError as e:
                st, allow = e.code, e.headers.get("Allow")
            c.eq(name + " POST %s: 405 and Allow" % path,
                 (405, "GET, HEAD"), (st, allow))
        _, text = http("http://127.0.0.1:%d/metrics" % run_port)
        dec = metric_lines(text, "ordo_decisions_total")
        for reason, n in expect["rejections"].items():
            c.eq("decisions_total PlaceOrder rejected %s" % reason, n,
                 dec.get('ordo_decisions_total{stage="activity",command='
                         '"PlaceOrder",result="rejected",reason="%s"}'
                         % reason))
        c.eq("decisions_total PlaceOrder accepted", 15,
             dec.get('ordo_decisions_total{stage="activity",command='
                     '"PlaceOrder",result="accepted",reason=""}'))
        c.eq("decisions_total: a retried PlaceOrder and ConfirmPayment "
             "ignored", (1, 1, 6),
             (dec.get('ordo_decisions_total{stage="activity",command='
                      '"PlaceOrder",result="ignored",reason=""}'),
              dec.get('ordo_decisions_total{stage="order",command='
                      '"ConfirmPayment",result="ignored",reason=""}'),
              dec.get('ordo_decisions_total{stage="order",command='
                      '"ConfirmPayment",result="accepted",reason=""}')))
        lag = metric_lines(text, "ordo_consumer_lag")
        c.true("consumer lag series for every stage",
               {k.split('"')[1] for k in lag} ==
               {"activity", "order", "referral", "commission", "mongo",
                "redis"}, sorted(lag)[:3])
        c.eq("consumer lag once caught up", {}, {k: v for k, v in
                                                 lag.items() if v})
        # Each processor's state, counted by its rules: the activity and
        # order stages hold the sale's orders, more than an empty state's
        # few hundred bytes.
        state = metric_lines(text, "ordo_state_bytes")
        c.eq("state bytes series: the four processors",
             ['ordo_state_bytes{stage="%s"}' % s for s in
              ("activity", "commission", "order", "referral")],
             sorted(state))
        c.true("state bytes of the activity and order stages > 1 KB",
               all(state.get('ordo_state_bytes{stage="%s"}' % s, 0) > 1024
                   for s in ("activity", "order")), state)

        # The page, as a browser renders it, after a sample newer than
        # the tick, with MongoDB's figures of a read begun since the
        # read models were whole (mongo_as_of_ms).
        deadline = time.time() + 30
        while time.time() < deadline:
            st, body = http("http://127.0.0.1:%d/api/state" % dash_port)
            if st == 200 and json.loads(body)["now_ms"] > int(
                    time.time() * 1000) - 1500 and any(
                    s.get("lag") == 0 for s in
                    json.loads(body)["stages"].values()) and json.loads(
                    body).get("mongo_as_of_ms", 0) > caught_ms:
                break
            time.sleep(0.5)
        state = json.loads(body) if st == 200 else {}
        c.true("/api/state: a MongoDB read begun after the read models "
               "were whole", state.get("mongo_as_of_ms", 0) > caught_ms,
               str(state.get("mongo_as_of_ms")) + " <= " + str(caught_ms))
        c.true("/api/state: age_ms by the dash's clock, sample_ms, and "
               "activities_total", 0 <= state.get("age_ms", -1) < 10000 and
               state.get("sample_ms", -1) >= 0 and
               state.get("activities_total", -1) == len(
                   state.get("activities", [])), str(state)[:300])
        if not chromium:
            c.true("chromium installed (infra/stack install)", False)
            raise SystemExit
        prof = tempfile.mkdtemp(prefix="ordo-chromium-")
        url = "http://127.0.0.1:%d/" % dash_port
        p = subprocess.run([chromium] + CHROMIUM_FLAGS +
                           ["--user-data-dir=" + prof,
                            "--virtual-time-budget=5000", "--dump-dom", url],
                           capture_output=True, text=True, timeout=120)
        dom = Dom()
        dom.feed(p.stdout)
        c.true("page loaded its state", 'data-loaded="1"' in p.stdout,
               p.stderr[-300:])
        for aid in expect["stock"]:
            redis_left = r.cmd("GET", ordo.prefix + "stock:" + aid)
            c.eq("%s remaining == Redis" % aid,
                 redis_left,
                 dom.get("remaining", activity=aid))
            c.eq("%s stock" % aid, str(expect["stock"][aid]),
                 dom.get("stock", activity=aid))
            c.eq("%s accepted" % aid, str(expect["accepted"][aid]),
                 dom.get("accepted", activity=aid))
            c.eq("%s holds" % aid, str(expect["holds"][aid]),
                 dom.get("holds-n", activity=aid))
        c.eq("hot remaining", "0", dom.get("remaining",
                                           activity="hot-" + tag))
        for reason, n in expect["rejections"].items():
            c.eq("page rejections %s" % reason, str(n),
                 dom.get("rej-n", reason=reason))
        lb = r.cmd("ZREVRANGE", ordo.prefix + "leaderboard:settled", 0, 9,
                   "WITHSCORES")
        c.true("the leaderboard has earners", lb)
        for i in range(0, len(lb), 2):
            user = lb[i]
            c.eq("top earner %s settled == Redis" % user,
                 "%.2f" % (int(float(lb[i + 1])) / 100),
                 dom.get("settled", user=user))
        earnings = list(pymongo.MongoClient(os.environ.get(
            "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"))[ordo.db]
            .earnings.find())
        for field, cls in (("settled_cents", "c-settled"),
                           ("pending_cents", "c-pending"),
                           ("reversed_cents", "c-reversed")):
            total = sum(e.get(field, 0) for e in earnings)
            c.eq("commissions %s == MongoDB earnings" % field,
                 "%.2f" % (total / 100), dom.get_id(cls))
        c.true("some commission settled", sum(
            e.get("settled_cents", 0) for e in earnings) > 0)
        for stage in ("activity", "order", "referral", "commission",
                      "mongo", "redis"):
            c.eq("stage %s lag on the page" % stage, "0",
                 dom.get("lag", stage=stage))
        c.eq("health badge", "all stages healthy", dom.get("badge"))

        # A leaderboard score from 1e17 cents is written "1e+17" by
        # Redis: read as a double, not as the integer "1" (a review).
        big = "big-" + tag
        r.cmd("ZADD", ordo.prefix + "leaderboard:settled",
              "100000000000000000", big)
        top = []
        for _ in range(40):
            st, body = http("http://127.0.0.1:%d/api/state" % dash_port)
            top = json.loads(body)["commissions"]["top"] if st == 200 \
                else []
            if any(e["user_id"] == big for e in top):
                break
            time.sleep(0.5)
        c.eq("a top earner of 1e17 cents", [10 ** 17],
             [e["settled_cents"] for e in top if e["user_id"] == big])
        r.cmd("ZREM", ordo.prefix + "leaderboard:settled", big)

        # MongoDB unreachable: the state says so (it used to read as an
        # empty sale, nothing logged), and the log says it once.
        blind_port = free_port()
        blind_log = os.path.join(workdir, "dash-blind.log")
        blind = subprocess.Popen(
            [ordo.binary] + ordo.flags +
            ["-X", "mongo.uri=mongodb://127.0.0.1:1/"
             "?serverSelectionTimeoutMS=300", "-X", "metrics.listen=",
             "-X", "dash.scrape=", "dash", "--listen",
             "127.0.0.1:%d" % blind_port],
            env=ordo.env, stdout=open(blind_log, "w"),
            stderr=subprocess.STDOUT)
        state = {}
        for _ in range(40):
            st, body = http("http://127.0.0.1:%d/api/state" % blind_port)
            if st == 200:
                state = json.loads(body)
                if "mongo_error" in state:
                    break
            time.sleep(0.5)
        time.sleep(2.5)  # more samples: still one log line
        blind.terminate()
        blind.wait(30)
        c.true("MongoDB unreachable: /api/state has mongo_error",
               state.get("mongo_error"), str(state)[:300])
        with open(blind_log) as f:
            text = f.read()
        c.eq("MongoDB unreachable: logged once", 1,
             text.count("cannot read MongoDB"))
        mongo_hangs(c, ordo, workdir, r)
        # A hot sale whose holds expire first must not leave another
        # sale's next holds empty: the dash reads 4,096 holds a sample
        # across the shown sales, then short sales alone. A database
        # written directly: 4,100 holds of one sale, 3 of another; and
        # seven sales more, without holds, for the page's colours.
        db = pymongo.MongoClient(os.environ.get(
            "ORDO_MONGO_URI", "mongodb://127.0.0.1:27017/"))[ordo.db + "h"]
        base = int(time.time() * 1000)
        db.activities.insert_many([
            {"_id": aid, "sku": "s", "price_cents": 1, "stock": 5000,
             "remaining": 0, "start_ms": base + n, "end_ms": base + 10 ** 7,
             "version": 1} for n, aid in enumerate(
                 ["many", "few"] + ["more%d" % k for k in range(7)])])
        db.orders.insert_many(
            [{"_id": "m%05d" % i, "activity_id": "many", "user_id": "u",
              "qty": 1, "amount_cents": 1, "status": "PENDING_PAYMENT",
              "pay_deadline_ms": base + i, "version": 1}
             for i in range(4100)] +
            [{"_id": "f%d" % i, "activity_id": "few", "user_id": "u",
              "qty": 1, "amount_cents": 1, "status": "PENDING_PAYMENT",
              "pay_deadline_ms": base + 10 ** 6 + i, "version": 1}
             for i in range(3)])
        holds_port = free_port()
        holds = subprocess.Popen(
            [ordo.binary] + ordo.flags +
            ["-X", "mongo.db=" + ordo.db + "h", "-X", "metrics.listen=",
             "-X", "dash.scrape=", "dash", "--listen",
             "127.0.0.1:%d" % holds_port],
            env=ordo.env, stdout=open(os.path.join(workdir, "dash-holds.log"),
                                      "w"), stderr=subprocess.STDOUT)
        shown = {}
        for _ in range(60):
            st, body = http("http://127.0.0.1:%d/api/state" % holds_port)
            if st == 200:
                shown = {x["id"]: [h["order_id"] for h in x["next_holds"]]
                         for x in json.loads(body)["activities"]
                         if x["next_holds"]}
                if shown:
                    break
            time.sleep(0.5)
        # Nine sales on the page: nine colours (past six they repeated:
        # the seventh sale drawn as the first).
        p = subprocess.run([chromium] + CHROMIUM_FLAGS +
                           ["--user-data-dir=" + prof,
                            "--virtual-time-budget=5000", "--dump-dom",
                            "http://127.0.0.1:%d/" % holds_port],
                           capture_output=True, text=True, timeout=120)
        colours = [x for x in re.findall(r'<h3 style="color:\s*([^";]+)',
                                         p.stdout) if "${" not in x]
        hls = [hue_lightness(x) for x in colours]
        close = [(colours[i], colours[j]) for i in range(len(hls))
                 for j in range(i + 1, len(hls))
                 if i >= 6 or j >= 6  # the palette's own are chosen
                 if not apart(hls[i], hls[j])]
        c.true("nine sales drawn in nine colours, the three past the "
               "palette apart from every other",
               len(colours) == 9 and not close, repr((colours, close)))
        holds.terminate()
        holds.wait(30)
        drop_database(ordo.db + "h")
        c.eq("next holds of two sales, one of them hot",
             {"many": ["m%05d" % i for i in range(8)],
              "few": ["f0", "f1", "f2"]}, shown)
        hostile_scrape_targets(c, ordo, workdir, chromium, prof)
        second_instance(c, ordo, workdir, run_port)
        if a.screenshot:
            subprocess.run([chromium] + CHROMIUM_FLAGS +
                           ["--user-data-dir=" + prof,
                            "--window-size=1400,1120",
                            "--virtual-time-budget=5000",
                            "--screenshot=" + os.path.abspath(a.screenshot),
                            url], capture_output=True, timeout=120)
        shutil.rmtree(prof, ignore_errors=True)
    finally:
        stop_all(c, ordo, dash)
        if dash is not None:
            with open(os.path.join(workdir, "dash.log")) as f:
                m = re.search(r"msg=stopped samples=(\d+) pages=(\d+) "
                              r"states=(\d+)", f.read())
            c.true("the dash's totals at SIGTERM: sampled, served the page "
                   "and its state", m and int(m.group(1)) > 0 and
                   int(m.group(2)) > 0 and int(m.group(3)) > 0,
                   m and m.group(0))
        if not a.keep:
            drop_database(ordo.db)
            E.drop_kafka(ordo.tag)
            for k in r.scan(ordo.prefix + "*") + r.scan(
                    "{" + ordo.prefix + "*"):
                r.cmd("DEL", k)
            shutil.rmtree(workdir, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
