// SPDX-License-Identifier: GPL-2.0

//! The persistent-memory operations the journal needs, as a trait.
//!
//! The module implements it over a DAX mapping (`memcpy_flushcache`, `clwb`,
//! `sfence`, plus a device flush where DAX is not synchronous); the host implements it
//! over a file and over a simulator that tracks which cache lines are durable, which
//! is how the crash-state explorer checks the protocol.

use crate::pure::crc32c;

/// Byte-addressable persistent memory.
///
/// Offsets and lengths are device-relative; the journal only calls these with ranges
/// inside [`Pmem::len`] (it checks before calling), so implementations may treat an
/// out-of-range call as a bug.
pub trait Pmem {
    /// Bytes of the device.
    fn len(&self) -> u64;

    /// Whether the device is empty (never, for a usable journal).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies bytes at `off` into `buf` (what a load sees, durable or not).
    fn read(&self, off: u64, buf: &mut [u8]);

    /// Stores `data` at `off` bypassing (or writing back) the CPU cache: the bytes
    /// are durable after the next [`Pmem::fence`], and may become durable earlier.
    fn write_flushed(&mut self, off: u64, data: &[u8]);

    /// Persistence barrier: every store made by [`Pmem::write_flushed`] before it is
    /// durable when it returns.
    fn fence(&mut self);

    /// CRC-32C of `bytes` appended to the finished checksum `crc` of the bytes
    /// before them (`crc32c(a ++ b) == crc32c_append(crc32c(a), b)`), for the MJs
    /// the journal writes. The default is the table code of [`crc32c`]; an
    /// implementation may use the CPU's instruction (the module the kernel's
    /// `crc32c()`, the host tools SSE4.2), and must give the same values.
    fn crc32c_append(&self, crc: u32, bytes: &[u8]) -> u32 {
        crc32c::append(crc, bytes)
    }
}
