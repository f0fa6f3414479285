//! A self-checking log in a memory image: the state `memkit workload ckpt-log`
//! keeps in its region, so that a replica, a restored region or a crashed copy can
//! be checked for being a state the program was in.
//!
//! Layout (little-endian): the first page is the header — magic `MKLOGV01` (8
//! bytes), the ring's capacity in records (u64), the records appended so far
//! (u64); then, from the second page, a ring of 64-byte records. Record `n` lives in
//! slot `n % capacity` and holds `n` (u64), the checksum of record `n − 1` (u32; 0
//! for record 0), 48 payload bytes derived from `n`, and the crc32c of its first
//! 60 bytes (u32).
//!
//! The program writes record `n` and only then the count `n + 1`; so in any state
//! it was in, the `capacity − 1` records below the count (the slot of the oldest
//! one may already hold the next) each carry their number, their own checksum and
//! their predecessor's: a torn, stale or mixed image fails [`check`].

use crate::core::crc32c::crc32c;

/// The header's magic.
pub const MAGIC: &[u8; 8] = b"MKLOGV01";
/// Bytes of one record.
pub const RECORD: usize = 64;
/// Where the ring starts (the header has the first page).
pub const RING: usize = 4096;

const PAYLOAD: std::ops::Range<usize> = 12..60;

/// The record numbered `n`, given its predecessor's checksum.
pub fn record(n: u64, prev: u32) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0..8].copy_from_slice(&n.to_le_bytes());
    r[8..12].copy_from_slice(&prev.to_le_bytes());
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x006d_6b6c_6f67;
    for w in r[PAYLOAD].chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    let c = crc32c(&r[..60]);
    r[60..].copy_from_slice(&c.to_le_bytes());
    r
}

/// The checksum a record carries (its last four bytes).
pub fn checksum(r: &[u8; RECORD]) -> u32 {
    u32::from_le_bytes([r[60], r[61], r[62], r[63]])
}

/// Records a ring of `bytes` bytes of memory holds (0 if too small).
pub fn capacity(bytes: usize) -> u64 {
    (bytes.saturating_sub(RING) / RECORD) as u64
}

/// Where record `n`'s slot starts.
pub fn slot(capacity: u64, n: u64) -> usize {
    RING + (n % capacity) as usize * RECORD
}

/// A log found valid by [`check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    /// Ring capacity in records.
    pub capacity: u64,
    /// Records appended.
    pub count: u64,
    /// The checksum of the last record (0 if none).
    pub last: u32,
}

fn u64_at(img: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&img[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Checks an image: `Ok(None)` if it holds no log (no magic: a new region),
/// `Ok(Some(state))` if its log is intact, an error naming the first fault.
pub fn check(img: &[u8]) -> Result<Option<State>, String> {
    if img.len() < RING || &img[..8] != MAGIC {
        return Ok(None);
    }
    let (capacity, count) = (u64_at(img, 8), u64_at(img, 16));
    if capacity < 2 || capacity != self::capacity(img.len()) {
        return Err(format!(
            "the header's capacity {capacity} does not fit {} bytes",
            img.len()
        ));
    }
    // The oldest checked record's predecessor may be overwritten: start one later.
    let first = count.saturating_sub(capacity - 1);
    let mut prev = None;
    for n in first..count {
        let at = slot(capacity, n);
        let r: &[u8; RECORD] = img[at..at + RECORD].try_into().expect("a record's bytes");
        let got = u64_at(r, 0);
        if got != n {
            return Err(format!(
                "slot of record {n} holds record {got} (count {count})"
            ));
        }
        let want_prev = u32::from_le_bytes([r[8], r[9], r[10], r[11]]);
        let expect = record(n, want_prev);
        if &expect != r {
            return Err(format!("record {n} is corrupt (count {count})"));
        }
        if let Some(p) = prev {
            if want_prev != p {
                return Err(format!(
                    "record {n} follows a record with checksum {want_prev:#x}, not {p:#x}"
                ));
            }
        } else if n == 0 && want_prev != 0 {
            return Err("record 0 names a predecessor".into());
        }
        prev = Some(checksum(r));
    }
    Ok(Some(State {
        capacity,
        count,
        last: prev.unwrap_or(0),
    }))
}

/// A new log's header for `bytes` bytes of memory (`None`: too small for two
/// records).
pub fn header(bytes: usize) -> Option<[u8; 24]> {
    let capacity = capacity(bytes);
    if capacity < 2 {
        return None;
    }
    let mut h = [0u8; 24];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&capacity.to_le_bytes());
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(img: &mut [u8], s: &mut State) {
        let r = record(s.count, s.last);
        let at = slot(s.capacity, s.count);
        img[at..at + RECORD].copy_from_slice(&r);
        s.count += 1;
        s.last = checksum(&r);
        img[16..24].copy_from_slice(&s.count.to_le_bytes());
    }

    fn new_log(bytes: usize) -> (Vec<u8>, State) {
        let mut img = vec![0u8; bytes];
        img[..24].copy_from_slice(&header(bytes).unwrap());
        let s = check(&img).unwrap().unwrap();
        (img, s)
    }

    #[test]
    fn a_growing_and_wrapping_log_checks_at_every_step() {
        let (mut img, mut s) = new_log(RING + 5 * RECORD);
        assert_eq!(s.capacity, 5);
        for _ in 0..23 {
            append(&mut img, &mut s);
            assert_eq!(check(&img), Ok(Some(s)));
        }
    }

    #[test]
    fn a_record_written_before_its_count_still_checks() {
        let (mut img, mut s) = new_log(RING + 4 * RECORD);
        for _ in 0..9 {
            append(&mut img, &mut s);
        }
        // Record 9 written, the count not yet: the state the program was in.
        let r = record(s.count, s.last);
        let at = slot(s.capacity, s.count);
        img[at..at + RECORD].copy_from_slice(&r);
        assert_eq!(check(&img), Ok(Some(s)));
    }

    #[test]
    fn torn_stale_and_foreign_images_fail() {
        let (mut img, mut s) = new_log(RING + 8 * RECORD);
        for _ in 0..6 {
            append(&mut img, &mut s);
        }
        // A count ahead of the records (a stale page of records).
        let mut ahead = img.clone();
        ahead[16..24].copy_from_slice(&7u64.to_le_bytes());
        assert!(check(&ahead).unwrap_err().contains("record 6"));
        // One flipped payload bit.
        let mut torn = img.clone();
        torn[slot(8, 3) + 20] ^= 1;
        assert!(check(&torn).unwrap_err().contains("record 3"));
        // A record from another chain: right number, wrong predecessor.
        let mut foreign = img.clone();
        let r = record(4, 0xdead_beef);
        foreign[slot(8, 4)..slot(8, 4) + RECORD].copy_from_slice(&r);
        assert!(check(&foreign).unwrap_err().contains("record 4"));
        // A capacity that does not match the memory.
        let mut cap = img.clone();
        cap[8..16].copy_from_slice(&9u64.to_le_bytes());
        assert!(check(&cap).is_err());
        // No magic: no log.
        assert_eq!(check(&vec![0u8; RING + 8 * RECORD]), Ok(None));
        assert_eq!(check(&img[..100]), Ok(None));
    }
}
