//! The three memkit devices and their ioctls, seen from userspace.
//!
//! `unsafe` in this crate lives here only: the `ioctl(2)` calls.

use memkit_core::abi::{self, UapiStruct};
use serde::Serialize;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One of memkit's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// `/dev/memkit-journal`.
    Journal,
    /// `/dev/memkit-rmem`.
    Rmem,
    /// `/dev/memkit-ckpt`.
    Ckpt,
}

impl DeviceKind {
    /// Every device, in a fixed order.
    pub const ALL: [DeviceKind; 3] = [DeviceKind::Journal, DeviceKind::Rmem, DeviceKind::Ckpt];

    /// The device's name under `/dev`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Journal => "memkit-journal",
            DeviceKind::Rmem => "memkit-rmem",
            DeviceKind::Ckpt => "memkit-ckpt",
        }
    }

    /// The device node; `MEMKIT_DEV_DIR` overrides `/dev` (for tests on other layouts).
    pub fn path(self) -> PathBuf {
        let dir = std::env::var_os("MEMKIT_DEV_DIR").unwrap_or_else(|| "/dev".into());
        PathBuf::from(dir).join(self.name())
    }

    /// The `MEMKIT_DEV_*` number the device reports in `memkit_version.device`.
    pub fn id(self) -> u32 {
        match self {
            DeviceKind::Journal => abi::DEV_JOURNAL,
            DeviceKind::Rmem => abi::DEV_RMEM,
            DeviceKind::Ckpt => abi::DEV_CKPT,
        }
    }
}

/// An open memkit device.
#[derive(Debug)]
pub struct Device {
    file: File,
    kind: DeviceKind,
}

impl Device {
    /// Opens `kind` for reading and writing.
    pub fn open(kind: DeviceKind) -> io::Result<Device> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(kind.path())?;
        Ok(Device { file, kind })
    }

    /// Opens `kind` for reading only (enough for `MEMKIT_IOC_VERSION`, the journal's
    /// `MEMKIT_IOC_JOURNAL_STATUS` and `pread`).
    pub fn open_read_only(kind: DeviceKind) -> io::Result<Device> {
        let file = File::open(kind.path())?;
        Ok(Device { file, kind })
    }

    /// Which device this is.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// Calls `ioctl(fd, cmd, buf.as_mut_ptr())`: the kernel reads and writes at most
    /// `buf.len()` bytes, as the `size` field in `buf` tells it.
    pub fn ioctl_bytes(&self, cmd: u32, buf: &mut [u8]) -> io::Result<i32> {
        // The kernel never touches more than the struct's `size` field says, which the
        // caller fills in; with a `size` larger than `buf` a call could reach past it,
        // so refuse that here.
        let size = buf
            .get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        if size.is_none_or(|s| s as usize > buf.len()) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `buf` is valid for reads and writes of `buf.len()` bytes, and the
        // kernel accesses at most `size <= buf.len()` bytes of it (checked above).
        unsafe { self.ioctl_raw(cmd, buf.as_mut_ptr() as usize) }
    }

    /// Calls `ioctl(fd, cmd, arg)` with an arbitrary argument.
    ///
    /// # Safety
    ///
    /// If `arg` is an address in this process, the kernel may write to it as the
    /// command's struct: it must be valid for that, or not mapped writable at all.
    pub unsafe fn ioctl_raw(&self, cmd: u32, arg: usize) -> io::Result<i32> {
        // SAFETY: the fd is open for the life of `self`; the caller answers for `arg`.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), cmd as _, arg) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// Calls command `cmd` with the struct `v` exactly as given (its `size` field
    /// included) and returns the struct as the kernel left it.
    pub fn call<T: UapiStruct>(&self, cmd: u32, v: &T) -> io::Result<T> {
        let mut buf = vec![0u8; T::SIZE];
        v.encode(&mut buf);
        self.ioctl_bytes(cmd, &mut buf)?;
        Ok(T::decode(&buf))
    }

    /// `MEMKIT_IOC_VERSION`.
    pub fn version(&self) -> io::Result<abi::Version> {
        let size = abi::Version::SIZE as u32;
        self.call(
            abi::IOC_VERSION,
            &abi::Version {
                size,
                ..Default::default()
            },
        )
    }

    /// `MEMKIT_IOC_JOURNAL_ATTACH`: attaches the DAX block device at `path` as the
    /// journal, recovering it; with `format` it is formatted first with `mj_count` MJs
    /// of `mj_size` bytes (0 for the kernel's defaults).
    pub fn journal_attach(
        &self,
        path: &Path,
        format: bool,
        mj_count: u32,
        mj_size: u32,
    ) -> io::Result<()> {
        let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "device path contains a NUL byte",
            )
        })?;
        let flags = if format {
            abi::JOURNAL_ATTACH_FORMAT
        } else {
            0
        };
        let size = abi::JournalAttach::SIZE as u32;
        // The kernel only reads the NUL-terminated string `path` points to; it lives
        // until the end of this function.
        let req = abi::JournalAttach {
            size,
            flags,
            path: path.as_ptr() as u64,
            mj_count,
            mj_size,
        };
        self.call(abi::IOC_JOURNAL_ATTACH, &req).map(drop)
    }

    /// `MEMKIT_IOC_JOURNAL_DETACH`: makes every write durable and detaches the journal.
    pub fn journal_detach(&self) -> io::Result<()> {
        let size = abi::JournalDetach::SIZE as u32;
        self.call(
            abi::IOC_JOURNAL_DETACH,
            &abi::JournalDetach { size, flags: 0 },
        )
        .map(drop)
    }

    /// `MEMKIT_IOC_JOURNAL_STATUS`.
    pub fn journal_status(&self) -> io::Result<abi::JournalStatus> {
        let size = abi::JournalStatus::SIZE as u32;
        self.call(
            abi::IOC_JOURNAL_STATUS,
            &abi::JournalStatus {
                size,
                ..Default::default()
            },
        )
    }

    /// `MEMKIT_IOC_JOURNAL_TX`: writes every `(offset, data)` range of the data region
    /// as one atomic transaction; returns its commit id, durable on return.
    pub fn journal_tx(&self, ranges: &[(u64, &[u8])]) -> io::Result<u64> {
        let nr_ranges =
            u32::try_from(ranges.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        // The kernel only reads the data the ranges point to; `ranges` outlives the call.
        self.journal_tx_ranges(&range_structs(ranges), nr_ranges)
    }

    /// `MEMKIT_IOC_JOURNAL_TX` with a range array as given (for tests of bad
    /// arguments): `nr_ranges` may disagree with `ranges.len()` and the data pointers
    /// may be anything, since the kernel only reads through them.
    pub fn journal_tx_ranges(
        &self,
        ranges: &[abi::JournalRange],
        nr_ranges: u32,
    ) -> io::Result<u64> {
        let array = encode_ranges(ranges);
        let req = abi::JournalTx {
            size: abi::JournalTx::SIZE as u32,
            ranges: array.as_ptr() as u64,
            nr_ranges,
            ..Default::default()
        };
        self.call(abi::IOC_JOURNAL_TX, &req).map(|t| t.commit_id)
    }

    /// `pread(2)`: for `/dev/memkit-journal`, bytes at `offset` of the data region.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }
}

