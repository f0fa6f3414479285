// SPDX-License-Identifier: GPL-2.0

//! `/dev/memkit-ckpt`: dirty tracking of module-owned memory for frequent checkpoints.
//!
//! Each open file may create one region (`MEMKIT_IOC_CKPT_CREATE`); userspace maps it
//! `MAP_SHARED` at the offset the create returns. Pages are allocated, zeroed, at the
//! first fault and mapped with `vm_insert_page`; they stay until the region goes,
//! which is when the file is released — after its last mapping, since every VMA holds
//! the file.
//!
//! Writes are found one of two ways (`pure::ckpt::track`, which also decides when a
//! region changes from one to the other); both feed the region's *pending* bitmap,
//! which a clearing collect clears for the pages it reported:
//!
//! - *Scan*: a collect reads the hardware dirty bits of every PTE that maps the
//!   region, in every process, with `clean_record_shared_mapping_range` (it cleans
//!   the bits it records, with the TLB flush, under the mapping's `i_mmap` lock). A
//!   page whose PTE is zapped while dirty (munmap, exit) has its dirt moved to the
//!   page's `PG_dirty` flag by the kernel; a collect tests and clears that flag too,
//!   after waiting for such a zap's TLB flush (`Region::gather`).
//! - *Record*: the VMAs have a `page_mkwrite` handler, so the kernel maps the
//!   region's pages read-only until a write. The first write to a page sets its
//!   pending bit before its PTE becomes writable (`mkwrite`, or the fault that maps
//!   it for a write), and a clearing collect write-protects again exactly the pages
//!   it reports (`wp_shared_mapping_range` on spans of them). A write after that
//!   faults and is recorded for the next collect; a PTE zapped while writable
//!   belongs to a page already pending, so `PG_dirty` is not needed.
//!
//! The bitmap, run and history logic is `pure::ckpt`.
//!
//! *Snapshots* (`CKPT_COLLECT_SNAPSHOT`, regions fixed to the recording mode): the
//! pages a clearing collect reports become *unsent*; each reads as it was at the
//! collect when `COPY` or `COPY_DIFF` first copies it out, while the program runs.
//! The collect is an instant: every page not reported is write-protected already
//! (recording), and the reported ones are write-protected by the collect itself,
//! under the mutex, so a write to any page after its protection faults and waits
//! for the mutex; a write that was not stopped came before every write that was,
//! in each thread. A write fault on an unsent page first copies its old contents
//! (`Cow::held`), which the copy-out then reads instead; a page copied out is sent,
//! and writes to it need no copy. `Region::source` and `Region::sent` are the
//! copy-out's side: a frame copied without the mutex is checked afterwards for a
//! write that came during the copy (then the held copy is copied again).
//!
//! Every region gets its own window of page offsets in the file's address space
//! (region id << 20 pages, as DRM does with mmap offsets), so the walks of one
//! region never see another region's mappings, even through the same device inode.
//!
//! Lock order: the VMA lock or `mmap_lock` (fault; the handlers need no more than
//! the VMA lock: `VmOps::with_fault_and_mkwrite`) → `Region` mutex → folio lock of a
//! region page (`mkwrite` takes it under the mutex; a collect waits for it under the
//! mutex) → `i_mmap` lock → PTE lock. The mutex is never held while copying to or from
//! userspace, because the user buffer may be the region itself.
//!
//! Why no write is lost in the recording mode: a PTE of a region page becomes
//! writable only through `mkwrite` or a write fault, each of which sets the page's
//! pending bit under the mutex first. `mkwrite` returns with the page locked, and
//! the kernel makes the PTE writable before unlocking it; a clearing collect, under
//! the mutex, first waits for the lock of every page it is about to report (so no
//! such fault is half done), then write-protects them (which also flushes the TLB
//! entries that could still write), then clears their bits. A write that lands
//! before the write-protection is in the page when it is copied after the collect;
//! one after it faults, and its `mkwrite` waits for the mutex, so it sets the bit
//! after the clear. A page pinned for DMA (`FOLL_PIN`: `O_DIRECT`, io_uring,
//! `process_vm_writev`) can be written without any PTE; it stays pending while the
//! pin lasts. (A plain `get_user_pages` reference taken to write, as
//! `/proc/PID/mem` takes, has the same short window in both modes: the kernel writes
//! through it just after the fault recorded the page.)

use crate::pure::{
    abi,
    ckpt::{
        self as logic, diff,
        track::{self, Mode, Policy},
        Collect,
    },
};
use crate::{
    edge::RegionId,
    mm::{Fault, FaultOutcome, VmOps},
    uapi,
};
use core::{
    ffi::{c_int, c_void},
    ptr::NonNull,
};
use kernel::{
    bindings,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    mm::virt::VmaNew,
    new_mutex,
    page::Page,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::Mutex,
    uaccess::{UserPtr, UserSlice},
};

// `helpers.c`. `struct page` holds structs with no fields (config-dependent), which
// the FFI lint cannot see into; the pointer is only passed through.
#[allow(improper_ctypes)]
extern "C" {
    /// Copies `page` (or zeros, if `page` is NULL) to the user address `dst`: `PAGE_SIZE`
    /// bytes (4 KiB: `edge.rs`). Returns 0 or `-EFAULT`. C: `kmap_local_page` is
    /// inline, and the page may be written through a user mapping meanwhile.
    ///
    /// # Safety
    ///
    /// `page` is NULL or a valid page the caller holds a reference to; called in
    /// process context with no spinlock held.
    fn memkit_copy_page_to_user(dst: usize, page: *mut bindings::page) -> c_int;
}

const _: () = assert!(abi::CKPT_MAX_BYTES / logic::PAGE_SIZE <= 1 << RegionId::WINDOW_SHIFT);

/// The address space a region's mappings live in.
struct Mapping(NonNull<c_void>);

// SAFETY: the address space belongs to the inode of the file the region was created
// on; the file (which holds its inode) owns the region, so the pointer stays valid
// for the region's lifetime, from any thread. The kernel functions it is passed to
// do their own locking.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: only shared use through kernel functions that lock.
unsafe impl Sync for Mapping {}

