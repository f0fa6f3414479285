//! Crash-state exploration of the micro-journal's commit and recovery protocol.
//!
//! Every test here runs a workload through the real engine on the simulated
//! persistent memory of `common::sim`, crashes it at every persistence barrier
//! (before and after every fence, `format`'s and recovery's included), recovers every
//! crash image the simulator allows (or a seeded sample, past a budget) and checks the
//! recovered data region against a model: all acknowledged groups, plus none or all of
//! the group being committed. Recoveries are continued with more commits and crashed
//! again, two levels deep. `common::explorer` has the details.
//!
//! - `exhaustive_*`: small hand-made workloads with overlapping ranges; every crash
//!   image of every crash point of the main run (asserted);
//! - `random_workloads_*`: seeded random workloads, random crash points and sampled
//!   crash images; `MEMKIT_EXPLORER_SEED` and `MEMKIT_EXPLORER_ITERS` change the seed
//!   and the number of workloads;
//! - `explorer_catches_*`: the same exploration over a device that breaks the `Pmem`
//!   contract must report violations, or the checker proves nothing;
//! - `regression_*`: minimal reproductions of two engine bugs the explorer found
//!   (recovery left its MJs and torn MJs in place; fixed by sealing the journal at
//!   the end of recovery, `engine::Journal::open`), and
//!   `exhaustive_*_first_commit_after_recovery`: the exhaustive search that found
//!   them;
//! - `sim_*`: the simulator's own semantics.
//!
//! Run with `--nocapture` for a summary of what each test explored.

mod common;

use common::explorer::{self, Budget, Explorer, Group, Jrnl, Scenario, Stats, Tx};
use common::rng::Rng;
use common::sim::{CrashState, Device, Fault, Faulty, PointKind, SimPmem};
use memkit_core::journal::engine::{JournalError, Mode};
use memkit_core::journal::format::{self, Geometry};
use memkit_core::journal::pmem::Pmem;
use memkit_core::journal::recovery::PlanError;

/// Whether the tests explore crashes inside the first commit after a recovery, before
/// that commit's barrier: the window the `regression_*` bugs lived in.
const EXPLORE_FIRST_COMMIT_AFTER_RECOVERY: bool = true;

/// A range of `len` bytes at `offset`, with bytes `tag, tag+1, ..` so that a byte
/// says which transaction wrote it and where.
fn range(offset: u64, len: usize, tag: u8) -> (u64, Vec<u8>) {
    (
        offset,
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect(),
    )
}

/// A geometry with `mj_count` MJs of `mj_size` bytes and a one-page data region.
fn tiny_geometry(mj_count: u32, mj_size: u32) -> Geometry {
    let data_offset = Geometry::new(1 << 20, mj_count, mj_size)
        .unwrap()
        .data_offset;
    Geometry::new(data_offset + 4096, mj_count, mj_size).unwrap()
}

/// Device offsets of MJ `slot`'s first line (its header and the start of its first
/// entry) and of its second line (entry data only, for a 64-byte write).
fn mj_lines(geo: &Geometry, slot: u32) -> (u64, u64) {
    let at = geo.mj_at(slot).unwrap();
    (at, at + format::LINE)
}

/// Prints the summary and fails the test, with the explorer's reports, if it found
/// violations.
fn assert_clean(what: &str, stats: &Stats) {
    println!("{what}: {}", stats.summary());
    assert!(
        stats.violations == 0,
        "{what}: {} violations; the first ones:\n\n{}",
        stats.violations,
        stats.reports.join("\n\n")
    );
}

