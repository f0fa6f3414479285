//! `memkit ckpt run` (the checkpointer) and `memkit ckpt verify`.

use memkit::core::ckpt::diff::{Params, PAGE};
use memkit::dev::{CkptMap, Device, DeviceKind};
use memkit::primary::{Options, Pause, Primary, RegionSource, Report, SoftDirtySource, Source};
use memkit::replica::{DirLock, Replica};
use memkit::target::{Guardian, Target};
use memkit::track::SoftDirty;
use serde::Serialize;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What happens to the target after the last checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Then {
    /// Leave it running.
    Continue,
    /// Leave it stopped, exactly as the last checkpoint (for `memkit ckpt verify`).
    Stop,
    /// Kill it.
    Kill,
}

/// How checkpoints are taken and where they go (`run` and `restore`).
#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointOpts {
    /// The backup's address (required by `run`; `restore` without it only starts
    /// COMMAND and waits for it).
    #[arg(long)]
    pub backup: Option<String>,
    /// Milliseconds from one checkpoint's start to the next.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// Checkpoints to take (0: until the target exits).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Two-phase pre-copy driven by the modification history.
    #[arg(long)]
    pub precopy: bool,
    /// Pre-copy: a dirty page is cold if not written in this many checkpoints before.
    #[arg(long, default_value_t = 2)]
    pub cold_after: u32,
    /// Send every page whole (ignore the backup's diff list).
    #[arg(long)]
    pub no_diff: bool,
    /// Diff segment bytes (a power of two, 64 to 4096).
    #[arg(long, default_value_t = 256)]
    pub segment: u32,
    /// A page with more changed segments goes whole.
    #[arg(long, default_value_t = 8)]
    pub max_changed: u32,
    /// What to do with the target at the end (default: kill a started COMMAND,
    /// leave a --pid running).
    #[arg(long, value_enum)]
    pub then: Option<Then>,
    /// Print each checkpoint's report (a JSON line) once the backup acknowledged it.
    #[arg(long)]
    pub reports: bool,
    /// Checkpoints sent and not yet acknowledged by the backup, at most: the next
    /// one starts without waiting for the acknowledgement of these (1: every
    /// checkpoint waits for its own).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub window: u32,
    /// Do not stop the target: each checkpoint is a copy-on-write snapshot of its
    /// region (the first one of every page), and its writes wait only during the
    /// collect (memkit regions, tracked in the recording mode).
    #[arg(long, conflicts_with = "precopy")]
    pub cow: bool,
}

/// The checkpointer's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct RunOpts {
    #[command(flatten)]
    pub ck: CheckpointOpts,
    /// Checkpoint this running process instead of starting COMMAND.
    #[arg(long)]
    pub pid: Option<i32>,
    /// With --pid: its descriptor of /dev/memkit-ckpt (default: the lowest one).
    #[arg(long)]
    pub fd: Option<i32>,
    /// With --pid: track `--bytes` at `--addr` through soft-dirty instead (any memory).
    #[arg(long)]
    pub soft_dirty: bool,
    /// With --soft-dirty: the start address (hex with 0x, or decimal).
    #[arg(long, value_parser = parse_addr)]
    pub addr: Option<u64>,
    /// Region bytes for COMMAND, or the length tracked with --soft-dirty.
    #[arg(long, value_parser = crate::journal::parse_size)]
    pub bytes: Option<u64>,
    /// The program to start and checkpoint, with its region passed as
    /// MEMKIT_CKPT_FD / MEMKIT_CKPT_OFFSET (`memkit workload ckpt-writer` maps it).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `memkit ckpt restore`'s settings.
#[derive(clap::Args, Debug, Clone)]
pub struct RestoreOpts {
    /// The replica directory: COMMAND's region holds its last committed checkpoint.
    #[arg(long)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub ck: CheckpointOpts,
    /// The program to start on the restored region, passed to it as
    /// MEMKIT_CKPT_FD / MEMKIT_CKPT_OFFSET, as `memkit ckpt run` does.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_addr(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("'{s}' is not an address"))
}

