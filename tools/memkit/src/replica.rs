//! The backup's replica: a file with the primary's memory as of the last complete
//! checkpoint, committed atomically, and the patent's diff feedback.
//!
//! A replica directory holds
//!
//! - `replica`: the region's bytes;
//! - `checkpoint.log`: the pages of the last committed checkpoint (a redo log);
//! - `checkpoint.log.tmp`: while a checkpoint is being committed.
//!
//! Commit of checkpoint *n*: write its pages to `checkpoint.log.tmp` and `fsync` it;
//! `rename` it over `checkpoint.log` and `fsync` the directory — the commit point;
//! then write the pages into `replica` and `fsync` it. Recovery (on open) deletes a
//! leftover `.tmp` and writes the log's pages into `replica` again, which is
//! idempotent. So a crash at any moment leaves checkpoint *n* (renamed) or *n − 1*
//! (not yet), never a mixture; and `replica` alone is exactly the last committed
//! checkpoint whenever no commit is running.
//!
//! Log format (little-endian): a 48-byte header — magic `MKCKLOG1`, version (u32),
//! 0 (u32), checkpoint number (u64), replica bytes (u64), page count (u64), crc32c
//! (u32) of the header with this field 0 followed by every entry, 0 (u32) — then
//! one entry per page: its index (u64) and its 4096 bytes, indexes increasing.

use memkit_core::ckpt::diff::{self, Params, PAGE};
use memkit_core::crc32c::crc32c;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"MKCKLOG1";
const LOG_VERSION: u32 = 1;
const LOG_HEADER: usize = 48;
const ENTRY: usize = 8 + PAGE;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A replica directory locked for one process (`flock` on the directory): one
/// backup serves a directory at a time, and `memkit ckpt restore` does not read one
/// a backup is committing to. Unlocked when dropped (and when the process dies).
pub struct DirLock {
    _dir: File,
}

impl DirLock {
    /// Locks `dir`, or fails at once (`WouldBlock`) if another process holds it.
    pub fn take(dir: &Path) -> io::Result<DirLock> {
        let f = File::open(dir)?;
        // SAFETY: flock(2) on a descriptor `f` owns; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(DirLock { _dir: f });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(e);
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{} is in use by another process (a backup serving it?)",
                dir.display()
            ),
        ))
    }
}

/// Where a commit stops early: for tests of what recovery makes of each state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Half of the temporary log written.
    TornTmpLog,
    /// The temporary log complete and synced, not renamed.
    TmpLogSynced,
    /// Renamed (committed), half of the pages written into `replica`.
    HalfApplied,
}

/// How long a commit's steps took.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommitTimes {
    /// The log encoded, written and synced.
    pub log: Duration,
    /// Renamed over the last one and the directory synced: the commit point.
    pub rename: Duration,
    /// The pages written into `replica`, and synced.
    pub apply: Duration,
}

