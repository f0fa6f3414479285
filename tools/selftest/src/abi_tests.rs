//! The ABI every device shares: `MEMKIT_IOC_VERSION`, unknown commands, the
//! size-versioning rules and bad pointers (who may open them: `perm_tests.rs`).

use crate::ktap::{expect_errno, Outcome, TestResult};
use memkit::dev::{Device, DeviceKind};
use memkit_core::abi::{self, UapiStruct};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

fn open_all() -> Result<Vec<Device>, String> {
    DeviceKind::ALL
        .iter()
        .map(|&k| Device::open(k).map_err(|e| format!("open {}: {e}", k.path().display())))
        .collect()
}

/// A `memkit_version` request in a buffer of `len` bytes, `size` field = `size`.
fn version_request(len: usize, size: u32) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    abi::Version {
        size,
        ..Default::default()
    }
    .encode(&mut buf);
    buf
}

pub fn devices_exist_0600_root(_: &crate::Options) -> TestResult {
    for k in DeviceKind::ALL {
        let md = std::fs::metadata(k.path()).map_err(|e| format!("{}: {e}", k.path().display()))?;
        if !md.file_type().is_char_device() {
            return Err(format!("{} is not a character device", k.path().display()));
        }
        let mode = md.mode() & 0o7777;
        if mode != 0o600 || md.uid() != 0 || md.gid() != 0 {
            return Err(format!(
                "{}: mode {mode:o} uid {} gid {}, want 600 0 0",
                k.path().display(),
                md.uid(),
                md.gid()
            ));
        }
    }
    Ok(Outcome::Pass)
}

fn version_of(kind: DeviceKind) -> TestResult {
    let dev = Device::open(kind).map_err(|e| format!("open: {e}"))?;
    let mut buf = version_request(abi::Version::SIZE, abi::Version::SIZE as u32);
    dev.ioctl_bytes(abi::IOC_VERSION, &mut buf)
        .map_err(|e| format!("MEMKIT_IOC_VERSION: {e}"))?;
    let v = abi::Version::decode(&buf);
    println!(
        "{}: ABI {}.{} device {} features {:#x}",
        kind.name(),
        v.abi_major,
        v.abi_minor,
        v.device,
        v.features
    );
    let want = abi::Version {
        size: abi::Version::SIZE as u32,
        flags: 0,
        abi_major: abi::ABI_MAJOR,
        abi_minor: abi::ABI_MINOR,
        features: v.features,
        device: kind.id(),
        pad: 0,
    };
    if v != want {
        return Err(format!("got {v:?}, want {want:?}"));
    }
    if v.features & !abi::FEATURES_KNOWN != 0 {
        return Err(format!(
            "features {:#x} has bits this ABI does not define",
            v.features
        ));
    }
    Ok(Outcome::Pass)
}

pub fn version_journal(_: &crate::Options) -> TestResult {
    version_of(DeviceKind::Journal)
}

pub fn version_rmem(_: &crate::Options) -> TestResult {
    version_of(DeviceKind::Rmem)
}

pub fn version_ckpt(_: &crate::Options) -> TestResult {
    version_of(DeviceKind::Ckpt)
}

pub fn unknown_command_enotty(_: &crate::Options) -> TestResult {
    let v = abi::Version::SIZE;
    let rw = abi::IOC_READ | abi::IOC_WRITE;
    let cmds = [
        ("next number", abi::ioc(rw, abi::IOC_MAGIC, 0x7f, v)),
        ("other type", abi::ioc(rw, abi::IOC_MAGIC - 1, 0x00, v)),
        (
            "read-only direction",
            abi::ioc(abi::IOC_READ, abi::IOC_MAGIC, 0x00, v),
        ),
        ("no direction", abi::ioc(0, abi::IOC_MAGIC, 0x00, 0)),
        ("zero", 0),
        ("all ones", u32::MAX),
    ];
    for dev in open_all()? {
        for (what, cmd) in cmds {
            let mut buf = version_request(v, v as u32);
            let before = buf.clone();
            let res = dev.ioctl_bytes(cmd, &mut buf);
            expect_errno(
                &format!("{} {what} {cmd:#x}", dev.kind().name()),
                res,
                libc::ENOTTY,
            )?;
            if buf != before {
                return Err(format!(
                    "{}: refused command {cmd:#x} wrote to its argument",
                    dev.kind().name()
                ));
            }
        }
    }
    Ok(Outcome::Pass)
}

/// Runs VERSION with `buf` on every device; expects `errno` and `buf` untouched.
fn refused_unchanged(buf: &[u8], errno: i32, what: &str) -> Result<(), String> {
    for dev in open_all()? {
        let mut b = buf.to_vec();
        expect_errno(
            &format!("{} {what}", dev.kind().name()),
            dev.ioctl_bytes(abi::IOC_VERSION, &mut b),
            errno,
        )?;
        if b != buf {
            return Err(format!(
                "{} {what}: the refused call wrote to the struct",
                dev.kind().name()
            ));
        }
    }
    Ok(())
}

pub fn size_too_small_einval(_: &crate::Options) -> TestResult {
    for size in [0u32, 4, 8, abi::Version::SIZE_VER0 as u32 - 1] {
        refused_unchanged(
            &version_request(abi::Version::SIZE, size),
            libc::EINVAL,
            &format!("size {size}"),
        )?;
    }
    Ok(Outcome::Pass)
}

