//! `/dev/memkit-ckpt` in the guest: creating and mapping a region, collecting the
//! pages written (bitmap, runs, count only, get-and-clear), that no write is ever
//! missed while writers run, writes through a mapping that went or from a forked
//! child, the per-page history, copying pages out, every refused argument (and that a
//! refused collect clears nothing), segment diffs that rebuild a replica, and closing
//! the file with the mapping alive.

use crate::ktap::{expect_errno, Outcome, TestResult};
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use memkit_core::abi::{self, UapiStruct};
use memkit_core::ckpt::diff as ckpt_diff;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = CKPT_PAGE_SIZE;

fn open() -> Result<Device, String> {
    Device::open(DeviceKind::Ckpt).map_err(|e| format!("open /dev/memkit-ckpt: {e}"))
}

/// A new file with a region of `pages` pages, mapped whole, and its mmap offset.
fn region_at(pages: u64) -> Result<(Device, CkptMap, u64), String> {
    let dev = open()?;
    let off = dev
        .ckpt_create(pages * PAGE as u64)
        .map_err(|e| format!("CKPT_CREATE of {pages} pages: {e}"))?;
    let map = CkptMap::new(&dev, off, pages as usize * PAGE)
        .map_err(|e| format!("mmap {pages} pages at {off:#x}: {e}"))?;
    Ok((dev, map, off))
}

/// A new file with a region of `pages` pages, mapped whole.
pub(crate) fn region(pages: u64) -> Result<(Device, CkptMap), String> {
    region_at(pages).map(|(dev, map, _)| (dev, map))
}

/// `MEMKIT_IOC_CKPT_START` with `flags` (the tracking mode: 0, or one fixed).
pub(crate) fn start(dev: &Device, flags: u32) -> Result<(), String> {
    dev.ckpt_start_with(flags)
        .map_err(|e| format!("CKPT_START flags {flags:#x}: {e}"))
}

pub(crate) fn stats(dev: &Device) -> Result<abi::CkptStats, String> {
    dev.ckpt_stats().map_err(|e| format!("CKPT_STATS: {e}"))
}

/// The pages set in a collect bitmap of `count` pages from `first`; a bit past
/// `count` is an error.
fn bitmap_pages(first: u64, count: u64, words: &[u64]) -> Result<Vec<u64>, String> {
    let mut pages = Vec::new();
    for (w, &word) in words.iter().enumerate() {
        for i in 0..64u64 {
            if word >> i & 1 == 0 {
                continue;
            }
            let idx = 64 * w as u64 + i;
            if idx >= count {
                return Err(format!(
                    "bitmap of {count} pages has bit {idx} set (word {w} = {word:#x})"
                ));
            }
            pages.push(first + idx);
        }
    }
    Ok(pages)
}

/// The runs of a sorted list of pages, as `(first, count)`.
fn runs_of(pages: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &p in pages {
        match runs.last_mut() {
            Some((f, c)) if *f + *c == p => *c += 1,
            _ => runs.push((p, 1)),
        }
    }
    runs
}

/// Collects `first..first + count` as a bitmap; checks that `dirty` agrees with it.
pub(crate) fn collect(
    dev: &Device,
    first: u64,
    count: u64,
    clear: bool,
) -> Result<Vec<u64>, String> {
    let (words, dirty) = dev
        .ckpt_collect(first, count, clear)
        .map_err(|e| format!("CKPT_COLLECT {first}+{count} clear={clear}: {e}"))?;
    let pages = bitmap_pages(first, count, &words)?;
    if pages.len() as u64 != dirty {
        return Err(format!(
            "CKPT_COLLECT {first}+{count}: dirty = {dirty} but {} bits set",
            pages.len()
        ));
    }
    Ok(pages)
}

/// Fails unless `got` is exactly `want`, naming the pages missed (false negatives)
/// and the pages reported though not written (false positives).
pub(crate) fn expect_pages(what: &str, got: &[u64], want: &[u64]) -> Result<(), String> {
    let missed: Vec<u64> = want.iter().copied().filter(|p| !got.contains(p)).collect();
    let extra: Vec<u64> = got.iter().copied().filter(|p| !want.contains(p)).collect();
    if missed.is_empty() && extra.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{what}: {} written pages not reported {missed:?}, {} reported pages not written {extra:?}",
        missed.len(),
        extra.len()
    ))
}

/// A byte pattern for page `p`, different per `seed`.
pub(crate) fn pattern(p: u64, seed: u8) -> Vec<u8> {
    (0..PAGE)
        .map(|i| (i as u64 * 31 + p * 7 + u64::from(seed)) as u8 ^ 0x5a)
        .collect()
}

/// xorshift64: the tests' random numbers (no dependency needed).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

pub fn ckpt_create_and_map(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 64;
    let bytes = PAGES * PAGE as u64;
    // Before a region exists: stats answer with no region, mmap is refused.
    {
        let dev = open()?;
        let s = stats(&dev)?;
        if s.bytes != 0 || s.pages_allocated != 0 {
            return Err(format!("stats before CKPT_CREATE: {s:?}"));
        }
        expect_errno(
            "mmap before CKPT_CREATE",
            CkptMap::new(&dev, 0, PAGE),
            libc::EINVAL,
        )?;
    }
    let dev = open()?;
    // Refused sizes leave the file without a region.
    for (size, errno) in [
        (0, libc::EINVAL),
        (4095, libc::EINVAL),
        (4097, libc::EINVAL),
        (bytes + 1, libc::EINVAL),
        (abi::CKPT_MAX_BYTES + 4096, libc::E2BIG),
        (1 << 40, libc::E2BIG),
    ] {
        expect_errno(
            &format!("CKPT_CREATE of {size} bytes"),
            dev.ckpt_create(size),
            errno,
        )?;
    }
    let s = stats(&dev)?;
    if s.bytes != 0 {
        return Err(format!("a refused CKPT_CREATE left a region: {s:?}"));
    }
    let off = dev
        .ckpt_create(bytes)
        .map_err(|e| format!("CKPT_CREATE of {bytes} bytes after refusals: {e}"))?;
    println!("region of {bytes} bytes at mmap offset {off:#x}");
    if off % PAGE as u64 != 0 {
        return Err(format!("mmap offset {off:#x} is not page-aligned"));
    }
    let s = stats(&dev)?;
    if s.bytes != bytes || s.pages_allocated != 0 {
        return Err(format!(
            "stats after CKPT_CREATE: {s:?}, want bytes {bytes} and no page allocated"
        ));
    }
    for size in [bytes, PAGE as u64] {
        expect_errno(
            &format!("second CKPT_CREATE ({size} bytes)"),
            dev.ckpt_create(size),
            libc::EEXIST,
        )?;
    }
    if stats(&dev)?.bytes != bytes {
        return Err("the refused second CKPT_CREATE changed the region".into());
    }
    // Mappings that do not fit the rules.
    expect_errno(
        "MAP_PRIVATE",
        CkptMap::new_private(&dev, off, PAGE),
        libc::EINVAL,
    )?;
    let past_end: [(&str, u64, usize); 4] = [
        (
            "one page more than the region",
            off,
            PAGE * (PAGES as usize + 1),
        ),
        ("the page after the region", off + bytes, PAGE),
        (
            "the last page and one past it",
            off + bytes - PAGE as u64,
            2 * PAGE,
        ),
        ("far past the region", off + (1 << 36), PAGE),
    ];
    for (what, at, len) in past_end {
        expect_errno(
            &format!("mmap of {what} ({len} bytes at {at:#x})"),
            CkptMap::new(&dev, at, len),
            libc::EINVAL,
        )?;
    }
    let map = CkptMap::new(&dev, off, bytes as usize).map_err(|e| format!("mmap: {e}"))?;
    if let Some(i) = map.to_vec().iter().position(|&b| b != 0) {
        return Err(format!(
            "a new region reads {:#x} at byte {i}",
            map.to_vec()[i]
        ));
    }
    let s = stats(&dev)?;
    if s.pages_allocated > PAGES {
        return Err(format!(
            "{} pages allocated in a region of {PAGES}",
            s.pages_allocated
        ));
    }
    // A mapping of part of the region, at an offset inside it, is the same memory.
    let part = CkptMap::new(&dev, off + 10 * PAGE as u64, 2 * PAGE)
        .map_err(|e| format!("mmap of pages 10..12: {e}"))?;
    part.write_u64(PAGE + 8, 0x1234_5678_9abc_def0);
    if map.read_u64(11 * PAGE + 8) != 0x1234_5678_9abc_def0 {
        return Err(
            "a write through a mapping of pages 10..12 is not seen in the whole mapping".into(),
        );
    }
    drop(part);
    for p in 0..PAGES as usize {
        map.write_u64(p * PAGE, p as u64 + 1);
    }
    let s = stats(&dev)?;
    if s.pages_allocated != PAGES {
        return Err(format!(
            "every page written, {} pages allocated, want {PAGES}",
            s.pages_allocated
        ));
    }
    // Each file has its own region.
    let (other, other_map) = region(PAGES)?;
    if other_map.read_u64(0) != 0 || !collect(&other, 0, PAGES, false)?.is_empty() {
        return Err("a second file's region shares memory or dirty state with the first".into());
    }
    drop((other_map, other));
    // The largest region is accepted (pages are allocated at first touch only).
    let big = open()?;
    big.ckpt_create(abi::CKPT_MAX_BYTES)
        .map_err(|e| format!("CKPT_CREATE of CKPT_MAX_BYTES: {e}"))?;
    let s = stats(&big)?;
    if s.bytes != abi::CKPT_MAX_BYTES || s.pages_allocated != 0 {
        return Err(format!("stats of the largest region: {s:?}"));
    }
    Ok(Outcome::Pass)
}

