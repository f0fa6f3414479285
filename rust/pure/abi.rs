// SPDX-License-Identifier: GPL-2.0

//! The userspace ABI in Rust: the mirror of `tools/include/uapi/linux/memkit.h`.
//!
//! Structs are declared with [`uapi_struct!`], which fixes every field's offset and
//! the struct's size as literal numbers and checks them at compile time; the host test
//! `tools/core/tests/c_header.rs` compiles the C header and checks the same numbers
//! there. Structs cross the boundary as bytes in native byte order
//! ([`UapiStruct::decode`] / [`UapiStruct::encode`]), so neither side needs `unsafe`.
//!
//! The size-versioning rules of every struct are [`plan_copy_in`] and
//! [`UapiStruct::check`].

/// Major ABI version: bumped on an incompatible change.
pub const ABI_MAJOR: u32 = 1;
/// Minor ABI version: bumped when commands or struct fields are added.
pub const ABI_MINOR: u32 = 3;

/// The ioctl type byte of every memkit command.
pub const IOC_MAGIC: u32 = 0xE7;
/// Largest `size` any memkit struct may claim.
pub const STRUCT_SIZE_MAX: u32 = 4096;

/// `memkit_version.device` of `/dev/memkit-journal`.
pub const DEV_JOURNAL: u32 = 1;
/// `memkit_version.device` of `/dev/memkit-rmem`.
pub const DEV_RMEM: u32 = 2;
/// `memkit_version.device` of `/dev/memkit-ckpt`.
pub const DEV_CKPT: u32 = 3;

/// Feature bit: journal transactions.
pub const FEAT_JOURNAL_TX: u64 = 1 << 0;
/// Feature bit: remote-memory regions with page-table-walk prefetch.
pub const FEAT_RMEM_PREFETCH: u64 = 1 << 1;
/// Feature bit: checkpoint dirty tracking.
pub const FEAT_CKPT_DIRTY: u64 = 1 << 2;
/// Feature bit (ABI 1.1): the device's open files describe themselves (the
/// journal's device, the file's region) in `/proc/PID/fdinfo/FD`, in the lines of
/// [`fdinfo`].
pub const FEAT_FDINFO: u64 = 1 << 3;
/// Feature bit (ABI 1.2): checkpoint regions track writes two ways, by page-table
/// scan or by recording first writes to write-protected pages, chosen per region
/// ([`CKPT_START_SCAN`], [`CKPT_START_RECORD`], [`CkptStats::mode`]).
pub const FEAT_CKPT_RECORD: u64 = 1 << 4;
/// Feature bit (ABI 1.3): a clearing collect of a recording region can open a
/// copy-on-write snapshot of the pages it reports ([`CKPT_COLLECT_SNAPSHOT`]).
pub const FEAT_CKPT_SNAPSHOT: u64 = 1 << 5;
/// Every feature bit this ABI version defines.
pub const FEATURES_KNOWN: u64 = FEAT_JOURNAL_TX
    | FEAT_RMEM_PREFETCH
    | FEAT_CKPT_DIRTY
    | FEAT_FDINFO
    | FEAT_CKPT_RECORD
    | FEAT_CKPT_SNAPSHOT;

/// The lines memkit's devices add to `/proc/PID/fdinfo/FD` of their open files
/// (`FEAT_FDINFO`), each `KEY:\tVALUE`, as DRM's `drm-` keys: what `memkit list`
/// reads. Every file has [`DEVICE`](fdinfo::DEVICE); a journal file has
/// [`JOURNAL_DEV`](fdinfo::JOURNAL_DEV); an rmem or ckpt file has
/// [`REGION`](fdinfo::REGION), and once it has a region, the other keys its device
/// lists. Numbers are decimal, except `memkit-mmap-offset` (hex, `0x…`).
pub mod fdinfo {
    /// `journal`, `rmem` or `ckpt`.
    pub const DEVICE: &str = "memkit-device";
    /// journal: the attached block device, `MAJOR:MINOR`, or `none`.
    pub const JOURNAL_DEV: &str = "memkit-journal-dev";
    /// The region's id (its mmap window), or `none` before configure/create.
    pub const REGION: &str = "memkit-region";
    /// The offset to mmap the region at.
    pub const MMAP_OFFSET: &str = "memkit-mmap-offset";
    /// Region bytes.
    pub const BYTES: &str = "memkit-bytes";
    /// rmem: `emulated` or `agent`.
    pub const BACKEND: &str = "memkit-backend";
    /// rmem: the prefetch policy's name (`ptline`, …).
    pub const POLICY: &str = "memkit-policy";
    /// rmem: the local budget, pages.
    pub const BUDGET: &str = "memkit-budget-pages";
    /// rmem: pages local now.
    pub const LOCAL: &str = "memkit-local-pages";
    /// rmem: faults served from the backend synchronously.
    pub const FAULTS_SYNC: &str = "memkit-faults-sync";
    /// rmem: prefetches issued.
    pub const PREFETCHES: &str = "memkit-prefetches";
    /// ckpt: pages touched so far.
    pub const PAGES_ALLOCATED: &str = "memkit-pages-allocated";
    /// ckpt: clearing collects (checkpoint intervals).
    pub const INTERVALS: &str = "memkit-intervals";
}

