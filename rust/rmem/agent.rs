// SPDX-License-Identifier: GPL-2.0

//! The agent backend: `read` hands requests to the userspace agent, `write` takes its
//! replies.

use super::*;

impl Region {
    /// `read` of an agent-backed region's file: the oldest requests not read yet, as
    /// many whole messages as fit, at most [`AGENT_READ_MAX`] bytes (a write-back
    /// carries its page).
    ///
    /// The messages are claimed (marked read) and copied into a kernel buffer under
    /// the region lock, then copied out with no lock held: a reader whose buffer
    /// faults slowly holds up nobody. If the copy-out fails, they are unclaimed and
    /// go to the next read.
    pub(super) fn agent_read(&self, iov: &mut IovIterDest<'_>, nowait: bool) -> Result<usize> {
        const HDR: usize = <abi::RmemMsg as abi::UapiStruct>::SIZE;
        const PAGE: usize = kernel::page::PAGE_SIZE;
        let room = iov.len().min(AGENT_READ_MAX);
        if room < HDR {
            return Err(EINVAL);
        }
        let mut buf = KVVec::<u8>::new();
        let mut ids = KVVec::<u64>::new();
        {
            let mut inner = self.inner.lock();
            while !inner.agent.iter().any(|r| !r.read) {
                if inner.dead {
                    return Ok(0);
                }
                if nowait {
                    return Err(EAGAIN);
                }
                let seen = self.changed.seq();
                drop(inner);
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
                inner = self.inner.lock();
            }
            // Copied without changing anything (an allocation failure leaves the
            // queue as it was), then claimed.
            let mut dropped = KVVec::<u64>::new();
            for r in inner.agent.iter().filter(|r| !r.read) {
                let wb = r.kind == abi::RMEM_MSG_WRITEBACK;
                let need = HDR + if wb { PAGE } else { 0 };
                if buf.len() + need > room {
                    break;
                }
                let page = match inner.slots.get(r.idx as usize) {
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
                        mm::copy_page(dst, Some(page))?;
                    }
                }
                ids.push(r.id, GFP_KERNEL_ACCOUNT)?;
            }
            // Claimed: no other reader takes them. (Both lists are in id order, as
            // the queue is.)
            inner
                .agent
                .retain(|r| dropped.binary_search(&r.id).is_err());
            for id in ids.iter() {
                if let Ok(pos) = inner.agent.binary_search_by_key(id, |r| r.id) {
                    if let Some(r) = inner.agent.get_mut(pos) {
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
            let mut inner = self.inner.lock();
            for id in ids.iter() {
                if let Ok(pos) = inner.agent.binary_search_by_key(id, |r| r.id) {
                    if let Some(r) = inner.agent.get_mut(pos) {
                        r.read = false;
                    }
                }
            }
            return Err(EFAULT);
        }
        Ok(buf.len())
    }

    /// `write` of an agent-backed region's file: one reply.
    pub(super) fn agent_write(&self, iov: &mut IovIterSource<'_>) -> Result<usize> {
        const HDR: usize = <abi::RmemMsg as abi::UapiStruct>::SIZE;
        const PAGE: usize = kernel::page::PAGE_SIZE;
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
            let mut inner = self.inner.lock();
            // The queue is in id order (ids are handed out increasing).
            let pos = inner
                .agent
                .binary_search_by_key(&m.id, |r| r.id)
                .map_err(|_| ENOENT)?;
            let r = *inner.agent.get(pos).ok_or(ENOENT)?;
            if r.kind != m.kind || r.idx != m.page || !r.read {
                return Err(EINVAL);
            }
            inner.agent.remove(pos)?;
            let i = r.idx as usize;
            if r.kind == abi::RMEM_MSG_WRITEBACK {
                let slot = inner.slots.get_mut(i).ok_or(EINVAL)?;
                if matches!(slot, Slot::WritingBack { id, .. } if *id == r.id) {
                    if let Slot::WritingBack { page, .. } = core::mem::replace(slot, Slot::Remote) {
                        if m.status == 0 {
                            inner.resident -= 1;
                        } else {
                            // Not stored: the page stays local.
                            *slot = Slot::Local { page, flags: 0 };
                            inner.local.push(r.idx, GFP_KERNEL_ACCOUNT)?;
                        }
                        inner.writing_back -= 1;
                    }
                }
                self.changed.notify_all();
                return Ok(len);
            }
            let slot = inner.slots.get_mut(i).ok_or(EINVAL)?;
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
                    inner.resident -= 1;
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
}
