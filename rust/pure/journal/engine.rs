// SPDX-License-Identifier: GPL-2.0

//! The commit protocol of the micro-journal (patent claim 1, with commit coalescing
//! and group commit), and recovery on open.
//!
//! The volatile state is the GAID (`next_id`), and per MJ slot whether it is free,
//! being committed, or in flight (committed, its in-place writes issued but not yet
//! fenced). One commit of a group of transactions:
//!
//! 1. take one free MJ per transaction; write its entries and header (GAID as commit
//!    id, the group's bounds, the low-water mark) with cache-bypassing stores;
//! 2. one persistence barrier: the group is durable (and acknowledged), and so are
//!    the in-place writes of every in-flight MJ;
//! 3. move the in-flight MJs to the free list, apply the group in place (written
//!    back, not fenced), and put the group's MJs in flight; advance the GAID.
//!
//! `Mode::Strict` is the conventional protocol for comparison: commit barrier, apply,
//! a second barrier, and the MJs are free at once.
//!
//! The caller serialises calls (the GAID lock); the engine itself has no locks.

use super::format::{
    self,
    entry_header,
    set_mj_checksum,
    FormatError,
    Geometry,
    MjError,
    MjHeader,
    Superblock,
    TxError,
    ENTRY_ALIGN,
    MJ_HEADER_SIZE,
    SB_AREA,
    SB_SIZE, //
};
use super::pmem::Pmem;
use super::recovery::{
    self,
    Plan,
    PlanError,
    SlotScan, //
};
use crate::pure::crc32c::Crc32c;
use core::ops::DerefMut;

/// Which commit protocol to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One barrier per commit group; MJs are freed at the next commit.
    Coalesced,
    /// Two barriers per commit group (log, then data); MJs freed at once.
    Strict,
}

/// The volatile state of one MJ slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// On the free list.
    Free,
    /// Being written by the current commit, for this commit id.
    Committing(u64),
    /// Committed; its in-place writes are not yet known durable.
    InFlight(u64),
}

/// One range of a transaction: write `data` at `offset` of the data region.
#[derive(Clone, Copy, Debug)]
pub struct Range<'a> {
    /// Offset in the data region.
    pub offset: u64,
    /// New bytes.
    pub data: &'a [u8],
}

/// Running totals of the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Transactions committed.
    pub transactions: u64,
    /// Commit groups (calls of [`Journal::commit`] that committed something).
    pub groups: u64,
    /// Persistence barriers issued by commits.
    pub barriers: u64,
    /// Bytes written to MJs (headers, entry headers, data, padding).
    pub journal_bytes: u64,
    /// Bytes written in place.
    pub inplace_bytes: u64,
    /// Bytes of payload the transactions asked to write.
    pub payload_bytes: u64,
}

/// Why the journal refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalError {
    /// The superblock or geometry is unusable.
    Format(FormatError),
    /// Recovery found an inconsistent journal.
    Plan(PlanError),
    /// An MJ chosen for replay did not decode on the second read.
    Unstable(MjError),
    /// Transaction `index` of a group is invalid; nothing was written.
    Tx {
        /// Index in the group.
        index: usize,
        /// What is wrong.
        err: TxError,
    },
    /// Fewer free MJs than transactions in the group.
    NoFreeMj,
    /// A caller-supplied buffer is too small for the geometry.
    Buffer,
    /// The commit id space is exhausted.
    IdsExhausted,
}

impl From<FormatError> for JournalError {
    fn from(e: FormatError) -> Self {
        JournalError::Format(e)
    }
}

impl From<PlanError> for JournalError {
    fn from(e: PlanError) -> Self {
        JournalError::Plan(e)
    }
}

const ZERO: [u8; MJ_HEADER_SIZE] = [0; MJ_HEADER_SIZE];

/// Writes a fresh, empty journal with geometry `geo` and identity `uuid` to `pm`.
///
/// The old superblock is invalidated first: an interrupted format leaves a device that
/// does not attach, never a mix of old and new.
pub fn format<P: Pmem + ?Sized>(
    pm: &mut P,
    geo: Geometry,
    uuid: [u8; 16],
) -> Result<Superblock, JournalError> {
    if geo.dev_size > pm.len() {
        return Err(FormatError::TooSmall.into());
    }
    let check = Geometry::new(geo.dev_size, geo.mj_count, geo.mj_size)?;
    if check != geo {
        return Err(FormatError::BadGeometry("inconsistent geometry").into());
    }
    // The whole superblock area is zeroed, not only the superblock: a signature
    // left there by an earlier owner (ext4's at byte 1080, xfs's at 0, swap's at
    // 4086) would make blkid and udev still see that filesystem over the journal.
    let mut off = 0;
    while off < SB_AREA {
        pm.write_flushed(off, &[0u8; SB_SIZE]);
        off += SB_SIZE as u64;
    }
    pm.fence();
    for slot in 0..geo.mj_count {
        let off = geo
            .mj_at(slot)
            .ok_or(FormatError::BadGeometry("MJ offset"))?;
        pm.write_flushed(off, &ZERO);
    }
    pm.fence();
    let sb = Superblock { uuid, geo };
    pm.write_flushed(0, &sb.encode());
    pm.fence();
    Ok(sb)
}