/// Small ranges (at most 8 bytes, two per transaction) keep every MJ to a header
/// line and one payload line, so that the crash images of every point can be
/// enumerated. All ranges fall in the first two lines of the data region and overlap
/// each other, within the group of three and across groups, some across the line
/// boundary at 64: a replay in the wrong order, a stale replay or a partial group
/// changes the result.
fn group_of_three(mode: Mode) -> Scenario {
    let t1: Tx = vec![range(0, 8, 0x10), range(40, 4, 0x18)];
    let t2: Tx = vec![range(4, 8, 0x20), range(62, 3, 0x28)];
    let t3: Tx = vec![range(0, 6, 0x30), range(60, 8, 0x38)];
    let t4: Tx = vec![range(2, 4, 0x40), range(64, 8, 0x48)];
    let t5: Tx = vec![range(6, 8, 0x50), range(63, 2, 0x58)];
    let t6: Tx = vec![range(0, 8, 0x60), range(44, 8, 0x68)];
    // After a recovery: one transaction, then a group of two; after a second one,
    // one more.
    let t7: Tx = vec![range(3, 8, 0x70), range(61, 6, 0x78)];
    let t8: Tx = vec![range(1, 8, 0x80), range(40, 8, 0x88)];
    let t9: Tx = vec![range(5, 4, 0x90), range(62, 8, 0x98)];
    let t10: Tx = vec![range(0, 8, 0xa0), range(64, 1, 0xa8)];
    Scenario {
        name: "group of three".into(),
        // Four MJs: in coalesced mode the group of three takes every MJ not in flight,
        // and the MJs are reused within the run.
        geo: tiny_geometry(4, 256),
        mode,
        groups: vec![vec![t1], vec![t2, t3, t4], vec![t5], vec![t6]],
        after_recovery: vec![vec![vec![t7], vec![t8, t9]], vec![vec![t10]]],
    }
}

/// Eleven groups of one to three transactions over four MJs: every MJ is reused
/// several times, so stale MJs (below the low-water mark) and incomplete groups (a
/// member's MJ overwritten) are on the medium at most crash points.
fn slot_reuse(mode: Mode) -> Scenario {
    let sizes = [1, 2, 1, 3, 1, 2, 2, 1, 3, 1, 2];
    let mut tag = 0u8;
    let groups: Vec<Group> = sizes
        .iter()
        .enumerate()
        .map(|(g, &n)| {
            (0..n)
                .map(|t| {
                    tag = tag.wrapping_add(0x10);
                    let a = ((g * 5 + t * 3) % 12) as u64;
                    vec![range(a, 6, tag), range(60 + a % 5, 4, tag ^ 0x80)]
                })
                .collect()
        })
        .collect();
    let after = vec![range(5, 8, 0xe0), range(58, 8, 0xf0)];
    let again = vec![range(2, 8, 0xc0), range(63, 2, 0xd0)];
    Scenario {
        name: "slot reuse".into(),
        geo: tiny_geometry(4, 256),
        mode,
        groups,
        after_recovery: vec![vec![vec![after.clone()], vec![again]], vec![vec![after]]],
    }
}

/// Every image of every main-run point (at most 2^14 each, which the hand-made
/// scenarios stay under), 24 of them per point continued with the after-recovery
/// commits, whose crash points are explored up to 256 images each, the all-new one
/// continued again.
fn exhaustive_budget() -> Budget {
    Budget {
        images: 1 << 14,
        continued: 24,
        nested_images: 256,
        nested_continued: 1,
        point_odds: (1, 1),
        crash_before_first_barrier_after_recovery: EXPLORE_FIRST_COMMIT_AFTER_RECOVERY,
    }
}

fn explore_exhaustively(scenario: Scenario, budget: Budget) {
    let what = format!("{} ({:?})", scenario.name, scenario.mode);
    let mut ex = Explorer::new(scenario, budget, 1);
    let stats = ex.run().clone();
    assert_clean(&what, &stats);
    let main = stats.depth[0];
    assert_eq!(
        main.points, main.exhaustive_points,
        "{what}: a main-run crash point had more images than the budget"
    );
}

#[test]
fn exhaustive_group_of_three_coalesced() {
    explore_exhaustively(group_of_three(Mode::Coalesced), exhaustive_budget());
}

#[test]
fn exhaustive_group_of_three_strict() {
    explore_exhaustively(group_of_three(Mode::Strict), exhaustive_budget());
}

#[test]
fn exhaustive_slot_reuse_coalesced() {
    explore_exhaustively(slot_reuse(Mode::Coalesced), exhaustive_budget());
}

#[test]
fn exhaustive_slot_reuse_strict() {
    explore_exhaustively(slot_reuse(Mode::Strict), exhaustive_budget());
}

