#!/usr/bin/env bash
# `make install` and `make uninstall`: memkit on this machine, or under DESTDIR.
#
# usage: install.sh install|uninstall|module
#   install    everything below
#   uninstall  removes what install put there (and runs depmod again)
#   module     only memkit.ko, through the kernel's modules_install (the guest's
#              initramfs is built with it)
#
# What goes where (Documentation/install.rst):
#   $DESTDIR/lib/modules/<release>/extra/memkit.ko   modules_install + depmod
#   $DESTDIR$PREFIX/bin/memkit
#   $DESTDIR$PREFIX/include/linux/memkit.h            the ABI, for C programs
#   $DESTDIR$PREFIX/share/man/man1/memkit*.1          generated from the CLI
#   $DESTDIR$PREFIX/share/{bash-completion,zsh,fish}/... completions, generated
#   $DESTDIR$UDEVRULESDIR/70-memkit.rules             node modes (security.rst)
#   $DESTDIR$MODPROBEDIR/memkit.conf                  module options, commented out
#
# Variables: DESTDIR (none), PREFIX (/usr/local), UDEVRULESDIR (/etc/udev/rules.d),
# MODPROBEDIR (/etc/modprobe.d), KDIR (the kernel build directory to build and
# install the module for; default the running kernel's /lib/modules/$(uname -r)/build).
# Only the module part needs a kernel; MEMKIT_INSTALL_SKIP_MODULE=1 leaves it out.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

action=${1:-install}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
UDEVRULESDIR=${UDEVRULESDIR:-/etc/udev/rules.d}
MODPROBEDIR=${MODPROBEDIR:-/etc/modprobe.d}
root=${DESTDIR%/}

# The kernel to build for: KDIR, else the running kernel's build directory, which must
# be a Rust-enabled kernel with its Rust metadata (install.rst says how to get one).
set_kdir() {
	if [ -z "${KDIR:-}" ]; then
		KDIR=/lib/modules/$(uname -r)/build
		[ -d "$KDIR" ] || die "no KDIR given and no $KDIR: install the running kernel's build tree, or pass KDIR=/path/to/a/rust/kernel/build"
	fi
	export KDIR
}

kernel_release() {
	cat "$1/include/config/kernel.release" 2>/dev/null ||
		die "$1: no include/config/kernel.release: not a built kernel"
}

install_module() {
	local k ko mo rel
	set_kdir
	k=$KDIR
	# MEMKIT_MODULE_KO: a memkit.ko already built against KDIR (initramfs.sh passes it).
	ko=${MEMKIT_MODULE_KO:-$("$MEMKIT_TOP/scripts/build.sh" module)}
	mo=$(dirname "$ko")
	rel=$(kernel_release "$k")
	step "installing memkit.ko for $rel under ${root:-/}lib/modules/$rel/extra"
	# modules_install copies (and signs, if the kernel signs modules) what the module
	# build listed in its modules.order, then runs depmod for that release.
	# shellcheck disable=SC2086
	logged "$MEMKIT_TOP/build/install-module.log" make -C "$k" M="$MEMKIT_TOP" MO="$mo" \
		${MEMKIT_KMAKE_ARGS:-"${KMAKE_ARGS[@]}"} INSTALL_MOD_PATH="$root" INSTALL_MOD_DIR=extra \
		DEPMOD=/bin/true modules_install
	run_depmod "$rel"
}

# depmod for release $1 under DESTDIR (kbuild's own run is skipped: it needs the
# kernel's System.map and modules.builtin under DESTDIR, which a staging tree lacks).
run_depmod() {
	local dir=$root/lib/modules/$1
	[ -d "$dir" ] || return 0
	# depmod reads modules.order and modules.builtin* when present; a staging tree
	# has none of them, and depmod works without them: only those warnings are
	# dropped.
	depmod -b "${root:-/}" "$1" 2> >(grep -v 'could not open modules\.\(order\|builtin\)' >&2)
}

memkit_bin() {
	step "building the memkit tool (cargo build --release -p memkit)"
	logged "$MEMKIT_TOP/build/install-tools.log" cargo build --release --locked -p memkit \
		--manifest-path "$MEMKIT_TOP/tools/Cargo.toml"
	echo "$MEMKIT_TOP/tools/target/release/memkit"
}

install_tools() {
	local bin gen prefix=$root$PREFIX
	bin=$(memkit_bin)
	step "installing the memkit tool, header, man pages and completions under $prefix"
	install -D -m 0755 "$bin" "$prefix/bin/memkit"
	install -D -m 0644 "$MEMKIT_TOP/tools/include/uapi/linux/memkit.h" "$prefix/include/linux/memkit.h"
	gen=$(mktemp -d)
	# shellcheck disable=SC2064
	trap "rm -rf '$gen'" EXIT
	"$bin" generate man "$gen/man" >/dev/null
	install -d "$prefix/share/man/man1"
	install -m 0644 "$gen"/man/*.1 "$prefix/share/man/man1/"
	for shell in bash zsh fish; do
		"$bin" generate completions "$shell" "$gen/$shell" >/dev/null
	done
	install -D -m 0644 "$gen/bash/memkit.bash" "$prefix/share/bash-completion/completions/memkit"
	install -D -m 0644 "$gen/zsh/_memkit" "$prefix/share/zsh/site-functions/_memkit"
	install -D -m 0644 "$gen/fish/memkit.fish" "$prefix/share/fish/vendor_completions.d/memkit.fish"
	step "installing the udev rule and the modprobe.d example"
	install -D -m 0644 "$MEMKIT_TOP/tools/udev/70-memkit.rules" "$root$UDEVRULESDIR/70-memkit.rules"
	install -D -m 0644 "$MEMKIT_TOP/tools/modprobe/memkit.conf" "$root$MODPROBEDIR/memkit.conf"
}

uninstall() {
	local prefix=$root$PREFIX rel
	step "removing memkit from ${root:-/}"
	rm -f "$prefix/bin/memkit" "$prefix/include/linux/memkit.h" \
		"$prefix"/share/man/man1/memkit.1 "$prefix"/share/man/man1/memkit-*.1 \
		"$prefix/share/bash-completion/completions/memkit" \
		"$prefix/share/zsh/site-functions/_memkit" \
		"$prefix/share/fish/vendor_completions.d/memkit.fish" \
		"$root$UDEVRULESDIR/70-memkit.rules" "$root$MODPROBEDIR/memkit.conf"
	for ko in "$root"/lib/modules/*/extra/memkit.ko*; do
		[ -e "$ko" ] || continue
		rm -f "$ko"
		rel=$(basename "$(dirname "$(dirname "$ko")")")
		rmdir "$(dirname "$ko")" 2>/dev/null || true
		run_depmod "$rel"
	done
}

case $action in
install)
	[ "${MEMKIT_INSTALL_SKIP_MODULE:-0}" = 1 ] || install_module
	install_tools
	;;
module) install_module ;;
uninstall) uninstall ;;
*) die "usage: install.sh install|uninstall|module" ;;
esac
