//! Loading and unloading `memkit.ko`: repeated cycles, unload refused while a device
//! is open, and kmemleak's verdict at the end.

use crate::ktap::{Outcome, TestResult};
use memkit::dev::{Device, DeviceKind};
use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

const NAME: &str = "memkit";

fn loaded() -> Result<bool, String> {
    let mods =
        std::fs::read_to_string("/proc/modules").map_err(|e| format!("/proc/modules: {e}"))?;
    Ok(mods.lines().any(|l| l.split(' ').next() == Some(NAME)))
}

fn load(path: &str) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: finit_module reads the module from an open fd; the parameter string is
    // a valid NUL-terminated C string.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn unload() -> io::Result<()> {
    let name = CString::new(NAME).expect("no NUL in the name");
    // SAFETY: delete_module takes a NUL-terminated module name and flags.
    let ret = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kernel log, for checking that a test left no warning behind.
fn kernel_log() -> Result<String, String> {
    let out = std::process::Command::new("dmesg")
        .output()
        .map_err(|e| format!("dmesg: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lines of `log` that report a kernel problem.
fn problems(log: &str) -> Vec<&str> {
    const MARKS: [&str; 6] = [
        "WARNING:",
        "BUG:",
        "Oops",
        "kernel BUG",
        "UBSAN:",
        "possible recursive locking",
    ];
    log.lines()
        .filter(|l| MARKS.iter().any(|m| l.contains(m)))
        .collect()
}

fn module_path(opts: &crate::Options) -> Result<&str, Outcome> {
    opts.module
        .as_deref()
        .ok_or_else(|| Outcome::Skip("no --module PATH given".into()))
}

pub fn unload_refused_while_open(opts: &crate::Options) -> TestResult {
    let path = match module_path(opts) {
        Ok(p) => p,
        Err(skip) => return Ok(skip),
    };
    if !loaded()? {
        load(path).map_err(|e| format!("load {path}: {e}"))?;
    }
    for k in DeviceKind::ALL {
        let dev = Device::open(k).map_err(|e| format!("open {}: {e}", k.name()))?;
        match unload() {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EAGAIN)) => {}
            other => {
                return Err(format!(
                    "unload with {} open: {other:?}, want EBUSY/EAGAIN",
                    k.name()
                ))
            }
        }
        // The device still works after the refused unload.
        dev.version()
            .map_err(|e| format!("{} after refused unload: {e}", k.name()))?;
    }
    Ok(Outcome::Pass)
}

pub fn load_unload_50(opts: &crate::Options) -> TestResult {
    let path = match module_path(opts) {
        Ok(p) => p,
        Err(skip) => return Ok(skip),
    };
    let before = problems(&kernel_log()?).len();
    for i in 0..50 {
        if loaded()? {
            unload().map_err(|e| format!("cycle {i}: unload: {e}"))?;
        }
        if DeviceKind::ALL.iter().any(|k| k.path().exists()) {
            return Err(format!("cycle {i}: a device node survived the unload"));
        }
        load(path).map_err(|e| format!("cycle {i}: load {path}: {e}"))?;
        for k in DeviceKind::ALL {
            let v = Device::open(k)
                .and_then(|d| d.version())
                .map_err(|e| format!("cycle {i}: {}: {e}", k.name()))?;
            if v.device != k.id() {
                return Err(format!(
                    "cycle {i}: {} answered as device {}",
                    k.name(),
                    v.device
                ));
            }
        }
    }
    let log = kernel_log()?;
    let found = problems(&log);
    if found.len() > before {
        return Err(format!(
            "the kernel log reports problems: {:?}",
            &found[before..]
        ));
    }
    Ok(Outcome::Pass)
}

pub fn kmemleak_clean(_: &crate::Options) -> TestResult {
    let ctl = "/sys/kernel/debug/kmemleak";
    if !std::path::Path::new(ctl).exists() {
        return Ok(Outcome::Skip(
            "no kmemleak (CONFIG_DEBUG_KMEMLEAK and debugfs)".into(),
        ));
    }
    // kmemleak reports an object that is older than 5 s and was unreferenced, with the
    // same contents, in two scans in a row (the first records its checksum). Every
    // object of the earlier cases is older than this case: two scans whose second
    // starts 6 s after this case began (a scan takes seconds under TCG; a write of
    // "scan" returns when it is done, and the report is ready then).
    let began = std::time::Instant::now();
    let scan = || std::fs::write(ctl, "scan").map_err(|e| format!("{ctl}: scan: {e}"));
    scan()?;
    std::thread::sleep(Duration::from_secs(6).saturating_sub(began.elapsed()));
    scan()?;
    let report = std::fs::read_to_string(ctl).map_err(|e| format!("{ctl}: {e}"))?;
    let objects: Vec<&str> = report.split("unreferenced object").skip(1).collect();
    let ours: Vec<&&str> = objects.iter().filter(|o| o.contains(NAME)).collect();
    println!(
        "kmemleak: {} unreferenced objects, {} from memkit",
        objects.len(),
        ours.len()
    );
    if let Some(first) = ours.first() {
        return Err(format!("memkit leaked memory:\nunreferenced object{first}"));
    }
    Ok(Outcome::Pass)
}
