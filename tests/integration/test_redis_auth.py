#!/usr/bin/env python3
"""Redis AUTH and database selection, on a private redis-server.

usage: test_redis_auth.py ORDO_BINARY [--seed N]

Starts its own redis-server on a free port (the default user off, one ACL
user with a password), so the shared Redis is never touched, and runs a
small sale on its own topics through `ordo run` with redis.user,
redis.password and redis.db set. Checks that
- the redis projection writes into that database and no other;
- `ordo dash` reads the same remaining stock through AUTH;
- `ordo reconcile` (which reads Redis too) finds no difference;
- a wrong password is refused with the server's WRONGPASS in the log and
  nothing written;
- a redis.db the server does not have stops `ordo project redis` at once,
  naming it;
- `ordo config` prints the password redacted.
Ends with criterion's synthesis line. Needs the stack up (Kafka, FerretDB)
and redis-server on PATH.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_dash as D  # noqa: E402  (free_port, http, Checks, cleanup)
import test_e2e as E  # noqa: E402  (Ordo, Redis, the command builders)

PASSWORD = "s3cret-auth"


class AuthRedis(E.Redis):
    def __init__(self, port, db):
        super().__init__("127.0.0.1", port)
        self.db = db

    def _connect(self):
        super()._connect()
        self.sock.sendall(self._enc(["AUTH", "ordo", PASSWORD]) +
                          self._enc(["SELECT", self.db]))
        for _ in range(2):
            reply = self._read()
            if isinstance(reply, Exception):
                raise reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    tag = "auth%d%x%s" % (a.seed, int(time.time()), os.urandom(2).hex())
    workdir = tempfile.mkdtemp(prefix="ordo-auth-")
    port = D.free_port()
    c = D.Checks()
    print("test_redis_auth: tag %s, redis on %d, work dir %s" % (
        tag, port, workdir))
    conf = os.path.join(workdir, "redis.conf")
    with open(conf, "w") as f:
        f.write("port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\n"
                "appendonly no\ndaemonize no\nuser default off\n"
                "user ordo on >%s ~* &* +@all\n" % (port, workdir, PASSWORD))
    server = subprocess.Popen(["redis-server", conf],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    ordo = E.Ordo(os.path.abspath(a.ordo), tag, workdir)
    auth = ["-X", "redis.host=127.0.0.1", "-X", "redis.port=%d" % port,
            "-X", "redis.user=ordo", "-X", "redis.password=" + PASSWORD,
            "-X", "redis.db=5", "-X", "metrics.listen="]
    ordo.flags += auth
    dash = None
    try:
        r5, r0 = AuthRedis(port, 5), AuthRedis(port, 0)
        for _ in range(50):
            try:
                r5.cmd("PING")
                break
            except OSError:
                time.sleep(0.1)
        p = ordo.call("config")
        c.true("ordo config redacts redis.password, in a comment",
               "\n# redis.password=[redacted]" in p.stdout and
               PASSWORD not in p.stdout)
        ordo.call("topics")
        ordo.start()
        now = int(time.time() * 1000)
        aid = "a-" + tag
        cmds = [E.create(aid, 100, 5, 1, now - 1000, now + 3600000, now)]
        cmds += [E.place("o%d-%s" % (i, tag), aid, "u%d" % i, 1, now + i)
                 for i in range(8)]
        ordo.produce(cmds, "sale")
        ok, out = ordo.wait(180)
        c.true("caught up", ok, out)
        c.eq("stock in redis.db 5", "0", r5.cmd("GET", ordo.prefix +
                                                "stock:" + aid))
        c.eq("nothing in db 0", [], r0.scan(ordo.prefix + "*"))
        rec = ordo.call("reconcile", check=False)
        c.eq("reconcile through AUTH finds nothing (exit 0)", 0,
             rec.returncode)
        if rec.returncode:
            print(rec.stdout[-1500:], rec.stderr[-1500:])
        # The switch command a rebuild prints names the password's
        # variable, never the password; run as printed without it, the
        # shell refuses it (it used to connect without AUTH).
        reb = ordo.call("rebuild", "redis", "--into", tag + "rb:",
                        check=False)
        sw = re.search(r"switch: (ordo .*)", reb.stdout)
        c.true("rebuild's switch command names ORDO_REDIS_PASSWORD, not "
               "the password", reb.returncode == 0 and sw and
               '-X redis.password="${ORDO_REDIS_PASSWORD:?' in sw.group(1)
               and PASSWORD not in reb.stdout,
               "exit %d: %s" % (reb.returncode, reb.stdout[-800:]))
        if sw:
            clean = {k: v for k, v in ordo.env.items()
                     if not k.startswith("ORDO_")}
            run = subprocess.Popen(
                ["bash", "-c", "PATH=%s:$PATH; exec %s" % (
                    os.path.dirname(ordo.binary), sw.group(1))],
                env=clean, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True)
            try:
                err = run.communicate(timeout=20)[1]
                ok = run.returncode != 0 and "ORDO_REDIS_PASSWORD" in err
                why = "exit %d: %s" % (run.returncode, err[-400:])
            except subprocess.TimeoutExpired:
                run.kill()  # exec: the projection itself
                run.wait()
                ok, why = False, "it ran (without the password)"
            c.true("run as printed without it: refused by the shell, "
                   "naming it", ok, why)
        # A wrong password: exit 2, and stdout says Redis was not
        # compared (it used to print "0 keys/members compared, 0
        # difference(s)" for a script reading stdout to misread).
        rec = ordo.call("-X", "redis.password=wrong", "reconcile",
                        check=False)
        c.true("reconcile with a wrong password: exit 2, Redis 'not "
               "compared'", rec.returncode == 2 and
               "reconcile: redis: not compared" in rec.stdout and
               "reconcile: 0 difference(s)" not in rec.stdout,
               "exit %d: %s" % (rec.returncode, rec.stdout[-600:]))

        dash_port = D.free_port()
        dash = subprocess.Popen(
            [ordo.binary] + ordo.flags +
            ["-X", "dash.scrape=", "dash", "--listen",
             "127.0.0.1:%d" % dash_port], env=ordo.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = None
        for _ in range(120):  # until its first MongoDB read has ended
            st, body = D.http("http://127.0.0.1:%d/api/state" % dash_port)
            if st == 200 and "mongo_as_of_ms" in json.loads(body):
                state = json.loads(body)
                break
            time.sleep(0.5)
        acts = {x["id"]: x for x in (state or {}).get("activities", [])}
        c.eq("dash reads remaining through AUTH", 0,
             acts.get(aid, {}).get("remaining"))

        # A wrong password: refused, logged, nothing written.
        bad = E.Ordo(ordo.binary, tag + "bad", workdir)
        bad.flags += [x.replace("redis.password=" + PASSWORD,
                                "redis.password=wrong") for x in auth]
        bad.call("topics")
        bad.start(stages=("activity", "redis"))
        bad.produce(cmds, "sale-bad")
        deadline = time.time() + 60
        while time.time() < deadline and "WRONGPASS" not in bad.log_tail():
            time.sleep(0.5)
        bad.stop()
        log = bad.log_tail(400)
        c.true("wrong password: WRONGPASS in the log", "WRONGPASS" in log,
               log[-400:])
        c.eq("wrong password: nothing written", [],
             r5.scan(bad.prefix + "*") + r0.scan(bad.prefix + "*"))
        # An outage, retried: no event is parked on dead-letters, and
        # with the right password the same group applies every one.
        letters = [m for m in E.read_committed(bad.tag + ".dead-letters")]
        c.eq("wrong password: no dead letter", [],
             [dict(m.headers).get("ordo.error") for m in letters])
        good = E.Ordo(ordo.binary, tag + "bad", workdir)
        good.flags += auth
        good.start(stages=("activity", "redis"))
        w = good.call("wait", "--timeout", "180", "activity", "redis",
                      check=False)
        good.stop()
        c.true("right password: caught up", w.returncode == 0,
               w.stdout[-1500:] + w.stderr[-1500:])
        c.eq("right password: every event applied", "0",
             r5.cmd("GET", bad.prefix + "stock:" + aid))
        # A database the server does not have (16 here): not an outage
        # to retry for ever, as a refused password is; the configuration's.
        try:
            p = subprocess.run([ordo.binary] + ordo.flags +
                               ["-X", "redis.db=99", "project", "redis"],
                               env=ordo.env, capture_output=True, text=True,
                               timeout=30)
            ok = p.returncode == 1 and "redis.db=99" in p.stderr
            why = "exit %d: %s" % (p.returncode, p.stderr[-400:])
        except subprocess.TimeoutExpired:
            ok, why = False, "still retrying after 30 s"
        c.true("a redis.db the server lacks: exit 1, naming redis.db", ok,
               why)
    finally:
        D.stop_all(c, ordo, dash)
        server.terminate()
        server.wait(30)
        D.drop_database(ordo.db)
        E.drop_kafka(ordo.tag)
        E.drop_kafka(ordo.tag + "bad")
        shutil.rmtree(workdir, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
