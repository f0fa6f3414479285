//! `memkit-bench guest`: transactions through `/dev/memkit-journal` (the module's
//! journal, group commit included) from 1..N threads, with the status counters'
//! deltas: barriers, device flushes, bytes written, commit groups.
//!
//! The journal must be attached; its commit mode is the module's `commit_mode`
//! (`--expect-mode` refuses to run under the other one).
//!
//! `memkit-bench guest-pmdk`: the same transactions, threads and data areas with
//! PMDK's libpmemobj on a pool file of a DAX-mounted filesystem on the same kind of
//! pmem (libpmem flushes with CPU instructions where it can map with `MAP_SYNC`, and
//! calls `msync` where it cannot, as on virtio-pmem).

use crate::host::{cpu_model, kernel_release};
use crate::pmdk::Pmdk;
use crate::sample::{Hist, Raw, Sample};
use crate::workload::{self, Workload};
use memkit::core::abi::{self, JournalStatus};
use memkit::dev::{Device, DeviceKind};
use std::collections::BTreeMap;
use std::io;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Options of `memkit-bench guest`.
#[derive(clap::Args)]
pub struct GuestOpts {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    pub secs: f64,
    /// Thread counts, comma-separated.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    pub threads: Vec<u32>,
    /// Workloads, comma-separated.
    #[arg(long, default_value = "1x64B,8x64B,1x4KiB", value_parser = workload::parse_list)]
    pub workloads: std::vec::Vec<Workload>,
    /// Round number recorded with the samples.
    #[arg(long, default_value_t = 0)]
    pub round: u32,
    /// The pmem device's kind, as results name it (`virtio-pmem`, `memmap-pmem`).
    #[arg(long, default_value = "virtio-pmem")]
    pub device: String,
    /// The block device under the journal (for /sys/block/NAME/queue/dax).
    #[arg(long, default_value = "pmem0")]
    pub block: String,
    /// Refuse to run unless the journal commits in this mode.
    #[arg(long, value_parser = ["coalesced", "strict"])]
    pub expect_mode: Option<String>,
    /// Bytes of the data region to scatter the transactions over (K, M, G), split
    /// between the threads.
    #[arg(long, default_value = "64M", value_parser = crate::parse_size)]
    pub region: u64,
}

/// Transactions of pre-generated offsets per thread.
const CYCLE: usize = 1024;

fn mode_name(mode: u32) -> &'static str {
    match mode {
        abi::JOURNAL_MODE_COALESCED => "coalesced",
        abi::JOURNAL_MODE_STRICT => "strict",
        _ => "unknown",
    }
}

/// What one thread did.
struct ThreadRun {
    tx: u64,
    hist: Hist,
    lat_ns_sum: u64,
    /// The offsets of its last transaction, and the byte it wrote there.
    last: Vec<u64>,
    pattern: u8,
}

/// Commits transactions of `w` at `offsets` with `commit` (offsets, then the bytes
/// for each) until `dur` has passed since the common start.
fn thread_loop(
    w: &Workload,
    offsets: &[u64],
    pattern: u8,
    start: &Barrier,
    dur: Duration,
    mut commit: impl FnMut(&[u64], &[u8]) -> io::Result<()>,
) -> io::Result<ThreadRun> {
    let data = vec![pattern; w.len];
    let mut run = ThreadRun {
        tx: 0,
        hist: Hist::default(),
        lat_ns_sum: 0,
        last: Vec::new(),
        pattern,
    };
    start.wait();
    let deadline = Instant::now() + dur;
    let mut t = 0usize;
    loop {
        let offs = &offsets[t * w.ranges..(t + 1) * w.ranges];
        let t0 = Instant::now();
        commit(offs, &data)?;
        let now = Instant::now();
        let ns = (now - t0).as_nanos() as u64;
        run.hist.add(ns);
        run.lat_ns_sum += ns;
        run.tx += 1;
        if now >= deadline {
            run.last = offs.to_vec();
            return Ok(run);
        }
        t = (t + 1) % CYCLE;
    }
}

/// Where transactions go: the journal device (one descriptor per thread) or a PMDK
/// pool shared by the threads.
enum Target<'a> {
    Journal,
    Pmdk(&'a Pmdk),
}

