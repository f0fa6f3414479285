// SPDX-License-Identifier: GPL-2.0

//! The mm boundary: memkit's `vm_operations_struct`s, defined in Rust as statics (as
//! Android binder's `page_range.rs` does), and a fault in progress as a type.
//!
//! A region's mmap installs its device's [`VmOps`] with the region as the VMA's
//! private data; [`VmOps::owns`] recognises such a VMA again (a work item looks a VMA
//! up by address and must not touch another driver's). The fault handlers the ops
//! name receive a raw `struct vm_fault`; [`Fault`] wraps it for as long as the
//! fault's lock is held, so the VMA it hands out cannot outlive that lock (and, in
//! `page_mkwrite`, locks the page being made writable). The page helpers the regions
//! use ([`test_clear_dirty`], [`copy_page`], [`wait_page_unlocked`],
//! [`maybe_pinned`]) are here too, each declared once.

use core::{ffi::c_void, marker::PhantomData, ptr};
use kernel::{bindings, mm::virt, page::Page};

// The C edge (`helpers.c`, `rmem_edge.c`). The kernel types behind these pointers
// hold structs with no fields (config-dependent), which the FFI lint cannot see
// into; the pointers are only passed through.
#[allow(improper_ctypes)]
extern "C" {
    /// `release_fault_lock(vmf)` (an inline function: `rmem_edge.c`).
    ///
    /// # Safety
    ///
    /// `vmf` is the current fault (a `struct vm_fault`), whose lock is held.
    fn memkit_release_fault_lock(vmf: *mut bindings::vm_fault);
    /// Tests and clears `PG_dirty` of `page`'s folio (`folio_test_clear_dirty` is
    /// inline: `helpers.c`).
    ///
    /// # Safety
    ///
    /// `page` is a valid page the caller holds a reference to.
    fn memkit_page_test_clear_dirty(page: *mut bindings::page) -> bool;
    /// Copies `page` (or zeros, if `page` is NULL) to `dst`: `PAGE_SIZE` bytes
    /// (`kmap_local_page` is inline).
    ///
    /// # Safety
    ///
    /// `page` is NULL or a valid page the caller holds a reference to; `dst` is valid
    /// for `PAGE_SIZE` bytes of writes.
    fn memkit_copy_page(dst: *mut u8, page: *mut bindings::page);
    /// `copy_highpage(dst, src)` (inline: `rmem_edge.c`).
    ///
    /// # Safety
    ///
    /// `dst` and `src` are valid pages the caller holds references to; nobody else
    /// reads or writes `dst`.
    fn memkit_copy_highpage(dst: *mut bindings::page, src: *mut bindings::page);
    /// Locks `page`'s folio (`folio_lock` is inline); may sleep.
    ///
    /// # Safety
    ///
    /// `page` is a valid page the caller holds a reference to; process context.
    fn memkit_page_lock(page: *mut bindings::page);
    /// Takes and drops `page`'s folio lock: waits for whoever holds it.
    ///
    /// # Safety
    ///
    /// As `memkit_page_lock`, and the caller does not hold that lock.
    fn memkit_page_wait_unlocked(page: *mut bindings::page);
    /// `folio_maybe_dma_pinned` of `page`'s folio (inline).
    ///
    /// # Safety
    ///
    /// `page` is a valid page the caller holds a reference to.
    fn memkit_page_maybe_pinned(page: *mut bindings::page) -> bool;
    /// `folio_test_dirty` of `page`'s folio (inline).
    ///
    /// # Safety
    ///
    /// `page` is a valid page the caller holds a reference to.
    fn memkit_page_dirty(page: *mut bindings::page) -> bool;
}

/// Whether `PG_dirty` of the page's folio is set (a plain read).
pub(crate) fn is_dirty(page: &Page) -> bool {
    // SAFETY: `page` is a page the caller holds a reference to.
    unsafe { memkit_page_dirty(page.as_ptr()) }
}

/// Tests and clears `PG_dirty` of the page's folio: whether a PTE that mapped it
/// dirty was zapped (munmap, exit, eviction) since the last test.
pub(crate) fn test_clear_dirty(page: &Page) -> bool {
    // SAFETY: `page` is a page the caller holds a reference to.
    unsafe { memkit_page_test_clear_dirty(page.as_ptr()) }
}

