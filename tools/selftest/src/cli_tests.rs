//! `memkit list` in the guest: the attached journal and the live regions, as the
//! module describes them in fdinfo (ABI 1.1) and `/proc` shows their mappings.

use crate::ktap::{Outcome, TestResult};
use memkit::dev::{CkptMap, Device, DeviceKind};
use memkit_core::abi;
use serde_json::Value;
use std::os::fd::{AsFd, AsRawFd};

fn list() -> Result<Value, String> {
    let out = std::process::Command::new("memkit")
        .args(["--json", "list"])
        .output()
        .map_err(|e| format!("memkit list: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "memkit list: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "memkit list: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The listed region `(device, id)`, if any.
fn region<'a>(v: &'a Value, device: &str, id: u64) -> Option<&'a Value> {
    v["regions"]
        .as_array()?
        .iter()
        .find(|r| r["device"] == device && r["region"] == id)
}

/// This process holds it on `fd`.
fn held_by_us(r: &Value, fd: i32) -> bool {
    let pid = std::process::id();
    r["files"]
        .as_array()
        .is_some_and(|f| f.iter().any(|h| h["pid"] == pid && h["fd"] == fd))
}

/// A decimal field of the region's fdinfo (`memkit-` left out).
fn info_num(r: &Value, key: &str) -> Option<u64> {
    r["info"][key].as_str()?.parse().ok()
}

fn mapped_by_us(r: &Value) -> bool {
    let pid = std::process::id();
    r["mappings"]
        .as_array()
        .is_some_and(|m| m.iter().any(|h| h["pid"] == pid))
}

/// `cli_memkit_list`: a ckpt region (mapped) and an rmem region (not mapped) of this
/// process are listed with their descriptors, sizes, mmap offsets and rmem settings;
/// the ckpt region stays listed from its mapping once its descriptor is closed, and
/// goes with the mapping; the journal attached to the pmem device is listed with
/// that device, and as not attached after a detach.
pub fn cli_memkit_list(_: &crate::Options) -> TestResult {
    const CKPT_BYTES: u64 = 64 << 10;
    let ckpt = Device::open(DeviceKind::Ckpt).map_err(|e| format!("open ckpt: {e}"))?;
    let off = ckpt
        .ckpt_create(CKPT_BYTES)
        .map_err(|e| format!("CKPT_CREATE: {e}"))?;
    let map = CkptMap::new(&ckpt, off, CKPT_BYTES as usize).map_err(|e| format!("mmap: {e}"))?;
    map.write_u64(0, 1);
    let rmem = Device::open(DeviceKind::Rmem).map_err(|e| format!("open rmem: {e}"))?;
    let cfg = abi::RmemConfig {
        bytes: 32 << 12,
        budget: 8,
        backend: abi::RMEM_BACKEND_EMULATED,
        policy: abi::RMEM_POLICY_TREND,
        degree: 4,
        max_inflight: 4,
        ..Default::default()
    };
    let roff = rmem
        .rmem_configure(&cfg)
        .map_err(|e| format!("RMEM_CONFIGURE: {e}"))?;
    let (cid, rid) = (off >> 32, roff >> 32);

    let v = list()?;
    let c = region(&v, "ckpt", cid).ok_or(format!("ckpt region {cid} not listed: {v}"))?;
    let cfd = ckpt.as_fd().as_raw_fd();
    if !held_by_us(c, cfd)
        || !mapped_by_us(c)
        || info_num(c, "bytes") != Some(CKPT_BYTES)
        || c["info"]["mmap-offset"] != format!("{off:#x}")
        || c["info"]["pages-allocated"] != "1"
    {
        return Err(format!(
            "ckpt region {cid} (fd {cfd}, offset {off:#x}): {c}"
        ));
    }
    let r = region(&v, "rmem", rid).ok_or(format!("rmem region {rid} not listed: {v}"))?;
    let rfd = rmem.as_fd().as_raw_fd();
    if !held_by_us(r, rfd)
        || mapped_by_us(r)
        || info_num(r, "bytes") != Some(32 << 12)
        || r["info"]["backend"] != "emulated"
        || r["info"]["policy"] != "trend"
        || r["info"]["budget-pages"] != "8"
    {
        return Err(format!("rmem region {rid} (fd {rfd}): {r}"));
    }

    // The same, as a user reads it.
    let text = std::process::Command::new("memkit")
        .arg("list")
        .output()
        .map_err(|e| format!("memkit list: {e}"))?;
    let text = String::from_utf8_lossy(&text.stdout);
    if !text
        .lines()
        .any(|l| l.starts_with("ckpt ") && l.contains(&format!("fd {cfd}")))
    {
        return Err(format!(
            "memkit list does not show ckpt region {cid}:\n{text}"
        ));
    }
    print!("{text}");

    // Closed, the ckpt region lives on in its mapping.
    drop(ckpt);
    let v = list()?;
    let c = region(&v, "ckpt", cid).ok_or(format!("mapped region {cid} not listed: {v}"))?;
    if !mapped_by_us(c) || c["files"].as_array().is_none_or(|f| !f.is_empty()) {
        return Err(format!("ckpt region {cid} after close: {c}"));
    }
    map.unmap().map_err(|e| format!("munmap: {e}"))?;
    drop(rmem);
    let v = list()?;
    if region(&v, "ckpt", cid).is_some() || region(&v, "rmem", rid).is_some() {
        return Err(format!("regions {cid} and {rid} still listed: {v}"));
    }

    // The journal, on the pmem device.
    let Some(j) = crate::journal_tests::fresh(16, 4096)? else {
        return Ok(Outcome::Skip("no pmem device for the journal part".into()));
    };
    let pmem = crate::journal_tests::pmem_path();
    let name = pmem.trim_start_matches("/dev/");
    let devno = std::fs::read_to_string(format!("/sys/class/block/{name}/dev"))
        .map_err(|e| format!("{name}'s number: {e}"))?;
    let v = list()?;
    let jl = &v["journal"];
    if jl["attached"] != true
        || jl["device"] != pmem.as_str()
        || jl["dev"] != devno.trim()
        || jl["mj_count"] != 16
        || jl["mj_size"] != 4096
    {
        return Err(format!("journal on {pmem} ({}): {jl}", devno.trim()));
    }
    let text = std::process::Command::new("memkit")
        .arg("list")
        .output()
        .map_err(|e| format!("memkit list: {e}"))?;
    print!("{}", String::from_utf8_lossy(&text.stdout));
    j.journal_detach().map_err(|e| format!("detach: {e}"))?;
    let v = list()?;
    if v["journal"]["attached"] != false || v["journal"].get("device").is_some() {
        return Err(format!("after detach: {}", v["journal"]));
    }
    println!(
        "listed ckpt region {cid}, rmem region {rid}, journal on {pmem} ({})",
        devno.trim()
    );
    Ok(Outcome::Pass)
}
