# Guest job of `make bench` (scripts/bench.sh), step "rmem": the access-pattern
# program (`memkit workload rmem-run`) over a region 4x its local budget, per emulated latency,
# pattern and prefetch policy; and the same program on anonymous memory in a memory
# cgroup limited to the same budget, swapping to a RAM-backed null_blk device with the
# same per-request latency (swap VMA readahead on: the Linux peer). One JSON line per
# run ({"rmem": {...}}).
# Runs under the busybox shell of the initramfs; the host prepends the settings:
#   MEMKIT_BENCH_PAGES     region pages (the budget is a quarter)
#   MEMKIT_BENCH_LATS      emulated latencies, µs, e.g. 20,100
#   MEMKIT_BENCH_PATTERNS  e.g. seq,stride:2,stride:4,stride:16,random,zipf,chase
#   MEMKIT_BENCH_POLICIES  e.g. none,ptline,ptline-history,window,trend
#   MEMKIT_BENCH_PASSES    accesses = passes x pages
#   MEMKIT_BENCH_WIDE      policies also run on seq with a 32-page window (degree 31,
#                          the peer with page-cluster 5), e.g. window,trend; empty: none
#   MEMKIT_BENCH_NBD_PATTERNS  patterns run over NBD (memkit's agent against swap on
#                          /dev/nbd0, nbdkit on loopback); empty: none
#   MEMKIT_BENCH_NBD_POLICIES  the agent's policies over NBD
set -u
pages=${MEMKIT_BENCH_PAGES:-16384}
lats=${MEMKIT_BENCH_LATS:-20,100}
patterns=${MEMKIT_BENCH_PATTERNS:-seq,stride:2,stride:4,stride:16,random,zipf,chase}
policies=${MEMKIT_BENCH_POLICIES:-none,ptline,ptline-history,window,trend}
passes=${MEMKIT_BENCH_PASSES:-2}
budget=$((pages / 4))
ops=$((pages * passes))
# The peer's window: Linux swap VMA readahead reads at most 2^page-cluster pages
# (8 by default); memkit's degree is set to the same: 7 prefetches + the fault.
degree=7
wide=${MEMKIT_BENCH_WIDE-window,trend}
nbd_patterns=${MEMKIT_BENCH_NBD_PATTERNS-seq,stride:2,stride:4,stride:16,random}
nbd_policies=${MEMKIT_BENCH_NBD_POLICIES-none,trend}
cluster=$(cat /proc/sys/vm/page-cluster)

echo "bench: Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) " MiB" }' /proc/meminfo)"
echo "bench: rmem: $pages pages, budget $budget, $ops accesses per run, latencies $lats us"
echo "bench: swap: vma_ra_enabled=$(cat /sys/kernel/mm/swap/vma_ra_enabled) page-cluster=$(cat /proc/sys/vm/page-cluster)"
if ! insmod /lib/memkit/memkit.ko; then
	echo "bench: ERROR: loading memkit.ko failed"
	exit 1
fi
fail=0
mkdir -p /sys/kernel/config /sys/fs/cgroup
mount -t configfs none /sys/kernel/config || fail=1
mount -t cgroup2 none /sys/fs/cgroup || fail=1
echo +memory >/sys/fs/cgroup/cgroup.subtree_control || fail=1
cg=/sys/fs/cgroup/peer
mkdir -p $cg

# What the program itself costs the cgroup (binary, stack, heap) with a 1-page
# region: added to the peer's limit so that both get `budget` pages for data.
echo max >$cg/memory.max
sh -c "echo \$\$ >$cg/cgroup.procs; exec memkit --json workload rmem-run --anon --pages 1 --budget 1 --ops 1 >/dev/null" || fail=1
slack=$(cat $cg/memory.peak)
limit=$((budget * 4096 + slack))
echo "bench: peer cgroup: memory.max = $budget pages + $slack bytes of the program's own"

