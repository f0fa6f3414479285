// SPDX-License-Identifier: GPL-2.0

//! `/dev/memkit-journal`: micro-journal transactions on a DAX persistent-memory
//! device (`Documentation/journal.rst`).
//!
//! One journal is attached module-wide ([`JOURNAL`]). The protocol, the format and
//! recovery are the pure engine of `pure::journal`; this file owns the attached
//! journal: the DAX device, group commit and the counters. [`device`] is the open
//! file (ioctl arguments, `read`, fdinfo), [`txbuf`] a transaction copied in.
//!
//! Group commit: a transaction is queued, and the first thread to find no leader
//! becomes the leader: it takes everything queued and commits it, a group per
//! barrier, while later arrivals queue up behind it for the next group. Where a
//! barrier is one CPU fence (synchronous DAX, `memkit.group_commit=auto`) there is
//! no queue: each writer commits its own transaction under the journal lock.
//!
//! Lock order: `Shared::state` before `Shared::queue` (attach and detach update the
//! queue's copy of the geometry); the queue is never held while taking the state.
//! `JOURNAL` is held only to clone the `Arc`. No lock (nor the DAX read lock) is held
//! across a copy to userspace, which may fault and wait on anything: `read` copies
//! through a bounce buffer.

use crate::dax::DaxDevice;
use crate::edge;
use crate::pure::abi::{
    self,
    UapiStruct, //
};
use crate::pure::journal::{
    engine::{
        self,
        JournalError,
        Mode,
        OpenScratch,
        Prepared,
        Range,
        Slot, //
    },
    format::{
        self,
        FormatError,
        Geometry,
        TxError, //
    },
    recovery::{
        Plan,
        PlanError,
        SlotScan, //
    },
};
use crate::uapi;
use kernel::{
    fs::{
        file::flags::{
            O_ACCMODE,
            O_RDONLY, //
        },
        File,
        Kiocb, //
    },
    iov::IovIterDest,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    new_condvar, new_mutex,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{
        Arc,
        CondVar,
        Mutex, //
    },
    time::{
        Instant,
        Monotonic, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

mod device;
mod txbuf;

pub(crate) use device::JournalDevice;
use txbuf::TxBuf;

/// Default number of MJs when an attach with `JOURNAL_ATTACH_FORMAT` says 0.
const DEFAULT_MJ_COUNT: u32 = 64;
/// Default MJ size when an attach with `JOURNAL_ATTACH_FORMAT` says 0.
const DEFAULT_MJ_SIZE: u32 = 64 * 1024;
/// Longest device path accepted.
const PATH_MAX: usize = 4096;
/// Bytes a `read` copies per chunk: read from the device with the locks held, copied
/// out with none.
const READ_CHUNK: usize = 64 * 1024;
/// A file keeps the buffers of its last transaction for the next one when its MJ image
/// holds at most this many bytes; larger ones are freed after use.
const SPARE_MAX: usize = 256 * 1024;

kernel::sync::global_lock! {
    // SAFETY: Initialized by `Registration::new` in the module initializer, before any
    // device is registered.
    unsafe(uninit) static JOURNAL: Mutex<Option<Arc<Shared>>> = None;
}

/// The journal's module-wide state, set up at load and torn down at unload.
pub(crate) struct Registration;

impl Registration {
    /// Creates the shared state and, if `memkit.journal_dev` is set, attaches it.
    pub(crate) fn new() -> Result<Registration> {
        crate::dax::crc32c_choose();
        let mode = match edge::commit_mode().map(|m| m.to_bytes()) {
            None | Some(b"coalesced") => Mode::Coalesced,
            Some(b"strict") => Mode::Strict,
            Some(other) => {
                pr_err!(
                    "journal: commit_mode={:?}: want coalesced or strict\n",
                    kernel::str::BStr::from_bytes(other)
                );
                return Err(EINVAL);
            }
        };
        let grouping = match edge::group_commit().map(|m| m.to_bytes()) {
            None | Some(b"auto") => Grouping::Auto,
            Some(b"always") => Grouping::Always,
            Some(b"never") => Grouping::Never,
            Some(other) => {
                pr_err!(
                    "journal: group_commit={:?}: want auto, always or never\n",
                    kernel::str::BStr::from_bytes(other)
                );
                return Err(EINVAL);
            }
        };
        let shared = Arc::pin_init(Shared::new(mode, grouping), GFP_KERNEL)?;
        if let Some(path) = edge::journal_dev() {
            shared.attach(path, None)?;
        }
        // SAFETY: called once, from the module initializer, before any use.
        unsafe { JOURNAL.init() };
        *JOURNAL.lock() = Some(shared);
        Ok(Registration)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The devices are deregistered and no file is open (the module is unloading):
        // this is the last reference, and dropping it detaches the journal.
        let shared = JOURNAL.lock().take();
        if let Some(shared) = shared {
            shared.detach().ok();
        }
    }
}

/// When transactions are committed in groups (`memkit.group_commit`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grouping {
    /// Where a barrier is a device flush; where the DAX mapping is synchronous (a
    /// barrier is one CPU fence) each writer commits its own transaction.
    Auto,
    /// Everywhere.
    Always,
    /// Nowhere: each writer commits its own transaction.
    Never,
}

impl Grouping {
    /// Whether writers commit their own transactions on `dax`.
    fn direct(self, dax: &DaxDevice) -> bool {
        match self {
            Grouping::Auto => dax.is_sync(),
            Grouping::Always => false,
            Grouping::Never => true,
        }
    }
}

/// An attached journal.
struct Attached {
    engine: engine::Journal<KVec<Slot>, KVVec<u8>>,
    dax: DaxDevice,
    /// A device flush failed: durability is unknown, commits fail with `EIO` until
    /// the journal is detached and attached again.
    broken: bool,
    device_flushes: u64,
    lines: u64,
    lat_hist: [u64; abi::JOURNAL_LAT_BUCKETS],
    /// Commit ids of one group (at most half the MJs), allocated at attach.
    ids: KVec<u64>,
}

/// What the last recovery did.
#[derive(Clone, Copy, Default)]
struct Recovery {
    plan: Plan,
    ns: u64,
}

/// Everything under the GAID lock.
struct State {
    mode: Mode,
    attached: Option<Attached>,
    rec: Recovery,
    /// Attaches so far (wrapping): which attachment `attached` is. A `read`, which drops
    /// the lock between chunks, reads on only while it is unchanged.
    generation: u64,
}

/// A queued transaction and, once its group is committed, its result.
struct Request {
    ticket: u64,
    tx: TxBuf,
    queued: Instant<Monotonic>,
    /// The attachment (`Queue::generation`) its ranges were checked against.
    generation: u64,
    result: Result<u64>,
}

/// The requests of one commit group, as the engine reads them: each prepared as its
/// MJ by its own thread before it was queued.
struct Requests<'a>(&'a mut [Request]);