/// A checkpoint being received: the new contents of the pages it touched.
#[derive(Default)]
pub struct Staged {
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Staged {
    /// Pages touched so far.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no page was touched.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// An open replica directory.
pub struct Replica {
    dir: PathBuf,
    file: File,
    bytes: u64,
    committed: u64,
}

impl Replica {
    fn log_path(dir: &Path) -> PathBuf {
        dir.join("checkpoint.log")
    }

    fn tmp_path(dir: &Path) -> PathBuf {
        dir.join("checkpoint.log.tmp")
    }

    /// Opens the replica in `dir` and recovers it to its last committed checkpoint;
    /// creates an empty (zero) one of `bytes` if there is none. `bytes` must match an
    /// existing replica (`None`: whatever it is; then one must exist).
    pub fn open(dir: &Path, bytes: Option<u64>) -> io::Result<Replica> {
        if let Some(b) = bytes {
            if b == 0 || !b.is_multiple_of(PAGE as u64) {
                return Err(bad(format!("a replica of {b} bytes: not a page multiple")));
            }
        }
        fs::create_dir_all(dir)?;
        let path = dir.join("replica");
        let file = match bytes {
            Some(b) if !path.exists() => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                f.set_len(b)?;
                f.sync_all()?;
                File::open(dir)?.sync_all()?;
                f
            }
            _ => OpenOptions::new().read(true).write(true).open(&path)?,
        };
        let have = file.metadata()?.len();
        if bytes.is_some_and(|b| b != have) {
            return Err(bad(format!(
                "{} is {have} bytes, the region {} bytes: use another directory",
                path.display(),
                bytes.unwrap_or(0)
            )));
        }
        let mut r = Replica {
            dir: dir.to_path_buf(),
            file,
            bytes: have,
            committed: 0,
        };
        r.recover()?;
        Ok(r)
    }

    fn recover(&mut self) -> io::Result<()> {
        match fs::remove_file(Self::tmp_path(&self.dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut log = match File::open(Self::log_path(&self.dir)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        let (seq, entries) = decode_log(&bytes, self.bytes)?;
        for (page, data) in entries {
            self.file.write_all_at(data, page * PAGE as u64)?;
        }
        self.file.sync_data()?;
        self.committed = seq;
        Ok(())
    }

    /// The checkpoint `dir`'s replica holds, read without recovering or writing
    /// anything (for `verify` next to a running backup; it holds that checkpoint
    /// exactly whenever no commit is in progress).
    pub fn committed_in(dir: &Path) -> io::Result<u64> {
        let bytes = fs::metadata(dir.join("replica"))?.len();
        match fs::read(Self::log_path(dir)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
            Ok(log) => decode_log(&log, bytes).map(|(seq, _)| seq),
        }
    }

    /// Bytes of the replica.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Pages of the replica.
    pub fn pages(&self) -> u64 {
        self.bytes / PAGE as u64
    }

    /// The last committed checkpoint (0: none).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Reads `buf.len()` bytes at `offset` as committed.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.bytes => self.file.read_exact_at(buf, offset),
            _ => Err(bad(format!(
                "{} bytes at {offset}: outside the replica",
                buf.len()
            ))),
        }
    }

    /// Reads page `page` as committed.
    pub fn read_page(&self, page: u64, buf: &mut [u8]) -> io::Result<()> {
        if page >= self.pages() || buf.len() != PAGE {
            return Err(bad(format!("page {page} outside the replica")));
        }
        self.file.read_exact_at(buf, page * PAGE as u64)
    }

    /// Applies the records `buf` to `staged`, each on top of the page's staged
    /// version or else its committed one. A malformed record or a page outside the
    /// replica is an error; what was applied before it stays staged.
    pub fn stage(&self, p: Params, staged: &mut Staged, buf: &[u8]) -> io::Result<u64> {
        let mut n = 0;
        for rec in diff::records(p, buf) {
            let rec = rec.map_err(|e| bad(format!("malformed record: {e:?}")))?;
            let page = rec.page();
            if page >= self.pages() {
                return Err(bad(format!(
                    "a record for page {page} of a {}-page replica",
                    self.pages()
                )));
            }
            let dst = match staged.pages.entry(page) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let mut b = vec![0u8; PAGE].into_boxed_slice();
                    self.read_page(page, &mut b)?;
                    e.insert(b)
                }
            };
            rec.apply(p, dst)
                .map_err(|e| bad(format!("malformed record: {e:?}")))?;
            n += 1;
        }
        Ok(n)
    }

    /// Difference values of the staged pages against their committed versions:
    /// `(page, changed segments)`.
    pub fn difference_values(&self, p: Params, staged: &Staged) -> io::Result<Vec<(u64, u32)>> {
        let mut old = vec![0u8; PAGE];
        staged
            .pages
            .iter()
            .map(|(&page, new)| {
                self.read_page(page, &mut old)?;
                Ok((page, diff::changed(p, &old, new).count_ones()))
            })
            .collect()
    }

    /// Commits `staged` as checkpoint `seq` (see the module documentation); how long
    /// its steps took.
    pub fn commit(&mut self, seq: u64, staged: Staged) -> io::Result<CommitTimes> {
        let mut t = CommitTimes::default();
        self.commit_until(seq, staged, None, &mut t)?;
        Ok(t)
    }

    /// [`Replica::commit`], stopping at `crash` (tests only: the replica must then be
    /// reopened, as after a crash).
    pub fn commit_until(
        &mut self,
        seq: u64,
        staged: Staged,
        crash: Option<CrashPoint>,
        times: &mut CommitTimes,
    ) -> io::Result<()> {
        let start = Instant::now();
        if seq <= self.committed {
            return Err(bad(format!(
                "checkpoint {seq} after {}: numbers must increase",
                self.committed
            )));
        }
        let log = encode_log(seq, self.bytes, &staged.pages);
        let tmp = Self::tmp_path(&self.dir);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        if crash == Some(CrashPoint::TornTmpLog) {
            return f.write_all(&log[..log.len() / 2]);
        }
        f.write_all(&log)?;
        f.sync_all()?;
        drop(f);
        if crash == Some(CrashPoint::TmpLogSynced) {
            return Ok(());
        }
        times.log = start.elapsed();
        fs::rename(&tmp, Self::log_path(&self.dir))?;
        File::open(&self.dir)?.sync_all()?;
        times.rename = start.elapsed() - times.log;
        let half = staged.pages.len() / 2;
        for (i, (page, data)) in staged.pages.iter().enumerate() {
            if crash == Some(CrashPoint::HalfApplied) && i == half {
                return Ok(());
            }
            self.file.write_all_at(data, page * PAGE as u64)?;
        }
        self.file.sync_data()?;
        self.committed = seq;
        times.apply = start.elapsed() - times.log - times.rename;
        Ok(())
    }
}

