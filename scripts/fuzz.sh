#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for a bounded time (SECONDS_PER_TARGET, default 60).
# Needs a nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz, installed if missing.
# A crash leaves its input in fuzz/artifacts/TARGET/; turn it into a regression test in the unit
# tests of the module it broke, then fix the bug.
#
#   scripts/fuzz.sh                 # all targets, 60 s each
#   SECONDS_PER_TARGET=600 scripts/fuzz.sh range path
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${SECONDS_PER_TARGET:-60}"
rustup toolchain list | grep -q nightly || { echo "fuzz: needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=("$@")
((${#targets[@]})) || targets=(path range conditional signature zip_roundtrip stream_guard host)
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${secs}s"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=4096
done
