//! `memkit workload ckpt-writer`: a program to checkpoint — threads writing random bytes at
//! random places of its memory until it is killed.
//!
//! Its memory is, in this order of preference: the region `memkit ckpt run` passes
//! it (`MEMKIT_CKPT_FD`, `MEMKIT_CKPT_OFFSET`), private anonymous memory (`--anon`,
//! for the soft-dirty path), or a region of its own. It prints one JSON line — pid,
//! address, bytes — once the memory is mapped and every page written once.

use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use memkit::workload::{Rng, Zipf};
use serde::Serialize;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which pages the writes go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// Every page alike.
    Uniform,
    /// Zipf (s = 0.99) over the pages, hot pages scattered over the region.
    Zipf,
}

/// What one write is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteKind {
    /// One 8-byte word.
    Sparse,
    /// A whole page.
    Dense,
    /// 8 to 4096 bytes at a random 8-aligned offset (may cross into the next page).
    Random,
}

/// The writer's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct WriterOpts {
    /// Bytes of memory when it makes its own (a region or `--anon`).
    #[arg(long, default_value = "16M", value_parser = crate::journal::parse_size)]
    pub bytes: u64,
    /// Private anonymous memory instead of a memkit region.
    #[arg(long)]
    pub anon: bool,
    /// Writing threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Page choice.
    #[arg(long, value_enum, default_value_t = Pattern::Uniform)]
    pub pattern: Pattern,
    /// Write size.
    #[arg(long = "write", value_enum, default_value_t = WriteKind::Random)]
    pub kind: WriteKind,
    /// Writes per second per thread (0: as fast as it can).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Writes per thread between two checkpoints, at most (0: no limit): a thread
    /// that has made them waits for the next checkpoint, so each checkpoint sees
    /// about the same writes however long the checkpoints take. A checkpoint is a
    /// clearing collect of the program's memkit region (two with pre-copy; read from
    /// the region's statistics), or for anonymous memory the `SIGCONT` that ends
    /// each stop.
    #[arg(long, default_value_t = 0)]
    pub per_checkpoint: u64,
    /// Seed of the random choices (each thread adds its number).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0.0)]
    pub secs: f64,
}

#[derive(Serialize)]
struct Ready {
    pid: u32,
    addr: String,
    bytes: u64,
    memory: &'static str,
}

/// What [`memory`] calls a region the program created itself.
const OWN_REGION: &str = "memkit region (own)";

/// The program's memory: the inherited region, else `bytes` of anonymous memory
/// (`anon`) or of a region of its own; and what it is.
pub(super) fn memory(bytes: u64, anon: bool) -> Result<(CkptMap, &'static str), String> {
    let (map, what, dev) = memory_and_device(bytes, anon)?;
    if what == OWN_REGION {
        // Kept open (see `memory_and_device`).
        std::mem::forget(dev);
    }
    Ok((map, what))
}

/// [`memory`], and the region's device if it is a memkit region. The descriptor of
/// a region of its own stays open as long as the process (so that
/// `memkit ckpt run --pid` can take it with pidfd_getfd).
fn memory_and_device(
    bytes: u64,
    anon: bool,
) -> Result<(CkptMap, &'static str, Option<Device>), String> {
    if let Ok(fd) = std::env::var("MEMKIT_CKPT_FD") {
        let fd: i32 = fd.parse().map_err(|_| "MEMKIT_CKPT_FD is not a number")?;
        let offset: u64 = std::env::var("MEMKIT_CKPT_OFFSET")
            .map_err(|_| "MEMKIT_CKPT_FD without MEMKIT_CKPT_OFFSET")?
            .parse()
            .map_err(|_| "MEMKIT_CKPT_OFFSET is not a number")?;
        // SAFETY: the descriptor was left open for this program by its parent
        // (`memkit ckpt run`); nothing else in this process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let dev = Device::from_fd(fd, DeviceKind::Ckpt).map_err(|e| e.to_string())?;
        let bytes = dev.ckpt_stats().map_err(|e| e.to_string())?.bytes;
        let len = usize::try_from(bytes).map_err(|_| "region too large")?;
        let map = CkptMap::new(&dev, offset, len).map_err(|e| format!("mmap: {e}"))?;
        return Ok((map, "memkit region (inherited)", Some(dev)));
    }
    let len = usize::try_from(bytes).map_err(|_| "--bytes too large")?;
    if anon {
        let map = CkptMap::anonymous(len).map_err(|e| format!("mmap: {e}"))?;
        return Ok((map, "anonymous", None));
    }
    let dev = Device::open(DeviceKind::Ckpt).map_err(|e| format!("/dev/memkit-ckpt: {e}"))?;
    let off = dev
        .ckpt_create(bytes)
        .map_err(|e| format!("CKPT_CREATE: {e}"))?;
    let map = CkptMap::new(&dev, off, len).map_err(|e| format!("mmap: {e}"))?;
    // The descriptor must stay open: the region's own `Device` is never closed
    // before the process ends, which `memory`'s callers get by leaking it.
    Ok((map, OWN_REGION, Some(dev)))
}

