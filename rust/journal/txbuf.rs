// SPDX-License-Identifier: GPL-2.0

//! A transaction copied in from userspace once, straight into its MJ image, and the
//! buffers kept for the file's next transaction.

use super::*;

/// A transaction copied in from userspace and laid out as its MJ
/// ([`engine::Prepared`]): header room, then per range the entry header, the data and
/// padding. The caller checksums it before queueing it, so a commit only fills in the
/// header and stores the image. The buffers go back to the file after the commit and
/// serve its next transaction, so a file's transactions allocate nothing once they
/// have reached their size.
#[derive(Default)]
pub(super) struct TxBuf {
    /// The `JournalRange` array as userspace passed it.
    pub(super) raw: KVec<u8>,
    /// `(offset in the data region, start of the data in image, length)`.
    pub(super) spans: KVec<(u64, usize, usize)>,
    /// The MJ image: [`format::MJ_HEADER_SIZE`] bytes for the header, then the
    /// entries.
    image: KVVec<u8>,
    /// [`engine::payload_crc`] of the image's entries, with `uuid`.
    crc: u32,
    uuid: [u8; 16],
}

impl TxBuf {
    /// Copies in the ranges of `req` (`nr_ranges` checked by the caller: 1 to
    /// `TX_RANGES_MAX`), checks each before any data, and copies the data into the
    /// MJ image, which it checksums. `check` sees the spans before the data is copied
    /// and returns the identity of the journal they were checked against.
    pub(super) fn copy_in(
        &mut self,
        req: &abi::JournalTx,
        check: impl FnOnce(&[(u64, usize, usize)]) -> Result<[u8; 16]>,
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
        let limit = format::MJ_HEADER_SIZE + format::MJ_SIZE_MAX as usize;
        let mut end = format::MJ_HEADER_SIZE;
        for i in 0..n {
            let r = self.range(i)?;
            let len = usize::try_from(r.len).map_err(|_| E2BIG)?;
            if len == 0 || r.offset.checked_add(r.len).is_none() {
                return Err(EINVAL);
            }
            if len > format::MJ_SIZE_MAX as usize {
                return Err(E2BIG);
            }
            let start = end + format::ENTRY_HEADER_SIZE;
            self.spans
                .push((r.offset, start, len), GFP_KERNEL_ACCOUNT)?;
            end = start
                .checked_add(len + format::entry_pad(len))
                .ok_or(E2BIG)?;
            if end > limit {
                return Err(E2BIG);
            }
        }
        // Refused before the data is copied.
        let uuid = check(&self.spans)?;
        self.image.clear();
        self.image.reserve(end, GFP_KERNEL_ACCOUNT)?;
        // The header's room: the commit fills it in.
        self.image
            .extend_from_slice(&[0; format::MJ_HEADER_SIZE], GFP_KERNEL_ACCOUNT)?;
        for (i, &(offset, start, len)) in self.spans.iter().enumerate() {
            let r = self.range(i)?;
            // Lossless: at most `MJ_SIZE_MAX` (checked above).
            let head = format::entry_header(offset, len as u32);
            self.image.extend_from_slice(&head, GFP_KERNEL_ACCOUNT)?;
            if self.image.len() != start {
                return Err(EINVAL);
            }
            UserSlice::new(UserPtr::from_addr(r.data as usize), len)
                .read_all(&mut self.image, GFP_KERNEL_ACCOUNT)?;
            let pad = format::ENTRY_PAD
                .get(..format::entry_pad(len))
                .ok_or(EINVAL)?;
            self.image.extend_from_slice(pad, GFP_KERNEL_ACCOUNT)?;
        }
        let payload = self.image.get(format::MJ_HEADER_SIZE..).ok_or(EINVAL)?;
        self.crc = engine::payload_crc(&uuid, payload, crate::dax::crc32c_append);
        self.uuid = uuid;
        Ok(())
    }

    /// Range `i` of the array copied in.
    pub(super) fn range(&self, i: usize) -> Result<abi::JournalRange> {
        let size = abi::JournalRange::SIZE;
        let raw = self.raw.get(i * size..(i + 1) * size).ok_or(EINVAL)?;
        Ok(abi::JournalRange::decode(raw))
    }

    /// The transaction's ranges, borrowing its data. A span outside the image (never
    /// built by `copy_in`) reads as empty, which the engine refuses.
    pub(super) fn ranges(&self) -> impl Iterator<Item = Range<'_>> {
        self.spans.iter().map(|&(offset, start, len)| Range {
            offset,
            data: start
                .checked_add(len)
                .and_then(|end| self.image.get(start..end))
                .unwrap_or(&[]),
        })
    }

    /// Bytes the buffers hold on to (the image dominates).
    pub(super) fn capacity(&self) -> usize {
        self.image.capacity()
    }

    /// The MJ image for the engine.
    pub(super) fn prepared(&mut self) -> Prepared<'_> {
        Prepared {
            image: &mut self.image,
            crc: self.crc,
            uuid: self.uuid,
        }
    }
}