/// A region and its tracking state.
struct Region {
    /// Page offset of page 0 in the file's address space (the id's window).
    base: u64,
    _id: RegionId,
    /// Pages.
    pages: u64,
    mapping: Mapping,
    /// Page `i`, once touched.
    frames: VVec<Option<Page>>,
    /// Written since last cleared.
    pending: VVec<u64>,
    /// Per page, the last 64 intervals (bit 0: the last), kept lazily.
    history: logic::History<VVec<u64>>,
    /// The pages worth diffing (the backup's list).
    diff_set: VVec<u64>,
    /// For pages of the diff set, the version last copied out (a page's bytes).
    bases: VVec<Option<KVec<u8>>>,
    /// How writes are found, and when that changes.
    policy: Policy,
    /// The open snapshot, if any.
    cow: Cow,
    stats: abi::CkptStats,
}

/// A region's copy-on-write snapshot (see the module's doc).
#[derive(Default)]
struct Cow {
    /// Whether a snapshot is open.
    open: bool,
    /// Bumped as a snapshot opens and as it closes: a copy-out that dropped the
    /// mutex knows whether its snapshot is still the open one.
    generation: u64,
    /// Pages of the open snapshot not yet copied out (empty until the region's
    /// first snapshot).
    unsent: VVec<u64>,
    /// Per page (empty until the first snapshot): the old contents of an unsent
    /// page that a write reached first.
    held: VVec<Option<Page>>,
}

/// Where a copy-out reads a page from ([`Region::source`]).
enum Source {
    /// The old contents a write left: the page is sent.
    Held(Page),
    /// The frame (NULL: zeros); with the generation of the snapshot it is an unsent
    /// page of, to settle with [`Region::sent`] once copied.
    Frame(*mut bindings::page, Option<u64>),
}

/// Runs of reported pages closer than this are write-protected as one span (the PTEs
/// between them are walked and left as they are): each walk of the mapping costs its
/// own locking, MMU-notifier calls and TLB flush, more than walking a few hundred
/// entries that need nothing. Measured in the test guest (production kernel, TCG)
/// with 64, 512 and unbounded (`Documentation/ckpt.rst`).
const WP_GAP: u64 = 256;

impl Region {
    fn new(bytes: u64, mapping: Mapping) -> Result<Region> {
        let pages = logic::region_pages(bytes).map_err(errno)?;
        let id = RegionId::alloc()?;
        let n = usize::try_from(pages)?;
        let mut frames = VVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        let mut bases = VVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..n {
            frames.push(None, GFP_KERNEL_ACCOUNT)?;
            bases.push(None, GFP_KERNEL_ACCOUNT)?;
        }
        let words = usize::try_from(logic::words(pages))?;
        Ok(Region {
            base: id.base(),
            _id: id,
            pages,
            mapping,
            frames,
            pending: VVec::from_elem(0, words, GFP_KERNEL_ACCOUNT)?,
            history: logic::History::new(
                VVec::from_elem(0, n, GFP_KERNEL_ACCOUNT)?,
                VVec::from_elem(0, n, GFP_KERNEL_ACCOUNT)?,
            ),
            diff_set: VVec::from_elem(0, words, GFP_KERNEL_ACCOUNT)?,
            bases,
            policy: Policy::default(),
            cow: Cow::default(),
            stats: abi::CkptStats {
                bytes,
                ..Default::default()
            },
        })
    }

    /// Page `idx`, allocated (zeroed) if it is the first touch.
    fn frame(&mut self, idx: usize) -> Result<&Page> {
        let slot = self.frames.get_mut(idx).ok_or(EFAULT)?;
        if slot.is_none() {
            *slot = Some(Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?);
            self.stats.pages_allocated += 1;
        }
        slot.as_ref().ok_or(EFAULT)
    }

    /// Page `idx` if it was ever touched (NULL: it reads as zeros).
    fn frame_ptr(&self, idx: usize) -> *mut bindings::page {
        self.frames
            .get(idx)
            .and_then(|f| f.as_ref().map(Page::as_ptr))
            .unwrap_or(core::ptr::null_mut())
    }

    /// Cleans the dirty bits of the PTEs that map pages `[first, end)` and records
    /// them in `map` (a bitmap of the whole region).
    fn clean_ptes(mapping: &Mapping, base: u64, map: &mut [u64], first: usize, end: usize) {
        // Without the helpers no region is ever created (`create`).
        #[cfg(CONFIG_MAPPING_DIRTY_HELPERS)]
        {
            // `map` covers the region (checked here, so the helper's writes stay in it).
            if map.len() < logic::words(end as u64) as usize {
                return;
            }
            // Lossless: `usize` is 64 bits here, and the range was checked; the
            // bitmap's words are `u64`, the helper's `unsigned long`.
            let base = base as usize;
            let (mut start, mut stop) = (0, 0);
            // SAFETY: the mapping is valid (see `Mapping`); `map` covers every page
            // of the range (checked above); the caller's `&mut` excludes other users.
            unsafe {
                bindings::clean_record_shared_mapping_range(
                    mapping.0.as_ptr().cast(),
                    base + first,
                    end - first,
                    base,
                    map.as_mut_ptr().cast(),
                    &mut start,
                    &mut stop,
                )
            };
        }
        #[cfg(not(CONFIG_MAPPING_DIRTY_HELPERS))]
        let _ = (mapping, base, map, first, end);
    }

    /// Write-protects every PTE that maps pages `[first, first + count)`, with the
    /// TLB flush.
    fn write_protect(&mut self, first: u64, count: u64) {
        Self::wp_range(&self.mapping, self.base + first, count);
        self.stats.wp_pages += count;
    }

