#!/usr/bin/env bash
# memkit's VM runner: boots the test kernel in QEMU (TCG; --kvm to opt in) with an
# initramfs, one or more file-backed virtio-pmem devices, and a job script; streams
# the job's output (the guest's ttyS1) to stdout and keeps the full console log.
#
# usage: vm.sh --kernel BZIMAGE --initrd CPIO --job SCRIPT [options]
#   --pmem FILE:SIZE     attach FILE (created with SIZE, e.g. 256M, if missing) as the
#                        next /dev/pmemN; repeatable
#   --timeout SECS       hard limit for the whole boot (default 600)
#   --boot-timeout SECS  limit for the guest to start the job (default 120)
#   --kill-after SECS    SIGKILL QEMU SECS after the job starts (a crash);
#                        "random:MIN-MAX" picks SECS in [MIN, MAX]
#   --kill-from REGEX    count --kill-after from the first output line matching
#                        REGEX instead of from the job's start
#   --logdir DIR         where console.log and output.txt go (default: a new
#                        directory under build/logs)
#   --append ARGS        more kernel command-line arguments
#   --smp N, --mem SIZE  guest CPUs (default 2) and memory (default 1G)
#   --kvm                use KVM instead of TCG
#   --quiet              do not stream the job's output
#
# Exit status: the job's own exit status; 124 if a time limit ran out; 125 if the
# guest stopped without finishing the job (panic, oops, warning with
# panic_on_warn); 137 if --kill-after killed it.  Any kernel BUG/WARNING/KASAN/
# leak/hung-task report in the console log turns a 0 into 1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kernel= initrd= job= timeout=600 boot_timeout=120 kill_after= kill_from= logdir= append= kvm=0 quiet=0
smp=2 mem=1G
pmems=()
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift ;;
	--initrd) initrd=$2; shift ;;
	--job) job=$2; shift ;;
	--pmem) pmems+=("$2"); shift ;;
	--timeout) timeout=$2; shift ;;
	--boot-timeout) boot_timeout=$2; shift ;;
	--kill-after) kill_after=$2; shift ;;
	--kill-from) kill_from=$2; shift ;;
	--logdir) logdir=$2; shift ;;
	--append) append=$2; shift ;;
	--smp) smp=$2; shift ;;
	--mem) mem=$2; shift ;;
	--kvm) kvm=1 ;;
	--quiet) quiet=1 ;;
	*) die "vm.sh: unknown option $1" ;;
	esac
	shift
done
[ -f "$kernel" ] || die "vm.sh: --kernel $kernel: no such file"
[ -f "$initrd" ] || die "vm.sh: --initrd $initrd: no such file"
[ -f "$job" ] || die "vm.sh: --job $job: no such file"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (run: make setup)"

if [ -z "$logdir" ]; then
	logdir=$MEMKIT_TOP/build/logs/$(date +%Y%m%d-%H%M%S)-$(basename "$job" .sh)-$$
fi
mkdir -p "$logdir"
console=$logdir/console.log
output=$logdir/output.txt
: >"$console"
: >"$output"

# The job rides in a second cpio archive appended to the base initramfs.
jobdir=$(mktemp -d)
trap 'rm -rf "$jobdir"' EXIT
cp "$job" "$jobdir/job.sh"
(cd "$jobdir" && echo job.sh | cpio -o -H newc --quiet -R 0:0) >"$jobdir/job.cpio"
cat "$initrd" "$jobdir/job.cpio" >"$logdir/initrd.cpio"

# No ACPI PCI hotplug (nothing here hotplugs a PCI device): its AML made the debug
# kernel's acpi_init take 12.2 s under TCG, 8.5 s without (initcall_debug; the
# production kernel's takes 0.2-0.3 s either way).
args=(-display none -monitor none -no-reboot -nodefaults
	-global PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off -global PIIX4_PM.acpi-root-pci-hotplug=off
	-smp "$smp" -m "$mem,slots=4,maxmem=8G"
	-kernel "$kernel" -initrd "$logdir/initrd.cpio"
	-serial "file:$console" -serial "file:$output")
if [ "$kvm" = 1 ]; then
	args+=(-accel kvm -cpu host)
else
	# max without 5-level paging: early-boot KASAN reports were seen with la57 under TCG.
	args+=(-accel tcg -cpu max,la57=off)
