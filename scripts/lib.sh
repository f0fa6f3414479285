# shellcheck shell=bash
# Shared helpers of memkit's build scripts: progress lines with timings, and the
# locations every script agrees on.  Sourced, never run.

MEMKIT_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MEMKIT_CACHE=${MEMKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/memkit}
BINDGEN_VERSION=0.73.2
BINDGEN=${BINDGEN:-$MEMKIT_CACHE/bindgen-$BINDGEN_VERSION/bin/bindgen}
KERNEL_SERIES=7.3
# Toolchain of the kernel build (toolchain.md): Debian's rustc has rust-src, the
# rustup one first in PATH does not.
KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc BINDGEN="$BINDGEN")
# cargo and rustfmt come from rustup; make sure they are found without a login shell.
[ -d "$HOME/.cargo/bin" ] && case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) PATH=$HOME/.cargo/bin:$PATH ;; esac
export PATH
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}

_memkit_t0=$(date +%s)

# Prints "==> [mm:ss] message" on stderr, so progress never mixes with results.
step() {
	local now
	now=$(date +%s)
	printf '==> [%02d:%02d] %s\n' $(((now - _memkit_t0) / 60)) $(((now - _memkit_t0) % 60)) "$*" >&2
}

die() {
	printf 'memkit: error: %s\n' "$*" >&2
	exit 1
}

# Runs a long command with its output in a log file; prints the log's tail on failure.
logged() {
	local log=$1
	shift
	if ! "$@" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		die "'$*' failed; full log: $log"
	fi
}