// The generic `_IOC` encoding (x86, arm64, riscv; not alpha, mips, powerpc, sparc).
const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_TYPESHIFT: u32 = IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_SIZEMASK: u32 = ((1 << IOC_SIZEBITS) - 1) << IOC_SIZESHIFT;
/// `_IOC_WRITE`: userspace writes the argument.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: userspace reads the argument.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS));
    (dir << IOC_DIRSHIFT) | ((size as u32) << IOC_SIZESHIFT) | (ty << IOC_TYPESHIFT) | nr
}

/// `_IOWR(MEMKIT_IOC_MAGIC, nr, T)`.
pub const fn iowr<T: UapiStruct>(nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, IOC_MAGIC, nr, T::SIZE)
}

/// `_IOW(MEMKIT_IOC_MAGIC, nr, T)`.
pub const fn iow<T: UapiStruct>(nr: u32) -> u32 {
    ioc(IOC_WRITE, IOC_MAGIC, nr, T::SIZE)
}

/// `MEMKIT_IOC_VERSION`.
pub const IOC_VERSION: u32 = iowr::<Version>(0x00);
/// `MEMKIT_IOC_JOURNAL_ATTACH`.
pub const IOC_JOURNAL_ATTACH: u32 = iow::<JournalAttach>(0x10);
/// `MEMKIT_IOC_JOURNAL_DETACH`.
pub const IOC_JOURNAL_DETACH: u32 = iow::<JournalDetach>(0x11);
/// `MEMKIT_IOC_JOURNAL_STATUS`.
pub const IOC_JOURNAL_STATUS: u32 = iowr::<JournalStatus>(0x12);
/// `MEMKIT_IOC_JOURNAL_TX`.
pub const IOC_JOURNAL_TX: u32 = iowr::<JournalTx>(0x13);
/// `MEMKIT_IOC_RMEM_CONFIGURE`.
pub const IOC_RMEM_CONFIGURE: u32 = iowr::<RmemConfig>(0x20);
/// `MEMKIT_IOC_RMEM_STATS`.
pub const IOC_RMEM_STATS: u32 = iowr::<RmemStats>(0x21);
/// `MEMKIT_IOC_CKPT_CREATE`.
pub const IOC_CKPT_CREATE: u32 = iowr::<CkptCreate>(0x30);
/// `MEMKIT_IOC_CKPT_START`.
pub const IOC_CKPT_START: u32 = iow::<CkptStart>(0x31);
/// `MEMKIT_IOC_CKPT_COLLECT`.
pub const IOC_CKPT_COLLECT: u32 = iowr::<CkptCollect>(0x32);
/// `MEMKIT_IOC_CKPT_HISTORY`.
pub const IOC_CKPT_HISTORY: u32 = iow::<CkptHistory>(0x33);
/// `MEMKIT_IOC_CKPT_COPY`.
pub const IOC_CKPT_COPY: u32 = iowr::<CkptCopy>(0x34);
/// `MEMKIT_IOC_CKPT_STATS`.
pub const IOC_CKPT_STATS: u32 = iowr::<CkptStats>(0x35);
/// `MEMKIT_IOC_CKPT_DIFF_SET`.
pub const IOC_CKPT_DIFF_SET: u32 = iow::<CkptDiffSet>(0x36);
/// `MEMKIT_IOC_CKPT_COPY_DIFF`.
pub const IOC_CKPT_COPY_DIFF: u32 = iowr::<CkptCopyDiff>(0x37);

/// A memkit command, decoded from an ioctl command number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `MEMKIT_IOC_VERSION`.
    Version,
    /// `MEMKIT_IOC_JOURNAL_ATTACH`.
    JournalAttach,
    /// `MEMKIT_IOC_JOURNAL_DETACH`.
    JournalDetach,
    /// `MEMKIT_IOC_JOURNAL_STATUS`.
    JournalStatus,
    /// `MEMKIT_IOC_JOURNAL_TX`.
    JournalTx,
    /// `MEMKIT_IOC_RMEM_CONFIGURE`.
    RmemConfigure,
    /// `MEMKIT_IOC_RMEM_STATS`.
    RmemStats,
    /// `MEMKIT_IOC_CKPT_CREATE`.
    CkptCreate,
    /// `MEMKIT_IOC_CKPT_START`.
    CkptStart,
    /// `MEMKIT_IOC_CKPT_COLLECT`.
    CkptCollect,
    /// `MEMKIT_IOC_CKPT_HISTORY`.
    CkptHistory,
    /// `MEMKIT_IOC_CKPT_COPY`.
    CkptCopy,
    /// `MEMKIT_IOC_CKPT_STATS`.
    CkptStats,
    /// `MEMKIT_IOC_CKPT_DIFF_SET`.
    CkptDiffSet,
    /// `MEMKIT_IOC_CKPT_COPY_DIFF`.
    CkptCopyDiff,
}

impl Command {
    /// Decodes `cmd`, ignoring its size bits: the struct's own `size` field versions it.
    ///
    /// Returns `None` for a command memkit does not define (the caller answers `ENOTTY`).
    pub fn decode(cmd: u32) -> Option<Command> {
        const TABLE: [(u32, Command); 15] = [
            (IOC_VERSION, Command::Version),
            (IOC_JOURNAL_ATTACH, Command::JournalAttach),
            (IOC_JOURNAL_DETACH, Command::JournalDetach),
            (IOC_JOURNAL_STATUS, Command::JournalStatus),
            (IOC_JOURNAL_TX, Command::JournalTx),
            (IOC_RMEM_CONFIGURE, Command::RmemConfigure),
            (IOC_RMEM_STATS, Command::RmemStats),
            (IOC_CKPT_CREATE, Command::CkptCreate),
            (IOC_CKPT_START, Command::CkptStart),
            (IOC_CKPT_COLLECT, Command::CkptCollect),
            (IOC_CKPT_HISTORY, Command::CkptHistory),
            (IOC_CKPT_COPY, Command::CkptCopy),
            (IOC_CKPT_STATS, Command::CkptStats),
            (IOC_CKPT_DIFF_SET, Command::CkptDiffSet),
            (IOC_CKPT_COPY_DIFF, Command::CkptCopyDiff),
        ];
        TABLE
            .iter()
            .find(|(c, _)| c & !IOC_SIZEMASK == cmd & !IOC_SIZEMASK)
            .map(|(_, command)| *command)
    }
}

