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

use crate::pure::{
    abi,
    rmem::{self as logic, Config, Fault, Link, Planner, Probe, MAX_CANDIDATES},
};
use crate::{
    edge::{RegionId, PAGE_SHIFT},
    event::{Event, Sleep},
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
    mm::{virt::VmaNew, Mm, MmWithUser},
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

extern "C" {
    /// Sets the region `vm_operations_struct` on `vma` and `region` as its
    /// `vm_private_data`.
    ///
    /// # Safety
    ///
    /// `vma` is being set up by `mmap`; `region` stays valid as long as the VMA exists.
    fn memkit_rmem_vma_init(vma: *mut c_void, region: *const c_void);
    /// Whether `vma` maps `region`.
    ///
    /// # Safety
    ///
    /// `vma` is a valid VMA; the caller holds its mm's mmap lock.
    fn memkit_rmem_vma_is(vma: *const c_void, region: *const c_void) -> bool;
    /// The VMA's `vm_pgoff`.
    ///
    /// # Safety
    ///
    /// As for [`memkit_rmem_vma_is`].
    fn memkit_vma_pgoff(vma: *const c_void) -> u64;
    /// Present and accessed bits of the PTEs of `n` (1..=64) pages from `addr`.
    ///
    /// # Safety
    ///
    /// `vma` is a valid VMA whose mm's mmap lock the caller holds; the range lies in
    /// it; `present` and `young` are valid for writes.
    fn memkit_rmem_pte_scan(
        vma: *mut c_void,
        addr: usize,
        n: u32,
        present: *mut u64,
        young: *mut u64,
    ) -> c_int;
    /// 1 if the PTE at `addr` maps `page` and is accessed, 0 if it maps it and is not,
    /// `-ENOENT` if it does not map it; `clear` clears the accessed bit.
    ///
    /// # Safety
    ///
    /// As for [`memkit_rmem_pte_scan`], for one page; `page` is a valid page.
    fn memkit_rmem_pte_young(
        vma: *mut c_void,
        addr: usize,
        page: *mut c_void,
        clear: bool,
    ) -> c_int;
    /// `vm_insert_page`.
    ///
    /// # Safety
    ///
    /// `vma` is a valid `VM_MIXEDMAP` VMA whose mm's mmap lock the caller holds;
    /// `addr` lies in it; `page` is a valid page the caller holds a reference to.
    fn memkit_rmem_insert(vma: *mut c_void, addr: usize, page: *mut c_void) -> c_int;
    /// Zaps page offset `pgoff` in every mapping of `mapping`.
    ///
    /// # Safety
    ///
    /// `mapping` is a valid address space; called in process context.
    fn memkit_rmem_zap(mapping: *mut c_void, pgoff: u64);
    /// Copies page `src` to page `dst`.
    ///
    /// # Safety
    ///
    /// Both are valid pages the caller holds references to; nothing else writes `dst`.
    fn memkit_copy_highpage(dst: *mut c_void, src: *mut c_void);
    fn memkit_rmem_wq_create() -> *mut c_void;
    /// Drops the lock the fault `vmf` was called with.
    ///
    /// # Safety
    ///
    /// `vmf` is the current fault, whose lock is held; nothing of its VMA or mm is
    /// used afterwards.
    fn memkit_release_fault_lock(vmf: *mut c_void);
    /// Sleeps until `until_ns` (monotonic); `-EINTR` at once on a fatal signal.
    fn memkit_sleep_until_killable(until_ns: u64) -> c_int;
    /// # Safety
    ///
    /// `wq` came from [`memkit_rmem_wq_create`] and is not used afterwards.
    fn memkit_rmem_wq_destroy(wq: *mut c_void);
    /// The address space of `file`'s mappings.
    ///
    /// # Safety
    ///
    /// `file` is a valid file.
    fn memkit_file_mapping(file: *mut c_void) -> *mut c_void;
    /// Copies `page` to `dst`: `PAGE_SIZE` bytes.
    ///
    /// # Safety
    ///
    /// `page` is a valid page the caller holds a reference to; `dst` is valid for
    /// `PAGE_SIZE` bytes of writes.
    fn memkit_copy_page(dst: *mut u8, page: *mut c_void);
    /// Whether a read or write of `kiocb` must not block (`O_NONBLOCK`, `RWF_NOWAIT`).
    ///
    /// # Safety
    ///
    /// `kiocb` is the valid kiocb of the current call.
    fn memkit_kiocb_nowait(kiocb: *mut c_void) -> bool;
    /// Tests and clears `PG_dirty` of `page`.
    ///
    /// # Safety
    ///
    /// `page` is a valid page the caller holds a reference to.
    fn memkit_page_test_clear_dirty(page: *mut c_void) -> bool;
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
        WQ.store(wq, Ordering::Release);
        Ok(Registration {
            _stats: stats,
            _dir: dir,
        })
    }
}

/// The contents of `/sys/kernel/debug/memkit/rmem`: the module's counters, one
/// `name value` per line.
struct GlobalStats;

impl core::fmt::Debug for GlobalStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut s = abi::RmemStats::default();
        GLOBAL.snapshot(&mut s);
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        writeln!(f, "regions {}", r(&GLOBAL.regions))?;
        for (name, v) in [
            ("faults_sync", s.faults_sync),
            ("faults_local", s.faults_local),
            ("faults_wait", s.faults_wait),
            ("prefetches", s.prefetches),
            ("installed", s.installed),
            ("hits", s.hits),
            ("late", s.late),
            ("wasted", s.wasted),
            ("evictions", s.evictions),
            ("writebacks", s.writebacks),
            ("bytes_in", s.bytes_in),
            ("bytes_out", s.bytes_out),
        ] {
            writeln!(f, "{name} {v}")?;
        }
        write!(f, "lat_hist_us_log2")?;
        for n in s.lat_hist {
            write!(f, " {n}")?;
        }
        writeln!(f)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let wq = WQ.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !wq.is_null() {
            // SAFETY: `wq` came from `memkit_rmem_wq_create`; the device is gone, so
            // no file, timer or work item can queue to it any more.
            unsafe { memkit_rmem_wq_destroy(wq) };
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

/// Counters of one region, or of the module.
#[derive(Default)]
struct Counters {
    regions: AtomicU64,
    faults_sync: AtomicU64,
    faults_local: AtomicU64,
    faults_wait: AtomicU64,
    prefetches: AtomicU64,
    installed: AtomicU64,
    hits: AtomicU64,
    late: AtomicU64,
    wasted: AtomicU64,
    evictions: AtomicU64,
    writebacks: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    lat_hist: [AtomicU64; abi::RMEM_LAT_BUCKETS],
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            regions: AtomicU64::new(0),
            faults_sync: AtomicU64::new(0),
            faults_local: AtomicU64::new(0),
            faults_wait: AtomicU64::new(0),
            prefetches: AtomicU64::new(0),
            installed: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            late: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            writebacks: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            lat_hist: [const { AtomicU64::new(0) }; abi::RMEM_LAT_BUCKETS],
        }
    }

    fn snapshot(&self, out: &mut abi::RmemStats) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.faults_sync = r(&self.faults_sync);
        out.faults_local = r(&self.faults_local);
        out.faults_wait = r(&self.faults_wait);
        out.prefetches = r(&self.prefetches);
        out.installed = r(&self.installed);
        out.hits = r(&self.hits);
        out.late = r(&self.late);
        out.wasted = r(&self.wasted);
        out.evictions = r(&self.evictions);
        out.writebacks = r(&self.writebacks);
        out.bytes_in = r(&self.bytes_in);
        out.bytes_out = r(&self.bytes_out);
        for (o, c) in out.lat_hist.iter_mut().zip(self.lat_hist.iter()) {
            *o = r(c);
        }
    }
}

/// The module's totals, over every region, closed ones too.
static GLOBAL: Counters = Counters::new();

