//! The live memkit regions of this machine, as `memkit list` shows them: found in
//! `/proc`, the way `lsof` and DRM's fdinfo tools find theirs.
//!
//! Every open file of `/dev/memkit-rmem` and `/dev/memkit-ckpt` describes its region in
//! `/proc/PID/fdinfo/FD` (the `memkit-` keys of [`abi::fdinfo`], ABI 1.1); every
//! mapping of a region shows in `/proc/PID/maps` at an offset inside the region's
//! window (region id `<<` [`WINDOW_SHIFT`] pages). A region whose files were all
//! closed lives on while it is mapped: it is listed from its mappings alone.
//!
//! Only the processes the caller may inspect are seen (`ptrace` read access: all of
//! them for root); [`Scan::unreadable`] counts the others.

use memkit_core::abi::fdinfo as key;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Page-offset bits of a region's mmap window (`edge.rs`'s `RegionId::WINDOW_SHIFT`).
pub const WINDOW_SHIFT: u32 = 20;
/// Bytes of a page.
const PAGE: u64 = 4096;

/// What the `memkit-` lines of one fdinfo file say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// `journal`, `rmem` or `ckpt`.
    pub device: String,
    /// Every other `memkit-` key, without its prefix, in order.
    pub fields: BTreeMap<String, String>,
}

impl FdInfo {
    /// The `memkit-` lines of an fdinfo file; `None` if it has no
    /// [`key::DEVICE`] line (not a memkit file, or a module before ABI 1.1).
    pub fn parse(text: &str) -> Option<FdInfo> {
        let mut info = FdInfo::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k == key::DEVICE {
                info.device = v.to_string();
            } else if let Some(name) = k.strip_prefix("memkit-") {
                info.fields.insert(name.to_string(), v.to_string());
            }
        }
        (!info.device.is_empty()).then_some(info)
    }

    /// The value of `memkit-NAME` (`key` is the full key).
    pub fn get(&self, key: &str) -> Option<&str> {
        let name = key.strip_prefix("memkit-")?;
        self.fields.get(name).map(String::as_str)
    }

    /// The number of `key`, if it has one.
    pub fn num(&self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    }

    /// The region id, if the file has a region.
    pub fn region(&self) -> Option<u64> {
        self.num(key::REGION)
    }
}

/// A process that holds a region's file or maps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The process.
    pub pid: u32,
    /// The process's name (`/proc/PID/comm`).
    pub comm: String,
    /// The descriptor, for a holder of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<u32>,
    /// `[start, end)` of the mapping, for a mapper.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping: Option<(String, String)>,
}

/// One live region.
#[derive(Clone, Debug, Serialize)]
pub struct Region {
    /// `rmem` or `ckpt`.
    pub device: String,
    /// The region id (its mmap window).
    pub region: u64,
    /// What the region's file says (bytes, mmap offset, backend, policy, …); empty
    /// if no open file of it was readable (it is only mapped).
    pub info: BTreeMap<String, String>,
    /// Open files of it.
    pub files: Vec<Holder>,
    /// Mappings of it.
    pub mappings: Vec<Holder>,
}

/// The regions seen in `/proc`.
#[derive(Debug, Default, Serialize)]
pub struct Scan {
    /// By device, then id.
    pub regions: Vec<Region>,
    /// Open memkit files without a region yet (`memkit-region: none`).
    pub files_without_region: u64,
    /// Processes whose descriptors or maps this caller may not read.
    pub unreadable: u64,
}

/// The device a `/proc/PID/fd/N` link or a maps path names, if memkit's.
fn device_of(path: &str) -> Option<&'static str> {
    match path {
        "/dev/memkit-rmem" => Some("rmem"),
        "/dev/memkit-ckpt" => Some("ckpt"),
        _ => None,
    }
}

/// One line of `/proc/PID/maps` that maps a memkit device: `(device, region id,
/// start, end)`.
pub fn parse_maps_line(line: &str) -> Option<(&'static str, u64, String, String)> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let _perms = f.next()?;
    let offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let _dev = f.next()?;
    let _inode = f.next()?;
    let device = device_of(f.next()?)?;
    let (start, end) = range.split_once('-')?;
    Some((
        device,
        (offset / PAGE) >> WINDOW_SHIFT,
        format!("0x{start}"),
        format!("0x{end}"),
    ))
}

