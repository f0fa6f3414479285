//! The checkpointer's results (`memkit-bench ckpt-run`): checkpoints per second,
//! time stopped with and without pre-copy, bytes with and without diffs.
//!
//! Every figure is over a run's steady-state checkpoints: all but the first, which
//! sends every page, and the run's recorded warm-up after it (the catch-up after
//! the first; for diffs also the time the diff list takes to form — see
//! [`crate::ckpt_run`]). Per run: checkpoints per second is the steady checkpoints over
//! the sum of their durations (start to the backup's acknowledgement; with
//! `--interval-ms 0` they run back to back); pages and record bytes per checkpoint
//! are means; times are medians (p99: nearest rank). Over rounds: the median of the
//! runs (min and max kept); a ratio is the median of the per-round ratios (the two
//! variants of a round ran back to back with the same writer settings and seed).

use super::{columns, median, Builder};
use crate::ckpt::size_name;
use crate::sample::{CkptRunSample, RunReport};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One run's steady state.
#[derive(Clone, Debug, Default)]
struct Steady {
    round: u32,
    /// Steady checkpoints.
    n: usize,
    /// Warm-up checkpoints left out after the first.
    warmup: u64,
    ckpt_per_s: f64,
    pages: f64,
    record_bytes: f64,
    diffed: f64,
    precopied: f64,
    stop_copied: f64,
    stopped_us: f64,
    stopped_us_p99: f64,
    stop_wait_us: f64,
    total_ms: f64,
    send_ms: f64,
    ack_ms: f64,
    collect_ms: f64,
    copy_ms: f64,
    /// Seconds of the first (full) checkpoint.
    first_s: f64,
    /// Writes per second, every writer thread.
    writes_per_ckpt: f64,
}

