//! Teardown races in the guest: `rmmod` refused while only a mapping holds the
//! module and while fetches and collects are in flight (the module's reference count
//! back to where it was once everything went); `close` of a descriptor while other
//! threads are inside ioctls on it; `munmap` (and a different page of the region
//! mapped in the hole) while prefetches are still to be installed by their work
//! items; a checkpointer process killed in the middle of its collect and copy loop.
//!
//! Each case also fails if the kernel log reports a problem
//! ([`crate::ktap::kernel_problems`]); `kmemleak_clean`, run after them, checks leaks.
//! The helpers for forked processes and shared memory serve `stress_tests.rs` too.

use crate::ckpt_tests::Rng;
use crate::ktap::{kernel_problems, Outcome, TestResult};
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use memkit_core::abi::{self, UapiStruct};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) const PAGE: usize = CKPT_PAGE_SIZE;

/// Words of shared anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`): what forked
/// processes see together (stop flags, counters).
pub(crate) struct SharedWords {
    ptr: *mut AtomicU64,
    n: usize,
}

impl SharedWords {
    pub(crate) fn new(n: usize) -> Result<SharedWords, String> {
        let len = (n * 8).max(1);
        // SAFETY: a new anonymous mapping at an address the kernel chooses.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap shared: {}", io::Error::last_os_error()));
        }
        Ok(SharedWords { ptr: p.cast(), n })
    }

    pub(crate) fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < self.n, "SharedWords: word {i} of {}", self.n);
        // SAFETY: an aligned word inside the mapping, which lives as long as `self`
        // and is only ever accessed atomically.
        unsafe { &*self.ptr.add(i) }
    }
}

// SAFETY: the memory is only accessed through atomics.
unsafe impl Sync for SharedWords {}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: `self` owns the mapping; no reference into it outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), (self.n * 8).max(1)) };
    }
}

/// Forks a child that runs `f` and exits 0 if it returned `Ok` (it prints the
/// error otherwise). The caller must be single-threaded.
pub(crate) fn fork_child(f: impl FnOnce() -> Result<(), String>) -> Result<libc::pid_t, String> {
    // SAFETY: the caller has no other thread; the child only runs `f` and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let code = match res {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                println!("child {}: {e}", std::process::id());
                1
            }
            Err(_) => 2,
        };
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Waits for `pid`; its wait status.
pub(crate) fn wait_status(pid: libc::pid_t) -> Result<i32, String> {
    let mut status = 0;
    // SAFETY: waitpid writes the status to a valid `c_int`.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(format!("waitpid {pid}: {}", io::Error::last_os_error()));
    }
    Ok(status)
}

/// Waits for `pid` and fails unless it exited with status 0.
pub(crate) fn wait_ok(pid: libc::pid_t, what: &str) -> Result<(), String> {
    let status = wait_status(pid)?;
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!(
            "{what} (pid {pid}) failed: wait status {status:#x}"
        ));
    }
    Ok(())
}

/// Fails if the kernel log has more problem lines than `before` (from
/// [`kernel_problems`] at the start of the case).
pub(crate) fn no_new_problems(before: usize, what: &str) -> Result<(), String> {
    let now = kernel_problems()?;
    if now.len() > before {
        return Err(format!(
            "{what}: the kernel log reports problems: {:?}",
            &now[before..]
        ));
    }
    Ok(())
}

// The remote-memory helpers of `rmem_tests`, under the names the race and stress
// cases use.
pub(crate) use crate::rmem_tests::{config as rmem_config, region as rmem_region, word};

/// A checkpoint region of `pages` pages, mapped whole, with its mmap offset.
pub(crate) fn ckpt_region(pages: u64) -> Result<(Device, CkptMap, u64), String> {
    let dev = Device::open(DeviceKind::Ckpt).map_err(|e| format!("open ckpt: {e}"))?;
    let off = dev
        .ckpt_create(pages * PAGE as u64)
        .map_err(|e| format!("CKPT_CREATE {pages} pages: {e}"))?;
    let map = CkptMap::new(&dev, off, pages as usize * PAGE)
        .map_err(|e| format!("mmap ckpt {pages} pages: {e}"))?;
    Ok((dev, map, off))
}

// ---------------------------------------------------------------------------------
// rmmod with mappings and work in flight.

