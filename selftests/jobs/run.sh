# Guest job of `make run`, first boot: what memkit does (journal, checkpoint tracking,
# a checkpointed program verified against its replica, a scan of a remote-memory
# region with and without prefetch, regions served over TCP by memkit rmem server and
# by an NBD server), then a journal under load
# that the host kills (scripts/demo.sh).
set -u
say() { printf '\n$ %s\n' "$*"; }
echo "memkit demo on Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
say "ls -l /dev/pmem0   # the file-backed virtio-pmem device"
ls -l /dev/pmem0
echo "DAX: $(cat /sys/block/pmem0/queue/dax 2>/dev/null || echo n/a)," \
	"size $(($(cat /sys/block/pmem0/size 2>/dev/null || echo 0) / 2048)) MiB"
say "insmod memkit.ko"
insmod /lib/memkit/memkit.ko || exit 1
say "ls -l /dev/memkit-*"
ls -l /dev/memkit-*
say "memkit version"
memkit version || exit 1
say "memkit journal attach /dev/pmem0 --format --mj-count 16 --mj-size 4096"
memkit journal attach /dev/pmem0 --format --mj-count 16 --mj-size 4096 || exit 1
dmesg | grep 'memkit: journal' | tail -n 1 | sed 's/^\[[^]]*\] //'
say "memkit journal tx --range 65536:str:hello --range 73728:str:world"
memkit journal tx --range 65536:str:hello --range 73728:str:world || exit 1
say "memkit journal read 65536 5; memkit journal read 73728 5"
memkit journal read 65536 5 && memkit journal read 73728 5
say "memkit workload ckpt-demo --pages 64 --rounds 5   # dirty tracking: collect, diffs, a replica"
memkit workload ckpt-demo --pages 64 --rounds 5 || exit 1
say "memkit ckpt backup --once --dir /tmp/replica --listen 127.0.0.1:7070 &   # a backup on loopback"
memkit ckpt backup --once --dir /tmp/replica --listen 127.0.0.1:7070 >/tmp/backup.log 2>&1 &
sleep 1
say "memkit ckpt run --backup 127.0.0.1:7070 --bytes 2M --count 10 --precopy --then stop -- memkit workload ckpt-writer --threads 2 --rate 300 --pattern zipf"
memkit ckpt run --backup 127.0.0.1:7070 --bytes 2M --count 10 --precopy --then stop -- \
	memkit workload ckpt-writer --threads 2 --rate 300 --pattern zipf 2>/dev/null | tee /tmp/run.txt || exit 1
pid=$(sed -n 's/.* of process \([0-9]*\) .*/\1/p' /tmp/run.txt)
say "memkit ckpt verify --pid $pid --dir /tmp/replica   # the stopped writer vs the replica, byte for byte"
memkit ckpt verify --pid "$pid" --dir /tmp/replica || exit 1
kill -9 "$pid"
say "memkit workload rmem-run --pages 512 --budget 128 --policy none --pattern seq   # remote memory: a scan, every page a sync fault"
memkit workload rmem-run --pages 512 --budget 128 --policy none --pattern seq --ops 512 || exit 1
say "memkit workload rmem-run --pages 512 --budget 128 --policy ptline --pattern seq   # the same scan, prefetching each fault's PTE line"
memkit workload rmem-run --pages 512 --budget 128 --policy ptline --pattern seq --ops 512 || exit 1
say "memkit rmem server --listen 127.0.0.1:7071 & memkit rmem agent --server 127.0.0.1:7071 --policy window -- memkit workload rmem-run --inherit --pattern random   # pages from a TCP memory server"
memkit rmem server --listen 127.0.0.1:7071 --pages 512 >/dev/null 2>&1 &
srv=$!
sleep 1
memkit rmem agent --server 127.0.0.1:7071 --pages 512 --budget 64 --policy window -- \
	memkit workload rmem-run --inherit --pattern random --ops 200 --write-every 4 || exit 1
{ kill "$srv" && wait "$srv"; } 2>/dev/null
say "nbdkit -i 127.0.0.1 -p 10809 memory 2M --run 'memkit rmem agent --nbd nbd://127.0.0.1 --policy trend -- memkit workload rmem-run --inherit --pattern seq'   # pages from an NBD server (RAM)"
# --run: nbdkit starts the command once it listens, and exits when it does.
nbdkit -i 127.0.0.1 -p 10809 memory 2M --run 'memkit rmem agent --nbd nbd://127.0.0.1 --pages 512 --budget 128 --policy trend --deadline-us 20000 --report /tmp/nbd.json -- memkit workload rmem-run --inherit --pattern seq --ops 512' || exit 1
echo "agent: $(cat /tmp/nbd.json)"
say "memkit rmem stats"
memkit rmem stats
say "memkit-selftest --journal-crash-run 2 4   # two writers, 4 slots each, until the host kills the VM"
exec memkit-selftest --journal-crash-run 2 4 | awk '/^ACK/ { n++; if (n % 100 == 0) print "  ... " n " transactions acknowledged, last: " $0; fflush(); next } { print; fflush() }'