impl engine::Group for Requests<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn ranges(&self, i: usize) -> impl Iterator<Item = Range<'_>> {
        self.0.get(i).into_iter().flat_map(|r| r.tx.ranges())
    }

    fn prepared(&mut self, i: usize) -> Option<Prepared<'_>> {
        self.0.get_mut(i).map(|r| r.tx.prepared())
    }
}

/// What a transaction was checked against ([`Shared::check`]), read under the queue
/// lock once.
#[derive(Clone, Copy, Default)]
struct Checked {
    /// The attachment (`Queue::generation`).
    generation: u64,
    /// The journal's identity, which the transaction's MJ is checksummed with.
    uuid: [u8; 16],
    /// Whether the writer commits its own transaction (`Queue::direct`).
    direct: bool,
}

/// The group-commit queue.
struct Queue {
    /// The attached journal's geometry and identity, to check a transaction and
    /// checksum its MJ before it is queued (kept here so that neither waits for a
    /// commit in progress).
    geo: Option<(Geometry, [u8; 16])>,
    /// Which attachment `geo` is (`State::generation`).
    generation: u64,
    next_ticket: u64,
    /// Tickets handed out and not yet collected.
    waiting: usize,
    pending: KVec<Request>,
    /// An empty vector the leader swaps in for `pending`; the two keep their
    /// capacity, so queueing allocates nothing once they are large enough.
    spare: KVec<Request>,
    /// Committed requests; capacity for every waiting ticket is reserved at
    /// submission, so handing a result back never allocates.
    results: KVec<Request>,
    leader: bool,
    /// Each writer commits its own transaction (see [`Shared::submit`]): the
    /// attached device's DAX mapping is synchronous, or `group_commit=never`.
    direct: bool,
    grouping: Grouping,
}

