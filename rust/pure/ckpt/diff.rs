// SPDX-License-Identifier: GPL-2.0

//! Segment diffs of pages, and the record stream `MEMKIT_IOC_CKPT_COPY_DIFF` writes.
//!
//! A page is cut into segments of `segment` bytes (a power of two from 64 to 4096,
//! so at most 64 segments); its *difference value* against a base version is the
//! number of segments that changed. A record is a 16-byte header — page index (u64),
//! kind (u32), payload length (u32), little-endian — and its payload:
//!
//! - [`KIND_FULL`]: the page's 4096 bytes;
//! - [`KIND_DIFF`]: the mask of changed segments (u64; bit `i` is segment `i`), then
//!   the changed segments' bytes in segment order.
//!
//! The decoder checks every field before use: a malformed stream is an error, never
//! a panic or a write out of bounds.

use super::PAGE_SIZE;

/// Bytes of a page, as `usize`.
pub const PAGE: usize = PAGE_SIZE as usize;
/// Bytes of a record header.
pub const HEADER: usize = 16;
/// Record kind: the whole page.
pub const KIND_FULL: u32 = 0;
/// Record kind: changed segments against the previous version.
pub const KIND_DIFF: u32 = 1;
/// Bytes of the largest record: a header and a full page.
pub const MAX_RECORD: usize = HEADER + PAGE;

/// How pages are diffed.
///
/// Sizes are kept as shifts: the module's code must not divide by runtime values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// log2 of the bytes per segment (6 to 12).
    shift: u32,
    /// A page with more changed segments than this is sent whole.
    pub max_changed: u32,
}

impl Params {
    /// Checks a segment size (a power of two from 64 to 4096) and threshold.
    pub fn new(segment: u32, max_changed: u32) -> Option<Params> {
        if !segment.is_power_of_two() || !(64..=PAGE_SIZE as u32).contains(&segment) {
            return None;
        }
        Some(Params {
            shift: segment.trailing_zeros(),
            max_changed,
        })
    }

    /// Bytes per segment.
    pub fn segment(&self) -> usize {
        1 << self.shift
    }

    /// Segments per page (1 to 64).
    pub fn segments(&self) -> usize {
        PAGE >> self.shift
    }

    /// Segment `i` of `page`, if both exist.
    fn seg<'a>(&self, page: &'a [u8], i: usize) -> Option<&'a [u8]> {
        page.get(i << self.shift..(i + 1) << self.shift)
    }
}

/// The mask of segments that differ between pages `old` and `new` (segments missing
/// from either compare as changed).
pub fn changed(p: Params, old: &[u8], new: &[u8]) -> u64 {
    let mut mask = 0;
    for i in 0..p.segments() {
        let (a, b) = (p.seg(old, i), p.seg(new, i));
        if a.is_none() || a != b {
            mask |= 1 << i;
        }
    }
    mask
}

fn put_header(out: &mut [u8], page: u64, kind: u32, len: usize) -> Option<()> {
    let len = u32::try_from(len).ok()?;
    let h = out.get_mut(..HEADER)?;
    h[..8].copy_from_slice(&page.to_le_bytes());
    h[8..12].copy_from_slice(&kind.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    Some(())
}

/// Encodes page `page` with contents `new` into `out`: as a diff against `base` if
/// there is one and at most `p.max_changed` segments changed, else whole. Returns
/// the record's length and whether it is a diff; `None` if `out` is shorter than
/// [`MAX_RECORD`] or `new`/`base` are not pages.
pub fn encode(
    p: Params,
    page: u64,
    new: &[u8],
    base: Option<&[u8]>,
    out: &mut [u8],
) -> Option<(usize, bool)> {
    if new.len() != PAGE || out.len() < MAX_RECORD || base.is_some_and(|b| b.len() != PAGE) {
        return None;
    }
    if let Some(base) = base {
        let mask = changed(p, base, new);
        if mask.count_ones() <= p.max_changed {
            out.get_mut(HEADER..HEADER + 8)?
                .copy_from_slice(&mask.to_le_bytes());
            let mut at = HEADER + 8;
            for i in (0..p.segments()).filter(|i| mask >> i & 1 != 0) {
                let seg = p.seg(new, i)?;
                out.get_mut(at..at + seg.len())?.copy_from_slice(seg);
                at += seg.len();
            }
            put_header(out, page, KIND_DIFF, at - HEADER)?;
            return Some((at, true));
        }
    }
    put_header(out, page, KIND_FULL, PAGE)?;
    out.get_mut(HEADER..MAX_RECORD)?.copy_from_slice(new);
    Some((MAX_RECORD, false))
}

/// Writes the header of a whole-page record of page `page` into `out`; the page's
/// 4096 bytes follow it. Returns the header's length; `None` if `out` is shorter.
pub fn put_full_header(out: &mut [u8], page: u64) -> Option<usize> {
    put_header(out, page, KIND_FULL, PAGE)?;
    Some(HEADER)
}

/// A decoded record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// The whole page.
    Full {
        /// Page index.
        page: u64,
        /// Its 4096 bytes.
        data: &'a [u8],
    },
    /// Changed segments.
    Diff {
        /// Page index.
        page: u64,
        /// Changed segments.
        mask: u64,
        /// Their bytes, in segment order.
        data: &'a [u8],
    },
}

