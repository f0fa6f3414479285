//! Workloads shared by the tools and benchmarks: a random generator, a Zipf
//! distribution over pages, and the access-pattern program of remote-memory regions
//! (`memkit workload rmem-run`, the benchmark and its swap peer run the same code).

use crate::dev::{CkptMap, CKPT_PAGE_SIZE};
use std::time::Instant;

/// splitmix64: a small, good generator.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf ranks over `n` items by inverse CDF, mapped to scattered pages.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` items with exponent `s`.
    pub fn new(n: u64, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Zipf { cdf }
    }

    /// A page: rank from the distribution, scattered by an odd multiplier.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let rank = self.cdf.partition_point(|&c| c < u) as u64;
        let n = self.cdf.len() as u64;
        rank.wrapping_mul(0x9e37_79b9_7f4a_7c15 | 1) % n
    }
}

/// An access pattern over the pages of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Page 0, 1, 2, … in order.
    Sequential,
    /// Every `k`-th page (0, k, 2k, …; then 1, k+1, …) so that every page is visited.
    Stride(u64),
    /// Uniform random pages.
    Random,
    /// Zipf (s = 0.99) pages, hot pages scattered.
    Zipf,
    /// A pointer chase through a random cycle over every page, stored in the pages'
    /// first words (written by [`prepare`]).
    Chase,
}

impl Pattern {
    /// Parses `seq`, `stride:K`, `random`, `zipf`, `chase`.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        Ok(match s {
            "seq" | "sequential" => Pattern::Sequential,
            "random" => Pattern::Random,
            "zipf" => Pattern::Zipf,
            "chase" => Pattern::Chase,
            _ => match s.strip_prefix("stride:").map(str::parse::<u64>) {
                Some(Ok(k)) if k >= 1 => Pattern::Stride(k),
                _ => {
                    return Err(format!(
                        "unknown pattern {s:?}: seq, stride:K (K >= 1), random, zipf, chase"
                    ))
                }
            },
        })
    }

    /// The name [`Pattern::parse`] reads.
    pub fn name(self) -> String {
        match self {
            Pattern::Sequential => "seq".into(),
            Pattern::Stride(k) => format!("stride:{k}"),
            Pattern::Random => "random".into(),
            Pattern::Zipf => "zipf".into(),
            Pattern::Chase => "chase".into(),
        }
    }
}

/// Word 1 of every page holds this tag and the page index, so that a read of the
/// wrong page is seen.
const TAG: u64 = 0x6d6b_0000_0000_0000;

/// Writes every page of `map` once: the chase's next page in word 0, a tag with the
/// page index in word 1. Returns the pages.
pub fn prepare(map: &CkptMap, seed: u64) -> u64 {
    let pages = (map.len() / CKPT_PAGE_SIZE) as u64;
    // A random cycle through every page (Sattolo's algorithm).
    let mut order: Vec<u64> = (0..pages).collect();
    let mut rng = Rng(seed);
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64) as usize;
        order.swap(i, j);
    }
    let mut next = vec![0u64; pages as usize];
    for (i, &p) in order.iter().enumerate() {
        next[p as usize] = order[(i + 1) % order.len()];
    }
    for p in 0..pages {
        let off = p as usize * CKPT_PAGE_SIZE;
        map.write_u64(off, next[p as usize]);
        map.write_u64(off + 8, TAG | p);
    }
    pages
}

/// Access `i` of a stride of `k` over `pages` pages: lane `l` visits `l, l+k, …`;
/// a lane's steps past the end revisit the last page.
fn stride_page(i: u64, k: u64, pages: u64) -> u64 {
    let k = k.clamp(1, pages);
    let per = pages.div_ceil(k);
    let (lane, step) = ((i / per) % k, i % per);
    (lane + step * k).min(pages - 1)
}

/// What [`run`] measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Pages accessed.
    pub accesses: u64,
    /// Wall time, ns.
    pub elapsed_ns: u64,
}

/// Accesses `ops` pages of `map` (prepared by [`prepare`]) in `pattern`, reading
/// word 1 of each (and writing word 2 of every `write_every`-th, 0: never); checks
/// every page read is the right one.
pub fn run(
    map: &CkptMap,
    pattern: Pattern,
    ops: u64,
    write_every: u64,
    seed: u64,
) -> Result<Outcome, String> {
    let pages = (map.len() / CKPT_PAGE_SIZE) as u64;
    if pages == 0 {
        return Err("no page to access".into());
    }
    let mut rng = Rng(seed ^ 0x5151);
    let zipf = (pattern == Pattern::Zipf).then(|| Zipf::new(pages, 0.99));
    let mut chase = 0u64;
    let start = Instant::now();
    for i in 0..ops {
        let p = match pattern {
            Pattern::Sequential => i % pages,
            Pattern::Stride(k) => stride_page(i, k, pages),
            Pattern::Random => rng.below(pages),
            Pattern::Zipf => zipf.as_ref().map_or(0, |z| z.sample(&mut rng)),
            Pattern::Chase => {
                let p = chase;
                chase = map.read_u64(p as usize * CKPT_PAGE_SIZE) % pages;
                p
            }
        };
        let off = p as usize * CKPT_PAGE_SIZE;
        let tag = map.read_u64(off + 8);
        if tag != TAG | p {
            return Err(format!("access {i}: page {p} holds tag {tag:#x}"));
        }
        if write_every != 0 && i % write_every == 0 {
            map.write_u64(off + 16, i);
        }
    }
    Ok(Outcome {
        accesses: ops,
        elapsed_ns: start.elapsed().as_nanos() as u64,
    })
}