    /// `wp_shared_mapping_range` of `count` page offsets from `start`: every PTE of
    /// every mapping of the file over them write-protected, each under its PTE
    /// lock, with the TLB flush.
    fn wp_range(mapping: &Mapping, start: u64, count: u64) {
        #[cfg(CONFIG_MAPPING_DIRTY_HELPERS)]
        // SAFETY: the mapping is valid (see `Mapping`); the helper takes the
        // mapping's `i_mmap` lock and the PTE locks itself. Lossless: page offsets
        // of a checked range; `usize` is 64 bits here.
        unsafe {
            bindings::wp_shared_mapping_range(
                mapping.0.as_ptr().cast(),
                start as usize,
                count as usize,
            )
        };
        #[cfg(not(CONFIG_MAPPING_DIRTY_HELPERS))]
        let _ = (mapping, start, count);
    }

    /// Waits for the write faults in flight on pages `[first, first + count)` whose
    /// `mkwrite` already ran (see the module's doc).
    fn wait_faults(&self, first: usize, count: usize) {
        for page in self.frames.iter().skip(first).take(count).flatten() {
            crate::mm::wait_page_unlocked(page);
        }
    }

    /// Puts the region in `mode` (its pending bits stay). To record: after the
    /// write faults in flight, every PTE is write-protected and what the page tables
    /// and `PG_dirty` still hold is gathered, since every write from now on is
    /// recorded. To scan: the dirty bits and `PG_dirty` that recording left are
    /// dropped (every page written since the last collect is pending already), so
    /// that the first scan does not report pages again.
    fn enter(&mut self, mode: Mode) {
        // Lossless: `pages` fits in `usize` (checked at create).
        let n = self.pages as usize;
        match mode {
            Mode::Record => {
                self.wait_faults(0, n);
                self.write_protect(0, self.pages);
                self.gather(0, n);
            }
            Mode::Scan => {
                // Without memory for the scratch bitmap the next scan reports these
                // pages once more: extra pages, never a missed one.
                if let Ok(mut scratch) =
                    VVec::from_elem(0u64, self.pending.len(), GFP_KERNEL_ACCOUNT)
                {
                    Self::clean_ptes(&self.mapping, self.base, &mut scratch, 0, n);
                }
                for page in self.frames.iter().flatten() {
                    crate::mm::test_clear_dirty(page);
                }
            }
        }
    }

    /// In the recording mode, before a clearing collect clears `snap` (bit `i`: page
    /// `first + i`, for `i < len`): waits for the write faults in flight on those
    /// pages and write-protects them again.
    fn protect(&mut self, snap: &[u64], first: usize, len: usize) {
        for (s, n) in logic::runs(snap, 0, len) {
            // Lossless: runs of `[0, len)`.
            self.wait_faults(first + s as usize, n as usize);
        }
        for (s, n) in track::spans(snap, 0, len, WP_GAP) {
            // Lossless: `usize` is 64 bits here.
            self.write_protect(first as u64 + s, n);
        }
    }

    /// In the recording mode, after a clearing collect cleared `snap`: a page pinned
    /// for DMA stays pending (the kernel may write it with no PTE). (`PG_dirty`,
    /// which `page_mkwrite` faults also set, is not read while recording; `enter`
    /// drops it on the way back to the scan.)
    fn keep_pinned(&mut self, snap: &[u64], first: usize, len: usize) {
        for (s, n) in logic::runs(snap, 0, len) {
            // Lossless: runs of `[0, len)`.
            let s = first + s as usize;
            for i in s..s + n as usize {
                let pinned = self
                    .frames
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(crate::mm::maybe_pinned);
                if pinned {
                    logic::set_bit(&mut self.pending, i);
                }
            }
        }
    }

    /// Opens a snapshot of the pages `snap` holds (bit `i`: page `first + i`, for
    /// `i < len`), which the caller has write-protected. The bitmaps are allocated
    /// at the first snapshot.
    fn open_snapshot(&mut self, snap: &[u64], first: usize, len: usize) -> Result {
        self.close_snapshot();
        if self.cow.held.is_empty() {
            // Lossless: `pages` fits in `usize` (checked at create).
            let n = self.pages as usize;
            self.cow.unsent = VVec::from_elem(0, self.pending.len(), GFP_KERNEL_ACCOUNT)?;
            let mut held = VVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
            for _ in 0..n {
                held.push(None, GFP_KERNEL_ACCOUNT)?;
            }
            self.cow.held = held;
        }
        logic::apply_snapshot(&mut self.cow.unsent, snap, first, len, true);
        self.cow.open = true;
        self.cow.generation += 1;
        Ok(())
    }

    /// Closes the open snapshot: the old contents still held are dropped.
    fn close_snapshot(&mut self) {
        if !self.cow.open {
            return;
        }
        // Lossless: `pages` fits in `usize`.
        let n = self.pages as usize;
        let Cow { unsent, held, .. } = &mut self.cow;
        for (s, c) in logic::runs(unsent, 0, n) {
            // Lossless: runs of `[0, n)`.
            for slot in held.iter_mut().skip(s as usize).take(c as usize) {
                *slot = None;
            }
        }
        unsent.iter_mut().for_each(|w| *w = 0);
        self.cow.open = false;
        self.cow.generation += 1;
    }

    /// Before a write reaches page `idx` (its fault, under the mutex): if it is an
    /// unsent page of the open snapshot, its old contents are copied first, once.
    fn preserve(&mut self, idx: usize) -> Result {
        if !logic::test_bit(&self.cow.unsent, idx)
            || self.cow.held.get(idx).is_none_or(Option::is_some)
        {
            return Ok(());
        }
        let copy = crate::mm::duplicate_page(self.frames.get(idx).and_then(Option::as_ref))?;
        if let Some(slot) = self.cow.held.get_mut(idx) {
            *slot = Some(copy);
            self.stats.cow_copies += 1;
        }
        Ok(())
    }

    /// What a copy-out of page `idx` reads (under the mutex). An unsent page of the
    /// open snapshot that a write reached: its held old contents, and it is sent.
    /// Any other page: its frame, which an unsent page's copy-out settles with
    /// [`Region::sent`] afterwards.
    fn source(&mut self, idx: usize) -> Source {
        if !logic::test_bit(&self.cow.unsent, idx) {
            return Source::Frame(self.frame_ptr(idx), None);
        }
        if let Some(page) = self.cow.held.get_mut(idx).and_then(Option::take) {
            logic::clear_bit(&mut self.cow.unsent, idx);
            return Source::Held(page);
        }
        Source::Frame(self.frame_ptr(idx), Some(self.cow.generation))
    }

