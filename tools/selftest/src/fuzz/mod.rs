//! The ioctl fuzzer: `memkit-selftest fuzz [--seed N] [--calls N] [--threads N]
//! [--pmem PATH] [--time-limit SECS] [--stall SECS] [--user UID] [--trace]`, and the
//! selftest cases `fuzz_ioctl` and `fuzz_ioctl_unprivileged` that run short passes of
//! it, as root and as `nobody`.
//!
//! Several threads issue random ioctls ([`gen`]) on a fixed set of file descriptors
//! (`slots`) of the three devices, interleaved with reopening them (`dup2`, so a slot
//! always holds a memkit file), private open/ioctl/read/write/close sessions,
//! `mmap`/`munmap`/`mremap`/`mprotect`/`madvise` of the regions, and `fork` — the
//! child touches the mappings, calls a few ioctls and exits; its parent reaps it.
//!
//! Memory the kernel may write is always the fuzzer's own scratch (each area ends at
//! an inaccessible page, which stops a sequential copy), a memkit mapping, or memory
//! it cannot write: memkit mappings live in *windows* of an arena reserved at start,
//! and an unmapped window is covered again with an inaccessible placeholder at once,
//! so that a pointer still held by another thread never lands in memory the allocator
//! reused. The fuzzer never touches a mapping itself (only the kernel does, through
//! ioctl arguments and `/proc/self/mem`); forked children do, and a child killed by
//! `SIGSEGV` or `SIGBUS` is expected.
//!
//! A failure is: the fuzzer or a child dying otherwise, a child that does not exit
//! within 30 s, no progress for `--stall` seconds, or `--time-limit` reached before
//! `--calls` ioctls. The kernel's own checks (KASAN, lockdep, `panic_on_warn`) catch
//! the rest; the selftest case also reads the kernel log afterwards.

pub mod gen;

use crate::ktap::{kernel_problems, Outcome, TestResult};
use gen::{Areas, Dev, Hints, Limits, Plan, Ptr, Rng, CMDS, PAGE};
use memkit_core::abi::{self, UapiStruct};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Everything random derives from it.
    pub seed: u64,
    /// Ioctl calls to make (all threads together).
    pub calls: u64,
    /// Worker threads.
    pub threads: usize,
    /// The DAX device journal attaches may name (and format).
    pub pmem: String,
    /// Fail if the calls are not done by then.
    pub time_limit: Option<Duration>,
    /// Fail if no call completes for this long.
    pub stall: Duration,
    /// Print every operation before making it.
    pub trace: bool,
    /// Run as this user (no supplementary groups, no capabilities): then an attach,
    /// a detach or a read of the module's rmem totals that succeeds is a failure.
    pub user: Option<u32>,
}

const USAGE: &str = "usage: memkit-selftest fuzz [--seed N] [--calls N] [--threads N] \
                     [--pmem PATH] [--time-limit SECS] [--stall SECS] [--user UID] [--trace]";

/// A seed from the kernel's random pool.
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(f) = File::open("/dev/urandom") {
        f.read_at(&mut b, 0).ok();
    }
    u64::from_ne_bytes(b)
}

/// The seed `MEMKIT_FUZZ_SEED` names (decimal or 0x hex), if set.
pub fn env_seed() -> Result<Option<u64>, String> {
    match std::env::var("MEMKIT_FUZZ_SEED") {
        Ok(s) if !s.is_empty() => parse_u64(&s)
            .map(Some)
            .ok_or_else(|| format!("MEMKIT_FUZZ_SEED={s}: not a number")),
        _ => Ok(None),
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config {
        seed: 0,
        calls: 1_000_000,
        threads: 4,
        pmem: std::env::var("MEMKIT_PMEM").unwrap_or_else(|_| "/dev/pmem0".into()),
        time_limit: None,
        stall: Duration::from_secs(90),
        trace: false,
        user: None,
    };
    let mut seed = env_seed()?;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--trace" {
            cfg.trace = true;
            continue;
        }
        let v = it.next().ok_or(USAGE)?;
        let n = parse_u64(v);
        match (a.as_str(), n) {
            ("--seed", Some(n)) => seed = Some(n),
            ("--calls", Some(n)) => cfg.calls = n,
            ("--threads", Some(n)) if (1..=64).contains(&n) => cfg.threads = n as usize,
            ("--time-limit", Some(n)) => cfg.time_limit = Some(Duration::from_secs(n)),
            ("--stall", Some(n)) => cfg.stall = Duration::from_secs(n),
            ("--pmem", _) => cfg.pmem = v.clone(),
            ("--user", Some(n)) => cfg.user = Some(u32::try_from(n).map_err(|_| USAGE)?),
            _ => return Err(USAGE.into()),
        }
    }
    cfg.seed = seed.unwrap_or_else(random_seed);
    Ok(cfg)
}

/// `memkit-selftest fuzz ...`: exit 0 if nothing failed.
pub fn main(args: &[String]) -> ExitCode {
    let cfg = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("fuzz: FAILED (seed={}): {e}", cfg.seed);
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------
// Memory.

/// `mmap` of anonymous memory.
fn map_anon(addr: usize, len: usize, prot: i32, fixed: bool) -> std::io::Result<usize> {
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if fixed {
        flags |= libc::MAP_FIXED;
    }
    // SAFETY: anonymous memory; with MAP_FIXED the caller replaces a range it owns
    // (a placeholder or a window of the arena).
    let p = unsafe { libc::mmap(addr as *mut libc::c_void, len, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(p as usize)
    }
}

/// Makes `[addr, addr + len)` of memory the fuzzer owns inaccessible.
fn protect_none(addr: usize, len: usize) {
    // SAFETY: the range is a guard page of the fuzzer's own scratch.
    unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) };
}

/// A thread's scratch: `[struct][array][data][out][guard][edge][guard]`.
struct Scratch {
    base: usize,
}

const S_ARRAY: usize = gen::STRUCT_AREA;
const S_DATA: usize = S_ARRAY + gen::ARRAY_AREA;
const S_OUT: usize = S_DATA + gen::DATA_AREA;
const S_GUARD: usize = S_OUT + gen::OUT_AREA;
const S_EDGE: usize = S_GUARD + PAGE as usize;
const S_LEN: usize = S_EDGE + 2 * PAGE as usize;

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let base = map_anon(0, S_LEN, libc::PROT_READ | libc::PROT_WRITE, false)?;
        protect_none(base + S_GUARD, PAGE as usize);
        protect_none(base + S_EDGE + PAGE as usize, PAGE as usize);
        Ok(Scratch { base })
    }

    /// The array area, for the generator. The kernel writes to them only
    /// during an ioctl of this thread, when no such slice is alive.
    fn areas(&mut self) -> Areas<'_> {
        // SAFETY: the range lies in this scratch mapping (readable and writable),
        // which lives as long as `self`; `&mut self` makes them exclusive.
        unsafe {
            Areas {
                array: std::slice::from_raw_parts_mut(
                    (self.base + S_ARRAY) as *mut u8,
                    gen::ARRAY_AREA,
                ),
            }
        }
    }

    /// Copies `bytes` to `addr`, which must lie in this scratch with room for them.
    fn write(&mut self, addr: usize, bytes: &[u8]) {
        debug_assert!(addr >= self.base && addr + bytes.len() <= self.base + S_LEN);
        // SAFETY: the caller passes a range of this scratch's writable areas.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    }

    /// Reads the u64 at `addr` of this scratch.
    fn read_u64(&self, addr: usize) -> u64 {
        // SAFETY: a readable address of this scratch (the caller checks it is one).
        unsafe { std::ptr::read_unaligned(addr as *const u64) }
    }

    fn edge_end(&self) -> usize {
        self.base + S_EDGE + PAGE as usize
    }

    fn contains(&self, addr: usize, len: usize) -> bool {
        addr >= self.base && addr.saturating_add(len) <= self.base + S_GUARD
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `new`, used by nothing else any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, S_LEN) };
    }
}

