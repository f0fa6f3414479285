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
#define MEMKIT_ABI_MINOR 3

/* The ioctl type byte of every memkit command (unused in ioctl-number.rst). */
#define MEMKIT_IOC_MAGIC 0xE7

/* Largest `size` any memkit struct may claim (bigger gives E2BIG). */
#define MEMKIT_STRUCT_SIZE_MAX 4096

/* Values of memkit_version.device. */
#define MEMKIT_DEV_JOURNAL 1
#define MEMKIT_DEV_RMEM 2
#define MEMKIT_DEV_CKPT 3

/*
 * Feature bits of memkit_version.features: each device sets the bit of what it
 * implements (the journal MEMKIT_FEAT_JOURNAL_TX, rmem MEMKIT_FEAT_RMEM_PREFETCH,
 * ckpt MEMKIT_FEAT_CKPT_DIRTY; all three MEMKIT_FEAT_FDINFO).
 */
#define MEMKIT_FEAT_JOURNAL_TX (1ULL << 0)
#define MEMKIT_FEAT_RMEM_PREFETCH (1ULL << 1)
#define MEMKIT_FEAT_CKPT_DIRTY (1ULL << 2)
/*
 * ABI 1.1: the open files of each device describe themselves (the journal's
 * device, the file's region) in /proc/PID/fdinfo/FD, one "memkit-KEY:\tVALUE"
 * line per field
 * (Documentation/userspace-api.rst lists the keys).
 */
#define MEMKIT_FEAT_FDINFO (1ULL << 3)
/*
 * ABI 1.2: checkpoint regions track writes by page-table scan or by recording the
 * first write to each write-protected page, chosen per region
 * (MEMKIT_CKPT_START_SCAN, MEMKIT_CKPT_START_RECORD, memkit_ckpt_stats.mode).
 */
#define MEMKIT_FEAT_CKPT_RECORD (1ULL << 4)
/*
 * ABI 1.3: a clearing collect of a recording region can open a copy-on-write
 * snapshot of the pages it reports (MEMKIT_CKPT_COLLECT_SNAPSHOT).
 */
#define MEMKIT_FEAT_CKPT_SNAPSHOT (1ULL << 5)
#define MEMKIT_FEATURES_KNOWN                                   \
	(MEMKIT_FEAT_JOURNAL_TX | MEMKIT_FEAT_RMEM_PREFETCH |   \
	 MEMKIT_FEAT_CKPT_DIRTY | MEMKIT_FEAT_FDINFO |          \
	 MEMKIT_FEAT_CKPT_RECORD | MEMKIT_FEAT_CKPT_SNAPSHOT)

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

/*
 * /dev/memkit-journal: micro-journal transactions on a DAX persistent-memory device
 * (Documentation/journal.rst).  One journal is attached at a time, module-wide.
 */

/* memkit_journal_attach.flags: format the device before attaching it. */
#define MEMKIT_JOURNAL_ATTACH_FORMAT (1U << 0)
#define MEMKIT_JOURNAL_ATTACH_FLAGS MEMKIT_JOURNAL_ATTACH_FORMAT

/**
 * struct memkit_journal_attach - MEMKIT_IOC_JOURNAL_ATTACH (CAP_SYS_ADMIN).
 * @size: sizeof(struct memkit_journal_attach).
 * @flags: MEMKIT_JOURNAL_ATTACH_*.
 * @path: pointer to the NUL-terminated path of a DAX block device ("/dev/pmem0").
 * @mj_count: with ATTACH_FORMAT: number of micro-journals (0: 64).
 * @mj_size: with ATTACH_FORMAT: bytes per micro-journal, a multiple of 64
 *	(0: 65536); also the byte limit of one transaction.
 */
struct memkit_journal_attach {
	__u32 size;
	__u32 flags;
	__u64 path;
	__u32 mj_count;
	__u32 mj_size;
};
#define MEMKIT_JOURNAL_ATTACH_SIZE_VER0 24

/**
 * struct memkit_journal_detach - MEMKIT_IOC_JOURNAL_DETACH (CAP_SYS_ADMIN).
 * @size: sizeof(struct memkit_journal_detach).
 * @flags: must be 0.
 */
struct memkit_journal_detach {
	__u32 size;
	__u32 flags;
};
#define MEMKIT_JOURNAL_DETACH_SIZE_VER0 8

/* Commit latency histogram: bucket i counts commits of [2^i, 2^(i+1)) microseconds;
 * the last bucket also everything slower. */
#define MEMKIT_JOURNAL_LAT_BUCKETS 16

/* memkit_journal_status.mode */
#define MEMKIT_JOURNAL_MODE_COALESCED 0
#define MEMKIT_JOURNAL_MODE_STRICT 1

