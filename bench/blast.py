#!/usr/bin/env python3
"""Crude side-by-side throughput check until natsu-bench exists: one raw-socket publisher
floods PUBs of 16 bytes, one raw-socket subscriber counts the bytes of MSG frames it receives.
Usage: blast.py PORT [MESSAGES]. Prints publish and delivered rates. Loopback only; bounded
by the message count and a 60 s reader timeout."""
import socket, sys, time, threading
port=int(sys.argv[1]); N=int(sys.argv[2]) if len(sys.argv)>2 else 2000000
payload=b"x"*16
def conn():
    s=socket.create_connection(("127.0.0.1",port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,1)
    s.recv(4096); s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'); return s
sub=conn(); sub.sendall(b"SUB bench 1\r\nPING\r\n")
d=b""
while b"PONG" not in d: d+=sub.recv(100)
frame=b"MSG bench 1 16\r\n"+payload+b"\r\n"
expect=len(frame)*N
got=[0]
def reader():
    n=0
    while n<expect:
        b=sub.recv(1<<20)
        if not b: break
        n+=len(b)
    got[0]=n
t=threading.Thread(target=reader); t.start()
pub=conn()
chunk=(b"PUB bench 16\r\n"+payload+b"\r\n")*10000
t0=time.time()
for i in range(N//10000): pub.sendall(chunk)
t1=time.time()
t.join(60)
t2=time.time()
print(f"port {port}: pub {N/(t1-t0)/1e6:.2f} M/s, delivered {got[0]/len(frame)/(t2-t0)/1e6:.2f} M/s ({got[0]==expect})")
