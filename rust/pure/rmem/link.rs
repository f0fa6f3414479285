// SPDX-License-Identifier: GPL-2.0

//! The emulated backend's link: a latency model of one-page requests, and the
//! fetch-latency histogram's buckets.

use super::abi;

/// Capacity of the in-flight ring.
const RING: usize = abi::RMEM_MAX_INFLIGHT as usize;

/// The emulated link between a region and its remote store.
///
/// Every one-page request takes `base` ns of latency, then the link transfers pages
/// one at a time, `per_page` ns each, in issue order; at most `max_inflight` requests
/// are outstanding, a further one starts when the earliest completes. Times are
/// absolute ns on the caller's clock; all arithmetic saturates.
#[derive(Clone, Debug)]
pub struct Link {
    /// Latency of every request, ns.
    base: u64,
    /// Transfer time per page, ns.
    per_page: u64,
    /// Most requests outstanding (1 to `RING`).
    max_inflight: u32,
    /// Completion times of the outstanding requests, FIFO from `head`: non-decreasing.
    ring: [u64; RING],
    /// Index of the earliest outstanding completion.
    head: usize,
    /// Outstanding completions in `ring`.
    len: usize,
    /// When the link finishes its last transfer.
    free_at: u64,
}

impl Link {
    /// An idle link. `max_inflight` is clamped to `1..=RMEM_MAX_INFLIGHT`.
    pub const fn new(base_ns: u64, per_page_ns: u64, max_inflight: u32) -> Link {
        let max_inflight = if max_inflight == 0 {
            1
        } else if max_inflight > abi::RMEM_MAX_INFLIGHT {
            abi::RMEM_MAX_INFLIGHT
        } else {
            max_inflight
        };
        Link {
            base: base_ns,
            per_page: per_page_ns,
            max_inflight,
            ring: [0; RING],
            head: 0,
            len: 0,
            free_at: 0,
        }
    }

    /// The earliest outstanding completion time.
    fn front(&self) -> Option<u64> {
        if self.len == 0 {
            None
        } else {
            self.ring.get(self.head).copied()
        }
    }

    /// Removes and returns the earliest outstanding completion time.
    fn pop(&mut self) -> Option<u64> {
        let t = self.front()?;
        self.head = (self.head + 1) % RING;
        self.len = self.len.saturating_sub(1);
        Some(t)
    }

    /// Appends a completion time (dropping the earliest if the ring is full).
    fn push(&mut self, t: u64) {
        if self.len >= RING {
            self.pop();
        }
        // `head < RING` and `len < RING`: no overflow.
        if let Some(slot) = self.ring.get_mut((self.head + self.len) % RING) {
            *slot = t;
            self.len += 1;
        }
    }

    /// Issues a one-page request at `now` and returns when it completes.
    ///
    /// Outstanding requests completed by `now` are retired first; if `max_inflight`
    /// are still outstanding, the request starts when the earliest of them completes.
    /// It then needs `base` ns, and its transfer follows the link's previous one:
    /// `done = max(start + base, free_at) + per_page`.
    pub fn issue(&mut self, now: u64) -> u64 {
        while self.front().is_some_and(|t| t <= now) {
            self.pop();
        }
        let mut start = now;
        let max = usize::try_from(self.max_inflight).unwrap_or(RING);
        while self.len >= max {
            match self.pop() {
                Some(t) => start = start.max(t),
                None => break,
            }
        }
        let done = start
            .saturating_add(self.base)
            .max(self.free_at)
            .saturating_add(self.per_page);
        self.free_at = done;
        self.push(done);
        done
    }

    /// Requests outstanding at `now`: issued and completing after `now`.
    pub fn outstanding(&self, now: u64) -> u32 {
        let mut n = 0u32;
        for i in 0..self.len {
            if self
                .ring
                .get((self.head + i) % RING)
                .is_some_and(|&t| t > now)
            {
                n = n.saturating_add(1);
            }
        }
        n
    }
}

