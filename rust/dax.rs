// SPDX-License-Identifier: GPL-2.0

//! The DAX boundary: a persistent-memory block device mapped into the kernel, and the
//! journal's [`Pmem`] operations on it.
//!
//! The C side (`helpers.c`) opens and claims the device and maps it whole with
//! `dax_direct_access`; this file keeps the mapping's address and length and is the
//! only place that dereferences it. Every access is bounds-checked against the
//! mapping, under the DAX read lock ([`DaxAccess`]), which keeps the device from
//! being torn down meanwhile.

use crate::pure::{
    crc32c,
    journal::pmem::Pmem, //
};
use core::cell::Cell;
use core::ffi::{
    c_int,
    c_void, //
};
use core::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use kernel::ffi::c_char;
use kernel::prelude::*;
use kernel::time::{
    Instant,
    Monotonic, //
};

/// `struct memkit_dax` of `helpers.c`.
#[repr(C)]
struct RawDax {
    bdev_file: *mut c_void,
    dax_dev: *mut c_void,
    kaddr: *mut u8,
    size: u64,
    sync: bool,
    dev_major: u32,
    dev_minor: u32,
}

// In C (`helpers.c`) because 7.3's bindings do not include `<linux/dax.h>`
// (`fs_dax_get_by_bdev`, `dax_direct_access`, `dax_read_lock`, `dax_alive`) nor
// `memcpy_flushcache` and `crc32c`, and `pmem_wmb` is inline; the open keeps the
// block-device file and the DAX device together in `struct memkit_dax`.
extern "C" {
    /// Opens and maps the DAX block device at `path`.
    ///
    /// # Safety
    ///
    /// `path` is a NUL-terminated string; `d` is valid for writes.
    fn memkit_dax_open(path: *const c_char, d: *mut RawDax) -> c_int;
    /// Releases what `memkit_dax_open` took.
    ///
    /// # Safety
    ///
    /// `d` was filled by a successful `memkit_dax_open` and is not used afterwards.
    fn memkit_dax_close(d: *mut RawDax);
    fn memkit_dax_lock() -> c_int;
    /// # Safety
    ///
    /// `id` came from `memkit_dax_lock` and is unlocked once.
    fn memkit_dax_unlock(id: c_int);
    /// # Safety
    ///
    /// `d` is an open device.
    fn memkit_dax_alive(d: *const RawDax) -> bool;
    /// # Safety
    ///
    /// `dst` is valid for `len` bytes of writes, `src` for `len` bytes of reads.
    fn memkit_pmem_copy(dst: *mut c_void, src: *const c_void, len: usize);
    /// # Safety
    ///
    /// As `memkit_pmem_copy`.
    fn memkit_pmem_read(dst: *mut c_void, src: *const c_void, len: usize) -> c_int;
    /// # Safety
    ///
    /// `d` is an open device.
    fn memkit_pmem_fence(d: *const RawDax) -> c_int;
    /// # Safety
    ///
    /// `p` is valid for `len` bytes of reads.
    fn memkit_crc32c_append(crc: u32, p: *const c_void, len: usize) -> u32;
    fn memkit_crc32c_accelerated() -> bool;
}

/// Whether the kernel's `crc32c()` runs on the CPU's CRC instructions. Where it does
/// not, it is a loop of one table lookup per byte, and [`crc32c_append`] uses
/// memkit's slicing-by-8 instead (eight bytes per step; about 3x faster, measured
/// under QEMU TCG).
fn crc32c_accelerated() -> bool {
    // SAFETY: no precondition.
    unsafe { memkit_crc32c_accelerated() }
}

/// Whether [`crc32c_append`] calls the kernel's `crc32c()`; set once by
/// [`crc32c_choose`] at module load.
static CRC32C_KERNEL: AtomicBool = AtomicBool::new(false);

/// Bytes [`crc32c_choose`] checksums each way: a 4 KiB transaction's data (a
/// checksum length, not a page).
const CRC32C_SAMPLE: usize = 4 << 10;

/// Which CRC-32C code the journal checksums with, for its log line.
pub(crate) fn crc32c_name() -> &'static str {
    if CRC32C_KERNEL.load(Ordering::Relaxed) {
        "the kernel's crc32c() (CPU instructions)"
    } else if crc32c_accelerated() {
        "memkit's slicing-by-8 (faster here than the CPU instructions)"
    } else {
        "memkit's slicing-by-8 (the kernel's crc32c() is its generic code)"
    }
}

