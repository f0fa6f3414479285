//! A simulated persistent memory that knows what a crash may leave behind.
//!
//! The device is a byte array kept twice: the *visible* image (what loads see, i.e.
//! the CPU's view including its caches) and the *durable* image (what is on the
//! medium). The persistence granule is a 64-byte cache line:
//!
//! - [`Pmem::write_flushed`] updates the visible image and, for every line it touches,
//!   records the line's new content as a *pending version*. Every version written
//!   since the last fence is kept, because the hardware may write a line back at any
//!   moment (eviction, an earlier `clwb`), so any of them may be what reached the
//!   medium.
//! - [`Pmem::fence`] makes the latest version of every pending line durable and
//!   clears the pending set.
//!
//! A crash at any moment therefore leaves, for each pending line independently, either
//! its durable content or one of its pending versions; nothing is ordered between
//! lines inside one fence interval. A [`CrashState`] captures that set of possible
//! *crash images*; it can enumerate them all (the product over pending lines of
//! `{durable, version 1, ..}`) or sample them when the product is too large.
//!
//! With recording on, the simulator takes a [`CrashPoint`] just before and just after
//! every fence. "Just before" covers every crash inside the preceding fence interval:
//! a crash earlier in the interval can only leave fewer versions per line, and those
//! images are all among the ones "just before" allows.
//!
//! [`Faulty`] wraps the simulator and breaks one promise of the [`Pmem`] contract, to
//! show that the explorer notices.

use memkit_core::journal::pmem::Pmem;
use std::collections::{BTreeMap, HashSet};

use super::rng::Rng;

/// Bytes of a cache line: the unit of persistence.
pub const LINE: usize = 64;

type Line = [u8; LINE];

/// Where a crash point was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointKind {
    /// Just before a fence: everything written since the previous fence is pending.
    BeforeFence,
    /// Just after a fence: nothing is pending.
    AfterFence,
    /// Taken explicitly (the end of a workload: its last in-place writes are pending).
    Explicit,
}

/// The persistence state at one moment: the durable image, and for each line written
/// since the last fence, the distinct contents a crash may leave in it.
#[derive(Clone, Debug)]
pub struct CrashState {
    durable: Vec<u8>,
    /// `(line index, versions)`: versions differ from the durable line and from each
    /// other, oldest first.
    pending: Vec<(usize, Vec<Line>)>,
}

/// One crash image of a [`CrashState`]: for pending line `i`, `choice[i] == 0` keeps
/// the durable content and `choice[i] == k` takes version `k`.
pub type Choice = Vec<usize>;

/// The crash images selected from a [`CrashState`].
#[derive(Clone, Debug)]
pub struct Selection {
    /// The images, as choices; the first keeps every line durable, the second (when
    /// there is more than one image) takes every line's latest version.
    pub choices: Vec<Choice>,
    /// How many images the state allows (saturating).
    pub total: u128,
    /// Whether `choices` is every image.
    pub exhaustive: bool,
}

impl CrashState {
    /// How many distinct crash images this state allows (saturating at `u128::MAX`).
    pub fn image_count(&self) -> u128 {
        self.pending
            .iter()
            .fold(1u128, |n, (_, v)| n.saturating_mul(v.len() as u128 + 1))
    }

    /// The lines that may differ between crash images: `(device offset, number of
    /// pending versions)`, in the order of a [`Choice`].
    pub fn lines(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.pending
            .iter()
            .map(|(line, v)| ((line * LINE) as u64, v.len()))
    }

    /// The crash image `choice` selects.
    pub fn image(&self, choice: &[usize]) -> Vec<u8> {
        assert_eq!(
            choice.len(),
            self.pending.len(),
            "one choice per pending line"
        );
        let mut img = self.durable.clone();
        for (&(line, ref versions), &c) in self.pending.iter().zip(choice) {
            if c > 0 {
                img[line * LINE..(line + 1) * LINE].copy_from_slice(&versions[c - 1]);
            }
        }
        img
    }

