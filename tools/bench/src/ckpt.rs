//! `memkit-bench ckpt-collect`: the get-and-clear of a checkpoint's dirty pages, five
//! ways, side by side in one process:
//!
//! - `memkit-scan`, `memkit-record`: a region of `/dev/memkit-ckpt`, mapped
//!   `MAP_SHARED`, its tracking mode fixed by `MEMKIT_IOC_CKPT_START` (page-table scan
//!   or recording first writes); `MEMKIT_IOC_CKPT_COLLECT` with
//!   `MEMKIT_CKPT_COLLECT_CLEAR` into a bitmap (one ioctl). The report's `memkit`
//!   column is the one of the two that the module's own choice settles on at that
//!   dirty fraction (`memkit_core::ckpt::track`).
//! - `soft-dirty`: private anonymous memory of this process; the pagemap entries of
//!   the range read with one `pread` of `/proc/self/pagemap` and searched for the
//!   soft-dirty bit, then `4` written to `/proc/self/clear_refs`.
//! - `soft-dirty-scan`: the same, the soft-dirty pages found with `PAGEMAP_SCAN`
//!   (`PAGE_IS_SOFT_DIRTY`) instead of reading every entry.
//! - `pagemap-scan`: private anonymous memory registered with userfaultfd for
//!   asynchronous write-protection (`UFFD_FEATURE_WP_ASYNC`); one `PAGEMAP_SCAN` with
//!   `PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC` on `PAGE_IS_WRITTEN` reports the
//!   written pages and write-protects them again.
//!
//! For each region size, round and variant (the order of the variants alternates with
//! the round), the memory is set up and every page written once, one collect + clear
//! starts clean, then for each dirty fraction: iterations that write one word to `N`
//! distinct pages (random, the same pages for every variant of a round), time the
//! collect + clear alone, and check the reported pages against the written ones (a
//! missed page fails the run; extra pages are counted). The memory is freed before
//! the next variant.
//!
//! The baselines get their best shot: buffers allocated once, files opened once, and
//! huge pages off (`MADV_NOHUGEPAGE`; memkit regions never use them either).

use crate::host::{cpu_model, kernel_release};
use crate::sample::{CkptSample, Raw};
use crate::workload::Rng;
use memkit::core::abi::{self, UapiStruct};
use memkit::dev::{CkptMap, Device, DeviceKind};
use memkit::track::{pagemap_scan, PageRegion, PAGE_IS_SOFT_DIRTY};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::time::Instant;

/// Bytes per page.
const PAGE: usize = 4096;

/// The five ways, in their base order.
pub const VARIANTS: [&str; 5] = [
    "memkit-scan",
    "memkit-record",
    "soft-dirty",
    "soft-dirty-scan",
    "pagemap-scan",
];

/// Options of `memkit-bench ckpt-collect`.
#[derive(clap::Args)]
pub struct CkptOpts {
    /// Region sizes (K, M, G suffixes), comma-separated.
    #[arg(long, default_value = "64M,256M,1G", value_delimiter = ',', value_parser = crate::parse_size)]
    pub sizes: Vec<u64>,
    /// Percentages of the pages written per iteration, comma-separated.
    #[arg(long, default_value = "0.1,1,10", value_delimiter = ',')]
    pub dirty: Vec<f64>,
    /// Rounds (every variant once per round, the order alternating).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Measured iterations per (size, dirty %, variant, round).
    #[arg(long, default_value_t = 5)]
    pub iters: u32,
    /// Iterations before those, not recorded (still checked).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Variants to run, comma-separated.
    #[arg(long, default_value = "memkit-scan,memkit-record,soft-dirty,soft-dirty-scan,pagemap-scan",
          value_delimiter = ',',
          value_parser = VARIANTS)]
    pub variants: Vec<String>,
    /// Seed of the page choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where it runs, recorded as the env line's `where` (`report` shows the env
    /// lines whose `where` ends in `ckpt` with these results).
    #[arg(long = "where", default_value = "guest/ckpt")]
    pub place: String,
    /// KEY=VALUE facts recorded with the results.
    #[arg(long = "note", value_name = "KEY=VALUE", value_parser = crate::parse_note)]
    pub notes: Vec<(String, String)>,
}

