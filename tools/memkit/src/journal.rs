//! `memkit journal …`: the micro-journal from the command line.
//!
//! Offline, on an image file ([`memkit::image`]): `format` and `check`. Online, through
//! `/dev/memkit-journal` ([`memkit::dev::Device`]): `attach`, `detach`, `status`, `tx`
//! and `read`. Every subcommand prints a readable report, or JSON with `--json`.
//!
//! Exit status ([`crate::exit`]): 0 on success, 1 on failure, 2 for usage errors,
//! and for `check` 4 if the image was read and is not recoverable.

use crate::exit::{self, emit, fail};
use crate::progress::Progress;
use clap::Subcommand;
use memkit::core::abi;
use memkit::dev::{Device, DeviceKind};
use memkit::image::{self, FormatOptions, DEFAULT_MJ_COUNT, DEFAULT_MJ_SIZE};
use memkit::signature;
use serde::Serialize;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The subcommands of `memkit journal`.
#[derive(Debug, Subcommand)]
pub enum JournalCmd {
    /// Format an image file offline with an empty journal (random uuid).
    Format {
        /// The image file; created if missing (then --size is required).
        image: PathBuf,
        /// Create or extend the image to this many bytes (K, M, G, T suffixes: powers
        /// of 1024); never shrinks it.
        #[arg(long, value_parser = parse_size)]
        size: Option<u64>,
        /// Number of micro-journals.
        #[arg(long, default_value_t = DEFAULT_MJ_COUNT)]
        mj_count: u32,
        /// Bytes per micro-journal, a multiple of 64; also the byte limit of one
        /// transaction.
        #[arg(long, value_parser = parse_size_u32, default_value_t = DEFAULT_MJ_SIZE)]
        mj_size: u32,
        /// Format over what the image holds (a memkit journal, or any signature
        /// libblkid recognises: a filesystem, a partition table, …), which is refused
        /// otherwise; and format a block device at all. Never format a device the
        /// kernel has attached.
        #[arg(long)]
        force: bool,
    },
    /// Check an image offline: validate it and show what recovery would do.
    ///
    /// Exit status 0 if the image is recoverable, 4 if not (with the reason), 1 if
    /// it could not be read.
    Check {
        /// The image file (or block device, read only).
        image: PathBuf,
    },
    /// Attach a DAX block device as the journal, recovering it (CAP_SYS_ADMIN).
    Attach {
        /// The device, e.g. /dev/pmem0.
        dev: PathBuf,
        /// Format it first (destroys its journal). Refused, before the kernel is
        /// asked, if the device holds a memkit journal or any signature libblkid
        /// recognises, unless --force.
        #[arg(long)]
        format: bool,
        /// With --format: format over whatever the device holds.
        #[arg(long, requires = "format")]
        force: bool,
        /// With --format: number of micro-journals (default: the kernel's, 64).
        #[arg(long, requires = "format")]
        mj_count: Option<u32>,
        /// With --format: bytes per micro-journal (default: the kernel's, 65536).
        #[arg(long, requires = "format", value_parser = parse_size_u32)]
        mj_size: Option<u32>,
    },
    /// Detach the journal, making every write durable (CAP_SYS_ADMIN).
    Detach,
    /// Show the attached journal: geometry, limits, last recovery, counters, latency.
    Status,
    /// Commit ranges of the data region as one atomic transaction.
    Tx {
        /// OFFSET:DATA: OFFSET in the data region (decimal, 0x… or with K/M/G), DATA
        /// hex:0011…, str:TEXT or @FILE (its contents). Repeat for more ranges.
        #[arg(long = "range", value_name = "OFFSET:DATA", required = true,
              value_parser = parse_range)]
        ranges: Vec<TxRange>,
    },
    /// Read bytes of the data region (pread on /dev/memkit-journal).
    Read {
        /// Offset in the data region.
        #[arg(value_parser = parse_size)]
        offset: u64,
        /// Bytes to read.
        #[arg(value_parser = parse_size)]
        len: u64,
        /// Print one line of hex (the form `tx --range OFF:hex:…` takes).
        #[arg(long, conflicts_with = "raw")]
        hex: bool,
        /// Write the bytes as they are to stdout.
        #[arg(long)]
        raw: bool,
    },
}