fn comm(proc: &Path) -> String {
    std::fs::read_to_string(proc.join("comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// Scans `/proc` (or a tree laid out like it, for tests).
pub fn scan(proc_root: &Path) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    let mut by_id: BTreeMap<(String, u64), Region> = BTreeMap::new();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let name = comm(&dir);
        let mut readable = true;
        match std::fs::read_dir(dir.join("fd")) {
            Ok(fds) => {
                for fd in fds.flatten() {
                    let Some(n) = fd.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    let Ok(target) = std::fs::read_link(fd.path()) else {
                        continue;
                    };
                    let Some(device) = target.to_str().and_then(device_of) else {
                        continue;
                    };
                    let text = std::fs::read_to_string(dir.join("fdinfo").join(n.to_string()))
                        .unwrap_or_default();
                    let Some(info) = FdInfo::parse(&text) else {
                        continue;
                    };
                    let Some(id) = info.region() else {
                        out.files_without_region += 1;
                        continue;
                    };
                    let r = region_entry(&mut by_id, device, id);
                    if r.info.is_empty() {
                        r.info = info.fields.clone();
                        r.info.remove("region");
                    }
                    r.files.push(Holder {
                        pid,
                        comm: name.clone(),
                        fd: Some(n),
                        mapping: None,
                    });
                }
            }
            Err(_) => readable = false,
        }
        match std::fs::read_to_string(dir.join("maps")) {
            Ok(maps) => {
                for (device, id, start, end) in maps.lines().filter_map(parse_maps_line) {
                    let r = region_entry(&mut by_id, device, id);
                    r.mappings.push(Holder {
                        pid,
                        comm: name.clone(),
                        fd: None,
                        mapping: Some((start, end)),
                    });
                }
            }
            Err(_) => readable = false,
        }
        if !readable {
            out.unreadable += 1;
        }
    }
    out.regions = by_id.into_values().collect();
    Ok(out)
}

/// The region `(device, id)` of `by_id`, added empty if new.
fn region_entry<'a>(
    by_id: &'a mut BTreeMap<(String, u64), Region>,
    device: &str,
    id: u64,
) -> &'a mut Region {
    by_id
        .entry((device.to_string(), id))
        .or_insert_with(|| Region {
            device: device.to_string(),
            region: id,
            info: BTreeMap::new(),
            files: Vec::new(),
            mappings: Vec::new(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_lines_are_read_by_key() {
        let text = "pos:\t0\nflags:\t02\nmnt_id:\t23\nino:\t5\n\
                    memkit-device:\trmem\nmemkit-region:\t3\n\
                    memkit-mmap-offset:\t0x300000000\nmemkit-bytes:\t16777216\n\
                    memkit-policy:\tptline\n";
        let i = FdInfo::parse(text).unwrap();
        assert_eq!(i.device, "rmem");
        assert_eq!(i.region(), Some(3));
        assert_eq!(i.num(key::MMAP_OFFSET), Some(3 << 32));
        assert_eq!(i.num(key::BYTES), Some(16 << 20));
        assert_eq!(i.get(key::POLICY), Some("ptline"));
        assert_eq!(i.num(key::POLICY), None);
        let none = FdInfo::parse("memkit-device:\tckpt\nmemkit-region:\tnone\n").unwrap();
        assert_eq!(none.region(), None);
        assert_eq!(FdInfo::parse("pos:\t0\nflags:\t02\n"), None);
    }

    #[test]
    fn maps_lines_name_the_region_of_their_offset() {
        let l = "7f12a000-7f12c000 rw-s 300000000 00:05 12   /dev/memkit-rmem";
        assert_eq!(
            parse_maps_line(l),
            Some(("rmem", 3, "0x7f12a000".into(), "0x7f12c000".into()))
        );
        // A mapping of the middle of region 5's window.
        let l = "7f12a000-7f12c000 rw-s 500004000 00:05 12 /dev/memkit-ckpt";
        assert_eq!(parse_maps_line(l).map(|m| m.1), Some(5));
        for other in [
            "7f12a000-7f12c000 r--p 00000000 08:01 99 /usr/lib/libc.so.6",
            "7f12a000-7f12c000 rw-p 00000000 00:00 0",
            "garbage",
        ] {
            assert_eq!(parse_maps_line(other), None, "{other}");
        }
    }

    #[test]
    fn a_proc_tree_gives_regions_with_their_files_and_mappings() {
        let root = std::env::temp_dir().join(format!("memkit-regions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let p = |pid: u32, comm: &str, maps: &str| {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(d.join("fd")).unwrap();
            std::fs::create_dir_all(d.join("fdinfo")).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(d.join("maps"), maps).unwrap();
            d
        };
        let fd = |d: &Path, n: u32, dev: &str, info: &str| {
            std::os::unix::fs::symlink(dev, d.join("fd").join(n.to_string())).unwrap();
            std::fs::write(d.join("fdinfo").join(n.to_string()), info).unwrap();
        };
        let a = p(
            100,
            "writer",
            "7f000000-7f002000 rw-s 500000000 00:05 12 /dev/memkit-ckpt\n",
        );
        fd(
            &a,
            3,
            "/dev/memkit-ckpt",
            "memkit-device:\tckpt\nmemkit-region:\t5\nmemkit-bytes:\t8192\n",
        );
        fd(
            &a,
            4,
            "/dev/memkit-rmem",
            "memkit-device:\trmem\nmemkit-region:\tnone\n",
        );
        fd(&a, 5, "/dev/null", "pos:\t0\n");
        // Region 7 is only mapped: its file was closed.
        p(
            200,
            "reader",
            "7f000000-7f001000 r--s 700000000 00:05 13 /dev/memkit-rmem\n",
        );
        std::fs::create_dir_all(root.join("self")).unwrap();
        let s = scan(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(s.files_without_region, 1);
        assert_eq!(s.regions.len(), 2);
        let ckpt = &s.regions[0];
        assert_eq!((ckpt.device.as_str(), ckpt.region), ("ckpt", 5));
        assert_eq!(ckpt.info.get("bytes").map(String::as_str), Some("8192"));
        assert_eq!(ckpt.files.len(), 1);
        assert_eq!((ckpt.files[0].pid, ckpt.files[0].fd), (100, Some(3)));
        assert_eq!(ckpt.files[0].comm, "writer");
        assert_eq!(ckpt.mappings.len(), 1);
        let rmem = &s.regions[1];
        assert_eq!((rmem.device.as_str(), rmem.region), ("rmem", 7));
        assert!(rmem.info.is_empty() && rmem.files.is_empty());
        assert_eq!(
            rmem.mappings[0].mapping,
            Some(("0x7f000000".into(), "0x7f001000".into()))
        );
    }
}