/// The summary `run` prints.
#[derive(Serialize, Default)]
pub struct Summary {
    pid: i32,
    /// `restore`: the checkpoint the program's region was restored to.
    #[serde(skip_serializing_if = "Option::is_none")]
    restored: Option<u64>,
    source: &'static str,
    precopy: bool,
    /// Checkpoints taken as copy-on-write snapshots (`--cow`).
    cow: bool,
    /// With `--cow`: pages the program wrote before they were copied out of a
    /// snapshot, over the run; each cost its write fault a page copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    cow_copies: Option<u64>,
    diff: bool,
    checkpoints: u64,
    first_seq: u64,
    last_seq: u64,
    secs: f64,
    /// All checkpoints over the whole run, the first (every page) included.
    checkpoints_per_s: f64,
    /// The checkpoints after the first over the time after it.
    steady_checkpoints_per_s: f64,
    /// Stop times of the checkpoints after the first.
    stopped_us_p50: f64,
    stopped_us_p99: f64,
    stopped_us_max: f64,
    pages: u64,
    precopied: u64,
    diffed: u64,
    record_bytes: u64,
    /// What the same pages would take whole.
    full_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1e3
}

fn set_cloexec(fd: i32, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD on a descriptor this process owns; no memory is involved.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new region of `bytes` and its mmap offset.
fn new_region(bytes: u64) -> Result<(Device, u64), String> {
    let dev = Device::open(DeviceKind::Ckpt).map_err(|e| format!("/dev/memkit-ckpt: {e}"))?;
    let off = dev
        .ckpt_create(bytes)
        .map_err(|e| format!("CKPT_CREATE of {bytes} bytes: {e}"))?;
    Ok((dev, off))
}

/// Starts `command` with the region of `dev` at `off` passed to it.
fn spawn(command: &[String], dev: Device, off: u64) -> Result<(Child, Device), String> {
    let fd = dev.as_fd().as_raw_fd();
    set_cloexec(fd, false).map_err(|e| e.to_string())?;
    let child = Command::new(&command[0])
        .args(&command[1..])
        .env("MEMKIT_CKPT_FD", fd.to_string())
        .env("MEMKIT_CKPT_OFFSET", off.to_string())
        .stdout(io::stderr())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", command[0]));
    set_cloexec(fd, true).map_err(|e| e.to_string())?;
    Ok((child?, dev))
}

/// Stops the target and leaves it stopped.
struct HoldStopped<'a>(&'a mut Target);

impl Pause for HoldStopped<'_> {
    fn stop(&mut self) -> io::Result<()> {
        Pause::stop(self.0)
    }

    fn resume(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn holds(&self) -> bool {
        true
    }
}