/// Parses a byte count or offset: decimal, `0x` hex, or decimal with a K, M, G or T
/// suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let parse = |t: &str| -> Result<u64, String> {
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            return u64::from_str_radix(hex, 16).map_err(|e| e.to_string());
        }
        let (digits, shift) = match t.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let shift = match c.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(format!("unknown suffix '{c}' (K, M, G or T)")),
                };
                (&t[..i], shift)
            }
            _ => (t, 0),
        };
        let n = digits.parse::<u64>().map_err(|e| e.to_string())?;
        n.checked_mul(1 << shift)
            .ok_or_else(|| "number too large".to_string())
    };
    parse(s.trim()).map_err(|e| format!("'{s}' is not a byte count: {e}"))
}

/// [`parse_size`] for a 32-bit field.
fn parse_size_u32(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n).map_err(|_| format!("'{s}' is too large (at most {})", u32::MAX))
}

/// One `--range` of `memkit journal tx`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRange {
    /// Offset in the data region.
    pub offset: u64,
    /// The bytes to write there (at least one).
    pub data: Vec<u8>,
}

/// Decodes the hex digits of `hex:…` (an even number of them, nothing else).
fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    let pairs = hex.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(format!("odd number of hex digits ({})", hex.len()));
    }
    let nibble = |i: usize, d: u8| {
        char::from(d)
            .to_digit(16)
            .ok_or_else(|| format!("'{}' at position {i} is not a hex digit", char::from(d)))
    };
    pairs
        .enumerate()
        .map(|(k, p)| Ok((nibble(2 * k, p[0])? << 4 | nibble(2 * k + 1, p[1])?) as u8))
        .collect()
}

/// Parses `OFFSET:DATA`: DATA is `hex:0011…`, `str:TEXT` or `@FILE`.
pub fn parse_range(s: &str) -> Result<TxRange, String> {
    let (offset, data) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}': expected OFFSET:DATA"))?;
    let offset = parse_size(offset)?;
    let data = if let Some(hex) = data.strip_prefix("hex:") {
        parse_hex(hex).map_err(|e| format!("'{s}': {e}"))?
    } else if let Some(text) = data.strip_prefix("str:") {
        text.as_bytes().to_vec()
    } else if let Some(path) = data.strip_prefix('@') {
        std::fs::read(path).map_err(|e| format!("'{s}': cannot read {path}: {e}"))?
    } else {
        return Err(format!("'{s}': DATA must be hex:DIGITS, str:TEXT or @FILE"));
    };
    if data.is_empty() {
        return Err(format!("'{s}': no data (a range writes at least one byte)"));
    }
    Ok(TxRange { offset, data })
}

/// `e` from `what` on the journal device, with a hint for the errnos that have one.
fn dev_error(what: &str, e: io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT) => " (is memkit.ko loaded?)",
        Some(libc::ENODEV) => " (no journal attached: `memkit journal attach DEV`)",
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root / CAP_SYS_ADMIN)",
        Some(libc::ENOTTY) => " (not a memkit journal device, or memkit.ko is too old)",
        Some(libc::EBUSY) => " (is a journal already attached?)",
        _ => "",
    };
    format!("{what}: {e}{hint}")
}

fn open_journal(write: bool) -> Result<Device, String> {
    let kind = DeviceKind::Journal;
    let dev = if write {
        Device::open(kind)
    } else {
        Device::open_read_only(kind)
    };
    dev.map_err(|e| dev_error(&format!("cannot open {}", kind.path().display()), e))
}

/// The name of a `JOURNAL_MODE_*` value of the status.
pub(crate) fn mode_name(mode: u32) -> String {
    match mode {
        abi::JOURNAL_MODE_COALESCED => "coalesced".to_string(),
        abi::JOURNAL_MODE_STRICT => "strict".to_string(),
        other => format!("unknown ({other})"),
    }
}

