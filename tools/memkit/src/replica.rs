//! The backup's replica: a file with the primary's memory as of the last complete
//! checkpoint, committed atomically, and the patent's diff feedback.
//!
//! A replica directory holds
//!
//! - `replica`: the region's bytes;
//! - `checkpoint.log`: the pages of the last committed checkpoint (a redo log);
//! - `checkpoint.log.tmp`: while a checkpoint is being committed.
//!
//! Commit of checkpoint *n*: write its records, as received, to
//! `checkpoint.log.tmp` (one write) and `fsync` it; `rename` it over
//! `checkpoint.log` and `fsync` the directory — the commit point; then apply the
//! records to `replica` (a whole page or a diff's changed segments, copied through
//! a shared mapping of the file, nothing read) and `fdatasync` it. Recovery (on open) deletes a leftover
//! `.tmp` and applies the log's records to `replica` again: every record sets bytes
//! to values, and a diff's unchanged segments were already right (the previous
//! checkpoint was applied and synced before this one's log was written), so
//! applying twice is applying once. A crash at any moment leaves checkpoint *n*
//! (renamed) or *n − 1* (not yet), never a mixture; and `replica` alone is exactly
//! the last committed checkpoint whenever no commit is running.
//!
//! Log format, version 2 (little-endian): a 48-byte header — magic `MKCKLOG2`,
//! version (u32, 2), diff segment bytes (u32), checkpoint number (u64), replica
//! bytes (u64), record count (u64), crc32c of the records (u32), crc32c of the
//! header's first 44 bytes (u32) — then the checkpoint's records
//! (`memkit_core::ckpt::diff`), exactly as the primary sent them. The crc32c of the
//! records is the one the stream's END carried, computed once as they arrive.
//! Version 1 logs (`MKCKLOG1`: whole pages, each after its index) are still
//! recovered.

use memkit_core::ckpt::diff::{self, Params, PAGE};
use memkit_core::crc32c::{crc32c, Crc32c};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"MKCKLOG2";
const LOG_VERSION: u32 = 2;
const MAGIC_V1: &[u8; 8] = b"MKCKLOG1";
const LOG_HEADER: usize = 48;
const ENTRY_V1: usize = 8 + PAGE;

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

/// A checkpoint being received: its records, as they will be logged, and per page
/// the segments they change.
pub struct Staged {
    /// The log: its header's room, then the records.
    log: Vec<u8>,
    records: u64,
    crc: Crc32c,
    segment: Option<u32>,
    /// Per page touched: the segments that differ from the committed version.
    masks: BTreeMap<u64, u64>,
}

impl Default for Staged {
    fn default() -> Staged {
        Staged {
            log: vec![0; LOG_HEADER],
            records: 0,
            crc: Crc32c::new(),
            segment: None,
            masks: BTreeMap::new(),
        }
    }
}

impl Staged {
    /// Pages touched so far.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether no page was touched.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// Records staged so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// crc32c of the records staged so far, in order (what END carries).
    pub fn crc(&self) -> u32 {
        self.crc.finish()
    }
}

/// `replica` mapped shared: the committed version of a page read, and records
/// applied, without a system call each (the file's `fdatasync` still makes what was
/// written through the mapping durable).
struct FileMap {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl FileMap {
    fn new(file: &File, len: usize) -> io::Result<FileMap> {
        // SAFETY: a new shared mapping of `len` bytes of an open file, at an
        // address the kernel chooses.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast()).ok_or_else(io::Error::last_os_error)?;
        Ok(FileMap { ptr, len })
    }

    /// Page `page` (the caller checked it is one of the file's).
    ///
    /// In this process the file is written only through [`FileMap::page_mut`],
    /// which borrows the map mutably, so not while a slice returned here lives.
    /// Other processes keep out of a locked directory (`DirLock`), and the file's
    /// length never changes.
    fn page(&self, page: u64) -> &[u8] {
        let at = self.at(page);
        // SAFETY: inside the mapping, which lives as long as `self`; nothing
        // writes it while the slice lives (see above).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(at), PAGE) }
    }