/// Why a struct from userspace was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UapiError {
    /// `size` is below the struct's first published size.
    SizeTooSmall,
    /// `size` is above [`STRUCT_SIZE_MAX`].
    SizeTooBig,
    /// `size` is larger than the module's struct and the extra bytes are not zero.
    NonZeroTail,
    /// A padding field is not zero.
    NonZeroPad,
    /// A flag this ABI version does not define is set.
    UnknownFlags,
}

/// `EINVAL`, the same on every Linux architecture.
pub const EINVAL: i32 = 22;
/// `E2BIG`, the same on every Linux architecture.
pub const E2BIG: i32 = 7;
/// `ENOTTY`, the same on every Linux architecture.
pub const ENOTTY: i32 = 25;

impl UapiError {
    /// The (positive) errno userspace sees.
    pub const fn errno(self) -> i32 {
        match self {
            UapiError::SizeTooSmall | UapiError::NonZeroPad | UapiError::UnknownFlags => EINVAL,
            UapiError::SizeTooBig | UapiError::NonZeroTail => E2BIG,
        }
    }
}

/// How many bytes of a user struct to copy in, and how many extra bytes must be zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    /// Bytes to copy into the (zeroed) kernel struct: `min(user size, kernel size)`.
    pub copy: usize,
    /// Bytes after the kernel struct that must read as zero: `user size - kernel size`, or 0.
    pub tail: usize,
}

/// Applies the size rules to the `size` field a caller passed for struct `T`.
pub fn plan_copy_in<T: UapiStruct>(user_size: u32) -> Result<CopyPlan, UapiError> {
    if user_size > STRUCT_SIZE_MAX {
        return Err(UapiError::SizeTooBig);
    }
    // Lossless: `user_size <= STRUCT_SIZE_MAX` fits in `usize`.
    let user_size = user_size as usize;
    if user_size < T::SIZE_VER0 {
        return Err(UapiError::SizeTooSmall);
    }
    Ok(CopyPlan {
        copy: user_size.min(T::SIZE),
        tail: user_size.saturating_sub(T::SIZE),
    })
}

/// A fixed-width field of a uapi struct, read and written in native byte order.
pub trait Field: Copy {
    /// Reads the field at `off`; bytes past the end of `buf` read as zero.
    fn get(buf: &[u8], off: usize) -> Self;
    /// Writes the field at `off`; bytes past the end of `buf` are dropped.
    fn put(self, buf: &mut [u8], off: usize);
}

macro_rules! impl_field {
    ($($ty:ty),*) => {$(
        impl Field for $ty {
            fn get(buf: &[u8], off: usize) -> Self {
                let mut raw = [0u8; core::mem::size_of::<$ty>()];
                for (i, b) in raw.iter_mut().enumerate() {
                    *b = off.checked_add(i).and_then(|j| buf.get(j)).copied().unwrap_or(0);
                }
                <$ty>::from_ne_bytes(raw)
            }

            fn put(self, buf: &mut [u8], off: usize) {
                for (i, b) in self.to_ne_bytes().iter().enumerate() {
                    if let Some(dst) = off.checked_add(i).and_then(|j| buf.get_mut(j)) {
                        *dst = *b;
                    }
                }
            }
        }
    )*};
}
impl_field!(u32, u64);

impl<const N: usize> Field for [u64; N] {
    fn get(buf: &[u8], off: usize) -> Self {
        let mut out = [0u64; N];
        for (i, v) in out.iter_mut().enumerate() {
            *v = off.checked_add(i * 8).map_or(0, |o| u64::get(buf, o));
        }
        out
    }

    fn put(self, buf: &mut [u8], off: usize) {
        for (i, v) in self.iter().enumerate() {
            if let Some(o) = off.checked_add(i * 8) {
                v.put(buf, o);
            }
        }
    }
}

/// A struct of the memkit ABI.
pub trait UapiStruct: Sized + Copy + Default {
    /// Size of the struct in this ABI version.
    const SIZE: usize;
    /// Size of the struct's first published version: the smallest `size` accepted.
    const SIZE_VER0: usize;
    /// Reads the struct from `buf` in native byte order; missing bytes read as zero.
    fn decode(buf: &[u8]) -> Self;
    /// Writes the struct to `buf` in native byte order; bytes past `buf` are dropped.
    fn encode(&self, buf: &mut [u8]);
    /// Checks the input rules other than size: zero padding, known flags.
    fn check(&self) -> Result<(), UapiError>;
}

