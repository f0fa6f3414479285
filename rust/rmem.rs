// SPDX-License-Identifier: GPL-2.0

//! `/dev/memkit-rmem`: remote-memory regions with page-table-walk prefetch.
//!
//! Each open file may configure one region (`MEMKIT_IOC_RMEM_CONFIGURE`); userspace
//! maps it `MAP_SHARED` at the offset the configure returns. The region's contents
//! live in a backend (the *remote* memory); at most `budget` pages are local at a
//! time. A fault on a page that is not local:
//!
//! 1. makes room (clock eviction: a dirty victim is written back, its PTEs in every
//!    mapping zapped with `unmap_mapping_range`),
//! 2. issues a synchronous fetch,
//! 3. reads the PTEs the policy names — for `ptline`, the faulting PTE's 64-byte
//!    cache line of 8 PTEs — and issues an asynchronous fetch for each page whose
//!    PTE is not present, each with an hrtimer deadline,
//! 4. sleeps until its own page is local, and maps it.
//!
//! Every sleep of a fault ends on a fatal signal. A fault that waits for the backend
//! (an agent's reply, a write-back, emulated requests queued for longer than one
//! request's configured latency) drops its locks, waits without them (interruptibly
//! for a user-mode access, whose signal handlers then run) and returns
//! `VM_FAULT_RETRY`, as userfaultfd does; only a fault that may not drop the mmap
//! lock waits with it, killably. See [`Region::fault`].
//!
//! A prefetch that arrives before its deadline is installed in the faulting
//! process's page table: by the fault itself if it arrived while the fault waited
//! for its own page (emulated backend), else by a work item (mmap lock taken with a
//! trylock, VMA looked up and checked again, region lock, `vm_insert_page`). One
//! whose deadline comes first is *late*: nothing maps it from that prefetch; its data
//! is kept as a local copy (`KEEP_LATE`) or dropped when it arrives, and the next
//! access faults and finds or fetches it.
//!
//! Requests (`Req`, pooled per region) carry one hrtimer each. It fires at the
//! deadline or at the arrival, whichever is first (and again at the arrival if the
//! deadline came first); the callback only moves the request's state with a
//! compare-and-swap and queues the request's work item, which does everything else
//! in process context. The emulated link fixes each arrival time at issue, so its
//! fault completes its synchronous fetch and the prefetches that arrived in time
//! itself, and arms the timers of the others only when it is done (`Pending`).
//!
//! Lock order: `mmap_lock` → region mutex → `i_mmap_rwsem` / PTE locks. The work
//! item never blocks on `mmap_lock` (a fault holding it may be waiting for that very
//! work), hence the trylock. The pure parts — configuration checks, policies, the
//! link model, the clock — are `pure::rmem`.
//!
//! This file holds the region (its state, creation and shut-down), the module-wide
//! workqueue and the C edge's declarations; the rest is split by concern:
//! [`device`] (the file, ioctls, mmap, fdinfo), [`fault`] (the fault path),
//! [`prefetch`], [`request`] (requests, their timers and completion), [`evict`],
//! [`agent`] (the agent's `read` and `write`) and [`stats`].

use crate::pure::{
    abi,
    rmem::{self as logic, Config, Fault, Link, Planner, Probe, MAX_CANDIDATES},
};
use crate::{
    edge::{RegionId, PAGE_SHIFT},
    event::{Event, Sleep},
    mm::{self, FaultOutcome, VmOps},
    uapi,
};
use core::{
    ffi::{c_int, c_void},
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering},
};
use kernel::{
    bindings, debugfs,
    fs::{File, Kiocb},
    impl_has_hr_timer, impl_has_work,
    iov::{IovIterDest, IovIterSource},
    miscdevice::{MiscDevice, MiscDeviceRegistration},
    mm::{
        virt::{VmaMixedMap, VmaNew, VmaRef},
        Mm, MmWithUser,
    },
    new_mutex, new_work,
    page::Page,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{aref::ARef, Arc, ArcBorrow, Mutex, MutexGuard, UniqueArc},
    time::{
        hrtimer::{
            ArcHrTimerHandle, HrTimer, HrTimerCallback, HrTimerCallbackContext, HrTimerInstant,
            HrTimerPointer, HrTimerRestart, RelativeMode,
        },
        msecs_to_jiffies, Delta, Monotonic,
    },
    workqueue::{Queue, Work, WorkItem},
};