fn checkpoints<S: Source>(
    src: S,
    o: &CheckpointOpts,
    target: &mut Target,
    s: &mut Summary,
) -> Result<(), String> {
    let params = Params::new(o.segment, o.max_changed)
        .ok_or("--segment must be a power of two from 64 to 4096")?;
    let opts = Options {
        params,
        diff: !o.no_diff,
        precopy: o.precopy,
        cold_after: o.cold_after,
        window: o.window,
        cow: o.cow,
    };
    let backup = o
        .backup
        .as_deref()
        .ok_or("give the backup's address (--backup)")?;
    let mut primary =
        Primary::connect(src, backup, opts).map_err(|e| format!("backup at {backup}: {e}"))?;
    s.first_seq = primary.seq() + 1;
    let cow_before = primary.source().cow_copies();
    let interval = Duration::from_millis(o.interval_ms);
    let start = Instant::now();
    let mut next = start;
    let mut stopped = Vec::new();
    let mut first_done = None;
    let mut taken = 0u64;
    // A checkpoint the backup acknowledged: reported and counted.
    let mut account = |r: Report, s: &mut Summary| {
        if o.reports {
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{}", serde_json::to_string(&r).expect("serialisable"));
        }
        if r.seq > s.first_seq {
            // The first checkpoint sends everything: not a steady-state stop.
            stopped.push(r.stopped_ns);
        } else {
            first_done = Some(Instant::now());
        }
        s.checkpoints += 1;
        s.last_seq = r.seq;
        s.pages += r.pages;
        s.precopied += r.precopied;
        s.diffed += r.diffed;
        s.record_bytes += r.record_bytes;
        s.full_bytes += r.pages * PAGE as u64;
    };
    while o.count == 0 || taken < o.count {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        // From this one's start: after a late checkpoint the next one starts at
        // once, but missed ones are not made up.
        next = Instant::now() + interval;
        // With `--then stop` the last checkpoint leaves the target stopped: it is
        // then exactly the replica.
        let last = o.count != 0 && taken + 1 == o.count;
        let mut hold = HoldStopped(target);
        let pause: &mut dyn Pause = if last && o.then == Some(Then::Stop) {
            &mut hold
        } else {
            hold.0
        };
        // The first checkpoint sends every page: say so if it takes a while, and
        // wait for its acknowledgement.
        let progress = (taken == 0).then(|| {
            crate::progress::Progress::start(
                format!("checkpoint {} (the first: every page)", primary.seq() + 1),
                None,
                "pages",
            )
        });
        let mut acked = primary.checkpoint(pause);
        if let Some(p) = progress {
            if let Ok(a) = &mut acked {
                match primary.drain() {
                    Ok(more) => a.extend(more),
                    Err(e) => acked = Err(e),
                }
            }
            p.finish(if acked.is_ok() { "committed" } else { "failed" });
        }
        match acked {
            Ok(rs) => rs.into_iter().for_each(|r| account(r, s)),
            Err(e) if Target::new(target.pid()).is_err() || e.to_string().contains("exited") => {
                s.ended = Some(format!("the target exited: {e}"));
                break;
            }
            Err(e) => return Err(format!("checkpoint {}: {e}", primary.seq())),
        }
        taken += 1;
    }
    // Those still in flight (all were sent whole before the loop ended).
    let rest = primary
        .drain()
        .map_err(|e| format!("waiting for checkpoint {}: {e}", primary.acked() + 1))?;
    rest.into_iter().for_each(|r| account(r, s));
    if o.cow {
        s.cow_copies = primary
            .source()
            .cow_copies()
            .zip(cow_before)
            .map(|(now, before)| now.saturating_sub(before));
    }
    s.secs = start.elapsed().as_secs_f64();
    s.checkpoints_per_s = s.checkpoints as f64 / s.secs.max(1e-9);
    if let Some(t) = first_done {
        s.steady_checkpoints_per_s =
            s.checkpoints.saturating_sub(1) as f64 / t.elapsed().as_secs_f64().max(1e-9);
    }
    stopped.sort_unstable();
    s.stopped_us_p50 = pct(&stopped, 0.5);
    s.stopped_us_p99 = pct(&stopped, 0.99);
    s.stopped_us_max = pct(&stopped, 1.0);
    Ok(())
}

type Body<'a> = Box<dyn FnOnce(&mut Target, &mut Summary) -> Result<(), String> + 'a>;

