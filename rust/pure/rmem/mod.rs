// SPDX-License-Identifier: GPL-2.0

//! Remote-memory regions: argument checks, the emulated link, access history, clock
//! eviction and the prefetch policies.
//!
//! A region of `pages` pages lives in a remote store (the in-kernel emulated backend
//! or a userspace agent); at most `budget` of them are local at once. A fault on a
//! non-local page fetches it and, depending on the [`Policy`], prefetches others
//! ([`Planner::plan`]); when the budget is full a page is evicted by the clock
//! ([`clock_pick`]). Everything here works on plain numbers; the kernel side walks the
//! page tables, keeps the per-page arrays and does the copies.

use super::abi::{self, RmemConfig};

mod link;
mod policy;

pub use link::{lat_bucket, Link};
pub use policy::{Fault, Planner};

/// PTEs in one 64-byte cache line of 8-byte PTEs.
pub const PTES_PER_LINE: u64 = 8;
/// PTEs in one page table (a 4 KiB page of 8-byte PTEs).
pub const PTES_PER_TABLE: u64 = 512;
/// Bytes per page.
pub const PAGE_SIZE: u64 = 4096;
/// Most candidates one fault's plan holds: [`abi::RMEM_MAX_DEGREE`].
pub const MAX_CANDIDATES: usize = abi::RMEM_MAX_DEGREE as usize;

/// `EINVAL`.
pub const EINVAL: i32 = abi::EINVAL;
/// `EFBIG`, the same on every Linux architecture: the region is too large.
pub const EFBIG: i32 = 27;

/// Where a region's pages live when they are not local.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The in-kernel store with a latency model ([`Link`]).
    Emulated,
    /// A userspace agent serves the region's file.
    Agent,
}

impl Backend {
    /// The backend of `memkit_rmem_config.backend`, if it is one (`RMEM_BACKEND_*`).
    pub fn from_abi(v: u32) -> Option<Backend> {
        match v {
            abi::RMEM_BACKEND_EMULATED => Some(Backend::Emulated),
            abi::RMEM_BACKEND_AGENT => Some(Backend::Agent),
            _ => None,
        }
    }

    /// The backend's name, as `fdinfo` and the tools spell it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Emulated => "emulated",
            Backend::Agent => "agent",
        }
    }
}

/// How a fault chooses the pages to prefetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No prefetch.
    None,
    /// The other PTEs of the faulting PTE line.
    Ptline,
    /// The faulting PTE line and the adjacent one, most used (by history) first.
    PtlineHistory,
    /// An adaptive window around the fault (Linux swap VMA readahead).
    Window,
    /// The majority trend of the recent fault deltas (Leap).
    Trend,
}

impl Policy {
    /// Every policy, in `RMEM_POLICY_*` order.
    pub const ALL: [Policy; abi::RMEM_POLICIES as usize] = [
        Policy::None,
        Policy::Ptline,
        Policy::PtlineHistory,
        Policy::Window,
        Policy::Trend,
    ];

    /// The policy of `memkit_rmem_config.policy`, if it is one (`RMEM_POLICY_*`).
    pub fn from_abi(v: u32) -> Option<Policy> {
        match v {
            abi::RMEM_POLICY_NONE => Some(Policy::None),
            abi::RMEM_POLICY_PTLINE => Some(Policy::Ptline),
            abi::RMEM_POLICY_PTLINE_HISTORY => Some(Policy::PtlineHistory),
            abi::RMEM_POLICY_WINDOW => Some(Policy::Window),
            abi::RMEM_POLICY_TREND => Some(Policy::Trend),
            _ => None,
        }
    }

    /// The policy's `RMEM_POLICY_*` value.
    pub fn to_abi(self) -> u32 {
        match self {
            Policy::None => abi::RMEM_POLICY_NONE,
            Policy::Ptline => abi::RMEM_POLICY_PTLINE,
            Policy::PtlineHistory => abi::RMEM_POLICY_PTLINE_HISTORY,
            Policy::Window => abi::RMEM_POLICY_WINDOW,
            Policy::Trend => abi::RMEM_POLICY_TREND,
        }
    }

