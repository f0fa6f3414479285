# Guest job of `make run`: a short demo of what memkit does.
set -u
say() { printf '\n$ %s\n' "$*"; }
echo "memkit demo on Linux $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
say "ls -l /dev/pmem*   # the file-backed virtio-pmem device"
ls -l /dev/pmem*
echo "DAX: $(cat /sys/block/pmem0/queue/dax 2>/dev/null || echo n/a)," \
	"size $(($(cat /sys/block/pmem0/size 2>/dev/null || echo 0) / 2048)) MiB"
say "insmod memkit.ko"
insmod /lib/memkit/memkit.ko || exit 1
dmesg | grep -i memkit | tail -n 3
say "ls -l /dev/memkit-*"
ls -l /dev/memkit-*
say "memkit version"
memkit version || exit 1
say "memkit --json version --device journal"
memkit --json version --device journal || exit 1
say "rmmod memkit"
rmmod memkit || exit 1
ls /dev/memkit-* 2>/dev/null || echo "(devices gone)"
