//! Copy-on-write snapshots of `/dev/memkit-ckpt` (`CKPT_COLLECT_SNAPSHOT`): what is
//! refused, pages copied out as they were at the collect however they were written
//! after it (by `COPY` and both paths of `COPY_DIFF`), sent pages read live, a failed
//! copy that loses nothing, a snapshot of every page (`CKPT_COLLECT_ALL`), and
//! snapshots taken while two threads write that are always a consistent cut of
//! their writes.

use crate::ckpt_tests::{apply_records, collect, expect_pages, pattern, region, start, stats, Rng};
use crate::ktap::{expect_errno, Outcome, TestResult};
use memkit::dev::{CkptMap, Device, CKPT_PAGE_SIZE};
use memkit_core::abi::{self, UapiStruct};
use memkit_core::ckpt::diff::Params;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const PAGE: usize = CKPT_PAGE_SIZE;
const SNAPSHOT: u32 = abi::CKPT_COLLECT_CLEAR | abi::CKPT_COLLECT_SNAPSHOT;

/// A snapshot collect of the whole region: the pages it reports.
fn snapshot(dev: &Device, pages: u64) -> Result<Vec<u64>, String> {
    snapshot_with(dev, pages, 0)
}

/// [`snapshot`] with more collect flags (`abi::CKPT_COLLECT_ALL`).
fn snapshot_with(dev: &Device, pages: u64, flags: u32) -> Result<Vec<u64>, String> {
    let runs = dev
        .ckpt_collect_ranges_with(SNAPSHOT | flags, 0, pages)
        .map_err(|e| format!("snapshot collect (flags {flags:#x}): {e}"))?;
    Ok(runs
        .iter()
        .flat_map(|r| r.first..r.first + r.count)
        .collect())
}

/// Fails unless `got`, a page copied out, is `want`; names the first byte that
/// differs.
fn expect_page(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        return Err(format!("{what}: differs from byte {at:?}"));
    }
    Ok(())
}