/// The `struct memkit_journal_range`s of `(offset, data)` ranges.
fn range_structs(ranges: &[(u64, &[u8])]) -> Vec<abi::JournalRange> {
    ranges
        .iter()
        .map(|(offset, data)| abi::JournalRange {
            offset: *offset,
            len: data.len() as u64,
            data: data.as_ptr() as u64,
        })
        .collect()
}

/// The bytes of a `struct memkit_journal_range` array.
fn encode_ranges(ranges: &[abi::JournalRange]) -> Vec<u8> {
    let size = abi::JournalRange::SIZE;
    let mut array = vec![0u8; ranges.len() * size];
    for (chunk, r) in array.chunks_exact_mut(size).zip(ranges) {
        r.encode(chunk);
    }
    array
}

/// Names of the feature bits set in `features`; unknown bits as hex.
pub fn feature_names(features: u64) -> Vec<String> {
    const NAMES: [(u64, &str); 3] = [
        (abi::FEAT_JOURNAL_TX, "journal-tx"),
        (abi::FEAT_RMEM_PREFETCH, "rmem-prefetch"),
        (abi::FEAT_CKPT_DIRTY, "ckpt-dirty"),
    ];
    let mut names: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| features & bit != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let unknown = features & !abi::FEATURES_KNOWN;
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ids() {
        assert_eq!(DeviceKind::Journal.name(), "memkit-journal");
        let ids: Vec<u32> = DeviceKind::ALL.iter().map(|k| k.id()).collect();
        assert_eq!(ids, [abi::DEV_JOURNAL, abi::DEV_RMEM, abi::DEV_CKPT]);
    }

    #[test]
    fn range_array_points_at_the_data() {
        let a = [1u8, 2, 3];
        let b = b"hello";
        let array = encode_ranges(&range_structs(&[(0, &a), (4096, b)]));
        assert_eq!(array.len(), 2 * abi::JournalRange::SIZE);
        let r0 = abi::JournalRange::decode(&array[..24]);
        let r1 = abi::JournalRange::decode(&array[24..]);
        assert_eq!((r0.offset, r0.len, r0.data), (0, 3, a.as_ptr() as u64));
        assert_eq!((r1.offset, r1.len, r1.data), (4096, 5, b.as_ptr() as u64));
    }

    #[test]
    fn feature_names_cover_known_and_unknown_bits() {
        assert!(feature_names(0).is_empty());
        assert_eq!(
            feature_names(abi::FEATURES_KNOWN),
            ["journal-tx", "rmem-prefetch", "ckpt-dirty"]
        );
        assert_eq!(
            feature_names(1 << 40 | abi::FEAT_CKPT_DIRTY),
            ["ckpt-dirty", "0x10000000000"]
        );
    }
}