/// The full exploration, crashes in the first commit after a recovery included.
fn explore_first_commit_after_recovery(mode: Mode) {
    let budget = Budget {
        crash_before_first_barrier_after_recovery: true,
        ..exhaustive_budget()
    };
    explore_exhaustively(group_of_three(mode), budget);
    explore_exhaustively(slot_reuse(mode), budget);
}

#[test]
fn exhaustive_coalesced_first_commit_after_recovery() {
    explore_first_commit_after_recovery(Mode::Coalesced);
}

#[test]
fn exhaustive_strict_first_commit_after_recovery() {
    explore_first_commit_after_recovery(Mode::Strict);
}

// --- Randomised exploration ---------------------------------------------------------

const DEFAULT_SEED: u64 = 0x6d65_6d6b_6974_0001;
const DEFAULT_ITERS: u64 = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
    }
}

/// A random transaction: 1 to 3 ranges of 1 to 100 bytes, half of them in a hot
/// window of 256 bytes (so that transactions overlap), all fitting one MJ.
fn random_tx(rng: &mut Rng, geo: &Geometry) -> Tx {
    let mut tx: Tx = Vec::new();
    for _ in 0..rng.between(1, 3) {
        let len = rng.between(1, 100);
        let span = if rng.chance(1, 2) { 256 } else { geo.data_size };
        let offset = rng.below(span - len + 1);
        let data = (0..len).map(|_| rng.next_u64() as u8).collect();
        let mut candidate = tx.clone();
        candidate.push((offset, data));
        let ranges = candidate.iter().map(|(o, d)| (*o, d.len() as u64));
        if format::plan_tx(geo, ranges).is_err() {
            break;
        }
        tx = candidate;
    }
    tx
}

fn random_group(rng: &mut Rng, geo: &Geometry, max: u64) -> Group {
    (0..rng.between(1, max))
        .map(|_| random_tx(rng, geo))
        .collect()
}

/// 3 to 8 groups of 1 to 4 transactions over 8 MJs; after a recovery 1 or 2 more
/// groups, after a second one, one more.
fn random_scenario(rng: &mut Rng, mode: Mode) -> Scenario {
    let geo = tiny_geometry(8, 512);
    let groups = (0..rng.between(3, 8))
        .map(|_| random_group(rng, &geo, 4))
        .collect();
    let first: Vec<Group> = (0..rng.between(1, 2))
        .map(|_| random_group(rng, &geo, 4))
        .collect();
    let second = vec![random_group(rng, &geo, 4)];
    Scenario {
        name: "random".into(),
        geo,
        mode,
        groups,
        after_recovery: vec![first, second],
    }
}

/// Half of the crash points of each run, up to 24 images each, 3 of them continued;
/// after a recovery, up to 8 images per point and one continued.
fn random_budget() -> Budget {
    Budget {
        images: 24,
        continued: 3,
        nested_images: 8,
        nested_continued: 1,
        point_odds: (1, 2),
        crash_before_first_barrier_after_recovery: EXPLORE_FIRST_COMMIT_AFTER_RECOVERY,
    }
}

fn random_workloads(mode: Mode) {
    let seed = env_u64("MEMKIT_EXPLORER_SEED", DEFAULT_SEED);
    let iters = env_u64("MEMKIT_EXPLORER_ITERS", DEFAULT_ITERS);
    let mut total = Stats::default();
    for i in 0..iters {
        let run_seed = seed.wrapping_add(i);
        let mut rng = Rng::new(run_seed);
        let scenario = random_scenario(&mut rng, mode);
        let mut ex = Explorer::new(scenario, random_budget(), rng.next_u64());
        let stats = ex.run();
        assert!(
            stats.violations == 0,
            "random workload {i} ({mode:?}) failed; reproduce with \
             MEMKIT_EXPLORER_SEED={run_seed:#x} MEMKIT_EXPLORER_ITERS=1\n\n{}",
            stats.reports.join("\n\n")
        );
        total.add(stats);
    }
    assert_clean(
        &format!("{iters} random workloads ({mode:?}, seed {seed:#x})"),
        &total,
    );
}

#[test]
fn random_workloads_coalesced() {
    random_workloads(Mode::Coalesced);
}

