#!/usr/bin/env bash
# Soak test: a mixed load (small files, ranges, big files, ZIPs, bad requests, slow readers)
# against a release build for a bounded time, sampling the server's RSS and descriptor count.
# Writes docs/soak/latest.svg and docs/soak/latest.md, and fails on drift.
#
#   scripts/soak.sh                 # 10 minutes
#   DURATION=120 scripts/soak.sh    # a shorter run
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null 2>&1 || { echo "soak: please install python3" >&2; exit 1; }
cargo build --release --locked
exec python3 scripts/soak/run.py "$@"