/// `SIGCONT`s received: the checkpoints that ended (`memkit ckpt run` stops its
/// target with `SIGSTOP` and continues it with `SIGCONT`).
static CONTINUED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigcont(_: libc::c_int) {
    CONTINUED.fetch_add(1, Ordering::Relaxed);
}

/// Counts `SIGCONT`s in [`CONTINUED`]; the process is continued as without a handler.
fn count_continues() -> Result<(), String> {
    // SAFETY: an all-zero sigaction is valid; the handler only touches an atomic,
    // which is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigcont as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGCONT, &sa, std::ptr::null_mut()) != 0 {
            return Err(format!("sigaction: {}", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// The checkpoints seen so far (see [`WriterOpts::per_checkpoint`]): the clearing
/// collects of the region of `dev`, else the `SIGCONT`s.
fn checkpoints_seen(dev: Option<&Device>) -> u64 {
    match dev {
        // A failed read (never expected) counts as no new checkpoint.
        Some(d) => d.ckpt_stats().map_or(0, |s| s.intervals),
        None => CONTINUED.load(Ordering::Relaxed),
    }
}

fn write_loop(map: &CkptMap, dev: Option<&Device>, o: &WriterOpts, zipf: Option<&Zipf>, t: u64) {
    let mut rng = Rng(o.seed.wrapping_mul(1000).wrapping_add(t));
    let pages = (map.len() / CKPT_PAGE_SIZE) as u64;
    let start = Instant::now();
    let mut done = 0u64;
    // Writes since the checkpoint seen last, and which one that was.
    let mut in_epoch = 0u64;
    let mut epoch = if o.per_checkpoint > 0 {
        checkpoints_seen(dev)
    } else {
        0
    };
    loop {
        let elapsed = start.elapsed();
        if o.secs > 0.0 && elapsed.as_secs_f64() >= o.secs {
            return;
        }
        // A look at a region's count is a system call: only once the quota is made,
        // and then every millisecond.
        if o.per_checkpoint > 0 && (dev.is_none() || in_epoch >= o.per_checkpoint) {
            let now = checkpoints_seen(dev);
            if now != epoch {
                (in_epoch, epoch) = (0, now);
            }
            if in_epoch >= o.per_checkpoint {
                let wait = if dev.is_some() { 1000 } else { 200 };
                std::thread::sleep(Duration::from_micros(wait));
                continue;
            }
        }
        if o.rate > 0 {
            let due = (elapsed.as_secs_f64() * o.rate as f64) as u64;
            if done >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        let page = match zipf {
            Some(z) => z.sample(&mut rng),
            None => rng.below(pages),
        };
        let base = page as usize * CKPT_PAGE_SIZE;
        let (at, len) = match o.kind {
            WriteKind::Sparse => (base + rng.below(512) as usize * 8, 8),
            WriteKind::Dense => (base, CKPT_PAGE_SIZE),
            WriteKind::Random => {
                let len = (rng.below(512) as usize + 1) * 8;
                let at = base + rng.below(512) as usize * 8;
                (at, len.min(map.len() - at))
            }
        };
        for w in (at..at + len).step_by(8) {
            map.write_u64(w, rng.next_u64());
        }
        done += 1;
        in_epoch += 1;
    }
}

/// Runs the writer; returns only with `--secs` or on error.
pub fn run(o: &WriterOpts) -> Result<(), String> {
    if o.per_checkpoint > 0 {
        count_continues()?;
    }
    let (map, what, dev) = memory_and_device(o.bytes, o.anon)?;
    for p in (0..map.len()).step_by(CKPT_PAGE_SIZE) {
        map.write_u64(p, p as u64);
    }
    let ready = Ready {
        pid: std::process::id(),
        addr: format!("{:#x}", map.addr()),
        bytes: map.len() as u64,
        memory: what,
    };
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(&ready).expect("serialisable")
    );
    let _ = out.flush();
    drop(out);
    let pages = (map.len() / CKPT_PAGE_SIZE) as u64;
    let zipf = (o.pattern == Pattern::Zipf).then(|| Arc::new(Zipf::new(pages, 0.99)));
    let map = Arc::new(map);
    // Kept open for as long as the writer runs (see `memory_and_device`).
    let dev = Arc::new(dev);
    let threads: Vec<_> = (0..o.threads.max(1))
        .map(|t| {
            let (map, dev, o, zipf) = (map.clone(), dev.clone(), o.clone(), zipf.clone());
            std::thread::spawn(move || {
                write_loop(
                    &map,
                    dev.as_ref().as_ref(),
                    &o,
                    zipf.as_deref(),
                    u64::from(t),
                );
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a writer thread panicked")?;
    }
    Ok(())
}
