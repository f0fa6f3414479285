// SPDX-License-Identifier: GPL-2.0

//! Checkpoint dirty tracking: argument checks, the dirty bitmap, runs and history.
//!
//! The module keeps, per region, a *pending* bitmap (bit `p`: page `p` was written
//! since it was last cleared) fed from the page tables and from pages found dirty
//! after their mapping went, and a 64-interval *history* word per page. Everything
//! here works on those arrays; the kernel side only fills the bitmap and copies
//! results out.

use super::abi::{self, CkptCollect, UapiStruct};

pub mod diff;
pub mod track;

/// Bytes per page.
pub const PAGE_SIZE: u64 = 4096;
/// `EINVAL`.
pub const EINVAL: i32 = abi::EINVAL;
/// `E2BIG`.
pub const E2BIG: i32 = abi::E2BIG;
/// `ENOSPC`: a user buffer is too small for the answer.
pub const ENOSPC: i32 = 28;

/// The pages of a region of `bytes`, if that is a valid size: a non-zero multiple of
/// [`PAGE_SIZE`] up to [`abi::CKPT_MAX_BYTES`] (above: `E2BIG`; else `EINVAL`).
pub fn region_pages(bytes: u64) -> Result<u64, i32> {
    if bytes > abi::CKPT_MAX_BYTES {
        Err(E2BIG)
    } else if bytes == 0 || !bytes.is_multiple_of(PAGE_SIZE) {
        Err(EINVAL)
    } else {
        Ok(bytes / PAGE_SIZE)
    }
}

/// 64-bit words of a bitmap of `bits` bits.
pub const fn words(bits: u64) -> u64 {
    bits.div_ceil(64)
}

/// Checks that `[first, first + count)` is a non-empty range of a region of `pages`
/// pages and returns it as `usize` bounds.
pub fn page_range(first: u64, count: u64, pages: u64) -> Result<(usize, usize), i32> {
    let end = first.checked_add(count).ok_or(EINVAL)?;
    if count == 0 || end > pages {
        return Err(EINVAL);
    }
    let first = usize::try_from(first).map_err(|_| EINVAL)?;
    let end = usize::try_from(end).map_err(|_| EINVAL)?;
    Ok((first, end))
}

/// Whether bit `i` of `map` is set (false past the end).
pub fn test_bit(map: &[u64], i: usize) -> bool {
    map.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 != 0)
}

/// Sets bit `i` of `map` (no-op past the end).
pub fn set_bit(map: &mut [u64], i: usize) {
    if let Some(w) = map.get_mut(i / 64) {
        *w |= 1 << (i % 64);
    }
}

/// Clears bit `i` of `map` (no-op past the end).
pub fn clear_bit(map: &mut [u64], i: usize) {
    if let Some(w) = map.get_mut(i / 64) {
        *w &= !(1 << (i % 64));
    }
}

/// Sets (`value`) or clears bits `[first, end)` of `map`.
pub fn fill_bits(map: &mut [u64], first: usize, end: usize, value: bool) {
    let mut i = first;
    while i < end {
        let Some(w) = map.get_mut(i / 64) else { return };
        let lo = i % 64;
        let n = (end - i).min(64 - lo);
        let mask = if n == 64 { !0 } else { ((1u64 << n) - 1) << lo };
        if value {
            *w |= mask;
        } else {
            *w &= !mask;
        }
        i += n;
    }
}

/// Sets (`value`) or clears in `map` the bits a window snapshot has set: bit `i` of
/// `snap` is bit `first + i` of `map`, for `i < len`.
pub fn apply_snapshot(map: &mut [u64], snap: &[u64], first: usize, len: usize, value: bool) {
    for (s, n) in runs(snap, 0, len) {
        // Lossless: runs of `[0, len)` fit in `usize`.
        let s = first + s as usize;
        fill_bits(map, s, s + n as usize, value);
    }
}

/// Word `w` of a bitmap whose first `len` bits are set and the others clear.
pub fn ones_word(len: usize, w: usize) -> u64 {
    let start = w.saturating_mul(64);
    match len.saturating_sub(start) {
        0 => 0,
        n if n >= 64 => u64::MAX,
        n => (1u64 << n) - 1,
    }
}

