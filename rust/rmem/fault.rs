// SPDX-License-Identifier: GPL-2.0

//! The fault path: a fault on a page that is not local, from the handler of the
//! region's VMAs ([`RMEM_VM_OPS`]) to the page mapped, or a wait and
//! `VM_FAULT_RETRY`.

use super::*;

/// How long a fault that keeps its lock waits between looks (jiffies' ms), and how
/// long one that dropped it waits before it retries: both only bound a lost
/// notification, every change notifies.
pub(super) const HOLD_WAIT_MS: u32 = 10;
pub(super) const RETRY_WAIT_MS: u32 = 100;

/// `ms` in jiffies, for [`Event::wait`].
pub(super) fn jiffies(ms: u32) -> kernel::ffi::c_long {
    kernel::ffi::c_long::try_from(msecs_to_jiffies(ms)).unwrap_or(kernel::ffi::c_long::MAX)
}

/// What [`Region::fault_in`] leaves to its caller.
pub(super) enum Step {
    /// The page is mapped.
    Mapped,
    /// Nothing to do before a change: wait for the event to move from `seen`. With
    /// `room`, the fault counted itself in `room_waiters` (the caller uncounts it).
    Wait { seen: u64, room: bool },
}

/// A fault's progress across its waits.
pub(super) struct FaultProgress {
    /// Already counted in the statistics (a retried fault was counted the first
    /// time).
    counted: bool,
}

