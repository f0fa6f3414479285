#!/usr/bin/env bash
# `make bench`: memkit's journal benchmarks, all from one run.
#
# Every guest boot runs the production kernel (scripts/kernel.sh production: the
# test kernel's options without KASAN, lockdep, kmemleak and the other debugging
# checks), built and cached on first use; the guest selftests run once on it before
# anything is measured, and a failure stops the bench. Every result line says its
# kernel and emulator ("kernel": "production", "vm": "tcg"; "host"/"none" for the
# host rows).
#
#   host    memkit-bench host: the shared journal engine on a DRAM-backed file
#           (/dev/shm, clwb + sfence) against PMDK libpmemobj transactions on a pool
#           file next to it (PMEM_IS_PMEM_FORCE=1), 1x64B, 8x64B and 1x4KiB
#           transactions, rounds alternating the variants
#   guest   memkit-bench guest in the test guest (TCG): /dev/memkit-journal on
#           virtio-pmem, coalesced vs strict, 1, 2 and 4 threads; and its peer,
#           memkit-bench guest-pmdk: libpmemobj on a second virtio-pmem device
#           (ext4 -o dax; libpmem calls msync there), 1 and 4 threads, same rounds
#   memmap  a second boot with memmap=64M!512M memmap=128M!640M: the same on
#           synchronous-DAX legacy pmem (no device flush; PMDK maps with MAP_SYNC
#           and flushes with CPU instructions), 1 and 4 threads, to price the flush
#           and to meet PMDK at its best
#   ckpt    memkit-bench ckpt-collect in a third boot (-m 3G): collect + clear of
#           64 MiB, 256 MiB and 1 GiB at 0.1, 1 and 10 % dirty, /dev/memkit-ckpt vs
#           soft-dirty (pagemap + clear_refs) vs PAGEMAP_SCAN (uffd async wp); then,
#           in the same boot, memkit-bench ckpt-run: the checkpointer through the
#           memkit CLI — checkpoints per second on 64 MiB at 1 % dirty (memkit region
#           and soft-dirty), time stopped with and without pre-copy (uniform and Zipf
#           writes), bytes sent with and without diffs (sparse and dense writes)
#   rmem    a fourth boot (-m 2G): `memkit workload rmem-run`, an access-pattern program over a
#           region 4x its local budget — sequential, strided 2/4/16, uniform random,
#           Zipf, pointer chase — at two emulated latencies, per prefetch policy; and
#           the Linux peer in the same boot: the same program on anonymous memory in a
#           memory cgroup limited to the budget, swapping to a RAM-backed null_blk
#           with the same per-request latency (swap VMA readahead on); then over NBD:
#           memkit rmem agent --nbd against swap on /dev/nbd0 (nbd-client), both to
#           nbdkit's memory plugin on the guest's loopback
#
# Results: build/bench/results.jsonl (one {"bench","variant","metric","value","unit"}
# per line), the table on stdout and in build/bench/table.txt, the raw measurements
# in build/bench/*.raw.  Documentation/journal.rst, ckpt.rst and rmem.rst
# ("Benchmarks") explain them.
#
# MEMKIT_BENCH_SKIP=guest,memmap (any of host, guest, memmap, ckpt, rmem; ckpt-collect or
# ckpt-run skip half of the ckpt boot) skips parts; MEMKIT_BENCH_QUICK=1 runs
# everything briefly (a smoke test: numbers too noisy to use);
# MEMKIT_BENCH_CKPT_RUN_ARGS adds options to memkit-bench ckpt-run.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$MEMKIT_TOP" || exit 1