fn encode_log(seq: u64, bytes: u64, pages: &BTreeMap<u64, Box<[u8]>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER + pages.len() * ENTRY);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&LOG_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&bytes.to_le_bytes());
    out.extend_from_slice(&(pages.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    for (page, data) in pages {
        out.extend_from_slice(&page.to_le_bytes());
        out.extend_from_slice(data);
    }
    let crc = crc32c(&out);
    out[40..44].copy_from_slice(&crc.to_le_bytes());
    out
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A log's pages: index and contents.
type LogPages<'a> = Vec<(u64, &'a [u8])>;

/// Checks a log of a replica of `bytes` and returns its checkpoint number and pages.
fn decode_log(log: &[u8], bytes: u64) -> io::Result<(u64, LogPages<'_>)> {
    if log.len() < LOG_HEADER || &log[..8] != MAGIC {
        return Err(bad("checkpoint.log: not a checkpoint log"));
    }
    let version = u32::from_le_bytes(log[8..12].try_into().expect("4 bytes"));
    if version != LOG_VERSION {
        return Err(bad(format!("checkpoint.log: version {version}")));
    }
    let (seq, log_bytes, count) = (le64(log, 16), le64(log, 24), le64(log, 32));
    let crc = u32::from_le_bytes(log[40..44].try_into().expect("4 bytes"));
    let want = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(ENTRY))
        .and_then(|n| n.checked_add(LOG_HEADER));
    if want != Some(log.len()) {
        return Err(bad(format!(
            "checkpoint.log: {} bytes for {count} pages",
            log.len()
        )));
    }
    let mut zeroed = log[..LOG_HEADER].to_vec();
    zeroed[40..44].fill(0);
    let mut c = memkit_core::crc32c::Crc32c::new();
    c.update(&zeroed);
    c.update(&log[LOG_HEADER..]);
    if c.finish() != crc {
        return Err(bad("checkpoint.log: checksum mismatch"));
    }
    if log_bytes != bytes {
        return Err(bad(format!(
            "checkpoint.log is for {log_bytes} bytes, the replica is {bytes}"
        )));
    }
    let mut entries = Vec::new();
    let mut last = None;
    for e in log[LOG_HEADER..].chunks_exact(ENTRY) {
        let page = le64(e, 0);
        if page >= bytes / PAGE as u64 || last.is_some_and(|l| page <= l) {
            return Err(bad(format!(
                "checkpoint.log: page {page} out of order or range"
            )));
        }
        last = Some(page);
        entries.push((page, &e[8..]));
    }
    Ok((seq, entries))
}

/// The backup's feedback: difference values, consecutive low-diff intervals per
/// page, and the list of pages worth diffing.
///
/// A page's interval is *low* when its difference value is at most `max_changed`
/// (it would have gone as a diff). A page enters the list after `after` consecutive
/// low intervals and leaves it at its first high one. Intervals in which a page was
/// not written do not count either way.
pub struct Feedback {
    max_changed: u32,
    after: u32,
    runs: HashMap<u64, u32>,
    list: BTreeSet<u64>,
    changed: bool,
}

impl Feedback {
    /// Feedback with these thresholds (`after` 0 is taken as 1).
    pub fn new(max_changed: u32, after: u32) -> Feedback {
        Feedback {
            max_changed,
            after: after.max(1),
            runs: HashMap::new(),
            list: BTreeSet::new(),
            changed: false,
        }
    }

    /// Takes the difference values of one checkpoint.
    pub fn observe(&mut self, values: &[(u64, u32)]) {
        for &(page, dv) in values {
            if dv <= self.max_changed {
                let run = self.runs.entry(page).or_insert(0);
                *run = run.saturating_add(1);
                if *run >= self.after && self.list.insert(page) {
                    self.changed = true;
                }
            } else {
                self.runs.remove(&page);
                if self.list.remove(&page) {
                    self.changed = true;
                }
            }
        }
    }

    /// The list, if it changed since the last call.
    pub fn take_changed(&mut self) -> Option<Vec<u64>> {
        std::mem::take(&mut self.changed).then(|| self.list.iter().copied().collect())
    }