/// Scratch space [`Journal::open`] needs, sized for the journal's geometry.
pub struct OpenScratch<'a> {
    /// One entry per MJ.
    pub scans: &'a mut [SlotScan],
    /// One entry per MJ.
    pub order: &'a mut [u32],
    /// At least `mj_size` bytes.
    pub mj: &'a mut [u8],
}

/// A journal opened on a persistent-memory device.
pub struct Journal<S> {
    sb: Superblock,
    mode: Mode,
    next_id: u64,
    slots: S,
    cursor: usize,
    counters: Counters,
}

/// Reads the superblock of `pm`.
pub fn read_superblock<P: Pmem + ?Sized>(pm: &P) -> Result<Superblock, FormatError> {
    if pm.len() < SB_SIZE as u64 {
        return Err(FormatError::TooSmall);
    }
    let mut b = [0u8; SB_SIZE];
    pm.read(0, &mut b);
    Superblock::decode(&b, pm.len())
}

/// Scans every MJ of the journal `sb` on `pm` into `scans`.
pub fn scan<P: Pmem + ?Sized>(
    pm: &P,
    sb: &Superblock,
    scans: &mut [SlotScan],
    mj: &mut [u8],
) -> Result<(), JournalError> {
    let size = sb.geo.mj_size as usize;
    let mj = mj.get_mut(..size).ok_or(JournalError::Buffer)?;
    let scans = scans
        .get_mut(..sb.geo.mj_count as usize)
        .ok_or(JournalError::Buffer)?;
    for (slot, out) in (0u32..).zip(scans.iter_mut()) {
        let off = sb
            .geo
            .mj_at(slot)
            .ok_or(FormatError::BadGeometry("MJ offset"))?;
        pm.read(off, mj);
        *out = match format::decode_mj(sb, mj) {
            Ok(m) => SlotScan::Valid {
                id: m.header.commit_id,
                lwm: m.header.lwm,
                group_first: m.header.group_first,
                group_len: m.header.group_len,
            },
            Err(MjError::Empty) => SlotScan::Empty,
            Err(e) => SlotScan::Invalid(e),
        };
    }
    Ok(())
}

impl<S: DerefMut<Target = [SlotState]>> Journal<S> {
    /// Opens the journal on `pm`, recovering it: validates the superblock, scans every
    /// MJ, replays what the recovery plan says, makes the result durable, and seals
    /// the old MJs (see [`Journal::seal`]).
    ///
    /// `slots` must have one element per MJ.
    pub fn open<P: Pmem + ?Sized>(
        pm: &mut P,
        mode: Mode,
        mut slots: S,
        scratch: OpenScratch<'_>,
    ) -> Result<(Self, Plan), JournalError> {
        let sb = read_superblock(pm)?;
        let n = sb.geo.mj_count as usize;
        if slots.len() != n || scratch.scans.len() < n || scratch.order.len() < n {
            return Err(JournalError::Buffer);
        }
        scan(pm, &sb, scratch.scans, scratch.mj)?;
        let plan = recovery::plan(&scratch.scans[..n], scratch.order)?;
        let mj = &mut scratch.mj[..sb.geo.mj_size as usize];
        let replay = &scratch.order[..plan.replay as usize];
        for &slot in replay {
            let off = sb
                .geo
                .mj_at(slot)
                .ok_or(FormatError::BadGeometry("MJ offset"))?;
            pm.read(off, mj);
            let m = format::decode_mj(&sb, mj).map_err(JournalError::Unstable)?;
            for e in m.entries() {
                // In range: `decode_mj` checked `offset + len <= data_size`.
                pm.write_flushed(sb.geo.data_offset + e.offset, e.data);
            }
        }
        // A torn MJ must never become valid again: a later commit that rewrites only
        // part of its slot could complete the old header's checksum.
        let mut dirty = plan.replay > 0;
        for (slot, s) in (0u32..).zip(scratch.scans[..n].iter()) {
            if let SlotScan::Invalid(_) = s {
                let off = sb
                    .geo
                    .mj_at(slot)
                    .ok_or(FormatError::BadGeometry("MJ offset"))?;
                pm.write_flushed(off, &ZERO);
                dirty = true;
            }
        }
        if dirty {
            pm.fence();
        }
        slots.fill(SlotState::Free);
        let mut j = Journal {
            sb,
            mode,
            next_id: plan.seal_id.unwrap_or(plan.next_id),
            slots,
            cursor: 0,
            counters: Counters::default(),
        };
        if plan.seal_id.is_some() {
            j.seal(pm, &scratch.scans[..n], replay.first().copied())?;
        }
        Ok((j, plan))
    }