    /// After page `idx`, an unsent page of snapshot `generation`, was copied out
    /// from its frame: it is sent, and writes to it need no copy any more. If a
    /// write reached it meanwhile, the copy may hold part of that write: the old
    /// contents the write's fault kept, to copy again. (A page copied under the
    /// mutex gets `None`: no write can reach it there. Of two copy-outs of one page
    /// at once, one may find the kept contents taken by the other: it keeps what it
    /// copied, as the ioctl reference says.)
    fn sent(&mut self, idx: usize, generation: u64) -> Option<Page> {
        if self.cow.generation != generation || !logic::test_bit(&self.cow.unsent, idx) {
            return None;
        }
        logic::clear_bit(&mut self.cow.unsent, idx);
        self.cow.held.get_mut(idx).and_then(Option::take)
    }

    /// After a copy-out of `idx` failed with a snapshot open: the pages are pending
    /// again, so that the next collect reports them (what the snapshot held of
    /// them may be gone).
    fn copy_failed(&mut self, idx: &[u64]) {
        if self.cow.open {
            for &i in idx {
                // Lossless: checked against the region's pages.
                logic::set_bit(&mut self.pending, i as usize);
            }
        }
    }

    /// Moves the dirt of pages `[first, end)` into `pending`: from the page tables,
    /// then from pages dirtied by mappings that went.
    ///
    /// A zap (`munmap`, `exit`, `MADV_DONTNEED`) of a dirty entry of a shared page
    /// marks the page dirty and then flushes the TLBs, both under the PTE lock,
    /// with the mapping still in the file's `i_mmap` tree (the kernel delays the
    /// rmap removal past the flush for exactly this; see `zap_present_folio_ptes`).
    /// Between the two, another CPU may still write through its stale TLB entry.
    /// So a page found dirty is first write-protected in every mapping, which takes
    /// each of its PTE locks and so waits for such a zap to finish its flush; only
    /// then is `PG_dirty` cleared: a write through a stale entry is in the page
    /// before the collect reports it. Pages found dirty are few (their mappings
    /// went); the write-protection costs a live mapping of one of them a fault.
    fn gather(&mut self, first: usize, end: usize) -> u64 {
        Self::clean_ptes(&self.mapping, self.base, &mut self.pending, first, end);
        let mut unmapped = 0;
        for (i, frame) in self.frames.iter().enumerate().take(end).skip(first) {
            if let Some(page) = frame {
                if !crate::mm::is_dirty(page) {
                    continue;
                }
                // Lossless: `i < pages`.
                Self::wp_range(&self.mapping, self.base + i as u64, 1);
                if crate::mm::test_clear_dirty(page) {
                    if !logic::test_bit(&self.pending, i) {
                        unmapped += 1;
                    }
                    logic::set_bit(&mut self.pending, i);
                }
            }
        }
        unmapped
    }
}

/// The operations of a region's VMAs: the fault maps the region's page, allocated at
/// its first touch; `page_mkwrite` sees the first write to a page mapped read-only.
static CKPT_VM_OPS: VmOps = VmOps::with_fault_and_mkwrite(ckpt_fault, ckpt_mkwrite);

/// `CKPT_VM_OPS.fault`.
///
/// # Safety
///
/// Called by the kernel as the `fault` handler of a VMA that [`CkptDevice::mmap`]
/// set up, with the fault's lock held.
unsafe extern "C" fn ckpt_fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    // SAFETY: the kernel's call: `vmf` is the fault, its lock held for this call.
    let fault = unsafe { Fault::from_raw(vmf) };
    // SAFETY: the private data `CkptDevice::mmap` installed: the pinned device of
    // the VMA's file, which the VMA holds.
    let dev = unsafe { &*fault.private().cast::<CkptDevice>() };
    match dev.fault(&fault) {
        Ok(()) => FaultOutcome::Mapped,
        Err(e) => FaultOutcome::of(e),
    }
    .to_raw()
}

/// `CKPT_VM_OPS.page_mkwrite`.
///
/// # Safety
///
/// Called by the kernel as the `page_mkwrite` handler of a VMA that
/// [`CkptDevice::mmap`] set up, with the fault's lock held.
unsafe extern "C" fn ckpt_mkwrite(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    // SAFETY: the kernel's call: `vmf` is the fault, its lock held for this call.
    let fault = unsafe { Fault::from_raw(vmf) };
    // SAFETY: as in `ckpt_fault`.
    let dev = unsafe { &*fault.private().cast::<CkptDevice>() };
    match dev.mkwrite(&fault) {
        Ok(()) => FaultOutcome::Locked,
        Err(e) => FaultOutcome::of(e),
    }
    .to_raw()
}

/// The state of one open file of `/dev/memkit-ckpt`: its region, once created.
#[pin_data]
pub(crate) struct CkptDevice {
    #[pin]
    region: Mutex<Option<Region>>,
}

/// The error of a positive errno from `pure::ckpt`.
fn errno(e: i32) -> Error {
    Error::from_errno(-e)
}

/// A user buffer written in order.
fn user_writer(addr: u64, len: u64) -> Result<kernel::uaccess::UserSliceWriter> {
    Ok(UserSlice::new(
        UserPtr::from_addr(usize::try_from(addr)?),
        usize::try_from(len)?,
    )
    .writer())
}