#[pin_data]
pub(crate) struct Shared {
    #[pin]
    state: Mutex<State>,
    #[pin]
    queue: Mutex<Queue>,
    #[pin]
    done: CondVar,
}

fn format_errno(e: FormatError) -> Error {
    match e {
        FormatError::BadMagic => EMEDIUMTYPE,
        FormatError::TooSmall => ENOSPC,
        FormatError::BadGeometry(_) => EINVAL,
        FormatError::BadVersion(_)
        | FormatError::BadChecksum { .. }
        | FormatError::NonZeroReserved => EUCLEAN,
    }
}

/// The errno of a superblock read from the medium that does not decode: a geometry
/// that does not add up is corruption (`EUCLEAN`), not a bad argument of the caller.
fn superblock_errno(e: FormatError) -> Error {
    match e {
        FormatError::BadGeometry(_) => EUCLEAN,
        other => format_errno(other),
    }
}

fn tx_errno(e: TxError) -> Error {
    match e {
        TxError::TooManyRanges | TxError::TooLarge => E2BIG,
        TxError::Empty | TxError::BadRange(_) => EINVAL,
    }
}

fn journal_errno(e: JournalError) -> Error {
    match e {
        JournalError::Format(f) => superblock_errno(f),
        JournalError::Plan(PlanError::DuplicateId(_)) => EUCLEAN,
        JournalError::Plan(PlanError::IdsExhausted) | JournalError::IdsExhausted => EOVERFLOW,
        JournalError::Plan(PlanError::OrderTooShort) | JournalError::Buffer => EINVAL,
        JournalError::Unstable(_) => EIO,
        JournalError::Tx { err, .. } => tx_errno(err),
        JournalError::NoFreeMj => EAGAIN,
    }
}

/// The largest commit group: half the MJs, so that the next group always finds free
/// MJs while this one's are in flight.
fn max_group(geo: &Geometry) -> usize {
    (geo.mj_count as usize / 2).max(1)
}

fn tx_spans<'a>(spans: &'a [(u64, usize, usize)]) -> impl Iterator<Item = (u64, u64)> + 'a {
    spans.iter().map(|&(off, _, len)| (off, len as u64))
}

impl Shared {
    fn new(mode: Mode, grouping: Grouping) -> impl PinInit<Self> {
        pin_init!(Self {
            state <- new_mutex!(State {
                mode,
                attached: None,
                rec: Recovery::default(),
                generation: 0,
            }),
            queue <- new_mutex!(Queue {
                geo: None,
                generation: 0,
                next_ticket: 0,
                waiting: 0,
                pending: KVec::new(),
                spare: KVec::new(),
                results: KVec::new(),
                leader: false,
                direct: false,
                grouping,
            }),
            done <- new_condvar!(),
        })
    }

