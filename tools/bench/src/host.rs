//! `memkit-bench host`: the shared journal engine (`memkit_core`) on a DRAM-backed
//! file with `clwb` + `sfence`, against PMDK's libpmemobj transactions doing the
//! same writes on a pool file next to it, and against the one-fence floor: a
//! hand-written redo log with one fence per transaction and no checksum (the
//! project's reference program `pmdk_tx.c`, written again here so that it runs the
//! same transactions in the same rounds); single-threaded.
//!
//! Every round measures every (workload, variant) once, the variants of a workload
//! back to back in an order that rotates with the round, so that a noisy neighbour
//! hits all variants alike; `report` takes medians over rounds and per-round ratios.

use crate::pmdk::Pmdk;
use crate::sample::{Raw, Sample};
use crate::shm::{Flush, ShmPmem};
use crate::workload::{self, Workload, MAX_RANGES};
use memkit_core::crc32c::Crc32c;
use memkit_core::journal::engine::{self, Journal, JournalError, Mode, OpenScratch, Range, Slot};
use memkit_core::journal::format::Geometry;
use memkit_core::journal::pmem::Pmem;
use memkit_core::journal::recovery::{Plan, SlotScan};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `memkit-bench host`.
#[derive(clap::Args)]
pub struct HostOpts {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 0.5)]
    pub secs: f64,
    /// Rounds (every variant once per round).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Directory of the journal and pool files; must be DRAM-backed.
    #[arg(long, default_value = "/dev/shm")]
    pub dir: PathBuf,
    /// Workloads, comma-separated.
    #[arg(long, default_value = "1x64B,8x64B,1x4KiB", value_parser = workload::parse_list)]
    pub workloads: std::vec::Vec<Workload>,
    /// KEY=VALUE facts recorded with the results (e.g. the PMDK version).
    #[arg(long = "note", value_name = "KEY=VALUE", value_parser = crate::parse_note)]
    pub notes: Vec<(String, String)>,
}

/// Bytes of the data region, both sides.
const DATA: u64 = 16 << 20;
/// Journal geometry: the kernel's defaults.
const MJ_COUNT: u32 = 64;
const MJ_SIZE: u32 = 65536;
/// Transactions of pre-generated offsets; runs cycle through them.
const CYCLE: usize = 4096;
/// Transactions between two looks at the clock.
const CHUNK: usize = 64;

/// The variants, in their base order.
pub const VARIANTS: [&str; 4] = ["memkit-coalesced", "memkit-strict", "pmdk", "floor"];

/// The one-fence floor: per transaction, its entries (offset, length, data; each
/// entry 16 bytes of header and its data rounded up to 64) after a 64-byte header
/// in one of two alternating log areas, the entries written back in one pass, then
/// the header line, one `sfence`, then the data in place, written back and not
/// fenced (the next transaction's fence covers it). Nothing checksummed, nothing
/// recoverable: the cost of the stores and write-backs alone.
struct Floor {
    pm: ShmPmem,
    id: u64,
}

/// Bytes of each of the floor's two log areas (more than [`MAX_RANGES`] entries of
/// 4 KiB).
const FLOOR_LOG: u64 = 64 << 10;

impl Floor {
    fn create(path: PathBuf, flush: Flush) -> io::Result<Floor> {
        let pm = ShmPmem::create(&path, (DATA + 2 * FLOOR_LOG) as usize, flush)?;
        Ok(Floor { pm, id: 0 })
    }