/// Chooses the faster CRC-32C code by timing both on 4 KiB at module load, as
/// `lib/raid6` and `crypto/xor` choose theirs. Where the kernel's `crc32c()` is its
/// generic code, the slicing-by-8 wins without a measurement. Where it runs on the
/// CPU's instructions it is usually several times faster, but not everywhere: under
/// QEMU TCG the `crc32` instruction is emulated one bit at a time, 64 steps per
/// 8 bytes, and the table code is faster. Both must give the same checksum; if they
/// did not, the table code (the oracle of the host tests) is kept.
pub(crate) fn crc32c_choose() {
    if !crc32c_accelerated() {
        return;
    }
    let mut buf = KVec::new();
    if buf.resize(CRC32C_SAMPLE, 0u8, GFP_KERNEL).is_err() {
        return;
    }
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i.wrapping_mul(131) >> 3) as u8;
    }
    let kernel_crc = |crc: u32, bytes: &[u8]| -> u32 {
        // SAFETY: `bytes` is a valid slice for its length.
        unsafe { memkit_crc32c_append(crc, bytes.as_ptr().cast(), bytes.len()) }
    };
    if kernel_crc(0, &buf) != crc32c::append(0, &buf) {
        pr_err!("crc32c: the kernel's crc32c() disagrees with memkit's table code; using the table code\n");
        return;
    }
    // The fastest of eight rounds each, alternated.
    let (mut kernel_ns, mut table_ns) = (u64::MAX, u64::MAX);
    let mut sink = 0u32;
    for _ in 0..8 {
        let t = Instant::<Monotonic>::now();
        sink ^= kernel_crc(sink, &buf);
        kernel_ns = kernel_ns.min(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        let t = Instant::<Monotonic>::now();
        sink ^= crc32c::append(sink, &buf);
        table_ns = table_ns.min(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    let kernel = kernel_ns <= table_ns;
    CRC32C_KERNEL.store(kernel, Ordering::Relaxed);
    pr_info!(
        "crc32c: 4 KiB in {} ns by the kernel's crc32c() (CPU instructions), {} ns by memkit's slicing-by-8: using {} (check {:#x})\n",
        kernel_ns,
        table_ns,
        if kernel { "the kernel's" } else { "memkit's" },
        sink
    );
}

/// CRC-32C of `bytes` appended to the finished checksum `crc` (as
/// [`Pmem::crc32c_append`]): the kernel's `crc32c()` where [`crc32c_choose`] found it
/// faster, else the table code of [`crc32c`]. Both give the same values (`crc32c` is
/// the oracle the host tests every other implementation against).
pub(crate) fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    if CRC32C_KERNEL.load(Ordering::Relaxed) {
        // SAFETY: `bytes` is a valid slice for its length.
        unsafe { memkit_crc32c_append(crc, bytes.as_ptr().cast(), bytes.len()) }
    } else {
        crc32c::append(crc, bytes)
    }
}

/// An open, claimed and mapped DAX block device.
///
/// # Invariants
///
/// `raw` was filled by a successful `memkit_dax_open`: `raw.kaddr` is a kernel
/// mapping of `raw.size` bytes of the device, valid while the DAX device is alive.
pub(crate) struct DaxDevice {
    raw: RawDax,
}

// SAFETY: the mapping and the device references are not tied to a thread; all
// accesses go through `&self`/`&mut self` with the caller's locking.
unsafe impl Send for DaxDevice {}
// SAFETY: shared references only read `raw`'s fields; writes to the mapping need
// `&mut DaxAccess`, which the journal takes under its lock.
unsafe impl Sync for DaxDevice {}

impl DaxDevice {
    /// Opens the DAX block device at `path`.
    pub(crate) fn open(path: &CStr) -> Result<DaxDevice> {
        let mut raw = RawDax {
            bdev_file: core::ptr::null_mut(),
            dax_dev: core::ptr::null_mut(),
            kaddr: core::ptr::null_mut(),
            size: 0,
            sync: false,
            dev_major: 0,
            dev_minor: 0,
        };
        // SAFETY: `path` is NUL-terminated; `raw` is a valid `RawDax` on our stack.
        let ret = unsafe { memkit_dax_open(path.as_char_ptr(), &mut raw) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: `memkit_dax_open` succeeded.
        Ok(DaxDevice { raw })
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> u64 {
        self.raw.size
    }

    /// The block device's number, `(major, minor)`.
    pub(crate) fn dev(&self) -> (u32, u32) {
        (self.raw.dev_major, self.raw.dev_minor)
    }

    /// Whether the mapping is synchronous (no device flush needed for durability).
    pub(crate) fn is_sync(&self) -> bool {
        self.raw.sync
    }

    /// Takes the DAX read lock; fails with `ENXIO` if the device is going away.
    pub(crate) fn access(&self) -> Result<DaxAccess<'_>> {
        // SAFETY: no precondition.
        let id = unsafe { memkit_dax_lock() };
        let access = DaxAccess {
            dev: self,
            id,
            flushes: 0,
            lines: 0,
            fence_error: None,
            read_error: Cell::new(false),
        };
        // SAFETY: the device is open (type invariant).
        if unsafe { memkit_dax_alive(&self.raw) } {
            Ok(access)
        } else {
            Err(ENXIO)
        }
    }
}

impl Drop for DaxDevice {
    fn drop(&mut self) {
        // SAFETY: opened successfully (type invariant) and never used again.
        unsafe { memkit_dax_close(&mut self.raw) };
    }
}

/// The device under the DAX read lock: the journal's persistent memory.
pub(crate) struct DaxAccess<'a> {
    dev: &'a DaxDevice,
    id: c_int,
    /// Device flushes issued by fences.
    pub(crate) flushes: u64,
    /// 64-byte lines written with cache-bypassing stores.
    pub(crate) lines: u64,
    /// The first fence failure (the device flush failed): durability is unknown.
    pub(crate) fence_error: Option<Error>,
    /// A read hit poisoned media (machine check); the bytes read as zero.
    pub(crate) read_error: Cell<bool>,
}

impl Drop for DaxAccess<'_> {
    fn drop(&mut self) {
        // SAFETY: `id` came from `memkit_dax_lock` in `DaxDevice::access`.
        unsafe { memkit_dax_unlock(self.id) };
    }
}