pub fn ckpt_snapshot_copies_pages_as_they_were(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 16;
    let (dev, map) = region(PAGES)?;
    // Refused: a snapshot is of a clearing collect, on a region fixed to the
    // recording mode (the module's choice could change it); a refusal clears nothing.
    for flags in [0, abi::CKPT_START_SCAN] {
        start(&dev, flags)?;
        map.write_bytes(0, &pattern(0, 9));
        expect_errno(
            &format!("snapshot of a region started with flags {flags:#x}"),
            dev.ckpt_collect_ranges_with(SNAPSHOT, 0, PAGES),
            libc::EINVAL,
        )?;
        expect_pages(
            "after a refused snapshot",
            &collect(&dev, 0, PAGES, false)?,
            &[0],
        )?;
    }
    start(&dev, abi::CKPT_START_RECORD)?;
    expect_errno(
        "SNAPSHOT without CLEAR",
        dev.ckpt_collect_ranges_with(abi::CKPT_COLLECT_SNAPSHOT, 0, PAGES),
        libc::EINVAL,
    )?;

    let old: Vec<Vec<u8>> = (0..PAGES).map(|p| pattern(p, 1)).collect();
    for (p, bytes) in old.iter().enumerate().take(8) {
        map.write_bytes(p * PAGE, bytes);
    }
    expect_pages(
        "the snapshot",
        &snapshot(&dev, PAGES)?,
        &(0..8).collect::<Vec<_>>(),
    )?;
    // Written after the collect, before being copied out: pages 0-3, 6 and 7.
    for p in [0, 1, 2, 3, 6, 7] {
        map.write_bytes(p * PAGE, &pattern(p as u64, 2));
    }
    // COPY reads 0-5 as they were.
    let order = [3u64, 0, 1, 2, 4, 5];
    let data = dev
        .ckpt_copy(&order)
        .map_err(|e| format!("CKPT_COPY {order:?}: {e}"))?;
    for (k, &p) in order.iter().enumerate() {
        expect_page(
            &format!("CKPT_COPY of snapshot page {p}"),
            &data[k * PAGE..(k + 1) * PAGE],
            &old[p as usize],
        )?;
    }
    // COPY_DIFF reads 6 (whole, copied without the lock) and 7 (of the diff set,
    // copied under it) as they were.
    dev.ckpt_diff_set(&[7], true)
        .map_err(|e| format!("CKPT_DIFF_SET: {e}"))?;
    let params = Params::new(256, 8).ok_or("diff parameters")?;
    let (records, _) = dev
        .ckpt_copy_diff(&[6, 7], 256, 8)
        .map_err(|e| format!("CKPT_COPY_DIFF: {e}"))?;
    let mut replica = vec![0u8; PAGES as usize * PAGE];
    apply_records(&mut replica, &records, params)?;
    for p in [6usize, 7] {
        expect_page(
            &format!("CKPT_COPY_DIFF of snapshot page {p}"),
            &replica[p * PAGE..(p + 1) * PAGE],
            &old[p],
        )?;
    }
    let s = stats(&dev)?;
    if s.snapshot_pages != 8 || s.cow_copies != 6 {
        return Err(format!(
            "snapshot_pages {} cow_copies {}, want 8 and 6",
            s.snapshot_pages, s.cow_copies
        ));
    }
    // A page copied out is sent: it reads as it is now, and a write to it copies
    // nothing.
    map.write_bytes(5 * PAGE, &pattern(5, 3));
    let now = dev
        .ckpt_copy(&[0, 5])
        .map_err(|e| format!("CKPT_COPY: {e}"))?;
    expect_page("page 0 copied again", &now[..PAGE], &pattern(0, 2))?;
    expect_page("page 5 copied again", &now[PAGE..], &pattern(5, 3))?;
    if stats(&dev)?.cow_copies != 6 {
        return Err("a write to a page already copied out copied it".into());
    }
    // The next collect closes the snapshot and reports what was written since it.
    let written: Vec<u64> = vec![0, 1, 2, 3, 5, 6, 7];
    expect_pages(
        "after the snapshot",
        &collect(&dev, 0, PAGES, true)?,
        &written,
    )?;

    // A copy-out that fails loses nothing: its pages are reported again.
    map.write_bytes(9 * PAGE, &pattern(9, 4));
    expect_pages("second snapshot", &snapshot(&dev, PAGES)?, &[9])?;
    map.write_bytes(9 * PAGE, &pattern(9, 5));
    let idx = [9u64];
    let bad = abi::CkptCopy {
        size: abi::CkptCopy::SIZE as u32,
        flags: 0,
        pages: idx.as_ptr() as u64,
        count: 1,
        buf: 8,
        buf_len: PAGE as u64,
        bytes: 0,
    };
    expect_errno(
        "CKPT_COPY to address 8",
        dev.call(abi::IOC_CKPT_COPY, &bad),
        libc::EFAULT,
    )?;
    expect_pages(
        "after the failed copy",
        &collect(&dev, 0, PAGES, true)?,
        &[9],
    )?;
    // `COLLECT_ALL`: every page, written or not, never-touched ones included.
    for p in [10, 11] {
        map.write_bytes(p * PAGE, &pattern(p as u64, 6));
    }
    let counted = dev
        .ckpt_collect_into(abi::CKPT_COLLECT_ALL, 0, PAGES, &mut [])
        .map_err(|e| format!("count of COLLECT_ALL: {e}"))?;
    if (counted.dirty, counted.nr_ranges) != (PAGES, 1) {
        return Err(format!(
            "COLLECT_ALL counted {} pages in {} runs",
            counted.dirty, counted.nr_ranges
        ));
    }
    let every: Vec<u64> = (0..PAGES).collect();
    expect_pages(
        "a snapshot of every page",
        &snapshot_with(&dev, PAGES, abi::CKPT_COLLECT_ALL)?,
        &every,
    )?;
    let sent = dev
        .ckpt_copy(&[10])
        .map_err(|e| format!("CKPT_COPY: {e}"))?;
    expect_page("page 10", &sent, &pattern(10, 6))?;
    // Page 15 was never touched: it reads as zeros, however it is written after.
    for p in [15, 11] {
        map.write_bytes(p * PAGE, &pattern(p as u64, 7));
    }
    let data = dev
        .ckpt_copy(&[15, 11])
        .map_err(|e| format!("CKPT_COPY: {e}"))?;
    expect_page("never-touched page 15", &data[..PAGE], &[0u8; PAGE])?;
    expect_page("page 11", &data[PAGE..], &pattern(11, 6))?;
    // The next collect reports what was written since.
    expect_pages(
        "after the snapshot of every page",
        &collect(&dev, 0, PAGES, true)?,
        &[11, 15],
    )?;
    Ok(Outcome::Pass)
}

/// Words each writer writes per page of the racing test, spread over the page.
const WORDS: usize = 8;

/// The word offsets of page `p`, in the order the writers write them.
fn offsets(p: u64) -> impl Iterator<Item = usize> {
    (0..WORDS).map(move |w| p as usize * PAGE + w * (PAGE / WORDS))
}

