// SPDX-License-Identifier: GPL-2.0

//! Recovery planning: which MJs to replay, in which order, and where the GAID
//! resumes.
//!
//! The rule (`Documentation/journal.rst`, "Why recovery is correct"):
//!
//! 1. take the largest low-water mark `L` among valid MJs;
//! 2. replay, in commit-id order, the valid MJs whose id is `>= L`, a commit group
//!    at a time, and only groups whose every MJ is valid;
//! 3. resume the GAID after the largest valid id.
//!
//! An MJ below `L` is stale: a barrier made its transaction durable in place before
//! the MJ carrying `L` was written, and later transactions may have overwritten the
//! same bytes. A group with a missing member was either never acknowledged (its
//! barrier did not complete) or is durable in place (a member's MJ could only be
//! reused after the next barrier); skipping it is right in both cases, while
//! replaying only part of it could roll back a later member's write.

use super::format::MjError;

/// What the scan found in one MJ slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotScan {
    /// A valid MJ.
    Valid {
        /// Commit id.
        id: u64,
        /// Low-water mark.
        lwm: u64,
        /// First id of its commit group.
        group_first: u64,
        /// Number of transactions in its group.
        group_len: u32,
    },
    /// Never written since format.
    Empty,
    /// Torn or corrupted: discarded.
    Invalid(MjError),
}

impl SlotScan {
    fn id(&self) -> u64 {
        match *self {
            SlotScan::Valid { id, .. } => id,
            _ => 0,
        }
    }

    fn group(&self) -> (u64, u32) {
        match *self {
            SlotScan::Valid {
                group_first,
                group_len,
                ..
            } => (group_first, group_len),
            _ => (0, 0),
        }
    }
}

/// The recovery decision for a scanned journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The largest low-water mark among valid MJs (0 if none).
    pub lwm: u64,
    /// Valid MJs to replay.
    pub replay: u32,
    /// Valid MJs below the low-water mark: already durable, skipped.
    pub stale: u32,
    /// Valid MJs at or above the low-water mark whose group is incomplete: skipped.
    pub incomplete: u32,
    /// Torn or corrupted MJs: discarded.
    pub discarded: u32,
    /// Never-written MJs.
    pub empty: u32,
    /// The commit id of recovery's seal, when there is any valid MJ to retire: the
    /// one after the largest valid id (see `Journal::open`).
    pub seal_id: Option<u64>,
    /// The first commit id handed out to a transaction after recovery (after the
    /// seal, if there is one).
    pub next_id: u64,
}

/// Why a scanned journal cannot be recovered safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Two valid MJs carry the same commit id: the image was not written by memkit.
    DuplicateId(u64),
    /// `order` is shorter than the number of MJs.
    OrderTooShort,
    /// The next commit id would overflow.
    IdsExhausted,
}