/// Runs the checkpointer.
pub fn run(o: &RunOpts) -> Result<Summary, String> {
    if o.ck.backup.is_none() {
        return Err("give the backup's address (--backup)".into());
    }
    let mut s = Summary::new(&o.ck);
    let ck = &o.ck;
    let (target, child, body): (Target, Option<Child>, Body) = match (o.pid, o.command.is_empty()) {
        (Some(_), false) => return Err("--pid and a COMMAND exclude each other".into()),
        (None, true) => return Err("give --pid PID or -- COMMAND".into()),
        (None, false) => {
            if o.soft_dirty {
                return Err("--soft-dirty needs --pid (and --addr, --bytes)".into());
            }
            let bytes = o.bytes.ok_or("a COMMAND needs --bytes (the region size)")?;
            let (dev, off) = new_region(bytes)?;
            let (c, dev) = spawn(&o.command, dev, off)?;
            let t = Target::new(c.id() as i32).map_err(|e| e.to_string())?;
            s.source = "memkit";
            let src = RegionSource::new(dev, ck.cow).map_err(|e| e.to_string())?;
            (t, Some(c), Box::new(move |t, s| checkpoints(src, ck, t, s)))
        }
        (Some(pid), true) => {
            let t = Target::new(pid).map_err(|e| format!("process {pid}: {e}"))?;
            if o.soft_dirty {
                if ck.cow {
                    return Err("--cow needs a memkit region, not --soft-dirty".into());
                }
                let (addr, len) = o
                    .addr
                    .zip(o.bytes)
                    .ok_or("--soft-dirty needs --addr and --bytes")?;
                s.source = "soft-dirty";
                let src = SoftDirtySource::new(pid, addr, len)
                    .map_err(|e| format!("soft-dirty tracking of {pid}: {e}"))?;
                (t, None, Box::new(move |t, s| checkpoints(src, ck, t, s)))
            } else {
                let path = DeviceKind::Ckpt.path().display().to_string();
                let fd = match o.fd {
                    Some(fd) => fd,
                    None => *t
                        .fds_of(&path)
                        .map_err(|e| e.to_string())?
                        .first()
                        .ok_or(format!("process {pid} has no {path} open"))?,
                };
                let owned = t
                    .take_fd(fd)
                    .map_err(|e| format!("pidfd_getfd of {pid}'s fd {fd}: {e}"))?;
                let dev = Device::from_fd(owned, DeviceKind::Ckpt).map_err(|e| e.to_string())?;
                s.source = "memkit";
                let src = RegionSource::new(dev, ck.cow).map_err(|e| e.to_string())?;
                (t, None, Box::new(move |t, s| checkpoints(src, ck, t, s)))
            }
        }
    };
    drive(target, child, body, ck, s)
}

/// Runs `body` (the checkpoints) on `target`, then does what `--then` asks.
fn drive(
    mut target: Target,
    child: Option<Child>,
    body: Body,
    ck: &CheckpointOpts,
    mut s: Summary,
) -> Result<Summary, String> {
    s.pid = target.pid();
    // Continues the target if this process dies while the target is stopped;
    // dropped at the end, after `--then` did what it asked.
    let _guardian = Guardian::spawn(&target).map_err(|e| format!("guardian process: {e}"))?;
    let result = body(&mut target, &mut s);
    let then = ck.then.unwrap_or(if child.is_some() {
        Then::Kill
    } else {
        Then::Continue
    });
    match then {
        Then::Continue => {}
        Then::Stop => {
            // Already stopped by the last checkpoint, unless the run ended early.
            if s.ended.is_none() && ck.count == 0 {
                target
                    .stop(Duration::from_secs(10))
                    .map_err(|e| format!("stopping the target: {e}"))?;
            }
        }
        Then::Kill => {
            // SAFETY: kill(2) has no memory effects in this process.
            unsafe { libc::kill(target.pid(), libc::SIGKILL) };
        }
    }
    if let Some(mut c) = child {
        if then == Then::Kill {
            let _ = c.wait();
        } else {
            // Not waited for: it outlives this process (reparented).
            std::mem::forget(c);
        }
    }
    result.map(|()| s)
}