/// Declares a uapi struct with its field offsets and size as literals, checked at
/// compile time against the Rust layout, and implements [`UapiStruct`] for it.
macro_rules! uapi_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident (size $size:literal, ver0 $ver0:literal) {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $off:literal, )*
        }
        check($this:ident) $check:block
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        const _: () = {
            assert!(core::mem::size_of::<$name>() == $size);
            assert!($ver0 <= $size);
            $( assert!(core::mem::offset_of!($name, $field) == $off); )*
        };

        impl UapiStruct for $name {
            const SIZE: usize = $size;
            const SIZE_VER0: usize = $ver0;

            fn decode(buf: &[u8]) -> Self {
                Self { $( $field: <$ty as Field>::get(buf, $off), )* }
            }

            fn encode(&self, buf: &mut [u8]) {
                $( Field::put(self.$field, buf, $off); )*
            }

            fn check(&self) -> Result<(), UapiError> {
                let $this = self;
                $check
            }
        }
    };
}

uapi_struct! {
    /// `struct memkit_version`: the argument of `MEMKIT_IOC_VERSION`.
    pub struct Version (size 32, ver0 32) {
        /// In: the caller's struct size; out: bytes written.
        size: u32 = 0,
        /// In: must be 0.
        flags: u32 = 4,
        /// Out: [`ABI_MAJOR`].
        abi_major: u32 = 8,
        /// Out: [`ABI_MINOR`].
        abi_minor: u32 = 12,
        /// Out: `FEAT_*` bits the device implements.
        features: u64 = 16,
        /// Out: `DEV_*` of the device that answered.
        device: u32 = 24,
        /// Must be 0.
        pad: u32 = 28,
    }
    check(v) {
        if v.flags != 0 {
            Err(UapiError::UnknownFlags)
        } else if v.pad != 0 {
            Err(UapiError::NonZeroPad)
        } else {
            Ok(())
        }
    }
}

/// `memkit_journal_attach.flags`: format the device before attaching it.
pub const JOURNAL_ATTACH_FORMAT: u32 = 1 << 0;
/// Every `memkit_journal_attach.flags` bit.
pub const JOURNAL_ATTACH_FLAGS: u32 = JOURNAL_ATTACH_FORMAT;
/// Buckets of `memkit_journal_status.lat_hist`.
pub const JOURNAL_LAT_BUCKETS: usize = 16;
/// `memkit_journal_status.mode`: one barrier per commit group.
pub const JOURNAL_MODE_COALESCED: u32 = 0;
/// `memkit_journal_status.mode`: two barriers per commit group.
pub const JOURNAL_MODE_STRICT: u32 = 1;

uapi_struct! {
    /// `struct memkit_journal_attach`: the argument of `MEMKIT_IOC_JOURNAL_ATTACH`.
    pub struct JournalAttach (size 24, ver0 24) {
        /// The caller's struct size.
        size: u32 = 0,
        /// `JOURNAL_ATTACH_*`.
        flags: u32 = 4,
        /// User pointer to the NUL-terminated device path.
        path: u64 = 8,
        /// With `JOURNAL_ATTACH_FORMAT`: number of MJs (0: default).
        mj_count: u32 = 16,
        /// With `JOURNAL_ATTACH_FORMAT`: bytes per MJ (0: default).
        mj_size: u32 = 20,
    }
    check(a) {
        if a.flags & !JOURNAL_ATTACH_FLAGS != 0 {
            Err(UapiError::UnknownFlags)
        } else {
            Ok(())
        }
    }
}

uapi_struct! {
    /// `struct memkit_journal_detach`: the argument of `MEMKIT_IOC_JOURNAL_DETACH`.
    pub struct JournalDetach (size 8, ver0 8) {
        /// The caller's struct size.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
    }
    check(d) {
        if d.flags != 0 {
            Err(UapiError::UnknownFlags)
        } else {
            Ok(())
        }
    }
}

uapi_struct! {
    /// `struct memkit_journal_status`: the argument of `MEMKIT_IOC_JOURNAL_STATUS`.
    pub struct JournalStatus (size 320, ver0 320) {
        /// In: the caller's struct size; out: bytes written.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
        /// 1 if a journal is attached.
        attached: u32 = 8,
        /// `JOURNAL_MODE_*`.
        mode: u32 = 12,
        /// Bytes of the device the journal uses.
        dev_size: u64 = 16,
        /// Device offset of the data region.
        data_offset: u64 = 24,
        /// Bytes of the data region.
        data_size: u64 = 32,
        /// Number of MJs.
        mj_count: u32 = 40,
        /// Bytes per MJ.
        mj_size: u32 = 44,
        /// Most ranges per transaction.
        max_ranges: u32 = 48,
        /// Most entry bytes per transaction.
        max_tx_bytes: u32 = 52,
        /// 1 if the DAX mapping is synchronous.
        sync_dax: u32 = 56,
        /// Must be 0.
        pad: u32 = 60,
        /// Commit id of the next transaction.
        next_id: u64 = 64,
        /// MJs replayed by the last recovery.
        rec_replayed: u64 = 72,
        /// Torn or corrupted MJs discarded.
        rec_discarded: u64 = 80,
        /// Valid MJs below the low-water mark, skipped.
        rec_stale: u64 = 88,
        /// Valid MJs of incomplete commit groups, skipped.
        rec_incomplete: u64 = 96,
        /// Never-written MJs.
        rec_empty: u64 = 104,
        /// The low-water mark recovery used.
        rec_lwm: u64 = 112,
        /// Recovery time in nanoseconds.
        rec_ns: u64 = 120,
        /// Transactions committed since attach.
        transactions: u64 = 128,
        /// Commit groups.
        groups: u64 = 136,
        /// Persistence barriers issued by commits.
        barriers: u64 = 144,
        /// Device flush requests issued.
        device_flushes: u64 = 152,
        /// Bytes written to MJs.
        journal_bytes: u64 = 160,
        /// Bytes written in place.
        inplace_bytes: u64 = 168,
        /// Bytes the transactions asked to write.
        payload_bytes: u64 = 176,
        /// 64-byte lines written with cache-bypassing stores.
        lines_written_back: u64 = 184,
        /// Commit latency histogram, log2 microseconds.
        lat_hist: [u64; JOURNAL_LAT_BUCKETS] = 192,
    }
    check(s) {
        if s.flags != 0 {
            Err(UapiError::UnknownFlags)
        } else if s.pad != 0 {
            Err(UapiError::NonZeroPad)
        } else {
            Ok(())
        }
    }
}

