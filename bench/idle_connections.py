#!/usr/bin/env python3
"""Memory of idle connections: open N connections (each CONNECT, one SUB, PING/PONG), then
print the server's resident memory from /proc. Usage: idle_connections.py PORT N SERVER_PID.
The server needs `ulimit -n` above N. Loopback only; bounded by N."""
import socket, sys, resource
resource.setrlimit(resource.RLIMIT_NOFILE,(20000,20000))
port=int(sys.argv[1]); n=int(sys.argv[2]); pid=sys.argv[3]
ss=[]
for i in range(n):
    s=socket.create_connection(("127.0.0.1",port)); ss.append(s)
for s in ss: s.sendall(b'CONNECT {"verbose":false}\r\nSUB a.%d 1\r\nPING\r\n'%len(ss))
for s in ss:
    d=b""
    while b"PONG" not in d: d+=s.recv(4096)
rss=[l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
print(n, "connections ok;", rss.strip())