    /// Attaches the DAX device at `path`, formatting it first with `format`
    /// (`mj_count`, `mj_size`) if given, and recovers it.
    fn attach(&self, path: &CStr, format: Option<(u32, u32)>) -> Result {
        let mut state = self.state.lock();
        if state.attached.is_some() {
            return Err(EBUSY);
        }
        let dax = DaxDevice::open(path).inspect_err(|e| {
            pr_err!(
                "journal: {}: cannot open as a DAX block device: error {}\n",
                path,
                e.to_errno()
            );
        })?;
        let mut pmem = dax.access()?;
        if let Some((count, size)) = format {
            let geo = Geometry::new(dax.len(), count, size).map_err(|e| {
                pr_err!(
                    "journal: {}: cannot format {} MJs of {} bytes on {} bytes: {:?}\n",
                    path,
                    count,
                    size,
                    dax.len(),
                    e
                );
                format_errno(e)
            })?;
            let mut uuid = [0u8; 16];
            edge::random(&mut uuid);
            engine::format(&mut pmem, geo, uuid).map_err(journal_errno)?;
        }
        let sb = engine::read_superblock(&pmem).map_err(|e| {
            match e {
                FormatError::BadMagic => pr_err!(
                    "journal: {}: no memkit journal superblock; attach with format to create one\n",
                    path
                ),
                FormatError::TooSmall => pr_err!(
                    "journal: {}: the journal superblock's geometry does not fit the device ({} bytes)\n",
                    path,
                    dax.len()
                ),
                FormatError::BadVersion(v) => pr_err!(
                    "journal: {}: journal format version {}, this memkit reads version {}: recover it with the memkit that wrote it, then format it again\n",
                    path,
                    v,
                    format::FORMAT_VERSION
                ),
                _ => pr_err!(
                    "journal: {}: corrupt journal superblock ({:?}); `memkit journal check` on a copy says more\n",
                    path,
                    e
                ),
            }
            superblock_errno(e)
        })?;
        let n = sb.geo.mj_count as usize;
        let mut scans = KVec::from_elem(SlotScan::Empty, n, GFP_KERNEL)?;
        let mut order = KVec::from_elem(0u32, n, GFP_KERNEL)?;
        let mut mj = KVVec::from_elem(0u8, sb.geo.mj_size as usize, GFP_KERNEL)?;
        let slots = KVec::from_elem(Slot::default(), n, GFP_KERNEL)?;
        let stage = KVVec::from_elem(0u8, sb.geo.mj_size as usize, GFP_KERNEL)?;
        let started = Instant::<Monotonic>::now();
        let scratch = OpenScratch {
            scans: &mut scans,
            order: &mut order,
            mj: &mut mj,
        };
        let (engine, plan) = engine::Journal::open(&mut pmem, state.mode, slots, stage, scratch)
            .map_err(|e| {
                pr_err!("journal: {}: recovery refused the journal: {:?}\n", path, e);
                journal_errno(e)
            })?;
        if let Some(e) = pmem.fence_error {
            pr_err!(
                "journal: {}: flushing the recovered state failed: error {}\n",
                path,
                e.to_errno()
            );
            return Err(EIO);
        }
        if pmem.read_error.get() {
            pr_warn!(
                "journal: {}: media errors while scanning; unreadable MJs were discarded\n",
                path
            );
        }
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(0);
        let direct = self.queue.lock().grouping.direct(&dax);
        pr_info!(
            "journal: attached {}: {} MJs of {} B, {} B of data{}, {}, CRC-32C by {}; recovery: {} replayed, {} discarded, {} stale, {} incomplete, {} us; next id {}\n",
            path,
            sb.geo.mj_count,
            sb.geo.mj_size,
            sb.geo.data_size,
            if dax.is_sync() { "" } else { ", device flush per barrier" },
            if direct {
                "each writer commits its own transactions"
            } else {
                "group commit"
            },
            crate::dax::crc32c_name(),
            plan.replay,
            plan.discarded,
            plan.stale,
            plan.incomplete,
            ns / 1000,
            plan.next_id
        );
        let device_flushes = pmem.flushes;
        let lines = pmem.lines;
        drop(pmem);
        state.rec = Recovery { plan, ns };
        state.generation = state.generation.wrapping_add(1);
        let ids = KVec::from_elem(0u64, max_group(&sb.geo), GFP_KERNEL)?;
        {
            let mut q = self.queue.lock();
            q.geo = Some((sb.geo, sb.uuid));
            q.direct = direct;
            q.generation = state.generation;
        }
        state.attached = Some(Attached {
            engine,
            dax,
            broken: false,
            device_flushes,
            lines,
            lat_hist: [0; abi::JOURNAL_LAT_BUCKETS],
            ids,
        });
        Ok(())
    }

