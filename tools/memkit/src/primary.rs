//! The checkpointer (`memkit ckpt run`): stop the target, find what it wrote, copy
//! it, resume it, and stream the checkpoint to the backup ([`crate::stream`]).
//!
//! Where the dirty pages and their contents come from is a [`Source`]: a memkit
//! region ([`RegionSource`]: the device's get-and-clear and copy-out ioctls, diffs
//! made by the module) or any process's memory ([`SoftDirtySource`]: soft-dirty bits
//! and `process_vm_readv`, diffs made here).
//!
//! A checkpoint without pre-copy: stop; collect and clear; copy the dirty pages;
//! resume; send. With pre-copy (the patent's modification history): collect and
//! clear while the target runs; copy at once the dirty pages whose history says
//! "not written in the last `cold_after` checkpoints"; stop; collect and clear
//! again; copy the pages dirtied since the first collect and the dirty pages that
//! were not pre-copied; resume; send. A pre-copied page written after its copy is
//! dirty at the second collect, so the checkpoint is exactly the memory at the stop.
//!
//! A checkpoint as a snapshot ([`Options::cow`], memkit regions): no stop. One
//! collect opens a copy-on-write snapshot of the dirty pages (the target's writes
//! wait only while it runs), and the copy reads each page as it was then, however
//! the target writes it meanwhile (the module copies a page's old contents in the
//! write fault, if the page was not copied out yet).
//!
//! The first checkpoint of a connection sends every page, whole (as a snapshot, one
//! of every page). A checkpoint after which the target stays stopped
//! ([`Pause::holds`]) stops it.
//!
//! Pipelining: a checkpoint does not wait for its acknowledgement before the next
//! one starts; at most [`Options::window`] are sent and not yet acknowledged (1:
//! each waits for its own). The backup applies checkpoints in the order sent, so a
//! diff is always against a version the backup will hold when it applies it. A
//! checkpoint is safe — on the backup, surviving the primary — once its report
//! comes back from [`Primary::checkpoint`] or [`Primary::drain`]
//! (`memkit ckpt run --reports` prints it then).

use crate::dev::Device;
use crate::stream::{self, Frame};
use crate::target::Target;
use crate::track::SoftDirty;
use memkit_core::abi;
use memkit_core::ckpt::diff::{self, Params, PAGE};
use memkit_core::crc32c::Crc32c;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Where a checkpoint's pages come from.
pub trait Source {
    /// Pages of the memory.
    fn pages(&self) -> u64;
    /// The pages written since the last call (sorted), and clears them.
    fn collect_clear(&mut self) -> io::Result<Vec<u64>>;
    /// Per-page history words: bit `k` set if the page was written in the interval
    /// that ended `k` collects ago.
    fn history(&mut self) -> io::Result<Vec<u64>>;
    /// Appends records of `pages` to `out` (diffs for pages of the diff set);
    /// returns how many went as diffs.
    fn copy(&mut self, p: Params, pages: &[u64], out: &mut Vec<u8>) -> io::Result<u64>;
    /// Replaces the diff set (pages that lost their base go whole next time).
    fn set_diff(&mut self, pages: &[u64]) -> io::Result<()>;
    /// Whether a collect reads and clears atomically, so that it may run while the
    /// target writes (needed for pre-copy).
    fn atomic_collect(&self) -> bool;
    /// Whether [`Source::collect_snapshot`] works.
    fn snapshots(&self) -> bool {
        false
    }
    /// As [`Source::collect_clear`] (with `all`, every page), and the pages returned
    /// read as they are now when [`Source::copy`] first copies them, until the next
    /// collect.
    fn collect_snapshot(&mut self, _all: bool) -> io::Result<Vec<u64>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Pages of snapshots that a write reached before they were copied out, so far
    /// (each cost that write a page copy), where the source counts them.
    fn cow_copies(&self) -> Option<u64> {
        None
    }
}

/// A memkit checkpoint region.
pub struct RegionSource {
    dev: Device,
    pages: u64,
    diff_set: BTreeSet<u64>,
    snapshots: bool,
}