out=$MEMKIT_TOP/build/bench
mkdir -p "$out"
rm -f "$out"/*.raw "$out/results.jsonl" "$out/table.txt"
skip=",${MEMKIT_BENCH_SKIP:-},"
if [ "${MEMKIT_BENCH_QUICK:-0}" = 1 ]; then
	host_secs=0.1 host_rounds=2 guest_secs=0.3 guest_rounds=1
	ckpt_sizes=64M,256M ckpt_rounds=1 ckpt_iters=2
	ckpt_run_args="--rate-calib-count 6 --rate-calib-interval-ms 500 --rate-count 10 --rate-warmup 4 --precopy-count 8 --precopy-rounds 1 --diff-count 8 --diff-warmup 2"
	rmem_settings="MEMKIT_BENCH_PAGES=1024 MEMKIT_BENCH_LATS=20 MEMKIT_BENCH_PATTERNS=seq,stride:4,random MEMKIT_BENCH_POLICIES=none,ptline MEMKIT_BENCH_PASSES=1 MEMKIT_BENCH_WIDE=trend MEMKIT_BENCH_NBD_PATTERNS=seq,stride:4"
else
	host_secs=0.5 host_rounds=5 guest_secs=2 guest_rounds=3
	ckpt_sizes=64M,256M,1G ckpt_rounds=3 ckpt_iters=5
	ckpt_run_args=""
	rmem_settings="MEMKIT_BENCH_PAGES=2048 MEMKIT_BENCH_LATS=20,100 MEMKIT_BENCH_PASSES=1"
fi
ckpt_run_args="$ckpt_run_args ${MEMKIT_BENCH_CKPT_RUN_ARGS:-}"
# The guest kernel (MEMKIT_KERNEL=debug measures on the test kernel instead).
export MEMKIT_KERNEL=${MEMKIT_KERNEL:-production}
failed=()

bin=$(scripts/build.sh tools) || die "building the tools failed"

if [[ $skip != *,host,* ]]; then
	step "host: memkit engine vs PMDK libpmemobj ($host_rounds rounds of ${host_secs}s per variant)"
	pmdk=$(dpkg-query -W -f='${Version}' libpmemobj1 2>/dev/null || echo unknown)
	if ! PMEM_IS_PMEM_FORCE=1 "$bin/memkit-bench" host --secs "$host_secs" --rounds "$host_rounds" \
		--note "pmdk=libpmemobj $pmdk" >"$out/host.raw"; then
		failed+=(host)
	fi
fi

# One boot of a guest job: [--job SCRIPT] [--mem SIZE] DEVICE LOGDIR SETTINGS
# [vm.sh options...]; the job is selftests/jobs/bench.sh and the memory 1G unless said.
guest_boot() {
	local job=selftests/jobs/bench.sh mem=1G device logdir settings rc
	while :; do
		case $1 in
		--job) job=$2; shift 2 ;;
		--mem) mem=$2; shift 2 ;;
		*) break ;;
		esac
	done
	device=$1 logdir=$2 settings=$3
	shift 3
	{
		echo "$settings"
		cat "$job"
	} >"$out/job-$device.sh"
	scripts/vm.sh --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$out/initramfs.cpio" \
		--job "$out/job-$device.sh" --logdir "$logdir" --timeout 1800 --mem "$mem" "$@"
	rc=$?
	# The job's lines (JSON raw lines among them) end with \r\n; report copes.
	cp "$logdir/output.txt" "$out/guest-$device.raw"
	# Where it ran, recorded with the samples.
	printf '{"env":{"where":"guest/%s","kernel_config":"%s","accel":"tcg","vm":"QEMU %s, TCG, -smp 2, -m %s"}}\n' \
		"$device" "$MEMKIT_KERNEL" \
		"$(qemu-system-x86_64 --version | sed -n 's/^QEMU emulator version \([^ ]*\).*/\1/p')" \
		"$mem" >>"$out/guest-$device.raw"
	return "$rc"
}

if [[ $skip != *,guest,* ]] || [[ $skip != *,memmap,* ]] || [[ $skip != *,ckpt,* ]] ||
	[[ $skip != *,rmem,* ]]; then
	kdir=$(scripts/build.sh kdir) || die "the production kernel is not available"
	ko=$(scripts/build.sh module) || die "building memkit.ko failed"
	step "packing the bench initramfs"
	# mkfs.ext4 (e2fsprogs; busybox has no ext4): the PMDK peer's pool lives on ext4 -o dax.
	# MEMKIT_INSTALL_KDIR: the module also installed as `make install` does, for the
	# selftests' job (modprobe memkit).
	MEMKIT_INSTALL_KDIR=$kdir scripts/initramfs.sh "$out/initramfs.cpio" "$ko" "$bin/memkit" "$bin/memkit-selftest" \
		"$bin/memkit-bench" "$(command -v mkfs.ext4 || echo /sbin/mkfs.ext4)" || die "packing the initramfs failed"
	# A module that only works with the debugging options on is a bug: the guest
	# selftests first, on this kernel (MEMKIT_BENCH_SELFTEST=0 skips them).
	if [ "${MEMKIT_BENCH_SELFTEST:-1}" = 1 ]; then
		step "guest selftests on the $MEMKIT_KERNEL kernel"
		rm -f "$out/selftest-pmem0.img"
		if ! scripts/vm.sh --kernel "$kdir/arch/x86/boot/bzImage" --initrd "$out/initramfs.cpio" \
			--job selftests/jobs/check.sh --logdir "$out/selftest" --timeout 1800 \
			--pmem "$out/selftest-pmem0.img:256M" >"$out/selftest.tap"; then
			grep -E '^not ok|FAIL' "$out/selftest.tap" >&2
			die "the guest selftests fail on the $MEMKIT_KERNEL kernel (see $out/selftest.tap)"
		fi
		step "guest selftests: $(grep -c '^ok ' "$out/selftest.tap") passed on the $MEMKIT_KERNEL kernel"
	fi
