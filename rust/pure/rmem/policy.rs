// SPDX-License-Identifier: GPL-2.0

//! The prefetch policies: which pages a fault prefetches.
//!
//! Pages are named by virtual page number (`vpn`: address >> 12). A [`Planner`] keeps
//! one region's fault history and turns each [`Fault`] into a list of candidate vpns,
//! most wanted first; the kernel side walks the page tables and fetches those that
//! are not local.

use super::{Policy, MAX_CANDIDATES, PTES_PER_LINE, PTES_PER_TABLE};

/// Fault deltas the planner remembers (the trend policy's longest window).
const DELTAS: usize = 32;
/// Window sizes, in deltas, the trend policy tries in turn.
const TREND_WINDOWS: [usize; 4] = [4, 8, 16, DELTAS];
/// Candidates of the faulting PTE line and one adjacent line.
const TWO_LINES: usize = 2 * PTES_PER_LINE as usize;

/// A fault, as the planner sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    /// The faulting virtual page number (address >> 12).
    pub vpn: u64,
    /// First vpn of the faulting VMA that maps the region: candidates are `>= lo`.
    pub lo: u64,
    /// End (exclusive) of the vpns of the faulting VMA that map the region:
    /// candidates are `< hi`.
    pub hi: u64,
    /// Prefetched pages found used since the region's previous fault.
    pub hits: u32,
}

/// One region's prefetch state: its last fault, its recent fault deltas and its
/// current window size.
#[derive(Clone, Debug)]
pub struct Planner {
    /// The vpn of the previous fault.
    last: Option<u64>,
    /// Ring of the recent fault deltas (`vpn - last`), the next one written at `next`.
    deltas: [i64; DELTAS],
    /// Index in `deltas` of the next delta.
    next: usize,
    /// Deltas recorded in `deltas` (at most `DELTAS`).
    len: usize,
    /// The previous window size, in pages (window and trend policies).
    window: u64,
    /// Where the window policy's previous window lay: 1 ahead of its fault, -1
    /// behind it, 0 around it.
    dir: i8,
}

impl Default for Planner {
    fn default() -> Self {
        Planner::new()
    }
}

/// The candidate list being written: refuses duplicates, the fault's own vpn, vpns
/// outside `[lo, hi)` and anything past `cap`.
struct Out<'a> {
    buf: &'a mut [u64; MAX_CANDIDATES],
    n: usize,
    cap: usize,
    vpn: u64,
    lo: u64,
    hi: u64,
}

impl Out<'_> {
    fn full(&self) -> bool {
        self.n >= self.cap
    }

    /// Whether `v` may be a candidate at all (ignoring duplicates and the cap).
    fn allowed(&self, v: u64) -> bool {
        v != self.vpn && v >= self.lo && v < self.hi
    }

    /// Appends `v` if it is allowed, new and there is room; returns whether it was.
    fn push(&mut self, v: u64) -> bool {
        if self.full() || !self.allowed(v) || self.buf.get(..self.n).is_some_and(|s| s.contains(&v))
        {
            return false;
        }
        match self.buf.get_mut(self.n) {
            Some(slot) => {
                *slot = v;
                self.n += 1;
                true
            }
            None => false,
        }
    }
}

/// Calls `f` on the other vpns of `vpn`'s PTE line: `vpn + 1` up to the line's end,
/// then `vpn - 1` down to its start.
fn line_order(vpn: u64, mut f: impl FnMut(u64)) {
    let first = vpn & !(PTES_PER_LINE - 1);
    let last = vpn | (PTES_PER_LINE - 1);
    let mut v = vpn;
    while v < last {
        v += 1;
        f(v);
    }
    let mut v = vpn;
    while v > first {
        v -= 1;
        f(v);
    }
}

/// The largest power of two `<= x`, for `x >= 1` (1 for 0).
fn pow2_floor(x: u64) -> u64 {
    if x == 0 {
        1
    } else {
        1 << (u64::BITS - 1 - x.leading_zeros())
    }
}

