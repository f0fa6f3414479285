//! The crash-state explorer for the micro-journal.
//!
//! A [`Scenario`] is a geometry, a commit mode and a list of commit groups. The
//! explorer runs it through the real engine (`engine::format`, `Journal::open`,
//! `Journal::commit`) on a recording [`SimPmem`], which takes a crash point before and
//! after every fence, those inside `format` and `open` included, plus one at the end
//! of the run. For every crash point it takes every crash image the simulator allows
//! (or a random sample, past a budget), recovers it with `Journal::open` on a fresh
//! simulator, and judges the result against a model of the data region:
//!
//! - a crash inside `format` must leave a device that does not attach, or an empty
//!   journal;
//! - any other crash must recover without error, to the state after every
//!   acknowledged group (a group is acknowledged when its `commit` returned `Ok`),
//!   plus either none or all of the group being committed; once that group's commit
//!   barrier (its first fence) has completed, to the state with all of it.
//!
//! Some recovered images are then *continued*: the recovery runs on a recording
//! simulator (so a crash during recovery, before or after its replay fence, is
//! explored too, and must recover like the crash it was recovering from), a crash
//! right after recovery returned must give back exactly what it returned, the
//! journal commits the scenario's after-recovery groups, and the crash points of that
//! second run are explored the same way, now against the state recovery returned.
//! This nests once per entry of [`Scenario::after_recovery`].
//!
//! Violations are counted and the first few described in full (crash point, chosen
//! line versions, the recovery plan, the first differing byte), so a failure can be
//! reproduced by hand.

use std::fmt::Write as _;
use std::rc::Rc;

use memkit_core::journal::engine::{self, Journal, JournalError, Mode, OpenScratch, Range, Slot};
use memkit_core::journal::format::Geometry;
use memkit_core::journal::pmem::Pmem;
use memkit_core::journal::recovery::{Plan, SlotScan};

use super::rng::Rng;
use super::sim::{Choice, CrashPoint, CrashState, Device, PointKind, Selection, SimPmem};

/// The journal identity every scenario formats with.
pub const UUID: [u8; 16] = *b"memkit-explorer!";

/// One transaction: `(data-region offset, new bytes)` per range.
pub type Tx = Vec<(u64, Vec<u8>)>;

/// Transactions committed together by one `Journal::commit` call.
pub type Group = Vec<Tx>;

/// The data region after applying `group` to `data`, transactions in commit-id order
/// (the order of the group), ranges in order.
pub fn apply(data: &[u8], group: &[Tx]) -> Vec<u8> {
    let mut out = data.to_vec();
    for tx in group {
        for (off, bytes) in tx {
            let off = *off as usize;
            out[off..off + bytes.len()].copy_from_slice(bytes);
        }
    }
    out
}

/// A content of the data region, with a name for reports.
#[derive(Clone, Debug)]
struct State {
    name: Rc<str>,
    data: Rc<[u8]>,
}

impl State {
    fn new(name: String, data: Vec<u8>) -> State {
        State {
            name: name.into(),
            data: data.into(),
        }
    }
}

/// What recovery may produce from the crash images of one crash point.
#[derive(Clone, Debug)]
enum Allowed {
    /// A crash inside `format`: the device must not attach (a format error), or
    /// attach as an empty journal over this data region.
    DetachedOr(State),
    /// Recovery must succeed and leave one of these.
    OneOf(Vec<State>),
}

/// One step of a run (format, an open, one commit, the end). Crash points taken
/// during it are judged by `before` until the step's first fence has completed, by
/// `after` from then on.
#[derive(Clone, Debug)]
struct Step {
    name: String,
    start_fences: u64,
    before: Allowed,
    after: Allowed,
    /// Whether crash points before the step's first fence are explored at all.
    explore_before: bool,
}

impl Step {
    fn allowed_at(&self, fences_done: u64) -> &Allowed {
        if fences_done > self.start_fences {
            &self.after
        } else {
            &self.before
        }
    }
}

/// A workload to explore.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Name for reports.
    pub name: String,
    /// Journal geometry (keep it tiny: the state space grows with the lines touched).
    pub geo: Geometry,
    /// Commit protocol.
    pub mode: Mode,
    /// The main run: groups committed one after the other after `format`.
    pub groups: Vec<Group>,
    /// `after_recovery[k]` are the groups committed, one after the other, after a
    /// recovery at nesting depth `k` (0: after recovering from a crash of the main
    /// run). Exploration nests as deep as this has entries.
    pub after_recovery: Vec<Vec<Group>>,
}