impl Region {
    /// The fault `fault` of a VMA of this region; its flags say how it may wait.
    /// Returns whether it ends in `VM_FAULT_RETRY`, in which case the fault lock was
    /// released here (unless the fault may not sleep: `FAULT_FLAG_RETRY_NOWAIT`).
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
    pub(super) fn fault(this: ArcBorrow<'_, Region>, fault: mm::Fault<'_>) -> Result<bool> {
        let addr = fault.address();
        let idx = fault
            .pgoff()
            .checked_sub(this.base)
            .filter(|&i| i < this.cfg.pages)
            .ok_or(EFAULT)?;
        // Owned: the region must outlive the fault lock, which the VMA's file (and
        // so `this`) may not once the lock is dropped.
        let region: Arc<Region> = this.into();
        let vma = region.vma(fault.vma())?;
        let mut pending = Pending::new();
        let mut progress = FaultProgress {
            counted: fault.tried(),
        };
        let may_retry = fault.may_retry();
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
            let mut inner = region.inner.lock();
            region.arm(&mut inner, pending.take_deferred(), now_ns());
        }
        if let Some(req) = pending.awaited.take() {
            region.recycle(req);
        }
        let Some((seen, room)) = ret? else {
            return Ok(false);
        };
        if !fault.retry_nowait() {
            let interruptible = fault.interruptible();
            // The VMA (`vma`, `this`) may go as soon as the lock does: only the owned
            // region is used from here on.
            fault.release_lock();
            let sleep = if interruptible {
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

    /// The body of `fault`, with the fault's lock held: maps the page, or says what
    /// to wait for. `pending` is settled by the caller.
    pub(super) fn fault_in(
        this: ArcBorrow<'_, Region>,
        vma: &Vma<'_>,
        idx: u64,
        addr: usize,
        pending: &mut Pending,
        progress: &mut FaultProgress,
    ) -> Result<Step> {
        let i = usize::try_from(idx)?;
        let mut inner = this.inner.lock();
        loop {
            if inner.dead {
                return Err(EFAULT);
            }
            if pending
                .awaited
                .as_ref()
                .is_some_and(|r| r.failed.load(Ordering::Acquire))
            {
                return Err(EIO);
            }
            let slot = inner.slots.get_mut(i).ok_or(EFAULT)?;
            if let Slot::WritingBack { .. } = slot {
                // Evicted but still here: take it back (the agent's write-back
                // goes on and is ignored when it answers).
                if let Slot::WritingBack { page, .. } = core::mem::replace(slot, Slot::Remote) {
                    *slot = Slot::Local {
                        page,
                        flags: REFERENCED,
                    };
                    inner.writing_back -= 1;
                    inner.local.push(idx, GFP_KERNEL_ACCOUNT)?;
                }
                continue;
            }
            match inner.slots.get_mut(i).ok_or(EFAULT)? {
                slot @ Slot::Failed => {
                    *slot = Slot::Remote;
                    return Err(EIO);
                }
                Slot::Local { page, flags } => {
                    match vma.insert(addr, page) {
                        // EBUSY: mapped already (another thread's fault).
                        Err(e) if e != EBUSY => return Err(e),
                        _ => {}
                    }
                    *flags |= REFERENCED;
                    if *flags & (PREFETCHED | USED) == PREFETCHED {
                        *flags |= USED;
                        bump(&this.stats, |c| &c.hits, 1);
                        inner.hits_since = inner.hits_since.saturating_add(1);
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
                    if inner.resident >= this.cfg.budget {
                        // Write-backs in flight will free as many pages: evict only
                        // for a fault none of them is owed to.
                        let waiters = this.room_waiters.load(Ordering::Acquire);
                        let evicted = if inner.writing_back > waiters {
                            Evicted::WritingBack
                        } else {
                            this.evict_one(&mut inner, vma, idx)
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
                    Self::issue(this, &mut inner, idx, false, None, addr)?;
                    if let Some(Slot::Fetching { req, .. }) = inner.slots.get(i) {
                        pending.awaited = Some(req.clone());
                    }
                    if !progress.counted {
                        bump(&this.stats, |c| &c.faults_sync, 1);
                        progress.counted = true;
                    }
                    if let Some(h) = inner.history.get_mut(i) {
                        *h = logic::history_on_fault(*h);
                    }
                    Self::prefetch(this, &mut inner, vma, addr, idx, pending);
                    if this.cfg.backend == logic::Backend::Emulated {
                        inner = match this.complete_sync(inner, vma, pending)? {
                            Ok(inner) => inner,
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
    pub(super) fn complete_sync<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        vma: &Vma<'_>,
        pending: &mut Pending,
    ) -> Result<core::result::Result<MutexGuard<'a, Inner>, u64>> {
        if let Some(req) = pending.awaited.as_ref() {
            let now = now_ns();
            let hold = self.cfg.lat_base_ns.saturating_add(self.cfg.lat_page_ns);
            if req.arrive_ns.saturating_sub(now) > hold {
                self.arm(&mut inner, &[(req.idx, req.id)], now);
                return Ok(Err(self.changed.seq()));
            }
            drop(inner);
            // SAFETY: no precondition; process context, no spinlock held.
            if unsafe { memkit_sleep_until_killable(req.arrive_ns) } != 0 {
                let mut inner = self.inner.lock();
                self.arm(&mut inner, &[(req.idx, req.id)], now_ns());
                return Err(EINTR);
            }
            let _ =
                req.state
                    .compare_exchange(PENDING, ARRIVED, Ordering::AcqRel, Ordering::Acquire);
            self.complete(req);
        } else {
            drop(inner);
        }
        let now = now_ns();
        let mut ready: [Option<Arc<Req>>; MAX_CANDIDATES] = [const { None }; MAX_CANDIDATES];
        let mut inner = self.inner.lock();
        let deferred = pending.take_deferred();
        for (&(b, id), out) in deferred.iter().zip(ready.iter_mut()) {
            let Some(Slot::Fetching { req: r, timer, .. }) = inner.slots.get(b as usize) else {
                continue;
            };
            // The deadline decides by the two times, as the timer would.
            let in_time = r.deadline_ns == 0 || r.arrive_ns <= r.deadline_ns;
            if timer.is_none() && r.id == id && r.arrive_ns <= now && in_time {
                // No timer: nothing else moves its state.
                r.state.store(ARRIVED, Ordering::Release);
                *out = Some(r.clone());
            } else {
                self.arm(&mut inner, &[(b, id)], now);
            }
        }
        drop(inner);
        for r in ready.into_iter().flatten() {
            self.complete_in(&r, Some(vma));
            self.recycle(r);
        }
        Ok(Ok(self.inner.lock()))
    }
}

/// The operations of a region's VMAs.
pub(super) static RMEM_VM_OPS: VmOps = VmOps::with_fault(rmem_fault);

/// `RMEM_VM_OPS.fault`: [`Region::fault`].
///
/// # Safety
///
/// Called by the kernel as the `fault` handler of a VMA that [`RmemDevice::mmap`]
/// set up, with the fault's lock (the mmap lock: the VMA has no `map_pages`, so a
/// fault under the per-VMA lock is retried with it) held.
unsafe extern "C" fn rmem_fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    // SAFETY: the kernel's call: `vmf` is the fault, its lock held for this call.
    let fault = unsafe { mm::Fault::from_raw(vmf) };
    // SAFETY: the private data `RmemDevice::mmap` installed: `Arc::as_ptr` of the
    // region of the VMA's file, which the VMA holds while its fault lock is held;
    // `Region::fault` takes its own reference before it drops that lock.
    let this = unsafe { ArcBorrow::from_raw(fault.private().cast::<Region>()) };
    match Region::fault(this, fault) {
        Ok(false) => FaultOutcome::Mapped,
        Ok(true) => FaultOutcome::Retry,
        Err(e) => FaultOutcome::of(e),
    }
    .to_raw()
}