/**
 * struct memkit_journal_status - MEMKIT_IOC_JOURNAL_STATUS.
 * @size: sizeof(struct memkit_journal_status).
 * @flags: must be 0.
 * @attached: 1 if a journal is attached; the rest is zero otherwise.
 * @mode: MEMKIT_JOURNAL_MODE_* (module parameter commit_mode).
 * @dev_size: bytes of the device the journal uses.
 * @data_offset: device offset of the data region.
 * @data_size: bytes of the data region (offsets of ranges and reads are in it).
 * @mj_count: number of micro-journals.
 * @mj_size: bytes per micro-journal.
 * @max_ranges: most ranges per transaction.
 * @max_tx_bytes: most entry bytes per transaction: each range takes 8 bytes plus
 *	its length rounded up to 8.
 * @sync_dax: 1 if the DAX mapping is synchronous (no device flush needed).
 * @__pad: zero.
 * @next_id: commit id of the next transaction.
 * @rec_replayed: MJs replayed by the last recovery.
 * @rec_discarded: torn or corrupted MJs it discarded.
 * @rec_stale: valid MJs below the low-water mark it skipped.
 * @rec_incomplete: valid MJs of incomplete commit groups it skipped.
 * @rec_empty: never-written MJs.
 * @rec_lwm: the low-water mark it used.
 * @rec_ns: time it took, in nanoseconds.
 * @transactions: transactions committed since attach.
 * @groups: commit groups (one barrier each, two in strict mode).
 * @barriers: persistence barriers issued by commits.
 * @device_flushes: device flush requests issued (non-synchronous DAX only).
 * @journal_bytes: bytes written to micro-journals.
 * @inplace_bytes: bytes written in place.
 * @payload_bytes: bytes the transactions asked to write.
 * @lines_written_back: 64-byte lines written with cache-bypassing stores.
 * @lat_hist: commit latency histogram (MEMKIT_JOURNAL_LAT_BUCKETS buckets).
 */
struct memkit_journal_status {
	__u32 size;
	__u32 flags;
	__u32 attached;
	__u32 mode;
	__u64 dev_size;
	__u64 data_offset;
	__u64 data_size;
	__u32 mj_count;
	__u32 mj_size;
	__u32 max_ranges;
	__u32 max_tx_bytes;
	__u32 sync_dax;
	__u32 __pad;
	__u64 next_id;
	__u64 rec_replayed;
	__u64 rec_discarded;
	__u64 rec_stale;
	__u64 rec_incomplete;
	__u64 rec_empty;
	__u64 rec_lwm;
	__u64 rec_ns;
	__u64 transactions;
	__u64 groups;
	__u64 barriers;
	__u64 device_flushes;
	__u64 journal_bytes;
	__u64 inplace_bytes;
	__u64 payload_bytes;
	__u64 lines_written_back;
	__u64 lat_hist[MEMKIT_JOURNAL_LAT_BUCKETS];
};
#define MEMKIT_JOURNAL_STATUS_SIZE_VER0 320

/**
 * struct memkit_journal_range - one range of a transaction.
 * @offset: offset in the data region.
 * @len: bytes to write, at least 1.
 * @data: pointer to the new bytes.
 */
struct memkit_journal_range {
	__u64 offset;
	__u64 len;
	__u64 data;
};

/**
 * struct memkit_journal_tx - MEMKIT_IOC_JOURNAL_TX: commit ranges atomically.
 * @size: sizeof(struct memkit_journal_tx).
 * @flags: must be 0.
 * @ranges: pointer to @nr_ranges struct memkit_journal_range.
 * @nr_ranges: 1..max_ranges.
 * @__pad: zero.
 * @commit_id: out: the transaction's commit id; it is durable when the call returns.
 *
 * Errors (nothing is written): E2BIG over max_ranges or max_tx_bytes; EINVAL for no
 * ranges, a zero length, or a range outside the data region; EFAULT for an
 * unreadable pointer; ENODEV when no journal is attached.
 */
struct memkit_journal_tx {
	__u32 size;
	__u32 flags;
	__u64 ranges;
	__u32 nr_ranges;
	__u32 __pad;
	__u64 commit_id;
};
#define MEMKIT_JOURNAL_TX_SIZE_VER0 32

#define MEMKIT_IOC_JOURNAL_ATTACH _IOW(MEMKIT_IOC_MAGIC, 0x10, struct memkit_journal_attach)
#define MEMKIT_IOC_JOURNAL_DETACH _IOW(MEMKIT_IOC_MAGIC, 0x11, struct memkit_journal_detach)
#define MEMKIT_IOC_JOURNAL_STATUS _IOWR(MEMKIT_IOC_MAGIC, 0x12, struct memkit_journal_status)
#define MEMKIT_IOC_JOURNAL_TX _IOWR(MEMKIT_IOC_MAGIC, 0x13, struct memkit_journal_tx)