/// One way of tracking a region of `pages()` pages.
trait Tracker {
    /// Writes `value` to the first word of page `page`.
    fn write(&mut self, page: usize, value: u64);
    /// Gets and clears the written pages: the timed call.
    fn collect_clear(&mut self) -> io::Result<()>;
    /// The pages the last [`Tracker::collect_clear`] reported, in increasing order.
    fn reported(&self, out: &mut Vec<u32>);
    /// How many pages the last collect said it reported, where it says so apart.
    fn count(&self) -> Option<u64> {
        None
    }
}

/// `memkit-scan`, `memkit-record`: a region of `/dev/memkit-ckpt`, collected as
/// runs (`MEMKIT_CKPT_COLLECT_RANGES`, as `PAGEMAP_SCAN` reports its ranges): the
/// copy-out follows the pages written, not the region's size.
struct Memkit {
    dev: Device,
    map: CkptMap,
    pages: u64,
    /// Room for the most runs a collect can report (every other page).
    runs: Vec<u8>,
    nr_runs: usize,
    dirty: u64,
}

impl Memkit {
    /// A region tracked as `start_flags` says (`MEMKIT_IOC_CKPT_START`).
    fn new(bytes: u64, start_flags: u32) -> io::Result<Memkit> {
        let dev = Device::open(DeviceKind::Ckpt)?;
        let offset = dev.ckpt_create(bytes)?;
        dev.ckpt_start_with(start_flags)?;
        let len = usize::try_from(bytes).map_err(io::Error::other)?;
        let map = CkptMap::new(&dev, offset, len)?;
        let pages = bytes / PAGE as u64;
        Ok(Memkit {
            dev,
            map,
            pages,
            runs: vec![0u8; pages.div_ceil(2) as usize * abi::CkptRange::SIZE],
            nr_runs: 0,
            dirty: 0,
        })
    }
}

impl Tracker for Memkit {
    fn write(&mut self, page: usize, value: u64) {
        self.map.write_u64(page * PAGE, value);
    }

    fn collect_clear(&mut self) -> io::Result<()> {
        let flags = abi::CKPT_COLLECT_CLEAR | abi::CKPT_COLLECT_RANGES;
        let out = self
            .dev
            .ckpt_collect_into(flags, 0, self.pages, &mut self.runs)?;
        self.dirty = out.dirty;
        self.nr_runs = usize::try_from(out.nr_ranges)
            .ok()
            .filter(|&n| n * abi::CkptRange::SIZE <= self.runs.len())
            .ok_or_else(|| io::Error::other(format!("{} runs reported", out.nr_ranges)))?;
        Ok(())
    }

    fn reported(&self, out: &mut Vec<u32>) {
        out.clear();
        for raw in self
            .runs
            .chunks_exact(abi::CkptRange::SIZE)
            .take(self.nr_runs)
        {
            let r = abi::CkptRange::decode(raw);
            out.extend((r.first..r.first + r.count).map(|p| p as u32));
        }
    }

    fn count(&self) -> Option<u64> {
        Some(self.dirty)
    }
}

/// Private anonymous memory of this process, unmapped on drop, between two
/// inaccessible guard pages: no other mapping can merge with it (a merge marks the
/// whole merged VMA soft-dirty, and every page of it would be reported).
struct Anon {
    /// The first page of the guarded mapping (the lower guard).
    base: NonNull<u8>,
    ptr: NonNull<u8>,
    len: usize,
}

impl Anon {
    fn new(len: usize) -> io::Result<Anon> {
        let total = len + 2 * PAGE;
        // SAFETY: a new private anonymous mapping at an address the kernel chooses (no
        // MAP_FIXED): no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        // SAFETY: one page into the mapping just made, `len` bytes of it: still inside.
        let ptr = unsafe { base.add(PAGE) };
        let anon = Anon { base, ptr, len };
        // SAFETY: a protection change of the inside of our own mapping, which no one
        // else uses.
        if unsafe { libc::mprotect(ptr.as_ptr().cast(), len, libc::PROT_READ | libc::PROT_WRITE) }
            != 0
        {
            return Err(os_err("mprotect"));
        }
        // Tracking is per 4 KiB page. EINVAL (a kernel without THP) is fine.
        // SAFETY: advice on our own mapping.
        unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_NOHUGEPAGE) };
        Ok(anon)
    }

    fn start(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// `[start, end)` of the usable memory, as addresses.
    fn range(&self) -> (u64, u64) {
        (self.start(), self.start() + self.len as u64)
    }

    fn write(&self, page: usize, value: u64) {
        assert!(page < self.len / PAGE, "page {page} outside the mapping");
        // SAFETY: the first word of a page inside the writable part of the mapping
        // (checked above), hence 8-aligned; the mapping lives as long as `self` and is
        // only ever accessed through these volatile word writes.
        unsafe {
            self.ptr
                .as_ptr()
                .add(page * PAGE)
                .cast::<u64>()
                .write_volatile(value)
        }
    }
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: `self` owns the mapping, guards included; nothing refers into it
        // after `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len + 2 * PAGE) };
    }
}

