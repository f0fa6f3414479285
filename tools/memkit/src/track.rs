//! Dirty tracking of any process through the kernel's own interfaces: the baseline
//! memkit's checkpoint device is compared with, and the fallback for memory that is
//! not a memkit region.
//!
//! - Soft-dirty: writing `4` to `/proc/PID/clear_refs` clears the soft-dirty bits of
//!   every page of the process (and write-protects them); a later write sets the bit
//!   again. It is read from `/proc/PID/pagemap` (bit 55 of each 64-bit entry), or
//!   with the `PAGEMAP_SCAN` ioctl on the same file (Linux 6.7), which returns runs.
//! - Contents are copied with `process_vm_readv` (or `/proc/PID/mem` where the
//!   kernel lacks it).
//!
//! Both need the right to ptrace the target (root, or the same user with the default
//! Yama setting), and a kernel with `CONFIG_MEM_SOFT_DIRTY`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Bytes per page.
pub const PAGE: u64 = 4096;
/// Soft-dirty bit of a pagemap entry.
const PM_SOFT_DIRTY: u64 = 1 << 55;
/// `PAGE_IS_SOFT_DIRTY` of `PAGEMAP_SCAN`.
pub const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;

/// `struct pm_scan_arg` (linux/fs.h), the argument of [`PAGEMAP_SCAN`].
#[repr(C)]
#[derive(Default)]
#[allow(missing_docs)] // the kernel's field names
pub struct PmScanArg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// `struct page_region` (linux/fs.h): a run `[start, end)` that `PAGEMAP_SCAN`
/// returns.
#[repr(C)]
#[derive(Clone, Copy, Default)]
#[allow(missing_docs)] // the kernel's field names
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

const _: () = assert!(std::mem::size_of::<PmScanArg>() == 96);
const _: () = assert!(std::mem::size_of::<PageRegion>() == 24);

/// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)`.
pub const PAGEMAP_SCAN: libc::c_ulong =
    (3 << 30) | (96 << 16) | ((b'f' as libc::c_ulong) << 8) | 16;