    /// Detaches the journal after making every in-place write durable.
    fn detach(&self) -> Result {
        let mut state = self.state.lock();
        let mut attached = state.attached.take().ok_or(ENODEV)?;
        self.queue.lock().geo = None;
        let Attached { engine, dax, .. } = &mut attached;
        if let Ok(mut pmem) = dax.access() {
            engine.sync(&mut pmem);
        }
        pr_info!(
            "journal: detached after {} transactions\n",
            attached.engine.counters().transactions
        );
        Ok(())
    }

    /// Checks transaction ranges against the attached geometry; returns what the
    /// transaction was checked against and how it is to be committed.
    fn check(&self, spans: &[(u64, usize, usize)]) -> Result<Checked> {
        let q = self.queue.lock();
        let (geo, uuid) = q.geo.ok_or(ENODEV)?;
        format::plan_tx(&geo, tx_spans(spans)).map_err(tx_errno)?;
        Ok(Checked {
            generation: q.generation,
            uuid,
            direct: q.direct,
        })
    }

    /// Commits `tx`, checked against attachment `generation`, and returns its commit
    /// id once it is durable, with its buffers.
    ///
    /// Where a barrier is a device flush, transactions are queued and committed in
    /// groups (group commit: one flush for every writer waiting). Where the DAX
    /// mapping is synchronous, a barrier is one CPU fence and there is nothing worth
    /// waiting for: each writer commits its own transaction under the journal lock,
    /// whose mutex spins while its holder runs, instead of sleeping until a leader has
    /// committed it and waking again.
    fn submit(&self, tx: TxBuf, checked: Checked) -> (Result<u64>, TxBuf) {
        let generation = checked.generation;
        if checked.direct {
            let mut request = Request {
                ticket: 0,
                tx,
                queued: Instant::now(),
                generation,
                result: Err(EINPROGRESS),
            };
            self.commit_batch(core::slice::from_mut(&mut request));
            return (request.result, request.tx);
        }
        let mut q = self.queue.lock();
        let ticket = q.next_ticket;
        let room = (q.waiting + 1).saturating_sub(q.results.len());
        if let Err(e) = q
            .results
            .reserve(room, GFP_KERNEL)
            .and_then(|()| q.pending.reserve(1, GFP_KERNEL))
        {
            return (Err(e.into()), tx);
        }
        let request = Request {
            ticket,
            tx,
            queued: Instant::now(),
            generation,
            result: Err(EINPROGRESS),
        };
        if let Err(e) = q.pending.push_within_capacity(request) {
            // Not reached: room for one was reserved above.
            return (Err(ENOMEM), e.0.tx);
        }
        q.next_ticket += 1;
        q.waiting += 1;
        loop {
            if let Some(i) = q.results.iter().position(|r| r.ticket == ticket) {
                q.waiting -= 1;
                return match q.results.remove(i) {
                    Ok(r) => (r.result, r.tx),
                    // Not reached: `i` is an index of `results`.
                    Err(_) => (Err(EIO), TxBuf::default()),
                };
            }
            if q.leader {
                self.done.wait(&mut q);
                continue;
            }
            q.leader = true;
            let spare = core::mem::take(&mut q.spare);
            let mut batch = core::mem::replace(&mut q.pending, spare);
            drop(q);
            self.commit_batch(&mut batch);
            q = self.queue.lock();
            while let Some(r) = batch.pop() {
                // Room was reserved for every waiting ticket: never fails.
                q.results.push_within_capacity(r).ok();
            }
            q.spare = batch;
            q.leader = false;
            self.done.notify_all();
        }
    }