fi

if [[ $skip != *,guest,* ]]; then
	# /dev/pmem1, a second virtio-pmem device, carries PMDK's pool (ext4 -o dax).
	step "guest: virtio-pmem, coalesced vs strict, 1/2/4 threads, and PMDK at 1 and 4 ($guest_rounds rounds of ${guest_secs}s)"
	rm -f "$out/pmem0.img" "$out/pmem1.img"
	guest_boot virtio-pmem "$out/guest" \
		"MEMKIT_BENCH_DEVICE=virtio-pmem MEMKIT_BENCH_ROUNDS=$guest_rounds MEMKIT_BENCH_SECS=$guest_secs MEMKIT_BENCH_THREADS=1,2,4 MEMKIT_BENCH_WORKLOADS=1x64B,8x64B,1x4KiB MEMKIT_BENCH_PMDK_DEV=pmem1 MEMKIT_BENCH_PMDK_THREADS=1,4" \
		--pmem "$out/pmem0.img:256M" --pmem "$out/pmem1.img:128M" || failed+=(guest)
fi

if [[ $skip != *,memmap,* ]]; then
	# memmap=64M!512M makes the guest kernel treat 64 MiB of its RAM at 512 MiB as
	# legacy persistent memory: /dev/pmem0 with a synchronous DAX mapping; the second
	# range, /dev/pmem1, carries PMDK's pool on ext4 -o dax (MAP_SYNC: libpmem flushes
	# with CPU instructions). No virtio-pmem device on this boot.
	step "guest: memmap pmem (synchronous DAX), memkit vs PMDK, 1 and 4 threads ($guest_rounds rounds of ${guest_secs}s)"
	guest_boot memmap-pmem "$out/guest-memmap" \
		"MEMKIT_BENCH_DEVICE=memmap-pmem MEMKIT_BENCH_ROUNDS=$guest_rounds MEMKIT_BENCH_SECS=$guest_secs MEMKIT_BENCH_THREADS=1,4 MEMKIT_BENCH_WORKLOADS=1x64B,8x64B,1x4KiB MEMKIT_BENCH_PMDK_DEV=pmem1" \
		--append 'memmap=64M!512M memmap=128M!640M' || failed+=(memmap)
fi

if [[ $skip != *,ckpt,* ]] && { [[ $skip != *,ckpt-collect,* ]] || [[ $skip != *,ckpt-run,* ]]; }; then
	collect=1 run=1
	[[ $skip == *,ckpt-collect,* ]] && collect=0
	[[ $skip == *,ckpt-run,* ]] && run=0
	# 3G: a 1 GiB region or 1 GiB of anonymous memory at a time (each freed before the
	# next), the debug kernel's KASAN shadow and the initramfs; ckpt-run's replicas
	# (tmpfs) need far less.
	step "guest: checkpoints — collect + clear, memkit vs soft-dirty vs PAGEMAP_SCAN ($ckpt_sizes; $ckpt_rounds rounds of $ckpt_iters iterations); the checkpointer: rate, pre-copy, diffs"
	guest_boot --job selftests/jobs/bench-ckpt.sh --mem 3G ckpt "$out/guest-ckpt" \
		"MEMKIT_BENCH_SIZES=$ckpt_sizes MEMKIT_BENCH_DIRTY=0.1,1,10 MEMKIT_BENCH_ROUNDS=$ckpt_rounds MEMKIT_BENCH_ITERS=$ckpt_iters MEMKIT_BENCH_COLLECT=$collect MEMKIT_BENCH_RUN=$run MEMKIT_BENCH_RUN_ARGS='$ckpt_run_args'" ||
		failed+=(ckpt)
fi

if [[ $skip != *,rmem,* ]]; then
	step "guest: remote memory — access patterns per policy and latency, against Linux swap on null_blk in a memory cgroup; over NBD against swap over NBD"
	guest_boot --job selftests/jobs/bench-rmem.sh --mem 2G rmem "$out/guest-rmem" "$rmem_settings" \
		--append null_blk.nr_devices=0 || failed+=(rmem)
fi

step "results"
"$bin/memkit-bench" report "$out"/*.raw --out "$out/results.jsonl" | tee "$out/table.txt"
echo "results: $out/results.jsonl ($(wc -l <"$out/results.jsonl") lines); raw measurements: $out/*.raw"
if [ ${#failed[@]} -gt 0 ]; then
	die "failed: ${failed[*]} (the results above lack them)"
fi
