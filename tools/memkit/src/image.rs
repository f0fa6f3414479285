//! Offline work on a journal image, without the kernel: `memkit journal format` writes
//! a fresh journal into a file, `memkit journal check` says what recovery would do
//! with one (the host runs it on the pmem backing file of a killed VM).
//!
//! Both go through the same pure code the module runs (`memkit_core::journal`), over
//! [`FilePmem`]. `check` opens the image read-only and reads nothing the superblock
//! has not first been validated to cover; everything it reads is decoded by the
//! format's checked decoders, so garbage gives a verdict, never a panic.

use crate::pmem_file::FilePmem;
use crate::signature;
use memkit_core::journal::engine::{self, JournalError};
use memkit_core::journal::format::{
    self, FormatError, Geometry, MjError, Superblock, MJ_HEADER_SIZE, SB_AREA,
};
use memkit_core::journal::pmem::Pmem;
use memkit_core::journal::recovery::{self, PlanError, SlotScan};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// MJs of a journal formatted without `--mj-count` (the kernel's default for 0).
pub const DEFAULT_MJ_COUNT: u32 = 64;
/// Bytes per MJ of a journal formatted without `--mj-size` (the kernel's default for 0).
pub const DEFAULT_MJ_SIZE: u32 = 65536;

/// A journal's layout, as reported.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GeometryReport {
    /// Bytes of the device the journal uses.
    pub dev_size: u64,
    /// Number of MJs.
    pub mj_count: u32,
    /// Bytes per MJ, header included.
    pub mj_size: u32,
    /// Offset of MJ 0.
    pub mj_offset: u64,
    /// Offset of the data region.
    pub data_offset: u64,
    /// Bytes of the data region.
    pub data_size: u64,
    /// Most ranges per transaction.
    pub max_ranges: u32,
    /// Most entry bytes per transaction (16 per range plus its length rounded up to 8).
    pub max_tx_bytes: usize,
}

impl From<&Geometry> for GeometryReport {
    fn from(g: &Geometry) -> Self {
        GeometryReport {
            dev_size: g.dev_size,
            mj_count: g.mj_count,
            mj_size: g.mj_size,
            mj_offset: g.mj_offset,
            data_offset: g.data_offset,
            data_size: g.data_size,
            max_ranges: g.max_ranges(),
            max_tx_bytes: g.mj_capacity(),
        }
    }
}

impl GeometryReport {
    /// Two indented lines: the layout and the transaction limits.
    pub fn render(&self) -> String {
        format!(
            "  geometry: {} bytes; {} MJs x {} bytes at {}; data region at {}, {} bytes\n  \
             limits: {} ranges, {} entry bytes per transaction\n",
            self.dev_size,
            self.mj_count,
            self.mj_size,
            self.mj_offset,
            self.data_offset,
            self.data_size,
            self.max_ranges,
            self.max_tx_bytes
        )
    }
}

