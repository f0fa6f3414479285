// SPDX-License-Identifier: GPL-2.0

//! Requests: a fetch in flight, its hrtimer (deadline or arrival) and its work item,
//! and what becomes of it when it completes.

use super::*;

/// `Req::state`: in flight.
pub(super) const PENDING: u32 = 0;
/// Arrived before its deadline (or had none).
pub(super) const ARRIVED: u32 = 1;
/// The deadline came first; the data is still in flight.
pub(super) const LATE: u32 = 2;
/// Arrived after its deadline.
pub(super) const LATE_ARRIVED: u32 = 3;

/// One fetch in flight.
#[pin_data]
pub(super) struct Req {
    #[pin]
    pub(super) timer: HrTimer<Req>,
    #[pin]
    pub(super) work: Work<Req>,
    pub(super) region: Arc<Region>,
    /// Region page.
    pub(super) idx: u64,
    /// The request's id (agent messages name it).
    pub(super) id: u64,
    /// The agent answered with an error: the faults waiting for it fail.
    pub(super) failed: AtomicBool,
    /// A prefetch (else a fault's synchronous fetch).
    pub(super) prefetch: bool,
    pub(super) issued_ns: u64,
    /// When the data is there (emulated backend; `u64::MAX` for the agent, whose
    /// reply is the arrival).
    pub(super) arrive_ns: u64,
    /// Absolute deadline, 0: none.
    pub(super) deadline_ns: u64,
    pub(super) state: AtomicU32,
    /// A fault waits for this page: keep it, and let the fault map it.
    pub(super) wanted: AtomicBool,
    /// The late counter was bumped.
    pub(super) counted_late: AtomicBool,
    /// Where to install a prefetch: the faulting process and the address.
    pub(super) mm: Option<ARef<Mm>>,
    pub(super) addr: usize,
}

