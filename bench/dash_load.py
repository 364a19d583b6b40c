#!/usr/bin/env python3
"""The live page under many sales: two `ordo dash` (two builds) side by
side on one `ordo run`'s read models, 80 activities and 10,000 unpaid
PlaceOrders; the age of each dash's /api/state (wall clock - now_ms) and
its sample_ms, every second for 90 s after the produce.

usage: $ORDO_PYTHON bench/dash_load.py NEW_ORDO OLD_ORDO PREFIX
(the stack up; PREFIX a fresh name: topics, db, Redis prefix, groups;
ports 19201-19203; bench/RESULTS.md "Session 13").
"""
import json, os, subprocess, sys, tempfile, time, urllib.request, random
NEW, OLD, P = sys.argv[1], sys.argv[2], sys.argv[3]
W = tempfile.mkdtemp(prefix="ordo-dash-load-")
X = ["-X", "topic.prefix=%s." % P, "-X", "redis.prefix=%s:" % P, "-X", "mongo.db=%s" % P,
     "-X", "group.prefix=%s." % P]
logs = open(os.path.join(W, "run.log"), "w")
run = subprocess.Popen([NEW] + X + ["-X", "metrics.listen=127.0.0.1:19201", "run"], stdout=logs, stderr=logs)
dashes = {}
for name, b, port in (("new", NEW, 19202), ("old", OLD, 19203)):
    dashes[name] = (subprocess.Popen([b] + X + ["-X", "dash.scrape=127.0.0.1:19201", "-X", "metrics.listen=",
                                     "dash", "--listen", "127.0.0.1:%d" % port], stdout=logs, stderr=logs), port)
time.sleep(5)
now = int(time.time() * 1000)
lines = []
for a in range(80):
    lines.append({"type": "CreateActivity", "activity_id": "bulk%02d" % a, "sku": "s", "price_cents": 100,
                  "stock": 1000, "per_user_limit": 1, "start_ms": now - 1000 + a, "end_ms": now + 3600000})
rng = random.Random(1)
for i in range(10000):
    lines.append({"type": "PlaceOrder", "order_id": "o%05d" % i, "activity_id": "bulk%02d" % rng.randrange(80),
                  "user_id": "u%05d" % i, "qty": 1})
with open(os.path.join(W, "in.jsonl"), "w") as f:
    f.write("".join(json.dumps(l) + "\n" for l in lines))
t0 = time.time()
subprocess.run([NEW] + X + ["produce", os.path.join(W, "in.jsonl")],
               stdout=logs, stderr=logs)
print("produced in %.1f s" % (time.time() - t0))
res = {k: [] for k in dashes}
for _ in range(90):
    for name, (p, port) in dashes.items():
        try:
            st = json.load(urllib.request.urlopen("http://127.0.0.1:%d/api/state" % port, timeout=5))
            res[name].append((int(time.time()*1000) - st["now_ms"], st.get("sample_ms", -1),
                              len(st["activities"]), sum(a["holds"] for a in st["activities"])))
        except Exception as e:
            res[name].append(("err", str(e)[:40]))
    time.sleep(1)
print("logs in", W)
for name, r in res.items():
    ages = [x[0] for x in r if x[0] != "err"]
    print(name, "samples", len(r), "age max %s ms, median %s ms" % (max(ages) if ages else None, sorted(ages)[len(ages)//2] if ages else None),
          "last", r[-1])
for p, _ in dashes.values():
    p.terminate()
run.terminate()
for p, _ in dashes.values():
    p.wait()
run.wait()