/// A uuid as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn uuid_string(uuid: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// What is wrong with a superblock or a geometry, in words.
pub fn describe_format_error(e: FormatError) -> String {
    match e {
        FormatError::BadMagic => "bad magic: not a memkit journal".into(),
        FormatError::BadVersion(v) => format!(
            "format version {v}, this tool reads version {}: recover the journal with \
             the memkit that wrote it (attach and detach), then format it again",
            format::FORMAT_VERSION
        ),
        FormatError::BadChecksum { stored, computed } => format!(
            "superblock checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ),
        FormatError::BadGeometry(what) => format!("bad geometry: {what}"),
        FormatError::NonZeroReserved => "reserved superblock bytes are not zero".into(),
        FormatError::TooSmall => "the image is smaller than the journal needs".into(),
    }
}

/// Why one MJ is torn or corrupted: the error's name, and its detail if it has one
/// (`BadChecksum`, `BadHeader: payload longer than the MJ`, `BadEntry 2: zero length`).
pub fn describe_mj_error(e: MjError) -> String {
    match e {
        MjError::Empty => "Empty".into(),
        MjError::BadMagic => "BadMagic".into(),
        MjError::BadHeader(what) => format!("BadHeader: {what}"),
        MjError::BadChecksum => "BadChecksum".into(),
        MjError::BadEntry { index, why } => format!("BadEntry {index}: {why}"),
    }
}

fn describe_journal_error(e: JournalError) -> String {
    match e {
        JournalError::Format(f) => describe_format_error(f),
        JournalError::Plan(PlanError::DuplicateId(id)) => {
            format!("two valid MJs carry commit id {id}")
        }
        JournalError::Plan(PlanError::IdsExhausted) => "commit ids exhausted".into(),
        other => format!("journal error: {other:?}"),
    }
}

/// What `memkit journal format` was asked to do.
#[derive(Clone, Copy, Debug)]
pub struct FormatOptions {
    /// Bytes the image should have: created or extended to this (never shrunk).
    pub size: Option<u64>,
    /// Number of MJs.
    pub mj_count: u32,
    /// Bytes per MJ.
    pub mj_size: u32,
    /// Format a block device too, and whatever the target holds
    /// ([`signature::check_before_format`]).
    pub force: bool,
}

/// The result of `memkit journal format`.
#[derive(Debug, Serialize)]
pub struct FormatReport {
    /// The image's path.
    pub image: String,
    /// Whether the file was created.
    pub created: bool,
    /// Whether it is a block device (formatted with `--force`).
    pub block_device: bool,
    /// The new journal's identity.
    pub uuid: String,
    /// Its layout.
    pub geometry: GeometryReport,
}

impl FormatReport {
    /// The human-readable report.
    pub fn render(&self) -> String {
        format!(
            "formatted {}{}: uuid {}\n{}",
            self.image,
            if self.created { " (created)" } else { "" },
            self.uuid,
            self.geometry.render()
        )
    }
}

/// Layout for `dev_size` bytes, or why it does not fit, in words.
fn geometry_for(dev_size: u64, mj_count: u32, mj_size: u32) -> Result<Geometry, String> {
    Geometry::new(dev_size, mj_count, mj_size).map_err(|e| match e {
        FormatError::TooSmall => {
            // Where the data region would start on a device of any size.
            match Geometry::new(u64::MAX, mj_count, mj_size).map(|g| g.data_offset) {
                Ok(need) => format!(
                    "{dev_size} bytes is too small for {mj_count} MJs of {mj_size} bytes: \
                     the superblock and MJs take {need} bytes and the data region needs at \
                     least one more"
                ),
                Err(_) => describe_format_error(e),
            }
        }
        FormatError::BadGeometry(_) => format!(
            "{} (MJ count {}..={}, MJ size {}..={} and a multiple of 64)",
            describe_format_error(e),
            format::MJ_COUNT_MIN,
            format::MJ_COUNT_MAX,
            format::MJ_SIZE_MIN,
            format::MJ_SIZE_MAX
        ),
        _ => describe_format_error(e),
    })
}

/// 16 random bytes from `/dev/urandom`.
fn random_uuid() -> Result<[u8; 16], String> {
    let mut uuid = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut uuid))
        .map_err(|e| format!("cannot read a random uuid from /dev/urandom: {e}"))?;
    Ok(uuid)
}