impl Req {
    /// Starts the timer for the first of the deadline and the arrival (none for an
    /// agent's fetch without a deadline: its reply is the arrival); one already due
    /// fires at once.
    pub(super) fn arm(self: &Arc<Self>, now: u64) -> Option<ArcHrTimerHandle<Req>> {
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
pub(super) struct Pending {
    pub(super) awaited: Option<Arc<Req>>,
    /// (page, request id)
    pub(super) deferred: [(u64, u64); MAX_CANDIDATES],
    pub(super) n: usize,
}

impl Pending {
    pub(super) const fn new() -> Pending {
        Pending {
            awaited: None,
            deferred: [(0, 0); MAX_CANDIDATES],
            n: 0,
        }
    }

    /// The prefetches not armed yet, forgotten.
    pub(super) fn take_deferred(&mut self) -> &[(u64, u64)] {
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

impl Region {
    /// Starts a fetch of page `idx` into a new page (the caller made room).
    pub(super) fn issue(
        this: ArcBorrow<'_, Region>,
        inner: &mut Inner,
        idx: u64,
        prefetch: bool,
        mm: Option<ARef<Mm>>,
        addr: usize,
    ) -> Result<u64> {
        let i = usize::try_from(idx)?;
        let page = Page::alloc_page(GFP_KERNEL_ACCOUNT)?;
        let now = now_ns();
        let agent = this.cfg.backend == logic::Backend::Agent;
        let arrive_ns = if agent {
            u64::MAX
        } else {
            inner.link.issue(now)
        };
        let id = inner.next_id;
        if agent {
            inner.agent.push(
                AgentReq {
                    id,
                    kind: abi::RMEM_MSG_FETCH,
                    idx,
                    read: false,
                },
                GFP_KERNEL_ACCOUNT,
            )?;
        }
        inner.next_id += 1;
        let deadline_ns = if prefetch && this.cfg.deadline_ns != 0 {
            now.saturating_add(this.cfg.deadline_ns)
        } else {
            0
        };
        let mut fresh = match inner.free.pop() {
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
        let slot = inner.slots.get_mut(i).ok_or(EFAULT)?;
        *slot = Slot::Fetching { req, timer, page };
        inner.resident += 1;
        Ok(id)
    }

    /// Arms the timers of the emulated prefetches `reqs` (page, request id) that are
    /// still in flight without one.
    pub(super) fn arm(&self, inner: &mut Inner, reqs: &[(u64, u64)], now: u64) {
        for &(idx, id) in reqs {
            if let Some(Slot::Fetching { req, timer, .. }) = inner.slots.get_mut(idx as usize) {
                if timer.is_none() && req.id == id {
                    *timer = req.arm(now);
                }
            }
        }
    }

    /// A request's timer fired (work item, process context).
    pub(super) fn complete(&self, req: &Arc<Req>) {
        self.complete_in(req, None);
    }

    /// Completes `req`; a prefetch that arrived in time is installed in `here`, the
    /// faulting VMA whose mmap lock the caller holds, if given, else looked up with a
    /// trylock of its process's mmap lock.
    pub(super) fn complete_in(&self, req: &Arc<Req>, here: Option<&Vma<'_>>) {
        let req_state = req.state.load(Ordering::Acquire);
        if req_state == PENDING {
            return;
        }
        if (req_state == LATE || req_state == LATE_ARRIVED)
            && !req.counted_late.swap(true, Ordering::AcqRel)
        {
            bump(&self.stats, |c| &c.late, 1);
        }
        if req_state == LATE {
            // Nothing maps it from this prefetch; the data is still in flight.
            return;
        }
        let install = req_state == ARRIVED && req.prefetch && !req.wanted.load(Ordering::Acquire);
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
        let mut inner = self.inner.lock();
        let i = req.idx as usize;
        let ours = matches!(inner.slots.get(i), Some(Slot::Fetching { req: r, .. }) if Arc::ptr_eq(r, req));
        if !ours {
            return;
        }
        let Some(slot) = inner.slots.get_mut(i) else {
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
        if req_state == LATE_ARRIVED && !self.cfg.keep_late && !req.wanted.load(Ordering::Acquire) {
            inner.resident -= 1;
            bump(&self.stats, |c| &c.wasted, 1);
            drop(page);
            self.changed.notify_all();
            return;
        }
        if self.cfg.backend == logic::Backend::Emulated {
            match inner.store.get(i) {
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
                if vma.insert(req.addr, &page).is_ok() {
                    // SAFETY: as above.
                    let _ = unsafe { memkit_rmem_pte_young(vma.ptr(), req.addr, pg(&page), true) };
                    bump(&self.stats, |c| &c.installed, 1);
                }
            }
        } else if let Some(vref) = mmap.as_ref().and_then(|m| m.vma_lookup(req.addr)) {
            let vp = vref.as_ptr();
            // The mmap lock is held (trylock above) and `vref` is a VMA of that mm.
            let ours = fault::RMEM_VM_OPS.owns(vref, core::ptr::from_ref(self).cast());
            let mapped = ours && {
                let pgoff = crate::edge::vma_pgoff(vref);
                let off = ((req.addr - vref.start()) >> PAGE_SHIFT) as u64;
                pgoff.checked_add(off) == Some(self.base + req.idx)
            };
            // `vref` is a VMA of the region (`mapped`), so `VM_MIXEDMAP`.
            let inserted = || {
                vref.as_mixedmap_vma()
                    .is_some_and(|m| m.vm_insert_page(req.addr, &page).is_ok())
            };
            if mapped && inserted() {
                // Installed with the accessed bit clear, so that the first use
                // sets it: that is how a hit is told from a waste.
                // SAFETY: as above.
                let _ = unsafe { memkit_rmem_pte_young(vp, req.addr, pg(&page), true) };
                bump(&self.stats, |c| &c.installed, 1);
            }
        }
        let _ = inner.local.push(req.idx, GFP_KERNEL_ACCOUNT);
        if let Some(slot) = inner.slots.get_mut(i) {
            *slot = Slot::Local { page, flags };
        }
        self.changed.notify_all();
    }

    /// Drops a reference to a finished request; the last one (neither timer nor
    /// work item pending, no slot, no fault) goes back to the pool. The caller does
    /// not hold the region lock.
    pub(super) fn recycle(&self, req: Arc<Req>) {
        let Some(mut r) = Arc::into_unique_or_drop(req) else {
            return;
        };
        // Not kept alive by a pooled request.
        *r.as_mut().project().mm = None;
        let mut inner = self.inner.lock();
        if !inner.dead && inner.free.len() < REQ_POOL {
            // Within the reserved capacity: no allocation, cannot fail.
            let _ = inner.free.push(r, GFP_KERNEL_ACCOUNT);
        }
        // Otherwise dropped after the unlock (it holds a region reference).
    }
}
