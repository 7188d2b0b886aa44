#!/usr/bin/env python3
"""Benchmark driver for scripts/bench-vs-peers.sh: builds the corpus, runs each server and each
case with wrk, reads CPU time and peak RSS from /proc, writes the markdown table and SVG chart.

Environment: DURATION (seconds per round, default 5), ROUNDS (default 3), CASES (comma list), BENCH_DIR (corpus and
scratch, default /tmp/sendfiled-bench), SERVER_CPU (default 0), CLIENT_CPU (default 1), PEERS (comma list of
nginx, h2o, lighttpd; default all three), SENDFILED_TOML (extra lines for sendfiled's config file, to try a
setting: "[open_file_cache]\nsmall_body_max = 0", say).

HYPER=1 adds the yardstick on the 1 KiB cases: examples/bare_hyper.rs, a bare hyper service on the same runtime
set-up sending the 1 KiB file from memory with the same headers (cargo build --release --example bare_hyper).

LOGS=1 adds the access-log pair: nginx with `access_log FILE buffer=64k` and sendfiled with its JSON access log
to a file, on the 1 KiB keep-alive cases, beside the same servers with logs off.

VERSUS=/path/to/sendfiled runs that binary (another build: old main, say) as the only peer, so that two versions
of sendfiled are compared in one run with the same rounds and medians; VERSUS_NAME names it in the report
(default "baseline"), VERSUS_TOML gives it its own extra config lines (the same binary with another setting,
say), and REPORT names the report files (default "latest", or "versus" with VERSUS).
"""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DURATION = int(os.environ.get("DURATION", "5"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
BYTE_CASES = ("1m-16", "256m-4")
RUN_ZIP = True
BENCH_DIR = Path(os.environ.get("BENCH_DIR", "/tmp/sendfiled-bench"))
SERVER_CPU = os.environ.get("SERVER_CPU", "0")
CLIENT_CPU = os.environ.get("CLIENT_CPU", "1")
CORPUS = BENCH_DIR / "corpus"
VERSUS = os.environ.get("VERSUS")
VERSUS_NAME = os.environ.get("VERSUS_NAME", "baseline")
PEERS = [VERSUS_NAME] if VERSUS else os.environ.get("PEERS", "nginx,h2o,lighttpd").split(",")
LOGS = os.environ.get("LOGS") == "1" and not VERSUS
LOG_CASES = ("1k-ka-64", "1k-ka-256")
HYPER = os.environ.get("HYPER") == "1"
SERVERS = PEERS + ["sendfiled"] + (["nginx+log", "sendfiled+log"] if LOGS else []) + (["bare-hyper"] if HYPER else [])
REPORT = os.environ.get("REPORT", "versus" if VERSUS else "latest")
PORTS = {"nginx": 18481, "sendfiled": 18482, "h2o": 18483, "lighttpd": 18484,
         "nginx+log": 18485, "sendfiled+log": 18486, "bare-hyper": 18487, VERSUS_NAME: 18481}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# name, description, wrk connections, path or lua script, extra wrk args
CASES = [
    ("1k-ka-64", "1 KiB, keep-alive, 64 conns", 64, "/1k.bin", []),
    ("1k-ka-256", "1 KiB, keep-alive, 256 conns", 256, "/1k.bin", []),
    ("16k-ka-64", "16 KiB, keep-alive, 64 conns", 64, "/16k.bin", []),
    ("16k-ka-256", "16 KiB, keep-alive, 256 conns", 256, "/16k.bin", []),
    ("small-1000", "1000 small files, random, 64 conns", 64, "lua:small.lua", []),
    ("1m-16", "1 MiB, 16 conns", 16, "/1m.bin", []),
    ("256m-4", "256 MiB, 4 conns", 4, "/256m.bin", ["--timeout", "60s"]),
    ("ranges-64k", "random 64 KiB ranges of 256 MiB, 64 conns", 64, "lua:ranges.lua", []),
    ("1k-close", "1 KiB, new connection per request, 64 conns", 64, "/1k.bin", ["-H", "Connection: close"]),
    ("1k-c1000", "1 KiB, keep-alive, 1000 conns", 1000, "/1k.bin", ["--timeout", "10s"]),
]

# The small-body crossover (open_file_cache.small_body_max): run only when CASES names them.
SIZE_CASES = [
    (f"{k}k-ka-64", f"{k} KiB, keep-alive, 64 conns", 64, f"/{k}k.bin", []) for k in (2, 4, 8)
]

# Archive cases, sendfiled only (nginx has no built-in archives): name, description, conns, path.
ZIP_CASES = [
    ("zip-stored", "stored archive: 256 MiB file + 1000 small files", 4, "/zipsrc/?download=zip&compress=store"),
    ("zip-deflate", "deflate archive of 64 MiB of text, level 3", 2, "/text/?download=zip&compress=deflate&level=3"),
]
TEXT_BYTES = 64 << 20

LUA = {
    "small.lua": """
local counter = 0
request = function()
  counter = counter + 1
  local i = (counter * 7919) % 1000
  return wrk.format("GET", string.format("/small/%04d.bin", i))
end
""",
    "ranges.lua": """
local counter = 0
request = function()
  counter = counter + 1
  local off = ((counter * 2654435761) % 4095) * 65536
  return wrk.format("GET", "/256m.bin", {["Range"] = string.format("bytes=%d-%d", off, off + 65535)})
end
""",
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_corpus():
    """Real (non-sparse) files from a fixed seed, so every run serves the same bytes."""
    CORPUS.mkdir(parents=True, exist_ok=True)
    (CORPUS / "small").mkdir(exist_ok=True)
    rng = random.Random(20261122)
    want = {"1k.bin": 1024, "16k.bin": 16 * 1024, "1m.bin": 1 << 20, "256m.bin": 256 << 20,
            "2k.bin": 2048, "4k.bin": 4096, "8k.bin": 8192}
    for name, size in want.items():
        p = CORPUS / name
        if not p.exists() or p.stat().st_size != size:
            with open(p, "wb") as f:
                left = size
                while left:
                    n = min(left, 1 << 20)
                    f.write(rng.randbytes(n))
                    left -= n
    for i in range(1000):
        p = CORPUS / "small" / f"{i:04d}.bin"
        size = 512 + (i * 7717) % (32 * 1024)
        if not p.exists() or p.stat().st_size != size:
            p.write_bytes(rng.randbytes(size))
    # The archive source: the same 256 MiB file and small files, as hard links.
    (CORPUS / "zipsrc" / "small").mkdir(parents=True, exist_ok=True)
    for src, dst in [("256m.bin", "zipsrc/256m.bin")] + [(f"small/{i:04d}.bin", f"zipsrc/small/{i:04d}.bin") for i in range(1000)]:
        if not (CORPUS / dst).exists():
            os.link(CORPUS / src, CORPUS / dst)
    # 64 MiB of text in 64 files, from a fixed word list and seed.
    (CORPUS / "text").mkdir(exist_ok=True)
    words = ("the of and to in is that for it as was with be by on not he this are or his from at which "
             "but have an they you were her she there been one all we their has would when if so no will "
             "server request response archive deflate origin cache header range bytes file directory").split()
    for i in range(64):
        p = CORPUS / "text" / f"{i:02d}.txt"
        if not p.exists() or p.stat().st_size != TEXT_BYTES // 64:
            out = []
            size = 0
            while size < TEXT_BYTES // 64:
                line = " ".join(rng.choice(words) for _ in range(12)) + "\n"
                out.append(line)
                size += len(line)
            p.write_text("".join(out)[: TEXT_BYTES // 64])
    for name, text in LUA.items():
        (BENCH_DIR / name).write_text(text)
    os.chmod(BENCH_DIR, 0o755)


def nginx_conf(server):
    conf = BENCH_DIR / f"{server}.conf"
    access_log = f"access_log {BENCH_DIR}/nginx-access.log combined buffer=64k flush=1s" if server.endswith("+log") else "access_log off"
    conf.write_text(f"""
# nginx's best static configuration for this test: one worker on the server core, sendfile
# with tcp_nopush, open_file_cache, no access log, reuseport, long keep-alive.
user root;
worker_processes 1;
worker_cpu_affinity {1 << int(SERVER_CPU):b};
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid {BENCH_DIR}/{server}.pid;
error_log {BENCH_DIR}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    {access_log};
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    sendfile_max_chunk 2m;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    default_type application/octet-stream;
    client_body_temp_path {BENCH_DIR}/nginx-tmp;
    proxy_temp_path {BENCH_DIR}/nginx-tmp;
    fastcgi_temp_path {BENCH_DIR}/nginx-tmp;
    uwsgi_temp_path {BENCH_DIR}/nginx-tmp;
    scgi_temp_path {BENCH_DIR}/nginx-tmp;
    server {{
        listen 127.0.0.1:{PORTS[server]} reuseport backlog=4096;
        root {CORPUS};
        location / {{ }}
    }}
}}
""")
    (BENCH_DIR / "nginx-tmp").mkdir(exist_ok=True)
    return conf


def h2o_conf():
    """h2o's static configuration: one thread, its file-descriptor cache (on by default in 2.2),
    no access log, long keep-alive."""
    conf = BENCH_DIR / "h2o.conf"
    conf.write_text(f"""user: root
num-threads: 1
max-connections: 16384
http1-request-timeout: 65
error-log: {BENCH_DIR}/h2o-error.log
listen:
  host: 127.0.0.1
  port: {PORTS['h2o']}
hosts:
  default:
    paths:
      /:
        file.dir: {CORPUS}
""")
    return conf


def lighttpd_conf():
    """lighttpd's static configuration: one process (max-worker 0), its stat cache and fd cache
    (on by default in 1.4.69), sendfile, no access log (mod_accesslog not loaded)."""
    conf = BENCH_DIR / "lighttpd.conf"
    conf.write_text(f"""server.document-root = "{CORPUS}"
server.bind = "127.0.0.1"
server.port = {PORTS['lighttpd']}
server.max-worker = 0
server.max-keep-alive-requests = 1000000
server.max-keep-alive-idle = 65
server.max-fds = 65536
server.max-connections = 16384
server.listen-backlog = 4096
server.errorlog = "{BENCH_DIR}/lighttpd-error.log"
mimetype.assign = ("" => "application/octet-stream")
""")
    return conf


def port_taken(port):
    import socket
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(server):
    # A leftover server on the same port would share it through SO_REUSEPORT and take part of
    # the load unmeasured: refuse to run instead.
    if port_taken(PORTS[server]):
        raise SystemExit(f"port {PORTS[server]} is already in use (a leftover {server}?); stop it first")
    if server.startswith("nginx"):
        nginx = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
        cmd = ["taskset", "-c", SERVER_CPU, nginx, "-c", str(nginx_conf(server)), "-e", str(BENCH_DIR / "nginx-error.log")]
    elif server == "h2o":
        cmd = ["taskset", "-c", SERVER_CPU, "h2o", "-c", str(h2o_conf())]
    elif server == "bare-hyper":
        cmd = ["taskset", "-c", SERVER_CPU, str(REPO / "target/release/examples/bare_hyper"),
               f"127.0.0.1:{PORTS[server]}", str(CORPUS / "1k.bin")]
    elif server == "lighttpd":
        cmd = ["taskset", "-c", SERVER_CPU, "lighttpd", "-D", "-f", str(lighttpd_conf())]
    else:
        # Like nginx's `access_log off`: the access log is off and the admin listener too; the
        # +log server writes JSON lines to a file instead.
        conf = BENCH_DIR / f"{server}.toml"
        log = (f"[access_log]\nenabled = true\nformat = \"json\"\npath = \"{BENCH_DIR}/sendfiled-access.log\"\n"
               if server.endswith("+log") else "[access_log]\nenabled = false\n")
        extra = os.environ.get("VERSUS_TOML" if server == VERSUS_NAME else "SENDFILED_TOML", "")
        conf.write_text(log + "[admin]\nlisten = \"off\"\n" + extra.replace("\\n", "\n") + "\n")
        binary = VERSUS if server == VERSUS_NAME else str(REPO / "target/release/sendfiled")
        cmd = ["taskset", "-c", SERVER_CPU, binary, "serve",
               "--root", str(CORPUS), "--listen", f"127.0.0.1:{PORTS[server]}", "--workers", "1",
               "--config", str(conf)]
    return launch(cmd, server, f"http://127.0.0.1:{PORTS[server]}/1k.bin", BENCH_DIR / f"{server}.log")


def launch(cmd, server, url, log_path):
    """Start `cmd` (stderr to `log_path`) and wait until `url` answers; exit naming the log if not."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    for _ in range(100):
        if subprocess.run(["curl", "-skf", "-o", "/dev/null", url]).returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{server} did not start; see {log_path}")


def pids(proc):
    """The server's processes: the one we started and its children (nginx's worker)."""
    out = [proc.pid]
    try:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        out += [int(k) for k in kids]
    except OSError:
        pass
    return out


def cpu_seconds(proc):
    total = 0
    for pid in pids(proc):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        except OSError:
            pass
    return total / CLK_TCK


def core_busy_seconds():
    """Busy time of the server's core from /proc/stat (everything but idle and iowait). The
    process's own utime+stime misses the network work the kernel does for it in softirq context
    when that lands outside the process (ksoftirqd, interrupts): on loopback, most of the TCP
    receive path. The core's busy time counts it, and anything else that ran there."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{SERVER_CPU} "):
            f = [int(x) for x in line.split()[1:]]
            return (sum(f[:8]) - f[3] - f[4]) / CLK_TCK
    return 0.0


def peak_rss_kib(proc):
    total = 0
    for pid in pids(proc):
        try:
            m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total


def wrk(server, conns, target, extra, duration):
    base = f"http://127.0.0.1:{PORTS[server]}"
    args = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s"] + extra
    if target.startswith("lua:"):
        args += ["-s", str(BENCH_DIR / target[4:]), base + "/"]
    else:
        args += [base + target]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if not m:
        raise SystemExit(f"wrk output not understood:\n{out}")
    reqs = int(m.group(1))
    secs = float(m.group(2)) * {"s": 1, "ms": 0.001, "m": 60}[m.group(3)]
    unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    mbytes = float(m.group(4)) * unit[m.group(5)] / 1e6
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(errors.group(1)) if errors else 0
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    return {"reqs": reqs, "secs": secs, "mb": mbytes, "non2xx": bad,
            "sockerr": sum(int(x) for x in sock.groups()) if sock else 0,
            "p99": f"{p99.group(1)}{p99.group(2)}" if p99 else "-"}


def servers_for(name):
    """The +log servers run the 1 KiB keep-alive cases only; bare hyper every 1 KiB case (it
    answers every path with the 1 KiB file)."""
    one_k = [c for c in CASES if c[0] == name and c[3] == "/1k.bin"]
    return [s for s in SERVERS
            if (not s.endswith("+log") or name in LOG_CASES) and (s != "bare-hyper" or one_k)]


def run_matrix(selected):
    """Every server runs at once on the same core (an idle one costs nothing); each case runs
    ROUNDS times per server, rotating which goes first, and the median round is reported, so
    that drift on a shared machine falls on all alike."""
    procs = {server: start(server) for server in SERVERS}
    results = {}
    try:
        for name, desc, conns, target, extra in selected:
            servers = servers_for(name)
            rounds = {server: [] for server in servers}
            for i in range(ROUNDS):
                order = servers[i % len(servers):] + servers[:i % len(servers)]
                if i % 2:
                    order.reverse()
                for server in order:
                    proc = procs[server]
                    wrk(server, conns, target, extra, 1)  # warm caches and connections
                    c0, k0 = cpu_seconds(proc), core_busy_seconds()
                    r = wrk(server, conns, target, extra + ["--latency"], DURATION)
                    r["cpu"] = cpu_seconds(proc) - c0
                    r["core"] = core_busy_seconds() - k0
                    rounds[server].append(r)
            for server in servers:
                key = "mb" if name in BYTE_CASES else "reqs"
                rs = sorted(rounds[server], key=lambda r: r[key] / max(r["cpu"], 1e-9))
                r = rs[len(rs) // 2]
                results[(server, name)] = r
                log(f"  {name:12} {server:13} {r['reqs'] / r['secs']:9.0f} req/s {r['mb'] / r['secs']:8.1f} MB/s "
                    f"cpu {r['cpu']:5.2f}s {r['reqs'] / max(r['cpu'], 1e-9):8.0f} req/cpu-s "
                    f"{r['mb'] / max(r['cpu'], 1e-9):8.1f} MB/cpu-s core {r['core']:5.2f}s p99 {r['p99']}"
                    + (f"  NON-2XX {r['non2xx']}" if r["non2xx"] else "")
                    + (f"  SOCKERR {r['sockerr']}" if r["sockerr"] else ""))
        # Peak RSS over the matrix both servers ran; the archive cases are reported apart.
        for server, proc in procs.items():
            results[(server, "rss")] = peak_rss_kib(proc)
        for name, desc, conns, target in (ZIP_CASES if RUN_ZIP else []):
            proc = procs["sendfiled"]
            # The archive's own size, to turn bytes received into bytes of input (wrk counts bytes
            # of requests still running at the end; completed requests would not).
            one = subprocess.run(["curl", "-s", f"http://127.0.0.1:{PORTS['sendfiled']}{target}"], capture_output=True).stdout
            results[("sendfiled", name + "-size")] = len(one)
            rs = []
            for _ in range(ROUNDS):
                wrk("sendfiled", conns, target, ["--timeout", "60s"], 1)
                c0 = cpu_seconds(proc)
                r = wrk("sendfiled", conns, target, ["--timeout", "60s", "--latency"], DURATION)
                r["cpu"] = cpu_seconds(proc) - c0
                rs.append(r)
            rs.sort(key=lambda r: r["reqs"] / max(r["cpu"], 1e-9))
            r = rs[len(rs) // 2]
            results[("sendfiled", name)] = r
            log(f"  {name:12} sendfiled {r['reqs'] / r['secs']:9.2f} req/s {r['mb'] / r['secs']:8.1f} MB/s "
                f"cpu {r['cpu']:5.2f}s {r['mb'] / max(r['cpu'], 1e-9):8.1f} MB/cpu-s (as sent)")
        results[("sendfiled", "rss-with-archives")] = peak_rss_kib(procs["sendfiled"])
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return results


def cold_isolation():
    """Latency of small hot requests on the server's only worker while a cold 256 MiB file
    streams, against the same with the file hot."""
    out = {}
    for server in PEERS + ["sendfiled"]:
        proc = start(server)
        try:
            for state in ("hot", "cold"):
                p99s = []
                for _ in range(3):
                    if state == "cold":
                        fd = os.open(CORPUS / "256m.bin", os.O_RDONLY)
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        os.close(fd)
                    dl = subprocess.Popen(["taskset", "-c", CLIENT_CPU, "curl", "-s", "-o", "/dev/null",
                                           f"http://127.0.0.1:{PORTS[server]}/256m.bin"])
                    r = wrk(server, 4, "/1k.bin", ["--latency"], 3)
                    dl.wait()
                    p99s.append(r["p99"])
                def ms(t):
                    return float(re.match(r"[\d.]+", t).group(0)) * {"us": 0.001, "ms": 1, "s": 1000}[re.sub(r"[\d.]+", "", t)]
                p99s.sort(key=ms)
                out[(server, state)] = p99s[1]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    return out


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    kernel = os.uname().release
    ngx = subprocess.run(["/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx", "-v"],
                         capture_output=True, text=True).stderr.strip()
    if "h2o" in PEERS:
        ngx += ", " + subprocess.run(["h2o", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    if "lighttpd" in PEERS:
        ngx += ", " + subprocess.run(["lighttpd", "-v"], capture_output=True, text=True).stdout.split(" - ")[0].strip()
    wrkv = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{os.cpu_count()} vCPU {cpu}, Linux {kernel}, {ngx}, {wrkv}"


def per_cpu(r, name):
    return (r["mb"] if name in BYTE_CASES else r["reqs"]) / max(r["cpu"], 1e-9)


def report(selected, results, cold):
    lines = [
        f"Machine: {machine()}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Every server pinned to CPU {SERVER_CPU} with one worker (sendfiled --workers 1; nginx worker_processes 1; h2o "
        f"num-threads 1; lighttpd one process), wrk -t1 pinned to CPU {CLIENT_CPU}, {ROUNDS} rounds of {DURATION} s per "
        "case and server, rotating which server goes first, each after a 1 s warm-up; the median round (by work per "
        "CPU-second) is shown. CPU = utime+stime of the server's processes and threads during the run. Access logs are "
        "off except on the +log rows. The ratio is sendfiled's work per CPU-second over the best peer's (logs off).",
        "",
        "| case | server | req/s | MB/s | req per CPU-s | MB per CPU-s | core busy per CPU-s | p99 | ratio (per CPU-s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for name, desc, *_ in selected:
        best = max(PEERS, key=lambda p: per_cpu(results[(p, name)], name))
        ratio = per_cpu(results[("sendfiled", name)], name) / max(per_cpu(results[(best, name)], name), 1e-9)
        ratios.append((desc, ratio, best))
        for server in servers_for(name):
            r = results[(server, name)]
            if server == "sendfiled":
                rt = f"**{ratio:.2f}×** vs {best}"
            elif server == "sendfiled+log":
                rt = f"{per_cpu(r, name) / max(per_cpu(results[('sendfiled', name)], name), 1e-9):.2f}× vs logs off"
            elif server == "bare-hyper":
                rt = f"sendfiled is {per_cpu(results[('sendfiled', name)], name) / max(per_cpu(r, name), 1e-9):.2f}× of it"
            elif server == "nginx+log":
                rt = f"{per_cpu(r, name) / max(per_cpu(results[('nginx', name)], name), 1e-9):.2f}× vs logs off"
            else:
                rt = "best peer" if server == best else ""
            lines.append(f"| {desc} | {server} | {r['reqs'] / r['secs']:.0f} | {r['mb'] / r['secs']:.1f} | "
                         f"{r['reqs'] / max(r['cpu'], 1e-9):.0f} | {r['mb'] / max(r['cpu'], 1e-9):.1f} | "
                         f"{r.get('core', 0) / max(r['cpu'], 1e-9):.2f} | {r['p99']} | {rt} |")
    if ("sendfiled", "zip-stored") in results:
        z = results[("sendfiled", "zip-stored")]
        zip_mb_per_cpu = z["mb"] / max(z["cpu"], 1e-9)
        lines += ["", "Archives (sendfiled only; the same worker and core):", "",
                  "| case | req/s | MB/s sent | MB per CPU-s | compared with |", "|---|---:|---:|---:|---|"]
        ref = ""
        if ("sendfiled", "256m-4") in results and ("sendfiled", "small-1000") in results:
            big, small = results[("sendfiled", "256m-4")], results[("sendfiled", "small-1000")]
            big_rate = big["mb"] / max(big["cpu"], 1e-9)
            small_rate = small["mb"] / max(small["cpu"], 1e-9)
            small_mb = sum((512 + (i * 7717) % (32 * 1024)) for i in range(1000)) / 1e6
            plain = (268.435456 + small_mb) / (268.435456 / big_rate + small_mb / small_rate)
            ref = f"the same files served plainly: {plain:.1f} MB per CPU-s, ratio **{zip_mb_per_cpu / plain:.2f}×**"
        lines.append(f"| {dict((c[0], c[1]) for c in ZIP_CASES)['zip-stored']} | {z['reqs'] / z['secs']:.2f} | "
                     f"{z['mb'] / z['secs']:.1f} | {zip_mb_per_cpu:.1f} | {ref} |")
    if ("sendfiled", "zip-deflate") in results:
        d = results[("sendfiled", "zip-deflate")]
        text_mb = d["mb"] * TEXT_BYTES / max(results[("sendfiled", "zip-deflate-size")], 1)
        lines.append(f"| {dict((c[0], c[1]) for c in ZIP_CASES)['zip-deflate']} | {d['reqs'] / d['secs']:.2f} | "
                     f"{d['mb'] / d['secs']:.1f} | {d['mb'] / max(d['cpu'], 1e-9):.1f} | "
                     f"**{text_mb / max(d['cpu'], 1e-9):.1f} MB of text deflated per CPU-s** |")
    rss = ", ".join(f"{server} {results[(server, 'rss')] / 1024:.1f} MiB" for server in SERVERS)
    lines += ["", f"Peak RSS over the matrix above (all of a server's processes): {rss}"
              + (f"; sendfiled after the archive cases too: {results[('sendfiled', 'rss-with-archives')] / 1024:.1f} MiB."
                 if ("sendfiled", "rss-with-archives") in results else ".")]
    if cold:
        lines += ["", "Cold-file isolation: p99 latency of 1 KiB requests (wrk -c4, 3 s, median of 3) on the server's "
                  "only worker while one client downloads the 256 MiB file, hot in the page cache vs. evicted first "
                  "(posix_fadvise DONTNEED):", "",
                  "| server | file hot | file cold |", "|---|---:|---:|"]
        for server in PEERS + ["sendfiled"]:
            lines.append(f"| {server} | {cold[(server, 'hot')]} | {cold[(server, 'cold')]} |")
    out_dir = REPO / "docs" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{REPORT}.md").write_text("\n".join(lines) + "\n")
    (out_dir / f"{REPORT}.svg").write_text(svg(ratios))
    print("\n".join(lines))


def svg(ratios):
    """A horizontal bar chart of sendfiled over the best peer per CPU-second, with the 1.0 line."""
    w, bar, gap, left, top = 760, 22, 8, 330, 40
    h = top + len(ratios) * (bar + gap) + 40
    scale = (w - left - 110) / max([2.0] + [r * 1.1 for _, r, _ in ratios])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="15">sendfiled / best peer, work per server CPU-second</text>']
    for i, (desc, r, best) in enumerate(ratios):
        y = top + i * (bar + gap)
        color = "#2e7d32" if r >= 1 else "#c62828"
        out.append(f'<text x="{left - 8}" y="{y + bar * 0.7}" text-anchor="end">{desc}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{r * scale:.1f}" height="{bar}" fill="{color}"/>')
        out.append(f'<text x="{left + r * scale + 6:.1f}" y="{y + bar * 0.7}">{r:.2f}× {best}</text>')
    x1 = left + scale
    out.append(f'<line x1="{x1}" y1="{top - 6}" x2="{x1}" y2="{h - 30}" stroke="#333" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1}" y="{h - 12}" text-anchor="middle">1.0 = the best peer in each case</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    make_corpus()
    wanted = os.environ.get("CASES")
    selected = [c for c in CASES if not wanted or c[0] in wanted.split(",")]
    selected += [c for c in SIZE_CASES if wanted and c[0] in wanted.split(",")]
    global RUN_ZIP
    RUN_ZIP = not wanted or "zip" in wanted
    results = run_matrix(selected)
    cold = cold_isolation() if not wanted and not VERSUS else {}
    report(selected, results, cold)


if __name__ == "__main__":
    main()