/// `memkit journal format`: writes an empty journal to the image at `path`.
///
/// A missing file is created (`size` is then required); a shorter one is extended to
/// `size`. An existing file that holds a memkit journal or anything libblkid
/// recognises is refused unless `force` ([`signature::check_before_format`]), before a
/// byte of it is written. A block device is refused unless `force`: if the kernel has
/// it attached as the journal, formatting it underneath would destroy live
/// transactions (the refusal names what the device holds, if anything). Even with
/// `force` the device is opened `O_EXCL`, which fails while the kernel holds it
/// exclusively.
pub fn format_image(path: &Path, opts: &FormatOptions) -> Result<FormatReport, String> {
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let block = meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    if let Some(m) = &meta {
        if !m.is_file() && !block {
            return Err(format!("{shown}: not a regular file or a block device"));
        }
    }
    if block && !opts.force {
        // Name what the device holds, if anything, before the general refusal.
        signature::check_before_format(path, false)?;
        return Err(format!(
            "{shown} is a block device: formatting it offline while the kernel has it \
             attached would destroy the live journal under it; detach it first and pass \
             --force, or format through the kernel with `memkit journal attach --format`"
        ));
    }

    let (file, dev_size, created) = match &meta {
        None => {
            let size = opts
                .size
                .ok_or_else(|| format!("{shown} does not exist: give --size to create it"))?;
            geometry_for(size, opts.mj_count, opts.mj_size)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| format!("cannot create {shown}: {e}"))?;
            file.set_len(size)
                .map_err(|e| format!("cannot size {shown} to {size} bytes: {e}"))?;
            (file, size, true)
        }
        Some(m) if !block => {
            let size = match opts.size {
                Some(s) if s < m.len() => {
                    return Err(format!(
                        "{shown} is {} bytes, more than --size {s}: refusing to shrink it \
                         (truncate it yourself, or leave out --size)",
                        m.len()
                    ))
                }
                Some(s) => s,
                None => m.len(),
            };
            geometry_for(size, opts.mj_count, opts.mj_size)?;
            // Before the file is opened for writing (or extended).
            signature::check_before_format(path, opts.force)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot open {shown}: {e}"))?;
            if size > m.len() {
                file.set_len(size)
                    .map_err(|e| format!("cannot extend {shown} to {size} bytes: {e}"))?;
            }
            (file, size, false)
        }
        Some(_) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_EXCL)
                .open(path)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EBUSY) => {
                        format!("cannot open {shown}: {e} (attached as the journal, or mounted?)")
                    }
                    _ => format!("cannot open {shown}: {e}"),
                })?;
            let pm = FilePmem::whole(file).map_err(|e| format!("{shown}: {e}"))?;
            let size = pm.len();
            if opts.size.is_some_and(|s| s != size) {
                return Err(format!(
                    "{shown} is a block device of {size} bytes: --size cannot resize it"
                ));
            }
            (pm.into_file(), size, false)
        }
    };

    let geo = geometry_for(dev_size, opts.mj_count, opts.mj_size)?;
    let uuid = random_uuid()?;
    let mut pm = FilePmem::new(file, dev_size);
    let result = engine::format(&mut pm, geo, uuid);
    pm.take_error()
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    let sb = result.map_err(|e| format!("{shown}: {}", describe_journal_error(e)))?;
    Ok(FormatReport {
        image: shown,
        created,
        block_device: block,
        uuid: uuid_string(&sb.uuid),
        geometry: GeometryReport::from(&sb.geo),
    })
}

/// A valid MJ that recovery would replay.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReplayMj {
    /// Its slot.
    pub slot: u32,
    /// Its commit id.
    pub commit_id: u64,
    /// First id of its commit group.
    pub group_first: u64,
    /// Transactions in its group.
    pub group_len: u32,
    /// Its low-water mark.
    pub lwm: u64,
    /// Ranges it writes.
    pub entries: u32,
    /// Data bytes it writes.
    pub data_bytes: u64,
}

/// A valid MJ that recovery skips.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SkippedMj {
    /// Its slot.
    pub slot: u32,
    /// Its commit id.
    pub commit_id: u64,
}

/// A torn or corrupted MJ that recovery discards.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TornMj {
    /// Its slot.
    pub slot: u32,
    /// Why it does not validate.
    pub error: String,
}

/// What recovery would do.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The low-water mark: the largest among valid MJs (0 if none).
    pub lwm: u64,
    /// The commit id of recovery's seal (a no-op commit that retires every old MJ),
    /// if any MJ is valid.
    pub seal_id: Option<u64>,
    /// The commit id the first transaction after recovery gets.
    pub next_id: u64,
    /// MJs replayed, in replay (commit-id) order.
    pub replay: Vec<ReplayMj>,
    /// Valid MJs below the low-water mark, skipped (already durable in place).
    pub stale: Vec<SkippedMj>,
    /// Valid MJs of commit groups with a missing member, skipped.
    pub incomplete: Vec<SkippedMj>,
    /// Torn or corrupted MJs, discarded.
    pub torn: Vec<TornMj>,
    /// Never-written MJs.
    pub empty: u32,
}