/// A new region holding the last committed checkpoint of the replica in `dir`, its
/// mmap offset, and that checkpoint's number.
fn restored_region(dir: &std::path::Path) -> Result<(Device, u64, u64), String> {
    let where_ = dir.display();
    // Not while a backup serves the directory; opening recovers an interrupted
    // commit.
    let _lock = DirLock::take(dir).map_err(|e| format!("{where_}: {e}"))?;
    let replica = Replica::open(dir, None).map_err(|e| format!("{where_}: {e}"))?;
    let seq = replica.committed();
    if seq == 0 {
        return Err(format!("{where_} holds no committed checkpoint"));
    }
    let bytes = replica.bytes();
    let len = usize::try_from(bytes).map_err(|_| format!("{where_}: a replica too large"))?;
    let (dev, off) = new_region(bytes)?;
    let map = CkptMap::new(&dev, off, len).map_err(|e| format!("mmap of the region: {e}"))?;
    let mut buf = vec![0u8; 256 * PAGE];
    let mut at = 0;
    while at < len {
        let n = buf.len().min(len - at);
        replica
            .read_at(&mut buf[..n], at as u64)
            .map_err(|e| format!("reading {where_}/replica: {e}"))?;
        map.write_bytes(at, &buf[..n]);
        at += n;
    }
    map.unmap()
        .map_err(|e| format!("munmap of the region: {e}"))?;
    Ok((dev, off, seq))
}

/// Fails over: starts the command on a region restored from the replica, and
/// checkpoints it to `--backup` if one is given, else waits for it.
pub fn restore(o: &RestoreOpts) -> Result<Summary, String> {
    let (dev, off, seq) = restored_region(&o.dir)?;
    let (mut child, dev) = spawn(&o.command, dev, off)?;
    let mut s = Summary::new(&o.ck);
    s.restored = Some(seq);
    s.source = "memkit";
    if o.ck.backup.is_none() {
        // The program holds the region; this process waits for it.
        drop(dev);
        s.pid = child.id() as i32;
        let status = child
            .wait()
            .map_err(|e| format!("waiting for {}: {e}", o.command[0]))?;
        if !status.success() {
            return Err(format!(
                "{} (restored to checkpoint {seq}) ended: {status}",
                o.command[0]
            ));
        }
        s.ended = Some(format!("the program exited: {status}"));
        return Ok(s);
    }
    let target = Target::new(child.id() as i32).map_err(|e| e.to_string())?;
    let src = RegionSource::new(dev, o.ck.cow).map_err(|e| e.to_string())?;
    let ck = &o.ck;
    drive(
        target,
        Some(child),
        Box::new(move |t, s| checkpoints(src, ck, t, s)),
        ck,
        s,
    )
}

/// `memkit ckpt verify`'s settings.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyOpts {
    /// The checkpointed process.
    #[arg(long)]
    pub pid: i32,
    /// The backup's replica directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The memory's address in the process (default: its mapping of
    /// /dev/memkit-ckpt; needed for other memory).
    #[arg(long, value_parser = parse_addr)]
    pub addr: Option<u64>,
    /// Leave the process stopped afterwards (else it is continued).
    #[arg(long)]
    pub keep_stopped: bool,
}

/// `verify`'s answer.
#[derive(Serialize)]
pub struct Verdict {
    pid: i32,
    checkpoint: u64,
    addr: String,
    replica_offset: u64,
    pages: u64,
    pub equal: bool,
    differing_pages: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_difference: Option<u64>,
}

