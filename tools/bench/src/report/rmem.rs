//! Remote memory (`memkit workload rmem-run`, guest job `bench-rmem`): the access program on a
//! memkit region with each prefetch policy, against the same program on anonymous
//! memory + swap (`linux-swap`: a memory cgroup limited to the same budget, swapping
//! to a RAM-backed null_blk with the same per-request latency, swap VMA readahead
//! on), per emulated latency and access pattern.
//!
//! One run per (latency, pattern, policy) per boot; with several boots every figure
//! is the median over the runs (`runtime_ms` and `wasted_frac` per run first). The
//! ratios against `linux-swap` (same pattern and latency) are of those medians: the
//! runs are not paired. The peer's `waits`, `late` and `wasted` are not measured (the guest
//! reports 0): no lines for them, `-` in the table.

use super::{columns, env_summary, median, Builder};
use crate::sample::RmemSample;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Patterns in table order (others after them, by name).
const PATTERNS: [&str; 7] = [
    "seq",
    "stride:2",
    "stride:4",
    "stride:16",
    "random",
    "zipf",
    "chase",
];

/// The Linux peer's policy: the baseline of the ratios.
const PEER: &str = "linux-swap";

/// Variants in table order (others after them, by name).
const POLICIES: [&str; 6] = [PEER, "none", "ptline", "ptline-history", "window", "trend"];

/// The policy whose targets are checked.
const TARGET: &str = "ptline";

/// Position in `known`, then the name: the sort key of a pattern or a variant.
fn order(known: &[&str], x: &str) -> (usize, String) {
    let i = known.iter().position(|k| *k == x).unwrap_or(known.len());
    (i, x.to_string())
}

/// The prefetch window (pages) of most runs: degree 7, and swap's page-cluster 3.
const MAIN_WINDOW: u64 = 8;

/// The variant of a run: its policy (`policy@memory` for a memory other than a
/// region or the peer's, such as `rmem-agent`, so that it is not mixed with them),
/// and ` wN` for a window of N pages other than [`MAIN_WINDOW`].
fn variant(x: &RmemSample) -> String {
    let base = match x.memory.as_str() {
        "rmem" | "anon+swap" => x.policy.clone(),
        m => format!("{}@{m}", x.policy),
    };
    match x.window {
        0 | MAIN_WINDOW => base,
        w => format!("{base} w{w}"),
    }
}

/// The peer a variant is compared with: the one with the same window.
fn peer_of(v: &str) -> String {
    match v.rsplit_once(" w") {
        Some((_, w)) => format!("{PEER} w{w}"),
        None => PEER.to_string(),
    }
}

/// `wasted / (sync_faults + prefetches)`: the share of fetches wasted.
fn wasted_frac(x: &RmemSample) -> f64 {
    match x.sync_faults + x.prefetches {
        0 => f64::NAN,
        n => x.wasted as f64 / n as f64,
    }
}

/// The medians of one (latency, pattern, variant) over its runs.
#[derive(Clone, Debug)]
struct Med {
    runs: usize,
    /// Late and wasted measured (a region, not the peer).
    measured: bool,
    runtime_ms: f64,
    sync_faults: f64,
    waits: f64,
    prefetches: f64,
    hits: f64,
    late: f64,
    wasted: f64,
    evictions: f64,
    accuracy: f64,
    coverage: f64,
    wasted_frac: f64,
}

fn medians(xs: &[&RmemSample]) -> Med {
    // The median of the finite values (`NaN` if none).
    let m = |f: fn(&RmemSample) -> f64| {
        median(
            &mut xs
                .iter()
                .map(|x| f(x))
                .filter(|v| v.is_finite())
                .collect::<Vec<_>>(),
        )
    };
    Med {
        runs: xs.len(),
        measured: xs.iter().all(|x| x.memory != "anon+swap"),
        runtime_ms: m(|x| x.runtime_ns as f64 / 1e6),
        sync_faults: m(|x| x.sync_faults as f64),
        waits: m(|x| x.waits as f64),
        prefetches: m(|x| x.prefetches as f64),
        hits: m(|x| x.hits as f64),
        late: m(|x| x.late as f64),
        wasted: m(|x| x.wasted as f64),
        evictions: m(|x| x.evictions as f64),
        accuracy: m(|x| x.accuracy),
        coverage: m(|x| x.coverage),
        wasted_frac: m(wasted_frac),
    }
}

