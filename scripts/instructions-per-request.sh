#!/usr/bin/env bash
# Userspace instructions per keep-alive GET of one corpus file (FILE, default 1k.bin), counted by
# callgrind: deterministic on a shared machine, where wrk's per-CPU-second figures drift by ±15%
# between minutes. Runs each
# binary under valgrind twice (1000 and 6000 requests on one connection, one worker, access log
# off) and reports (Ir(6000) - Ir(1000)) / 5000, so start-up and shutdown cancel out.
#
#   scripts/instructions-per-request.sh target/release/sendfiled /tmp/old/target/release/sendfiled
#   FILE=16k.bin scripts/instructions-per-request.sh target/release/sendfiled
#   EXTRA_TOML='[digests]\nmode = "off"' scripts/instructions-per-request.sh target/release/sendfiled
#
# Needs valgrind and python3, and the corpus of scripts/bench-vs-peers.sh (run it once first).
set -euo pipefail
corpus="${BENCH_DIR:-/tmp/sendfiled-bench}/corpus"
file=${FILE:-1k.bin}
[ -f "$corpus/$file" ] || { echo "no corpus at $corpus: run scripts/bench-vs-peers.sh once" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[access_log]\nenabled = false\n[admin]\nlisten = "off"\n%b\n' "${EXTRA_TOML:-}" > "$work/quiet.toml"
cat > "$work/client.py" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
buf = b""
path, size = sys.argv[3].encode(), int(sys.argv[4])
for _ in range(int(sys.argv[2])):
    s.sendall(b"GET /" + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0 and len(buf) >= end + 4 + size:
            buf = buf[end + 4 + size:]
            break
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
PY
port=18700
count() { # binary requests -> total Ir
  port=$((port + 1))
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$1" serve --root "$corpus" \
    --listen "127.0.0.1:$port" --workers 1 --config "$work/quiet.toml" >"$work/log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/1k.bin" && break; sleep 0.3; done
  python3 "$work/client.py" "$port" "$2" "$file" "$(stat -c %s "$corpus/$file")"
  kill -TERM "$pid"; wait "$pid" || true
  sed -n 's/^summary: //p' "$work/cg.out"
}
for bin in "$@"; do
  small=$(count "$bin" 1000)
  big=$(count "$bin" 6000)
  echo "$bin: $(( (big - small) / 5000 )) instructions per request"
done