mod agent;
mod device;
mod evict;
mod fault;
mod prefetch;
mod request;
mod stats;

pub(crate) use device::RmemDevice;
use {
    evict::Evicted,
    request::{Pending, Req, ARRIVED, LATE, LATE_ARRIVED, PENDING},
    stats::{bump, Counters, GlobalStats, GLOBAL},
};

// The C edge (`rmem_edge.c`), each function C for the reason it gives. The kernel
// types behind these pointers hold structs with no fields (config-dependent), which
// the FFI lint cannot see into; the pointers are only passed through.
#[allow(improper_ctypes)]
extern "C" {
    /// Present and accessed bits of the PTEs of `n` (1..=64) pages from `addr`
    /// (`apply_to_page_range` with a callback that reads PTEs: `pte_present` and
    /// `pte_young` are inline).
    ///
    /// # Safety
    ///
    /// `vma` is a valid VMA whose mm's mmap lock the caller holds; the range lies in
    /// it; `present` and `young` are valid for writes.
    fn memkit_rmem_pte_scan(
        vma: *mut bindings::vm_area_struct,
        addr: usize,
        n: u32,
        present: *mut u64,
        young: *mut u64,
    ) -> c_int;
    /// 1 if the PTE at `addr` maps `page` and is accessed, 0 if it maps it and is not,
    /// `-ENOENT` if it does not map it; `clear` clears the accessed bit (atomically:
    /// `ptep_test_and_clear_young` is not exported).
    ///
    /// # Safety
    ///
    /// As for [`memkit_rmem_pte_scan`], for one page; `page` is a valid page.
    fn memkit_rmem_pte_young(
        vma: *mut bindings::vm_area_struct,
        addr: usize,
        page: *mut bindings::page,
        clear: bool,
    ) -> c_int;
    /// Copies page `src` to page `dst` (`copy_highpage` is inline).
    ///
    /// # Safety
    ///
    /// Both are valid pages the caller holds references to; nothing else writes `dst`.
    fn memkit_copy_highpage(dst: *mut bindings::page, src: *mut bindings::page);
    /// The module's workqueue, unbound and with a rescuer (`alloc_workqueue` is a
    /// macro); NULL if out of memory.
    fn memkit_rmem_wq_create() -> *mut bindings::workqueue_struct;
    /// Sleeps until `until_ns` (monotonic); `-EINTR` at once on a fatal signal (the
    /// killable hrtimer sleep is built from inline and macro parts).
    fn memkit_sleep_until_killable(until_ns: u64) -> c_int;
    /// Whether a read or write of `kiocb` must not block (`O_NONBLOCK`, `RWF_NOWAIT`:
    /// `IOCB_NOWAIT` is a macro of a cast the bindings do not carry).
    ///
    /// # Safety
    ///
    /// `kiocb` is the valid kiocb of the current call.
    fn memkit_kiocb_nowait(kiocb: *mut bindings::kiocb) -> bool;
}

/// The module's workqueue for request completions (drained when the module goes).
static WQ: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// The module-wide part of remote memory: the workqueue, and the debugfs file
/// `memkit/rmem` with the module's counters. Created before the device is
/// registered, destroyed (the workqueue after draining) once it is gone.
pub(crate) struct Registration {
    _stats: Pin<KBox<debugfs::File<GlobalStats>>>,
    _dir: debugfs::Dir,
}

