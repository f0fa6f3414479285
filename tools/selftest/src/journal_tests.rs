//! `/dev/memkit-journal` in the guest: attach and format a virtio-pmem device,
//! transactions and reads, every refused argument (and that nothing was written),
//! recovery on re-attach, group commit under concurrent writers, and a read into a
//! slowly faulting buffer that must not hold commits up.
//!
//! The cases use the first pmem device (`MEMKIT_PMEM`, default `/dev/pmem0`) and
//! format it: they are skipped when it does not exist.

use crate::ktap::{expect_errno, Outcome, TestResult};
use crate::module_tests;
use memkit::dev::{Device, DeviceKind};
use memkit_core::abi;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) fn pmem_path() -> String {
    std::env::var("MEMKIT_PMEM").unwrap_or_else(|_| "/dev/pmem0".into())
}

fn open() -> Result<Device, String> {
    Device::open(DeviceKind::Journal).map_err(|e| format!("open /dev/memkit-journal: {e}"))
}

fn attach(dev: &Device, format: Option<(u32, u32)>) -> io::Result<()> {
    let (count, size) = format.unwrap_or((0, 0));
    dev.journal_attach(
        std::path::Path::new(&pmem_path()),
        format.is_some(),
        count,
        size,
    )
}

fn status(dev: &Device) -> Result<abi::JournalStatus, String> {
    dev.journal_status().map_err(|e| format!("status: {e}"))
}

fn read_at(off: u64, len: usize) -> Result<Vec<u8>, String> {
    let f =
        std::fs::File::open("/dev/memkit-journal").map_err(|e| format!("open for read: {e}"))?;
    let mut buf = vec![0u8; len];
    let n = f
        .read_at(&mut buf, off)
        .map_err(|e| format!("pread {len} at {off}: {e}"))?;
    buf.truncate(n);
    Ok(buf)
}

/// Opens the device and attaches a freshly formatted journal; `None`: no pmem here.
pub(crate) fn fresh(mj_count: u32, mj_size: u32) -> Result<Option<Device>, String> {
    if !std::path::Path::new(&pmem_path()).exists() {
        return Ok(None);
    }
    let dev = open()?;
    match dev.journal_detach() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
        Err(e) => return Err(format!("detach: {e}")),
    }
    attach(&dev, Some((mj_count, mj_size))).map_err(|e| format!("attach with format: {e}"))?;
    Ok(Some(dev))
}

fn no_pmem() -> TestResult {
    Ok(Outcome::Skip(format!("no {}", pmem_path())))
}

pub fn journal_attach_format(_: &crate::Options) -> TestResult {
    let Some(dev) = fresh(16, 4096)? else {
        return no_pmem();
    };
    let s = status(&dev)?;
    println!(
        "dev {} B, data {} B at {}, {} MJs x {} B, sync_dax {}",
        s.dev_size, s.data_size, s.data_offset, s.mj_count, s.mj_size, s.sync_dax
    );
    if s.attached != 1 || s.mj_count != 16 || s.mj_size != 4096 || s.next_id != 1 {
        return Err(format!("unexpected status after format: {s:?}"));
    }
    let header = memkit_core::journal::format::MJ_HEADER_SIZE as u32;
    if s.max_tx_bytes != 4096 - header || s.data_size == 0 || s.data_offset % 4096 != 0 {
        return Err(format!("unexpected limits: {s:?}"));
    }
    // A second attach while attached is refused.
    expect_errno("attach twice", attach(&dev, None), libc::EBUSY)?;
    Ok(Outcome::Pass)
}