/// Adds `n` to a counter of `region` and to the module's.
fn bump(region: &Counters, field: fn(&Counters) -> &AtomicU64, n: u64) {
    field(region).fetch_add(n, Ordering::Relaxed);
    field(&GLOBAL).fetch_add(n, Ordering::Relaxed);
}

/// `Req::state`: in flight.
const PENDING: u32 = 0;
/// Arrived before its deadline (or had none).
const ARRIVED: u32 = 1;
/// The deadline came first; the data is still in flight.
const LATE: u32 = 2;
/// Arrived after its deadline.
const LATE_ARRIVED: u32 = 3;

/// One fetch in flight.
#[pin_data]
struct Req {
    #[pin]
    timer: HrTimer<Req>,
    #[pin]
    work: Work<Req>,
    region: Arc<Region>,
    /// Region page.
    idx: u64,
    /// The request's id (agent messages name it).
    id: u64,
    /// The agent answered with an error: the faults waiting for it fail.
    failed: AtomicBool,
    /// A prefetch (else a fault's synchronous fetch).
    prefetch: bool,
    issued_ns: u64,
    /// When the data is there (emulated backend; `u64::MAX` for the agent, whose
    /// reply is the arrival).
    arrive_ns: u64,
    /// Absolute deadline, 0: none.
    deadline_ns: u64,
    state: AtomicU32,
    /// A fault waits for this page: keep it, and let the fault map it.
    wanted: AtomicBool,
    /// The late counter was bumped.
    counted_late: AtomicBool,
    /// Where to install a prefetch: the faulting process and the address.
    mm: Option<ARef<Mm>>,
    addr: usize,
}

impl Req {
    /// Starts the timer for the first of the deadline and the arrival (none for an
    /// agent's fetch without a deadline: its reply is the arrival); one already due
    /// fires at once.
    fn arm(self: &Arc<Self>, now: u64) -> Option<ArcHrTimerHandle<Req>> {
        let fire = if self.deadline_ns != 0 && self.deadline_ns < self.arrive_ns {
            self.deadline_ns
        } else {
            self.arrive_ns
        };
        (fire != u64::MAX).then(|| {
            let delay = i64::try_from(fire.saturating_sub(now)).unwrap_or(i64::MAX);
            self.clone().start(Delta::from_nanos(delay))
        })
    }
}

/// What a fault settles when it ends, however it ends: the fetch it waits for
/// (recycled) and the emulated prefetches it issued and has not armed yet (armed).
struct Pending {
    awaited: Option<Arc<Req>>,
    /// (page, request id)
    deferred: [(u64, u64); MAX_CANDIDATES],
    n: usize,
}

impl Pending {
    const fn new() -> Pending {
        Pending {
            awaited: None,
            deferred: [(0, 0); MAX_CANDIDATES],
            n: 0,
        }
    }

    /// The prefetches not armed yet, forgotten.
    fn take_deferred(&mut self) -> &[(u64, u64)] {
        let n = core::mem::take(&mut self.n);
        self.deferred.get(..n).unwrap_or(&[])
    }
}

impl_has_hr_timer! {
    impl HasHrTimer<Self> for Req {
        mode: RelativeMode<Monotonic>, field: self.timer
    }
}

impl_has_work! {
    impl HasWork<Self> for Req { self.work }
}

impl HrTimerCallback for Req {
    type Pointer<'a> = Arc<Self>;