pub fn ckpt_collect_reports_written_pages(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 256;
    let (dev, map) = region(PAGES)?;
    let mut written: Vec<u64> = vec![0, 1, 5, 63, 100];
    written.extend(10..20);
    written.extend(190..256);
    written.sort_unstable();
    let want_runs = [(0, 2), (5, 1), (10, 10), (63, 1), (100, 1), (190, 66)];
    assert_eq!(runs_of(&written), want_runs);
    let write_all = |seed: u64| {
        for &p in &written {
            map.write_u64(p as usize * PAGE + 8 * (p as usize % 512), seed << 32 | p);
        }
    };
    // Nothing written yet.
    let (mut collects, mut clearing, mut reported) = (0u64, 0u64, 0u64);
    let count = |dev: &Device| {
        dev.ckpt_collect_count(0, PAGES)
            .map_err(|e| format!("count-only CKPT_COLLECT: {e}"))
    };
    if count(&dev)? != (0, 0) {
        return Err("dirty pages before anything was written".into());
    }
    collects += 1;
    write_all(1);
    // Count only, twice: it does not clear.
    for i in 0..2 {
        let got = count(&dev)?;
        collects += 1;
        if got != (written.len() as u64, want_runs.len() as u64) {
            return Err(format!(
                "count-only collect {i}: (dirty, nr_ranges) = {got:?}, want ({}, {})",
                written.len(),
                want_runs.len()
            ));
        }
    }
    // Without CLEAR, bitmap then runs, both exact, and nothing cleared.
    expect_pages(
        "bitmap without CLEAR",
        &collect(&dev, 0, PAGES, false)?,
        &written,
    )?;
    collects += 1;
    let got: Vec<(u64, u64)> = dev
        .ckpt_collect_ranges(0, PAGES, false)
        .map_err(|e| format!("ranges without CLEAR: {e}"))?
        .iter()
        .map(|r| (r.first, r.count))
        .collect();
    collects += 1;
    if got != want_runs {
        return Err(format!("ranges without CLEAR: {got:?}, want {want_runs:?}"));
    }
    // A window of the region: bits relative to `first`, words past 64 pages.
    let window: Vec<u64> = written
        .iter()
        .copied()
        .filter(|p| (60..200).contains(p))
        .collect();
    expect_pages(
        "bitmap of pages 60..200",
        &collect(&dev, 60, 140, false)?,
        &window,
    )?;
    collects += 1;
    // CLEAR: exactly the pages written, then nothing.
    expect_pages(
        "bitmap with CLEAR",
        &collect(&dev, 0, PAGES, true)?,
        &written,
    )?;
    collects += 1;
    clearing += 1;
    reported += written.len() as u64;
    expect_pages("bitmap after CLEAR", &collect(&dev, 0, PAGES, true)?, &[])?;
    collects += 1;
    clearing += 1;
    if count(&dev)? != (0, 0) {
        return Err("count-only collect after CLEAR still finds dirty pages".into());
    }
    collects += 1;
    // Runs with CLEAR, then nothing.
    write_all(2);
    let got: Vec<(u64, u64)> = dev
        .ckpt_collect_ranges(0, PAGES, true)
        .map_err(|e| format!("ranges with CLEAR: {e}"))?
        .iter()
        .map(|r| (r.first, r.count))
        .collect();
    collects += 1;
    clearing += 1;
    reported += written.len() as u64;
    if got != want_runs {
        return Err(format!("ranges with CLEAR: {got:?}, want {want_runs:?}"));
    }
    let again = dev
        .ckpt_collect_ranges(0, PAGES, true)
        .map_err(|e| format!("ranges after CLEAR: {e}"))?;
    collects += 1;
    clearing += 1;
    if !again.is_empty() {
        return Err(format!("ranges after CLEAR: {again:?}, want none"));
    }
    // A clearing collect of a window clears only the window.
    write_all(3);
    let head: Vec<u64> = written.iter().copied().filter(|&p| p < 8).collect();
    let rest: Vec<u64> = written.iter().copied().filter(|&p| p >= 8).collect();
    expect_pages("CLEAR of pages 0..8", &collect(&dev, 0, 8, true)?, &head)?;
    expect_pages(
        "CLEAR after the window's",
        &collect(&dev, 0, PAGES, true)?,
        &rest,
    )?;
    collects += 2;
    clearing += 2;
    reported += written.len() as u64;
    // A write after a clearing collect is reported by the next.
    map.write_u64(42 * PAGE, 42);
    expect_pages(
        "a write after CLEAR",
        &collect(&dev, 0, PAGES, true)?,
        &[42],
    )?;
    collects += 1;
    clearing += 1;
    reported += 1;
    let s = stats(&dev)?;
    println!(
        "collects {} intervals {} dirty_reported {} dirty_unmapped {}",
        s.collects, s.intervals, s.dirty_reported, s.dirty_unmapped
    );
    if (s.collects, s.intervals, s.dirty_reported) != (collects, clearing, reported) {
        return Err(format!(
            "stats {s:?}, want collects {collects} intervals {clearing} dirty_reported {reported}"
        ));
    }
    Ok(Outcome::Pass)
}

/// What the checkpointer of [`ckpt_no_write_is_missed`] keeps.
struct Checkpointer<'a> {
    dev: &'a Device,
    pages: u64,
    /// The region as rebuilt from the copies of the reported pages.
    replica: Vec<u8>,
    /// Per page, the (increasing) numbers of the collects that reported it.
    reported: Vec<Vec<u32>>,
    /// Collects done; the next one is `collects + 1`.
    collects: u64,
    /// Pages reported (and copied).
    copied: u64,
    /// Set to `k` before collect `k` is called.
    epoch: &'a AtomicU64,
    /// Set to `k` after collect `k` returned.
    done: &'a AtomicU64,
}

impl Checkpointer<'_> {
    /// One checkpoint: a clearing collect, then a copy of the pages it reported.
    fn step(&mut self, never_written: impl Fn(u64) -> bool) -> Result<(), String> {
        let k = self.collects + 1;
        self.epoch.store(k, Ordering::SeqCst);
        let dirty = collect(self.dev, 0, self.pages, true)?;
        self.done.store(k, Ordering::SeqCst);
        self.collects = k;
        if let Some(p) = dirty.iter().find(|&&p| never_written(p)) {
            return Err(format!(
                "collect {k} reported page {p}, which nobody writes"
            ));
        }
        if dirty.is_empty() {
            return Ok(());
        }
        let data = self
            .dev
            .ckpt_copy(&dirty)
            .map_err(|e| format!("CKPT_COPY of {} pages after collect {k}: {e}", dirty.len()))?;
        if data.len() != dirty.len() * PAGE {
            return Err(format!(
                "CKPT_COPY of {} pages returned {} bytes",
                dirty.len(),
                data.len()
            ));
        }
        for (&p, page) in dirty.iter().zip(data.chunks_exact(PAGE)) {
            let at = p as usize * PAGE;
            self.replica[at..at + PAGE].copy_from_slice(page);
            self.reported[p as usize].push(k as u32);
        }
        self.copied += dirty.len() as u64;
        Ok(())
    }
}

/// What the writers of [`ckpt_no_write_is_missed`] share with the checkpointer.
#[derive(Clone, Copy)]
struct Shared<'a> {
    map: &'a CkptMap,
    pages: u64,
    writers: u64,
    /// Set to `k` before collect `k` is called.
    epoch: &'a AtomicU64,
    /// Set to `k` after collect `k` returned.
    done: &'a AtomicU64,
    stop: &'a AtomicBool,
    /// Pages the writers pick from: 0 for all, else the first `hot` (none of which
    /// is never written).
    hot: &'a AtomicU64,
}