impl Record<'_> {
    /// The record's page index.
    pub fn page(&self) -> u64 {
        match *self {
            Record::Full { page, .. } | Record::Diff { page, .. } => page,
        }
    }

    /// Applies the record to `dst`, the page's previous version (which a diff
    /// assumes). Fails if `dst` is not a page.
    pub fn apply(&self, p: Params, dst: &mut [u8]) -> Result<(), DecodeError> {
        if dst.len() != PAGE {
            return Err(DecodeError::Length);
        }
        match *self {
            Record::Full { data, .. } => dst.copy_from_slice(data),
            Record::Diff { mask, data, .. } => {
                let mut at = 0;
                for i in (0..p.segments()).filter(|i| mask >> i & 1 != 0) {
                    let n = p.segment();
                    let src = data.get(at..at + n).ok_or(DecodeError::Length)?;
                    dst.get_mut(i * n..(i + 1) * n)
                        .ok_or(DecodeError::Length)?
                        .copy_from_slice(src);
                    at += n;
                }
            }
        }
        Ok(())
    }
}

/// Why a record stream does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A header or payload runs past the end.
    Truncated,
    /// An unknown record kind.
    Kind(u32),
    /// A payload length that does not match its kind (and mask).
    Length,
    /// A diff mask with bits past the page's segments.
    Mask,
}

/// Iterates the records of `buf` (diffs with segments of `p.segment` bytes).
pub fn records(p: Params, buf: &[u8]) -> Records<'_> {
    Records { p, buf }
}

/// Iterator of [`records`]; after an error it ends.
pub struct Records<'a> {
    p: Params,
    buf: &'a [u8],
}