fn quantile(v: &[u64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_unstable();
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
    s[i] as f64
}

fn med(v: &[u64]) -> f64 {
    median(&mut v.iter().map(|&x| x as f64).collect::<Vec<_>>())
}

fn steady(x: &CkptRunSample) -> Option<Steady> {
    over_reports(x, x.steady())
}

/// The same figures over every checkpoint but the first (no warm-up left out).
fn after_first(x: &CkptRunSample) -> Option<Steady> {
    over_reports(x, x.after_first())
}

fn over_reports(x: &CkptRunSample, st: &[RunReport]) -> Option<Steady> {
    if st.is_empty() {
        return None;
    }
    let n = st.len() as f64;
    let col = |f: fn(&RunReport) -> u64| st.iter().map(f).collect::<Vec<u64>>();
    let mean = |f: fn(&RunReport) -> u64| st.iter().map(f).sum::<u64>() as f64 / n;
    // From one checkpoint's start to the next: checkpoints in flight overlap.
    let total_s = st.iter().map(|r| r.interval_ns).sum::<u64>() as f64 / 1e9;
    Some(Steady {
        round: x.round,
        n: st.len(),
        warmup: x.warmup,
        ckpt_per_s: n / total_s,
        pages: mean(|r| r.pages),
        record_bytes: mean(|r| r.record_bytes),
        diffed: mean(|r| r.diffed),
        precopied: mean(|r| r.precopied),
        stop_copied: mean(|r| r.stop_copied),
        stopped_us: med(&col(|r| r.stopped_ns)) / 1e3,
        stopped_us_p99: quantile(&col(|r| r.stopped_ns), 0.99) / 1e3,
        stop_wait_us: med(&col(|r| r.stop_wait_ns)) / 1e3,
        total_ms: med(&col(|r| r.total_ns)) / 1e6,
        send_ms: med(&col(|r| r.send_ns)) / 1e6,
        ack_ms: med(&col(|r| r.ack_ns)) / 1e6,
        collect_ms: med(&col(|r| r.collect_ns)) / 1e6,
        copy_ms: med(&col(|r| r.copy_ns)) / 1e6,
        first_s: x.reports[0].total_ns as f64 / 1e9,
        writes_per_ckpt: (x.per_checkpoint * u64::from(x.threads)) as f64,
    })
}

/// Median, min and max of `f` over runs.
fn over(runs: &[Steady], f: fn(&Steady) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    let m = median(&mut v);
    (m, v[0], v[v.len() - 1])
}

/// Median, min and max over rounds of `f(a) / f(b)`, runs paired by round.
fn ratio(a: &[Steady], b: &[Steady], f: fn(&Steady) -> f64) -> Option<(f64, f64, f64)> {
    let mut r: Vec<f64> = a
        .iter()
        .filter_map(|x| b.iter().find(|y| y.round == x.round).map(|y| f(x) / f(y)))
        .collect();
    if r.is_empty() {
        return None;
    }
    let m = median(&mut r);
    Some((m, r[0], r[r.len() - 1]))
}

fn f1(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn range(t: (f64, f64, f64), f: fn(f64) -> String) -> String {
    if t.1 == t.2 {
        f(t.0)
    } else {
        format!("{} ({}..{})", f(t.0), f(t.1), f(t.2))
    }
}

fn xr(t: (f64, f64, f64)) -> String {
    if t.1 == t.2 {
        format!("{:.2}x", t.0)
    } else {
        format!("{:.2}x ({:.2}..{:.2})", t.0, t.1, t.2)
    }
}

/// Groups runs of one part by `(bytes, workload, variant)`.
fn groups<'a>(
    runs: &[&'a CkptRunSample],
    part: &str,
) -> BTreeMap<(u64, String, String), Vec<&'a CkptRunSample>> {
    let mut g: BTreeMap<(u64, String, String), Vec<&CkptRunSample>> = BTreeMap::new();
    for x in runs.iter().filter(|x| x.part == part) {
        g.entry((x.bytes, x.workload.clone(), x.variant.clone()))
            .or_default()
            .push(x);
    }
    g
}

fn steadies(xs: &[&CkptRunSample]) -> Vec<Steady> {
    xs.iter().filter_map(|x| steady(x)).collect()
}

/// `steady + warm-up` of each run, as `n+w` (runs joined with `,`).
fn counts(st: &[Steady]) -> String {
    st.iter()
        .map(|s| format!("{}+{}", s.n, s.warmup))
        .collect::<Vec<_>>()
        .join(",")
}

/// The checkpointer's results: lines, tables, three targets.
pub(super) fn section(
    b: &mut Builder,
    runs: &[&CkptRunSample],
    env: &[&BTreeMap<String, String>],
    targets: &mut Vec<(String, String, bool)>,
) {
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        b.table,
        "Checkpointer: memkit ckpt backup | writer | run --pid, on loopback; steady state \
         (the first checkpoint of each run, which sends every page, left out)"
    );
    let summary = super::env_summary(
        env,
        &["where", "vm", "kernel", "cpus", "writer_threads", "verify"],
    );
    if !summary.is_empty() {
        let _ = writeln!(b.table, "  {summary}");
    }
    let verified = runs.iter().filter(|x| x.verified == Some(true)).count();
    let _ = writeln!(
        b.table,
        "  {} runs; the replica equal to the writer's memory after {verified} of them \
         (memkit ckpt verify)",
        runs.len(),
    );
    rate(b, runs, targets);
    precopy(b, runs, targets);
    diff(b, runs, targets);
}