    /// Retires every MJ recovery found valid, with one more barrier: commits a
    /// transaction that rewrites data byte 0 with its current value, with its own id
    /// as low-water mark. Once it is durable every older MJ is stale, so their slots
    /// can be reused like any freed MJ.
    ///
    /// Until then the old MJs are what a crash would recover from, so the seal goes
    /// into a slot that holds no MJ of the replay (`lowest` is the replay's first
    /// slot, in id order) — or, if every slot does, into `lowest`: everything replayed
    /// is durable in place by now, and a crash that tears that slot leaves a suffix of
    /// the replay, which replays to the same state.
    fn seal<P: Pmem + ?Sized>(
        &mut self,
        pm: &mut P,
        scans: &[SlotScan],
        lowest: Option<u32>,
    ) -> Result<(), JournalError> {
        let replay_from = match lowest.and_then(|s| scans.get(s as usize)) {
            Some(SlotScan::Valid { id, .. }) => *id,
            _ => u64::MAX,
        };
        let outside_replay =
            |s: &SlotScan| !matches!(s, SlotScan::Valid { id, .. } if *id >= replay_from);
        let slot = scans
            .iter()
            .position(outside_replay)
            .or(lowest.map(|s| s as usize))
            .ok_or(JournalError::NoFreeMj)?;
        let mut byte = [0u8; 1];
        pm.read(self.sb.geo.data_offset, &mut byte);
        let id = self.next_id;
        let next = id.checked_add(1).ok_or(JournalError::IdsExhausted)?;
        let header = MjHeader {
            commit_id: id,
            lwm: id,
            entry_count: 0,
            payload_len: 0,
            group_first: id,
            group_len: 1,
        };
        let slot32 = u32::try_from(slot).map_err(|_| JournalError::NoFreeMj)?;
        self.write_mj(
            pm,
            slot32,
            header,
            &[Range {
                offset: 0,
                data: &byte,
            }],
        )?;
        pm.fence();
        // Its in-place write changes nothing; it is in flight like any commit.
        self.slots[slot] = SlotState::InFlight(id);
        self.next_id = next;
        // The seal is recovery's work, not a transaction: counters start after it.
        self.counters = Counters::default();
        Ok(())
    }

    /// The superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The commit id the next transaction gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The protocol in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Running totals.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// MJs on the free list: the largest group [`Journal::commit`] accepts now.
    pub fn free_mjs(&self) -> usize {
        self.slots.iter().filter(|s| **s == SlotState::Free).count()
    }