impl Registration {
    pub(crate) fn new() -> Result<Registration> {
        let dir = debugfs::Dir::new(c"memkit");
        let stats = KBox::pin_init(dir.read_only_file(c"rmem", GlobalStats), GFP_KERNEL)?;
        // SAFETY: no precondition.
        let wq = unsafe { memkit_rmem_wq_create() };
        if wq.is_null() {
            return Err(ENOMEM);
        }
        WQ.store(wq.cast(), Ordering::Release);
        Ok(Registration {
            _stats: stats,
            _dir: dir,
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let wq = WQ.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !wq.is_null() {
            // SAFETY: `wq` came from `memkit_rmem_wq_create`; the device is gone, so
            // no file, timer or work item can queue to it any more.
            unsafe { bindings::destroy_workqueue(wq.cast()) };
        }
    }
}

/// The workqueue, valid from before the device exists to after it is gone.
fn queue() -> &'static Queue {
    // SAFETY: `WQ` is set before the device is registered and cleared only after it
    // is deregistered and every file, hence every region and request, is gone.
    unsafe { Queue::from_raw(WQ.load(Ordering::Acquire).cast()) }
}

/// Monotonic time in ns.
fn now_ns() -> u64 {
    // SAFETY: no precondition; callable from any context.
    let t = unsafe { bindings::ktime_get() };
    u64::try_from(t).unwrap_or(0)
}

/// `Slot::Local` flags: a prefetch brought the page.
const PREFETCHED: u8 = 1 << 0;
/// A prefetched page was found used (counted as a hit).
const USED: u8 = 1 << 1;
/// Mapped by a fault since the clock last passed.
const REFERENCED: u8 = 1 << 2;

/// The state of one region page.
enum Slot {
    /// Only in the backend.
    Remote,
    /// A fetch in flight into `page`.
    Fetching {
        req: Arc<Req>,
        /// Cancels the request's timer when dropped. None: an agent's fetch
        /// without a deadline, an emulated synchronous fetch (its fault completes
        /// it), or an emulated prefetch not armed yet (see `Pending`).
        timer: Option<ArcHrTimerHandle<Req>>,
        page: Page,
    },
    /// Evicted dirty, being written back by the agent (write-back `id`); a fault
    /// takes it back.
    WritingBack { page: Page, id: u64 },
    /// Local (and, if the last fetch wrote it back, also in the backend).
    Local { page: Page, flags: u8 },
    /// The agent failed a fetch a fault was waiting for: the next fault of the page
    /// (that fault, retried) fails with `SIGBUS`, and the page is remote again.
    Failed,
}

/// The address space a region's mappings live in.
///
/// Kept in the region's [`Inner`] from configure until the file is released
/// ([`Region::shut_down`] takes it): work items and faults still holding the region
/// after that find none. While it is there the file is open, and the file holds its
/// inode and so the address space.
struct Mapping(NonNull<c_void>);

// SAFETY: the address space belongs to the inode of the region's file, which stays
// open as long as the region holds the `Mapping` (see above); the kernel functions
// it is passed to lock, from any thread.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`.
unsafe impl Sync for Mapping {}

/// A region's mutable state.
struct Inner {
    /// Where the region's mappings live, until the file is released.
    mapping: Option<Mapping>,
    slots: VVec<Slot>,
    /// The emulated backend's store (a page never written back reads as zeros).
    store: VVec<Option<Page>>,
    /// Per page: fault counts and accessed bits, decaying (`pure::rmem`).
    history: VVec<u8>,
    /// Pages local, being fetched (a fetch reserves its page) or being written back.
    resident: u64,
    /// Pages being written back by the agent (`Slot::WritingBack`).
    writing_back: u64,
    /// Local pages, for the clock.
    local: VVec<u64>,
    hand: u64,
    link: Link,
    planner: Planner,
    /// Prefetched pages found used since the last sync fault.
    hits_since: u32,
    /// The pages the last sync fault prefetched (`batch_len` of them).
    batch: [u64; MAX_CANDIDATES],
    batch_len: usize,
    /// The region's file is gone: no new request.
    dead: bool,
    /// Agent backend: requests not answered yet, oldest first.
    agent: KVec<AgentReq>,
    /// The next request id.
    next_id: u64,
    /// Finished requests kept for reuse (at most `REQ_POOL`; capacity reserved):
    /// a request costs no allocation in the fault path once the pool is warm.
    free: KVec<Pin<UniqueArc<Req>>>,
}

/// Finished requests a region keeps for reuse: a fault's fetch and its prefetches
/// (`MAX_CANDIDATES`) several times over.
const REQ_POOL: usize = 4 * (MAX_CANDIDATES + 1);

/// Most bytes one `read` of an agent returns: 64 write-backs with their pages (or
/// many more fetch requests). Bounds the kernel buffer whatever the caller's `iov`.
const AGENT_READ_MAX: usize = 64 * (<abi::RmemMsg as abi::UapiStruct>::SIZE + PAGE_BYTES);

/// A page's bytes: the kernel's page size (`edge.rs` asserts the pure logic's agrees).
const PAGE_BYTES: usize = kernel::page::PAGE_SIZE;

/// A request of the agent backend.
#[derive(Clone, Copy)]
struct AgentReq {
    id: u64,
    kind: u32,
    idx: u64,
    /// The agent has read it.
    read: bool,
}

/// A remote-memory region.
#[pin_data]
struct Region {
    cfg: Config,
    /// Page offset of page 0 in the file's address space (the id's window).
    base: u64,
    _id: RegionId,
    #[pin]
    inner: Mutex<Inner>,
    /// Notified when a page becomes local, a fetch or write-back ends, an agent
    /// request is queued or the region shuts down.
    #[pin]
    changed: Event,
    /// Faults waiting for room while write-backs are outstanding: a fault evicts
    /// only if more faults wait than write-backs are in flight, so a slow agent's
    /// queue holds one write-back per waiting fault, not the whole local set.
    room_waiters: AtomicU64,
    stats: Counters,
}

const _: () = assert!(abi::RMEM_MAX_BYTES / logic::PAGE_SIZE <= 1 << RegionId::WINDOW_SHIFT);

/// The faulting VMA, as the fault path sees it: borrowed from the fault (or from a
/// lookup under the mmap lock), so it cannot outlive the lock.
struct Vma<'a> {
    vma: &'a VmaMixedMap,
    /// Region pages `[lo, hi)` are mapped at `start + (page - lo) * PAGE_SIZE`.
    start: usize,
    lo: u64,
    hi: u64,
}

