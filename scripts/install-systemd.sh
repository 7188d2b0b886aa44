#!/usr/bin/env bash
# Install sendfiled as a systemd service: the binary, the units, a default configuration, a
# logrotate rule, the docs, and a `sendfiled` system user. Idempotent; an existing
# /etc/sendfiled/sendfiled.toml is kept.
#
#   sudo scripts/install-systemd.sh            # install, then: systemctl enable --now sendfiled
#   sudo scripts/install-systemd.sh --socket   # also enable socket activation (port 80)
#   scripts/install-systemd.sh --dest DIR      # stage into DIR (no user, no systemctl): packaging
#   scripts/install-systemd.sh --dest DIR --verify  # and check the staged units with systemd-analyze
#
# SENDFILED_BIN names a binary to install instead of building target/release/sendfiled.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=""
socket=no
verify=no
while (($#)); do
  case "$1" in
    --dest) dest="${2:?--dest needs a directory}"; shift 2 ;;
    --socket) socket=yes; shift ;;
    --verify) verify=yes; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install-systemd.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -n "$dest" ]; then
  mkdir -p "$dest"
  dest="$(cd "$dest" && pwd)" # absolute, for the paths --verify rewrites
fi
if [ -z "$dest" ] && [ "$(id -u)" != 0 ]; then
  echo "install-systemd.sh: run as root (or stage with --dest DIR)" >&2
  exit 1
fi

bin="${SENDFILED_BIN:-target/release/sendfiled}"
if [ -z "${SENDFILED_BIN:-}" ] && { [ ! -x "$bin" ] || [ -n "$(find src Cargo.toml -newer "$bin" -print -quit)" ]; }; then
  cargo build --release --locked
fi

install -D -m 0755 "$bin" "$dest/usr/local/bin/sendfiled"
install -D -m 0644 packaging/systemd/sendfiled.service "$dest/etc/systemd/system/sendfiled.service"
install -D -m 0644 packaging/systemd/sendfiled.socket "$dest/etc/systemd/system/sendfiled.socket"
install -D -m 0644 packaging/logrotate/sendfiled "$dest/etc/logrotate.d/sendfiled"
# Man pages (the units name man:sendfiled(8)) and shell completions, from the binary itself.
manual="$(mktemp -d)"
"$dest/usr/local/bin/sendfiled" generate-manual --out "$manual"
for page in "$manual"/man8/*.8 "$manual"/man5/*.5; do
  section="${page##*.}"
  install -D -m 0644 "$page" "$dest/usr/local/share/man/man$section/$(basename "$page")"
done
install -D -m 0644 "$manual/completions/sendfiled" "$dest/usr/local/share/bash-completion/completions/sendfiled"
rm -rf "$manual"
# The docs keep the repository's layout (README.md beside docs/), so that their links work
# where they are installed.
docdir="$dest/usr/local/share/doc/sendfiled"
install -D -m 0644 README.md "$docdir/README.md"
find docs -type f \( -name '*.md' -o -name '*.svg' \) | while read -r doc; do
  install -D -m 0644 "$doc" "$docdir/$doc"
done
if [ ! -e "$dest/etc/sendfiled/sendfiled.toml" ]; then
  install -D -m 0644 packaging/sendfiled.toml "$dest/etc/sendfiled/sendfiled.toml"
fi
install -d -m 0750 "$dest/etc/sendfiled/keys"
install -d -m 0755 "$dest/srv/www"

if [ -n "$dest" ]; then
  echo "staged into $dest"
  if [ "$verify" = yes ]; then
    # The staged units name their installed paths (/usr/local/bin/sendfiled, /etc/sendfiled):
    # verify copies that point into the staged tree instead, so the staged files themselves are
    # what is checked (systemd-analyze --root needs a whole system under DIR).
    check="$(mktemp -d)"
    trap 'rm -rf "$check"' EXIT
    for unit in sendfiled.service sendfiled.socket; do
      sed -e "s#/usr/local/bin/sendfiled#$dest/usr/local/bin/sendfiled#g" \
          -e "s#/etc/sendfiled/#$dest/etc/sendfiled/#g" \
          "$dest/etc/systemd/system/$unit" >"$check/$unit"
    done
    # Warnings about other units of this machine are not ours; any about ours fail the check.
    report=$(MANPATH="$dest/usr/local/share/man" SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$check/sendfiled.service" "$check/sendfiled.socket" 2>&1) || {
      echo "$report" >&2
      exit 1
    }
    if echo "$report" | grep -q sendfiled; then
      echo "$report" >&2
      exit 1
    fi
    root=$(mktemp -d)
    sed "s#/srv/www#$root#" "$dest/etc/sendfiled/sendfiled.toml" >"$check/sendfiled.toml"
    "$dest/usr/local/bin/sendfiled" check-config --config "$check/sendfiled.toml" >/dev/null
    rmdir "$root"
    echo "staged units and configuration verify"
  fi
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