/// The signed distance from `from` to `to`, saturated to `i64`.
fn delta(to: u64, from: u64) -> i64 {
    if to >= from {
        i64::try_from(to - from).unwrap_or(i64::MAX)
    } else {
        i64::try_from(from - to).map_or(i64::MIN, |d| -d)
    }
}

impl Planner {
    /// A region's planner before its first fault.
    pub const fn new() -> Planner {
        Planner {
            last: None,
            deltas: [0; DELTAS],
            next: 0,
            len: 0,
            window: 0,
            dir: 0,
        }
    }

    /// The window policy's previous access, given the fault at `vpn`. Linux's swap
    /// readahead records every access, a swap-cache hit included
    /// (`swap_cache_get_folio`); here a used prefetched page is mapped and takes no
    /// fault, so the `hits` since the previous fault are taken to be the pages of its
    /// window next to it: ahead of it or behind it as the window lay, and for a
    /// window around it, on the side the new fault is. Exact for a scan, which would
    /// otherwise never look like one (its faults are a window apart).
    fn last_access(&self, vpn: u64, hits: u32) -> Option<u64> {
        let last = self.last?;
        let w = self.window.saturating_sub(1);
        let behind = w / 2;
        let (up, room) = match self.dir {
            1 => (true, w),
            -1 => (false, w),
            _ if vpn > last => (true, w - behind),
            _ => (false, behind),
        };
        let n = u64::from(hits).min(room);
        if up {
            last.checked_add(n)
        } else {
            last.checked_sub(n)
        }
    }

    /// The `i`-th most recent delta (0: the newest).
    fn delta_at(&self, i: usize) -> Option<i64> {
        if i >= self.len {
            return None;
        }
        // `next < DELTAS` and `i < len <= DELTAS`: no underflow.
        self.deltas
            .get((self.next + DELTAS - 1 - i) % DELTAS)
            .copied()
    }

    fn push_delta(&mut self, d: i64) {
        if let Some(slot) = self.deltas.get_mut(self.next) {
            *slot = d;
            self.next = (self.next + 1) % DELTAS;
            self.len = (self.len + 1).min(DELTAS);
        }
    }

    /// Records a fault at `vpn`: its delta from the previous one, and `vpn` as last.
    fn record(&mut self, vpn: u64) {
        if let Some(last) = self.last {
            self.push_delta(delta(vpn, last));
        }
        self.last = Some(vpn);
    }

    /// Records a fault of the trend policy at `vpn`. The prefetched pages used since
    /// the previous fault (`hits`, at most the last window, which lay along the
    /// trend `d`) were accesses that did not fault: they are recorded first, as
    /// deltas of `d` from the previous fault, which is how Leap sees them (in the
    /// swap cache a prefetched page still takes a minor fault; here it is mapped).
    /// Without them a working prefetch would hide the stride it follows: the fault
    /// deltas would grow with the window.
    fn record_along_trend(&mut self, vpn: u64, hits: u32) {
        if let (Some(d), Some(mut last)) = (self.trend().filter(|&d| d != 0), self.last) {
            for _ in 0..u64::from(hits).min(self.window) {
                match last.checked_add_signed(d) {
                    Some(next) => {
                        self.push_delta(d);
                        last = next;
                    }
                    None => break,
                }
            }
            self.last = Some(last);
        }
        self.record(vpn);
    }

    /// The majority delta (more than half) of the newest `w` deltas, if any.
    fn majority(&self, w: usize) -> Option<i64> {
        // Boyer-Moore vote, then a count to check the winner.
        let (mut cand, mut votes) = (0i64, 0usize);
        for d in (0..w).filter_map(|i| self.delta_at(i)) {
            if votes == 0 {
                (cand, votes) = (d, 1);
            } else if d == cand {
                votes += 1;
            } else {
                votes -= 1;
            }
        }
        let count = (0..w).filter(|&i| self.delta_at(i) == Some(cand)).count();
        (votes > 0 && count.saturating_mul(2) > w).then_some(cand)
    }

    /// Leap's trend: the majority delta of the newest 4 deltas, else 8, 16 and 32
    /// (fewer if fewer are recorded, but at least 2).
    fn trend(&self) -> Option<i64> {
        if self.len < 2 {
            return None;
        }
        for w in TREND_WINDOWS {
            let w = w.min(self.len);
            if let Some(d) = self.majority(w) {
                return Some(d);
            }
            if w == self.len {
                break;
            }
        }
        None
    }

