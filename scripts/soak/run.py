#!/usr/bin/env python3
"""Soak sendfiled: mixed load for DURATION seconds (default 600), sampling RSS and open
descriptors every 2 s; writes docs/soak/latest.{svg,md}; exits 1 on drift.

Drift means: memory still growing in the second half of the run (the mean RSS of the last
quarter above the second quarter's by more than 10% + 4 MiB), or, once the load stops and the
connections close, more descriptors than after the warm-up.
"""
import json, os, random, signal, socket, subprocess, sys, threading, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DURATION = int(os.environ.get("DURATION", "600"))
WORK = Path(os.environ.get("SOAK_DIR", "/tmp/sendfiled-soak"))
OUT = REPO / "docs" / "soak"


def corpus():
    root = WORK / "root"
    if (root / ".done").exists():
        return root
    rng = random.Random(7)
    (root / "small").mkdir(parents=True, exist_ok=True)
    for i in range(300):
        (root / "small" / f"f{i:03}.bin").write_bytes(rng.randbytes(rng.randint(512, 32768)))
    (root / "big.bin").write_bytes(rng.randbytes(64 << 20))
    (root / "tree" / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(60):
        words = " ".join(rng.choice(["origin", "sendfile", "range", "zip", "cache", "edge"]) for _ in range(3000))
        (root / "tree" / ("sub" if i % 2 else "") / f"doc{i}.txt").write_text(words)
    (root / ".done").write_text("")
    return root


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root):
    port, admin = free_port(), free_port()
    conf = WORK / "soak.toml"
    conf.write_text(
        f'[access_log]\npath = "{WORK}/access.log"\n[admin]\nlisten = "127.0.0.1:{admin}"\n'
        '[limits]\nsend_timeout = "10s"\n'
    )
    proc = subprocess.Popen(
        [str(REPO / "target/release/sendfiled"), "serve", "--root", str(root), "--listen",
         f"127.0.0.1:{port}", "--workers", "2", "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=open(WORK / "server.log", "w"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port, admin
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start; see " + str(WORK / "server.log"))


def request(port, raw, read_all=True, timeout=30):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(raw)
        n = 0
        while read_all:
            chunk = c.recv(1 << 20)
            if not chunk:
                break
            n += len(chunk)
        return n


def get(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n{extra}\r\n".encode()


class Load:
    def __init__(self, port, until):
        self.port, self.until = port, until
        self.counts = {}
        self.errors = 0
        self.lock = threading.Lock()

    def count(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def loop(self, kind, fn):
        rng = random.Random(hash(kind))
        while time.time() < self.until:
            try:
                fn(rng)
                self.count(kind)
            except OSError:
                with self.lock:
                    self.errors += 1

    def small(self, rng):
        # One keep-alive connection, several requests, some of them ranges.
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as c:
            f = c.makefile("rb")
            for _ in range(20):
                path = f"/small/f{rng.randrange(300):03}.bin"
                rng_hdr = f"Range: bytes={rng.randrange(400)}-{rng.randrange(400, 2000)}\r\n" if rng.random() < 0.3 else ""
                c.sendall(f"GET {path} HTTP/1.1\r\nHost: soak\r\n{rng_hdr}\r\n".encode())
                length = 0
                while True:
                    line = f.readline()
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    if line in (b"\r\n", b""):
                        break
                f.read(length)

    def big(self, rng):
        request(self.port, get("/big.bin"))

    def zips(self, rng):
        mode = rng.choice(["store", "deflate"])
        request(self.port, get(f"/tree/?download=zip&compress={mode}"))

    def bad(self, rng):
        raw = rng.choice([
            b"GET /../../etc/passwd HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n",
            b"GET /small/nope HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n",
            b"GET /a HTTP/1.1\nHost: soak\n\n",
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
            b"GET /big.bin HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nRange: bytes=99999999999-\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: soak\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: soak\r\n\r\n",
        ])
        request(self.port, raw, timeout=5)

    def slow(self, rng):
        # Reads 64 KiB a second for a few seconds, then leaves.
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            c.sendall(get("/big.bin"))
            for _ in range(rng.randint(2, 6)):
                c.recv(65536)
                time.sleep(1)


def sample(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss / 1024, fds


def svg(samples, load_end):
    w, h, pad = 900, 360, 50
    t_max = max(s[0] for s in samples) or 1
    rss_max = max(s[1] for s in samples) * 1.2 or 1
    fd_max = max(s[2] for s in samples) * 1.2 or 1
    def pts(idx, top):
        return " ".join(f"{pad + s[0] / t_max * (w - 2 * pad):.1f},{h - pad - s[idx] / top * (h - 2 * pad):.1f}" for s in samples)
    x_end = pad + load_end / t_max * (w - 2 * pad)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="white"/>
<text x="{pad}" y="20">sendfiled soak: RSS (MiB, blue, left scale to {rss_max:.0f}) and open descriptors (orange, right scale to {fd_max:.0f}) over {t_max:.0f} s</text>
<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>
<line x1="{x_end:.1f}" y1="{pad}" x2="{x_end:.1f}" y2="{h - pad}" stroke="gray" stroke-dasharray="4"/>
<text x="{x_end + 4:.1f}" y="{pad + 12}" fill="gray">load stops</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{pts(1, rss_max)}"/>
<polyline fill="none" stroke="#ff7f0e" stroke-width="2" points="{pts(2, fd_max)}"/>
<text x="{pad}" y="{h - pad + 20}">0 s</text><text x="{w - pad - 30}" y="{h - pad + 20}">{t_max:.0f} s</text>
</svg>
"""


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    root = corpus()
    proc, port, admin = start(root)
    t0 = time.time()
    until = t0 + DURATION
    load = Load(port, until)
    workers = [("small", load.small)] * 6 + [("big", load.big)] * 2 + [("zip", load.zips), ("bad", load.bad), ("bad", load.bad), ("slow", load.slow), ("slow", load.slow)]
    threads = [threading.Thread(target=load.loop, args=w, daemon=True) for w in workers]
    for t in threads:
        t.start()
    samples = []
    warm_fds = None
    while time.time() < until:
        time.sleep(2)
        samples.append((time.time() - t0, *sample(proc.pid)))
        print(f"\r{samples[-1][0]:6.0f}s  RSS {samples[-1][1]:6.1f} MiB  fds {samples[-1][2]:4}  {sum(load.counts.values())} exchanges", end="", flush=True)
    for t in threads:
        t.join(timeout=40)
    load_end = time.time() - t0
    # Let the connections close (send_timeout is 10 s here), then sample the idle server.
    for _ in range(8):
        time.sleep(2)
        samples.append((time.time() - t0, *sample(proc.pid)))
    print()
    metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{admin}/metrics"], capture_output=True, text=True).stdout
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)

    during = [s for s in samples if s[0] <= load_end]
    n = len(during)
    q2 = [s[1] for s in during[n // 4: n // 2]] or [during[0][1]]
    q4 = [s[1] for s in during[3 * n // 4:]] or [during[-1][1]]
    warm = during[min(n - 1, max(1, n // 10))]
    idle_fds = samples[-1][2]
    rss_growth = sum(q4) / len(q4) - sum(q2) / len(q2)
    limit = 0.10 * sum(q2) / len(q2) + 4
    problems = []
    if rss_growth > limit:
        problems.append(f"RSS grew {rss_growth:.1f} MiB between the second and last quarters (limit {limit:.1f})")
    # Connections idle at the end; the cache may hold at most its warm-up descriptors.
    if idle_fds > warm[2]:
        problems.append(f"{idle_fds} descriptors when idle, {warm[2]} after the warm-up")
    if code != 0:
        problems.append(f"exit status {code} after SIGTERM")

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latest.svg").write_text(svg(samples, load_end))
    uname = os.uname()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    total_requests = sum(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith("sendfiled_requests_total{"))
    (OUT / "latest.md").write_text(
        f"Soak run: `DURATION={DURATION} scripts/soak.sh`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} vCPU {cpu}, Linux {uname.release}; 2 workers, access log to a file, admin on.\n\n"
        f"| | value |\n|---|---:|\n"
        f"| load threads | 6 small-file keep-alive (30% ranges), 2 big-file, 1 ZIP (store/deflate), 2 bad-request, 2 slow-reader |\n"
        f"| exchanges by the load | {json.dumps(load.counts)} (client-side errors: {load.errors}) |\n"
        f"| requests counted by the server | {total_requests:.0f} |\n"
        f"| RSS after warm-up / second quarter / last quarter / idle | {warm[1]:.1f} / {sum(q2)/len(q2):.1f} / {sum(q4)/len(q4):.1f} / {samples[-1][1]:.1f} MiB |\n"
        f"| descriptors after warm-up / idle at the end | {warm[2]} / {idle_fds} |\n"
        f"| verdict | {'**drift**: ' + '; '.join(problems) if problems else 'no drift'} |\n\n"
        "![RSS and descriptors over time](latest.svg)\n")
    print((OUT / "latest.md").read_text())
    if problems:
        print("soak: FAILED: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