#[test]
fn random_workloads_strict() {
    random_workloads(Mode::Strict);
}

// --- The explorer can fail ------------------------------------------------------------

/// Explores `group_of_three` with the main run on a device injecting `fault`, and
/// requires the explorer to report violations.
fn assert_caught(mode: Mode, fault: impl Fn(&Geometry) -> Fault) {
    let scenario = group_of_three(mode);
    let fault = fault(&scenario.geo);
    // Lost fences make the pending sets huge: sample.
    let budget = Budget {
        images: 256,
        continued: 0,
        ..exhaustive_budget()
    };
    let mut ex = Explorer::new(scenario, budget, 1);
    let stats = ex.run_on(|sim| Faulty::new(sim, fault));
    println!("{fault:?} ({mode:?}): {}", stats.summary());
    assert!(
        stats.violations > 0,
        "{fault:?} ({mode:?}): the explorer did not notice"
    );
    println!("first report:\n{}", stats.reports[0]);
}

/// `format`'s three fences work; every later one returns without making anything
/// durable, so an acknowledged group can be lost.
fn lost_commit_barriers(_: &Geometry) -> Fault {
    Fault::FencesLostAfter { keep: 3 }
}

/// The in-place writes are never written back: only the MJs still on the medium
/// can bring them back, and a stale MJ cannot.
fn unflushed_in_place_writes(geo: &Geometry) -> Fault {
    Fault::UnflushedFrom {
        from: geo.data_offset,
    }
}

#[test]
fn explorer_catches_lost_commit_barriers_coalesced() {
    assert_caught(Mode::Coalesced, lost_commit_barriers);
}

#[test]
fn explorer_catches_lost_commit_barriers_strict() {
    assert_caught(Mode::Strict, lost_commit_barriers);
}

#[test]
fn explorer_catches_unflushed_in_place_writes_coalesced() {
    assert_caught(Mode::Coalesced, unflushed_in_place_writes);
}

#[test]
fn explorer_catches_unflushed_in_place_writes_strict() {
    assert_caught(Mode::Strict, unflushed_in_place_writes);
}

// --- Engine bugs found by the explorer, reduced to minimal scenarios ------------------

/// Runs `f` on a recording simulator and returns the crash state just before the
/// first fence `f` issues.
fn crash_before_first_fence(sim: &mut SimPmem, f: impl FnOnce(&mut SimPmem)) -> CrashState {
    sim.set_recording(true);
    f(sim);
    sim.set_recording(false);
    let points = sim.take_points();
    let p = points
        .iter()
        .find(|p| p.kind == PointKind::BeforeFence)
        .expect("the operation fences");
    p.state.clone()
}

/// The crash image of `state` where the lines at the device offsets in `new` took
/// their latest version and every other pending line kept its durable content.
fn image_with_new(state: &CrashState, new: &[u64]) -> Vec<u8> {
    let choice: Vec<usize> = state
        .lines()
        .map(|(off, versions)| if new.contains(&off) { versions } else { 0 })
        .collect();
    state.image(&choice)
}

/// One 64-byte write of `byte` at data offset 0: its MJ spans two lines, the header
/// with the entry's first bytes, then entry data only.
fn write64(byte: u8) -> Group {
    vec![vec![(0, vec![byte; 64])]]
}

fn data_of(sim: &SimPmem, geo: &Geometry) -> Vec<u8> {
    sim.visible(geo.data_offset, 64).to_vec()
}

