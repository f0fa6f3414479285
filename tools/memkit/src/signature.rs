//! What a device or image file holds before a format overwrites it.
//!
//! `memkit journal format` and `memkit journal attach --format` both call
//! [`check_before_format`] before they write a byte (attach: before the ioctl that has
//! the kernel format). It refuses, unless `--force`, a target that holds
//!
//! - a memkit journal: its superblock, decoded by the image code (a superblock with
//!   memkit's magic that does not decode counts too: it is a damaged journal);
//! - anything libblkid recognises: a filesystem, RAID member, LUKS or swap signature
//!   (blkid `TYPE`) or a partition table (blkid `PTTYPE`); with `blkid -p`'s safe
//!   probing, more than one signature counts as well.
//!
//! libblkid is util-linux's own library, the one `blkid`, `wipefs`, udev and
//! `mkfs.*` use, so what it recognises is what the rest of the system would call the
//! device. It is linked dynamically (`-lblkid`: Debian's `libblkid-dev` for the build,
//! installed by `scripts/setup-host.sh`; `libblkid.so.1`, which needs only libc, at
//! run time, copied into the guest's initramfs with the binary like every library
//! `ldd` lists). The FFI below declares the seven functions used, no more.
//!
//! The check lives in the tool, not in the kernel: `MEMKIT_IOC_JOURNAL_ATTACH` with
//! the format flag is the administrator's raw interface and formats what it is given.

use crate::image::{describe_format_error, uuid_string};
use crate::pmem_file::FilePmem;
use memkit_core::journal::engine;
use memkit_core::journal::format::{FormatError, SB_MAGIC};
use memkit_core::journal::pmem::Pmem;
use std::ffi::{c_char, CStr, CString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::ptr::{self, NonNull};

/// Something a format would destroy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signature {
    /// A memkit journal whose superblock decodes.
    MemkitJournal {
        /// Its uuid, `xxxxxxxx-xxxx-…`.
        uuid: String,
    },
    /// memkit's superblock magic on a superblock that does not decode.
    DamagedMemkitJournal {
        /// What is wrong with the superblock.
        why: String,
    },
    /// A superblock libblkid recognises: a filesystem, RAID member, encrypted volume,
    /// swap area, ….
    Blkid {
        /// blkid's `TYPE`: `ext4`, `xfs`, `swap`, `crypto_LUKS`, `LVM2_member`, ….
        kind: String,
        /// blkid's `USAGE`: `filesystem`, `raid`, `crypto` or `other`, when it says.
        usage: Option<String>,
    },
    /// A partition table libblkid recognises.
    PartitionTable {
        /// blkid's `PTTYPE`: `dos`, `gpt`, ….
        kind: String,
    },
    /// Several signatures at once: libblkid's safe probing will not pick one.
    Ambivalent,
}

impl fmt::Display for Signature {
    /// What the device holds, as the object of "holds": `a filesystem (blkid TYPE=ext4)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::MemkitJournal { uuid } => write!(f, "a memkit journal (uuid {uuid})"),
            Signature::DamagedMemkitJournal { why } => {
                write!(f, "a damaged memkit journal superblock ({why})")
            }
            Signature::Blkid { kind, usage } => {
                let what = match usage.as_deref() {
                    Some("filesystem") => "a filesystem",
                    Some("raid") => "a RAID member",
                    Some("crypto") => "an encrypted volume",
                    _ => "a signature",
                };
                write!(f, "{what} (blkid TYPE={kind})")
            }
            Signature::PartitionTable { kind } => {
                write!(f, "a partition table (blkid PTTYPE={kind})")
            }
            Signature::Ambivalent => write!(
                f,
                "more than one signature (blkid will not choose; `wipefs` lists them)"
            ),
        }
    }
}

