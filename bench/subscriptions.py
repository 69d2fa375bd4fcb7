#!/usr/bin/env python3
"""What subscriptions cost a server, natsu against nats-server in the same run.

    python3 bench/subscriptions.py [--rounds 3] [--subs 120000] [--wild 20000] \
        [--natsu target/release/natsu] [--baseline OLD_NATSU] [--reference nats-server]

Two measurements, each on a freshly started server, servers alternating per round:

- memory and SUB/UNSUB rates: one connection subscribes to N distinct literal subjects
  (`sub.<i>.x`) in one write ending in a PING; the time to the PONG gives SUBs per second,
  and the server's added RSS (VmRSS from /proc) divided by N the cost of one subscription;
  then N UNSUBs the same way give UNSUBs per second (in sid order, and again after N
  more SUBs in a shuffled order) (natsu with its default cores: every core keeps what it knows of the others'
  interest, which is part of the cost).
- wildcard SUBs with a warm match cache: a publisher sends to 1,024 distinct subjects that a
  `warm.>` subscriber matches (the match cache is full), then another connection sends W
  wildcard SUBs (`wild.<i>.*`) and a PING; the time to the PONG gives SUBs per second.
- publishers while such a burst lands (a fresh server again): a probe publishes one message
  at a time to a subject another connection subscribes to and times each to its delivery,
  for 0.5 s before the burst (the quiet figures) and while the W wildcard SUBs land (from
  their write to the PONG after them); a spike is a delivery far slower than the quiet ones.

Prints one line per run and the medians; loopback only, ports picked by the servers.
"""

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import tempfile
import threading
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
        # As every NATS client library: without it, a lone small PUB waits for the
        # server's delayed ACK of the one before (Nagle).
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
    """Added RSS per subscription, and SUBs and UNSUBs per second: all N in one write,
    timed to the PONG of a PING sent after them."""
    c = Conn(port)
    subs = b"".join(b"SUB sub.%d.x %d\r\n" % (i, i + 1) for i in range(n)) + b"PING\r\n"
    unsubs = b"".join(b"UNSUB %d\r\n" % (i + 1) for i in range(n)) + b"PING\r\n"
    time.sleep(0.3)
    before = rss_kib(pid)
    t0 = time.perf_counter()
    c.s.sendall(subs)
    c.read_until(b"PONG\r\n")
    sub_rate = n / (time.perf_counter() - t0)
    time.sleep(0.3)
    after = rss_kib(pid)
    t0 = time.perf_counter()
    c.s.sendall(unsubs)
    c.read_until(b"PONG\r\n")
    unsub_rate = n / (time.perf_counter() - t0)
    # The same again with the UNSUBs in a shuffled order (a fixed seed: the same for both
    # servers), as a client that unsubscribes as its work ends would send them.
    c.s.sendall(subs)
    c.read_until(b"PONG\r\n")
    order = list(range(n))
    random.Random(20).shuffle(order)
    shuffled = b"".join(b"UNSUB %d\r\n" % (i + 1) for i in order) + b"PING\r\n"
    t0 = time.perf_counter()
    c.s.sendall(shuffled)
    c.read_until(b"PONG\r\n")
    shuffled_rate = n / (time.perf_counter() - t0)
    return (after - before) * 1024 / n, sub_rate, unsub_rate, shuffled_rate


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


