#!/usr/bin/env bash
# `make fuzz`: the ioctl fuzzer's long pass (memkit-selftest fuzz, tools/selftest/src/
# fuzz/) in the test guest: random ioctls on the three devices from several threads,
# interleaved with open/close, mmap/munmap/mremap/madvise and fork, then kmemleak and
# the module's unload (selftests/jobs/fuzz.sh). Documentation/fuzzing.rst.
#
#   MEMKIT_FUZZ_SEED     the seed (default: random); the same seed replays the same
#                        operations
#   MEMKIT_FUZZ_CALLS    ioctl calls (default 1000000)
#   MEMKIT_FUZZ_THREADS  fuzzing threads (default 4)
#   MEMKIT_FUZZ_USER     fuzz as this uid (e.g. 65534), every node made 0666 and the
#                        journal attached by root first (default: as root)
#
# The guest's output goes to build/fuzz/output.txt, its console to
# build/fuzz/guest/console.log. The last line gives the seed, the calls and calls/s.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$MEMKIT_TOP" || exit 1

seed=${MEMKIT_FUZZ_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
calls=${MEMKIT_FUZZ_CALLS:-1000000}
threads=${MEMKIT_FUZZ_THREADS:-4}
user=${MEMKIT_FUZZ_USER:-}
case $user in '' | *[!0-9]*) [ -z "$user" ] || die "MEMKIT_FUZZ_USER=$user: not a uid" ;; esac
out=$MEMKIT_TOP/build/fuzz
mkdir -p "$out"

kdir=$(scripts/build.sh kdir) || die "the test kernel is not available"
initrd=$(scripts/build.sh initramfs) || die "building the module or the tools failed"

step "guest: memkit-selftest fuzz, $calls calls, $threads threads, seed=$seed${user:+, uid $user}"
{
	echo "MEMKIT_FUZZ_SEED=$seed MEMKIT_FUZZ_CALLS=$calls MEMKIT_FUZZ_THREADS=$threads MEMKIT_FUZZ_USER=$user"
	cat selftests/jobs/fuzz.sh
} >"$out/job.sh"
rm -f "$out/pmem0.img"
# About 600 calls/s under TCG on a busy host (1700/s on an idle one), plus the boot.
scripts/vm.sh --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$initrd" --job "$out/job.sh" \
	--pmem "$out/pmem0.img:256M" --logdir "$out/guest" --timeout $((600 + calls / 250)) |
	tee "$out/output.txt"
rc=${PIPESTATUS[0]}
done_line=$(grep '^fuzz: done:' "$out/output.txt" | tail -n 1)
if [ "$rc" != 0 ]; then
	die "the fuzzer or the kernel failed (vm.sh exit $rc, seed=$seed; console: $out/guest/console.log); replay: MEMKIT_FUZZ_SEED=$seed MEMKIT_FUZZ_CALLS=$calls MEMKIT_FUZZ_THREADS=$threads MEMKIT_FUZZ_USER=$user make fuzz"
fi
echo "${done_line:-fuzz: no summary line}"