/// One run of the remote-memory access program (`memkit workload rmem-run`, guest job
/// `bench-rmem`): one pattern, one prefetch policy, one emulated latency. The Linux
/// peer (`memory` `anon+swap`, `policy` `linux-swap`) runs the same program on
/// anonymous memory in a memory cgroup limited to the same budget, swapping to a
/// RAM-backed null_blk with the same per-request latency (swap VMA readahead on).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// `rmem` (a memkit region), `rmem-agent` (one served by `memkit rmem agent`) or
    /// `anon+swap` (the Linux peer).
    pub memory: String,
    /// Where the pages went when it was not the emulated backend or the peer's
    /// null_blk: `nbd:SERVER` for the benchmark's rows over NBD (set by the guest job,
    /// which knows what it started; the program does not). Empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backend: String,
    /// Access pattern: `seq`, `stride:N`, `random`, `zipf`, `chase`.
    pub pattern: String,
    /// Prefetch policy: `none`, `ptline`, `ptline-history`, `window`, `trend`, or
    /// `linux-swap` for the peer.
    pub policy: String,
    /// Pages of the region.
    pub pages: u64,
    /// Pages it may keep local.
    pub budget: u64,
    /// Emulated latency of one remote fetch (the peer: of one swap request),
    /// microseconds.
    pub lat_us: u64,
    /// Accesses the program made.
    pub accesses: u64,
    /// Nanoseconds the accesses took (wall clock).
    pub runtime_ns: u64,
    /// Faults that started a fetch and waited for it (the region's synchronous
    /// fetches); the peer: major faults, which are the same thing (a swap-in this
    /// fault had to start).
    pub sync_faults: u64,
    /// Faults that found their page already being fetched (a prefetch not arrived
    /// yet) and waited for it; the peer: 0, not measured (a fault on a swap-cache
    /// page still being read is a minor fault there).
    #[serde(default)]
    pub waits: u64,
    /// Pages fetched ahead; the peer: `swap_ra`.
    pub prefetches: u64,
    /// Prefetched pages then accessed; the peer: `swap_ra_hit`.
    pub hits: u64,
    /// Prefetches whose deadline came before their data (not mapped from the
    /// prefetch); the peer: 0, not measured.
    pub late: u64,
    /// Prefetched pages evicted unused; the peer: 0, not measured.
    pub wasted: u64,
    /// Pages evicted; the peer: `pswpout`.
    pub evictions: u64,
    /// The prefetch window, in pages: the region's degree + 1 (its fault and what
    /// it may prefetch); the peer: `2^page-cluster`, swap readahead's largest window.
    /// 0: not recorded.
    #[serde(default)]
    pub window: u64,
    /// `hits / prefetches` (0 without prefetches).
    pub accuracy: f64,
    /// `hits / (hits + sync_faults)` (0 without either).
    pub coverage: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_name() {
        for s in ["seq", "stride:2", "stride:16", "random", "zipf", "chase"] {
            assert_eq!(Pattern::parse(s).unwrap().name(), s);
        }
        assert!(Pattern::parse("stride:0").is_err());
        assert!(Pattern::parse("stride:").is_err());
        assert!(Pattern::parse("other").is_err());
    }

    #[test]
    fn every_pattern_reads_the_right_pages() {
        let map = CkptMap::anonymous(64 * CKPT_PAGE_SIZE).unwrap();
        prepare(&map, 7);
        for s in ["seq", "stride:4", "stride:5", "random", "zipf", "chase"] {
            let out = run(&map, Pattern::parse(s).unwrap(), 500, 3, 1).unwrap();
            assert_eq!(out.accesses, 500, "{s}");
        }
    }

    #[test]
    fn stride_visits_every_page_once_per_round() {
        // 10 pages, stride 4: lanes of 3 pages; steps past the end revisit page 9.
        let pages: Vec<u64> = (0..12).map(|i| stride_page(i, 4, 10)).collect();
        assert_eq!(pages, [0, 4, 8, 1, 5, 9, 2, 6, 9, 3, 7, 9]);
        // 16 pages, stride 16: every page once.
        let mut all: Vec<u64> = (0..16).map(|i| stride_page(i, 16, 16)).collect();
        all.sort();
        assert_eq!(all, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn chase_is_one_cycle() {
        let map = CkptMap::anonymous(32 * CKPT_PAGE_SIZE).unwrap();
        prepare(&map, 3);
        let mut seen = [false; 32];
        let mut p = 0u64;
        for _ in 0..32 {
            assert!(!seen[p as usize]);
            seen[p as usize] = true;
            p = map.read_u64(p as usize * CKPT_PAGE_SIZE);
        }
        assert_eq!(p, 0);
    }
}