    fn run(this: ArcBorrow<'_, Self>, mut ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        // The emulated link fixed the arrival time at issue, so which came first is
        // decided by the two times, not by when this callback got to run.
        let deadline_first = this.deadline_ns != 0 && this.deadline_ns < this.arrive_ns;
        let now = now_ns();
        let restart = if deadline_first
            && this
                .state
                .compare_exchange(PENDING, LATE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && now < this.arrive_ns
            && this.arrive_ns != u64::MAX
        {
            // Late; the timer (which expired at the deadline) comes back at the
            // emulated arrival. (An agent's late reply arrives through `write`.)
            let gap = this.arrive_ns - this.deadline_ns;
            ctx.forward(
                HrTimerInstant::<Self>::now(),
                Delta::from_nanos(i64::try_from(gap).unwrap_or(i64::MAX)),
            );
            HrTimerRestart::Restart
        } else {
            if this.arrive_ns != u64::MAX {
                let _ = this.state.compare_exchange(
                    PENDING,
                    ARRIVED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                let _ = this.state.compare_exchange(
                    LATE,
                    LATE_ARRIVED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            HrTimerRestart::NoRestart
        };
        // Already queued: the work reads the newest state when it runs.
        let _ = queue().enqueue(Arc::<Req>::from(this));
        restart
    }
}

impl WorkItem for Req {
    type Pointer = Arc<Req>;

    fn run(this: Arc<Req>) {
        let region = this.region.clone();
        region.complete(&this);
        region.recycle(this);
    }
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

/// A page's bytes (the kernel's page size: `edge.rs` asserts they agree).
const PAGE_BYTES: usize = logic::PAGE_SIZE as usize;

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

/// `memkit_rmem_fault`'s answer: return `VM_FAULT_RETRY` (`MEMKIT_FAULT_RETRY` in
/// `helpers.h`).
const FAULT_RETRY: c_int = 1;
/// The fault may drop its lock and be retried (`FAULT_FLAG_ALLOW_RETRY`).
const FAULT_MAY_RETRY: u32 = 1 << 0;
/// ... but must not sleep (`FAULT_FLAG_RETRY_NOWAIT`): retry without dropping it.
const FAULT_NOWAIT: u32 = 1 << 1;
/// A user-mode fault that any signal may interrupt: the signal is delivered, then
/// the access faults again.
const FAULT_INTERRUPTIBLE: u32 = 1 << 2;
/// A retry of a fault that returned `VM_FAULT_RETRY` (already counted).
const FAULT_TRIED: u32 = 1 << 3;

/// How long a fault that keeps its lock waits between looks (jiffies' ms), and how
/// long one that dropped it waits before it retries: both only bound a lost
/// notification, every change notifies.
const HOLD_WAIT_MS: u32 = 10;
const RETRY_WAIT_MS: u32 = 100;

/// `ms` in jiffies, for [`Event::wait`].
fn jiffies(ms: u32) -> kernel::ffi::c_long {
    kernel::ffi::c_long::try_from(msecs_to_jiffies(ms)).unwrap_or(kernel::ffi::c_long::MAX)
}

/// What [`Region::fault_in`] leaves to its caller.
enum Step {
    /// The page is mapped.
    Mapped,
    /// Nothing to do before a change: wait for the event to move from `seen`. With
    /// `room`, the fault counted itself in `room_waiters` (the caller uncounts it).
    Wait { seen: u64, room: bool },
}

/// A fault's progress across its waits.
struct FaultProgress {
    /// Already counted in the statistics (a retried fault was counted the first
    /// time).
    counted: bool,
}

/// The faulting VMA, as the fault path sees it (mmap lock held).
struct Vma {
    ptr: *mut c_void,
    /// Region pages `[lo, hi)` are mapped at `start + (page - lo) * PAGE_SIZE`.
    start: usize,
    lo: u64,
    hi: u64,
}

impl Vma {
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
}

/// What an eviction did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Evicted {
    /// A page went: there is room.
    Freed,
    /// A dirty page is being written back by the agent: room once it answers.
    WritingBack,
    /// Nothing could be evicted.
    Nothing,
    /// The victim's write-back could not get memory (the emulated store's page is
    /// charged to the faulting task's memory cgroup): the victim stays local.
    NoMemory,
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
fn pg(page: &Page) -> *mut c_void {
    page.as_ptr().cast()
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

    /// The faulting VMA's geometry.
    ///
    /// # Safety
    ///
    /// `vma` is a valid VMA of this region whose mm's mmap lock the caller holds.
    unsafe fn vma(&self, vma: *mut c_void) -> Result<Vma> {
        // SAFETY: the caller holds the mmap lock of a valid VMA.
        let vref = unsafe { kernel::mm::virt::VmaRef::from_raw(vma.cast()) };
        // SAFETY: as above.
        let pgoff = unsafe { memkit_vma_pgoff(vma) };
        let pages = ((vref.end() - vref.start()) >> PAGE_SHIFT) as u64;
        let lo = pgoff.checked_sub(self.base).ok_or(EFAULT)?;
        let hi = lo.checked_add(pages).ok_or(EFAULT)?.min(self.cfg.pages);
        Ok(Vma {
            ptr: vma,
            start: vref.start(),
            lo,
            hi,
        })
    }

    /// Starts a fetch of page `idx` into a new page (the caller made room).
    fn issue(
        this: ArcBorrow<'_, Region>,
        g: &mut Inner,
        idx: u64,
        prefetch: bool,
        mm: Option<ARef<Mm>>,
        addr: usize,
    ) -> Result<u64> {
        let i = usize::try_from(idx)?;
        let page = Page::alloc_page(GFP_KERNEL_ACCOUNT)?;
        let now = now_ns();
        let agent = this.cfg.backend == logic::Backend::Agent;
        let arrive_ns = if agent { u64::MAX } else { g.link.issue(now) };
        let id = g.next_id;
        if agent {
            g.agent.push(
                AgentReq {
                    id,
                    kind: abi::RMEM_MSG_FETCH,
                    idx,
                    read: false,
                },
                GFP_KERNEL_ACCOUNT,
            )?;
        }
        g.next_id += 1;
        let deadline_ns = if prefetch && this.cfg.deadline_ns != 0 {
            now.saturating_add(this.cfg.deadline_ns)
        } else {
            0
        };
        let mut fresh = match g.free.pop() {
            Some(r) => r,
            None => UniqueArc::pin_init(
                pin_init!(Req {
                    timer <- HrTimer::new(),
                    work <- new_work!("memkit_rmem::Req::work"),
                    region: this.into(),
                    idx: 0,
                    id: 0,
                    failed: AtomicBool::new(false),
                    prefetch: false,
                    issued_ns: 0,
                    arrive_ns: 0,
                    deadline_ns: 0,
                    state: AtomicU32::new(PENDING),
                    wanted: AtomicBool::new(false),
                    counted_late: AtomicBool::new(false),
                    mm: None,
                    addr: 0,
                }),
                GFP_KERNEL_ACCOUNT,
            )?,
        };
        // Unique: neither its timer nor its work item is pending (they hold a
        // reference while they are), so every field may be set. A fault waits for
        // its own synchronous fetch.
        let r = fresh.as_mut().project();
        *r.idx = idx;
        *r.id = id;
        *r.failed.get_mut() = false;
        *r.prefetch = prefetch;
        *r.issued_ns = now;
        *r.arrive_ns = arrive_ns;
        *r.deadline_ns = deadline_ns;
        *r.state.get_mut() = PENDING;
        *r.wanted.get_mut() = !prefetch;
        *r.counted_late.get_mut() = false;
        *r.mm = mm;
        *r.addr = addr;
        let req = Arc::from(fresh);
        // The emulated backend's requests get no timer here: its synchronous fetch
        // completes in the fault itself, and so do the prefetches that arrive while
        // the fault waits; the fault arms the others (`Region::arm`).
        let timer = if agent { req.arm(now) } else { None };
        if agent {
            this.changed.notify_all();
        }
        let slot = g.slots.get_mut(i).ok_or(EFAULT)?;
        *slot = Slot::Fetching { req, timer, page };
        g.resident += 1;
        Ok(id)
    }

    /// Evicts one local page other than `keep` (clock over the referenced flags and
    /// the accessed bits of the faulting VMA's PTEs).
    fn evict_one(&self, g: &mut Inner, vma: &Vma, keep: u64) -> Evicted {
        let Inner {
            mapping,
            slots,
            local,
            hand,
            store,
            history,
            agent,
            next_id,
            hits_since,
            writing_back,
            ..
        } = g;
        let Some(mapping) = mapping.as_ref() else {
            // The file is gone: nothing is mapped any more.
            return Evicted::Nothing;
        };
        let n = local.len() as u64;
        let stats = &self.stats;
        let pick = logic::clock_pick(hand, n, |i| {
            let Some(&idx) = local.get(i as usize) else {
                return Probe::Skip;
            };
            if idx == keep {
                return Probe::Skip;
            }
            let Some(Slot::Local { page, flags }) = slots.get_mut(idx as usize) else {
                return Probe::Skip;
            };
            // One second chance for either kind of reference: the flag a fault
            // sets, or the accessed bit of the PTE in the faulting VMA (cleared).
            let flagged = *flags & REFERENCED != 0;
            *flags &= !REFERENCED;
            let young = vma.addr_of(idx).is_some_and(|addr| {
                // SAFETY: the fault holds the mmap lock of the valid VMA `vma.ptr`;
                // `addr` lies in it; the slot holds a reference to `page`.
                unsafe { memkit_rmem_pte_young(vma.ptr, addr, pg(page), true) == 1 }
            });
            if young && *flags & (PREFETCHED | USED) == PREFETCHED {
                *flags |= USED;
                bump(stats, |c| &c.hits, 1);
                // The policies learn from it too (the next fault's check skips a
                // page already found used).
                *hits_since = hits_since.saturating_add(1);
            }
            if flagged || young {
                Probe::Referenced
            } else {
                Probe::Victim
            }
        });
        // Two passes clear every reference, so the clock finds a victim unless
        // every page is in use by this fault or touched again meanwhile by other
        // threads: then the first evictable page goes.
        let pick = pick.or_else(|| {
            local
                .iter()
                .position(|&idx| {
                    idx != keep && matches!(slots.get(idx as usize), Some(Slot::Local { .. }))
                })
                .map(|p| p as u64)
        });
        let Some(pos) = pick else {
            return Evicted::Nothing;
        };
        let pos = pos as usize;
        let Some(idx) = local.get(pos).copied() else {
            return Evicted::Nothing;
        };
        // Swap-remove `pos`.
        if let Some(last) = local.pop() {
            if let Some(p) = local.get_mut(pos) {
                *p = last;
            }
        }
        let i = idx as usize;
        let Some(slot) = slots.get_mut(i) else {
            return Evicted::Nothing;
        };
        let Slot::Local { page, flags } = core::mem::replace(slot, Slot::Remote) else {
            return Evicted::Nothing;
        };
        // SAFETY: the mapping is valid while the region holds it (see `Mapping`);
        // process context.
        unsafe { memkit_rmem_zap(mapping.0.as_ptr(), self.base + idx) };
        // No PTE maps the page now: a dirty one moved its bit to PG_dirty.
        // SAFETY: the page is valid and ours.
        let dirty = unsafe { memkit_page_test_clear_dirty(pg(&page)) };
        let stored = if !dirty {
            Ok(false)
        } else if self.cfg.backend == logic::Backend::Agent {
            // The agent stores it; the page stays (and counts) until it answers.
            let msg = AgentReq {
                id: *next_id,
                kind: abi::RMEM_MSG_WRITEBACK,
                idx,
                read: false,
            };
            agent
                .push(msg, GFP_KERNEL_ACCOUNT)
                .map(|()| true)
                .map_err(Error::from)
        } else {
            store_page(store, i, &page).map(|()| false)
        };
        let writing = match stored {
            Ok(w) => w,
            Err(_) => {
                // Keep the page local rather than lose its data.
                *slot = Slot::Local { page, flags };
                let _ = local.push(idx, GFP_KERNEL_ACCOUNT);
                return Evicted::NoMemory;
            }
        };
        if dirty {
            bump(stats, |c| &c.writebacks, 1);
            bump(stats, |c| &c.bytes_out, logic::PAGE_SIZE);
        }
        if flags & (PREFETCHED | USED) == PREFETCHED {
            bump(stats, |c| &c.wasted, 1);
        }
        if let Some(h) = history.get_mut(i) {
            *h = logic::history_on_evict(*h, flags & (USED | REFERENCED) != 0);
        }
        bump(stats, |c| &c.evictions, 1);
        if writing {
            *slot = Slot::WritingBack { page, id: *next_id };
            *next_id += 1;
            *writing_back += 1;
            self.changed.notify_all();
            return Evicted::WritingBack;
        }
        g.resident -= 1;
        Evicted::Freed
    }

    /// Counts the prefetched pages of the last batch that were used (accessed bit of
    /// their PTE in the faulting VMA): the hits the adaptive policies grow on.
    fn count_batch_hits(&self, g: &mut Inner, vma: &Vma) {
        let (batch, n) = (g.batch, core::mem::take(&mut g.batch_len));
        for &idx in batch.iter().take(n) {
            let Some(Slot::Local { page, flags }) = g.slots.get_mut(idx as usize) else {
                continue;
            };
            if *flags & (PREFETCHED | USED) != PREFETCHED {
                continue;
            }
            let Some(addr) = vma.addr_of(idx) else {
                continue;
            };
            // SAFETY: mmap lock held, `addr` in the VMA, the slot holds the page.
            if unsafe { memkit_rmem_pte_young(vma.ptr, addr, pg(page), false) } == 1 {
                *flags |= USED;
                bump(&self.stats, |c| &c.hits, 1);
                g.hits_since = g.hits_since.saturating_add(1);
            }
        }
    }

    /// Reads the PTEs of the candidates: bit `i` set if candidate `i`'s PTE is present.
    fn present(vma: &Vma, cands: &[u64]) -> u64 {
        let (Some(&min), Some(&max)) = (cands.iter().min(), cands.iter().max()) else {
            return 0;
        };
        let mut mask = 0u64;
        let scan = |first: u64, n: u32| -> (u64, u64) {
            let (mut p, mut y) = (0u64, 0u64);
            let Ok(addr) = usize::try_from(first << PAGE_SHIFT) else {
                return (u64::MAX, 0);
            };
            // SAFETY: the fault holds the mmap lock of the valid VMA; the planner
            // keeps candidates inside it.
            let err = unsafe { memkit_rmem_pte_scan(vma.ptr, addr, n, &mut p, &mut y) };
            if err != 0 {
                // Unreadable: treat as present, so nothing is fetched for it.
                return (u64::MAX, 0);
            }
            (p, y)
        };
        if max - min < 64 {
            let (p, _) = scan(min, (max - min + 1) as u32);
            for (i, &c) in cands.iter().enumerate() {
                if p & (1u64 << (c - min)) != 0 {
                    mask |= 1 << i;
                }
            }
        } else {
            for (i, &c) in cands.iter().enumerate() {
                if scan(c, 1).0 & 1 != 0 {
                    mask |= 1 << i;
                }
            }
        }
        mask
    }

    /// The prefetch of a synchronous fault at `addr`: plan, read the PTEs, fetch
    /// the pages whose PTE is not present.
    fn prefetch(
        this: ArcBorrow<'_, Region>,
        g: &mut Inner,
        vma: &Vma,
        addr: usize,
        idx: u64,
        pending: &mut Pending,
    ) {
        let cfg = &this.cfg;
        if cfg.policy == logic::Policy::None || cfg.degree == 0 {
            return;
        }
        let (Some(lo), Some(last)) = (vma.vpn_of(vma.lo), vma.vpn_of(vma.hi.saturating_sub(1)))
        else {
            return;
        };
        this.count_batch_hits(g, vma);
        let f = Fault {
            vpn: (addr >> PAGE_SHIFT) as u64,
            lo,
            hi: last + 1,
            hits: core::mem::take(&mut g.hits_since),
        };
        let mut out = [0u64; MAX_CANDIDATES];
        let n = {
            let Inner {
                planner, history, ..
            } = &mut *g;
            let hist = |vpn: u64| {
                vma.idx_of(vpn)
                    .and_then(|i| history.get(i as usize))
                    .copied()
                    .unwrap_or(0)
            };
            planner.plan(cfg.policy, cfg.degree, &f, hist, &mut out)
        };
        let cands = out.get(..n).unwrap_or(&[]);
        let present = Self::present(vma, cands);
        // SAFETY: the fault holds the mmap lock of the valid VMA.
        let vref = unsafe { kernel::mm::virt::VmaRef::from_raw(vma.ptr.cast()) };
        let mm: ARef<Mm> = ARef::from(&**vref.mm());
        for (i, &vpn) in cands.iter().enumerate() {
            if present & (1 << i) != 0 {
                continue;
            }
            let Some(c) = vma.idx_of(vpn) else {
                continue;
            };
            let Ok(caddr) = usize::try_from(vpn << PAGE_SHIFT) else {
                continue;
            };
            match g.slots.get_mut(c as usize) {
                Some(Slot::Remote) => {
                    if g.resident >= cfg.budget && this.evict_one(g, vma, idx) != Evicted::Freed {
                        break;
                    }
                    let Ok(id) = Self::issue(this, g, c, true, Some(mm.clone()), caddr) else {
                        break;
                    };
                    bump(&this.stats, |c| &c.prefetches, 1);
                    if this.cfg.backend == logic::Backend::Emulated {
                        match pending.deferred.get_mut(pending.n) {
                            Some(d) => {
                                *d = (c, id);
                                pending.n += 1;
                            }
                            None => this.arm(g, &[(c, id)], now_ns()),
                        }
                    }
                    if let Some(b) = g.batch.get_mut(g.batch_len) {
                        *b = c;
                        g.batch_len += 1;
                    }
                }
                Some(Slot::Local { page, .. }) => {
                    // Local but not mapped here (a late copy, or mapped elsewhere):
                    // map it now.
                    // SAFETY: mmap lock held, `caddr` in the VMA, the slot holds
                    // the page.
                    let _ = unsafe { memkit_rmem_insert(vma.ptr, caddr, pg(page)) };
                }
                _ => {}
            }
        }
    }

    /// The fault of region page `pgoff - base` at `addr` of `vma`; `how` says how
    /// it may wait (`FAULT_*`). Returns whether it ends in `VM_FAULT_RETRY`, in which
    /// case the fault lock was released here (unless `FAULT_NOWAIT`).
    ///
    /// Every sleep ends on a fatal signal. A fault that must wait for the backend
    /// (an agent's reply, a write-back, a queue of emulated requests longer than one
    /// request's configured latency) drops its locks and waits without them, then
    /// returns `VM_FAULT_RETRY`, as userfaultfd does: a user-mode fault waits
    /// interruptibly, so any signal is delivered and its handler runs before the
    /// access faults again. A fault that may not drop the mmap lock (`get_user_pages`
    /// without `FOLL_UNLOCKABLE`) waits killably with it. The emulated backend's
    /// fault sleeps with the mmap lock held for at most one request's configured
    /// latency (`lat_base_ns + lat_page_ns`), killably.
    ///
    /// # Safety
    ///
    /// `vma` is a valid VMA of this region and `vmf` its fault, whose lock the
    /// caller holds.
    unsafe fn fault(
        this: ArcBorrow<'_, Region>,
        vmf: *mut c_void,
        vma: *mut c_void,
        addr: usize,
        pgoff: u64,
        how: u32,
    ) -> Result<bool> {
        let idx = pgoff
            .checked_sub(this.base)
            .filter(|&i| i < this.cfg.pages)
            .ok_or(EFAULT)?;
        // Owned: the region must outlive the fault lock, which the VMA's file (and
        // so `this`) may not once the lock is dropped.
        let region: Arc<Region> = this.into();
        // SAFETY: the caller's guarantee.
        let vma = unsafe { region.vma(vma) }?;
        let mut pending = Pending::new();
        let mut progress = FaultProgress {
            counted: how & FAULT_TRIED != 0,
        };
        let may_retry = how & FAULT_MAY_RETRY != 0;
        let ret = loop {
            let step = Self::fault_in(
                region.as_arc_borrow(),
                &vma,
                idx,
                addr,
                &mut pending,
                &mut progress,
            );
            match step {
                Ok(Step::Wait { seen, room }) if !may_retry => {
                    // Keeps the mmap lock: wait killably, then look again.
                    let waited = region
                        .changed
                        .wait(seen, Sleep::Killable, jiffies(HOLD_WAIT_MS));
                    if room {
                        region.room_waiters.fetch_sub(1, Ordering::AcqRel);
                    }
                    if waited.is_err() {
                        break Err(EINTR);
                    }
                }
                Ok(Step::Wait { seen, room }) => break Ok(Some((seen, room))),
                Ok(Step::Mapped) => break Ok(None),
                Err(e) => break Err(e),
            }
        };
        if pending.n != 0 {
            // Left by a wait, an error or a dying task: their timers end them.
            let mut g = region.inner.lock();
            region.arm(&mut g, pending.take_deferred(), now_ns());
        }
        if let Some(req) = pending.awaited.take() {
            region.recycle(req);
        }
        let Some((seen, room)) = ret? else {
            return Ok(false);
        };
        if how & FAULT_NOWAIT == 0 {
            // The VMA (`vma`, `this`) may go as soon as the lock does: only the owned
            // region is used from here on.
            // SAFETY: the fault's lock is held (the caller's guarantee) and nothing
            // of its VMA or mm is used after this.
            unsafe { memkit_release_fault_lock(vmf) };
            let sleep = if how & FAULT_INTERRUPTIBLE != 0 {
                Sleep::Interruptible
            } else {
                Sleep::Killable
            };
            // A signal ends the wait; the retried fault (or the signal's delivery)
            // follows.
            let _ = region.changed.wait(seen, sleep, jiffies(RETRY_WAIT_MS));
        }
        if room {
            region.room_waiters.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(true)
    }

    /// Arms the timers of the emulated prefetches `reqs` (page, request id) that are
    /// still in flight without one.
    fn arm(&self, g: &mut Inner, reqs: &[(u64, u64)], now: u64) {
        for &(idx, id) in reqs {
            if let Some(Slot::Fetching { req, timer, .. }) = g.slots.get_mut(idx as usize) {
                if timer.is_none() && req.id == id {
                    *timer = req.arm(now);
                }
            }
        }
    }

    /// The body of `fault`, with the fault's lock held: maps the page, or says what
    /// to wait for. `pending` is settled by the caller.
    fn fault_in(
        this: ArcBorrow<'_, Region>,
        vma: &Vma,
        idx: u64,
        addr: usize,
        pending: &mut Pending,
        progress: &mut FaultProgress,
    ) -> Result<Step> {
        let i = usize::try_from(idx)?;
        let mut g = this.inner.lock();
        loop {
            if g.dead {
                return Err(EFAULT);
            }
            if pending
                .awaited
                .as_ref()
                .is_some_and(|r| r.failed.load(Ordering::Acquire))
            {
                return Err(EIO);
            }
            let slot = g.slots.get_mut(i).ok_or(EFAULT)?;
            if let Slot::WritingBack { .. } = slot {
                // Evicted but still here: take it back (the agent's write-back
                // goes on and is ignored when it answers).
                if let Slot::WritingBack { page, .. } = core::mem::replace(slot, Slot::Remote) {
                    *slot = Slot::Local {
                        page,
                        flags: REFERENCED,
                    };
                    g.writing_back -= 1;
                    g.local.push(idx, GFP_KERNEL_ACCOUNT)?;
                }
                continue;
            }
            match g.slots.get_mut(i).ok_or(EFAULT)? {
                slot @ Slot::Failed => {
                    *slot = Slot::Remote;
                    return Err(EIO);
                }
                Slot::Local { page, flags } => {
                    // SAFETY: mmap lock held, `addr` in the VMA, the slot holds
                    // the page.
                    let err = unsafe { memkit_rmem_insert(vma.ptr, addr, pg(page)) };
                    if err != 0 && err != -(bindings::EBUSY as c_int) {
                        return Err(Error::from_errno(err));
                    }
                    *flags |= REFERENCED;
                    if *flags & (PREFETCHED | USED) == PREFETCHED {
                        *flags |= USED;
                        bump(&this.stats, |c| &c.hits, 1);
                        g.hits_since = g.hits_since.saturating_add(1);
                    }
                    if !progress.counted {
                        bump(&this.stats, |c| &c.faults_local, 1);
                    }
                    return Ok(Step::Mapped);
                }
                Slot::WritingBack { .. } => {}
                Slot::Fetching { req, .. } => {
                    req.wanted.store(true, Ordering::Release);
                    pending.awaited = Some(req.clone());
                    if !progress.counted {
                        bump(&this.stats, |c| &c.faults_wait, 1);
                        progress.counted = true;
                    }
                }
                Slot::Remote => {
                    if g.resident >= this.cfg.budget {
                        // Write-backs in flight will free as many pages: evict only
                        // for a fault none of them is owed to.
                        let waiters = this.room_waiters.load(Ordering::Acquire);
                        let evicted = if g.writing_back > waiters {
                            Evicted::WritingBack
                        } else {
                            this.evict_one(&mut g, vma, idx)
                        };
                        match evicted {
                            Evicted::Freed => continue,
                            // The fault fails with VM_FAULT_OOM: the memory
                            // cgroup's (or the system's) OOM handling decides.
                            Evicted::NoMemory => return Err(ENOMEM),
                            // Room once the agent stores the victim.
                            Evicted::WritingBack => {
                                this.room_waiters.fetch_add(1, Ordering::AcqRel);
                                return Ok(Step::Wait {
                                    seen: this.changed.seq(),
                                    room: true,
                                });
                            }
                            // Every local page is in flight: wait for a change.
                            Evicted::Nothing => {
                                return Ok(Step::Wait {
                                    seen: this.changed.seq(),
                                    room: false,
                                })
                            }
                        }
                    }
                    Self::issue(this, &mut g, idx, false, None, addr)?;
                    if let Some(Slot::Fetching { req, .. }) = g.slots.get(i) {
                        pending.awaited = Some(req.clone());
                    }
                    if !progress.counted {
                        bump(&this.stats, |c| &c.faults_sync, 1);
                        progress.counted = true;
                    }
                    if let Some(h) = g.history.get_mut(i) {
                        *h = logic::history_on_fault(*h);
                    }
                    Self::prefetch(this, &mut g, vma, addr, idx, pending);
                    if this.cfg.backend == logic::Backend::Emulated {
                        g = match this.complete_sync(g, vma, pending)? {
                            Ok(g) => g,
                            Err(seen) => return Ok(Step::Wait { seen, room: false }),
                        };
                        continue;
                    }
                }
            }
            return Ok(Step::Wait {
                seen: this.changed.seq(),
                room: false,
            });
        }
    }

    /// The emulated backend's synchronous fetch (`pending.awaited`), completed in
    /// the fault that issued it (no timer, no work item): sleep until the arrival
    /// time the link model gave it, complete it, install the fault's prefetches that
    /// have arrived meanwhile under the fault's mmap lock (`vma`), and arm the
    /// timers of the others.
    ///
    /// The fault sleeps with the mmap lock held at most one request's configured
    /// latency (`lat_base_ns + lat_page_ns`): a fetch that queues for longer behind
    /// others gets its timer, and the fault waits for it like any other
    /// (`Err(seen)`: the event's sequence to wait on). `EINTR` on a fatal signal
    /// (the fetch's timer completes it).
    fn complete_sync<'a>(
        &'a self,
        mut g: MutexGuard<'a, Inner>,
        vma: &Vma,
        pending: &mut Pending,
    ) -> Result<core::result::Result<MutexGuard<'a, Inner>, u64>> {
        if let Some(req) = pending.awaited.as_ref() {
            let now = now_ns();
            let hold = self.cfg.lat_base_ns.saturating_add(self.cfg.lat_page_ns);
            if req.arrive_ns.saturating_sub(now) > hold {
                self.arm(&mut g, &[(req.idx, req.id)], now);
                return Ok(Err(self.changed.seq()));
            }
            drop(g);
            // SAFETY: no precondition; process context, no spinlock held.
            if unsafe { memkit_sleep_until_killable(req.arrive_ns) } != 0 {
                let mut g = self.inner.lock();
                self.arm(&mut g, &[(req.idx, req.id)], now_ns());
                return Err(EINTR);
            }
            let _ =
                req.state
                    .compare_exchange(PENDING, ARRIVED, Ordering::AcqRel, Ordering::Acquire);
            self.complete(req);
        } else {
            drop(g);
        }
        let now = now_ns();
        let mut ready: [Option<Arc<Req>>; MAX_CANDIDATES] = [const { None }; MAX_CANDIDATES];
        let mut g = self.inner.lock();
        let deferred = pending.take_deferred();
        for (&(b, id), out) in deferred.iter().zip(ready.iter_mut()) {
            let Some(Slot::Fetching { req: r, timer, .. }) = g.slots.get(b as usize) else {
                continue;
            };
            // The deadline decides by the two times, as the timer would.
            let in_time = r.deadline_ns == 0 || r.arrive_ns <= r.deadline_ns;
            if timer.is_none() && r.id == id && r.arrive_ns <= now && in_time {
                // No timer: nothing else moves its state.
                r.state.store(ARRIVED, Ordering::Release);
                *out = Some(r.clone());
            } else {
                self.arm(&mut g, &[(b, id)], now);
            }
        }
        drop(g);
        for r in ready.into_iter().flatten() {
            self.complete_in(&r, Some(vma));
            self.recycle(r);
        }
        Ok(Ok(self.inner.lock()))
    }

    /// A request's timer fired (work item, process context).
    fn complete(&self, req: &Arc<Req>) {
        self.complete_in(req, None);
    }

    /// Completes `req`; a prefetch that arrived in time is installed in `here`, the
    /// faulting VMA whose mmap lock the caller holds, if given, else looked up with a
    /// trylock of its process's mmap lock.
    fn complete_in(&self, req: &Arc<Req>, here: Option<&Vma>) {
        let st = req.state.load(Ordering::Acquire);
        if st == PENDING {
            return;
        }
        if (st == LATE || st == LATE_ARRIVED) && !req.counted_late.swap(true, Ordering::AcqRel) {
            bump(&self.stats, |c| &c.late, 1);
        }
        if st == LATE {
            // Nothing maps it from this prefetch; the data is still in flight.
            return;
        }
        let install = st == ARRIVED && req.prefetch && !req.wanted.load(Ordering::Acquire);
        // If the process exits meanwhile, this is its last user reference: dropped
        // with `mmput_async`, so that `exit_mmap` never runs in the agent's `write`
        // or in this workqueue (it would take this region's lock through the
        // mapping's teardown, and can take long), as binder does.
        let mmu = if install && here.is_none() {
            req.mm
                .as_ref()
                .and_then(|mm| mm.mmget_not_zero())
                .map(MmWithUser::into_mmput_async)
        } else {
            None
        };
        // Never block on the mmap lock here: a fault holding it may be waiting for
        // this very work (see the module documentation).
        let mmap = mmu.as_ref().and_then(|m| m.mmap_read_trylock());
        let mut g = self.inner.lock();
        let i = req.idx as usize;
        let ours =
            matches!(g.slots.get(i), Some(Slot::Fetching { req: r, .. }) if Arc::ptr_eq(r, req));
        if !ours {
            return;
        }
        let Some(slot) = g.slots.get_mut(i) else {
            return;
        };
        let Slot::Fetching { page, .. } = core::mem::replace(slot, Slot::Remote) else {
            return;
        };
        bump(&self.stats, |c| &c.bytes_in, logic::PAGE_SIZE);
        let lat = now_ns().saturating_sub(req.issued_ns);
        if let Some(b) = self.stats.lat_hist.get(logic::lat_bucket(lat)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(b) = GLOBAL.lat_hist.get(logic::lat_bucket(lat)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        if st == LATE_ARRIVED && !self.cfg.keep_late && !req.wanted.load(Ordering::Acquire) {
            g.resident -= 1;
            bump(&self.stats, |c| &c.wasted, 1);
            drop(page);
            self.changed.notify_all();
            return;
        }
        if self.cfg.backend == logic::Backend::Emulated {
            match g.store.get(i) {
                // SAFETY: both pages are valid and ours; nothing else writes `page`.
                Some(Some(src)) => unsafe { memkit_copy_highpage(pg(&page), pg(src)) },
                _ => {
                    // SAFETY: the page is ours and nothing else accesses it.
                    let _ = unsafe { page.fill_zero_raw(0, logic::PAGE_SIZE as usize) };
                }
            }
        }
        // (The agent's reply already filled the page.)
        let flags = if req.prefetch { PREFETCHED } else { 0 };
        if let (true, Some(vma)) = (install, here) {
            if vma.addr_of(req.idx) == Some(req.addr) {
                // SAFETY: the caller holds the mmap lock of `vma`, which maps the
                // page at `req.addr`; the page is ours.
                if unsafe { memkit_rmem_insert(vma.ptr, req.addr, pg(&page)) } == 0 {
                    // SAFETY: as above.
                    let _ = unsafe { memkit_rmem_pte_young(vma.ptr, req.addr, pg(&page), true) };
                    bump(&self.stats, |c| &c.installed, 1);
                }
            }
        } else if let Some(vref) = mmap.as_ref().and_then(|m| m.vma_lookup(req.addr)) {
            let vp: *mut c_void = vref.as_ptr().cast();
            // SAFETY: the mmap lock is held (trylock above) and `vp` is a VMA of
            // that mm.
            let mapped = unsafe { memkit_rmem_vma_is(vp, core::ptr::from_ref(self).cast()) } && {
                // SAFETY: as above.
                let pgoff = unsafe { memkit_vma_pgoff(vp) };
                let off = ((req.addr - vref.start()) >> PAGE_SHIFT) as u64;
                pgoff.checked_add(off) == Some(self.base + req.idx)
            };
            // SAFETY: as above; `req.addr` lies in the VMA; the page is ours.
            if mapped && unsafe { memkit_rmem_insert(vp, req.addr, pg(&page)) } == 0 {
                // Installed with the accessed bit clear, so that the first use
                // sets it: that is how a hit is told from a waste.
                // SAFETY: as above.
                let _ = unsafe { memkit_rmem_pte_young(vp, req.addr, pg(&page), true) };
                bump(&self.stats, |c| &c.installed, 1);
            }
        }
        let _ = g.local.push(req.idx, GFP_KERNEL_ACCOUNT);
        if let Some(slot) = g.slots.get_mut(i) {
            *slot = Slot::Local { page, flags };
        }
        self.changed.notify_all();
    }

    /// Drops a reference to a finished request; the last one (neither timer nor
    /// work item pending, no slot, no fault) goes back to the pool. The caller does
    /// not hold the region lock.
    fn recycle(&self, req: Arc<Req>) {
        let Some(mut r) = Arc::into_unique_or_drop(req) else {
            return;
        };
        // Not kept alive by a pooled request.
        *r.as_mut().project().mm = None;
        let mut g = self.inner.lock();
        if !g.dead && g.free.len() < REQ_POOL {
            // Within the reserved capacity: no allocation, cannot fail.
            let _ = g.free.push(r, GFP_KERNEL_ACCOUNT);
        }
        // Otherwise dropped after the unlock (it holds a region reference).
    }

    /// The file is going: cancel every request (their timers first) and refuse new
    /// ones. Queued work items find their slot gone and do nothing.
    fn shut_down(&self) {
        let mut g = self.inner.lock();
        g.dead = true;
        // The file goes with its inode's address space (see `Mapping`).
        g.mapping = None;
        g.agent.clear();
        // The pooled requests hold region references: let them go (after the unlock).
        let pool = core::mem::take(&mut g.free);
        for slot in g.slots.iter_mut() {
            if matches!(slot, Slot::Fetching { .. }) {
                // Drops the timer handle (cancels the timer, waiting for a
                // running callback, which takes no lock) and the request.
                *slot = Slot::Remote;
            }
        }
        self.changed.notify_all();
        drop(g);
        drop(pool);
    }

    /// `read` of an agent-backed region's file: the oldest requests not read yet, as
    /// many whole messages as fit, at most [`AGENT_READ_MAX`] bytes (a write-back
    /// carries its page).
    ///
    /// The messages are claimed (marked read) and copied into a kernel buffer under
    /// the region lock, then copied out with no lock held: a reader whose buffer
    /// faults slowly holds up nobody. If the copy-out fails, they are unclaimed and
    /// go to the next read.
    fn agent_read(&self, iov: &mut IovIterDest<'_>, nowait: bool) -> Result<usize> {
        const HDR: usize = <abi::RmemMsg as abi::UapiStruct>::SIZE;
        const PAGE: usize = logic::PAGE_SIZE as usize;
        let room = iov.len().min(AGENT_READ_MAX);
        if room < HDR {
            return Err(EINVAL);
        }
        let mut buf = KVVec::<u8>::new();
        let mut ids = KVVec::<u64>::new();
        {
            let mut g = self.inner.lock();
            while !g.agent.iter().any(|r| !r.read) {
                if g.dead {
                    return Ok(0);
                }
                if nowait {
                    return Err(EAGAIN);
                }
                let seen = self.changed.seq();
                drop(g);
                if self
                    .changed
                    .wait(
                        seen,
                        Sleep::Interruptible,
                        kernel::task::MAX_SCHEDULE_TIMEOUT,
                    )
                    .is_err()
                {
                    return Err(ERESTARTSYS);
                }
                g = self.inner.lock();
            }
            // Copied without changing anything (an allocation failure leaves the
            // queue as it was), then claimed.
            let mut dropped = KVVec::<u64>::new();
            for r in g.agent.iter().filter(|r| !r.read) {
                let wb = r.kind == abi::RMEM_MSG_WRITEBACK;
                let need = HDR + if wb { PAGE } else { 0 };
                if buf.len() + need > room {
                    break;
                }
                let page = match g.slots.get(r.idx as usize) {
                    Some(Slot::WritingBack { page, .. }) | Some(Slot::Local { page, .. }) => {
                        Some(page)
                    }
                    _ => None,
                };
                if wb && page.is_none() {
                    // The page went meanwhile (it is fetched again from the
                    // agent, which has a newer write-back of it or none needed).
                    dropped.push(r.id, GFP_KERNEL_ACCOUNT)?;
                    continue;
                }
                let msg = abi::RmemMsg {
                    id: r.id,
                    kind: r.kind,
                    page: r.idx,
                    ..Default::default()
                };
                let mut hdr = [0u8; HDR];
                abi::UapiStruct::encode(&msg, &mut hdr);
                buf.extend_from_slice(&hdr, GFP_KERNEL_ACCOUNT)?;
                if let (true, Some(page)) = (wb, page) {
                    let at = buf.len();
                    buf.resize(at + PAGE, 0, GFP_KERNEL_ACCOUNT)?;
                    if let Some(dst) = buf.get_mut(at..) {
                        // SAFETY: the slot holds the page; `dst` has `PAGE` bytes.
                        unsafe { memkit_copy_page(dst.as_mut_ptr(), pg(page)) };
                    }
                }
                ids.push(r.id, GFP_KERNEL_ACCOUNT)?;
            }
            // Claimed: no other reader takes them. (Both lists are in id order, as
            // the queue is.)
            g.agent.retain(|r| dropped.binary_search(&r.id).is_err());
            for id in ids.iter() {
                if let Ok(pos) = g.agent.binary_search_by_key(id, |r| r.id) {
                    if let Some(r) = g.agent.get_mut(pos) {
                        r.read = true;
                    }
                }
            }
        }
        if buf.is_empty() {
            // The oldest request (a write-back and its page) does not fit.
            return Err(EINVAL);
        }
        if iov.copy_to_iter(&buf) != buf.len() {
            // Unclaimed: the requests go to the next read.
            let mut g = self.inner.lock();
            for id in ids.iter() {
                if let Ok(pos) = g.agent.binary_search_by_key(id, |r| r.id) {
                    if let Some(r) = g.agent.get_mut(pos) {
                        r.read = false;
                    }
                }
            }
            return Err(EFAULT);
        }
        Ok(buf.len())
    }

    /// `write` of an agent-backed region's file: one reply.
    fn agent_write(&self, iov: &mut IovIterSource<'_>) -> Result<usize> {
        const HDR: usize = <abi::RmemMsg as abi::UapiStruct>::SIZE;
        const PAGE: usize = logic::PAGE_SIZE as usize;
        let len = iov.len();
        let mut hdr = [0u8; HDR];
        if len < HDR || iov.copy_from_iter(&mut hdr) != HDR {
            return Err(EINVAL);
        }
        let m: abi::RmemMsg = abi::UapiStruct::decode(&hdr);
        abi::UapiStruct::check(&m).map_err(|e| Error::from_errno(-e.errno()))?;
        let with_data = m.kind == abi::RMEM_MSG_FETCH && m.status == 0;
        if len != HDR + if with_data { PAGE } else { 0 } {
            return Err(EINVAL);
        }
        // The data goes into a new page first: no user copy under the region lock,
        // and a malformed reply touches no page of the region.
        let data = if with_data {
            let mut tmp = KVec::<u8>::from_elem(0, PAGE, GFP_KERNEL_ACCOUNT)?;
            if iov.copy_from_iter(&mut tmp) != PAGE {
                return Err(EFAULT);
            }
            let page = Page::alloc_page(GFP_KERNEL_ACCOUNT)?;
            // SAFETY: `tmp` has `PAGE` bytes; the page is new and ours.
            unsafe { page.write_raw(tmp.as_ptr(), 0, PAGE)? };
            Some(page)
        } else {
            None
        };
        let req = {
            let mut g = self.inner.lock();
            // The queue is in id order (ids are handed out increasing).
            let pos = g
                .agent
                .binary_search_by_key(&m.id, |r| r.id)
                .map_err(|_| ENOENT)?;
            let r = *g.agent.get(pos).ok_or(ENOENT)?;
            if r.kind != m.kind || r.idx != m.page || !r.read {
                return Err(EINVAL);
            }
            g.agent.remove(pos)?;
            let i = r.idx as usize;
            if r.kind == abi::RMEM_MSG_WRITEBACK {
                let slot = g.slots.get_mut(i).ok_or(EINVAL)?;
                if matches!(slot, Slot::WritingBack { id, .. } if *id == r.id) {
                    if let Slot::WritingBack { page, .. } = core::mem::replace(slot, Slot::Remote) {
                        if m.status == 0 {
                            g.resident -= 1;
                        } else {
                            // Not stored: the page stays local.
                            *slot = Slot::Local { page, flags: 0 };
                            g.local.push(r.idx, GFP_KERNEL_ACCOUNT)?;
                        }
                        g.writing_back -= 1;
                    }
                }
                self.changed.notify_all();
                return Ok(len);
            }
            let slot = g.slots.get_mut(i).ok_or(EINVAL)?;
            let Slot::Fetching { req, page, .. } = slot else {
                return Err(ENOENT);
            };
            if req.id != r.id {
                return Err(ENOENT);
            }
            let req = req.clone();
            match data {
                Some(d) => *page = d,
                None => {
                    // The agent could not fetch it: the faults waiting fail (those
                    // that dropped their locks to wait find `Failed` when retried).
                    req.failed.store(true, Ordering::Release);
                    *slot = if req.wanted.load(Ordering::Acquire) {
                        Slot::Failed
                    } else {
                        Slot::Remote
                    };
                    g.resident -= 1;
                    self.changed.notify_all();
                    return Ok(len);
                }
            }
            if req
                .state
                .compare_exchange(PENDING, ARRIVED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                let _ = req.state.compare_exchange(
                    LATE,
                    LATE_ARRIVED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            req
        };
        let dropped = req.state.load(Ordering::Acquire) == LATE_ARRIVED
            && !self.cfg.keep_late
            && !req.wanted.load(Ordering::Acquire);
        self.complete(&req);
        self.recycle(req);
        if dropped {
            // Past its deadline, and nobody keeps it: the data was dropped.
            return Err(ETIME);
        }
        Ok(len)
    }

    fn stats(&self, out: &mut abi::RmemStats) {
        self.stats.snapshot(out);
        out.bytes = self.cfg.pages * logic::PAGE_SIZE;
        out.budget = self.cfg.budget;
        out.local = self.inner.lock().local.len() as u64;
    }
}

/// Called by the C fault handler (`rmem_edge.c`): maps the page of `region` at page
/// offset `pgoff` at `addr`. Returns 0, [`FAULT_RETRY`] (the fault lock was released
/// unless `how` has `FAULT_NOWAIT`: the fault ends in `VM_FAULT_RETRY`) or a negative
/// errno.
///
/// # Safety
///
/// `region` is the `vm_private_data` [`RmemDevice::mmap`] set, so a live region (the
/// VMA holds the file, which holds the region); `vma` is the faulting VMA and `vmf`
/// its fault, whose lock (the mmap lock) the caller holds.
#[no_mangle]
unsafe extern "C" fn memkit_rmem_fault(
    region: *const c_void,
    vmf: *mut c_void,
    vma: *mut c_void,
    addr: usize,
    pgoff: u64,
    how: u32,
) -> c_int {
    // SAFETY: `region` came from `Arc::as_ptr` of a region the file keeps alive
    // while the fault lock is held; `Region::fault` takes its own reference before
    // it drops that lock.
    let this = unsafe { ArcBorrow::from_raw(region.cast::<Region>()) };
    // SAFETY: the caller's guarantee.
    match unsafe { Region::fault(this, vmf, vma, addr, pgoff, how) } {
        Ok(false) => 0,
        Ok(true) => FAULT_RETRY,
        Err(e) => e.to_errno(),
    }
}

/// The state of one open file of `/dev/memkit-rmem`: its region, once configured.
#[pin_data(PinnedDrop)]
pub(crate) struct RmemDevice {
    #[pin]
    region: Mutex<Option<Arc<Region>>>,
}

#[pinned_drop]
impl PinnedDrop for RmemDevice {
    fn drop(self: Pin<&mut Self>) {
        if let Some(r) = self.region.lock().take() {
            r.shut_down();
        }
    }
}

impl RmemDevice {
    fn configure(&self, file: &File, arg: usize) -> Result<isize> {
        let mut req = uapi::read::<abi::RmemConfig>(arg)?;
        let cfg = logic::check_config(&req).map_err(|e| Error::from_errno(-e))?;
        if self.region.lock().is_some() {
            return Err(EEXIST);
        }
        // SAFETY: `file` is a valid file.
        let mapping = unsafe { memkit_file_mapping(file.as_ptr().cast()) };
        let mapping = Mapping(NonNull::new(mapping).ok_or(EINVAL)?);
        let region = Region::new(cfg, mapping)?;
        req.mmap_offset = region.base << PAGE_SHIFT;
        // Written back before the region is kept (a bad pointer leaves no region).
        uapi::write(arg, req.size, &req)?;
        let mut guard = self.region.lock();
        if guard.is_some() {
            return Err(EEXIST);
        }
        *guard = Some(region);
        Ok(0)
    }

    /// The file's region, if it is agent-backed (`read` and `write` serve only those).
    fn agent_region(&self) -> Result<Arc<Region>> {
        let region = self.region.lock().clone().ok_or(EINVAL)?;
        if region.cfg.backend != logic::Backend::Agent {
            return Err(EINVAL);
        }
        Ok(region)
    }

    fn stats(&self, arg: usize) -> Result<isize> {
        let req = uapi::read::<abi::RmemStats>(arg)?;
        let mut out = abi::RmemStats {
            size: req.size,
            flags: req.flags,
            ..Default::default()
        };
        if req.flags & abi::RMEM_STATS_GLOBAL != 0 {
            // The module's totals count other users' regions.
            if !crate::edge::capable_sys_admin() {
                return Err(EPERM);
            }
            GLOBAL.snapshot(&mut out);
            out.bytes = GLOBAL.regions.load(Ordering::Relaxed);
        } else {
            let region = self.region.lock().clone().ok_or(EINVAL)?;
            region.stats(&mut out);
        }
        uapi::write(arg, req.size, &out)?;
        Ok(0)
    }
}

#[vtable]
impl MiscDevice for RmemDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::try_pin_init(
            try_pin_init!(RmemDevice {
                region <- new_mutex!(None),
            }),
            GFP_KERNEL_ACCOUNT,
        )
    }

    fn mmap(me: Pin<&RmemDevice>, _file: &File, vma: &VmaNew) -> Result {
        let guard = me.region.lock();
        let r = guard.as_ref().ok_or(EINVAL)?;
        crate::edge::map_region_window(vma, r.base, r.cfg.pages)?;
        // A core dump would read (and so fetch) every page of the region.
        vma.set_dontdump();
        // SAFETY: `vma` is being set up by mmap; the region lives as long as the
        // file, which every VMA of it holds.
        unsafe { memkit_rmem_vma_init(vma.as_ptr().cast(), Arc::as_ptr(r).cast()) };
        Ok(())
    }

    fn read_iter(kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let region = kiocb.file().agent_region()?;
        // SAFETY: the kiocb of this call.
        let nowait = unsafe { memkit_kiocb_nowait(kiocb.as_raw().cast()) };
        region.agent_read(iov, nowait)
    }

    fn write_iter(kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        kiocb.file().agent_region()?.agent_write(iov)
    }

    fn ioctl(me: Pin<&RmemDevice>, file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match abi::Command::decode(cmd) {
            Some(abi::Command::Version) => crate::uapi::version(
                arg,
                abi::DEV_RMEM,
                abi::FEAT_RMEM_PREFETCH | abi::FEAT_FDINFO,
            ),
            Some(abi::Command::RmemConfigure) => me.configure(file, arg),
            Some(abi::Command::RmemStats) => me.stats(arg),
            _ => Err(ENOTTY),
        }
    }

    /// `/proc/PID/fdinfo/FD`: the file's region (`abi::fdinfo`, what `memkit list`
    /// reads).
    fn show_fdinfo(me: Pin<&RmemDevice>, m: &SeqFile, _file: &File) {
        use abi::fdinfo as key;
        seq_print!(m, "{}:\trmem\n", key::DEVICE);
        let Some(r) = me.region.lock().clone() else {
            seq_print!(m, "{}:\tnone\n", key::REGION);
            return;
        };
        let mut s = abi::RmemStats::default();
        r.stats(&mut s);
        seq_print!(
            m,
            "{}:\t{}\n",
            key::REGION,
            r.base >> RegionId::WINDOW_SHIFT
        );
        seq_print!(m, "{}:\t{:#x}\n", key::MMAP_OFFSET, r.base << PAGE_SHIFT);
        seq_print!(m, "{}:\t{}\n", key::BYTES, s.bytes);
        seq_print!(m, "{}:\t{}\n", key::BACKEND, r.cfg.backend.name());
        seq_print!(m, "{}:\t{}\n", key::POLICY, r.cfg.policy.name());
        seq_print!(m, "{}:\t{}\n", key::BUDGET, s.budget);
        seq_print!(m, "{}:\t{}\n", key::LOCAL, s.local);
        seq_print!(m, "{}:\t{}\n", key::FAULTS_SYNC, s.faults_sync);
        seq_print!(m, "{}:\t{}\n", key::PREFETCHES, s.prefetches);
    }
}