    /// Plans the prefetches of fault `f` under `policy` and records the fault.
    ///
    /// Writes to `out` the candidate vpns, most wanted first, and returns how many:
    /// at most `degree` (and [`MAX_CANDIDATES`]), all distinct, none `f.vpn`, all in
    /// `[f.lo, f.hi)`. `history(vpn)` is the page's history byte (see
    /// [`super::history_on_fault`]). The policies:
    ///
    /// - [`Policy::None`] plans nothing.
    /// - [`Policy::Ptline`] plans the other vpns of the faulting PTE line (8 PTEs, one
    ///   cache line): `vpn + 1` up to the line's end, then `vpn - 1` down to its start.
    /// - [`Policy::PtlineHistory`] plans the faulting line in that order, then the
    ///   adjacent line nearest first (the next line if `vpn` is in the upper half of
    ///   its line, else the previous one), stably sorted by history, highest first.
    /// - [`Policy::Window`] plans Linux's swap VMA readahead window
    ///   (`__swapin_nr_pages`, `swap_vma_ra_win`): `hits + 2` pages rounded up to a
    ///   power of two (2 only if the fault is next to the previous one, else 1),
    ///   capped at `degree + 1` rounded down to a power of two, at least half the
    ///   previous window. It lies ahead of a forward scan (`vpn == last + 1`), behind
    ///   a backward one (`vpn + 1 == last`) and around other faults, within the
    ///   faulting page table; candidates go from `vpn` outward, upward first.
    /// - [`Policy::Trend`] plans along Leap's majority trend `d` of the recent fault
    ///   deltas: `vpn + d`, `vpn + 2d`, … for `hits + 1` rounded up to a power of two
    ///   pages (capped at `degree`, at least half the previous window), stopping at
    ///   the first outside `[lo, hi)`; nothing without a non-zero trend. The `hits`
    ///   since the previous fault count as accesses along the trend (see
    ///   `record_along_trend`).
    pub fn plan(
        &mut self,
        policy: Policy,
        degree: u32,
        f: &Fault,
        history: impl Fn(u64) -> u8,
        out: &mut [u64; MAX_CANDIDATES],
    ) -> usize {
        let prev = match policy {
            Policy::Window => self.last_access(f.vpn, f.hits),
            _ => self.last,
        };
        match policy {
            Policy::Trend => self.record_along_trend(f.vpn, f.hits),
            _ => self.record(f.vpn),
        }
        let cap = usize::try_from(degree)
            .unwrap_or(MAX_CANDIDATES)
            .min(MAX_CANDIDATES);
        let mut out = Out {
            buf: out,
            n: 0,
            cap,
            vpn: f.vpn,
            lo: f.lo,
            hi: f.hi,
        };
        match policy {
            Policy::None => {}
            Policy::Ptline => line_order(f.vpn, |v| {
                out.push(v);
            }),
            Policy::PtlineHistory => Self::ptline_history(&mut out, history),
            Policy::Window => self.window(&mut out, prev, f.hits),
            Policy::Trend => self.trend_plan(&mut out, f.hits),
        }
        out.n
    }

    fn ptline_history(out: &mut Out<'_>, history: impl Fn(u64) -> u8) {
        let vpn = out.vpn;
        let mut c = [(0u64, 0u8); TWO_LINES];
        let mut n = 0;
        let mut add = |v: u64| {
            if out.allowed(v) {
                if let Some(slot) = c.get_mut(n) {
                    *slot = (v, history(v));
                    n += 1;
                }
            }
        };
        line_order(vpn, &mut add);
        let line = vpn & !(PTES_PER_LINE - 1);
        if vpn & (PTES_PER_LINE - 1) >= PTES_PER_LINE / 2 {
            if let Some(next) = line.checked_add(PTES_PER_LINE) {
                (0..PTES_PER_LINE)
                    .filter_map(|k| next.checked_add(k))
                    .for_each(&mut add);
            }
        } else {
            (1..=PTES_PER_LINE)
                .filter_map(|k| line.checked_sub(k))
                .for_each(&mut add);
        }
        // Stable insertion sort, highest history first.
        for i in 1..n {
            let mut j = i;
            while j > 0 {
                match c.get_mut(j - 1..=j) {
                    Some([a, b]) if a.1 < b.1 => core::mem::swap(a, b),
                    _ => break,
                }
                j -= 1;
            }
        }
        for &(v, _) in c.iter().take(n) {
            out.push(v);
        }
    }

