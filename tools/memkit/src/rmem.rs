//! `memkit rmem`: remote-memory regions from the command line.
//!
//! - `memkit workload rmem-run`: configures a region, writes every page once, then
//!   runs an access pattern over it and reports the time and what the prefetcher did
//!   (`--anon`: the same program on anonymous memory, the swap peer of the
//!   benchmark, reporting major faults and the kernel's swap readahead counters);
//! - `memkit rmem server`: a TCP memory server for agent-backed regions, one
//!   namespace of pages per region, on loopback unless `--listen` says otherwise;
//! - `memkit rmem agent`: configures an agent-backed region, starts a program with it
//!   (`MEMKIT_RMEM_FD`, `MEMKIT_RMEM_OFFSET`, `MEMKIT_RMEM_BYTES`) and serves the
//!   region's requests until the program exits, from an NBD server (`--nbd URI`:
//!   `qemu-nbd`, `nbdkit`, `nbd-server`; `rmem_nbd.rs`) or a `memkit rmem server`
//!   (`--server`);
//! - `memkit rmem stats`: the module's totals over every region.

use crate::exit::{self, emit, fail};
use clap::{Args, Subcommand};
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use memkit::workload::{self, Pattern, RunReport};
use memkit_core::abi;
use memkit_core::rmem::Policy;
use serde::Serialize;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum RmemCmd {
    /// The module's counters, summed over every region so far.
    Stats,
    /// A TCP memory server for agent-backed regions: one namespace of pages per
    /// region.
    Server(ServerOpts),
    /// Start COMMAND with an agent-backed region and serve it from an NBD server
    /// (--nbd) or a memkit rmem server (--server).
    Agent(AgentOpts),
}

#[derive(Args)]
pub struct ServerOpts {
    /// Address to listen on (loopback unless told otherwise: the protocol has no
    /// authentication).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Most pages of a namespace (a region larger is refused at its hello).
    #[arg(long, default_value_t = 1 << 20)]
    pages: u64,
    /// Most namespaces held, attached or kept.
    #[arg(long, default_value_t = 64)]
    max_namespaces: usize,
    /// Most pages stored over every namespace (a write-back of a new page past it is
    /// refused).
    #[arg(long, default_value_t = 1 << 20)]
    max_stored_pages: u64,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("backend").required(true).args(["nbd", "server"])))]