// ---------------------------------------------------------------------------------
// Shared state.

/// Bytes of one window of the arena: the longest mapping kept.
const WINDOW: usize = 1 << 20;
/// Windows in the arena.
const WINDOWS: usize = 32;

#[derive(Clone, Copy, Debug)]
enum Win {
    /// Covered by an inaccessible placeholder.
    Free,
    /// A memkit mapping of `len` bytes at the window's start.
    Mapped { len: usize },
}

/// A file descriptor number that always holds an open memkit file.
struct Slot {
    fd: i32,
    dev: AtomicU8,
    /// Pages of its region and its mmap offset, once an ioctl created one.
    pages: AtomicU64,
    offset: AtomicU64,
}

/// Counts of results per command, `[command][errno]` (errno 0: success; the last
/// row: numbers memkit does not decode), and time spent.
const ERRNOS: usize = 134;

#[derive(Clone)]
struct Stats {
    hist: Vec<[u64; ERRNOS]>,
    /// Per command row, nanoseconds in `ioctl`.
    ioctl_ns: Vec<u64>,
    /// Per [`Op`], how many and nanoseconds.
    ops: [(u64, u64); OPS.len()],
}

impl Stats {
    fn new() -> Stats {
        Stats {
            hist: vec![[0; ERRNOS]; CMDS.len() + 1],
            ioctl_ns: vec![0; CMDS.len() + 1],
            ops: [(0, 0); OPS.len()],
        }
    }