    /// Copies `buf.len()` bytes at `offset` of the data region.
    pub fn read<P: Pmem + ?Sized>(
        &self,
        pm: &P,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), TxError> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(TxError::BadRange(0))?;
        if end > self.sb.geo.data_size {
            return Err(TxError::BadRange(0));
        }
        pm.read(self.sb.geo.data_offset + offset, buf);
        Ok(())
    }

    /// Commits `txs` as one group with one persistence barrier (two in strict mode).
    ///
    /// On success every transaction is durable and `ids[i]` holds the commit id of
    /// `txs[i]`. On error nothing was written.
    pub fn commit<P: Pmem + ?Sized>(
        &mut self,
        pm: &mut P,
        txs: &[&[Range<'_>]],
        ids: &mut [u64],
    ) -> Result<(), JournalError> {
        let n = txs.len();
        if n == 0 {
            return Ok(());
        }
        let ids = ids.get_mut(..n).ok_or(JournalError::Buffer)?;
        for (index, tx) in txs.iter().enumerate() {
            format::plan_tx(
                &self.sb.geo,
                tx.iter().map(|r| (r.offset, r.data.len() as u64)),
            )
            .map_err(|err| JournalError::Tx { index, err })?;
        }
        if self.free_mjs() < n {
            return Err(JournalError::NoFreeMj);
        }
        let first = self.next_id;
        let group_len = u32::try_from(n).map_err(|_| JournalError::NoFreeMj)?;
        // The id after the group stays unused: the seal of the next recovery takes it
        // (and needs the one after it as the next id), so an acknowledged transaction
        // never leaves a journal that recovery has to refuse for want of ids.
        let next = first
            .checked_add(n as u64)
            .filter(|next| next.checked_add(1).is_some())
            .ok_or(JournalError::IdsExhausted)?;
        // Every transaction below the smallest in-flight id is durable in place.
        let lwm = match self.mode {
            Mode::Strict => first,
            Mode::Coalesced => self
                .slots
                .iter()
                .filter_map(|s| match s {
                    SlotState::InFlight(id) => Some(*id),
                    _ => None,
                })
                .min()
                .unwrap_or(first),
        };

        for (i, (tx, id)) in txs.iter().zip(ids.iter_mut()).enumerate() {
            *id = first + i as u64;
            let slot = self.take_free(*id).ok_or(JournalError::NoFreeMj)?;
            let header = MjHeader {
                commit_id: *id,
                lwm,
                entry_count: 0,
                payload_len: 0,
                group_first: first,
                group_len,
            };
            self.write_mj(pm, slot, header, tx)?;
        }
        // The commit barrier: the group is durable, and so are the in-place writes of
        // every in-flight MJ.
        pm.fence();
        self.counters.barriers += 1;

        if self.mode == Mode::Coalesced {
            for s in self.slots.iter_mut() {
                if let SlotState::InFlight(_) = s {
                    *s = SlotState::Free;
                }
            }
        }
        for tx in txs {
            for r in tx.iter() {
                // In range: checked by `plan_tx` above.
                pm.write_flushed(self.sb.geo.data_offset + r.offset, r.data);
                self.counters.inplace_bytes += r.data.len() as u64;
                self.counters.payload_bytes += r.data.len() as u64;
            }
        }
        if self.mode == Mode::Strict {
            pm.fence();
            self.counters.barriers += 1;
        }
        for s in self.slots.iter_mut() {
            if let SlotState::Committing(id) = *s {
                *s = match self.mode {
                    Mode::Coalesced => SlotState::InFlight(id),
                    Mode::Strict => SlotState::Free,
                };
            }
        }
        self.next_id = next;
        self.counters.transactions += n as u64;
        self.counters.groups += 1;
        Ok(())
    }

    /// Makes every in-place write durable (on detach): one barrier, all MJs free.
    pub fn sync<P: Pmem + ?Sized>(&mut self, pm: &mut P) {
        if self
            .slots
            .iter()
            .any(|s| matches!(s, SlotState::InFlight(_)))
        {
            pm.fence();
            self.slots.fill(SlotState::Free);
        }
    }

    /// Takes a free slot, round-robin, and marks it `Committing(id)`.
    fn take_free(&mut self, id: u64) -> Option<u32> {
        let start = self.cursor.min(self.slots.len());
        let (before, after) = self.slots.split_at_mut(start);
        let found = after
            .iter_mut()
            .zip(start..)
            .chain(before.iter_mut().zip(0..))
            .find(|(s, _)| **s == SlotState::Free);
        let (slot, i) = found?;
        *slot = SlotState::Committing(id);
        self.cursor = i + 1;
        u32::try_from(i).ok()
    }

    /// Writes transaction `tx` into MJ `slot`: entries first, the header (with the
    /// checksum over uuid, entries and header) last, all with cache-bypassing stores.
    fn write_mj<P: Pmem + ?Sized>(
        &mut self,
        pm: &mut P,
        slot: u32,
        mut header: MjHeader,
        tx: &[Range<'_>],
    ) -> Result<(), JournalError> {
        let base = self
            .sb
            .geo
            .mj_at(slot)
            .ok_or(FormatError::BadGeometry("MJ offset"))?;
        let mut pos = base + MJ_HEADER_SIZE as u64;
        let mut crc = Crc32c::new();
        crc.update(&self.sb.uuid);
        let mut payload = 0u64;
        for r in tx {
            // Lossless: `plan_tx` checked each length fits an MJ.
            let len = r.data.len() as u32;
            let eh = entry_header(r.offset, len);
            let pad = r.data.len().next_multiple_of(ENTRY_ALIGN) - r.data.len();
            pm.write_flushed(pos, &eh);
            pm.write_flushed(pos + eh.len() as u64, r.data);
            crc.update(&eh).update(r.data);
            if pad > 0 {
                pm.write_flushed(pos + (eh.len() + r.data.len()) as u64, &ZERO[..pad]);
                crc.update(&ZERO[..pad]);
            }
            let size = (eh.len() + r.data.len() + pad) as u64;
            pos += size;
            payload += size;
        }
        // Lossless: `plan_tx` bounded the entries by the MJ capacity.
        header.entry_count = tx.len() as u32;
        header.payload_len = payload as u32;
        let mut h = header.encode_unsummed();
        crc.update(&h[..MJ_HEADER_SIZE - 8]);
        set_mj_checksum(&mut h, crc.finish());
        pm.write_flushed(base, &h);
        self.counters.journal_bytes += MJ_HEADER_SIZE as u64 + payload;
        Ok(())
    }
}
