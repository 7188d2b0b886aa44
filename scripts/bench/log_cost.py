#!/usr/bin/env python3
"""What the access log costs sendfiled per CPU-second: the same binary with its log off and with
JSON lines to a file, alternating, ROUNDS rounds of `wrk -t1 -c64 -d4s` on the corpus's 1 KiB
file (server pinned to CPU 0, wrk to CPU 1), requests per CPU-second of all the server's threads
from /proc. Prints every round and the median ratio. The corpus is scripts/bench-vs-peers.sh's.

    python3 scripts/bench/log_cost.py target/release/sendfiled [ROUNDS=5] [LOG=/dev/shm/access.log]
"""
import os, re, subprocess, sys, time

BIN = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
LOG = sys.argv[3] if len(sys.argv) > 3 else "/dev/shm/sendfiled-log-cost.log"
CORPUS = os.environ.get("BENCH_DIR", "/tmp/sendfiled-bench") + "/corpus"
CONFIGS = {
    "off": '[access_log]\nenabled = false\n',
    "json": f'[access_log]\nenabled = true\nformat = "json"\npath = "{LOG}"\n',
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        fields = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def wrk(seconds):
    url = "http://127.0.0.1:18610/1k.bin"
    return subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", url],
                          capture_output=True, text=True).stdout


def one_round(toml):
    if os.path.exists(LOG):
        os.unlink(LOG)
    config = "/tmp/sendfiled-log-cost.toml"
    open(config, "w").write(toml + '[admin]\nlisten = "off"\n')
    server = subprocess.Popen(["taskset", "-c", "0", BIN, "serve", "--root", CORPUS, "--listen",
                               "127.0.0.1:18610", "--workers", "1", "--config", config],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.8)
        wrk(1)
        before = cpu_seconds(server.pid)
        out = wrk(4)
        used = cpu_seconds(server.pid) - before
        return int(re.search(r"(\d+) requests in", out).group(1)) / max(used, 1e-9)
    finally:
        server.terminate()
        server.wait()


results = {name: [] for name in CONFIGS}
for _ in range(ROUNDS):
    for name, toml in CONFIGS.items():
        results[name].append(one_round(toml))
median = {name: sorted(v)[len(v) // 2] for name, v in results.items()}
for name, v in results.items():
    rounds = " ".join(f"{x:8.0f}" for x in v)
    print(f"{name:5s} {rounds}   median {median[name]:8.0f} req/CPU-s   "
          f"{median[name] / median['off']:.3f}x of off")