/// Soft-dirty bit of a pagemap entry.
const PM_SOFT_DIRTY: u64 = 1 << 55;

/// `soft-dirty`: pagemap entries + `clear_refs`.
struct SoftDirty {
    mem: Anon,
    pagemap: File,
    clear_refs: File,
    entries: Vec<u8>,
    found: Vec<u32>,
}

impl SoftDirty {
    fn new(bytes: usize) -> io::Result<SoftDirty> {
        let mem = Anon::new(bytes)?;
        let pagemap = File::open("/proc/self/pagemap")?;
        let clear_refs = OpenOptions::new()
            .write(true)
            .open("/proc/self/clear_refs")?;
        Ok(SoftDirty {
            entries: vec![0u8; bytes / PAGE * 8],
            found: Vec::with_capacity(bytes / PAGE),
            mem,
            pagemap,
            clear_refs,
        })
    }
}

impl Tracker for SoftDirty {
    fn write(&mut self, page: usize, value: u64) {
        self.mem.write(page, value);
    }

    fn collect_clear(&mut self) -> io::Result<()> {
        self.pagemap
            .read_exact_at(&mut self.entries, self.mem.start() / PAGE as u64 * 8)?;
        self.found.clear();
        for (i, e) in self.entries.chunks_exact(8).enumerate() {
            if u64::from_ne_bytes(e.try_into().expect("8-byte chunk")) & PM_SOFT_DIRTY != 0 {
                self.found.push(i as u32);
            }
        }
        // "4": clear the soft-dirty bits of every page of the process.
        self.clear_refs.write_all(b"4")
    }

    fn reported(&self, out: &mut Vec<u32>) {
        out.clone_from(&self.found);
    }
}

/// `struct uffdio_api`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

const _: () = assert!(std::mem::size_of::<UffdioApi>() == 24);
const _: () = assert!(std::mem::size_of::<UffdioRegister>() == 32);

/// `_IOWR(type, nr, size)`.
const fn iowr(ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    (3 << 30) | ((size as libc::c_ulong) << 16) | ((ty as libc::c_ulong) << 8) | nr as libc::c_ulong
}

const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;
const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// `UFFD_API` and the userfaultfd ioctl type.
const UFFD_API: u64 = 0xaa;
const UFFDIO_API: libc::c_ulong = iowr(0xaa, 0x3f, std::mem::size_of::<UffdioApi>());
const UFFDIO_REGISTER: libc::c_ulong = iowr(0xaa, 0x00, std::mem::size_of::<UffdioRegister>());
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// Bit of `_UFFDIO_WRITEPROTECT` in `uffdio_register.ioctls`.
const UFFDIO_WRITEPROTECT_BIT: u64 = 1 << 0x06;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;

/// `pagemap-scan`: userfaultfd asynchronous write-protect + `PAGEMAP_SCAN`.
struct PagemapScan {
    mem: Anon,
    /// Keeps the registration (closing it unregisters).
    _uffd: OwnedFd,
    pagemap: File,
    vec: Vec<PageRegion>,
    runs: Vec<(u64, u64)>,
}

