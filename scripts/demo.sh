#!/usr/bin/env bash
# `make run`: boots the test kernel twice on one pmem file. The first boot shows the
# devices and a journal transaction, then commits under load until this script kills
# QEMU; the host checks the killed VM's pmem file offline; the second boot recovers
# the journal at module load and shows that every writer's slots agree.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

initrd=$("$MEMKIT_TOP/scripts/build.sh" initramfs)
kdir=$("$MEMKIT_TOP/scripts/build.sh" kdir)
dir=$MEMKIT_TOP/build/run
rm -rf "$dir"
mkdir -p "$dir"
vm=("$MEMKIT_TOP/scripts/vm.sh" --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$initrd" --pmem "$dir/pmem0.img:64M" "$@")

step "first boot (console log: $dir/boot-1/console.log)"
rc=0
"${vm[@]}" --job "$MEMKIT_TOP/selftests/jobs/run.sh" --logdir "$dir/boot-1" \
	--kill-from '^SLOTS ' --kill-after 3 || rc=$?
[ "$rc" = 137 ] || die "the first boot ended with status $rc, not with the kill"
echo
echo "*** QEMU killed with SIGKILL in the middle of the writes ***"
echo
step "host: memkit journal check $dir/pmem0.img   # what recovery will do"
"$MEMKIT_TOP/tools/target/release/memkit" journal check "$dir/pmem0.img"
step "second boot (console log: $dir/boot-2/console.log)"
"${vm[@]}" --job "$MEMKIT_TOP/selftests/jobs/run-recover.sh" --logdir "$dir/boot-2"