/// Waits until nobody holds the page's folio lock: a write fault that locked it in
/// `page_mkwrite` holds it until the page-table entry is writable (`rust/ckpt.rs`).
/// May sleep; the caller must not hold that lock.
pub(crate) fn wait_page_unlocked(page: &Page) {
    // SAFETY: `page` is a page the caller holds a reference to (`&Page`); sleeping
    // is allowed (the callers hold only mutexes).
    unsafe { memkit_page_wait_unlocked(page.as_ptr()) }
}

/// Whether the page's folio may be pinned for DMA (`FOLL_PIN`): the kernel may
/// write it through that pin without any page-table entry.
pub(crate) fn maybe_pinned(page: &Page) -> bool {
    // SAFETY: `page` is a page the caller holds a reference to.
    unsafe { memkit_page_maybe_pinned(page.as_ptr()) }
}

/// Copies `page` (zeros for `None`) into the first page of `dst` (`EINVAL` if `dst`
/// is shorter). In C (`helpers.c`), not `Page::read_raw`: the page may be written at
/// the same time through a user mapping, which `read_raw`'s contract rules out; the
/// callers are built for a page copied mid-write (a checkpoint's copy is followed by
/// a collect that sees the write; an evicted page's PTEs are gone).
pub(crate) fn copy_page(dst: &mut [u8], page: Option<&Page>) -> kernel::error::Result {
    let dst = dst
        .get_mut(..kernel::page::PAGE_SIZE)
        .ok_or(kernel::error::code::EINVAL)?;
    let page = page.map_or(ptr::null_mut(), Page::as_ptr);
    // SAFETY: `dst` is valid for `PAGE_SIZE` bytes of writes; `page` is NULL or a
    // page the caller holds a reference to (`&Page`).
    unsafe { memkit_copy_page(dst.as_mut_ptr(), page) };
    Ok(())
}

/// A new page holding what `src` holds now (zeros for `None`), charged to the
/// caller's memory cgroup. In C, as [`copy_page`] (`copy_highpage` is inline).
pub(crate) fn duplicate_page(src: Option<&Page>) -> kernel::error::Result<Page> {
    use kernel::alloc::flags::{__GFP_ZERO, GFP_KERNEL_ACCOUNT};
    let Some(src) = src else {
        return Ok(Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?);
    };
    let dst = Page::alloc_page(GFP_KERNEL_ACCOUNT)?;
    // SAFETY: both are pages the caller holds (`&Page`, and `dst` is owned here);
    // `dst` is new, so nobody else reads or writes it.
    unsafe { memkit_copy_highpage(dst.as_ptr(), src.as_ptr()) };
    Ok(dst)
}

/// `vm_operations_struct.map_pages` that maps nothing: a read fault goes on to the
/// `fault` handler (see [`VmOps::with_fault_and_mkwrite`] for why it exists).
/// Called under `rcu_read_lock`; touches nothing.
extern "C" fn no_fault_around(
    _vmf: *mut bindings::vm_fault,
    _start: usize,
    _end: usize,
) -> bindings::vm_fault_t {
    0
}

/// A `vm_operations_struct` in a static (bindings types are not `Sync`).
pub(crate) struct VmOps(bindings::vm_operations_struct);

// SAFETY: a `VmOps` is only ever a `static`: immutable, and it holds nothing but
// function pointers, which any thread may read.
unsafe impl Sync for VmOps {}

/// A fault handler, as `vm_operations_struct.fault` calls it.
pub(crate) type FaultFn = unsafe extern "C" fn(*mut bindings::vm_fault) -> bindings::vm_fault_t;

impl VmOps {
    /// Operations with only a `fault` handler (the VMA is `VM_MIXEDMAP`; no
    /// `map_pages`, so a fault under the per-VMA lock is retried under the mmap lock).
    pub(crate) const fn with_fault(fault: FaultFn) -> VmOps {
        let mut ops: bindings::vm_operations_struct = pin_init::zeroed();
        ops.fault = Some(fault);
        VmOps(ops)
    }

    /// Operations with a `fault` handler and a `page_mkwrite` one, both safe to call
    /// under the per-VMA lock alone. A VMA with `page_mkwrite` gets its shared pages
    /// mapped read-only (`vma_wants_writenotify`), so the first write to each page
    /// through a PTE that a handler did not map writable goes through
    /// `page_mkwrite`. The handler must return [`FaultOutcome::Locked`] after
    /// [`Fault::lock_page`]: our pages have no `mapping`, with which
    /// `do_page_mkwrite` would retry the fault forever.
    ///
    /// The ops have a `map_pages` that maps nothing ([`no_fault_around`]): the
    /// kernel calls `fault` and `page_mkwrite` under the VMA lock only for ops that
    /// have one (`vmf_can_call_fault`: "all vm_ops that have a ->map_pages have been
    /// audited and don't need the mmap_lock"); without it every such fault is taken
    /// twice, the second time under the mmap lock.
    pub(crate) const fn with_fault_and_mkwrite(fault: FaultFn, mkwrite: FaultFn) -> VmOps {
        let mut ops: bindings::vm_operations_struct = pin_init::zeroed();
        ops.fault = Some(fault);
        ops.page_mkwrite = Some(mkwrite);
        ops.map_pages = Some(no_fault_around);
        VmOps(ops)
    }