/// Bug 1, minimal (two MJs, single-transaction groups, every write at the same 64
/// bytes):
///
/// 1. commit A (MJ 0), B (MJ 1), C (MJ 0 again); crash with everything durable;
/// 2. recovery replays C (the largest low-water mark is C's): data = C. Correct.
/// 3. commit D: the journal's round-robin cursor restarts at MJ 0 and D is written
///    over C's MJ. Crash before D's barrier with D's payload line durable and its
///    header line not: MJ 0 is torn.
/// 4. recovery: the only valid MJ is B, whose low-water mark is now the largest, so B
///    is replayed: data = B. Expected C (D not acknowledged) or D.
///
/// Recovery's replay fence made C durable, but nothing on the medium says so; the
/// next commit overwrites the MJ that carried the largest low-water mark before its
/// own MJ (with a larger one) is durable, and older MJs become "live" again. In
/// coalesced mode the same happens with C's group in flight. In normal operation an
/// MJ is only reused after a barrier made a later low-water mark durable; after a
/// recovery, the MJs it replayed (and any carrying the largest low-water mark) need
/// the same protection until the first commit's barrier. Fixed: `open` seals the
/// journal with a commit whose low-water mark retires every older MJ, written into a
/// slot the replay does not need.
fn first_commit_after_recovery_rolls_back(mode: Mode) {
    let geo = tiny_geometry(2, 256);
    let mut sim = SimPmem::new(geo.dev_size);
    format_and_commit(
        &mut sim,
        &geo,
        mode,
        &[write64(0xaa), write64(0xbb), write64(0xcc)],
    );
    // Crash with everything written on the medium.
    let mut sim = SimPmem::from_image(sim.visible(0, geo.dev_size as usize).to_vec());
    let (mut j, _) = explorer::open(&mut sim, &geo, mode).expect("recovery");
    assert_eq!(data_of(&sim, &geo), [0xcc; 64], "first recovery");
    let state = crash_before_first_fence(&mut sim, |sim| {
        explorer::commit(&mut j, sim, &write64(0xdd)).expect("commit D");
    });
    let (_, payload) = mj_lines(&geo, 0);
    let mut sim = SimPmem::from_image(image_with_new(&state, &[payload]));
    let (_, plan) = explorer::open(&mut sim, &geo, mode).expect("second recovery");
    let got = data_of(&sim, &geo);
    assert!(
        got == [0xcc; 64] || got == [0xdd; 64],
        "acknowledged C rolled back: data {got:02x?} after {plan:?}"
    );
}

/// Formats `sim`, opens the journal and commits `groups`.
fn format_and_commit(sim: &mut SimPmem, geo: &Geometry, mode: Mode, groups: &[Group]) -> Jrnl {
    memkit_core::journal::engine::format(sim, *geo, explorer::UUID).expect("format");
    let (mut j, _) = explorer::open(sim, geo, mode).expect("open");
    for g in groups {
        explorer::commit(&mut j, sim, g).expect("commit");
    }
    j
}

#[test]
fn regression_first_commit_after_recovery_rolls_back_acknowledged_data_strict() {
    first_commit_after_recovery_rolls_back(Mode::Strict);
}

#[test]
fn regression_first_commit_after_recovery_rolls_back_acknowledged_data_coalesced() {
    first_commit_after_recovery_rolls_back(Mode::Coalesced);
}

/// Bug 2, minimal (strict mode, two MJs): a torn MJ survives recovery and is
/// resurrected by a later commit that writes the same payload into its slot.
///
/// 1. commit A (id 1, MJ 0); commit B (id 2, MJ 1), crash before B's barrier with
///    B's header line durable and its payload line not: MJ 1 is torn (bad checksum);
/// 2. recovery: data = A, next id 2. Correct. MJ 1 is left as it is;
/// 3. commit C (id 2, MJ 0); then the application retries B: id 3, MJ 1. Crash
///    before that barrier with B's payload line durable and the new header line not:
///    MJ 1 now holds the *old* header (id 2) over the same payload bytes, a valid MJ;
/// 4. recovery fails with `DuplicateId(2)` (C's MJ has id 2 too): the journal no
///    longer attaches. Expected C, or C then B.
///
/// Fixed: recovery zeroes the header of every MJ it found torn, before its fence.
#[test]
fn regression_torn_mj_revived_after_recovery_breaks_attach() {
    let mode = Mode::Strict;
    let geo = tiny_geometry(2, 256);
    let mut sim = SimPmem::new(geo.dev_size);
    let mut j = format_and_commit(&mut sim, &geo, mode, &[write64(0xaa)]);
    let state = crash_before_first_fence(&mut sim, |sim| {
        explorer::commit(&mut j, sim, &write64(0xbb)).expect("commit B");
    });
    let (header, _) = mj_lines(&geo, 1);
    let mut sim = SimPmem::from_image(image_with_new(&state, &[header]));
    let (mut j, _) = explorer::open(&mut sim, &geo, mode).expect("first recovery");
    assert_eq!(data_of(&sim, &geo), [0xaa; 64], "first recovery");

    explorer::commit(&mut j, &mut sim, &write64(0xcc)).expect("commit C");
    let state = crash_before_first_fence(&mut sim, |sim| {
        explorer::commit(&mut j, sim, &write64(0xbb)).expect("retry B");
    });
    let (_, payload) = mj_lines(&geo, 1);
    let mut sim = SimPmem::from_image(image_with_new(&state, &[payload]));
    match explorer::open(&mut sim, &geo, mode) {
        Ok(_) => {
            let got = data_of(&sim, &geo);
            assert!(got == [0xcc; 64] || got == [0xbb; 64], "data {got:02x?}");
        }
        Err(JournalError::Plan(PlanError::DuplicateId(id))) => {
            panic!("second recovery refused the journal: DuplicateId({id})")
        }
        Err(e) => panic!("second recovery failed: {e:?}"),
    }
}