uapi_struct! {
    /// `struct memkit_journal_range`: one element of a transaction's range array
    /// (fixed size: arrays are not versioned by a `size` field).
    pub struct JournalRange (size 24, ver0 24) {
        /// Offset in the data region.
        offset: u64 = 0,
        /// Bytes to write.
        len: u64 = 8,
        /// User pointer to the bytes.
        data: u64 = 16,
    }
    check(_r) {
        Ok(())
    }
}

uapi_struct! {
    /// `struct memkit_journal_tx`: the argument of `MEMKIT_IOC_JOURNAL_TX`.
    pub struct JournalTx (size 32, ver0 32) {
        /// The caller's struct size.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
        /// User pointer to the range array.
        ranges: u64 = 8,
        /// Number of ranges.
        nr_ranges: u32 = 16,
        /// Must be 0.
        pad: u32 = 20,
        /// Out: the commit id.
        commit_id: u64 = 24,
    }
    check(t) {
        if t.flags != 0 {
            Err(UapiError::UnknownFlags)
        } else if t.pad != 0 {
            Err(UapiError::NonZeroPad)
        } else {
            Ok(())
        }
    }
}

/// Largest remote-memory region, in bytes.
pub const RMEM_MAX_BYTES: u64 = 1 << 32;
/// Largest local budget, in pages.
pub const RMEM_MAX_BUDGET: u64 = 1 << 18;
/// Most prefetches one fault may issue.
pub const RMEM_MAX_DEGREE: u32 = 64;
/// Most requests in flight at once (per region).
pub const RMEM_MAX_INFLIGHT: u32 = 256;
/// Longest prefetch deadline, and longest emulated base latency, in ns.
pub const RMEM_MAX_NS: u64 = 1_000_000_000;
/// Longest emulated per-page transfer time, in ns.
pub const RMEM_MAX_PAGE_NS: u64 = 100_000_000;
/// `memkit_rmem_config.flags`: keep a late prefetch's data as a local copy (without
/// it, late data is dropped).
pub const RMEM_KEEP_LATE: u32 = 1 << 0;
/// Every `memkit_rmem_config` flag.
pub const RMEM_CONFIG_FLAGS: u32 = RMEM_KEEP_LATE;
/// `memkit_rmem_config.backend`: the in-kernel store with a latency model.
pub const RMEM_BACKEND_EMULATED: u32 = 0;
/// `memkit_rmem_config.backend`: a userspace agent serves the region's file.
pub const RMEM_BACKEND_AGENT: u32 = 1;
/// `memkit_rmem_config.policy`: no prefetch.
pub const RMEM_POLICY_NONE: u32 = 0;
/// `memkit_rmem_config.policy`: the not-present PTEs of the faulting PTE line.
pub const RMEM_POLICY_PTLINE: u32 = 1;
/// `memkit_rmem_config.policy`: the PTE line and the next one, by access history.
pub const RMEM_POLICY_PTLINE_HISTORY: u32 = 2;
/// `memkit_rmem_config.policy`: an adaptive window around faults (Linux VMA readahead).
pub const RMEM_POLICY_WINDOW: u32 = 3;
/// `memkit_rmem_config.policy`: the majority trend of fault deltas (Leap).
pub const RMEM_POLICY_TREND: u32 = 4;
/// Number of policies.
pub const RMEM_POLICIES: u32 = 5;
/// `memkit_rmem_stats.flags`: the module's totals over every region, closed ones too.
pub const RMEM_STATS_GLOBAL: u32 = 1 << 0;
/// Buckets of the fetch-latency histogram: bucket `i` counts latencies in
/// `[2^(i-1), 2^i)` µs (bucket 0: below 1 µs; the last: everything above).
pub const RMEM_LAT_BUCKETS: usize = 16;

uapi_struct! {
    /// `struct memkit_rmem_config`.
    pub struct RmemConfig (size 72, ver0 72) {
        /// The caller's struct size.
        size: u32 = 0,
        /// `RMEM_KEEP_LATE`.
        flags: u32 = 4,
        /// Region size in bytes: a multiple of the page size.
        bytes: u64 = 8,
        /// Most local pages at once.
        budget: u64 = 16,
        /// `RMEM_BACKEND_*`.
        backend: u32 = 24,
        /// `RMEM_POLICY_*`.
        policy: u32 = 28,
        /// Prefetch deadline in ns (0: none).
        deadline_ns: u64 = 32,
        /// Most prefetches per fault.
        degree: u32 = 40,
        /// Most requests in flight.
        max_inflight: u32 = 44,
        /// Emulated backend: latency of every request, ns.
        lat_base_ns: u64 = 48,
        /// Emulated backend: transfer time per page, ns (requests queue for it).
        lat_page_ns: u64 = 56,
        /// Out: the mmap offset of the region's first byte.
        mmap_offset: u64 = 64,
    }
    check(c) {
        if c.flags & !RMEM_CONFIG_FLAGS != 0 {
            Err(UapiError::UnknownFlags)
        } else {
            Ok(())
        }
    }
}