    /// The policy's name, as the tools spell it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::Ptline => "ptline",
            Policy::PtlineHistory => "ptline-history",
            Policy::Window => "window",
            Policy::Trend => "trend",
        }
    }

    /// The policy called `name` (see [`Policy::name`]).
    pub fn from_name(name: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A checked `memkit_rmem_config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Region size in pages.
    pub pages: u64,
    /// Most local pages at once (1 to `pages`).
    pub budget: u64,
    /// Where non-local pages live.
    pub backend: Backend,
    /// The prefetch policy.
    pub policy: Policy,
    /// Prefetch deadline in ns (0: none).
    pub deadline_ns: u64,
    /// Most prefetches per fault (up to [`abi::RMEM_MAX_DEGREE`]).
    pub degree: u32,
    /// Most requests in flight (1 to [`abi::RMEM_MAX_INFLIGHT`]).
    pub max_inflight: u32,
    /// Emulated backend: latency of every request, ns (agent: 0).
    pub lat_base_ns: u64,
    /// Emulated backend: transfer time per page, ns (agent: 0).
    pub lat_page_ns: u64,
    /// `RMEM_KEEP_LATE`: keep a late prefetch's data as a local copy.
    pub keep_late: bool,
}

/// Checks the input fields of `MEMKIT_IOC_RMEM_CONFIGURE` (the struct's size is
/// checked by [`abi::plan_copy_in`] before) and returns them as a [`Config`].
///
/// Errors are positive errnos, checked in this order: unknown flags (`EINVAL`);
/// `bytes` zero or not a multiple of [`PAGE_SIZE`] (`EINVAL`); `bytes` above
/// [`abi::RMEM_MAX_BYTES`] ([`EFBIG`]); `budget` zero, above the region's pages or
/// above [`abi::RMEM_MAX_BUDGET`]; unknown backend or policy; `deadline_ns` above
/// [`abi::RMEM_MAX_NS`]; `degree` above [`abi::RMEM_MAX_DEGREE`]; `max_inflight` zero
/// or above [`abi::RMEM_MAX_INFLIGHT`]; emulated latencies above [`abi::RMEM_MAX_NS`]
/// (base) or [`abi::RMEM_MAX_PAGE_NS`] (per page), or any latency for the agent
/// backend; a non-zero `mmap_offset` (all `EINVAL`).
pub fn check_config(c: &RmemConfig) -> Result<Config, i32> {
    if c.flags & !abi::RMEM_CONFIG_FLAGS != 0 {
        return Err(EINVAL);
    }
    if c.bytes == 0 || !c.bytes.is_multiple_of(PAGE_SIZE) {
        return Err(EINVAL);
    }
    if c.bytes > abi::RMEM_MAX_BYTES {
        return Err(EFBIG);
    }
    let pages = c.bytes / PAGE_SIZE;
    if c.budget == 0 || c.budget > pages || c.budget > abi::RMEM_MAX_BUDGET {
        return Err(EINVAL);
    }
    let backend = Backend::from_abi(c.backend).ok_or(EINVAL)?;
    let policy = Policy::from_abi(c.policy).ok_or(EINVAL)?;
    if c.deadline_ns > abi::RMEM_MAX_NS
        || c.degree > abi::RMEM_MAX_DEGREE
        || c.max_inflight == 0
        || c.max_inflight > abi::RMEM_MAX_INFLIGHT
    {
        return Err(EINVAL);
    }
    let latency_ok = match backend {
        Backend::Emulated => {
            c.lat_base_ns <= abi::RMEM_MAX_NS && c.lat_page_ns <= abi::RMEM_MAX_PAGE_NS
        }
        Backend::Agent => c.lat_base_ns == 0 && c.lat_page_ns == 0,
    };
    if !latency_ok || c.mmap_offset != 0 {
        return Err(EINVAL);
    }
    Ok(Config {
        pages,
        budget: c.budget,
        backend,
        policy,
        deadline_ns: c.deadline_ns,
        degree: c.degree,
        max_inflight: c.max_inflight,
        lat_base_ns: c.lat_base_ns,
        lat_page_ns: c.lat_page_ns,
        keep_late: c.flags & abi::RMEM_KEEP_LATE != 0,
    })
}

/// A page's access history after a fault on it.
///
/// The history byte counts faults and accessed bits, decaying at each eviction: a
/// fault adds 2 (saturating), an eviction halves it and adds 1 if the page's accessed
/// bit was set ([`history_on_evict`]). Higher means more used.
pub fn history_on_fault(h: u8) -> u8 {
    h.saturating_add(2)
}

/// A page's access history after its eviction, `accessed` being its accessed bit:
/// fault counts and accessed bits, decaying at each eviction (see
/// [`history_on_fault`]).
pub fn history_on_evict(h: u8, accessed: bool) -> u8 {
    (h >> 1).saturating_add(u8::from(accessed))
}

/// What the clock found at a slot (see [`clock_pick`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Not evictable now (not local, busy, pinned): the hand moves on.
    Skip,
    /// Recently referenced: a second chance (the probe has cleared the bit).
    Referenced,
    /// Evict this one.
    Victim,
}

/// Clock eviction over the slots `0..n`: probes slots circularly from `*hand` and
/// returns the first one `probe` calls [`Probe::Victim`], leaving the hand past it.
///
/// [`Probe::Referenced`] slots get a second chance (the probe clears their bit, so the
/// next turn can take them); [`Probe::Skip`] slots are passed over. Gives up (`None`)
/// after `2 * n` probes, the hand left where it stopped; `None` at once if `n` is 0.
pub fn clock_pick(hand: &mut u64, n: u64, mut probe: impl FnMut(u64) -> Probe) -> Option<u64> {
    if n == 0 {
        return None;
    }
    if *hand >= n {
        *hand = 0;
    }
    for _ in 0..n.saturating_mul(2) {
        let slot = *hand;
        // `slot < n`, so `slot + 1` does not overflow.
        *hand = if slot + 1 >= n { 0 } else { slot + 1 };
        if probe(slot) == Probe::Victim {
            return Some(slot);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn valid() -> RmemConfig {
        RmemConfig {
            size: 72,
            flags: abi::RMEM_KEEP_LATE,
            bytes: 1 << 20,
            budget: 64,
            backend: abi::RMEM_BACKEND_EMULATED,
            policy: abi::RMEM_POLICY_TREND,
            deadline_ns: 50_000,
            degree: 8,
            max_inflight: 16,
            lat_base_ns: 3_000,
            lat_page_ns: 400,
            mmap_offset: 0,
        }
    }

    #[test]
    fn a_valid_config() {
        assert_eq!(
            check_config(&valid()),
            Ok(Config {
                pages: 256,
                budget: 64,
                backend: Backend::Emulated,
                policy: Policy::Trend,
                deadline_ns: 50_000,
                degree: 8,
                max_inflight: 16,
                lat_base_ns: 3_000,
                lat_page_ns: 400,
                keep_late: true,
            })
        );
        let agent = RmemConfig {
            flags: 0,
            backend: abi::RMEM_BACKEND_AGENT,
            policy: abi::RMEM_POLICY_NONE,
            lat_base_ns: 0,
            lat_page_ns: 0,
            ..valid()
        };
        let c = check_config(&agent).unwrap();
        assert_eq!(
            (c.backend, c.policy, c.keep_late),
            (Backend::Agent, Policy::None, false)
        );
        // The limits themselves are accepted.
        let max = RmemConfig {
            bytes: abi::RMEM_MAX_BYTES,
            budget: abi::RMEM_MAX_BUDGET,
            deadline_ns: abi::RMEM_MAX_NS,
            degree: abi::RMEM_MAX_DEGREE,
            max_inflight: abi::RMEM_MAX_INFLIGHT,
            lat_base_ns: abi::RMEM_MAX_NS,
            lat_page_ns: abi::RMEM_MAX_PAGE_NS,
            ..valid()
        };
        assert_eq!(check_config(&max).map(|c| c.pages), Ok(1 << 20));
        let small = RmemConfig {
            bytes: 4096,
            budget: 1,
            degree: 0,
            max_inflight: 1,
            deadline_ns: 0,
            ..valid()
        };
        assert_eq!(check_config(&small).map(|c| c.pages), Ok(1));
    }

    #[test]
    fn every_config_error() {
        let v = valid();
        let bad: [(RmemConfig, i32); 22] = [
            (RmemConfig { flags: 2, ..v }, EINVAL),
            (RmemConfig { flags: !0, ..v }, EINVAL),
            (RmemConfig { bytes: 0, ..v }, EINVAL),
            (RmemConfig { bytes: 4095, ..v }, EINVAL),
            (
                RmemConfig {
                    bytes: (1 << 20) + 1,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    bytes: abi::RMEM_MAX_BYTES + 4096,
                    ..v
                },
                EFBIG,
            ),
            (RmemConfig { bytes: !4095, ..v }, EFBIG),
            (RmemConfig { budget: 0, ..v }, EINVAL),
            (RmemConfig { budget: 257, ..v }, EINVAL),
            (
                RmemConfig {
                    bytes: abi::RMEM_MAX_BYTES,
                    budget: abi::RMEM_MAX_BUDGET + 1,
                    ..v
                },
                EINVAL,
            ),
            (RmemConfig { backend: 2, ..v }, EINVAL),
            (
                RmemConfig {
                    policy: abi::RMEM_POLICIES,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    deadline_ns: abi::RMEM_MAX_NS + 1,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    degree: abi::RMEM_MAX_DEGREE + 1,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    max_inflight: 0,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    max_inflight: abi::RMEM_MAX_INFLIGHT + 1,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    lat_base_ns: abi::RMEM_MAX_NS + 1,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    lat_page_ns: abi::RMEM_MAX_PAGE_NS + 1,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    backend: abi::RMEM_BACKEND_AGENT,
                    lat_page_ns: 0,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    backend: abi::RMEM_BACKEND_AGENT,
                    lat_base_ns: 0,
                    ..v
                },
                EINVAL,
            ),
            (
                RmemConfig {
                    mmap_offset: 1 << 30,
                    ..v
                },
                EINVAL,
            ),
            // A size that is both too big and unaligned is unaligned first.
            (
                RmemConfig {
                    bytes: u64::MAX,
                    ..v
                },
                EINVAL,
            ),
        ];
        for (i, (c, errno)) in bad.iter().enumerate() {
            assert_eq!(check_config(c), Err(*errno), "case {i}: {c:?}");
        }
    }

    #[test]
    fn policy_names_and_values() {
        for (i, p) in Policy::ALL.into_iter().enumerate() {
            let v = u32::try_from(i).unwrap();
            assert_eq!(p.to_abi(), v);
            assert_eq!(Policy::from_abi(v), Some(p));
            assert_eq!(Policy::from_name(p.name()), Some(p));
        }
        let names: Vec<_> = Policy::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            ["none", "ptline", "ptline-history", "window", "trend"]
        );
        assert_eq!(Policy::from_abi(abi::RMEM_POLICIES), None);
        assert_eq!(Policy::from_name("Trend"), None);
        assert_eq!(Policy::from_name(""), None);
        assert_eq!(
            Backend::from_abi(abi::RMEM_BACKEND_AGENT),
            Some(Backend::Agent)
        );
        assert_eq!(Backend::from_abi(7), None);
    }

    #[test]
    fn history_counts_and_decays() {
        assert_eq!(history_on_fault(0), 2);
        assert_eq!(history_on_fault(254), 255);
        assert_eq!(history_on_fault(255), 255);
        assert_eq!(history_on_evict(2, false), 1);
        assert_eq!(history_on_evict(2, true), 2);
        assert_eq!(history_on_evict(255, true), 128);
        assert_eq!(history_on_evict(1, false), 0);
        // A page faulted on repeatedly outranks one faulted on once.
        let often = (0..3).fold(0, |h, _| history_on_evict(history_on_fault(h), true));
        let once = history_on_evict(history_on_fault(0), false);
        assert!(often > once);
    }

    #[test]
    fn clock_gives_a_second_chance() {
        // Slot 0 referenced, 1 skipped, 2 referenced, 3 victim.
        let mut referenced = [true, false, true, false];
        let mut hand = 0;
        let mut probe = |s: u64| {
            let s = s as usize;
            if s == 1 {
                Probe::Skip
            } else if referenced[s] {
                referenced[s] = false;
                Probe::Referenced
            } else {
                Probe::Victim
            }
        };
        assert_eq!(clock_pick(&mut hand, 4, &mut probe), Some(3));
        assert_eq!(hand, 0);
        // Slot 0 lost its bit on the first turn: it goes next.
        assert_eq!(clock_pick(&mut hand, 4, &mut probe), Some(0));
        assert_eq!(hand, 1);
        assert_eq!(clock_pick(&mut hand, 4, &mut probe), Some(2));
        assert_eq!(hand, 3);
    }

    #[test]
    fn clock_takes_all_referenced_on_the_second_turn() {
        let mut referenced = [true; 3];
        let mut hand = 1;
        let got = clock_pick(&mut hand, 3, |s| {
            if core::mem::take(&mut referenced[s as usize]) {
                Probe::Referenced
            } else {
                Probe::Victim
            }
        });
        assert_eq!(got, Some(1));
        assert_eq!(hand, 2);
    }

    #[test]
    fn clock_gives_up() {
        let mut probes = 0;
        let mut hand = 2;
        assert_eq!(
            clock_pick(&mut hand, 5, |_| {
                probes += 1;
                Probe::Skip
            }),
            None
        );
        assert_eq!(probes, 10);
        assert_eq!(hand, 2);
        assert_eq!(clock_pick(&mut hand, 0, |_| Probe::Victim), None);
        // A hand past the end (the region shrank) restarts at 0.
        let mut hand = 9;
        assert_eq!(clock_pick(&mut hand, 3, |_| Probe::Victim), Some(0));
        assert_eq!(hand, 1);
    }
}
