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
//! The bookkeeping is O(1) per MJ: the slots are linked into a free stack and the
//! in-flight list (the previous group's MJs, whose first id is the low-water mark),
//! and a commit takes the most recently freed MJs, so a single writer alternates
//! between two MJs that stay in the CPU's cache.
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
    MJ_SUMMED,
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
use core::ops::DerefMut;

/// The encoded `header` of an MJ whose payload's [`payload_crc`] is `crc`, with its
/// checksum (over the uuid, the payload and the header's first [`MJ_SUMMED`] bytes).
fn seal<P: Pmem + ?Sized>(pm: &P, header: MjHeader, crc: u32) -> [u8; MJ_HEADER_SIZE] {
    let mut h = header.encode_unsummed();
    let crc = pm.crc32c_append(crc, &h[..MJ_SUMMED]);
    set_mj_checksum(&mut h, crc);
    h
}

/// Which commit protocol to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One barrier per commit group; MJs are freed at the next commit.
    Coalesced,
    /// Two barriers per commit group (log, then data); MJs freed at once.
    Strict,
}

/// The volatile state of one MJ slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SlotState {
    /// On the free list.
    #[default]
    Free,
    /// Being written by the current commit, for this commit id.
    Committing(u64),
    /// Committed; its in-place writes are not yet known durable.
    InFlight(u64),
}

/// One MJ slot of an open journal: its state and its link in the engine's list
/// (free stack, in-flight list or the group being committed). The caller provides
/// one per MJ (`vec![Slot::default(); mj_count]`); [`Journal::open`] sets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    state: SlotState,
    next: u32,
}

impl Slot {
    /// The slot's state.
    pub fn state(&self) -> SlotState {
        self.state
    }
}

/// The end of a slot list.
const NIL: u32 = u32::MAX;

/// A list of slots linked through [`Slot::next`], with its length and its last slot
/// (to splice it onto another in O(1)).
#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };

    /// Appends `slot` (whose link is `NIL`) to the list.
    fn append(&mut self, slots: &mut [Slot], slot: u32) {
        if self.tail == NIL {
            self.head = slot;
        } else {
            slots[self.tail as usize].next = slot;
        }
        self.tail = slot;
        self.len += 1;
    }
}

/// One range of a transaction: write `data` at `offset` of the data region.
#[derive(Clone, Copy, Debug)]
pub struct Range<'a> {
    /// Offset in the data region.
    pub offset: u64,
    /// New bytes.
    pub data: &'a [u8],
}

/// The transactions of one commit group, wherever the caller keeps them: a slice of
/// range slices, or (in the module) the queued requests themselves, so that a
/// commit needs no array built for it.
pub trait Group {
    /// Transactions in the group.
    fn len(&self) -> usize;

    /// Whether the group has no transaction.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ranges of transaction `i` (`i < len()`), in order; the same ranges on
    /// every call.
    fn ranges(&self, i: usize) -> impl Iterator<Item = Range<'_>>;

    /// Transaction `i` laid out as its MJ by the caller before the commit, if it was
    /// ([`Prepared`]); the same on every call. The default: none, the commit stages
    /// [`Group::ranges`] itself.
    fn prepared(&mut self, _i: usize) -> Option<Prepared<'_>> {
        None
    }
}

/// A transaction laid out as its MJ and checksummed by its caller, outside the
/// journal lock: the copying and checksumming a commit would otherwise do for it
/// while every other writer waits, done by each writer in parallel, in the buffer its
/// data was copied into (no second copy into the staging buffer).
///
/// A commit checks the entries ([`format::check_payload`]: in the data region, zero
/// padding, within the MJ), fills in the header, stores the image with one write, and
/// applies in place what the image's entries say: what recovery would replay.
pub struct Prepared<'a> {
    /// [`MJ_HEADER_SIZE`] bytes the commit fills with the header, then the payload:
    /// per range [`format::entry_header`], the data and zero padding to
    /// [`format::ENTRY_ALIGN`].
    pub image: &'a mut [u8],
    /// [`payload_crc`] of the payload, computed with `uuid`.
    pub crc: u32,
    /// The journal identity `crc` was computed with; a commit on a journal of another
    /// identity (attached again meanwhile) checksums the payload again.
    pub uuid: [u8; 16],
}

