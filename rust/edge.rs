// SPDX-License-Identifier: GPL-2.0

//! Small kernel services with no Rust abstraction in 7.3: string module parameters
//! and the region-id IDA (`helpers.c`: a `charp` parameter and `DEFINE_IDA` are
//! macros), `capable(CAP_SYS_ADMIN)` and random bytes (straight from `bindings`); and
//! what the checkpoint and remote-memory regions share: their ids, their file's
//! address space and the mmap checks.

use core::ffi::c_void;
use kernel::ffi::{c_char, c_int};
use kernel::prelude::*;

// In C (`helpers.c`): `module_param(..., charp, ...)` and `DEFINE_IDA` are macros
// (the Rust `module!` macro of 7.3 has no string parameters).
extern "C" {
    fn memkit_param_journal_dev() -> *const c_char;
    fn memkit_param_commit_mode() -> *const c_char;
    fn memkit_param_group_commit() -> *const c_char;
    fn memkit_region_id_alloc(max: u32) -> c_int;
    fn memkit_region_id_free(id: u32);
}

/// The kernel's page shift. memkit supports 4 KiB pages only: its ABI and the
/// pure logic shared with the tools (`pure::rmem::PAGE_SIZE`, `pure::ckpt::PAGE_SIZE`,
/// the checkpoint bitmaps and diffs) are defined in 4 KiB pages, and the C edge
/// copies `PAGE_SIZE` bytes into buffers sized by them. The build fails on a kernel
/// with other pages (here and in `helpers.c`; `Kbuild` refuses non-x86_64 first).
pub(crate) const PAGE_SHIFT: usize = kernel::page::PAGE_SHIFT;

const _: () = assert!(
    kernel::page::PAGE_SIZE == 4096
        && crate::pure::rmem::PAGE_SIZE == kernel::page::PAGE_SIZE as u64
        && crate::pure::ckpt::PAGE_SIZE == kernel::page::PAGE_SIZE as u64,
    "memkit needs 4 KiB pages (its ABI and pure logic are defined in them)"
);

/// A string module parameter, `None` if unset.
fn param(raw: *const c_char) -> Option<&'static CStr> {
    if raw.is_null() {
        return None;
    }
    // SAFETY: a charp module parameter is NULL or a NUL-terminated string that lives
    // until the module is unloaded (parameters are read-only, 0444, after load).
    Some(unsafe { CStr::from_char_ptr(raw) })
}

/// `memkit.journal_dev`: the device to attach the journal to at load.
pub(crate) fn journal_dev() -> Option<&'static CStr> {
    // SAFETY: no precondition.
    param(unsafe { memkit_param_journal_dev() })
}

/// `memkit.commit_mode`: `coalesced` or `strict`.
pub(crate) fn commit_mode() -> Option<&'static CStr> {
    // SAFETY: no precondition.
    param(unsafe { memkit_param_commit_mode() })
}

/// `memkit.group_commit`: `auto`, `always` or `never`.
pub(crate) fn group_commit() -> Option<&'static CStr> {
    // SAFETY: no precondition.
    param(unsafe { memkit_param_group_commit() })
}

/// Whether the current task has `CAP_SYS_ADMIN`.
pub(crate) fn capable_sys_admin() -> bool {
    // Lossless: a capability number.
    let cap = kernel::bindings::CAP_SYS_ADMIN as kernel::ffi::c_int;
    // SAFETY: called in process context (an ioctl); no other precondition.
    unsafe { kernel::bindings::capable(cap) }
}

/// Fills `buf` with random bytes.
pub(crate) fn random(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    unsafe { kernel::bindings::get_random_bytes(buf.as_mut_ptr().cast(), buf.len()) };
}

/// Region ids `1..=`[`RegionId::MAX`], shared by the rmem and ckpt regions: id `i`
/// owns the page offsets `[i << WINDOW_SHIFT, (i + 1) << WINDOW_SHIFT)` of its file.
/// The id goes back to the pool when the region is dropped, which is after the last
/// mapping of its window went (every VMA holds the file, the file the region), so a
/// reused window has no stale mapping.
pub(crate) struct RegionId(u32);

impl RegionId {
    /// Page-offset bits of a window: room for `RMEM_MAX_BYTES` and `CKPT_MAX_BYTES`.
    pub(crate) const WINDOW_SHIFT: u32 = 20;
    /// The largest id: `mmap_offset` of its window fits in a signed `off_t`.
    pub(crate) const MAX: u32 = (1 << (63 - Self::WINDOW_SHIFT - PAGE_SHIFT as u32)) - 1;

    /// A free id; `ENOSPC` if all are in use, `ENOMEM`.
    pub(crate) fn alloc() -> Result<RegionId> {
        // SAFETY: process context (an ioctl); no other precondition.
        let id = unsafe { memkit_region_id_alloc(Self::MAX) };
        if id < 0 {
            return Err(Error::from_errno(id));
        }
        // Lossless: `1..=MAX`.
        Ok(RegionId(id as u32))
    }

    /// The first page offset of the id's window.
    pub(crate) fn base(&self) -> u64 {
        u64::from(self.0) << Self::WINDOW_SHIFT
    }
}

impl Drop for RegionId {
    fn drop(&mut self) {
        // SAFETY: `self.0` was allocated by `memkit_region_id_alloc` and is freed once.
        unsafe { memkit_region_id_free(self.0) };
    }
}

/// The address space of `file`'s mappings (its inode's), which the region the
/// file owns walks and zaps: `None` only if the file has none.
pub(crate) fn file_mapping(file: &kernel::fs::File) -> Option<core::ptr::NonNull<c_void>> {
    // SAFETY: `file` is a valid file; `f_mapping` is set when it is opened and stays
    // while it lives.
    let mapping = unsafe { (*file.as_ptr()).f_mapping };
    core::ptr::NonNull::new(mapping.cast())
}

/// `vm_pgoff` of `vma` (the `kernel::mm::virt` types of 7.3 have no accessor).
pub(crate) fn vma_pgoff(vma: &kernel::mm::virt::VmaRef) -> u64 {
    // SAFETY: a `VmaRef` is a live VMA whose lock the caller holds; the field does
    // not change under it. Lossless: `unsigned long` is 64 bits here.
    unsafe { (*vma.as_ptr()).vm_pgoff as u64 }
}

/// The mmap of a region whose page offsets are the window `[base, base + pages)` of
/// its file: refuses a private mapping (no `VM_MAYSHARE`: a `MAP_SHARED` mapping of a
/// descriptor opened read-only has `VM_MAYSHARE` without `VM_SHARED`, and is fine) or
/// one that leaves the window (`EINVAL`), and
/// sets the VMA up for `vm_insert_page` from the fault (`VM_MIXEDMAP`) without ever
/// growing (`VM_DONTEXPAND`).
pub(crate) fn map_region_window(vma: &kernel::mm::virt::VmaNew, base: u64, pages: u64) -> Result {
    if vma.flags() & kernel::mm::virt::flags::MAYSHARE == 0 {
        return Err(EINVAL);
    }
    // SAFETY: `vma` is a valid VMA being set up; reading its page offset races with
    // nothing.
    let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff } as u64;
    let len = ((vma.end() - vma.start()) >> PAGE_SHIFT) as u64;
    let end = pgoff.checked_add(len).ok_or(EINVAL)?;
    if pgoff < base || end > base.checked_add(pages).ok_or(EINVAL)? {
        return Err(EINVAL);
    }
    vma.set_dontexpand();
    vma.set_mixedmap();
    Ok(())
}
