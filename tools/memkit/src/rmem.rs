//! `memkit rmem`: remote-memory regions from the command line.
//!
//! - `memkit rmem run`: configures a region, writes every page once, then runs an
//!   access pattern over it and reports the time and what the prefetcher did
//!   (`--anon`: the same program on anonymous memory, the swap peer of the
//!   benchmark, reporting major faults and the kernel's swap readahead counters);
//! - `memkit rmem stats`: the module's totals over every region.

use clap::{Args, Subcommand};
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use memkit::workload::{self, Pattern};
use memkit_core::abi;
use memkit_core::rmem::Policy;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum RmemCmd {
    /// Run an access pattern over a new region (or anonymous memory) and report.
    Run(RunOpts),
    /// The module's counters, summed over every region so far.
    Stats,
}

#[derive(Args)]
pub struct RunOpts {
    /// Region pages.
    #[arg(long, default_value_t = 4096)]
    pages: u64,
    /// Local budget, pages.
    #[arg(long, default_value_t = 1024)]
    budget: u64,
    /// Prefetch policy: none, ptline, ptline-history, window, trend.
    #[arg(long, default_value = "ptline", value_parser = parse_policy)]
    policy: Policy,
    /// Prefetch deadline, µs (0: none).
    #[arg(long, default_value_t = 1000)]
    deadline_us: u64,
    /// Most prefetches per fault.
    #[arg(long, default_value_t = 16)]
    degree: u32,
    /// Most requests in flight.
    #[arg(long, default_value_t = 64)]
    inflight: u32,
    /// Emulated latency of a request, µs.
    #[arg(long, default_value_t = 20)]
    lat_us: u64,
    /// Emulated transfer time per page, ns.
    #[arg(long, default_value_t = 1000)]
    page_ns: u64,
    /// Keep late prefetches as local copies.
    #[arg(long)]
    keep_late: bool,
    /// seq, stride:K, random, zipf, chase.
    #[arg(long, default_value = "seq", value_parser = Pattern::parse)]
    pattern: Pattern,
    /// Accesses (default: two passes over the pages).
    #[arg(long)]
    ops: Option<u64>,
    /// Write every N-th access (0: read only).
    #[arg(long, default_value_t = 0)]
    write_every: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Anonymous memory instead of a region (run it in a memory cgroup with swap:
    /// the Linux peer).
    #[arg(long)]
    anon: bool,
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::from_name(s)
        .ok_or_else(|| format!("unknown policy {s:?}: none, ptline, ptline-history, window, trend"))
}

/// One run's report: the JSON line of the benchmark.
#[derive(Serialize, Default)]
pub struct RunReport {
    pub memory: &'static str,
    pub pattern: String,
    pub policy: String,
    pub pages: u64,
    pub budget: u64,
    pub lat_us: u64,
    pub accesses: u64,
    pub runtime_ns: u64,
    /// Faults that waited for a fetch: region sync fetches + waits, or major faults.
    pub sync_faults: u64,
    pub prefetches: u64,
    pub hits: u64,
    pub late: u64,
    pub wasted: u64,
    pub evictions: u64,
    /// hits / prefetches.
    pub accuracy: f64,
    /// hits / (hits + sync faults).
    pub coverage: f64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// `/proc/vmstat` counters.
fn vmstat() -> std::collections::HashMap<String, u64> {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn majflt() -> u64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_majflt as u64
}

fn run_anon(o: &RunOpts, ops: u64) -> Result<RunReport, String> {
    let map = CkptMap::anonymous(o.pages as usize * CKPT_PAGE_SIZE)
        .map_err(|e| format!("mmap: {e}"))?;
    workload::prepare(&map, o.seed);
    let (v0, f0) = (vmstat(), majflt());
    let out = workload::run(&map, o.pattern, ops, o.write_every, o.seed)?;
    let (v1, f1) = (vmstat(), majflt());
    let d = |k: &str| v1.get(k).unwrap_or(&0).saturating_sub(*v0.get(k).unwrap_or(&0));
    // Swap readahead: `swap_ra` pages read ahead, `swap_ra_hit` of them used.
    let (issued, hits) = (d("swap_ra"), d("swap_ra_hit"));
    let sync = f1 - f0;
    Ok(RunReport {
        memory: "anon+swap",
        pattern: o.pattern.name(),
        policy: "linux-swap".into(),
        pages: o.pages,
        budget: o.budget,
        lat_us: o.lat_us,
        accesses: out.accesses,
        runtime_ns: out.elapsed_ns,
        sync_faults: sync,
        prefetches: issued,
        hits,
        late: 0,
        wasted: 0,
        evictions: d("pswpout"),
        accuracy: ratio(hits, issued),
        coverage: ratio(hits, hits + sync),
    })
}

fn run_region(o: &RunOpts, ops: u64) -> Result<RunReport, String> {
    let dev = Device::open(DeviceKind::Rmem).map_err(|e| format!("open: {e}"))?;
    let cfg = abi::RmemConfig {
        flags: if o.keep_late { abi::RMEM_KEEP_LATE } else { 0 },
        bytes: o.pages * CKPT_PAGE_SIZE as u64,
        budget: o.budget,
        backend: abi::RMEM_BACKEND_EMULATED,
        policy: o.policy.to_abi(),
        deadline_ns: o.deadline_us * 1000,
        degree: o.degree,
        max_inflight: o.inflight,
        lat_base_ns: o.lat_us * 1000,
        lat_page_ns: o.page_ns,
        ..Default::default()
    };
    let off = dev
        .rmem_configure(&cfg)
        .map_err(|e| format!("RMEM_CONFIGURE: {e}"))?;
    let map = CkptMap::new(&dev, off, o.pages as usize * CKPT_PAGE_SIZE)
        .map_err(|e| format!("mmap: {e}"))?;
    workload::prepare(&map, o.seed);
    let s0 = dev.rmem_stats(false).map_err(|e| format!("RMEM_STATS: {e}"))?;
    let out = workload::run(&map, o.pattern, ops, o.write_every, o.seed)?;
    let s1 = dev.rmem_stats(false).map_err(|e| format!("RMEM_STATS: {e}"))?;
    let d = |f: fn(&abi::RmemStats) -> u64| f(&s1) - f(&s0);
    let sync = d(|s| s.faults_sync) + d(|s| s.faults_wait);
    let (issued, hits) = (d(|s| s.prefetches), d(|s| s.hits));
    Ok(RunReport {
        memory: "rmem",
        pattern: o.pattern.name(),
        policy: o.policy.name().into(),
        pages: o.pages,
        budget: o.budget,
        lat_us: o.lat_us,
        accesses: out.accesses,
        runtime_ns: out.elapsed_ns,
        sync_faults: sync,
        prefetches: issued,
        hits,
        late: d(|s| s.late),
        wasted: d(|s| s.wasted),
        evictions: d(|s| s.evictions),
        accuracy: ratio(hits, issued),
        coverage: ratio(hits, hits + sync),
    })
}

fn print_stats(s: &abi::RmemStats, json: bool) {
    #[derive(Serialize)]
    struct Out<'a> {
        regions: u64,
        faults_sync: u64,
        faults_local: u64,
        faults_wait: u64,
        prefetches: u64,
        installed: u64,
        hits: u64,
        late: u64,
        wasted: u64,
        evictions: u64,
        writebacks: u64,
        bytes_in: u64,
        bytes_out: u64,
        lat_hist_us_log2: &'a [u64],
    }
    let o = Out {
        regions: s.bytes,
        faults_sync: s.faults_sync,
        faults_local: s.faults_local,
        faults_wait: s.faults_wait,
        prefetches: s.prefetches,
        installed: s.installed,
        hits: s.hits,
        late: s.late,
        wasted: s.wasted,
        evictions: s.evictions,
        writebacks: s.writebacks,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        lat_hist_us_log2: &s.lat_hist,
    };
    if json {
        println!("{}", serde_json::to_string(&o).expect("serialisable"));
        return;
    }
    println!("regions configured   {}", o.regions);
    println!(
        "faults               {} sync, {} local, {} waited for a fetch in flight",
        o.faults_sync, o.faults_local, o.faults_wait
    );
    println!(
        "prefetches           {} issued, {} installed, {} hits, {} late, {} wasted",
        o.prefetches, o.installed, o.hits, o.late, o.wasted
    );
    println!(
        "evictions            {} ({} written back)",
        o.evictions, o.writebacks
    );
    println!("bytes                {} in, {} out", o.bytes_in, o.bytes_out);
    let hist: Vec<String> = s
        .lat_hist
        .iter()
        .enumerate()
        .filter(|(_, &n)| n != 0)
        .map(|(i, n)| {
            if i == 0 {
                format!("<1us:{n}")
            } else {
                format!("<{}us:{n}", 1u64 << i)
            }
        })
        .collect();
    println!("fetch latency        {}", hist.join(" "));
}

pub fn run(cmd: RmemCmd, json: bool) -> ExitCode {
    let res = match cmd {
        RmemCmd::Stats => Device::open(DeviceKind::Rmem)
            .and_then(|d| d.rmem_stats(true))
            .map(|s| print_stats(&s, json))
            .map_err(|e| format!("RMEM_STATS: {e}")),
        RmemCmd::Run(o) => {
            let ops = o.ops.unwrap_or(2 * o.pages);
            let r = if o.anon {
                run_anon(&o, ops)
            } else {
                run_region(&o, ops)
            };
            r.map(|r| {
                if json {
                    println!("{}", serde_json::to_string(&r).expect("serialisable"));
                } else {
                    println!(
                        "{} {} policy {}: {} accesses in {:.1} ms; {} sync faults, {} prefetches, {} hits (accuracy {:.2}, coverage {:.2}), {} late, {} wasted, {} evictions",
                        r.memory,
                        r.pattern,
                        r.policy,
                        r.accesses,
                        r.runtime_ns as f64 / 1e6,
                        r.sync_faults,
                        r.prefetches,
                        r.hits,
                        r.accuracy,
                        r.coverage,
                        r.late,
                        r.wasted,
                        r.evictions
                    );
                }
            })
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memkit rmem: {e}");
            ExitCode::FAILURE
        }
    }
}
