#!/usr/bin/env python3
"""Memory of `ordo ingest` under slow unauthenticated clients (issue 14,
"a stranger can fill the gateway's memory"; bench/RESULTS.md).

usage: slow_clients.py ORDO [--conns N] [--size BYTES] [--hold S]
       [--mode unsigned|known-key] [-X key=value]...

Starts `ordo ingest` (its own keys file with one key, a private topic
prefix, port 0 read from its log) and opens --conns connections, each a
POST /v1/commands with Content-Length --size. Each sends its headers and
all but the last 100 bytes of the body as fast as the gateway reads, then one
byte every 5 s, the slow-client attack of issue 14 (each byte renews an
idle timeout). --mode unsigned sends no X-Ordo-* headers; --mode known-key
sends a real key id, a fresh timestamp and a wrong signature (the worst
case for a door that can only check the signature after the body).

Prints the gateway's VmRSS (from /proc) at start, the peak while the
connections are held (--hold seconds), and 3 s after they are closed, the
number of connections still open at the end of the hold, and the answers
the clients got. The numbers are bounded by this box (2 cores shared, a
loopback socket) and by glibc's malloc (what it returns to the OS).
"""

import argparse
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ordo")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--size", type=int, default=1048576)
    ap.add_argument("--hold", type=float, default=25)
    ap.add_argument("--mode", choices=("unsigned", "known-key"),
                    default="unsigned")
    ap.add_argument("-X", action="append", default=[])
    a = ap.parse_args()

    tag = "slow%d" % os.getpid()
    keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    keys.write("bench-key bench-secret\n")  # also read by older gateways
    keys.close()
    cmd = [a.ordo, "-X", "topic.prefix=%s." % tag, "-X",
           "group.prefix=%s." % tag, "-X", "ingest.listen=127.0.0.1:0",
           "-X", "ingest.keys.file=%s" % keys.name]
    for kv in a.X:
        cmd += ["-X", kv]
    gw = subprocess.Popen(cmd + ["ingest"], stderr=subprocess.PIPE,
                          text=True)
    port = None
    t_end = time.time() + 20
    while port is None and time.time() < t_end:
        line = gw.stderr.readline()
        m = re.search(r"msg=listening port=(\d+)", line)
        if m:
            port = int(m.group(1))
    if port is None:
        gw.kill()
        sys.exit("the gateway did not start")
    # Drain its log so it never blocks on a full pipe.
    devnull = open(os.devnull, "w")
    drain = subprocess.Popen(["cat"], stdin=gw.stderr, stdout=devnull)

    time.sleep(1)
    rss0 = rss_kib(gw.pid)
    head = ("POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n"
            % a.size)
    if a.mode == "known-key":
        head += ("X-Ordo-Key: bench-key\r\nX-Ordo-Timestamp: %d\r\n"
                 "X-Ordo-Signature: %s\r\n" % (time.time() * 1000, "0" * 64))
    head = (head + "\r\n").encode()
    body = b"x" * (a.size - 100)  # 99 bytes kept for the trickle

    socks = []
    for _ in range(a.conns):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append([s, head + body, b""])  # socket, to send, answer
    peak = rss0
    t0 = time.time()
    last_byte = t0
    # Send what each socket takes until the hold is over; keep reading
    # answers; every 5 s one more byte on each (never the last).
    while time.time() - t0 < a.hold:
        live = [c for c in socks if c[0] is not None]
        if not live:
            break
        wr = [c[0] for c in live if c[1]]
        r, w, _ = select.select([c[0] for c in live], wr, [], 0.2)
        for c in live:
            s = c[0]
            if s in w:
                try:
                    n = s.send(c[1][:65536])
                    c[1] = c[1][n:]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    try:  # refused early: the answer may be there
                        c[2] += s.recv(4096)
                    except OSError:
                        pass
                    s.close()
                    c[0] = None
                    continue
            if s in r:
                try:
                    d = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    d = b"x"
                except OSError:
                    d = b""
                if d and d != b"x":
                    c[2] += d
                elif not d:
                    s.close()
                    c[0] = None
        if time.time() - last_byte >= 5:
            last_byte = time.time()
            for c in socks:
                if c[0] is not None and not c[1]:
                    try:
                        c[0].send(b"x")  # never the body's end
                    except OSError:
                        pass
        peak = max(peak, rss_kib(gw.pid))
    open_at_end = sum(1 for c in socks if c[0] is not None)
    answers = {}
    for c in socks:
        st = c[2][9:12].decode() if c[2][:5] == b"HTTP/" else "none"
        answers[st] = answers.get(st, 0) + 1
    for c in socks:
        if c[0] is not None:
            c[0].close()
    time.sleep(3)
    rss_after = rss_kib(gw.pid)
    gw.terminate()
    gw.wait(timeout=30)
    drain.wait(timeout=5)
    os.unlink(keys.name)
    print("mode=%s conns=%d size=%d hold=%gs" % (a.mode, a.conns, a.size,
                                                  a.hold))
    print("rss_kib start=%d peak=%d after_close=%d" % (rss0, peak, rss_after))
    print("open_at_end_of_hold=%d answers=%s" % (
        open_at_end, ",".join("%s:%d" % kv for kv in sorted(answers.items()))))


if __name__ == "__main__":
    main()
