//! `memkit list`: the attached journal and the live rmem and ckpt regions, as
//! `ndctl list` lists namespaces.
//!
//! The journal comes from `MEMKIT_IOC_JOURNAL_STATUS` and the `memkit-journal-dev`
//! line of the descriptor's own fdinfo; the regions from `/proc`
//! ([`memkit::regions`]): only the processes the caller may inspect are seen.

use crate::exit::{self, emit};
use memkit::dev::{Device, DeviceKind};
use memkit::regions::{self, FdInfo, Scan};
use memkit_core::abi::fdinfo as key;
use serde::Serialize;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::ExitCode;

/// The journal, as `memkit list` shows it.
#[derive(Serialize)]
struct Journal {
    attached: bool,
    /// The block device (`/dev/pmem0`), from its number.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<String>,
    /// `MAJOR:MINOR` of the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mj_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mj_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_commit_id: Option<u64>,
    /// Why the journal could not be asked (the module is not loaded, permissions).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct List {
    journal: Journal,
    #[serde(flatten)]
    regions: Scan,
}

/// `/dev/NAME` of block device `MAJOR:MINOR`, from sysfs.
fn block_device_path(dev: &str) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{dev}/uevent")).ok()?;
    uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(|n| format!("/dev/{n}"))
}

fn journal() -> Journal {
    let mut j = Journal {
        attached: false,
        device: None,
        dev: None,
        mode: None,
        data_bytes: None,
        mj_count: None,
        mj_size: None,
        next_commit_id: None,
        error: None,
    };
    let d = match Device::open_read_only(DeviceKind::Journal) {
        Ok(d) => d,
        Err(e) => {
            j.error = Some(format!("{}: {e}", DeviceKind::Journal.path().display()));
            return j;
        }
    };
    let s = match d.journal_status() {
        Ok(s) => s,
        Err(e) => {
            j.error = Some(format!("MEMKIT_IOC_JOURNAL_STATUS: {e}"));
            return j;
        }
    };
    if s.attached == 0 {
        return j;
    }
    j.attached = true;
    j.mode = Some(crate::journal::mode_name(s.mode));
    j.data_bytes = Some(s.data_size);
    j.mj_count = Some(s.mj_count);
    j.mj_size = Some(s.mj_size);
    j.next_commit_id = Some(s.next_id);
    let fdinfo = format!("/proc/self/fdinfo/{}", d.as_fd().as_raw_fd());
    let info = std::fs::read_to_string(fdinfo)
        .ok()
        .and_then(|t| FdInfo::parse(&t));
    j.dev = info
        .as_ref()
        .and_then(|i| i.get(key::JOURNAL_DEV))
        .filter(|d| *d != "none")
        .map(str::to_string);
    j.device = j.dev.as_deref().and_then(block_device_path);
    j
}

fn mib(bytes: &str) -> String {
    match bytes.parse::<u64>() {
        Ok(b) if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Ok(b) => format!("{} KiB", b.div_ceil(1024)),
        Err(_) => bytes.to_string(),
    }
}

impl List {
    fn render(&self) -> String {
        let j = &self.journal;
        let mut s = match (&j.error, j.attached) {
            (Some(e), _) => format!("journal: cannot ask: {e}\n"),
            (None, false) => "journal: not attached\n".to_string(),
            (None, true) => format!(
                "journal: {} ({}), {}, {} data bytes, {} MJs x {} bytes, next commit id {}\n",
                j.device.as_deref().unwrap_or("?"),
                j.dev.as_deref().unwrap_or("?"),
                j.mode.as_deref().unwrap_or("?"),
                j.data_bytes.unwrap_or(0),
                j.mj_count.unwrap_or(0),
                j.mj_size.unwrap_or(0),
                j.next_commit_id.unwrap_or(0)
            ),
        };
        if self.regions.regions.is_empty() {
            s += "regions: none\n";
        } else {
            s += "DEVICE  REGION  SIZE        DETAILS                              USED BY\n";
        }
        for r in &self.regions.regions {
            let size = r.info.get("bytes").map_or("?".to_string(), |b| mib(b));
            let details = match r.device.as_str() {
                "rmem" if !r.info.is_empty() => format!(
                    "{} {}, local pages: {}/{}",
                    r.info.get("backend").map_or("?", String::as_str),
                    r.info.get("policy").map_or("?", String::as_str),
                    r.info.get("local-pages").map_or("?", String::as_str),
                    r.info.get("budget-pages").map_or("?", String::as_str),
                ),
                "ckpt" if !r.info.is_empty() => format!(
                    "pages touched: {}, intervals: {}",
                    r.info.get("pages-allocated").map_or("?", String::as_str),
                    r.info.get("intervals").map_or("?", String::as_str),
                ),
                _ => "(only mapped: its file is closed)".to_string(),
            };
            let mut users: Vec<String> = r
                .files
                .iter()
                .map(|h| format!("{}[{}] fd {}", h.comm, h.pid, h.fd.unwrap_or(0)))
                .collect();
            let mut mappers: Vec<u32> = r.mappings.iter().map(|h| h.pid).collect();
            mappers.dedup();
            if !mappers.is_empty() {
                let pids: Vec<String> = mappers.iter().map(u32::to_string).collect();
                users.push(format!("mapped by {}", pids.join(",")));
            }
            s += &format!(
                "{:<7} {:<7} {:<11} {:<36} {}\n",
                r.device,
                r.region,
                size,
                details,
                users.join("; ")
            );
        }
        if self.regions.files_without_region > 0 {
            s += &format!(
                "{} open memkit file(s) without a region yet\n",
                self.regions.files_without_region
            );
        }
        if self.regions.unreadable > 0 {
            s += &format!(
                "{} process(es) could not be inspected: run as root to see every region\n",
                self.regions.unreadable
            );
        }
        s
    }
}

/// Runs `memkit list`.
pub fn run(json: bool) -> ExitCode {
    let regions = match regions::scan(Path::new("/proc")) {
        Ok(r) => r,
        Err(e) => return exit::fail(json, &format!("cannot read /proc: {e}"), exit::ERROR),
    };
    let list = List {
        journal: journal(),
        regions,
    };
    emit(json, &list, || list.render());
    ExitCode::SUCCESS
}
