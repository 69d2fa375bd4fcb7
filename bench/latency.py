#!/usr/bin/env python3
"""Crude request/reply round-trip latency until natsu-bench exists: two raw-socket clients
ping-pong a 2-byte message through the server (A publishes `ping`, B answers on `pong`).
Usage: latency.py PORT [ROUND_TRIPS]. Six fresh connection pairs per run, so with several
executors some pairs sit on one core and some cross cores. Loopback only, bounded count."""
import socket, sys, time
port=int(sys.argv[1]); N=int(sys.argv[2]) if len(sys.argv)>2 else 3000
def conn():
    s=socket.create_connection(("127.0.0.1",port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,1)
    f=s.makefile('rb'); f.readline(); s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'); return s,f
lats=[]
for trial in range(6):
    a,af=conn(); b,bf=conn()
    b.sendall(b"SUB ping 1\r\nPING\r\n"); assert bf.readline()==b"PONG\r\n"
    a.sendall(b"SUB pong 1\r\nPING\r\n"); assert af.readline()==b"PONG\r\n"
    for i in range(N//6):
        t=time.perf_counter()
        a.sendall(b"PUB ping 2\r\nhi\r\n")
        bf.readline(); bf.readline()
        b.sendall(b"PUB pong 2\r\nho\r\n")
        af.readline(); af.readline()
        lats.append(time.perf_counter()-t)
    a.close(); b.close()
lats.sort()
print(f"port {port}: round trip p50 {lats[len(lats)//2]*1e6:.0f}us p99 {lats[int(len(lats)*.99)]*1e6:.0f}us")