impl RegionSource {
    /// The region of `dev` (which must have one); starts tracking afresh. With
    /// `snapshots`, in the recording mode, fixed, which snapshots need (else the
    /// module picks the mode).
    pub fn new(dev: Device, snapshots: bool) -> io::Result<RegionSource> {
        let bytes = dev.ckpt_stats()?.bytes;
        if bytes == 0 {
            return Err(io::Error::other("the descriptor has no checkpoint region"));
        }
        if snapshots {
            dev.ckpt_start_with(abi::CKPT_START_RECORD)?;
        } else {
            dev.ckpt_start()?;
        }
        dev.ckpt_diff_set(&[], true)?;
        Ok(RegionSource {
            dev,
            pages: bytes / PAGE as u64,
            diff_set: BTreeSet::new(),
            snapshots,
        })
    }

    /// The pages of runs.
    fn pages_of(runs: &[abi::CkptRange]) -> Vec<u64> {
        runs.iter()
            .flat_map(|r| r.first..r.first + r.count)
            .collect()
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.dev
    }
}

impl Source for RegionSource {
    fn pages(&self) -> u64 {
        self.pages
    }

    fn collect_clear(&mut self) -> io::Result<Vec<u64>> {
        let runs = self.dev.ckpt_collect_ranges(0, self.pages, true)?;
        Ok(Self::pages_of(&runs))
    }

    fn snapshots(&self) -> bool {
        self.snapshots
    }

    fn cow_copies(&self) -> Option<u64> {
        self.dev.ckpt_stats().ok().map(|s| s.cow_copies)
    }

    fn collect_snapshot(&mut self, all: bool) -> io::Result<Vec<u64>> {
        let mut flags = abi::CKPT_COLLECT_CLEAR | abi::CKPT_COLLECT_SNAPSHOT;
        if all {
            flags |= abi::CKPT_COLLECT_ALL;
        }
        let runs = self.dev.ckpt_collect_ranges_with(flags, 0, self.pages)?;
        Ok(Self::pages_of(&runs))
    }

    fn history(&mut self) -> io::Result<Vec<u64>> {
        self.dev.ckpt_history(0, self.pages)
    }

    fn atomic_collect(&self) -> bool {
        true
    }

    fn copy(&mut self, p: Params, pages: &[u64], out: &mut Vec<u8>) -> io::Result<u64> {
        let mut diffed = 0;
        for batch in pages.chunks(abi::CKPT_COPY_DIFF_MAX_PAGES as usize) {
            diffed +=
                self.dev
                    .ckpt_copy_diff_into(batch, p.segment() as u32, p.max_changed, out)?;
        }
        Ok(diffed)
    }

    fn set_diff(&mut self, pages: &[u64]) -> io::Result<()> {
        // Only the changes: a page that stays keeps its version.
        let new: BTreeSet<u64> = pages.iter().copied().collect();
        let added: Vec<u64> = new.difference(&self.diff_set).copied().collect();
        let removed: Vec<u64> = self.diff_set.difference(&new).copied().collect();
        for batch in removed.chunks(abi::CKPT_COPY_MAX_PAGES as usize) {
            self.dev.ckpt_diff_remove(batch)?;
        }
        for batch in added.chunks(abi::CKPT_COPY_MAX_PAGES as usize) {
            self.dev.ckpt_diff_set(batch, false)?;
        }
        self.diff_set = new;
        Ok(())
    }
}

/// What the module does for a region, done in userspace for other sources: the
/// per-page history and the bases of the diff set's pages.
pub struct UserTracking {
    history: Vec<u64>,
    diff_set: BTreeSet<u64>,
    bases: HashMap<u64, Box<[u8]>>,
    rec: Vec<u8>,
}

impl UserTracking {
    /// Tracking of `pages` pages, with an empty diff set.
    pub fn new(pages: u64) -> UserTracking {
        UserTracking {
            history: vec![0; pages as usize],
            diff_set: BTreeSet::new(),
            bases: HashMap::new(),
            rec: vec![0; diff::MAX_RECORD],
        }
    }

    /// Ends an interval in which `dirty` (indexes below `pages`) were written.
    pub fn end_interval(&mut self, dirty: &[u64]) {
        self.history.iter_mut().for_each(|h| *h <<= 1);
        for &p in dirty {
            if let Some(h) = self.history.get_mut(p as usize) {
                *h |= 1;
            }
        }
    }

    /// The history words ([`Source::history`]).
    pub fn history(&self) -> Vec<u64> {
        self.history.clone()
    }