/// `MEMKIT_IOC_JOURNAL_STATUS`, as reported: the ABI's field names, plus two ratios.
#[derive(Debug, Default, Serialize)]
pub struct StatusReport {
    /// Whether a journal is attached (nothing else is reported if not).
    pub attached: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<AttachedStatus>,
}

#[derive(Debug, Serialize)]
struct AttachedStatus {
    mode: String,
    sync_dax: bool,
    dev_size: u64,
    data_offset: u64,
    data_size: u64,
    mj_count: u32,
    mj_size: u32,
    max_ranges: u32,
    max_tx_bytes: u32,
    next_id: u64,
    rec_replayed: u64,
    rec_discarded: u64,
    rec_stale: u64,
    rec_incomplete: u64,
    rec_empty: u64,
    rec_lwm: u64,
    rec_ns: u64,
    transactions: u64,
    groups: u64,
    barriers: u64,
    device_flushes: u64,
    journal_bytes: u64,
    inplace_bytes: u64,
    payload_bytes: u64,
    lines_written_back: u64,
    /// Bucket `i`: commits of `[2^i, 2^(i+1))` µs; the last one also everything slower.
    lat_hist: [u64; abi::JOURNAL_LAT_BUCKETS],
    /// `barriers / transactions` (none before the first transaction).
    barriers_per_tx: Option<f64>,
    /// `(journal_bytes + inplace_bytes) / payload_bytes`.
    bytes_written_per_payload_byte: Option<f64>,
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

impl StatusReport {
    /// The report of `s`.
    pub fn new(s: &abi::JournalStatus) -> StatusReport {
        if s.attached == 0 {
            return StatusReport::default();
        }
        let mode = mode_name(s.mode);
        StatusReport {
            attached: true,
            details: Some(AttachedStatus {
                mode,
                sync_dax: s.sync_dax != 0,
                dev_size: s.dev_size,
                data_offset: s.data_offset,
                data_size: s.data_size,
                mj_count: s.mj_count,
                mj_size: s.mj_size,
                max_ranges: s.max_ranges,
                max_tx_bytes: s.max_tx_bytes,
                next_id: s.next_id,
                rec_replayed: s.rec_replayed,
                rec_discarded: s.rec_discarded,
                rec_stale: s.rec_stale,
                rec_incomplete: s.rec_incomplete,
                rec_empty: s.rec_empty,
                rec_lwm: s.rec_lwm,
                rec_ns: s.rec_ns,
                transactions: s.transactions,
                groups: s.groups,
                barriers: s.barriers,
                device_flushes: s.device_flushes,
                journal_bytes: s.journal_bytes,
                inplace_bytes: s.inplace_bytes,
                payload_bytes: s.payload_bytes,
                lines_written_back: s.lines_written_back,
                lat_hist: s.lat_hist,
                barriers_per_tx: ratio(s.barriers, s.transactions),
                bytes_written_per_payload_byte: ratio(
                    s.journal_bytes.saturating_add(s.inplace_bytes),
                    s.payload_bytes,
                ),
            }),
        }
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let Some(s) = &self.details else {
            return "journal: not attached\n".into();
        };
        let fmt_ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
        format!(
            "journal: attached, {} mode, {} DAX\n  \
             device {} bytes; data region at {}, {} bytes\n  \
             MJs: {} x {} bytes; limits {} ranges, {} entry bytes per transaction\n  \
             next commit id {}\n  \
             last recovery: replayed {}, discarded {}, stale {}, incomplete {}, empty {}; \
             lwm {}; {} us\n  \
             commits: {} transactions in {} groups; {} barriers ({} per transaction), \
             {} device flushes\n  \
             bytes: {} payload, {} journal, {} in place ({} written per payload byte); \
             {} lines written back\n  \
             latency: {}\n",
            s.mode,
            if s.sync_dax {
                "synchronous"
            } else {
                "asynchronous"
            },
            s.dev_size,
            s.data_offset,
            s.data_size,
            s.mj_count,
            s.mj_size,
            s.max_ranges,
            s.max_tx_bytes,
            s.next_id,
            s.rec_replayed,
            s.rec_discarded,
            s.rec_stale,
            s.rec_incomplete,
            s.rec_empty,
            s.rec_lwm,
            s.rec_ns / 1000,
            s.transactions,
            s.groups,
            s.barriers,
            fmt_ratio(s.barriers_per_tx),
            s.device_flushes,
            s.payload_bytes,
            s.journal_bytes,
            s.inplace_bytes,
            fmt_ratio(s.bytes_written_per_payload_byte),
            s.lines_written_back,
            render_histogram(&s.lat_hist),
        )
    }
}

/// The non-empty buckets of a log2-µs histogram on one line: `<2us:3 2-4us:10 ≥32768us:1`.
pub fn render_histogram(hist: &[u64]) -> String {
    let last = hist.len().saturating_sub(1);
    let buckets: Vec<String> = hist
        .iter()
        .enumerate()
        .filter(|(_, &n)| n != 0)
        .map(|(i, n)| {
            let lo = 1u64 << i;
            if i == 0 {
                format!("<2us:{n}")
            } else if i == last {
                format!(">={lo}us:{n}")
            } else {
                format!("{lo}-{}us:{n}", lo << 1)
            }
        })
        .collect();
    if buckets.is_empty() {
        "no commits".into()
    } else {
        buckets.join(" ")
    }
}

#[derive(Serialize)]
struct AttachReport {
    device: String,
    formatted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_error: Option<String>,
}

#[derive(Serialize)]
struct TxReport {
    commit_id: u64,
    ranges: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct ReadReport {
    offset: u64,
    requested: u64,
    len: usize,
    hex: String,
}

/// Most bytes `read` collects for --json, --hex and the hexdump (--raw streams).
const READ_COLLECT_MAX: u64 = 16 << 20;

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An `xxd`-style dump of `bytes`, numbered from `offset`.
pub fn hexdump(offset: u64, bytes: &[u8]) -> String {
    let mut out = String::new();
    for (k, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line
            .chunks(2)
            .map(|pair| pair.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}: {:<40} {ascii}\n",
            offset + 16 * k as u64,
            hex.join(" ")
        ));
    }
    out
}

