# memkit: a Rust-for-Linux module with its tools and QEMU-booted selftests.
#
#   make run     build what is missing, boot the test kernel in QEMU, load memkit.ko
#                and show a short demo
#   make check   every test: host (cargo test, rustfmt, clippy) and in-guest selftests
#
# Both install the host packages and build the test kernel on first use (cached under
# ~/.cache/memkit).  KDIR=/path/to/built/rust/kernel uses a kernel you already have.
# Documentation/build.rst says more.

SHELL := /bin/bash
export KDIR

.PHONY: all run check soak bench fuzz setup kernel module tools initramfs install uninstall fmt clean help

all: module tools

# Build targets build: they check the host and name what is missing, and never install
# packages; `make setup` (and `run`, `check`, `bench`, which call it) installs them.
all module initramfs kernel: export MEMKIT_SETUP = check

help:
	@sed -n '3,9p' Makefile | sed 's/^# \{0,1\}//'

setup:
	@scripts/setup-host.sh

kernel:
	@scripts/build.sh kdir

module:
	@scripts/build.sh module

tools:
	@scripts/build.sh tools

initramfs:
	@scripts/build.sh initramfs

# The module (for KDIR, default the running kernel), the memkit tool, the C header, man
# pages, completions, the udev rule and a modprobe.d example; DESTDIR and PREFIX
# (/usr/local) are honoured (Documentation/install.rst).
install:
	@scripts/install.sh install

uninstall:
	@scripts/install.sh uninstall

run:
	@scripts/demo.sh $(VMFLAGS)

check:
	@scripts/check.sh

# The journal crash test at length: 1000 random kills (about 8 hours under TCG).
soak:
	@scripts/journal-crash.sh $${MEMKIT_SOAK_KILLS:-1000}

bench:
	@scripts/bench.sh

# The ioctl fuzzer's long pass: 1M calls (MEMKIT_FUZZ_CALLS), seed MEMKIT_FUZZ_SEED or
# random (Documentation/fuzzing.rst).
fuzz:
	@scripts/fuzz.sh

fmt:
	cargo fmt --manifest-path tools/Cargo.toml --all
	rustfmt --config-path .rustfmt.toml rust/memkit.rs

clean:
	@scripts/build.sh clean-in-tree
	rm -rf build tools/target