def burst_latency(port, w):
    """Deliveries timed one at a time before and while W wildcard SUBs land: (quiet p99,
    quiet max, burst p99, burst max, probes during the burst), in microseconds."""
    sub, pub, subber, psub, ppub = Conn(port), Conn(port), Conn(port), Conn(port), Conn(port)
    sub.s.sendall(b"SUB warm.> 1\r\n")
    sub.ping()
    pub.s.sendall(b"".join(b"PUB warm.%d 1\r\nx\r\n" % i for i in range(1024)))
    pub.ping()
    psub.s.sendall(b"SUB probe 1\r\n")
    psub.ping()
    samples = []  # (sent at, microseconds to delivery)
    stop_at = [time.perf_counter() + 30.0]

    def probe():
        n = 0
        while time.perf_counter() < stop_at[0] and n < 200_000:
            n += 1
            t0 = time.perf_counter()
            ppub.s.sendall(b"PUB probe 1\r\nx\r\n")
            psub.read_until(b"x\r\n")
            samples.append((t0, (time.perf_counter() - t0) * 1e6))

    t = threading.Thread(target=probe)
    t.start()
    time.sleep(0.5)
    cmds = b"".join(b"SUB wild.%d.* %d\r\n" % (i, i + 1) for i in range(w))
    b0 = time.perf_counter()
    subber.s.sendall(cmds)
    subber.ping()
    b1 = time.perf_counter()
    stop_at[0] = b1 + 0.1
    t.join()
    quiet = sorted(d for s, d in samples if s < b0 and s > b0 - 0.4)
    burst = sorted(d for s, d in samples if b0 <= s <= b1)
    pct = lambda xs, q: xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float("nan")
    return pct(quiet, 0.99), max(quiet, default=float("nan")), pct(burst, 0.99), max(burst, default=float("nan")), len(burst)


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
    subr = {n: [] for n, _ in servers}
    unsubr = {n: [] for n, _ in servers}
    shufr = {n: [] for n, _ in servers}
    wild = {n: [] for n, _ in servers}
    lat = {n: [] for n, _ in servers}
    for r in range(a.rounds):
        order = servers if r % 2 == 0 else list(reversed(servers))
        for name, cmd in order:
            proc, port, log = start(cmd)
            m, sr, ur, xr = memory(port, proc.pid, a.subs)
            stop(proc, log)
            proc, port, log = start(cmd)
            s = wildcard(port, a.wild)
            stop(proc, log)
            proc, port, log = start(cmd)
            bl = burst_latency(port, a.wild)
            stop(proc, log)
            lat[name].append(bl)
            mem[name].append(m)
            subr[name].append(sr)
            unsubr[name].append(ur)
            shufr[name].append(xr)
            wild[name].append(s)
            print(f"round {r + 1} {name:12} {m:8.0f} B/subscription  {sr:10.0f} SUBs/s  {ur:10.0f} UNSUBs/s  {xr:10.0f} shuffled  {s:10.0f} wildcard SUBs/s", flush=True)
            print(f"        {name:12} delivery while the wildcard SUBs land: quiet p99 {bl[0]:.0f} max {bl[1]:.0f} us, burst p99 {bl[2]:.0f} max {bl[3]:.0f} us ({bl[4]} probes)", flush=True)
    med = statistics.median
    print()
    print(f"| server | added RSS per subscription | SUBs/s ({a.subs:,} in one write) | UNSUBs/s (the same, in sid order) | UNSUBs/s (shuffled) | wildcard SUBs/s, warm cache |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, _ in servers:
        print(f"| {name} | {med(mem[name]):,.0f} B | {med(subr[name]):,.0f} | {med(unsubr[name]):,.0f} | {med(shufr[name]):,.0f} | {med(wild[name]):,.0f} |")
    print()
    print("| server | delivery p99 / max, quiet (µs) | the same while the wildcard SUBs land (µs) | probes in the burst |")
    print("| --- | ---: | ---: | ---: |")
    for name, _ in servers:
        ls = lat[name]
        print(f"| {name} | {med([x[0] for x in ls]):.0f} / {med([x[1] for x in ls]):.0f} | {med([x[2] for x in ls]):.0f} / {med([x[3] for x in ls]):.0f} | {med([x[4] for x in ls]):.0f} |")
    ref = "nats-server"
    for name, _ in servers:
        if name != ref:
            print(f"{name}/nats-server: memory {med(mem[name]) / med(mem[ref]):.2f}x, SUB rate {med(subr[name]) / med(subr[ref]):.2f}x,"
                  f" UNSUB rate {med(unsubr[name]) / med(unsubr[ref]):.2f}x (shuffled {med(shufr[name]) / med(shufr[ref]):.2f}x), wildcard SUB rate {med(wild[name]) / med(wild[ref]):.2f}x")


if __name__ == "__main__":
    main()