/// `memkit_rmem_msg.kind`: fetch a page (request), its data (reply).
pub const RMEM_MSG_FETCH: u32 = 1;
/// `memkit_rmem_msg.kind`: store a page (request, with its data), done (reply).
pub const RMEM_MSG_WRITEBACK: u32 = 2;

uapi_struct! {
    /// `struct memkit_rmem_msg`: a request `read` from an agent-backed region's file,
    /// or the reply `write`n to it; followed by a page of data for a write-back
    /// request and for a successful fetch reply.
    pub struct RmemMsg (size 32, ver0 32) {
        /// The request's id (never 0); a reply repeats it.
        id: u64 = 0,
        /// `RMEM_MSG_*`.
        kind: u32 = 8,
        /// Reply: 0, or a negative errno (the fetch failed).
        status: u32 = 12,
        /// Region page.
        page: u64 = 16,
        /// Must be 0.
        pad: u64 = 24,
    }
    check(m) {
        if m.pad != 0 {
            Err(UapiError::NonZeroPad)
        } else {
            Ok(())
        }
    }
}

uapi_struct! {
    /// `struct memkit_rmem_stats`.
    pub struct RmemStats (size 256, ver0 256) {
        /// The caller's struct size.
        size: u32 = 0,
        /// `RMEM_STATS_GLOBAL`.
        flags: u32 = 4,
        /// Region size (0: none; global: regions configured).
        bytes: u64 = 8,
        /// Local budget in pages (global: 0).
        budget: u64 = 16,
        /// Pages local now.
        local: u64 = 24,
        /// Faults that fetched their page synchronously.
        faults_sync: u64 = 32,
        /// Faults that found their page local.
        faults_local: u64 = 40,
        /// Faults that waited for a fetch already in flight.
        faults_wait: u64 = 48,
        /// Prefetches issued.
        prefetches: u64 = 56,
        /// Prefetched pages mapped before their deadline.
        installed: u64 = 64,
        /// Prefetched pages used before eviction.
        hits: u64 = 72,
        /// Prefetches whose deadline came first.
        late: u64 = 80,
        /// Prefetched pages evicted or dropped unused.
        wasted: u64 = 88,
        /// Pages evicted.
        evictions: u64 = 96,
        /// Dirty pages written back.
        writebacks: u64 = 104,
        /// Bytes fetched.
        bytes_in: u64 = 112,
        /// Bytes written back.
        bytes_out: u64 = 120,
        /// Fetch latency histogram (`RMEM_LAT_BUCKETS`).
        lat_hist: [u64; RMEM_LAT_BUCKETS] = 128,
    }
    check(c) {
        if c.flags & !RMEM_STATS_GLOBAL != 0 {
            Err(UapiError::UnknownFlags)
        } else {
            Ok(())
        }
    }
}

/// Largest checkpoint region, in bytes.
pub const CKPT_MAX_BYTES: u64 = 1 << 32;
/// `memkit_ckpt_collect.flags`: clear what is reported.
pub const CKPT_COLLECT_CLEAR: u32 = 1 << 0;
/// `memkit_ckpt_collect.flags`: report runs instead of a bitmap.
pub const CKPT_COLLECT_RANGES: u32 = 1 << 1;
/// `memkit_ckpt_collect.flags` (ABI 1.3): with `CLEAR`, on a region started with
/// [`CKPT_START_RECORD`], the reported pages become a copy-on-write snapshot: each
/// reads as it was at this collect when `COPY` or `COPY_DIFF` first copies it out,
/// however the program writes it meanwhile, until the next clearing collect.
pub const CKPT_COLLECT_SNAPSHOT: u32 = 1 << 2;
/// `memkit_ckpt_collect.flags` (ABI 1.3): report every page of the range, written
/// or not (a checkpoint of every page; with `SNAPSHOT`, without a stop).
pub const CKPT_COLLECT_ALL: u32 = 1 << 3;
/// Every `memkit_ckpt_collect` flag.
pub const CKPT_COLLECT_FLAGS: u32 =
    CKPT_COLLECT_CLEAR | CKPT_COLLECT_RANGES | CKPT_COLLECT_SNAPSHOT | CKPT_COLLECT_ALL;
/// Most pages one `MEMKIT_IOC_CKPT_COPY` copies (and indexes one `DIFF_SET` adds).
pub const CKPT_COPY_MAX_PAGES: u64 = 65536;
/// `memkit_ckpt_diff_set.flags`: empty the set first.
pub const CKPT_DIFF_SET_RESET: u32 = 1 << 0;
/// `memkit_ckpt_diff_set.flags`: remove the pages (and their versions) instead of
/// adding them; not with `RESET`.
pub const CKPT_DIFF_SET_REMOVE: u32 = 1 << 1;
/// Most pages one `MEMKIT_IOC_CKPT_COPY_DIFF` copies.
pub const CKPT_COPY_DIFF_MAX_PAGES: u64 = 256;