fn try_unload() -> io::Result<()> {
    let name = CString::new("memkit").expect("no NUL in the name");
    // SAFETY: delete_module takes a NUL-terminated module name and flags.
    let ret = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `/sys/module/memkit/refcnt`, or `None` if memkit is not a loaded module.
fn refcnt() -> Option<i64> {
    std::fs::read_to_string("/sys/module/memkit/refcnt")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An unload attempt that must be refused; if it went through anyway, the module is
/// loaded again (from `--module`) so that later cases can run, and the case fails.
fn unload_refused(opts: &crate::Options, what: &str) -> Result<(), String> {
    match try_unload() {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => Ok(()),
        Err(e) => Err(format!("unload with {what}: {e}, want EBUSY/EAGAIN")),
        Ok(()) => {
            if let Some(path) = &opts.module {
                let _ = std::process::Command::new("insmod").arg(path).status();
            }
            Err(format!("memkit unloaded with {what} (want EBUSY/EAGAIN)"))
        }
    }
}

/// `rmmod` is refused while only mappings hold the module (every file closed), then
/// while a fault waits for a 100 ms fetch and a thread collects and copies a
/// checkpoint region; the mappings, the fetch and the collects all finish with the
/// right data; and once everything is gone the module's reference count is back
/// where it was (nothing holds the module).
pub fn race_unload_with_mappings_in_flight(opts: &crate::Options) -> TestResult {
    let Some(refs_before) = refcnt() else {
        return Ok(Outcome::Skip("memkit is not a loaded module".into()));
    };
    let problems = kernel_problems()?.len();
    let started = Instant::now();
    let slow = abi::RmemConfig {
        lat_base_ns: 100_000_000,
        deadline_ns: 0,
        ..rmem_config(64, 8, abi::RMEM_POLICY_PTLINE)
    };
    {
        let (rdev, rmap) = rmem_region(&slow)?;
        let (cdev, cmap, _) = ckpt_region(64)?;
        rmap.write_u64(0, 11);
        cmap.write_u64(0, 12);
        drop(rdev);
        drop(cdev);
        // Only the mappings hold the module now.
        unload_refused(opts, "only an rmem and a ckpt mapping alive")?;
        if rmap.read_u64(0) != 11 || cmap.read_u64(0) != 12 {
            return Err("a mapping lost its data after a refused unload".into());
        }
        // Work in flight: a fault waiting for its fetch (100 ms each), a collect and
        // copy loop on a second checkpoint region whose file is open.
        let (cdev2, cmap2, _) = ckpt_region(256)?;
        let stop = AtomicBool::new(false);
        let (faults, collects) = (AtomicU64::new(0), AtomicU64::new(0));
        let attempts = std::thread::scope(|s| -> Result<u64, String> {
            let fetcher = s.spawn(|| {
                for p in (8..64).step_by(8) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    rmap.write_u64(p * PAGE + 8, p as u64);
                    faults.fetch_add(1, Ordering::Relaxed);
                }
            });
            let collector = s.spawn(|| -> Result<(), String> {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    for p in 0..256usize {
                        cmap2.write_u64(p * PAGE, i);
                    }
                    let runs = cdev2
                        .ckpt_collect_ranges(0, 256, true)
                        .map_err(|e| format!("collect: {e}"))?;
                    let pages: Vec<u64> = runs
                        .iter()
                        .flat_map(|r| r.first..r.first + r.count)
                        .collect();
                    if pages.len() != 256 {
                        return Err(format!("collect {i}: {} pages dirty of 256", pages.len()));
                    }
                    let data = cdev2.ckpt_copy(&pages).map_err(|e| format!("copy: {e}"))?;
                    if data.len() != 256 * PAGE || data[..8] != i.to_ne_bytes() {
                        return Err(format!("copy {i}: wrong data"));
                    }
                    collects.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
            let mut attempts = 0;
            let t0 = Instant::now();
            let mut res = Ok(());
            while t0.elapsed() < Duration::from_millis(1500) {
                attempts += 1;
                if let Err(e) = unload_refused(opts, "a fetch and collects in flight") {
                    res = Err(e);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, Ordering::Relaxed);
            fetcher.join().map_err(|_| "fetcher panicked")?;
            collector.join().map_err(|_| "collector panicked")??;
            res.map(|()| attempts)
        })?;
        let (f, c) = (
            faults.load(Ordering::Relaxed),
            collects.load(Ordering::Relaxed),
        );
        println!("{attempts} refused unloads with {f} fetches and {c} collects done meanwhile");
        if f == 0 || c == 0 {
            return Err(format!(
                "no work ran during the unloads: {f} fetches, {c} collects"
            ));
        }
        for p in (8..64).step_by(8).take(f as usize) {
            if rmap.read_u64(p * PAGE + 8) != p as u64 {
                return Err(format!("rmem page {p} lost its write"));
            }
        }
    }
    // Everything went: the reference count comes back (the last fput may finish
    // just after munmap returns).
    let t0 = Instant::now();
    loop {
        match refcnt() {
            Some(n) if n == refs_before => break,
            n if t0.elapsed() > Duration::from_secs(2) => {
                return Err(format!(
                    "module reference count {n:?} after everything was closed, {refs_before} before"
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for k in DeviceKind::ALL {
        Device::open(k)
            .and_then(|d| d.version())
            .map_err(|e| format!("{} after the refused unloads: {e}", k.name()))?;
    }
    no_new_problems(problems, "unload races")?;
    println!("in {:?}", started.elapsed());
    Ok(Outcome::Pass)
}

// ---------------------------------------------------------------------------------
// close racing ioctl.

/// `ioctl(fd, cmd, &v)` with `v` encoded; the struct as the kernel left it.
fn raw_call<T: UapiStruct>(fd: i32, cmd: u32, v: &T) -> io::Result<T> {
    let mut buf = vec![0u8; T::SIZE];
    v.encode(&mut buf);
    // SAFETY: `buf` is the struct, of the size its `size` field declares; any buffer
    // it points to is the caller's, valid for the call.
    let r = unsafe { libc::ioctl(fd, cmd as _, buf.as_mut_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(T::decode(&buf))
}

/// One ioctl of thread `t`'s mix on `fd` of `kind`, iteration `i`: `Ok(Some(v))` for
/// a journal transaction that wrote `v` at thread `t`'s slot, `Ok(None)` for other
/// successes (checked for sane answers), or the errno.
fn one_ioctl(kind: DeviceKind, fd: i32, t: u64, i: u64, pages: u64) -> Result<Option<u64>, i32> {
    let err = |e: io::Error| e.raw_os_error().unwrap_or(0);
    let insane = libc::EPROTO; // A success with an impossible answer.
    match (kind, i % 3) {
        (_, 0) => {
            let v = raw_call(
                fd,
                abi::IOC_VERSION,
                &abi::Version {
                    size: abi::Version::SIZE as u32,
                    ..Default::default()
                },
            )
            .map_err(err)?;
            if v.device != kind.id() {
                return Err(insane);
            }
            Ok(None)
        }
        (DeviceKind::Journal, 1) => {
            let v = (t + 1) << 48 | i;
            let data = v.to_le_bytes();
            let ranges = [abi::JournalRange {
                offset: t * 4104,
                len: 8,
                data: data.as_ptr() as u64,
            }];
            let mut array = vec![0u8; abi::JournalRange::SIZE];
            ranges[0].encode(&mut array);
            raw_call(
                fd,
                abi::IOC_JOURNAL_TX,
                &abi::JournalTx {
                    size: abi::JournalTx::SIZE as u32,
                    ranges: array.as_ptr() as u64,
                    nr_ranges: 1,
                    ..Default::default()
                },
            )
            .map_err(err)?;
            Ok(Some(v))
        }
        (DeviceKind::Journal, _) => {
            let s = raw_call(
                fd,
                abi::IOC_JOURNAL_STATUS,
                &abi::JournalStatus {
                    size: abi::JournalStatus::SIZE as u32,
                    ..Default::default()
                },
            )
            .map_err(err)?;
            if s.attached == 0 {
                return Err(insane);
            }
            Ok(None)
        }
        (DeviceKind::Rmem, _) => {
            let s = raw_call(
                fd,
                abi::IOC_RMEM_STATS,
                &abi::RmemStats {
                    size: abi::RmemStats::SIZE as u32,
                    flags: if i.is_multiple_of(2) {
                        abi::RMEM_STATS_GLOBAL
                    } else {
                        0
                    },
                    ..Default::default()
                },
            )
            .map_err(err)?;
            if i % 2 == 1 && s.bytes != pages * PAGE as u64 {
                return Err(insane);
            }
            Ok(None)
        }
        (DeviceKind::Ckpt, 1) => {
            let mut bitmap = vec![0u8; pages.div_ceil(64) as usize * 8];
            let c = raw_call(
                fd,
                abi::IOC_CKPT_COLLECT,
                &abi::CkptCollect {
                    size: abi::CkptCollect::SIZE as u32,
                    flags: abi::CKPT_COLLECT_CLEAR,
                    first: 0,
                    count: pages,
                    buf: bitmap.as_mut_ptr() as u64,
                    buf_len: bitmap.len() as u64,
                    ..Default::default()
                },
            )
            .map_err(err)?;
            let set: u64 = bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
            if c.dirty > pages || set != c.dirty {
                return Err(insane);
            }
            Ok(None)
        }
        (DeviceKind::Ckpt, _) => {
            let list: Vec<u64> = (0..pages.min(64)).collect();
            let mut buf = vec![0u8; list.len() * PAGE];
            let c = raw_call(
                fd,
                abi::IOC_CKPT_COPY,
                &abi::CkptCopy {
                    size: abi::CkptCopy::SIZE as u32,
                    flags: 0,
                    pages: list.as_ptr() as u64,
                    count: list.len() as u64,
                    buf: buf.as_mut_ptr() as u64,
                    buf_len: buf.len() as u64,
                    bytes: 0,
                },
            )
            .map_err(err)?;
            // Page p's first word is p + 1 (or 0 before the writer got there).
            let ok = c.bytes == buf.len() as u64
                && buf.chunks_exact(PAGE).enumerate().all(|(p, pg)| {
                    let w = u64::from_ne_bytes(pg[..8].try_into().expect("8 bytes"));
                    w == 0 || w == p as u64 + 1
                });
            if !ok {
                return Err(insane);
            }
            Ok(None)
        }
    }
}

/// The journal for the close race: attached (formatted if it was not), or `None`
/// without a pmem device.
pub(crate) fn journal_attached() -> Result<Option<Device>, String> {
    let pmem = std::env::var("MEMKIT_PMEM").unwrap_or_else(|_| "/dev/pmem0".into());
    let dev = Device::open(DeviceKind::Journal).map_err(|e| format!("open journal: {e}"))?;
    let st = dev.journal_status().map_err(|e| format!("status: {e}"))?;
    if st.attached != 0 {
        return Ok(Some(dev));
    }
    if !std::path::Path::new(&pmem).exists() {
        return Ok(None);
    }
    dev.journal_attach(std::path::Path::new(&pmem), true, 16, 4096)
        .map_err(|e| format!("attach {pmem}: {e}"))?;
    Ok(Some(dev))
}

/// Three threads make ioctls on one descriptor while a fourth closes it after a
/// random 0-3 ms, 12 rounds per device: every ioctl returns a sane answer or `EBADF`
/// (the VFS's, once the number is gone); both happen; an acknowledged journal
/// transaction is in place even when its descriptor was closed under it; the
/// rmem and ckpt mappings, which outlive the descriptor, keep their data; a new
/// descriptor works.
pub fn race_close_during_ioctl(_: &crate::Options) -> TestResult {
    const ROUNDS: u64 = 12;
    const THREADS: u64 = 3;
    const PAGES: u64 = 64;
    let problems = kernel_problems()?.len();
    let started = Instant::now();
    let journal = journal_attached()?;
    let mut rng = Rng(0x5eed_c105e);
    let mut tally = Vec::new();
    let mut in_flight = 0u64;
    for kind in DeviceKind::ALL {
        if kind == DeviceKind::Journal && journal.is_none() {
            println!("journal: no pmem, skipped");
            continue;
        }
        let (mut oks, mut ebadfs, mut insides) = (0u64, 0u64, 0u64);
        for round in 0..ROUNDS {
            let dev = Device::open(kind).map_err(|e| format!("open {}: {e}", kind.name()))?;
            let map = match kind {
                DeviceKind::Journal => None,
                DeviceKind::Rmem => {
                    let off = dev
                        .rmem_configure(&rmem_config(PAGES, 8, abi::RMEM_POLICY_PTLINE))
                        .map_err(|e| format!("configure: {e}"))?;
                    Some(
                        CkptMap::new(&dev, off, PAGES as usize * PAGE)
                            .map_err(|e| e.to_string())?,
                    )
                }
                DeviceKind::Ckpt => {
                    let off = dev
                        .ckpt_create(PAGES * PAGE as u64)
                        .map_err(|e| format!("create: {e}"))?;
                    Some(
                        CkptMap::new(&dev, off, PAGES as usize * PAGE)
                            .map_err(|e| e.to_string())?,
                    )
                }
            };
            // The race's descriptor is the only one left: closing it releases the
            // file unless an ioctl (or the mapping) still holds it.
            // SAFETY: dup of our open descriptor.
            let fd = unsafe { libc::dup(dev.as_fd().as_raw_fd()) };
            if fd < 0 {
                return Err(format!("dup: {}", io::Error::last_os_error()));
            }
            drop(dev);
            let delay = Duration::from_micros(rng.next() % 3000);
            let stop = AtomicBool::new(false);
            // When close() was called, in ns from `t0` (MAX: not yet).
            let t0 = Instant::now();
            let closing = AtomicU64::new(u64::MAX);
            // Workers that have begun their first ioctl: close() waits for all of them,
            // then for `delay`, so the race does not depend on how fast threads start.
            let ready = AtomicU64::new(0);
            let results = std::thread::scope(|s| {
                let (map, stop, closing, ready) = (map.as_ref(), &stop, &closing, &ready);
                let toucher = s.spawn(move || {
                    // Faults and writes while the descriptor goes.
                    let mut i = 0u64;
                    while let Some(m) = map {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let p = i % PAGES;
                        m.write_u64(p as usize * PAGE, p + 1);
                        i += 1;
                    }
                });
                let workers: Vec<_> = (0..THREADS)
                    .map(|t| {
                        s.spawn(move || -> Result<(u64, u64, u64, Option<u64>), String> {
                            let (mut ok, mut inside, mut last_tx) = (0u64, 0u64, None);
                            ready.fetch_add(1, Ordering::SeqCst);
                            for i in 0..1_000_000u64 {
                                let began = t0.elapsed().as_nanos() as u64;
                                match one_ioctl(kind, fd, t, i, PAGES) {
                                    Ok(v) => {
                                        ok += 1;
                                        last_tx = v.or(last_tx);
                                        // Answered though close() came while it ran.
                                        if began < closing.load(Ordering::SeqCst)
                                            && t0.elapsed().as_nanos() as u64
                                                > closing.load(Ordering::SeqCst)
                                        {
                                            inside += 1;
                                        }
                                    }
                                    Err(libc::EBADF) => return Ok((ok, 1, inside, last_tx)),
                                    Err(e) => {
                                        return Err(format!(
                                            "{} round {round} thread {t} call {i}: {}",
                                            kind.name(),
                                            io::Error::from_raw_os_error(e)
                                        ))
                                    }
                                }
                            }
                            Ok((ok, 0, inside, last_tx))
                        })
                    })
                    .collect();
                while ready.load(Ordering::SeqCst) < THREADS {
                    std::thread::yield_now();
                }
                std::thread::sleep(delay);
                closing.store(t0.elapsed().as_nanos() as u64, Ordering::SeqCst);
                // SAFETY: closes the descriptor dup'ed above, which nothing else
                // closes; the workers only make ioctls on its number, and nothing in
                // this process opens a file until they are joined.
                unsafe { libc::close(fd) };
                let r: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
                stop.store(true, Ordering::Relaxed);
                let _ = toucher.join();
                r
            });
            for (t, r) in results.into_iter().enumerate() {
                let (ok, bad, inside, last_tx) = r.map_err(|_| "worker panicked")??;
                oks += ok;
                insides += inside;
                ebadfs += bad;
                if let Some(v) = last_tx {
                    let mut got = [0u8; 8];
                    journal
                        .as_ref()
                        .ok_or("no journal")?
                        .read_at(&mut got, t as u64 * 4104)
                        .map_err(|e| format!("pread: {e}"))?;
                    if u64::from_le_bytes(got) != v {
                        return Err(format!(
                            "journal round {round} thread {t}: slot holds {:#x}, last acknowledged {v:#x}",
                            u64::from_le_bytes(got)
                        ));
                    }
                }
            }
            if let Some(m) = map {
                for p in 0..PAGES {
                    let w = m.read_u64(p as usize * PAGE);
                    if w != 0 && w != p + 1 {
                        return Err(format!(
                            "{} round {round}: page {p} holds {w:#x} after the close",
                            kind.name()
                        ));
                    }
                }
            }
        }
        println!(
            "{}: {oks} ioctls answered ({insides} of them in flight when close() was called), {ebadfs} EBADF",
            kind.name()
        );
        tally.push((kind, oks, ebadfs));
        in_flight += insides;
        Device::open(kind)
            .and_then(|d| d.version())
            .map_err(|e| format!("{} after the races: {e}", kind.name()))?;
    }
    if let Some((kind, ..)) = tally.iter().find(|(_, ok, bad)| *ok == 0 || *bad == 0) {
        return Err(format!(
            "{}: the race never happened: {tally:?}",
            kind.name()
        ));
    }
    if in_flight == 0 {
        return Err("no ioctl was in flight when its descriptor was closed".into());
    }
    no_new_problems(problems, "close racing ioctl")?;
    println!("in {:?}", started.elapsed());
    Ok(Outcome::Pass)
}

// ---------------------------------------------------------------------------------
// munmap racing prefetch installs.

/// `mmap(MAP_FIXED)` of `len` bytes of `dev`'s region at `off` over `addr` (a hole
/// this process punched in its own mapping).
fn map_fixed(dev: &Device, addr: u64, len: usize, off: u64) -> io::Result<()> {
    // SAFETY: `addr..addr + len` is a hole of a mapping this case owns (only its
    // pages are replaced, never memory anything else uses).
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            dev.as_fd().as_raw_fd(),
            off as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn munmap(addr: u64, len: usize) -> io::Result<()> {
    // SAFETY: `addr..addr + len` lies inside a mapping this case owns, which no
    // thread touches any more (the toucher stays below it).
    if unsafe { libc::munmap(addr as *mut libc::c_void, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A remote-memory region of 2N pages (N = 128) filled with known words through a
/// budget of 16 (so most are remote); then rounds: a fresh mapping of the first N
/// pages, a thread writes the first page of each PTE line (each fault prefetches
/// the rest of its line; with 200 µs + 300 µs per page of latency they arrive after
/// the fault returned, so their work items install them), while another thread
/// unmaps the rest of that line after 0-2 ms, and in every other round maps page
/// `p + N` into the hole at once. An install must go only where the region's page
/// is still mapped at its offset: afterwards the holes read the pages now mapped
/// there, and a fresh mapping of the whole region holds every page's latest words.
pub fn race_rmem_munmap_prefetch_install(_: &crate::Options) -> TestResult {
    const N: u64 = 128;
    const ROUNDS: u64 = 6;
    let problems = kernel_problems()?.len();
    let started = Instant::now();
    let cfg = abi::RmemConfig {
        lat_base_ns: 200_000,
        lat_page_ns: 300_000,
        deadline_ns: 50_000_000,
        degree: 8,
        ..rmem_config(2 * N, 16, abi::RMEM_POLICY_PTLINE)
    };
    let dev = Device::open(DeviceKind::Rmem).map_err(|e| format!("open rmem: {e}"))?;
    let base = dev
        .rmem_configure(&cfg)
        .map_err(|e| format!("RMEM_CONFIGURE: {e}"))?;
    let words = [0u64, 1, 511];
    let mut gens = vec![1u64; 2 * N as usize];
    {
        let all = CkptMap::new(&dev, base, 2 * N as usize * PAGE).map_err(|e| e.to_string())?;
        for p in 0..2 * N {
            for w in words {
                all.write_u64(p as usize * PAGE + w as usize * 8, word(p, w, 1));
            }
        }
    }
    let mut rng = Rng(0x4d75_6e6d);
    let mut holes_checked = 0u64;
    for round in 0..ROUNDS {
        let remap = round % 2 == 1;
        let map = CkptMap::new(&dev, base, N as usize * PAGE).map_err(|e| e.to_string())?;
        let addr = map.addr();
        // The first page of the mapping that starts a PTE line (8 PTEs, 64 bytes).
        let first = (8 - (addr >> 12) % 8) % 8;
        let lines: Vec<u64> = (0..(N - first) / 8).map(|l| first + 8 * l).collect();
        // Lines faulted and lines whose hole is punched: the toucher faults line i
        // once the hole of line i - 1 is punched.
        let (faulted, done) = (AtomicU64::new(0), AtomicU64::new(0));
        let delays: Vec<u64> = lines.iter().map(|_| rng.next() % 2000).collect();
        let gen = round + 2;
        std::thread::scope(|s| -> Result<(), String> {
            let toucher = s.spawn(|| {
                for (i, &p) in lines.iter().enumerate() {
                    while done.load(Ordering::Acquire) < i as u64 {
                        std::thread::yield_now();
                    }
                    for w in words {
                        map.write_u64(p as usize * PAGE + w as usize * 8, word(p, w, gen));
                    }
                    faulted.store(i as u64 + 1, Ordering::Release);
                }
            });
            for (i, &p) in lines.iter().enumerate() {
                while faulted.load(Ordering::Acquire) < i as u64 + 1 {
                    std::thread::yield_now();
                }
                std::thread::sleep(Duration::from_micros(delays[i]));
                let hole = addr + (p + 1) * PAGE as u64;
                let res = munmap(hole, 7 * PAGE).map_err(|e| format!("munmap line {p}: {e}"));
                let res = res.and_then(|()| {
                    if remap {
                        map_fixed(&dev, hole, 7 * PAGE, base + (N + p + 1) * PAGE as u64)
                            .map_err(|e| format!("mmap over line {p}: {e}"))
                    } else {
                        Ok(())
                    }
                });
                // Let the toucher go on (and end) even on an error.
                done.store(i as u64 + 1, Ordering::Release);
                if let Err(e) = res {
                    done.store(u64::MAX, Ordering::Release);
                    return Err(e);
                }
            }
            toucher.join().map_err(|_| "toucher panicked")?;
            Ok(())
        })?;
        for &p in &lines {
            gens[p as usize] = gen;
        }
        // Let the last prefetches arrive, then read the holes that hold pages p + N.
        std::thread::sleep(Duration::from_millis(5));
        if remap {
            for &p in &lines {
                for q in p + 1..p + 8 {
                    let at = q as usize * PAGE;
                    for w in words {
                        let got = map.read_u64(at + w as usize * 8);
                        let want = word(q + N, w, gens[(q + N) as usize]);
                        if got != want {
                            return Err(format!(
                                "round {round}: the hole at page {q} (now page {}) word {w} reads {got:#x}, want {want:#x}",
                                q + N
                            ));
                        }
                    }
                    holes_checked += 1;
                }
            }
        }
        drop(map);
    }
    let s = dev.rmem_stats(false).map_err(|e| format!("stats: {e}"))?;
    // Every page, through a fresh mapping.
    let all = CkptMap::new(&dev, base, 2 * N as usize * PAGE).map_err(|e| e.to_string())?;
    for p in 0..2 * N {
        for w in words {
            let got = all.read_u64(p as usize * PAGE + w as usize * 8);
            let want = word(p, w, gens[p as usize]);
            if got != want {
                return Err(format!(
                    "fresh mapping: page {p} word {w} reads {got:#x}, want {want:#x} (generation {})",
                    gens[p as usize]
                ));
            }
        }
    }
    println!(
        "{ROUNDS} rounds, {holes_checked} remapped pages checked; prefetches {} installed {} late {} wasted {} evictions {}",
        s.prefetches, s.installed, s.late, s.wasted, s.evictions
    );
    if s.prefetches == 0 || s.installed == 0 {
        return Err(format!("no prefetch was installed: {s:?}"));
    }
    no_new_problems(problems, "munmap racing prefetch installs")?;
    println!("in {:?}", started.elapsed());
    Ok(Outcome::Pass)
}

// ---------------------------------------------------------------------------------
// A checkpointer killed mid-loop.

/// The loop of a checkpointer process: collect (clearing) as runs, copy the pages
/// in chunks, history, diffs, forever; also a region of its own, mapped and written.
fn checkpointer_loop(dev: &Device, pages: u64) -> Result<(), String> {
    let (_own, own_map, _) = ckpt_region(32)?;
    let mut i = 0u64;
    loop {
        i += 1;
        own_map.write_u64((i % 32) as usize * PAGE, i);
        let runs = dev
            .ckpt_collect_ranges(0, pages, true)
            .map_err(|e| format!("collect: {e}"))?;
        let list: Vec<u64> = runs
            .iter()
            .flat_map(|r| r.first..r.first + r.count)
            .collect();
        for chunk in list.chunks(16) {
            dev.ckpt_copy(chunk).map_err(|e| format!("copy: {e}"))?;
        }
        dev.ckpt_history(0, pages)
            .map_err(|e| format!("history: {e}"))?;
        let some: Vec<u64> = list.iter().copied().take(8).collect();
        if some.is_empty() {
            continue;
        }
        dev.ckpt_diff_set(&some, true)
            .map_err(|e| format!("diff set: {e}"))?;
        dev.ckpt_copy_diff(&some, 64, 16)
            .map_err(|e| format!("copy diff: {e}"))?;
    }
}

/// A region written by two writer processes; 16 times a checkpointer process
/// (sharing the region's file) is SIGKILLed 2-40 ms into its collect/copy/history/
/// diff loop. Afterwards the region is consistent for its next user: a collect
/// reports exactly the pages written since the previous one, copies return the
/// memory, the history and diffs answer, a new file gets a fresh region; and the
/// killed processes' own regions went with them (kmemleak checks later).
pub fn race_ckpt_checkpointer_killed(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 512;
    const KILLS: u64 = 16;
    let problems = kernel_problems()?.len();
    let started = Instant::now();
    let (dev, map, _) = ckpt_region(PAGES)?;
    let stop = SharedWords::new(1)?;
    let mut writers = Vec::new();
    for t in 0..2u64 {
        let (map, stop) = (&map, &stop);
        writers.push(fork_child(move || {
            let mut rng = Rng(0x77 + t);
            let mut n = 0u64;
            while stop.get(0).load(Ordering::Relaxed) == 0 {
                let p = rng.next() % PAGES;
                n += 1;
                map.write_u64(p as usize * PAGE + 8 * t as usize, n);
            }
            Ok(())
        })?);
    }
    let mut rng = Rng(0xdead_c0de);
    let mut killed_by_us = 0;
    for k in 0..KILLS {
        let dev = &dev;
        let pid = fork_child(move || checkpointer_loop(dev, PAGES))?;
        std::thread::sleep(Duration::from_millis(2 + rng.next() % 39));
        // SAFETY: kill(2) of the child forked above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let status = wait_status(pid)?;
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
            killed_by_us += 1;
        } else {
            return Err(format!(
                "checkpointer {k} ended by itself: status {status:#x}"
            ));
        }
    }
    stop.get(0).store(1, Ordering::Relaxed);
    for (t, pid) in writers.into_iter().enumerate() {
        wait_ok(pid, &format!("writer {t}"))?;
    }
    // The region's state for the next user: start from a clean collect, then
    // exactly the pages written are reported, and their contents copied.
    dev.ckpt_collect_ranges(0, PAGES, true)
        .map_err(|e| format!("collect after the kills: {e}"))?;
    let written: Vec<u64> = (0..PAGES).filter(|p| p % 7 == 3).collect();
    for &p in &written {
        map.write_u64(p as usize * PAGE + 64, 0xabcd_0000 + p);
    }
    let runs = dev
        .ckpt_collect_ranges(0, PAGES, true)
        .map_err(|e| format!("collect: {e}"))?;
    let got: Vec<u64> = runs
        .iter()
        .flat_map(|r| r.first..r.first + r.count)
        .collect();
    if got != written {
        return Err(format!(
            "after the kills a collect reports {} pages, {} were written: {:?}",
            got.len(),
            written.len(),
            &got[..got.len().min(16)]
        ));
    }
    let all: Vec<u64> = (0..PAGES).collect();
    let copy = dev.ckpt_copy(&all).map_err(|e| format!("copy: {e}"))?;
    if copy != map.to_vec() {
        return Err("a copy of every page differs from the memory".into());
    }
    let hist = dev
        .ckpt_history(0, PAGES)
        .map_err(|e| format!("history: {e}"))?;
    if written.iter().any(|&p| hist[p as usize] & 1 == 0) {
        return Err("the last interval's history misses written pages".into());
    }
    dev.ckpt_diff_set(&written[..8], true)
        .map_err(|e| format!("diff set: {e}"))?;
    dev.ckpt_copy_diff(&written[..8], 64, 16)
        .map_err(|e| format!("copy diff: {e}"))?;
    let (_d2, fresh, _) = ckpt_region(PAGES)?;
    if fresh.to_vec().iter().any(|&b| b != 0) {
        return Err("a new region shows data".into());
    }
    println!("{killed_by_us} checkpointers killed mid-loop");
    no_new_problems(problems, "checkpointer killed")?;
    println!("in {:?}", started.elapsed());
    Ok(Outcome::Pass)
}

/// Set by [`on_segv`]: the writer's mapping is gone.
static UNMAPPED: AtomicBool = AtomicBool::new(false);

/// `SIGSEGV` of the writer once its mapping is gone: maps an anonymous page where
/// it wrote (so the write completes, harmlessly) and says so.
extern "C" fn on_segv(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; mmap and the atomic store are
    // async-signal-safe.
    unsafe {
        let at = ((*info).si_addr() as usize) & !(PAGE - 1);
        libc::mmap(
            at as *mut libc::c_void,
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
    }
    UNMAPPED.store(true, Ordering::SeqCst);
}

fn set_segv(handler: Option<extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)>) {
    // SAFETY: an all-zero sigaction is valid; the handler is async-signal-safe.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        match handler {
            Some(h) => {
                sa.sa_sigaction = h as libc::sighandler_t;
                sa.sa_flags = libc::SA_SIGINFO;
            }
            None => sa.sa_sigaction = libc::SIG_DFL,
        }
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
    }
}

/// `race_ckpt_munmap_while_writing_loses_no_write`: a thread writes an increasing
/// counter into page 0 of a region through a mapping as fast as it can, another
/// thread collects and copies in a loop, and the main thread unmaps the writer's
/// mapping under it (the writer's next write faults and goes to an anonymous page
/// instead). The zap moves the last writes' dirt to `PG_dirty` and flushes the TLBs
/// after; a write through a stale entry between the two must still be reported.
/// After each round the last copy of page 0 must hold what the region holds (read
/// through a mapping that stays): 400 rounds, or 20 s, alternating the scan and the
/// recording mode.
pub fn race_ckpt_munmap_while_writing_loses_no_write(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 4;
    let problems = kernel_problems()?.len();
    let len = PAGES as usize * PAGE;
    let dev = Device::open(DeviceKind::Ckpt).map_err(|e| format!("open: {e}"))?;
    let off = dev
        .ckpt_create(PAGES * PAGE as u64)
        .map_err(|e| format!("CKPT_CREATE: {e}"))?;
    let keep = CkptMap::new(&dev, off, len).map_err(|e| format!("mmap: {e}"))?;
    set_segv(Some(on_segv));
    let mut rng = Rng(0x5eed_0001);
    let end = Instant::now() + Duration::from_secs(20);
    let (mut rounds, mut reported_by_zap) = (0u32, 0u64);
    let result = (|| {
        while rounds < 400 && Instant::now() < end {
            let flags = if rounds % 2 == 0 {
                abi::CKPT_START_SCAN
            } else {
                abi::CKPT_START_RECORD
            };
            dev.ckpt_start_with(flags)
                .map_err(|e| format!("CKPT_START: {e}"))?;
            // SAFETY: a new shared mapping of the region, unmapped below.
            let m = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    dev.as_fd().as_raw_fd(),
                    off as libc::off_t,
                )
            };
            if m == libc::MAP_FAILED {
                return Err(format!("mmap: {}", io::Error::last_os_error()));
            }
            UNMAPPED.store(false, Ordering::SeqCst);
            let addr = m as usize;
            let stop = AtomicBool::new(false);
            // The replica of page 0: as the last round left it, equal to the region.
            let copied = AtomicU64::new(keep.read_u64(0));
            let written = AtomicU64::new(0);
            let before = dev.ckpt_stats().map(|s| s.dirty_unmapped).unwrap_or(0);
            std::thread::scope(|s| -> Result<(), String> {
                let writer = s.spawn(|| {
                    let mut v = 0u64;
                    while !UNMAPPED.load(Ordering::Relaxed) {
                        v += 1;
                        // SAFETY: page 0 of the mapping, or (once it is gone) the
                        // anonymous page the SIGSEGV handler put there.
                        unsafe { std::ptr::write_volatile(addr as *mut u64, v) };
                        if v == 1 {
                            written.store(1, Ordering::SeqCst);
                        }
                    }
                });
                let collector = s.spawn(|| -> Result<(), String> {
                    let mut page = vec![0u8; PAGE];
                    loop {
                        let last = stop.load(Ordering::SeqCst);
                        let runs = dev
                            .ckpt_collect_ranges(0, PAGES, true)
                            .map_err(|e| format!("collect: {e}"))?;
                        if runs.iter().any(|r| r.first == 0) {
                            dev.ckpt_copy_into(&[0], &mut page)
                                .map_err(|e| format!("copy: {e}"))?;
                            let w = u64::from_ne_bytes(page[..8].try_into().expect("8"));
                            copied.store(w, Ordering::SeqCst);
                        }
                        if last {
                            return Ok(());
                        }
                    }
                });
                // Unmapped while the writer writes: after its first write.
                while written.load(Ordering::SeqCst) == 0 {
                    std::thread::yield_now();
                }
                std::thread::sleep(Duration::from_micros(rng.next() % 2000));
                // SAFETY: unmaps the mapping made above; the writer's next access
                // faults into `on_segv`.
                unsafe { libc::munmap(m, len) };
                let _ = writer.join();
                stop.store(true, Ordering::SeqCst);
                collector.join().map_err(|_| "the collector panicked")??;
                Ok(())
            })?;
            // SAFETY: the anonymous page the handler mapped, if it did.
            unsafe { libc::munmap(m, len) };
            let (want, got) = (keep.read_u64(0), copied.load(Ordering::SeqCst));
            if want != got {
                return Err(format!(
                    "round {rounds} ({}): the region holds {want} at page 0, the last copy \
                     {got}: a write was lost",
                    if flags == abi::CKPT_START_SCAN {
                        "scan"
                    } else {
                        "record"
                    }
                ));
            }
            let after = dev.ckpt_stats().map(|s| s.dirty_unmapped).unwrap_or(0);
            reported_by_zap += after.saturating_sub(before);
            rounds += 1;
        }
        Ok(())
    })();
    set_segv(None);
    result?;
    no_new_problems(problems, "munmap under a writer")?;
    println!("{rounds} rounds; page 0 found only through PG_dirty {reported_by_zap} times");
    Ok(Outcome::Pass)
}
