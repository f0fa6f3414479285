# Guest job of `make run`, second boot: the journal recovers at module load.
set -u
say() { printf '\n$ %s\n' "$*"; }
say "insmod memkit.ko journal_dev=/dev/pmem0   # attach at load: recovery"
insmod /lib/memkit/memkit.ko journal_dev=/dev/pmem0 || exit 1
dmesg | grep 'memkit: journal' | tail -n 1 | sed 's/^\[[^]]*\] //'
say "memkit journal status"
memkit journal status || exit 1
say "memkit-selftest --journal-crash-run 2 4   # prints each writer's slots: all equal = atomic"
timeout 2 memkit-selftest --journal-crash-run 2 4 | grep -E '^(SLOTS|RECOVERY)'
say "rmmod memkit"
rmmod memkit && echo "(unloaded; the journal was detached and synced)"
exit 0