/// Bug 2, silent variant (strict mode, three MJs): the revived MJ completes a group
/// that recovery had rightly discarded, and a transaction that was never
/// acknowledged, and that the application did not retry, appears in the data.
///
/// 1. commit A, B, C (ids 1-3, MJs 0-2), then the group {X, Y} (ids 4, 5, MJs 0, 1):
///    crash before its barrier with Y's MJ durable and, of X's, only the header line;
/// 2. recovery: group {4, 5} is incomplete and skipped: data = A, B, C. Correct;
/// 3. the application retries X alone: id 6, MJ 0 (where X's torn MJ is). Crash
///    before its barrier with X's payload line durable and the new header line not:
///    MJ 0 holds X's old header over X's payload, valid again, and completes {4, 5};
/// 4. recovery replays X and Y. Expected A, B, C, or that plus X; Y must not appear.
#[test]
fn regression_torn_mj_revived_after_recovery_replays_discarded_tx() {
    let mode = Mode::Strict;
    let geo = tiny_geometry(3, 256);
    let x: Tx = vec![(0, vec![0x11; 64])];
    let y: Tx = vec![(64, vec![0x22; 64])];
    let mut sim = SimPmem::new(geo.dev_size);
    let abc = [write64(0xaa), write64(0xbb), write64(0xcc)];
    let mut j = format_and_commit(&mut sim, &geo, mode, &abc);
    let state = crash_before_first_fence(&mut sim, |sim| {
        explorer::commit(&mut j, sim, &[x.clone(), y.clone()]).expect("commit {X, Y}");
    });
    let (x_header, _) = mj_lines(&geo, 0);
    let (y_header, y_payload) = mj_lines(&geo, 1);
    let image = image_with_new(&state, &[x_header, y_header, y_payload]);
    let mut sim = SimPmem::from_image(image);
    let (mut j, plan) = explorer::open(&mut sim, &geo, mode).expect("first recovery");
    assert_eq!(plan.incomplete, 1, "Y's MJ is valid, its group incomplete");
    let after_first = sim.visible(geo.data_offset, 128).to_vec();
    assert_eq!(
        after_first,
        [[0xcc; 64], [0; 64]].concat(),
        "first recovery"
    );

    let state = crash_before_first_fence(&mut sim, |sim| {
        explorer::commit(&mut j, sim, std::slice::from_ref(&x)).expect("retry X");
    });
    let (_, x_payload) = mj_lines(&geo, 0);
    let mut sim = SimPmem::from_image(image_with_new(&state, &[x_payload]));
    let (_, plan) = explorer::open(&mut sim, &geo, mode).expect("second recovery");
    let got = sim.visible(geo.data_offset, 128).to_vec();
    let with_x = [[0x11; 64], [0; 64]].concat();
    assert!(
        got == after_first || got == with_x,
        "second recovery gave {got:02x?} after {plan:?}: Y reappeared"
    );
}

// --- The simulator ------------------------------------------------------------------