fn rate(b: &mut Builder, runs: &[&CkptRunSample], targets: &mut Vec<(String, String, bool)>) {
    let g = groups(runs, "rate");
    if g.is_empty() {
        return;
    }
    let _ = writeln!(
        b.table,
        "\n  Checkpoints per second, back to back (--interval-ms 0), the writer making \
         the same writes after every checkpoint (--per-checkpoint)"
    );
    let mut rows = vec![[
        "region",
        "variant",
        "writes",
        "writes/ckpt",
        "pages/ckpt",
        "dirty",
        "cow/ckpt",
        "ckpt/s",
        "ckpt ms",
        "stopped us",
        "p99",
        "send ms",
        "ack ms",
        "bytes/ckpt",
        "first ckpt s",
        "ckpts (steady+warm-up)",
    ]
    .map(String::from)
    .to_vec()];
    let mut by_bytes: BTreeMap<u64, Vec<(String, Vec<Steady>)>> = BTreeMap::new();
    for ((bytes, _, variant), xs) in &g {
        let st = steadies(xs);
        if st.is_empty() {
            continue;
        }
        let pages = (*bytes / 4096) as f64;
        let bench = format!("ckpt-rate/{}", size_name(*bytes));
        let cps = over(&st, |s| s.ckpt_per_s);
        let pg = over(&st, |s| s.pages);
        b.push(&bench, variant, "checkpoints_per_s", cps.0, "ckpt/s");
        b.push(&bench, variant, "checkpoints_per_s_min", cps.1, "ckpt/s");
        b.push(&bench, variant, "checkpoints_per_s_max", cps.2, "ckpt/s");
        b.push(&bench, variant, "dirty_pages_per_ckpt", pg.0, "pages");
        b.push(
            &bench,
            variant,
            "dirty_pct",
            pg.0 / pages * 100.0,
            "% of pages",
        );
        // `--cow`: pages a write reached before they were copied out, per
        // checkpoint over the whole runs (the writer's extra cost: a page copy each).
        let cow = xs.iter().any(|x| x.summary.cow_copies.is_some()).then(|| {
            let copies: u64 = xs.iter().filter_map(|x| x.summary.cow_copies).sum();
            let ckpts: u64 = xs.iter().map(|x| x.summary.checkpoints).sum();
            copies as f64 / ckpts.max(1) as f64
        });
        if let Some(c) = cow {
            b.push(&bench, variant, "cow_copies_per_ckpt", c, "pages");
        }
        let wr = over(&st, |s| s.writes_per_ckpt);
        b.push(&bench, variant, "writer_writes_per_ckpt", wr.0, "writes");
        let ms = over(&st, |s| s.total_ms);
        b.push(&bench, variant, "ckpt_ms_p50", ms.0, "ms");
        let stp = over(&st, |s| s.stopped_us);
        b.push(&bench, variant, "stopped_us_p50", stp.0, "us");
        let stp99 = over(&st, |s| s.stopped_us_p99);
        b.push(&bench, variant, "stopped_us_p99", stp99.0, "us");
        let send = over(&st, |s| s.send_ms);
        b.push(&bench, variant, "send_ms_p50", send.0, "ms");
        let ack = over(&st, |s| s.ack_ms);
        b.push(&bench, variant, "ack_ms_p50", ack.0, "ms");
        // Of the time stopped: the collect and the copy.
        let collect = over(&st, |s| s.collect_ms);
        b.push(&bench, variant, "collect_ms_p50", collect.0, "ms");
        let copy = over(&st, |s| s.copy_ms);
        b.push(&bench, variant, "copy_ms_p50", copy.0, "ms");
        let by = over(&st, |s| s.record_bytes);
        b.push(&bench, variant, "record_bytes_per_ckpt", by.0, "bytes");
        let first = over(&st, |s| s.first_s);
        b.push(&bench, variant, "first_ckpt_s", first.0, "s");
        let n: usize = st.iter().map(|s| s.n).sum();
        b.push(&bench, variant, "steady_checkpoints", n as f64, "count");
        b.push(&bench, variant, "rounds", st.len() as f64, "count");
        rows.push(vec![
            size_name(*bytes),
            variant.clone(),
            xs.first()
                .map_or(String::new(), |x| format!("{} {}", x.pattern, x.write)),
            format!("{:.0}", wr.0),
            range(pg, f1),
            format!("{:.2}%", pg.0 / pages * 100.0),
            cow.map_or("-".into(), f1),
            range(cps, |x| format!("{x:.2}")),
            f1(ms.0),
            f1(stp.0),
            f1(stp99.0),
            f1(send.0),
            f1(ack.0),
            format!("{:.0}", by.0),
            f1(first.0),
            counts(&st),
        ]);
        by_bytes
            .entry(*bytes)
            .or_default()
            .push((variant.clone(), st));
    }
    b.table.push_str(&columns(&rows));
    for (bytes, vs) in &by_bytes {
        let bench = format!("ckpt-rate/{}", size_name(*bytes));
        let find = |name: &str| vs.iter().find(|v| v.0 == name);
        let s = find("soft-dirty");
        // memkit stopping the writer, and memkit's copy-on-write snapshots (`--cow`).
        for name in ["memkit", "memkit-cow"] {
            let Some(m) = find(name) else { continue };
            if let Some(r) = s.and_then(|s| ratio(&m.1, &s.1, |x| x.ckpt_per_s)) {
                let pair = format!("{name}/soft-dirty");
                b.push(&bench, &pair, "checkpoints_per_s_ratio", r.0, "x");
                let _ = writeln!(b.table, "  {pair} checkpoints per second: {}", xr(r));
            }
            let cps = over(&m.1, |s| s.ckpt_per_s).0;
            let pct = over(&m.1, |s| s.pages).0 / (*bytes / 4096) as f64 * 100.0;
            targets.push((
                format!(
                    ">= 100 checkpoints/s on {} at 1% dirty ({name})",
                    size_name(*bytes)
                ),
                format!("{cps:.2}/s at {pct:.2}% dirty"),
                cps >= 100.0,
            ));
        }
        if let (Some(m), Some(c)) = (find("memkit"), find("memkit-cow")) {
            if let Some(r) = ratio(&m.1, &c.1, |x| x.stopped_us) {
                b.push(&bench, "memkit/memkit-cow", "stopped_us_ratio", r.0, "x");
                let _ = writeln!(
                    b.table,
                    "  time stopped, memkit (SIGSTOP) over memkit-cow (the snapshot's \
                     collect): {}",
                    xr(r)
                );
            }
        }
    }
}

