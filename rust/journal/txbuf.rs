// SPDX-License-Identifier: GPL-2.0

//! A transaction's ranges and data, copied in from userspace once, and the buffers
//! kept for the file's next transaction.

use super::*;

/// A transaction copied in from userspace: ranges into one data buffer. The buffers
/// go back to the file after the commit and serve its next transaction, so a file's
/// transactions allocate nothing once they have reached their size.
#[derive(Default)]
pub(super) struct TxBuf {
    /// The `JournalRange` array as userspace passed it.
    pub(super) raw: KVec<u8>,
    /// `(offset in the data region, start in data, length)`.
    pub(super) spans: KVec<(u64, usize, usize)>,
    pub(super) data: KVVec<u8>,
}

impl TxBuf {
    /// Copies in the ranges of `req` (`nr_ranges` checked by the caller: 1 to
    /// `TX_RANGES_MAX`), checks each before any data, and copies in the data.
    /// `check` sees the spans before the data is copied.
    pub(super) fn copy_in(
        &mut self,
        req: &abi::JournalTx,
        check: impl FnOnce(&[(u64, usize, usize)]) -> Result,
    ) -> Result {
        let n = req.nr_ranges as usize;
        let size = abi::JournalRange::SIZE;
        // `read_all` appends into spare capacity: no byte is zeroed before it is
        // overwritten (a 4 KiB zeroing costs as much as the 4 KiB copy from userspace).
        self.raw.clear();
        UserSlice::new(UserPtr::from_addr(req.ranges as usize), n * size)
            .read_all(&mut self.raw, GFP_KERNEL_ACCOUNT)?;
        self.spans.clear();
        self.spans.reserve(n, GFP_KERNEL_ACCOUNT)?;
        let mut total = 0usize;
        for i in 0..n {
            let r = self.range(i)?;
            let len = usize::try_from(r.len).map_err(|_| E2BIG)?;
            if len == 0 || r.offset.checked_add(r.len).is_none() {
                return Err(EINVAL);
            }
            if len > format::MJ_SIZE_MAX as usize {
                return Err(E2BIG);
            }
            self.spans
                .push((r.offset, total, len), GFP_KERNEL_ACCOUNT)?;
            total = total.checked_add(len).ok_or(E2BIG)?;
            if total > format::MJ_SIZE_MAX as usize {
                return Err(E2BIG);
            }
        }
        // Refused before the data is copied.
        check(&self.spans)?;
        self.data.clear();
        self.data.reserve(total, GFP_KERNEL_ACCOUNT)?;
        for (i, &(_, start, len)) in self.spans.iter().enumerate() {
            let r = self.range(i)?;
            // The spans are laid end to end from 0: each range's bytes go where the
            // previous one ended.
            if self.data.len() != start {
                return Err(EINVAL);
            }
            UserSlice::new(UserPtr::from_addr(r.data as usize), len)
                .read_all(&mut self.data, GFP_KERNEL_ACCOUNT)?;
        }
        Ok(())
    }

    /// Range `i` of the array copied in.
    pub(super) fn range(&self, i: usize) -> Result<abi::JournalRange> {
        let size = abi::JournalRange::SIZE;
        let raw = self.raw.get(i * size..(i + 1) * size).ok_or(EINVAL)?;
        Ok(abi::JournalRange::decode(raw))
    }

    /// The transaction's ranges, borrowing its data. A span outside the data (never
    /// built by `copy_in`) reads as empty, which the engine refuses.
    pub(super) fn ranges(&self) -> impl Iterator<Item = Range<'_>> {
        self.spans.iter().map(|&(offset, start, len)| Range {
            offset,
            data: start
                .checked_add(len)
                .and_then(|end| self.data.get(start..end))
                .unwrap_or(&[]),
        })
    }
}
