#!/usr/bin/env python3
"""HTTPS benchmark for scripts/bench-https.sh: sendfiled against nginx with the same ECDSA P-256
certificate, TLS 1.3 with TLS_AES_128_GCM_SHA256 only, kernel TLS off on both (the kernel here has
no TLS ULP), each pinned to SERVER_CPU with one worker, the client pinned to CLIENT_CPU.

Cases: 1 KiB keep-alive (wrk, 64 connections), 1 MiB (wrk, 16), 256 MiB (wrk, 4), and a new
connection per request resuming its session (openssl s_time -reuse, one connection at a time).
Figures per server CPU-second (utime+stime of the server's processes), medians of ROUNDS rounds
with the order rotated. Writes docs/benchmarks/https.md.

Environment: DURATION (default 5), ROUNDS (default 3), CASES (comma list), BENCH_DIR, SERVER_CPU,
CLIENT_CPU, as for run.py.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (the corpus, CPU accounting and wrk parsing of the plain matrix)

BENCH_DIR = base.BENCH_DIR
CORPUS = base.CORPUS
PORTS = {"nginx": 18491, "sendfiled": 18492}
SERVERS = ["nginx", "sendfiled"]
CASES = [
    ("tls-1k-ka-64", "1 KiB, keep-alive, 64 conns", "wrk", 64, "/1k.bin"),
    ("tls-1m-16", "1 MiB, 16 conns", "wrk", 16, "/1m.bin"),
    ("tls-256m-4", "256 MiB, 4 conns", "wrk", 4, "/256m.bin"),
    ("tls-resume", "1 KiB, new connection per request, session resumed", "s_time", 1, "/1k.bin"),
]
BYTE_CASES = ("tls-1m-16", "tls-256m-4")


def certificate():
    key, cert = BENCH_DIR / "tls.key", BENCH_DIR / "tls.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def nginx_conf(cert, key):
    conf = BENCH_DIR / "nginx-tls.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
worker_cpu_affinity {1 << int(base.SERVER_CPU):b};
worker_rlimit_nofile 65536;
daemon off;
pid {BENCH_DIR}/nginx-tls.pid;
error_log {BENCH_DIR}/nginx-tls-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    default_type application/octet-stream;
    client_body_temp_path {BENCH_DIR}/nginx-tmp;
    proxy_temp_path {BENCH_DIR}/nginx-tmp;
    fastcgi_temp_path {BENCH_DIR}/nginx-tmp;
    uwsgi_temp_path {BENCH_DIR}/nginx-tmp;
    scgi_temp_path {BENCH_DIR}/nginx-tmp;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    ssl_session_cache shared:SSL:10m;
    ssl_session_tickets on;
    server {{
        listen 127.0.0.1:{PORTS['nginx']} ssl reuseport backlog=4096;
        root {CORPUS};
        location / {{ }}
    }}
}}
""")
    (BENCH_DIR / "nginx-tmp").mkdir(exist_ok=True)
    return conf


def sendfiled_conf(cert, key):
    conf = BENCH_DIR / "sendfiled-tls.toml"
    conf.write_text(f"""listen = []
[access_log]
enabled = false
[admin]
listen = "off"
[[tls]]
listen = ["127.0.0.1:{PORTS['sendfiled']}"]
versions = ["1.3"]
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
ktls = "off"
[[tls.certificates]]
cert = "{cert}"
key = "{key}"
""")
    return conf


def start(server, cert, key):
    if base.port_taken(PORTS[server]):
        raise SystemExit(f"port {PORTS[server]} is already in use; stop the leftover {server} first")
    if server == "nginx":
        nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
        cmd = ["taskset", "-c", base.SERVER_CPU, nginx, "-c", str(nginx_conf(cert, key)),
               "-e", str(BENCH_DIR / "nginx-tls-error.log")]
    else:
        cmd = ["taskset", "-c", base.SERVER_CPU, str(base.REPO / "target/release/sendfiled"), "serve",
               "--root", str(CORPUS), "--workers", "1", "--config", str(sendfiled_conf(cert, key))]
    return base.launch(cmd, server, f"https://127.0.0.1:{PORTS[server]}/1k.bin", BENCH_DIR / f"{server}-tls.log")


def wrk(server, conns, path, duration):
    args = ["taskset", "-c", base.CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency",
            "--timeout", "60s", f"https://127.0.0.1:{PORTS[server]}{path}"]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if not m:
        raise SystemExit(f"wrk output not understood:\n{out}")
    secs = float(m.group(2)) * {"s": 1, "ms": 0.001, "m": 60}[m.group(3)]
    unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"reqs": int(m.group(1)), "secs": secs, "mb": float(m.group(4)) * unit[m.group(5)] / 1e6,
            "p99": f"{p99.group(1)}{p99.group(2)}" if p99 else "-", "non2xx": int(bad.group(1)) if bad else 0}


