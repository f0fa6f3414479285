#!/usr/bin/env bash
# `make check`: every test of memkit, host and guest, counted together.
#
#   host   cargo test of tools/ (the CLI, the selftest runner and the pure logic of
#          rust/pure/ shared with the module), rustfmt and clippy of both sides,
#          make install/uninstall into a scratch DESTDIR (scripts/test-install.sh),
#          the host set-up's decisions (scripts/test-setup.sh)
#   guest  memkit.ko loaded in the test kernel under QEMU, memkit-selftest (KTAP)
#
# The last line is "N passed, N failed" (", N skipped" when some were); the exit
# status is non-zero if anything failed.  MEMKIT_SELFTEST_FILTER=substring runs only
# the matching in-guest cases; MEMKIT_MEDIA_SEED and MEMKIT_MEDIA_IMAGES go to the
# guest for journal_corrupted_media (Documentation/journal.rst, "Corrupted media").
# MEMKIT_FUZZ_SEED and MEMKIT_FUZZ_CALLS go to the guest for fuzz_ioctl.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

pass=0 fail=0 skip=0
failed_names=()
case_result() { # NAME ok|fail|skip
	case $2 in
	ok) pass=$((pass + 1)) ;;
	skip) skip=$((skip + 1)) ;;
	*)
		fail=$((fail + 1))
		failed_names+=("$1")
		;;
	esac
}
logs=$MEMKIT_TOP/build/check
mkdir -p "$logs"
cd "$MEMKIT_TOP" || exit 1

# Build first (host set-up and kernel included): a build failure is not a test.
kdir=$(scripts/build.sh kdir) || die "the test kernel is not available"
initrd=$(scripts/build.sh initramfs) || die "building the module or the tools failed"

# The journal crash kills test the on-media protocol: they boot the production kernel
# when it is built (`make bench` builds it; a boot takes a tenth of the debug
# kernel's), one boot in the middle the debug kernel. Without it, every boot is a
# debug one.
kills=${MEMKIT_CRASH_KILLS:-20}
crash=(scripts/journal-crash.sh) crash_kernel=
where="the debug kernel; 'make kernel MEMKIT_KERNEL=production' once makes this phase several times faster"
if [ -z "${KDIR:-}" ] && scripts/kernel.sh --cached production >/dev/null; then
	debug_boot=$(((kills + 1) / 2))
	crash=(env MEMKIT_KERNEL=production scripts/journal-crash.sh --debug-boot "$debug_boot"
		--debug-initrd "$initrd")
	where="the production kernel, boot $debug_boot on the debug kernel"
	crash_kernel=production
fi
[ -z "${KDIR:-}" ] || where="KDIR=$KDIR"