pub struct AgentOpts {
    /// An NBD export: nbd://HOST[:PORT][/EXPORT] or nbd+unix:///EXPORT?socket=PATH.
    /// Page P of the region is byte P x 4096 of the export.
    #[arg(long, value_parser = memkit::nbd::Uri::parse)]
    nbd: Option<memkit::nbd::Uri>,
    /// With --nbd: the export keeps the region's pages across agents (the region
    /// starts with the export's contents, and is flushed at the end instead of
    /// trimmed).
    #[arg(long, requires = "nbd")]
    keep: bool,
    /// With --nbd: write the agent's report (requests, failures, peak requests in
    /// flight, fetch latency histogram) as JSON to this file at the end.
    #[arg(long, requires = "nbd")]
    report: Option<std::path::PathBuf>,
    /// A memkit rmem server (HOST:PORT).
    #[arg(long)]
    server: Option<String>,
    /// With --server: the region's namespace on the server, kept when the agent goes
    /// so that a later agent naming it gets its pages back (default: a name of this
    /// agent's own, dropped when it goes).
    #[arg(long, requires = "server")]
    namespace: Option<String>,
    #[command(flatten)]
    region: RegionOpts,
    /// The program (it finds the region in MEMKIT_RMEM_FD, _OFFSET, _BYTES).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args, Clone)]
pub struct RegionOpts {
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
    /// Keep late prefetches as local copies.
    #[arg(long)]
    keep_late: bool,
}

#[derive(Args)]
pub struct RunOpts {
    #[command(flatten)]
    region: RegionOpts,
    /// Emulated latency of a request, µs.
    #[arg(long, default_value_t = 20)]
    lat_us: u64,
    /// Emulated transfer time per page, ns.
    #[arg(long, default_value_t = 1000)]
    page_ns: u64,
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
    /// The region `memkit rmem agent` passes (MEMKIT_RMEM_FD, _OFFSET, _BYTES)
    /// instead of a new one.
    #[arg(long, conflicts_with = "anon")]
    inherit: bool,
}

impl RegionOpts {
    fn config(&self, backend: u32, lat_base_ns: u64, lat_page_ns: u64) -> abi::RmemConfig {
        abi::RmemConfig {
            flags: if self.keep_late {
                abi::RMEM_KEEP_LATE
            } else {
                0
            },
            bytes: self.pages * CKPT_PAGE_SIZE as u64,
            budget: self.budget,
            backend,
            policy: self.policy.to_abi(),
            deadline_ns: self.deadline_us * 1000,
            degree: self.degree,
            max_inflight: self.inflight,
            lat_base_ns,
            lat_page_ns,
            ..Default::default()
        }
    }
}

fn parse_policy(s: &str) -> Result<Policy, String> {
    Policy::from_name(s)
        .ok_or_else(|| format!("unknown policy {s:?}: none, ptline, ptline-history, window, trend"))
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

/// Swap readahead's largest window: `2^page-cluster` pages (0 if unreadable).
fn swap_window() -> u64 {
    std::fs::read_to_string("/proc/sys/vm/page-cluster")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .and_then(|c| 1u64.checked_shl(c))
        .unwrap_or(0)
}

fn majflt() -> u64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_majflt as u64
}

fn run_anon(o: &RunOpts, ops: u64) -> Result<RunReport, String> {
    let map = CkptMap::anonymous(o.region.pages as usize * CKPT_PAGE_SIZE)
        .map_err(|e| format!("mmap: {e}"))?;
    workload::prepare(&map, o.seed);
    let (v0, f0) = (vmstat(), majflt());
    let out = workload::run(&map, o.pattern, ops, o.write_every, o.seed)?;
    let (v1, f1) = (vmstat(), majflt());
    let d = |k: &str| {
        v1.get(k)
            .unwrap_or(&0)
            .saturating_sub(*v0.get(k).unwrap_or(&0))
    };
    // Swap readahead: `swap_ra` pages read ahead, `swap_ra_hit` of them used.
    let (issued, hits) = (d("swap_ra"), d("swap_ra_hit"));
    let sync = f1 - f0;
    Ok(RunReport {
        memory: "anon+swap".into(),
        backend: String::new(),
        pattern: o.pattern.name(),
        policy: "linux-swap".into(),
        pages: o.region.pages,
        budget: o.region.budget,
        lat_us: o.lat_us,
        accesses: out.accesses,
        runtime_ns: out.elapsed_ns,
        sync_faults: sync,
        waits: 0,
        window: swap_window(),
        prefetches: issued,
        hits,
        late: 0,
        wasted: 0,
        evictions: d("pswpout"),
        accuracy: ratio(hits, issued),
        coverage: ratio(hits, hits + sync),
    })
}

/// The region `memkit rmem agent` passed in the environment: its file and mapping.
fn inherited() -> Result<(Device, CkptMap), String> {
    let var = |k: &str| -> Result<u64, String> {
        std::env::var(k)
            .map_err(|_| format!("{k} is not set (run under `memkit rmem agent`)"))?
            .parse()
            .map_err(|e| format!("{k}: {e}"))
    };
    let fd = i32::try_from(var("MEMKIT_RMEM_FD")?).map_err(|e| e.to_string())?;
    // SAFETY: the agent passed this descriptor for us to own.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let dev = Device::from_fd(owned, DeviceKind::Rmem).map_err(|e| format!("fd {fd}: {e}"))?;
    let map = CkptMap::new(
        &dev,
        var("MEMKIT_RMEM_OFFSET")?,
        var("MEMKIT_RMEM_BYTES")? as usize,
    )
    .map_err(|e| format!("mmap: {e}"))?;
    Ok((dev, map))
}

fn run_region(o: &RunOpts, ops: u64) -> Result<RunReport, String> {
    let (dev, map, pages) = if o.inherit {
        let (dev, map) = inherited()?;
        let pages = (map.len() / CKPT_PAGE_SIZE) as u64;
        (dev, map, pages)
    } else {
        let dev = Device::open(DeviceKind::Rmem).map_err(|e| format!("open: {e}"))?;
        let cfg = o
            .region
            .config(abi::RMEM_BACKEND_EMULATED, o.lat_us * 1000, o.page_ns);
        let off = dev
            .rmem_configure(&cfg)
            .map_err(|e| format!("RMEM_CONFIGURE: {e}"))?;
        let map = CkptMap::new(&dev, off, o.region.pages as usize * CKPT_PAGE_SIZE)
            .map_err(|e| format!("mmap: {e}"))?;
        (dev, map, o.region.pages)
    };
    workload::prepare(&map, o.seed);
    let s0 = dev
        .rmem_stats(false)
        .map_err(|e| format!("RMEM_STATS: {e}"))?;
    let out = workload::run(&map, o.pattern, ops, o.write_every, o.seed)?;
    let s1 = dev
        .rmem_stats(false)
        .map_err(|e| format!("RMEM_STATS: {e}"))?;
    let d = |f: fn(&abi::RmemStats) -> u64| f(&s1) - f(&s0);
    let (sync, waits) = (d(|s| s.faults_sync), d(|s| s.faults_wait));
    let (issued, hits) = (d(|s| s.prefetches), d(|s| s.hits));
    Ok(RunReport {
        memory: if o.inherit { "rmem-agent" } else { "rmem" }.into(),
        backend: String::new(),
        pattern: o.pattern.name(),
        policy: if o.inherit {
            std::env::var("MEMKIT_RMEM_POLICY").unwrap_or_else(|_| "?".into())
        } else {
            o.region.policy.name().into()
        },
        pages,
        budget: s1.budget,
        lat_us: o.lat_us,
        accesses: out.accesses,
        runtime_ns: out.elapsed_ns,
        sync_faults: sync,
        waits,
        window: if o.inherit {
            // The agent says (its --degree + 1).
            std::env::var("MEMKIT_RMEM_WINDOW")
                .ok()
                .and_then(|w| w.parse().ok())
                .unwrap_or(0)
        } else {
            u64::from(o.region.degree) + 1
        },
        prefetches: issued,
        hits,
        late: d(|s| s.late),
        wasted: d(|s| s.wasted),
        evictions: d(|s| s.evictions),
        accuracy: ratio(hits, issued),
        coverage: ratio(hits, hits + sync),
    })
}

/// `memkit rmem agent`: the region, the program, the loop.
fn agent(o: &AgentOpts) -> Result<(), String> {
    use memkit::rmem_agent::{run_agent, unique_namespace, AgentCounts, Client, Hello};
    use memkit::rmem_nbd::{NbdBackend, NbdOptions};
    use std::os::fd::{AsFd, AsRawFd};
    enum Backend {
        Nbd(std::sync::Arc<NbdBackend>),
        Server(Client),
    }
    // The server first: what it refuses is said before the device is opened.
    let backend = if let Some(uri) = &o.nbd {
        let opts = NbdOptions {
            keep: o.keep,
            inflight: o.region.inflight as usize,
        };
        Backend::Nbd(NbdBackend::connect(uri, o.region.pages, opts)?)
    } else {
        let addr = o.server.as_deref().unwrap_or_default();
        let namespace = o.namespace.clone().unwrap_or_else(unique_namespace);
        let hello = Hello {
            namespace: &namespace,
            pages: o.region.pages,
            keep: o.namespace.is_some(),
        };
        let client = Client::connect(addr, &hello).map_err(|e| format!("server {addr}: {e}"))?;
        if client.reattached() {
            eprintln!(
                "memkit rmem agent: namespace {namespace} reattached on {addr}, {} pages stored",
                client.stored()
            );
        }
        Backend::Server(client)
    };
    let dev = Device::open(DeviceKind::Rmem).map_err(|e| format!("open: {e}"))?;
    if let Backend::Nbd(b) = &backend {
        b.start(&dev).map_err(|e| format!("{}: {e}", b.uri()))?;
    }
    let cfg = o.region.config(abi::RMEM_BACKEND_AGENT, 0, 0);
    let off = dev
        .rmem_configure(&cfg)
        .map_err(|e| format!("RMEM_CONFIGURE: {e}"))?;
    // The program gets its own open-file descriptor of the same file: dup without
    // close-on-exec.
    let fd = dev.as_fd().as_raw_fd();
    // SAFETY: duplicates a descriptor we own.
    let child_fd = unsafe { libc::fcntl(fd, libc::F_DUPFD, 3) };
    if child_fd < 0 {
        return Err(format!("dup: {}", std::io::Error::last_os_error()));
    }
    let mut child = std::process::Command::new(&o.command[0])
        .args(&o.command[1..])
        .env("MEMKIT_RMEM_FD", child_fd.to_string())
        .env("MEMKIT_RMEM_OFFSET", off.to_string())
        .env("MEMKIT_RMEM_BYTES", cfg.bytes.to_string())
        .env("MEMKIT_RMEM_POLICY", o.region.policy.name())
        .env(
            "MEMKIT_RMEM_WINDOW",
            (u64::from(o.region.degree) + 1).to_string(),
        )
        .spawn()
        .map_err(|e| format!("start {}: {e}", o.command[0]))?;
    // SAFETY: the child has its copy; ours is not used.
    unsafe { libc::close(child_fd) };
    let nbd = match &backend {
        Backend::Nbd(b) => Some(b.clone()),
        Backend::Server(_) => None,
    };
    let serving = std::thread::spawn(move || match backend {
        Backend::Nbd(b) => b.serve(),
        Backend::Server(mut c) => run_agent(&dev, &mut c, &mut AgentCounts::default()),
    });
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if serving.is_finished() {
        if let Ok(Err(e)) = serving.join() {
            return Err(format!("agent: {e}"));
        }
    }
    // The loop blocks in read(2) on a region the program no longer uses: the
    // process exit ends it. The NBD backend ends its connection first.
    if let Some(b) = nbd {
        let r = b.finish();
        if let Some(path) = &o.report {
            let text = serde_json::to_string(&r).map_err(|e| e.to_string())?;
            std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(why) = r.lost {
            return Err(format!("{}: {why}", r.uri));
        }
    }
    if !status.success() {
        return Err(format!("{} exited with {status}", o.command[0]));
    }
    Ok(())
}

/// `memkit rmem server`: says where it listens and whether the network reaches it,
/// then serves.
fn server(o: &ServerOpts, json: bool) -> Result<(), String> {
    use memkit::rmem_agent::{serve, Limits, PROTOCOL_VERSION};
    let limits = Limits {
        pages: o.pages,
        namespaces: o.max_namespaces,
        stored: o.max_stored_pages,
    };
    let l = std::net::TcpListener::bind(&o.listen)
        .map_err(|e| format!("server on {}: {e}", o.listen))?;
    let addr = l
        .local_addr()
        .map_err(|e| format!("server on {}: {e}", o.listen))?;
    let loopback = addr.ip().is_loopback();
    let reach = if loopback {
        "loopback only: reachable from this machine only".to_string()
    } else {
        format!(
            "not loopback: reachable from the network, and the protocol has no \
             authentication or encryption (any peer can attach any namespace it names); \
             --listen 127.0.0.1:{} keeps it on this machine",
            addr.port()
        )
    };
    let what = format!(
        "protocol version {PROTOCOL_VERSION}; at most {} namespaces of {} pages, {} pages \
         stored in all",
        limits.namespaces, limits.pages, limits.stored
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "listen": addr.to_string(),
                "loopback": loopback,
                "protocol": PROTOCOL_VERSION,
                "max_pages": limits.pages,
                "max_namespaces": limits.namespaces,
                "max_stored_pages": limits.stored,
            })
        );
        if !loopback {
            eprintln!("memkit rmem server: listening on {addr}, {reach}");
        }
    } else {
        println!("listening on {addr}, {reach}");
        println!("{what}");
    }
    serve(l, limits).map_err(|e| format!("server on {addr}: {e}"))
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
    println!(
        "bytes                {} in, {} out",
        o.bytes_in, o.bytes_out
    );
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