/// The error number the kernel's attach fails with, by name and value.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Errno {
    /// Its symbolic name, `EUCLEAN`.
    pub name: &'static str,
    /// Its value on this machine.
    pub code: i32,
}

const fn errno(name: &'static str, code: i32) -> Errno {
    Errno { name, code }
}

/// The errno `MEMKIT_IOC_JOURNAL_ATTACH` returns for a superblock the decoder refuses
/// (`Documentation/journal.rst`; `superblock_errno` in `rust/journal.rs`).
pub fn superblock_errno(e: FormatError) -> Errno {
    match e {
        FormatError::BadMagic => errno("EMEDIUMTYPE", libc::EMEDIUMTYPE),
        FormatError::TooSmall => errno("ENOSPC", libc::ENOSPC),
        FormatError::BadVersion(_)
        | FormatError::BadChecksum { .. }
        | FormatError::BadGeometry(_)
        | FormatError::NonZeroReserved => errno("EUCLEAN", libc::EUCLEAN),
    }
}

/// The errno `MEMKIT_IOC_JOURNAL_ATTACH` returns when recovery refuses the journal
/// (`journal_errno` in `rust/journal.rs`).
pub fn journal_errno(e: JournalError) -> Errno {
    match e {
        JournalError::Format(f) => superblock_errno(f),
        JournalError::Plan(PlanError::DuplicateId(_)) => errno("EUCLEAN", libc::EUCLEAN),
        JournalError::Plan(PlanError::IdsExhausted) | JournalError::IdsExhausted => {
            errno("EOVERFLOW", libc::EOVERFLOW)
        }
        JournalError::Plan(PlanError::OrderTooShort) | JournalError::Buffer => {
            errno("EINVAL", libc::EINVAL)
        }
        JournalError::Unstable(_) => errno("EIO", libc::EIO),
        JournalError::Tx { .. } => errno("EINVAL", libc::EINVAL),
        JournalError::NoFreeMj => errno("EAGAIN", libc::EAGAIN),
    }
}

/// The result of `memkit journal check`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// The image's path.
    pub image: String,
    /// Bytes of the image.
    pub image_size: u64,
    /// Whether the kernel would attach it (recovering as [`CheckReport::recovery`] says).
    pub recoverable: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When not: the errno the kernel's attach of this image fails with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<Errno>,
    /// The journal's identity, if the superblock is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Its layout, if the superblock is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geometry: Option<GeometryReport>,
    /// The recovery plan, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryReport>,
}

fn slot_list(items: &[SkippedMj]) -> String {
    items
        .iter()
        .map(|m| format!("slot {} (id {})", m.slot, m.commit_id))
        .collect::<Vec<_>>()
        .join(", ")
}

impl CheckReport {
    /// The human-readable report; its last line is the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.uuid {
            Some(uuid) => out.push_str(&format!(
                "{}: memkit journal, uuid {uuid}, image {} bytes\n",
                self.image, self.image_size
            )),
            None => out.push_str(&format!(
                "{}: image {} bytes\n",
                self.image, self.image_size
            )),
        }
        if let Some(g) = &self.geometry {
            out.push_str(&g.render());
        }
        if let Some(r) = &self.recovery {
            let seal = match r.seal_id {
                Some(id) => format!(", sealed by commit id {id}"),
                None => String::new(),
            };
            out.push_str(&format!(
                "recovery: low-water mark {}{seal}, next commit id {}\n",
                r.lwm, r.next_id
            ));
            if r.replay.is_empty() {
                out.push_str("  replay: nothing\n");
            } else {
                out.push_str(&format!("  replay {} MJs in this order:\n", r.replay.len()));
                for m in &r.replay {
                    let last = m.group_first + u64::from(m.group_len) - 1;
                    let group = if m.group_len == 1 {
                        format!("group {last}")
                    } else {
                        format!("group {}-{last}", m.group_first)
                    };
                    out.push_str(&format!(
                        "    slot {} id {} ({group}, lwm {}): {} ranges, {} bytes\n",
                        m.slot, m.commit_id, m.lwm, m.entries, m.data_bytes
                    ));
                }
            }
            out.push_str(&format!("  stale {}", r.stale.len()));
            if !r.stale.is_empty() {
                out.push_str(&format!(": {}", slot_list(&r.stale)));
            }
            out.push_str(&format!("\n  incomplete-group {}", r.incomplete.len()));
            if !r.incomplete.is_empty() {
                out.push_str(&format!(": {}", slot_list(&r.incomplete)));
            }
            out.push_str(&format!("\n  torn {}\n", r.torn.len()));
            for t in &r.torn {
                out.push_str(&format!("    slot {}: {}\n", t.slot, t.error));
            }
            out.push_str(&format!("  empty {}\n", r.empty));
        }
        match (&self.reason, self.errno) {
            (None, _) => out.push_str("recoverable\n"),
            (Some(reason), Some(e)) => out.push_str(&format!(
                "NOT recoverable: {reason} (attach fails: {})\n",
                e.name
            )),
            (Some(reason), None) => out.push_str(&format!("NOT recoverable: {reason}\n")),
        }
        out
    }
}

