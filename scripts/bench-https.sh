#!/usr/bin/env bash
# sendfiled against nginx over HTTPS (TLS 1.3, AES-128-GCM, ECDSA P-256, kernel TLS off), pinned
# like the plain matrix; writes docs/benchmarks/https.md.
#
#   scripts/bench-https.sh                          # every case (about 3 minutes)
#   DURATION=2 ROUNDS=1 CASES=tls-1k-ka-64 scripts/bench-https.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx wrk openssl taskset curl python3; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "bench-https: please install $tool (scripts/bench-vs-peers.sh installs the peers and wrk)" >&2
    exit 1
  }
done
cargo build --release --locked --bin sendfiled >&2
python3 scripts/bench/https.py "$@"
