# Guest job of `make check`: load memkit.ko and run every in-guest selftest (KTAP).
# Runs under the busybox shell of the initramfs; see scripts/initramfs.sh.
set -u
# Loaded as a user would, from where `make install` put it (initramfs.sh installs it).
modprobe memkit || { echo "modprobe memkit failed"; exit 1; }
# Each case's limit catches a hang, not a slow host: on a loaded 2-core host under TCG
# the debug kernel ran fuzz_ioctl in 225 s and rmem_agent_end_to_end past 240 s (both
# 12-75 s on the production kernel); 600 s leaves room for that.
memkit-selftest ${memkit_filter:-} ${memkit_filter_arg:-} ${memkit_shard:-} ${memkit_shard_arg:-} --module /lib/memkit/memkit.ko --timeout "${MEMKIT_TEST_TIMEOUT:-600}"