    /// Commits `batch` in groups of at most the free MJs (and half the MJs), one
    /// barrier per group, with one acquisition of the journal lock; sets each
    /// request's result.
    fn commit_batch(&self, batch: &mut [Request]) {
        let fail = |batch: &mut [Request], e: Error| {
            for r in batch.iter_mut() {
                r.result = Err(e);
            }
        };
        let mut state = self.state.lock();
        let generation = state.generation;
        let Some(attached) = state.attached.as_mut() else {
            return fail(batch, ENODEV);
        };
        if attached.broken {
            return fail(batch, EIO);
        }
        let Attached {
            engine,
            dax,
            broken,
            device_flushes,
            lines,
            lat_hist,
            ids,
        } = attached;
        let mut pmem = match dax.access() {
            Ok(pmem) => pmem,
            Err(e) => return fail(batch, e),
        };
        let geo = engine.superblock().geo;
        // A request checked against an earlier attachment (the journal was attached
        // again meanwhile) is checked again; an invalid one fails on its own.
        for r in batch.iter_mut() {
            r.result = if r.generation == generation {
                Ok(0)
            } else {
                format::plan_tx(&geo, tx_spans(&r.tx.spans))
                    .map(|_| 0)
                    .map_err(tx_errno)
            };
        }
        let mut i = 0;
        while i < batch.len() {
            if batch[i].result.is_err() {
                i += 1;
                continue;
            }
            if engine.free_mjs() == 0 {
                engine.sync(&mut pmem);
            }
            // Keep half the MJs free for the next group: the in-flight half is freed
            // only by the next barrier.
            let room = engine.free_mjs().min(ids.len()).max(1);
            let mut end = i;
            while end < batch.len() && end - i < room && batch[end].result.is_ok() {
                end += 1;
            }
            let res = engine
                .commit(&mut pmem, &mut Requests(&mut batch[i..end]), ids)
                .map_err(journal_errno);
            let res = match (res, pmem.fence_error) {
                (Ok(()), None) => Ok(()),
                (Ok(()), Some(e)) => {
                    pr_err!(
                        "journal: device flush failed (error {}); commits fail until re-attach\n",
                        e.to_errno()
                    );
                    *broken = true;
                    Err(EIO)
                }
                (Err(e), _) => Err(e),
            };
            for (r, id) in batch[i..end].iter_mut().zip(ids.iter()) {
                r.result = res.map(|()| *id);
                if r.result.is_ok() {
                    let us = u64::try_from(r.queued.elapsed().as_micros_ceil())
                        .unwrap_or(0)
                        .max(1);
                    let bucket =
                        (63 - us.leading_zeros() as usize).min(abi::JOURNAL_LAT_BUCKETS - 1);
                    lat_hist[bucket] += 1;
                }
            }
            i = end;
        }
        *device_flushes += pmem.flushes;
        *lines += pmem.lines;
    }

    /// The attached device's number, `(major, minor)`.
    fn device(&self) -> Option<(u32, u32)> {
        self.state.lock().attached.as_ref().map(|a| a.dax.dev())
    }

