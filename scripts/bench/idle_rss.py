#!/usr/bin/env python3
"""Resident memory per idle keep-alive connection of a running server: opens N connections, sends
one 1 KiB GET on each, reads the answers, leaves them open, and reports the RSS growth per
connection of the process PID (for nginx, pass its worker's PID).

    python3 scripts/bench/idle_rss.py PORT PID [N=1000]
"""
import socket, sys, time, re
port = int(sys.argv[1]); pid = int(sys.argv[2]); n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
def rss():
    s = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmRSS:\s+(\d+)", s).group(1))
def hwm():
    return int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read()).group(1))
conns = []
# warm
for _ in range(20):
    c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"GET /1k.bin HTTP/1.1\r\nHost: t\r\n\r\n"); c.recv(65536); c.close()
time.sleep(0.3)
r0 = rss()
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"GET /1k.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    conns.append(c)
for c in conns:
    got = b""
    while len(got) < 1024 + 100:
        got += c.recv(65536)
time.sleep(0.5)
r1 = rss()
print(f"idle after one request: {(r1 - r0) * 1024 / n:.0f} bytes per connection ({r0} -> {r1} KiB, peak {hwm()} KiB)")
