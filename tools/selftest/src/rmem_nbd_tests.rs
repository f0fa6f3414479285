//! Remote memory served by real NBD servers on the guest's loopback: `qemu-nbd` (a
//! file on tmpfs), `nbdkit` with its `memory` plugin and `nbd-server` (a file),
//! started by the cases themselves (the initramfs carries Debian's binaries).

use crate::ktap::{Outcome, TestResult};
use crate::rmem_tests::{check_random, config, region, stats};
use memkit::nbd::{Stream, Uri};
use memkit::rmem_nbd::{NbdBackend, NbdOptions};
use memkit_core::abi;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server on 127.0.0.1, stopped when dropped.
struct Server {
    child: Child,
    /// nbd-server daemonizes (its -d serves one connection): its pid is here.
    pid_file: Option<PathBuf>,
    dir: PathBuf,
    uri: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self
            .pid_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
        {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

impl Server {
    /// `kind` exporting `bytes` as `nbd://127.0.0.1:PORT/pages`.
    fn start(kind: &str, bytes: u64) -> Result<Server, String> {
        let port = free_port()?;
        let dir = PathBuf::from(format!("/tmp/nbd-{kind}-{port}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = dir.join("export.img");
        let f = file.to_str().ok_or("path")?.to_string();
        if kind != "nbdkit" {
            std::fs::File::create(&file)
                .and_then(|h| h.set_len(bytes))
                .map_err(|e| format!("{f}: {e}"))?;
        }
        let p = port.to_string();
        let mut cmd = match kind {
            "qemu-nbd" => {
                let mut c = Command::new("qemu-nbd");
                c.args(["-f", "raw", "-t", "--discard=unmap", "-x", "pages"])
                    .args(["-b", "127.0.0.1", "-p", &p, &f]);
                c
            }
            "nbdkit" => {
                let mut c = Command::new("nbdkit");
                c.args(["-f", "-i", "127.0.0.1", "-p", &p, "-e", "pages", "memory"])
                    .arg(bytes.to_string());
                c
            }
            "nbd-server" => {
                let conf = dir.join("nbd-server.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "[generic]\n    listenaddr = 127.0.0.1\n    port = {p}\n\
                         [pages]\n    exportname = {f}\n    trim = true\n"
                    ),
                )
                .map_err(|e| e.to_string())?;
                let mut c = Command::new("nbd-server");
                c.arg("-C").arg(&conf).arg("-p").arg(dir.join("pid"));
                c
            }
            k => return Err(format!("no server {k}")),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start {kind}: {e}"))?;
        let server = Server {
            child,
            pid_file: (kind == "nbd-server").then(|| dir.join("pid")),
            dir,
            uri: format!("nbd://127.0.0.1:{port}/pages"),
        };
        let target = Uri::parse(&server.uri)?.target;
        let end = Instant::now() + Duration::from_secs(60);
        while Stream::connect(&target).is_err() {
            if Instant::now() > end {
                return Err(format!("{kind} did not listen on port {port} in 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

/// Random reads and writes over a region 4 times its budget, served by each server
/// (eviction and write-back through NBD writes, fetches through reads with the
/// `trend` prefetcher's reads in flight beside them): each access checks one of
/// the four words a write sets, and the end all four of every page.
pub fn rmem_nbd_integrity(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 64;
    for (i, kind) in ["qemu-nbd", "nbdkit", "nbd-server"].into_iter().enumerate() {
        let server = Server::start(kind, 1 << 20)?;
        let cfg = abi::RmemConfig {
            backend: abi::RMEM_BACKEND_AGENT,
            lat_base_ns: 0,
            lat_page_ns: 0,
            ..config(PAGES, PAGES / 4, abi::RMEM_POLICY_TREND)
        };
        let (dev, map) = region(&cfg)?;
        let opts = NbdOptions {
            keep: false,
            inflight: 32,
        };
        let uri = Uri::parse(&server.uri)?;
        let backend = NbdBackend::connect(&uri, PAGES, opts)?;
        backend.start(&dev).map_err(|e| format!("{kind}: {e}"))?;
        let serving = backend.clone();
        // Blocks in read(2) on the region until the case's process ends.
        std::thread::spawn(move || serving.serve());
        check_random(&map, 250, 0x6e62_6400 + i as u64).map_err(|e| format!("{kind}: {e}"))?;
        let s = stats(&dev)?;
        drop(map);
        let rep = backend.finish();
        println!(
            "{kind}: sync {} evictions {} writebacks {}; nbd: fetches {} zero-filled {} \
             writes {} failed {} peak in flight {} fetch p50 < {} us p99 < {} us \
             structured {}",
            s.faults_sync,
            s.evictions,
            s.writebacks,
            rep.fetches,
            rep.zero_fills,
            rep.writebacks,
            rep.failed,
            rep.peak_inflight,
            rep.fetch_latency_p50_us,
            rep.fetch_latency_p99_us,
            rep.structured_replies
        );
        if let Some(why) = rep.lost {
            return Err(format!("{kind}: connection lost: {why}"));
        }
        if rep.failed != 0 || rep.fetches == 0 || rep.writebacks == 0 || s.evictions == 0 {
            return Err(format!(
                "{kind}: no fetch, write or eviction through the server, or a failure: {rep:?}"
            ));
        }
    }
    Ok(Outcome::Pass)
}

/// `memkit rmem agent --nbd` from the command line, over qemu-nbd: a sequential scan
/// of pages written back earlier, with `trend` at degree 16 — its prefetches are in
/// flight together (the report's peak), and its JSON report has the latency
/// histogram.
pub fn rmem_nbd_agent_prefetches_overlap(_: &crate::Options) -> TestResult {
    use crate::replica_tests::memkit;
    let server = Server::start("qemu-nbd", 4 << 20)?;
    let report = "/tmp/rmem-nbd-report.json";
    let v = memkit(&[
        "rmem",
        "agent",
        "--nbd",
        &server.uri,
        "--pages",
        "256",
        "--budget",
        "64",
        "--policy",
        "trend",
        "--degree",
        "16",
        "--deadline-us",
        "500000",
        "--report",
        report,
        "--",
        "memkit",
        "--json",
        "workload",
        "rmem-run",
        "--inherit",
        "--pattern",
        "seq",
        "--ops",
        "256",
    ])?;
    println!("workload: {v}");
    let text = std::fs::read_to_string(report).map_err(|e| format!("{report}: {e}"))?;
    println!("agent: {}", text.trim());
    let r: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if v["accesses"] != 256 || v["prefetches"].as_u64().unwrap_or(0) == 0 {
        return Err(format!("the scan did not prefetch: {v}"));
    }
    let peak = r["peak_inflight"].as_u64().unwrap_or(0);
    let hist: u64 = r["fetch_latency_us"]
        .as_array()
        .map_or(0, |b| b.iter().map(|x| x[1].as_u64().unwrap_or(0)).sum());
    if peak < 2 || hist == 0 || hist != r["fetches"].as_u64().unwrap_or(u64::MAX) {
        return Err(format!("no overlap or no histogram: {text}"));
    }
    if !r["lost"].is_null() || r["failed"] != 0 {
        return Err(format!("failures: {text}"));
    }
    Ok(Outcome::Pass)
}