    /// Every crash image if there are at most `limit`, otherwise `limit` distinct
    /// images drawn at random (always including "nothing pending reached the medium"
    /// and "everything did").
    pub fn select(&self, limit: usize, rng: &mut Rng) -> Selection {
        let radix: Vec<usize> = self.pending.iter().map(|(_, v)| v.len() + 1).collect();
        let total = self.image_count();
        if total <= limit as u128 {
            return Selection {
                choices: all_choices(&radix, total as usize),
                total,
                exhaustive: true,
            };
        }
        let mut choices = vec![vec![0; radix.len()], radix.iter().map(|r| r - 1).collect()];
        let mut seen: HashSet<Choice> = choices.iter().cloned().collect();
        // The space is larger than `limit`, so this terminates quickly.
        while choices.len() < limit {
            let c: Choice = radix.iter().map(|&r| rng.index(r)).collect();
            if seen.insert(c.clone()) {
                choices.push(c);
            }
        }
        Selection {
            choices,
            total,
            exhaustive: false,
        }
    }
}

/// Every choice vector for the mixed radix `radix`, the all-zero one first and the
/// all-maximum one second.
fn all_choices(radix: &[usize], total: usize) -> Vec<Choice> {
    let mut out = Vec::with_capacity(total);
    let mut c = vec![0; radix.len()];
    loop {
        out.push(c.clone());
        // Increment, least significant position first.
        let mut i = 0;
        while i < radix.len() {
            c[i] += 1;
            if c[i] < radix[i] {
                break;
            }
            c[i] = 0;
            i += 1;
        }
        if i == radix.len() {
            break;
        }
    }
    if out.len() > 1 {
        // The all-maximum choice is the last one counted.
        let last = out.pop().expect("non-empty");
        out.insert(1, last);
    }
    out
}

/// A crash point: where it was taken, and what a crash there may leave.
#[derive(Clone, Debug)]
pub struct CrashPoint {
    /// The tag the driver had set ([`SimPmem::set_tag`]): which step of the workload.
    pub tag: usize,
    /// Fences completed when the point was taken.
    pub fences_done: u64,
    /// Before or after a fence, or explicit.
    pub kind: PointKind,
    /// The possible crash images.
    pub state: CrashState,
}

/// The simulated persistent memory. See the module documentation.
#[derive(Clone, Debug)]
pub struct SimPmem {
    visible: Vec<u8>,
    durable: Vec<u8>,
    /// Line index -> every version written since the last fence, oldest first.
    pending: BTreeMap<usize, Vec<Line>>,
    fences: u64,
    recording: bool,
    tag: usize,
    points: Vec<CrashPoint>,
}

impl SimPmem {
    /// A zero-filled device of `len` bytes (a multiple of [`LINE`]).
    pub fn new(len: u64) -> SimPmem {
        SimPmem::from_image(vec![0; len as usize])
    }

    /// A device whose medium holds `image` (e.g. a crash image), nothing pending.
    pub fn from_image(image: Vec<u8>) -> SimPmem {
        assert_eq!(image.len() % LINE, 0, "device length must be whole lines");
        SimPmem {
            visible: image.clone(),
            durable: image,
            pending: BTreeMap::new(),
            fences: 0,
            recording: false,
            tag: 0,
            points: Vec::new(),
        }
    }

    /// Fences issued so far.
    pub fn fences(&self) -> u64 {
        self.fences
    }

    /// Turns crash-point recording at fences on or off.
    pub fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    /// Tags the crash points recorded from now on.
    pub fn set_tag(&mut self, tag: usize) {
        self.tag = tag;
    }

    /// The crash points recorded so far, removed from the simulator.
    pub fn take_points(&mut self) -> Vec<CrashPoint> {
        std::mem::take(&mut self.points)
    }

    /// The visible bytes at `off`.
    pub fn visible(&self, off: u64, len: usize) -> &[u8] {
        &self.visible[off as usize..off as usize + len]
    }

    /// What a crash right now may leave.
    pub fn crash_state(&self) -> CrashState {
        let pending = self
            .pending
            .iter()
            .filter_map(|(&line, versions)| {
                let durable = &self.durable[line * LINE..(line + 1) * LINE];
                let mut distinct: Vec<Line> = Vec::new();
                for v in versions {
                    if v[..] != *durable && !distinct.contains(v) {
                        distinct.push(*v);
                    }
                }
                (!distinct.is_empty()).then_some((line, distinct))
            })
            .collect();
        CrashState {
            durable: self.durable.clone(),
            pending,
        }
    }