impl DaxAccess<'_> {
    /// The mapping's address of `[off, off + len)`, or `None` outside the mapping.
    fn at(&self, off: u64, len: usize) -> Option<*mut u8> {
        let end = off.checked_add(u64::try_from(len).ok()?)?;
        if end > self.dev.raw.size {
            return None;
        }
        // SAFETY: `off + len <= size`, so the offset stays inside the mapping (type
        // invariant of `DaxDevice`).
        Some(unsafe { self.dev.raw.kaddr.add(usize::try_from(off).ok()?) })
    }

    /// Copies `buf.len()` bytes at `off` into `buf`; `EIO` on poisoned media,
    /// `EINVAL` outside the device.
    pub(crate) fn read_checked(&self, off: u64, buf: &mut [u8]) -> Result {
        let src = self.at(off, buf.len()).ok_or(EINVAL)?;
        // SAFETY: `src` is inside the mapping for `buf.len()` bytes (checked by `at`),
        // `buf` is ours; the DAX read lock keeps the mapping alive.
        let ret = unsafe { memkit_pmem_read(buf.as_mut_ptr().cast(), src.cast(), buf.len()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(EIO)
        }
    }
}

impl Pmem for DaxAccess<'_> {
    fn len(&self) -> u64 {
        self.dev.raw.size
    }

    fn read(&self, off: u64, buf: &mut [u8]) {
        if self.read_checked(off, buf).is_err() {
            // The journal validates everything it reads: zeros are refused as an
            // empty or torn MJ. The error is remembered for the caller.
            buf.fill(0);
            self.read_error.set(true);
        }
    }

    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        let Some(dst) = self.at(off, data.len()) else {
            // The journal checks every range before writing; an out-of-range write is
            // a bug, refused here rather than corrupting memory.
            self.fence_error.get_or_insert(EINVAL);
            return;
        };
        // SAFETY: `dst` is inside the mapping for `data.len()` bytes (checked by
        // `at`); the DAX read lock keeps the mapping alive; `data` is ours.
        unsafe { memkit_pmem_copy(dst.cast(), data.as_ptr().cast(), data.len()) };
        let first = off / 64;
        let last = (off + data.len() as u64).div_ceil(64);
        self.lines += last.saturating_sub(first);
    }

    fn fence(&mut self) {
        // SAFETY: the device is open (type invariant of `DaxDevice`).
        let ret = unsafe { memkit_pmem_fence(&self.dev.raw) };
        if !self.dev.raw.sync {
            self.flushes += 1;
        }
        if ret != 0 {
            self.fence_error.get_or_insert(Error::from_errno(ret));
        }
    }

    fn crc32c_append(&self, crc: u32, bytes: &[u8]) -> u32 {
        crc32c_append(crc, bytes)
    }
}
