//! The journal's [`Pmem`] over a file: a regular image file (the backing file of a
//! VM's emulated pmem) or, with care, a block device.
//!
//! Stores are `pwrite(2)`s and every [`Pmem::fence`] is an `fdatasync(2)`, so the
//! order the engine relies on (superblock invalidated before the MJs are reset, MJs
//! durable before the superblock that names them) also holds on the host's disk.
//! That is three syncs for a format and one or two per commit group: slow, but
//! offline tools and tests commit little.
//!
//! The trait's methods cannot fail, so the first I/O error is kept and every later
//! read returns zeros; the caller must ask [`FilePmem::take_error`] after each
//! journal operation and throw the operation's result away if there was one.

use memkit_core::journal::pmem::Pmem;
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// A file seen as persistent memory of a fixed length.
#[derive(Debug)]
pub struct FilePmem {
    file: File,
    len: u64,
    error: RefCell<Option<io::Error>>,
}

impl FilePmem {
    /// Uses the first `len` bytes of `file`.
    pub fn new(file: File, len: u64) -> FilePmem {
        FilePmem {
            file,
            len,
            error: RefCell::new(None),
        }
    }

    /// Uses all of `file`: its length is where `lseek(SEEK_END)` lands, which is also
    /// right for a block device (whose metadata length is 0).
    pub fn whole(mut file: File) -> io::Result<FilePmem> {
        let len = file.seek(SeekFrom::End(0))?;
        Ok(FilePmem::new(file, len))
    }

    /// The first I/O error since the last call, if any.
    pub fn take_error(&mut self) -> io::Result<()> {
        match self.error.get_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Gives the file back.
    pub fn into_file(self) -> File {
        self.file
    }

    /// Keeps `e` unless an earlier error is already kept.
    fn fail(&self, e: io::Error) {
        let mut slot = self.error.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// Whether `off..off + n` lies inside the device; records an error if not.
    fn in_range(&self, off: u64, n: usize, what: &str) -> bool {
        let ok = u64::try_from(n)
            .ok()
            .and_then(|n| off.checked_add(n))
            .is_some_and(|end| end <= self.len);
        if !ok {
            self.fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{what} of {n} bytes at {off} is past the end ({} bytes)",
                    self.len
                ),
            ));
        }
        ok
    }
}

impl Pmem for FilePmem {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, off: u64, buf: &mut [u8]) {
        if self.error.borrow().is_some() || !self.in_range(off, buf.len(), "read") {
            buf.fill(0);
            return;
        }
        // `read_exact_at` reports a file that shrank under us as `UnexpectedEof`.
        if let Err(e) = self.file.read_exact_at(buf, off) {
            buf.fill(0);
            self.fail(e);
        }
    }

    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        if self.error.borrow().is_some() || !self.in_range(off, data.len(), "write") {
            return;
        }
        if let Err(e) = self.file.write_all_at(data, off) {
            self.fail(e);
        }
    }

    fn fence(&mut self) {
        if self.error.borrow().is_some() {
            return;
        }
        if let Err(e) = self.file.sync_data() {
            self.fail(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("memkit-pmem-file-{}-{name}", std::process::id()))
    }

    #[test]
    fn reads_back_writes_and_keeps_the_length() {
        let path = temp("rw");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(4096).unwrap();
        let mut pm = FilePmem::whole(file).unwrap();
        assert_eq!(pm.len(), 4096);
        pm.write_flushed(100, b"hello");
        pm.fence();
        let mut buf = [0u8; 7];
        pm.read(99, &mut buf);
        assert_eq!(&buf, b"\0hello\0");
        assert!(pm.take_error().is_ok());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn out_of_range_access_is_an_error_not_a_panic() {
        let path = temp("range");
        std::fs::write(&path, [7u8; 64]).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut pm = FilePmem::whole(file).unwrap();
        let mut buf = [1u8; 8];
        pm.read(60, &mut buf);
        assert_eq!(buf, [0u8; 8]);
        let err = pm.take_error().unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        pm.read(u64::MAX, &mut buf);
        assert!(pm.take_error().is_err());
        pm.write_flushed(u64::MAX - 1, b"xy");
        assert!(pm.take_error().is_err());
        // After an error is taken, the file works again.
        pm.read(0, &mut buf);
        assert_eq!(buf, [7u8; 8]);
        assert!(pm.take_error().is_ok());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_shorter_than_claimed_reads_as_an_error() {
        let path = temp("short");
        std::fs::write(&path, [0u8; 16]).unwrap();
        let pm = FilePmem::new(File::open(&path).unwrap(), 1 << 20);
        let mut buf = [1u8; 32];
        pm.read(0, &mut buf);
        assert_eq!(buf, [0u8; 32]);
        let mut pm = pm;
        assert_eq!(
            pm.take_error().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        std::fs::remove_file(&path).unwrap();
    }
}