    fn status(&self) -> abi::JournalStatus {
        let state = self.state.lock();
        let mut s = abi::JournalStatus {
            mode: match state.mode {
                Mode::Coalesced => abi::JOURNAL_MODE_COALESCED,
                Mode::Strict => abi::JOURNAL_MODE_STRICT,
            },
            ..Default::default()
        };
        let Some(attached) = state.attached.as_ref() else {
            return s;
        };
        let geo = attached.engine.superblock().geo;
        let c = attached.engine.counters();
        let rec = state.rec;
        s.attached = 1;
        s.dev_size = geo.dev_size;
        s.data_offset = geo.data_offset;
        s.data_size = geo.data_size;
        s.mj_count = geo.mj_count;
        s.mj_size = geo.mj_size;
        s.max_ranges = geo.max_ranges();
        // Lossless: at most `MJ_SIZE_MAX`.
        s.max_tx_bytes = geo.mj_capacity() as u32;
        s.sync_dax = u32::from(attached.dax.is_sync());
        s.next_id = attached.engine.next_id();
        s.rec_replayed = rec.plan.replay.into();
        s.rec_discarded = rec.plan.discarded.into();
        s.rec_stale = rec.plan.stale.into();
        s.rec_incomplete = rec.plan.incomplete.into();
        s.rec_empty = rec.plan.empty.into();
        s.rec_lwm = rec.plan.lwm;
        s.rec_ns = rec.ns;
        s.transactions = c.transactions;
        s.groups = c.groups;
        s.barriers = c.barriers;
        s.device_flushes = attached.device_flushes;
        s.journal_bytes = c.journal_bytes;
        s.inplace_bytes = c.inplace_bytes;
        s.payload_bytes = c.payload_bytes;
        s.lines_written_back = attached.lines;
        s.lat_hist = attached.lat_hist;
        s
    }

    /// Copies data-region bytes at `pos` into `iov`; returns how many.
    ///
    /// A chunk at a time: under the state lock and the DAX read lock, up to
    /// [`READ_CHUNK`] bytes are read into a bounce buffer; they are copied out with
    /// neither held, so a destination that faults slowly (an rmem or userfaultfd
    /// mapping, FUSE) holds up no commit, detach or DAX teardown. A journal detached or
    /// replaced between chunks, or an error after some bytes were copied, ends the
    /// read with those bytes (the next read reports the error); `ENODEV` or the error
    /// if there are none.
    fn read(&self, pos: u64, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let mut bounce = KVVec::from_elem(0u8, iov.len().min(READ_CHUNK), GFP_KERNEL)?;
        // The attachment the read began on.
        let mut generation = None;
        let mut done = 0usize;
        loop {
            let n = match self.read_chunk(pos, done, &mut generation, &mut bounce, iov.len()) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            };
            let chunk = bounce.get(..n).ok_or(EINVAL)?;
            let copied = iov.copy_to_iter(chunk);
            done = done.checked_add(copied).ok_or(EOVERFLOW)?;
            if copied < n {
                break;
            }
        }
        Ok(done)
    }

    /// One chunk of [`Shared::read`]: reads the data-region bytes at `pos + done`,
    /// at most `room` and the bounce buffer's length, into `bounce` under the locks;
    /// returns how many (0 at the end of the data region or of `room`). `ENODEV` if no
    /// journal is attached, or another than `generation` (set on the first chunk).
    fn read_chunk(
        &self,
        pos: u64,
        done: usize,
        generation: &mut Option<u64>,
        bounce: &mut [u8],
        room: usize,
    ) -> Result<usize> {
        let state = self.state.lock();
        let attached = state.attached.as_ref().ok_or(ENODEV)?;
        if *generation.get_or_insert(state.generation) != state.generation {
            return Err(ENODEV);
        }
        let geo = attached.engine.superblock().geo;
        let at = u64::try_from(done)
            .ok()
            .and_then(|d| pos.checked_add(d))
            .ok_or(EINVAL)?;
        if at >= geo.data_size {
            return Ok(0);
        }
        let n = room
            .min(bounce.len())
            .min(usize::try_from(geo.data_size - at).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let off = geo.data_offset.checked_add(at).ok_or(EINVAL)?;
        let pmem = attached.dax.access()?;
        pmem.read_checked(off, bounce.get_mut(..n).ok_or(EINVAL)?)?;
        Ok(n)
    }
}