/// Reads `len` bytes at `offset`, handing each chunk to `sink`; stops early at the end
/// of the data region. Returns the bytes read.
fn read_chunks(
    dev: &Device,
    offset: u64,
    len: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<u64, String> {
    let end = offset
        .checked_add(len)
        .ok_or("OFFSET + LEN overflows".to_string())?;
    let mut buf = vec![0u8; len.min(1 << 20) as usize];
    let mut pos = offset;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        match dev.read_at(&mut buf[..want], pos) {
            Ok(0) => break,
            Ok(n) => {
                sink(&buf[..n])?;
                pos += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(dev_error(&format!("read at {pos}"), e)),
        }
    }
    Ok(pos - offset)
}

fn read_cmd(json: bool, offset: u64, len: u64, hex: bool, raw: bool) -> Result<(), String> {
    if raw && json {
        return Err("--raw and --json do not go together".into());
    }
    if !raw && len > READ_COLLECT_MAX {
        return Err(format!(
            "LEN {len} is more than {READ_COLLECT_MAX} bytes: use --raw to read that much"
        ));
    }
    let dev = open_journal(false)?;
    let got = if raw {
        let mut out = io::stdout().lock();
        let n = read_chunks(&dev, offset, len, |chunk| {
            out.write_all(chunk)
                .map_err(|e| format!("cannot write to stdout: {e}"))
        })?;
        out.flush()
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        n
    } else {
        let mut bytes = Vec::new();
        let n = read_chunks(&dev, offset, len, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        let report = ReadReport {
            offset,
            requested: len,
            len: bytes.len(),
            hex: hex_string(&bytes),
        };
        emit(json, &report, || {
            if hex {
                format!("{}\n", report.hex)
            } else {
                hexdump(offset, &bytes)
            }
        });
        n
    };
    if got < len {
        eprintln!(
            "memkit: short read: {got} of {len} bytes (the data region ends at {})",
            offset + got
        );
    }
    Ok(())
}

fn attach_cmd(
    json: bool,
    dev_path: &Path,
    format: bool,
    force: bool,
    mj_count: Option<u32>,
    mj_size: Option<u32>,
) -> Result<(), String> {
    // The kernel formats whatever it is given (the ioctl is the administrator's raw
    // interface): the tool refuses here, as `memkit journal format` does.
    if format {
        signature::check_before_format(dev_path, force)?;
    }
    let dev = open_journal(true)?;
    // The kernel formats, or recovers, a large journal in this one call.
    let what = if format {
        "formatting and attaching"
    } else {
        "attaching (recovery)"
    };
    let progress = Progress::start(format!("{what} {}", dev_path.display()), None, "");
    let attached = dev.journal_attach(
        dev_path,
        format,
        mj_count.unwrap_or(0),
        mj_size.unwrap_or(0),
    );
    progress.finish(if attached.is_ok() {
        "attached"
    } else {
        "failed"
    });
    attached.map_err(|e| dev_error(&format!("cannot attach {}", dev_path.display()), e))?;
    let (status, status_error) = match dev.journal_status() {
        Ok(s) => (Some(StatusReport::new(&s)), None),
        Err(e) => (None, Some(dev_error("status", e))),
    };
    let report = AttachReport {
        device: dev_path.display().to_string(),
        formatted: format,
        status,
        status_error,
    };
    emit(json, &report, || {
        let mut out = format!(
            "attached {}{}\n",
            report.device,
            if format { " (formatted)" } else { "" }
        );
        match (&report.status, &report.status_error) {
            (Some(s), _) => out.push_str(&s.render()),
            (_, Some(e)) => out.push_str(&format!("status unavailable: {e}\n")),
            _ => {}
        }
        out
    });
    Ok(())
}

fn tx_cmd(json: bool, ranges: &[TxRange]) -> Result<(), String> {
    let dev = open_journal(true)?;
    let pairs: Vec<(u64, &[u8])> = ranges
        .iter()
        .map(|r| (r.offset, r.data.as_slice()))
        .collect();
    let commit_id = dev.journal_tx(&pairs).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::E2BIG) => " (over max_ranges or max_tx_bytes: see `memkit journal status`)",
            Some(libc::EINVAL) => " (a range reaches past the data region?)",
            _ => "",
        };
        format!("{}{hint}", dev_error("transaction refused", e))
    })?;
    let report = TxReport {
        commit_id,
        ranges: ranges.len(),
        bytes: ranges.iter().map(|r| r.data.len() as u64).sum(),
    };
    emit(json, &report, || {
        format!(
            "commit id {} ({} ranges, {} bytes)\n",
            report.commit_id, report.ranges, report.bytes
        )
    });
    Ok(())
}