/// One measurement of `w` with `threads` threads over `dur`, each thread in its own
/// part of `region`: the runs of every thread and the wall time from the common
/// start to the last thread's end.
fn measure(
    target: &Target<'_>,
    w: &Workload,
    threads: u32,
    region: u64,
    seed: u64,
    dur: Duration,
) -> io::Result<(Vec<ThreadRun>, f64)> {
    let per = (region / u64::from(threads)) & !4095;
    let devs = match target {
        Target::Journal => (0..threads)
            .map(|_| Device::open(DeviceKind::Journal).map(Some))
            .collect::<io::Result<Vec<_>>>()?,
        Target::Pmdk(_) => (0..threads).map(|_| None).collect(),
    };
    let offsets: Vec<Vec<u64>> = (0..threads)
        .map(|k| workload::offsets(w, u64::from(k) * per, per, CYCLE, seed ^ u64::from(k) << 32))
        .collect();
    let start = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = devs
            .iter()
            .zip(&offsets)
            .enumerate()
            .map(|(k, (dev, offs))| {
                let pattern = (seed as u8).wrapping_mul(31) ^ k as u8 ^ 0x3c;
                let start = &start;
                s.spawn(move || match (dev, target) {
                    (Some(dev), _) => thread_loop(w, offs, pattern, start, dur, |offs, data| {
                        let mut ranges = [(0u64, &[][..]); workload::MAX_RANGES];
                        for (r, &o) in ranges.iter_mut().zip(offs) {
                            *r = (o, data);
                        }
                        let n = offs.len().min(ranges.len());
                        dev.journal_tx(&ranges[..n]).map(|_| ())
                    }),
                    (None, Target::Pmdk(pool)) => {
                        thread_loop(w, offs, pattern, start, dur, |offs, data| {
                            pool.run(offs, offs.len(), data)
                        })
                    }
                    (None, Target::Journal) => Err(io::Error::other("no journal descriptor")),
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        let runs = handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect::<io::Result<Vec<_>>>()?;
        Ok((runs, t0.elapsed().as_secs_f64()))
    })
}

/// Runs the guest benchmark, handing every raw line to `emit`.
pub fn run(opts: &GuestOpts, emit: &mut dyn FnMut(Raw)) -> io::Result<()> {
    let dev = Device::open(DeviceKind::Journal)?;
    let st = dev.journal_status()?;
    if st.attached != 1 {
        return Err(io::Error::other(
            "no journal attached (memkit journal attach /dev/pmem0 --format)",
        ));
    }
    let mode = mode_name(st.mode);
    if let Some(want) = &opts.expect_mode {
        if want != mode {
            return Err(io::Error::other(format!(
                "the journal commits in {mode} mode, not {want} (load the module with \
                 commit_mode={want})"
            )));
        }
    }
    let queue_dax = std::fs::read_to_string(format!("/sys/block/{}/queue/dax", opts.block))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "n/a".into());
    let mut env = BTreeMap::new();
    env.insert("where".into(), format!("guest/{}", opts.device));
    env.insert("cpu".into(), cpu_model());
    env.insert("kernel".into(), kernel_release());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    env.insert("cpus".into(), cpus.to_string());
    env.insert("mode".into(), mode.into());
    env.insert("round".into(), opts.round.to_string());
    env.insert("block".into(), opts.block.clone());
    env.insert("queue_dax".into(), queue_dax);
    env.insert("sync_dax".into(), st.sync_dax.to_string());
    env.insert("mj".into(), format!("{}x{}", st.mj_count, st.mj_size));
    env.insert("data_bytes".into(), st.data_size.to_string());
    emit(Raw::Env(env));

    let region = opts.region.min(st.data_size);
    let dur = Duration::from_secs_f64(opts.secs);
    for (wi, w) in opts.workloads.iter().enumerate() {
        for &threads in &opts.threads {
            let seed = u64::from(opts.round) << 16 | (wi as u64) << 8 | u64::from(threads);
            // Warm-up, not counted.
            measure(&Target::Journal, w, threads, region, seed, dur / 10)?;
            let s0 = dev.journal_status()?;
            let (runs, secs) = measure(&Target::Journal, w, threads, region, seed, dur)?;
            let s1 = dev.journal_status()?;
            let tx: u64 = runs.iter().map(|r| r.tx).sum();
            let d = |f: fn(&JournalStatus) -> u64| f(&s1) - f(&s0);
            if d(|s| s.transactions) != tx {
                return Err(io::Error::other(format!(
                    "the journal counted {} transactions, the threads {tx}: someone else \
                     is committing",
                    d(|s| s.transactions)
                )));
            }
            for r in &runs {
                for &off in &r.last {
                    let mut buf = vec![0u8; w.len];
                    let n = dev.read_at(&mut buf, off)?;
                    if n != w.len || buf.iter().any(|&b| b != r.pattern) {
                        return Err(io::Error::other(format!(
                            "the last transaction's bytes at {off} are not in place"
                        )));
                    }
                }
            }
            let mut hist = Hist::default();
            for r in &runs {
                hist.merge(&r.hist.pairs());
            }
            let sample = Sample {
                kind: "guest".into(),
                workload: w.name.into(),
                variant: mode.into(),
                device: Some(opts.device.clone()),
                threads,
                round: opts.round,
                tx,
                secs,
                payload_bytes: d(|s| s.payload_bytes),
                barriers: Some(d(|s| s.barriers)),
                flushes: Some(d(|s| s.device_flushes)),
                groups: Some(d(|s| s.groups)),
                journal_bytes: Some(d(|s| s.journal_bytes)),
                inplace_bytes: Some(d(|s| s.inplace_bytes)),
                lines: Some(d(|s| s.lines_written_back)),
                lat_ns_sum: Some(runs.iter().map(|r| r.lat_ns_sum).sum()),
                lat_hist: Some(hist.pairs()),
                klat_hist: Some(
                    (0u32..)
                        .zip(s1.lat_hist.iter().zip(&s0.lat_hist))
                        .map(|(i, (a, b))| (i, a - b))
                        .filter(|&(_, n)| n > 0)
                        .collect(),
                ),
                bytes: None,
            };
            eprintln!(
                "guest {} {} round {}: {:>6} {}t {:>8.0} tx/s, {:.2} barriers/tx",
                opts.device,
                mode,
                opts.round,
                w.name,
                threads,
                tx as f64 / secs,
                d(|s| s.barriers) as f64 / tx.max(1) as f64
            );
            emit(Raw::Sample(Box::new(sample)));
        }
    }
    Ok(())
}

/// Options of `memkit-bench guest-pmdk`.
#[derive(clap::Args)]
pub struct GuestPmdkOpts {
    /// Directory of the pool file: on a DAX-mounted filesystem on the pmem.
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    pub secs: f64,
    /// Thread counts, comma-separated.
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    pub threads: Vec<u32>,
    /// Workloads, comma-separated.
    #[arg(long, default_value = "1x64B,8x64B,1x4KiB", value_parser = workload::parse_list)]
    pub workloads: std::vec::Vec<Workload>,
    /// Round number recorded with the samples.
    #[arg(long, default_value_t = 0)]
    pub round: u32,
    /// The pmem device's kind, as results name it (`virtio-pmem`, `memmap-pmem`).
    #[arg(long, default_value = "virtio-pmem")]
    pub device: String,
    /// Bytes of the data region (the pool's root object) to scatter the
    /// transactions over, split between the threads, as `memkit-bench guest` does.
    #[arg(long, default_value = "32M", value_parser = crate::parse_size)]
    pub region: u64,
}

/// Bytes of the pool beyond its root object (libpmemobj's lanes, heap and logs).
const PMDK_POOL_EXTRA: u64 = 24 << 20;

/// Runs the PMDK side of the guest benchmark, handing every raw line to `emit`.
pub fn run_pmdk(opts: &GuestPmdkOpts, emit: &mut dyn FnMut(Raw)) -> io::Result<()> {
    let path = opts.dir.join("memkit-bench.pool");
    let size = |n: u64| usize::try_from(n).map_err(|_| io::Error::other("region too large"));
    let pool = Pmdk::create(
        &path,
        size(opts.region + PMDK_POOL_EXTRA)?,
        size(opts.region)?,
    )?;
    let mut env = BTreeMap::new();
    env.insert("where".into(), format!("guest/{}", opts.device));
    env.insert("round".into(), opts.round.to_string());
    // libpmemobj maps its pool with MAP_SYNC where the filesystem and device allow it
    // and then flushes with CPU instructions; otherwise it calls msync. (libpmem's
    // pmem_is_pmem cannot tell: it only knows mappings libpmem made itself.)
    env.insert(
        "pmdk_map_sync".into(),
        u8::from(map_sync_works(&path)).to_string(),
    );
    env.insert("pmdk_dir".into(), opts.dir.display().to_string());
    emit(Raw::Env(env));
    let dur = Duration::from_secs_f64(opts.secs);
    for (wi, w) in opts.workloads.iter().enumerate() {
        for &threads in &opts.threads {
            let seed = u64::from(opts.round) << 16 | (wi as u64) << 8 | u64::from(threads);
            let target = Target::Pmdk(&pool);
            measure(&target, w, threads, opts.region, seed, dur / 10)?;
            let (runs, secs) = measure(&target, w, threads, opts.region, seed, dur)?;
            let tx: u64 = runs.iter().map(|r| r.tx).sum();
            for r in &runs {
                for &off in &r.last {
                    let mut buf = vec![0u8; w.len];
                    pool.read(off, &mut buf)?;
                    if buf.iter().any(|&b| b != r.pattern) {
                        return Err(io::Error::other(format!(
                            "pmdk: the last transaction's bytes at {off} are not in place"
                        )));
                    }
                }
            }
            let mut hist = Hist::default();
            for r in &runs {
                hist.merge(&r.hist.pairs());
            }
            let sample = Sample {
                kind: "guest".into(),
                workload: w.name.into(),
                variant: "pmdk".into(),
                device: Some(opts.device.clone()),
                threads,
                round: opts.round,
                tx,
                secs,
                payload_bytes: tx * w.payload(),
                lat_ns_sum: Some(runs.iter().map(|r| r.lat_ns_sum).sum()),
                lat_hist: Some(hist.pairs()),
                ..Default::default()
            };
            eprintln!(
                "guest {} pmdk round {}: {:>6} {}t {:>8.0} tx/s",
                opts.device,
                opts.round,
                w.name,
                threads,
                tx as f64 / secs,
            );
            emit(Raw::Sample(Box::new(sample)));
        }
    }
    Ok(())
}

/// Whether `path` (the pool file) can be mapped with `MAP_SYNC`.
fn map_sync_works(path: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return false;
    };
    // SAFETY: a fresh shared mapping of one page of an open file, unmapped at once;
    // no memory is accessed through it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC,
            file.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        libc::munmap(p, 4096);
    }
    true
}