/// The writer settings of a group's first run (of either variant), for the table.
fn describe(
    g: &BTreeMap<(u64, String, String), Vec<&CkptRunSample>>,
    bytes: u64,
    workload: &str,
    variants: [&str; 2],
) -> String {
    variants
        .iter()
        .find_map(|v| g.get(&(bytes, workload.to_string(), v.to_string())))
        .and_then(|xs| xs.first())
        .map_or(workload.to_string(), |x| {
            format!(
                "{} {}, {:.0}/s, {} ms",
                x.pattern,
                x.write,
                (x.rate * u64::from(x.threads)) as f64,
                x.interval_ms
            )
        })
}

fn precopy(b: &mut Builder, runs: &[&CkptRunSample], targets: &mut Vec<(String, String, bool)>) {
    let g = groups(runs, "precopy");
    if g.is_empty() {
        return;
    }
    let _ = writeln!(
        b.table,
        "\n  Time stopped per checkpoint, with and without --precopy (same writer, same seed; \
         order alternating by round)"
    );
    let mut rows = vec![[
        "region",
        "writes",
        "variant",
        "stopped us p50",
        "p99",
        "stop wait us",
        "pages/ckpt",
        "pre-copied",
        "copied stopped",
        "ckpt ms",
        "ckpts",
        "no-precopy/precopy",
    ]
    .map(String::from)
    .to_vec()];
    let mut keys: Vec<(u64, String)> = g.keys().map(|k| (k.0, k.1.clone())).collect();
    keys.dedup();
    for (bytes, workload) in keys {
        let get = |v: &str| {
            g.get(&(bytes, workload.clone(), v.to_string()))
                .map(|xs| steadies(xs))
                .unwrap_or_default()
        };
        let (no, pre) = (get("no-precopy"), get("precopy"));
        let bench = format!("ckpt-precopy/{}/{workload}", size_name(bytes));
        let what = describe(&g, bytes, &workload, ["no-precopy", "precopy"]);
        let r = ratio(&no, &pre, |s| s.stopped_us);
        for (variant, st) in [("no-precopy", &no), ("precopy", &pre)] {
            if st.is_empty() {
                continue;
            }
            let stp = over(st, |s| s.stopped_us);
            let p99 = over(st, |s| s.stopped_us_p99);
            let wait = over(st, |s| s.stop_wait_us);
            let pg = over(st, |s| s.pages);
            let pc = over(st, |s| s.precopied);
            let sc = over(st, |s| s.stop_copied);
            let ms = over(st, |s| s.total_ms);
            b.push(&bench, variant, "stopped_us_p50", stp.0, "us");
            b.push(&bench, variant, "stopped_us_p50_min", stp.1, "us");
            b.push(&bench, variant, "stopped_us_p50_max", stp.2, "us");
            b.push(&bench, variant, "stopped_us_p99", p99.0, "us");
            b.push(&bench, variant, "stop_wait_us_p50", wait.0, "us");
            b.push(&bench, variant, "pages_per_ckpt", pg.0, "pages");
            b.push(&bench, variant, "precopied_per_ckpt", pc.0, "pages");
            b.push(&bench, variant, "stop_copied_per_ckpt", sc.0, "pages");
            b.push(&bench, variant, "ckpt_ms_p50", ms.0, "ms");
            b.push(&bench, variant, "rounds", st.len() as f64, "count");
            rows.push(vec![
                size_name(bytes),
                what.clone(),
                variant.into(),
                range(stp, f1),
                f1(p99.0),
                f1(wait.0),
                f1(pg.0),
                f1(pc.0),
                f1(sc.0),
                f1(ms.0),
                counts(st),
                match (variant, r) {
                    ("precopy", Some(r)) => xr(r),
                    _ => String::new(),
                },
            ]);
        }
        if let Some(r) = r {
            b.push(&bench, "no-precopy/precopy", "stopped_us_ratio", r.0, "x");
            if workload == "zipf" {
                targets.push((
                    format!(
                        ">= 2x less time stopped with pre-copy, Zipf writes ({})",
                        size_name(bytes)
                    ),
                    format!("{:.2}x", r.0),
                    r.0 >= 2.0,
                ));
            }
        }
    }
    b.table.push_str(&columns(&rows));
}