    /// Page `page`, to write (the caller checked it is one of the file's; see
    /// [`FileMap::page`]).
    fn page_mut(&mut self, page: u64) -> &mut [u8] {
        let at = self.at(page);
        // SAFETY: inside the mapping, which lives as long as `self`; the mutable
        // borrow of `self` excludes every other slice of it in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), PAGE) }
    }

    /// The byte offset of page `page`, which must be inside the mapping.
    fn at(&self, page: u64) -> usize {
        let at = usize::try_from(page)
            .ok()
            .and_then(|p| p.checked_mul(PAGE))
            .filter(|&at| at.checked_add(PAGE).is_some_and(|end| end <= self.len));
        at.unwrap_or_else(|| panic!("page {page} outside the mapping"))
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: `self` owns the mapping; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An open replica directory.
pub struct Replica {
    dir: PathBuf,
    file: File,
    bytes: u64,
    committed: u64,
    map: FileMap,
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
        let len = usize::try_from(have).map_err(|_| bad("a replica too large to map"))?;
        let map = FileMap::new(&file, len)?;
        let mut r = Replica {
            dir: dir.to_path_buf(),
            file,
            bytes: have,
            committed: 0,
            map,
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
        match decode_log(&bytes, self.bytes)? {
            Log::V1 { seq, pages } => {
                for (page, data) in pages {
                    self.file.write_all_at(data, page * PAGE as u64)?;
                }
                self.file.sync_data()?;
                self.committed = seq;
            }
            Log::V2 { seq, p, records } => {
                self.apply(p, records, None)?;
                self.committed = seq;
            }
        }
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
            Ok(log) => decode_log(&log, bytes).map(|l| l.seq()),
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

    /// Checks the records `buf` and adds them to `staged`: each must decode and
    /// name a page of the replica. Returns how many there were; on an error nothing
    /// of `buf` is staged.
    pub fn stage(&self, p: Params, staged: &mut Staged, buf: &[u8]) -> io::Result<u64> {
        let segment = p.segment() as u32;
        if staged.segment.is_some_and(|s| s != segment) {
            return Err(bad("records of two segment sizes in one checkpoint"));
        }
        let mut masks = Vec::new();
        for rec in diff::records(p, buf) {
            let rec = rec.map_err(|e| bad(format!("malformed record: {e:?}")))?;
            let page = rec.page();
            if page >= self.pages() {
                return Err(bad(format!(
                    "a record for page {page} of a {}-page replica",
                    self.pages()
                )));
            }
            let mask = match rec {
                diff::Record::Diff { mask, .. } => mask,
                diff::Record::Full { data, .. } => diff::changed(p, self.map.page(page), data),
            };
            masks.push((page, mask));
        }
        staged.segment = Some(segment);
        staged.log.extend_from_slice(buf);
        staged.crc.update(buf);
        staged.records += masks.len() as u64;
        for &(page, mask) in &masks {
            *staged.masks.entry(page).or_default() |= mask;
        }
        Ok(masks.len() as u64)
    }

    /// Difference values of the staged pages against their committed versions:
    /// `(page, changed segments)`.
    pub fn difference_values(&self, staged: &Staged) -> Vec<(u64, u32)> {
        staged
            .masks
            .iter()
            .map(|(&page, &mask)| (page, mask.count_ones()))
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
        let segment = staged.segment.unwrap_or(diff::PAGE as u32);
        let mut log = staged.log;
        let header = log
            .get_mut(..LOG_HEADER)
            .ok_or_else(|| bad("a staged log without its header"))?;
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&segment.to_le_bytes());
        header[16..24].copy_from_slice(&seq.to_le_bytes());
        header[24..32].copy_from_slice(&self.bytes.to_le_bytes());
        header[32..40].copy_from_slice(&staged.records.to_le_bytes());
        header[40..44].copy_from_slice(&staged.crc.finish().to_le_bytes());
        let hcrc = crc32c(&header[..44]);
        header[44..48].copy_from_slice(&hcrc.to_le_bytes());
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
        let p = Params::new(segment, 0).ok_or_else(|| bad("a staged segment size"))?;
        let half = (staged.records / 2) as usize;
        let stop = (crash == Some(CrashPoint::HalfApplied)).then_some(half);
        self.apply(p, &log[LOG_HEADER..], stop)?;
        if stop.is_some() {
            return Ok(());
        }
        self.committed = seq;
        times.apply = start.elapsed() - times.log - times.rename;
        Ok(())
    }

    /// Writes `records` (checked) into `replica`, then syncs it; with `stop`, only
    /// that many records, unsynced (a crash in the middle).
    fn apply(&mut self, p: Params, records: &[u8], stop: Option<usize>) -> io::Result<()> {
        for (i, rec) in diff::records(p, records).enumerate() {
            if stop == Some(i) {
                return Ok(());
            }
            let rec = rec.map_err(|e| bad(format!("checkpoint.log: a record: {e:?}")))?;
            rec.apply(p, self.map.page_mut(rec.page()))
                .map_err(|e| bad(format!("checkpoint.log: a record: {e:?}")))?;
        }
        self.file.sync_data()
    }
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A log's pages (version 1): index and contents.
type LogPages<'a> = Vec<(u64, &'a [u8])>;

/// A checked log.
enum Log<'a> {
    V1 {
        seq: u64,
        pages: LogPages<'a>,
    },
    V2 {
        seq: u64,
        p: Params,
        records: &'a [u8],
    },
}

impl Log<'_> {
    fn seq(&self) -> u64 {
        match self {
            Log::V1 { seq, .. } | Log::V2 { seq, .. } => *seq,
        }
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks a log of a replica of `bytes`: every field, both checksums, and that
/// each record decodes and names a page of the replica.
fn decode_log(log: &[u8], bytes: u64) -> io::Result<Log<'_>> {
    if log.len() < LOG_HEADER {
        return Err(bad("checkpoint.log: not a checkpoint log"));
    }
    if &log[..8] == MAGIC_V1 {
        return decode_log_v1(log, bytes);
    }
    if &log[..8] != MAGIC {
        return Err(bad("checkpoint.log: not a checkpoint log"));
    }
    let version = le32(log, 8);
    if version != LOG_VERSION {
        return Err(bad(format!("checkpoint.log: version {version}")));
    }
    if crc32c(&log[..44]) != le32(log, 44) {
        return Err(bad("checkpoint.log: header checksum mismatch"));
    }
    let (segment, seq) = (le32(log, 12), le64(log, 16));
    let (log_bytes, count) = (le64(log, 24), le64(log, 32));
    if log_bytes != bytes {
        return Err(bad(format!(
            "checkpoint.log is for {log_bytes} bytes, the replica is {bytes}"
        )));
    }
    let p = Params::new(segment, 0)
        .ok_or_else(|| bad(format!("checkpoint.log: segment size {segment}")))?;
    let records = &log[LOG_HEADER..];
    if crc32c(records) != le32(log, 40) {
        return Err(bad("checkpoint.log: checksum mismatch"));
    }
    let pages = bytes / PAGE as u64;
    let mut n = 0u64;
    for rec in diff::records(p, records) {
        let rec = rec.map_err(|e| bad(format!("checkpoint.log: a record: {e:?}")))?;
        if rec.page() >= pages {
            return Err(bad(format!(
                "checkpoint.log: page {} out of range",
                rec.page()
            )));
        }
        n += 1;
    }
    if n != count {
        return Err(bad(format!(
            "checkpoint.log: {n} records, the header says {count}"
        )));
    }
    Ok(Log::V2 { seq, p, records })
}

/// A version 1 log: whole pages, indexes increasing.
fn decode_log_v1(log: &[u8], bytes: u64) -> io::Result<Log<'_>> {
    let version = le32(log, 8);
    if version != 1 {
        return Err(bad(format!("checkpoint.log: version {version}")));
    }
    let (seq, log_bytes, count) = (le64(log, 16), le64(log, 24), le64(log, 32));
    let crc = le32(log, 40);
    let want = usize::try_from(count)
        .ok()
        .and_then(|c| c.checked_mul(ENTRY_V1))
        .and_then(|n| n.checked_add(LOG_HEADER));
    if want != Some(log.len()) {
        return Err(bad(format!(
            "checkpoint.log: {} bytes for {count} pages",
            log.len()
        )));
    }
    let mut zeroed = log[..LOG_HEADER].to_vec();
    zeroed[40..44].fill(0);
    let mut c = Crc32c::new();
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
    let mut pages = Vec::new();
    let mut last = None;
    for e in log[LOG_HEADER..].chunks_exact(ENTRY_V1) {
        let page = le64(e, 0);
        if page >= bytes / PAGE as u64 || last.is_some_and(|l| page <= l) {
            return Err(bad(format!(
                "checkpoint.log: page {page} out of order or range"
            )));
        }
        last = Some(page);
        pages.push((page, &e[8..]));
    }
    Ok(Log::V1 { seq, pages })
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
        r.read_at(&mut b, i * PAGE as u64).unwrap();
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
    fn diffs_are_logged_as_sent_and_applied_again_on_recovery() {
        let d = tmpdir("diffs");
        let p = Params::new(256, 4).unwrap();
        let mut r = Replica::open(&d, Some(4 * PAGE as u64)).unwrap();
        r.commit(1, staged(&r, &[(0, 5), (1, 5)])).unwrap();
        // Page 0: segment 3 becomes 9s; page 1 whole, one byte changed.
        let mut new = vec![5u8; PAGE];
        new[3 * 256..4 * 256].fill(9);
        let mut rec = vec![0u8; diff::MAX_RECORD];
        let (n, d0) = diff::encode(p, 0, &new, Some(&[5u8; PAGE]), &mut rec).unwrap();
        assert!(d0);
        let mut s = Staged::default();
        assert_eq!(r.stage(p, &mut s, &rec[..n]).unwrap(), 1);
        let mut one = vec![5u8; PAGE];
        one[7] = 6;
        let mut rec1 = vec![0u8; diff::MAX_RECORD];
        diff::encode(p, 1, &one, None, &mut rec1).unwrap();
        r.stage(p, &mut s, &rec1).unwrap();
        assert_eq!(r.difference_values(&s), vec![(0, 1), (1, 1)]);
        assert_eq!(s.records(), 2);
        // Committed, nothing applied yet: recovery applies the log.
        r.commit_until(
            2,
            s,
            Some(CrashPoint::HalfApplied),
            &mut CommitTimes::default(),
        )
        .unwrap();
        drop(r);
        let r = Replica::open(&d, None).unwrap();
        assert_eq!(r.committed(), 2);
        let mut got = vec![0u8; PAGE];
        r.read_at(&mut got, 0).unwrap();
        assert_eq!(got, new);
        r.read_at(&mut got, PAGE as u64).unwrap();
        assert_eq!(got, one);
        // And once more: applying twice is applying once.
        drop(r);
        let r = Replica::open(&d, None).unwrap();
        r.read_at(&mut got, 0).unwrap();
        assert_eq!(got, new);
        drop(r);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_version_1_log_is_still_recovered() {
        let d = tmpdir("v1");
        drop(Replica::open(&d, Some(4 * PAGE as u64)).unwrap());
        // Version 1: header, then (index, page) entries; crc32c over the header
        // with its crc field 0 and the entries.
        let mut log = Vec::new();
        log.extend_from_slice(MAGIC_V1);
        log.extend_from_slice(&1u32.to_le_bytes());
        log.extend_from_slice(&0u32.to_le_bytes());
        log.extend_from_slice(&7u64.to_le_bytes());
        log.extend_from_slice(&(4 * PAGE as u64).to_le_bytes());
        log.extend_from_slice(&1u64.to_le_bytes());
        log.extend_from_slice(&[0u8; 8]);
        log.extend_from_slice(&2u64.to_le_bytes());
        log.extend_from_slice(&[3u8; PAGE]);
        let crc = crc32c(&log);
        log[40..44].copy_from_slice(&crc.to_le_bytes());
        fs::write(Replica::log_path(&d), &log).unwrap();
        let r = Replica::open(&d, None).unwrap();
        assert_eq!((r.committed(), page(&r, 2), page(&r, 1)), (7, 3, 0));
        drop(r);
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