    fn commit(&mut self, offsets: &[u64], src: &[u8]) {
        let log = DATA + (self.id & 1) * FLOOR_LOG;
        let mut e = log + 64;
        for &off in offsets {
            self.pm.store(e, &off.to_le_bytes());
            self.pm.store(e + 8, &(src.len() as u32).to_le_bytes());
            self.pm.store(e + 16, src);
            e += 16 + src.len().next_multiple_of(64) as u64;
        }
        self.pm.write_back_range(log + 64, (e - log - 64) as usize);
        self.pm.store(log, &self.id.to_le_bytes());
        self.pm
            .store(log + 8, &(offsets.len() as u64).to_le_bytes());
        self.pm.write_back_range(log, 64);
        self.pm.fence();
        for &off in offsets {
            self.pm.store(off, src);
            self.pm.write_back_range(off, src.len());
        }
        self.id += 1;
    }
}

fn other<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e:?}"))
}

/// The engine with its slot table and staging buffer on the heap.
type Engine = Journal<Vec<Slot>, Vec<u8>>;

/// The engine on its own shared-memory file.
struct MemkitSide {
    pm: ShmPmem,
    journal: Engine,
}

impl MemkitSide {
    fn create(path: PathBuf, mode: Mode, flush: Flush) -> io::Result<MemkitSide> {
        let dev_size = 4096 + u64::from(MJ_COUNT) * u64::from(MJ_SIZE) + DATA;
        let geo = Geometry::new(dev_size, MJ_COUNT, MJ_SIZE).map_err(other("geometry"))?;
        assert!(geo.data_size >= DATA);
        let mut pm = ShmPmem::create(&path, dev_size as usize, flush)?;
        let mut uuid = [0u8; 16];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = now.as_nanos() as u64 ^ u64::from(std::process::id());
        let mut rng = workload::Rng::new(seed);
        for b in uuid.chunks_mut(8) {
            b.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        engine::format(&mut pm, geo, uuid).map_err(other("format"))?;
        let (journal, _) = open_journal(&mut pm, mode).map_err(other("open"))?;
        Ok(MemkitSide { pm, journal })
    }

    /// Reopens the journal from its bytes (recovery) and checks that recovery finds
    /// the last commit id it handed out (its seal gets the one after it): the file
    /// the benchmark wrote is a valid journal.
    fn check_recovers(&mut self) -> io::Result<()> {
        let next = self.journal.next_id();
        let (_, plan) = open_journal(&mut self.pm, self.journal.mode()).map_err(other("reopen"))?;
        // Recovery seals with the id after the last one handed out.
        if plan.seal_id != Some(next) {
            return Err(io::Error::other(format!(
                "recovery would seal with commit id {:?}, the journal handed out up to {}",
                plan.seal_id,
                next - 1
            )));
        }
        Ok(())
    }
}

/// Opens (recovers) the benchmark's journal on `pm` with scratch of its geometry.
fn open_journal(pm: &mut ShmPmem, mode: Mode) -> Result<(Engine, Plan), JournalError> {
    let n = MJ_COUNT as usize;
    Journal::open(
        pm,
        mode,
        vec![Slot::default(); n],
        vec![0; MJ_SIZE as usize],
        OpenScratch {
            scans: &mut vec![SlotScan::Empty; n],
            order: &mut vec![0; n],
            mj: &mut vec![0; MJ_SIZE as usize],
        },
    )
}

/// Runs `step` (which does [`CHUNK`] transactions) until `dur` has passed; returns
/// the transactions and seconds.
fn timed(dur: Duration, mut step: impl FnMut() -> io::Result<()>) -> io::Result<(u64, f64)> {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        step()?;
        n += CHUNK as u64;
        let t = start.elapsed();
        if t >= dur {
            return Ok((n, t.as_secs_f64()));
        }
    }
}