# The guest cases run in the background from here on, the crash kills beside them
# from their start, and the host tests, niced, fill the cores' time the guests
# leave: the guest cases are the longest chain of work. (The crash kills at nice 5
# as well took twice as long and did not shorten that chain.) With four cores or
# more the cases are split between two guests side by side (memkit-selftest
# --shard: about the same expected time each, the list's order kept, the unload and
# kmemleak's check in each); on two cores one guest is faster: two took 9:25 against
# 8:25 for one, with 2.7 more core-minutes of work (a debug boot is half a minute
# of it; the rest was not broken down).
# MEMKIT_GUEST_SHARDS sets the number of guests; one when MEMKIT_SELFTEST_FILTER
# picks cases. The guests' TAP is shown once the host's results are.
shards=${MEMKIT_GUEST_SHARDS:-$(($(nproc) >= 4 ? 2 : 1))}
[ -z "${MEMKIT_SELFTEST_FILTER:-}" ] || shards=${MEMKIT_GUEST_SHARDS:-1}
[[ $shards =~ ^[1-9][0-9]*$ ]] || die "MEMKIT_GUEST_SHARDS=$shards: want a number of guests, 1 or more"
guest_pids=()
for ((s = 1; s <= shards; s++)); do
	step "guest $s/$shards: booting $kdir/arch/x86/boot/bzImage with memkit-selftest (in the background)"
	job=$logs/job-$s.sh
	{
		[ -z "${MEMKIT_SELFTEST_FILTER:-}" ] || echo "memkit_filter=--filter; memkit_filter_arg=$MEMKIT_SELFTEST_FILTER"
		[ "$shards" = 1 ] || echo "memkit_shard=--shard; memkit_shard_arg=$s/$shards"
		# The corrupted-media case's seed and image count, to reproduce a run.
		for v in MEMKIT_MEDIA_SEED MEMKIT_MEDIA_IMAGES; do
			[ -z "${!v:-}" ] || echo "export $v=${!v}"
		done
		# The ioctl fuzzer's seed and calls (fuzz_ioctl; Documentation/fuzzing.rst).
		for v in MEMKIT_FUZZ_SEED MEMKIT_FUZZ_CALLS; do
			[ -z "${!v:-}" ] || echo "export $v=${!v}"
		done
		cat selftests/jobs/check.sh
	} >"$job"
	rm -f "$logs/pmem$s.img"
	# The boot limit leaves room for a host whose two cores are busy (the other
	# guests); the run's limit catches a hung guest, not a slow one (each case has its
	# own limit in memkit-selftest, 600 s): one guest took 400-520 s for every case on
	# a quiet host, and up to 1260 s on a loaded one.
	scripts/vm.sh --quiet --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$initrd" --job "$job" \
		--pmem "$logs/pmem$s.img:256M" --logdir "$logs/guest-$s" --timeout 3600 --boot-timeout 300 &
	guest_pids+=($!)
done

if [ "$kills" -gt 0 ]; then
	crash_initrd=$initrd
	if [ "$crash_kernel" = production ]; then
		if ! crash_initrd=$(MEMKIT_KERNEL=production scripts/build.sh initramfs); then
			kill "${guest_pids[@]}"
			die "building the module for the production kernel failed"
		fi
	fi
	step "guest: journal crash test, $kills kills (MEMKIT_CRASH_KILLS) on $where (in the background)"
	"${crash[@]}" --initrd "$crash_initrd" "$kills" >"$logs/journal-crash.log" 2>&1 &
	crash_pid=$!
fi

host=(nice -n 10)
step "host: cargo test"
"${host[@]}" cargo test --release --locked --workspace --manifest-path tools/Cargo.toml >"$logs/cargo-test.log" 2>&1
cargo_rc=$?
read -r p f i < <(awk '/^test result:/ { p += $4; f += $6; i += $8 } END { print p + 0, f + 0, i + 0 }' \
	"$logs/cargo-test.log")
pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + i))
if [ "$f" -gt 0 ] || [ "$cargo_rc" != 0 ]; then
	grep -E '^test .* FAILED$|^---- |panicked' "$logs/cargo-test.log" >&2
	[ "$f" -gt 0 ] || case_result "cargo test (did not run: see $logs/cargo-test.log)" fail
	failed_names+=("cargo test: $f failed")
fi
echo "host: cargo test: $p passed, $f failed, $i ignored" >&2

step "host: rustfmt and clippy"
if cargo fmt --manifest-path tools/Cargo.toml --all -- --check >"$logs/fmt.log" 2>&1 &&
	rustfmt --check --config-path .rustfmt.toml rust/memkit.rs >>"$logs/fmt.log" 2>&1; then
	case_result rustfmt ok
else
	head -n 40 "$logs/fmt.log" >&2
	case_result "rustfmt (see $logs/fmt.log)" fail
fi
if "${host[@]}" cargo clippy --release --locked --workspace --all-targets --manifest-path tools/Cargo.toml \
	-- -D warnings >"$logs/clippy.log" 2>&1; then
	case_result "clippy (tools)" ok