    /// Linux's `__swapin_nr_pages` and `swap_vma_ra_win`.
    fn window(&mut self, out: &mut Out<'_>, prev: Option<u64>, hits: u32) {
        let vpn = out.vpn;
        // Lossless: `cap <= MAX_CANDIDATES`.
        let degree = out.cap as u64;
        let max = pow2_floor(degree + 1);
        let forward = prev.and_then(|p| p.checked_add(1)) == Some(vpn);
        let backward = vpn.checked_add(1).is_some_and(|v| Some(v) == prev);
        let mut pages = u64::from(hits) + 2;
        if pages == 2 {
            if !forward && !backward {
                pages = 1;
            }
        } else {
            pages = pages.checked_next_power_of_two().unwrap_or(max);
        }
        pages = pages.min(max).max(self.window / 2).min(max);
        self.window = pages;
        self.dir = if forward {
            1
        } else if backward {
            -1
        } else {
            0
        };

        let (start, end) = if forward {
            (vpn, vpn.saturating_add(pages))
        } else if backward {
            let end = vpn.saturating_add(1);
            (end.saturating_sub(pages), end)
        } else {
            let left = pages.saturating_sub(1) / 2;
            (
                vpn.saturating_sub(left),
                vpn.saturating_add(pages.saturating_sub(left)),
            )
        };
        let table = vpn & !(PTES_PER_TABLE - 1);
        let start = start.max(out.lo).max(table);
        let end = end.min(out.hi).min(table.saturating_add(PTES_PER_TABLE));
        let mut v = vpn;
        while let Some(up) = v.checked_add(1) {
            if up >= end || out.full() {
                break;
            }
            out.push(up);
            v = up;
        }
        let mut v = vpn;
        while v > start && !out.full() {
            v -= 1;
            out.push(v);
        }
    }

