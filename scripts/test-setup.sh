#!/usr/bin/env bash
# The host set-up's decision logic, without touching the host: a case of `make check`.
#
# - on this host (set up by the build before this runs), `setup-host.sh --check`
#   finds everything and exits 0, and `apt-get -s upgrade` takes nothing from the
#   backports suites set-up added (they are pinned low);
# - set-up picks rustup's cargo when rustup is in PATH, and Debian's cargo-web and
#   rustfmt-web when it is hidden (--plan: it installs nothing);
# - on a host that lacks the packages (a stub dpkg-query that reports none installed,
#   first in PATH), `setup-host.sh --check` and the Makefile's build target
#   `make module` fail, name what is missing and `make setup`, and never run apt-get
#   (a stub that records any call).
#
# usage: test-setup.sh    (prints "ok" or what is wrong; exit status says)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
errors=()
fail() { errors+=("$*"); }

"$MEMKIT_TOP/scripts/setup-host.sh" --check 2>"$stubs/ok.err" ||
	fail "setup-host.sh --check fails on the set-up host: $(cat "$stubs/ok.err")"

# After set-up (which pins the backports suites it added), an upgrade takes nothing
# from them: a simulation, which changes nothing.
if [ -f /etc/apt/sources.list.d/memkit-backports.sources ]; then
	[ -f /etc/apt/preferences.d/memkit-backports ] ||
		fail "set-up added the backports suites without pinning them (/etc/apt/preferences.d/memkit-backports)"
	moved=$(apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | grep '^Inst .*Backports' || true)
	[ -z "$moved" ] || fail "apt-get upgrade would take packages from the backports suites: $moved"
fi

# Which cargo set-up picks: rustup's when it is in PATH; with rustup hidden (HOME
# elsewhere, so lib.sh adds no ~/.cargo/bin, and PATH without it), Debian's cargo-web
# and rustfmt-web, which it then installs.
plan=$("$MEMKIT_TOP/scripts/setup-host.sh" --plan)
if command -v rustup >/dev/null 2>&1; then
	grep -q '^cargo: rustup' <<<"$plan" || fail "with rustup in PATH, set-up chose: $(grep '^cargo:' <<<"$plan")"
	grep -q 'cargo-web' <<<"$plan" && fail "with rustup in PATH, set-up would install cargo-web"
fi
no_rustup_path=$(tr ':' '\n' <<<"$PATH" | grep -v '/\.cargo/bin$' | while read -r d; do
	[ -x "$d/rustup" ] || printf '%s:' "$d"
done)
mkdir -p "$stubs/home"
plan=$(HOME=$stubs/home PATH=${no_rustup_path%:} "$MEMKIT_TOP/scripts/setup-host.sh" --plan)
grep -q '^cargo: debian' <<<"$plan" || fail "with rustup hidden, set-up chose: $(grep '^cargo:' <<<"$plan")"
if ! dpkg-query -W -f='${Status}' cargo-web 2>/dev/null | grep -q 'install ok installed'; then
	grep -q '^missing:.* cargo-web' <<<"$plan" && grep -q '^missing:.* rustfmt-web' <<<"$plan" ||
		fail "with rustup hidden, set-up would not install cargo-web and rustfmt-web: $plan"
fi

printf '#!/bin/sh\nexit 1\n' >"$stubs/dpkg-query"
printf '#!/bin/sh\necho "$0 $*" >>"%s/apt-calls"\nexit 1\n' "$stubs" >"$stubs/apt-get"
chmod +x "$stubs/dpkg-query" "$stubs/apt-get"

if PATH=$stubs:$PATH "$MEMKIT_TOP/scripts/setup-host.sh" --check 2>"$stubs/check.err"; then
	fail "setup-host.sh --check passes with no package installed"
fi
grep -q "make setup" "$stubs/check.err" || fail "setup-host.sh --check does not point at 'make setup': $(cat "$stubs/check.err")"
grep -q "qemu-system-x86" "$stubs/check.err" || fail "setup-host.sh --check does not name the missing packages"

if PATH=$stubs:$PATH make -s -C "$MEMKIT_TOP" module KDIR= >/dev/null 2>"$stubs/make.err"; then
	fail "make module passes with no package installed"
fi
grep -q "make setup" "$stubs/make.err" || fail "make module does not point at 'make setup': $(tail -n 3 "$stubs/make.err")"

[ ! -e "$stubs/apt-calls" ] || fail "apt-get was run: $(cat "$stubs/apt-calls")"

if [ ${#errors[@]} -gt 0 ]; then
	printf '%s\n' "${errors[@]}"
	exit 1
fi
echo ok