else
	grep -E -A8 '^(warning|error)' "$logs/clippy.log" | head -n 60 >&2
	case_result "clippy (tools; see $logs/clippy.log)" fail
fi
# The module was built with CLIPPY=1 and refused on any warning by build.sh.
case_result "clippy (module)" ok
# Every dependency of the tools, their tests and clippy is compiled now: the next
# clone starts from them (once per Cargo.lock and compiler; build.sh).
scripts/build.sh deps-save || echo "check: could not keep the tools' compiled dependencies" >&2

step "host: set-up's decisions (scripts/test-setup.sh), without touching the host"
if scripts/test-setup.sh >"$logs/setup.log" 2>&1; then
	case_result "host set-up checks, build targets install nothing" ok
else
	cat "$logs/setup.log" >&2
	case_result "host set-up checks (see $logs/setup.log)" fail
fi

step "host: make install into a scratch DESTDIR, then make uninstall"
if scripts/test-install.sh "$kdir" >"$logs/install.log" 2>&1; then
	case_result "make install/uninstall" ok
else
	cat "$logs/install.log" >&2
	case_result "make install/uninstall (see $logs/install.log)" fail
fi

for ((s = 1; s <= shards; s++)); do
	step "guest $s/$shards: the selftests' TAP"
	guest_pid=${guest_pids[$((s - 1))]} tap=$logs/guest-$s.tap
	# The guest's tty ends lines with CRLF.
	tail -n +1 -s 0.5 -f --pid="$guest_pid" "$logs/guest-$s/output.txt" 2>/dev/null | tr -d '\r' |
		grep -v '^MEMKIT-JOB-' | tee "$tap"
	wait "$guest_pid"
	vm_rc=$?
	planned=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$tap" | head -n 1)
	ok=$(grep -cE '^ok [0-9]+ ' "$tap" | tr -d ' ')
	skipped=$(grep -cE '^ok [0-9]+ .*# SKIP' "$tap" | tr -d ' ')
	notok=$(grep -cE '^not ok [0-9]+ ' "$tap" | tr -d ' ')
	pass=$((pass + ok - skipped)) skip=$((skip + skipped)) fail=$((fail + notok))
	while read -r line; do failed_names+=("guest $s/$shards: ${line#not ok }"); done < <(grep -E '^not ok ' "$tap")
	missing=$((${planned:-0} - ok - notok))
	if [ -z "$planned" ] || [ "$missing" -gt 0 ]; then
		# Cases that never reported (the guest died or hung) are failures too.
		[ "$missing" -gt 0 ] || missing=1
		fail=$((fail + missing))
		failed_names+=("guest $s/$shards: $missing case(s) did not report (vm.sh exit $vm_rc; console: $logs/guest-$s/console.log)")
	elif [ "$vm_rc" != 0 ] && [ "$notok" = 0 ]; then
		case_result "guest $s/$shards run (vm.sh exit $vm_rc; console: $logs/guest-$s/console.log)" fail
	fi
done

if [ "$kills" -gt 0 ]; then
	step "guest: waiting for the journal crash test"
	wait "$crash_pid"
	crash_rc=$?
	ok=$(grep -c '^crash-check ok' "$logs/journal-crash.log" | tr -d ' ')
	pass=$((pass + ok))
	tail -n 1 "$logs/journal-crash.log"
	if [ "$crash_rc" != 0 ]; then
		grep -E 'FAIL|vm.sh' "$logs/journal-crash.log" >&2
		fail=$((fail + kills - ok))
		failed_names+=("journal crash test: $((kills - ok)) of $kills kills not verified (see $logs/journal-crash.log)")
	fi
fi
step "done"

echo
if [ "$fail" -gt 0 ]; then
	echo "failed:"
	printf '  %s\n' "${failed_names[@]}"
fi
summary="$pass passed, $fail failed"
[ "$skip" = 0 ] || summary+=", $skip skipped"
echo "$summary"
[ "$fail" = 0 ]
