//! `memkit ckpt`: checkpoint dirty tracking on `/dev/memkit-ckpt`, the
//! checkpointer (`run`), the backup and `verify`; and, under `memkit workload`, a
//! program to checkpoint (`ckpt-writer`) and the demo.
//!
//! `memkit workload ckpt-demo` shows the mechanism in one process: it creates and maps a
//! region, writes it, then runs checkpoint rounds — a few small writes, a clearing
//! collect, a copy of the dirty pages as segment diffs where the page is in the diff
//! set, applied to an in-memory replica that must equal the region after every round.

mod backup;
mod log;
mod run;
mod writer;

use crate::exit::{self, emit, fail};
use clap::{Args, Subcommand};
use memkit::core::ckpt::diff;
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use serde::Serialize;
use std::process::ExitCode;

/// `memkit ckpt` subcommands.
#[derive(Subcommand)]
pub enum CkptCmd {
    /// Checkpoint a process at intervals and stream the checkpoints to a backup.
    Run(run::RunOpts),
    /// Receive checkpoints into a replica directory, committing each atomically.
    Backup(backup::BackupOpts),
    /// Compare a stopped process's memory with a replica, byte for byte.
    ///
    /// Exit status 0 if equal, 3 if they differ, 1 if they could not be compared.
    Verify(run::VerifyOpts),
    /// Fail over: start COMMAND on a region holding a replica's last committed
    /// checkpoint, and go on checkpointing it to `--backup` if given.
    Restore(run::RestoreOpts),
}

/// `memkit workload ckpt-demo`'s settings.
#[derive(Args)]
pub struct DemoOpts {
    /// Pages of the region.
    #[arg(long, default_value_t = 64)]
    pages: u64,
    /// Checkpoint rounds after the first (full) one.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Bytes per diff segment (a power of two, 64 to 4096).
    #[arg(long, default_value_t = 256)]
    segment: u32,
    /// A page with more changed segments is sent whole.
    #[arg(long, default_value_t = 4)]
    max_changed: u32,
}

pub use log::LogOpts;
pub use writer::WriterOpts;

/// One checkpoint round of the demo.
#[derive(Serialize)]
struct Round {
    round: u32,
    /// Runs of dirty pages `[first, first + count)`.
    dirty: Vec<(u64, u64)>,
    dirty_pages: usize,
    diffed_pages: u64,
    record_bytes: usize,
    full_page_bytes: usize,
    replica_equal: bool,
}

#[derive(Serialize)]
struct Demo {
    pages: u64,
    mmap_offset: u64,
    diff_set: (u64, u64),
    rounds: Vec<Round>,
    /// History words of the first pages: bit k = written k intervals ago.
    history: Vec<(u64, String)>,
    collects: u64,
    pages_copied: u64,
    pages_diffed: u64,
}

/// A tiny xorshift generator: the demo's writes are the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn round(
    dev: &Device,
    map: &CkptMap,
    replica: &mut [u8],
    p: diff::Params,
    n: u32,
) -> Result<Round, String> {
    let pages = replica.len() as u64 / CKPT_PAGE_SIZE as u64;
    let runs = dev
        .ckpt_collect_ranges(0, pages, true)
        .map_err(|e| format!("CKPT_COLLECT: {e}"))?;
    let dirty: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.first..r.first + r.count)
        .collect();
    let (mut diffed, mut bytes) = (0, 0);
    for batch in dirty.chunks(memkit::core::abi::CKPT_COPY_DIFF_MAX_PAGES as usize) {
        let (records, d) = dev
            .ckpt_copy_diff(batch, p.segment() as u32, p.max_changed)
            .map_err(|e| format!("CKPT_COPY_DIFF: {e}"))?;
        for rec in diff::records(p, &records) {
            let rec = rec.map_err(|e| format!("bad record from the module: {e:?}"))?;
            let at = rec.page() as usize * CKPT_PAGE_SIZE;
            let dst = replica
                .get_mut(at..at + CKPT_PAGE_SIZE)
                .ok_or("a record past the region")?;
            rec.apply(p, dst).map_err(|e| format!("{e:?}"))?;
        }
        diffed += d;
        bytes += records.len();
    }
    Ok(Round {
        round: n,
        dirty: runs.iter().map(|r| (r.first, r.count)).collect(),
        dirty_pages: dirty.len(),
        diffed_pages: diffed,
        record_bytes: bytes,
        full_page_bytes: dirty.len() * CKPT_PAGE_SIZE,
        replica_equal: map.to_vec() == replica,
    })
}

