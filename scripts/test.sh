#!/usr/bin/env bash
# Run the whole test suite: unit tests, integration tests over 127.0.0.1, doc tests.
# The integration tests drive real clients (curl) and archive readers (unzip, zip, 7z, bsdtar,
# Python's zipfile, Java's jar), systemd-socket-activate and Python's prometheus_client, so this installs them first when they are
# missing and we are root (a fresh Debian machine or CI); otherwise it says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The HTTPS tests make their certificates and drive handshakes with openssl, and scan the
# listener with testssl.sh.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || missing+=(testssl.sh)
# This machine's kernel may have no TLS ULP: the kernel-TLS test then also runs in a guest that
# boots Debian's kernel (scripts/ktls-vm.sh).
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
# (a static busybox: the guest's initramfs has no libraries)
ldd "$(command -v busybox || echo /nonexistent)" 2>&1 | grep -q "not a dynamic" || missing+=(busybox-static)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
command -v modinfo >/dev/null 2>&1 || missing+=(kmod)
ls /boot/vmlinuz-* >/dev/null 2>&1 || missing+=(linux-image-amd64)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The archive tests check every ZIP with these readers.
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
command -v zip >/dev/null 2>&1 || missing+=(zip)
command -v 7z >/dev/null 2>&1 || missing+=(p7zip-full)
command -v bsdtar >/dev/null 2>&1 || missing+=(libarchive-tools)
command -v jar >/dev/null 2>&1 || missing+=(default-jdk-headless)
# The precompressed-variant test makes a variant with the real brotli tool.
command -v brotli >/dev/null 2>&1 || missing+=(brotli)
# Operations tests: socket activation, fd limits, and a real Prometheus text parser.
command -v systemd-socket-activate >/dev/null 2>&1 || missing+=(systemd)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
/usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 || missing+=(python3-prometheus-client)
# The listing test renders a listing in headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The fleet tests put nginx and HAProxy in front of two nodes as the load balancer.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
# The packaging tests build the .deb (dpkg-shlibdeps), lint it, render the man pages and check
# the alert rules with promtool.
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
command -v man >/dev/null 2>&1 || missing+=(man-db)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]}" >&2
    apt-get update -q >/dev/null
    # Debian starts a packaged service (nginx on port 80) when it is installed. The tests run
    # their own nginx on their own ports, and must never stop a service they did not start, so
    # the packages are kept from starting theirs (policy-rc.d answering 101: "not allowed").
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
  else
    echo "test.sh: please install: ${missing[*]}" >&2
    exit 1
  fi
fi

cargo test --locked --features fault-injection "$@"

# The kernel-TLS test skips where the kernel has no TLS ULP; run it where one is (whole runs only).
if [ $# -eq 0 ] && ! grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null; then
  scripts/ktls-vm.sh
fi