for lat in $(echo "$lats" | tr , ' '); do
	# A RAM-backed null_blk swap device completing every request after `lat` µs.
	nb=/sys/kernel/config/nullb/swap$lat
	mkdir $nb || fail=1
	echo 1 >$nb/memory_backed
	echo 2 >$nb/irqmode
	echo $((lat * 1000)) >$nb/completion_nsec
	echo $(((pages * 4096 * 2) / 1048576 + 16)) >$nb/size
	echo 4096 >$nb/blocksize
	echo 1 >$nb/power || fail=1
	dev=/dev/swap$lat
	[ -b $dev ] || { echo "bench: ERROR: no $dev"; fail=1; continue; }
	mkswap $dev >/dev/null && swapon $dev || fail=1
	for pat in $(echo "$patterns" | tr , ' '); do
		echo max >$cg/memory.swap.max
		echo $limit >$cg/memory.max
		line=$(sh -c "echo \$\$ >$cg/cgroup.procs; exec memkit --json workload rmem-run --anon --pages $pages --budget $budget --lat-us $lat --pattern $pat --ops $ops")
		[ -n "$line" ] && echo "{\"rmem\":$line}" || fail=1
		echo max >$cg/memory.max
		for pol in $(echo "$policies" | tr , ' '); do
			line=$(memkit --json workload rmem-run --pages $pages --budget $budget --policy $pol \
				--degree $degree --lat-us $lat --page-ns 0 --deadline-us $((lat * 10)) \
				--inflight 64 --pattern $pat --ops $ops)
			[ -n "$line" ] && echo "{\"rmem\":$line}" || fail=1
		done
	done
	# A sequential scan with a 32-page window on both sides: one synchronous fault
	# per window is the floor of prefetching from synchronous faults, so coverage
	# is at most 7/8 with 8 pages and 31/32 with 32.
	if [ -n "$wide" ]; then
		echo 5 >/proc/sys/vm/page-cluster
		echo max >$cg/memory.swap.max
		echo $limit >$cg/memory.max
		line=$(sh -c "echo \$\$ >$cg/cgroup.procs; exec memkit --json workload rmem-run --anon --pages $pages --budget $budget --lat-us $lat --pattern seq --ops $ops")
		[ -n "$line" ] && echo "{\"rmem\":$line}" || fail=1
		echo max >$cg/memory.max
		echo "$cluster" >/proc/sys/vm/page-cluster
		for pol in $(echo "$wide" | tr , ' '); do
			line=$(memkit --json workload rmem-run --pages $pages --budget $budget --policy $pol \
				--degree 31 --lat-us $lat --page-ns 0 --deadline-us $((lat * 10)) \
				--inflight 64 --pattern seq --ops $ops)
			[ -n "$line" ] && echo "{\"rmem\":$line}" || fail=1
		done
	fi
	swapoff $dev || fail=1
	echo 0 >$nb/power
	rmdir $nb
done

# Over NBD: memkit's agent (`memkit rmem agent --nbd`) against swap on an NBD device
# (nbd-client, /dev/nbd0), both served by nbdkit's memory plugin on the guest's
# loopback: two instances of the same server, one export each (the swap device's,
# twice the region, and the region's), so that neither overwrites the other's pages;
# same budget, same memory cgroup limit for the peer. The latency is the network
# path's, not emulated: the rows carry "backend": "nbd:nbdkit" and no lat_us of
# their own (0).
if [ -n "$nbd_patterns" ]; then
	nbdkit -i 127.0.0.1 -p 10809 memory $((pages * 4096 * 2)) || fail=1
	nbdkit -i 127.0.0.1 -p 10810 memory $((pages * 4096)) || fail=1
	nbd-client 127.0.0.1 10809 /dev/nbd0 -b 4096 >/dev/null 2>&1 || { echo "bench: ERROR: nbd-client"; fail=1; }
	mkswap /dev/nbd0 >/dev/null && swapon /dev/nbd0 || fail=1
	nbd() { sed 's/^{/{"backend":"nbd:nbdkit",/; s/"lat_us":[0-9]*/"lat_us":0/'; }
	for pat in $(echo "$nbd_patterns" | tr , ' '); do
		echo max >$cg/memory.swap.max
		echo $limit >$cg/memory.max
		line=$(sh -c "echo \$\$ >$cg/cgroup.procs; exec memkit --json workload rmem-run --anon --pages $pages --budget $budget --pattern $pat --ops $ops")
		[ -n "$line" ] && echo "{\"rmem\":$(echo "$line" | nbd)}" || fail=1
		echo max >$cg/memory.max
		for pol in $(echo "$nbd_policies" | tr , ' '); do
			line=$(memkit --json rmem agent --nbd nbd://127.0.0.1:10810 --pages $pages --budget $budget \
				--policy $pol --degree $degree --deadline-us 20000 --inflight 64 --report /tmp/nbd.json -- \
				memkit --json workload rmem-run --inherit --pattern $pat --ops $ops)
			[ -n "$line" ] && echo "{\"rmem\":$(echo "$line" | nbd)}" || fail=1
			echo "bench: nbd agent $pat $pol: $(cat /tmp/nbd.json)"
		done
	done
	# The sequential scan with 32-page windows over NBD too (accuracy and coverage).
	if [ -n "$wide" ]; then
		echo 5 >/proc/sys/vm/page-cluster
		echo max >$cg/memory.swap.max
		echo $limit >$cg/memory.max
		line=$(sh -c "echo \$\$ >$cg/cgroup.procs; exec memkit --json workload rmem-run --anon --pages $pages --budget $budget --pattern seq --ops $ops")
		[ -n "$line" ] && echo "{\"rmem\":$(echo "$line" | nbd)}" || fail=1
		echo max >$cg/memory.max
		echo "$cluster" >/proc/sys/vm/page-cluster
	fi
	for pol in $(echo "$wide" | tr , ' '); do
		line=$(memkit --json rmem agent --nbd nbd://127.0.0.1:10810 --pages $pages --budget $budget \
			--policy $pol --degree 31 --deadline-us 20000 --inflight 64 --report /tmp/nbd.json -- \
			memkit --json workload rmem-run --inherit --pattern seq --ops $ops)
		[ -n "$line" ] && echo "{\"rmem\":$(echo "$line" | nbd)}" || fail=1
		echo "bench: nbd agent seq $pol w32: $(cat /tmp/nbd.json)"
	done
	swapoff /dev/nbd0 || fail=1
	nbd-client -d /dev/nbd0 >/dev/null 2>&1
fi
memkit rmem stats
rmmod memkit || fail=1
exit $fail
