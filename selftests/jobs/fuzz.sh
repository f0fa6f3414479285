# Guest job of `make fuzz` (scripts/fuzz.sh): the ioctl fuzzer's long pass, then the
# module's leaks (kmemleak, memkit's objects only) and its unload. The kernel's own
# reports (KASAN, lockdep, WARN with panic_on_warn) end the boot; scripts/vm.sh finds
# them in the console log.
# Runs under the busybox shell of the initramfs; the host prepends the settings:
#   MEMKIT_FUZZ_SEED     the seed (every random choice derives from it)
#   MEMKIT_FUZZ_CALLS    ioctl calls, all threads together
#   MEMKIT_FUZZ_THREADS  fuzzing threads
#   MEMKIT_FUZZ_USER     fuzz as this uid (empty: as root)
set -u
insmod /lib/memkit/memkit.ko || { echo "insmod memkit.ko failed"; exit 1; }
echo "fuzz: Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"
user_args=
if [ -n "${MEMKIT_FUZZ_USER:-}" ]; then
	# Every node open to all and the journal attached by root: what the user may not
	# do must fail (the fuzzer checks each call), what it may do is fuzzed.
	chmod 0666 /dev/memkit-journal /dev/memkit-rmem /dev/memkit-ckpt
	memkit journal attach /dev/pmem0 --format >/dev/null || { echo "fuzz: journal attach failed"; exit 1; }
	user_args="--user $MEMKIT_FUZZ_USER"
fi
# shellcheck disable=SC2086 # user_args is empty or two words
memkit-selftest fuzz --seed "$MEMKIT_FUZZ_SEED" --calls "${MEMKIT_FUZZ_CALLS:-1000000}" \
	--threads "${MEMKIT_FUZZ_THREADS:-4}" --stall 120 $user_args
rc=$?
if [ -n "${MEMKIT_FUZZ_USER:-}" ]; then
	memkit --json journal status | grep -q '"attached": *true' ||
		{ echo "fuzz: the journal root attached is no longer attached"; rc=1; }
	memkit journal detach >/dev/null 2>&1
fi
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