/// The one check `memkit journal format` and `memkit journal attach --format` make
/// before writing: `Err` with the message to print if `path` holds a [`Signature`]
/// and `force` is not given. With `force` nothing is read.
///
/// Paths that are neither a regular file nor a block device pass: nothing can be
/// formatted there, and the caller (or the kernel) refuses them with its own error.
pub fn check_before_format(path: &Path, force: bool) -> Result<(), String> {
    if force {
        return Ok(());
    }
    match probe(path)? {
        None => Ok(()),
        Some(sig) => Err(format!(
            "{} holds {sig}; --force to format it anyway",
            path.display()
        )),
    }
}

/// What `path` holds, if anything known: a memkit journal first (libblkid does not
/// know memkit), then whatever libblkid recognises. `Err` if it cannot be read.
pub fn probe(path: &Path) -> Result<Option<Signature>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() && !meta.file_type().is_block_device() {
        return Ok(None);
    }
    let file = File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let mut pm = FilePmem::whole(file).map_err(|e| format!("{shown}: {e}"))?;
    if pm.len() == 0 {
        return Ok(None);
    }
    let sb = engine::read_superblock(&pm);
    pm.take_error()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    match sb {
        Ok(sb) => {
            return Ok(Some(Signature::MemkitJournal {
                uuid: uuid_string(&sb.uuid),
            }))
        }
        // No memkit magic, or too short to hold a superblock at all.
        Err(FormatError::BadMagic) | Err(FormatError::TooSmall) if !has_magic(&pm) => {}
        Err(e) => {
            return Ok(Some(Signature::DamagedMemkitJournal {
                why: describe_format_error(e),
            }))
        }
    }
    blkid_probe(path).map_err(|e| format!("{e} (--force formats without looking)"))
}

/// Whether `pm` starts with the journal superblock's magic.
fn has_magic(pm: &FilePmem) -> bool {
    let mut b = [0u8; SB_MAGIC.len()];
    if pm.len() < b.len() as u64 {
        return false;
    }
    pm.read(0, &mut b);
    b == SB_MAGIC
}

/// libblkid's safe probe of `path` (superblocks and partition tables), as `blkid -p`.
fn blkid_probe(path: &Path) -> Result<Option<Signature>, String> {
    let shown = path.display();
    let probe = Probe::new(path).map_err(|e| format!("libblkid cannot probe {shown}: {e}"))?;
    match probe.safeprobe() {
        SafeProbe::Nothing => Ok(None),
        SafeProbe::Ambivalent => Ok(Some(Signature::Ambivalent)),
        SafeProbe::Error => Err(format!("libblkid failed to probe {shown}")),
        SafeProbe::Found => {
            if let Some(kind) = probe.value(c"TYPE") {
                let usage = probe.value(c"USAGE");
                Ok(Some(Signature::Blkid { kind, usage }))
            } else if let Some(kind) = probe.value(c"PTTYPE") {
                Ok(Some(Signature::PartitionTable { kind }))
            } else {
                Ok(Some(Signature::Blkid {
                    kind: "?".into(),
                    usage: None,
                }))
            }
        }
    }
}

/// The part of libblkid's API (`<blkid/blkid.h>`, util-linux) this module uses.
mod ffi {
    use std::ffi::{c_char, c_int};

    /// `struct blkid_struct_probe`: opaque, only ever handled through a pointer.
    #[repr(C)]
    pub struct BlkidProbe {
        _opaque: [u8; 0],
    }

    /// `BLKID_SUBLKS_TYPE`: report a superblock's `TYPE`.
    pub const BLKID_SUBLKS_TYPE: c_int = 1 << 5;
    /// `BLKID_SUBLKS_USAGE`: report its `USAGE`.
    pub const BLKID_SUBLKS_USAGE: c_int = 1 << 7;

