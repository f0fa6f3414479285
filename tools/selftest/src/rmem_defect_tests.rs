//! Three defects of the regions' kernel side, each checked where it shows:
//!
//! - `rmem_writeback_one_eviction_per_fault`: a fault that waits for an agent's
//!   write-back to make room must not evict another dirty page at each wake-up (pages
//!   under write-back count in the budget): a slow agent gets exactly one write-back
//!   per fault, and the data stays right;
//! - `rmem_ckpt_map_shared_read_only`: a `MAP_SHARED`, `PROT_READ` mapping of an rmem
//!   or ckpt region on a descriptor opened read-only is allowed (the kernel keeps
//!   `VM_MAYSHARE` but clears `VM_SHARED` and `VM_MAYWRITE` for it), reads zeros, and
//!   cannot be made writable;
//! - `rmem_clock_probe_allocates_no_page_tables`: the clock's accessed-bit probe of
//!   the local pages at the faulting VMA's addresses allocates no page table where
//!   that VMA has none (`VmPTE` of the process stays put).

use crate::ktap::{expect_errno, Outcome, TestResult};
use crate::rmem_tests::{agent_config, config, region, reply, word};
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use memkit_core::abi::{self, UapiStruct};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PAGE: usize = CKPT_PAGE_SIZE;
const HDR: usize = abi::RmemMsg::SIZE;

/// A request read from an agent-backed region's descriptor: the message, and for a
/// write-back the page it carries.
struct Request {
    msg: abi::RmemMsg,
    data: Vec<u8>,
}

/// The agent of an agent-backed region, played by the test: it answers fetches with
/// the data of the page's last write-back (zeros if none) and stores write-backs.
struct Agent<'a> {
    dev: &'a Device,
    store: HashMap<u64, Vec<u8>>,
}