/// Copies `page` (NULL: zeros) to the user address `dst`, a whole page.
///
/// The frames of a region are never freed while the region exists, and the region
/// lives as long as the file an ioctl runs on, so a frame pointer taken under the
/// mutex stays valid without it.
///
/// # Safety
///
/// `page` is NULL, a frame of the region of the file the calling ioctl runs on, or
/// a page the caller holds; the caller holds no spinlock.
unsafe fn copy_page_to_user(dst: usize, page: *mut bindings::page) -> Result {
    // SAFETY: `page` is NULL or a valid page (the caller's contract); process
    // context, no spinlock held.
    let ret = unsafe { memkit_copy_page_to_user(dst, page) };
    if ret != 0 {
        return Err(Error::from_errno(ret));
    }
    Ok(())
}

/// Bytes of `COPY_DIFF`'s staging buffer: 16 records of the largest size.
const COPY_STAGE: usize = 16 * diff::MAX_RECORD;

/// Where `COPY_DIFF`'s records go: the caller's buffer, written in order.
struct RecordsOut {
    /// The user address of the next byte.
    dst: usize,
    /// Bytes of the staging buffer not yet copied out.
    staged: usize,
    /// Bytes copied out so far.
    written: u64,
}

impl RecordsOut {
    fn advance(&mut self, n: usize) -> Result {
        self.dst = self.dst.checked_add(n).ok_or(EFAULT)?;
        self.written = self.written.checked_add(n as u64).ok_or(EFAULT)?;
        Ok(())
    }

    /// Copies the staged bytes out (no lock held: the copy may fault).
    fn flush(&mut self, stage: &[u8]) -> Result {
        let n = self.staged;
        if n > 0 {
            UserSlice::new(UserPtr::from_addr(self.dst), n)
                .writer()
                .write_slice(stage.get(..n).ok_or(EINVAL)?)?;
            self.staged = 0;
            self.advance(n)?;
        }
        Ok(())
    }
}

impl CkptDevice {
    /// The region page a fault is for, as an index.
    fn fault_index(r: &Region, fault: &Fault<'_>) -> Result<usize> {
        let idx = fault
            .pgoff()
            .checked_sub(r.base)
            .filter(|&i| i < r.pages)
            .ok_or(EFAULT)?;
        Ok(usize::try_from(idx)?)
    }

    /// Maps the faulting page of the region, allocating it at its first touch
    /// (`vmf_insert_page_mkwrite`, which takes its own reference): read-only for a
    /// read (the VMA wants write notification), writable and dirty for a write — in
    /// the recording mode after setting its pending bit, and after keeping its old
    /// contents if it is an unsent page of a snapshot. The page is a normal page:
    /// when a dirty PTE of it is zapped, the kernel moves the dirt to `PG_dirty`,
    /// which a scanning collect tests. The region mutex is held across the insert
    /// (fault lock -> region mutex -> PTE lock, the order of every collect).
    fn fault(&self, fault: &Fault<'_>) -> Result {
        // `map_region_window` set `VM_MIXEDMAP`.
        fault.vma().as_mixedmap_vma().ok_or(EFAULT)?;
        let write = fault.is_write();
        let mut guard = self.region.lock();
        let r = (*guard).as_mut().ok_or(EFAULT)?;
        let idx = Self::fault_index(r, fault)?;
        r.frame(idx)?;
        if write {
            r.preserve(idx)?;
            if r.policy.mode() == Mode::Record {
                logic::set_bit(&mut r.pending, idx);
                r.stats.write_faults += 1;
            }
        }
        fault.insert_page(r.frame(idx)?, write)
    }

    /// The first write to a page mapped read-only: keeps its old contents if it is an
    /// unsent page of a snapshot; in the recording mode, sets its pending bit; in
    /// both, locks the page, which the kernel unlocks once the PTE is writable (see
    /// the module's doc for why under the region mutex).
    fn mkwrite(&self, fault: &Fault<'_>) -> Result {
        let mut guard = self.region.lock();
        let r = (*guard).as_mut().ok_or(EFAULT)?;
        let idx = Self::fault_index(r, fault)?;
        r.preserve(idx)?;
        let record = r.policy.mode() == Mode::Record;
        if record {
            logic::set_bit(&mut r.pending, idx);
            r.stats.write_faults += 1;
        }
        let page = r.frames.get(idx).and_then(Option::as_ref).ok_or(EFAULT)?;
        if !fault.is_page(page) {
            return Err(EFAULT);
        }
        fault.lock_page(page);
        Ok(())
    }

    fn create(&self, file: &File, arg: usize) -> Result<isize> {
        let mut req = uapi::read::<abi::CkptCreate>(arg)?;
        // Only kernels with the mapping-dirty helpers (which `DRM_VMWGFX` selects)
        // have `clean_record_shared_mapping_range`.
        if !cfg!(CONFIG_MAPPING_DIRTY_HELPERS) {
            kernel::pr_err_once!("ckpt: this kernel lacks CONFIG_MAPPING_DIRTY_HELPERS (select it with DRM_VMWGFX)\n");
            return Err(EOPNOTSUPP);
        }
        if self.region.lock().is_some() {
            return Err(EEXIST);
        }
        let mapping = Mapping(crate::edge::file_mapping(file).ok_or(EINVAL)?);
        let region = Region::new(req.bytes, mapping)?;
        req.mmap_offset = region.base << crate::edge::PAGE_SHIFT;
        // Written back before the region is kept (a bad pointer leaves no region),
        // and without the lock: the user's struct may lie in another region.
        uapi::write(arg, req.size, &req)?;
        let mut guard = self.region.lock();
        if guard.is_some() {
            // Another thread created one meanwhile.
            return Err(EEXIST);
        }
        *guard = Some(region);
        Ok(0)
    }

    fn start(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::CkptStart>(arg)?;
        let policy = Policy::from_start_flags(req.flags).map_err(errno)?;
        let mut guard = self.region.lock();
        let r = (*guard).as_mut().ok_or(EINVAL)?;
        // Lossless: `pages` fits in `usize` (checked at create).
        let n = r.pages as usize;
        r.policy = policy;
        r.close_snapshot();
        match policy.mode() {
            Mode::Record => r.enter(Mode::Record),
            Mode::Scan => {
                r.gather(0, n);
            }
        }
        r.pending.iter_mut().for_each(|w| *w = 0);
        r.history.clear();
        Ok(0)
    }