fn demo(pages: u64, rounds: u32, segment: u32, max_changed: u32) -> Result<Demo, String> {
    let p = diff::Params::new(segment, max_changed)
        .ok_or("--segment must be a power of two from 64 to 4096")?;
    let dev = Device::open(DeviceKind::Ckpt).map_err(|e| format!("open /dev/memkit-ckpt: {e}"))?;
    let bytes = pages
        .checked_mul(CKPT_PAGE_SIZE as u64)
        .ok_or("--pages is too large")?;
    let off = dev
        .ckpt_create(bytes)
        .map_err(|e| format!("CKPT_CREATE: {e}"))?;
    let len = usize::try_from(bytes).map_err(|_| "--pages is too large")?;
    let map = CkptMap::new(&dev, off, len).map_err(|e| format!("mmap: {e}"))?;
    // The first half of the region is worth diffing.
    let set: Vec<u64> = (0..pages / 2).collect();
    dev.ckpt_diff_set(&set, true)
        .map_err(|e| format!("CKPT_DIFF_SET: {e}"))?;
    let mut rng = Rng(0x6d656d6b6974);
    for w in 0..len / 8 {
        map.write_u64(w * 8, rng.next());
    }
    let mut replica = vec![0u8; len];
    let mut out = vec![round(&dev, &map, &mut replica, p, 0)?];
    for n in 1..=rounds {
        // A few small writes (one word) and one page rewritten whole.
        for _ in 0..4 {
            let page = rng.next() % pages;
            let word = rng.next() % (CKPT_PAGE_SIZE as u64 / 8);
            map.write_u64(
                page as usize * CKPT_PAGE_SIZE + word as usize * 8,
                rng.next(),
            );
        }
        let page = rng.next() % pages;
        for w in 0..CKPT_PAGE_SIZE / 8 {
            map.write_u64(page as usize * CKPT_PAGE_SIZE + w * 8, rng.next());
        }
        out.push(round(&dev, &map, &mut replica, p, n)?);
    }
    let shown = pages.min(8);
    let history = dev
        .ckpt_history(0, shown)
        .map_err(|e| format!("CKPT_HISTORY: {e}"))?;
    let s = dev.ckpt_stats().map_err(|e| format!("CKPT_STATS: {e}"))?;
    Ok(Demo {
        pages,
        mmap_offset: off,
        diff_set: (0, pages / 2),
        rounds: out,
        history: (0..shown)
            .zip(history)
            .map(|(p, h)| (p, format!("{:0w$b}", h, w = rounds as usize + 1)))
            .collect(),
        collects: s.collects,
        pages_copied: s.pages_copied,
        pages_diffed: s.pages_diffed,
    })
}

impl Demo {
    fn render(&self) -> String {
        let mut s = format!(
            "region of {} pages mapped at offset {:#x}; diff set: pages {}..{}\n",
            self.pages, self.mmap_offset, self.diff_set.0, self.diff_set.1
        );
        s += "round  dirty pages (runs)              diffed  record bytes / whole pages  replica\n";
        for r in &self.rounds {
            let mut runs: Vec<String> = r
                .dirty
                .iter()
                .take(4)
                .map(|&(f, c)| {
                    if c == 1 {
                        format!("{f}")
                    } else {
                        format!("{f}-{}", f + c - 1)
                    }
                })
                .collect();
            if r.dirty.len() > 4 {
                runs.push("…".into());
            }
            s += &format!(
                "{:>5}  {:>3} {:<28} {:>6}  {:>12} / {:<11}  {}\n",
                r.round,
                r.dirty_pages,
                format!("({})", runs.join(" ")),
                r.diffed_pages,
                r.record_bytes,
                r.full_page_bytes,
                if r.replica_equal { "equal" } else { "DIFFERS" }
            );
        }
        s += "history (bit k: written k checkpoints ago):";
        for (p, h) in &self.history {
            s += &format!(" {p}:{h}");
        }
        s += &format!(
            "\nstats: {} collects, {} pages copied, {} as diffs\n",
            self.collects, self.pages_copied, self.pages_diffed
        );
        s
    }
}

/// Runs `memkit workload ckpt-demo`.
pub fn run_demo(o: &DemoOpts, json: bool) -> ExitCode {
    match demo(o.pages, o.rounds, o.segment, o.max_changed) {
        Ok(d) if d.rounds.iter().all(|r| r.replica_equal) => {
            emit(json, &d, || d.render());
            ExitCode::SUCCESS
        }
        Ok(d) => {
            emit(json, &d, || d.render());
            fail(json, "the replica differs from the region", exit::ERROR)
        }
        Err(e) => fail(json, &e, exit::ERROR),
    }
}

/// Runs `memkit workload ckpt-writer`.
pub fn run_writer(o: &WriterOpts, json: bool) -> ExitCode {
    match writer::run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(json, &e, exit::ERROR),
    }
}

/// Runs `memkit workload ckpt-log`.
pub fn run_log(o: &LogOpts, json: bool) -> ExitCode {
    match log::run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(json, &e, exit::ERROR),
    }
}

/// Runs a `memkit ckpt` subcommand.
pub fn run(cmd: CkptCmd, json: bool) -> ExitCode {
    match cmd {
        CkptCmd::Run(o) => match run::run(&o) {
            Ok(s) => {
                emit(json, &s, || s.render());
                ExitCode::SUCCESS
            }
            Err(e) => fail(json, &e, exit::ERROR),
        },
        CkptCmd::Restore(o) => match run::restore(&o) {
            Ok(s) => {
                emit(json, &s, || s.render());
                ExitCode::SUCCESS
            }
            Err(e) => fail(json, &e, exit::ERROR),
        },
        CkptCmd::Backup(o) => match backup::run(&o) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(json, &e, exit::ERROR),
        },
        CkptCmd::Verify(o) => match run::verify(&o) {
            Ok(v) => {
                emit(json, &v, || v.render());
                if v.equal {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(exit::DIFFERENT)
                }
            }
            Err(e) => fail(json, &e, exit::ERROR),
        },
    }
}
