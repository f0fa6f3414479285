# Guest job of the journal crash test (scripts/journal-crash.sh): attach the journal
# at module load (recovery runs there), print what recovery did and what the slots
# hold, then write until the host kills the VM. MEMKIT_CRASH_ARGS is set by the host.
set -u
insmod /lib/memkit/memkit.ko ${MEMKIT_CRASH_INSMOD:-} || { echo "ERROR insmod failed"; exit 1; }
dmesg | grep 'memkit: journal:' | tail -n 2
exec memkit-selftest --journal-crash-run $MEMKIT_CRASH_ARGS