/// One writer of [`ckpt_no_write_is_missed`]: writes a new value (its own id and a
/// sequence number) to a random word it owns of a random page until told to stop,
/// and logs `(page, done before the write, epoch after it)` of the first write to a
/// page after each collect (later writes with the same `done` are implied by it).
/// Returns the log and the number of writes.
fn writer(t: u64, sh: &Shared, never_written: impl Fn(u64) -> bool) -> (Vec<u64>, u64) {
    let Shared {
        map,
        pages,
        writers,
        epoch,
        done,
        stop,
        hot,
    } = *sh;
    const LOG_CAP: usize = 1 << 20;
    const FIELD: u64 = (1 << 24) - 1;
    let words_per_page = PAGE as u64 / 8;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut log = Vec::new();
    let mut last_done = vec![u64::MAX; pages as usize];
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && log.len() < LOG_CAP {
        let span = match hot.load(Ordering::Relaxed) {
            0 => pages,
            n => n,
        };
        let p = rng.next() % span;
        if never_written(p) {
            continue;
        }
        let word = (rng.next() % (words_per_page / writers)) * writers + t;
        seq += 1;
        let d = done.load(Ordering::SeqCst);
        map.write_u64((p * PAGE as u64 + word * 8) as usize, (t + 1) << 56 | seq);
        // The write is visible before `epoch` is read: a collect numbered above the
        // epoch read starts after the write.
        fence(Ordering::SeqCst);
        let e = epoch.load(Ordering::SeqCst);
        if e >= FIELD {
            break;
        }
        if last_done[p as usize] != d {
            last_done[p as usize] = d;
            log.push(p << 48 | d << 24 | e);
        }
    }
    (log, seq)
}

pub fn ckpt_no_write_is_missed(_: &crate::Options) -> TestResult {
    no_write_is_missed(abi::CKPT_START_SCAN, false)
}

/// [`ckpt_no_write_is_missed`] in the recording mode: every page a collect reports
/// is write-protected again while the writers run.
pub fn ckpt_record_no_write_is_missed(_: &crate::Options) -> TestResult {
    no_write_is_missed(abi::CKPT_START_RECORD, false)
}

/// [`ckpt_no_write_is_missed`] with the module picking the mode while the writers
/// alternate between the whole region and two of its 1024 pages (eight checkpoints
/// each), so that the region changes mode back and forth under them.
pub fn ckpt_mode_switch_no_write_is_missed(_: &crate::Options) -> TestResult {
    no_write_is_missed(0, true)
}

/// Writers on random pages and a checkpointer (collect, copy) racing them, the
/// tracking mode as `start_flags` asks; with `switching`, the writers' pages
/// alternate between all and two every eight checkpoints, and the region must have
/// changed mode at least twice.
fn no_write_is_missed(start_flags: u32, switching: bool) -> TestResult {
    // With `switching`, two pages of 1024 are calm (below the recording threshold).
    let pages: u64 = if switching { 1024 } else { 256 };
    const WRITERS: u64 = 4;
    const RUN: Duration = Duration::from_secs(2);
    const LIMIT: Duration = Duration::from_secs(30);
    const MIN_CHECKPOINTS: u64 = 50;
    const PHASE: u64 = 8;
    // Every 16th page is never written: it must never be reported.
    let never_written = |p: u64| p % 16 == 15;
    let (dev, map) = region(pages)?;
    start(&dev, start_flags)?;
    let (epoch, done) = (AtomicU64::new(0), AtomicU64::new(0));
    let stop = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let hot = AtomicU64::new(0);
    let shared = Shared {
        map: &map,
        pages,
        writers: WRITERS,
        epoch: &epoch,
        done: &done,
        stop: &stop,
        hot: &hot,
    };
    let mut cp = Checkpointer {
        dev: &dev,
        pages,
        replica: vec![0u8; pages as usize * PAGE],
        reported: vec![Vec::new(); pages as usize],
        collects: 0,
        copied: 0,
        epoch: &epoch,
        done: &done,
    };
    let (during, logs) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (shared, finished) = (&shared, &finished);
                s.spawn(move || {
                    let out = writer(t, shared, never_written);
                    finished.fetch_add(1, Ordering::SeqCst);
                    out
                })
            })
            .collect();
        // At least RUN and MIN_CHECKPOINTS (a slow guest), at most LIMIT.
        let started = Instant::now();
        let mut during = Ok(());
        while finished.load(Ordering::SeqCst) < WRITERS as usize
            && started.elapsed() < LIMIT
            && (started.elapsed() < RUN || cp.collects < MIN_CHECKPOINTS)
        {
            if switching {
                let calm = cp.collects / PHASE % 2 == 1;
                hot.store(if calm { 2 } else { 0 }, Ordering::SeqCst);
            }
            if let Err(e) = cp.step(never_written) {
                during = Err(e);
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
        let logs: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        (during, logs)
    });
    during?;
    let mut all = Vec::new();
    let mut writes = Vec::new();
    for (t, log) in logs.into_iter().enumerate() {
        let (log, n) = log.map_err(|_| format!("writer {t} panicked"))?;
        writes.push(n);
        all.push(log);
    }
    let during_collects = cp.collects;
    // The writers are stopped: one last checkpoint, after which nothing is dirty.
    cp.step(never_written)?;
    expect_pages(
        "a collect after the last checkpoint",
        &collect(&dev, 0, pages, true)?,
        &[],
    )?;
    println!(
        "{} writes ({:?} per writer), {during_collects} checkpoints while writing, {} pages copied, {} first writes logged",
        writes.iter().sum::<u64>(),
        writes,
        cp.copied,
        all.iter().map(Vec::len).sum::<usize>()
    );
    if during_collects < 10 || writes.contains(&0) {
        return Err(format!(
            "too little concurrency to test anything: {during_collects} checkpoints, writes {writes:?}"
        ));
    }
    // Every write was reported by a collect that ended after it started and began no
    // later than the first collect that started after it ended.
    let mut missed = Vec::new();
    for (t, log) in all.iter().enumerate() {
        for &entry in log {
            let (p, d, e) = (entry >> 48, entry >> 24 & 0xff_ffff, entry & 0xff_ffff);
            let r = &cp.reported[p as usize];
            let i = r.partition_point(|&c| u64::from(c) <= d);
            if r.get(i).is_none_or(|&c| u64::from(c) > e + 1) {
                missed.push((t, p, d, e));
            }
        }
    }
    if !missed.is_empty() {
        return Err(format!(
            "{} writes never reported; first (writer, page, collects done before, epoch after): {:?}",
            missed.len(),
            &missed[..missed.len().min(8)]
        ));
    }
    // The checkpointer's replica is the memory, byte for byte.
    let memory = map.to_vec();
    let differ: Vec<usize> = (0..pages as usize)
        .filter(|&p| memory[p * PAGE..(p + 1) * PAGE] != cp.replica[p * PAGE..(p + 1) * PAGE])
        .collect();
    if !differ.is_empty() {
        return Err(format!(
            "the replica built from the reported pages differs from memory in {} pages: {:?}",
            differ.len(),
            &differ[..differ.len().min(16)]
        ));
    }
    let s = stats(&dev)?;
    println!(
        "stats: collects {} intervals {} dirty_reported {} dirty_unmapped {} pages_copied {} pages_allocated {}",
        s.collects, s.intervals, s.dirty_reported, s.dirty_unmapped, s.pages_copied, s.pages_allocated
    );
    let clearing = cp.collects + 1;
    if s.intervals != clearing || s.dirty_reported != cp.copied || s.pages_copied != cp.copied {
        return Err(format!(
            "stats {s:?}, want intervals {clearing}, dirty_reported and pages_copied {}",
            cp.copied
        ));
    }
    println!(
        "mode {} fixed {} switches {} write_faults {} wp_pages {}",
        s.mode, s.mode_fixed, s.mode_switches, s.write_faults, s.wp_pages
    );
    let fixed = match start_flags {
        abi::CKPT_START_SCAN => Some(abi::CKPT_MODE_SCAN),
        abi::CKPT_START_RECORD => Some(abi::CKPT_MODE_RECORD),
        _ => None,
    };
    if let Some(mode) = fixed {
        if s.mode != mode || s.mode_fixed != 1 || s.mode_switches != 0 {
            return Err(format!("stats {s:?}: the mode was fixed to {mode}"));
        }
    }
    if start_flags == abi::CKPT_START_RECORD && (s.write_faults == 0 || s.wp_pages == 0) {
        return Err(format!("stats {s:?}: recording, yet no write was recorded"));
    }
    if switching && s.mode_switches < 2 {
        return Err(format!(
            "stats {s:?}: the writers changed between busy and calm every {PHASE} checkpoints, yet the region changed mode {} times",
            s.mode_switches
        ));
    }
    Ok(Outcome::Pass)
}

/// Writers and collects in lock-step (a barrier around each collect), so that the
/// pages written in each interval are known exactly: every collect must report
/// exactly them. Missed pages (false negatives) and extra ones (false positives)
/// are counted over all rounds and printed; both must be zero.
pub fn ckpt_false_positives_counted(_: &crate::Options) -> TestResult {
    false_positives_counted(0)
}

/// [`ckpt_false_positives_counted`] in the recording mode.
pub fn ckpt_record_false_positives_counted(_: &crate::Options) -> TestResult {
    false_positives_counted(abi::CKPT_START_RECORD)
}

