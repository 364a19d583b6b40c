#!/usr/bin/env python3
"""The Redis projection's earnings script against exact integers.

RULES.md: a read-model total that would leave int64 is refused "rather
than corrupting"; MongoDB's $inc refuses past INT64_MAX, and the Redis
side must refuse exactly there too (docs/decisions/0014). Lua numbers are
doubles, exact only below 2^53, so the script (projections/redis_proj.c,
lua_earn) adds each total in two parts, billions and the rest, with
carries and borrows. This drives the script as the projection loads it,
on the real Redis, with stored totals and increments drawn around the
edges (0, 10^9, 2^53, 9.2e18, INT64_MAX), and checks against Python's
integers:

- a call (one to three events of a beneficiary, as a batch folds them)
  is refused exactly when a total would leave 0..INT64_MAX after any of
  its events, and then changes no total;
- otherwise every total is the stored one plus the increments, and the
  call answers the settled total, exactly, as a string.

    test_earn_script.py ORDO_BINARY [--cases N] [--seed S]

(ORDO_BINARY is unused: every Python test is given it.) Uses keys under
its own prefix, deleted at the end; exit 0 only if every case agrees.
"""
import argparse
import os
import random
import re
import sys

import test_e2e as E

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "projections", "redis_proj.c")
INT64_MAX = 2 ** 63 - 1
FIELDS = ("pending_cents", "settled_cents", "reversed_cents")


def earn_script():
    """lua_earn's text, from the C string literals that make it."""
    src = open(SOURCE).read()
    m = re.search(r"static const char lua_earn\[\] =\n(.*?);\n", src, re.S)
    if not m:
        sys.exit("lua_earn not found in %s" % SOURCE)
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return "".join(p.encode().decode("unicode_escape") for p in parts)


def near_edge(rnd):
    """A total in 0..INT64_MAX, mostly around the script's edges."""
    c = rnd.choice([0, 1, 10 ** 9, 10 ** 9 - 1, 2 ** 53, 9200000000000000000,
                    INT64_MAX, rnd.randrange(INT64_MAX)])
    return max(0, min(INT64_MAX, c + rnd.randint(-3, 3)))


def increment(rnd, stored):
    """An increment (a HINCRBY argument, an int64) for a stored total."""
    if rnd.random() < 0.3:
        return rnd.randint(-5, 5)
    d = rnd.choice([1, 10 ** 9, 10 ** 9 - 1, rnd.randrange(2 ** 63),
                    INT64_MAX - stored, INT64_MAX - stored + 1, stored,
                    stored + 1])
    return max(-2 ** 63, min(INT64_MAX, rnd.choice([1, -1]) * d))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ordo")
    ap.add_argument("--cases", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    r = E.Redis(os.environ.get("ORDO_REDIS_HOST", "127.0.0.1"),
                int(os.environ.get("ORDO_REDIS_PORT", "6379")))
    sha = r.cmd("SCRIPT", "LOAD", earn_script())
    if not isinstance(sha, str):
        sys.exit("SCRIPT LOAD: %s" % sha)
    pf = "ordo_test_earn_%d:" % os.getpid()
    cases, cmds = [], []
    for n in range(a.cases):
        key, guard = "%searnings:%d" % (pf, n), "%sguard:%d" % (pf, n)
        stored = [near_edge(rnd) for _ in FIELDS]
        events, totals = [], list(stored)
        for k in range(rnd.randint(1, 3)):
            deltas = [increment(rnd, t) for t in totals]
            totals = [t + d for t, d in zip(totals, deltas)]
            events.append(deltas)
        cases.append((stored, events))
        cmds.append(("HSET", key) + tuple(x for f, s in zip(FIELDS, stored)
                                          for x in (f, s)))
        # events of source "src/0" at offsets 10, 11, ..., applied alone
        args = ["1"]
        for k, deltas in enumerate(events):
            args += ["src/0", 10 + k, 10 + k - 1 if k else -1] + deltas + \
                ["e%d.%d" % (n, k)]
        cmds.append(("EVALSHA", sha, 2, key, guard) + tuple(args))
        cmds.append(("HMGET", key) + FIELDS)
    replies = r.pipeline(cmds)
    bad = 0
    for n, (stored, events) in enumerate(cases):
        ret, got = replies[3 * n + 1], replies[3 * n + 2]
        sums, fits = list(stored), True
        for deltas in events:
            sums = [t + d for t, d in zip(sums, deltas)]
            fits = fits and all(0 <= t <= INT64_MAX for t in sums)
        refused = isinstance(ret, Exception)
        want = sums if fits else stored
        ok = (refused != fits and [int(x) for x in got] == want and
              (refused and "ORDO_REFUSED" in str(ret) or ret == str(sums[1])))
        if not ok:
            bad += 1
            if bad <= 5:
                print("  FAIL: stored %s + %s: answered %r, totals %s, "
                      "want %s" % (stored, events, ret, got, want))
    r.pipeline([("DEL", k) for k in r.scan(pf + "*")] or [("PING",)])
    print("%s: %d cases, %d disagree with exact integers" %
          ("ok" if not bad else "FAIL", a.cases, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