/// Plans recovery from the scan of every slot (`scans[i]` for MJ `i`).
///
/// On success `order[..plan.replay]` holds the slots to replay, in commit-id order.
pub fn plan(scans: &[SlotScan], order: &mut [u32]) -> Result<Plan, PlanError> {
    if order.len() < scans.len() {
        return Err(PlanError::OrderTooShort);
    }
    let mut p = Plan::default();
    let mut max_id = 0u64;
    let mut valid = 0usize;
    for (slot, s) in scans.iter().enumerate() {
        match *s {
            SlotScan::Valid { id, lwm, .. } => {
                p.lwm = p.lwm.max(lwm);
                max_id = max_id.max(id);
                // Lossless: slots are numbered by a `u32` MJ count.
                order[valid] = slot as u32;
                valid += 1;
            }
            SlotScan::Empty => p.empty += 1,
            SlotScan::Invalid(_) => p.discarded += 1,
        }
    }
    // Sorted by commit id: duplicates are adjacent, stale MJs (id < lwm) come first.
    let scan_of = |slot: u32| scans.get(slot as usize).copied().unwrap_or(SlotScan::Empty);
    crate::pure::sort::heapsort_by_key(&mut order[..valid], |&slot| scan_of(slot).id());
    for pair in order[..valid].windows(2) {
        if scan_of(pair[0]).id() == scan_of(pair[1]).id() {
            return Err(PlanError::DuplicateId(scan_of(pair[0]).id()));
        }
    }
    let stale = order[..valid].partition_point(|&slot| scan_of(slot).id() < p.lwm);
    // Lossless: at most the `u32` MJ count.
    p.stale = stale as u32;

    // Keep whole groups only, compacting the kept slots to the front of `order`.
    let mut kept = 0usize;
    let mut i = stale;
    while i < valid {
        let (first, len) = scan_of(order[i]).group();
        let mut n = 0usize;
        let mut complete = scan_of(order[i]).id() == first;
        // Members are consecutive ids, all naming the same group.
        while i + n < valid && scan_of(order[i + n]).group() == (first, len) {
            let want = first.checked_add(n as u64);
            complete &= want == Some(scan_of(order[i + n]).id());
            n += 1;
        }
        complete &= n == len as usize;
        if complete {
            order.copy_within(i..i + n, kept);
            kept += n;
        } else {
            // Lossless: at most the `u32` MJ count.
            p.incomplete += n as u32;
        }
        i += n;
    }
    // Lossless: at most the `u32` MJ count.
    p.replay = kept as u32;
    let after_max = max_id.checked_add(1).ok_or(PlanError::IdsExhausted)?;
    if valid > 0 {
        p.seal_id = Some(after_max);
        p.next_id = after_max.checked_add(1).ok_or(PlanError::IdsExhausted)?;
    } else {
        p.next_id = after_max;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: u64, lwm: u64, group_first: u64, group_len: u32) -> SlotScan {
        SlotScan::Valid {
            id,
            lwm,
            group_first,
            group_len,
        }
    }

    fn replayed(scans: &[SlotScan]) -> (Plan, std::vec::Vec<u64>) {
        let mut order = std::vec![0u32; scans.len()];
        let p = plan(scans, &mut order).unwrap();
        let ids = order[..p.replay as usize]
            .iter()
            .map(|&s| scans[s as usize].id())
            .collect();
        (p, ids)
    }

    #[test]
    fn empty_journal() {
        let (p, ids) = replayed(&[SlotScan::Empty, SlotScan::Empty]);
        assert_eq!((p.seal_id, p.next_id, p.empty, p.replay), (None, 1, 2, 0));
        assert!(ids.is_empty());
    }

    #[test]
    fn replays_from_the_largest_lwm_in_id_order() {
        // Single-transaction groups; 5 committed with in-flight {4}: lwm 4.
        let scans = [
            v(5, 4, 5, 1),
            v(3, 2, 3, 1),
            v(4, 3, 4, 1),
            SlotScan::Invalid(MjError::BadChecksum),
        ];
        let (p, ids) = replayed(&scans);
        assert_eq!(ids, [4, 5]);
        assert_eq!((p.lwm, p.stale, p.discarded), (4, 1, 1));
        assert_eq!((p.seal_id, p.next_id), (Some(6), 7));
    }

    #[test]
    fn incomplete_group_is_skipped_whole() {
        // Group {10, 11} (lwm 8); 11's MJ reused after the next group's barrier.
        let scans = [
            v(10, 8, 10, 2),
            v(12, 10, 12, 1),
            SlotScan::Invalid(MjError::BadChecksum),
        ];
        let (p, ids) = replayed(&scans);
        assert_eq!(ids, [12]);
        assert_eq!(p.incomplete, 1);
    }

    #[test]
    fn complete_group_is_replayed_whole() {
        let scans = [
            v(11, 8, 10, 2),
            v(10, 8, 10, 2),
            v(9, 8, 8, 2),
            v(8, 7, 8, 2),
        ];
        let (_, ids) = replayed(&scans);
        assert_eq!(ids, [8, 9, 10, 11]);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut order = [0u32; 2];
        assert_eq!(
            plan(&[v(3, 3, 3, 1), v(3, 3, 3, 1)], &mut order),
            Err(PlanError::DuplicateId(3))
        );
        // Stale duplicates too.
        let mut order = [0u32; 3];
        assert_eq!(
            plan(&[v(2, 1, 2, 1), v(2, 1, 2, 1), v(9, 9, 9, 1)], &mut order),
            Err(PlanError::DuplicateId(2))
        );
    }

    #[test]
    fn id_overflow_is_refused() {
        let mut order = [0u32; 1];
        assert_eq!(
            plan(&[v(u64::MAX, 1, u64::MAX, 1)], &mut order),
            Err(PlanError::IdsExhausted)
        );
    }
}
