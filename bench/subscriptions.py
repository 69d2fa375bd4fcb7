#!/usr/bin/env python3
"""What subscriptions cost a server, natsu against nats-server in the same run.

    python3 bench/subscriptions.py [--rounds 3] [--subs 120000] [--wild 20000] \
        [--natsu target/release/natsu] [--baseline OLD_NATSU] [--reference nats-server]

Two measurements, each on a freshly started server, servers alternating per round:

- memory: one connection subscribes to N distinct literal subjects (`sub.<i>.x`), then a
  PING; the server's added RSS (VmRSS from /proc) divided by N is the cost of one
  subscription (natsu with its default cores: every core keeps what it knows of the others'
  interest, which is part of the cost).
- wildcard SUBs with a warm match cache: a publisher sends to 1,024 distinct subjects that a
  `warm.>` subscriber matches (the match cache is full), then another connection sends W
  wildcard SUBs (`wild.<i>.*`) and a PING; the time to the PONG gives SUBs per second.

Prints one line per run and the medians; loopback only, ports picked by the servers.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time


def start(cmd):
    log = tempfile.NamedTemporaryFile(prefix="subs-bench-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd + ["-a", "127.0.0.1", "-p", "-1"], stdout=log, stderr=log)
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(log.name) as f:
            m = re.search(r"Listening for client connections on [^\s]*:(\d+)", f.read())
        if m:
            return proc, int(m.group(1)), log.name
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{cmd[0]} did not start; see {log.name}")


def stop(proc, log):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    os.unlink(log)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.settimeout(60)
        self.buf = b""
        self.read_until(b"\r\n")
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        self.ping()

    def read_until(self, token):
        while token not in self.buf:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise SystemExit("server closed the connection")
            self.buf += chunk
        i = self.buf.index(token) + len(token)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def ping(self):
        self.s.sendall(b"PING\r\n")
        self.read_until(b"PONG\r\n")


def memory(port, pid, n):
    c = Conn(port)
    time.sleep(0.3)
    before = rss_kib(pid)
    batch = []
    for i in range(n):
        batch.append(b"SUB sub.%d.x %d\r\n" % (i, i + 1))
        if len(batch) == 2000:
            c.s.sendall(b"".join(batch))
            batch = []
    c.s.sendall(b"".join(batch))
    c.ping()
    time.sleep(0.3)
    after = rss_kib(pid)
    return (after - before) * 1024 / n


def wildcard(port, w):
    sub, pub, subber = Conn(port), Conn(port), Conn(port)
    sub.s.sendall(b"SUB warm.> 1\r\n")
    sub.ping()
    pub.s.sendall(b"".join(b"PUB warm.%d 1\r\nx\r\n" % i for i in range(1024)))
    pub.ping()
    # Drain what the warm-up delivered, so nothing pushes back on the server.
    sub.s.settimeout(0.5)
    try:
        while sub.s.recv(1 << 20):
            pass
    except OSError:
        pass
    cmds = b"".join(b"SUB wild.%d.* %d\r\n" % (i, i + 1) for i in range(w))
    t0 = time.perf_counter()
    subber.s.sendall(cmds)
    subber.ping()
    return w / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--subs", type=int, default=120_000)
    ap.add_argument("--wild", type=int, default=20_000)
    ap.add_argument("--natsu", default="target/release/natsu")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--reference", default="nats-server")
    a = ap.parse_args()
    servers = [("natsu", [a.natsu]), ("nats-server", [a.reference])]
    if a.baseline:
        servers.append(("natsu-base", [a.baseline]))
    mem = {n: [] for n, _ in servers}
    wild = {n: [] for n, _ in servers}
    for r in range(a.rounds):
        order = servers if r % 2 == 0 else list(reversed(servers))
        for name, cmd in order:
            proc, port, log = start(cmd)
            m = memory(port, proc.pid, a.subs)
            stop(proc, log)
            proc, port, log = start(cmd)
            s = wildcard(port, a.wild)
            stop(proc, log)
            mem[name].append(m)
            wild[name].append(s)
            print(f"round {r + 1} {name:12} {m:8.0f} B/subscription   {s:10.0f} wildcard SUBs/s", flush=True)
    print()
    print("| server | added RSS per subscription | wildcard SUBs/s, warm cache |")
    print("| --- | --- | --- |")
    for name, _ in servers:
        print(f"| {name} | {statistics.median(mem[name]):,.0f} B | {statistics.median(wild[name]):,.0f} |")
    ref_m, ref_w = statistics.median(mem["nats-server"]), statistics.median(wild["nats-server"])
    for name, _ in servers:
        if name != "nats-server":
            print(f"{name}/nats-server: memory {statistics.median(mem[name]) / ref_m:.2f}x, wildcard SUB rate {statistics.median(wild[name]) / ref_w:.2f}x")


if __name__ == "__main__":
    main()
