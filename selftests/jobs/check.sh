# Guest job of `make check`: load memkit.ko and run every in-guest selftest (KTAP).
# Runs under the busybox shell of the initramfs; see scripts/initramfs.sh.
set -u
insmod /lib/memkit/memkit.ko || { echo "insmod memkit.ko failed"; exit 1; }
memkit-selftest ${memkit_filter:-} ${memkit_filter_arg:-} --module /lib/memkit/memkit.ko --timeout "${MEMKIT_TEST_TIMEOUT:-240}"
