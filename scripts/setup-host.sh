#!/usr/bin/env bash
# Installs what memkit's build needs on a Debian 12 host: Debian packages (with the
# bookworm-backports and trixie-backports suites, on the machine's own mirror) and
# bindgen-cli at a pinned version.  Idempotent: a second run checks and returns.
#
# cargo and rustfmt (for the tools and bindgen-cli) come from rustup when it is there
# (~/.cargo/bin, which lib.sh puts first in PATH), else from Debian's cargo-web and
# rustfmt-web (1.96, beside rustc-web: Debian's own cargo 0.66 cannot read the tools'
# version-4 Cargo.lock). The kernel and the module always build with Debian's rustc.
#
# usage: setup-host.sh [--check | --plan]
#   --check  install nothing: exit 0 if everything is there, else name what is missing
#            and point at `make setup` (what the build targets of the Makefile do;
#            `make setup`, `run`, `check` and `bench` install)
#   --plan   install nothing: print the cargo it chose and the packages it would
#            install, one "key: value" line each (scripts/test-setup.sh reads them)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mode=install
case ${1:-} in
--check) mode=check ;;
--plan) mode=plan ;;
"") ;;
*) die "usage: setup-host.sh [--check | --plan]" ;;
esac
check_only=0
[ "$mode" != check ] || check_only=1

# Packages from the default suites.
PKGS=(rustc-web rust-web-src rust-web-clippy clang-19 lld-19 llvm-19 libclang-19-dev
	flex bison bc libelf-dev libssl-dev cpio kmod dwarves busybox-static
	make gcc libc6-dev xz-utils lz4 jq libpmemobj-dev libblkid-dev
	nbdkit nbd-server nbd-client)

# Which cargo: rustup's if one is in PATH, else Debian's 1.96 packages.
if command -v rustup >/dev/null 2>&1 && command -v cargo >/dev/null 2>&1 &&
	[ "$(command -v cargo)" != /usr/bin/cargo ]; then
	cargo_from="rustup ($(command -v cargo))"
else
	cargo_from="debian (cargo-web, rustfmt-web: /usr/bin/cargo)"
	PKGS+=(cargo-web rustfmt-web)
fi
# Packages that only a backports suite has.
BPO_QEMU=(qemu-system-x86 qemu-utils)
BPO_LINUX=linux-source-$KERNEL_SERIES

need_root() {
	[ "$(id -u)" = 0 ] || die "installing packages needs root; install them by hand ($*) or run as root"
}

missing=()
for p in "${PKGS[@]}" "${BPO_QEMU[@]}" "$BPO_LINUX"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "$mode" = plan ]; then
	echo "cargo: $cargo_from"
	echo "missing: ${missing[*]}"
	[ -x "$BINDGEN" ] || echo "bindgen: cargo install bindgen-cli $BINDGEN_VERSION"
	exit 0
fi

# The added suites are pinned low (priority 1: nothing is installed or upgraded from
# them unless asked for by name or -t) and only the packages memkit asks for from them are
# raised; without this, `apt-get upgrade` moves what qemu-system-x86 pulled from
# bookworm-backports (qemu-system-data, seabios) on to trixie-backports versions.
src=/etc/apt/sources.list.d/memkit-backports.sources
pins=/etc/apt/preferences.d/memkit-backports
pins_text="# Added by memkit's scripts/setup-host.sh: the suites of $src stay at
# priority 1 but for the packages memkit installs from them.
Package: *
Pin: release n=bookworm-backports
Pin-Priority: 1

Package: *
Pin: release n=trixie-backports
Pin-Priority: 1

Package: ${BPO_QEMU[*]}
Pin: release n=bookworm-backports
Pin-Priority: 500

Package: $BPO_LINUX
Pin: release n=trixie-backports
Pin-Priority: 500"
write_pins() {
	[ "$(cat "$pins" 2>/dev/null)" != "$pins_text" ] || return 0
	if [ "$(id -u)" != 0 ]; then
		echo "memkit: warning: the backports suites are not pinned; run 'make setup' as root to write $pins" >&2
		return 0
	fi
	step "pinning the backports suites low ($pins)"
	printf '%s\n' "$pins_text" >"$pins"
}

if [ "$check_only" = 1 ]; then
	[ -x "$BINDGEN" ] || missing+=("bindgen-cli $BINDGEN_VERSION (cargo install, under $MEMKIT_CACHE)")
	[ ${#missing[@]} -eq 0 ] ||
		die "the host lacks what the build needs: ${missing[*]}; 'make setup' installs it (as root, Debian 12; Documentation/build.rst)"
	exit 0
fi

[ ! -f "$src" ] || write_pins

if [ ${#missing[@]} -gt 0 ]; then
	need_root "${missing[*]}"
	if [ ! -f "$src" ]; then
		# Reuse the mirror of the machine's existing Debian source; no host name here.
		uri=$(grep -hs -A3 -E '^Types:.*deb' /etc/apt/sources.list.d/*.sources |
			awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }')
		[ -n "$uri" ] || uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
		[ -n "$uri" ] || die "cannot find the Debian mirror URI in /etc/apt/sources.list{,.d}"
		step "adding bookworm-backports and trixie-backports from $uri"
		cat >"$src" <<SRC
# Added by memkit's scripts/setup-host.sh: qemu-system-x86 and linux-source-$KERNEL_SERIES.
Types: deb
URIs: $uri
Suites: bookworm-backports trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	fi
	write_pins
	step "apt-get update"
	logged /tmp/memkit-apt-update.log apt-get update
	step "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	base=()
	for p in "${missing[@]}"; do
		case " ${BPO_QEMU[*]} $BPO_LINUX " in *" $p "*) ;; *) base+=("$p") ;; esac
	done
	[ ${#base[@]} -eq 0 ] || logged /tmp/memkit-apt.log apt-get install -y --no-install-recommends "${base[@]}"
	logged /tmp/memkit-apt-qemu.log apt-get install -y --no-install-recommends -t bookworm-backports "${BPO_QEMU[@]}"
	logged /tmp/memkit-apt-linux.log apt-get install -y --no-install-recommends -t trixie-backports "$BPO_LINUX"
	step "host packages installed"
fi
[ "$check_only" = 1 ] || step "cargo and rustfmt: $cargo_from"

if [ ! -x "$BINDGEN" ]; then
	step "cargo install bindgen-cli $BINDGEN_VERSION (about a minute)"
	logged /tmp/memkit-bindgen.log cargo install --locked --root "${BINDGEN%/bin/bindgen}" \
		bindgen-cli --version "$BINDGEN_VERSION"
fi