/// Runs the host benchmark, handing every raw line to `emit`.
pub fn run(opts: &HostOpts, emit: &mut dyn FnMut(Raw)) -> io::Result<()> {
    if std::env::var("PMEM_IS_PMEM_FORCE").as_deref() != Ok("1") {
        return Err(io::Error::other(
            "set PMEM_IS_PMEM_FORCE=1, so that PMDK flushes with CPU instructions on \
             /dev/shm as memkit does (scripts/bench.sh does)",
        ));
    }
    let flush = Flush::detect().ok_or_else(|| {
        io::Error::other("this CPU has neither clwb nor clflushopt: nothing to measure")
    })?;
    let pid = std::process::id();
    let mut coalesced = MemkitSide::create(
        opts.dir.join(format!("memkit-bench-{pid}-coalesced.pmem")),
        Mode::Coalesced,
        flush,
    )?;
    let mut strict = MemkitSide::create(
        opts.dir.join(format!("memkit-bench-{pid}-strict.pmem")),
        Mode::Strict,
        flush,
    )?;
    let mut floor = Floor::create(
        opts.dir.join(format!("memkit-bench-{pid}-floor.pmem")),
        flush,
    )?;
    let pmdk = Pmdk::create(
        &opts.dir.join(format!("memkit-bench-{pid}.pool")),
        64 << 20,
        DATA as usize,
    )?;
    if !pmdk.is_pmem() {
        return Err(io::Error::other(
            "libpmem does not treat the pool as pmem (PMEM_IS_PMEM_FORCE ignored?)",
        ));
    }

    let mut env = BTreeMap::new();
    env.insert("where".into(), "host".into());
    env.insert("cpu".into(), cpu_model());
    env.insert("kernel".into(), kernel_release());
    env.insert("flush".into(), format!("{}+sfence", flush.name()));
    env.insert("pmdk_is_pmem".into(), "1".into());
    env.insert("dir".into(), opts.dir.display().to_string());
    env.insert("data_bytes".into(), DATA.to_string());
    env.insert("mj".into(), format!("{MJ_COUNT}x{MJ_SIZE}"));
    env.insert("secs".into(), opts.secs.to_string());
    env.insert("rounds".into(), opts.rounds.to_string());
    for (k, v) in &opts.notes {
        env.insert(k.clone(), v.clone());
    }
    emit(Raw::Env(env));

    let dur = Duration::from_secs_f64(opts.secs);
    let warm = dur / 10;
    let mut src = vec![0u8; 4096];
    for round in 0..opts.rounds {
        for (wi, w) in opts.workloads.iter().enumerate() {
            let seed = u64::from(round) << 8 | wi as u64;
            let offsets = workload::offsets(w, 0, DATA, CYCLE, seed);
            for k in 0..VARIANTS.len() {
                let vi = (k + round as usize + wi) % VARIANTS.len();
                let variant = VARIANTS[vi];
                // A pattern of this measurement, checked in place afterwards.
                let pattern = (round as u8).wrapping_mul(16) ^ (wi as u8) << 2 ^ vi as u8 ^ 0xa5;
                src.fill(pattern);
                let src = &src[..w.len];
                let mut sample = Sample {
                    kind: "host".into(),
                    workload: w.name.into(),
                    variant: variant.into(),
                    threads: 1,
                    round,
                    ..Default::default()
                };
                let mut t = 0usize;
                let last: usize;
                match variant {
                    "floor" => {
                        let r = w.ranges;
                        floor_run(&mut floor, w, &offsets, src, &mut t, warm)?;
                        let l0 = floor.pm.lines;
                        let (n, secs) = floor_run(&mut floor, w, &offsets, src, &mut t, dur)?;
                        (sample.tx, sample.secs) = (n, secs);
                        sample.payload_bytes = n * w.payload();
                        sample.barriers = Some(n);
                        sample.lines = Some(floor.pm.lines - l0);
                        last = (t + CYCLE - 1) % CYCLE;
                        for &off in &offsets[last * r..(last + 1) * r] {
                            let mut buf = vec![0u8; w.len];
                            floor.pm.read(off, &mut buf);
                            check_pattern(&buf, pattern, variant, off)?;
                        }
                    }
                    "pmdk" => {
                        let r = w.ranges;
                        let mut step = || {
                            pmdk.run(&offsets[t * r..(t + CHUNK) * r], r, src)?;
                            t = (t + CHUNK) % CYCLE;
                            Ok(())
                        };
                        timed(warm, &mut step)?;
                        let (n, secs) = timed(dur, &mut step)?;
                        (sample.tx, sample.secs) = (n, secs);
                        sample.payload_bytes = n * w.payload();
                        last = (t + CYCLE - 1) % CYCLE;
                        for &off in &offsets[last * r..(last + 1) * r] {
                            let mut buf = vec![0u8; w.len];
                            pmdk.read(off, &mut buf)?;
                            check_pattern(&buf, pattern, variant, off)?;
                        }
                    }
                    _ => {
                        let side = if variant == "memkit-coalesced" {
                            &mut coalesced
                        } else {
                            &mut strict
                        };
                        let r = w.ranges;
                        memkit_run(side, w, &offsets, src, &mut t, warm)?;
                        let c0 = side.journal.counters();
                        let l0 = side.pm.lines;
                        let (n, secs) = memkit_run(side, w, &offsets, src, &mut t, dur)?;
                        let MemkitSide { pm, journal } = side;
                        let c1 = journal.counters();
                        if c1.transactions - c0.transactions != n {
                            return Err(io::Error::other("engine counted other transactions"));
                        }
                        (sample.tx, sample.secs) = (n, secs);
                        sample.payload_bytes = c1.payload_bytes - c0.payload_bytes;
                        sample.barriers = Some(c1.barriers - c0.barriers);
                        sample.groups = Some(c1.groups - c0.groups);
                        sample.journal_bytes = Some(c1.journal_bytes - c0.journal_bytes);
                        sample.inplace_bytes = Some(c1.inplace_bytes - c0.inplace_bytes);
                        sample.lines = Some(pm.lines - l0);
                        last = (t + CYCLE - 1) % CYCLE;
                        for &off in &offsets[last * r..(last + 1) * r] {
                            let mut buf = vec![0u8; w.len];
                            journal
                                .read(pm, off, &mut buf)
                                .map_err(other("read back"))?;
                            check_pattern(&buf, pattern, variant, off)?;
                        }
                    }
                }
                eprintln!(
                    "host round {}/{}: {:>6} {:<16} {:>10.0} tx/s",
                    round + 1,
                    opts.rounds,
                    w.name,
                    variant,
                    sample.tx as f64 / sample.secs
                );
                emit(Raw::Sample(Box::new(sample)));
            }
        }
        emit(Raw::Sample(Box::new(crc_sample(round, dur / 4))));
        if let Some(s) = crc_hw_sample(round, dur / 4) {
            emit(Raw::Sample(Box::new(s)));
        }
    }
    coalesced.journal.sync(&mut coalesced.pm);
    coalesced.check_recovers()?;
    strict.check_recovers()?;
    Ok(())
}