/// Compares the process's memory with the replica, the process stopped.
pub fn verify(o: &VerifyOpts) -> Result<Verdict, String> {
    let t = Target::new(o.pid).map_err(|e| format!("process {}: {e}", o.pid))?;
    let checkpoint =
        Replica::committed_in(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let replica = File::open(o.dir.join("replica")).map_err(|e| e.to_string())?;
    let rbytes = replica.metadata().map_err(|e| e.to_string())?.len();
    let (addr, offset, len) = match o.addr {
        Some(a) => (a, 0, rbytes),
        None => {
            let path = DeviceKind::Ckpt.path().display().to_string();
            let maps = t.mappings_of(&path).map_err(|e| e.to_string())?;
            let &(start, end, pgoff) = maps
                .iter()
                .max_by_key(|m| m.1 - m.0)
                .ok_or(format!("process {} maps no {path}: give --addr", o.pid))?;
            // A region's mmap offsets are its window (id << 32) plus the byte offset.
            let off = pgoff & 0xffff_ffff;
            (start, off, (end - start).min(rbytes.saturating_sub(off)))
        }
    };
    let sd = SoftDirty::open(o.pid).map_err(|e| e.to_string())?;
    t.stop(Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut v = Verdict {
        pid: o.pid,
        checkpoint,
        addr: format!("{addr:#x}"),
        replica_offset: offset,
        pages: len / PAGE as u64,
        equal: true,
        differing_pages: 0,
        first_difference: None,
    };
    let chunk = 256 * PAGE;
    let (mut mem, mut rep) = (vec![0u8; chunk], vec![0u8; chunk]);
    let mut at = 0u64;
    let progress = crate::progress::Progress::start(
        format!("comparing process {} with the replica", o.pid),
        Some(v.pages),
        "pages",
    );
    let compared = (|| -> Result<(), String> {
        while at < len {
            progress.set(at / PAGE as u64);
            let n = chunk.min((len - at) as usize);
            sd.read(addr + at, &mut mem[..n])
                .map_err(|e| format!("reading the process at {:#x}: {e}", addr + at))?;
            replica
                .read_exact_at(&mut rep[..n], offset + at)
                .map_err(|e| format!("reading the replica: {e}"))?;
            for (i, (a, b)) in mem[..n].chunks(PAGE).zip(rep[..n].chunks(PAGE)).enumerate() {
                if a != b {
                    let page = (offset + at) / PAGE as u64 + i as u64;
                    v.first_difference.get_or_insert(page);
                    v.differing_pages += 1;
                    v.equal = false;
                }
            }
            at += n as u64;
        }
        progress.set(at / PAGE as u64);
        Ok(())
    })();
    progress.finish(match (&compared, v.equal) {
        (Err(_), _) => "failed",
        (Ok(()), true) => "equal",
        (Ok(()), false) => "different",
    });
    if !o.keep_stopped {
        t.resume().map_err(|e| e.to_string())?;
    }
    compared.map(|()| v)
}

impl Summary {
    fn new(ck: &CheckpointOpts) -> Summary {
        Summary {
            precopy: ck.precopy,
            cow: ck.cow,
            diff: !ck.no_diff,
            ..Default::default()
        }
    }

    /// The summary as text.
    pub fn render(&self) -> String {
        let mut s = match self.restored {
            Some(seq) => format!("restored to checkpoint {seq}\n"),
            None => String::new(),
        };
        if self.restored.is_some() && self.checkpoints == 0 {
            return s + &format!(
                "process {}: {}\n",
                self.pid,
                self.ended.as_deref().unwrap_or("")
            );
        }
        s += &format!(
            "{} checkpoints ({}..{}) of process {} ({}) in {:.2} s: {:.1}/s, {:.1}/s after the first\n",
            self.checkpoints,
            self.first_seq,
            self.last_seq,
            self.pid,
            self.source,
            self.secs,
            self.checkpoints_per_s,
            self.steady_checkpoints_per_s
        );
        s += &format!(
            "stopped: p50 {:.0} us, p99 {:.0} us, max {:.0} us{}\n",
            self.stopped_us_p50,
            self.stopped_us_p99,
            self.stopped_us_max,
            if self.precopy { " (pre-copy)" } else { "" }
        );
        s += &format!(
            "pages sent: {} ({} pre-copied, {} as diffs); {} record bytes for {} bytes of pages\n",
            self.pages, self.precopied, self.diffed, self.record_bytes, self.full_bytes
        );
        if let Some(e) = &self.ended {
            s += &format!("ended early: {e}\n");
        }
        s
    }
}

impl Verdict {
    /// The verdict as text.
    pub fn render(&self) -> String {
        match self.first_difference {
            None => format!(
                "process {} at {} equals the replica (checkpoint {}): {} pages\n",
                self.pid, self.addr, self.checkpoint, self.pages
            ),
            Some(p) => format!(
                "process {} DIFFERS from the replica (checkpoint {}): {} of {} pages, first page {p}\n",
                self.pid, self.checkpoint, self.differing_pages, self.pages
            ),
        }
    }
}