/*
 * /dev/memkit-rmem: remote-memory regions (Documentation/rmem.rst).  Each open file
 * has at most one region: configure it, mmap it MAP_SHARED at the offset
 * RMEM_CONFIGURE returns.  At most @budget pages are local at a time; a fault on
 * another page fetches it and prefetches the pages its page-table line points to.
 */

#define MEMKIT_RMEM_MAX_BYTES (1ULL << 32)
#define MEMKIT_RMEM_MAX_BUDGET (1ULL << 18)
#define MEMKIT_RMEM_MAX_DEGREE 64
#define MEMKIT_RMEM_MAX_INFLIGHT 256
/* Longest deadline and emulated base latency; longest emulated per-page time (ns). */
#define MEMKIT_RMEM_MAX_NS 1000000000ULL
#define MEMKIT_RMEM_MAX_PAGE_NS 100000000ULL
/* memkit_rmem_config.flags: keep a late prefetch's data as a local copy. */
#define MEMKIT_RMEM_KEEP_LATE (1U << 0)
#define MEMKIT_RMEM_CONFIG_FLAGS MEMKIT_RMEM_KEEP_LATE
/* memkit_rmem_config.backend */
#define MEMKIT_RMEM_BACKEND_EMULATED 0
#define MEMKIT_RMEM_BACKEND_AGENT 1
/* memkit_rmem_config.policy */
#define MEMKIT_RMEM_POLICY_NONE 0
#define MEMKIT_RMEM_POLICY_PTLINE 1
#define MEMKIT_RMEM_POLICY_PTLINE_HISTORY 2
#define MEMKIT_RMEM_POLICY_WINDOW 3
#define MEMKIT_RMEM_POLICY_TREND 4
#define MEMKIT_RMEM_POLICIES 5
/* memkit_rmem_stats.flags: the module's totals over every region. */
#define MEMKIT_RMEM_STATS_GLOBAL (1U << 0)
#define MEMKIT_RMEM_LAT_BUCKETS 16

/**
 * struct memkit_rmem_config - MEMKIT_IOC_RMEM_CONFIGURE: the file's region.
 * @size: sizeof(struct memkit_rmem_config).
 * @flags: MEMKIT_RMEM_KEEP_LATE.
 * @bytes: region size: a multiple of 4096, at most MEMKIT_RMEM_MAX_BYTES.
 * @budget: most pages local at once: 1 to min(pages, MEMKIT_RMEM_MAX_BUDGET).
 * @backend: MEMKIT_RMEM_BACKEND_*.
 * @policy: MEMKIT_RMEM_POLICY_*.
 * @deadline_ns: a prefetch that has not arrived this long after it was issued is
 *	late: its page stays not-present.  0: no deadline.  At most MEMKIT_RMEM_MAX_NS.
 * @degree: most prefetches per fault, 0 to MEMKIT_RMEM_MAX_DEGREE.
 * @max_inflight: most requests in flight, 1 to MEMKIT_RMEM_MAX_INFLIGHT.
 * @lat_base_ns: emulated backend: latency of every request (0 for the agent).
 * @lat_page_ns: emulated backend: transfer time per page; requests queue for the
 *	link (0 for the agent).
 * @mmap_offset: out: the mmap offset of the region's first byte.
 */
struct memkit_rmem_config {
	__u32 size;
	__u32 flags;
	__u64 bytes;
	__u64 budget;
	__u32 backend;
	__u32 policy;
	__u64 deadline_ns;
	__u32 degree;
	__u32 max_inflight;
	__u64 lat_base_ns;
	__u64 lat_page_ns;
	__u64 mmap_offset;
};
#define MEMKIT_RMEM_CONFIG_SIZE_VER0 72

/**
 * struct memkit_rmem_stats - MEMKIT_IOC_RMEM_STATS: the file's region's counters,
 * or with MEMKIT_RMEM_STATS_GLOBAL the module's totals.
 * @size: sizeof(struct memkit_rmem_stats).
 * @flags: MEMKIT_RMEM_STATS_GLOBAL or 0.
 * @bytes: region size (global: regions configured so far).
 * @budget: local budget in pages (global: 0).
 * @local: pages local now.
 * @faults_sync: faults that fetched their page synchronously.
 * @faults_local: faults that found their page local (no fetch).
 * @faults_wait: faults that waited for a fetch already in flight.
 * @prefetches: prefetches issued.
 * @installed: prefetched pages mapped because they arrived before their deadline.
 * @hits: prefetched pages used before they were evicted.
 * @late: prefetches whose deadline came before their data.
 * @wasted: prefetched pages evicted or dropped unused.
 * @evictions: pages evicted.
 * @writebacks: dirty pages written back to the backend.
 * @bytes_in: bytes fetched.
 * @bytes_out: bytes written back.
 * @lat_hist: fetch latency: bucket i counts [2^(i-1), 2^i) microseconds (0: below
 *	1 us; the last bucket: everything longer).
 */