/// Word `w` of the bitmap of `[first, end)`: bit `j` is bit `first + 64 * w + j` of
/// `map`; bits past `end` are zero.
pub fn out_word(map: &[u64], first: usize, end: usize, w: usize) -> u64 {
    let Some(start) = w.checked_mul(64).and_then(|o| o.checked_add(first)) else {
        return 0;
    };
    if start >= end {
        return 0;
    }
    let n = (end - start).min(64);
    let (q, r) = (start / 64, start % 64);
    let lo = map.get(q).copied().unwrap_or(0) >> r;
    let hi = if r == 0 {
        0
    } else {
        map.get(q + 1).copied().unwrap_or(0) << (64 - r)
    };
    let v = lo | hi;
    if n == 64 {
        v
    } else {
        v & ((1u64 << n) - 1)
    }
}

/// The runs of set bits of `map` in `[first, end)`, as `(first page, count)`.
pub fn runs(map: &[u64], first: usize, end: usize) -> Runs<'_> {
    Runs {
        map,
        next: first,
        end,
    }
}

/// Iterator of [`runs`].
pub struct Runs<'a> {
    map: &'a [u64],
    next: usize,
    end: usize,
}

impl Runs<'_> {
    /// The first index in `[from, end)` whose bit is `value`, or `end`.
    fn seek(&self, from: usize, value: bool) -> usize {
        let mut i = from;
        while i < self.end {
            let word = self.map.get(i / 64).copied().unwrap_or(0);
            let word = if value { word } else { !word };
            let rest = word >> (i % 64);
            if rest == 0 {
                // Nothing in the rest of this word.
                i = (i / 64 + 1) * 64;
            } else {
                i += rest.trailing_zeros() as usize;
                break;
            }
        }
        i.min(self.end)
    }
}

impl Iterator for Runs<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let start = self.seek(self.next, true);
        if start >= self.end {
            self.next = self.end;
            return None;
        }
        let stop = self.seek(start, false);
        self.next = stop;
        // Lossless: `usize` is at most 64 bits.
        Some((start as u64, (stop - start) as u64))
    }
}

/// Set bits and runs of set bits of `map` in `[first, end)`.
pub fn count(map: &[u64], first: usize, end: usize) -> (u64, u64) {
    runs(map, first, end).fold((0, 0), |(bits, n), (_, len)| (bits + len, n + 1))
}

/// `h` shifted left by `n` intervals (0 from 64 on).
fn aged(h: u64, n: u64) -> u64 {
    u32::try_from(n)
        .ok()
        .and_then(|n| h.checked_shl(n))
        .unwrap_or(0)
}

/// Per page, whether it was written in each of the last 64 intervals (bit 0: the
/// last), kept so that a clearing collect of the whole region touches only the pages
/// it reports.
///
/// Page `p` stores `bits[p]`, its history as of the full-region interval
/// `stamp[p]`, and was written in no full-region interval since: its history now
/// is `bits[p] << (full - stamp[p])`. A collect of part of the region shifts the
/// pages of its range at once (so their histories move and others' do not, as
/// an eager shift of every page of the range would).
pub struct History<V> {
    bits: V,
    stamp: V,
    /// Full-region intervals ended.
    full: u64,
}

impl<V: core::ops::DerefMut<Target = [u64]>> History<V> {
    /// Empty histories in `bits` and `stamp`, one word per page each, zeroed.
    pub fn new(bits: V, stamp: V) -> History<V> {
        History {
            bits,
            stamp,
            full: 0,
        }
    }

    /// Forgets every page's history.
    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|h| *h = 0);
        self.stamp.iter_mut().for_each(|s| *s = 0);
        self.full = 0;
    }

    /// Page `p`'s history (0 past the end).
    pub fn get(&self, p: usize) -> u64 {
        let (Some(&h), Some(&s)) = (self.bits.get(p), self.stamp.get(p)) else {
            return 0;
        };
        aged(h, self.full.wrapping_sub(s))
    }

    /// Ends an interval for pages `[first, end)`, the written ones set in `snap` (bit
    /// `i`: page `first + i`). For the whole region, only the written pages are
    /// touched.
    pub fn end_interval(&mut self, snap: &[u64], first: usize, end: usize) {
        let full = first == 0 && end >= self.bits.len();
        if full {
            self.full = self.full.wrapping_add(1);
        }
        let now = self.full;
        let (bits, stamp) = (&mut *self.bits, &mut *self.stamp);
        let mut set = |p: usize, shift: u64, written: bool| {
            if let (Some(h), Some(s)) = (bits.get_mut(p), stamp.get_mut(p)) {
                *h = aged(*h, now.wrapping_sub(*s).wrapping_add(shift)) | u64::from(written);
                *s = now;
            }
        };
        if full {
            // Written pages: aged to the interval before this one, shifted once more.
            for (s, n) in runs(snap, 0, end - first) {
                // Lossless: runs of a `usize` range.
                for p in s as usize..(s + n) as usize {
                    set(p, 0, true);
                }
            }
        } else {
            for p in first..end {
                set(p, 1, test_bit(snap, p - first));
            }
        }
    }
}

