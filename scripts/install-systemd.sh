#!/usr/bin/env bash
# Install sendfiled as a systemd service: the binary, the units, a default configuration, a
# logrotate rule, the docs, and a `sendfiled` system user. Idempotent; an existing
# /etc/sendfiled/sendfiled.toml is kept.
#
#   sudo scripts/install-systemd.sh            # install, then: systemctl enable --now sendfiled
#   sudo scripts/install-systemd.sh --socket   # also enable socket activation (port 80)
#   scripts/install-systemd.sh --dest DIR      # stage into DIR (no user, no systemctl): packaging
set -euo pipefail
cd "$(dirname "$0")/.."

dest=""
socket=no
while (($#)); do
  case "$1" in
    --dest) dest="${2:?--dest needs a directory}"; shift 2 ;;
    --socket) socket=yes; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install-systemd.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$dest" ] && [ "$(id -u)" != 0 ]; then
  echo "install-systemd.sh: run as root (or stage with --dest DIR)" >&2
  exit 1
fi

bin=target/release/sendfiled
if [ ! -x "$bin" ] || [ -n "$(find src Cargo.toml -newer "$bin" -print -quit)" ]; then
  cargo build --release --locked
fi

install -D -m 0755 "$bin" "$dest/usr/local/bin/sendfiled"
install -D -m 0644 packaging/systemd/sendfiled.service "$dest/etc/systemd/system/sendfiled.service"
install -D -m 0644 packaging/systemd/sendfiled.socket "$dest/etc/systemd/system/sendfiled.socket"
install -D -m 0644 packaging/logrotate/sendfiled "$dest/etc/logrotate.d/sendfiled"
for doc in README.md docs/*.md; do
  install -D -m 0644 "$doc" "$dest/usr/local/share/doc/sendfiled/$(basename "$doc")"
done
if [ ! -e "$dest/etc/sendfiled/sendfiled.toml" ]; then
  install -D -m 0644 packaging/sendfiled.toml "$dest/etc/sendfiled/sendfiled.toml"
fi
install -d -m 0750 "$dest/etc/sendfiled/keys"
install -d -m 0755 "$dest/srv/www"

if [ -n "$dest" ]; then
  echo "staged into $dest"
  exit 0
fi

if ! id sendfiled >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sendfiled
fi
chgrp sendfiled /etc/sendfiled/keys
/usr/local/bin/sendfiled check-config --config /etc/sendfiled/sendfiled.toml >/dev/null

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$socket" = yes ]; then
    systemctl enable sendfiled.socket
  fi
  echo "installed; start with: systemctl enable --now sendfiled"
else
  echo "installed; systemd is not running here, so nothing was enabled"
fi
