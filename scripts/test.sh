#!/usr/bin/env bash
# Run the whole test suite: unit tests, integration tests over 127.0.0.1, doc tests.
# The integration tests drive real clients (curl) and archive readers (unzip, zip, 7z, bsdtar,
# Python's zipfile, Java's jar), systemd-socket-activate and Python's prometheus_client, so this installs them first when they are
# missing and we are root (a fresh Debian machine or CI); otherwise it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The archive tests check every ZIP with these readers.
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
command -v zip >/dev/null 2>&1 || missing+=(zip)
command -v 7z >/dev/null 2>&1 || missing+=(p7zip-full)
command -v bsdtar >/dev/null 2>&1 || missing+=(libarchive-tools)
command -v jar >/dev/null 2>&1 || missing+=(default-jdk-headless)
# Operations tests: socket activation, fd limits, and a real Prometheus text parser.
command -v systemd-socket-activate >/dev/null 2>&1 || missing+=(systemd)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || missing+=(python3-prometheus-client)
# The fleet test puts nginx in front of two nodes as the load balancer.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]}" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the packaged nginx on port 80; the tests run their own.
    service nginx stop >/dev/null 2>&1 || true
  else
    echo "test.sh: please install: ${missing[*]}" >&2
    exit 1
  fi
fi

cargo test --locked --features fault-injection "$@"
