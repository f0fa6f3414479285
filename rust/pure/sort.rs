// SPDX-License-Identifier: GPL-2.0

//! An in-place heapsort, for the module's few sorts.
//!
//! `core`'s `sort_unstable` is what the host would use, but at `-O2` (a kernel built
//! with `CC_OPTIMIZE_FOR_PERFORMANCE`, as distributions build theirs) its small-sort
//! network ends in a call to `core::slice::sort::shared::smallsort::
//! panic_on_ord_violation`, which objtool of Linux 7.3 does not know to be
//! `noreturn`: every build of the module then warns "falls through to next function".
//! A heapsort has no such path, needs no memory, and is O(n log n) in the worst
//! case; the slices sorted here (MJ slots at recovery, pages of one diff copy) are
//! at most tens of thousands long.

/// Sorts `v` by `key`, not stably.
pub fn heapsort_by_key<T, K: Ord>(v: &mut [T], mut key: impl FnMut(&T) -> K) {
    let n = v.len();
    let mut sift_down = |v: &mut [T], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && key(&v[child]) < key(&v[child + 1]) {
            child += 1;
        }
        if key(&v[root]) >= key(&v[child]) {
            return;
        }
        v.swap(root, child);
        root = child;
    };
    for root in (0..n / 2).rev() {
        sift_down(v, root, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// Sorts `v` ascending, not stably.
pub fn heapsort<T: Ord + Copy>(v: &mut [T]) {
    heapsort_by_key(v, |&x| x);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length up to 64 and many orders, against the standard sort.
    #[test]
    fn sorts_like_the_standard_sort() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in 0..64usize {
            for round in 0..50 {
                let modulo = if round % 2 == 0 { 8 } else { u64::MAX };
                let v: std::vec::Vec<u64> = (0..n).map(|_| next() % modulo).collect();
                let mut want = v.clone();
                want.sort();
                let mut got = v.clone();
                heapsort(&mut got);
                assert_eq!(got, want, "{v:?}");
                let mut pairs: std::vec::Vec<(u64, u32)> =
                    v.iter().enumerate().map(|(i, &x)| (x, i as u32)).collect();
                heapsort_by_key(&mut pairs, |p| p.0);
                assert!(pairs.windows(2).all(|w| w[0].0 <= w[1].0));
            }
        }
    }
}