/// How much of the crash-state space to visit.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Crash images checked per crash point of the main run: every image if there are
    /// at most this many, otherwise a random sample of this many.
    pub images: usize,
    /// Of those, per crash point, how many are continued with the after-recovery
    /// commits (the all-new and the all-old image first, then random ones).
    pub continued: usize,
    /// `images` for crash points reached after a recovery.
    pub nested_images: usize,
    /// `continued` for crash points reached after a recovery.
    pub nested_continued: usize,
    /// Visit each crash point of the main run with probability `num / den`.
    pub point_odds: (u64, u64),
    /// Whether to explore crashes in the first commit after a recovery before that
    /// commit's barrier. Turned off only by the tests that must stay green while the
    /// engine bug `crash_explorer::bug_*` documents is open.
    pub crash_before_first_barrier_after_recovery: bool,
}

/// Totals of the crash points at one nesting depth.
#[derive(Clone, Copy, Debug, Default)]
pub struct DepthStats {
    /// Crash points visited.
    pub points: u64,
    /// Of those, points whose every crash image was checked.
    pub exhaustive_points: u64,
    /// Crash images recovered and judged.
    pub images: u64,
    /// The most crash images one visited point allowed.
    pub max_images_at_a_point: u128,
}

/// Totals of one or more explorations.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// `depth[0]`: crash points of the main run; `depth[k]`: crash points reached
    /// after `k` recoveries.
    pub depth: Vec<DepthStats>,
    /// Recoveries continued with more commits and crashes.
    pub continued: u64,
    /// Violations found.
    pub violations: u64,
    /// Full descriptions of the first few violations.
    pub reports: Vec<String>,
}

impl Stats {
    fn at(&mut self, depth: usize) -> &mut DepthStats {
        if self.depth.len() <= depth {
            self.depth.resize(depth + 1, DepthStats::default());
        }
        &mut self.depth[depth]
    }

    /// Crash points visited, at every depth.
    pub fn points(&self) -> u64 {
        self.depth.iter().map(|d| d.points).sum()
    }

    /// Crash images recovered and judged, at every depth.
    pub fn images(&self) -> u64 {
        self.depth.iter().map(|d| d.images).sum()
    }

    /// Adds `other` to these totals.
    pub fn add(&mut self, other: &Stats) {
        for (k, d) in other.depth.iter().enumerate() {
            let mine = self.at(k);
            mine.points += d.points;
            mine.exhaustive_points += d.exhaustive_points;
            mine.images += d.images;
            mine.max_images_at_a_point = mine.max_images_at_a_point.max(d.max_images_at_a_point);
        }
        self.continued += other.continued;
        self.violations += other.violations;
        for r in &other.reports {
            if self.reports.len() < REPORTS_KEPT {
                self.reports.push(r.clone());
            }
        }
    }

    /// A few lines for `--nocapture` output.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} crash points, {} crash images recovered and checked, {} recoveries \
             continued, {} violations",
            self.points(),
            self.images(),
            self.continued,
            self.violations
        );
        for (k, d) in self.depth.iter().enumerate() {
            let when = match k {
                0 => "main run".to_string(),
                1 => "after 1 recovery".to_string(),
                k => format!("after {k} recoveries"),
            };
            let _ = write!(
                s,
                "\n    {when}: {} points ({} exhaustive), {} images, at most {} at one point",
                d.points, d.exhaustive_points, d.images, d.max_images_at_a_point
            );
        }
        s
    }
}

const REPORTS_KEPT: usize = 4;

/// Where a crash image comes from.
struct At<'a> {
    /// Recoveries that led to the run it was taken in (0: the main run).
    depth: usize,
    /// Descriptions of the crash images those recoveries started from.
    parents: &'a [String],
    step: &'a Step,
    point: &'a CrashPoint,
    selection: &'a Selection,
    /// Index of the image in `selection`.
    index: usize,
}

impl At<'_> {
    /// Describes the image: its step, crash point, and which version each pending
    /// line took.
    fn describe(&self) -> String {
        let p = self.point;
        let when = match p.kind {
            PointKind::BeforeFence => format!("before fence #{}", p.fences_done + 1),
            PointKind::AfterFence => format!("after fence #{}", p.fences_done),
            PointKind::Explicit => format!(
                "between fences #{} and #{}",
                p.fences_done,
                p.fences_done + 1
            ),
        };
        let sel = self.selection;
        let how = if sel.exhaustive { "all" } else { "a sample of" };
        format!(
            "{}, {when}: image {} of {} ({how} {} possible); lines: {}",
            self.step.name,
            self.index,
            sel.choices.len(),
            sel.total,
            describe_choice(&p.state, &sel.choices[self.index]),
        )
    }

    /// The crash images from the main run to this one, described.
    fn trail(&self) -> Vec<String> {
        let mut t = self.parents.to_vec();
        t.push(self.describe());
        t
    }
}

