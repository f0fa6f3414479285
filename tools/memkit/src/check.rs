//! `memkit check`: what this machine and this caller offer memkit, as `criu check`
//! does for CRIU — the module and its ABI, each device's node and whether the caller
//! can use it, and the kernel features each part of memkit relies on.

use crate::exit::emit;
use memkit::dev::{feature_names, Device, DeviceKind};
use memkit::track::SoftDirty;
use memkit_core::abi;
use serde::Serialize;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::ExitCode;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// There and usable.
    Ok,
    /// Not there: the module is not loaded, or the kernel lacks the feature.
    Missing,
    /// There, but this caller may not use it (permissions, a sysctl).
    Denied,
    /// There, but not as memkit needs it (another ABI, not DAX, ...).
    Unusable,
}

/// One line of the report.
#[derive(Debug, Serialize)]
pub struct Check {
    /// What was checked (`module`, `device memkit-journal`, `soft-dirty`, ...).
    pub name: String,
    /// Whether memkit needs it (`false`: only a fallback or a comparison does).
    pub required: bool,
    /// The outcome.
    pub status: Status,
    /// What was found, or what to do.
    pub detail: String,
}

/// The whole report: `ok` if every required check passed.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Every required check passed.
    pub ok: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

fn check(name: impl Into<String>, required: bool, status: Status, detail: String) -> Check {
    Check {
        name: name.into(),
        required,
        status,
        detail,
    }
}

fn module_loaded() -> Check {
    if Path::new("/sys/module/memkit").exists() {
        check("module", true, Status::Ok, "memkit is loaded".into())
    } else {
        check(
            "module",
            true,
            Status::Missing,
            "memkit is not loaded: modprobe memkit (Documentation/install.rst)".into(),
        )
    }
}

/// The node of `kind`: its mode and owner, whether the caller can open it, and the
/// ABI and features the device reports.
fn device(kind: DeviceKind) -> Check {
    let path = kind.path();
    let name = format!("device {}", kind.name());
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_char_device() => m,
        Ok(_) => {
            return check(
                name,
                true,
                Status::Unusable,
                format!("{} is not a character device", path.display()),
            )
        }
        Err(e) => {
            return check(
                name,
                true,
                Status::Missing,
                format!("{}: {e}", path.display()),
            )
        }
    };
    let node = format!(
        "mode {:04o} uid {} gid {}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    );
    let dev = match Device::open(kind) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return check(
                name,
                true,
                Status::Denied,
                format!(
                    "{node}: this user cannot open it (the udev rule, Documentation/security.rst)"
                ),
            )
        }
        Err(e) => return check(name, true, Status::Unusable, format!("{node}: open: {e}")),
    };
    match dev.version() {
        Ok(v) if v.device != kind.id() => check(
            name,
            true,
            Status::Unusable,
            format!("{node}: answers as device {}", v.device),
        ),
        Ok(v) => {
            let abi = format!("ABI {}.{}", v.abi_major, v.abi_minor);
            let features = feature_names(v.features).join(",");
            if v.abi_major != abi::ABI_MAJOR {
                check(
                    name,
                    true,
                    Status::Unusable,
                    format!("{node}, {abi}: this tool speaks ABI {}.x", abi::ABI_MAJOR),
                )
            } else {
                check(
                    name,
                    true,
                    Status::Ok,
                    format!("{node}, {abi}, features {features}"),
                )
            }
        }
        Err(e) => check(
            name,
            true,
            Status::Unusable,
            format!("{node}: MEMKIT_IOC_VERSION: {e}"),
        ),
    }
}

/// Whether the block device `dev` (a path such as `/dev/pmem0`) supports DAX.
fn dax(dev: &Path) -> Check {
    let name = format!("dax {}", dev.display());
    let meta = match std::fs::metadata(dev) {
        Ok(m) if m.file_type().is_block_device() => m,
        Ok(_) => return check(name, true, Status::Unusable, "not a block device".into()),
        Err(e) => return check(name, true, Status::Missing, e.to_string()),
    };
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let attr = format!("/sys/dev/block/{major}:{minor}/queue/dax");
    match std::fs::read_to_string(&attr) {
        Ok(s) if s.trim() == "1" => check(name, true, Status::Ok, format!("{attr} = 1")),
        Ok(s) => check(
            name,
            true,
            Status::Unusable,
            format!(
                "{attr} = {}: the journal needs a DAX device (a pmem namespace in fsdax mode)",
                s.trim()
            ),
        ),
        Err(e) => check(name, true, Status::Unusable, format!("{attr}: {e}")),
    }
}

