#!/usr/bin/env python3
"""Integration: `ordo ingest` as a process (issue 13 item 5, issue 14):
SIGHUP reloads the keys file at once, a bad file keeps the old keys and
says why on stderr, and refused requests are logged one line each with
status, reason, key and peer, and /metrics and /healthz are served on
metrics.listen too when it is set. The in-process behaviour of the gateway is
tests/integration/test_ingest.c; this checks the signal and the log of
the real binary.

usage: test_ingest_cli.py ORDO [--seed N]   (after `infra/stack up`)
"""

import argparse
import hashlib
import hmac
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import test_e2e as E

BODY = '{"type":"ConfirmReceipt","order_id":"o1"}'


class Gateway:
    def __init__(self, ordo, keys_path, tag):
        self.lines = []
        self.lock = threading.Lock()
        self.x = ["-X", "topic.prefix=%s." % tag, "-X",
                  "group.prefix=%s." % tag, "-X", "topic.partitions=1"]
        subprocess.run([ordo] + self.x + ["topics"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.p = subprocess.Popen(
            [ordo] + self.x + ["-X", "ingest.listen=127.0.0.1:0", "-X",
                               "ingest.keys.file=%s" % keys_path,
                               "-X", "metrics.listen=127.0.0.1:0", "ingest"],
            stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        m = self.wait_for(r"msg=listening port=(\d+)")
        self.port = int(m.group(1))
        m = self.wait_for(r"stage=metrics msg=listening addr=[\d.]+:(\d+)")
        self.metrics_port = int(m.group(1))

    def get(self, port, path):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        c.request("GET", path)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, r.getheader("Content-Type"), text

    def _read(self):
        for line in self.p.stderr:
            with self.lock:
                self.lines.append(line)

    def wait_for(self, pattern, timeout=20, start=0):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                for line in self.lines[start:]:
                    m = re.search(pattern, line)
                    if m:
                        return m
            time.sleep(0.05)
        raise AssertionError("no log line %r in:\n%s" %
                             (pattern, "".join(self.lines)))

    def mark(self):
        with self.lock:
            return len(self.lines)

    def hup(self):
        self.p.send_signal(1)  # SIGHUP

    def post(self, key, secret, body=BODY):
        ts = str(int(time.time() * 1000))
        sig = hmac.new(secret.encode(),
                       ("POST\n/v1/commands\n%s\n%s" % (ts, body)).encode(),
                       hashlib.sha256).hexdigest()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        c.request("POST", "/v1/commands", body,
                  {"X-Ordo-Key": key, "X-Ordo-Timestamp": ts,
                   "X-Ordo-Signature": sig})
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        return r.status, text

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=30)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--seed", type=int, default=1)  # uniform CLI; unused
    a = ap.parse_args()
    tag = "ingcli%dx%d" % (os.getpid(), a.seed)
    keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    keys.write("old-key old-secret scope=ConfirmReceipt\n")
    keys.close()
    gw = Gateway(a.ordo, keys.name, tag)
    try:
        st, text = gw.post("old-key", "old-secret")
        check(st == 202, "before reload: %d %s" % (st, text))

        # metrics.listen set: /metrics and /healthz there too (DESIGN.md:
        # every long-running command), the gateway's own. The 202 is
        # counted once it has gone out (libmicrohttpd's completion
        # callback): wait for it first, on the metrics port (the
        # gateway's own port counts what it answers).
        deadline = time.time() + 5
        while time.time() < deadline and \
                'ordo_ingest_requests_total{status="202"} 1\n' not in \
                gw.get(gw.metrics_port, "/metrics")[2]:
            time.sleep(0.1)
        for port in (gw.port, gw.metrics_port):
            st, ctype, text = gw.get(port, "/metrics")
            check(st == 200 and ctype.startswith("text/plain; version=0.0.4")
                  and 'ordo_ingest_requests_total{status="202"} 1\n' in text
                  and "ordo_build_info{" in text,
                  "GET /metrics on %d: %d %s %s" % (port, st, ctype,
                                                    text[:300]))
            st, ctype, text = gw.get(port, "/healthz")
            check(st == 200 and ctype == "application/json"
                  and '"status":"ok"' in text,
                  "GET /healthz on %d: %d %s %s" % (port, st, ctype, text))

        # A good file: swapped in at once on SIGHUP.
        with open(keys.name, "w") as f:
            f.write("new-key new-secret scope=ConfirmReceipt\n")
        mark = gw.mark()
        gw.hup()
        gw.wait_for(r'msg="keys reloaded" keys=1', start=mark)
        # Both secrets are under 16 bytes: each load warns, by key.
        gw.wait_for(r'shorter than 16 bytes.* key=old-key')
        m = gw.wait_for(r'shorter than 16 bytes.* key=new-key', start=mark)
        check("new-secret" not in m.string, "a secret in the log")
        st, text = gw.post("old-key", "old-secret")
        check(st == 401 and "UNKNOWN_KEY" in text,
              "a removed key still works: %d %s" % (st, text))
        m = gw.wait_for(r"msg=refused status=401 reason=UNKNOWN_KEY "
                        r"key=old-key peer=127\.0\.0\.1", start=mark)
        st, text = gw.post("new-key", "new-secret")
        check(st == 202, "the new key: %d %s" % (st, text))

        # A bad file: the old keys stay, stderr says why, not the secret.
        with open(keys.name, "w") as f:
            f.write("new-key other-secret scope=NoSuchType\n")
        mark = gw.mark()
        gw.hup()
        m = gw.wait_for(r"keys not reloaded.*NoSuchType", start=mark)
        check("other-secret" not in m.string, "a secret in the log")
        st, text = gw.post("new-key", "new-secret")
        check(st == 202, "the old keys did not stay: %d %s" % (st, text))

        # Scopes: the key may not send PlaceOrder; the refusal is logged.
        mark = gw.mark()
        st, text = gw.post("new-key", "new-secret",
                           '{"type":"PlaceOrder","activity_id":"a1",'
                           '"user_id":"u1","qty":1}')
        check(st == 403 and "FORBIDDEN_TYPE" in text, "%d %s" % (st, text))
        gw.wait_for(r"msg=refused status=403 reason=FORBIDDEN_TYPE "
                    r"key=new-key", start=mark)

        # SIGTERM: one line of totals, as every stage logs at its stop
        # (three 202s and two GETs on the gateway's port, a 401 and a 403
        # above; metrics.listen's answers are not the gateway's).
        gw.stop()
        gw.wait_for(r"msg=stopped answered_2xx=5 answered_4xx=2 "
                    r"answered_5xx=0 answered_by_library=0 unanswered=0 "
                    r"commands_acked=3 commands_failed=0$", timeout=5)
    finally:
        gw.stop()
        os.unlink(keys.name)
        E.drop_kafka(tag)
    print("ingest-cli: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("ingest-cli: FAILED: %s" % e)
        sys.exit(1)