    fn collect(&self, arg: usize) -> Result<isize> {
        let mut req = uapi::read::<abi::CkptCollect>(arg)?;
        // Under the lock: gather, snapshot the range (window-relative words), and
        // for a clearing collect clear what the answer holds — so that a collect
        // running meanwhile reports any later write. The user copy goes without the
        // lock; if it fails, the snapshot's bits are set again.
        let (c, snap, all, unmapped, dirty, nr_runs, generation) = {
            let mut guard = self.region.lock();
            let r = (*guard).as_mut().ok_or(EINVAL)?;
            let c = Collect::check(&req, r.pages).map_err(errno)?;
            let record = r.policy.mode() == Mode::Record;
            // A snapshot is an instant only if every page it does not report is
            // write-protected: the recording mode, fixed so that it stays.
            if c.snapshot && !(record && r.policy.fixed()) {
                return Err(EINVAL);
            }
            let unmapped = if record { 0 } else { r.gather(c.first, c.end) };
            let len = c.end - c.first;
            // Lossless: at most the region's pages.
            let nwords = logic::words(len as u64) as usize;
            let mut snap = KVVec::with_capacity(nwords, GFP_KERNEL_ACCOUNT)?;
            for w in 0..nwords {
                snap.push(
                    logic::out_word(&r.pending, c.first, c.end, w),
                    GFP_KERNEL_ACCOUNT,
                )?;
            }
            // `COLLECT_ALL`: every page of the range is reported (and cleared, and in
            // the snapshot); `snap` stays what was written, for the history.
            let all = if c.all {
                let mut all = KVVec::with_capacity(nwords, GFP_KERNEL_ACCOUNT)?;
                for w in 0..nwords {
                    all.push(logic::ones_word(len, w), GFP_KERNEL_ACCOUNT)?;
                }
                Some(all)
            } else {
                None
            };
            let answer = all.as_deref().unwrap_or(&snap);
            let (dirty, nr_runs) = logic::count(answer, 0, len);
            c.check_room(req.buf_len, nr_runs).map_err(errno)?;
            if c.clear {
                if record {
                    r.protect(answer, c.first, len);
                }
                if c.snapshot {
                    r.open_snapshot(answer, c.first, len)?;
                } else {
                    r.close_snapshot();
                }
                logic::apply_snapshot(&mut r.pending, answer, c.first, len, false);
                if record {
                    r.keep_pinned(answer, c.first, len);
                }
            }
            (c, snap, all, unmapped, dirty, nr_runs, r.cow.generation)
        };
        let len = c.end - c.first;
        let answer = all.as_deref().unwrap_or(&snap);
        req.dirty = dirty;
        req.nr_ranges = nr_runs;
        let copied = (|| -> Result {
            if !c.count_only {
                let mut out = user_writer(req.buf, req.buf_len)?;
                if c.ranges {
                    for (first, count) in logic::runs(answer, 0, len) {
                        let mut raw = [0u8; 16];
                        abi::UapiStruct::encode(
                            &abi::CkptRange {
                                // Lossless: a page index.
                                first: first + c.first as u64,
                                count,
                            },
                            &mut raw,
                        );
                        out.write_slice(&raw)?;
                    }
                } else {
                    // 64 words per user copy, not one.
                    let mut chunk = [0u8; 512];
                    for words in answer.chunks(64) {
                        for (i, w) in words.iter().enumerate() {
                            if let Some(b) = chunk.get_mut(i * 8..i * 8 + 8) {
                                b.copy_from_slice(&w.to_ne_bytes());
                            }
                        }
                        out.write_slice(&chunk[..words.len() * 8])?;
                    }
                }
            }
            uapi::write(arg, req.size, &req)
        })();

        let mut guard = self.region.lock();
        let r = (*guard).as_mut().ok_or(EINVAL)?;
        if let Err(e) = copied {
            if c.clear {
                // What was pending is pending again (with `ALL`, the pages that were
                // not pending stay as they were).
                logic::apply_snapshot(&mut r.pending, &snap, c.first, len, true);
                // The snapshot it opened, unless another collect came since.
                if c.snapshot && r.cow.generation == generation {
                    r.close_snapshot();
                }
            }
            return Err(e);
        }
        r.stats.collects += 1;
        if c.clear {
            r.history.end_interval(&snap, c.first, c.end);
            r.stats.intervals += 1;
            r.stats.dirty_reported += dirty;
            r.stats.dirty_unmapped += unmapped;
            if c.snapshot {
                r.stats.snapshot_pages += dirty;
            }
            // The mode follows what was written (with `ALL`, less than reported).
            let written = if all.is_some() {
                logic::count(&snap, 0, len).0
            } else {
                dirty
            };
            // Lossless: at most the region's pages.
            if let Some(mode) = r.policy.after_interval(written, len as u64) {
                r.enter(mode);
                r.stats.mode_switches += 1;
            }
        }
        Ok(0)
    }

    fn history(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::CkptHistory>(arg)?;
        let (first, end) = {
            let guard = self.region.lock();
            let r = guard.as_ref().ok_or(EINVAL)?;
            logic::page_range(req.first, req.count, r.pages).map_err(errno)?
        };
        logic::check_buffer(req.buf_len, req.count, 8).map_err(errno)?;
        let mut out = user_writer(req.buf, req.buf_len)?;
        let mut chunk = [0u8; 512];
        let mut p = first;
        while p < end {
            let n = (end - p).min(chunk.len() / 8);
            {
                let guard = self.region.lock();
                let r = guard.as_ref().ok_or(EINVAL)?;
                for (i, b) in chunk.chunks_exact_mut(8).take(n).enumerate() {
                    let h = r.history.get(p + i);
                    b.copy_from_slice(&h.to_ne_bytes());
                }
            }
            out.write_slice(&chunk[..n * 8])?;
            p += n;
        }
        Ok(0)
    }