/// Runs `memkit workload rmem-run`.
pub fn run_workload(o: &RunOpts, json: bool) -> ExitCode {
    let ops = o.ops.unwrap_or(2 * o.region.pages);
    let r = if o.anon {
        run_anon(o, ops)
    } else {
        run_region(o, ops)
    };
    match r {
        Ok(r) => {
            emit(json, &r, || {
                format!(
                    "{} {} policy {}: {} accesses in {:.1} ms; {} sync faults, {} waits, {} prefetches, {} hits (accuracy {:.2}, coverage {:.2}), {} late, {} wasted, {} evictions\n",
                    r.memory,
                    r.pattern,
                    r.policy,
                    r.accesses,
                    r.runtime_ns as f64 / 1e6,
                    r.sync_faults,
                    r.waits,
                    r.prefetches,
                    r.hits,
                    r.accuracy,
                    r.coverage,
                    r.late,
                    r.wasted,
                    r.evictions
                )
            });
            ExitCode::SUCCESS
        }
        Err(e) => fail(json, &format!("rmem-run: {e}"), exit::ERROR),
    }
}

/// Runs a `memkit rmem` subcommand.
pub fn run(cmd: RmemCmd, json: bool) -> ExitCode {
    let res = match cmd {
        RmemCmd::Stats => Device::open(DeviceKind::Rmem)
            .and_then(|d| d.rmem_stats(true))
            .map(|s| print_stats(&s, json))
            .map_err(|e| format!("RMEM_STATS: {e}")),
        RmemCmd::Server(o) => server(&o, json),
        RmemCmd::Agent(o) => agent(&o),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(json, &format!("rmem: {e}"), exit::ERROR),
    }
}