fi
i=0
for spec in "${pmems[@]}"; do
	file=${spec%%:*}
	size=${spec#*:}
	[ "$size" != "$spec" ] || die "vm.sh: --pmem wants FILE:SIZE, got $spec"
	if [ ! -f "$file" ]; then
		mkdir -p "$(dirname "$file")"
		truncate -s "$size" "$file"
	fi
	args+=(-object "memory-backend-file,id=pm$i,share=on,mem-path=$file,size=$size"
		-device "virtio-pmem-pci,memdev=pm$i")
	i=$((i + 1))
done
# A task blocked (D state) for more than 10 s is reported (DETECT_HUNG_TASK), and
# such a report fails the run below and the selftest case it happened in.
# No legacy BSD ptys: creating their 512 device nodes took 7 s of the debug
# kernel's boot under TCG, and nothing in the guest uses them.
cmdline="console=ttyS0 rdinit=/init panic_on_warn=1 oops=panic panic=-1 loglevel=6"
cmdline+=" sysctl.kernel.hung_task_timeout_secs=10 pty.legacy_count=0 $append"

qemu-system-x86_64 "${args[@]}" -append "$cmdline" </dev/null >"$logdir/qemu.log" 2>&1 &
qpid=$!
# A vm.sh that is stopped (make check stopping after a failed build) takes its QEMU
# with it.
trap '[ -z "$qpid" ] || kill -KILL "$qpid" 2>/dev/null || true; rm -rf "$jobdir"' EXIT
if [ "$quiet" = 0 ]; then
	# The guest's tty ends lines with CRLF.
	tail -n +1 -s 0.2 -f --pid="$qpid" "$output" 2>/dev/null | tr -d '\r' |
		grep --line-buffered -v '^MEMKIT-JOB-' &
fi

start=$(date +%s)
started=0 armed=0 killed=0 timed_out=0
case $kill_after in
random:*)
	range=${kill_after#random:}
	lo=${range%-*} hi=${range#*-}
	kill_after=$((lo + RANDOM % (hi - lo + 1)))
	echo "vm.sh: will kill the guest ${kill_after}s after ${kill_from:-the job start}" >&2
	;;
esac
while kill -0 "$qpid" 2>/dev/null; do
	now=$(date +%s)
	if [ "$started" = 0 ] && grep -q '^MEMKIT-JOB-START' "$output"; then
		started=$now
	fi
	if [ "$armed" = 0 ] && [ "$started" != 0 ] && { [ -z "$kill_from" ] || tr -d '\r' <"$output" | grep -qE "$kill_from"; }; then
		armed=$now
	fi
	if [ "$started" = 0 ] && [ $((now - start)) -ge "$boot_timeout" ]; then
		echo "vm.sh: the guest did not start the job within ${boot_timeout}s" >&2
		timed_out=1
	elif [ $((now - start)) -ge "$timeout" ]; then
		echo "vm.sh: time limit of ${timeout}s reached" >&2
		timed_out=1
	elif [ -n "$kill_after" ] && [ "$armed" != 0 ] && [ $((now - armed)) -ge "$kill_after" ]; then
		killed=1
	fi
	if [ "$timed_out" = 1 ] || [ "$killed" = 1 ]; then
		kill -KILL "$qpid" 2>/dev/null || true
		break
	fi
	sleep 0.2
done
wait "$qpid" 2>/dev/null || true
qpid= # reaped: its pid may be another process's now
sleep 0.3 # let tail print the last lines

rc=$(sed -n 's/^MEMKIT-JOB-EXIT \([0-9]*\).*/\1/p' "$output" | tail -n 1)
if [ "$killed" = 1 ]; then
	rc=137
elif [ "$timed_out" = 1 ]; then
	rc=124
elif [ -z "$rc" ]; then
	echo "vm.sh: the guest stopped before the job finished" >&2
	rc=125
fi
if grep -qE 'BUG:|WARNING:|Oops|Kernel panic|kmemleak: .*new suspected|UBSAN|blocked for more than' "$console"; then
	echo "vm.sh: the kernel reported a problem:" >&2
	grep -E -m 5 'BUG:|WARNING:|Oops|KASAN|Kernel panic|suspected|UBSAN|blocked for more than' "$console" >&2
	[ "$rc" != 0 ] || rc=1
fi
if [ "$rc" != 0 ] && [ "$rc" != 137 ]; then
	echo "vm.sh: exit $rc; console log kept: $console" >&2
fi
exit "$rc"
