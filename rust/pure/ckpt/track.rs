// SPDX-License-Identifier: GPL-2.0

//! How a checkpoint region finds its writes, and when it changes how.
//!
//! Two tracking modes, as vmwgfx's dirty tracking
//! (`drivers/gpu/drm/vmwgfx/vmwgfx_page_dirty.c`) has:
//!
//! - [`Mode::Scan`]: every collect reads (and cleans) the dirty bit of every page-table
//!   entry that maps the region. The program being checkpointed never faults, but a
//!   collect costs in proportion to the region.
//! - [`Mode::Record`]: the pages a collect reports are write-protected again; the
//!   first write to each faults and is recorded in the region's dirty set, and the
//!   next collect reads that set and write-protects only what it holds. A collect
//!   costs in proportion to what was written, and each page written pays one fault
//!   per interval.
//!
//! A region the caller did not fix to one mode ([`Policy`]) starts in the scan mode
//! (the first interval of a checkpointer sends everything) and moves to the
//! recording mode after [`CALM_INTERVALS`] clearing collects in a row found less
//! than [`RECORD_BELOW_PERMILLE`] of their range dirty; one that finds at least
//! [`SCAN_FROM_PERMILLE`] moves it back. The gap between the two thresholds and the
//! run of calm intervals are the hysteresis: a region near one threshold does not
//! flip at every collect (each move to the recording mode write-protects the whole
//! region once).

use super::super::abi;

/// How a region's writes are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The page tables' dirty bits, read at each collect.
    Scan,
    /// First writes to write-protected pages, recorded as they happen.
    Record,
}

impl Mode {
    /// `memkit_ckpt_stats.mode`.
    pub const fn abi(self) -> u32 {
        match self {
            Mode::Scan => abi::CKPT_MODE_SCAN,
            Mode::Record => abi::CKPT_MODE_RECORD,
        }
    }
}

/// A clearing collect that finds less than this (per mille of its range) dirty is
/// calm. The thresholds weigh the two modes' whole cost per interval, the writer's
/// included: recording costs a write fault and a write-protection per page written,
/// scanning a page-table entry visited per page of the region and nothing on the
/// writer's side. In the test guest (production kernel, TCG) a recorded page cost
/// 24 to 60 us in all (two runs) against 0.16 us per region page scanned: recording
/// pays below 0.25 to 0.65 % (`Documentation/ckpt.rst`).
pub const RECORD_BELOW_PERMILLE: u64 = 3;
/// A clearing collect that finds at least this (per mille) dirty moves a recording
/// region back to the scan mode.
pub const SCAN_FROM_PERMILLE: u64 = 10;
/// Calm intervals in a row before a scanning region starts recording.
pub const CALM_INTERVALS: u32 = 3;

/// A region's mode and what decides the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    mode: Mode,
    /// Set by `MEMKIT_IOC_CKPT_START`: the mode never changes by itself.
    fixed: bool,
    /// Calm clearing collects in a row, in the scan mode.
    calm: u32,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            mode: Mode::Scan,
            fixed: false,
            calm: 0,
        }
    }
}

impl Policy {
    /// The policy `memkit_ckpt_start.flags` asks for (checked by
    /// [`abi::CkptStart`]'s rules first): `EINVAL` for anything but 0 or one mode.
    pub fn from_start_flags(flags: u32) -> Result<Policy, i32> {
        let fixed = |mode| Policy {
            mode,
            fixed: true,
            calm: 0,
        };
        match flags {
            0 => Ok(Policy::default()),
            abi::CKPT_START_SCAN => Ok(fixed(Mode::Scan)),
            abi::CKPT_START_RECORD => Ok(fixed(Mode::Record)),
            _ => Err(abi::EINVAL),
        }
    }

    /// The mode now.
    pub const fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the caller fixed the mode.
    pub const fn fixed(&self) -> bool {
        self.fixed
    }

    /// After a clearing collect that found `dirty` of `len` pages: the mode to move
    /// to, if it changes.
    pub fn after_interval(&mut self, dirty: u64, len: u64) -> Option<Mode> {
        if self.fixed || len == 0 {
            return None;
        }
        // Saturating: a region has at most 2^20 pages, so neither product saturates.
        let permille = dirty.saturating_mul(1000);
        let next = match self.mode {
            Mode::Scan if permille < RECORD_BELOW_PERMILLE.saturating_mul(len) => {
                self.calm += 1;
                if self.calm < CALM_INTERVALS {
                    return None;
                }
                Mode::Record
            }
            Mode::Scan => {
                self.calm = 0;
                return None;
            }
            Mode::Record if permille >= SCAN_FROM_PERMILLE.saturating_mul(len) => Mode::Scan,
            Mode::Record => return None,
        };
        self.calm = 0;
        self.mode = next;
        Some(next)
    }
}

/// The spans to write-protect for the runs of set bits of `map` in `[first, end)`:
/// runs closer than `gap` pages are merged, since walking a few page-table entries
/// that need nothing costs less than one more walk of the mapping (each with its
/// own TLB flush). Items are `(first page, count)`.
pub fn spans(map: &[u64], first: usize, end: usize, gap: u64) -> Spans<'_> {
    Spans {
        runs: super::runs(map, first, end),
        pending: None,
        gap,
    }
}