impl<'a> Agent<'a> {
    /// The agent of `dev`'s region; its reads no longer block.
    fn new(dev: &'a Device) -> Result<Agent<'a>, String> {
        // SAFETY: fcntl on our descriptor.
        if unsafe { libc::fcntl(dev.as_fd().as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
            return Err(format!(
                "fcntl O_NONBLOCK: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Agent {
            dev,
            store: HashMap::new(),
        })
    }

    /// Every request waiting to be read, write-backs with their page.
    fn take(&self) -> Result<Vec<Request>, String> {
        let fd = self.dev.as_fd().as_raw_fd();
        let mut buf = vec![0u8; 4 * (HDR + PAGE)];
        let mut out = Vec::new();
        loop {
            // SAFETY: reads into `buf`, valid for its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return Ok(out);
                }
                return Err(format!("agent read: {e}"));
            }
            let n = n as usize;
            if n == 0 {
                return Err("agent read: end of file".into());
            }
            let mut at = 0;
            while at < n {
                let msg = abi::RmemMsg::decode(
                    buf.get(at..at + HDR)
                        .ok_or(format!("agent read of {n} bytes: a cut message"))?,
                );
                at += HDR;
                let mut data = Vec::new();
                if msg.kind == abi::RMEM_MSG_WRITEBACK {
                    data = buf
                        .get(at..at + PAGE)
                        .ok_or(format!("a write-back without its page: {msg:?}"))?
                        .to_vec();
                    at += PAGE;
                }
                out.push(Request { msg, data });
            }
        }
    }

    /// Answers `r`: a fetch with the stored page, a write-back by storing its page.
    fn answer(&mut self, r: &Request) -> Result<(), String> {
        let m = &r.msg;
        match m.kind {
            abi::RMEM_MSG_FETCH => {
                let zeros = vec![0u8; PAGE];
                let data = self.store.get(&m.page).unwrap_or(&zeros);
                reply(self.dev, m, Some(data))
                    .map_err(|e| format!("reply to the fetch of page {}: {e}", m.page))
            }
            abi::RMEM_MSG_WRITEBACK => {
                self.store.insert(m.page, r.data.clone());
                reply(self.dev, m, None)
                    .map_err(|e| format!("reply to the write-back of page {}: {e}", m.page))
            }
            _ => Err(format!("a request of an unknown kind: {m:?}")),
        }
    }

    /// Answers every request until `done` holds; fails after `limit`.
    fn serve_until(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            for r in self.take()? {
                self.answer(&r)?;
            }
            if done() {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!("{what}: not done after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

pub fn rmem_writeback_one_eviction_per_fault(_: &crate::Options) -> TestResult {
    const BUDGET: u64 = 8;
    /// The page whose fault finds the budget full of dirty pages.
    const NINTH: u64 = 9;
    /// Every bounded wait's limit (the writer's faults wait for this thread).
    const LIMIT: Duration = Duration::from_secs(20);
    let cfg = agent_config(64, BUDGET);
    let (dev, map) = region(&cfg)?;
    let map = Arc::new(map);
    let mut agent = Agent::new(&dev)?;
    // 1: pages 0..BUDGET written; 2: page NINTH written too.
    let stage = Arc::new(AtomicU32::new(0));
    // Not scoped: if this thread gives up, returning ends the process, the writer
    // (maybe waiting in a fault) with it.
    let writer = {
        let (map, stage) = (map.clone(), stage.clone());
        std::thread::spawn(move || {
            for p in 0..BUDGET {
                map.write_u64(p as usize * PAGE, word(p, 0, 1));
            }
            stage.store(1, Ordering::SeqCst);
            map.write_u64(NINTH as usize * PAGE, word(NINTH, 0, 1));
            stage.store(2, Ordering::SeqCst);
        })
    };
    // The writer's first BUDGET faults: one fetch each, in order, answered with zeros.
    let start = Instant::now();
    let mut fetched = 0;
    while fetched < BUDGET {
        for r in agent.take()? {
            if r.msg.kind != abi::RMEM_MSG_FETCH || r.msg.page != fetched {
                return Err(format!(
                    "request {:?} while the budget fills, want a fetch of page {fetched}",
                    r.msg
                ));
            }
            agent.answer(&r)?;
            fetched += 1;
        }
        if start.elapsed() > LIMIT {
            return Err(format!(
                "only {fetched} of the first {BUDGET} pages fetched after {LIMIT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // The fault of page NINTH: the budget is full of dirty pages, so it evicts one and
    // waits for its write-back. Left unanswered for 300 ms from the first, the
    // write-backs are counted: one per fault, however long the agent takes.
    let start = Instant::now();
    let mut held: Vec<Request> = Vec::new();
    let mut first = None;
    loop {
        held.extend(agent.take()?);
        if first.is_none() && !held.is_empty() {
            first = Some(Instant::now());
        }
        match first {
            Some(t) if t.elapsed() >= Duration::from_millis(300) => break,
            None if start.elapsed() > LIMIT => {
                return Err(format!(
                    "no request {LIMIT:?} after the fault of page {NINTH} (writer stage {})",
                    stage.load(Ordering::SeqCst)
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    let wb: Vec<u64> = held
        .iter()
        .filter(|r| r.msg.kind == abi::RMEM_MSG_WRITEBACK)
        .map(|r| r.msg.page)
        .collect();
    let others: Vec<&abi::RmemMsg> = held
        .iter()
        .filter(|r| r.msg.kind != abi::RMEM_MSG_WRITEBACK)
        .map(|r| &r.msg)
        .collect();
    println!(
        "write-backs issued in 300 ms with the first unanswered: {} (pages {wb:?}); other requests: {others:?}",
        wb.len()
    );
    // Each write-back carries its page as the writer left it.
    for r in held
        .iter()
        .filter(|r| r.msg.kind == abi::RMEM_MSG_WRITEBACK)
    {
        let p = r.msg.page;
        let mut want = vec![0u8; PAGE];
        want[..8].copy_from_slice(&word(p, 0, 1).to_ne_bytes());
        if p >= BUDGET || r.data != want {
            let head = r
                .data
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_ne_bytes);
            return Err(format!(
                "write-back of page {p}: word 0 {head:#x}, want {:#x} and zeros after",
                word(p, 0, 1)
            ));
        }
    }
    // Now answered (status 0, stored); the fault fetches page NINTH and the writer
    // ends.
    for r in &held {
        agent.answer(r)?;
    }
    agent.serve_until("the write of page 9", LIMIT, || writer.is_finished())?;
    writer
        .join()
        .map_err(|_| "the writer panicked".to_string())?;
    // Every page read back (the evicted ones fetched with the data written back).
    let reader = {
        let map = map.clone();
        std::thread::spawn(move || {
            (0..=NINTH)
                .map(|p| {
                    (
                        map.read_u64(p as usize * PAGE),
                        map.read_u64(p as usize * PAGE + 8),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    agent.serve_until("the read-back", LIMIT, || reader.is_finished())?;
    let got = reader
        .join()
        .map_err(|_| "the reader panicked".to_string())?;
    for (p, &(w0, w1)) in (0..).zip(got.iter()) {
        let want = if p < BUDGET || p == NINTH {
            word(p, 0, 1)
        } else {
            0
        };
        if w0 != want || w1 != 0 {
            return Err(format!("page {p} reads {w0:#x} {w1:#x}, want {want:#x} 0"));
        }
    }
    if wb.len() != 1 {
        return Err(format!(
            "one fault issued {} write-backs (pages {wb:?}) while the first was unanswered, want 1",
            wb.len()
        ));
    }
    Ok(Outcome::Pass)
}

/// A mapping made with `mmap(2)` directly (`CkptMap` maps read-write), unmapped on
/// drop.
#[derive(Debug)]
struct RawMap {
    ptr: *mut libc::c_void,
    len: usize,
}

impl RawMap {
    /// `MAP_SHARED` with `prot` of `len` bytes of `dev` at `off`.
    fn new(dev: &Device, off: u64, len: usize, prot: i32) -> std::io::Result<RawMap> {
        let off = libc::off_t::try_from(off).map_err(|_| std::io::Error::other("offset"))?;
        // SAFETY: a new mapping where the kernel chooses (no MAP_FIXED): no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                dev.as_fd().as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RawMap { ptr, len })
    }

    /// The word at byte `off` (8-aligned, inside the mapping).
    fn read_u64(&self, off: usize) -> u64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: an aligned word inside the readable mapping, which lives as long as
        // `self`.
        unsafe { std::ptr::read_volatile(self.ptr.cast::<u8>().add(off).cast::<u64>()) }
    }

    /// `mprotect(2)` of the whole mapping.
    fn protect(&self, prot: i32) -> std::io::Result<()> {
        // SAFETY: changes the protection of our own mapping only; a failure changes
        // nothing, and no reference into it is held.
        if unsafe { libc::mprotect(self.ptr, self.len, prot) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for RawMap {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once; nothing refers to it after the drop.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

pub fn rmem_ckpt_map_shared_read_only(_: &crate::Options) -> TestResult {
    // Both devices checked, each failure reported.
    let failed: Vec<String> = [DeviceKind::Rmem, DeviceKind::Ckpt]
        .into_iter()
        .filter_map(|kind| map_read_only(kind).err())
        .collect();
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    Ok(Outcome::Pass)
}

/// A region of `kind` on a read-only descriptor, mapped shared and read-only.
fn map_read_only(kind: DeviceKind) -> Result<(), String> {
    const PAGES: u64 = 16;
    let len = PAGES as usize * PAGE;
    let name = kind.name();
    // Configure and create need only the descriptor (security.rst), a read-only one
    // included: the region is this read-only file's.
    let dev =
        Device::open_read_only(kind).map_err(|e| format!("open /dev/{name} O_RDONLY: {e}"))?;
    let off = match kind {
        // A budget below the pages read: the reads evict (zap) too.
        DeviceKind::Rmem => dev
            .rmem_configure(&abi::RmemConfig {
                lat_base_ns: 1_000,
                lat_page_ns: 0,
                ..config(PAGES, 4, abi::RMEM_POLICY_NONE)
            })
            .map_err(|e| format!("{name}: RMEM_CONFIGURE on a read-only descriptor: {e}"))?,
        _ => dev
            .ckpt_create(len as u64)
            .map_err(|e| format!("{name}: CKPT_CREATE on a read-only descriptor: {e}"))?,
    };
    // Writable and shared: refused by the VFS before the device sees it.
    expect_errno(
        &format!("{name}: mmap(PROT_READ | PROT_WRITE, MAP_SHARED) of a read-only descriptor"),
        RawMap::new(&dev, off, len, libc::PROT_READ | libc::PROT_WRITE),
        libc::EACCES,
    )?;
    let map = RawMap::new(&dev, off, len, libc::PROT_READ).map_err(|e| {
        format!("{name}: mmap(PROT_READ, MAP_SHARED) of a read-only descriptor: {e}, want success")
    })?;
    for p in 0..PAGES as usize {
        let v = map.read_u64(p * PAGE + 8);
        if v != 0 {
            return Err(format!("{name}: page {p} of a new region reads {v:#x}"));
        }
    }
    // The kernel cleared VM_MAYWRITE: the mapping can never be made writable.
    expect_errno(
        &format!("{name}: mprotect(PROT_WRITE) of the read-only shared mapping"),
        map.protect(libc::PROT_READ | libc::PROT_WRITE),
        libc::EACCES,
    )?;
    println!(
        "{name}: a read-only descriptor's region mapped shared, {PAGES} pages read as zeros, mprotect(PROT_WRITE) refused"
    );
    Ok(())
}

/// `VmPTE` of this process, in KiB.
fn vm_pte_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPTE:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| format!("no VmPTE in /proc/self/status:\n{status}"))
}

pub fn rmem_clock_probe_allocates_no_page_tables(_: &crate::Options) -> TestResult {
    /// Pages a PTE table maps (2 MiB).
    const STRIDE: u64 = 512;
    /// Local pages, one per PTE table of mapping A; the region is that many tables.
    const LOCAL: u64 = 256;
    const PAGES: u64 = STRIDE * LOCAL;
    /// Faults in mapping B.
    const B_FAULTS: u64 = 4;
    let cfg = abi::RmemConfig {
        lat_base_ns: 1_000,
        lat_page_ns: 0,
        deadline_ns: 0,
        degree: 0,
        ..config(PAGES, LOCAL, abi::RMEM_POLICY_NONE)
    };
    let bytes = cfg.bytes as usize;
    let dev = Device::open(DeviceKind::Rmem).map_err(|e| format!("open /dev/memkit-rmem: {e}"))?;
    let off = dev
        .rmem_configure(&cfg)
        .map_err(|e| format!("RMEM_CONFIGURE {cfg:?}: {e}"))?;
    let stats = || {
        dev.rmem_stats(false)
            .map_err(|e| format!("RMEM_STATS: {e}"))
    };
    // Mapping A: one page in each of its PTE tables, filling the budget.
    let a = CkptMap::new(&dev, off, bytes).map_err(|e| format!("mmap A: {e}"))?;
    for k in 0..LOCAL {
        let v = a.read_u64((k * STRIDE) as usize * PAGE);
        if v != 0 {
            return Err(format!("page {} reads {v:#x}", k * STRIDE));
        }
    }
    let s = stats()?;
    if s.local != LOCAL || s.evictions != 0 {
        return Err(format!("after A's {LOCAL} faults: {s:?}"));
    }
    // Mapping B, of the same pages at other addresses: no page table yet. Its faults
    // run the clock over the local pages at B's addresses.
    let b = CkptMap::new(&dev, off, bytes).map_err(|e| format!("mmap B: {e}"))?;
    vm_pte_kib()?;
    let before = vm_pte_kib()?;
    for k in 0..B_FAULTS {
        let p = k * STRIDE + STRIDE / 2;
        let v = b.read_u64(p as usize * PAGE);
        if v != 0 {
            return Err(format!("page {p} reads {v:#x} through B"));
        }
    }
    let after = vm_pte_kib()?;
    let s = stats()?;
    let grown = after.saturating_sub(before);
    // The faulted pages' own tables, and a few for the upper levels and noise.
    let limit = (B_FAULTS + 8) * 4;
    println!(
        "VmPTE {before} kB before B's {B_FAULTS} faults, {after} kB after: +{grown} kB (limit {limit} kB; {LOCAL} local pages, {} evictions)",
        s.evictions
    );
    if s.evictions != B_FAULTS {
        return Err(format!(
            "B's {B_FAULTS} faults evicted {}: {s:?}",
            s.evictions
        ));
    }
    if grown > limit {
        return Err(format!(
            "B's {B_FAULTS} faults grew the page tables by {grown} kB ({} tables), want at most {limit} kB: the clock's probe allocates tables",
            grown / 4
        ));
    }
    drop(b);
    drop(a);
    Ok(Outcome::Pass)
}