struct memkit_rmem_stats {
	__u32 size;
	__u32 flags;
	__u64 bytes;
	__u64 budget;
	__u64 local;
	__u64 faults_sync;
	__u64 faults_local;
	__u64 faults_wait;
	__u64 prefetches;
	__u64 installed;
	__u64 hits;
	__u64 late;
	__u64 wasted;
	__u64 evictions;
	__u64 writebacks;
	__u64 bytes_in;
	__u64 bytes_out;
	__u64 lat_hist[MEMKIT_RMEM_LAT_BUCKETS];
};
#define MEMKIT_RMEM_STATS_SIZE_VER0 256

/*
 * The agent backend: requests are read(2) from the region's file (blocking, or
 * EAGAIN with O_NONBLOCK; as many whole messages as fit, at least one), each a
 * struct memkit_rmem_msg followed, for a write-back, by the page's 4096 bytes.  A
 * reply is one write(2) of a struct memkit_rmem_msg with the request's id, kind and
 * page, followed by the page's 4096 bytes for a successful fetch.
 */
#define MEMKIT_RMEM_MSG_FETCH 1
#define MEMKIT_RMEM_MSG_WRITEBACK 2

/**
 * struct memkit_rmem_msg - a request of an agent-backed region, or its reply.
 * @id: the request's id (never 0); the reply repeats it.
 * @kind: MEMKIT_RMEM_MSG_*.
 * @status: reply: 0, or a negative errno (a fetch that failed: the fault that waits
 *	for it gets SIGBUS).
 * @page: the region page.
 * @__pad: must be 0.
 */
struct memkit_rmem_msg {
	__u64 id;
	__u32 kind;
	__u32 status;
	__u64 page;
	__u64 __pad;
};

#define MEMKIT_IOC_RMEM_CONFIGURE _IOWR(MEMKIT_IOC_MAGIC, 0x20, struct memkit_rmem_config)
#define MEMKIT_IOC_RMEM_STATS _IOWR(MEMKIT_IOC_MAGIC, 0x21, struct memkit_rmem_stats)

/*
 * /dev/memkit-ckpt: dirty tracking of module-owned memory for frequent checkpoints
 * (Documentation/ckpt.rst).  Each open file has at most one region: create it, mmap
 * it MAP_SHARED at the offset CKPT_CREATE returns, and collect the pages written.
 */

/* Largest region, in bytes. */
#define MEMKIT_CKPT_MAX_BYTES (1ULL << 32)

/**
 * struct memkit_ckpt_create - MEMKIT_IOC_CKPT_CREATE: the file's region.
 * @size: sizeof(struct memkit_ckpt_create).
 * @flags: must be 0.
 * @bytes: in: region size, a non-zero multiple of 4096, at most
 *	MEMKIT_CKPT_MAX_BYTES.  Pages are allocated, zeroed, at first touch.
 * @mmap_offset: out: the offset to pass to mmap(2) for the region's first byte.
 */
struct memkit_ckpt_create {
	__u32 size;
	__u32 flags;
	__u64 bytes;
	__u64 mmap_offset;
};
#define MEMKIT_CKPT_CREATE_SIZE_VER0 24

/* memkit_ckpt_start.flags (ABI 1.2): fix the tracking mode (at most one). */
/* Scan the page tables' dirty bits at each collect; writers never fault. */
#define MEMKIT_CKPT_START_SCAN (1U << 0)
/* Write-protect what a collect reports; record the first write to each page. */
#define MEMKIT_CKPT_START_RECORD (1U << 1)
/* memkit_ckpt_stats.mode */
#define MEMKIT_CKPT_MODE_SCAN 0
#define MEMKIT_CKPT_MODE_RECORD 1

/**
 * struct memkit_ckpt_start - MEMKIT_IOC_CKPT_START: start (or restart) tracking:
 * forget the pages written so far and their history.
 * @size: sizeof(struct memkit_ckpt_start).
 * @flags: 0 (the module picks the tracking mode from the fraction of the region
 *	each clearing collect finds dirty, and switches with hysteresis), or one of
 *	MEMKIT_CKPT_START_SCAN and MEMKIT_CKPT_START_RECORD to fix it.
 */
