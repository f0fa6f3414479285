//! The journal's [`Pmem`] over a DRAM-backed file (`/dev/shm`), mapped `MAP_SHARED`,
//! with the instructions the module uses on real persistent memory: every written
//! 64-byte line is written back with `clwb` (`clflushopt` on a CPU without it) and a
//! fence is `sfence`.
//!
//! DRAM is not persistent, so this measures the CPU cost of the protocol with the
//! real flush instructions, not media latency: the same conditions PMDK gets with
//! `PMEM_IS_PMEM_FORCE=1` on the same kind of file.

use memkit_core::journal::pmem::Pmem;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The cache-line write-back instruction in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// `clwb`: write back, keep the line cached.
    Clwb,
    /// `clflushopt`: write back and evict.
    Clflushopt,
}

impl Flush {
    /// The best instruction this CPU has, if any (CPUID leaf 7: EBX bit 24 clwb,
    /// bit 23 clflushopt).
    pub fn detect() -> Option<Flush> {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID leaf 7 exists on every x86-64 CPU that has either instruction;
            // on older ones the bits read as zero.
            #[allow(unused_unsafe)]
            // SAFETY: `cpuid` is available on every x86-64 CPU.
            let leaf7 = unsafe { core::arch::x86_64::__cpuid_count(7, 0) };
            if leaf7.ebx & (1 << 24) != 0 {
                return Some(Flush::Clwb);
            }
            if leaf7.ebx & (1 << 23) != 0 {
                return Some(Flush::Clflushopt);
            }
        }
        None
    }

    /// The instruction's name.
    pub fn name(self) -> &'static str {
        match self {
            Flush::Clwb => "clwb",
            Flush::Clflushopt => "clflushopt",
        }
    }
}

/// A shared mapping of a file in `/dev/shm`, removed on drop.
pub struct ShmPmem {
    ptr: *mut u8,
    len: usize,
    path: PathBuf,
    flush: Flush,
    /// 64-byte lines written back so far.
    pub lines: u64,
}

const LINE: usize = 64;

impl ShmPmem {
    /// Creates `path` (replacing it) with `len` bytes, maps it shared and touches
    /// every page, so no page fault lands in a measurement.
    pub fn create(path: &Path, len: usize, flush: Flush) -> io::Result<ShmPmem> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let _ = std::fs::remove_file(path);
        // SAFETY: `cpath` is a valid NUL-terminated string.
        let fd = unsafe {
            libc::open(
                cpath.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too large"))?;
        // SAFETY: `fd` is the file we just opened.
        let map = unsafe {
            if libc::ftruncate(fd, size) != 0 {
                libc::MAP_FAILED
            } else {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    0,
                )
            }
        };
        let err = io::Error::last_os_error();
        // SAFETY: `fd` is ours; the mapping (if any) keeps the file alive.
        unsafe { libc::close(fd) };
        if map == libc::MAP_FAILED {
            let _ = std::fs::remove_file(path);
            return Err(err);
        }
        let ptr = map.cast::<u8>();
        // SAFETY: the mapping is `len` bytes, readable and writable, and ours alone.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
        Ok(ShmPmem {
            ptr,
            len,
            path: path.to_owned(),
            flush,
            lines: 0,
        })
    }

    /// `[off, off + n)` as a pointer into the mapping; panics outside it (the
    /// journal checks ranges before it writes, so that would be a bug).
    fn at(&self, off: u64, n: usize) -> *mut u8 {
        let off = usize::try_from(off).expect("offset fits usize");
        assert!(
            off.checked_add(n).is_some_and(|end| end <= self.len),
            "access of {n} bytes at {off} outside the {}-byte mapping",
            self.len
        );
        // SAFETY: `off + n <= len` (checked above): inside the mapping.
        unsafe { self.ptr.add(off) }
    }
}

impl Drop for ShmPmem {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` is the mapping made in `create`, not used after this.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes back the line holding `p`.
#[inline(always)]
fn write_back(flush: Flush, p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    match flush {
        // SAFETY: `p` points into a mapping the caller owns; the instruction only
        // writes the line back (`Flush::detect` saw that the CPU has it).
        Flush::Clwb => unsafe {
            core::arch::asm!("clwb [{0}]", in(reg) p, options(nostack, preserves_flags))
        },
        // SAFETY: as above.
        Flush::Clflushopt => unsafe {
            core::arch::asm!("clflushopt [{0}]", in(reg) p, options(nostack, preserves_flags))
        },
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (flush, p);
}

impl Pmem for ShmPmem {
    fn len(&self) -> u64 {
        self.len as u64
    }

    fn read(&self, off: u64, buf: &mut [u8]) {
        let src = self.at(off, buf.len());
        // SAFETY: `src` is valid for `buf.len()` bytes (checked by `at`); `buf` is a
        // distinct, exclusively borrowed buffer.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
    }

    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let dst = self.at(off, data.len());
        // SAFETY: `dst` is valid for `data.len()` bytes (checked by `at`) and does not
        // overlap `data`, which is not in the mapping's writable alias we hold.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        let first = off as usize & !(LINE - 1);
        let end = off as usize + data.len();
        let mut line = first;
        while line < end {
            // In the mapping: `first` is the start of the line holding `off`, and the
            // mapping starts page-aligned.
            write_back(self.flush, self.ptr.wrapping_add(line));
            line += LINE;
            self.lines += 1;
        }
    }

    fn fence(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `sfence` orders stores and write-backs; no memory operands.
        unsafe {
            core::arch::asm!("sfence", options(nostack, preserves_flags))
        };
        #[cfg(not(target_arch = "x86_64"))]
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}
