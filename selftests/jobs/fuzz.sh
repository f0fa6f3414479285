# Guest job of `make fuzz` (scripts/fuzz.sh): the ioctl fuzzer's long pass, then the
# module's leaks (kmemleak, memkit's objects only) and its unload. The kernel's own
# reports (KASAN, lockdep, WARN with panic_on_warn) end the boot; scripts/vm.sh finds
# them in the console log.
# Runs under the busybox shell of the initramfs; the host prepends the settings:
#   MEMKIT_FUZZ_SEED     the seed (every random choice derives from it)
#   MEMKIT_FUZZ_CALLS    ioctl calls, all threads together
#   MEMKIT_FUZZ_THREADS  fuzzing threads
set -u
insmod /lib/memkit/memkit.ko || { echo "insmod memkit.ko failed"; exit 1; }
echo "fuzz: Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"
memkit-selftest fuzz --seed "$MEMKIT_FUZZ_SEED" --calls "${MEMKIT_FUZZ_CALLS:-1000000}" \
	--threads "${MEMKIT_FUZZ_THREADS:-4}" --stall 120
rc=$?
ctl=/sys/kernel/debug/kmemleak
if [ -e $ctl ]; then
	# An object is reported once it has been unreferenced for 5 s: scan, wait, scan.
	echo scan >$ctl
	sleep 6
	echo scan >$ctl
	leaks=$(awk '/^unreferenced object/ { hit = 0 } /memkit/ && !hit { n++; hit = 1 } END { print n + 0 }' $ctl)
	echo "fuzz: kmemleak: $leaks unreferenced objects from memkit"
	if [ "$leaks" != 0 ]; then
		grep -B2 -A20 memkit $ctl | head -n 60
		rc=1
	fi
fi
# Every file and mapping is gone: the module must unload.
rmmod memkit || { echo "fuzz: rmmod memkit failed after the fuzzer"; rc=1; }
exit $rc