/// A writer of the racing test: round after round, writes the round's number to
/// every word of its pages, in order, until told to stop. Returns the rounds.
fn write_rounds(map: &CkptMap, pages: std::ops::Range<u64>, stop: &AtomicBool) -> u64 {
    let mut v = 0;
    while !stop.load(Ordering::Relaxed) {
        v += 1;
        for p in pages.clone() {
            for off in offsets(p) {
                map.write_u64(off, v);
            }
        }
    }
    v
}

/// Checks that `replica` holds a cut of one writer's rounds over `pages`: its words,
/// in the writer's order, are round `v` up to some point and round `v - 1` after it.
fn expect_cut(replica: &[u8], pages: std::ops::Range<u64>, when: &str) -> Result<u64, String> {
    let word = |off: usize| u64::from_ne_bytes(replica[off..off + 8].try_into().expect("8 bytes"));
    let words: Vec<u64> = pages.clone().flat_map(offsets).map(word).collect();
    let top = words[0];
    let cut = words.iter().position(|&w| w != top).unwrap_or(words.len());
    if words[cut..].iter().any(|&w| w + 1 != top) {
        return Err(format!(
            "{when}: pages {pages:?} are no cut of their writer's rounds: {words:?}"
        ));
    }
    Ok(top)
}

pub fn ckpt_snapshot_is_a_cut_of_racing_writers(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 32;
    const HALF: u64 = PAGES / 2;
    let (dev, map) = region(PAGES)?;
    start(&dev, abi::CKPT_START_RECORD)?;
    // Even pages go through COPY_DIFF's locked copy, odd ones through its unlocked
    // one.
    let even: Vec<u64> = (0..PAGES).step_by(2).collect();
    dev.ckpt_diff_set(&even, true)
        .map_err(|e| format!("CKPT_DIFF_SET: {e}"))?;
    let params = Params::new(256, 8).ok_or("diff parameters")?;
    let mut replica = vec![0u8; PAGES as usize * PAGE];
    let stop = AtomicBool::new(false);
    let mut rng = Rng(0x5eed_c0de);
    let (mut rounds, mut tops) = (0, [0, 0]);
    let checked = std::thread::scope(|sc| {
        let writers = [0..HALF, HALF..PAGES].map(|r| {
            let (map, stop) = (&map, &stop);
            sc.spawn(move || write_rounds(map, r, stop))
        });
        let checked = (|| {
            let end = Instant::now() + Duration::from_secs(4);
            while rounds < 20 || (rounds < 300 && Instant::now() < end) {
                rounds += 1;
                // The first: a snapshot of every page, as a checkpointer's first.
                let flags = if rounds == 1 {
                    abi::CKPT_COLLECT_ALL
                } else {
                    0
                };
                let dirty = snapshot_with(&dev, PAGES, flags)?;
                if dirty.is_empty() {
                    // The writers have not started yet.
                    continue;
                }
                // Let the writers reach some of the pages before they are copied.
                std::thread::sleep(Duration::from_micros(rng.next() % 500));
                let (records, _) = dev
                    .ckpt_copy_diff(&dirty, params.segment() as u32, params.max_changed)
                    .map_err(|e| format!("CKPT_COPY_DIFF of {} pages: {e}", dirty.len()))?;
                apply_records(&mut replica, &records, params)?;
                for (k, half) in [0..HALF, HALF..PAGES].into_iter().enumerate() {
                    let when = format!("snapshot {rounds}");
                    tops[k] = expect_cut(&replica, half, &when)?;
                }
            }
            Ok::<(), String>(())
        })();
        stop.store(true, Ordering::Relaxed);
        let written: Vec<u64> = writers.map(|w| w.join().unwrap_or(0)).to_vec();
        checked.map(|()| written)
    });
    let written = checked?;
    // With the writers stopped, one more checkpoint makes the replica the memory.
    let dirty = snapshot(&dev, PAGES)?;
    if !dirty.is_empty() {
        let (records, _) = dev
            .ckpt_copy_diff(&dirty, params.segment() as u32, params.max_changed)
            .map_err(|e| format!("the last CKPT_COPY_DIFF: {e}"))?;
        apply_records(&mut replica, &records, params)?;
    }
    let mut memory = vec![0u8; replica.len()];
    map.read_bytes(0, &mut memory);
    if replica != memory {
        return Err("after the writers stopped, the replica differs from the region".into());
    }
    let s = stats(&dev)?;
    println!(
        "{rounds} snapshots, last cuts at rounds {tops:?} of {written:?}; {} pages, {} \
         copied by a write first",
        s.snapshot_pages, s.cow_copies
    );
    if s.cow_copies == 0 {
        return Err(
            "no write reached a page before it was copied out: the test tested nothing".into(),
        );
    }
    Ok(Outcome::Pass)
}