struct memkit_ckpt_start {
	__u32 size;
	__u32 flags;
};
#define MEMKIT_CKPT_START_SIZE_VER0 8

/* memkit_ckpt_collect.flags */
/* Clear what is reported, atomically: a write after the collect is reported by the next. */
#define MEMKIT_CKPT_COLLECT_CLEAR (1U << 0)
/* Report struct memkit_ckpt_range runs instead of a bitmap. */
#define MEMKIT_CKPT_COLLECT_RANGES (1U << 1)
/*
 * (ABI 1.3) With COLLECT_CLEAR, on a region started with MEMKIT_CKPT_START_RECORD:
 * the reported pages become a copy-on-write snapshot.  Each reads as it was at this
 * collect when MEMKIT_IOC_CKPT_COPY or _COPY_DIFF first copies it out, however the
 * program writes it meanwhile, until the next clearing collect.  EINVAL without
 * COLLECT_CLEAR or on a region whose mode is not fixed to recording.
 */
#define MEMKIT_CKPT_COLLECT_SNAPSHOT (1U << 2)
/*
 * (ABI 1.3) Report every page of the range, written or not: a checkpoint of every
 * page (with COLLECT_SNAPSHOT, without stopping the program).
 */
#define MEMKIT_CKPT_COLLECT_ALL (1U << 3)
#define MEMKIT_CKPT_COLLECT_FLAGS                                 \
	(MEMKIT_CKPT_COLLECT_CLEAR | MEMKIT_CKPT_COLLECT_RANGES | \
	 MEMKIT_CKPT_COLLECT_SNAPSHOT | MEMKIT_CKPT_COLLECT_ALL)

/**
 * struct memkit_ckpt_range - a run of dirty pages.
 * @first: index of its first page in the region.
 * @count: pages.
 */
struct memkit_ckpt_range {
	__u64 first;
	__u64 count;
};

/**
 * struct memkit_ckpt_collect - MEMKIT_IOC_CKPT_COLLECT: the pages of a range written
 * since they were last cleared.
 * @size: sizeof(struct memkit_ckpt_collect).
 * @flags: MEMKIT_CKPT_COLLECT_*.
 * @first: index of the range's first page.
 * @count: pages in the range (non-zero; first + count at most the region's pages).
 * @buf: user buffer: a bitmap of @count bits in __u64 words (bit i of word w is page
 *	@first + 64 * w + i), or with COLLECT_RANGES an array of struct
 *	memkit_ckpt_range.  0 with @buf_len 0: only count (never clears).
 * @buf_len: bytes of @buf.  Too small: ENOSPC, nothing cleared.
 * @dirty: out: dirty pages in the range.
 * @nr_ranges: out: runs of dirty pages in the range (entries written with
 *	COLLECT_RANGES).
 */
struct memkit_ckpt_collect {
	__u32 size;
	__u32 flags;
	__u64 first;
	__u64 count;
	__u64 buf;
	__u64 buf_len;
	__u64 dirty;
	__u64 nr_ranges;
};
#define MEMKIT_CKPT_COLLECT_SIZE_VER0 56

/**
 * struct memkit_ckpt_history - MEMKIT_IOC_CKPT_HISTORY: per page, which recent
 * intervals wrote it.  An interval ends at each clearing collect that covers the page.
 * @size: sizeof(struct memkit_ckpt_history).
 * @flags: must be 0.
 * @first: index of the first page.
 * @count: pages (non-zero; first + count at most the region's pages).
 * @buf: user buffer of @count __u64: bit k set if the page was written in the
 *	interval that ended k clearing collects ago (bit 0: the last one).
 * @buf_len: bytes of @buf, at least 8 * @count (else ENOSPC).
 */
struct memkit_ckpt_history {
	__u32 size;
	__u32 flags;
	__u64 first;
	__u64 count;
	__u64 buf;
	__u64 buf_len;
};
#define MEMKIT_CKPT_HISTORY_SIZE_VER0 40

/**
 * struct memkit_ckpt_copy - MEMKIT_IOC_CKPT_COPY: the contents of a set of pages,
 * 4096 bytes each, in the order given, into one buffer.
 * @size: sizeof(struct memkit_ckpt_copy).
 * @flags: must be 0.
 * @pages: user pointer to @count __u64 page indexes.
 * @count: number of pages (1 to 65536).
 * @buf: user buffer.
 * @buf_len: bytes of @buf, at least 4096 * @count (else ENOSPC).
 * @bytes: out: bytes written to @buf.
 */
