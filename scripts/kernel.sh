#!/usr/bin/env bash
# Builds one of memkit's kernels once and prints its build directory (KDIR).
#
# usage: kernel.sh [--cached] [debug|production]
#   --cached    print the directory only if that kernel is already built; fail
#               otherwise (nothing is set up or built)
#   debug       the test kernel of `make check` and `make run` (default): the base
#               fragment selftests/config plus selftests/config.debug (KASAN, lockdep,
#               kmemleak, ...)
#   production  the kernel of `make bench`: selftests/config plus
#               selftests/config.production (no debugging options)
#
# The source is linux-source-7.3 from Debian, unpacked under $MEMKIT_CACHE/src; each
# build lives under $MEMKIT_CACHE/kernel/<package version>-<hash>, where the hash covers
# the two fragments (selftests/config, the base both kernels share, then the flavour's
# overlay: for debug, their concatenation is the single fragment of earlier versions,
# so its cache stays valid), the flavour's name for any flavour but debug, and the
# compilers.  A finished build is
# marked and reused; a second run prints the directory at once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cached_only=0
if [ "${1:-}" = --cached ]; then
	cached_only=1
	shift
fi
flavour=${1:-debug}
case $flavour in
debug | production) ;;
*) die "usage: kernel.sh [debug|production]" ;;
esac
frags=("$MEMKIT_TOP/selftests/config" "$MEMKIT_TOP/selftests/config.$flavour")
# Without the toolchain or the source package nothing can have been built.
if [ "$cached_only" = 1 ] && { [ ! -x "$BINDGEN" ] || ! dpkg-query -W "linux-source-$KERNEL_SERIES" >/dev/null 2>&1; }; then
	exit 1
fi
pkgver=$(dpkg-query -W -f='${Version}' "linux-source-$KERNEL_SERIES" 2>/dev/null) ||
	die "linux-source-$KERNEL_SERIES is not installed (run: make setup)"
tarball=/usr/src/linux-source-$KERNEL_SERIES.tar.xz
[ -f "$tarball" ] || die "$tarball is missing"

key=$( {
	cat "${frags[@]}"
	[ "$flavour" = debug ] || echo "flavour $flavour"
	/usr/bin/rustc --version
	clang-19 --version | head -n 1
	"$BINDGEN" --version
} | sha256sum | cut -c1-12)
src=$MEMKIT_CACHE/src/linux-${pkgver//[^A-Za-z0-9.+-]/_}
out=$MEMKIT_CACHE/kernel/${pkgver//[^A-Za-z0-9.+-]/_}-$key
if [ "$cached_only" = 1 ]; then
	[ -f "$out/.memkit-built" ] || exit 1
	echo "$out"
	exit 0
fi
# A finished build needs no lock: `make check` does not wait for the build of another
# kernel (`make bench`'s production one, say).
if [ -f "$out/.memkit-built" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$MEMKIT_CACHE/src" "$MEMKIT_CACHE/kernel"

# One build at a time per cache: a second caller waits for the first.
exec 9>"$MEMKIT_CACHE/kernel/.lock"
flock 9

if [ -f "$out/.memkit-built" ]; then
	echo "$out"
	exit 0
fi

if [ ! -f "$src/.memkit-unpacked" ]; then
	step "unpacking linux-source $pkgver"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -C "$src.tmp" -xf "$tarball"
	mv "$src.tmp/linux-source-$KERNEL_SERIES" "$src"
	rmdir "$src.tmp"
	touch "$src/.memkit-unpacked"
fi

mkdir -p "$out"
log=$out/build.log
step "configuring the $flavour kernel $pkgver (tinyconfig + selftests/config + config.$flavour) in $out"
logged "$log" make -C "$src" O="$out" "${KMAKE_ARGS[@]}" rustavailable
logged "$log" make -C "$src" O="$out" "${KMAKE_ARGS[@]}" tinyconfig
logged "$log" "$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${frags[@]}"
logged "$log" make -C "$src" O="$out" "${KMAKE_ARGS[@]}" olddefconfig

# Every option the fragments ask for must have survived olddefconfig (the last word
# on an option is the one that counts, as in merge_config.sh).
lost=$(grep -hE '^CONFIG_[A-Z0-9_]+=' "${frags[@]}" | tac | awk -F= '!seen[$1]++' | while IFS= read -r line; do
	opt=${line%%=*}
	val=${line#*=}
	if [ "$val" = n ]; then
		if grep -q "^$opt=" "$out/.config"; then echo "$line"; fi
	else
		if ! grep -qx "$line" "$out/.config"; then echo "$line"; fi
	fi
done)
[ -z "$lost" ] || die "options of selftests/config{,.$flavour} not satisfied (missing dependency?): $(echo $lost)"
echo "$flavour" >"$out/.memkit-flavour"

step "building the $flavour kernel with $(nproc) jobs (5-10 minutes; log: $log)"
t0=$(date +%s)
logged "$log" make -C "$src" O="$out" "${KMAKE_ARGS[@]}" -j"$(nproc)" bzImage modules
echo "$(($(date +%s) - t0))" >"$out/.memkit-build-seconds"
touch "$out/.memkit-built"
step "kernel built in $(cat "$out/.memkit-build-seconds") s"
echo "$out"