/// `Ok` if `flags` is zero: the check of structs without flags or padding.
fn no_flags(flags: u32) -> Result<(), UapiError> {
    if flags != 0 {
        Err(UapiError::UnknownFlags)
    } else {
        Ok(())
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_create`.
    pub struct CkptCreate (size 24, ver0 24) {
        /// The caller's struct size.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
        /// Region size in bytes.
        bytes: u64 = 8,
        /// Out: the mmap offset of the region's first byte.
        mmap_offset: u64 = 16,
    }
    check(c) {
        no_flags(c.flags)
    }
}

/// `memkit_ckpt_start.flags`: track by page-table scan only (ABI 1.2).
pub const CKPT_START_SCAN: u32 = 1 << 0;
/// `memkit_ckpt_start.flags`: track by recording first writes only (ABI 1.2).
pub const CKPT_START_RECORD: u32 = 1 << 1;
/// `memkit_ckpt_stats.mode`: the page-table scan.
pub const CKPT_MODE_SCAN: u32 = 0;
/// `memkit_ckpt_stats.mode`: recording first writes.
pub const CKPT_MODE_RECORD: u32 = 1;

uapi_struct! {
    /// `struct memkit_ckpt_start`.
    pub struct CkptStart (size 8, ver0 8) {
        /// The caller's struct size.
        size: u32 = 0,
        /// 0 (the module picks the tracking mode by the dirty fraction), or one of
        /// [`CKPT_START_SCAN`] and [`CKPT_START_RECORD`] to fix it.
        flags: u32 = 4,
    }
    check(c) {
        match c.flags {
            0 | CKPT_START_SCAN | CKPT_START_RECORD => Ok(()),
            _ => Err(UapiError::UnknownFlags),
        }
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_range`.
    pub struct CkptRange (size 16, ver0 16) {
        /// First page.
        first: u64 = 0,
        /// Pages.
        count: u64 = 8,
    }
    check(_r) {
        Ok(())
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_collect`.
    pub struct CkptCollect (size 56, ver0 56) {
        /// The caller's struct size.
        size: u32 = 0,
        /// `CKPT_COLLECT_*`.
        flags: u32 = 4,
        /// First page of the range.
        first: u64 = 8,
        /// Pages in the range.
        count: u64 = 16,
        /// User buffer (bitmap or ranges).
        buf: u64 = 24,
        /// Bytes of the buffer.
        buf_len: u64 = 32,
        /// Out: dirty pages.
        dirty: u64 = 40,
        /// Out: runs of dirty pages.
        nr_ranges: u64 = 48,
    }
    check(c) {
        if c.flags & !CKPT_COLLECT_FLAGS != 0 {
            Err(UapiError::UnknownFlags)
        } else {
            Ok(())
        }
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_history`.
    pub struct CkptHistory (size 40, ver0 40) {
        /// The caller's struct size.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
        /// First page.
        first: u64 = 8,
        /// Pages.
        count: u64 = 16,
        /// User buffer of `count` u64.
        buf: u64 = 24,
        /// Bytes of the buffer.
        buf_len: u64 = 32,
    }
    check(c) {
        no_flags(c.flags)
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_copy`.
    pub struct CkptCopy (size 48, ver0 48) {
        /// The caller's struct size.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
        /// User pointer to `count` u64 page indexes.
        pages: u64 = 8,
        /// Number of pages.
        count: u64 = 16,
        /// User buffer.
        buf: u64 = 24,
        /// Bytes of the buffer.
        buf_len: u64 = 32,
        /// Out: bytes written.
        bytes: u64 = 40,
    }
    check(c) {
        no_flags(c.flags)
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_diff_set`.
    pub struct CkptDiffSet (size 24, ver0 24) {
        /// The caller's struct size.
        size: u32 = 0,
        /// `CKPT_DIFF_SET_*`.
        flags: u32 = 4,
        /// User pointer to `count` u64 page indexes.
        pages: u64 = 8,
        /// Number of indexes.
        count: u64 = 16,
    }
    check(c) {
        if c.flags & !(CKPT_DIFF_SET_RESET | CKPT_DIFF_SET_REMOVE) != 0 {
            Err(UapiError::UnknownFlags)
        } else if c.flags == CKPT_DIFF_SET_RESET | CKPT_DIFF_SET_REMOVE {
            // A combination that means nothing.
            Err(UapiError::UnknownFlags)
        } else {
            Ok(())
        }
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_copy_diff`.
    pub struct CkptCopyDiff (size 64, ver0 64) {
        /// The caller's struct size.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
        /// User pointer to `count` u64 page indexes.
        pages: u64 = 8,
        /// Number of pages.
        count: u64 = 16,
        /// User buffer for the records.
        buf: u64 = 24,
        /// Bytes of the buffer.
        buf_len: u64 = 32,
        /// Bytes per segment.
        segment: u32 = 40,
        /// Most changed segments of a diffed page.
        max_changed: u32 = 44,
        /// Out: bytes written.
        bytes: u64 = 48,
        /// Out: pages sent as diffs.
        diffed: u64 = 56,
    }
    check(c) {
        no_flags(c.flags)
    }
}

uapi_struct! {
    /// `struct memkit_ckpt_stats`.
    pub struct CkptStats (size 128, ver0 80) {
        /// The caller's struct size.
        size: u32 = 0,
        /// Must be 0.
        flags: u32 = 4,
        /// Region size (0: none).
        bytes: u64 = 8,
        /// Pages touched so far.
        pages_allocated: u64 = 16,
        /// Successful collects.
        collects: u64 = 24,
        /// Clearing collects.
        intervals: u64 = 32,
        /// Dirty pages reported by clearing collects.
        dirty_reported: u64 = 40,
        /// Of those, found dirty after their mapping went.
        dirty_unmapped: u64 = 48,
        /// Pages copied out.
        pages_copied: u64 = 56,
        /// Of those, sent as diffs.
        pages_diffed: u64 = 64,
        /// Bytes of records written.
        record_bytes: u64 = 72,
        /// ABI 1.2: the tracking mode now, [`CKPT_MODE_SCAN`] or [`CKPT_MODE_RECORD`].
        mode: u32 = 80,
        /// ABI 1.2: 1 if `MEMKIT_IOC_CKPT_START` fixed the mode, 0 if the module picks it.
        mode_fixed: u32 = 84,
        /// ABI 1.2: times the module changed the mode by itself.
        mode_switches: u64 = 88,
        /// ABI 1.2: first writes recorded (write faults on write-protected pages, and
        /// write faults that mapped a page) in the recording mode.
        write_faults: u64 = 96,
        /// ABI 1.2: pages of the spans recording-mode collects write-protected again.
        wp_pages: u64 = 104,
        /// ABI 1.3: pages reported by snapshot collects.
        snapshot_pages: u64 = 112,
        /// ABI 1.3: of those, pages a write reached before they were copied out:
        /// the write fault copied their old contents first.
        cow_copies: u64 = 120,
    }
    check(c) {
        no_flags(c.flags)
    }
}

/// The largest kernel-side size of any memkit struct: the boundary's stack buffer.
pub const STRUCT_KSIZE_MAX: usize = 512;
const _: () = assert!(Version::SIZE <= STRUCT_KSIZE_MAX);
const _: () = assert!(JournalStatus::SIZE <= STRUCT_KSIZE_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_command_number_matches_iowr() {
        // _IOWR(0xE7, 0x00, 32 bytes) computed by hand: dir 3, size 32, type 0xE7, nr 0.
        assert_eq!(IOC_VERSION, (3 << 30) | (32 << 16) | (0xE7 << 8));
    }

    #[test]
    fn decode_ignores_size_bits_only() {
        assert_eq!(Command::decode(IOC_VERSION), Some(Command::Version));
        let bigger = ioc(IOC_READ | IOC_WRITE, IOC_MAGIC, 0, 48);
        assert_eq!(Command::decode(bigger), Some(Command::Version));
        // Another direction, type or number is another command.
        assert_eq!(Command::decode(ioc(IOC_READ, IOC_MAGIC, 0, 32)), None);
        assert_eq!(
            Command::decode(ioc(IOC_READ | IOC_WRITE, 0xE6, 0, 32)),
            None
        );
        assert_eq!(
            Command::decode(ioc(IOC_READ | IOC_WRITE, IOC_MAGIC, 1, 32)),
            None
        );
        assert_eq!(Command::decode(0), None);
    }

    #[test]
    fn size_rules() {
        assert_eq!(plan_copy_in::<Version>(0), Err(UapiError::SizeTooSmall));
        assert_eq!(plan_copy_in::<Version>(31), Err(UapiError::SizeTooSmall));
        assert_eq!(
            plan_copy_in::<Version>(32),
            Ok(CopyPlan { copy: 32, tail: 0 })
        );
        assert_eq!(
            plan_copy_in::<Version>(40),
            Ok(CopyPlan { copy: 32, tail: 8 })
        );
        assert_eq!(
            plan_copy_in::<Version>(4096),
            Ok(CopyPlan {
                copy: 32,
                tail: 4064
            })
        );
        assert_eq!(plan_copy_in::<Version>(4097), Err(UapiError::SizeTooBig));
        assert_eq!(
            plan_copy_in::<Version>(u32::MAX),
            Err(UapiError::SizeTooBig)
        );
    }

    #[test]
    fn errnos() {
        assert_eq!(UapiError::SizeTooSmall.errno(), EINVAL);
        assert_eq!(UapiError::NonZeroPad.errno(), EINVAL);
        assert_eq!(UapiError::UnknownFlags.errno(), EINVAL);
        assert_eq!(UapiError::SizeTooBig.errno(), E2BIG);
        assert_eq!(UapiError::NonZeroTail.errno(), E2BIG);
    }

    #[test]
    fn encode_decode_round_trip_and_truncation() {
        let v = Version {
            size: 32,
            flags: 0,
            abi_major: 1,
            abi_minor: 2,
            features: 0x0102_0304_0506_0708,
            device: DEV_RMEM,
            pad: 0,
        };
        let mut buf = [0u8; 32];
        v.encode(&mut buf);
        assert_eq!(Version::decode(&buf), v);
        // A short buffer keeps the prefix; decoding a prefix zero-extends.
        let mut short = [0xffu8; 20];
        v.encode(&mut short);
        let back = Version::decode(&short);
        assert_eq!(back.abi_minor, 2);
        assert_ne!(back.features, v.features);
        assert_eq!(back.device, 0);
    }

    #[test]
    fn check_rejects_flags_then_padding() {
        let ok = Version {
            size: 32,
            ..Default::default()
        };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(
            Version { flags: 1, ..ok }.check(),
            Err(UapiError::UnknownFlags)
        );
        assert_eq!(Version { pad: 1, ..ok }.check(), Err(UapiError::NonZeroPad));
    }
}