impl Vma<'_> {
    /// The VMA for the C edge's page-table reads.
    fn ptr(&self) -> *mut bindings::vm_area_struct {
        self.vma.as_ptr()
    }

    fn addr_of(&self, idx: u64) -> Option<usize> {
        if idx < self.lo || idx >= self.hi {
            return None;
        }
        let off = usize::try_from((idx - self.lo) << PAGE_SHIFT).ok()?;
        self.start.checked_add(off)
    }

    fn vpn_of(&self, idx: u64) -> Option<u64> {
        self.addr_of(idx).map(|a| (a >> PAGE_SHIFT) as u64)
    }

    fn idx_of(&self, vpn: u64) -> Option<u64> {
        let first = (self.start >> PAGE_SHIFT) as u64;
        let idx = vpn.checked_sub(first)?.checked_add(self.lo)?;
        (idx < self.hi).then_some(idx)
    }

    /// Maps `page` at `addr` (`vm_insert_page`, which takes its own reference):
    /// `EBUSY` if a PTE is there already.
    fn insert(&self, addr: usize, page: &Page) -> Result {
        self.vma.vm_insert_page(addr, page)
    }
}

/// Copies `page` into the emulated store's page `i` (allocated at the first
/// write-back).
fn store_page(store: &mut VVec<Option<Page>>, i: usize, page: &Page) -> Result {
    let dst = store.get_mut(i).ok_or(EFAULT)?;
    if dst.is_none() {
        *dst = Some(Page::alloc_page(GFP_KERNEL_ACCOUNT)?);
    }
    if let Some(d) = dst {
        // SAFETY: both pages are valid and ours; nothing else writes the store page
        // (region lock held).
        unsafe { memkit_copy_highpage(pg(d), pg(page)) };
    }
    Ok(())
}