impl PagemapScan {
    /// The memory, written once, registered and ready for a first collect (which
    /// reports every page).
    fn new(bytes: usize) -> io::Result<PagemapScan> {
        let mem = Anon::new(bytes)?;
        for p in 0..bytes / PAGE {
            mem.write(p, 0);
        }
        let uffd = uffd_wp_async(mem.start(), bytes as u64)?;
        Ok(PagemapScan {
            mem,
            _uffd: uffd,
            pagemap: File::open("/proc/self/pagemap")?,
            // The most runs there can be: every other page. One call always suffices.
            vec: vec![PageRegion::default(); bytes / PAGE / 2 + 1],
            runs: Vec::new(),
        })
    }
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A userfaultfd with `UFFD_FEATURE_WP_ASYNC`, with `[start, start + len)` registered
/// for write-protection.
fn uffd_wp_async(start: u64, len: u64) -> io::Result<OwnedFd> {
    // SAFETY: a system call that takes no pointer.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        return Err(os_err("userfaultfd"));
    }
    // SAFETY: a descriptor just returned to us, owned by nothing else.
    let uffd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let mut api = UffdioApi {
        api: UFFD_API,
        features: UFFD_FEATURE_WP_ASYNC,
        ioctls: 0,
    };
    // SAFETY: `api` is a valid uffdio_api the kernel reads and writes during the call.
    if unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api) } < 0 {
        return Err(os_err("UFFDIO_API with UFFD_FEATURE_WP_ASYNC"));
    }
    let mut reg = UffdioRegister {
        start,
        len,
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: `reg` is a valid uffdio_register the kernel reads and writes during the
    // call; the range is our own anonymous mapping.
    if unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER, &mut reg) } < 0 {
        return Err(os_err("UFFDIO_REGISTER (write-protect)"));
    }
    if reg.ioctls & UFFDIO_WRITEPROTECT_BIT == 0 {
        return Err(io::Error::other(
            "UFFDIO_REGISTER did not offer UFFDIO_WRITEPROTECT",
        ));
    }
    Ok(uffd)
}

/// The pages of `runs` (addresses) as indexes from `base`.
fn run_pages(runs: &[(u64, u64)], base: u64, out: &mut Vec<u32>) {
    out.clear();
    for &(s, e) in runs {
        out.extend(((s - base) / PAGE as u64..(e - base) / PAGE as u64).map(|p| p as u32));
    }
}

impl Tracker for PagemapScan {
    fn write(&mut self, page: usize, value: u64) {
        self.mem.write(page, value);
    }

    fn collect_clear(&mut self) -> io::Result<()> {
        pagemap_scan(
            &self.pagemap,
            &mut self.vec,
            self.mem.range(),
            PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
            PAGE_IS_WRITTEN,
            &mut self.runs,
        )
    }

    fn reported(&self, out: &mut Vec<u32>) {
        run_pages(&self.runs, self.mem.start(), out);
    }
}

/// `soft-dirty-scan`: `PAGEMAP_SCAN` for soft-dirty pages + `clear_refs`.
struct SoftDirtyScan {
    mem: Anon,
    pagemap: File,
    clear_refs: File,
    vec: Vec<PageRegion>,
    runs: Vec<(u64, u64)>,
}

impl SoftDirtyScan {
    fn new(bytes: usize) -> io::Result<SoftDirtyScan> {
        Ok(SoftDirtyScan {
            mem: Anon::new(bytes)?,
            pagemap: File::open("/proc/self/pagemap")?,
            clear_refs: OpenOptions::new()
                .write(true)
                .open("/proc/self/clear_refs")?,
            vec: vec![PageRegion::default(); bytes / PAGE / 2 + 1],
            runs: Vec::new(),
        })
    }
}

impl Tracker for SoftDirtyScan {
    fn write(&mut self, page: usize, value: u64) {
        self.mem.write(page, value);
    }

    fn collect_clear(&mut self) -> io::Result<()> {
        pagemap_scan(
            &self.pagemap,
            &mut self.vec,
            self.mem.range(),
            0,
            PAGE_IS_SOFT_DIRTY,
            &mut self.runs,
        )?;
        // "4": clear the soft-dirty bits of every page of the process.
        self.clear_refs.write_all(b"4")
    }

    fn reported(&self, out: &mut Vec<u32>) {
        run_pages(&self.runs, self.mem.start(), out);
    }
}

/// Sets up `variant` on `bytes` bytes: every page written once and one collect +
/// clear done, so that nothing is pending.
fn setup(variant: &str, bytes: u64) -> io::Result<Box<dyn Tracker>> {
    let len = usize::try_from(bytes).map_err(io::Error::other)?;
    let mut t: Box<dyn Tracker> = match variant {
        "memkit-scan" => Box::new(Memkit::new(bytes, abi::CKPT_START_SCAN)?),
        "memkit-record" => Box::new(Memkit::new(bytes, abi::CKPT_START_RECORD)?),
        "soft-dirty" => Box::new(SoftDirty::new(len)?),
        "soft-dirty-scan" => Box::new(SoftDirtyScan::new(len)?),
        "pagemap-scan" => Box::new(PagemapScan::new(len)?),
        _ => return Err(io::Error::other(format!("unknown variant {variant}"))),
    };
    let pages = len / PAGE;
    for p in 0..pages {
        t.write(p, p as u64);
    }
    // The first collect reports every page (a kernel without soft-dirty reports
    // none), the second none: the start is clean.
    t.collect_clear()?;
    let mut got = Vec::new();
    t.reported(&mut got);
    if got.len() != pages {
        return Err(io::Error::other(format!(
            "{variant}: {} of {pages} pages written reported",
            got.len()
        )));
    }
    t.collect_clear()?;
    t.reported(&mut got);
    if !got.is_empty() {
        return Err(io::Error::other(format!(
            "{variant}: {} pages reported right after a clearing collect",
            got.len()
        )));
    }
    Ok(t)
}