    /// Appends the record of page `i` with contents `page` to `out` (a diff against
    /// its base if it has one), keeps the contents as the base if the page is in
    /// the diff set; returns whether it went as a diff.
    pub fn encode(&mut self, p: Params, i: u64, page: &[u8], out: &mut Vec<u8>) -> bool {
        let base = self.bases.get(&i).map(|b| &b[..]);
        let (n, was_diff) =
            diff::encode(p, i, page, base, &mut self.rec).expect("page-sized buffers");
        out.extend_from_slice(&self.rec[..n]);
        if self.diff_set.contains(&i) {
            self.bases.insert(i, page.into());
        }
        was_diff
    }

    /// [`Source::set_diff`]: pages that leave the set lose their base.
    pub fn set_diff(&mut self, pages: &[u64]) {
        self.diff_set = pages.iter().copied().collect();
        let keep = &self.diff_set;
        self.bases.retain(|p, _| keep.contains(p));
    }
}

/// Memory `[addr, addr + len)` of any process, through soft-dirty bits.
pub struct SoftDirtySource {
    sd: SoftDirty,
    addr: u64,
    pages: u64,
    user: UserTracking,
}

impl SoftDirtySource {
    /// Tracks `len` bytes at `addr` of process `pid` (clears its soft-dirty bits).
    pub fn new(pid: libc::pid_t, addr: u64, len: u64) -> io::Result<SoftDirtySource> {
        if !addr.is_multiple_of(PAGE as u64) || len == 0 || !len.is_multiple_of(PAGE as u64) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if !SoftDirty::supported()? {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel does not track soft-dirty bits (CONFIG_MEM_SOFT_DIRTY)",
            ));
        }
        let sd = SoftDirty::open(pid)?;
        sd.clear()?;
        let pages = len / PAGE as u64;
        Ok(SoftDirtySource {
            sd,
            addr,
            pages,
            user: UserTracking::new(pages),
        })
    }
}

impl Source for SoftDirtySource {
    fn pages(&self) -> u64 {
        self.pages
    }

    fn collect_clear(&mut self) -> io::Result<Vec<u64>> {
        let end = self.addr + self.pages * PAGE as u64;
        let dirty: Vec<u64> = self
            .sd
            .dirty_pagemap(self.addr, end)?
            .into_iter()
            .map(|a| (a - self.addr) / PAGE as u64)
            .collect();
        // The bits are cleared after they are read: a write in between would be
        // lost, so this source only collects with the target stopped (no pre-copy).
        self.sd.clear()?;
        self.user.end_interval(&dirty);
        Ok(dirty)
    }

    fn history(&mut self) -> io::Result<Vec<u64>> {
        Ok(self.user.history())
    }

    fn atomic_collect(&self) -> bool {
        false
    }

    fn copy(&mut self, p: Params, pages: &[u64], out: &mut Vec<u8>) -> io::Result<u64> {
        let mut page = vec![0u8; PAGE];
        let mut diffed = 0;
        for &i in pages {
            if i >= self.pages {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.sd.read(self.addr + i * PAGE as u64, &mut page)?;
            diffed += u64::from(self.user.encode(p, i, &page, out));
        }
        Ok(diffed)
    }

    fn set_diff(&mut self, pages: &[u64]) -> io::Result<()> {
        self.user.set_diff(pages);
        Ok(())
    }
}

/// How the target is paused for the stop phase.
pub trait Pause {
    /// Stops it; nothing writes the memory until [`Pause::resume`].
    fn stop(&mut self) -> io::Result<()>;
    /// Lets it run again.
    fn resume(&mut self) -> io::Result<()>;
    /// Whether the target stays stopped after the checkpoint (then the checkpoint
    /// stops it, snapshots or not).
    fn holds(&self) -> bool {
        false
    }
}

impl Pause for Target {
    fn stop(&mut self) -> io::Result<()> {
        Target::stop(self, Duration::from_secs(10))
    }