/// `peer / x`: infinite if only `x` is 0, `NaN` if both are.
fn ratio(peer: f64, x: f64) -> f64 {
    if x == 0.0 {
        if peer == 0.0 {
            f64::NAN
        } else {
            f64::INFINITY
        }
    } else {
        peer / x
    }
}

/// `2.00x`, `inf`, or `-` (undefined).
fn fmt_x(r: f64) -> String {
    if r.is_nan() {
        "-".into()
    } else if r.is_infinite() {
        "inf".into()
    } else {
        format!("{r:.2}x")
    }
}

/// A count (a median of two may end in .5).
fn fmt_n(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn fmt_pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}%", x * 100.0)
    } else {
        "-".into()
    }
}

fn fmt_ms(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Where the pages went (empty: the emulated latency of `.1` µs; `nbd:SERVER`: over
/// NBD), the pattern and the variant.
type Key = ((String, u64), (usize, String), (usize, String));

/// The remote-memory results: per latency a table, lines, the `ptline` targets.
pub(super) fn section(
    b: &mut Builder,
    runs: &[&RmemSample],
    targets: &mut Vec<(String, String, bool)>,
) {
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        b.table,
        "Remote memory: memkit workload rmem-run on a region (emulated fetch latency) per prefetch \
         policy vs the same program on anonymous memory + swap (linux-swap: memory cgroup \
         at the same budget, RAM-backed null_blk at the same latency, VMA readahead)"
    );
    let facts: Vec<BTreeMap<String, String>> = runs
        .iter()
        .map(|x| {
            [
                ("pages", x.pages),
                ("budget", x.budget),
                ("accesses", x.accesses),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        })
        .collect();
    let refs: Vec<&BTreeMap<String, String>> = facts.iter().collect();
    let _ = writeln!(
        b.table,
        "  {}; {} runs",
        env_summary(&refs, &["pages", "budget", "accesses"]),
        runs.len()
    );
    let mut g: BTreeMap<Key, Vec<&RmemSample>> = BTreeMap::new();
    for x in runs {
        g.entry((
            (x.backend.clone(), x.lat_us),
            order(&PATTERNS, &x.pattern),
            order(&POLICIES, &variant(x)),
        ))
        .or_default()
        .push(x);
    }
    let meds: BTreeMap<&Key, Med> = g.iter().map(|(k, xs)| (k, medians(xs))).collect();
    let mut lats: Vec<&(String, u64)> = g.keys().map(|k| &k.0).collect();
    lats.dedup();
    for lat in lats {
        let (heading, name) = match lat {
            (backend, us) if backend.is_empty() => {
                (format!("{us} us per fetch"), format!("{us}us"))
            }
            (backend, _) => (
                format!("over NBD: {backend} on the guest's loopback, {PEER} on /dev/nbd0 to it"),
                backend.replace(':', "-"),
            ),
        };
        let _ = writeln!(b.table, "\n  {heading}");
        let mut rows = vec![[
            "pattern",
            "variant",
            "runtime ms",
            "sync faults",
            "waits",
            "prefetches",
            "hits",
            "accuracy",
            "coverage",
            "late",
            "wasted",
            "swap/x sync faults",
            "speedup",
            "runs",
        ]
        .map(String::from)
        .to_vec()];
        let mut patterns: Vec<&(usize, String)> =
            meds.keys().filter(|k| &k.0 == lat).map(|k| &k.1).collect();
        patterns.dedup();
        let mut fewest = Vec::new();
        for pk in patterns {
            let pattern = &pk.1;
            let bench = format!("rmem/{name}/{pattern}");
            let of: Vec<(&str, &Med)> = meds
                .iter()
                .filter(|(k, _)| &k.0 == lat && &k.1 == pk)
                .map(|(k, m)| (k.2 .1.as_str(), m))
                .collect();
            for &(v, m) in &of {
                let pv = peer_of(v);
                let peer = of.iter().find(|x| x.0 == pv).map(|x| x.1);
                b.push(&bench, v, "runtime_ms", m.runtime_ms, "ms");
                b.push(&bench, v, "sync_faults", m.sync_faults, "faults");
                b.push(&bench, v, "prefetches", m.prefetches, "pages");
                b.push(&bench, v, "hits", m.hits, "pages");
                b.push(&bench, v, "accuracy", m.accuracy, "fraction");
                b.push(&bench, v, "coverage", m.coverage, "fraction");
                if m.measured {
                    b.push(&bench, v, "waits", m.waits, "faults");
                    b.push(&bench, v, "late", m.late, "pages");
                    b.push(&bench, v, "wasted", m.wasted, "pages");
                    b.push(&bench, v, "wasted_frac", m.wasted_frac, "fraction");
                }
                b.push(&bench, v, "evictions", m.evictions, "pages");
                b.push(&bench, v, "runs", m.runs as f64, "count");
                let (fr, sp) = match peer {
                    Some(p) if v != pv => {
                        let fr = ratio(p.sync_faults, m.sync_faults);
                        let sp = p.runtime_ms / m.runtime_ms;
                        let vs = format!("{pv}/{v}");
                        b.push(&bench, &vs, "sync_fault_ratio", fr, "x");
                        b.push(&bench, &vs, "speedup", sp, "x");
                        (fmt_x(fr), fmt_x(sp))
                    }
                    _ => (String::new(), String::new()),
                };
                let unmeasured = |x: f64| {
                    if m.measured {
                        fmt_n(x)
                    } else {
                        "-".into()
                    }
                };
                rows.push(vec![
                    pattern.clone(),
                    v.into(),
                    fmt_ms(m.runtime_ms),
                    fmt_n(m.sync_faults),
                    unmeasured(m.waits),
                    fmt_n(m.prefetches),
                    fmt_n(m.hits),
                    fmt_pct(m.accuracy),
                    fmt_pct(m.coverage),
                    unmeasured(m.late),
                    unmeasured(m.wasted),
                    fr,
                    sp,
                    m.runs.to_string(),
                ]);
            }
            let least = of
                .iter()
                .map(|v| v.1.sync_faults)
                .filter(|x| x.is_finite())
                .fold(f64::INFINITY, f64::min);
            if least.is_finite() {
                let who: Vec<&str> = of
                    .iter()
                    .filter(|v| v.1.sync_faults == least)
                    .map(|v| v.0)
                    .collect();
                fewest.push(format!("{pattern} {} ({})", who.join("="), fmt_n(least)));
            }
            pattern_targets(targets, &heading, pattern, &of);
        }
        b.table.push_str(&columns(&rows));
        let _ = writeln!(b.table, "  fewest sync faults: {}", fewest.join(", "));
    }
    let _ = writeln!(
        b.table,
        "  medians over runs; accuracy: hits / prefetches; coverage: hits / (hits + sync \
         faults); swap/x sync faults: {PEER}'s sync faults / the row's; speedup: {PEER}'s \
         runtime / the row's; sync faults: faults that started a fetch ({PEER}: major \
         faults); waits: faults on a page already being fetched; {PEER}: prefetches = \
         swap_ra, hits = swap_ra_hit, waits, late and wasted not measured\n"
    );
}

/// One of the issue's targets: its name, the measured value of a variant (given
/// the peer), whether higher is better, the threshold, and what the value means.
struct Criterion {
    what: &'static str,
    value: fn(&Med, Option<&Med>) -> f64,
    higher: bool,
    threshold: f64,
    show: fn(f64, &Med, Option<&Med>) -> String,
}

impl Criterion {
    fn met(&self, v: f64) -> bool {
        if self.higher {
            v >= self.threshold
        } else {
            v <= self.threshold
        }
    }

    /// Whether `a` is better than `b` (a finite value beats `NaN`).
    fn better(&self, a: f64, b: f64) -> bool {
        match (a.is_nan(), b.is_nan()) {
            (true, _) => false,
            (false, true) => true,
            _ if self.higher => a > b,
            _ => a < b,
        }
    }
}

/// The issue's targets for a pattern (none for patterns it sets none for).
fn criteria(pattern: &str) -> Vec<Criterion> {
    if pattern.starts_with("stride:") {
        vec![
            Criterion {
                what: ">= 2x fewer sync faults than linux-swap",
                value: |t, p| p.map_or(f64::NAN, |p| ratio(p.sync_faults, t.sync_faults)),
                higher: true,
                threshold: 2.0,
                show: |v, t, p| {
                    format!(
                        "{} ({} vs {})",
                        fmt_x(v),
                        fmt_n(t.sync_faults),
                        p.map_or_else(|| "-".into(), |p| fmt_n(p.sync_faults))
                    )
                },
            },
            Criterion {
                what: ">= 1.5x faster than linux-swap",
                value: |t, p| p.map_or(f64::NAN, |p| p.runtime_ms / t.runtime_ms),
                higher: true,
                threshold: 1.5,
                show: |v, t, p| {
                    format!(
                        "{} ({} vs {} ms)",
                        fmt_x(v),
                        fmt_ms(t.runtime_ms),
                        p.map_or_else(|| "-".into(), |p| fmt_ms(p.runtime_ms))
                    )
                },
            },
        ]
    } else if pattern == "seq" {
        vec![
            Criterion {
                what: ">= 90% accuracy",
                value: |t, _| t.accuracy,
                higher: true,
                threshold: 0.9,
                show: |v, t, _| {
                    format!(
                        "{} ({} hits of {} prefetches)",
                        fmt_pct(v),
                        fmt_n(t.hits),
                        fmt_n(t.prefetches)
                    )
                },
            },
            Criterion {
                what: ">= 95% coverage",
                value: |t, _| t.coverage,
                higher: true,
                threshold: 0.95,
                show: |v, t, _| {
                    format!(
                        "{} ({} hits, {} sync faults)",
                        fmt_pct(v),
                        fmt_n(t.hits),
                        fmt_n(t.sync_faults)
                    )
                },
            },
        ]
    } else if pattern == "random" {
        vec![Criterion {
            what: "<= 5% of fetches wasted",
            value: |t, _| t.wasted_frac,
            higher: false,
            threshold: 0.05,
            show: |v, t, _| {
                format!(
                    "{} ({} wasted of {} sync faults + {} prefetches)",
                    fmt_pct(v),
                    fmt_n(t.wasted),
                    fmt_n(t.sync_faults),
                    fmt_n(t.prefetches)
                )
            },
        }]
    } else {
        Vec::new()
    }
}

/// The issue's targets on one pattern at one latency: for [`TARGET`] (the patent's
/// policy), and for the best of the other prefetching policies on each target
/// (`none` prefetches nothing, so it neither wastes nor covers anything).
fn pattern_targets(
    targets: &mut Vec<(String, String, bool)>,
    setting: &str,
    pattern: &str,
    of: &[(&str, &Med)],
) {
    let at = format!("{pattern}, {setting}");
    let target = of.iter().find(|v| v.0 == TARGET).map(|v| v.1);
    let peer_for = |v: &str| {
        let pv = peer_of(v);
        of.iter().find(|x| x.0 == pv).map(|x| x.1)
    };
    let others = || {
        of.iter().filter(|v| {
            !v.0.starts_with(PEER)
                && !v.0.starts_with("none")
                && v.0 != TARGET
                && !v.0.contains('@')
        })
    };
    for c in criteria(pattern) {
        if let Some(t) = target {
            let peer = peer_for(TARGET);
            let v = (c.value)(t, peer);
            if !v.is_nan() {
                targets.push((
                    format!("rmem {TARGET} {}, {at}", c.what),
                    (c.show)(v, t, peer),
                    c.met(v),
                ));
            }
        }
        let best = others().fold(None, |best: Option<(&str, &Med, f64)>, &(name, m)| {
            let v = (c.value)(m, peer_for(name));
            match best {
                Some(b) if !c.better(v, b.2) => Some(b),
                _ if v.is_nan() => best,
                _ => Some((name, m, v)),
            }
        });
        if let Some((name, m, v)) = best {
            targets.push((
                format!("rmem best other policy ({name}) {}, {at}", c.what),
                (c.show)(v, m, peer_for(name)),
                c.met(v),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{build, parse};

    /// A raw line as the guest job prints it.
    fn line(memory: &str, pattern: &str, policy: &str, lat: u64, n: [u64; 7]) -> String {
        let [runtime_ns, sync, pf, hits, late, wasted, ev] = n;
        let acc = if pf == 0 {
            0.0
        } else {
            hits as f64 / pf as f64
        };
        let cov = if hits + sync == 0 {
            0.0
        } else {
            hits as f64 / (hits + sync) as f64
        };
        format!(
            r#"{{"rmem":{{"memory":"{memory}","pattern":"{pattern}","policy":"{policy}","pages":16384,"budget":4096,"lat_us":{lat},"accesses":32768,"runtime_ns":{runtime_ns},"sync_faults":{sync},"prefetches":{pf},"hits":{hits},"late":{late},"wasted":{wasted},"evictions":{ev},"accuracy":{acc},"coverage":{cov}}}}}"#
        )
    }

    fn swap(pattern: &str, lat: u64, runtime_ms: u64, sync: u64) -> String {
        line(
            "anon+swap",
            pattern,
            "linux-swap",
            lat,
            [runtime_ms * 1_000_000, sync, 100, 50, 0, 0, 7],
        )
    }

    fn region(pattern: &str, policy: &str, lat: u64, n: [u64; 7]) -> String {
        line("rmem", pattern, policy, lat, n)
    }

    #[test]
    fn rows_over_nbd_are_their_own_table_with_their_own_peer() {
        let nbd =
            |l: String| l.replacen("{\"memory\"", "{\"backend\":\"nbd:nbdkit\",\"memory\"", 1);
        let text = [
            swap("stride:4", 20, 40, 1000),
            nbd(swap("stride:4", 0, 90, 2000)),
            nbd(line(
                "rmem-agent",
                "stride:4",
                "trend",
                0,
                [30_000_000, 500, 1500, 1400, 0, 10, 9],
            )),
        ]
        .join("\n");
        let (raw, bad) = parse(&text);
        assert_eq!((raw.len(), bad), (3, 0));
        let r = build(&raw);
        let get = |b: &str, v: &str, m: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == b && l.variant == v && l.metric == m)
                .map(|l| l.value)
        };
        // Against the swap-over-NBD run, not the null_blk one.
        assert_eq!(
            get(
                "rmem/nbd-nbdkit/stride:4",
                "linux-swap/trend@rmem-agent",
                "sync_fault_ratio"
            ),
            Some(4.0)
        );
        assert_eq!(
            get(
                "rmem/nbd-nbdkit/stride:4",
                "linux-swap/trend@rmem-agent",
                "speedup"
            ),
            Some(3.0)
        );
        assert_eq!(
            get("rmem/20us/stride:4", "linux-swap", "runtime_ms"),
            Some(40.0)
        );
        assert!(r.table.contains("over NBD: nbd:nbdkit"), "{}", r.table);
    }

    #[test]
    fn ratios_medians_and_targets() {
        // A run with a 32-page window (degree 31; the peer: page-cluster 5).
        let w32 = |l: String| l.replacen("{\"memory\"", "{\"window\":32,\"memory\"", 1);
        let text = [
            "bench: rmem: 16384 pages".to_string(),
            // The guest console's line ends.
            format!("{}\r", swap("stride:4", 20, 40, 1000)),
            format!(
                "{}\r",
                region(
                    "stride:4",
                    "ptline",
                    20,
                    [10_000_000, 200, 800, 780, 3, 20, 9]
                )
            ),
            region("stride:4", "none", 20, [80_000_000, 4000, 0, 0, 0, 0, 9]),
            // Two boots of stride:16: medians 30 ms and 600 faults (peer), and
            // 25 ms, 400 faults (ptline).
            swap("stride:16", 20, 20, 500),
            swap("stride:16", 20, 40, 700),
            region("stride:16", "ptline", 20, [20_000_000, 300, 10, 5, 0, 1, 0]),
            region("stride:16", "ptline", 20, [30_000_000, 500, 10, 5, 0, 1, 0]),
            swap("seq", 20, 10, 100),
            region("seq", "ptline", 20, [5_000_000, 10, 1000, 950, 0, 50, 0]),
            region("seq", "window", 20, [5_000_000, 0, 1000, 1000, 0, 0, 0]),
            w32(swap("seq", 20, 10, 40)),
            w32(region(
                "seq",
                "window",
                20,
                [2_500_000, 5, 1000, 990, 0, 0, 0],
            )),
            swap("random", 20, 10, 100),
            region("random", "ptline", 20, [5_000_000, 900, 100, 10, 0, 60, 0]),
            swap("random", 100, 10, 100),
            region("random", "ptline", 100, [5_000_000, 980, 20, 10, 0, 40, 0]),
        ]
        .join("\n");
        let (raw, bad) = parse(&text);
        assert_eq!((raw.len(), bad), (16, 0));
        let r = build(&raw);
        let get = |b: &str, v: &str, m: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == b && l.variant == v && l.metric == m)
                .map(|l| l.value)
        };
        assert_eq!(
            get("rmem/20us/stride:4", "ptline", "runtime_ms"),
            Some(10.0)
        );
        assert_eq!(
            get("rmem/20us/stride:4", "ptline", "accuracy"),
            Some(780.0 / 800.0)
        );
        assert_eq!(
            get("rmem/20us/stride:4", "ptline", "wasted_frac"),
            Some(0.02)
        );
        assert_eq!(
            get(
                "rmem/20us/stride:4",
                "linux-swap/ptline",
                "sync_fault_ratio"
            ),
            Some(5.0)
        );
        assert_eq!(
            get("rmem/20us/stride:4", "linux-swap/ptline", "speedup"),
            Some(4.0)
        );
        assert_eq!(
            get("rmem/20us/stride:4", "linux-swap/none", "speedup"),
            Some(0.5)
        );
        // The peer's waits, late and wasted are not measured; no ratio against itself.
        assert_eq!(get("rmem/20us/stride:4", "linux-swap", "wasted"), None);
        assert_eq!(get("rmem/20us/stride:4", "linux-swap", "waits"), None);
        assert_eq!(get("rmem/20us/stride:4", "ptline", "waits"), Some(0.0));
        assert_eq!(
            get("rmem/20us/stride:4", "linux-swap", "evictions"),
            Some(7.0)
        );
        assert!(!r.lines.iter().any(|l| l.variant == "linux-swap/linux-swap"));
        assert_eq!(
            get("rmem/20us/stride:16", "linux-swap", "runtime_ms"),
            Some(30.0)
        );
        assert_eq!(get("rmem/20us/stride:16", "ptline", "runs"), Some(2.0));
        assert_eq!(
            get(
                "rmem/20us/stride:16",
                "linux-swap/ptline",
                "sync_fault_ratio"
            ),
            Some(1.5)
        );
        assert_eq!(
            get("rmem/20us/stride:16", "linux-swap/ptline", "speedup"),
            Some(1.2)
        );
        // No sync faults against the peer's 100: infinite, no line, `inf` in the table.
        assert_eq!(
            get("rmem/20us/seq", "linux-swap/window", "sync_fault_ratio"),
            None
        );
        assert_eq!(
            get("rmem/20us/seq", "linux-swap/window", "speedup"),
            Some(2.0)
        );
        assert!(r.table.contains("inf"), "{}", r.table);
        assert!(
            r.table.contains(
                "fewest sync faults: seq window (0), stride:4 ptline (200), \
                 stride:16 ptline (400), random linux-swap (100)"
            ),
            "{}",
            r.table
        );
        let met = |name: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == "target" && l.variant.starts_with(name))
                .map(|l| l.value)
        };
        assert_eq!(
            met("rmem ptline >= 2x fewer sync faults than linux-swap, stride:4, 20 us"),
            Some(1.0)
        );
        assert_eq!(
            met("rmem ptline >= 1.5x faster than linux-swap, stride:4, 20 us"),
            Some(1.0)
        );
        assert_eq!(
            met("rmem ptline >= 2x fewer sync faults than linux-swap, stride:16, 20 us"),
            Some(0.0)
        );
        assert_eq!(
            met("rmem ptline >= 1.5x faster than linux-swap, stride:16, 20 us"),
            Some(0.0)
        );
        assert_eq!(met("rmem ptline >= 90% accuracy, seq, 20 us"), Some(1.0));
        // 950 / (950 + 10).
        assert_eq!(met("rmem ptline >= 95% coverage, seq, 20 us"), Some(1.0));
        // 60 / (900 + 100) and 40 / (980 + 20).
        assert_eq!(
            met("rmem ptline <= 5% of fetches wasted, random, 20 us"),
            Some(0.0)
        );
        assert_eq!(
            met("rmem ptline <= 5% of fetches wasted, random, 100 us"),
            Some(1.0)
        );
        // A wider window is compared with the peer of the same window.
        assert_eq!(
            get(
                "rmem/20us/seq",
                "linux-swap w32/window w32",
                "sync_fault_ratio"
            ),
            Some(8.0)
        );
        assert_eq!(
            get("rmem/20us/seq", "linux-swap w32/window w32", "speedup"),
            Some(4.0)
        );
        assert_eq!(
            get("rmem/20us/seq", "linux-swap/window w32", "speedup"),
            None
        );
        // The best of the other prefetching policies, where one ran.
        assert_eq!(
            met("rmem best other policy (window) >= 95% coverage, seq, 20 us"),
            Some(1.0)
        );
        assert!(!r.lines.iter().any(|l| l.bench == "target"
            && l.variant.contains("other policy")
            && l.variant.contains("stride")));
        assert!(
            r.table
                .contains("6.0% (60 wasted of 900 sync faults + 100 prefetches)"),
            "{}",
            r.table
        );
        assert!(r.table.contains("5.00x (200 vs 1000)"), "{}", r.table);
        // The 20 us table before the 100 us one; the peer first in a pattern.
        let (t20, t100) = (
            r.table.find("20 us per fetch"),
            r.table.find("100 us per fetch"),
        );
        assert!(t20.unwrap() < t100.unwrap(), "{}", r.table);
        let row = |s: &str| r.table.find(s).unwrap();
        assert!(
            row("stride:4   linux-swap") < row("stride:4   none"),
            "{}",
            r.table
        );
        assert!(
            row("stride:4   none") < row("stride:4   ptline"),
            "{}",
            r.table
        );
    }
}