struct memkit_ckpt_copy {
	__u32 size;
	__u32 flags;
	__u64 pages;
	__u64 count;
	__u64 buf;
	__u64 buf_len;
	__u64 bytes;
};
#define MEMKIT_CKPT_COPY_SIZE_VER0 48
#define MEMKIT_CKPT_COPY_MAX_PAGES 65536

/* memkit_ckpt_diff_set.flags: empty the diff set first. */
#define MEMKIT_CKPT_DIFF_SET_RESET (1U << 0)
/* memkit_ckpt_diff_set.flags: remove the pages (and their versions); not with RESET. */
#define MEMKIT_CKPT_DIFF_SET_REMOVE (1U << 1)

/**
 * struct memkit_ckpt_diff_set - MEMKIT_IOC_CKPT_DIFF_SET: the pages worth diffing
 * (the backup's list).  The module keeps the last version it copied out of each of
 * them, and only of them; a page enters the set without a version (its next copy is
 * whole).
 * @size: sizeof(struct memkit_ckpt_diff_set).
 * @flags: MEMKIT_CKPT_DIFF_SET_RESET: empty the set (and drop its versions) first;
 *	MEMKIT_CKPT_DIFF_SET_REMOVE: take the pages out (dropping their versions)
 *	instead of adding them.  Both at once: EINVAL.
 * @pages: user pointer to @count __u64 page indexes (any order, repeats fine).
 * @count: number of indexes (0 to 65536).
 */
struct memkit_ckpt_diff_set {
	__u32 size;
	__u32 flags;
	__u64 pages;
	__u64 count;
};
#define MEMKIT_CKPT_DIFF_SET_SIZE_VER0 24

/*
 * Records of MEMKIT_IOC_CKPT_COPY_DIFF: a 16-byte header (page index __u64, kind __u32,
 * payload bytes __u32; little-endian) and its payload.  FULL: the page's 4096 bytes.
 * DIFF: a __u64 mask of changed segments (bit i: segment i) and the changed segments'
 * bytes in order, against the version the module last copied out of that page.
 */
#define MEMKIT_CKPT_REC_FULL 0
#define MEMKIT_CKPT_REC_DIFF 1
#define MEMKIT_CKPT_REC_HEADER 16
/* Most pages one MEMKIT_IOC_CKPT_COPY_DIFF copies; its buffer needs this much per page. */
#define MEMKIT_CKPT_COPY_DIFF_MAX_PAGES 256
#define MEMKIT_CKPT_REC_MAX (MEMKIT_CKPT_REC_HEADER + 4096)

/**
 * struct memkit_ckpt_copy_diff - MEMKIT_IOC_CKPT_COPY_DIFF: a set of pages as records,
 * diffs for pages of the diff set with a version and at most @max_changed changed
 * segments, whole pages otherwise.  The versions advance only if the whole answer was
 * copied out.
 * @size: sizeof(struct memkit_ckpt_copy_diff).
 * @flags: must be 0.
 * @pages: user pointer to @count __u64 page indexes, no repeats.
 * @count: number of pages (1 to MEMKIT_CKPT_COPY_DIFF_MAX_PAGES).
 * @buf: user buffer for the records.
 * @buf_len: bytes of @buf, at least MEMKIT_CKPT_REC_MAX * @count (else ENOSPC).
 * @segment: bytes per segment: a power of two from 64 to 4096.
 * @max_changed: a page with more changed segments is sent whole.
 * @bytes: out: bytes of records written.
 * @diffed: out: pages sent as diffs.
 */
struct memkit_ckpt_copy_diff {
	__u32 size;
	__u32 flags;
	__u64 pages;
	__u64 count;
	__u64 buf;
	__u64 buf_len;
	__u32 segment;
	__u32 max_changed;
	__u64 bytes;
	__u64 diffed;
};
#define MEMKIT_CKPT_COPY_DIFF_SIZE_VER0 64

/**
 * struct memkit_ckpt_stats - MEMKIT_IOC_CKPT_STATS: the file's region.
 * @size: sizeof(struct memkit_ckpt_stats).
 * @flags: must be 0.
 * @bytes: region size (0: no region yet).
 * @pages_allocated: pages touched so far (each owned by the module until the region
 *	goes with its last mapping and the file).
 * @collects: MEMKIT_IOC_CKPT_COLLECT calls that succeeded.
 * @intervals: of those, the clearing ones.
 * @dirty_reported: dirty pages reported by clearing collects, summed.
 * @dirty_unmapped: of those, pages found dirty after their mapping went (munmap,
 *	exit) rather than in a page table.
 * @pages_copied: pages copied out by MEMKIT_IOC_CKPT_COPY and _COPY_DIFF.
 * @pages_diffed: of those, pages sent as diffs.
 * @record_bytes: bytes of records MEMKIT_IOC_CKPT_COPY_DIFF wrote.
 * @mode: (ABI 1.2) the tracking mode now, MEMKIT_CKPT_MODE_SCAN or _RECORD.
 * @mode_fixed: (ABI 1.2) 1 if MEMKIT_IOC_CKPT_START fixed the mode.
 * @mode_switches: (ABI 1.2) times the module changed the mode by itself.
 * @write_faults: (ABI 1.2) first writes recorded in the recording mode.
 * @wp_pages: (ABI 1.2) pages of the spans recording-mode collects write-protected.
 * @snapshot_pages: (ABI 1.3) pages reported by snapshot collects.
 * @cow_copies: (ABI 1.3) of those, pages a write reached before they were copied
 *	out (the write fault copied their old contents first).
 */