pub fn journal_tx_and_read(_: &crate::Options) -> TestResult {
    let Some(dev) = fresh(16, 4096)? else {
        return no_pmem();
    };
    let a = dev
        .journal_tx(&[(0, b"hello"), (4096, b"world"), (100, &[7u8; 300])])
        .map_err(|e| format!("tx 1: {e}"))?;
    let b = dev
        .journal_tx(&[(2, b"LL")])
        .map_err(|e| format!("tx 2: {e}"))?;
    if (a, b) != (1, 2) {
        return Err(format!("commit ids {a}, {b}, want 1, 2"));
    }
    if read_at(0, 5)? != b"heLLo"
        || read_at(4096, 5)? != b"world"
        || read_at(100, 300)? != vec![7u8; 300]
    {
        return Err("read back differs from what was committed".into());
    }
    let s = status(&dev)?;
    println!(
        "transactions {} groups {} barriers {} journal bytes {} payload bytes {}",
        s.transactions, s.groups, s.barriers, s.journal_bytes, s.payload_bytes
    );
    if s.transactions != 2 || s.barriers != 2 || s.payload_bytes != 312 || s.next_id != 3 {
        return Err(format!("counters: {s:?}"));
    }
    // Reads past the data region end at EOF.
    if !read_at(s.data_size, 10)?.is_empty() || read_at(s.data_size - 3, 10)?.len() != 3 {
        return Err("read past the end of the data region".into());
    }
    Ok(Outcome::Pass)
}

/// How long the test's agent withholds the page a reader copies into.
const SLOW_BUFFER_HOLD: Duration = Duration::from_secs(2);
/// The most a commit may take while a reader waits for its buffer.
const COMMIT_WHILE_READING_MAX: Duration = Duration::from_secs(1);

/// The child's status once reaped (`WNOHANG`): `slot` keeps it.
fn try_reap(pid: libc::pid_t, slot: &mut Option<i32>) -> Option<i32> {
    if slot.is_none() {
        let mut status = 0;
        // SAFETY: polls a child of this process.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            *slot = Some(status);
        }
    }
    *slot
}

