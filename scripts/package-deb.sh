#!/usr/bin/env bash
# Build the Debian package with dpkg-deb: the binary, the hardened units, the default
# configuration and logrotate rule (conffiles), the man pages and completions generated from
# the binary (`sendfiled generate-manual`), the docs, and maintainer scripts that create the
# `sendfiled` user and enable the service the way debhelper does.
#
#   scripts/package-deb.sh                 # -> target/debian/sendfiled_<version>_<arch>.deb
#   scripts/package-deb.sh --out DIR
#
# SENDFILED_BIN packages a given binary instead of building target/release/sendfiled;
# DEB_MAINTAINER sets the Maintainer field. Needs
# dpkg-dev (dpkg-shlibdeps computes Depends from the binary's shared libraries).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/debian
while (($#)); do
  case "$1" in
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "package-deb.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

bin="${SENDFILED_BIN:-target/release/sendfiled}"
if [ -z "${SENDFILED_BIN:-}" ]; then
  cargo build --release --locked
fi
maintainer="${DEB_MAINTAINER:-sendfiled developers <dev@sendfiled.org>}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg="$work/pkg"

# Files, at their Debian paths.
install -D -m 0755 "$bin" "$pkg/usr/bin/sendfiled"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/bin/sendfiled"
for unit in sendfiled.service sendfiled.socket; do
  sed -e 's#/usr/local/bin/sendfiled#/usr/bin/sendfiled#g' \
      -e 's#/usr/local/share/doc/#/usr/share/doc/#g' \
      -e 's#(created by the install script)#(created when the package is installed)#' \
      "packaging/systemd/$unit" >"$work/$unit"
  install -D -m 0644 "$work/$unit" "$pkg/lib/systemd/system/$unit"
done
install -D -m 0644 packaging/sendfiled.toml "$pkg/etc/sendfiled/sendfiled.toml"
install -D -m 0644 packaging/logrotate/sendfiled "$pkg/etc/logrotate.d/sendfiled"

"$pkg/usr/bin/sendfiled" generate-manual --out "$work/manual"
for page in "$work"/manual/man8/*.8; do
  install -D -m 0644 "$page" "$pkg/usr/share/man/man8/$(basename "$page")"
done
install -D -m 0644 "$work/manual/man5/sendfiled.toml.5" "$pkg/usr/share/man/man5/sendfiled.toml.5"
gzip -9n "$pkg"/usr/share/man/man*/*
install -D -m 0644 "$work/manual/completions/sendfiled" "$pkg/usr/share/bash-completion/completions/sendfiled"
install -D -m 0644 "$work/manual/completions/_sendfiled" "$pkg/usr/share/zsh/vendor-completions/_sendfiled"
install -D -m 0644 "$work/manual/completions/sendfiled.fish" "$pkg/usr/share/fish/vendor_completions.d/sendfiled.fish"

# The docs in the repository's layout (README.md beside docs/), so their links resolve.
docdir="$pkg/usr/share/doc/sendfiled"
install -D -m 0644 README.md "$docdir/README.md"
find docs -type f \( -name '*.md' -o -name '*.svg' \) | while read -r doc; do
  install -D -m 0644 "$doc" "$docdir/$doc"
done
for extra in packaging/prometheus packaging/grafana; do
  find "$extra" -type f | while read -r f; do install -D -m 0644 "$f" "$docdir/examples/${f#packaging/}"; done
done
cat >"$docdir/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sendfiled

Files: *
Copyright: 2026 the sendfiled developers
License: MIT or Apache-2.0
 On Debian systems the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.
 The MIT license: Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software, to deal in the Software without restriction, subject to the condition that
 the copyright notice and this permission notice be included in all copies. THE SOFTWARE IS
 PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
COPYRIGHT
printf 'sendfiled (%s) unstable; urgency=medium\n\n  * Package built from the source tree by scripts/package-deb.sh.\n\n -- %s  %s\n' \
  "$version" "$maintainer" "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" \
  | gzip -9n >"$docdir/changelog.gz"

# Depends, from the binary's shared libraries.
mkdir -p "$work/shlibs/debian"
printf 'Source: sendfiled\n\nPackage: sendfiled\nArchitecture: any\n' >"$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e"$pkg/usr/bin/sendfiled" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

mkdir -p "$pkg/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
printf '/etc/sendfiled/sendfiled.toml\n/etc/logrotate.d/sendfiled\n' >"$pkg/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: sendfiled
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: ${depends:-libc6}, passwd
Section: httpd
Priority: optional
Description: static-file origin server for CDNs, on sendfile(2)
 sendfiled serves a directory tree over HTTP/1.1 as a CDN origin: complete
 RFC 9110 file semantics (conditional requests, ranges, multipart), file bodies
 sent by sendfile(2), streaming ZIP downloads of folders, signed links,
 bandwidth and per-client limits, RFC 9530 digests, and a hardened systemd
 unit with socket activation, reload and Prometheus metrics.
CONTROL
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | sort | xargs md5sum) >"$pkg/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/sendfiled_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$pkg" "$deb" >/dev/null
echo "$deb"
