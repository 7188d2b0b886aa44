#!/usr/bin/env bash
# Run the kernel-TLS test (tests/it/tls.rs, kernel_tls_sends_bodies_by_sendfile_where_the_kernel_has_it)
# in a KVM guest whose kernel has the TLS ULP, for machines whose own kernel has none (the test
# skips there). The guest boots Debian's kernel (linux-image-amd64, whose tls.ko is a module),
# mounts this machine's root read-only over 9p, chroots into it and runs the test binary, so the
# guest has exactly this machine's curl, openssl and python3.
#
#   scripts/ktls-vm.sh            # installs qemu-system-x86 and the kernel as root; ~3 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# TCG (emulation) by default: it runs anywhere, including inside a VM whose nested KVM does not
# boot a guest (seen on this project's machines); ACCEL=kvm is faster where KVM works.
accel=${ACCEL:-tcg}
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
# A static busybox: the guest's initramfs has no libraries.
ldd "$(command -v busybox || echo /nonexistent)" 2>&1 | grep -q "not a dynamic" || need+=(busybox-static)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v modinfo >/dev/null 2>&1 || need+=(kmod)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-amd64)
if ((${#need[@]})); then
  [ "$(id -u)" = 0 ] || { echo "ktls-vm: SKIPPED: please install ${need[*]}" >&2; exit 0; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
kernel=$(ls /boot/vmlinuz-* | sort -V | tail -1)
kver=${kernel#/boot/vmlinuz-}

test_bin=$(cargo test --features fault-injection --test it --no-run 2>&1 | sed -n 's/.*Executable tests\/it\/main.rs (\(.*\))/\1/p' | tail -1)
[ -n "$test_bin" ] || { echo "ktls-vm: could not build the test binary" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/root/{bin,dev,proc,sys,host,modules}
cp "$(command -v busybox)" "$work/root/bin/busybox"
# The kernel opens /dev/console for init before anything mounts devtmpfs.
mknod "$work/root/dev/console" c 5 1
# The guest needs virtio-pci and 9p over virtio to mount this machine's root. Their modules are
# loaded in dependency order, read from each module's own list (the order differs between kernel
# versions: Debian 6.1's virtio needs virtio_ring first); built-in ones are skipped.
modules=()
add_module() {
  local m=$1 d
  for d in "${modules[@]}"; do [ "$d" = "$m" ] && return 0; done
  for d in $(modinfo -F depends -k "$kver" "$m" | tr , ' '); do add_module "$d"; done
  local f
  f=$(modinfo -n -k "$kver" "$m") || { echo "ktls-vm: module $m not found for $kver" >&2; exit 1; }
  case "$f" in
    *.ko) cp "$f" "$work/root/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" >"$work/root/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$work/root/modules/$m.ko" ;;
    "(builtin)") return 0 ;;
    *) echo "ktls-vm: module $m for $kver is $f, which this script cannot load" >&2; exit 1 ;;
  esac
  modules+=("$m")
}
for m in virtio_pci 9pnet_virtio 9p; do add_module "$m"; done
echo "ktls-vm: guest modules in load order: ${modules[*]}"
tls_ko=$(modinfo -n -k "$kver" tls)
cat >"$work/root/init" <<INIT
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in ${modules[*]}; do /bin/busybox insmod /modules/\$m.ko || echo "ktls-vm: insmod \$m failed"; done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576,ro host /host
/bin/busybox mount -t proc proc /host/proc
/bin/busybox mount -t sysfs sys /host/sys
/bin/busybox mount -t devtmpfs dev /host/dev
# Scratch space on /run, not /tmp: the repository (a CI clone, say) may live under /tmp.
/bin/busybox mount -t tmpfs run /host/run
/bin/busybox ip link set lo up
# The kernel loads modules (tls, the AEADs kTLS asks the crypto API for) with the modprobe of
# its own root, the initramfs: give it one that runs this machine's modprobe.
echo /modprobe-host >/proc/sys/kernel/modprobe
/bin/busybox insmod /host$tls_ko
echo "ktls-vm: kernel \$(/bin/busybox uname -r), tcp_available_ulp: \$(/bin/busybox cat /proc/sys/net/ipv4/tcp_available_ulp)"
/bin/busybox cp /cmd.sh /host/run/ktls-vm-cmd.sh
/bin/busybox chroot /host /bin/sh -c 'cd $repo && HOME=/run TMPDIR=/run sh /run/ktls-vm-cmd.sh; echo "ktls-vm: exit \$?"'
/bin/busybox poweroff -f
INIT
chmod +x "$work/root/init"
printf '#!/bin/busybox sh\nexec /bin/busybox chroot /host /sbin/modprobe "$@"\n' >"$work/root/modprobe-host"
chmod +x "$work/root/modprobe-host"
# What the guest runs (VM_CMD: something else, to look around).
echo "${VM_CMD:-$test_bin --exact tls::kernel_tls_sends_bodies_by_sendfile_where_the_kernel_has_it --nocapture --test-threads 1}" >"$work/root/cmd.sh"
(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")

timeout 900 qemu-system-x86_64 -accel "$accel" -cpu max -smp 2 -m 2048 -no-reboot -nographic \
  -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 loglevel=4 panic=-1" \
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on \
  | tee "$work/console.log"
if ! grep -q "ktls-vm: kernel" "$work/console.log"; then
  # The guest never reached its init: this machine cannot run it (not a failure of the test).
  echo "ktls-vm: SKIPPED: the guest did not boot here (see the console output above)"
  exit 0
fi
grep -q "ktls-vm: exit 0" "$work/console.log" && ! grep -q "SKIPPED" "$work/console.log"