    /// Copies page `idx` to the user address `dst`, as [`Region::source`] says,
    /// without the mutex (the buffer may be the region's own mapping, whose fault
    /// takes it).
    fn copy_out(&self, idx: usize, dst: usize) -> Result {
        let source = (*self.region.lock()).as_mut().ok_or(EINVAL)?.source(idx);
        match source {
            // SAFETY: a page owned here; an ioctl holds no spinlock.
            Source::Held(page) => unsafe { copy_page_to_user(dst, page.as_ptr()) },
            Source::Frame(page, generation) => {
                // SAFETY: NULL or a frame of this file's region (`Region::source`);
                // an ioctl holds no spinlock.
                unsafe { copy_page_to_user(dst, page) }?;
                let Some(generation) = generation else {
                    return Ok(());
                };
                let again = (*self.region.lock())
                    .as_mut()
                    .ok_or(EINVAL)?
                    .sent(idx, generation);
                match again {
                    // SAFETY: a page owned here; an ioctl holds no spinlock.
                    Some(page) => unsafe { copy_page_to_user(dst, page.as_ptr()) },
                    None => Ok(()),
                }
            }
        }
    }

    fn copy(&self, arg: usize) -> Result<isize> {
        let mut req = uapi::read::<abi::CkptCopy>(arg)?;
        if req.count == 0 || req.count > abi::CKPT_COPY_MAX_PAGES {
            return Err(EINVAL);
        }
        let bytes = logic::check_buffer(req.buf_len, req.count, logic::PAGE_SIZE).map_err(errno)?;
        // Every index is checked before anything is written.
        let idx = self.read_indexes(req.pages, req.count)?;
        let mut dst = usize::try_from(req.buf)?;
        let copied = idx.iter().try_for_each(|&i| {
            // Lossless: `i < pages`, which fits in `usize`.
            self.copy_out(i as usize, dst)?;
            dst = dst.checked_add(kernel::page::PAGE_SIZE).ok_or(EFAULT)?;
            Ok(())
        });
        if let Err(e) = copied {
            if let Some(r) = (*self.region.lock()).as_mut() {
                r.copy_failed(&idx);
            }
            return Err(e);
        }
        req.bytes = bytes;
        uapi::write(arg, req.size, &req)?;
        if let Some(r) = (*self.region.lock()).as_mut() {
            r.stats.pages_copied += req.count;
        }
        Ok(0)
    }

    /// Reads `count` page indexes from the user address `addr`, each checked against
    /// the region's size (`EINVAL`).
    fn read_indexes(&self, addr: u64, count: u64) -> Result<KVVec<u64>> {
        let n = usize::try_from(count)?;
        let mut idx = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        let mut reader = UserSlice::new(
            UserPtr::from_addr(usize::try_from(addr)?),
            n.checked_mul(8).ok_or(EINVAL)?,
        )
        .reader();
        let mut raw = [0u8; 8];
        for _ in 0..n {
            reader.read_slice(&mut raw)?;
            idx.push(u64::from_ne_bytes(raw), GFP_KERNEL_ACCOUNT)?;
        }
        let pages = self.region.lock().as_ref().ok_or(EINVAL)?.pages;
        if idx.iter().any(|&i| i >= pages) {
            return Err(EINVAL);
        }
        Ok(idx)
    }

    fn diff_set(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::CkptDiffSet>(arg)?;
        if req.count > abi::CKPT_COPY_MAX_PAGES {
            return Err(EINVAL);
        }
        let idx = self.read_indexes(req.pages, req.count)?;
        let mut guard = self.region.lock();
        let r = (*guard).as_mut().ok_or(EINVAL)?;
        if req.flags & abi::CKPT_DIFF_SET_RESET != 0 {
            r.diff_set.iter_mut().for_each(|w| *w = 0);
            r.bases.iter_mut().for_each(|b| *b = None);
        }
        let remove = req.flags & abi::CKPT_DIFF_SET_REMOVE != 0;
        for &i in idx.iter() {
            // Lossless: checked against the region's pages.
            let i = i as usize;
            if remove {
                logic::clear_bit(&mut r.diff_set, i);
                if let Some(b) = r.bases.get_mut(i) {
                    *b = None;
                }
            } else {
                logic::set_bit(&mut r.diff_set, i);
            }
        }
        Ok(0)
    }

