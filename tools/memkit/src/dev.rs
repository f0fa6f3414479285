//! The three memkit devices and their ioctls, seen from userspace.
//!
//! `unsafe` in this crate lives here only: the `ioctl(2)` calls and the checkpoint
//! region's `mmap(2)` ([`CkptMap`]).

use memkit_core::abi::{self, UapiStruct};
use memkit_core::ckpt::diff as ckpt_diff;
use serde::Serialize;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of a checkpoint-region page.
pub const CKPT_PAGE_SIZE: usize = 4096;

/// One of memkit's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// `/dev/memkit-journal`.
    Journal,
    /// `/dev/memkit-rmem`.
    Rmem,
    /// `/dev/memkit-ckpt`.
    Ckpt,
}

impl DeviceKind {
    /// Every device, in a fixed order.
    pub const ALL: [DeviceKind; 3] = [DeviceKind::Journal, DeviceKind::Rmem, DeviceKind::Ckpt];

    /// The device's name under `/dev`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Journal => "memkit-journal",
            DeviceKind::Rmem => "memkit-rmem",
            DeviceKind::Ckpt => "memkit-ckpt",
        }
    }

    /// The device node; `MEMKIT_DEV_DIR` overrides `/dev` (for tests on other layouts).
    pub fn path(self) -> PathBuf {
        let dir = std::env::var_os("MEMKIT_DEV_DIR").unwrap_or_else(|| "/dev".into());
        PathBuf::from(dir).join(self.name())
    }

    /// The `MEMKIT_DEV_*` number the device reports in `memkit_version.device`.
    pub fn id(self) -> u32 {
        match self {
            DeviceKind::Journal => abi::DEV_JOURNAL,
            DeviceKind::Rmem => abi::DEV_RMEM,
            DeviceKind::Ckpt => abi::DEV_CKPT,
        }
    }
}

/// An open memkit device.
#[derive(Debug)]
pub struct Device {
    file: File,
    kind: DeviceKind,
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The address of `s` for an ioctl struct, or 0 (NULL) for an empty slice, so that
/// the module sees "no buffer" rather than a dangling pointer.
fn user_addr<T>(s: &[T]) -> u64 {
    if s.is_empty() {
        0
    } else {
        s.as_ptr() as u64
    }
}

/// [`user_addr`] of a buffer the module writes.
fn user_addr_mut<T>(s: &mut [T]) -> u64 {
    if s.is_empty() {
        0
    } else {
        s.as_mut_ptr() as u64
    }
}

impl Device {
    /// Opens `kind` for reading and writing.
    pub fn open(kind: DeviceKind) -> io::Result<Device> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(kind.path())?;
        Ok(Device { file, kind })
    }

    /// Opens `kind` for reading only (enough for `MEMKIT_IOC_VERSION`, the journal's
    /// `MEMKIT_IOC_JOURNAL_STATUS` and `pread`).
    pub fn open_read_only(kind: DeviceKind) -> io::Result<Device> {
        let file = File::open(kind.path())?;
        Ok(Device { file, kind })
    }