/// Runs `commit` on the transactions of `w` (their offsets from `offsets`, starting
/// at transaction `*t`) one at a time until `dur` has passed.
fn run_txs(
    w: &Workload,
    offsets: &[u64],
    t: &mut usize,
    dur: Duration,
    mut commit: impl FnMut(&[u64]) -> io::Result<()>,
) -> io::Result<(u64, f64)> {
    let r = w.ranges;
    timed(dur, || {
        for _ in 0..CHUNK {
            commit(&offsets[*t * r..(*t + 1) * r])?;
            *t = (*t + 1) % CYCLE;
        }
        Ok(())
    })
}

/// Commits transactions of `w` on the engine of `side`.
fn memkit_run(
    side: &mut MemkitSide,
    w: &Workload,
    offsets: &[u64],
    src: &[u8],
    t: &mut usize,
    dur: Duration,
) -> io::Result<(u64, f64)> {
    let MemkitSide { pm, journal } = side;
    let mut ids = [0u64; 1];
    let mut ranges = [Range {
        offset: 0,
        data: src,
    }; MAX_RANGES];
    run_txs(w, offsets, t, dur, |offs| {
        for (range, &off) in ranges.iter_mut().zip(offs) {
            range.offset = off;
        }
        journal
            .commit(pm, &mut [&ranges[..offs.len()]][..], &mut ids)
            .map_err(other("commit"))
    })
}

