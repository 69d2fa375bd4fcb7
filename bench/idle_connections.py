#!/usr/bin/env python3
"""What idle connections cost a server, natsu against nats-server in the same run.

    python3 bench/idle_connections.py [--conns 15000] [--rounds 3] \
        [--natsu target/release/natsu] [--baseline OLD_NATSU] [--reference nats-server]

Each round starts each server fresh (alternating which goes first), reads its RSS (VmRSS
from /proc), opens N connections that each send CONNECT, one SUB and a PING and wait for
the PONG, waits a second, and reads the RSS again: the added RSS divided by N is what one
idle connection (with one subscription) costs. Needs an open-file limit above N (raised
here up to the hard limit). Loopback only, ports picked by the servers.
"""

import argparse
import re
import resource
import socket
import statistics
import subprocess
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(cmd, n):
    proc = subprocess.Popen(cmd + ["-a", "127.0.0.1", "-p", "-1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    conns = []
    try:
        port, deadline = None, time.time() + 10
        while port is None and time.time() < deadline:
            m = re.search(r"Listening for client connections on [^\s]*:(\d+)", proc.stderr.readline())
            if m:
                port = int(m.group(1))
        if port is None:
            raise SystemExit(f"{cmd[0]} did not start")
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(30)
            conns.append(s)
        for i, s in enumerate(conns):
            s.sendall(b'CONNECT {"verbose":false}\r\nSUB idle.%d 1\r\nPING\r\n' % i)
        for s in conns:
            got = b""
            while b"PONG\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit(f"{cmd[0]} closed a connection")
                got += chunk
        time.sleep(1)
        return (rss_kib(proc.pid) - before) * 1024 / n
    finally:
        for s in conns:
            s.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=15_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--natsu", default="target/release/natsu")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--reference", default="nats-server")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    servers = [("natsu", [a.natsu]), ("nats-server", [a.reference])]
    if a.baseline:
        servers.append(("natsu-base", [a.baseline]))
    per = {name: [] for name, _ in servers}
    for r in range(a.rounds):
        for name, cmd in servers if r % 2 == 0 else list(reversed(servers)):
            b = measure(cmd, a.conns)
            per[name].append(b)
            print(f"round {r + 1} {name:12} {b:8.0f} B per idle connection", flush=True)
    med = statistics.median
    print()
    print(f"| server | added RSS per idle connection ({a.conns:,}, one SUB each) |")
    print("| --- | ---: |")
    for name, _ in servers:
        print(f"| {name} | {med(per[name]):,.0f} B |")
    for name, _ in servers:
        if name != "nats-server":
            print(f"{name}/nats-server: {med(per[name]) / med(per['nats-server']):.2f}x")


if __name__ == "__main__":
    main()
