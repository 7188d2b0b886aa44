#!/usr/bin/env bash
# Hashing throughput of `sendfiled digest` against sha256sum on the same tree, from the page
# cache: one core, then all cores. The tree (BENCH_DIR, default /tmp/sendfiled-digest-bench):
# one 1 GiB file and 20 000 files of 1 to 100 KiB (about 1 GiB), so both the large-file and
# the many-small-files costs show. Reports MiB/s as the median of ROUNDS (default 3).
#
#   scripts/bench-digest.sh
#   ROUNDS=5 scripts/bench-digest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-/tmp/sendfiled-digest-bench}
ROUNDS=${ROUNDS:-3}
CORES=$(nproc)
cargo build --release --quiet
bin=$PWD/target/release/sendfiled
tree=$BENCH_DIR/tree
if [ ! -f "$tree/.complete" ]; then
  rm -rf "$tree" && mkdir -p "$tree/big" "$tree/small"
  head -c 1G /dev/urandom >"$tree/big/one.bin"
  python3 - "$tree/small" <<'PY'
import os, random, sys
random.seed(1)
root = sys.argv[1]
for i in range(20000):
    d = os.path.join(root, f"d{i % 200}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(random.randint(1024, 100 * 1024)))
PY
  touch "$tree/.complete"
fi
bytes=$(du -sb --exclude=.complete "$tree" | cut -f1)
files=$(find "$tree" -type f ! -name .complete | wc -l)
cat "$tree"/big/one.bin >/dev/null
find "$tree" -type f -print0 | xargs -0 cat >/dev/null

# Median MiB/s of a command over ROUNDS runs.
measure() {
  local runs=()
  for _ in $(seq "$ROUNDS"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    runs+=("$(python3 -c "print(round($bytes / 1048576 / ($t1 - $t0)))")")
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p"
}

sha1() { find "$tree" -type f ! -name .complete -print0 | xargs -0 sha256sum; }
shaN() { find "$tree" -type f ! -name .complete -print0 | xargs -0 -n 256 -P "$CORES" sha256sum; }
echo "tree: $files files, $((bytes / 1048576)) MiB, page cache warm; $(nproc) cores; median of $ROUNDS"
echo "| tool | 1 core (MiB/s) | $CORES cores (MiB/s) |"
echo "|---|---|---|"
echo "| sendfiled digest (write) | $(measure "$bin" digest --threads 1 "$tree") | $(measure "$bin" digest --threads "$CORES" "$tree") |"
echo "| sendfiled digest --check | $(measure "$bin" digest --check --threads 1 "$tree") | $(measure "$bin" digest --check --threads "$CORES" "$tree") |"
echo "| sha256sum | $(measure sha1) | $(measure shaN) |"

# Small-file latency while the server hashes the 1 GiB file: the server and its digest thread
# on core 0, wrk on core 1; a 1 KiB file at 64 connections for 4 s, once with the digest
# thread busy (a range request queues the big file just before) and once without digests.
command -v wrk >/dev/null || { echo "(wrk not installed: latency part skipped)"; exit 0; }
head -c 1024 /dev/urandom >"$tree/1k.bin"
latency() { # $1: extra config
  local conf=$BENCH_DIR/latency.toml port=18391
  printf '[access_log]\nenabled = false\n[admin]\nlisten = "off"\n%b\n' "$1" >"$conf"
  taskset -c 0 "$bin" serve --root "$tree" --listen 127.0.0.1:$port --workers 1 --config "$conf" 2>/dev/null &
  local pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:$port/1k.bin && break; sleep 0.1; done
  curl -sf -o /dev/null -r 0-0 http://127.0.0.1:$port/big/one.bin
  taskset -c 1 wrk -t1 -c64 -d4s --latency http://127.0.0.1:$port/1k.bin | awk '/ 99%/ {print $2}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
echo
echo "1 KiB p99 at 64 connections: digests off $(latency '[digests]\nmode = "off"'), while hashing 1 GiB $(latency '')"