    /// The device open on `fd` (inherited, or taken from another process), checked
    /// with `MEMKIT_IOC_VERSION` to be `kind`.
    pub fn from_fd(fd: std::os::fd::OwnedFd, kind: DeviceKind) -> io::Result<Device> {
        let dev = Device {
            file: File::from(fd),
            kind,
        };
        match dev.version() {
            Ok(v) if v.device == kind.id() => Ok(dev),
            Ok(v) => Err(io::Error::other(format!(
                "the descriptor is memkit device {}, not {}",
                v.device,
                kind.name()
            ))),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("the descriptor is not {}: {e}", kind.path().display()),
            )),
        }
    }

    /// Which device this is.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// Calls `ioctl(fd, cmd, buf.as_mut_ptr())`: the kernel reads and writes at most
    /// `buf.len()` bytes, as the `size` field in `buf` tells it.
    pub fn ioctl_bytes(&self, cmd: u32, buf: &mut [u8]) -> io::Result<i32> {
        // The kernel never touches more than the struct's `size` field says, which the
        // caller fills in; with a `size` larger than `buf` a call could reach past it,
        // so refuse that here.
        let size = buf
            .get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        if size.is_none_or(|s| s as usize > buf.len()) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `buf` is valid for reads and writes of `buf.len()` bytes, and the
        // kernel accesses at most `size <= buf.len()` bytes of it (checked above).
        unsafe { self.ioctl_raw(cmd, buf.as_mut_ptr() as usize) }
    }

    /// Calls `ioctl(fd, cmd, arg)` with an arbitrary argument.
    ///
    /// # Safety
    ///
    /// If `arg` is an address in this process, the kernel may write to it as the
    /// command's struct: it must be valid for that, or not mapped writable at all.
    pub unsafe fn ioctl_raw(&self, cmd: u32, arg: usize) -> io::Result<i32> {
        // SAFETY: the fd is open for the life of `self`; the caller answers for `arg`.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), cmd as _, arg) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// Calls command `cmd` with the struct `v` exactly as given (its `size` field
    /// included) and returns the struct as the kernel left it.
    pub fn call<T: UapiStruct>(&self, cmd: u32, v: &T) -> io::Result<T> {
        // On the stack: a call allocates nothing (the journal's transactions are
        // measured against PMDK's, which do not allocate either).
        let mut stack = [0u8; abi::STRUCT_KSIZE_MAX];
        let buf = &mut stack[..T::SIZE];
        v.encode(buf);
        self.ioctl_bytes(cmd, buf)?;
        Ok(T::decode(buf))
    }

    /// `MEMKIT_IOC_VERSION`.
    pub fn version(&self) -> io::Result<abi::Version> {
        let size = abi::Version::SIZE as u32;
        self.call(
            abi::IOC_VERSION,
            &abi::Version {
                size,
                ..Default::default()
            },
        )
    }

    /// `MEMKIT_IOC_JOURNAL_ATTACH`: attaches the DAX block device at `path` as the
    /// journal, recovering it; with `format` it is formatted first with `mj_count` MJs
    /// of `mj_size` bytes (0 for the kernel's defaults).
    pub fn journal_attach(
        &self,
        path: &Path,
        format: bool,
        mj_count: u32,
        mj_size: u32,
    ) -> io::Result<()> {
        let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "device path contains a NUL byte",
            )
        })?;
        let flags = if format {
            abi::JOURNAL_ATTACH_FORMAT
        } else {
            0
        };
        let size = abi::JournalAttach::SIZE as u32;
        // The kernel only reads the NUL-terminated string `path` points to; it lives
        // until the end of this function.
        let req = abi::JournalAttach {
            size,
            flags,
            path: path.as_ptr() as u64,
            mj_count,
            mj_size,
        };
        self.call(abi::IOC_JOURNAL_ATTACH, &req).map(drop)
    }

    /// `MEMKIT_IOC_JOURNAL_DETACH`: makes every write durable and detaches the journal.
    pub fn journal_detach(&self) -> io::Result<()> {
        let size = abi::JournalDetach::SIZE as u32;
        self.call(
            abi::IOC_JOURNAL_DETACH,
            &abi::JournalDetach { size, flags: 0 },
        )
        .map(drop)
    }

    /// `MEMKIT_IOC_JOURNAL_STATUS`.
    pub fn journal_status(&self) -> io::Result<abi::JournalStatus> {
        let size = abi::JournalStatus::SIZE as u32;
        self.call(
            abi::IOC_JOURNAL_STATUS,
            &abi::JournalStatus {
                size,
                ..Default::default()
            },
        )
    }

    /// `MEMKIT_IOC_JOURNAL_TX`: writes every `(offset, data)` range of the data region
    /// as one atomic transaction; returns its commit id, durable on return.
    pub fn journal_tx(&self, ranges: &[(u64, &[u8])]) -> io::Result<u64> {
        let nr_ranges =
            u32::try_from(ranges.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        // Up to `STACK_RANGES` ranges the array is built on the stack, so that a
        // transaction allocates nothing.
        const STACK_RANGES: usize = 16;
        let size = abi::JournalRange::SIZE;
        let mut stack = [0u8; STACK_RANGES * abi::JournalRange::SIZE];
        let mut heap = Vec::new();
        let array = if ranges.len() <= STACK_RANGES {
            &mut stack[..ranges.len() * size]
        } else {
            heap.resize(ranges.len() * size, 0);
            &mut heap[..]
        };
        for (chunk, r) in array.chunks_exact_mut(size).zip(range_structs(ranges)) {
            r.encode(chunk);
        }
        // The kernel only reads the data the ranges point to; `ranges` outlives the call.
        self.journal_tx_array(array, nr_ranges)
    }

    /// `MEMKIT_IOC_JOURNAL_TX` with a range array as given (for tests of bad
    /// arguments): `nr_ranges` may disagree with `ranges.len()` and the data pointers
    /// may be anything, since the kernel only reads through them.
    pub fn journal_tx_ranges(
        &self,
        ranges: &[abi::JournalRange],
        nr_ranges: u32,
    ) -> io::Result<u64> {
        self.journal_tx_array(&encode_ranges(ranges), nr_ranges)
    }

    /// `MEMKIT_IOC_JOURNAL_TX` with an encoded `struct memkit_journal_range` array.
    fn journal_tx_array(&self, array: &[u8], nr_ranges: u32) -> io::Result<u64> {
        let req = abi::JournalTx {
            size: abi::JournalTx::SIZE as u32,
            ranges: array.as_ptr() as u64,
            nr_ranges,
            ..Default::default()
        };
        self.call(abi::IOC_JOURNAL_TX, &req).map(|t| t.commit_id)
    }

    /// `pread(2)`: for `/dev/memkit-journal`, bytes at `offset` of the data region.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// `MEMKIT_IOC_CKPT_CREATE`: creates this file's checkpoint region of `bytes`
    /// bytes; returns the offset to map it at (see [`CkptMap::new`]).
    pub fn ckpt_create(&self, bytes: u64) -> io::Result<u64> {
        let req = abi::CkptCreate {
            size: abi::CkptCreate::SIZE as u32,
            bytes,
            ..Default::default()
        };
        self.call(abi::IOC_CKPT_CREATE, &req).map(|c| c.mmap_offset)
    }

    /// `MEMKIT_IOC_CKPT_START`: forgets the pages written so far and their history;
    /// the module picks the tracking mode.
    pub fn ckpt_start(&self) -> io::Result<()> {
        self.ckpt_start_with(0)
    }

    /// `MEMKIT_IOC_CKPT_START` with `flags`: 0, `abi::CKPT_START_SCAN` or
    /// `abi::CKPT_START_RECORD` (the tracking mode fixed).
    pub fn ckpt_start_with(&self, flags: u32) -> io::Result<()> {
        let req = abi::CkptStart {
            size: abi::CkptStart::SIZE as u32,
            flags,
        };
        self.call(abi::IOC_CKPT_START, &req).map(drop)
    }

    /// `MEMKIT_IOC_CKPT_COLLECT` of pages `first..first + count` as a bitmap: bit `i`
    /// of word `w` is page `first + 64 * w + i`. With `clear`, what is reported is
    /// cleared. Returns the `ceil(count / 64)` words and the number of dirty pages.
    pub fn ckpt_collect(&self, first: u64, count: u64, clear: bool) -> io::Result<(Vec<u64>, u64)> {
        let words =
            usize::try_from(ckpt_pages_checked(count)?.div_ceil(64)).map_err(|_| einval())?;
        let mut buf = vec![0u8; words * 8];
        let flags = if clear { abi::CKPT_COLLECT_CLEAR } else { 0 };
        let out = self.ckpt_collect_into(flags, first, count, &mut buf)?;
        let bitmap = buf
            .chunks_exact(8)
            .map(|w| u64::from_ne_bytes(w.try_into().expect("8-byte chunk")))
            .collect();
        Ok((bitmap, out.dirty))
    }

    /// `MEMKIT_IOC_CKPT_COLLECT` of pages `first..first + count` as runs of dirty
    /// pages (absolute page indexes). With `clear`, what is reported is cleared.
    ///
    /// The buffer is sized for the worst case, `ceil(count / 2)` runs (8 bytes per
    /// page of the range, allocated lazily), so that one call always suffices.
    pub fn ckpt_collect_ranges(
        &self,
        first: u64,
        count: u64,
        clear: bool,
    ) -> io::Result<Vec<abi::CkptRange>> {
        let flags = if clear { abi::CKPT_COLLECT_CLEAR } else { 0 };
        self.ckpt_collect_ranges_with(flags, first, count)
    }

    /// [`Device::ckpt_collect_ranges`] with `flags` (`abi::CKPT_COLLECT_CLEAR`, and
    /// `abi::CKPT_COLLECT_SNAPSHOT` with it; `RANGES` is added).
    pub fn ckpt_collect_ranges_with(
        &self,
        flags: u32,
        first: u64,
        count: u64,
    ) -> io::Result<Vec<abi::CkptRange>> {
        let most = usize::try_from(ckpt_pages_checked(count)?.div_ceil(2)).map_err(|_| einval())?;
        let mut buf = vec![0u8; most * abi::CkptRange::SIZE];
        let flags = flags | abi::CKPT_COLLECT_RANGES;
        let out = self.ckpt_collect_into(flags, first, count, &mut buf)?;
        let n = usize::try_from(out.nr_ranges)
            .ok()
            .filter(|&n| n <= most)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the kernel reported {} runs in {count} pages",
                        out.nr_ranges
                    ),
                )
            })?;
        Ok(buf
            .chunks_exact(abi::CkptRange::SIZE)
            .take(n)
            .map(abi::CkptRange::decode)
            .collect())
    }

    /// `MEMKIT_IOC_CKPT_COLLECT` without a buffer: the number of dirty pages and of
    /// runs of them in `first..first + count`. Never clears.
    pub fn ckpt_collect_count(&self, first: u64, count: u64) -> io::Result<(u64, u64)> {
        self.ckpt_collect_into(0, first, count, &mut [])
            .map(|c| (c.dirty, c.nr_ranges))
    }

    /// `MEMKIT_IOC_CKPT_COLLECT` with `flags` as given, into `buf` (`buf_len` is
    /// `buf.len()`; an empty `buf` is passed as `buf = 0, buf_len = 0`, the count-only
    /// form). Returns the struct as the kernel left it (`dirty`, `nr_ranges`).
    pub fn ckpt_collect_into(
        &self,
        flags: u32,
        first: u64,
        count: u64,
        buf: &mut [u8],
    ) -> io::Result<abi::CkptCollect> {
        let (ptr, len) = if buf.is_empty() {
            (0, 0)
        } else {
            (buf.as_mut_ptr() as u64, buf.len() as u64)
        };
        let mut req = abi::CkptCollect {
            size: abi::CkptCollect::SIZE as u32,
            flags,
            first,
            count,
            buf: ptr,
            buf_len: len,
            ..Default::default()
        };
        // SAFETY: `buf` (or nothing, when empty) is valid for writes of `buf_len` bytes
        // for the duration of the call.
        unsafe { self.ckpt_collect_raw(&mut req) }?;
        Ok(req)
    }

    /// `MEMKIT_IOC_CKPT_COLLECT` with `req` exactly as given (for tests of bad
    /// arguments); on success `req` is what the kernel left (`dirty`, `nr_ranges`).
    ///
    /// # Safety
    ///
    /// The kernel writes up to `req.buf_len` bytes at address `req.buf`: that memory
    /// must be valid for such writes, or not be writable memory of this process at all
    /// (unmapped, read-only, a kernel address).
    pub unsafe fn ckpt_collect_raw(&self, req: &mut abi::CkptCollect) -> io::Result<()> {
        let mut bytes = [0u8; abi::CkptCollect::SIZE];
        req.encode(&mut bytes);
        // The struct itself is `bytes`, which `ioctl_bytes` bounds; the caller answers
        // for the buffer it points to.
        self.ioctl_bytes(abi::IOC_CKPT_COLLECT, &mut bytes)?;
        *req = abi::CkptCollect::decode(&bytes);
        Ok(())
    }

    /// `MEMKIT_IOC_CKPT_HISTORY` of pages `first..first + count`: per page, bit `k` set
    /// if it was written in the interval that ended `k` clearing collects ago.
    pub fn ckpt_history(&self, first: u64, count: u64) -> io::Result<Vec<u64>> {
        let n = usize::try_from(ckpt_pages_checked(count)?).map_err(|_| einval())?;
        let mut words = vec![0u64; n];
        self.ckpt_history_into(first, count, &mut words)?;
        Ok(words)
    }

    /// `MEMKIT_IOC_CKPT_HISTORY` into `buf` (`buf_len` is `8 * buf.len()`; an empty
    /// `buf` is passed as `buf = 0, buf_len = 0`).
    pub fn ckpt_history_into(&self, first: u64, count: u64, buf: &mut [u64]) -> io::Result<()> {
        let (ptr, len) = if buf.is_empty() {
            (0, 0)
        } else {
            (buf.as_mut_ptr() as u64, std::mem::size_of_val(buf) as u64)
        };
        let req = abi::CkptHistory {
            size: abi::CkptHistory::SIZE as u32,
            flags: 0,
            first,
            count,
            buf: ptr,
            buf_len: len,
        };
        // The kernel writes at most `buf_len` bytes to `buf`, which outlives the call.
        self.call(abi::IOC_CKPT_HISTORY, &req).map(drop)
    }

    /// `MEMKIT_IOC_CKPT_COPY`: the contents of `pages`, 4096 bytes each, in order.
    /// More than [`abi::CKPT_COPY_MAX_PAGES`] pages: `EINVAL` without calling the
    /// kernel (rather than allocating the buffer).
    pub fn ckpt_copy(&self, pages: &[u64]) -> io::Result<Vec<u8>> {
        if pages.len() as u64 > abi::CKPT_COPY_MAX_PAGES {
            return Err(einval());
        }
        let mut buf = vec![0u8; pages.len() * CKPT_PAGE_SIZE];
        let n = self.ckpt_copy_into(pages, &mut buf)?;
        buf.truncate(usize::try_from(n).map_err(|_| einval())?);
        Ok(buf)
    }

    /// `MEMKIT_IOC_CKPT_COPY` of `pages` into `buf` (`buf_len` is `buf.len()`; an
    /// empty `buf` is passed as `buf = 0`). Returns the bytes written.
    pub fn ckpt_copy_into(&self, pages: &[u64], buf: &mut [u8]) -> io::Result<u64> {
        let buf_ptr = user_addr_mut(buf);
        let req = abi::CkptCopy {
            size: abi::CkptCopy::SIZE as u32,
            flags: 0,
            pages: user_addr(pages),
            count: pages.len() as u64,
            buf: buf_ptr,
            buf_len: buf.len() as u64,
            bytes: 0,
        };
        // The kernel reads `count` indexes at `pages` and writes at most `buf_len`
        // bytes to `buf`; both outlive the call.
        let out = self.call(abi::IOC_CKPT_COPY, &req)?;
        if out.bytes > buf.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the kernel reported {} bytes copied into {}",
                    out.bytes,
                    buf.len()
                ),
            ));
        }
        Ok(out.bytes)
    }

    /// `MEMKIT_IOC_CKPT_DIFF_SET`: adds `pages` to the diff set (emptied first if
    /// `reset`).
    pub fn ckpt_diff_set(&self, pages: &[u64], reset: bool) -> io::Result<()> {
        let req = abi::CkptDiffSet {
            size: abi::CkptDiffSet::SIZE as u32,
            flags: if reset { abi::CKPT_DIFF_SET_RESET } else { 0 },
            pages: user_addr(pages),
            count: pages.len() as u64,
        };
        // The kernel only reads `count` indexes at `pages`, which outlive the call.
        self.call(abi::IOC_CKPT_DIFF_SET, &req).map(|_| ())
    }

    /// `MEMKIT_IOC_CKPT_DIFF_SET` with `MEMKIT_CKPT_DIFF_SET_REMOVE`: takes `pages`
    /// out of the diff set, dropping their versions.
    pub fn ckpt_diff_remove(&self, pages: &[u64]) -> io::Result<()> {
        let req = abi::CkptDiffSet {
            size: abi::CkptDiffSet::SIZE as u32,
            flags: abi::CKPT_DIFF_SET_REMOVE,
            pages: user_addr(pages),
            count: pages.len() as u64,
        };
        // The kernel only reads `count` indexes at `pages`, which outlive the call.
        self.call(abi::IOC_CKPT_DIFF_SET, &req).map(|_| ())
    }

    /// `MEMKIT_IOC_CKPT_COPY_DIFF` of `pages` with segments of `segment` bytes, pages
    /// with more than `max_changed` changed segments whole: the records
    /// (`memkit_core::ckpt::diff`) and how many pages went as diffs.
    pub fn ckpt_copy_diff(
        &self,
        pages: &[u64],
        segment: u32,
        max_changed: u32,
    ) -> io::Result<(Vec<u8>, u64)> {
        let mut out = Vec::new();
        let diffed = self.ckpt_copy_diff_into(pages, segment, max_changed, &mut out)?;
        Ok((out, diffed))
    }

    /// [`Device::ckpt_copy_diff`], the records appended to `out` (written by the
    /// kernel into its spare capacity: nothing zeroed or copied on the way). On an
    /// error `out` is as it was.
    pub fn ckpt_copy_diff_into(
        &self,
        pages: &[u64],
        segment: u32,
        max_changed: u32,
        out: &mut Vec<u8>,
    ) -> io::Result<u64> {
        if pages.len() as u64 > abi::CKPT_COPY_DIFF_MAX_PAGES {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let room = pages.len() * ckpt_diff::MAX_RECORD;
        out.reserve(room);
        let spare = out.spare_capacity_mut();
        let req = abi::CkptCopyDiff {
            size: abi::CkptCopyDiff::SIZE as u32,
            flags: 0,
            pages: user_addr(pages),
            count: pages.len() as u64,
            buf: if room == 0 {
                0
            } else {
                spare.as_mut_ptr() as u64
            },
            buf_len: room as u64,
            segment,
            max_changed,
            bytes: 0,
            diffed: 0,
        };
        // The kernel reads `count` indexes at `pages` and writes at most `buf_len`
        // bytes into `out`'s spare capacity (reserved above); both outlive the call.
        let done = self.call(abi::IOC_CKPT_COPY_DIFF, &req)?;
        let n = usize::try_from(done.bytes)
            .ok()
            .filter(|&n| n <= room)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the kernel reported {} bytes of records", done.bytes),
                )
            })?;
        // SAFETY: the kernel wrote `n` bytes (at most the `room` reserved) at the
        // start of the spare capacity, so they are initialised.
        unsafe { out.set_len(out.len() + n) };
        Ok(done.diffed)
    }

    /// `MEMKIT_IOC_RMEM_CONFIGURE` with `cfg` (its `size` is set here): the mmap
    /// offset of the region, which [`CkptMap::new`] maps like a checkpoint region.
    pub fn rmem_configure(&self, cfg: &abi::RmemConfig) -> io::Result<u64> {
        let req = abi::RmemConfig {
            size: abi::RmemConfig::SIZE as u32,
            ..*cfg
        };
        Ok(self.call(abi::IOC_RMEM_CONFIGURE, &req)?.mmap_offset)
    }

    /// `MEMKIT_IOC_RMEM_STATS`: the file's region's counters, or the module's totals.
    pub fn rmem_stats(&self, global: bool) -> io::Result<abi::RmemStats> {
        self.call(
            abi::IOC_RMEM_STATS,
            &abi::RmemStats {
                size: abi::RmemStats::SIZE as u32,
                flags: if global { abi::RMEM_STATS_GLOBAL } else { 0 },
                ..Default::default()
            },
        )
    }

    /// `MEMKIT_IOC_CKPT_STATS`.
    pub fn ckpt_stats(&self) -> io::Result<abi::CkptStats> {
        let size = abi::CkptStats::SIZE as u32;
        self.call(
            abi::IOC_CKPT_STATS,
            &abi::CkptStats {
                size,
                ..Default::default()
            },
        )
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// `count` if it is at most the pages of the largest region, else `EINVAL` (the
/// kernel would refuse it too): bounds the buffers the sized `ckpt_*` calls allocate.
fn ckpt_pages_checked(count: u64) -> io::Result<u64> {
    if count > abi::CKPT_MAX_BYTES / CKPT_PAGE_SIZE as u64 {
        Err(einval())
    } else {
        Ok(count)
    }
}

/// A mapping of (part of) a checkpoint or remote-memory region, unmapped on drop.
///
/// It does not borrow the [`Device`]: the mapping keeps the region alive after the
/// file is closed. Every access goes through 64-bit atomics (the memory is shared
/// with other threads, processes and the kernel), at offsets that are multiples of 8.
#[derive(Debug)]
pub struct CkptMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; every access to it
// through `CkptMap` is atomic, so it may be used from any thread.
unsafe impl Send for CkptMap {}
// SAFETY: as for `Send`: `&CkptMap` only gives atomic access to the memory.
unsafe impl Sync for CkptMap {}

impl CkptMap {
    /// Maps `len` bytes of `dev`'s region at `offset` (from [`Device::ckpt_create`]),
    /// `MAP_SHARED`, readable and writable.
    pub fn new(dev: &Device, offset: u64, len: usize) -> io::Result<CkptMap> {
        CkptMap::map(dev, offset, len, libc::MAP_SHARED)
    }

    /// The same with `MAP_PRIVATE`, which the device refuses (for its tests).
    pub fn new_private(dev: &Device, offset: u64, len: usize) -> io::Result<CkptMap> {
        CkptMap::map(dev, offset, len, libc::MAP_PRIVATE)
    }

    /// Private anonymous memory with the same accessors: what a program that is not
    /// using memkit checkpoints (through soft-dirty).
    pub fn anonymous(len: usize) -> io::Result<CkptMap> {
        CkptMap::mmap(-1, 0, len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS)
    }

    /// Shared anonymous memory: seen by this process and the children it forks.
    pub fn shared_anonymous(len: usize) -> io::Result<CkptMap> {
        CkptMap::mmap(-1, 0, len, libc::MAP_SHARED | libc::MAP_ANONYMOUS)
    }

    /// The address of the mapping in this process.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    fn map(dev: &Device, offset: u64, len: usize, flags: libc::c_int) -> io::Result<CkptMap> {
        CkptMap::mmap(dev.file.as_raw_fd(), offset, len, flags)
    }

    fn mmap(fd: RawFd, offset: u64, len: usize, flags: libc::c_int) -> io::Result<CkptMap> {
        let offset = libc::off_t::try_from(offset).map_err(|_| einval())?;
        // SAFETY: a new mapping at an address the kernel chooses (no MAP_FIXED), so no
        // existing memory is affected; the fd (if any) is open for the call.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(CkptMap { ptr, len })
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped (never: `mmap` refuses a length of 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The 64-bit word at byte `offset`.
    ///
    /// # Panics
    ///
    /// If `offset` is not a multiple of 8 or the word is not inside the mapping.
    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(
            aligned8(offset) && offset.checked_add(8).is_some_and(|end| end <= self.len),
            "CkptMap: word at {offset} outside {} bytes or unaligned",
            self.len
        );
        // SAFETY: an 8-aligned word inside the page-aligned mapping (checked above),
        // valid as long as `self`, which the reference borrows; this type only ever
        // accesses the mapping through `AtomicU64`.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast::<u64>()) }
    }

    /// Reads the `u64` at byte `offset` (a multiple of 8; panics otherwise or if
    /// outside the mapping).
    pub fn read_u64(&self, offset: usize) -> u64 {
        self.word(offset).load(Ordering::Relaxed)
    }

    /// Writes the `u64` at byte `offset` (a multiple of 8; panics otherwise or if
    /// outside the mapping).
    pub fn write_u64(&self, offset: usize, value: u64) {
        self.word(offset).store(value, Ordering::Relaxed)
    }

    /// Reads `buf.len()` bytes at `offset`; both multiples of 8 (panics otherwise or
    /// if outside the mapping).
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        assert!(
            aligned8(buf.len()),
            "CkptMap: length {} not a multiple of 8",
            buf.len()
        );
        for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&self.read_u64(offset + 8 * i).to_ne_bytes());
        }
    }

    /// Writes `data` at `offset`; both multiples of 8 (panics otherwise or if outside
    /// the mapping).
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        assert!(
            aligned8(data.len()),
            "CkptMap: length {} not a multiple of 8",
            data.len()
        );
        for (i, chunk) in data.chunks_exact(8).enumerate() {
            let v = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
            self.write_u64(offset + 8 * i, v);
        }
    }

    /// The whole mapping, copied out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        self.read_bytes(0, &mut v);
        v
    }

    /// Unmaps now, reporting `munmap`'s error (dropping does the same silently).
    pub fn unmap(self) -> io::Result<()> {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` owns the mapping and is not used after this (not dropped either).
        let ret = unsafe { libc::munmap(me.ptr.as_ptr().cast(), me.len) };
        if ret != 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Whether `n` is a multiple of 8 (`is_multiple_of` is newer than the workspace's
/// `rust-version`).
fn aligned8(n: usize) -> bool {
    n & 7 == 0
}

impl Drop for CkptMap {
    fn drop(&mut self) {
        // SAFETY: `self` owns the mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The `struct memkit_journal_range`s of `(offset, data)` ranges.
fn range_structs<'a>(ranges: &'a [(u64, &[u8])]) -> impl Iterator<Item = abi::JournalRange> + 'a {
    ranges.iter().map(|(offset, data)| abi::JournalRange {
        offset: *offset,
        len: data.len() as u64,
        data: data.as_ptr() as u64,
    })
}

/// The bytes of a `struct memkit_journal_range` array.
fn encode_ranges(ranges: &[abi::JournalRange]) -> Vec<u8> {
    let size = abi::JournalRange::SIZE;
    let mut array = vec![0u8; ranges.len() * size];
    for (chunk, r) in array.chunks_exact_mut(size).zip(ranges) {
        r.encode(chunk);
    }
    array
}

/// Names of the feature bits set in `features`; unknown bits as hex.
pub fn feature_names(features: u64) -> Vec<String> {
    const NAMES: [(u64, &str); 4] = [
        (abi::FEAT_JOURNAL_TX, "journal-tx"),
        (abi::FEAT_RMEM_PREFETCH, "rmem-prefetch"),
        (abi::FEAT_CKPT_DIRTY, "ckpt-dirty"),
        (abi::FEAT_FDINFO, "fdinfo"),
    ];
    let mut names: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| features & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let unknown = features & !abi::FEATURES_KNOWN;
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ids() {
        assert_eq!(DeviceKind::Journal.name(), "memkit-journal");
        let ids: Vec<u32> = DeviceKind::ALL.iter().map(|k| k.id()).collect();
        assert_eq!(ids, [abi::DEV_JOURNAL, abi::DEV_RMEM, abi::DEV_CKPT]);
    }

    #[test]
    fn range_array_points_at_the_data() {
        let a = [1u8, 2, 3];
        let b = b"hello";
        let array = encode_ranges(&range_structs(&[(0, &a), (4096, b)]).collect::<Vec<_>>());
        assert_eq!(array.len(), 2 * abi::JournalRange::SIZE);
        let r0 = abi::JournalRange::decode(&array[..24]);
        let r1 = abi::JournalRange::decode(&array[24..]);
        assert_eq!((r0.offset, r0.len, r0.data), (0, 3, a.as_ptr() as u64));
        assert_eq!((r1.offset, r1.len, r1.data), (4096, 5, b.as_ptr() as u64));
    }

    /// `/dev/zero` stands in for the device: `MAP_SHARED` of it is shared memory.
    fn zero_device() -> Device {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/zero")
            .expect("open /dev/zero");
        Device {
            file,
            kind: DeviceKind::Ckpt,
        }
    }

    #[test]
    fn ckpt_map_reads_and_writes_words_and_bytes() {
        let dev = zero_device();
        let map = CkptMap::new(&dev, 0, 2 * CKPT_PAGE_SIZE).expect("mmap");
        drop(dev); // the mapping outlives the file
        assert_eq!(map.len(), 8192);
        assert!(map.to_vec().iter().all(|&b| b == 0));
        map.write_u64(4096, 0x0102_0304_0506_0708);
        map.write_u64(8184, u64::MAX);
        assert_eq!(map.read_u64(4096), 0x0102_0304_0506_0708);
        let data: Vec<u8> = (0..64u8).collect();
        map.write_bytes(16, &data);
        let mut back = [0u8; 64];
        map.read_bytes(16, &mut back);
        assert_eq!(back[..], data[..]);
        let all = map.to_vec();
        assert_eq!(all[4096..4104], 0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(all[8184..], [0xff; 8]);
        // Shared with another thread.
        std::thread::scope(|s| {
            s.spawn(|| map.write_u64(0, 42));
        });
        assert_eq!(map.read_u64(0), 42);
        map.unmap().expect("munmap");
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn ckpt_map_refuses_a_word_past_the_end() {
        let map = CkptMap::new(&zero_device(), 0, CKPT_PAGE_SIZE).expect("mmap");
        map.write_u64(4096, 1);
    }

    #[test]
    #[should_panic(expected = "unaligned")]
    fn ckpt_map_refuses_an_unaligned_word() {
        let map = CkptMap::new(&zero_device(), 0, CKPT_PAGE_SIZE).expect("mmap");
        map.read_u64(4);
    }

    #[test]
    fn ckpt_sized_calls_refuse_huge_counts_without_the_kernel() {
        // `/dev/zero` would answer ENOTTY; EINVAL shows the call never got there.
        let dev = zero_device();
        let huge = abi::CKPT_MAX_BYTES / 4096 + 1;
        for res in [
            dev.ckpt_collect(0, huge, false).map(drop),
            dev.ckpt_collect_ranges(0, u64::MAX, true).map(drop),
            dev.ckpt_history(0, huge).map(drop),
        ] {
            assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        }
        let too_many = vec![0u64; abi::CKPT_COPY_MAX_PAGES as usize + 1];
        let err = dev.ckpt_copy(&too_many).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        let err = dev.ckpt_stats().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
    }

    #[test]
    fn feature_names_cover_known_and_unknown_bits() {
        assert!(feature_names(0).is_empty());
        assert_eq!(
            feature_names(abi::FEATURES_KNOWN),
            ["journal-tx", "rmem-prefetch", "ckpt-dirty", "fdinfo"]
        );
        assert_eq!(
            feature_names(1 << 40 | abi::FEAT_CKPT_DIRTY),
            ["ckpt-dirty", "0x10000000000"]
        );
    }
}