    /// `COPY_DIFF`: each page's contents read once. A page outside the diff set goes
    /// whole, straight from its frame to the caller's buffer (its header staged
    /// before it), as [`CkptDevice::copy_out`] reads it (a page of an open snapshot
    /// from its kept old contents if a write came first). A page of the diff set is
    /// copied once, under the region lock, into a new snapshot — what its record
    /// carries and its next version — and encoded against its version into the
    /// staging buffer. Staged records are copied out without the lock (the caller's
    /// buffer may be the region's own mapping, whose fault takes the lock). The
    /// snapshots replace the versions only once every record reached the caller: a
    /// failed call advances no version.
    fn copy_diff(&self, arg: usize) -> Result<isize> {
        let mut req = uapi::read::<abi::CkptCopyDiff>(arg)?;
        if req.count == 0 || req.count > abi::CKPT_COPY_DIFF_MAX_PAGES {
            return Err(EINVAL);
        }
        let params = diff::Params::new(req.segment, req.max_changed).ok_or(EINVAL)?;
        logic::check_buffer(req.buf_len, req.count, diff::MAX_RECORD as u64).map_err(errno)?;
        let idx = self.read_indexes(req.pages, req.count)?;
        let n = idx.len();
        // No repeats: the versions would not follow the stream.
        let mut sorted = KVVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        for &i in idx.iter() {
            sorted.push(i, GFP_KERNEL_ACCOUNT)?;
        }
        crate::pure::sort::heapsort(&mut sorted);
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(EINVAL);
        }
        let mut stage = KVVec::from_elem(0u8, COPY_STAGE, GFP_KERNEL_ACCOUNT)?;
        // (page, snapshot) of the diff set's pages: their versions once all went out.
        let mut next = KVVec::new();
        let mut out = RecordsOut {
            dst: usize::try_from(req.buf)?,
            staged: 0,
            written: 0,
        };
        let mut diffed = 0u64;
        let copied = (|| -> Result {
            for &i in idx.iter() {
                // Lossless: checked against the region's pages.
                let i = i as usize;
                if stage.len() - out.staged < diff::MAX_RECORD {
                    out.flush(&stage)?;
                }
                let whole = {
                    let mut guard = self.region.lock();
                    let r = (*guard).as_mut().ok_or(EINVAL)?;
                    let dst = stage.get_mut(out.staged..).ok_or(EINVAL)?;
                    if logic::test_bit(&r.diff_set, i) {
                        let mut snap = KVec::from_elem(0u8, diff::PAGE, GFP_KERNEL_ACCOUNT)?;
                        match r.source(i) {
                            Source::Held(page) => crate::mm::copy_page(&mut snap, Some(&page))?,
                            Source::Frame(_, generation) => {
                                let frame = r.frames.get(i).and_then(Option::as_ref);
                                crate::mm::copy_page(&mut snap, frame)?;
                                if let Some(g) = generation {
                                    // Copied under the mutex: no write reached it,
                                    // so nothing comes back.
                                    let _none = r.sent(i, g);
                                }
                            }
                        }
                        let version = r.bases.get(i).and_then(Option::as_deref);
                        let (len, d) =
                            diff::encode(params, i as u64, &snap, version, dst).ok_or(EINVAL)?;
                        next.push((i, snap), GFP_KERNEL_ACCOUNT)?;
                        out.staged += len;
                        diffed += u64::from(d);
                        false
                    } else {
                        out.staged += diff::put_full_header(dst, i as u64).ok_or(EINVAL)?;
                        true
                    }
                };
                if whole {
                    out.flush(&stage)?;
                    self.copy_out(i, out.dst)?;
                    out.advance(diff::PAGE)?;
                }
            }
            out.flush(&stage)?;
            req.bytes = out.written;
            req.diffed = diffed;
            uapi::write(arg, req.size, &req)
        })();
        if let Err(e) = copied {
            if let Some(r) = (*self.region.lock()).as_mut() {
                r.copy_failed(&idx);
            }
            return Err(e);
        }
        let mut guard = self.region.lock();
        let r = (*guard).as_mut().ok_or(EINVAL)?;
        for (i, snap) in next {
            // Dropped from the set meanwhile (DIFF_SET): no version to keep.
            if logic::test_bit(&r.diff_set, i) {
                if let Some(v) = r.bases.get_mut(i) {
                    *v = Some(snap);
                }
            }
        }
        r.stats.pages_copied += req.count;
        r.stats.pages_diffed += diffed;
        r.stats.record_bytes += req.bytes;
        Ok(0)
    }

    fn stats(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::CkptStats>(arg)?;
        let mut out = self
            .region
            .lock()
            .as_ref()
            .map(|r| abi::CkptStats {
                mode: r.policy.mode().abi(),
                mode_fixed: u32::from(r.policy.fixed()),
                ..r.stats
            })
            .unwrap_or_default();
        // Lossless: a struct size.
        out.size = req
            .size
            .min(<abi::CkptStats as abi::UapiStruct>::SIZE as u32);
        out.flags = 0;
        uapi::write(arg, req.size, &out)?;
        Ok(0)
    }
}

#[vtable]
impl MiscDevice for CkptDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(CkptDevice {
                region <- new_mutex!(None),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    fn mmap(me: Pin<&CkptDevice>, _file: &File, vma: &VmaNew) -> Result {
        let guard = me.region.lock();
        let r = guard.as_ref().ok_or(EINVAL)?;
        crate::edge::map_region_window(vma, r.base, r.pages)?;
        // `me` is pinned and lives as long as the file, which every VMA of it holds.
        CKPT_VM_OPS.install(vma, core::ptr::from_ref::<CkptDevice>(&me).cast());
        Ok(())
    }

    fn ioctl(me: Pin<&CkptDevice>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match abi::Command::decode(cmd) {
            Some(abi::Command::Version) => crate::uapi::version(
                arg,
                abi::DEV_CKPT,
                abi::FEAT_CKPT_DIRTY
                    | abi::FEAT_FDINFO
                    | abi::FEAT_CKPT_RECORD
                    | abi::FEAT_CKPT_SNAPSHOT,
            ),
            Some(abi::Command::CkptCreate) => me.create(file, arg),
            Some(abi::Command::CkptStart) => me.start(arg),
            Some(abi::Command::CkptCollect) => me.collect(arg),
            Some(abi::Command::CkptHistory) => me.history(arg),
            Some(abi::Command::CkptCopy) => me.copy(arg),
            Some(abi::Command::CkptStats) => me.stats(arg),
            Some(abi::Command::CkptDiffSet) => me.diff_set(arg),
            Some(abi::Command::CkptCopyDiff) => me.copy_diff(arg),
            _ => Err(ENOTTY),
        }
    }

    /// `/proc/PID/fdinfo/FD`: the file's region (`abi::fdinfo`, what `memkit list`
    /// reads).
    fn show_fdinfo(me: Pin<&CkptDevice>, m: &SeqFile, _file: &File) {
        use abi::fdinfo as key;
        seq_print!(m, "{}:\tckpt\n", key::DEVICE);
        let guard = me.region.lock();
        let Some(r) = guard.as_ref() else {
            seq_print!(m, "{}:\tnone\n", key::REGION);
            return;
        };
        seq_print!(
            m,
            "{}:\t{}\n",
            key::REGION,
            r.base >> RegionId::WINDOW_SHIFT
        );
        seq_print!(
            m,
            "{}:\t{:#x}\n",
            key::MMAP_OFFSET,
            r.base << crate::edge::PAGE_SHIFT
        );
        seq_print!(m, "{}:\t{}\n", key::BYTES, r.stats.bytes);
        seq_print!(
            m,
            "{}:\t{}\n",
            key::PAGES_ALLOCATED,
            r.stats.pages_allocated
        );
        seq_print!(m, "{}:\t{}\n", key::INTERVALS, r.stats.intervals);
    }
}