fn diff(b: &mut Builder, runs: &[&CkptRunSample], targets: &mut Vec<(String, String, bool)>) {
    let g = groups(runs, "diff");
    if g.is_empty() {
        return;
    }
    let _ = writeln!(
        b.table,
        "\n  Record bytes sent per checkpoint, with diffs and with --no-diff (same writer, same \
         seed; order alternating by round)"
    );
    let mut rows = vec![[
        "region",
        "writes",
        "variant",
        "bytes/ckpt",
        "pages/ckpt",
        "bytes/page",
        "as diffs",
        "ckpt ms",
        "ckpts",
        "no-diff/diff bytes/ckpt",
        "per page",
        "no warm-up",
    ]
    .map(String::from)
    .to_vec()];
    let mut keys: Vec<(u64, String)> = g.keys().map(|k| (k.0, k.1.clone())).collect();
    keys.dedup();
    for (bytes, workload) in keys {
        let get = |v: &str| {
            g.get(&(bytes, workload.clone(), v.to_string()))
                .map(|xs| steadies(xs))
                .unwrap_or_default()
        };
        let (d, nd) = (get("diff"), get("no-diff"));
        let bench = format!("ckpt-diff/{}/{workload}", size_name(bytes));
        let what = describe(&g, bytes, &workload, ["diff", "no-diff"]);
        let per_ckpt = ratio(&nd, &d, |s| s.record_bytes);
        let per_page = ratio(&nd, &d, |s| s.record_bytes / s.pages);
        // Every checkpoint but the first: the diff list forming included.
        let all = |v: &str| -> Vec<Steady> {
            g.get(&(bytes, workload.clone(), v.to_string()))
                .map(|xs| xs.iter().filter_map(|x| after_first(x)).collect())
                .unwrap_or_default()
        };
        let whole = ratio(&all("no-diff"), &all("diff"), |s| s.record_bytes);
        for (variant, st) in [("diff", &d), ("no-diff", &nd)] {
            if st.is_empty() {
                continue;
            }
            let by = over(st, |s| s.record_bytes);
            let pg = over(st, |s| s.pages);
            let bp = over(st, |s| s.record_bytes / s.pages);
            let df = over(st, |s| s.diffed / s.pages * 100.0);
            let ms = over(st, |s| s.total_ms);
            b.push(&bench, variant, "record_bytes_per_ckpt", by.0, "bytes");
            b.push(&bench, variant, "record_bytes_per_ckpt_min", by.1, "bytes");
            b.push(&bench, variant, "record_bytes_per_ckpt_max", by.2, "bytes");
            b.push(&bench, variant, "pages_per_ckpt", pg.0, "pages");
            b.push(&bench, variant, "record_bytes_per_page", bp.0, "bytes");
            b.push(&bench, variant, "diffed_pct", df.0, "% of pages");
            b.push(&bench, variant, "ckpt_ms_p50", ms.0, "ms");
            b.push(&bench, variant, "rounds", st.len() as f64, "count");
            let (rc, rp, rw) = match (variant, per_ckpt, per_page, whole) {
                ("no-diff", Some(c), Some(p), Some(w)) => (xr(c), xr(p), xr(w)),
                _ => (String::new(), String::new(), String::new()),
            };
            rows.push(vec![
                size_name(bytes),
                what.clone(),
                variant.into(),
                range(by, |x| format!("{x:.0}")),
                f1(pg.0),
                format!("{:.0}", bp.0),
                format!("{:.1}%", df.0),
                f1(ms.0),
                counts(st),
                rc,
                rp,
                rw,
            ]);
        }
        if let Some(r) = per_ckpt {
            b.push(
                &bench,
                "no-diff/diff",
                "record_bytes_per_ckpt_ratio",
                r.0,
                "x",
            );
        }
        if let Some(r) = per_page {
            b.push(
                &bench,
                "no-diff/diff",
                "record_bytes_per_page_ratio",
                r.0,
                "x",
            );
        }
        if let Some(r) = whole {
            b.push(
                &bench,
                "no-diff/diff",
                "record_bytes_per_ckpt_ratio_no_warmup",
                r.0,
                "x",
            );
        }
        if workload == "sparse" {
            if let Some(r) = per_ckpt {
                targets.push((
                    format!(
                        ">= 10x fewer bytes with diffs, sparse writes ({})",
                        size_name(bytes)
                    ),
                    format!(
                        "{:.2}x per checkpoint ({:.2}x per page)",
                        r.0,
                        per_page.map_or(f64::NAN, |p| p.0)
                    ),
                    r.0 >= 10.0,
                ));
            }
        }
    }
    b.table.push_str(&columns(&rows));
}