/// A `read` of the journal whose destination faults slowly must not hold the
/// journal: the reader's buffer is part of an agent-backed rmem region whose agent
/// (this test) withholds its first page for [`SLOW_BUFFER_HOLD`]; meanwhile a commit
/// must complete at once, and so must a detach and a re-attach. The reader then gets
/// its first chunk (64 KiB) as it was before the commit, and no more: the journal was
/// replaced before its second chunk.
///
/// The reader is a forked process rather than a thread: a fault of the kernel's copy
/// to user memory waits holding its process's mmap lock, so a thread of that process
/// starting (its stack is an mmap) would wait for the agent too.
pub fn journal_read_into_slow_buffer_does_not_block_commits(_: &crate::Options) -> TestResult {
    use crate::rmem_tests::{config, drain, region, reply};
    const PAGE: usize = memkit::dev::CKPT_PAGE_SIZE;
    /// The kernel's read chunk (`READ_CHUNK` of `rust/journal.rs`).
    const CHUNK: usize = 64 * 1024;
    const COMMITTED: &[u8] = b"committed while a reader waits";
    let Some(dev) = fresh(16, 8192)? else {
        return no_pmem();
    };
    let data: Vec<u8> = (0..PAGE).map(|i| (i * 13 + 5) as u8).collect();
    dev.journal_tx(&[(0, &data)])
        .map_err(|e| format!("tx of the bytes to read: {e}"))?;
    // What the reader's first chunk must hold: the commit lands after it was read.
    let before = read_at(0, CHUNK)?;
    let cfg = abi::RmemConfig {
        backend: abi::RMEM_BACKEND_AGENT,
        lat_base_ns: 0,
        lat_page_ns: 0,
        ..config(
            (2 * CHUNK / PAGE) as u64,
            (2 * CHUNK / PAGE) as u64,
            abi::RMEM_POLICY_NONE,
        )
    };
    let (agent, map) = region(&cfg)?;
    let journal =
        std::fs::File::open("/dev/memkit-journal").map_err(|e| format!("open for read: {e}"))?;
    // The reader's result: pread's return value, through a pipe.
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: the child only reads into the mapping, writes to the pipe and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: a reader whose page never comes still ends.
        unsafe { libc::alarm(60) };
        // SAFETY: the mapping is 2 * CHUNK bytes of writable memory, mapped in this
        // process until it exits.
        let n = unsafe {
            libc::pread(
                journal.as_raw_fd(),
                map.addr() as *mut libc::c_void,
                2 * CHUNK,
                0,
            )
        };
        let r = if n < 0 {
            -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            n as i64
        };
        // SAFETY: writes 8 bytes from `r` to the pipe, then leaves the child without
        // running the parent's atexit handlers.
        unsafe {
            libc::write(fds[1], (&r as *const i64).cast(), 8);
            libc::_exit(0);
        }
    }
    drop(journal);
    // SAFETY: the parent's copy of the write end, not used by it.
    unsafe { libc::close(fds[1]) };
    let mut reader = None;
    let res = (|| -> Result<(), String> {
        // The reader's copy faults on its buffer: the agent sees the fetch.
        let start = Instant::now();
        let fetch = loop {
            let msgs = drain(&agent)?;
            if let Some(m) = msgs.into_iter().find(|m| m.kind == abi::RMEM_MSG_FETCH) {
                break m;
            }
            if let Some(st) = try_reap(pid, &mut reader) {
                return Err(format!(
                    "the reader ended (status {st:#x}) without fetching its buffer"
                ));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err("no fetch of the reader's buffer in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if fetch.page != 0 {
            return Err(format!("fetch {fetch:?}, want page 0"));
        }
        // A commit, a detach and a re-attach while the reader waits for its buffer.
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let t = Instant::now();
            let commit = open().and_then(|d| {
                d.journal_tx(&[(8192, COMMITTED)])
                    .map_err(|e| format!("commit while a reader waits: {e}"))
            });
            let commit_latency = t.elapsed();
            let t = Instant::now();
            let reattach = open().and_then(|d| {
                d.journal_detach()
                    .map_err(|e| format!("detach while a reader waits: {e}"))?;
                attach(&d, None).map_err(|e| format!("re-attach while a reader waits: {e}"))
            });
            tx.send((commit, commit_latency, reattach, t.elapsed()))
                .ok();
        });
        let during = rx.recv_timeout(SLOW_BUFFER_HOLD).ok();
        let before_arrival = during.is_some();
        let reader_waited = try_reap(pid, &mut reader).is_none();
        // The page arrives: the reader's copy completes.
        reply(&agent, &fetch, Some(&[0u8; PAGE])).map_err(|e| format!("reply: {e}"))?;
        let arrived = Instant::now();
        let status = loop {
            if let Some(st) = try_reap(pid, &mut reader) {
                break st;
            }
            if arrived.elapsed() > Duration::from_secs(30) {
                return Err("the reader did not end 30 s after its page arrived".into());
            }
            for m in drain(&agent)? {
                if m.kind == abi::RMEM_MSG_FETCH {
                    reply(&agent, &m, Some(&[0u8; PAGE]))
                        .map_err(|e| format!("reply to {m:?}: {e}"))?;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let (commit, latency, reattach, reattach_latency) = match during {
            Some(r) => r,
            None => rx
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| "the commit did not end 30 s after the reader's page arrived")?,
        };
        writer
            .join()
            .map_err(|_| "the committing thread panicked")?;
        println!(
            "while a reader waited {SLOW_BUFFER_HOLD:?} for its buffer: commit latency {latency:?}, detach and re-attach {reattach_latency:?} ({})",
            if before_arrival {
                "done before the buffer arrived"
            } else {
                "done only after the buffer arrived"
            }
        );
        commit?;
        if !before_arrival || latency >= COMMIT_WHILE_READING_MAX {
            return Err(format!(
                "a commit took {latency:?} while a reader's copy waited for its buffer (want under {COMMIT_WHILE_READING_MAX:?}, before the buffer arrives)"
            ));
        }
        reattach?;
        if !reader_waited {
            return Err("the reader ended before its buffer arrived".into());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(format!("reader: status {status:#x}"));
        }
        let mut r = [0u8; 8];
        // SAFETY: reads 8 bytes into `r` from the pipe's read end.
        let got = unsafe { libc::read(fds[0], r.as_mut_ptr().cast(), 8) };
        let n = i64::from_ne_bytes(r);
        if got != 8 {
            return Err("the reader reported nothing".into());
        }
        if n != CHUNK as i64 {
            return Err(format!(
                "the read returned {n}, want {CHUNK}: its first chunk, the journal being re-attached before the second"
            ));
        }
        let mut got = vec![0u8; CHUNK];
        map.read_bytes(0, &mut got);
        if got != before {
            return Err("the reader's buffer does not hold the bytes it read".into());
        }
        if read_at(8192, COMMITTED.len())? != COMMITTED {
            return Err("the commit made while the reader waited is not in place".into());
        }
        Ok(())
    })();
    if try_reap(pid, &mut reader).is_none() {
        // A fatal signal ends a fault's wait for its page.
        // SAFETY: kills and reaps the child forked above.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    // SAFETY: the pipe's read end, not used after this.
    unsafe { libc::close(fds[0]) };
    res.map(|()| Outcome::Pass)
}

pub fn journal_bad_tx_rejected(_: &crate::Options) -> TestResult {
    let Some(dev) = fresh(8, 1024)? else {
        return no_pmem();
    };
    let s = status(&dev)?;
    let before = read_at(0, 64)?;
    let data = [0xabu8; 2048];
    let r = |offset, len| abi::JournalRange {
        offset,
        len,
        data: data.as_ptr() as u64,
    };
    let cases: Vec<(&str, u32, Vec<abi::JournalRange>, i32)> = vec![
        ("no ranges", 0, vec![], libc::EINVAL),
        ("zero length", 1, vec![r(0, 0)], libc::EINVAL),
        (
            "past the data region",
            1,
            vec![r(s.data_size - 4, 8)],
            libc::EINVAL,
        ),
        ("offset overflow", 1, vec![r(u64::MAX - 2, 8)], libc::EINVAL),
        ("larger than an MJ", 1, vec![r(0, 1024)], libc::E2BIG),
        ("huge length", 1, vec![r(0, 1 << 40)], libc::E2BIG),
        (
            "too many ranges",
            s.max_ranges + 1,
            vec![r(0, 1); s.max_ranges as usize + 1],
            libc::E2BIG,
        ),
        (
            "over the range limit",
            1025,
            vec![r(0, 1); 1025],
            libc::E2BIG,
        ),
        (
            "second range bad",
            2,
            vec![r(0, 4), r(s.data_size, 1)],
            libc::EINVAL,
        ),
        (
            "bad data pointer",
            1,
            vec![abi::JournalRange {
                offset: 0,
                len: 8,
                data: 8,
            }],
            libc::EFAULT,
        ),
    ];
    for (what, nr, ranges, errno) in cases {
        expect_errno(what, dev.journal_tx_ranges(&ranges, nr), errno)?;
    }
    // A range array the kernel cannot read.
    let req = abi::JournalTx {
        size: 32,
        ranges: 16,
        nr_ranges: 1,
        ..Default::default()
    };
    expect_errno(
        "bad ranges pointer",
        dev.call(abi::IOC_JOURNAL_TX, &req),
        libc::EFAULT,
    )?;
    expect_errno(
        "non-zero padding",
        dev.call(abi::IOC_JOURNAL_TX, &abi::JournalTx { pad: 1, ..req }),
        libc::EINVAL,
    )?;
    expect_errno(
        "unknown flags",
        dev.call(abi::IOC_JOURNAL_TX, &abi::JournalTx { flags: 2, ..req }),
        libc::EINVAL,
    )?;
    let after = status(&dev)?;
    if after.transactions != 0 || after.next_id != 1 || read_at(0, 64)? != before {
        return Err(format!(
            "a refused transaction changed the journal: {after:?}"
        ));
    }
    // And a valid one still works.
    dev.journal_tx(&[(0, b"ok")])
        .map_err(|e| format!("valid tx after refusals: {e}"))?;
    Ok(Outcome::Pass)
}

pub fn journal_attach_errors(_: &crate::Options) -> TestResult {
    if !std::path::Path::new(&pmem_path()).exists() {
        return no_pmem();
    }
    let dev = open()?;
    dev.journal_detach().ok();
    expect_errno("detach when detached", dev.journal_detach(), libc::ENODEV)?;
    expect_errno(
        "tx when detached",
        dev.journal_tx(&[(0, b"x")]),
        libc::ENODEV,
    )?;
    let bad = |p: &str, flags, mj_count, mj_size| {
        let c = CString::new(p).unwrap();
        dev.call(
            abi::IOC_JOURNAL_ATTACH,
            &abi::JournalAttach {
                size: 24,
                flags,
                path: c.as_ptr() as u64,
                mj_count,
                mj_size,
            },
        )
    };
    expect_errno(
        "missing path",
        bad("/dev/nonexistent", 0, 0, 0),
        libc::ENOENT,
    )?;
    expect_errno(
        "not a block device",
        bad("/dev/null", 0, 0, 0),
        libc::ENOTBLK,
    )?;
    expect_errno(
        "unknown flags",
        bad(&pmem_path(), 1 << 5, 0, 0),
        libc::EINVAL,
    )?;
    expect_errno(
        "MJ size not a multiple of 64",
        bad(&pmem_path(), abi::JOURNAL_ATTACH_FORMAT, 8, 1000),
        libc::EINVAL,
    )?;
    expect_errno(
        "one MJ",
        bad(&pmem_path(), abi::JOURNAL_ATTACH_FORMAT, 1, 4096),
        libc::EINVAL,
    )?;
    expect_errno(
        "bigger than the device",
        bad(&pmem_path(), abi::JOURNAL_ATTACH_FORMAT, 65536, 1 << 24),
        libc::ENOSPC,
    )?;
    // An unformatted device: wipe the superblock through the block device first.
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(pmem_path())
            .map_err(|e| format!("open pmem: {e}"))?;
        f.write_all_at(&[0u8; 4096], 0)
            .map_err(|e| format!("wipe: {e}"))?;
        f.sync_all().ok();
    }
    expect_errno(
        "unformatted device",
        bad(&pmem_path(), 0, 0, 0),
        libc::EMEDIUMTYPE,
    )?;
    Ok(Outcome::Pass)
}

pub fn journal_recovery_on_reattach(_: &crate::Options) -> TestResult {
    let Some(dev) = fresh(8, 1024)? else {
        return no_pmem();
    };
    let mut last = 0;
    for i in 0..20u64 {
        last = dev
            .journal_tx(&[(i * 8, &i.to_le_bytes()), (4096 + i, &[i as u8])])
            .map_err(|e| format!("tx {i}: {e}"))?;
    }
    dev.journal_detach().map_err(|e| format!("detach: {e}"))?;
    attach(&dev, None).map_err(|e| format!("re-attach: {e}"))?;
    let s = status(&dev)?;
    println!(
        "recovery: replayed {} discarded {} stale {} incomplete {} empty {} lwm {} in {} ns",
        s.rec_replayed,
        s.rec_discarded,
        s.rec_stale,
        s.rec_incomplete,
        s.rec_empty,
        s.rec_lwm,
        s.rec_ns
    );
    // Recovery seals the journal with one commit of its own.
    if s.next_id != last + 2 {
        return Err(format!(
            "next id {} after re-attach, want {} (last + the seal)",
            s.next_id,
            last + 2
        ));
    }
    if s.rec_replayed == 0
        || s.rec_discarded != 0
        || s.rec_replayed + s.rec_stale + s.rec_incomplete + s.rec_empty != 8
    {
        return Err(format!("recovery report: {s:?}"));
    }
    for i in 0..20u64 {
        if read_at(i * 8, 8)? != i.to_le_bytes() || read_at(4096 + i, 1)? != [i as u8] {
            return Err(format!("transaction {i} lost across detach/attach"));
        }
    }
    Ok(Outcome::Pass)
}

pub fn journal_group_commit(_: &crate::Options) -> TestResult {
    let Some(s) = concurrent_writers()? else {
        return no_pmem();
    };
    if s.barriers > s.transactions {
        return Err(format!("more barriers than transactions: {s:?}"));
    }
    Ok(Outcome::Pass)
}

/// Four writers commit 50 transactions each at once on a fresh journal, each to slots
/// of its own: every commit id is distinct and every writer's last values are in
/// place. Returns the journal's status afterwards; `None` without a pmem device.
fn concurrent_writers() -> Result<Option<abi::JournalStatus>, String> {
    let Some(dev) = fresh(32, 1024)? else {
        return Ok(None);
    };
    drop(dev);
    let threads = 4u64;
    let per = 50u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || -> Result<Vec<u64>, String> {
                let dev = open()?;
                let mut ids = Vec::new();
                for i in 0..per {
                    let v = (t << 32 | i).to_le_bytes();
                    // Each writer owns its slots: thread t writes slot t and slot 64 + t.
                    ids.push(
                        dev.journal_tx(&[(t * 8, &v), ((64 + t) * 8, &v)])
                            .map_err(|e| format!("thread {t} tx {i}: {e}"))?,
                    );
                }
                Ok(ids)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "writer panicked")??);
    }
    all.sort_unstable();
    all.dedup();
    if all.len() as u64 != threads * per {
        return Err(format!(
            "{} distinct commit ids for {} transactions",
            all.len(),
            threads * per
        ));
    }
    for t in 0..threads {
        let want = (t << 32 | (per - 1)).to_le_bytes();
        if read_at(t * 8, 8)? != want || read_at((64 + t) * 8, 8)? != want {
            return Err(format!("thread {t}: last value not in place"));
        }
    }
    let s = status(&open()?)?;
    println!(
        "{} transactions in {} groups, {} barriers ({:.2} per transaction), {} device flushes",
        s.transactions,
        s.groups,
        s.barriers,
        s.barriers as f64 / s.transactions as f64,
        s.device_flushes
    );
    if s.transactions != threads * per {
        return Err(format!("counters: {s:?}"));
    }
    Ok(Some(s))
}

