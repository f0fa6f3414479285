// SPDX-License-Identifier: GPL-2.0

//! Prefetch on a synchronous fault: the policy's plan, the PTEs read, the fetches
//! issued; and the hits counted for the adaptive policies.

use super::*;

impl Region {
    /// Counts the prefetched pages of the last batch that were used (accessed bit of
    /// their PTE in the faulting VMA): the hits the adaptive policies grow on.
    pub(super) fn count_batch_hits(&self, inner: &mut Inner, vma: &Vma<'_>) {
        let (batch, n) = (inner.batch, core::mem::take(&mut inner.batch_len));
        for &idx in batch.iter().take(n) {
            let Some(Slot::Local { page, flags }) = inner.slots.get_mut(idx as usize) else {
                continue;
            };
            if *flags & (PREFETCHED | USED) != PREFETCHED {
                continue;
            }
            let Some(addr) = vma.addr_of(idx) else {
                continue;
            };
            // SAFETY: mmap lock held, `addr` in the VMA, the slot holds the page.
            if unsafe { memkit_rmem_pte_young(vma.ptr(), addr, pg(page), false) } == 1 {
                *flags |= USED;
                bump(&self.stats, |c| &c.hits, 1);
                inner.hits_since = inner.hits_since.saturating_add(1);
            }
        }
    }

    /// Reads the PTEs of the candidates: bit `i` set if candidate `i`'s PTE is present.
    pub(super) fn present(vma: &Vma<'_>, cands: &[u64]) -> u64 {
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
            let err = unsafe { memkit_rmem_pte_scan(vma.ptr(), addr, n, &mut p, &mut y) };
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
    pub(super) fn prefetch(
        this: ArcBorrow<'_, Region>,
        inner: &mut Inner,
        vma: &Vma<'_>,
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
        this.count_batch_hits(inner, vma);
        let f = Fault {
            vpn: (addr >> PAGE_SHIFT) as u64,
            lo,
            hi: last + 1,
            hits: core::mem::take(&mut inner.hits_since),
        };
        let mut out = [0u64; MAX_CANDIDATES];
        let n = {
            let Inner {
                planner, history, ..
            } = &mut *inner;
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
        let mm: ARef<Mm> = ARef::from(&**vma.vma.mm());
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
            match inner.slots.get_mut(c as usize) {
                Some(Slot::Remote) => {
                    if inner.resident >= cfg.budget
                        && this.evict_one(inner, vma, idx) != Evicted::Freed
                    {
                        break;
                    }
                    let Ok(id) = Self::issue(this, inner, c, true, Some(mm.clone()), caddr) else {
                        break;
                    };
                    bump(&this.stats, |c| &c.prefetches, 1);
                    if this.cfg.backend == logic::Backend::Emulated {
                        match pending.deferred.get_mut(pending.n) {
                            Some(d) => {
                                *d = (c, id);
                                pending.n += 1;
                            }
                            None => this.arm(inner, &[(c, id)], now_ns()),
                        }
                    }
                    if let Some(b) = inner.batch.get_mut(inner.batch_len) {
                        *b = c;
                        inner.batch_len += 1;
                    }
                }
                Some(Slot::Local { page, .. }) => {
                    // Local but not mapped here (a late copy, or mapped elsewhere):
                    // map it now.
                    let _ = vma.insert(caddr, page);
                }
                _ => {}
            }
        }
    }
}