impl<'a> Records<'a> {
    fn decode(&mut self) -> Result<Record<'a>, DecodeError> {
        let h = self.buf.get(..HEADER).ok_or(DecodeError::Truncated)?;
        let page = u64::from_le_bytes(h[..8].try_into().map_err(|_| DecodeError::Truncated)?);
        let kind = u32::from_le_bytes(h[8..12].try_into().map_err(|_| DecodeError::Truncated)?);
        let len = u32::from_le_bytes(h[12..16].try_into().map_err(|_| DecodeError::Truncated)?);
        let len = usize::try_from(len).map_err(|_| DecodeError::Length)?;
        let end = HEADER.checked_add(len).ok_or(DecodeError::Length)?;
        let payload = self.buf.get(HEADER..end).ok_or(DecodeError::Truncated)?;
        let rec = match kind {
            KIND_FULL if len == PAGE => Record::Full {
                page,
                data: payload,
            },
            KIND_FULL => return Err(DecodeError::Length),
            KIND_DIFF => {
                let (m, data) = payload.split_at_checked(8).ok_or(DecodeError::Length)?;
                let mask = u64::from_le_bytes(m.try_into().map_err(|_| DecodeError::Length)?);
                let segs = self.p.segments();
                if segs < 64 && mask >> segs != 0 {
                    return Err(DecodeError::Mask);
                }
                if (mask.count_ones() as usize).checked_mul(self.p.segment()) != Some(data.len()) {
                    return Err(DecodeError::Length);
                }
                Record::Diff { page, mask, data }
            }
            k => return Err(DecodeError::Kind(k)),
        };
        self.buf = self.buf.get(end..).unwrap_or(&[]);
        Ok(rec)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let r = self.decode();
        if r.is_err() {
            self.buf = &[];
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn page(seed: u8) -> Vec<u8> {
        (0..PAGE)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn params() {
        assert!(Params::new(64, 8).is_some());
        assert!(Params::new(4096, 0).is_some());
        assert!(Params::new(32, 8).is_none());
        assert!(Params::new(96, 8).is_none());
        assert!(Params::new(8192, 8).is_none());
        assert_eq!(Params::new(256, 1).unwrap().segments(), 16);
    }

    #[test]
    fn a_full_header_and_the_page_are_the_full_record() {
        let new = page(9);
        let mut whole = std::vec![0u8; MAX_RECORD];
        assert_eq!(
            encode(Params::new(256, 4).unwrap(), 42, &new, None, &mut whole),
            Some((MAX_RECORD, false))
        );
        let mut split = std::vec![0u8; MAX_RECORD];
        assert_eq!(put_full_header(&mut split, 42), Some(HEADER));
        split[HEADER..].copy_from_slice(&new);
        assert_eq!(split, whole);
        assert_eq!(put_full_header(&mut [0u8; HEADER - 1], 42), None);
    }

    #[test]
    fn diff_round_trip() {
        let p = Params::new(256, 4).unwrap();
        let base = page(1);
        let mut new = base.clone();
        new[0] ^= 1;
        new[3000] ^= 0x80;
        let mut out = std::vec![0u8; MAX_RECORD];
        let (len, diffed) = encode(p, 7, &new, Some(&base), &mut out).unwrap();
        assert!(diffed);
        assert_eq!(len, HEADER + 8 + 2 * 256);
        let recs: Vec<_> = records(p, &out[..len]).collect();
        assert_eq!(recs.len(), 1);
        let rec = recs[0].unwrap();
        assert_eq!(rec.page(), 7);
        let mut replica = base.clone();
        rec.apply(p, &mut replica).unwrap();
        assert_eq!(replica, new);
    }

    #[test]
    fn above_the_threshold_or_without_base_a_page_goes_whole() {
        let p = Params::new(64, 1).unwrap();
        let base = page(1);
        let mut new = base.clone();
        new[0] ^= 1;
        new[100] ^= 1;
        let mut out = std::vec![0u8; MAX_RECORD];
        assert_eq!(
            encode(p, 1, &new, Some(&base), &mut out),
            Some((MAX_RECORD, false))
        );
        assert_eq!(
            encode(p, 1, &new, None, &mut out),
            Some((MAX_RECORD, false))
        );
        let rec = records(p, &out).next().unwrap().unwrap();
        let mut replica = std::vec![0u8; PAGE];
        rec.apply(p, &mut replica).unwrap();
        assert_eq!(replica, new);
        // An unchanged page is an empty diff.
        let (len, diffed) = encode(p, 1, &base, Some(&base), &mut out).unwrap();
        assert!(diffed);
        assert_eq!(len, HEADER + 8);
        assert!(encode(p, 1, &new, None, &mut out[..100]).is_none());
    }

    #[test]
    fn malformed_streams_are_errors() {
        let p = Params::new(512, 8).unwrap();
        let mut out = std::vec![0u8; MAX_RECORD];
        let new = page(3);
        let (len, _) = encode(p, 2, &new, None, &mut out).unwrap();
        // Truncated payload.
        assert_eq!(
            records(p, &out[..len - 1]).next(),
            Some(Err(DecodeError::Truncated))
        );
        // Unknown kind.
        let mut bad = out[..len].to_vec();
        bad[8] = 9;
        assert_eq!(records(p, &bad).next(), Some(Err(DecodeError::Kind(9))));
        // A diff whose mask names a segment past the page (8 segments of 512).
        let mut d = std::vec![0u8; HEADER + 8];
        d[8] = KIND_DIFF as u8;
        d[12] = 8;
        d[HEADER + 1] = 1; // bit 8
        assert_eq!(records(p, &d).next(), Some(Err(DecodeError::Mask)));
        // A diff whose length does not match its mask.
        d[HEADER + 1] = 0;
        d[HEADER] = 1;
        assert_eq!(records(p, &d).next(), Some(Err(DecodeError::Length)));
        // After an error the iterator ends.
        let mut it = records(p, &d);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let p = Params::new(64, 64).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in 0..2000usize {
            let buf: Vec<u8> = (0..n % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut dst = std::vec![0u8; PAGE];
            for rec in records(p, &buf).flatten() {
                let _ = rec.apply(p, &mut dst);
            }
        }
    }
}