#[cfg(test)]
mod tests {
    use super::super::build;
    use crate::sample::{CkptRunSample, Raw, RunReport};

    fn run(part: &str, variant: &str, workload: &str, round: u32, rs: &[(u64, u64, u64)]) -> Raw {
        // (pages, record bytes, stopped ns); the first report is the full one.
        let mut reports = vec![RunReport {
            seq: 1,
            pages: 1024,
            record_bytes: 1024 * 4112,
            total_ns: 9_000_000_000,
            stopped_ns: 1,
            ..Default::default()
        }];
        for (i, &(pages, bytes, stopped)) in rs.iter().enumerate() {
            reports.push(RunReport {
                seq: i as u64 + 2,
                pages,
                record_bytes: bytes,
                stopped_ns: stopped,
                total_ns: 250_000_000,
                interval_ns: 250_000_000,
                diffed: pages / 2,
                ..Default::default()
            });
        }
        Raw::CkptRun(Box::new(CkptRunSample {
            part: part.into(),
            variant: variant.into(),
            workload: workload.into(),
            round,
            bytes: 4 << 20,
            threads: 1,
            rate: 100,
            pattern: "uniform".into(),
            write: "sparse".into(),
            reports,
            ..Default::default()
        }))
    }

    #[test]
    fn steady_state_ratios_and_targets() {
        let raw = vec![
            run(
                "rate",
                "memkit",
                "uniform",
                0,
                &[(10, 100, 5), (12, 100, 7)],
            ),
            run("rate", "soft-dirty", "uniform", 0, &[(10, 100, 5)]),
            run("diff", "diff", "sparse", 0, &[(10, 4000, 0), (10, 6000, 0)]),
            run(
                "diff",
                "no-diff",
                "sparse",
                0,
                &[(10, 40000, 0), (10, 50000, 0)],
            ),
            run(
                "precopy",
                "no-precopy",
                "zipf",
                0,
                &[(1, 1, 3000), (1, 1, 1000)],
            ),
            run("precopy", "precopy", "zipf", 0, &[(1, 1, 1000)]),
            run("precopy", "no-precopy", "zipf", 1, &[(1, 1, 9000)]),
            run("precopy", "precopy", "zipf", 1, &[(1, 1, 3000)]),
        ];
        let r = build(&raw);
        let get = |b: &str, v: &str, m: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == b && l.variant == v && l.metric == m)
                .map(|l| l.value)
        };
        // Two steady checkpoints of 0.25 s each: 4/s; the full first one left out.
        assert_eq!(
            get("ckpt-rate/4MiB", "memkit", "checkpoints_per_s"),
            Some(4.0)
        );
        assert_eq!(
            get("ckpt-rate/4MiB", "memkit", "dirty_pages_per_ckpt"),
            Some(11.0)
        );
        assert_eq!(
            get(
                "ckpt-diff/4MiB/sparse",
                "no-diff/diff",
                "record_bytes_per_ckpt_ratio"
            ),
            Some(9.0)
        );
        // Round 0: median 2000 ns over 1000; round 1: 9000 over 3000.
        assert_eq!(
            get(
                "ckpt-precopy/4MiB/zipf",
                "no-precopy/precopy",
                "stopped_us_ratio"
            ),
            Some(2.5)
        );
        let met = |name: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == "target" && l.variant.starts_with(name))
                .map(|l| l.value)
        };
        assert_eq!(met(">= 100 checkpoints/s"), Some(0.0));
        assert_eq!(met(">= 10x fewer bytes"), Some(0.0));
        assert_eq!(met(">= 2x less time stopped"), Some(1.0));
        assert!(r.table.contains("Checkpointer"), "{}", r.table);
    }
}