#[test]
fn sim_keeps_every_version_until_a_fence() {
    let mut sim = SimPmem::new(256);
    sim.write_flushed(0, &[1; 8]);
    sim.write_flushed(8, &[2; 8]);
    sim.write_flushed(8, &[2; 8]); // identical: no new version
    let state = sim.crash_state();
    assert_eq!(state.lines().collect::<Vec<_>>(), [(0, 2)]);
    assert_eq!(state.image_count(), 3);
    assert_eq!(state.image(&[0])[..16], [0; 16]);
    assert_eq!(state.image(&[1])[..16], [[1; 8], [0; 8]].concat());
    assert_eq!(state.image(&[2])[..16], [[1; 8], [2; 8]].concat());

    sim.fence();
    assert_eq!(sim.fences(), 1);
    let state = sim.crash_state();
    assert_eq!(state.image_count(), 1);
    assert_eq!(state.image(&[])[..16], [[1; 8], [2; 8]].concat());
}

#[test]
fn sim_lines_persist_independently() {
    let mut sim = SimPmem::new(256);
    // Straddles lines 0 and 1, then touches line 3.
    sim.write_flushed(60, &[7; 8]);
    sim.write_flushed(200, &[9; 4]);
    let state = sim.crash_state();
    assert_eq!(
        state.lines().collect::<Vec<_>>(),
        [(0, 1), (64, 1), (192, 1)]
    );
    let sel = state.select(100, &mut Rng::new(0));
    assert!(sel.exhaustive);
    assert_eq!(sel.total, 8);
    let images: std::collections::HashSet<Vec<u8>> =
        sel.choices.iter().map(|c| state.image(c)).collect();
    assert_eq!(images.len(), 8, "every combination is a distinct image");
    // A torn store: its first half durable, its second half not.
    assert!(images
        .iter()
        .any(|i| i[60..64] == [7; 4] && i[64..68] == [0; 4]));
}

#[test]
fn sim_samples_distinct_images_past_the_limit() {
    let mut sim = SimPmem::new(64 * 16);
    for line in 0..16u64 {
        sim.write_flushed(line * 64, &[1]);
        sim.write_flushed(line * 64 + 1, &[2]);
    }
    let state = sim.crash_state();
    assert_eq!(state.image_count(), 3u128.pow(16));
    let sel = state.select(50, &mut Rng::new(7));
    assert!(!sel.exhaustive);
    assert_eq!(sel.choices.len(), 50);
    assert_eq!(sel.choices[0], vec![0; 16], "all durable first");
    assert_eq!(sel.choices[1], vec![2; 16], "all latest second");
    let distinct: std::collections::HashSet<_> = sel.choices.iter().collect();
    assert_eq!(distinct.len(), 50);
}

#[test]
fn sim_records_crash_points_around_fences() {
    let mut sim = SimPmem::new(256);
    sim.set_recording(true);
    sim.set_tag(5);
    sim.write_flushed(0, &[1; 4]);
    sim.fence();
    sim.record_point(PointKind::Explicit);
    let points = sim.take_points();
    let kinds: Vec<_> = points.iter().map(|p| (p.kind, p.fences_done)).collect();
    assert_eq!(
        kinds,
        [
            (PointKind::BeforeFence, 0),
            (PointKind::AfterFence, 1),
            (PointKind::Explicit, 1)
        ]
    );
    assert!(points.iter().all(|p| p.tag == 5));
    assert_eq!(points[0].state.image_count(), 2);
    assert_eq!(points[1].state.image_count(), 1);
}

#[test]
fn sim_faults_break_durability() {
    // A lost fence leaves the write pending; an unflushed store never becomes durable.
    let mut lost = Faulty::new(SimPmem::new(128), Fault::FencesLostAfter { keep: 0 });
    lost.write_flushed(0, &[1]);
    lost.fence();
    assert_eq!(Device::sim(&mut lost).crash_state().image_count(), 2);

    let mut unflushed = Faulty::new(SimPmem::new(128), Fault::UnflushedFrom { from: 64 });
    unflushed.write_flushed(64, &[1]);
    unflushed.fence();
    let mut b = [0u8];
    unflushed.read(64, &mut b);
    assert_eq!(b, [1], "loads see the store");
    let state = Device::sim(&mut unflushed).crash_state();
    assert_eq!(state.image(&[])[64], 0, "the medium never does");
}
