# Guest job of `make bench` (scripts/bench.sh): memkit-bench guest against
# /dev/memkit-journal on /dev/pmem0, rounds alternating the commit modes (the module is
# reloaded with commit_mode=coalesced or strict and the journal formatted afresh).
# Runs under the busybox shell of the initramfs; the host prepends the settings:
#   MEMKIT_BENCH_DEVICE     virtio-pmem | memmap-pmem (how results name the device)
#   MEMKIT_BENCH_ROUNDS     rounds (each runs both modes)
#   MEMKIT_BENCH_SECS       seconds per measurement
#   MEMKIT_BENCH_THREADS    thread counts, e.g. 1,2,4
#   MEMKIT_BENCH_WORKLOADS  e.g. 1x64B,8x64B,1x4KiB
#   MEMKIT_BENCH_REGION     bytes of the data region the transactions scatter over
#   MEMKIT_BENCH_PMDK_DEV   a second pmem block device (e.g. pmem1): formatted ext4,
#                           mounted -o dax, and PMDK's libpmemobj runs the same
#                           transactions on a pool there in every round (the peer)
#   MEMKIT_BENCH_PMDK_THREADS  its thread counts (default: MEMKIT_BENCH_THREADS)
set -u
device=${MEMKIT_BENCH_DEVICE:-virtio-pmem}
rounds=${MEMKIT_BENCH_ROUNDS:-3}
secs=${MEMKIT_BENCH_SECS:-1}
threads=${MEMKIT_BENCH_THREADS:-1,2,4}
workloads=${MEMKIT_BENCH_WORKLOADS:-1x64B,8x64B,1x4KiB}
region=${MEMKIT_BENCH_REGION:-32M}
pmdk_dev=${MEMKIT_BENCH_PMDK_DEV:-}
pmdk_threads=${MEMKIT_BENCH_PMDK_THREADS:-$threads}

# Which pmem this is: the device path says virtio or e820 (memmap=), queue/dax whether
# the block layer offers DAX; the journal's status reports sync_dax.
echo "bench: Linux $(uname -r), $(nproc) CPUs, $(awk '/model name/ { sub(/.*: /, ""); print; exit }' /proc/cpuinfo)"
echo "bench: /dev/pmem0 is $(readlink -f /sys/block/pmem0/device 2>/dev/null || echo '?')," \
	"$(($(cat /sys/block/pmem0/size 2>/dev/null || echo 0) / 2048)) MiB, queue/dax=$(cat /sys/block/pmem0/queue/dax 2>/dev/null || echo n/a)"

load() {
	rmmod memkit 2>/dev/null
	insmod /lib/memkit/memkit.ko commit_mode="$1" || return 1
	# --force: from the second load on, the device holds the previous load's journal.
	memkit journal attach /dev/pmem0 --format --force --mj-count 64 --mj-size 65536 >/dev/null || return 1
}

if [ -n "$pmdk_dev" ]; then
	echo "bench: /dev/$pmdk_dev is $(readlink -f /sys/block/$pmdk_dev/device 2>/dev/null || echo '?')," \
		"$(($(cat /sys/block/$pmdk_dev/size 2>/dev/null || echo 0) / 2048)) MiB: ext4 -o dax for PMDK"
	mkdir -p /mnt/pmdk
	if ! mkfs.ext4 -q -F -b 4096 "/dev/$pmdk_dev" || ! mount -t ext4 -o dax "/dev/$pmdk_dev" /mnt/pmdk; then
		echo "bench: ERROR: formatting or DAX-mounting /dev/$pmdk_dev failed"
		dmesg | tail -n 5
		exit 1
	fi
	grep " /mnt/pmdk " /proc/mounts | sed 's/^/bench: /'
fi

fail=0
r=0
while [ "$r" -lt "$rounds" ]; do
	# Alternate which mode goes first, so that drift over the run hits both alike.
	if [ $((r % 2)) -eq 0 ]; then order="coalesced strict"; else order="strict coalesced"; fi
	for mode in $order; do
		if ! load "$mode"; then
			echo "bench: ERROR: loading memkit.ko commit_mode=$mode and attaching /dev/pmem0 failed"
			dmesg | grep memkit | tail -n 5
			exit 1
		fi
		if [ "$r" -eq 0 ]; then
			memkit journal status | grep -iE 'mode|sync' | sed 's/^/bench: /'
			# Which CRC-32C code the module chose at load, and the journal's attach line.
			dmesg | grep -E 'memkit: (crc32c|journal: attached)' | tail -n 2 | sed 's/^/bench: /'
		fi
		memkit-bench guest --round "$r" --device "$device" --expect-mode "$mode" \
			--secs "$secs" --threads "$threads" --workloads "$workloads" --region "$region" || fail=1
		memkit journal detach >/dev/null || fail=1
	done
	if [ -n "$pmdk_dev" ]; then
		memkit-bench guest-pmdk --dir /mnt/pmdk --round "$r" --device "$device" \
			--secs "$secs" --threads "$pmdk_threads" --workloads "$workloads" --region "$region" || fail=1
	fi
	r=$((r + 1))
done
rmmod memkit
exit $fail