fn false_positives_counted(start_flags: u32) -> TestResult {
    const PAGES: u64 = 256;
    const THREADS: usize = 4;
    const ROUNDS: usize = 40;
    let (dev, map) = region(PAGES)?;
    start(&dev, start_flags)?;
    collect(&dev, 0, PAGES, true)?;
    let barrier = std::sync::Barrier::new(THREADS + 1);
    let written: Vec<std::sync::Mutex<Vec<u64>>> = (0..THREADS)
        .map(|_| std::sync::Mutex::new(Vec::new()))
        .collect();
    let (mut fneg, mut fpos, mut reported) = (0usize, 0usize, 0usize);
    let mut failed = None;
    std::thread::scope(|s| -> Result<(), String> {
        for (t, log) in written.iter().enumerate() {
            let (map, barrier) = (&map, &barrier);
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9 + t as u64);
                for _ in 0..ROUNDS {
                    let mut mine = Vec::new();
                    for _ in 0..rng.next() % 24 {
                        let p = rng.next() % PAGES;
                        // Each thread owns one word of every page.
                        map.write_u64(p as usize * PAGE + t * 8, rng.next() | 1);
                        mine.push(p);
                    }
                    *log.lock().unwrap_or_else(|e| e.into_inner()) = mine;
                    barrier.wait(); // writes done
                    barrier.wait(); // collect done
                }
            });
        }
        for round in 0..ROUNDS {
            barrier.wait();
            let got = collect(&dev, 0, PAGES, true);
            let mut want: Vec<u64> = written
                .iter()
                .flat_map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .collect();
            barrier.wait();
            // On error, keep meeting the writers at the barriers until they finish.
            let got = match got {
                Ok(g) => g,
                Err(e) => {
                    failed.get_or_insert(format!("round {round}: {e}"));
                    continue;
                }
            };
            want.sort_unstable();
            want.dedup();
            fneg += want
                .iter()
                .filter(|p| got.binary_search(p).is_err())
                .count();
            fpos += got
                .iter()
                .filter(|p| want.binary_search(p).is_err())
                .count();
            reported += got.len();
        }
        failed.map_or(Ok(()), Err)
    })?;
    println!(
        "{ROUNDS} rounds of {THREADS} writers: {reported} pages reported, {fneg} false negatives, {fpos} false positives"
    );
    if fneg != 0 || fpos != 0 {
        return Err(format!(
            "{fneg} written pages not reported, {fpos} reported pages not written"
        ));
    }
    Ok(Outcome::Pass)
}

pub fn ckpt_written_then_unmapped_is_reported(_: &crate::Options) -> TestResult {
    written_then_unmapped_is_reported(0)
}

/// [`ckpt_written_then_unmapped_is_reported`] in the recording mode.
pub fn ckpt_record_written_then_unmapped_is_reported(_: &crate::Options) -> TestResult {
    written_then_unmapped_is_reported(abi::CKPT_START_RECORD)
}

fn written_then_unmapped_is_reported(start_flags: u32) -> TestResult {
    let (dev, map, off) = region_at(16)?;
    start(&dev, start_flags)?;
    expect_pages("before any write", &collect(&dev, 0, 16, true)?, &[])?;
    // Page 3 through a mapping that then goes; page 5 through one that stays.
    let page3 = CkptMap::new(&dev, off, 16 * PAGE).map_err(|e| format!("second mmap: {e}"))?;
    page3.write_u64(3 * PAGE + 16, 0x3333);
    page3.unmap().map_err(|e| format!("munmap: {e}"))?;
    map.write_u64(5 * PAGE, 0x5555);
    expect_pages("after munmap", &collect(&dev, 0, 16, true)?, &[3, 5])?;
    let s = stats(&dev)?;
    println!(
        "dirty_reported {} dirty_unmapped {}",
        s.dirty_reported, s.dirty_unmapped
    );
    // Only the scan finds dirt in `PG_dirty`; the recording mode had page 3 pending
    // since its first write.
    let scanning = s.mode == abi::CKPT_MODE_SCAN;
    if scanning && (s.dirty_unmapped < 1 || s.dirty_unmapped > s.dirty_reported) {
        return Err(format!(
            "stats {s:?}: page 3 was dirty after its mapping went, want dirty_unmapped >= 1"
        ));
    }
    // The write outlived its mapping.
    if map.read_u64(3 * PAGE + 16) != 0x3333 {
        return Err("the write through the unmapped mapping is lost".into());
    }
    expect_pages("the next collect", &collect(&dev, 0, 16, true)?, &[])?;
    // The last mapping goes too, the file stays: still reported.
    map.write_u64(9 * PAGE, 0x9999);
    map.unmap().map_err(|e| format!("munmap: {e}"))?;
    expect_pages("with no mapping left", &collect(&dev, 0, 16, true)?, &[9])?;
    let data = dev.ckpt_copy(&[9]).map_err(|e| format!("CKPT_COPY: {e}"))?;
    if data[..8] != 0x9999u64.to_ne_bytes() {
        return Err("page 9 lost its contents when the last mapping went".into());
    }
    Ok(Outcome::Pass)
}

/// Waits for `pid` and fails unless it exited with status 0.
fn wait_child(pid: libc::pid_t) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: waitpid writes the status to a valid `c_int`.
    let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
    if ret != pid {
        return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("the child failed: wait status {status:#x}"));
    }
    Ok(())
}

pub fn ckpt_fork_child_writes_are_reported(_: &crate::Options) -> TestResult {
    fork_child_writes_are_reported(0)
}

/// [`ckpt_fork_child_writes_are_reported`] in the recording mode, the child's pages
/// written by the parent first (so the child inherits writable entries that the
/// collect must write-protect in both processes).
pub fn ckpt_record_fork_child_writes_are_reported(_: &crate::Options) -> TestResult {
    fork_child_writes_are_reported(abi::CKPT_START_RECORD)
}

fn fork_child_writes_are_reported(start_flags: u32) -> TestResult {
    let (dev, map) = region(16)?;
    // The parent maps every page too (reads; in the recording mode, writes), then
    // starts clean.
    for p in 0..16 {
        if start_flags == abi::CKPT_START_RECORD {
            map.write_u64(p * PAGE + 48, 1);
        } else {
            map.read_u64(p * PAGE);
        }
    }
    start(&dev, start_flags)?;
    let (parent_end, child_end) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    // SAFETY: this process is single-threaded here (each case runs in a process of its
    // own, and this one has started no thread), so the child may run any code; it
    // only stores to the mapping, reads and writes a socket and calls `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // The child: page 7 while the parent waits, then page 9 and exit.
        map.write_u64(7 * PAGE + 56, 0x77);
        let mut byte = [0u8];
        let ok = (&child_end).write_all(b"7").is_ok() && (&child_end).read_exact(&mut byte).is_ok();
        map.write_u64(9 * PAGE + 8, 0x99);
        // SAFETY: `_exit` ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    drop(child_end);
    let mut byte = [0u8];
    let synced = (&parent_end).read_exact(&mut byte);
    let first = synced
        .map_err(|e| format!("waiting for the child: {e}"))
        .and_then(|()| collect(&dev, 0, 16, true));
    // Let the child go on (and exit) whatever happened here.
    (&parent_end).write_all(b"9").ok();
    drop(parent_end);
    let waited = wait_child(pid);
    expect_pages("the child's write, child alive", &first?, &[7])?;
    waited?;
    expect_pages(
        "the child's write before it exited",
        &collect(&dev, 0, 16, true)?,
        &[9],
    )?;
    if map.read_u64(7 * PAGE + 56) != 0x77 || map.read_u64(9 * PAGE + 8) != 0x99 {
        return Err("the child's writes are not in the shared mapping".into());
    }
    Ok(Outcome::Pass)
}

