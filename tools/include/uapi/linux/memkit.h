/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * memkit userspace ABI: the ioctls of /dev/memkit-journal, /dev/memkit-rmem and
 * /dev/memkit-ckpt.
 *
 * This header is the one definition of the ABI.  It is mirrored in Rust by
 * rust/pure/abi.rs (compiled into the module and into tools/), and a host test
 * (tools/core/tests/c_header.rs) compiles this file and compares every size,
 * offset and command number with the Rust side.
 *
 * Rules (Documentation/userspace-api.rst):
 * - only __u32 and __u64, pointers as __u64, explicit padding that must be zero;
 * - every struct starts with a __u32 `size`: the caller sets it to sizeof the
 *   struct it was compiled with.  A smaller size (down to the struct's first
 *   published size) is zero-extended; a larger one is accepted only if the
 *   bytes the kernel does not know are zero (otherwise E2BIG); non-zero padding
 *   or unknown flags give EINVAL;
 * - the size bits of the command number are not used to select the command:
 *   the `size` field is what versions the struct.
 */
#ifndef _UAPI_LINUX_MEMKIT_H
#define _UAPI_LINUX_MEMKIT_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define MEMKIT_ABI_MAJOR 1
#define MEMKIT_ABI_MINOR 0

/* The ioctl type byte of every memkit command (unused in ioctl-number.rst). */
#define MEMKIT_IOC_MAGIC 0xE7

/* Largest `size` any memkit struct may claim (bigger gives E2BIG). */
#define MEMKIT_STRUCT_SIZE_MAX 4096

/* Values of memkit_version.device. */
#define MEMKIT_DEV_JOURNAL 1
#define MEMKIT_DEV_RMEM 2
#define MEMKIT_DEV_CKPT 3

/*
 * Feature bits of memkit_version.features: a device sets the bits of what it
 * implements.  The skeleton implements none of them yet.
 */
#define MEMKIT_FEAT_JOURNAL_TX (1ULL << 0)
#define MEMKIT_FEAT_RMEM_PREFETCH (1ULL << 1)
#define MEMKIT_FEAT_CKPT_DIRTY (1ULL << 2)
#define MEMKIT_FEATURES_KNOWN \
	(MEMKIT_FEAT_JOURNAL_TX | MEMKIT_FEAT_RMEM_PREFETCH | MEMKIT_FEAT_CKPT_DIRTY)

/**
 * struct memkit_version - MEMKIT_IOC_VERSION, answered by every device.
 * @size: in: sizeof(struct memkit_version) of the caller; out: bytes written.
 * @flags: in: must be 0.
 * @abi_major: out: MEMKIT_ABI_MAJOR of the module.
 * @abi_minor: out: MEMKIT_ABI_MINOR of the module.
 * @features: out: MEMKIT_FEAT_* bits this device implements.
 * @device: out: MEMKIT_DEV_* of the device that answered.
 * @__pad: must be 0.
 */
struct memkit_version {
	__u32 size;
	__u32 flags;
	__u32 abi_major;
	__u32 abi_minor;
	__u64 features;
	__u32 device;
	__u32 __pad;
};
#define MEMKIT_VERSION_SIZE_VER0 32

#define MEMKIT_IOC_VERSION _IOWR(MEMKIT_IOC_MAGIC, 0x00, struct memkit_version)

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#include <stddef.h>
_Static_assert(sizeof(struct memkit_version) == 32, "memkit_version size");
_Static_assert(offsetof(struct memkit_version, size) == 0, "memkit_version.size");
_Static_assert(offsetof(struct memkit_version, flags) == 4, "memkit_version.flags");
_Static_assert(offsetof(struct memkit_version, abi_major) == 8, "memkit_version.abi_major");
_Static_assert(offsetof(struct memkit_version, abi_minor) == 12, "memkit_version.abi_minor");
_Static_assert(offsetof(struct memkit_version, features) == 16, "memkit_version.features");
_Static_assert(offsetof(struct memkit_version, device) == 24, "memkit_version.device");
_Static_assert(offsetof(struct memkit_version, __pad) == 28, "memkit_version.__pad");
#endif

#endif /* _UAPI_LINUX_MEMKIT_H */