/// The journal type the explorer opens.
pub type Jrnl = Journal<Vec<Slot>, Vec<u8>>;

/// Opens (recovers) the journal of geometry `geo` on `pm`.
pub fn open<P: Pmem + ?Sized>(
    pm: &mut P,
    geo: &Geometry,
    mode: Mode,
) -> Result<(Jrnl, Plan), JournalError> {
    let n = geo.mj_count as usize;
    let mut scans = vec![SlotScan::Empty; n];
    let mut order = vec![0u32; n];
    let mut mj = vec![0u8; geo.mj_size as usize];
    let scratch = OpenScratch {
        scans: &mut scans,
        order: &mut order,
        mj: &mut mj,
    };
    let stage = vec![0u8; geo.mj_size as usize];
    Journal::open(pm, mode, vec![Slot::default(); n], stage, scratch)
}

/// Commits `group` as one group; returns the commit ids.
pub fn commit<P: Pmem + ?Sized>(
    j: &mut Jrnl,
    pm: &mut P,
    group: &[Tx],
) -> Result<Vec<u64>, JournalError> {
    let ranges: Vec<Vec<Range<'_>>> = group
        .iter()
        .map(|tx| {
            tx.iter()
                .map(|(offset, data)| Range {
                    offset: *offset,
                    data,
                })
                .collect()
        })
        .collect();
    let mut txs: Vec<&[Range<'_>]> = ranges.iter().map(|r| &r[..]).collect();
    let mut ids = vec![0u64; group.len()];
    j.commit(pm, &mut txs[..], &mut ids)?;
    Ok(ids)
}

/// Explores one scenario; see the module documentation.
pub struct Explorer {
    scenario: Scenario,
    budget: Budget,
    rng: Rng,
    stats: Stats,
}

/// A journal recovery attached, with its device and the recovered data region.
struct Attached {
    journal: Jrnl,
    sim: SimPmem,
    data: Vec<u8>,
}

/// The outcome of recovering one crash image.
enum Recovered {
    /// Did not attach, as allowed inside `format`.
    Detached,
    /// Attached with an allowed state.
    Ok(Box<Attached>),
    /// A violation (already recorded).
    Violation,
}

impl Explorer {
    /// An explorer of `scenario` within `budget`, drawing randomness from `seed`.
    pub fn new(scenario: Scenario, budget: Budget, seed: u64) -> Explorer {
        Explorer {
            scenario,
            budget,
            rng: Rng::new(seed),
            stats: Stats::default(),
        }
    }

    /// Explores the scenario on a faithful simulator.
    pub fn run(&mut self) -> &Stats {
        self.run_on(|sim| sim)
    }

    /// Explores the scenario with the main run on the device `make` builds around a
    /// fresh simulator (e.g. a fault-injecting one). Recoveries run on faithful
    /// simulators.
    pub fn run_on<D: Device>(&mut self, make: impl FnOnce(SimPmem) -> D) -> &Stats {
        let sc = self.scenario.clone();
        let geo = sc.geo;
        let mut dev = make(SimPmem::new(geo.dev_size));
        dev.sim().set_recording(true);
        let mut steps = Vec::new();

        let empty = State::new("the empty journal".into(), vec![0; geo.data_size as usize]);
        let unformatted = Allowed::DetachedOr(empty.clone());
        begin_step(
            &mut dev,
            &mut steps,
            "format".into(),
            unformatted.clone(),
            unformatted,
        );
        engine::format(&mut dev, geo, UUID).expect("format of the scenario's geometry");

        let fresh = Allowed::OneOf(vec![empty.clone()]);
        begin_step(
            &mut dev,
            &mut steps,
            "open after format".into(),
            fresh.clone(),
            fresh,
        );
        let (mut j, _) = open(&mut dev, &geo, sc.mode).expect("open of a fresh journal");

        let mut acked = empty;
        for (k, group) in sc.groups.iter().enumerate() {
            let first = j.next_id();
            let last = first + group.len() as u64 - 1;
            let next = State::new(
                format!("acknowledged through group #{k} (id {last})"),
                apply(&acked.data, group),
            );
            begin_step(
                &mut dev,
                &mut steps,
                format!("commit of group #{k} (ids {first}..={last})"),
                Allowed::OneOf(vec![acked.clone(), next.clone()]),
                Allowed::OneOf(vec![next.clone()]),
            );
            if let Err(e) = commit(&mut j, &mut dev, group) {
                panic!("{}: group #{k} refused ({e:?}): fix the scenario", sc.name);
            }
            acked = next;
            let visible = dev.sim().visible(geo.data_offset, geo.data_size as usize);
            if *visible != *acked.data {
                let mut r = format!("{}: after group #{k} the data region is wrong:", sc.name);
                describe_difference(&mut r, visible, &acked);
                self.violation(r);
            }
        }
        let end = Allowed::OneOf(vec![acked]);
        begin_step(
            &mut dev,
            &mut steps,
            "end of the run".into(),
            end.clone(),
            end,
        );
        dev.sim().record_point(PointKind::Explicit);

        let points = dev.sim().take_points();
        self.explore(&points, &steps, 0, &[]);
        &self.stats
    }

    /// Visits `points` of a run made of `steps`, at nesting `depth` (0: the main run).
    ///
    /// `parents` describes the crash images the recoveries leading to this run
    /// started from.
    fn explore(&mut self, points: &[CrashPoint], steps: &[Step], depth: usize, parents: &[String]) {
        let (limit, continued, odds) = if depth == 0 {
            (
                self.budget.images,
                self.budget.continued,
                self.budget.point_odds,
            )
        } else {
            (
                self.budget.nested_images,
                self.budget.nested_continued,
                (1, 1),
            )
        };
        let continued = if depth < self.scenario.after_recovery.len() {
            continued
        } else {
            0
        };
        for p in points {
            let step = &steps[p.tag];
            if p.fences_done == step.start_fences && !step.explore_before {
                continue;
            }
            if !self.rng.chance(odds.0, odds.1) {
                continue;
            }
            let allowed = step.allowed_at(p.fences_done);
            let sel = p.state.select(limit, &mut self.rng);
            let ds = self.stats.at(depth);
            ds.points += 1;
            ds.exhaustive_points += u64::from(sel.exhaustive);
            ds.max_images_at_a_point = ds.max_images_at_a_point.max(sel.total);

            // Continue the all-new image (everything pending reached the medium),
            // then the all-old one, then random others.
            let n = sel.choices.len();
            let mut keep = vec![false; n];
            let preferred = [1, 0]; // Where `select` puts the all-new and all-old images.
            for i in 0..continued.min(n) {
                let pick = match preferred.get(i) {
                    Some(&p) if p < n => p,
                    _ => self.rng.index(n),
                };
                keep[pick] = true;
            }

            for (index, choice) in sel.choices.iter().enumerate() {
                let image = p.state.image(choice);
                let at = At {
                    depth,
                    parents,
                    step,
                    point: p,
                    selection: &sel,
                    index,
                };
                if keep[index] {
                    self.continue_from(image, allowed, &at);
                } else {
                    self.recover(image, false, allowed, &at);
                }
            }
        }
    }

    /// Recovers `image` (taken `at` a crash point) and judges the result.
    fn recover(
        &mut self,
        image: Vec<u8>,
        record: bool,
        allowed: &Allowed,
        at: &At<'_>,
    ) -> Recovered {
        let geo = self.scenario.geo;
        self.stats.at(at.depth).images += 1;
        let mut sim = SimPmem::from_image(image);
        sim.set_recording(record);
        let result = open(&mut sim, &geo, self.scenario.mode);
        let mut report = String::new();
        let outcome = match (result, allowed) {
            (Err(JournalError::Format(_)), Allowed::DetachedOr(_)) => Recovered::Detached,
            (Err(e), _) => {
                let _ = write!(report, "recovery failed: {e:?}");
                Recovered::Violation
            }
            (Ok((journal, plan)), allowed) => {
                let data = sim
                    .visible(geo.data_offset, geo.data_size as usize)
                    .to_vec();
                let states = match allowed {
                    Allowed::DetachedOr(s) => std::slice::from_ref(s),
                    Allowed::OneOf(v) => &v[..],
                };
                if states.iter().any(|s| *s.data == *data) {
                    Recovered::Ok(Box::new(Attached { journal, sim, data }))
                } else {
                    let _ = write!(report, "recovered to a state that is not allowed; {plan:?}");
                    for s in states {
                        describe_difference(&mut report, &data, s);
                    }
                    Recovered::Violation
                }
            }
        };
        if let Recovered::Violation = outcome {
            let mut r = format!(
                "{} ({:?}): {report}",
                self.scenario.name, self.scenario.mode
            );
            let _ = write!(
                r,
                "\n  crash image (lines as device offset:version taken/versions pending, \
                 0 = durable):\n    {}",
                at.trail().join("\n -> ")
            );
            self.violation(r);
        }
        outcome
    }

    /// Recovers `image` (taken `at` a crash point) on a recording simulator, commits
    /// the after-recovery groups of this depth, and explores the crash points of that
    /// run.
    fn continue_from(&mut self, image: Vec<u8>, allowed: &Allowed, at: &At<'_>) {
        let depth = at.depth;
        // The recovery's own crash points are judged like the crash it recovers from.
        let mut steps = vec![Step {
            name: "recovery".into(),
            start_fences: 0,
            before: allowed.clone(),
            after: allowed.clone(),
            explore_before: true,
        }];
        let (mut journal, mut sim, data) = match self.recover(image, true, allowed, at) {
            Recovered::Ok(a) => (a.journal, a.sim, a.data),
            Recovered::Detached | Recovered::Violation => return,
        };
        self.stats.continued += 1;
        let trail = at.trail();
        // A crash right after recovery returned must recover the same state: nothing
        // recovery replayed may still be pending.
        let mut acked = State::new("the recovered state".into(), data);
        let returned = Allowed::OneOf(vec![acked.clone()]);
        begin_step(
            &mut sim,
            &mut steps,
            "recovery returned".into(),
            returned.clone(),
            returned,
        );
        sim.record_point(PointKind::Explicit);
        for (k, group) in self.scenario.after_recovery[depth]
            .clone()
            .iter()
            .enumerate()
        {
            let next = State::new(
                format!("the recovered state + after-recovery group #{k}"),
                apply(&acked.data, group),
            );
            let first = journal.next_id();
            begin_step(
                &mut sim,
                &mut steps,
                format!("commit #{k} after recovery (ids from {first})"),
                Allowed::OneOf(vec![acked, next.clone()]),
                Allowed::OneOf(vec![next.clone()]),
            );
            if k == 0 {
                steps.last_mut().expect("a step").explore_before =
                    self.budget.crash_before_first_barrier_after_recovery;
            }
            if let Err(e) = commit(&mut journal, &mut sim, group) {
                let r = format!(
                    "{} ({:?}): the journal is unusable after recovery: commit failed: \
                     {e:?}\n  crash image: {}",
                    self.scenario.name,
                    self.scenario.mode,
                    trail.join("\n   -> ")
                );
                self.violation(r);
                return;
            }
            acked = next;
        }
        let end = Allowed::OneOf(vec![acked]);
        begin_step(
            &mut sim,
            &mut steps,
            "end of the run after recovery".into(),
            end.clone(),
            end,
        );
        sim.record_point(PointKind::Explicit);
        let points = sim.take_points();
        self.explore(&points, &steps, depth + 1, &trail);
    }

    fn violation(&mut self, report: String) {
        self.stats.violations += 1;
        if self.stats.reports.len() < REPORTS_KEPT {
            self.stats.reports.push(report);
        }
    }
}

/// Starts a step: tags the crash points taken from now on with it.
fn begin_step<D: Device + ?Sized>(
    dev: &mut D,
    steps: &mut Vec<Step>,
    name: String,
    before: Allowed,
    after: Allowed,
) {
    let sim = dev.sim();
    sim.set_tag(steps.len());
    steps.push(Step {
        name,
        start_fences: sim.fences(),
        before,
        after,
        explore_before: true,
    });
}

/// Which version each pending line of an image took, as `offset:taken/pending`.
fn describe_choice(state: &CrashState, choice: &Choice) -> String {
    let mut s = String::new();
    for (i, (line, versions)) in state.lines().enumerate() {
        let _ = write!(
            s,
            "{}{:#x}:{}/{}",
            if i == 0 { "" } else { " " },
            line,
            choice[i],
            versions
        );
    }
    if s.is_empty() {
        s.push_str("nothing pending");
    }
    s
}

fn describe_difference(out: &mut String, got: &[u8], want: &State) {
    match got.iter().zip(want.data.iter()).position(|(a, b)| a != b) {
        None => {
            let _ = write!(out, "\n    equal to {}", want.name);
        }
        Some(at) => {
            let end = (at + 8).min(got.len());
            let _ = write!(
                out,
                "\n    vs {}: first difference at data offset {at}: got {:02x?}, want {:02x?}",
                want.name,
                &got[at..end],
                &want.data[at..end]
            );
        }
    }
}