/// `(written pages not reported, reported pages not written)`; both sorted.
fn compare(written: &[u32], reported: &[u32]) -> (u64, u64) {
    let (mut i, mut j) = (0, 0);
    let (mut missed, mut extra) = (0u64, 0u64);
    while i < written.len() || j < reported.len() {
        match (written.get(i), reported.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                missed += 1;
                i += 1;
            }
            (Some(_), None) => {
                missed += 1;
                i += 1;
            }
            _ => {
                extra += 1;
                j += 1;
            }
        }
    }
    (missed, extra)
}

/// The size as results name it: `64MiB`, `1GiB`, ...
pub fn size_name(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// `MemAvailable` of /proc/meminfo, in MiB (for the progress lines).
fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// The dirty pages of each iteration: a partial Fisher-Yates shuffle of a
/// permutation of every page, so that the pages of one iteration are distinct.
struct Picker {
    perm: Vec<u32>,
    rng: Rng,
}

impl Picker {
    fn new(pages: usize, seed: u64) -> Picker {
        Picker {
            perm: (0..pages as u32).collect(),
            rng: Rng::new(seed),
        }
    }

    fn next(&mut self, n: usize) -> &[u32] {
        let len = self.perm.len() as u64;
        for i in 0..n {
            let j = i + self.rng.below(len - i as u64) as usize;
            self.perm.swap(i, j);
        }
        &self.perm[..n]
    }
}

/// Runs the benchmark, handing every raw line to `emit`.
pub fn run(opts: &CkptOpts, emit: &mut dyn FnMut(Raw)) -> io::Result<()> {
    for &s in &opts.sizes {
        if s == 0 || !s.is_multiple_of(PAGE as u64) {
            return Err(io::Error::other(format!(
                "size {s} is not a non-zero multiple of {PAGE}"
            )));
        }
    }
    if let Some(d) = opts.dirty.iter().find(|d| !(**d > 0.0 && **d <= 100.0)) {
        return Err(io::Error::other(format!("dirty {d}% is not in (0, 100]")));
    }
    let mut env = BTreeMap::new();
    env.insert("where".into(), opts.place.clone());
    env.insert("cpu".into(), cpu_model());
    env.insert("kernel".into(), kernel_release());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    env.insert("cpus".into(), cpus.to_string());
    env.insert(
        "mem_available".into(),
        format!("{}MiB", mem_available_mib()),
    );
    env.insert("rounds".into(), opts.rounds.to_string());
    env.insert("iters".into(), opts.iters.to_string());
    env.insert("warmup".into(), opts.warmup.to_string());
    env.insert("seed".into(), opts.seed.to_string());
    for (k, v) in &opts.notes {
        env.insert(k.clone(), v.clone());
    }
    emit(Raw::Env(env));

    // Sized once for the largest answer: no allocation between two collects.
    let most = opts.sizes.iter().max().map_or(0, |&b| b as usize / PAGE);
    let mut got = Vec::with_capacity(most);
    let mut want = Vec::with_capacity(most);
    for (si, &bytes) in opts.sizes.iter().enumerate() {
        let pages = (bytes / PAGE as u64) as usize;
        for round in 0..opts.rounds {
            let mut order: Vec<&str> = VARIANTS
                .iter()
                .copied()
                .filter(|v| opts.variants.iter().any(|o| o == v))
                .collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for variant in order {
                let t0 = Instant::now();
                let mut t = setup(variant, bytes)
                    .map_err(|e| io::Error::new(e.kind(), format!("{variant}: set-up: {e}")))?;
                eprintln!(
                    "ckpt-collect {} round {round} {variant}: set up in {:.1}s, {} MiB available",
                    size_name(bytes),
                    t0.elapsed().as_secs_f64(),
                    mem_available_mib()
                );
                for (di, &pct) in opts.dirty.iter().enumerate() {
                    let n = ((pages as f64 * pct / 100.0).round() as usize).clamp(1, pages);
                    let seed = opts.seed ^ (si as u64) << 48 ^ (di as u64) << 40 ^ u64::from(round);
                    let mut picker = Picker::new(pages, seed);
                    let mut s = CkptSample {
                        variant: variant.into(),
                        bytes,
                        dirty_pct: pct,
                        dirty_pages: n as u64,
                        round,
                        ..Default::default()
                    };
                    for it in 0..opts.warmup + opts.iters {
                        let picks = picker.next(n);
                        let value = u64::from(it + 1) << 32 | u64::from(round);
                        let w0 = Instant::now();
                        for &p in picks {
                            t.write(p as usize, value ^ u64::from(p));
                        }
                        let w1 = Instant::now();
                        t.collect_clear()
                            .map_err(|e| io::Error::new(e.kind(), format!("{variant}: {e}")))?;
                        let c1 = Instant::now();
                        want.clear();
                        want.extend_from_slice(picks);
                        want.sort_unstable();
                        t.reported(&mut got);
                        if t.count().is_some_and(|c| c != got.len() as u64) {
                            return Err(io::Error::other(format!(
                                "{variant}: the collect counted {:?} pages, its bitmap {}",
                                t.count(),
                                got.len()
                            )));
                        }
                        let (missed, extra) = compare(&want, &got);
                        if missed > 0 {
                            return Err(io::Error::other(format!(
                                "{variant} {} {pct}%: {missed} of {n} written pages not \
                                 reported",
                                size_name(bytes)
                            )));
                        }
                        if it >= opts.warmup {
                            s.collect_ns.push((c1 - w1).as_nanos() as u64);
                            s.write_ns.push((w1 - w0).as_nanos() as u64);
                            s.reported += got.len() as u64;
                            s.false_pos += extra;
                        }
                    }
                    let mut sorted = s.collect_ns.clone();
                    sorted.sort_unstable();
                    eprintln!(
                        "ckpt-collect {} {pct}% round {round} {variant}: median {:.0} us \
                         ({n} pages, {} extra)",
                        size_name(bytes),
                        sorted.get(sorted.len() / 2).copied().unwrap_or(0) as f64 / 1e3,
                        s.false_pos
                    );
                    emit(Raw::Ckpt(Box::new(s)));
                }
                drop(t);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_headers() {
        // As <linux/fs.h> and <linux/userfaultfd.h> compute them.
        assert_eq!(memkit::track::PAGEMAP_SCAN, 0xc060_6610);
        assert_eq!(UFFDIO_API, 0xc018_aa3f);
        assert_eq!(UFFDIO_REGISTER, 0xc020_aa00);
    }

    #[test]
    fn compare_counts_missed_and_extra() {
        assert_eq!(compare(&[1, 2, 3], &[1, 2, 3]), (0, 0));
        assert_eq!(compare(&[1, 2, 3], &[2, 3, 4, 9]), (1, 2));
        assert_eq!(compare(&[5], &[]), (1, 0));
        assert_eq!(compare(&[], &[0]), (0, 1));
    }

    #[test]
    fn picks_are_distinct_and_repeatable() {
        let mut a = Picker::new(1000, 7);
        let mut b = Picker::new(1000, 7);
        for n in [1, 10, 500, 1000] {
            let pa = a.next(n).to_vec();
            assert_eq!(pa, b.next(n));
            let mut s = pa.clone();
            s.sort_unstable();
            s.dedup();
            assert_eq!(s.len(), n);
            assert!(s.iter().all(|&p| p < 1000));
        }
    }

    #[test]
    fn sizes_are_named_in_binary_units() {
        assert_eq!(size_name(64 << 20), "64MiB");
        assert_eq!(size_name(1 << 30), "1GiB");
        assert_eq!(size_name(4096), "4KiB");
        assert_eq!(size_name(100), "100B");
    }

    /// The two baselines on this machine's kernel, if it offers them.
    #[test]
    fn baselines_report_what_was_written() {
        for variant in ["soft-dirty", "soft-dirty-scan", "pagemap-scan"] {
            let mut t = match setup(variant, 1 << 20) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{variant} unavailable here: {e}");
                    continue;
                }
            };
            for p in [3usize, 4, 100, 255] {
                t.write(p, 1);
            }
            t.collect_clear().expect("collect");
            let mut got = Vec::new();
            t.reported(&mut got);
            assert_eq!(got, [3, 4, 100, 255], "{variant}");
            t.collect_clear().expect("collect");
            t.reported(&mut got);
            assert!(got.is_empty(), "{variant}: {got:?}");
        }
    }
}