    /// Leap's prefetch along the majority trend.
    fn trend_plan(&mut self, out: &mut Out<'_>, hits: u32) {
        // Lossless: `cap <= MAX_CANDIDATES`.
        let degree = out.cap as u64;
        let pages = (u64::from(hits) + 1)
            .checked_next_power_of_two()
            .unwrap_or(degree);
        let pages = pages.min(degree).max(self.window / 2).min(degree);
        self.window = pages;
        let Some(d) = self.trend().filter(|&d| d != 0) else {
            return;
        };
        let mut v = out.vpn;
        for _ in 0..pages {
            match v.checked_add_signed(d) {
                Some(next) if out.push(next) => v = next,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// Plans one fault; returns the candidates.
    fn plan(p: &mut Planner, policy: Policy, degree: u32, f: Fault) -> Vec<u64> {
        plan_h(p, policy, degree, f, |_| 0)
    }

    fn plan_h(
        p: &mut Planner,
        policy: Policy,
        degree: u32,
        f: Fault,
        history: impl Fn(u64) -> u8,
    ) -> Vec<u64> {
        let mut out = [0; MAX_CANDIDATES];
        let n = p.plan(policy, degree, &f, history, &mut out);
        out[..n].to_vec()
    }

    fn fault(vpn: u64) -> Fault {
        Fault {
            vpn,
            lo: 0,
            hi: 1 << 20,
            hits: 0,
        }
    }

    fn once(policy: Policy, degree: u32, f: Fault) -> Vec<u64> {
        plan(&mut Planner::new(), policy, degree, f)
    }

    #[test]
    fn none_plans_nothing() {
        assert!(once(Policy::None, 64, fault(100)).is_empty());
    }

    #[test]
    fn ptline_lists_the_line() {
        let p = Policy::Ptline;
        assert_eq!(once(p, 64, fault(96)), [97, 98, 99, 100, 101, 102, 103]);
        assert_eq!(once(p, 64, fault(99)), [100, 101, 102, 103, 98, 97, 96]);
        assert_eq!(once(p, 64, fault(103)), [102, 101, 100, 99, 98, 97, 96]);
        assert_eq!(once(p, 3, fault(101)), [102, 103, 100]);
        assert_eq!(once(p, 1, fault(103)), [102]);
        assert!(once(p, 0, fault(99)).is_empty());
        // Clamped to the VMA.
        let f = Fault {
            lo: 98,
            hi: 102,
            ..fault(99)
        };
        assert_eq!(once(p, 64, f), [100, 101, 98]);
        // At the ends of the address space.
        assert_eq!(
            once(p, 64, Fault { hi: 8, ..fault(0) }),
            [1, 2, 3, 4, 5, 6, 7]
        );
        let top = Fault {
            vpn: u64::MAX - 1,
            lo: u64::MAX - 3,
            hi: u64::MAX,
            hits: 0,
        };
        assert_eq!(once(p, 64, top), [u64::MAX - 2, u64::MAX - 3]);
    }

    #[test]
    fn ptline_history_sorts_by_history() {
        let p = Policy::PtlineHistory;
        // Lower half: the previous line is adjacent; no history keeps the base order.
        assert_eq!(
            once(p, 64, fault(17)),
            [18, 19, 20, 21, 22, 23, 16, 15, 14, 13, 12, 11, 10, 9, 8]
        );
        // Upper half: the next line.
        assert_eq!(
            once(p, 64, fault(20)),
            [21, 22, 23, 19, 18, 17, 16, 24, 25, 26, 27, 28, 29, 30, 31]
        );
        // History ranks them, ties keep the base order; then the degree cuts.
        let h = |v: u64| match v {
            30 => 9,
            16 | 25 => 5,
            22 => 1,
            _ => 0,
        };
        let mut pl = Planner::new();
        assert_eq!(
            plan_h(&mut pl, p, 64, fault(20), h),
            [30, 16, 25, 22, 21, 23, 19, 18, 17, 24, 26, 27, 28, 29, 31]
        );
        assert_eq!(plan_h(&mut pl, p, 3, fault(20), h), [30, 16, 25]);
        // Clamped to the VMA before sorting.
        let f = Fault {
            lo: 18,
            hi: 28,
            ..fault(20)
        };
        assert_eq!(plan_h(&mut pl, p, 4, f, h), [25, 22, 21, 23]);
        // No previous line below vpn 0.
        assert_eq!(once(p, 64, fault(2)), [3, 4, 5, 6, 7, 1, 0]);
    }

    #[test]
    fn window_grows_with_hits_on_a_forward_scan() {
        let mut pl = Planner::new();
        let p = Policy::Window;
        // Inside one page table (vpns 1536..2048): windows are clamped to it.
        // First fault: no history, no hits: just the page.
        assert!(plan(&mut pl, p, 15, fault(1536)).is_empty());
        // Sequential, no hits: two pages, ahead.
        assert_eq!(plan(&mut pl, p, 15, fault(1537)), [1538]);
        // 1538 was used (a hit, no fault): the scan faults next at 1539, right after
        // its last access. Hits: 1 + 2 = 3 -> 4 pages, then 3 + 2 -> 8, then 7 + 2
        // -> 16, the cap.
        let f = |vpn, hits| Fault { hits, ..fault(vpn) };
        assert_eq!(plan(&mut pl, p, 15, f(1539, 1)), [1540, 1541, 1542]);
        assert_eq!(
            plan(&mut pl, p, 15, f(1543, 3)),
            (1544..1551).collect::<Vec<_>>()
        );
        assert_eq!(
            plan(&mut pl, p, 15, f(1551, 7)),
            (1552..1567).collect::<Vec<_>>()
        );
        // Hits count for at most the previous window (15 pages after 1551).
        assert_eq!(
            plan(&mut pl, p, 15, f(1567, 40)),
            (1568..1583).collect::<Vec<_>>()
        );
        // A scan that began with windows around its faults turns into a forward
        // (or backward) one: the hits lay on the side of the next fault.
        let mut fw = Planner::new();
        plan(&mut fw, p, 7, f(3000, 0));
        assert_eq!(plan(&mut fw, p, 7, f(3100, 2)), [3101, 3102, 3099]);
        assert_eq!(plan(&mut fw, p, 7, f(3103, 2)), [3104, 3105, 3106]);
        let mut bw = Planner::new();
        plan(&mut bw, p, 7, f(3000, 0));
        assert_eq!(plan(&mut bw, p, 7, f(3100, 2)), [3101, 3102, 3099]);
        assert_eq!(plan(&mut bw, p, 7, f(3098, 1)), [3097, 3096, 3095]);
        // Degree 10: the window is capped at 8 (a power of two) pages.
        // (First fault: around it, (8 - 1) / 2 = 3 pages below.)
        assert_eq!(
            plan(&mut Planner::new(), p, 10, f(1004, 30)),
            [1005, 1006, 1007, 1008, 1003, 1002, 1001]
        );
        // No hits (the scan stopped and went on elsewhere): around the fault,
        // shrinking by half at most per fault.
        assert_eq!(plan(&mut pl, p, 15, f(1620, 0)).len(), 7);
        assert_eq!(plan(&mut pl, p, 15, f(1621, 0)).len(), 3);
        assert_eq!(plan(&mut pl, p, 15, f(1622, 0)).len(), 1);
        assert_eq!(plan(&mut pl, p, 15, f(1623, 0)), [1624]);
        // A random fault without hits: the window shrinks to the page.
        assert!(plan(&mut pl, p, 15, f(5000, 0)).is_empty());
    }

    #[test]
    fn window_placement() {
        let p = Policy::Window;
        let f = |vpn, hits| Fault { hits, ..fault(vpn) };
        // Backward: the window ends at the fault.
        let mut pl = Planner::new();
        plan(&mut pl, p, 7, f(2000, 0));
        assert_eq!(plan(&mut pl, p, 7, f(1999, 2)), [1998, 1997, 1996]);
        // Around: (4 - 1) / 2 = 1 below, 2 above.
        let mut pl = Planner::new();
        plan(&mut pl, p, 7, f(2000, 0));
        assert_eq!(plan(&mut pl, p, 7, f(3000, 2)), [3001, 3002, 2999]);
        // Around, 8 pages: 3 below, 4 above.
        assert_eq!(
            plan(&mut pl, p, 7, f(4000, 6)),
            [4001, 4002, 4003, 4004, 3999, 3998, 3997]
        );
        // Clamped to the page table (vpn 512 starts one) and to the VMA.
        let mut pl = Planner::new();
        plan(&mut pl, p, 7, f(514, 0));
        assert_eq!(plan(&mut pl, p, 7, f(513, 6)), [512]);
        let mut pl = Planner::new();
        plan(&mut pl, p, 7, f(505, 0));
        assert_eq!(plan(&mut pl, p, 7, f(506, 6)), [507, 508, 509, 510, 511]);
        let g = Fault {
            lo: 3999,
            hi: 4002,
            ..f(4000, 6)
        };
        assert_eq!(plan(&mut Planner::new(), p, 7, g), [4001, 3999]);
        // Degree 0: nothing.
        assert!(plan(&mut Planner::new(), p, 0, f(4000, 6)).is_empty());
    }

    #[test]
    fn trend_follows_a_stride() {
        let p = Policy::Trend;
        let mut pl = Planner::new();
        let f = |vpn, hits| Fault { hits, ..fault(vpn) };
        // First fault: no delta; second: one delta, not enough.
        assert!(plan(&mut pl, p, 8, f(100, 0)).is_empty());
        assert!(plan(&mut pl, p, 8, f(103, 0)).is_empty());
        // Two deltas of 3: a trend; no hits: one page.
        assert_eq!(plan(&mut pl, p, 8, f(106, 0)), [109]);
        // 109 was used, so the next fault is at 112, 3 after it (not 6 after 106):
        // the trend holds and hits grow the window: 1 + 1 -> 2, then 2 + 1 -> 4,
        // capped at the degree.
        assert_eq!(plan(&mut pl, p, 8, f(112, 1)), [115, 118]);
        assert_eq!(plan(&mut pl, p, 8, f(121, 2)), [124, 127, 130, 133]);
        assert_eq!(plan(&mut pl, p, 5, f(136, 4)), [139, 142, 145, 148, 151]);
        // Hits count for at most the last window.
        assert_eq!(
            plan(&mut pl, p, 8, f(154, 40)),
            [157, 160, 163, 166, 169, 172, 175, 178]
        );
        // One odd fault does not break the majority; the window halves at most.
        assert_eq!(plan(&mut pl, p, 8, f(500, 0)), [503, 506, 509, 512]);
        assert_eq!(plan(&mut pl, p, 8, f(503, 0)), [506, 509]);
        // The trend stops at the VMA's end.
        let g = Fault {
            hi: 510,
            ..f(506, 7)
        };
        assert_eq!(plan(&mut pl, p, 8, g), [509]);
        // Backward strides.
        let mut pl = Planner::new();
        for vpn in [90, 88, 86] {
            plan(&mut pl, p, 8, f(vpn, 0));
        }
        assert_eq!(plan(&mut pl, p, 8, f(84, 3)), [82, 80, 78, 76]);
        assert_eq!(plan(&mut pl, p, 8, Fault { lo: 79, ..f(82, 3) }), [80]);
    }

    #[test]
    fn trend_needs_a_majority() {
        let p = Policy::Trend;
        let mut pl = Planner::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let vpn = x % (1 << 20);
            assert!(plan(
                &mut pl,
                p,
                8,
                Fault {
                    hits: 3,
                    ..fault(vpn)
                }
            )
            .is_empty());
        }
        // Repeated faults on one page: delta 0 is no trend.
        let mut pl = Planner::new();
        for _ in 0..5 {
            assert!(plan(&mut pl, p, 8, fault(7)).is_empty());
        }
        // A majority in a longer window: 4 newest deltas split, 8 newest have 5 of 1.
        let mut pl = Planner::new();
        for vpn in [0, 1, 2, 3, 4, 5, 50, 51, 90] {
            plan(&mut pl, p, 8, fault(vpn));
        }
        // Deltas: 1,1,1,1,1,45,1,39 -> then +1: newest 4 = 1,39,1,45 (no majority of
        // 4: two 1s is not more than half); newest 8 has six 1s.
        assert_eq!(plan(&mut pl, p, 8, fault(91)), [92]);
    }

    fn mix(seed: u64, v: u64) -> u8 {
        let mut x = seed ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (x >> 56) as u8
    }

    fn vpn_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..64,
            u64::MAX - 64..=u64::MAX,
            0u64..(1 << 20),
            any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn candidates_are_valid(
            policy in prop::sample::select(Policy::ALL.to_vec()),
            degree in 0u32..80,
            seed in any::<u64>(),
            faults in prop::collection::vec(
                (vpn_strategy(), 0u64..600, 0u64..600, 0u32..50, any::<bool>()),
                1..40,
            ),
        ) {
            let mut pl = Planner::new();
            let mut prev = 0u64;
            for (vpn, below, above, hits, near) in faults {
                // Often a fault near the previous one, to exercise scans and trends.
                let vpn = if near { prev.saturating_add(vpn % 4) } else { vpn };
                prev = vpn;
                let f = Fault {
                    vpn,
                    lo: vpn.saturating_sub(below),
                    hi: vpn.saturating_add(above),
                    hits,
                };
                let mut out = [0; MAX_CANDIDATES];
                let n = pl.plan(policy, degree, &f, |v| mix(seed, v), &mut out);
                prop_assert!(n <= degree as usize && n <= MAX_CANDIDATES);
                let c = &out[..n];
                for (i, &v) in c.iter().enumerate() {
                    prop_assert!(v != f.vpn);
                    prop_assert!(v >= f.lo && v < f.hi);
                    prop_assert!(!c[..i].contains(&v));
                }
            }
        }
    }
}