    #[link(name = "blkid")]
    extern "C" {
        /// Opens `filename` read-only and sets up a probe of it; NULL (errno set) on
        /// error.
        pub fn blkid_new_probe_from_filename(filename: *const c_char) -> *mut BlkidProbe;
        /// Frees the probe and closes the file it opened.
        pub fn blkid_free_probe(pr: *mut BlkidProbe);
        /// Enables (1) the superblock chain: filesystems, RAID, LUKS, swap, ….
        pub fn blkid_probe_enable_superblocks(pr: *mut BlkidProbe, enable: c_int) -> c_int;
        /// Which values the superblock chain reports (`BLKID_SUBLKS_*`).
        pub fn blkid_probe_set_superblocks_flags(pr: *mut BlkidProbe, flags: c_int) -> c_int;
        /// Enables (1) the partition-table chain.
        pub fn blkid_probe_enable_partitions(pr: *mut BlkidProbe, enable: c_int) -> c_int;
        /// Runs every enabled chain: 0 found one signature, 1 nothing, -2 more than
        /// one (ambivalent), -1 error.
        pub fn blkid_do_safeprobe(pr: *mut BlkidProbe) -> c_int;
        /// Points `*data` at the NUL-terminated value of `name` (owned by the probe,
        /// valid until the next probe or free); `len`, if not NULL, gets its size.
        /// 0 on success.
        pub fn blkid_probe_lookup_value(
            pr: *mut BlkidProbe,
            name: *const c_char,
            data: *mut *const c_char,
            len: *mut usize,
        ) -> c_int;
    }
}

/// A libblkid probe of one file, freed on drop.
struct Probe(NonNull<ffi::BlkidProbe>);

/// What [`Probe::safeprobe`] found.
enum SafeProbe {
    Found,
    Nothing,
    Ambivalent,
    Error,
}

impl Probe {
    /// A probe of `path` with the superblock (`TYPE`, `USAGE`) and partition-table
    /// chains enabled.
    fn new(path: &Path) -> io::Result<Probe> {
        let name = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `name` is a NUL-terminated string that lives across the call;
        // libblkid only reads it (to open the file) and keeps no pointer to it.
        let pr = unsafe { ffi::blkid_new_probe_from_filename(name.as_ptr()) };
        let probe = Probe(NonNull::new(pr).ok_or_else(io::Error::last_os_error)?);
        let p = probe.0.as_ptr();
        // SAFETY: `p` is the live probe just created, owned by `probe`; these calls
        // only set its options. Each returns 0 on success.
        let rcs = unsafe {
            [
                ffi::blkid_probe_enable_superblocks(p, 1),
                ffi::blkid_probe_set_superblocks_flags(
                    p,
                    ffi::BLKID_SUBLKS_TYPE | ffi::BLKID_SUBLKS_USAGE,
                ),
                ffi::blkid_probe_enable_partitions(p, 1),
            ]
        };
        if rcs.iter().any(|&rc| rc != 0) {
            return Err(io::Error::other("cannot set up the probe"));
        }
        Ok(probe)
    }

    /// `blkid_do_safeprobe`: what the enabled chains find.
    fn safeprobe(&self) -> SafeProbe {
        // SAFETY: `self.0` is a live probe; it reads the file it opened and stores its
        // results in the probe.
        match unsafe { ffi::blkid_do_safeprobe(self.0.as_ptr()) } {
            0 => SafeProbe::Found,
            1 => SafeProbe::Nothing,
            -2 => SafeProbe::Ambivalent,
            _ => SafeProbe::Error,
        }
    }