    /// Makes `vma`, being set up by mmap, use these operations with `private` as its
    /// private data. `private` must stay valid for as long as the VMA exists: the
    /// callers pass what the file owns, and every VMA holds its file.
    pub(crate) fn install(&'static self, vma: &virt::VmaNew, private: *const c_void) {
        // SAFETY: `vma` is being set up by mmap, which owns it exclusively: writing
        // its ops and private data races with nothing.
        unsafe {
            (*vma.as_ptr()).vm_ops = &self.0;
            (*vma.as_ptr()).vm_private_data = private.cast_mut();
        }
    }

    /// Whether `vma` uses these operations with `private` as its private data.
    pub(crate) fn owns(&'static self, vma: &virt::VmaRef, private: *const c_void) -> bool {
        // SAFETY: a `VmaRef` is a live VMA whose mmap lock (or VMA lock) the caller
        // holds; its ops and private data are set at mmap and never change after.
        let (ops, data) = unsafe { ((*vma.as_ptr()).vm_ops, (*vma.as_ptr()).vm_private_data) };
        ptr::eq(ops, &self.0) && ptr::eq(data.cast_const(), private)
    }
}

/// A fault being handled: valid while the fault's lock (the mmap lock, or the VMA's
/// lock) is held, which is the lifetime `'a` of the handler's call.
pub(crate) struct Fault<'a> {
    raw: *mut bindings::vm_fault,
    _lock: PhantomData<&'a bindings::vm_fault>,
}