/// Iterator of [`spans`].
pub struct Spans<'a> {
    runs: super::Runs<'a>,
    pending: Option<(u64, u64)>,
    gap: u64,
}

impl Iterator for Spans<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        loop {
            let Some((s, n)) = self.runs.next() else {
                return self.pending.take();
            };
            match self.pending {
                // Runs are in order and disjoint: `s >= ps + pn`.
                Some((ps, pn)) if s - (ps + pn) < self.gap => {
                    self.pending = Some((ps, s + n - ps));
                }
                Some(done) => {
                    self.pending = Some((s, n));
                    return Some(done);
                }
                None => self.pending = Some((s, n)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn start_flags() {
        assert_eq!(Policy::from_start_flags(0), Ok(Policy::default()));
        let scan = Policy::from_start_flags(abi::CKPT_START_SCAN).unwrap();
        assert!(scan.fixed() && scan.mode() == Mode::Scan);
        let rec = Policy::from_start_flags(abi::CKPT_START_RECORD).unwrap();
        assert!(rec.fixed() && rec.mode() == Mode::Record);
        assert_eq!(
            Policy::from_start_flags(abi::CKPT_START_SCAN | abi::CKPT_START_RECORD),
            Err(abi::EINVAL)
        );
        assert_eq!(Policy::from_start_flags(4), Err(abi::EINVAL));
    }

    #[test]
    fn calm_intervals_in_a_row_start_recording() {
        let mut p = Policy::default();
        let calm = RECORD_BELOW_PERMILLE - 1;
        // A calm interval, then a busy one, restarts the count.
        assert_eq!(p.after_interval(calm, 1000), None);
        assert_eq!(p.after_interval(calm, 1000), None);
        assert_eq!(p.after_interval(RECORD_BELOW_PERMILLE, 1000), None);
        for _ in 1..CALM_INTERVALS {
            assert_eq!(p.after_interval(calm, 1000), None);
        }
        assert_eq!(p.after_interval(calm, 1000), Some(Mode::Record));
        assert_eq!(p.mode(), Mode::Record);
        // Between the thresholds nothing moves; at the upper one it scans again.
        assert_eq!(p.after_interval(SCAN_FROM_PERMILLE - 1, 1000), None);
        assert_eq!(p.after_interval(RECORD_BELOW_PERMILLE, 1000), None);
        assert_eq!(p.after_interval(SCAN_FROM_PERMILLE, 1000), Some(Mode::Scan));
        // And the calm count starts from zero.
        for _ in 1..CALM_INTERVALS {
            assert_eq!(p.after_interval(0, 1000), None);
        }
        assert_eq!(p.after_interval(0, 1000), Some(Mode::Record));
    }

    #[test]
    fn a_fixed_mode_stays() {
        let mut p = Policy::from_start_flags(abi::CKPT_START_SCAN).unwrap();
        for _ in 0..10 {
            assert_eq!(p.after_interval(0, 1000), None);
        }
        let mut p = Policy::from_start_flags(abi::CKPT_START_RECORD).unwrap();
        assert_eq!(p.after_interval(1000, 1000), None);
        assert_eq!(p.mode(), Mode::Record);
        // A zero-length range says nothing.
        let mut p = Policy::default();
        for _ in 0..10 {
            assert_eq!(p.after_interval(0, 0), None);
        }
    }

    #[test]
    fn spans_merge_close_runs_and_cover_every_bit() {
        let mut m = std::vec![0u64; 4];
        for b in [0usize, 1, 5, 40, 41, 100, 200, 255] {
            super::super::set_bit(&mut m, b);
        }
        let s: Vec<_> = spans(&m, 0, 256, 1).collect();
        assert_eq!(s, [(0, 2), (5, 1), (40, 2), (100, 1), (200, 1), (255, 1)]);
        let s: Vec<_> = spans(&m, 0, 256, 4).collect();
        assert_eq!(s, [(0, 6), (40, 2), (100, 1), (200, 1), (255, 1)]);
        let s: Vec<_> = spans(&m, 0, 256, 64).collect();
        assert_eq!(s, [(0, 101), (200, 56)]);
        // Every set bit in some span, spans disjoint and in order, for any gap.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for gap in [1u64, 2, 3, 7, 64, 1000] {
            let m: Vec<u64> = (0..8)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x & x >> 3
                })
                .collect();
            let s: Vec<_> = spans(&m, 3, 500, gap).collect();
            for w in s.windows(2) {
                assert!(w[1].0 >= w[0].0 + w[0].1 + gap, "{w:?}, gap {gap}");
            }
            for i in 3..500 {
                let inside = s.iter().any(|&(f, n)| (f..f + n).contains(&(i as u64)));
                if super::super::test_bit(&m, i) {
                    assert!(inside, "bit {i}, gap {gap}");
                }
            }
        }
    }
}