/// What a `MEMKIT_IOC_CKPT_COLLECT` asks for, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collect {
    /// First page.
    pub first: usize,
    /// One past the last page.
    pub end: usize,
    /// Clear what is reported.
    pub clear: bool,
    /// Report runs, not a bitmap.
    pub ranges: bool,
    /// Only count: no buffer.
    pub count_only: bool,
    /// Open a copy-on-write snapshot of the reported pages (needs `clear`).
    pub snapshot: bool,
    /// Report every page of the range, written or not.
    pub all: bool,
}

impl Collect {
    /// Checks `c` against a region of `pages` pages, before anything is collected.
    pub fn check(c: &CkptCollect, pages: u64) -> Result<Collect, i32> {
        let (first, end) = page_range(c.first, c.count, pages)?;
        let clear = c.flags & abi::CKPT_COLLECT_CLEAR != 0;
        let count_only = c.buf == 0 && c.buf_len == 0;
        let snapshot = c.flags & abi::CKPT_COLLECT_SNAPSHOT != 0;
        if (count_only && clear) || (snapshot && !clear) {
            return Err(EINVAL);
        }
        Ok(Collect {
            first,
            end,
            clear,
            ranges: c.flags & abi::CKPT_COLLECT_RANGES != 0,
            count_only,
            snapshot,
            all: c.flags & abi::CKPT_COLLECT_ALL != 0,
        })
    }

    /// Bytes the answer needs, given the number of runs: `ENOSPC` if `buf_len` is
    /// less.
    pub fn check_room(&self, buf_len: u64, nr_runs: u64) -> Result<u64, i32> {
        // Lossless: `usize` is at most 64 bits.
        let pages = (self.end - self.first) as u64;
        let need = if self.ranges {
            nr_runs.checked_mul(abi::CkptRange::SIZE as u64)
        } else {
            words(pages).checked_mul(8)
        }
        .ok_or(EINVAL)?;
        if self.count_only || need <= buf_len {
            Ok(need)
        } else {
            Err(ENOSPC)
        }
    }
}