/// Whether this caller can create a userfaultfd (`CONFIG_USERFAULTFD`, and for an
/// unprivileged caller `vm.unprivileged_userfaultfd` or user-mode-only faults): `Ok`,
/// or the error `userfaultfd(2)` gave (`ENOSYS` without the syscall).
pub fn userfaultfd_available() -> io::Result<()> {
    const UFFD_USER_MODE_ONLY: libc::c_int = 1;
    // SAFETY: the userfaultfd syscall takes flags and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_userfaultfd,
            libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us, is owned by nothing else, and is closed
    // once, here.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Soft-dirty tracking of one process.
pub struct SoftDirty {
    pid: libc::pid_t,
    pagemap: File,
}

impl SoftDirty {
    /// Opens the pagemap of process `pid`.
    pub fn open(pid: libc::pid_t) -> io::Result<SoftDirty> {
        let pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
        Ok(SoftDirty { pid, pagemap })
    }

    /// Whether this kernel tracks soft-dirty bits (`CONFIG_MEM_SOFT_DIRTY`): a page of
    /// this process, written after a clear, must read back soft-dirty. Without it
    /// pagemap's bit 55 is always 0 and every write would go unseen.
    pub fn supported() -> io::Result<bool> {
        let me = SoftDirty::open(std::process::id() as libc::pid_t)?;
        let mut buf = vec![1u8; 2 * PAGE as usize];
        let page = (buf.as_ptr() as u64).next_multiple_of(PAGE);
        let at = (page - buf.as_ptr() as u64) as usize;
        me.clear()?;
        // SAFETY: `at` is inside `buf` (it has two pages, `page` is in the first);
        // a volatile write so the store happens after the clear.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(at), 2) };
        let dirty = me.dirty_pagemap(page, page + PAGE)?;
        drop(buf);
        Ok(dirty == [page])
    }

    /// Clears the soft-dirty bits of every page of the process.
    pub fn clear(&self) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/clear_refs", self.pid))?;
        f.write_all(b"4")
    }

    /// The soft-dirty pages of `[start, end)` (page-aligned addresses), read from
    /// the pagemap entries.
    pub fn dirty_pagemap(&self, start: u64, end: u64) -> io::Result<Vec<u64>> {
        check_range(start, end)?;
        let n = ((end - start) / PAGE) as usize;
        let mut raw = vec![0u8; n * 8];
        self.pagemap.read_exact_at(&mut raw, start / PAGE * 8)?;
        Ok(raw
            .chunks_exact(8)
            .enumerate()
            .filter(|(_, e)| {
                u64::from_ne_bytes((*e).try_into().unwrap_or([0; 8])) & PM_SOFT_DIRTY != 0
            })
            .map(|(i, _)| start + i as u64 * PAGE)
            .collect())
    }

    /// The runs `[start, end)` of soft-dirty pages of `[start, end)`, from
    /// `PAGEMAP_SCAN`.
    pub fn dirty_scan(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        check_range(start, end)?;
        let mut out = Vec::new();
        let mut vec = vec![PageRegion::default(); 256];
        pagemap_scan(
            &self.pagemap,
            &mut vec,
            (start, end),
            0,
            PAGE_IS_SOFT_DIRTY,
            &mut out,
        )?;
        Ok(out)
    }

    /// Copies `buf.len()` bytes at `addr` of the process into `buf`, with
    /// `process_vm_readv`, or through `/proc/PID/mem` on a kernel without it
    /// (`CONFIG_CROSS_MEMORY_ATTACH=n`).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        match self.read_vm(addr, buf) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                File::open(format!("/proc/{}/mem", self.pid))?.read_exact_at(buf, addr)
            }
            other => other,
        }
    }

    fn read_vm(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes `buf`, writable for its length; the remote range
        // is only read, in the other process, by the kernel.
        let n = unsafe { libc::process_vm_readv(self.pid, &local, 1, &remote, 1, 0) };
        match n {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != buf.len() => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("process_vm_readv copied {n} of {} bytes", buf.len()),
            )),
            _ => Ok(()),
        }
    }
}

fn check_range(start: u64, end: u64) -> io::Result<()> {
    if !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) || end <= start {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

/// The runs of `[start, end)` (addresses) that `PAGEMAP_SCAN` on `pagemap` finds in
/// `category` (`PAGE_IS_*`), merged where they touch, into `runs`; `flags` as the
/// ioctl takes them (`PM_SCAN_WP_MATCHING`, ...). Calls again until the walk has
/// covered the range, `vec.len()` regions at a time.
pub fn pagemap_scan(
    pagemap: &File,
    vec: &mut [PageRegion],
    (start, end): (u64, u64),
    flags: u64,
    category: u64,
    runs: &mut Vec<(u64, u64)>,
) -> io::Result<()> {
    runs.clear();
    let mut at = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags,
            start: at,
            end,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            category_mask: category,
            return_mask: category,
            ..Default::default()
        };
        // SAFETY: `arg` is a valid pm_scan_arg whose `vec` points to `vec_len`
        // writable page_regions that outlive the call.
        let n = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for r in &vec[..n as usize] {
            match runs.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => runs.push((r.start, r.end)),
            }
        }
        if arg.walk_end <= at {
            return Err(io::Error::other("PAGEMAP_SCAN made no progress"));
        }
        at = arg.walk_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_scan_number_matches_the_header() {
        // _IOWR('f', 16, 96 bytes), as <linux/fs.h> computes it.
        assert_eq!(PAGEMAP_SCAN, 0xc060_6610);
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_range(4096, 8192).is_ok());
        assert!(check_range(4096, 4096).is_err());
        assert!(check_range(1, 8192).is_err());
    }
}