/// The kernel's mapping-dirty helpers, which `/dev/memkit-ckpt` collects with: the
/// module does not load without them, so only its symbol is looked for.
fn mapping_dirty_helpers() -> Check {
    const SYMBOL: &str = "clean_record_shared_mapping_range";
    let name = "mapping-dirty-helpers";
    match std::fs::read_to_string("/proc/kallsyms") {
        Ok(s) if s.lines().any(|l| l.split_whitespace().nth(2) == Some(SYMBOL)) => {
            check(name, true, Status::Ok, format!("{SYMBOL} in /proc/kallsyms"))
        }
        Ok(_) => check(
            name,
            true,
            Status::Missing,
            format!(
                "no {SYMBOL}: the kernel lacks CONFIG_MAPPING_DIRTY_HELPERS (selected by DRM_VMWGFX)"
            ),
        ),
        Err(e) => check(name, true, Status::Denied, format!("/proc/kallsyms: {e}")),
    }
}

/// Soft-dirty bits (`CONFIG_MEM_SOFT_DIRTY`): the checkpointer's fallback for memory
/// that is not a memkit region.
fn soft_dirty() -> Check {
    let name = "soft-dirty";
    match SoftDirty::supported() {
        Ok(true) => check(
            name,
            false,
            Status::Ok,
            "a written page reads back soft-dirty".into(),
        ),
        Ok(false) => check(
            name,
            false,
            Status::Missing,
            "pagemap never reports soft-dirty (CONFIG_MEM_SOFT_DIRTY): `ckpt run` needs a region"
                .into(),
        ),
        Err(e) => check(
            name,
            false,
            Status::Denied,
            format!("/proc/self/clear_refs: {e}"),
        ),
    }
}

/// `PAGEMAP_SCAN` (Linux 6.7): the kernel's own dirty-page scan, which the benchmarks
/// compare with.
fn pagemap_scan() -> Check {
    let name = "pagemap-scan";
    let buf = vec![0u8; 2 * 4096];
    let page = (buf.as_ptr() as u64).next_multiple_of(4096);
    let r = SoftDirty::open(std::process::id() as libc::pid_t)
        .and_then(|sd| sd.dirty_scan(page, page + 4096));
    drop(buf);
    match r {
        Ok(_) => check(name, false, Status::Ok, "PAGEMAP_SCAN answers".into()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::EINVAL)) => check(
            name,
            false,
            Status::Missing,
            format!("PAGEMAP_SCAN: {e} (Linux 6.7 and later)"),
        ),
        Err(e) => check(name, false, Status::Denied, format!("PAGEMAP_SCAN: {e}")),
    }
}

/// userfaultfd (`CONFIG_USERFAULTFD`), for the write-protect mode `PAGEMAP_SCAN` is
/// compared in.
fn userfaultfd() -> Check {
    let name = "userfaultfd";
    match memkit::track::userfaultfd_available() {
        Ok(()) => check(name, false, Status::Ok, "userfaultfd(2) answers".into()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => check(
            name,
            false,
            Status::Missing,
            "no userfaultfd(2) (CONFIG_USERFAULTFD)".into(),
        ),
        Err(e) => check(
            name,
            false,
            Status::Denied,
            format!("userfaultfd(2): {e} (vm.unprivileged_userfaultfd)"),
        ),
    }
}

/// Every check; `dax_device` adds the journal's device.
pub fn report(dax_device: Option<&Path>) -> Report {
    let mut checks = vec![module_loaded()];
    checks.extend(DeviceKind::ALL.iter().map(|&k| device(k)));
    if let Some(d) = dax_device {
        checks.push(dax(d));
    }
    checks.push(mapping_dirty_helpers());
    checks.push(soft_dirty());
    checks.push(pagemap_scan());
    checks.push(userfaultfd());
    let ok = checks.iter().all(|c| !c.required || c.status == Status::Ok);
    Report { ok, checks }
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    for c in &r.checks {
        let status = match c.status {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Denied => "DENIED",
            Status::Unusable => "UNUSABLE",
        };
        let need = if c.required { "" } else { " (optional)" };
        s.push_str(&format!("{:<9} {}{need}: {}\n", status, c.name, c.detail));
    }
    s.push_str(if r.ok {
        "memkit can run here\n"
    } else {
        "memkit cannot run here: see the lines above\n"
    });
    s
}

/// `memkit check [--device DEV]`: exit 0 if every required check passed, 5
/// ([`crate::exit::NOT_READY`]) if not.
pub fn run(device: Option<&Path>, json: bool) -> ExitCode {
    let r = report(device);
    emit(json, &r, || render(&r));
    if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::NOT_READY)
    }
}