/// `memkit journal check`: what recovery would do with the image at `path`.
///
/// `Err` is an operational failure (cannot open or read the image); a bad image is an
/// `Ok` report with `recoverable: false` and the reason.
pub fn check_image(path: &Path) -> Result<CheckReport, String> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if meta.is_dir() {
        return Err(format!("{shown}: is a directory"));
    }
    let file = File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let mut pm = FilePmem::whole(file).map_err(|e| format!("{shown}: {e}"))?;
    let io_err = |e: io::Error| format!("cannot read {shown}: {e}");
    let mut report = CheckReport {
        image: shown.clone(),
        image_size: pm.len(),
        recoverable: false,
        reason: None,
        errno: None,
        uuid: None,
        geometry: None,
        recovery: None,
    };

    let sb = engine::read_superblock(&pm);
    pm.take_error().map_err(io_err)?;
    let sb = match sb {
        Ok(sb) => sb,
        Err(FormatError::TooSmall) if pm.len() < SB_AREA => {
            report.errno = Some(superblock_errno(FormatError::TooSmall));
            report.reason = Some(format!(
                "bad superblock: the image is only {} bytes",
                pm.len()
            ));
            return Ok(report);
        }
        Err(FormatError::TooSmall) => {
            report.errno = Some(superblock_errno(FormatError::TooSmall));
            // `decode` says `TooSmall` both for a recorded size past the end of the
            // image and for a recorded geometry that leaves no data region.
            report.reason = Some(
                "bad superblock: the image is smaller than the device size it records \
                 (truncated?), or that size leaves no data region"
                    .into(),
            );
            return Ok(report);
        }
        Err(e) => {
            report.errno = Some(superblock_errno(e));
            report.reason = Some(format!("bad superblock: {}", describe_format_error(e)));
            return Ok(report);
        }
    };
    report.uuid = Some(uuid_string(&sb.uuid));
    report.geometry = Some(GeometryReport::from(&sb.geo));

    let n = sb.geo.mj_count as usize;
    let mut scans = vec![SlotScan::Empty; n];
    let mut mj = vec![0u8; sb.geo.mj_size as usize];
    let scanned = engine::scan(&pm, &sb, &mut scans, &mut mj);
    pm.take_error().map_err(io_err)?;
    if let Err(e) = scanned {
        report.errno = Some(journal_errno(e));
        report.reason = Some(describe_journal_error(e));
        return Ok(report);
    }
    let mut order = vec![0u32; n];
    let plan = match recovery::plan(&scans, &mut order) {
        Ok(plan) => plan,
        Err(e @ PlanError::DuplicateId(id)) => {
            report.errno = Some(journal_errno(JournalError::Plan(e)));
            let slots: Vec<String> = valid_by_id(&scans)
                .iter()
                .filter(|m| m.commit_id == id)
                .map(|m| m.slot.to_string())
                .collect();
            report.reason = Some(format!(
                "duplicate commit id {id} in slots {}: not written by memkit",
                slots.join(" and ")
            ));
            return Ok(report);
        }
        Err(e) => {
            report.errno = Some(journal_errno(JournalError::Plan(e)));
            report.reason = Some(describe_journal_error(JournalError::Plan(e)));
            return Ok(report);
        }
    };

    let mut replay = Vec::with_capacity(plan.replay as usize);
    for &slot in &order[..plan.replay as usize] {
        let m = replay_details(&pm, &sb, slot, &mut mj);
        pm.take_error().map_err(io_err)?;
        replay.push(m.map_err(|e| {
            format!("{shown}: slot {slot} changed while it was read ({e}): is the image in use?")
        })?);
    }
    let mut stale = Vec::new();
    let mut incomplete = Vec::new();
    for m in valid_by_id(&scans) {
        if m.commit_id < plan.lwm {
            stale.push(m);
        } else if !replay.iter().any(|r| r.slot == m.slot) {
            incomplete.push(m);
        }
    }
    let torn = (0u32..)
        .zip(&scans)
        .filter_map(|(slot, s)| match s {
            SlotScan::Invalid(e) => Some(TornMj {
                slot,
                error: describe_mj_error(*e),
            }),
            _ => None,
        })
        .collect();
    report.recovery = Some(RecoveryReport {
        lwm: plan.lwm,
        seal_id: plan.seal_id,
        next_id: plan.next_id,
        replay,
        stale,
        incomplete,
        torn,
        empty: plan.empty,
    });
    report.recoverable = true;
    Ok(report)
}