/// Checks a buffer of `buf_len` bytes for `count` items of `item` bytes: `ENOSPC` if
/// too small, `EINVAL` if the product overflows.
pub fn check_buffer(buf_len: u64, count: u64, item: u64) -> Result<u64, i32> {
    let need = count.checked_mul(item).ok_or(EINVAL)?;
    if need > buf_len {
        Err(ENOSPC)
    } else {
        Ok(need)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Ends an interval for pages `[first, end)`: shifts each page's history and
    /// records whether the page was written (`snap`'s bit `i`: page `first + i`). The
    /// model [`History`] must agree with.
    fn end_interval(history: &mut [u64], snap: &[u64], first: usize, end: usize) {
        for (i, h) in history.iter_mut().take(end).skip(first).enumerate() {
            *h = *h << 1 | u64::from(test_bit(snap, i));
        }
    }

    fn map_of(bits: &[usize], n: usize) -> Vec<u64> {
        let mut m = std::vec![0u64; n.div_ceil(64)];
        for &b in bits {
            set_bit(&mut m, b);
        }
        m
    }

    #[test]
    fn region_sizes() {
        assert_eq!(region_pages(4096), Ok(1));
        assert_eq!(region_pages(0), Err(EINVAL));
        assert_eq!(region_pages(4095), Err(EINVAL));
        assert_eq!(region_pages(abi::CKPT_MAX_BYTES), Ok(1 << 20));
        assert_eq!(region_pages(abi::CKPT_MAX_BYTES + 4096), Err(E2BIG));
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(page_range(0, 10, 10), Ok((0, 10)));
        assert_eq!(page_range(9, 1, 10), Ok((9, 10)));
        assert_eq!(page_range(0, 0, 10), Err(EINVAL));
        assert_eq!(page_range(5, 6, 10), Err(EINVAL));
        assert_eq!(page_range(u64::MAX, 2, 10), Err(EINVAL));
    }

    #[test]
    fn runs_and_counts() {
        let m = map_of(&[0, 1, 5, 63, 64, 65, 100, 127, 128], 200);
        let r: Vec<_> = runs(&m, 0, 200).collect();
        assert_eq!(r, [(0, 2), (5, 1), (63, 3), (100, 1), (127, 2)]);
        assert_eq!(count(&m, 0, 200), (9, 5));
        // A window cuts runs at its edges.
        let r: Vec<_> = runs(&m, 1, 64).collect();
        assert_eq!(r, [(1, 1), (5, 1), (63, 1)]);
        assert_eq!(runs(&m, 6, 63).count(), 0);
    }

    #[test]
    fn out_words_shift_the_window() {
        let m = map_of(&[3, 64, 70, 130], 192);
        assert_eq!(out_word(&m, 0, 192, 0), 1 << 3);
        assert_eq!(out_word(&m, 0, 192, 1), 1 | 1 << 6);
        assert_eq!(out_word(&m, 3, 192, 0), 1 | 1 << 61);
        assert_eq!(out_word(&m, 3, 192, 1), 1 << 3 | 1 << 63);
        // Bits past the end are masked off.
        assert_eq!(out_word(&m, 3, 67, 0), 1 | 1 << 61);
        assert_eq!(out_word(&m, 3, 64, 0), 1);
        assert_eq!(out_word(&m, 3, 64, 1), 0);
    }

    #[test]
    fn out_words_equal_bit_by_bit() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let m: Vec<u64> = (0..5)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        for first in 0..80 {
            for end in first..=320 {
                for w in 0..words((end - first) as u64) as usize {
                    let want = (0..64)
                        .filter(|j| first + 64 * w + j < end && test_bit(&m, first + 64 * w + j))
                        .fold(0u64, |v, j| v | 1 << j);
                    assert_eq!(out_word(&m, first, end, w), want, "{first} {end} {w}");
                }
            }
        }
    }

    #[test]
    fn clearing_a_range_keeps_the_rest() {
        let mut m = std::vec![!0u64; 3];
        fill_bits(&mut m, 5, 130, false);
        assert_eq!(m[0], 0b11111);
        assert_eq!(m[1], 0);
        assert_eq!(m[2], !0u64 << 2);
        fill_bits(&mut m, 0, 192, false);
        assert_eq!(m, [0, 0, 0]);
        fill_bits(&mut m, 63, 66, true);
        assert_eq!(m, [1 << 63, 0b11, 0]);
    }

    #[test]
    fn snapshots_clear_and_restore_exactly_their_bits() {
        let mut m = map_of(&[2, 3, 70, 100], 128);
        let snap: Vec<u64> = (0..2).map(|w| out_word(&m, 3, 101, w)).collect();
        // Bit 2 is outside the window; 3, 70 and 100 are in it.
        apply_snapshot(&mut m, &snap, 3, 98, false);
        assert_eq!(m, map_of(&[2], 128));
        // A bit set meanwhile survives a clear of the snapshot.
        set_bit(&mut m, 71);
        apply_snapshot(&mut m, &snap, 3, 98, true);
        assert_eq!(m, map_of(&[2, 3, 70, 71, 100], 128));
    }

    #[test]
    fn history_shifts_per_interval() {
        let mut h = std::vec![0u64; 4];
        end_interval(&mut h, &map_of(&[1, 2], 4), 0, 4);
        end_interval(&mut h, &map_of(&[2], 4), 0, 4);
        // The snapshot is relative to the window; outside it nothing moves.
        end_interval(&mut h, &map_of(&[0], 1), 3, 4);
        assert_eq!(h, [0, 0b10, 0b11, 0b1]);
    }

    #[test]
    fn lazy_history_equals_the_shifted_one() {
        const PAGES: usize = 150;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut eager = std::vec![0u64; PAGES];
        let mut lazy = History::new(std::vec![0u64; PAGES], std::vec![0u64; PAGES]);
        for step in 0..400 {
            // Mostly whole-region intervals, some windows, some quiet stretches.
            let (first, end) = match next() % 4 {
                0 => {
                    let a = (next() % PAGES as u64) as usize;
                    let b = (next() % PAGES as u64) as usize;
                    (a.min(b), a.max(b) + 1)
                }
                _ => (0, PAGES),
            };
            let density = [0, 1, 8, 64][(next() % 4) as usize];
            let len = end - first;
            let mut snap = std::vec![0u64; len.div_ceil(64)];
            for i in 0..len {
                if next() % 64 < density {
                    set_bit(&mut snap, i);
                }
            }
            end_interval(&mut eager, &snap, first, end);
            lazy.end_interval(&snap, first, end);
            for (p, &h) in eager.iter().enumerate() {
                assert_eq!(
                    lazy.get(p),
                    h,
                    "page {p} after step {step} ({first}..{end})"
                );
            }
            if step == 200 {
                eager.iter_mut().for_each(|h| *h = 0);
                lazy.clear();
            }
        }
    }

    #[test]
    fn collect_arguments() {
        let c = |flags, first, count, buf, buf_len| CkptCollect {
            size: 56,
            flags,
            first,
            count,
            buf,
            buf_len,
            dirty: 0,
            nr_ranges: 0,
        };
        let clear = abi::CKPT_COLLECT_CLEAR;
        let ranges = abi::CKPT_COLLECT_RANGES;
        let ok = Collect::check(&c(clear, 0, 130, 8, 24), 200).unwrap();
        assert_eq!(ok.check_room(24, 0), Ok(24));
        assert_eq!(ok.check_room(16, 0), Err(ENOSPC));
        assert_eq!(Collect::check(&c(clear, 0, 0, 8, 8), 200), Err(EINVAL));
        assert_eq!(Collect::check(&c(clear, 150, 51, 8, 8), 200), Err(EINVAL));
        assert_eq!(Collect::check(&c(clear, 0, 10, 0, 0), 200), Err(EINVAL));
        let count_only = Collect::check(&c(ranges, 0, 10, 0, 0), 200).unwrap();
        assert!(count_only.count_only && count_only.ranges);
        assert_eq!(count_only.check_room(0, 3), Ok(48));
        let r = Collect::check(&c(clear | ranges, 0, 10, 8, 32), 200).unwrap();
        assert_eq!(r.check_room(32, 2), Ok(32));
        assert_eq!(r.check_room(32, 3), Err(ENOSPC));
        assert!(!r.snapshot);
        // A snapshot is of what a clearing collect reports.
        let snap = abi::CKPT_COLLECT_SNAPSHOT;
        assert!(
            Collect::check(&c(clear | snap, 0, 10, 8, 8), 200)
                .unwrap()
                .snapshot
        );
        assert_eq!(Collect::check(&c(snap, 0, 10, 8, 8), 200), Err(EINVAL));
        assert_eq!(
            Collect::check(&c(snap | ranges, 0, 10, 8, 8), 200),
            Err(EINVAL)
        );
        let all = abi::CKPT_COLLECT_ALL;
        assert!(
            Collect::check(&c(clear | snap | all, 0, 10, 8, 8), 200)
                .unwrap()
                .all
        );
        assert!(!r.all);
    }

    #[test]
    fn ones_words() {
        assert_eq!(ones_word(0, 0), 0);
        assert_eq!(ones_word(1, 0), 1);
        assert_eq!(ones_word(64, 0), u64::MAX);
        assert_eq!(ones_word(64, 1), 0);
        assert_eq!(ones_word(130, 1), u64::MAX);
        assert_eq!(ones_word(130, 2), 0b11);
        assert_eq!(ones_word(130, usize::MAX), 0);
        let map: Vec<u64> = (0..3).map(|w| ones_word(130, w)).collect();
        assert_eq!(count(&map, 0, 130), (130, 1));
    }

    #[test]
    fn buffers() {
        assert_eq!(check_buffer(4096, 1, 4096), Ok(4096));
        assert_eq!(check_buffer(4095, 1, 4096), Err(ENOSPC));
        assert_eq!(check_buffer(u64::MAX, u64::MAX, 4096), Err(EINVAL));
    }
}
