//! Loading and unloading `memkit.ko`: repeated cycles, unload refused while a device
//! is open, and kmemleak's verdict at the end.

use crate::ktap::{Outcome, TestResult};
use memkit::dev::{Device, DeviceKind};
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

const NAME: &str = "memkit";

pub(crate) fn loaded() -> Result<bool, String> {
    let mods =
        std::fs::read_to_string("/proc/modules").map_err(|e| format!("/proc/modules: {e}"))?;
    Ok(mods.lines().any(|l| l.split(' ').next() == Some(NAME)))
}

fn load(path: &str) -> io::Result<()> {
    load_with(path, c"")
}

/// Loads the module at `path` with the parameters `params` (`"name=value ..."`).
pub(crate) fn load_with(path: &str, params: &CStr) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    // SAFETY: finit_module reads the module from an open fd; the parameter string is
    // a valid NUL-terminated C string.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn unload() -> io::Result<()> {
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

pub(crate) fn module_path(opts: &crate::Options) -> Result<&str, Outcome> {
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

/// `modprobe memkit` loads the module `make install` put under
/// `/lib/modules/$(uname -r)/extra` (the guest's initramfs is built with it), and
/// `modprobe -r` unloads it: the path a user on a real machine takes.
pub fn modprobe_loads_the_installed_module(_: &crate::Options) -> TestResult {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_err(|e| format!("/proc/sys/kernel/osrelease: {e}"))?;
    let installed = format!("/lib/modules/{}/extra/memkit.ko", release.trim());
    if !std::path::Path::new(&installed).exists() {
        return Ok(Outcome::Skip(format!(
            "{installed} is not there: memkit is not installed (make install)"
        )));
    }
    let modprobe = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new("modprobe")
            .args(args)
            .output()
            .map_err(|e| format!("modprobe {}: {e}", args.join(" ")))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(format!(
                "modprobe {}: {}: {text}",
                args.join(" "),
                out.status
            ));
        }
        Ok(text)
    };
    if loaded()? {
        modprobe(&["-r", NAME])?;
    }
    if loaded()? {
        return Err("modprobe -r memkit left the module loaded".into());
    }
    // What modprobe resolves the name to (kmod and busybox both print "insmod PATH"),
    // then the load itself.
    let said = modprobe(&["-D", NAME])?;
    if !said.contains(&format!("insmod {installed}")) {
        return Err(format!(
            "modprobe -D memkit does not resolve to {installed}; it said: {said}"
        ));
    }
    modprobe(&[NAME])?;
    if !loaded()? {
        return Err("modprobe memkit succeeded but memkit is not loaded".into());
    }
    for k in DeviceKind::ALL {
        Device::open(k)
            .and_then(|d| d.version())
            .map_err(|e| format!("{} after modprobe: {e}", k.name()))?;
    }
    Ok(Outcome::Pass)
}

/// `memkit check`: as root, with the journal's pmem device, every required check
/// passes (the module, each device with this tool's ABI, DAX, the mapping-dirty
/// helpers) and the exit status is 0; as `nobody`, with the nodes at their default
/// 0600 root, each device is reported denied and the exit status is 1.
pub fn cli_memkit_check(_: &crate::Options) -> TestResult {
    use std::os::unix::process::CommandExt;
    let run = |nobody: bool| -> Result<(Option<i32>, serde_json::Value), String> {
        let mut cmd = std::process::Command::new("memkit");
        cmd.args(["--json", "check", "--device", "/dev/pmem0"]);
        if nobody {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().map_err(|e| format!("memkit check: {e}"))?;
        let v = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "memkit check: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        Ok((out.status.code(), v))
    };
    let (code, v) = run(false)?;
    let checks = v["checks"].as_array().ok_or(format!("no checks: {v}"))?;
    let status = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap_or("?").to_string())
    };
    for name in [
        "module",
        "device memkit-journal",
        "device memkit-rmem",
        "device memkit-ckpt",
        "dax /dev/pmem0",
        "mapping-dirty-helpers",
    ] {
        if status(name).as_deref() != Some("ok") {
            return Err(format!(
                "as root, check {name:?} is {:?}: {v}",
                status(name)
            ));
        }
    }
    if code != Some(0) || v["ok"] != true {
        return Err(format!("as root: exit {code:?}, report {v}"));
    }
    // The guest kernel has every optional feature too.
    for name in ["soft-dirty", "pagemap-scan", "userfaultfd"] {
        if status(name).as_deref() != Some("ok") {
            return Err(format!(
                "optional check {name:?} is {:?}: {v}",
                status(name)
            ));
        }
    }
    let nodes_default = DeviceKind::ALL.iter().all(|k| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(k.path()).is_ok_and(|m| m.mode() & 0o777 == 0o600 && m.uid() == 0)
    });
    if !nodes_default {
        return Ok(Outcome::Skip("the device nodes are not 0600 root".into()));
    }
    let (code, v) = run(true)?;
    let checks = v["checks"].as_array().ok_or(format!("no checks: {v}"))?;
    for k in DeviceKind::ALL {
        let name = format!("device {}", k.name());
        let c = checks.iter().find(|c| c["name"] == name.as_str());
        if c.map(|c| &c["status"]) != Some(&serde_json::json!("denied")) {
            return Err(format!("as nobody, {name} is not denied: {v}"));
        }
    }
    // 5: a required check failed (`memkit`'s exit statuses).
    if code != Some(5) || v["ok"] != false {
        return Err(format!("as nobody: exit {code:?}, report {v}"));
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