    /// Consecutive low intervals of `page`.
    pub fn run(&self, page: u64) -> u32 {
        self.runs.get(&page).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("memkit-replica-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn full(page: u64, byte: u8) -> Vec<u8> {
        let mut out = vec![0u8; diff::MAX_RECORD];
        let p = Params::new(256, 4).unwrap();
        diff::encode(p, page, &[byte; PAGE], None, &mut out).unwrap();
        out
    }

    fn staged(r: &Replica, recs: &[(u64, u8)]) -> Staged {
        let p = Params::new(256, 4).unwrap();
        let mut s = Staged::default();
        for &(page, byte) in recs {
            r.stage(p, &mut s, &full(page, byte)).unwrap();
        }
        s
    }

    fn page(r: &Replica, i: u64) -> u8 {
        let mut b = vec![0u8; PAGE];
        r.read_page(i, &mut b).unwrap();
        assert!(b.iter().all(|&x| x == b[0]), "page {i} is mixed");
        b[0]
    }

    #[test]
    fn commits_and_reopens() {
        let d = tmpdir("commit");
        let mut r = Replica::open(&d, Some(8 * PAGE as u64)).unwrap();
        assert_eq!(r.committed(), 0);
        let s = staged(&r, &[(1, 7), (3, 9), (1, 8)]);
        assert_eq!(s.len(), 2);
        r.commit(1, s).unwrap();
        drop(r);
        let r = Replica::open(&d, None).unwrap();
        assert_eq!(
            (r.committed(), page(&r, 1), page(&r, 3), page(&r, 0)),
            (1, 8, 9, 0)
        );
        drop(r);
        assert!(
            Replica::open(&d, Some(4 * PAGE as u64)).is_err(),
            "size mismatch"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_is_locked_by_one_holder() {
        let d = tmpdir("lock");
        fs::create_dir_all(&d).unwrap();
        let held = DirLock::take(&d).unwrap();
        let e = DirLock::take(&d).err().expect("a second lock");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(e.to_string().contains("in use"), "{e}");
        drop(held);
        // Free again; a child another test forks may hold the descriptor for a
        // moment (until its exec or close_range), so allow it that.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while DirLock::take(&d).is_err() {
            assert!(
                std::time::Instant::now() < end,
                "still locked after the drop"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn every_crash_point_recovers_to_one_checkpoint() {
        for (crash, want) in [
            (CrashPoint::TornTmpLog, (1, 5)),
            (CrashPoint::TmpLogSynced, (1, 5)),
            (CrashPoint::HalfApplied, (2, 6)),
        ] {
            let d = tmpdir(&format!("{crash:?}"));
            let mut r = Replica::open(&d, Some(16 * PAGE as u64)).unwrap();
            let s = staged(&r, &(0..16).map(|i| (i, 5)).collect::<Vec<_>>());
            r.commit(1, s).unwrap();
            let s = staged(&r, &(0..16).map(|i| (i, 6)).collect::<Vec<_>>());
            r.commit_until(2, s, Some(crash), &mut CommitTimes::default())
                .unwrap();
            drop(r);
            let r = Replica::open(&d, None).unwrap();
            assert_eq!(r.committed(), want.0, "{crash:?}");
            for i in 0..16 {
                assert_eq!(page(&r, i), want.1, "{crash:?} page {i}");
            }
            assert!(!Replica::tmp_path(&d).exists());
            let _ = fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn bad_records_and_logs_are_refused() {
        let d = tmpdir("bad");
        let mut r = Replica::open(&d, Some(4 * PAGE as u64)).unwrap();
        let p = Params::new(256, 4).unwrap();
        let mut s = Staged::default();
        assert!(
            r.stage(p, &mut s, &full(4, 1)).is_err(),
            "page past the end"
        );
        assert!(r.stage(p, &mut s, &full(0, 1)[..100]).is_err(), "truncated");
        assert!(r.commit(0, Staged::default()).is_err(), "seq 0");
        r.commit(1, staged(&r, &[(0, 1)])).unwrap();
        // A flipped byte in the committed log: refused on open, not applied.
        let log = Replica::log_path(&d);
        let mut bytes = fs::read(&log).unwrap();
        bytes[LOG_HEADER + 100] ^= 1;
        fs::write(&log, &bytes).unwrap();
        drop(r);
        assert!(Replica::open(&d, None).is_err());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn feedback_lists_pages_after_consecutive_low_intervals() {
        let mut f = Feedback::new(4, 2);
        f.observe(&[(1, 1), (2, 64)]);
        assert_eq!(f.take_changed(), None);
        f.observe(&[(1, 0), (2, 2)]);
        assert_eq!(f.take_changed(), Some(vec![1]));
        f.observe(&[(2, 3)]);
        assert_eq!(f.take_changed(), Some(vec![1, 2]));
        assert_eq!(f.take_changed(), None);
        f.observe(&[(1, 5)]);
        assert_eq!((f.take_changed(), f.run(1)), (Some(vec![2]), 0));
    }
}