    /// Records a crash point now (if recording).
    pub fn record_point(&mut self, kind: PointKind) {
        if self.recording {
            let point = CrashPoint {
                tag: self.tag,
                fences_done: self.fences,
                kind,
                state: self.crash_state(),
            };
            self.points.push(point);
        }
    }

    /// Stores `data` at `off` in the visible image only: the lines are never written
    /// back (a fault: a store that skipped the flush).
    pub fn write_unflushed(&mut self, off: u64, data: &[u8]) {
        let off = off as usize;
        self.visible[off..off + data.len()].copy_from_slice(data);
    }

    /// A fence that orders nothing: crash points are recorded and the fence counted,
    /// but no pending line becomes durable (a fault: a lost barrier).
    pub fn fence_lost(&mut self) {
        self.record_point(PointKind::BeforeFence);
        self.fences += 1;
        self.record_point(PointKind::AfterFence);
    }
}

impl Pmem for SimPmem {
    fn len(&self) -> u64 {
        self.visible.len() as u64
    }

    fn read(&self, off: u64, buf: &mut [u8]) {
        let off = off as usize;
        buf.copy_from_slice(&self.visible[off..off + buf.len()]);
    }

    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let start = off as usize;
        let end = start + data.len();
        self.visible[start..end].copy_from_slice(data);
        for line in start / LINE..end.div_ceil(LINE) {
            let mut content = [0u8; LINE];
            content.copy_from_slice(&self.visible[line * LINE..(line + 1) * LINE]);
            let versions = self.pending.entry(line).or_default();
            if versions.last() != Some(&content) {
                versions.push(content);
            }
        }
    }

    fn fence(&mut self) {
        self.record_point(PointKind::BeforeFence);
        for (&line, versions) in &self.pending {
            let latest = versions.last().expect("pending lines have a version");
            self.durable[line * LINE..(line + 1) * LINE].copy_from_slice(latest);
        }
        self.pending.clear();
        self.fences += 1;
        self.record_point(PointKind::AfterFence);
    }
}

/// A device the explorer can run a workload on: a [`Pmem`] backed by a [`SimPmem`]
/// that records the crash points.
pub trait Device: Pmem {
    /// The simulator underneath.
    fn sim(&mut self) -> &mut SimPmem;
}

impl Device for SimPmem {
    fn sim(&mut self) -> &mut SimPmem {
        self
    }
}

/// The broken promise a [`Faulty`] device injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every fence after the first `keep` is lost: it returns without making anything
    /// durable (a missing `sfence`, or a device flush that is never sent).
    FencesLostAfter {
        /// Fences that still work (e.g. those of `format`).
        keep: u64,
    },
    /// Stores at or after `from` (the data region: the in-place writes) reach the
    /// visible image but are never written back.
    UnflushedFrom {
        /// First device offset affected.
        from: u64,
    },
}

/// A [`SimPmem`] that breaks one promise of the [`Pmem`] contract.
#[derive(Debug)]
pub struct Faulty {
    sim: SimPmem,
    fault: Fault,
}

impl Faulty {
    /// Wraps `sim`, injecting `fault`.
    pub fn new(sim: SimPmem, fault: Fault) -> Faulty {
        Faulty { sim, fault }
    }
}

impl Pmem for Faulty {
    fn len(&self) -> u64 {
        self.sim.len()
    }

    fn read(&self, off: u64, buf: &mut [u8]) {
        self.sim.read(off, buf);
    }

    fn write_flushed(&mut self, off: u64, data: &[u8]) {
        match self.fault {
            Fault::UnflushedFrom { from } if off >= from => self.sim.write_unflushed(off, data),
            _ => self.sim.write_flushed(off, data),
        }
    }

    fn fence(&mut self) {
        match self.fault {
            Fault::FencesLostAfter { keep } if self.sim.fences() >= keep => self.sim.fence_lost(),
            _ => self.sim.fence(),
        }
    }
}

impl Device for Faulty {
    fn sim(&mut self) -> &mut SimPmem {
        &mut self.sim
    }
}