/// The checksum of an MJ payload before its header is appended: CRC-32C of the
/// journal's `uuid` followed by `payload`, with `append` (`Pmem::crc32c_append` or an
/// implementation giving the same values).
pub fn payload_crc(uuid: &[u8; 16], payload: &[u8], append: impl Fn(u32, &[u8]) -> u32) -> u32 {
    append(append(0, uuid), payload)
}

impl Group for [&[Range<'_>]] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn ranges(&self, i: usize) -> impl Iterator<Item = Range<'_>> {
        self.get(i).into_iter().flat_map(|tx| tx.iter().copied())
    }
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
///
/// `S` holds one [`Slot`] per MJ; `B` is the staging buffer of at least `mj_size`
/// bytes where each MJ is assembled before it is stored.
pub struct Journal<S, B> {
    sb: Superblock,
    mode: Mode,
    next_id: u64,
    slots: S,
    stage: B,
    /// Free slots; the most recently freed on top.
    free: List,
    /// The slots of the last committed group (or of the seal), in flight.
    in_flight: List,
    /// The smallest commit id in flight: the next group's low-water mark.
    in_flight_first: Option<u64>,
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

impl<S: DerefMut<Target = [Slot]>, B: DerefMut<Target = [u8]>> Journal<S, B> {
    /// Opens the journal on `pm`, recovering it: validates the superblock, scans every
    /// MJ, replays what the recovery plan says, makes the result durable, and seals
    /// the old MJs (see [`Journal::seal`]).
    ///
    /// `slots` must have one element per MJ, `stage` at least `mj_size` bytes.
    pub fn open<P: Pmem + ?Sized>(
        pm: &mut P,
        mode: Mode,
        slots: S,
        stage: B,
        scratch: OpenScratch<'_>,
    ) -> Result<(Self, Plan), JournalError> {
        let sb = read_superblock(pm)?;
        let n = sb.geo.mj_count as usize;
        if slots.len() != n
            || stage.len() < sb.geo.mj_size as usize
            || scratch.scans.len() < n
            || scratch.order.len() < n
        {
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
        let mut j = Journal {
            sb,
            mode,
            next_id: plan.seal_id.unwrap_or(plan.next_id),
            slots,
            stage,
            free: List::EMPTY,
            in_flight: List::EMPTY,
            in_flight_first: None,
            counters: Counters::default(),
        };
        j.free_all();
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
            [Range {
                offset: 0,
                data: &byte,
            }]
            .into_iter(),
        )?;
        pm.fence();
        // Its in-place write changes nothing; it is in flight like any commit, until
        // the next barrier.
        self.free = List::EMPTY;
        for i in (0..self.slots.len()).rev() {
            if i != slot {
                self.push_free(i as u32);
            }
        }
        self.slots[slot] = Slot {
            state: SlotState::InFlight(id),
            next: NIL,
        };
        self.in_flight = List {
            head: slot32,
            tail: slot32,
            len: 1,
        };
        self.in_flight_first = Some(id);
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
        self.free.len
    }

    /// The state of MJ `slot`, or `None` past the last one.
    pub fn slot_state(&self, slot: u32) -> Option<SlotState> {
        self.slots.get(slot as usize).map(Slot::state)
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

    /// Commits the transactions of `txs` as one group with one persistence barrier
    /// (two in strict mode).
    ///
    /// On success every transaction is durable and `ids[i]` holds the commit id of
    /// transaction `i`. On error nothing is acknowledged; a refused transaction or a
    /// lack of MJs or ids is found before anything is written.
    pub fn commit<P: Pmem + ?Sized, G: Group + ?Sized>(
        &mut self,
        pm: &mut P,
        txs: &mut G,
        ids: &mut [u64],
    ) -> Result<(), JournalError> {
        let n = txs.len();
        if n == 0 {
            return Ok(());
        }
        let ids = ids.get_mut(..n).ok_or(JournalError::Buffer)?;
        for index in 0..n {
            let geo = &self.sb.geo;
            match txs.prepared(index) {
                Some(p) => p
                    .image
                    .get(MJ_HEADER_SIZE..)
                    .ok_or(TxError::Empty)
                    .and_then(|payload| format::check_payload(geo, payload))
                    .map(|_| ()),
                None => format::plan_tx(
                    geo,
                    txs.ranges(index).map(|r| (r.offset, r.data.len() as u64)),
                )
                .map(|_| ()),
            }
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
            Mode::Coalesced => self.in_flight_first.unwrap_or(first),
        };

        // The group's slots, in commit-id order.
        let mut group = List::EMPTY;
        for (i, id) in ids.iter_mut().enumerate() {
            *id = first + i as u64;
            let slot = self.pop_free().ok_or(JournalError::NoFreeMj)?;
            self.slots[slot as usize] = Slot {
                state: SlotState::Committing(*id),
                next: NIL,
            };
            group.append(&mut self.slots, slot);
        }
        let mut slot = group.head;
        for (i, id) in ids.iter().enumerate() {
            let header = MjHeader {
                commit_id: *id,
                lwm,
                entry_count: 0,
                payload_len: 0,
                group_first: first,
                group_len,
            };
            let written = match txs.prepared(i) {
                Some(p) => self.write_prepared(pm, slot, header, p),
                None => self.write_mj(pm, slot, header, txs.ranges(i)),
            };
            if let Err(e) = written {
                // Nothing acknowledged: the group's MJs go back to the free list, and
                // its ids are not handed out again (an MJ stored before the failure
                // is an incomplete group to recovery, never a duplicate id).
                self.free_list(group);
                self.next_id = next;
                return Err(e);
            }
            slot = self.slots[slot as usize].next;
        }
        // The commit barrier: the group is durable, and so are the in-place writes of
        // every in-flight MJ.
        pm.fence();
        self.counters.barriers += 1;
        self.free_list(self.in_flight);
        self.in_flight = List::EMPTY;
        self.in_flight_first = None;

        for i in 0..n {
            if let Some(p) = txs.prepared(i) {
                // Checked by `check_payload` above.
                let payload = p.image.get(MJ_HEADER_SIZE..).unwrap_or(&[]);
                for e in format::payload_entries(payload) {
                    self.apply(pm, e.offset, e.data);
                }
            } else {
                for r in txs.ranges(i) {
                    // In range: checked by `plan_tx` above.
                    self.apply(pm, r.offset, r.data);
                }
            }
        }
        match self.mode {
            Mode::Strict => {
                pm.fence();
                self.counters.barriers += 1;
                self.free_list(group);
            }
            Mode::Coalesced => {
                let mut slot = group.head;
                while slot != NIL {
                    let s = &mut self.slots[slot as usize];
                    if let SlotState::Committing(id) = s.state {
                        s.state = SlotState::InFlight(id);
                    }
                    slot = s.next;
                }
                self.in_flight = group;
                self.in_flight_first = Some(first);
            }
        }
        self.next_id = next;
        self.counters.transactions += n as u64;
        self.counters.groups += 1;
        Ok(())
    }

    /// Writes `data` in place at data-region offset `offset` (checked by the caller).
    fn apply<P: Pmem + ?Sized>(&mut self, pm: &mut P, offset: u64, data: &[u8]) {
        pm.write_flushed(self.sb.geo.data_offset + offset, data);
        self.counters.inplace_bytes += data.len() as u64;
        self.counters.payload_bytes += data.len() as u64;
    }

    /// Makes every in-place write durable (on detach): one barrier, all MJs free.
    pub fn sync<P: Pmem + ?Sized>(&mut self, pm: &mut P) {
        if self.in_flight.len > 0 {
            pm.fence();
            self.free_list(self.in_flight);
            self.in_flight = List::EMPTY;
            self.in_flight_first = None;
        }
    }

    /// Puts every slot on the free list, MJ 0 on top.
    fn free_all(&mut self) {
        self.free = List::EMPTY;
        self.in_flight = List::EMPTY;
        self.in_flight_first = None;
        for slot in (0..self.slots.len()).rev() {
            // Lossless: the geometry bounds the MJ count by `MJ_COUNT_MAX`.
            self.push_free(slot as u32);
        }
    }

    /// Pushes `slot` on the free stack.
    fn push_free(&mut self, slot: u32) {
        self.slots[slot as usize] = Slot {
            state: SlotState::Free,
            next: self.free.head,
        };
        if self.free.head == NIL {
            self.free.tail = slot;
        }
        self.free.head = slot;
        self.free.len += 1;
    }

    /// Pops the most recently freed slot.
    fn pop_free(&mut self) -> Option<u32> {
        let slot = self.free.head;
        let s = self.slots.get(slot as usize)?;
        self.free.head = s.next;
        if self.free.head == NIL {
            self.free.tail = NIL;
        }
        self.free.len -= 1;
        Some(slot)
    }

    /// Puts the slots of `list` on top of the free stack, in O(1).
    fn free_list(&mut self, list: List) {
        if list.len == 0 {
            return;
        }
        let mut slot = list.head;
        while slot != NIL {
            let s = &mut self.slots[slot as usize];
            s.state = SlotState::Free;
            slot = s.next;
        }
        self.slots[list.tail as usize].next = self.free.head;
        if self.free.head == NIL {
            self.free.tail = list.tail;
        }
        self.free.head = list.head;
        self.free.len += list.len;
    }

    /// The device offset of MJ `slot`.
    fn mj_base(&self, slot: u32) -> Result<u64, JournalError> {
        Ok(self
            .sb
            .geo
            .mj_at(slot)
            .ok_or(FormatError::BadGeometry("MJ offset"))?)
    }

    /// Writes the prepared transaction `p` (checked by `check_payload`) into MJ
    /// `slot`: its header filled in and checksummed, then the image stored with one
    /// cache-bypassing write, as [`Journal::write_mj`] stores a staged one.
    fn write_prepared<P: Pmem + ?Sized>(
        &mut self,
        pm: &mut P,
        slot: u32,
        mut header: MjHeader,
        p: Prepared<'_>,
    ) -> Result<(), JournalError> {
        let base = self.mj_base(slot)?;
        let (head, payload) = p
            .image
            .split_first_chunk_mut::<MJ_HEADER_SIZE>()
            .ok_or(JournalError::Buffer)?;
        let count = format::check_payload(&self.sb.geo, payload)
            .map_err(|err| JournalError::Tx { index: 0, err })?;
        header.entry_count = count;
        // Lossless: `check_payload` bounded it by the MJ capacity.
        header.payload_len = payload.len() as u32;
        let crc = if p.uuid == self.sb.uuid {
            p.crc
        } else {
            payload_crc(&self.sb.uuid, payload, |c, b| pm.crc32c_append(c, b))
        };
        *head = seal(pm, header, crc);
        pm.write_flushed(base, p.image);
        self.counters.journal_bytes += p.image.len() as u64;
        Ok(())
    }

    /// Writes transaction `tx` into MJ `slot`: the whole MJ (header with the
    /// checksum over uuid, entries and header; entries with their padding) is staged
    /// in memory first and stored with one cache-bypassing write, so each of its
    /// lines is written once (no line is written back and then stored to again) and
    /// its full lines can be streamed. Nothing is stored if it does not fit.
    fn write_mj<'r, P: Pmem + ?Sized>(
        &mut self,
        pm: &mut P,
        slot: u32,
        mut header: MjHeader,
        tx: impl Iterator<Item = Range<'r>>,
    ) -> Result<(), JournalError> {
        let base = self.mj_base(slot)?;
        let stage = self
            .stage
            .get_mut(..self.sb.geo.mj_size as usize)
            .ok_or(JournalError::Buffer)?;
        let mut end = MJ_HEADER_SIZE;
        let mut entries = 0u32;
        for r in tx {
            let len = r.data.len();
            // Lossless: `plan_tx` checked each length fits an MJ.
            let eh = entry_header(r.offset, len as u32);
            let next = end + eh.len() + len.next_multiple_of(ENTRY_ALIGN);
            // In the MJ: `plan_tx` bounded the entries by its capacity.
            let entry = stage.get_mut(end..next).ok_or(JournalError::Buffer)?;
            let (head, rest) = entry.split_at_mut(eh.len());
            head.copy_from_slice(&eh);
            let (data, pad) = rest.split_at_mut(len);
            data.copy_from_slice(r.data);
            pad.fill(0);
            end = next;
            entries += 1;
        }
        let payload = (end - MJ_HEADER_SIZE) as u64;
        // Lossless: `plan_tx` bounded the entries by the MJ capacity.
        header.entry_count = entries;
        header.payload_len = payload as u32;
        let crc = payload_crc(&self.sb.uuid, &stage[MJ_HEADER_SIZE..end], |c, b| {
            pm.crc32c_append(c, b)
        });
        stage[..MJ_HEADER_SIZE].copy_from_slice(&seal(pm, header, crc));
        pm.write_flushed(base, &stage[..end]);
        self.counters.journal_bytes += MJ_HEADER_SIZE as u64 + payload;
        Ok(())
    }
}
