# Guest job of `make check`: load memkit.ko and run every in-guest selftest (KTAP).
# Runs under the busybox shell of the initramfs; see scripts/initramfs.sh.
set -u
# Loaded as a user would, from where `make install` put it (initramfs.sh installs it).
modprobe memkit || { echo "modprobe memkit failed"; exit 1; }
memkit-selftest ${memkit_filter:-} ${memkit_filter_arg:-} --module /lib/memkit/memkit.ko --timeout "${MEMKIT_TEST_TIMEOUT:-240}"
