#!/usr/bin/env bash
# `make install` into a scratch DESTDIR, then `make uninstall`: a case of `make check`.
# Checks the installed tree (the module where modules_install and depmod put it, the
# tool, the header a C program compiles against, the man pages, the completions, the
# udev rule, the modprobe.d example) and that uninstall leaves none of it.
#
# usage: test-install.sh KDIR    (prints "ok" or what is wrong; exit status says)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

kdir=${1:?usage: test-install.sh KDIR}
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
rel=$(cat "$kdir/include/config/kernel.release")
errors=()
fail() { errors+=("$*"); }

make -s -C "$MEMKIT_TOP" install DESTDIR="$dest" PREFIX=/usr KDIR="$kdir" >/dev/null 2>"$dest.log" ||
	{ cat "$dest.log" >&2; rm -f "$dest.log"; die "make install DESTDIR=$dest failed"; }
rm -f "$dest.log"

want=(
	"lib/modules/$rel/extra/memkit.ko"
	"lib/modules/$rel/modules.dep"
	usr/bin/memkit
	usr/include/linux/memkit.h
	usr/share/man/man1/memkit.1
	usr/share/man/man1/memkit-journal-attach.1
	usr/share/man/man1/memkit-ckpt-run.1
	usr/share/man/man1/memkit-rmem-agent.1
	usr/share/bash-completion/completions/memkit
	usr/share/zsh/site-functions/_memkit
	usr/share/fish/vendor_completions.d/memkit.fish
	etc/udev/rules.d/70-memkit.rules
	etc/modprobe.d/memkit.conf
)
for f in "${want[@]}"; do
	[ -s "$dest/$f" ] || fail "missing after install: $f"
done

ko=$dest/lib/modules/$rel/extra/memkit.ko
if [ -f "$ko" ]; then
	[ "$(modinfo -F name "$ko")" = memkit ] || fail "modinfo: $ko is not named memkit"
	[ "$(modinfo -F vermagic "$ko" | cut -d' ' -f1)" = "$rel" ] || fail "modinfo: vermagic is not $rel"
	grep -q "^extra/memkit.ko:" "$dest/lib/modules/$rel/modules.dep" ||
		fail "depmod: modules.dep has no extra/memkit.ko"
	# What modprobe resolves the name to, in the staging tree.
	modprobe -d "$dest" -S "$rel" --show-depends memkit 2>&1 | grep -q "insmod .*/extra/memkit.ko" ||
		fail "modprobe -d DESTDIR --show-depends memkit does not find extra/memkit.ko"
fi
[ -x "$dest/usr/bin/memkit" ] && ! "$dest/usr/bin/memkit" --version | grep -q '^memkit ' &&
	fail "the installed memkit does not run"
# A C program builds against the installed header alone.
printf '#include <linux/memkit.h>\nint main(void) { return sizeof(struct memkit_version) == 0; }\n' >"$dest/t.c"
cc -Wall -Werror -I"$dest/usr/include" -o "$dest/t" "$dest/t.c" 2>"$dest/cc.log" ||
	fail "a C program does not compile against the installed header: $(head -n 3 "$dest/cc.log")"
rm -f "$dest/t.c" "$dest/t" "$dest/cc.log"
head -n 1 "$dest/usr/share/man/man1/memkit-journal-attach.1" | grep -q '^\.ie\|^\.TH' ||
	fail "memkit-journal-attach.1 is not a man page"
grep -qF 'memkit\-journal\-attach(1)' "$dest/usr/share/man/man1/memkit-journal.1" ||
	fail "memkit-journal.1 does not name its subcommands"
bash -n "$dest/usr/share/bash-completion/completions/memkit" || fail "the bash completion does not parse"
grep -q 'attach' "$dest/usr/share/bash-completion/completions/memkit" ||
	fail "the bash completion does not know 'journal attach'"
grep -q '^#options memkit journal_dev=' "$dest/etc/modprobe.d/memkit.conf" ||
	fail "the modprobe.d example does not show journal_dev"

make -s -C "$MEMKIT_TOP" uninstall DESTDIR="$dest" PREFIX=/usr >/dev/null 2>&1 || fail "make uninstall failed"
# depmod's own index files stay (they describe the kernel's other modules too).
left=$(cd "$dest" && find . -type f ! -path "./lib/modules/$rel/modules.*" | sort)
[ -z "$left" ] || fail "left after uninstall: $(echo "$left" | tr '\n' ' ')"
grep -q memkit "$dest/lib/modules/$rel/modules.dep" 2>/dev/null && fail "modules.dep still names memkit after uninstall"

if [ ${#errors[@]} -gt 0 ]; then
	printf '%s\n' "${errors[@]}"
	exit 1
fi
echo ok