struct memkit_ckpt_stats {
	__u32 size;
	__u32 flags;
	__u64 bytes;
	__u64 pages_allocated;
	__u64 collects;
	__u64 intervals;
	__u64 dirty_reported;
	__u64 dirty_unmapped;
	__u64 pages_copied;
	__u64 pages_diffed;
	__u64 record_bytes;
	__u32 mode;
	__u32 mode_fixed;
	__u64 mode_switches;
	__u64 write_faults;
	__u64 wp_pages;
	__u64 snapshot_pages;
	__u64 cow_copies;
};
#define MEMKIT_CKPT_STATS_SIZE_VER0 80

#define MEMKIT_IOC_CKPT_CREATE _IOWR(MEMKIT_IOC_MAGIC, 0x30, struct memkit_ckpt_create)
#define MEMKIT_IOC_CKPT_START _IOW(MEMKIT_IOC_MAGIC, 0x31, struct memkit_ckpt_start)
#define MEMKIT_IOC_CKPT_COLLECT _IOWR(MEMKIT_IOC_MAGIC, 0x32, struct memkit_ckpt_collect)
#define MEMKIT_IOC_CKPT_HISTORY _IOW(MEMKIT_IOC_MAGIC, 0x33, struct memkit_ckpt_history)
#define MEMKIT_IOC_CKPT_COPY _IOWR(MEMKIT_IOC_MAGIC, 0x34, struct memkit_ckpt_copy)
#define MEMKIT_IOC_CKPT_STATS _IOWR(MEMKIT_IOC_MAGIC, 0x35, struct memkit_ckpt_stats)
#define MEMKIT_IOC_CKPT_DIFF_SET _IOW(MEMKIT_IOC_MAGIC, 0x36, struct memkit_ckpt_diff_set)
#define MEMKIT_IOC_CKPT_COPY_DIFF _IOWR(MEMKIT_IOC_MAGIC, 0x37, struct memkit_ckpt_copy_diff)

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
_Static_assert(sizeof(struct memkit_journal_attach) == 24, "memkit_journal_attach size");
_Static_assert(offsetof(struct memkit_journal_attach, path) == 8, "memkit_journal_attach.path");
_Static_assert(offsetof(struct memkit_journal_attach, mj_count) == 16, "memkit_journal_attach.mj_count");
_Static_assert(offsetof(struct memkit_journal_attach, mj_size) == 20, "memkit_journal_attach.mj_size");
_Static_assert(sizeof(struct memkit_journal_detach) == 8, "memkit_journal_detach size");
_Static_assert(sizeof(struct memkit_journal_status) == 320, "memkit_journal_status size");
_Static_assert(offsetof(struct memkit_journal_status, dev_size) == 16, "memkit_journal_status.dev_size");
_Static_assert(offsetof(struct memkit_journal_status, mj_count) == 40, "memkit_journal_status.mj_count");
_Static_assert(offsetof(struct memkit_journal_status, sync_dax) == 56, "memkit_journal_status.sync_dax");
_Static_assert(offsetof(struct memkit_journal_status, next_id) == 64, "memkit_journal_status.next_id");
_Static_assert(offsetof(struct memkit_journal_status, rec_ns) == 120, "memkit_journal_status.rec_ns");
_Static_assert(offsetof(struct memkit_journal_status, transactions) == 128, "memkit_journal_status.transactions");
_Static_assert(offsetof(struct memkit_journal_status, lines_written_back) == 184, "memkit_journal_status.lines_written_back");
_Static_assert(offsetof(struct memkit_journal_status, lat_hist) == 192, "memkit_journal_status.lat_hist");
_Static_assert(sizeof(struct memkit_journal_range) == 24, "memkit_journal_range size");
_Static_assert(sizeof(struct memkit_journal_tx) == 32, "memkit_journal_tx size");
_Static_assert(offsetof(struct memkit_journal_tx, ranges) == 8, "memkit_journal_tx.ranges");
_Static_assert(offsetof(struct memkit_journal_tx, nr_ranges) == 16, "memkit_journal_tx.nr_ranges");
_Static_assert(offsetof(struct memkit_journal_tx, commit_id) == 24, "memkit_journal_tx.commit_id");
_Static_assert(sizeof(struct memkit_ckpt_create) == 24, "memkit_ckpt_create size");
_Static_assert(offsetof(struct memkit_ckpt_create, bytes) == 8, "memkit_ckpt_create.bytes");
_Static_assert(offsetof(struct memkit_ckpt_create, mmap_offset) == 16, "memkit_ckpt_create.mmap_offset");
_Static_assert(sizeof(struct memkit_ckpt_start) == 8, "memkit_ckpt_start size");
_Static_assert(sizeof(struct memkit_ckpt_range) == 16, "memkit_ckpt_range size");
_Static_assert(sizeof(struct memkit_ckpt_collect) == 56, "memkit_ckpt_collect size");
_Static_assert(offsetof(struct memkit_ckpt_collect, first) == 8, "memkit_ckpt_collect.first");
_Static_assert(offsetof(struct memkit_ckpt_collect, buf_len) == 32, "memkit_ckpt_collect.buf_len");
_Static_assert(offsetof(struct memkit_ckpt_collect, nr_ranges) == 48, "memkit_ckpt_collect.nr_ranges");
_Static_assert(sizeof(struct memkit_ckpt_history) == 40, "memkit_ckpt_history size");
_Static_assert(offsetof(struct memkit_ckpt_history, buf_len) == 32, "memkit_ckpt_history.buf_len");
_Static_assert(sizeof(struct memkit_ckpt_copy) == 48, "memkit_ckpt_copy size");
_Static_assert(offsetof(struct memkit_ckpt_copy, bytes) == 40, "memkit_ckpt_copy.bytes");
_Static_assert(sizeof(struct memkit_ckpt_stats) == 128, "memkit_ckpt_stats size");
_Static_assert(offsetof(struct memkit_ckpt_stats, mode) == 80, "memkit_ckpt_stats.mode");
_Static_assert(offsetof(struct memkit_ckpt_stats, mode_fixed) == 84, "memkit_ckpt_stats.mode_fixed");
_Static_assert(offsetof(struct memkit_ckpt_stats, mode_switches) == 88, "memkit_ckpt_stats.mode_switches");
_Static_assert(offsetof(struct memkit_ckpt_stats, write_faults) == 96, "memkit_ckpt_stats.write_faults");
_Static_assert(offsetof(struct memkit_ckpt_stats, wp_pages) == 104, "memkit_ckpt_stats.wp_pages");
_Static_assert(offsetof(struct memkit_ckpt_stats, snapshot_pages) == 112, "memkit_ckpt_stats.snapshot_pages");
_Static_assert(offsetof(struct memkit_ckpt_stats, cow_copies) == 120, "memkit_ckpt_stats.cow_copies");
_Static_assert(offsetof(struct memkit_ckpt_stats, record_bytes) == 72, "memkit_ckpt_stats.record_bytes");
_Static_assert(sizeof(struct memkit_ckpt_diff_set) == 24, "memkit_ckpt_diff_set size");
_Static_assert(sizeof(struct memkit_ckpt_copy_diff) == 64, "memkit_ckpt_copy_diff size");
_Static_assert(offsetof(struct memkit_ckpt_copy_diff, segment) == 40, "memkit_ckpt_copy_diff.segment");
_Static_assert(offsetof(struct memkit_ckpt_copy_diff, diffed) == 56, "memkit_ckpt_copy_diff.diffed");
_Static_assert(offsetof(struct memkit_ckpt_stats, pages_copied) == 56, "memkit_ckpt_stats.pages_copied");
_Static_assert(sizeof(struct memkit_rmem_config) == 72, "memkit_rmem_config size");
_Static_assert(offsetof(struct memkit_rmem_config, deadline_ns) == 32, "memkit_rmem_config.deadline_ns");
_Static_assert(offsetof(struct memkit_rmem_config, mmap_offset) == 64, "memkit_rmem_config.mmap_offset");
_Static_assert(sizeof(struct memkit_rmem_msg) == 32, "memkit_rmem_msg size");
_Static_assert(offsetof(struct memkit_rmem_msg, page) == 16, "memkit_rmem_msg.page");
_Static_assert(sizeof(struct memkit_rmem_stats) == 256, "memkit_rmem_stats size");
_Static_assert(offsetof(struct memkit_rmem_stats, lat_hist) == 128, "memkit_rmem_stats.lat_hist");
#endif

#endif /* _UAPI_LINUX_MEMKIT_H */