/// A page's address as a C pointer.
fn pg(page: &Page) -> *mut bindings::page {
    page.as_ptr()
}

impl Region {
    fn new(cfg: Config, mapping: Mapping) -> Result<Arc<Region>> {
        let id = RegionId::alloc()?;
        let n = usize::try_from(cfg.pages)?;
        let mut slots = VVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        let mut store = VVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..n {
            slots.push(Slot::Remote, GFP_KERNEL_ACCOUNT)?;
            store.push(None, GFP_KERNEL_ACCOUNT)?;
        }
        let inner = Inner {
            mapping: Some(mapping),
            slots,
            store,
            history: VVec::from_elem(0, n, GFP_KERNEL_ACCOUNT)?,
            resident: 0,
            writing_back: 0,
            local: VVec::with_capacity(usize::try_from(cfg.budget)?, GFP_KERNEL_ACCOUNT)?,
            hand: 0,
            link: Link::new(cfg.lat_base_ns, cfg.lat_page_ns, cfg.max_inflight),
            planner: Planner::new(),
            hits_since: 0,
            batch: [0; MAX_CANDIDATES],
            batch_len: 0,
            dead: false,
            agent: KVec::new(),
            next_id: 1,
            free: KVec::with_capacity(REQ_POOL, GFP_KERNEL_ACCOUNT)?,
        };
        let region = Arc::pin_init(
            try_pin_init!(Region {
                cfg,
                base: id.base(),
                _id: id,
                inner <- new_mutex!(inner),
                changed <- Event::new(),
                room_waiters: AtomicU64::new(0),
                stats: Counters::new(),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        bump(&region.stats, |c| &c.regions, 1);
        Ok(region)
    }

    /// The faulting VMA's geometry: the region pages it maps. `EFAULT` if it maps
    /// none, or is not `VM_MIXEDMAP` (every VMA of a region is: `map_region_window`).
    fn vma<'a>(&self, vma: &'a VmaRef) -> Result<Vma<'a>> {
        let vma = vma.as_mixedmap_vma().ok_or(EFAULT)?;
        let pgoff = crate::edge::vma_pgoff(vma);
        let pages = ((vma.end() - vma.start()) >> PAGE_SHIFT) as u64;
        let lo = pgoff.checked_sub(self.base).ok_or(EFAULT)?;
        let hi = lo.checked_add(pages).ok_or(EFAULT)?.min(self.cfg.pages);
        Ok(Vma {
            vma,
            start: vma.start(),
            lo,
            hi,
        })
    }

    /// The file is going: cancel every request (their timers first) and refuse new
    /// ones. Queued work items find their slot gone and do nothing.
    fn shut_down(&self) {
        let mut inner = self.inner.lock();
        inner.dead = true;
        // The file goes with its inode's address space (see `Mapping`).
        inner.mapping = None;
        inner.agent.clear();
        // The pooled requests hold region references: let them go (after the unlock).
        let pool = core::mem::take(&mut inner.free);
        for slot in inner.slots.iter_mut() {
            if matches!(slot, Slot::Fetching { .. }) {
                // Drops the timer handle (cancels the timer, waiting for a
                // running callback, which takes no lock) and the request.
                *slot = Slot::Remote;
            }
        }
        self.changed.notify_all();
        drop(inner);
        drop(pool);
    }
}