/// Runs `memkit journal CMD`.
pub fn run(cmd: JournalCmd, json: bool) -> ExitCode {
    let result = match cmd {
        JournalCmd::Format {
            image,
            size,
            mj_count,
            mj_size,
            force,
        } => {
            let opts = FormatOptions {
                size,
                mj_count,
                mj_size,
                force,
            };
            let progress = Progress::start(format!("formatting {}", image.display()), None, "");
            let r = image::format_image(&image, &opts);
            progress.finish(if r.is_ok() { "formatted" } else { "failed" });
            r.map(|r| emit(json, &r, || r.render()))
        }
        JournalCmd::Check { image } => {
            let progress = Progress::start(format!("checking {}", image.display()), None, "");
            let checked = image::check_image(&image);
            progress.finish(if checked.is_ok() { "read" } else { "failed" });
            return match checked {
                Ok(r) => {
                    emit(json, &r, || r.render());
                    if r.recoverable {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(exit::NOT_RECOVERABLE)
                    }
                }
                Err(e) => fail(json, &e, exit::ERROR),
            };
        }
        JournalCmd::Attach {
            dev,
            format,
            force,
            mj_count,
            mj_size,
        } => attach_cmd(json, &dev, format, force, mj_count, mj_size),
        JournalCmd::Detach => open_journal(true).and_then(|d| {
            d.journal_detach()
                .map_err(|e| dev_error("cannot detach", e))?;
            emit(json, &serde_json::json!({ "detached": true }), || {
                "detached\n".into()
            });
            Ok(())
        }),
        JournalCmd::Status => open_journal(false).and_then(|d| {
            let s = d.journal_status().map_err(|e| dev_error("status", e))?;
            let r = StatusReport::new(&s);
            emit(json, &r, || r.render());
            Ok(())
        }),
        JournalCmd::Tx { ranges } => tx_cmd(json, &ranges),
        JournalCmd::Read {
            offset,
            len,
            hex,
            raw,
        } => read_cmd(json, offset, len, hex, raw),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(json, &e, exit::ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_hex_and_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        for bad in ["", "-1", "4X", "K", "0x", "1.5M", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("16777216T").unwrap_err().contains("too large"));
        assert_eq!(parse_size_u32("64K"), Ok(65536));
        assert!(parse_size_u32("4G").unwrap_err().contains("too large"));
    }

    #[test]
    fn ranges_take_hex_str_and_files() {
        assert_eq!(
            parse_range("0:hex:00ff10"),
            Ok(TxRange {
                offset: 0,
                data: vec![0, 0xff, 0x10]
            })
        );
        assert_eq!(parse_range("0x10:hex:ABcd").unwrap().data, [0xab, 0xcd]);
        // Everything after `str:` is the text, colons included.
        assert_eq!(
            parse_range("4K:str:a:b c").unwrap(),
            TxRange {
                offset: 4096,
                data: b"a:b c".to_vec()
            }
        );
        let path = std::env::temp_dir().join(format!("memkit-range-{}", std::process::id()));
        std::fs::write(&path, b"file bytes").unwrap();
        let r = parse_range(&format!("8:@{}", path.display())).unwrap();
        assert_eq!((r.offset, r.data.as_slice()), (8, &b"file bytes"[..]));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        let cases = [
            ("nocolon", "expected OFFSET:DATA"),
            ("x:str:a", "not a byte count"),
            ("0:hex:abc", "odd number of hex digits"),
            ("0:hex:0g", "'g' at position 1 is not a hex digit"),
            ("0:hex:", "no data"),
            ("0:str:", "no data"),
            ("0:text", "DATA must be hex:DIGITS, str:TEXT or @FILE"),
            ("0:@/nonexistent/memkit", "cannot read /nonexistent/memkit"),
        ];
        for (input, want) in cases {
            let err = parse_range(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn histogram_shows_nonempty_buckets_only() {
        let mut h = [0u64; abi::JOURNAL_LAT_BUCKETS];
        assert_eq!(render_histogram(&h), "no commits");
        h[0] = 3;
        h[2] = 10;
        h[15] = 1;
        assert_eq!(render_histogram(&h), "<2us:3 4-8us:10 >=32768us:1");
    }

    #[test]
    fn status_report_derives_ratios() {
        assert_eq!(
            StatusReport::new(&abi::JournalStatus::default()).render(),
            "journal: not attached\n"
        );
        let s = abi::JournalStatus {
            attached: 1,
            mode: abi::JOURNAL_MODE_STRICT,
            transactions: 4,
            barriers: 8,
            payload_bytes: 100,
            journal_bytes: 300,
            inplace_bytes: 100,
            ..Default::default()
        };
        let r = StatusReport::new(&s);
        let text = r.render();
        assert!(text.contains("strict mode"), "{text}");
        assert!(text.contains("8 barriers (2.00 per transaction)"), "{text}");
        assert!(text.contains("(4.00 written per payload byte)"), "{text}");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["attached"], true);
        assert_eq!(v["barriers_per_tx"], 2.0);
        assert_eq!(v["lat_hist"].as_array().map(Vec::len), Some(16));
        let idle = serde_json::to_value(StatusReport::new(&abi::JournalStatus {
            attached: 1,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(idle["barriers_per_tx"], serde_json::Value::Null);
    }

    #[test]
    fn hexdump_numbers_lines_from_the_offset() {
        let dump = hexdump(0x20, b"0123456789abcdefXY\x00");
        assert_eq!(
            dump,
            "00000020: 3031 3233 3435 3637 3839 6162 6364 6566  0123456789abcdef\n\
             00000030: 5859 00                                  XY.\n"
        );
    }
}
