# Guest job of `make bench` (scripts/bench.sh), step "ckpt": memkit-bench ckpt-collect,
# the collect + clear of /dev/memkit-ckpt against soft-dirty and PAGEMAP_SCAN, every
# variant in this one boot.  Runs under the busybox shell of the initramfs; the host
# prepends the settings:
#   MEMKIT_BENCH_SIZES   region sizes, e.g. 64M,256M,1G
#   MEMKIT_BENCH_DIRTY   percentages of the pages written, e.g. 0.1,1,10
#   MEMKIT_BENCH_ROUNDS  rounds (each runs every variant, the order alternating)
#   MEMKIT_BENCH_ITERS   measured iterations per point and round
set -u
sizes=${MEMKIT_BENCH_SIZES:-64M,256M,1G}
dirty=${MEMKIT_BENCH_DIRTY:-0.1,1,10}
rounds=${MEMKIT_BENCH_ROUNDS:-3}
iters=${MEMKIT_BENCH_ITERS:-5}

echo "bench: Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"
if ! insmod /lib/memkit/memkit.ko; then
	echo "bench: ERROR: loading memkit.ko failed"
	dmesg | grep memkit | tail -n 5
	exit 1
fi
fail=0
memkit-bench ckpt-collect --sizes "$sizes" --dirty "$dirty" --rounds "$rounds" \
	--iters "$iters" --where guest/ckpt || fail=1
rmmod memkit || fail=1
exit $fail
