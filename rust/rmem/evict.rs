// SPDX-License-Identifier: GPL-2.0

//! Eviction: the clock over the local pages, write-back of a dirty victim.

use super::*;

/// What an eviction did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Evicted {
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

impl Region {
    /// Evicts one local page other than `keep` (clock over the referenced flags and
    /// the accessed bits of the faulting VMA's PTEs).
    pub(super) fn evict_one(&self, inner: &mut Inner, vma: &Vma<'_>, keep: u64) -> Evicted {
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
        } = inner;
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
                // SAFETY: the fault holds the mmap lock of the valid VMA `vma`;
                // `addr` lies in it; the slot holds a reference to `page`.
                unsafe { memkit_rmem_pte_young(vma.ptr(), addr, pg(page), true) == 1 }
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
        // Unmapped from every mapping of the file (a dirty PTE moves its bit to
        // PG_dirty), private copies included as truncation does (`even_cows`).
        let (at, len) = ((self.base + idx) << PAGE_SHIFT, PAGE_BYTES);
        // SAFETY: the mapping is valid while the region holds it (see `Mapping`);
        // process context. Lossless: offsets of a region window fit in `loff_t`
        // (`RegionId::MAX`).
        unsafe {
            bindings::unmap_mapping_range(mapping.0.as_ptr().cast(), at as i64, len as i64, 1)
        };
        // No PTE maps the page now: a dirty one moved its bit to PG_dirty.
        let dirty = mm::test_clear_dirty(&page);
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
        inner.resident -= 1;
        Evicted::Freed
    }
}
