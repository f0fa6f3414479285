//! `/dev/memkit-rmem` in the guest: every refused configuration and mapping, data
//! integrity under random reads and writes with a budget of a few pages (evictions
//! and write-backs), threads faulting the same pages, what the prefetch policies
//! save on a scan, the deadline path forced (deadline shorter than the latency) with
//! the data still right, and exits and unmaps with fetches in flight.

use crate::ckpt_tests::Rng;
use crate::ktap::{expect_errno, Outcome, TestResult};
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use memkit_core::abi;
use std::time::{Duration, Instant};

const PAGE: usize = CKPT_PAGE_SIZE;

fn open() -> Result<Device, String> {
    Device::open(DeviceKind::Rmem).map_err(|e| format!("open /dev/memkit-rmem: {e}"))
}

/// A valid configuration: emulated backend, `pages` pages, `budget` local.
pub(crate) fn config(pages: u64, budget: u64, policy: u32) -> abi::RmemConfig {
    abi::RmemConfig {
        bytes: pages * PAGE as u64,
        budget,
        backend: abi::RMEM_BACKEND_EMULATED,
        policy,
        deadline_ns: 50_000_000,
        degree: 16,
        max_inflight: 32,
        lat_base_ns: 20_000,
        lat_page_ns: 1_000,
        ..Default::default()
    }
}

/// An agent-backed region of `pages` pages, `budget` local, without prefetch or
/// deadline: every fault's request is the test's to answer (or not).
pub(crate) fn agent_config(pages: u64, budget: u64) -> abi::RmemConfig {
    abi::RmemConfig {
        backend: abi::RMEM_BACKEND_AGENT,
        lat_base_ns: 0,
        lat_page_ns: 0,
        deadline_ns: 0,
        degree: 0,
        ..config(pages, budget, abi::RMEM_POLICY_NONE)
    }
}

/// A new file with a region of `cfg`, mapped whole.
pub(crate) fn region(cfg: &abi::RmemConfig) -> Result<(Device, CkptMap), String> {
    let dev = open()?;
    let off = dev
        .rmem_configure(cfg)
        .map_err(|e| format!("RMEM_CONFIGURE {cfg:?}: {e}"))?;
    let map = CkptMap::new(&dev, off, cfg.bytes as usize)
        .map_err(|e| format!("mmap {} bytes at {off:#x}: {e}", cfg.bytes))?;
    Ok((dev, map))
}

pub(crate) fn stats(dev: &Device) -> Result<abi::RmemStats, String> {
    dev.rmem_stats(false)
        .map_err(|e| format!("RMEM_STATS: {e}"))
}

/// The value page `p`, word `w` holds after `gen` rewrites.
pub(crate) fn word(p: u64, w: u64, gen: u64) -> u64 {
    (p << 40) ^ (w << 20) ^ gen ^ 0x9e37_79b9_7f4a_7c15
}