pub fn ckpt_history_tracks_intervals(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 8;
    let (dev, map) = region(PAGES)?;
    let history = |first, count| {
        dev.ckpt_history(first, count)
            .map_err(|e| format!("CKPT_HISTORY {first}+{count}: {e}"))
    };
    let expect = |what: &str, got: Vec<u64>, want: &[u64]| {
        if got == want {
            return Ok(());
        }
        let bits = |v: &[u64]| {
            v.iter()
                .map(|h| format!("{h:#b}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(format!(
            "history {what}: [{}], want [{}]",
            bits(&got),
            bits(want)
        ))
    };
    // Written before START: forgotten, history and dirty state alike.
    map.write_u64(6 * PAGE, 6);
    collect(&dev, 0, PAGES, true)?;
    map.write_u64(4 * PAGE, 4);
    dev.ckpt_start().map_err(|e| format!("CKPT_START: {e}"))?;
    expect("after START", history(0, PAGES)?, &[0; 8])?;
    expect_pages("collect after START", &collect(&dev, 0, PAGES, false)?, &[])?;
    // Interval A: pages 1 and 2. Interval B: page 2.
    map.write_u64(PAGE, 1);
    map.write_u64(2 * PAGE, 2);
    expect_pages("interval A", &collect(&dev, 0, PAGES, true)?, &[1, 2])?;
    map.write_u64(2 * PAGE, 3);
    // A collect without CLEAR does not end the interval.
    collect(&dev, 0, PAGES, false)?;
    expect_pages("interval B", &collect(&dev, 0, PAGES, true)?, &[2])?;
    expect(
        "after A and B",
        history(0, PAGES)?,
        &[0, 0b10, 0b11, 0, 0, 0, 0, 0],
    )?;
    expect("of pages 1..4", history(1, 3)?, &[0b10, 0b11, 0])?;
    // A write in the current interval is not history yet.
    map.write_u64(3 * PAGE, 3);
    expect(
        "with page 3 written since",
        history(0, PAGES)?,
        &[0, 0b10, 0b11, 0, 0, 0, 0, 0],
    )?;
    // A clearing collect of pages 2..4 ends an interval for those pages only.
    expect_pages("window 2..4", &collect(&dev, 2, 2, true)?, &[3])?;
    expect(
        "after the window",
        history(0, PAGES)?,
        &[0, 0b10, 0b110, 0b1, 0, 0, 0, 0],
    )?;
    // Refused arguments.
    let mut short = [0u64; 2];
    expect_errno(
        "buffer of 2 for 3 pages",
        dev.ckpt_history_into(0, 3, &mut short),
        libc::ENOSPC,
    )?;
    for (first, count) in [(0, 0), (0, PAGES + 1), (PAGES, 1), (u64::MAX, 2)] {
        let mut buf = [0u64; 16];
        expect_errno(
            &format!("CKPT_HISTORY {first}+{count}"),
            dev.ckpt_history_into(first, count, &mut buf),
            libc::EINVAL,
        )?;
    }
    let bad = abi::CkptHistory {
        size: abi::CkptHistory::SIZE as u32,
        flags: 0,
        first: 0,
        count: 1,
        buf: 8,
        buf_len: 8,
    };
    expect_errno(
        "CKPT_HISTORY into address 8",
        dev.call(abi::IOC_CKPT_HISTORY, &bad),
        libc::EFAULT,
    )?;
    Ok(Outcome::Pass)
}

pub fn ckpt_copy_returns_contents(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 16;
    let (dev, map) = region(PAGES)?;
    let (p0, p5) = (pattern(0, 1), pattern(5, 2));
    map.write_bytes(0, &p0);
    map.write_bytes(5 * PAGE, &p5);
    let order = [5, 0, 5, 3];
    let data = dev
        .ckpt_copy(&order)
        .map_err(|e| format!("CKPT_COPY {order:?}: {e}"))?;
    let want: Vec<u8> = [&p5[..], &p0, &p5, &[0u8; PAGE]].concat();
    if data.len() != want.len() {
        return Err(format!(
            "CKPT_COPY {order:?}: {} bytes, want {}",
            data.len(),
            want.len()
        ));
    }
    if let Some(i) =
        (0..order.len()).find(|&i| data[i * PAGE..(i + 1) * PAGE] != want[i * PAGE..(i + 1) * PAGE])
    {
        return Err(format!(
            "CKPT_COPY {order:?}: entry {i} (page {}) differs",
            order[i]
        ));
    }
    // Copying does not clear the dirty state.
    expect_pages("after CKPT_COPY", &collect(&dev, 0, PAGES, false)?, &[0, 5])?;
    // Refused: nothing written to the buffer.
    let refused: [(&str, Vec<u64>, usize, i32); 5] = [
        ("index past the end", vec![PAGES], PAGE, libc::EINVAL),
        (
            "second index past the end",
            vec![0, PAGES],
            2 * PAGE,
            libc::EINVAL,
        ),
        ("index u64::MAX", vec![u64::MAX], PAGE, libc::EINVAL),
        (
            "buffer one byte short",
            vec![0, 5],
            2 * PAGE - 1,
            libc::ENOSPC,
        ),
        ("no buffer", vec![0], 0, libc::ENOSPC),
    ];
    for (what, pages, len, errno) in refused {
        let mut buf = vec![0xa5u8; len];
        expect_errno(what, dev.ckpt_copy_into(&pages, &mut buf), errno)?;
        if buf.iter().any(|&b| b != 0xa5) {
            return Err(format!(
                "CKPT_COPY refused ({what}) but wrote to the buffer"
            ));
        }
    }
    let mut buf = vec![0u8; PAGE];
    expect_errno("no pages", dev.ckpt_copy_into(&[], &mut buf), libc::EINVAL)?;
    let req = |pages: u64, count: u64, buf: &mut [u8]| abi::CkptCopy {
        size: abi::CkptCopy::SIZE as u32,
        flags: 0,
        pages,
        count,
        buf: buf.as_mut_ptr() as u64,
        buf_len: buf.len() as u64,
        bytes: 0,
    };
    expect_errno(
        "page array at address 8",
        dev.call(abi::IOC_CKPT_COPY, &req(8, 1, &mut buf)),
        libc::EFAULT,
    )?;
    let s = stats(&dev)?;
    if s.pages_copied != order.len() as u64 {
        return Err(format!(
            "pages_copied {}, want {}",
            s.pages_copied,
            order.len()
        ));
    }
    Ok(Outcome::Pass)
}

/// Read-only memory for [`ckpt_bad_collect_args`]: the kernel cannot write to it.
static READ_ONLY: [u64; 8] = [0x5a5a_5a5a_5a5a_5a5a; 8];

pub fn ckpt_bad_collect_args(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 32;
    {
        let dev = open()?;
        expect_errno(
            "count-only collect with no region",
            dev.ckpt_collect_count(0, 1),
            libc::EINVAL,
        )?;
        expect_errno(
            "collect with no region",
            dev.ckpt_collect(0, 1, true),
            libc::EINVAL,
        )?;
    }
    let (dev, map) = region(PAGES)?;
    let written = [2u64, 3, 10];
    for p in written {
        map.write_u64(p as usize * PAGE, p);
    }
    let clear = abi::CKPT_COLLECT_CLEAR;
    let ranges = abi::CKPT_COLLECT_RANGES;
    let mut buf = vec![0u8; 64];
    for (first, count) in [
        (0, 0),
        (0, PAGES + 1),
        (31, 2),
        (PAGES, 1),
        (u64::MAX, 2),
        (1, u64::MAX),
    ] {
        for flags in [0, clear, ranges | clear] {
            expect_errno(
                &format!("collect {first}+{count} flags {flags:#x}"),
                dev.ckpt_collect_into(flags, first, count, &mut buf),
                libc::EINVAL,
            )?;
        }
    }
    for flags in [1 << 2, 1 << 31, clear | 1 << 5] {
        expect_errno(
            &format!("unknown flags {flags:#x}"),
            dev.ckpt_collect_into(flags, 0, PAGES, &mut buf),
            libc::EINVAL,
        )?;
    }
    for flags in [clear, clear | ranges] {
        expect_errno(
            &format!("flags {flags:#x} with no buffer"),
            dev.ckpt_collect_into(flags, 0, PAGES, &mut []),
            libc::EINVAL,
        )?;
    }
    // Too small: a bitmap of 32 pages needs 8 bytes, 2 runs need 32.
    let mut small = [0u8; 7];
    expect_errno(
        "bitmap into 7 bytes",
        dev.ckpt_collect_into(clear, 0, PAGES, &mut small),
        libc::ENOSPC,
    )?;
    let mut one_run = [0u8; 16];
    expect_errno(
        "2 runs into room for 1",
        dev.ckpt_collect_into(clear | ranges, 0, PAGES, &mut one_run),
        libc::ENOSPC,
    )?;
    // Buffers the kernel cannot write to.
    let bad: [(&str, u64, u64); 3] = [
        ("address 8", 8, 64),
        ("read-only memory", READ_ONLY.as_ptr() as u64, 64),
        ("a kernel address", 0xffff_8880_0000_0000, 64),
    ];
    for (what, addr, len) in bad {
        for flags in [clear, clear | ranges] {
            let mut req = abi::CkptCollect {
                size: abi::CkptCollect::SIZE as u32,
                flags,
                first: 0,
                count: PAGES,
                buf: addr,
                buf_len: len,
                ..Default::default()
            };
            // SAFETY: none of these addresses is writable memory of this process.
            let res = unsafe { dev.ckpt_collect_raw(&mut req) };
            expect_errno(
                &format!("collect flags {flags:#x} into {what}"),
                res,
                libc::EFAULT,
            )?;
        }
    }
    if READ_ONLY.iter().any(|&w| w != 0x5a5a_5a5a_5a5a_5a5a) {
        return Err("the kernel wrote to read-only memory".into());
    }
    // Nothing was cleared by any of it, and the refusals were not counted.
    expect_pages(
        "after the refused collects",
        &collect(&dev, 0, PAGES, true)?,
        &written,
    )?;
    let s = stats(&dev)?;
    if (s.collects, s.intervals, s.dirty_reported) != (1, 1, written.len() as u64) {
        return Err(format!(
            "stats {s:?}: want one collect, one interval, {} pages reported",
            written.len()
        ));
    }
    Ok(Outcome::Pass)
}

pub fn ckpt_close_with_mapping_alive(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 32;
    let (dev, map) = region(PAGES)?;
    for p in 0..PAGES as usize {
        map.write_u64(p * PAGE, p as u64);
    }
    drop(dev);
    // The file is closed; the mapping keeps the region.
    for round in 1..=3u64 {
        for p in 0..PAGES as usize {
            map.write_bytes(p * PAGE, &pattern(p as u64, round as u8));
            map.write_u64(p * PAGE + PAGE - 8, round);
        }
        for p in 0..PAGES as usize {
            let mut page = vec![0u8; PAGE];
            map.read_bytes(p * PAGE, &mut page);
            let mut want = pattern(p as u64, round as u8);
            want[PAGE - 8..].copy_from_slice(&round.to_ne_bytes());
            if page != want {
                return Err(format!(
                    "round {round}: page {p} reads back wrong after close"
                ));
            }
        }
    }
    map.unmap()
        .map_err(|e| format!("munmap after close: {e}"))?;
    // A new file gets a new, zeroed region.
    let (dev, map) = region(PAGES)?;
    if map.to_vec().iter().any(|&b| b != 0) {
        return Err("a new region shows data of a closed one".into());
    }
    expect_pages("a new region", &collect(&dev, 0, PAGES, false)?, &[])?;
    Ok(Outcome::Pass)
}

/// Applies the records of one `CKPT_COPY_DIFF` to `replica`; returns the pages
/// that came as diffs.
pub(crate) fn apply_records(
    replica: &mut [u8],
    records: &[u8],
    p: ckpt_diff::Params,
) -> Result<Vec<u64>, String> {
    let mut diffs = Vec::new();
    for rec in ckpt_diff::records(p, records) {
        let rec = rec.map_err(|e| format!("malformed record stream from the module: {e:?}"))?;
        let page = rec.page() as usize;
        let dst = replica
            .get_mut(page * PAGE..(page + 1) * PAGE)
            .ok_or_else(|| format!("record for page {page}, past the region"))?;
        rec.apply(p, dst)
            .map_err(|e| format!("record for page {page}: {e:?}"))?;
        if matches!(rec, ckpt_diff::Record::Diff { .. }) {
            diffs.push(page as u64);
        }
    }
    Ok(diffs)
}

/// Collects and clears, copies the dirty pages as records and applies them to
/// `replica`; returns (dirty pages, pages that came as diffs, record bytes).
fn diff_checkpoint(
    dev: &Device,
    pages: u64,
    replica: &mut [u8],
    p: ckpt_diff::Params,
) -> Result<(Vec<u64>, Vec<u64>, usize), String> {
    let dirty = collect(dev, 0, pages, true)?;
    let mut diffed = Vec::new();
    let mut bytes = 0;
    for batch in dirty.chunks(abi::CKPT_COPY_DIFF_MAX_PAGES as usize) {
        let (records, n) = dev
            .ckpt_copy_diff(batch, p.segment() as u32, p.max_changed)
            .map_err(|e| format!("CKPT_COPY_DIFF of {} pages: {e}", batch.len()))?;
        let got = apply_records(replica, &records, p)?;
        if got.len() as u64 != n {
            return Err(format!("diffed {n} pages, but {} diff records", got.len()));
        }
        bytes += records.len();
        diffed.extend(got);
    }
    Ok((dirty, diffed, bytes))
}

pub fn ckpt_diffs_rebuild_the_replica(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 32;
    let p = ckpt_diff::Params::new(256, 4).ok_or("bad params")?;
    let (dev, map) = region(PAGES)?;
    let mut replica = vec![0u8; PAGES as usize * PAGE];
    let in_set = |page: u64| page < 16;
    dev.ckpt_diff_set(&(0..16).collect::<Vec<_>>(), false)
        .map_err(|e| format!("CKPT_DIFF_SET: {e}"))?;
    for page in 0..PAGES {
        map.write_bytes(page as usize * PAGE, &pattern(page, 1));
    }
    // The first copy of every page is whole: no version yet.
    let (dirty, diffed, _) = diff_checkpoint(&dev, PAGES, &mut replica, p)?;
    if dirty.len() as u64 != PAGES || !diffed.is_empty() {
        return Err(format!(
            "first checkpoint: {} dirty, diffed {diffed:?}; want {PAGES} and none",
            dirty.len()
        ));
    }
    let mut rng = Rng(0x5eed);
    let (mut total_diffed, mut record_bytes, mut full_bytes) = (0usize, 0usize, 0usize);
    for round in 0..20u64 {
        for _ in 0..6 {
            let page = rng.next() % PAGES;
            if rng.next().is_multiple_of(4) {
                // A big change: every segment.
                map.write_bytes(page as usize * PAGE, &pattern(page, round as u8 + 2));
            } else {
                // A small change: one 8-byte word.
                let word = rng.next() % (PAGE as u64 / 8);
                map.write_u64(page as usize * PAGE + word as usize * 8, rng.next());
            }
        }
        let (dirty, diffed, bytes) = diff_checkpoint(&dev, PAGES, &mut replica, p)?;
        if let Some(out) = diffed.iter().find(|&&page| !in_set(page)) {
            return Err(format!(
                "page {out} is not in the diff set but came as a diff"
            ));
        }
        total_diffed += diffed.len();
        record_bytes += bytes;
        full_bytes += dirty.len() * (PAGE + 16);
        if map.to_vec() != replica {
            return Err(format!(
                "after round {round} the replica differs from memory"
            ));
        }
    }
    println!(
        "20 rounds: {total_diffed} pages as diffs, {record_bytes} record bytes vs {full_bytes} for whole pages"
    );
    if total_diffed == 0 || record_bytes >= full_bytes {
        return Err("small changes in the diff set never came as diffs".into());
    }

    // A failed copy advances no version: the next diffs still apply to the replica.
    let page = 3u64;
    map.write_u64(page as usize * PAGE, 0xfeed);
    let bad = abi::CkptCopyDiff {
        size: abi::CkptCopyDiff::SIZE as u32,
        pages: &page as *const u64 as u64,
        count: 1,
        buf: 8,
        buf_len: ckpt_diff::MAX_RECORD as u64,
        segment: 256,
        max_changed: 4,
        ..Default::default()
    };
    expect_errno(
        "COPY_DIFF into an unmapped buffer",
        dev.call(abi::IOC_CKPT_COPY_DIFF, &bad),
        libc::EFAULT,
    )?;
    map.write_u64(page as usize * PAGE + 8, 0xbeef);
    let (_, diffed, _) = diff_checkpoint(&dev, PAGES, &mut replica, p)?;
    if diffed != [page] || map.to_vec() != replica {
        return Err(format!(
            "after a failed copy: diffed {diffed:?}, replica equal: {}",
            map.to_vec() == replica
        ));
    }

    // REMOVE takes pages out and drops only their versions: page 1 goes whole,
    // page 0 stays a diff. REMOVE with RESET means nothing.
    dev.ckpt_diff_set(&[0, 1], false)
        .map_err(|e| format!("CKPT_DIFF_SET: {e}"))?;
    map.write_u64(0, 2);
    map.write_u64(PAGE, 2);
    let (_, before, _) = diff_checkpoint(&dev, PAGES, &mut replica, p)?;
    dev.ckpt_diff_remove(&[1])
        .map_err(|e| format!("CKPT_DIFF_SET remove: {e}"))?;
    map.write_u64(0, 3);
    map.write_u64(PAGE, 3);
    let (_, diffed, _) = diff_checkpoint(&dev, PAGES, &mut replica, p)?;
    if diffed != [0] || map.to_vec() != replica {
        return Err(format!("after REMOVE of page 1: diffed {diffed:?}"));
    }
    let remove_diffed = before.len() + diffed.len();
    let both = abi::CkptDiffSet {
        size: abi::CkptDiffSet::SIZE as u32,
        flags: abi::CKPT_DIFF_SET_RESET | abi::CKPT_DIFF_SET_REMOVE,
        ..Default::default()
    };
    expect_errno(
        "DIFF_SET RESET|REMOVE",
        dev.call(abi::IOC_CKPT_DIFF_SET, &both),
        libc::EINVAL,
    )?;

    // RESET empties the set: the next copy is whole.
    dev.ckpt_diff_set(&[], true)
        .map_err(|e| format!("CKPT_DIFF_SET reset: {e}"))?;
    map.write_u64(0, 1);
    let (_, diffed, _) = diff_checkpoint(&dev, PAGES, &mut replica, p)?;
    if !diffed.is_empty() || map.to_vec() != replica {
        return Err(format!("after RESET: diffed {diffed:?}"));
    }

    // Refused arguments.
    let one = [0u64];
    expect_errno("segment 32", dev.ckpt_copy_diff(&one, 32, 4), libc::EINVAL)?;
    expect_errno("segment 96", dev.ckpt_copy_diff(&one, 96, 4), libc::EINVAL)?;
    expect_errno("no pages", dev.ckpt_copy_diff(&[], 256, 4), libc::EINVAL)?;
    expect_errno(
        "a repeated page",
        dev.ckpt_copy_diff(&[1, 2, 1], 256, 4),
        libc::EINVAL,
    )?;
    expect_errno(
        "a page past the end",
        dev.ckpt_copy_diff(&[PAGES], 256, 4),
        libc::EINVAL,
    )?;
    expect_errno(
        "DIFF_SET past the end",
        dev.ckpt_diff_set(&[PAGES], false),
        libc::EINVAL,
    )?;
    let mut small = vec![0u8; 100];
    let short = abi::CkptCopyDiff {
        size: abi::CkptCopyDiff::SIZE as u32,
        pages: one.as_ptr() as u64,
        count: 1,
        buf: small.as_mut_ptr() as u64,
        buf_len: small.len() as u64,
        segment: 256,
        max_changed: 4,
        ..Default::default()
    };
    expect_errno(
        "a buffer under one record",
        dev.call(abi::IOC_CKPT_COPY_DIFF, &short),
        libc::ENOSPC,
    )?;
    let s = stats(&dev)?;
    println!(
        "stats: pages_copied {} pages_diffed {} record_bytes {}",
        s.pages_copied, s.pages_diffed, s.record_bytes
    );
    if s.pages_diffed != (total_diffed + remove_diffed) as u64 + 1 {
        return Err(format!(
            "stats.pages_diffed {} want {}",
            s.pages_diffed,
            total_diffed + remove_diffed + 1
        ));
    }
    Ok(Outcome::Pass)
}

/// `ckpt_copy_diff_fault_keeps_the_versions_true`: a `COPY_DIFF` whose buffer faults —
/// at its first byte, or after the records of the diff set's pages were copied out
/// and while a whole page is — fails with `EFAULT`, and the caller, who got no
/// records, can copy the same pages again and rebuild its replica exactly: the failed
/// call left no page's version ahead of what the caller holds.
pub fn ckpt_copy_diff_fault_keeps_the_versions_true(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 8;
    let p = ckpt_diff::Params::new(256, 4).ok_or("bad params")?;
    let (dev, map) = region(PAGES)?;
    let mut replica = vec![0u8; PAGES as usize * PAGE];
    for i in 0..PAGES as usize {
        map.write_u64(i * PAGE + 64, i as u64 + 1);
    }
    diff_checkpoint(&dev, PAGES, &mut replica, p)?;
    // Pages 0-3 diffed from here on, each with a version.
    dev.ckpt_diff_set(&[0, 1, 2, 3], false)
        .map_err(|e| format!("CKPT_DIFF_SET: {e}"))?;
    for i in 0..PAGES as usize {
        map.write_u64(i * PAGE + 128, 7);
    }
    diff_checkpoint(&dev, PAGES, &mut replica, p)?;
    if map.to_vec() != replica {
        return Err("the replica differs before any fault".into());
    }
    let len = PAGES as usize * ckpt_diff::MAX_RECORD;
    let buf = CkptMap::anonymous(len + PAGE).map_err(|e| format!("mmap: {e}"))?;
    // (bytes readable before the fault, what it interrupts)
    for (open_bytes, what) in [(0, "the first record"), (PAGE, "page 4, whole")] {
        for i in 0..PAGES as usize {
            map.write_u64(i * PAGE + 256, open_bytes as u64 + 11);
        }
        let dirty = collect(&dev, 0, PAGES, true)?;
        if dirty.len() != PAGES as usize {
            return Err(format!("{what}: dirty {dirty:?}"));
        }
        // SAFETY: protects pages of a mapping this test owns; nothing else uses it.
        let ret = unsafe {
            libc::mprotect(
                (buf.addr() as usize + open_bytes) as *mut libc::c_void,
                len + PAGE - open_bytes,
                libc::PROT_NONE,
            )
        };
        if ret != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
        let req = abi::CkptCopyDiff {
            size: abi::CkptCopyDiff::SIZE as u32,
            pages: dirty.as_ptr() as u64,
            count: dirty.len() as u64,
            buf: buf.addr(),
            buf_len: len as u64,
            segment: 256,
            max_changed: 4,
            ..Default::default()
        };
        expect_errno(what, dev.call(abi::IOC_CKPT_COPY_DIFF, &req), libc::EFAULT)?;
        // SAFETY: as above, back to read-write.
        let ret = unsafe {
            libc::mprotect(
                buf.addr() as *mut libc::c_void,
                len + PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if ret != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
        let (records, _) = dev
            .ckpt_copy_diff(&dirty, 256, 4)
            .map_err(|e| format!("{what}: COPY_DIFF again: {e}"))?;
        apply_records(&mut replica, &records, p)?;
        if map.to_vec() != replica {
            return Err(format!(
                "after a fault at {what}, the copy again does not rebuild the memory"
            ));
        }
    }
    Ok(Outcome::Pass)
}

/// The baseline for memory that is not a memkit region: soft-dirty bits of another
/// process, read from its pagemap (entries and `PAGEMAP_SCAN`), contents copied with
/// `process_vm_readv` (`memkit::track`).
pub fn ckpt_baseline_soft_dirty_of_another_process(_: &crate::Options) -> TestResult {
    const PAGES: usize = 32;
    // SAFETY: a new private anonymous mapping; no other reference to it exists.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGES * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    let addr = base as u64;
    let (parent_end, child_end) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    // SAFETY: this process is single-threaded here (each case runs in a process of its
    // own), so the child may run any code; it stores to its copy of the mapping,
    // uses a socket and calls `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let page = |p: usize| (addr as usize + p * PAGE) as *mut u64;
        // Every page present, then wait for the parent to clear the bits.
        for p in 0..PAGES {
            // SAFETY: inside the child's private copy of the mapping.
            unsafe { page(p).write_volatile(1) };
        }
        let mut byte = [0u8];
        let mut ok =
            (&child_end).write_all(b"r").is_ok() && (&child_end).read_exact(&mut byte).is_ok();
        for p in [1, 5, 6, 7, 20] {
            // SAFETY: as above.
            unsafe { page(p).add(3).write_volatile(0x1000 + p as u64) };
        }
        ok &= (&child_end).write_all(b"w").is_ok() && (&child_end).read_exact(&mut byte).is_ok();
        // SAFETY: `_exit` ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    drop(child_end);
    let result = (|| -> Result<(), String> {
        let mut byte = [0u8];
        (&parent_end)
            .read_exact(&mut byte)
            .map_err(|e| format!("waiting for the child: {e}"))?;
        let t =
            memkit::track::SoftDirty::open(pid).map_err(|e| format!("pagemap of {pid}: {e}"))?;
        t.clear().map_err(|e| format!("clear_refs: {e}"))?;
        let end = addr + (PAGES * PAGE) as u64;
        let after_clear = t
            .dirty_pagemap(addr, end)
            .map_err(|e| format!("pagemap: {e}"))?;
        if !after_clear.is_empty() {
            return Err(format!(
                "{} pages soft-dirty right after clear_refs",
                after_clear.len()
            ));
        }
        (&parent_end)
            .write_all(b"g")
            .and_then(|()| (&parent_end).read_exact(&mut byte))
            .map_err(|e| format!("letting the child write: {e}"))?;
        let want: Vec<u64> = [1u64, 5, 6, 7, 20]
            .iter()
            .map(|p| addr + p * PAGE as u64)
            .collect();
        let from_entries = t
            .dirty_pagemap(addr, end)
            .map_err(|e| format!("pagemap: {e}"))?;
        if from_entries != want {
            return Err(format!(
                "pagemap soft-dirty pages {from_entries:x?}, want {want:x?}"
            ));
        }
        let runs = t
            .dirty_scan(addr, end)
            .map_err(|e| format!("PAGEMAP_SCAN: {e}"))?;
        let p = |n: u64| addr + n * PAGE as u64;
        let want_runs = [(p(1), p(2)), (p(5), p(8)), (p(20), p(21))];
        if runs != want_runs {
            return Err(format!("PAGEMAP_SCAN runs {runs:x?}, want {want_runs:x?}"));
        }
        let mut word = [0u8; 8];
        t.read(p(6) + 24, &mut word)
            .map_err(|e| format!("process_vm_readv: {e}"))?;
        if u64::from_ne_bytes(word) != 0x1006 {
            return Err(format!(
                "process_vm_readv read {:#x}, want 0x1006",
                u64::from_ne_bytes(word)
            ));
        }
        println!(
            "soft-dirty of pid {pid}: {} pages, {} runs",
            from_entries.len(),
            runs.len()
        );
        Ok(())
    })();
    (&parent_end).write_all(b"x").ok();
    drop(parent_end);
    let waited = wait_child(pid);
    // SAFETY: the parent's own mapping, unused from here on.
    unsafe { libc::munmap(base, PAGES * PAGE) };
    result?;
    waited?;
    Ok(Outcome::Pass)
}

pub fn ckpt_kernel_writes_are_reported(_: &crate::Options) -> TestResult {
    kernel_writes_are_reported(0)
}

/// [`ckpt_kernel_writes_are_reported`] in the recording mode, where each of those
/// writes meets a write-protected page.
pub fn ckpt_record_kernel_writes_are_reported(_: &crate::Options) -> TestResult {
    kernel_writes_are_reported(abi::CKPT_START_RECORD)
}

/// Writes the kernel makes into the region for this process, after a collect:
/// `process_vm_writev` (through a `FOLL_PIN` pin), `/proc/self/mem` (through
/// `get_user_pages` with `FOLL_FORCE`) and `read` from a pipe (`copy_to_user`). Each
/// is reported by the next collect, twice in a row.
fn kernel_writes_are_reported(start_flags: u32) -> TestResult {
    use std::os::unix::fs::FileExt;
    const PAGES: u64 = 16;
    let (dev, map) = region(PAGES)?;
    start(&dev, start_flags)?;
    for p in 0..PAGES as usize {
        map.write_u64(p * PAGE, 1);
    }
    let all: Vec<u64> = (0..PAGES).collect();
    expect_pages("every page written", &collect(&dev, 0, PAGES, true)?, &all)?;
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .map_err(|e| format!("open /proc/self/mem: {e}"))?;
    let mut fds = [0; 2];
    // SAFETY: `pipe` writes two descriptors to a valid array of two.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let result = (|| -> Result<(), String> {
        for round in 0..2u64 {
            let value = 0x5eed_0000 + round;
            let bytes = value.to_ne_bytes();
            let at = |p: u64| map.addr() + p * PAGE as u64 + 8;
            let local = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: 8,
            };
            let remote = libc::iovec {
                iov_base: at(2) as *mut libc::c_void,
                iov_len: 8,
            };
            // SAFETY: both vectors describe 8 valid bytes; the remote one is in this
            // process's mapping of the region.
            let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
            if n != 8 {
                return Err(format!(
                    "process_vm_writev: {n}, {}",
                    std::io::Error::last_os_error()
                ));
            }
            mem.write_at(&bytes, at(4))
                .map_err(|e| format!("pwrite /proc/self/mem: {e}"))?;
            // SAFETY: `fds[1]` is the pipe's write end; `bytes` holds 8 bytes.
            let w = unsafe { libc::write(fds[1], bytes.as_ptr().cast(), 8) };
            // SAFETY: `fds[0]` is the read end; the destination is 8 bytes of the
            // region's mapping, which lives until the end of this function.
            let r = unsafe { libc::read(fds[0], at(6) as *mut libc::c_void, 8) };
            if w != 8 || r != 8 {
                return Err(format!(
                    "pipe write {w}, read {r}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            expect_pages(
                &format!("round {round}: written by process_vm_writev, /proc/self/mem, read"),
                &collect(&dev, 0, PAGES, true)?,
                &[2, 4, 6],
            )?;
            for p in [2, 4, 6] {
                if map.read_u64(p * PAGE + 8) != value {
                    return Err(format!("round {round}: page {p} does not hold the write"));
                }
            }
        }
        Ok(())
    })();
    // SAFETY: both descriptors are this function's, closed once.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    result?;
    expect_pages(
        "nothing written since",
        &collect(&dev, 0, PAGES, true)?,
        &[],
    )?;
    Ok(Outcome::Pass)
}

/// With the mode left to the module: a region whose collects find a quarter of it
/// written scans; after `CALM_INTERVALS` collects that find one page it records;
/// one busy interval brings the scan back. Every collect reports exactly the pages
/// written, across both changes.
pub fn ckpt_mode_follows_the_dirty_fraction(_: &crate::Options) -> TestResult {
    use memkit_core::ckpt::track::{CALM_INTERVALS, RECORD_BELOW_PERMILLE};
    // One page is calm: below the recording threshold.
    const PAGES: u64 = 1024;
    const _: () = assert!(1000 < RECORD_BELOW_PERMILLE * PAGES);
    let (dev, map) = region(PAGES)?;
    let busy: Vec<u64> = (0..PAGES / 4).collect();
    let write = |pages: &[u64], v: u64| {
        for &p in pages {
            map.write_u64(p as usize * PAGE + 16, v);
        }
    };
    let mode = |want: u32, switches: u64, when: &str| -> Result<abi::CkptStats, String> {
        let s = stats(&dev)?;
        if s.mode != want || s.mode_switches != switches || s.mode_fixed != 0 {
            return Err(format!(
                "{when}: stats {s:?}, want mode {want} after {switches} switches"
            ));
        }
        Ok(s)
    };
    for i in 0..3 {
        write(&busy, i);
        expect_pages("busy", &collect(&dev, 0, PAGES, true)?, &busy)?;
    }
    mode(abi::CKPT_MODE_SCAN, 0, "after three busy intervals")?;
    for i in 0..u64::from(CALM_INTERVALS) {
        write(&[100 + i], i);
        expect_pages("calm", &collect(&dev, 0, PAGES, true)?, &[100 + i])?;
    }
    let before = mode(abi::CKPT_MODE_RECORD, 1, "after the calm intervals")?;
    // Pages mapped writable before the change: their next writes are recorded.
    for i in 0..2 {
        write(&[10 + i, 100], 7);
        expect_pages("recording", &collect(&dev, 0, PAGES, true)?, &[10 + i, 100])?;
    }
    let after = mode(abi::CKPT_MODE_RECORD, 1, "recording")?;
    if after.write_faults < before.write_faults + 4 {
        return Err(format!(
            "4 first writes in the recording mode, write_faults {} -> {}",
            before.write_faults, after.write_faults
        ));
    }
    write(&busy, 9);
    expect_pages("busy again", &collect(&dev, 0, PAGES, true)?, &busy)?;
    mode(abi::CKPT_MODE_SCAN, 2, "after a busy interval")?;
    write(&[5], 1);
    expect_pages("scanning again", &collect(&dev, 0, PAGES, true)?, &[5])?;
    expect_pages("nothing written", &collect(&dev, 0, PAGES, true)?, &[])?;
    Ok(Outcome::Pass)
}

/// `MEMKIT_IOC_CKPT_START` refuses both modes at once and unknown flags, and
/// changes nothing when it does.
pub fn ckpt_start_mode_flags(_: &crate::Options) -> TestResult {
    let (dev, map) = region(4)?;
    map.write_u64(PAGE, 1);
    for flags in [
        abi::CKPT_START_SCAN | abi::CKPT_START_RECORD,
        1 << 2,
        1 << 31,
    ] {
        expect_errno(
            &format!("CKPT_START flags {flags:#x}"),
            dev.ckpt_start_with(flags),
            libc::EINVAL,
        )?;
    }
    let s = stats(&dev)?;
    if s.mode != abi::CKPT_MODE_SCAN || s.mode_fixed != 0 {
        return Err(format!("a refused start changed the mode: {s:?}"));
    }
    expect_pages("after refused starts", &collect(&dev, 0, 4, true)?, &[1])?;
    dev.ckpt_start_with(abi::CKPT_START_RECORD)
        .map_err(|e| format!("CKPT_START record: {e}"))?;
    let s = stats(&dev)?;
    if s.mode != abi::CKPT_MODE_RECORD || s.mode_fixed != 1 {
        return Err(format!("CKPT_START record: {s:?}"));
    }
    Ok(Outcome::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_and_runs() {
        assert_eq!(bitmap_pages(0, 64, &[0b100011]), Ok(vec![0, 1, 5]));
        assert_eq!(
            bitmap_pages(60, 130, &[1, 1 << 1, 1 << 1]),
            Ok(vec![60, 125, 189])
        );
        assert!(bitmap_pages(0, 65, &[0, 1 << 1]).is_err());
        assert_eq!(
            runs_of(&[0, 1, 5, 10, 11, 12, 63]),
            [(0, 2), (5, 1), (10, 3), (63, 1)]
        );
        assert!(runs_of(&[]).is_empty());
    }

    #[test]
    fn expect_pages_names_both_kinds_of_error() {
        assert!(expect_pages("x", &[1, 2], &[1, 2]).is_ok());
        let e = expect_pages("x", &[1, 3], &[1, 2]).unwrap_err();
        assert!(
            e.contains("not reported [2]") && e.contains("not written [3]"),
            "{e}"
        );
    }

    #[test]
    fn patterns_differ() {
        assert_ne!(pattern(0, 1), pattern(0, 2));
        assert_ne!(pattern(0, 1), pattern(1, 1));
        assert_eq!(pattern(3, 4).len(), PAGE);
    }
}