    fn resume(&mut self) -> io::Result<()> {
        Target::resume(self)
    }
}

/// A target that needs no pausing (the caller does not write during checkpoints).
pub struct NoPause;

impl Pause for NoPause {
    fn stop(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn resume(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checkpointer settings.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Segment size and threshold of diffs.
    pub params: Params,
    /// Use the backup's diff list (else every page goes whole).
    pub diff: bool,
    /// Two-phase pre-copy.
    pub precopy: bool,
    /// Pre-copy: a page is cold if not written in this many checkpoints before.
    pub cold_after: u32,
    /// Checkpoints sent and not yet acknowledged, at most (1 or more).
    pub window: u32,
    /// Checkpoints as copy-on-write snapshots, without a stop (if the source
    /// [`Source::snapshots`]; not with pre-copy).
    pub cow: bool,
}

/// What one checkpoint did (a JSON line of `memkit ckpt run --reports`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// Checkpoint number.
    pub seq: u64,
    /// Distinct pages sent.
    pub pages: u64,
    /// Pages copied while the target ran (pre-copy).
    pub precopied: u64,
    /// Pages copied while it was stopped.
    pub stop_copied: u64,
    /// Pages sent as diffs.
    pub diffed: u64,
    /// Record bytes sent.
    pub record_bytes: u64,
    /// Taken as a copy-on-write snapshot: the target was not stopped, and
    /// `stopped_ns` is the collect's, the longest one of its writes waited.
    pub snapshot: bool,
    /// Nanoseconds the target was stopped.
    pub stopped_ns: u64,
    /// Of those, waiting for it to stop.
    pub stop_wait_ns: u64,
    /// Of those, the collect and clear.
    pub collect_ns: u64,
    /// Of those, copying the pages out (records built).
    pub copy_ns: u64,
    /// Nanoseconds sending (after the resume).
    pub send_ns: u64,
    /// Nanoseconds from the end of the sending to the backup's ACK.
    pub ack_ns: u64,
    /// Nanoseconds from the start of the checkpoint to the backup's ACK.
    pub total_ns: u64,
    /// Nanoseconds from the previous checkpoint's start to this one's (0 for the
    /// first of a connection): with a window above 1 checkpoints overlap, and the
    /// rate is one over this.
    pub interval_ns: u64,
}

/// A checkpoint sent and not yet acknowledged.
struct InFlight {
    report: Report,
    start: Instant,
    sent: Instant,
}

/// Shuts the connection down when dropped: the thread reading it sees its end.
struct Conn(TcpStream);

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// What the backup sends, read by a thread of its own (so that acknowledgements and
/// diff lists are taken while checkpoints go on).
type Frames = Receiver<io::Result<Option<Frame>>>;

fn read_frames(mut rx: BufReader<TcpStream>) -> Frames {
    let (tx, frames) = mpsc::channel();
    std::thread::spawn(move || loop {
        let f = Frame::read(&mut rx);
        let last = !matches!(f, Ok(Some(_)));
        if tx.send(f).is_err() || last {
            return;
        }
    });
    frames
}

/// A connection to the backup and the checkpoints sent over it.
pub struct Primary<S: Source> {
    src: S,
    opts: Options,
    frames: Frames,
    tx: BufWriter<TcpStream>,
    _conn: Conn,
    /// The last checkpoint sent, and the last acknowledged.
    seq: u64,
    acked: u64,
    inflight: VecDeque<InFlight>,
    last_start: Option<Instant>,
    first: bool,
    /// The record buffers of the last checkpoint, kept for the next (their pages
    /// stay mapped: no page faults to fill them again).
    bufs: [Vec<u8>; 2],
}

/// Record buffers larger than this are not kept between checkpoints (the first
/// checkpoint's, which holds every page).
const KEEP_BUFFER: usize = 32 << 20;

fn protocol(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<S: Source> Primary<S> {
    /// Connects to the backup at `addr` and greets it; the next checkpoint is
    /// numbered after the backup's last committed one.
    pub fn connect(mut src: S, addr: &str, opts: Options) -> io::Result<Primary<S>> {
        if opts.precopy && !src.atomic_collect() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "pre-copy needs a get-and-clear that is atomic against writes; soft-dirty's \
                 pagemap read and clear_refs are two steps",
            ));
        }
        if opts.window == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a window of 0 checkpoints in flight",
            ));
        }
        // The backup has none of the bases diffs would refer to.
        src.set_diff(&[])?;
        let conn = TcpStream::connect(addr)?;
        conn.set_nodelay(true)?;
        let mut rx = BufReader::new(conn.try_clone()?);
        let guard = Conn(conn.try_clone()?);
        let mut tx = BufWriter::with_capacity(1 << 20, conn);
        let bytes = src.pages() * PAGE as u64;
        Frame::Hello {
            version: stream::VERSION,
            segment: opts.params.segment() as u32,
            max_changed: opts.params.max_changed,
            bytes,
        }
        .write(&mut tx)?;
        tx.flush()?;
        let seq = match Frame::read(&mut rx)? {
            Some(Frame::HelloReply {
                version,
                bytes: b,
                committed,
            }) if version == stream::VERSION && b == bytes => committed,
            Some(Frame::Error(m)) => return Err(protocol(format!("the backup refused: {m}"))),
            other => return Err(protocol(format!("unexpected greeting {other:?}"))),
        };
        Ok(Primary {
            frames: read_frames(rx),
            tx,
            _conn: guard,
            src,
            opts,
            seq,
            acked: seq,
            inflight: VecDeque::new(),
            last_start: None,
            first: true,
            bufs: Default::default(),
        })
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.src
    }

    /// The source, mutably (between checkpoints).
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.src
    }

    /// Ends the connection and gives the source back (to connect again: the next
    /// connection's first checkpoint sends every page).
    pub fn into_source(self) -> S {
        self.src
    }

    /// The last checkpoint number used (sent, or being sent).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The last checkpoint the backup acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Checkpoints sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    fn send_records(&mut self, records: &[u8], crc: &mut Crc32c) -> io::Result<()> {
        crc.update(records);
        // Frames of at most MAX_PAYLOAD, cut at record boundaries.
        let mut at = 0;
        let mut end = 0;
        let p = self.opts.params;
        for rec in diff::records(p, records) {
            let rec = rec.map_err(|e| protocol(format!("bad record from the source: {e:?}")))?;
            let len = match rec {
                diff::Record::Full { .. } => diff::MAX_RECORD,
                diff::Record::Diff { data, .. } => diff::HEADER + 8 + data.len(),
            };
            if (end + len - at) as u64 > stream::MAX_PAYLOAD {
                stream::write_records(&mut self.tx, &records[at..end])?;
                at = end;
            }
            end += len;
        }
        if end > at {
            stream::write_records(&mut self.tx, &records[at..end])?;
        }
        Ok(())
    }

    /// Takes one checkpoint (see the module documentation) and sends it; returns the
    /// reports of the checkpoints the backup acknowledged meanwhile, oldest first —
    /// this one's once [`Options::window`] is 1.
    pub fn checkpoint(&mut self, pause: &mut dyn Pause) -> io::Result<Vec<Report>> {
        // Diff lists that arrived since the last checkpoint apply to this one.
        let mut done = self.take_frames(usize::MAX)?;
        let start = Instant::now();
        let interval = self.last_start.map(|t| start.duration_since(t));
        self.last_start = Some(start);
        let seq = self.seq + 1;
        let p = self.opts.params;
        let pages = self.src.pages();
        let all = || (0..pages).collect::<Vec<u64>>();
        let mut r = Report {
            seq,
            interval_ns: interval.map_or(0, |d| d.as_nanos() as u64),
            ..Default::default()
        };
        let mut crc = Crc32c::new();
        let mut sent = BTreeSet::new();
        let [mut pre, mut records] = std::mem::take(&mut self.bufs);
        pre.clear();
        records.clear();
        let snapshot = self.opts.cow && !pause.holds() && self.src.snapshots();
        let mut stop_set;
        if self.opts.precopy && !snapshot {
            let mut d1 = self.src.collect_clear()?;
            if self.first {
                d1 = all();
            }
            let history = self.src.history()?;
            let window = self.opts.cold_after.saturating_mul(2).min(63);
            let cold_mask = ((1u64 << window) - 1) << 1;
            let (cold, hot): (Vec<u64>, Vec<u64>) = d1.iter().partition(|&&i| {
                self.first || history.get(i as usize).is_some_and(|h| h & cold_mask == 0)
            });
            r.diffed += self.src.copy(p, &cold, &mut pre)?;
            r.precopied = cold.len() as u64;
            sent.extend(cold.iter().copied());
            // Sent after the stop with the rest: the shorter the time from this
            // collect to the stop, the fewer pages the program dirties in it.
            stop_set = hot;
        } else {
            stop_set = Vec::new();
        }
        let stopped = Instant::now();
        if !snapshot {
            pause.stop()?;
        }
        r.stop_wait_ns = stopped.elapsed().as_nanos() as u64;
        let (mut collect_ns, mut copy_ns) = (0, 0);
        let copied = (|| {
            let t = Instant::now();
            let d2 = if snapshot {
                // The first checkpoint: a snapshot of every page.
                self.src.collect_snapshot(self.first)?
            } else {
                self.src.collect_clear()?
            };
            collect_ns = t.elapsed().as_nanos() as u64;
            if self.first && !self.opts.precopy {
                stop_set = all();
            } else {
                stop_set.extend(d2);
                stop_set.sort_unstable();
                stop_set.dedup();
            }
            let t = Instant::now();
            let d = self.src.copy(p, &stop_set, &mut records);
            copy_ns = t.elapsed().as_nanos() as u64;
            d
        })();
        (r.collect_ns, r.copy_ns) = (collect_ns, copy_ns);
        let resumed = if snapshot { Ok(()) } else { pause.resume() };
        r.snapshot = snapshot;
        r.stopped_ns = if snapshot {
            collect_ns
        } else {
            stopped.elapsed().as_nanos() as u64
        };
        r.diffed += copied?;
        resumed?;
        r.stop_copied = stop_set.len() as u64;
        let sending = Instant::now();
        sent.extend(stop_set.iter().copied());
        Frame::Begin { seq }.write(&mut self.tx)?;
        self.send_records(&pre, &mut crc)?;
        self.send_records(&records, &mut crc)?;
        let nrec = r.precopied + r.stop_copied;
        Frame::End {
            seq,
            records: nrec,
            crc: crc.finish(),
        }
        .write(&mut self.tx)?;
        self.tx.flush()?;
        r.send_ns = sending.elapsed().as_nanos() as u64;
        r.pages = sent.len() as u64;
        r.record_bytes = (pre.len() + records.len()) as u64;
        for b in [&mut pre, &mut records] {
            if b.capacity() > KEEP_BUFFER {
                *b = Vec::new();
            }
        }
        self.bufs = [pre, records];
        self.seq = seq;
        self.first = false;
        self.inflight.push_back(InFlight {
            report: r,
            start,
            sent: Instant::now(),
        });
        done.extend(self.take_frames(self.opts.window as usize - 1)?);
        Ok(done)
    }

    /// Waits until the backup acknowledged every checkpoint sent; their reports.
    pub fn drain(&mut self) -> io::Result<Vec<Report>> {
        self.take_frames(0)
    }

    /// Takes what the backup sent — acknowledgements, diff lists — waiting while
    /// more than `in_flight` checkpoints are unacknowledged; the reports of those
    /// acknowledged.
    fn take_frames(&mut self, in_flight: usize) -> io::Result<Vec<Report>> {
        let mut done = Vec::new();
        loop {
            let waiting = self.inflight.front().map(|f| f.report.seq);
            let frame = if self.inflight.len() > in_flight {
                self.frames.recv().unwrap_or(Ok(None))
            } else {
                match self.frames.try_recv() {
                    Ok(f) => f,
                    Err(TryRecvError::Empty) => return Ok(done),
                    // Nothing in flight: the next send finds out.
                    Err(TryRecvError::Disconnected) if waiting.is_none() => return Ok(done),
                    Err(TryRecvError::Disconnected) => Ok(None),
                }
            };
            let which = || waiting.map_or("a checkpoint".into(), |s| format!("checkpoint {s}"));
            match frame? {
                Some(Frame::Ack { seq }) if Some(seq) == waiting => {
                    let f = self
                        .inflight
                        .pop_front()
                        .expect("the checkpoint waited for");
                    let mut r = f.report;
                    r.ack_ns = f.sent.elapsed().as_nanos() as u64;
                    r.total_ns = f.start.elapsed().as_nanos() as u64;
                    self.acked = seq;
                    done.push(r);
                }
                Some(Frame::DiffList(pages)) => {
                    if self.opts.diff {
                        if pages.iter().any(|&p| p >= self.src.pages()) {
                            return Err(protocol("a diff list with pages past the region"));
                        }
                        self.src.set_diff(&pages)?;
                    }
                }
                Some(Frame::Error(m)) => {
                    return Err(protocol(format!("the backup failed {}: {m}", which())))
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the backup closed the connection before acknowledging {}",
                            which()
                        ),
                    ))
                }
                Some(other) => {
                    return Err(protocol(format!(
                        "unexpected {other:?} while waiting for {}",
                        which()
                    )))
                }
            }
        }
    }
}