/// Loads the module again with the given parameters for the rest of a test, and with
/// none when dropped, however the test ends.
struct Reloaded<'a>(&'a str);

impl<'a> Reloaded<'a> {
    fn with(path: &'a str, params: &CStr) -> Result<Reloaded<'a>, String> {
        if module_tests::loaded()? {
            module_tests::unload().map_err(|e| format!("unload: {e}"))?;
        }
        let reloaded = Reloaded(path);
        module_tests::load_with(path, params)
            .map_err(|e| format!("load {path} {params:?}: {e}"))?;
        Ok(reloaded)
    }
}

impl Drop for Reloaded<'_> {
    fn drop(&mut self) {
        if module_tests::loaded().unwrap_or(true) {
            let _ = module_tests::unload();
        }
        let _ = module_tests::load_with(self.0, c"");
    }
}

/// `group_commit=never`, what the default `auto` does where the DAX mapping is
/// synchronous (the test guest's virtio-pmem is not): each writer commits its own
/// transaction under the journal lock, with no leader. Four writers at once still get
/// distinct ids and their last values in place, and each transaction is a group of
/// its own with its own barrier. A value other than `auto`, `always` or `never` is
/// refused at load.
pub fn journal_commit_without_grouping(opts: &crate::Options) -> TestResult {
    let path = match module_tests::module_path(opts) {
        Ok(p) => p,
        Err(skip) => return Ok(skip),
    };
    if !std::path::Path::new(&pmem_path()).exists() {
        return no_pmem();
    }
    {
        let bogus = Reloaded::with(path, c"group_commit=sometimes");
        match bogus {
            Err(e) if e.contains("Invalid argument") => {}
            Err(e) => return Err(format!("group_commit=sometimes: {e}, want EINVAL")),
            Ok(_) => return Err("group_commit=sometimes was accepted".into()),
        }
    }
    let _reloaded = Reloaded::with(path, c"group_commit=never")?;
    let param = std::fs::read_to_string("/sys/module/memkit/parameters/group_commit")
        .map_err(|e| format!("/sys/module/memkit/parameters/group_commit: {e}"))?;
    if param.trim() != "never" {
        return Err(format!(
            "group_commit reads {param:?} after loading with never"
        ));
    }
    let Some(s) = concurrent_writers()? else {
        return no_pmem();
    };
    if s.groups != s.transactions || s.barriers != s.transactions {
        return Err(format!(
            "each writer commits its own: want one group and one barrier per transaction, got {s:?}"
        ));
    }
    Ok(Outcome::Pass)
}
