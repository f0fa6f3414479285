//! The journal's [`Pmem`] over a DRAM-backed file (`/dev/shm`), mapped `MAP_SHARED`,
//! storing as libpmem and the module's `memcpy_flushcache` do on real persistent
//! memory: full 64-byte lines of a run of at least [`NT_MIN`] bytes with
//! non-temporal stores, everything else with ordinary stores and a write-back of
//! its lines (`clwb`, `clflushopt` on a CPU without it); a fence is `sfence`.
//!
//! The write-back of a line a store leaves partly written waits for the next store
//! that leaves that line, or for the fence: the journal writes an MJ piece by piece
//! (entry header, data, padding), and writing a line back and then storing to it
//! again stalls for a memory round trip. The [`Pmem`] contract (durable after the
//! next fence) allows it.
//!
//! DRAM is not persistent, so this measures the CPU cost of the protocol with the
//! real flush instructions, not media latency: the same conditions PMDK gets with
//! `PMEM_IS_PMEM_FORCE=1` on the same kind of file. The checksum is the SSE4.2
//! `crc32` instruction (the `crc32c` crate), as the module uses the kernel's
//! `crc32c()`.

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
    /// The line (its offset) whose write-back waits for the next store or fence.
    pending: Option<usize>,
    /// 64-byte lines made durable so far (written back or streamed).
    pub lines: u64,
}

const LINE: usize = 64;
/// Runs of at least this many bytes go to their full lines with non-temporal
/// stores (libpmem's default threshold, `PMEM_MOVNT_THRESHOLD`).
pub const NT_MIN: usize = 256;

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
            pending: None,
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

    /// Stores `data` at `off` with ordinary stores, nothing written back (for the
    /// one-fence floor, which writes back by hand).
    pub fn store(&mut self, off: u64, data: &[u8]) {
        let dst = self.at(off, data.len());
        // SAFETY: `dst` is valid for `data.len()` bytes (checked by `at`) and does not
        // overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
    }

    /// Writes back every line of `[off, off + len)`.
    pub fn write_back_range(&mut self, off: u64, len: usize) {
        let _ = self.at(off, len);
        let start = off as usize;
        let mut line = start & !(LINE - 1);
        while line < start + len {
            self.write_back(line);
            line += LINE;
        }
    }

    /// Writes back the line at offset `line` (a multiple of 64 inside the mapping).
    fn write_back(&mut self, line: usize) {
        write_back(self.flush, self.ptr.wrapping_add(line));
        self.lines += 1;
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

/// Copies `src` (a whole number of 64-byte lines) to `dst` with non-temporal
/// stores: the lines go to memory without being read into the cache, and the next
/// `sfence` orders them.
///
/// # Safety
///
/// `dst` is 64-byte aligned and valid for `src.len()` bytes of writes, and does not
/// overlap `src`.
#[cfg(target_arch = "x86_64")]
unsafe fn stream_lines(dst: *mut u8, src: &[u8]) {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
    debug_assert!((dst as usize).is_multiple_of(LINE) && src.len().is_multiple_of(LINE));
    for (i, chunk) in src.chunks_exact(16).enumerate() {
        // SAFETY: `chunk` is 16 readable bytes (unaligned load); `dst + 16 i` is
        // 16-byte aligned and inside `dst`'s `src.len()` bytes (the caller's
        // contract). SSE2 is part of x86-64.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            _mm_stream_si128(dst.add(16 * i).cast::<__m128i>(), v);
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn stream_lines(dst: *mut u8, src: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
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
        let start = off as usize;
        let end = start + data.len();
        let first = start & !(LINE - 1);
        let last = (end - 1) & !(LINE - 1);
        // A line left pending by an earlier store is written back now, unless this
        // store covers it (then its turn comes below).
        if let Some(p) = self.pending.take_if(|p| *p < first || *p > last) {
            self.write_back(p);
        }
        // The full lines of a long run are streamed; the head and tail are stored.
        let (nt_from, nt_to) = if data.len() >= NT_MIN && cfg!(target_arch = "x86_64") {
            (start.next_multiple_of(LINE), end & !(LINE - 1))
        } else {
            (end, end)
        };
        if nt_from < nt_to {
            let head = nt_from - start;
            // SAFETY: `dst` is valid for `data.len()` bytes (checked by `at`) and does
            // not overlap `data`; `[head, nt_to - start)` lies inside both, and
            // `dst + head` is 64-byte aligned (the mapping is page-aligned).
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), dst, head);
                stream_lines(dst.add(head), &data[head..nt_to - start]);
                std::ptr::copy_nonoverlapping(
                    data.as_ptr().add(nt_to - start),
                    dst.add(nt_to - start),
                    end - nt_to,
                );
            }
            self.lines += ((nt_to - nt_from) / LINE) as u64;
        } else {
            // SAFETY: `dst` is valid for `data.len()` bytes (checked by `at`) and does
            // not overlap `data`, which is not in the mapping's writable alias we hold.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        }
        // Write back the stored lines; the last one waits if the store left it partly
        // written (the next store may continue it).
        let mut line = first;
        while line <= last {
            if line >= nt_from && line + LINE <= nt_to {
                line += LINE;
                continue;
            }
            if line == last && !end.is_multiple_of(LINE) {
                self.pending = Some(line);
            } else {
                self.write_back(line);
            }
            line += LINE;
        }
    }

    fn fence(&mut self) {
        if let Some(p) = self.pending.take() {
            self.write_back(p);
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `sfence` orders stores, streamed stores and write-backs; no memory
        // operands.
        unsafe {
            core::arch::asm!("sfence", options(nostack, preserves_flags))
        };
        #[cfg(not(target_arch = "x86_64"))]
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }

    fn crc32c_append(&self, crc: u32, bytes: &[u8]) -> u32 {
        crc32c::crc32c_append(crc, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memkit_core::crc32c;

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// The store path (ordinary stores, streamed full lines, deferred write-backs)
    /// leaves exactly the bytes written, at every offset and length class, and the
    /// checksum it offers the engine is the oracle's.
    #[test]
    fn stores_land_and_checksums_agree_with_the_oracle() {
        let Some(flush) = Flush::detect() else { return };
        let path = std::env::temp_dir().join(format!("mkb-shm-{}", std::process::id()));
        const LEN: usize = 1 << 20;
        let mut pm = ShmPmem::create(&path, LEN, flush).unwrap();
        let mut model = vec![0u8; LEN];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..4000 {
            let len = match i % 4 {
                0 => (xorshift(&mut x) % 64) as usize + 1,
                1 => (xorshift(&mut x) % 512) as usize + 1,
                2 => NT_MIN + (xorshift(&mut x) % 8192) as usize,
                _ => 4096,
            };
            let off = (xorshift(&mut x) as usize) % (LEN - len);
            let data: Vec<u8> = (0..len).map(|_| xorshift(&mut x) as u8).collect();
            pm.write_flushed(off as u64, &data);
            model[off..off + len].copy_from_slice(&data);
            if i % 7 == 0 {
                pm.fence();
            }
            let split = (xorshift(&mut x) as usize) % (len + 1);
            let c = crc32c::crc32c(&data[..split]);
            assert_eq!(
                pm.crc32c_append(c, &data[split..]),
                crc32c::crc32c(&data),
                "length {len} split {split}"
            );
        }
        pm.fence();
        let mut back = vec![0u8; LEN];
        pm.read(0, &mut back);
        assert!(back == model, "the mapping differs from what was written");
    }
}