pub fn rmem_config_rejected(_: &crate::Options) -> TestResult {
    let ok = config(64, 8, abi::RMEM_POLICY_PTLINE);
    {
        let dev = open()?;
        expect_errno(
            "RMEM_STATS before configure",
            dev.rmem_stats(false),
            libc::EINVAL,
        )?;
        expect_errno(
            "mmap before configure",
            CkptMap::new(&dev, 0, PAGE),
            libc::EINVAL,
        )?;
    }
    let page = PAGE as u64;
    let cases: Vec<(&str, abi::RmemConfig, i32)> = vec![
        ("size 0", abi::RmemConfig { bytes: 0, ..ok }, libc::EINVAL),
        (
            "unaligned size",
            abi::RmemConfig {
                bytes: page * 8 + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "size above the limit",
            abi::RmemConfig {
                bytes: abi::RMEM_MAX_BYTES + page,
                budget: 8,
                ..ok
            },
            libc::EFBIG,
        ),
        (
            "absurd size",
            abi::RmemConfig {
                bytes: u64::MAX - 4095,
                ..ok
            },
            libc::EFBIG,
        ),
        (
            "budget 0",
            abi::RmemConfig { budget: 0, ..ok },
            libc::EINVAL,
        ),
        (
            "budget above the pages",
            abi::RmemConfig { budget: 65, ..ok },
            libc::EINVAL,
        ),
        (
            "budget above the limit",
            abi::RmemConfig {
                bytes: abi::RMEM_MAX_BYTES,
                budget: abi::RMEM_MAX_BUDGET + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "unknown flag",
            abi::RmemConfig {
                flags: 1 << 7,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "unknown backend",
            abi::RmemConfig { backend: 9, ..ok },
            libc::EINVAL,
        ),
        (
            "unknown policy",
            abi::RmemConfig {
                policy: abi::RMEM_POLICIES,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "degree above the limit",
            abi::RmemConfig {
                degree: abi::RMEM_MAX_DEGREE + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "no request in flight",
            abi::RmemConfig {
                max_inflight: 0,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "too many in flight",
            abi::RmemConfig {
                max_inflight: abi::RMEM_MAX_INFLIGHT + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "deadline above the limit",
            abi::RmemConfig {
                deadline_ns: abi::RMEM_MAX_NS + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "latency above the limit",
            abi::RmemConfig {
                lat_base_ns: abi::RMEM_MAX_NS + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "per-page time above the limit",
            abi::RmemConfig {
                lat_page_ns: abi::RMEM_MAX_PAGE_NS + 1,
                ..ok
            },
            libc::EINVAL,
        ),
        (
            "mmap_offset set on input",
            abi::RmemConfig {
                mmap_offset: 4096,
                ..ok
            },
            libc::EINVAL,
        ),
    ];
    let dev = open()?;
    for (what, cfg, errno) in cases {
        expect_errno(
            &format!("RMEM_CONFIGURE with {what}"),
            dev.rmem_configure(&cfg),
            errno,
        )?;
    }
    expect_errno(
        "RMEM_STATS after refusals",
        dev.rmem_stats(false),
        libc::EINVAL,
    )?;
    let off = dev
        .rmem_configure(&ok)
        .map_err(|e| format!("RMEM_CONFIGURE after refusals: {e}"))?;
    expect_errno(
        "second RMEM_CONFIGURE",
        dev.rmem_configure(&ok),
        libc::EEXIST,
    )?;
    let s = stats(&dev)?;
    if s.bytes != ok.bytes || s.budget != ok.budget || s.local != 0 {
        return Err(format!("stats after configure: {s:?}"));
    }
    // Mappings: beyond the region, before it, private.
    expect_errno(
        "mmap past the end",
        CkptMap::new(&dev, off, 65 * PAGE),
        libc::EINVAL,
    )?;
    expect_errno(
        "mmap of the last page and one more",
        CkptMap::new(&dev, off + 63 * page, 2 * PAGE),
        libc::EINVAL,
    )?;
    expect_errno(
        "mmap before the region",
        CkptMap::new(&dev, off - page, PAGE),
        libc::EINVAL,
    )?;
    expect_errno(
        "MAP_PRIVATE",
        CkptMap::new_private(&dev, off, PAGE),
        libc::EINVAL,
    )?;
    // A part of the region is fine, and reads zeros.
    let part =
        CkptMap::new(&dev, off + 8 * page, 4 * PAGE).map_err(|e| format!("mmap part: {e}"))?;
    if part.read_u64(3 * PAGE + 8) != 0 {
        return Err("a never-written page does not read as zeros".into());
    }
    Ok(Outcome::Pass)
}

/// Random reads and writes of whole pages' words over `pages` pages with `budget`
/// local, checked against a shadow copy; returns the region's stats.
fn random_integrity(cfg: &abi::RmemConfig, ops: u64, seed: u64) -> Result<abi::RmemStats, String> {
    let (dev, map) = region(cfg)?;
    check_random(&map, ops, seed)?;
    stats(&dev)
}

/// The reads and writes of [`random_integrity`] over a mapped region.
pub(crate) fn check_random(map: &CkptMap, ops: u64, seed: u64) -> Result<(), String> {
    let pages = (map.len() / PAGE) as u64;
    // Generation of each page; 0: never written (zeros).
    let mut gens = vec![0u64; pages as usize];
    let mut rng = Rng(seed);
    let words = [0u64, 1, 255, 511];
    for op in 0..ops {
        let p = rng.next() % pages;
        let w = words[(rng.next() % words.len() as u64) as usize];
        let off = p as usize * PAGE + w as usize * 8;
        let g = gens[p as usize];
        let want = if g == 0 { 0 } else { word(p, w, g) };
        let got = map.read_u64(off);
        if got != want {
            return Err(format!(
                "op {op}: page {p} word {w} reads {got:#x}, want {want:#x} (generation {g})"
            ));
        }
        if rng.next().is_multiple_of(3) {
            let g = g + 1;
            for w in words {
                map.write_u64(p as usize * PAGE + w as usize * 8, word(p, w, g));
            }
            gens[p as usize] = g;
        }
    }
    // Every page once more, in order.
    for p in 0..pages {
        let g = gens[p as usize];
        for w in words {
            let want = if g == 0 { 0 } else { word(p, w, g) };
            let got = map.read_u64(p as usize * PAGE + w as usize * 8);
            if got != want {
                return Err(format!(
                    "final pass: page {p} word {w} reads {got:#x}, want {want:#x}"
                ));
            }
        }
    }
    Ok(())
}

pub fn rmem_integrity_small_budget(_: &crate::Options) -> TestResult {
    for policy in [
        abi::RMEM_POLICY_NONE,
        abi::RMEM_POLICY_PTLINE,
        abi::RMEM_POLICY_PTLINE_HISTORY,
        abi::RMEM_POLICY_WINDOW,
        abi::RMEM_POLICY_TREND,
    ] {
        let cfg = config(64, 4, policy);
        let s = random_integrity(&cfg, 3000, 0x1234_5678 + u64::from(policy))?;
        println!(
            "policy {policy}: sync {} local {} wait {} prefetches {} installed {} hits {} late {} wasted {} evictions {} writebacks {}",
            s.faults_sync, s.faults_local, s.faults_wait, s.prefetches, s.installed, s.hits,
            s.late, s.wasted, s.evictions, s.writebacks
        );
        if s.evictions == 0 || s.writebacks == 0 || s.faults_sync == 0 {
            return Err(format!(
                "policy {policy}: no eviction, write-back or fetch: {s:?}"
            ));
        }
        if s.local > cfg.budget {
            return Err(format!(
                "policy {policy}: {} pages local, budget {}",
                s.local, cfg.budget
            ));
        }
    }
    Ok(Outcome::Pass)
}

pub fn rmem_threads_fault_same_pages(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 16;
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 200;
    let cfg = abi::RmemConfig {
        lat_base_ns: 200_000,
        ..config(PAGES, 2, abi::RMEM_POLICY_PTLINE)
    };
    let (dev, map) = region(&cfg)?;
    // Thread t owns word t of every page: all threads fault the same pages.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let map = &map;
                s.spawn(move || -> Result<(), String> {
                    let mut rng = Rng(0xabc0 + t);
                    for r in 1..=ROUNDS {
                        let p = rng.next() % PAGES;
                        let off = p as usize * PAGE + t as usize * 8;
                        let before = map.read_u64(off);
                        if before != 0 && before >> 32 != p + 1 {
                            return Err(format!("thread {t}: page {p} word holds {before:#x}"));
                        }
                        map.write_u64(off, (p + 1) << 32 | r);
                        let after = map.read_u64(off);
                        if after != (p + 1) << 32 | r {
                            return Err(format!(
                                "thread {t}: wrote {r} to page {p}, read {after:#x}"
                            ));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "a thread panicked".to_string())?)
    })?;
    let s = stats(&dev)?;
    println!(
        "sync {} local {} wait {} evictions {} writebacks {}",
        s.faults_sync, s.faults_local, s.faults_wait, s.evictions, s.writebacks
    );
    if s.evictions == 0 {
        return Err(format!(
            "no eviction with 16 pages over a budget of 2: {s:?}"
        ));
    }
    Ok(Outcome::Pass)
}

/// A sequential read of every page; the region's stats.
fn scan(cfg: &abi::RmemConfig) -> Result<abi::RmemStats, String> {
    let (dev, map) = region(cfg)?;
    let pages = cfg.bytes as usize / PAGE;
    for p in 0..pages {
        let v = map.read_u64(p * PAGE);
        if v != 0 {
            return Err(format!("page {p} of a new region reads {v:#x}"));
        }
    }
    stats(&dev)
}

pub fn rmem_ptline_prefetch_cuts_scan_faults(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 256;
    let none = scan(&config(PAGES, 64, abi::RMEM_POLICY_NONE))?;
    let line = scan(&config(PAGES, 64, abi::RMEM_POLICY_PTLINE))?;
    for (name, s) in [("none", &none), ("ptline", &line)] {
        println!(
            "{name}: sync {} local {} wait {} prefetches {} installed {} hits {} late {} wasted {}",
            s.faults_sync,
            s.faults_local,
            s.faults_wait,
            s.prefetches,
            s.installed,
            s.hits,
            s.late,
            s.wasted
        );
    }
    if none.faults_sync != PAGES || none.prefetches != 0 {
        return Err(format!(
            "policy none: want {PAGES} sync faults and no prefetch: {none:?}"
        ));
    }
    // One sync fault per PTE line of 8, the other 7 prefetched (some may still be in
    // flight when the scan gets there: those faults wait).
    if line.faults_sync > PAGES / 4 {
        return Err(format!(
            "ptline: {} sync faults over {PAGES} pages",
            line.faults_sync
        ));
    }
    if line.prefetches < PAGES / 2 || line.installed + line.faults_wait + line.faults_local == 0 {
        return Err(format!("ptline: too few prefetches used: {line:?}"));
    }
    Ok(Outcome::Pass)
}

pub fn rmem_deadline_leaves_late_pages_not_present(_: &crate::Options) -> TestResult {
    for keep in [false, true] {
        // Every prefetch takes 5 ms; the deadline is 100 µs.
        let cfg = abi::RmemConfig {
            flags: if keep { abi::RMEM_KEEP_LATE } else { 0 },
            deadline_ns: 100_000,
            lat_base_ns: 5_000_000,
            ..config(64, 32, abi::RMEM_POLICY_PTLINE)
        };
        let (dev, map) = region(&cfg)?;
        // One write per PTE line: each fault prefetches the 7 other pages of its
        // line, and each of those prefetches misses its deadline.
        for p in (0..64usize).step_by(8) {
            map.write_u64(p * PAGE + 16, word(p as u64, 2, 1));
        }
        // Let the late data arrive (kept or dropped), then write the rest and read
        // everything back.
        std::thread::sleep(Duration::from_millis(100));
        for p in (0..64usize).filter(|p| p % 8 != 0) {
            map.write_u64(p * PAGE + 16, word(p as u64, 2, 1));
        }
        for p in 0..64usize {
            let got = map.read_u64(p * PAGE + 16);
            if got != word(p as u64, 2, 1) {
                return Err(format!("keep_late {keep}: page {p} reads {got:#x}"));
            }
        }
        let s = stats(&dev)?;
        println!(
            "keep_late {keep}: sync {} local {} wait {} prefetches {} installed {} late {} wasted {}",
            s.faults_sync, s.faults_local, s.faults_wait, s.prefetches, s.installed, s.late, s.wasted
        );
        if s.late == 0 || s.installed != 0 {
            return Err(format!(
                "keep_late {keep}: want late prefetches and none installed: {s:?}"
            ));
        }
        if !keep && s.wasted == 0 {
            return Err(format!(
                "late data dropped but nothing counted wasted: {s:?}"
            ));
        }
        if keep && s.faults_local == 0 {
            return Err(format!(
                "late data kept but no fault found a page local: {s:?}"
            ));
        }
    }
    Ok(Outcome::Pass)
}

pub fn rmem_exit_and_unmap_with_fetches_in_flight(_: &crate::Options) -> TestResult {
    let cfg = abi::RmemConfig {
        lat_base_ns: 30_000_000,
        deadline_ns: 0,
        ..config(256, 64, abi::RMEM_POLICY_WINDOW)
    };
    let start = Instant::now();
    for round in 0..4 {
        // SAFETY: the child only touches its own mapping and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            let code = match region(&cfg) {
                Ok((_dev, map)) => {
                    for p in [0usize, 1, 2, 9, 17] {
                        map.write_u64(p * PAGE, 1);
                    }
                    // Exit with prefetches in flight (30 ms each), mapping and file
                    // still open: exit_mmap and the release run with them pending.
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: leaves the forked child without running the parent's atexit.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("round {round}: child status {status:#x}"));
        }
        // munmap and close in this process with fetches in flight.
        let (dev, map) = region(&cfg)?;
        map.write_u64(5 * PAGE, 7);
        drop(map);
        drop(dev);
    }
    // Every request was cancelled or completed: the module's totals moved, and a
    // new region still works.
    let g = open()?
        .rmem_stats(true)
        .map_err(|e| format!("global stats: {e}"))?;
    if g.prefetches == 0 {
        return Err(format!("no prefetch was ever issued: {g:?}"));
    }
    // The debugfs file shows the same totals.
    let text = std::fs::read_to_string("/sys/kernel/debug/memkit/rmem")
        .map_err(|e| format!("/sys/kernel/debug/memkit/rmem: {e}"))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    match field("prefetches") {
        Some(n) if n >= g.prefetches => {}
        other => {
            return Err(format!(
                "debugfs prefetches {other:?}, the stats ioctl said {}:\n{text}",
                g.prefetches
            ))
        }
    }
    let (_dev, map) = region(&config(16, 4, abi::RMEM_POLICY_PTLINE))?;
    map.write_u64(0, 3);
    if map.read_u64(0) != 3 {
        return Err("a region after the teardowns does not hold a write".into());
    }
    println!("4 rounds in {:?}", start.elapsed());
    Ok(Outcome::Pass)
}

pub fn rmem_agent_end_to_end(_: &crate::Options) -> TestResult {
    use crate::replica_tests::{kill_and_reap, memkit, spawn_line};
    let (server, v) = spawn_line(&[
        "--json",
        "rmem",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--pages",
        "128",
    ])?;
    let addr = v["listen"].as_str().ok_or("no listen address")?.to_string();
    let res = (|| {
        for policy in ["none", "ptline", "window"] {
            // Every page written once through a budget of 16 (write-backs to the
            // server), then read back in random order (fetches) with writes; every
            // read checks the page's tag.
            let v = memkit(&[
                "rmem",
                "agent",
                "--server",
                &addr,
                "--pages",
                "128",
                "--budget",
                "16",
                "--policy",
                policy,
                "--deadline-us",
                "20000",
                "--",
                "memkit",
                "--json",
                "workload",
                "rmem-run",
                "--inherit",
                "--pattern",
                "random",
                "--ops",
                "150",
                "--write-every",
                "3",
            ])?;
            println!("{policy}: {v}");
            if v["memory"] != "rmem-agent" || v["accesses"] != 150 || v["policy"] != policy {
                return Err(format!("{policy}: unexpected report {v}"));
            }
            if v["evictions"].as_u64().unwrap_or(0) == 0
                || v["sync_faults"].as_u64().unwrap_or(0) == 0
            {
                return Err(format!(
                    "{policy}: no eviction or fetch through the agent: {v}"
                ));
            }
        }
        // A sequential scan prefetches through the agent.
        let v = memkit(&[
            "rmem",
            "agent",
            "--server",
            &addr,
            "--pages",
            "128",
            "--budget",
            "64",
            "--policy",
            "ptline",
            "--deadline-us",
            "50000",
            "--",
            "memkit",
            "--json",
            "workload",
            "rmem-run",
            "--inherit",
            "--pattern",
            "seq",
            "--ops",
            "128",
        ])?;
        println!("seq ptline: {v}");
        if v["prefetches"].as_u64().unwrap_or(0) == 0 {
            return Err(format!("no prefetch through the agent: {v}"));
        }
        Ok(())
    })();
    kill_and_reap(server.id() as i32);
    res?;
    Ok(Outcome::Pass)
}

/// Reads the next agent request from `dev`: one header per read (a write-back, which
/// needs room for its page too, is refused with EINVAL).
pub(crate) fn read_msg(dev: &Device) -> Result<abi::RmemMsg, std::io::Error> {
    use memkit_core::abi::UapiStruct;
    use std::os::fd::{AsFd, AsRawFd};
    let mut buf = [0u8; abi::RmemMsg::SIZE];
    // SAFETY: reads into `buf`, valid for its length.
    let n = unsafe { libc::read(dev.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n != buf.len() as isize {
        return Err(std::io::Error::last_os_error());
    }
    Ok(abi::RmemMsg::decode(&buf))
}

pub(crate) fn next_msg(dev: &Device) -> Result<abi::RmemMsg, String> {
    read_msg(dev).map_err(|e| format!("agent read: {e}"))
}

/// Every request waiting to be read, without blocking.
pub(crate) fn drain(dev: &Device) -> Result<Vec<abi::RmemMsg>, String> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = dev.as_fd().as_raw_fd();
    // SAFETY: fcntl on our descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut out = Vec::new();
    let res = loop {
        match read_msg(dev) {
            Ok(m) => out.push(m),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break Ok(out),
            Err(e) => break Err(format!("non-blocking agent read: {e}")),
        }
    };
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
    res
}

/// Writes a reply; the errno if refused.
pub(crate) fn reply(dev: &Device, m: &abi::RmemMsg, data: Option<&[u8]>) -> std::io::Result<()> {
    use memkit_core::abi::UapiStruct;
    use std::os::fd::{AsFd, AsRawFd};
    let mut out = vec![0u8; abi::RmemMsg::SIZE];
    m.encode(&mut out);
    out.extend_from_slice(data.unwrap_or(&[]));
    // SAFETY: writes `out`, valid for its length.
    let n = unsafe { libc::write(dev.as_fd().as_raw_fd(), out.as_ptr().cast(), out.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn rmem_agent_rejects_bad_replies(_: &crate::Options) -> TestResult {
    let cfg = abi::RmemConfig {
        backend: abi::RMEM_BACKEND_AGENT,
        lat_base_ns: 0,
        lat_page_ns: 0,
        deadline_ns: 2_000_000,
        ..config(64, 32, abi::RMEM_POLICY_PTLINE)
    };
    let bad_lat = abi::RmemConfig {
        lat_base_ns: 1000,
        ..cfg
    };
    expect_errno(
        "agent with a latency",
        open()?.rmem_configure(&bad_lat),
        libc::EINVAL,
    )?;
    let (dev, map) = region(&cfg)?;
    // Nothing to read yet: O_NONBLOCK says so; a buffer below a message is refused.
    // (drain reads with O_NONBLOCK until EAGAIN; any other error fails)
    let early = drain(&dev)?;
    if !early.is_empty() {
        return Err(format!("requests before any access: {early:?}"));
    }
    {
        use std::os::fd::{AsFd, AsRawFd};
        let mut small = [0u8; 8];
        // SAFETY: reads into `small`.
        let n = unsafe { libc::read(dev.as_fd().as_raw_fd(), small.as_mut_ptr().cast(), 8) };
        let e = std::io::Error::last_os_error().raw_os_error();
        if n != -1 || e != Some(libc::EINVAL) {
            return Err(format!("read of 8 bytes: {n} {e:?}, want EINVAL"));
        }
    }
    let pattern: Vec<u8> = (0..PAGE).map(|i| (i * 7 + 3) as u8).collect();
    // The first page whose PTE starts a PTE line: its fault prefetches the next 7.
    let p0 = ((8 - (map.addr() >> 12) % 8) % 8) as usize;
    let m0 = &map;
    std::thread::scope(|s| -> Result<(), String> {
        let toucher = s.spawn(move || m0.read_u64(p0 * PAGE + 8));
        // The synchronous fetch comes first, then the line's prefetches.
        let sync = next_msg(&dev)?;
        if sync.page != p0 as u64 || sync.kind != abi::RMEM_MSG_FETCH {
            return Err(format!("first request {sync:?}, want a fetch of page {p0}"));
        }
        std::thread::sleep(Duration::from_millis(5));
        let msgs = drain(&dev)?;
        let pages: Vec<u64> = msgs.iter().map(|m| m.page).collect();
        let want: Vec<u64> = (p0 as u64 + 1..p0 as u64 + 8).collect();
        if pages != want {
            return Err(format!("prefetches of pages {pages:?}, want {want:?}"));
        }
        let cases: Vec<(&str, abi::RmemMsg, Option<&[u8]>, i32)> = vec![
            ("no data", sync, None, libc::EINVAL),
            ("half a page", sync, Some(&pattern[..2048]), libc::EINVAL),
            (
                "unknown id",
                abi::RmemMsg {
                    id: sync.id + 1000,
                    ..sync
                },
                Some(&pattern),
                libc::ENOENT,
            ),
            (
                "wrong page",
                abi::RmemMsg {
                    page: sync.page + 1,
                    ..sync
                },
                Some(&pattern),
                libc::EINVAL,
            ),
            (
                "wrong kind",
                abi::RmemMsg {
                    kind: abi::RMEM_MSG_WRITEBACK,
                    ..sync
                },
                None,
                libc::EINVAL,
            ),
            (
                "non-zero padding",
                abi::RmemMsg { pad: 1, ..sync },
                Some(&pattern),
                libc::EINVAL,
            ),
        ];
        for (what, m, data, errno) in cases {
            expect_errno(&format!("reply with {what}"), reply(&dev, &m, data), errno)?;
        }
        reply(&dev, &sync, Some(&pattern)).map_err(|e| format!("good reply: {e}"))?;
        expect_errno(
            "second reply",
            reply(&dev, &sync, Some(&pattern)),
            libc::ENOENT,
        )?;
        let got = toucher.join().map_err(|_| "toucher panicked")?;
        let want = u64::from_ne_bytes(pattern[8..16].try_into().unwrap());
        if got != want {
            return Err(format!("page {p0} reads {got:#x}, want {want:#x}"));
        }
        // The prefetches are past their 2 ms deadline now: a reply is refused and
        // the data dropped; the page is fetched again on its access.
        std::thread::sleep(Duration::from_millis(20));
        let p3 = p0 as u64 + 3;
        let late = *msgs
            .iter()
            .find(|m| m.page == p3)
            .ok_or("no prefetch of page +3")?;
        expect_errno(
            "late reply",
            reply(&dev, &late, Some(&pattern)),
            libc::ETIME,
        )?;
        let toucher = s.spawn(move || m0.read_u64(p3 as usize * PAGE + 8));
        let m = next_msg(&dev)?;
        if m.page != p3 || m.kind != abi::RMEM_MSG_FETCH {
            return Err(format!(
                "after the dropped late reply: {m:?}, want a fetch of page {p3}"
            ));
        }
        let zeros = vec![0u8; PAGE];
        reply(&dev, &m, Some(&zeros)).map_err(|e| format!("reply for page {p3}: {e}"))?;
        let got = toucher.join().map_err(|_| "toucher panicked")?;
        if got != 0 {
            return Err(format!(
                "page {p3} reads {got:#x} after a dropped late reply, want 0"
            ));
        }
        // Its fault prefetched the rest of the line again: left unanswered.
        std::thread::sleep(Duration::from_millis(5));
        drain(&dev)?;
        Ok(())
    })?;
    // A fetch the agent fails: the access gets SIGBUS (in a child process).
    let q = p0 + 16;
    // SAFETY: the child only touches the mapping and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: a child that is never answered still ends.
        unsafe { libc::alarm(60) };
        let v = map.read_u64(q * PAGE);
        // SAFETY: leaves the child.
        unsafe { libc::_exit(if v == 0 { 0 } else { 1 }) };
    }
    // Every fetch of page q fails. (The child's first SIGBUS goes to the Rust
    // runtime's handler, which restores the default action and returns: the access
    // faults again, and that fetch fails too.)
    let mut failed_fetches = 0;
    let start = Instant::now();
    let status = loop {
        let mut status = 0;
        // SAFETY: polls the child forked above.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "the child did not end after {failed_fetches} failed fetches"
            ));
        }
        for m in drain(&dev)? {
            if m.page == q as u64 && m.kind == abi::RMEM_MSG_FETCH {
                let failed = abi::RmemMsg {
                    status: (-libc::EIO) as u32,
                    ..m
                };
                reply(&dev, &failed, None).map_err(|e| format!("failing reply: {e}"))?;
                failed_fetches += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !libc::WIFSIGNALED(status) || libc::WTERMSIG(status) != libc::SIGBUS {
        return Err(format!(
            "child after {failed_fetches} failed fetches: status {status:#x}, want SIGBUS"
        ));
    }
    let s = stats(&dev)?;
    println!(
        "sync {} wait {} prefetches {} late {} wasted {}",
        s.faults_sync, s.faults_wait, s.prefetches, s.late, s.wasted
    );
    if s.late == 0 || s.wasted == 0 {
        return Err(format!("late and dropped prefetches not counted: {s:?}"));
    }
    Ok(Outcome::Pass)
}