pub fn size_larger_zero_tail_ok(_: &crate::Options) -> TestResult {
    for size in [abi::Version::SIZE + 8, 1000, abi::STRUCT_SIZE_MAX as usize] {
        for dev in open_all()? {
            let mut buf = version_request(size, size as u32);
            dev.ioctl_bytes(abi::IOC_VERSION, &mut buf)
                .map_err(|e| format!("{} size {size}: {e}", dev.kind().name()))?;
            let v = abi::Version::decode(&buf);
            if v.size != abi::Version::SIZE as u32
                || v.device != dev.kind().id()
                || v.abi_major != abi::ABI_MAJOR
            {
                return Err(format!("{} size {size}: got {v:?}", dev.kind().name()));
            }
            if buf[abi::Version::SIZE..].iter().any(|&b| b != 0) {
                return Err(format!(
                    "{} size {size}: the module wrote past its struct",
                    dev.kind().name()
                ));
            }
        }
    }
    Ok(Outcome::Pass)
}

pub fn size_larger_nonzero_tail_e2big(_: &crate::Options) -> TestResult {
    let max = abi::STRUCT_SIZE_MAX as usize;
    for (size, at) in [
        (abi::Version::SIZE + 8, abi::Version::SIZE),
        (abi::Version::SIZE + 8, abi::Version::SIZE + 7),
        (max, max - 1),
    ] {
        let mut buf = version_request(size, size as u32);
        buf[at] = 0x5a;
        refused_unchanged(&buf, libc::E2BIG, &format!("size {size}, byte {at} set"))?;
    }
    Ok(Outcome::Pass)
}

pub fn size_over_max_e2big(_: &crate::Options) -> TestResult {
    for size in [abi::STRUCT_SIZE_MAX + 1, 1 << 20, u32::MAX] {
        for dev in open_all()? {
            let mut buf = version_request(abi::Version::SIZE, size);
            let before = buf.clone();
            // SAFETY: the module writes at most `Version::SIZE` bytes (the size of
            // `buf`) and only after accepting the size, which it must not do here.
            let res = unsafe { dev.ioctl_raw(abi::IOC_VERSION, buf.as_mut_ptr() as usize) };
            expect_errno(
                &format!("{} size {size}", dev.kind().name()),
                res,
                libc::E2BIG,
            )?;
            if buf != before {
                return Err(format!(
                    "{} size {size}: the refused call wrote to the struct",
                    dev.kind().name()
                ));
            }
        }
    }
    Ok(Outcome::Pass)
}

pub fn nonzero_padding_einval(_: &crate::Options) -> TestResult {
    let v = abi::Version::SIZE;
    let mut req = abi::Version {
        size: v as u32,
        ..Default::default()
    };
    for pad in [1u32, 0x8000_0000, u32::MAX] {
        req.pad = pad;
        let mut buf = vec![0u8; v];
        req.encode(&mut buf);
        refused_unchanged(&buf, libc::EINVAL, &format!("padding {pad:#x}"))?;
    }
    Ok(Outcome::Pass)
}

pub fn unknown_flags_einval(_: &crate::Options) -> TestResult {
    let v = abi::Version::SIZE;
    let mut req = abi::Version {
        size: v as u32,
        ..Default::default()
    };
    for flags in [1u32, 1 << 31, u32::MAX] {
        req.flags = flags;
        let mut buf = vec![0u8; v];
        req.encode(&mut buf);
        refused_unchanged(&buf, libc::EINVAL, &format!("flags {flags:#x}"))?;
    }
    Ok(Outcome::Pass)
}

/// An anonymous mapping of one page with protection `prot`, unmapped on drop.
struct Page(*mut libc::c_void);

impl Page {
    fn map(prot: libc::c_int, init: &[u8]) -> Result<Page, String> {
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", io::Error::last_os_error()));
        }
        let page = Page(p);
        // SAFETY: the mapping is 4096 bytes, readable and writable; `init` is shorter.
        unsafe {
            std::ptr::copy_nonoverlapping(init.as_ptr(), p.cast::<u8>(), init.len().min(4096))
        };
        // SAFETY: `p` is the start of our own one-page mapping.
        if unsafe { libc::mprotect(p, 4096, prot) } != 0 {
            return Err(format!("mprotect: {}", io::Error::last_os_error()));
        }
        Ok(page)
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a one-page mapping this value owns.
        unsafe { libc::munmap(self.0, 4096) };
    }
}

pub fn bad_pointer_efault(_: &crate::Options) -> TestResult {
    let req = version_request(abi::Version::SIZE, abi::Version::SIZE as u32);
    let read_only = Page::map(libc::PROT_READ, &req)?;
    let unmapped = {
        let p = Page::map(libc::PROT_READ | libc::PROT_WRITE, &req)?;
        p.0 as usize
    };
    let cases = [
        ("NULL", 0usize),
        ("unmapped page", unmapped),
        ("kernel address", 0xffff_8880_0000_0000),
        ("read-only page", read_only.0 as usize),
        ("struct across the end of the address space", usize::MAX - 3),
    ];
    for dev in open_all()? {
        for (what, ptr) in cases {
            // SAFETY: none of these addresses is writable memory of this process.
            let res = unsafe { dev.ioctl_raw(abi::IOC_VERSION, ptr) };
            expect_errno(&format!("{} {what}", dev.kind().name()), res, libc::EFAULT)?;
        }
    }
    Ok(Outcome::Pass)
}