/// Every valid MJ as (slot, id), in commit-id order.
fn valid_by_id(scans: &[SlotScan]) -> Vec<SkippedMj> {
    let mut valid: Vec<SkippedMj> = (0u32..)
        .zip(scans)
        .filter_map(|(slot, s)| match s {
            SlotScan::Valid { id, .. } => Some(SkippedMj {
                slot,
                commit_id: *id,
            }),
            _ => None,
        })
        .collect();
    valid.sort_by_key(|m| m.commit_id);
    valid
}

/// Reads and decodes MJ `slot` again for the report: its group, entries and bytes.
fn replay_details(
    pm: &FilePmem,
    sb: &Superblock,
    slot: u32,
    buf: &mut [u8],
) -> Result<ReplayMj, String> {
    let off = sb.geo.mj_at(slot).ok_or("slot out of range")?;
    let buf = buf
        .get_mut(..sb.geo.mj_size as usize)
        .ok_or("buffer too small")?;
    pm.read(off, buf);
    if buf.len() < MJ_HEADER_SIZE {
        return Err("MJ smaller than its header".into());
    }
    let m = format::decode_mj(sb, buf).map_err(describe_mj_error)?;
    Ok(ReplayMj {
        slot,
        commit_id: m.header.commit_id,
        group_first: m.header.group_first,
        group_len: m.header.group_len,
        lwm: m.header.lwm,
        entries: m.header.entry_count,
        data_bytes: m.entries().map(|e| e.data.len() as u64).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_grouped_8_4_4_4_12() {
        let uuid: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(uuid_string(&uuid), "00010203-0405-0607-0809-0a0b0c0d0e0f");
    }

    #[test]
    fn mj_errors_name_the_error_first() {
        assert_eq!(describe_mj_error(MjError::BadChecksum), "BadChecksum");
        assert_eq!(
            describe_mj_error(MjError::BadEntry {
                index: 2,
                why: "zero length"
            }),
            "BadEntry 2: zero length"
        );
    }

    #[test]
    fn geometry_errors_say_what_fits() {
        let e = geometry_for(8192, 64, 65536).unwrap_err();
        assert!(e.contains("too small") && e.contains("4198400"), "{e}");
        let e = geometry_for(1 << 30, 1, 65536).unwrap_err();
        assert!(e.contains("MJ count 2..=65536"), "{e}");
        let e = geometry_for(1 << 30, 64, 100).unwrap_err();
        assert!(e.contains("multiple of 64"), "{e}");
        assert!(geometry_for(1 << 30, DEFAULT_MJ_COUNT, DEFAULT_MJ_SIZE).is_ok());
    }
}
