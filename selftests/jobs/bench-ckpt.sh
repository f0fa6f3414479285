# Guest job of `make bench` (scripts/bench.sh), step "ckpt", every part in this one
# boot: memkit-bench ckpt-collect, the collect + clear of /dev/memkit-ckpt against
# soft-dirty and PAGEMAP_SCAN; then memkit-bench ckpt-run, the checkpointer through
# the memkit CLI (backup on loopback, writer, `memkit ckpt run`): checkpoints per
# second, time stopped with and without pre-copy, bytes with and without diffs.
# Runs under the busybox shell of the initramfs; the host prepends the settings:
#   MEMKIT_BENCH_SIZES     region sizes, e.g. 64M,256M,1G
#   MEMKIT_BENCH_DIRTY     percentages of the pages written, e.g. 0.1,1,10
#   MEMKIT_BENCH_ROUNDS    rounds (each runs every variant, the order alternating)
#   MEMKIT_BENCH_ITERS     measured iterations per point and round
#   MEMKIT_BENCH_COLLECT   0: no ckpt-collect
#   MEMKIT_BENCH_RUN       0: no ckpt-run
#   MEMKIT_BENCH_RUN_ARGS  more options of memkit-bench ckpt-run (counts, rounds)
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
if [ "${MEMKIT_BENCH_COLLECT:-1}" != 0 ]; then
	memkit-bench ckpt-collect --sizes "$sizes" --dirty "$dirty" --rounds "$rounds" \
		--iters "$iters" --where guest/ckpt || fail=1
fi
if [ "${MEMKIT_BENCH_RUN:-1}" != 0 ]; then
	# Replicas go to /tmp (tmpfs: memory), one at a time.
	# shellcheck disable=SC2086
	memkit-bench ckpt-run --memkit /bin/memkit --dir /tmp --verify --where guest/ckpt \
		${MEMKIT_BENCH_RUN_ARGS:-} || fail=1
fi
rmmod memkit || fail=1
exit $fail