impl<'a> Fault<'a> {
    /// The fault the kernel called a handler with.
    ///
    /// # Safety
    ///
    /// `raw` is the `vm_fault` a `vm_operations_struct.fault` handler was called
    /// with, and `'a` does not outlive that call.
    pub(crate) unsafe fn from_raw(raw: *mut bindings::vm_fault) -> Fault<'a> {
        Fault {
            raw,
            _lock: PhantomData,
        }
    }

    fn fields(&self) -> &bindings::vm_fault__bindgen_ty_1 {
        // SAFETY: `raw` is a valid fault for `'a` (`from_raw`); these fields are
        // constant for the fault's duration.
        unsafe { &(*self.raw).__bindgen_anon_1 }
    }

    /// The faulting VMA, borrowed from the fault: [`Fault::release_lock`] cannot be
    /// called while it is in use.
    pub(crate) fn vma(&self) -> &virt::VmaRef {
        // SAFETY: the faulting VMA is live and its lock held for `'a`.
        unsafe { virt::VmaRef::from_raw(self.fields().vma) }
    }

    /// The VMA's private data (what [`VmOps::install`] set).
    pub(crate) fn private(&self) -> *const c_void {
        // SAFETY: as in `vma`; the private data is set at mmap and never changes.
        unsafe { (*self.fields().vma).vm_private_data.cast_const() }
    }

    /// The faulting address, page aligned.
    pub(crate) fn address(&self) -> usize {
        self.fields().address
    }

    /// The page offset of the faulting address in the file.
    pub(crate) fn pgoff(&self) -> u64 {
        // Lossless: `unsigned long` is 64 bits here.
        self.fields().pgoff as u64
    }

    /// A write fault (`FAULT_FLAG_WRITE`).
    pub(crate) fn is_write(&self) -> bool {
        self.flag(bindings::fault_flag_FAULT_FLAG_WRITE)
    }

    /// In `page_mkwrite`: whether `page` is the page being made writable.
    pub(crate) fn is_page(&self, page: &Page) -> bool {
        // SAFETY: `raw` is valid for `'a`; `page` is set before `page_mkwrite` is
        // called and constant during the call.
        ptr::eq(unsafe { (*self.raw).page }, page.as_ptr())
    }

    /// Maps `page` at the faulting address (`vmf_insert_page_mkwrite`): writable and
    /// dirty for `write`, else with the VMA's protection (read-only where it wants
    /// write notification). A PTE already there is left alone, except that `write`
    /// makes it writable. `ENOMEM` or `EFAULT` on failure.
    pub(crate) fn insert_page(&self, page: &Page, write: bool) -> kernel::error::Result {
        // SAFETY: `raw` is the current fault with its lock held; `page` is a page the
        // caller holds a reference to, of the kind `vm_insert_page` takes (an order-0
        // page the VMA's driver allocated); the VMA is `VM_MIXEDMAP`.
        let ret = unsafe { bindings::vmf_insert_page_mkwrite(self.raw, page.as_ptr(), write) };
        if ret == bindings::vm_fault_reason_VM_FAULT_NOPAGE {
            Ok(())
        } else if ret == bindings::vm_fault_reason_VM_FAULT_OOM {
            Err(kernel::error::code::ENOMEM)
        } else {
            Err(kernel::error::code::EFAULT)
        }
    }

    /// In `page_mkwrite`: locks the page being made writable, which the fault unlocks
    /// once its PTE is writable. Return [`FaultOutcome::Locked`] after this.
    pub(crate) fn lock_page(&self, page: &Page) {
        // SAFETY: `page` is a page the caller holds a reference to; a fault handler
        // may sleep.
        unsafe { memkit_page_lock(page.as_ptr()) }
    }

    fn flag(&self, f: bindings::fault_flag) -> bool {
        // SAFETY: `raw` is valid for `'a`; the flags are constant during the call.
        unsafe { (*self.raw).flags & f != 0 }
    }

    /// May drop its lock and have the fault retried (`FAULT_FLAG_ALLOW_RETRY`).
    pub(crate) fn may_retry(&self) -> bool {
        self.flag(bindings::fault_flag_FAULT_FLAG_ALLOW_RETRY)
    }

    /// ... but must not sleep to do so (`FAULT_FLAG_RETRY_NOWAIT`).
    pub(crate) fn retry_nowait(&self) -> bool {
        self.flag(bindings::fault_flag_FAULT_FLAG_RETRY_NOWAIT)
    }

    /// A user-mode fault any signal may interrupt: the signal is delivered, then the
    /// access faults again.
    pub(crate) fn interruptible(&self) -> bool {
        self.flag(bindings::fault_flag_FAULT_FLAG_USER)
            && self.flag(bindings::fault_flag_FAULT_FLAG_INTERRUPTIBLE)
    }

    /// A retry of a fault that returned `VM_FAULT_RETRY`.
    pub(crate) fn tried(&self) -> bool {
        self.flag(bindings::fault_flag_FAULT_FLAG_TRIED)
    }

    /// Drops the fault's lock (before returning `VM_FAULT_RETRY`): the fault is
    /// consumed, and with it every borrow of its VMA. Raw pointers to the VMA or its
    /// mm that the caller kept must not be used afterwards.
    pub(crate) fn release_lock(self) {
        // SAFETY: the fault's lock is held until now (`from_raw`), and `self`, the
        // only way to the VMA that borrows it, goes here.
        unsafe { memkit_release_fault_lock(self.raw) };
    }
}

/// What a fault handler returns.
pub(crate) enum FaultOutcome {
    /// The handler mapped the page itself (`VM_FAULT_NOPAGE`).
    Mapped,
    /// `page_mkwrite` locked the page ([`Fault::lock_page`]): go on and make the PTE
    /// writable (`VM_FAULT_LOCKED`).
    Locked,
    /// The fault's lock was released: the fault is retried (`VM_FAULT_RETRY`).
    Retry,
    /// Out of memory (`VM_FAULT_OOM`).
    Oom,
    /// Anything else: `SIGBUS` (`VM_FAULT_SIGBUS`).
    SigBus,
}

impl FaultOutcome {
    /// The outcome of an error.
    pub(crate) fn of(e: kernel::error::Error) -> FaultOutcome {
        if e == kernel::error::code::ENOMEM {
            FaultOutcome::Oom
        } else {
            FaultOutcome::SigBus
        }
    }

    /// The `vm_fault_t` to return.
    pub(crate) fn to_raw(&self) -> bindings::vm_fault_t {
        match self {
            FaultOutcome::Mapped => bindings::vm_fault_reason_VM_FAULT_NOPAGE,
            FaultOutcome::Locked => bindings::vm_fault_reason_VM_FAULT_LOCKED,
            FaultOutcome::Retry => bindings::vm_fault_reason_VM_FAULT_RETRY,
            FaultOutcome::Oom => bindings::vm_fault_reason_VM_FAULT_OOM,
            FaultOutcome::SigBus => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
        }
    }
}