    /// The value `name` the last probe found (`TYPE`, `USAGE`, `PTTYPE`), if any.
    fn value(&self, name: &CStr) -> Option<String> {
        let mut data: *const c_char = ptr::null();
        // SAFETY: `self.0` is a live probe, `name` a NUL-terminated string, `data` a
        // valid place for the result pointer, and `len` may be NULL.
        let rc = unsafe {
            ffi::blkid_probe_lookup_value(
                self.0.as_ptr(),
                name.as_ptr(),
                &mut data,
                ptr::null_mut(),
            )
        };
        if rc != 0 || data.is_null() {
            return None;
        }
        // SAFETY: on success `data` points to a NUL-terminated string owned by the
        // probe, which neither probes again nor is freed before the copy below.
        let value = unsafe { CStr::from_ptr(data) };
        Some(value.to_string_lossy().into_owned())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `blkid_new_probe_from_filename`, is freed only
        // here, once, and no pointer into it (values are copied out) outlives it.
        unsafe { ffi::blkid_free_probe(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memkit_core::journal::format::Geometry;
    use std::fs::OpenOptions;
    use std::path::PathBuf;

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("memkit-signature-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// 1 MiB holding a fresh journal of 4 MJs of 256 bytes.
    fn journal(name: &str) -> PathBuf {
        let path = temp(name, &vec![0u8; 1 << 20]);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut pm = FilePmem::new(file, 1 << 20);
        let geo = Geometry::new(1 << 20, 4, 256).unwrap();
        engine::format(&mut pm, geo, [7; 16]).unwrap();
        pm.take_error().unwrap();
        path
    }

    #[test]
    fn blank_and_empty_files_hold_nothing() {
        for (name, bytes) in [("zero", vec![0u8; 1 << 20]), ("empty", Vec::new())] {
            let path = temp(name, &bytes);
            assert_eq!(probe(&path), Ok(None), "{name}");
            assert_eq!(check_before_format(&path, false), Ok(()), "{name}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn a_journal_is_named_with_its_uuid() {
        let path = journal("journal");
        assert_eq!(
            probe(&path),
            Ok(Some(Signature::MemkitJournal {
                uuid: "07070707-0707-0707-0707-070707070707".into()
            }))
        );
        let msg = check_before_format(&path, false).unwrap_err();
        assert_eq!(
            msg,
            format!(
                "{} holds a memkit journal (uuid 07070707-0707-0707-0707-070707070707); \
                 --force to format it anyway",
                path.display()
            )
        );
        assert_eq!(check_before_format(&path, true), Ok(()));

        // A superblock with the magic that does not decode is a damaged journal.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        match probe(&path) {
            Ok(Some(Signature::DamagedMemkitJournal { why })) => {
                assert!(why.contains("checksum mismatch"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn blkid_names_filesystems_and_partition_tables() {
        // An ext2 superblock that is only its magic, 0xEF53 at byte 1080.
        let mut ext2 = vec![0u8; 1 << 20];
        ext2[1080..1082].copy_from_slice(&0xef53u16.to_le_bytes());
        let path = temp("ext2", &ext2);
        assert_eq!(
            probe(&path),
            Ok(Some(Signature::Blkid {
                kind: "ext2".into(),
                usage: Some("filesystem".into())
            }))
        );
        let msg = check_before_format(&path, false).unwrap_err();
        assert!(
            msg.ends_with(" holds a filesystem (blkid TYPE=ext2); --force to format it anyway"),
            "{msg}"
        );
        assert_eq!(check_before_format(&path, true), Ok(()));
        std::fs::remove_file(&path).unwrap();

        // An MBR with one Linux partition.
        let mut mbr = vec![0u8; 1 << 20];
        mbr[446 + 4] = 0x83;
        mbr[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
        mbr[446 + 12..446 + 16].copy_from_slice(&2047u32.to_le_bytes());
        mbr[510..512].copy_from_slice(&[0x55, 0xaa]);
        let path = temp("mbr", &mbr);
        assert_eq!(
            probe(&path),
            Ok(Some(Signature::PartitionTable { kind: "dos".into() }))
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_journal_over_an_old_filesystem_is_a_journal() {
        // The format writes the superblock's 128 bytes and the MJ headers only: an
        // ext2 superblock at 1024 survives it, and blkid still sees it. memkit's
        // superblock is what counts.
        let path = journal("over-ext2");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1080..1082].copy_from_slice(&0xef53u16.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            probe(&path),
            Ok(Some(Signature::MemkitJournal { .. }))
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn what_cannot_be_formatted_is_left_to_the_caller() {
        assert_eq!(probe(Path::new("/dev/null")), Ok(None));
        let e = probe(Path::new("/nonexistent/memkit")).unwrap_err();
        assert!(e.contains("No such file"), "{e}");
    }
}