def s_time(server, path, duration):
    """openssl s_time -reuse: one full handshake, then a new connection per request resuming it."""
    args = ["taskset", "-c", base.CLIENT_CPU, "openssl", "s_time", "-connect", f"127.0.0.1:{PORTS[server]}",
            "-reuse", "-time", str(duration), "-www", path]
    out = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout
    # The figures after "reuse": connections in wall-clock seconds (the other line is client CPU).
    m = re.search(r"(\d+) connections in (\d+) real seconds", out.split("reuse", 1)[-1])
    if not m:
        raise SystemExit(f"s_time output not understood:\n{out}")
    return {"reqs": int(m.group(1)), "secs": float(m.group(2)), "mb": int(m.group(1)) * 1024 / 1e6, "p99": "-",
            "non2xx": 0}


def measure(server, proc, kind, conns, path, duration):
    run = (lambda d: wrk(server, conns, path, d)) if kind == "wrk" else (lambda d: s_time(server, path, d))
    run(1)
    c0 = base.cpu_seconds(proc)
    r = run(duration)
    r["cpu"] = base.cpu_seconds(proc) - c0
    return r


def per_cpu(r, name):
    return (r["mb"] if name in BYTE_CASES else r["reqs"]) / max(r["cpu"], 1e-9)


def main():
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    base.make_corpus()
    cert, key = certificate()
    wanted = os.environ.get("CASES")
    selected = [c for c in CASES if not wanted or c[0] in wanted.split(",")]
    procs = {s: start(s, cert, key) for s in SERVERS}
    results = {}
    try:
        for name, desc, kind, conns, path in selected:
            rounds = {s: [] for s in SERVERS}
            for i in range(base.ROUNDS):
                order = SERVERS if i % 2 == 0 else SERVERS[::-1]
                for server in order:
                    rounds[server].append(measure(server, procs[server], kind, conns, path, base.DURATION))
            for server in SERVERS:
                rs = sorted(rounds[server], key=lambda r: per_cpu(r, name))
                results[(server, name)] = r = rs[len(rs) // 2]
                base.log(f"  {name:13} {server:9} {r['reqs'] / r['secs']:9.0f} req/s {r['mb'] / r['secs']:8.1f} MB/s "
                         f"cpu {r['cpu']:5.2f}s {r['reqs'] / max(r['cpu'], 1e-9):8.0f} req/cpu-s "
                         f"{r['mb'] / max(r['cpu'], 1e-9):8.1f} MB/cpu-s p99 {r['p99']}"
                         + (f"  NON-2XX {r['non2xx']}" if r["non2xx"] else ""))
        rss = {s: base.peak_rss_kib(p) for s, p in procs.items()}
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    lines = [f"Machine: {base.machine()}, {subprocess.run(['openssl', 'version'], capture_output=True, text=True).stdout.strip()}. "
             f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             f"HTTPS, TLS 1.3 with TLS_AES_128_GCM_SHA256 only, ECDSA P-256 certificate, kernel TLS off on both; "
             f"one worker pinned to CPU {base.SERVER_CPU}, the client on CPU {base.CLIENT_CPU}; {base.ROUNDS} rounds of "
             f"{base.DURATION} s, median by work per CPU-second.", "",
             "| case | server | req/s | MB/s | req per CPU-s | MB per CPU-s | p99 | ratio (per CPU-s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, desc, *_ in selected:
        ratio = per_cpu(results[("sendfiled", name)], name) / max(per_cpu(results[("nginx", name)], name), 1e-9)
        for server in SERVERS:
            r = results[(server, name)]
            rt = f"**{ratio:.2f}×** vs nginx" if server == "sendfiled" else ""
            lines.append(f"| {desc} | {server} | {r['reqs'] / r['secs']:.0f} | {r['mb'] / r['secs']:.1f} | "
                         f"{r['reqs'] / max(r['cpu'], 1e-9):.0f} | {r['mb'] / max(r['cpu'], 1e-9):.1f} | {r['p99']} | {rt} |")
    lines += ["", "Peak RSS: " + ", ".join(f"{s} {v / 1024:.1f} MiB" for s, v in rss.items()) + "."]
    out = base.REPO / "docs" / "benchmarks" / "https.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
