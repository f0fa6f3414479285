#!/usr/bin/env bash
# Builds what is missing, step by step, and prints the path of what was asked for.
#
# usage: build.sh kdir|module|tools|initramfs|deps-save
#   kdir       the kernel build directory: $KDIR if set, else the cached kernel of
#              flavour $MEMKIT_KERNEL (debug, the default, or production:
#              scripts/kernel.sh), host set-up and kernel build included
#   module     memkit.ko, built against kdir with clippy; fails on any warning
#   tools      the userspace programs (cargo, release)
#   initramfs  the guest's initramfs with the module and the programs
#   deps-save  keep tools/target/release's compiled dependencies for later clones
#              (once per Cargo.lock and compiler; `make check` calls it)
#
# The module and the initramfs of each kernel live apart, under build/<kernel>/
# (<kernel> is the name of the kernel's build directory), so that the test and the
# production kernel's can both be ready: kbuild writes the module's objects there
# (MO=), never into the source tree.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kdir() {
	if [ -n "${KDIR:-}" ]; then
		[ -f "$KDIR/.config" ] || die "KDIR=$KDIR has no .config: not a kernel build directory"
		grep -q '^CONFIG_RUST=y' "$KDIR/.config" || die "KDIR=$KDIR: the kernel is not built with CONFIG_RUST=y"
		[ -f "$KDIR/rust/kernel.o" ] || [ -f "$KDIR/rust/libkernel.rmeta" ] ||
			die "KDIR=$KDIR: no Rust kernel crate; build the kernel first"
		echo "$KDIR"
		return
	fi
	# MEMKIT_SETUP=check (the Makefile's build targets): check the host, install nothing.
	"$MEMKIT_TOP/scripts/setup-host.sh" ${MEMKIT_SETUP:+"--$MEMKIT_SETUP"}
	"$MEMKIT_TOP/scripts/kernel.sh" "${MEMKIT_KERNEL:-debug}"
}

# The directory of kernel $1's module and initramfs.
kernel_out() {
	echo "$MEMKIT_TOP/build/$(basename "$1")"
}

# Objects of the in-tree module builds of earlier versions: kbuild refuses an
# output directory (MO=) while the source tree has them.
clean_in_tree() {
	(cd "$MEMKIT_TOP" && rm -f memkit.ko memkit.o memkit.mod memkit.mod.c memkit.mod.o \
		Module.symvers modules.order .*.cmd rust/*.o rust/.*.cmd rust/*.d)
}

module() {
	local k out log
	k=$(kdir)
	out=$(kernel_out "$k")
	mkdir -p "$out/module"
	log=$out/module.log
	clean_in_tree
	step "building memkit.ko against $k"
	# MEMKIT_KMAKE_ARGS replaces the toolchain arguments for a KDIR built otherwise.
	# shellcheck disable=SC2086
	logged "$log" make -C "$k" M="$MEMKIT_TOP" MO="$out/module" \
		${MEMKIT_KMAKE_ARGS:-"${KMAKE_ARGS[@]}" CLIPPY=1 CLIPPY_DRIVER=/usr/bin/clippy-driver} modules
	# rustc, clippy, the C compiler and objtool: any warning fails the build.
	if grep -E -A8 '(^|: )(warning|error)(\[|:)' "$log" >&2; then
		die "memkit.ko builds with warnings (log: $log)"
	fi
	echo "$out/module/memkit.ko"
}

# The tools' compiled crates.io dependencies are kept between clones, as the kernels
# are: a fresh clone starts from them and builds only its own crates (cargo compares
# each crate's sources, so nothing stale is used). The key covers Cargo.lock and the
# compiler; `make check` stores the set after its cargo test and clippy (deps-save).
deps_cache() {
	local key
	key=$( {
		cat "$MEMKIT_TOP/tools/Cargo.lock"
		cargo --version
		(cd "$MEMKIT_TOP/tools" && rustc -vV)
	} | sha256sum | cut -c1-12)
	echo "$MEMKIT_CACHE/cargo/$key"
}

deps_save() {
	local cache
	cache=$(deps_cache)
	[ ! -d "$cache/release" ] && [ -d "$MEMKIT_TOP/tools/target/release" ] || return 0
	mkdir -p "$MEMKIT_CACHE/cargo"
	# The previous keys' sets go: one set is 200-400 MB.
	find "$MEMKIT_CACHE/cargo" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
	mkdir -p "$cache.tmp"
	cp -a "$MEMKIT_TOP/tools/target/release" "$cache.tmp/"
	mv "$cache.tmp" "$cache"
}

tools() {
	local cache
	cache=$(deps_cache)
	if [ ! -d "$MEMKIT_TOP/tools/target/release" ] && [ -d "$cache/release" ]; then
		step "seeding tools/target from the dependency cache ($cache)"
		mkdir -p "$MEMKIT_TOP/tools/target"
		cp -a "$cache/release" "$MEMKIT_TOP/tools/target/"
	fi
	step "building the tools (cargo build --release)"
	logged "$MEMKIT_TOP/build/tools.log" cargo build --release --locked --workspace \
		--manifest-path "$MEMKIT_TOP/tools/Cargo.toml"
	echo "$MEMKIT_TOP/tools/target/release"
}

initramfs() {
	local k ko bin out pid
	# The kernel once (set-up and kernel build included); module() then only checks it.
	k=$(kdir)
	# The module (one rustc: one core) builds beside the tools (cargo: both cores).
	kofile=$(mktemp) # global: the EXIT trap runs after this function has returned
	trap 'rm -f "$kofile"' EXIT
	(KDIR=$k module >"$kofile") &
	pid=$!
	# On failure, logged() has said why.
	bin=$(tools) || { wait "$pid" || true; exit 1; }
	wait "$pid" || exit 1
	ko=$(cat "$kofile")
	out=$(dirname "$(dirname "$ko")")/initramfs.cpio
	step "packing the initramfs"
	MEMKIT_INSTALL_KDIR=$k "$MEMKIT_TOP/scripts/initramfs.sh" "$out" "$ko" "$bin/memkit" "$bin/memkit-selftest"
	echo "$out"
}

mkdir -p "$MEMKIT_TOP/build"
case ${1:-} in
kdir | module | tools | initramfs) "$1" ;;
deps-save) deps_save ;;
clean-in-tree) clean_in_tree ;;
*) die "usage: build.sh kdir|module|tools|initramfs|deps-save" ;;
esac
