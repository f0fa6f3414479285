# Guest job of `make run`, first boot: what memkit does, then a journal under load
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
say "memkit ckpt demo --pages 64 --rounds 5   # dirty tracking: collect, diffs, a replica"
memkit ckpt demo --pages 64 --rounds 5 || exit 1
say "memkit-selftest --journal-crash-run 2 4   # two writers, 4 slots each, until the host kills the VM"
exec memkit-selftest --journal-crash-run 2 4 | awk '/^ACK/ { n++; if (n % 100 == 0) print "  ... " n " transactions acknowledged, last: " $0; fflush(); next } { print; fflush() }'