    fn add(&mut self, o: &Stats) {
        for (row, p) in self.hist.iter_mut().zip(o.hist.iter()) {
            for (a, b) in row.iter_mut().zip(p.iter()) {
                *a += b;
            }
        }
        for (a, b) in self.ioctl_ns.iter_mut().zip(o.ioctl_ns.iter()) {
            *a += b;
        }
        for (a, b) in self.ops.iter_mut().zip(o.ops.iter()) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

struct Shared {
    cfg: Config,
    slots: Vec<Slot>,
    /// Two pages of prefilled structs, then a page of arrays; read-only.
    ro: usize,
    arena: usize,
    wins: Mutex<Vec<Win>>,
    proc_mem: File,
    calls: AtomicU64,
    other: AtomicU64,
    forks: AtomicU64,
    mapped: AtomicU64,
    child_signals: AtomicU64,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    data_size: AtomicU64,
    mj_size: AtomicU64,
    max_ranges: AtomicU64,
    /// Per thread, what it is doing: op code << 32 | command, for the stall report.
    doing: Vec<AtomicU64>,
}

const RO_LEN: usize = 3 * PAGE as usize;
const RO_STRIDE: usize = 512;
const RO_PATH: usize = 2 * PAGE as usize;
const RO_RANGE: usize = RO_PATH + 256;
const RO_INDEX: usize = RO_PATH + 512;

impl Shared {
    fn fail(&self, what: String) {
        println!("fuzz: FAIL: {what}");
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
        self.stop.store(true, Ordering::Relaxed);
    }

    fn hints(&self, slot: &Slot) -> Hints {
        Hints {
            region_pages: slot.pages.load(Ordering::Relaxed),
            data_size: self.data_size.load(Ordering::Relaxed),
            mj_size: self.mj_size.load(Ordering::Relaxed),
            max_ranges: self.max_ranges.load(Ordering::Relaxed),
        }
    }

    fn win_addr(&self, w: usize) -> usize {
        self.arena + w * WINDOW
    }

    /// The live mappings, for pointers into them and for a child.
    fn mapped(wins: &[Win], arena: usize) -> Vec<(usize, usize)> {
        wins.iter()
            .enumerate()
            .filter_map(|(i, w)| match *w {
                Win::Mapped { len } => Some((arena + i * WINDOW, len)),
                Win::Free => None,
            })
            .collect()
    }
}

/// Fills the read-only area with one valid struct per command (pointers to the
/// read-only arrays and the shared output buffer), then makes it read-only.
fn prefill(ro: usize, out: usize, pmem: &str) {
    let mut page = vec![0u8; RO_LEN];
    let p = pmem.as_bytes();
    let n = p.len().min(200);
    page[RO_PATH..RO_PATH + n].copy_from_slice(&p[..n]);
    abi::JournalRange {
        offset: 0,
        len: 8,
        data: (ro + RO_INDEX) as u64,
    }
    .encode(&mut page[RO_RANGE..]);
    let out = out as u64;
    let idx = (ro + RO_INDEX) as u64;
    let mut put =
        |i: usize, f: &dyn Fn(&mut [u8])| f(&mut page[i * RO_STRIDE..(i + 1) * RO_STRIDE]);
    use gen::id;
    put(id::VERSION, &|b| {
        abi::Version {
            size: 32,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::JOURNAL_ATTACH, &|b| {
        abi::JournalAttach {
            size: 24,
            path: (ro + RO_PATH) as u64,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::JOURNAL_DETACH, &|b| {
        abi::JournalDetach { size: 8, flags: 0 }.encode(b)
    });
    put(id::JOURNAL_STATUS, &|b| {
        abi::JournalStatus {
            size: 320,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::JOURNAL_TX, &|b| {
        abi::JournalTx {
            size: 32,
            ranges: (ro + RO_RANGE) as u64,
            nr_ranges: 1,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::RMEM_CONFIGURE, &|b| {
        abi::RmemConfig {
            size: 72,
            bytes: 16 * PAGE,
            budget: 4,
            policy: abi::RMEM_POLICY_PTLINE,
            degree: 8,
            max_inflight: 16,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::RMEM_STATS, &|b| {
        abi::RmemStats {
            size: 256,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::CKPT_CREATE, &|b| {
        abi::CkptCreate {
            size: 24,
            bytes: 16 * PAGE,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::CKPT_START, &|b| {
        abi::CkptStart { size: 8, flags: 0 }.encode(b)
    });
    put(id::CKPT_COLLECT, &|b| {
        abi::CkptCollect {
            size: 56,
            flags: abi::CKPT_COLLECT_CLEAR,
            count: 1,
            buf: out,
            buf_len: 8,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::CKPT_HISTORY, &|b| {
        abi::CkptHistory {
            size: 40,
            count: 1,
            buf: out,
            buf_len: 8,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::CKPT_COPY, &|b| {
        abi::CkptCopy {
            size: 48,
            pages: idx,
            count: 1,
            buf: out,
            buf_len: PAGE,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::CKPT_STATS, &|b| {
        abi::CkptStats {
            size: 80,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::CKPT_DIFF_SET, &|b| {
        abi::CkptDiffSet {
            size: 24,
            pages: idx,
            count: 1,
            ..Default::default()
        }
        .encode(b)
    });
    put(id::CKPT_COPY_DIFF, &|b| {
        abi::CkptCopyDiff {
            size: 64,
            pages: idx,
            count: 1,
            buf: out,
            buf_len: PAGE + 16,
            segment: 64,
            max_changed: 8,
            ..Default::default()
        }
        .encode(b)
    });
    // SAFETY: `ro` is a fresh writable mapping of RO_LEN bytes.
    unsafe { std::ptr::copy_nonoverlapping(page.as_ptr(), ro as *mut u8, RO_LEN) };
    // SAFETY: the same mapping, which only the kernel reads from now on.
    unsafe { libc::mprotect(ro as *mut libc::c_void, RO_LEN, libc::PROT_READ) };
}

/// The devices of the slots at start, and those a reopen draws from: the journal is
/// one module-wide state behind one lock (an attach formats and recovers under it),
/// so more of its calls would only queue up.
const SLOT_DEVS: [Dev; 9] = [
    Dev::Journal,
    Dev::Journal,
    Dev::Rmem,
    Dev::Rmem,
    Dev::Rmem,
    Dev::Ckpt,
    Dev::Ckpt,
    Dev::Ckpt,
    Dev::Ckpt,
];

fn dev_index(dev: Dev) -> u8 {
    match dev {
        Dev::Journal => 0,
        Dev::Rmem => 1,
        Dev::Ckpt => 2,
    }
}

fn open_dev(dev: Dev, nonblock: bool) -> i32 {
    let path = std::ffi::CString::new(dev.path()).expect("no NUL in a device path");
    let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
    if nonblock {
        flags |= libc::O_NONBLOCK;
    }
    // SAFETY: a NUL-terminated path.
    unsafe { libc::open(path.as_ptr(), flags) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn setup(cfg: &Config) -> Result<Shared, String> {
    let mut slots = Vec::new();
    for &dev in SLOT_DEVS.iter() {
        let fd = open_dev(dev, false);
        if fd < 0 {
            return Err(format!("open {}: errno {}", dev.path(), errno()));
        }
        slots.push(Slot {
            fd,
            dev: AtomicU8::new(dev_index(dev)),
            pages: AtomicU64::new(0),
            offset: AtomicU64::new(0),
        });
    }
    let ro = map_anon(0, RO_LEN, libc::PROT_READ | libc::PROT_WRITE, false)
        .map_err(|e| format!("mmap: {e}"))?;
    let shared_out = map_anon(
        0,
        gen::OUT_AREA + PAGE as usize,
        libc::PROT_READ | libc::PROT_WRITE,
        false,
    )
    .map_err(|e| format!("mmap: {e}"))?;
    protect_none(shared_out + gen::OUT_AREA, PAGE as usize);
    prefill(ro, shared_out, &cfg.pmem);
    let arena = map_anon(0, WINDOWS * WINDOW + PAGE as usize, libc::PROT_NONE, false)
        .map_err(|e| format!("mmap: {e}"))?;
    let proc_mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")
        .map_err(|e| format!("/proc/self/mem: {e}"))?;
    Ok(Shared {
        cfg: cfg.clone(),
        slots,
        ro,
        arena,
        wins: Mutex::new(vec![Win::Free; WINDOWS]),
        proc_mem,
        calls: AtomicU64::new(0),
        other: AtomicU64::new(0),
        forks: AtomicU64::new(0),
        mapped: AtomicU64::new(0),
        child_signals: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        data_size: AtomicU64::new(0),
        mj_size: AtomicU64::new(0),
        max_ranges: AtomicU64::new(0),
        doing: (0..cfg.threads).map(|_| AtomicU64::new(0)).collect(),
    })
}

// ---------------------------------------------------------------------------------
// Workers.

/// What a thread is doing, for the stall report.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
enum Op {
    Idle = 0,
    Ioctl,
    Read,
    Reopen,
    Session,
    Mmap,
    Munmap,
    Mremap,
    Madvise,
    Fork,
}

const OPS: [&str; 10] = [
    "idle", "ioctl", "read", "reopen", "session", "mmap", "munmap", "mremap", "madvise", "fork",
];

/// One worker (or a forked child: `child` holds the parent's mappings then, and the
/// shared state's locks are not taken).
struct Worker<'a> {
    sh: &'a Shared,
    t: usize,
    rng: Rng,
    sc: Scratch,
    stats: Stats,
    n: u64,
    child: Option<Vec<(usize, usize)>>,
}

/// The index in [`CMDS`] of the command the kernel decodes `cmd` as.
fn decoded(cmd: u32) -> Option<usize> {
    let d = abi::Command::decode(cmd)?;
    CMDS.iter()
        .position(|c| abi::Command::decode(c.cmd) == Some(d))
}

/// Covers `[addr, addr + len)` of the arena with an inaccessible placeholder.
fn placeholder(sh: &Shared, addr: usize, len: usize) {
    if let Err(e) = map_anon(addr, len, libc::PROT_NONE, true) {
        sh.fail(format!("placeholder mmap at {addr:#x}: {e}"));
    }
}

/// Whether `fd` has an agent-backed remote-memory region (its faults would wait for
/// an agent that never answers): only those answer a non-blocking read with EAGAIN
/// or data; every other memkit file refuses it with EINVAL.
fn is_agent(fd: i32, buf: usize) -> bool {
    let iov = libc::iovec {
        iov_base: buf as *mut libc::c_void,
        iov_len: 32,
    };
    // SAFETY: `buf` is 32 writable bytes of the caller's scratch.
    let r = unsafe { libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT) };
    !(r < 0 && errno() == libc::EINVAL)
}

impl Worker<'_> {
    fn doing(&self, op: Op, cmd: u32) {
        if self.child.is_none() {
            self.sh.doing[self.t].store(((op as u64) << 32) | u64::from(cmd), Ordering::Relaxed);
        }
    }

    fn trace(&self, what: std::fmt::Arguments<'_>) {
        if self.sh.cfg.trace && self.child.is_none() {
            eprintln!("t{} #{} {what}", self.t, self.n);
        }
    }

    fn other(&self) {
        if self.child.is_none() {
            self.sh.other.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn slot(&mut self) -> (usize, Dev) {
        let s = self.rng.below(self.sh.slots.len() as u64) as usize;
        let dev = Dev::ALL[usize::from(self.sh.slots[s].dev.load(Ordering::Relaxed)) % 3];
        (s, dev)
    }

    /// The live mappings (the parent's, in a child).
    fn mappings(&self) -> Vec<(usize, usize)> {
        match &self.child {
            Some(m) => m.clone(),
            None => {
                let wins = self.sh.wins.lock().unwrap_or_else(|e| e.into_inner());
                Shared::mapped(&wins, self.sh.arena)
            }
        }
    }

    fn resolve(&self, p: Ptr) -> u64 {
        let sc = self.sc.base as u64;
        match p {
            Ptr::Null => 0,
            Ptr::Low(a) | Ptr::Kernel(a) | Ptr::Wild(a) => a,
            Ptr::ReadOnly(off) => self.sh.ro as u64 + off % RO_LEN as u64,
            Ptr::Prefilled => self.sh.ro as u64,
            Ptr::BeforeGuard(back) => self.sc.edge_end() as u64 - back.min(PAGE),
            Ptr::Struct(off) => sc + off,
            Ptr::Array(off) => sc + S_ARRAY as u64 + off,
            Ptr::Data(off) => sc + S_DATA as u64 + off,
            Ptr::Out(off) => sc + S_OUT as u64 + off,
            Ptr::Mapping { pick, off } => {
                let maps = self.mappings();
                if maps.is_empty() {
                    return sc + S_OUT as u64;
                }
                // Lossless: an index below the number of mappings.
                let (addr, len) = maps[(pick % maps.len() as u64) as usize];
                (addr + (off as usize % len.max(1))) as u64
            }
        }
    }

    /// Writes the plan's struct (and its pointers) where it goes; returns its address.
    fn place(&mut self, plan: &mut Plan) -> u64 {
        let sh = self.sh;
        for &(off, p) in plan.ptrs.iter() {
            let a = self.resolve(p);
            if let Some(b) = plan.bytes.get_mut(off..off + 8) {
                b.copy_from_slice(&a.to_ne_bytes());
            }
        }
        for &(off, p) in plan.array_ptrs.iter() {
            let a = self.resolve(p);
            let at = self.sc.base + S_ARRAY + off;
            self.sc.write(at, &a.to_ne_bytes());
        }
        if plan.pmem_path {
            let at = self.sc.base + S_ARRAY;
            self.sc.write(at, sh.cfg.pmem.as_bytes());
            self.sc.write(at + sh.cfg.pmem.len(), &[0]);
        }
        match plan.arg {
            Ptr::Struct(off) => {
                let at = self.sc.base + off as usize;
                self.sc.write(at, &plan.bytes);
                at as u64
            }
            Ptr::BeforeGuard(back) => {
                let at = self.sc.edge_end() - back as usize;
                let n = plan.bytes.len().min(back as usize);
                self.sc.write(at, &plan.bytes[..n]);
                at as u64
            }
            Ptr::Prefilled => (sh.ro + plan.base * RO_STRIDE) as u64,
            Ptr::Mapping { .. } => {
                let at = self.resolve(plan.arg);
                if self.child.is_none() && !self.sc.contains(at as usize, 1) {
                    // Through the kernel: a mapping that went is an error, not a signal.
                    sh.proc_mem.write_at(&plan.bytes, at).ok();
                    self.other();
                }
                at
            }
            other => self.resolve(other),
        }
    }

    /// One generated ioctl on `fd` (a file of `dev`). Returns the region it created,
    /// if it did: `(pages, mmap offset)`.
    fn ioctl(&mut self, fd: i32, dev: Dev, hints: Hints, limits: Limits) -> Option<(u64, u64)> {
        let base = gen::pick_command(&mut self.rng, dev);
        let mut plan = gen::plan(&mut self.rng, base, &hints, &limits, &mut self.sc.areas());
        let arg = self.place(&mut plan);
        self.doing(Op::Ioctl, plan.cmd);
        self.trace(format_args!(
            "ioctl fd {fd} ({dev:?}) {} cmd {:#x} arg {:?} = {arg:#x} bytes {:02x?}",
            CMDS[base].name,
            plan.cmd,
            plan.arg,
            &plan.bytes[..plan.bytes.len().min(96)]
        ));
        let t0 = Instant::now();
        // SAFETY: every address the struct and its pointers name is scratch of this
        // thread (each area ends at an inaccessible page), the shared output buffer, a
        // memkit mapping, or memory the kernel cannot write (see the module comment).
        let ret = unsafe { libc::ioctl(fd, plan.cmd as _, arg as usize) };
        let e = if ret < 0 { errno() as usize } else { 0 };
        let ns = t0.elapsed().as_nanos() as u64;
        let row = decoded(plan.cmd);
        let r = row.unwrap_or(CMDS.len());
        self.stats.hist[r][e.min(ERRNOS - 1)] += 1;
        self.stats.ioctl_ns[r] += ns;
        if self.child.is_none() {
            self.sh.calls.fetch_add(1, Ordering::Relaxed);
        }
        let a = arg as usize;
        if ret == 0 && self.sh.cfg.user.is_some() {
            self.privileged_ok(row, a);
        }
        if ret != 0 || row != Some(base) || !self.sc.contains(a, CMDS[base].size) {
            return None;
        }
        match base {
            gen::id::JOURNAL_STATUS => {
                if self.sc.read_u64(a + 8) & 0xffff_ffff == 1 {
                    let sh = self.sh;
                    sh.data_size
                        .store(self.sc.read_u64(a + 32), Ordering::Relaxed);
                    sh.mj_size
                        .store(self.sc.read_u64(a + 40) >> 32, Ordering::Relaxed);
                    let max = self.sc.read_u64(a + 48) & 0xffff_ffff;
                    sh.max_ranges.store(max, Ordering::Relaxed);
                }
                None
            }
            gen::id::CKPT_CREATE => {
                Some((self.sc.read_u64(a + 8) / PAGE, self.sc.read_u64(a + 16)))
            }
            gen::id::RMEM_CONFIGURE => {
                Some((self.sc.read_u64(a + 8) / PAGE, self.sc.read_u64(a + 64)))
            }
            _ => None,
        }
    }

    /// Fails the run if command `row`, which succeeded on struct `a` for a user
    /// without capabilities, needs `CAP_SYS_ADMIN`.
    fn privileged_ok(&self, row: Option<usize>, a: usize) {
        let what = match row {
            Some(gen::id::JOURNAL_ATTACH) => "JOURNAL_ATTACH",
            Some(gen::id::JOURNAL_DETACH) => "JOURNAL_DETACH",
            // The flags word is the struct's second; the kernel echoes it.
            Some(gen::id::RMEM_STATS)
                if self.sc.contains(a, 8)
                    && (self.sc.read_u64(a) >> 32) as u32 & abi::RMEM_STATS_GLOBAL != 0 =>
            {
                "RMEM_STATS of the module's totals"
            }
            _ => return,
        };
        self.sh
            .fail(format!("{what} succeeded without CAP_SYS_ADMIN"));
    }

    fn limits(&self, allow_agent: bool) -> Limits {
        Limits {
            allow_agent,
            pmem_ok: true,
        }
    }

    /// An ioctl on a slot.
    fn op_ioctl(&mut self) {
        let (s, dev) = self.slot();
        let sh = self.sh;
        let slot = &sh.slots[s];
        let limits = self.limits(false);
        if let Some((pages, off)) = self.ioctl(slot.fd, dev, sh.hints(slot), limits) {
            slot.pages.store(pages, Ordering::Relaxed);
            slot.offset.store(off, Ordering::Relaxed);
        }
    }

    /// read, pread or pwrite on a slot.
    fn op_read(&mut self) {
        let (s, _) = self.slot();
        let fd = self.sh.slots[s].fd;
        let len = self.rng.pick(&[
            0usize,
            1,
            31,
            32,
            64,
            4096,
            4128,
            65536,
            gen::OUT_AREA,
            gen::OUT_AREA + 4096,
        ]);
        let data = self.sh.data_size.load(Ordering::Relaxed);
        let off = gen::edge_u64(&mut self.rng, &[data, data - 1, data - 4096]) as i64;
        let how = self.rng.below(8);
        let bad = gen::bad_ptr(&mut self.rng);
        let buf = match how {
            6 | 7 => self.resolve(bad) as usize,
            _ => self.sc.base + S_OUT,
        };
        self.doing(Op::Read, how as u32);
        self.trace(format_args!(
            "read fd {fd} how {how} buf {buf:#x} len {len} off {off}"
        ));
        // SAFETY: `buf` is the output area (the kernel writes at most up to its guard
        // page) or an address the kernel cannot write.
        unsafe {
            match how {
                0..=3 | 6 => libc::pread(fd, buf as *mut libc::c_void, len, off),
                4 | 7 => libc::read(fd, buf as *mut libc::c_void, len),
                _ => libc::pwrite(fd, buf as *const libc::c_void, len, off),
            }
        };
        self.other();
    }

    /// Replaces a slot's file with a new one, of any device (`dup2` closes the old).
    fn op_reopen(&mut self) {
        let (s, _) = self.slot();
        let dev = self.rng.pick(&SLOT_DEVS);
        let nonblock = self.rng.chance(20);
        self.doing(Op::Reopen, 0);
        self.trace(format_args!("reopen slot {s} as {dev:?}"));
        let fd = open_dev(dev, nonblock);
        if fd < 0 {
            self.sh
                .fail(format!("open {}: errno {}", dev.path(), errno()));
            return;
        }
        let slot = &self.sh.slots[s];
        // SAFETY: both are open descriptors of this process; `slot.fd` is the slot's
        // own number, which nothing else uses.
        unsafe {
            libc::dup2(fd, slot.fd);
            libc::close(fd);
        }
        slot.dev.store(dev_index(dev), Ordering::Relaxed);
        slot.pages.store(0, Ordering::Relaxed);
        slot.offset.store(0, Ordering::Relaxed);
        self.other();
    }

    /// A private file: open, a few ioctls, reads and writes, close. Only here may a
    /// remote-memory region be agent-backed: this file is never mapped.
    fn op_session(&mut self) {
        let dev = self.rng.pick(&Dev::ALL);
        let nonblock = self.rng.chance(60);
        let steps = 1 + self.rng.below(8);
        self.doing(Op::Session, 0);
        self.trace(format_args!(
            "session {dev:?} nonblock {nonblock} steps {steps}"
        ));
        let fd = open_dev(dev, nonblock);
        if fd < 0 {
            self.sh
                .fail(format!("open {}: errno {}", dev.path(), errno()));
            return;
        }
        let mut hints = Hints {
            region_pages: 0,
            ..self.sh.hints(&self.sh.slots[0])
        };
        for _ in 0..steps {
            if self.rng.chance(70) {
                let limits = self.limits(true);
                if let Some((pages, _)) = self.ioctl(fd, dev, hints, limits) {
                    hints.region_pages = pages;
                }
                continue;
            }
            // An agent's read and reply, or a journal read.
            let msg = abi::RmemMsg {
                id: gen::edge_u64(&mut self.rng, &[1, 2]),
                kind: self.rng.pick(&[1u32, 2, 0, 3, u32::MAX]),
                status: self.rng.pick(&[0u32, -5i32 as u32, -14i32 as u32, 1]),
                page: gen::edge_u64(&mut self.rng, &[hints.region_pages]),
                pad: if self.rng.chance(90) { 0 } else { 1 },
            };
            let len = self
                .rng
                .pick(&[32usize, 32, 4128, 4128, 0, 31, 33, 4127, 8192]);
            let read = self.rng.chance(50);
            let off = gen::edge_u64(&mut self.rng, &[]) as i64;
            let data = self.sc.base + S_DATA;
            let mut hdr = [0u8; 32];
            msg.encode(&mut hdr);
            self.sc.write(data, &hdr);
            self.trace(format_args!("session rw read {read} len {len} msg {msg:?}"));
            // SAFETY: the data and output areas of this thread's scratch, with room
            // for `len` bytes (at most 8192).
            unsafe {
                let out = (self.sc.base + S_OUT) as *mut libc::c_void;
                match (dev, read) {
                    // An agent's read blocks until there is a request, and nothing
                    // faults on this file: never block.
                    (Dev::Rmem, true) if nonblock => {
                        libc::read(fd, out, len);
                    }
                    (Dev::Rmem, true) => {
                        let iov = libc::iovec {
                            iov_base: out,
                            iov_len: len,
                        };
                        libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT);
                    }
                    (Dev::Rmem, false) => {
                        libc::write(fd, data as *const libc::c_void, len);
                    }
                    _ => {
                        libc::pread(fd, out, len, off);
                    }
                }
            }
            self.other();
        }
        // SAFETY: the descriptor opened above.
        unsafe { libc::close(fd) };
    }

    /// Maps a slot's region (with random length, offset, protection and flags) and
    /// moves the mapping into a free window of the arena.
    fn op_mmap(&mut self) {
        let (s, dev) = self.slot();
        let sh = self.sh;
        let slot = &sh.slots[s];
        let pages = slot.pages.load(Ordering::Relaxed);
        let known = slot.offset.load(Ordering::Relaxed);
        let r = &mut self.rng;
        let small = r.pick(&[1u64, 1, 2, 3, 4, 16, 64, 256]);
        let edge = gen::edge_u64(r, &[pages, pages + 1]);
        let len_pages = if r.chance(85) {
            small
        } else {
            edge.min(1 << 20)
        };
        let start = r.below(pages.saturating_sub(len_pages) + 1);
        let off = match r.below(10) {
            0..=5 => known + start * PAGE,
            6 => known,
            7 => known.wrapping_add(pages * PAGE),
            8 => known.wrapping_sub(PAGE),
            _ => gen::edge_u64(r, &[known]),
        };
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let prot = r.pick(&[
            rw,
            rw,
            rw,
            rw,
            libc::PROT_READ,
            libc::PROT_NONE,
            libc::PROT_WRITE,
            rw | libc::PROT_EXEC,
        ]);
        let shared = libc::MAP_SHARED;
        let flags = r.pick(&[
            shared,
            shared,
            shared,
            shared,
            libc::MAP_PRIVATE,
            shared | libc::MAP_POPULATE,
            libc::MAP_SHARED_VALIDATE,
            shared | libc::MAP_NORESERVE,
        ]);
        let start_win = r.below(WINDOWS as u64) as usize;
        let len = (len_pages * PAGE) as usize;
        self.doing(Op::Mmap, 0);
        self.trace(format_args!(
            "mmap slot {s} ({dev:?}) len {len:#x} prot {prot} flags {flags:#x} off {off:#x}"
        ));
        if dev == Dev::Rmem && is_agent(slot.fd, self.sc.base + S_OUT) {
            return;
        }
        // SAFETY: a new mapping at an address the kernel chooses.
        let addr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, slot.fd, off as i64) };
        self.other();
        if addr == libc::MAP_FAILED {
            return;
        }
        let addr = addr as usize;
        let mut wins = sh.wins.lock().unwrap_or_else(|e| e.into_inner());
        let free = (0..WINDOWS)
            .map(|i| (start_win + i) % WINDOWS)
            .find(|&w| matches!(wins[w], Win::Free));
        let Some(w) = free.filter(|_| len <= WINDOW) else {
            // SAFETY: the mapping made above, which nothing else knows of.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            return;
        };
        let to = sh.win_addr(w);
        // SAFETY: moves the mapping made above onto a free window of the arena.
        let moved = unsafe {
            libc::mremap(
                addr as *mut libc::c_void,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                to as *mut libc::c_void,
            )
        };
        self.other();
        if moved == libc::MAP_FAILED {
            // SAFETY: the mapping made above, which nothing else knows of.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
            placeholder(sh, to, WINDOW);
        } else {
            wins[w] = Win::Mapped { len };
            sh.mapped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A mapped window, chosen with `pick`, under the lock.
    fn pick_mapped(wins: &[Win], pick: u64) -> Option<(usize, usize)> {
        (0..WINDOWS)
            .map(|i| (pick as usize + i) % WINDOWS)
            .find_map(|w| match wins[w] {
                Win::Mapped { len } => Some((w, len)),
                Win::Free => None,
            })
    }

    fn op_munmap(&mut self) {
        let pick = self.rng.next_u64();
        let real = self.rng.chance(50);
        let sh = self.sh;
        self.doing(Op::Munmap, 0);
        let mut wins = sh.wins.lock().unwrap_or_else(|e| e.into_inner());
        let Some((w, len)) = Self::pick_mapped(&wins, pick) else {
            return;
        };
        let at = sh.win_addr(w);
        self.trace(format_args!("munmap window {w} len {len:#x} real {real}"));
        if real {
            // SAFETY: a window of the arena, covered again right after.
            unsafe { libc::munmap(at as *mut libc::c_void, len) };
        }
        placeholder(sh, at, WINDOW);
        wins[w] = Win::Free;
        self.other();
    }

    fn op_mremap(&mut self) {
        let pick = self.rng.next_u64();
        let to_pick = self.rng.next_u64();
        let how = self.rng.below(3);
        let k = 1 + self.rng.below(4) as usize;
        let sh = self.sh;
        self.doing(Op::Mremap, how as u32);
        let mut wins = sh.wins.lock().unwrap_or_else(|e| e.into_inner());
        let Some((w, len)) = Self::pick_mapped(&wins, pick) else {
            return;
        };
        let at = sh.win_addr(w);
        self.trace(format_args!(
            "mremap window {w} len {len:#x} how {how} k {k}"
        ));
        self.other();
        match how {
            0 => {
                let Some(to) = (0..WINDOWS)
                    .map(|i| (to_pick as usize + i) % WINDOWS)
                    .find(|&t| matches!(wins[t], Win::Free))
                else {
                    return;
                };
                let dst = sh.win_addr(to);
                // SAFETY: moves a mapping of the arena onto a free window of it.
                let r = unsafe {
                    libc::mremap(
                        at as *mut libc::c_void,
                        len,
                        len,
                        libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                        dst as *mut libc::c_void,
                    )
                };
                if r == libc::MAP_FAILED {
                    placeholder(sh, dst, WINDOW);
                } else {
                    placeholder(sh, at, WINDOW);
                    wins[w] = Win::Free;
                    wins[to] = Win::Mapped { len };
                }
            }
            1 => {
                // Growing in place: the placeholder after it is in the way.
                let new = (len + k * PAGE as usize).min(WINDOW);
                // SAFETY: resizes a mapping of the arena in place.
                let r = unsafe { libc::mremap(at as *mut libc::c_void, len, new, 0) };
                if r != libc::MAP_FAILED {
                    wins[w] = Win::Mapped { len: new };
                }
            }
            _ => {
                let new = len.saturating_sub(k * PAGE as usize);
                if new == 0 {
                    return;
                }
                // SAFETY: shrinks a mapping of the arena; the tail is covered again.
                let r = unsafe { libc::mremap(at as *mut libc::c_void, len, new, 0) };
                if r != libc::MAP_FAILED {
                    placeholder(sh, at + new, WINDOW - new);
                    wins[w] = Win::Mapped { len: new };
                }
            }
        }
    }

    /// madvise, mprotect, msync or a hole over part of a mapping.
    fn op_madvise(&mut self) {
        let pick = self.rng.next_u64();
        let (a, b) = (self.rng.next_u64(), self.rng.next_u64());
        let how = self.rng.below(10);
        let advice = self.rng.pick(&[
            libc::MADV_DONTNEED,
            libc::MADV_DONTNEED,
            libc::MADV_COLD,
            libc::MADV_PAGEOUT,
            libc::MADV_WILLNEED,
            libc::MADV_DONTFORK,
            libc::MADV_DOFORK,
            libc::MADV_RANDOM,
            libc::MADV_SEQUENTIAL,
            libc::MADV_NORMAL,
            libc::MADV_DONTDUMP,
            libc::MADV_FREE,
            libc::MADV_REMOVE,
            libc::MADV_MERGEABLE,
            libc::MADV_HUGEPAGE,
            libc::MADV_WIPEONFORK,
            22, // MADV_POPULATE_READ
            23, // MADV_POPULATE_WRITE
            25, // MADV_COLLAPSE
        ]);
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let prot = self
            .rng
            .pick(&[libc::PROT_READ, libc::PROT_NONE, rw, rw, libc::PROT_WRITE]);
        let sync = self.rng.pick(&[
            libc::MS_SYNC,
            libc::MS_ASYNC,
            libc::MS_INVALIDATE,
            libc::MS_SYNC | libc::MS_INVALIDATE,
        ]);
        let sh = self.sh;
        self.doing(Op::Madvise, how as u32);
        let wins = sh.wins.lock().unwrap_or_else(|e| e.into_inner());
        let Some((w, len)) = Self::pick_mapped(&wins, pick) else {
            return;
        };
        let pages = (len / PAGE as usize).max(1) as u64;
        let p0 = a % pages;
        let n = 1 + b % (pages - p0);
        let at = (sh.win_addr(w) as u64 + p0 * PAGE) as usize;
        let l = (n * PAGE) as usize;
        self.trace(format_args!(
            "madvise window {w} pages {p0}+{n} how {how} advice {advice} prot {prot} sync {sync}"
        ));
        self.other();
        // SAFETY: part of a memkit mapping in the arena, which this thread never
        // touches; a hole is covered again at once.
        unsafe {
            match how {
                0..=5 => {
                    libc::madvise(at as *mut libc::c_void, l, advice);
                }
                6 | 7 => {
                    libc::mprotect(at as *mut libc::c_void, l, prot);
                }
                8 => {
                    libc::msync(at as *mut libc::c_void, l, sync);
                }
                _ => placeholder(sh, at, l),
            }
        }
    }

    /// Forks a child that touches the mappings and makes a few ioctls; reaps it.
    fn op_fork(&mut self) {
        let child_seed = self.rng.next_u64();
        let sh = self.sh;
        self.doing(Op::Fork, 0);
        self.trace(format_args!("fork seed {child_seed:#x}"));
        let wins = sh.wins.lock().unwrap_or_else(|e| e.into_inner());
        let snap = Shared::mapped(&wins, sh.arena);
        // SAFETY: the child runs only `child_main`, which takes none of the locks
        // other threads may hold (it has the mappings in `snap`), prints nothing, and
        // leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            self.child = Some(snap);
            self.rng = Rng::new(child_seed);
            self.child_main();
        }
        drop(wins);
        self.other();
        if pid < 0 {
            sh.fail(format!("fork: errno {}", errno()));
            return;
        }
        sh.forks.fetch_add(1, Ordering::Relaxed);
        let mut status = 0;
        match wait_child(pid, Duration::from_secs(30), &mut status) {
            Ok(true) => {}
            Ok(false) => {
                // SAFETY: our own child, then reaped.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                sh.fail(format!(
                    "a child (fork seed {child_seed:#x}) did not exit within 30 s"
                ));
                return;
            }
            Err(e) => {
                sh.fail(e);
                return;
            }
        }
        if libc::WIFSIGNALED(status)
            && matches!(libc::WTERMSIG(status), libc::SIGSEGV | libc::SIGBUS)
        {
            sh.child_signals.fetch_add(1, Ordering::Relaxed);
        } else if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            sh.fail(format!(
                "a child (fork seed {child_seed:#x}) ended with wait status {status:#x}"
            ));
        }
    }

    /// The child of [`Worker::op_fork`].
    fn child_main(&mut self) -> ! {
        let code =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.child_steps())) {
                Ok(()) => 0,
                Err(_) => 3,
            };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) }
    }

    fn child_steps(&mut self) {
        let steps = 1 + self.rng.below(8);
        for _ in 0..steps {
            let maps = self.child.clone().unwrap_or_default();
            let pick = self.rng.next_u64();
            let (page, byte) = (self.rng.next_u64(), self.rng.below(PAGE));
            let write = self.rng.chance(50);
            match self.rng.below(10) {
                0..=4 if !maps.is_empty() => {
                    let (addr, len) = maps[(pick % maps.len() as u64) as usize];
                    let at = addr + (page % (len as u64 / PAGE).max(1) * PAGE + byte) as usize;
                    // SAFETY: a memkit mapping of this (child) process; a fault kills
                    // only the child, which its parent expects.
                    unsafe {
                        if write {
                            std::ptr::write_volatile(at as *mut u8, pick as u8);
                        } else {
                            std::ptr::read_volatile(at as *const u8);
                        }
                    }
                }
                5..=7 => {
                    let (s, dev) = self.slot();
                    let slot = &self.sh.slots[s];
                    let limits = self.limits(false);
                    self.ioctl(slot.fd, dev, self.sh.hints(slot), limits);
                }
                8 if !maps.is_empty() => {
                    let (addr, len) = maps[(pick % maps.len() as u64) as usize];
                    // Not munmap: a hole could be reused by the allocator while a
                    // pointer into it is still in use.
                    map_anon(addr, len, libc::PROT_NONE, true).ok();
                }
                _ => {}
            }
        }
    }

    fn step(&mut self) {
        let t0 = Instant::now();
        let k = self.rng.below(1000);
        let op = match k {
            0..=829 => Op::Ioctl,
            830..=869 => Op::Read,
            870..=879 => Op::Reopen,
            880..=889 => Op::Session,
            890..=934 => Op::Mmap,
            935..=964 => Op::Munmap,
            965..=974 => Op::Mremap,
            975..=998 => Op::Madvise,
            _ => Op::Fork,
        };
        self.step_op(op);
        let slot = &mut self.stats.ops[op as usize];
        slot.0 += 1;
        slot.1 += t0.elapsed().as_nanos() as u64;
    }

    fn step_op(&mut self, op: Op) {
        match op {
            Op::Ioctl => self.op_ioctl(),
            Op::Read => self.op_read(),
            Op::Reopen => self.op_reopen(),
            Op::Session => self.op_session(),
            Op::Mmap => self.op_mmap(),
            Op::Munmap => self.op_munmap(),
            Op::Mremap => self.op_mremap(),
            Op::Madvise => self.op_madvise(),
            Op::Fork | Op::Idle => self.op_fork(),
        }
    }
}

fn work(sh: &Shared, t: usize) -> Stats {
    let sc = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            sh.fail(format!("scratch mmap: {e}"));
            return Stats::new();
        }
    };
    let mut w = Worker {
        sh,
        t,
        rng: Rng::new(sh.cfg.seed).split(t as u64 + 1),
        sc,
        stats: Stats::new(),
        n: 0,
        child: None,
    };
    while !sh.stop.load(Ordering::Relaxed) && sh.calls.load(Ordering::Relaxed) < sh.cfg.calls {
        w.n += 1;
        w.step();
    }
    w.doing(Op::Idle, 0);
    w.stats
}

// ---------------------------------------------------------------------------------
// The run.

fn errno_name(e: usize) -> String {
    let name = match e as i32 {
        0 => "ok",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::ENOTBLK => "ENOTBLK",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EUCLEAN => "EUCLEAN",
        libc::EMEDIUMTYPE => "EMEDIUMTYPE",
        _ => return format!("E{e}"),
    };
    name.into()
}

/// Kernel stacks of this process's threads, for the stall report.
fn task_stacks() -> String {
    let mut out = String::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.flatten() {
        let p = task.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let stack = std::fs::read_to_string(p.join("stack")).unwrap_or_default();
        out += &format!(
            "task {} ({}):\n{stack}",
            task.file_name().to_string_lossy(),
            comm.trim()
        );
    }
    out
}

/// Runs the fuzzer with `cfg`; `Err` says why it failed.
pub fn run(cfg: &Config) -> Result<(), String> {
    println!("seed={}", cfg.seed);
    println!(
        "fuzz: {} threads, {} ioctl calls, pmem {} (reproduce: memkit-selftest fuzz --seed {} --calls {} --threads {})",
        cfg.threads, cfg.calls, cfg.pmem, cfg.seed, cfg.calls, cfg.threads
    );
    std::io::stdout().flush().ok();
    if let Some(uid) = cfg.user {
        crate::perm_tests::become_user(uid, uid, &[])?;
        // A change of uid leaves the process not dumpable, which makes /proc/self/mem
        // root's; the fuzzer writes through it.
        // SAFETY: PR_SET_DUMPABLE takes an integer argument.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1) } != 0 {
            return Err(format!(
                "PR_SET_DUMPABLE: {}",
                std::io::Error::last_os_error()
            ));
        }
        println!("fuzz: running as uid {uid} without capabilities");
    }
    let sh = Arc::new(setup(cfg)?);
    let started = Instant::now();
    let handles: Vec<_> = (0..cfg.threads)
        .map(|t| {
            let sh = Arc::clone(&sh);
            std::thread::Builder::new()
                .name(format!("fuzz{t}"))
                .spawn(move || work(&sh, t))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("spawn: {e}"))?;
    let (mut last, mut last_change, mut last_report) = (0, Instant::now(), Instant::now());
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let calls = sh.calls.load(Ordering::Relaxed);
        if calls != last {
            (last, last_change) = (calls, Instant::now());
        }
        let secs = started.elapsed().as_secs_f64();
        if last_report.elapsed() >= Duration::from_secs(20) {
            last_report = Instant::now();
            println!(
                "fuzz: {calls} calls in {secs:.0} s ({:.0}/s)",
                calls as f64 / secs
            );
        }
        if let Some(limit) = cfg.time_limit {
            if started.elapsed() > limit && !sh.stop.load(Ordering::Relaxed) {
                sh.fail(format!(
                    "time limit of {} s reached after {calls} of {} calls",
                    limit.as_secs(),
                    cfg.calls
                ));
            }
        }
        if last_change.elapsed() > cfg.stall {
            println!(
                "fuzz: FAILED (seed={}): no ioctl completed for {} s; the threads were doing:",
                cfg.seed,
                cfg.stall.as_secs()
            );
            for (t, d) in sh.doing.iter().enumerate() {
                let d = d.load(Ordering::Relaxed);
                println!(
                    "  thread {t}: {} {:#x}",
                    OPS[(d >> 32) as usize % OPS.len()],
                    d & 0xffff_ffff
                );
            }
            println!("{}", task_stacks());
            std::io::stdout().flush().ok();
            // SAFETY: ends the process; stuck threads cannot be joined.
            unsafe { libc::_exit(1) };
        }
    }
    let mut stats = Stats::new();
    for h in handles {
        let part = h
            .join()
            .map_err(|_| "a fuzzer thread panicked".to_string())?;
        stats.add(&part);
    }
    let secs = started.elapsed().as_secs_f64();
    // SAFETY: the arena and the slots are ours; every thread has finished.
    unsafe {
        libc::munmap(
            sh.arena as *mut libc::c_void,
            WINDOWS * WINDOW + PAGE as usize,
        );
        for s in sh.slots.iter() {
            libc::close(s.fd);
        }
    }
    let calls = sh.calls.load(Ordering::Relaxed);
    println!("fuzz: per command (decoded by the module's rules): calls, mean time, results");
    for (i, row) in stats.hist.iter().enumerate() {
        let total: u64 = row.iter().sum();
        if total == 0 {
            continue;
        }
        let mut errs: Vec<(usize, u64)> = row
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .collect();
        errs.sort_by_key(|e| std::cmp::Reverse(e.1));
        let list: Vec<String> = errs
            .iter()
            .map(|&(e, n)| format!("{} {n}", errno_name(e)))
            .collect();
        let name = CMDS.get(i).map_or("(not memkit)", |c| c.name);
        let us = stats.ioctl_ns[i] as f64 / total as f64 / 1000.0;
        println!(
            "fuzz:   {name:<16} {total:>8} {us:>8.0} us  {}",
            list.join(", ")
        );
    }
    let ops: Vec<String> = OPS
        .iter()
        .zip(stats.ops.iter())
        .filter(|(_, o)| o.0 > 0)
        .map(|(name, o)| {
            format!(
                "{name} {} x {:.0} us",
                o.0,
                o.1 as f64 / o.0 as f64 / 1000.0
            )
        })
        .collect();
    println!("fuzz: operations: {}", ops.join(", "));
    println!(
        "fuzz: done: seed={} calls={calls} other_syscalls={} mappings={} forks={} (killed by SIGSEGV/SIGBUS: {}) in {secs:.1} s: {:.0} calls/s",
        cfg.seed,
        sh.other.load(Ordering::Relaxed),
        sh.mapped.load(Ordering::Relaxed),
        sh.forks.load(Ordering::Relaxed),
        sh.child_signals.load(Ordering::Relaxed),
        calls as f64 / secs
    );
    let failures = sh
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if !failures.is_empty() {
        return Err(failures.join("; "));
    }
    if calls < cfg.calls {
        return Err(format!("only {calls} of {} calls made", cfg.calls));
    }
    Ok(())
}

/// Waits up to `limit` for the child `pid` to end and reaps it into `status`: `true`
/// once reaped, `false` if it is still running at the limit. Sleeps on the child's
/// pidfd (readable when it exits) instead of polling `waitpid`: the fuzzer forks a
/// hundred times a pass, and each child runs for about 0.4 s on the debug guest.
fn wait_child(pid: libc::pid_t, limit: Duration, status: &mut i32) -> Result<bool, String> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(format!("pidfd_open {pid}: errno {}", errno()));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
    let started = Instant::now();
    loop {
        let left = limit.saturating_sub(started.elapsed());
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one pollfd on the stack, counted as one.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r < 0 && errno() != libc::EINTR {
            return Err(format!("poll the pidfd of {pid}: errno {}", errno()));
        }
        // SAFETY: waits for our own child.
        let w = unsafe { libc::waitpid(pid, status, libc::WNOHANG) };
        if w == pid {
            return Ok(true);
        }
        if w < 0 {
            return Err(format!("waitpid {pid}: errno {}", errno()));
        }
        if left.is_zero() {
            return Ok(false);
        }
    }
}

// ---------------------------------------------------------------------------------
// The selftest case.

/// Calls of the short pass `make check` runs (`MEMKIT_FUZZ_CALLS` overrides).
const CHECK_CALLS: u64 = 100_000;

/// `fuzz_ioctl`: a short pass of the fuzzer in a process of its own (seed from
/// `MEMKIT_FUZZ_SEED`, else random), then the kernel log and the devices checked.
pub fn fuzz_ioctl(opts: &crate::Options) -> TestResult {
    fuzz_pass(opts, CHECK_CALLS, None, &|| Ok(()))
}

/// Calls of the unprivileged pass.
const CHECK_CALLS_UNPRIVILEGED: u64 = 20_000;

/// `fuzz_ioctl_unprivileged`: a pass as `nobody` with every node opened to all
/// (mode 0666, the journal included: the worst an administrator could do) and the
/// journal attached by root. No attach, detach or read of the module's rmem totals
/// succeeds (the fuzzer checks each call), the journal is still attached afterwards,
/// and the kernel log and the devices are checked as after `fuzz_ioctl`.
pub fn fuzz_ioctl_unprivileged(opts: &crate::Options) -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(Outcome::Skip("needs root to switch to nobody".into()));
    }
    let nodes = crate::perm_tests::SavedNodes::save()?;
    for dev in Dev::ALL {
        std::fs::set_permissions(
            dev.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .map_err(|e| format!("chmod {}: {e}", dev.path()))?;
    }
    let journal = crate::race_tests::journal_attached()?;
    let still_attached = || match &journal {
        Some(j) => match j.journal_status() {
            Ok(st) if st.attached == 1 => Ok(()),
            other => Err(format!(
                "the journal root attached is not attached after the pass: {other:?}"
            )),
        },
        None => Ok(()),
    };
    let r = fuzz_pass(opts, CHECK_CALLS_UNPRIVILEGED, Some(65534), &still_attached);
    drop(nodes);
    r
}

/// A pass of `default_calls` calls (`MEMKIT_FUZZ_CALLS` overrides), as `user` if
/// given; then the kernel log is searched, `check` runs, every device must answer
/// `VERSION`, and the journal is detached.
fn fuzz_pass(
    opts: &crate::Options,
    default_calls: u64,
    user: Option<u32>,
    check: &dyn Fn() -> Result<(), String>,
) -> TestResult {
    let seed = env_seed()?.unwrap_or_else(random_seed);
    let calls = match std::env::var("MEMKIT_FUZZ_CALLS") {
        Ok(s) => parse_u64(&s).ok_or(format!("MEMKIT_FUZZ_CALLS={s}: not a number"))?,
        Err(_) => default_calls,
    };
    // Done well before the runner's time limit, so that a slow run says how far it
    // got instead of being killed.
    let limit = opts.timeout.as_secs().saturating_sub(15).max(10);
    let before = kernel_problems()?.len();
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let user_args: Vec<String> = user
        .map(|u| vec!["--user".into(), u.to_string()])
        .unwrap_or_default();
    let status = std::process::Command::new(exe)
        .args([
            "fuzz",
            "--seed",
            &seed.to_string(),
            "--calls",
            &calls.to_string(),
        ])
        .args([
            "--threads",
            "4",
            "--stall",
            "60",
            "--time-limit",
            &limit.to_string(),
        ])
        .args(&user_args)
        .status()
        .map_err(|e| format!("spawn the fuzzer: {e}"))?;
    let problems = kernel_problems()?;
    if problems.len() > before {
        return Err(format!(
            "the kernel log reports problems after the fuzzer (seed={seed}): {:?}",
            &problems[before..]
        ));
    }
    if !status.success() {
        return Err(format!(
            "the fuzzer failed ({status}); reproduce: memkit-selftest fuzz --seed {seed} --calls {calls} --threads 4 {}",
            user_args.join(" ")
        ));
    }
    check()?;
    // The devices still answer, and the journal is left detached.
    for dev in Dev::ALL {
        let fd = open_dev(dev, false);
        if fd < 0 {
            return Err(format!(
                "open {} after the fuzzer: errno {}",
                dev.path(),
                errno()
            ));
        }
        let mut v = [0u8; 32];
        abi::Version {
            size: 32,
            ..Default::default()
        }
        .encode(&mut v);
        // SAFETY: a 32-byte struct on the stack, the size it declares.
        let r = unsafe { libc::ioctl(fd, abi::IOC_VERSION as _, v.as_mut_ptr()) };
        let e = errno();
        if dev == Dev::Journal {
            let mut d = [0u8; 8];
            abi::JournalDetach { size: 8, flags: 0 }.encode(&mut d);
            // SAFETY: an 8-byte struct on the stack, the size it declares.
            unsafe { libc::ioctl(fd, abi::IOC_JOURNAL_DETACH as _, d.as_mut_ptr()) };
        }
        // SAFETY: the descriptor opened above.
        unsafe { libc::close(fd) };
        if r != 0 {
            return Err(format!(
                "{}: VERSION after the fuzzer: errno {e}",
                dev.path()
            ));
        }
    }
    Ok(Outcome::Pass)
}
