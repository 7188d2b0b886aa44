#!/usr/bin/env bash
# sendfiled against nginx, h2o and lighttpd on the same corpus, one after the other, each server
# pinned to core 0 and wrk pinned to core 1. Reports req/s, MB/s, requests and MB per server CPU-second
# (utime+stime of all the server's threads and processes, from /proc) and peak RSS, and writes
# docs/benchmarks/latest.md and docs/benchmarks/latest.svg.
#
#   scripts/bench-vs-peers.sh                     # the whole matrix (about 7 minutes)
#   DURATION=2 ROUNDS=1 scripts/bench-vs-peers.sh # a quick look
#   CASES=1k-ka-64,ranges-64k scripts/bench-vs-peers.sh
#   LOGS=1 CASES=1k-ka-64 scripts/bench-vs-peers.sh  # with the access-log pair
#   PEERS=nginx scripts/bench-vs-peers.sh          # fewer peers
#
# Installs nginx, h2o, lighttpd, wrk and python3 when missing (as root, with apt-get, without
# starting the packaged services). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v h2o >/dev/null 2>&1 || need+=(h2o)
command -v lighttpd >/dev/null 2>&1 || [ -x /usr/sbin/lighttpd ] || need+=(lighttpd)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing ${need[*]}" >&2
    apt-get update -q >/dev/null
    # Debian would start the packaged servers on port 80; the benchmark runs its own, so the
    # packages are kept from starting anything (policy-rc.d), and no running service is touched.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
      trap 'rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "bench: please install: ${need[*]}" >&2
    exit 1
  fi
fi

cargo build --release --locked --bin sendfiled --example bare_hyper >&2
python3 scripts/bench/run.py "$@"
