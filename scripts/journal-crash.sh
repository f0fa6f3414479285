#!/usr/bin/env bash
# The journal crash test: boots the test kernel on one pmem file again and again,
# killing QEMU (SIGKILL) at a random moment while writers commit transactions, and
# checks after every reboot that the recovered journal is atomic and durable.
#
# usage: journal-crash.sh [--debug-boot N] [--initrd FILE] [--debug-initrd FILE]
#                         KILLS [THREADS SLOTS]
#
# Every boot runs the kernel of $MEMKIT_KERNEL (or $KDIR; scripts/build.sh), the test
# kernel by default; with --debug-boot N, boot N (0 formats, the last only verifies)
# runs the debugging test kernel instead, recovering from a kill of the other one and
# killed in its turn (`make check` boots the production kernel, whose boots take a
# tenth of the time, and keeps one on the debug kernel: the kills test the on-media
# protocol, the debug boot the module's recovery and writing under KASAN and lockdep).
#
# Every transaction of writer t writes its next sequence number into SLOTS scattered
# slots; the guest prints "ACK t seq id" when a commit returns. After each kill the
# next boot recovers the journal (attached at module load), and prints each writer's
# slots. Checks: all slots of a writer agree (atomicity), and hold the writer's last
# acknowledged sequence number or the one after it, which may have committed without
# its ACK reaching the host (durability; the guest drains each ACK to the serial port
# before its next transaction, so no other can be in between). After each kill the host also runs
# `memkit journal check` on the pmem file and compares its plan with what the guest's
# recovery then reports. Prints a tally; exits non-zero on the first violation.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage="usage: journal-crash.sh [--debug-boot N] [--initrd FILE] [--debug-initrd FILE] KILLS [THREADS SLOTS]"
debug_boot=-1 initrd= debug_initrd=
while [ $# -gt 0 ]; do
	case $1 in
	--debug-boot) debug_boot=${2:?$usage} ;;
	--initrd) initrd=${2:?$usage} ;;
	--debug-initrd) debug_initrd=${2:?$usage} ;;
	*) break ;;
	esac
	shift 2
done
kills=${1:?$usage}
threads=${2:-2}
slots=${3:-8}
kdir=$("$MEMKIT_TOP/scripts/build.sh" kdir)
# An initramfs given by the caller (make check packs them before it starts cargo,
# whose lock on tools/target a build here would wait for) is used as it is.
[ -n "$initrd" ] || initrd=$("$MEMKIT_TOP/scripts/build.sh" initramfs)
flavour=${MEMKIT_KERNEL:-debug}
[ -z "${KDIR:-}" ] || flavour=KDIR
if [ "$debug_boot" -ge 0 ]; then
	debug_kdir=$(MEMKIT_KERNEL=debug "$MEMKIT_TOP/scripts/build.sh" kdir)
	[ -n "$debug_initrd" ] || debug_initrd=$(MEMKIT_KERNEL=debug "$MEMKIT_TOP/scripts/build.sh" initramfs)
fi
memkit=$MEMKIT_TOP/tools/target/release/memkit
dir=$MEMKIT_TOP/build/journal-crash
rm -rf "$dir"
mkdir -p "$dir"
pmem=$dir/pmem0.img

declare -A acked  # last acknowledged sequence number per writer
declare -A booted # boots per kernel flavour
for ((t = 0; t < threads; t++)); do acked[$t]=0; done
total_acks=0 replayed=0 discarded=0 incomplete=0 qemu_aborts=0 boot_hangs=0
fail() {
	echo "journal-crash: FAIL after kill $1: $2 (logs: $dir/boot-$1)" >&2
	exit 1
}

