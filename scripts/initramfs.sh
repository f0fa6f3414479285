#!/usr/bin/env bash
# Builds the guest's initramfs: busybox, the module, memkit's userspace programs and
# the shared libraries they need (taken from the host with ldd), plus /init, which runs
# the job script a boot is given (scripts/vm.sh appends it as a second cpio archive).
#
# usage: initramfs.sh OUT.cpio MODULE.ko BINARY...
#
# With MEMKIT_INSTALL_KDIR set (build.sh does), the module is also installed the way
# `make install` does it (scripts/install.sh: modules_install into extra/, depmod),
# with the modprobe.d example, so that the guest can `modprobe memkit`.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out=$1
ko=$2
shift 2
stage=$(mktemp -d)
chmod 0755 "$stage" # becomes the guest's /: everyone may traverse it
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/memkit,mnt}
cp /bin/busybox "$stage/bin/busybox"
cp "$ko" "$stage/lib/memkit/memkit.ko"
if [ -n "${MEMKIT_INSTALL_KDIR:-}" ]; then
	KDIR=$MEMKIT_INSTALL_KDIR MEMKIT_MODULE_KO=$ko DESTDIR=$stage "$MEMKIT_TOP/scripts/install.sh" module >/dev/null
	install -D -m 0644 "$MEMKIT_TOP/tools/modprobe/memkit.conf" "$stage/etc/modprobe.d/memkit.conf"
fi
# Every shared library $1 loads, at the same path as on the host.
libs_of() {
	ldd "$1" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
}
for b in "$@"; do
	cp "$b" "$stage/bin/"
	libs_of "$b"
done
# The NBD servers the remote-memory tests and benchmarks start on the guest's
# loopback (qemu-nbd, nbdkit with its memory plugin, nbd-server), and nbd-client for
# the swap-over-NBD peer: Debian's packages (make setup installs them). nbdkit loads
# its plugin from the path it was built with.
nbd_plugin=/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-memory-plugin.so
for b in /usr/bin/qemu-nbd /usr/bin/nbdkit /usr/bin/nbd-server /usr/sbin/nbd-client; do
	[ -x "$b" ] || die "$b is missing: run 'make setup' (qemu-utils, nbdkit, nbd-server, nbd-client)"
	cp "$b" "$stage/bin/"
	libs_of "$b"
done
[ -f "$nbd_plugin" ] || die "$nbd_plugin is missing: run 'make setup' (nbdkit)"
mkdir -p "$stage$(dirname "$nbd_plugin")"
cp "$nbd_plugin" "$stage$nbd_plugin"
libs_of "$nbd_plugin"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"

cat >"$stage/init" <<'INIT'
#!/bin/busybox sh
# memkit guest init: mounts the basics, runs /job.sh with its output on ttyS1 (the
# host's output file), reports its exit code there, and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
# Loopback, for the checkpoint stream between `memkit ckpt run` and its backup.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo 'MEMKIT-JOB-START' >/dev/ttyS1
cd /tmp
sh /job.sh >/dev/ttyS1 2>&1 </dev/null
echo "MEMKIT-JOB-EXIT $?" >/dev/ttyS1
sync
poweroff -f
reboot -f
INIT
chmod +x "$stage/init"
(cd "$stage" && find . | cpio -o -H newc --quiet -R 0:0) >"$out.tmp"
mv "$out.tmp" "$out"