/// Commits transactions of `w` on the floor.
fn floor_run(
    floor: &mut Floor,
    w: &Workload,
    offsets: &[u64],
    src: &[u8],
    t: &mut usize,
    dur: Duration,
) -> io::Result<(u64, f64)> {
    run_txs(w, offsets, t, dur, |offs| {
        floor.commit(offs, src);
        Ok(())
    })
}

fn check_pattern(buf: &[u8], pattern: u8, variant: &str, off: u64) -> io::Result<()> {
    if buf.iter().any(|&b| b != pattern) {
        return Err(io::Error::other(format!(
            "{variant}: the last transaction's bytes at {off} are not in place"
        )));
    }
    Ok(())
}

/// The table-driven CRC-32C of `memkit_core` alone (the oracle, and the engine's
/// checksum where no CPU instruction is offered), over 4 KiB buffers.
fn crc_sample(round: u32, dur: Duration) -> Sample {
    let buf = vec![0x5au8; 4096];
    let mut acc = 0u32;
    let (n, secs) = timed(dur, || {
        for _ in 0..CHUNK {
            acc ^= Crc32c::new().update(std::hint::black_box(&buf)).finish();
        }
        Ok(())
    })
    .expect("infallible");
    std::hint::black_box(acc);
    Sample {
        kind: "crc32c".into(),
        workload: "4KiB".into(),
        variant: "table".into(),
        threads: 1,
        round,
        tx: n,
        secs,
        bytes: Some(n * 4096),
        ..Default::default()
    }
}

/// The checksum the engine runs here: CRC-32C with the SSE4.2 `crc32` instruction
/// (the `crc32c` crate, through [`ShmPmem`]; the kernel's `crc32c()` does the same
/// on x86), checked against the table-driven oracle. `None` without SSE4.2 (the
/// crate then falls back to software).
fn crc_hw_sample(round: u32, dur: Duration) -> Option<Sample> {
    if !cfg!(target_arch = "x86_64") || !std::arch::is_x86_feature_detected!("sse4.2") {
        return None;
    }
    let buf: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(
        crc32c::crc32c(&buf),
        memkit_core::crc32c::crc32c(&buf),
        "crc32 instruction"
    );
    let mut acc = 0u32;
    let (n, secs) = timed(dur, || {
        for _ in 0..CHUNK {
            acc ^= crc32c::crc32c(std::hint::black_box(&buf));
        }
        Ok(())
    })
    .expect("infallible");
    std::hint::black_box(acc);
    Some(Sample {
        kind: "crc32c".into(),
        workload: "4KiB".into(),
        variant: "sse4.2".into(),
        threads: 1,
        round,
        tx: n,
        secs,
        bytes: Some(n * 4096),
        ..Default::default()
    })
}

/// The CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_resumes_at_next_id() {
        let Some(flush) = Flush::detect() else { return };
        for mode in [Mode::Coalesced, Mode::Strict] {
            let path =
                std::env::temp_dir().join(format!("mkb-test-{}-{mode:?}", std::process::id()));
            let mut side = MemkitSide::create(path, mode, flush).unwrap();
            let w = workload::ALL[1];
            let offsets = workload::offsets(&w, 0, DATA, CYCLE, 1);
            let src = [7u8; 64];
            let mut t = 0;
            memkit_run(&mut side, &w, &offsets, &src, &mut t, Duration::ZERO).unwrap();
            assert_eq!(side.journal.next_id(), 65);
            side.journal.sync(&mut side.pm);
            side.check_recovers().unwrap();
        }
    }
}