for ((i = 0; i <= kills; i++)); do
	job=$dir/job-$i.sh
	if [ "$i" = 0 ]; then
		args="$threads $slots --format"
		insmod_args=""
	else
		args="$threads $slots"
		insmod_args="journal_dev=/dev/pmem0"
		# Every other boot commits without grouping (each writer its own commit, what
		# group_commit=auto does on synchronous DAX): the kills cover both ways.
		[ $((i % 2)) = 0 ] || insmod_args="$insmod_args group_commit=never"
	fi
	{
		echo "MEMKIT_CRASH_ARGS='$args'"
		echo "MEMKIT_CRASH_INSMOD='$insmod_args'"
		cat "$MEMKIT_TOP/selftests/jobs/journal-crash.sh"
	} >"$job"
	# Killed 1-4 s into the writing; the last boot only verifies.
	kill_args=(--kill-from '^SLOTS ' --kill-after "random:1-4")
	[ "$i" -lt "$kills" ] || kill_args=(--kill-from '^SLOTS ' --kill-after 1)
	boot_kdir=$kdir boot_initrd=$initrd boot_flavour=$flavour
	if [ "$i" = "$debug_boot" ]; then
		boot_kdir=$debug_kdir boot_initrd=$debug_initrd boot_flavour=debug
	fi
	for attempt in 1 2; do
		booted[$boot_flavour]=$((${booted[$boot_flavour]:-0} + 1))
		rc=0
		# --boot-timeout for a debug boot as make check's guest: beside that guest on a
		# loaded host, the debug boot once took past vm.sh's default 120 s to reach its
		# job. A production boot reaches it in about 3 s (under 7 s with a kernel build
		# on both cores), so 60 s is ample, and a boot that hangs (below) costs 60 s of
		# the run, not 300.
		boot_timeout=60
		[ "$boot_flavour" != debug ] || boot_timeout=300
		"$MEMKIT_TOP/scripts/vm.sh" --quiet --kernel "$boot_kdir/arch/x86/boot/bzImage" --initrd "$boot_initrd" \
			--job "$job" --pmem "$pmem:64M" --logdir "$dir/boot-$i" --timeout 600 --boot-timeout "$boot_timeout" \
			"${kill_args[@]}" || rc=$?
		out=$dir/boot-$i/output.txt
		tr -d '\r' <"$out" >"$out.clean"
		# A boot that failed before the module could touch the pmem file runs again,
		# once; a failure after that point is a failure like any other.
		# - QEMU itself can abort under TCG (seen once in a few hundred boots: an
		#   assertion in its physmem code while the guest probed PCI): before the
		#   guest's recovery report, the module has not touched the pmem file.
		# - A guest kernel can hang before it runs the job (seen twice in a few
		#   hundred boots: a production boot beside make check's debug guest stopped
		#   after ACPI's PCI probe, its TSC not calibrated against the PIT on the
		#   loaded host, and printed nothing more in 300 s): the job is what loads
		#   the module.
		again=
		if [ "$rc" != 137 ] && ! grep -q '^RECOVERY ' "$out.clean" &&
			grep -q '^qemu-system-x86_64: .*Assertion' "$dir/boot-$i/qemu.log"; then
			again=qemu-abort
			why="QEMU aborted before the guest touched the pmem ($(grep -m1 Assertion "$dir/boot-$i/qemu.log"))"
		elif [ "$rc" = 124 ] && ! grep -q '^MEMKIT-JOB-START' "$out.clean"; then
			again=hung
			why="the guest kernel never started the job (last console line: $(tail -n 1 "$dir/boot-$i/console.log" | tr -d '\r'))"
		fi
		if [ -n "$again" ] && [ "$attempt" = 1 ]; then
			echo "boot $i: $why; booting again" >&2
			case $again in
			qemu-abort) qemu_aborts=$((qemu_aborts + 1)) ;;
			hung) boot_hangs=$((boot_hangs + 1)) ;;
			esac
			rm -rf "$dir/boot-$i-$again"
			mv "$dir/boot-$i" "$dir/boot-$i-$again"
			continue
		fi
		break
	done
	[ "$rc" = 137 ] || fail "$i" "the boot ended with $rc, not with the kill (console: $dir/boot-$i/console.log)"
	grep -q '^ERROR' "$out.clean" && fail "$i" "$(grep -m1 '^ERROR' "$out.clean")"
	rec=$(grep -m1 '^RECOVERY ' "$out.clean") || fail "$i" "the guest printed no recovery report"
	if [ "$i" -gt 0 ]; then
		# The guest's recovery must do what the host-side check predicted.
		want=$(jq -r '"\(.recovery.replay | length) \(.recovery.torn | length)"' "$dir/check-$((i - 1)).json" 2>/dev/null)
		got=$(sed -E 's/.*replayed=([0-9]+) discarded=([0-9]+).*/\1 \2/' <<<"$rec")
		[ "$want" = "$got" ] ||
			fail "$i" "host check predicted replay/discard '$want', the guest did '$got'"
		replayed=$((replayed + $(cut -d' ' -f1 <<<"$got")))
		discarded=$((discarded + $(cut -d' ' -f2 <<<"$got")))
		incomplete=$((incomplete + $(sed -E 's/.*incomplete=([0-9]+).*/\1/' <<<"$rec")))
	fi
	for ((t = 0; t < threads; t++)); do
		line=$(grep -m1 "^SLOTS $t " "$out.clean") || fail "$i" "no slots of writer $t"
		read -r -a vals <<<"${line#SLOTS $t }"
		[ "${#vals[@]}" = "$slots" ] || fail "$i" "writer $t: ${#vals[@]} slots printed"
		for v in "${vals[@]}"; do
			[ "$v" = "${vals[0]}" ] || fail "$i" "writer $t: torn transaction, slots ${vals[*]}"
		done
		a=${acked[$t]}
		if [ "${vals[0]}" -lt "$a" ] || [ "${vals[0]}" -gt $((a + 1)) ]; then
			fail "$i" "writer $t: slots hold ${vals[0]}, last acknowledged $a"
		fi
		last=$(awk -v t="$t" '$1 == "ACK" && $2 == t && NF == 4 { s = $3 } END { print s + 0 }' "$out.clean")
		[ "$last" = 0 ] || acked[$t]=$last
		total_acks=$((total_acks + $(awk -v t="$t" '$1 == "ACK" && $2 == t && NF == 4' "$out.clean" | wc -l)))
	done
	[ "$i" = 0 ] || echo "crash-check ok: kill $i recovered atomic and durable ($boot_flavour kernel)"
	if [ "$i" -lt "$kills" ]; then
		"$memkit" --json journal check "$pmem" >"$dir/check-$i.json" ||
			fail "$i" "memkit journal check refused the killed VM's pmem file"
		echo "kill $((i + 1))/$kills ($boot_flavour kernel): recovery before it: $rec" >&2
	fi
done
echo "journal-crash: $kills kills (boots: $(for f in "${!booted[@]}"; do printf '%s on the %s kernel, ' "${booted[$f]}" "$f"; done | sed 's/, $//')), $total_acks acknowledged transactions, $threads writers x $slots slots;" \
	"recoveries replayed $replayed MJs, discarded $discarded torn, skipped $incomplete of incomplete groups;" \
	"atomicity and durability held after every kill$([ "$qemu_aborts" = 0 ] || echo " ($qemu_aborts boots run again after QEMU aborted)")$([ "$boot_hangs" = 0 ] || echo " ($boot_hangs boots run again after the guest kernel hung before its job)")"