/// The fetch-latency histogram bucket of a latency of `ns`: bucket 0 is below 1 µs,
/// bucket `i` is `[2^(i-1), 2^i)` µs, the last bucket ([`abi::RMEM_LAT_BUCKETS`] - 1)
/// everything from `2^(RMEM_LAT_BUCKETS - 2)` µs up.
pub fn lat_bucket(ns: u64) -> usize {
    let us = ns / 1000;
    // Bits of `us`: 0 for 0, `i` for `[2^(i-1), 2^i)`.
    let bits = u64::BITS - us.leading_zeros();
    usize::try_from(bits)
        .unwrap_or(usize::MAX)
        .min(abi::RMEM_LAT_BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[test]
    fn idle_link_has_no_queueing() {
        let mut l = Link::new(3_000, 500, 4);
        assert_eq!(l.issue(1_000), 4_500);
        assert_eq!(l.outstanding(1_000), 1);
        // Long after, the link is idle again.
        assert_eq!(l.issue(100_000), 103_500);
    }

    #[test]
    fn transfers_serialize_in_fifo_order() {
        let mut l = Link::new(1_000, 400, 8);
        let done: Vec<u64> = (0..4).map(|_| l.issue(0)).collect();
        assert_eq!(done, [1_400, 1_800, 2_200, 2_600]);
        assert_eq!(l.outstanding(0), 4);
        assert_eq!(l.outstanding(1_800), 2);
        assert_eq!(l.outstanding(2_600), 0);
        // A request whose base latency ends after the link is free does not queue.
        assert_eq!(l.issue(2_000), 3_400);
        // One whose base latency ends before the link is free waits for it.
        assert_eq!(l.issue(2_100), 3_800);
    }

    #[test]
    fn in_flight_requests_are_bounded() {
        let mut l = Link::new(1_000, 100, 2);
        assert_eq!(l.issue(0), 1_100);
        assert_eq!(l.issue(0), 1_200);
        // The third starts when the first completes.
        assert_eq!(l.issue(0), 1_100 + 1_000 + 100);
        assert_eq!(l.outstanding(0), 2);
        // The fourth when the second completes; then the link is busy until 2_200.
        assert_eq!(l.issue(0), 2_300);
        assert_eq!(l.outstanding(2_250), 1);
    }

    #[test]
    fn completed_requests_retire() {
        let mut l = Link::new(1_000, 100, 1);
        assert_eq!(l.issue(0), 1_100);
        // Completed by 1_100: retired, so no wait.
        assert_eq!(l.issue(1_100), 2_200);
        assert_eq!(l.outstanding(1_100), 1);
        assert_eq!(l.outstanding(2_200), 0);
        // Zero clamps to one in flight.
        let mut z = Link::new(10, 1, 0);
        assert_eq!(z.issue(0), 11);
        assert_eq!(z.issue(0), 22);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let mut l = Link::new(u64::MAX, u64::MAX, 1);
        assert_eq!(l.issue(5), u64::MAX);
        assert_eq!(l.issue(u64::MAX), u64::MAX);
    }

    #[test]
    fn latency_buckets() {
        assert_eq!(lat_bucket(0), 0);
        assert_eq!(lat_bucket(999), 0);
        assert_eq!(lat_bucket(1_000), 1);
        assert_eq!(lat_bucket(1_999), 1);
        assert_eq!(lat_bucket(2_000), 2);
        assert_eq!(lat_bucket(3_999), 2);
        assert_eq!(lat_bucket(4_000), 3);
        assert_eq!(lat_bucket((1 << 13) * 1000), 14);
        assert_eq!(lat_bucket((1 << 14) * 1000 - 1), 14);
        assert_eq!(lat_bucket((1 << 14) * 1000), 15);
        assert_eq!(lat_bucket(u64::MAX), abi::RMEM_LAT_BUCKETS - 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn completions_are_ordered_and_never_early(
            base in 0..=abi::RMEM_MAX_NS,
            per_page in 0..=abi::RMEM_MAX_PAGE_NS,
            max_inflight in 1..=abi::RMEM_MAX_INFLIGHT,
            steps in prop::collection::vec(0u64..5_000_000, 1..400),
        ) {
            let mut l = Link::new(base, per_page, max_inflight);
            let (mut now, mut prev) = (0u64, 0u64);
            for step in steps {
                now += step;
                let done = l.issue(now);
                prop_assert!(done >= prev);
                prop_assert!(done >= now + base + per_page);
                prop_assert!(l.outstanding(now) <= max_inflight);
                prev = done;
            }
        }
    }
}
