//! The PMDK peer (`pmdk/pmdk_bench.c`, libpmemobj transactions), behind a safe type.

use std::ffi::{c_char, c_int, CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

#[repr(C)]
struct RawPmdk {
    _opaque: [u8; 0],
}

extern "C" {
    fn mkb_pmdk_open(
        path: *const c_char,
        pool_size: usize,
        data_size: usize,
        out: *mut *mut RawPmdk,
    ) -> c_int;
    fn mkb_pmdk_errormsg() -> *const c_char;
    fn mkb_pmdk_is_pmem(b: *const RawPmdk) -> c_int;
    fn mkb_pmdk_run(
        b: *const RawPmdk,
        offsets: *const u64,
        nranges: usize,
        len: usize,
        src: *const u8,
        ntx: usize,
    ) -> c_int;
    fn mkb_pmdk_read(b: *const RawPmdk, off: u64, buf: *mut u8, len: usize) -> c_int;
    fn mkb_pmdk_close(b: *mut RawPmdk);
}

/// A libpmemobj pool whose root object is the data region; the pool file is removed
/// on drop.
pub struct Pmdk {
    raw: NonNull<RawPmdk>,
    path: PathBuf,
}

fn errno_error(ret: c_int, what: &str) -> io::Error {
    // SAFETY: `pmemobj_errormsg` returns a NUL-terminated, thread-local string.
    let msg = unsafe { CStr::from_ptr(mkb_pmdk_errormsg()) }.to_string_lossy();
    let os = io::Error::from_raw_os_error(-ret);
    io::Error::new(os.kind(), format!("{what}: {os} ({msg})"))
}

impl Pmdk {
    /// Creates the pool file `path` (replacing it) of `pool_size` bytes with a zeroed
    /// root object of `data_size` bytes.
    pub fn create(path: &Path, pool_size: usize, data_size: usize) -> io::Result<Pmdk> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let _ = std::fs::remove_file(path);
        let mut raw = std::ptr::null_mut();
        // SAFETY: `cpath` is NUL-terminated; `raw` is valid for a write.
        let ret = unsafe { mkb_pmdk_open(cpath.as_ptr(), pool_size, data_size, &mut raw) };
        if ret != 0 {
            let _ = std::fs::remove_file(path);
            return Err(errno_error(ret, "pmemobj_create"));
        }
        let raw = NonNull::new(raw).ok_or_else(|| io::Error::other("mkb_pmdk_open: null"))?;
        Ok(Pmdk {
            raw,
            path: path.to_owned(),
        })
    }

    /// Whether libpmem treats the data region as persistent memory (flushes with CPU
    /// instructions rather than `msync`).
    pub fn is_pmem(&self) -> bool {
        // SAFETY: `raw` is an open pool (type invariant).
        unsafe { mkb_pmdk_is_pmem(self.raw.as_ptr()) != 0 }
    }

    /// Runs `offsets.len() / nranges` transactions, each writing `src` at `nranges`
    /// consecutive offsets of `offsets`. Threads may run transactions on one pool at
    /// once; their ranges must not overlap (transactions are not isolated).
    pub fn run(&self, offsets: &[u64], nranges: usize, src: &[u8]) -> io::Result<()> {
        assert!(nranges > 0 && offsets.chunks_exact(nranges).remainder().is_empty());
        let ntx = offsets.len() / nranges;
        // SAFETY: `raw` is an open pool; `offsets` holds `ntx * nranges` values and
        // `src` `src.len()` bytes, both only read; the C side checks each range
        // against the data region.
        let ret = unsafe {
            mkb_pmdk_run(
                self.raw.as_ptr(),
                offsets.as_ptr(),
                nranges,
                src.len(),
                src.as_ptr(),
                ntx,
            )
        };
        if ret != 0 {
            return Err(errno_error(ret, "libpmemobj transaction"));
        }
        Ok(())
    }

    /// Copies bytes of the data region at `off` into `buf`.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: `raw` is an open pool; `buf` is valid for `buf.len()` bytes of
        // writes; the C side checks the range.
        let ret = unsafe { mkb_pmdk_read(self.raw.as_ptr(), off, buf.as_mut_ptr(), buf.len()) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(-ret));
        }
        Ok(())
    }
}

// SAFETY: the pool handle may be used from any thread: libpmemobj keeps each thread's
// transaction state per thread, and the shim's calls other than open and close only
// read its struct (`mkb_pmdk_run` and `mkb_pmdk_read` take it `const`).
unsafe impl Send for Pmdk {}
// SAFETY: as above; `run` and `read` take `&self` and may run at once.
unsafe impl Sync for Pmdk {}

impl Drop for Pmdk {
    fn drop(&mut self) {
        // SAFETY: `raw` is an open pool, closed once here.
        unsafe { mkb_pmdk_close(self.raw.as_ptr()) };
        let _ = std::fs::remove_file(&self.path);
    }
}
