//! `memkit-bench report`: raw lines of host and guest runs in, the results out as
//! JSON lines `{"bench","variant","metric","value","unit"}` plus a readable table.
//!
//! Throughput is the median over rounds (min and max kept); a ratio is the median of
//! the per-round ratios (the variants of a round ran back to back). Counts per
//! transaction are totals over every round divided by the transactions.
//!
//! Checkpoint collect (`ckpt-collect/SIZE/DIRTY%`): a variant's time is the median
//! over rounds of each round's median iteration; the speedups are medians of the
//! per-round ratios baseline / memkit.
//!
//! The checkpointer (`ckpt-rate/...`, `ckpt-precopy/...`, `ckpt-diff/...`): see
//! [`run`].
//!
//! Remote memory (`rmem/LATus/PATTERN`): see [`rmem`].

mod rmem;
mod run;

use crate::ckpt::{self, size_name};
use crate::host::VARIANTS;
use crate::sample::{CkptRunSample, CkptSample, Hist, Raw, RmemSample, Sample};
use crate::workload::ALL;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One result line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// What was measured: `host/8x64B`, `guest/virtio-pmem/1x64B/4t`, ...
    pub bench: String,
    /// Which implementation or mode, or `a/b` for a ratio.
    pub variant: String,
    /// `tx_per_s`, `barriers_per_tx`, ...
    pub metric: String,
    /// The number.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The kernel it ran on: `production` or `debug` (the guest kernels of
    /// `scripts/kernel.sh`), `host` for the host's own.
    pub kernel: String,
    /// The emulator of the guest it ran in (`tcg`), `none` on the host.
    pub vm: String,
}

/// The aggregated results.
pub struct Report {
    /// Every result, in table order.
    pub lines: Vec<Line>,
    /// The readable table.
    pub table: String,
}

/// Reads raw lines (anything that is not a JSON object, such as progress messages
/// or a guest console's `\r`, is skipped). Returns the parsed lines and how many
/// object lines did not parse.
pub fn parse(text: &str) -> (Vec<Raw>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for l in text.lines() {
        let l = l.trim_matches(|c: char| c.is_whitespace() || c == '\r');
        if !l.starts_with('{') {
            continue;
        }
        match serde_json::from_str::<Raw>(l) {
            Ok(r) => out.push(r),
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn rate(s: &Sample) -> f64 {
    s.tx as f64 / s.secs
}

/// Sum of `f` over `ss`, or `None` if any sample lacks it.
fn total(ss: &[&Sample], f: fn(&Sample) -> Option<u64>) -> Option<u64> {
    ss.iter().map(|s| f(s)).sum()
}

fn per(num: Option<u64>, den: u64) -> Option<f64> {
    num.filter(|_| den > 0).map(|n| n as f64 / den as f64)
}

/// Aggregates of one group of samples (same bench and variant, several rounds).
#[derive(Clone, Debug, Default)]
struct Agg {
    rounds: usize,
    tx_s: f64,
    tx_s_min: f64,
    tx_s_max: f64,
    barriers: Option<f64>,
    flushes: Option<f64>,
    tx_per_group: Option<f64>,
    bytes_per_payload: Option<f64>,
    lines: Option<f64>,
    lat_mean_us: Option<f64>,
    lat_p50_us: Option<f64>,
    lat_p99_us: Option<f64>,
    klat_p50_us: Option<f64>,
}

/// The median of a log2-microsecond histogram (the journal's own), as the geometric
/// middle of its bucket: a factor-of-two resolution.
fn log2_median_us(pairs: &BTreeMap<u32, u64>) -> Option<f64> {
    let total: u64 = pairs.values().sum();
    let mut seen = 0;
    for (&i, &n) in pairs {
        seen += n;
        if total > 0 && 2 * seen >= total {
            return Some(2f64.powf(f64::from(i) + 0.5));
        }
    }
    None
}

fn aggregate(ss: &[&Sample]) -> Agg {
    let mut rates: Vec<f64> = ss.iter().map(|s| rate(s)).collect();
    let tx: u64 = ss.iter().map(|s| s.tx).sum();
    let payload: u64 = ss.iter().map(|s| s.payload_bytes).sum();
    let written = total(ss, |s| Some(s.journal_bytes? + s.inplace_bytes?));
    let mut hist = Hist::default();
    for s in ss {
        if let Some(h) = &s.lat_hist {
            hist.merge(h);
        }
    }
    let groups = total(ss, |s| s.groups);
    let mut klat = BTreeMap::new();
    for s in ss {
        for &(i, n) in s.klat_hist.iter().flatten() {
            *klat.entry(i).or_insert(0u64) += n;
        }
    }
    Agg {
        rounds: ss.len(),
        tx_s: median(&mut rates),
        tx_s_min: rates.first().copied().unwrap_or(f64::NAN),
        tx_s_max: rates.last().copied().unwrap_or(f64::NAN),
        barriers: per(total(ss, |s| s.barriers), tx),
        flushes: per(total(ss, |s| s.flushes), tx),
        tx_per_group: groups.filter(|&g| g > 0).map(|g| tx as f64 / g as f64),
        bytes_per_payload: per(written, payload),
        lines: per(total(ss, |s| s.lines), tx),
        lat_mean_us: per(total(ss, |s| s.lat_ns_sum), tx).map(|ns| ns / 1e3),
        lat_p50_us: hist.quantile(0.5).map(|ns| ns / 1e3),
        lat_p99_us: hist.quantile(0.99).map(|ns| ns / 1e3),
        klat_p50_us: log2_median_us(&klat),
    }
}

/// Median over rounds of `a`'s rate / `b`'s rate in the same round; with the min and
/// max. `None` if no round has both.
fn round_ratio(a: &[&Sample], b: &[&Sample]) -> Option<(f64, f64, f64)> {
    let mut r: Vec<f64> = a
        .iter()
        .filter_map(|x| {
            b.iter()
                .find(|y| y.round == x.round)
                .map(|y| rate(x) / rate(y))
        })
        .collect();
    if r.is_empty() {
        return None;
    }
    let m = median(&mut r);
    Some((m, r[0], r[r.len() - 1]))
}

fn fmt_rate(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn fmt_opt(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

/// Renders rows as left-aligned columns (first row: the header).
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str("  ");
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

struct Builder {
    lines: Vec<Line>,
    table: String,
    /// Where the lines pushed now were measured: (kernel, vm) of [`Line`].
    place: (String, String),
}

impl Builder {
    fn push(&mut self, bench: &str, variant: &str, metric: &str, value: f64, unit: &str) {
        if value.is_finite() {
            self.lines.push(Line {
                bench: bench.into(),
                variant: variant.into(),
                metric: metric.into(),
                value,
                unit: unit.into(),
                kernel: self.place.0.clone(),
                vm: self.place.1.clone(),
            });
        }
    }

    /// The lines pushed from now on were measured on the host.
    fn at_host(&mut self) {
        self.place = ("host".into(), "none".into());
    }

    /// The lines pushed from now on were measured in the guest boot(s) of `envs`
    /// (their `kernel_config` and `accel`; `unknown` if they do not say, several
    /// joined with `|`).
    fn at_guest(&mut self, envs: &[&BTreeMap<String, String>]) {
        let of = |k: &str| {
            let mut v: Vec<&str> = envs
                .iter()
                .filter_map(|e| e.get(k).map(String::as_str))
                .collect();
            v.sort_unstable();
            v.dedup();
            if v.is_empty() {
                "unknown".to_string()
            } else {
                v.join("|")
            }
        };
        self.place = (of("kernel_config"), of("accel"));
    }

    fn push_opt(&mut self, bench: &str, variant: &str, metric: &str, v: Option<f64>, unit: &str) {
        if let Some(v) = v {
            self.push(bench, variant, metric, v, unit);
        }
    }

    fn push_agg(&mut self, bench: &str, variant: &str, a: &Agg) {
        self.push(bench, variant, "tx_per_s", a.tx_s, "tx/s");
        self.push(bench, variant, "tx_per_s_min", a.tx_s_min, "tx/s");
        self.push(bench, variant, "tx_per_s_max", a.tx_s_max, "tx/s");
        self.push(bench, variant, "rounds", a.rounds as f64, "count");
        self.push_opt(bench, variant, "barriers_per_tx", a.barriers, "barriers/tx");
        self.push_opt(bench, variant, "flushes_per_tx", a.flushes, "flushes/tx");
        self.push_opt(bench, variant, "tx_per_group", a.tx_per_group, "tx/group");
        self.push_opt(
            bench,
            variant,
            "bytes_per_payload_byte",
            a.bytes_per_payload,
            "bytes/byte",
        );
        self.push_opt(bench, variant, "lines_per_tx", a.lines, "lines/tx");
        self.push_opt(bench, variant, "lat_us_mean", a.lat_mean_us, "us");
        self.push_opt(bench, variant, "lat_us_p50", a.lat_p50_us, "us");
        self.push_opt(bench, variant, "lat_us_p99", a.lat_p99_us, "us");
        self.push_opt(bench, variant, "kernel_lat_us_p50", a.klat_p50_us, "us");
    }
}

fn env_summary(envs: &[&BTreeMap<String, String>], keys: &[&str]) -> String {
    let mut parts = Vec::new();
    for k in keys {
        let mut vals: Vec<&str> = envs
            .iter()
            .filter_map(|e| e.get(*k).map(String::as_str))
            .collect();
        vals.sort_unstable();
        vals.dedup();
        if !vals.is_empty() {
            parts.push(format!("{k}={}", vals.join("|")));
        }
    }
    parts.join(", ")
}

/// Builds the results and the table from raw lines.
pub fn build(raw: &[Raw]) -> Report {
    let samples: Vec<&Sample> = raw
        .iter()
        .filter_map(|r| match r {
            Raw::Sample(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let ckpts: Vec<&CkptSample> = raw
        .iter()
        .filter_map(|r| match r {
            Raw::Ckpt(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let runs: Vec<&CkptRunSample> = raw
        .iter()
        .filter_map(|r| match r {
            Raw::CkptRun(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let rmems: Vec<&RmemSample> = raw
        .iter()
        .filter_map(|r| match r {
            Raw::Rmem(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let envs: Vec<&BTreeMap<String, String>> = raw
        .iter()
        .filter_map(|r| match r {
            Raw::Env(e) => Some(e),
            _ => None,
        })
        .collect();
    let env_where = |w: &str| -> Vec<&BTreeMap<String, String>> {
        envs.iter()
            .filter(|e| e.get("where").map(String::as_str) == Some(w))
            .copied()
            .collect()
    };
    let select = |kind: &str, dev: Option<&str>, wl: &str, t: u32, v: &str| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| {
                s.kind == kind
                    && s.device.as_deref() == dev
                    && s.workload == wl
                    && s.threads == t
                    && s.variant == v
            })
            .copied()
            .collect()
    };
    let mut b = Builder {
        lines: Vec::new(),
        table: String::new(),
        place: ("host".into(), "none".into()),
    };
    let mut targets: Vec<(String, String, bool)> = Vec::new();
    let mut host_aggs: BTreeMap<(String, String), Agg> = BTreeMap::new();

    // Host: the engine against PMDK.
    b.at_host();
    if samples.iter().any(|s| s.kind == "host") {
        let _ = writeln!(
            b.table,
            "Host: memkit engine vs PMDK libpmemobj and the one-fence floor, 1 thread, \
             DRAM-backed files\n  {}",
            env_summary(
                &env_where("host"),
                &[
                    "cpu",
                    "kernel",
                    "flush",
                    "pmdk",
                    "pmdk_is_pmem",
                    "dir",
                    "secs",
                    "rounds"
                ]
            )
        );
        let mut rows = vec![[
            "workload",
            "variant",
            "tx/s (median)",
            "min..max",
            "barriers/tx",
            "bytes/payload",
            "lines/tx",
            "vs pmdk (median, min..max)",
            "vs floor",
        ]
        .map(String::from)
        .to_vec()];
        for w in ALL {
            let bench = format!("host/{}", w.name);
            for v in VARIANTS {
                let ss = select("host", None, w.name, 1, v);
                if ss.is_empty() {
                    continue;
                }
                let a = aggregate(&ss);
                b.push_agg(&bench, v, &a);
                let vs = if v == "pmdk" || v == "floor" {
                    String::new()
                } else {
                    let p = select("host", None, w.name, 1, "pmdk");
                    match round_ratio(&ss, &p) {
                        Some((m, lo, hi)) => {
                            b.push(&bench, &format!("{v}/pmdk"), "tx_per_s_ratio", m, "x");
                            format!("{m:.2}x ({lo:.2}..{hi:.2})")
                        }
                        None => "-".into(),
                    }
                };
                let vs_floor = if v.starts_with("memkit") {
                    let f = select("host", None, w.name, 1, "floor");
                    match round_ratio(&ss, &f) {
                        Some((m, _, _)) => {
                            b.push(&bench, &format!("{v}/floor"), "tx_per_s_ratio", m, "x");
                            format!("{m:.2}x")
                        }
                        None => "-".into(),
                    }
                } else {
                    String::new()
                };
                rows.push(vec![
                    w.name.into(),
                    v.into(),
                    fmt_rate(a.tx_s),
                    format!("{}..{}", fmt_rate(a.tx_s_min), fmt_rate(a.tx_s_max)),
                    fmt_opt(a.barriers, 2),
                    fmt_opt(a.bytes_per_payload, 2),
                    fmt_opt(a.lines, 1),
                    vs,
                    vs_floor,
                ]);
                host_aggs.insert((w.name.into(), v.into()), a);
            }
            let c = select("host", None, w.name, 1, "memkit-coalesced");
            let s = select("host", None, w.name, 1, "memkit-strict");
            if let Some((m, _, _)) = round_ratio(&c, &s) {
                b.push(
                    &bench,
                    "memkit-coalesced/memkit-strict",
                    "tx_per_s_ratio",
                    m,
                    "x",
                );
            }
        }
        b.table.push_str(&columns(&rows));
        let mut crc_ns = BTreeMap::new();
        for (v, name) in [("table", "engine-table"), ("sse4.2", "sse4.2")] {
            let mut ns: Vec<f64> = samples
                .iter()
                .filter(|s| s.kind == "crc32c" && s.variant == v)
                .map(|s| s.secs * 1e9 / (s.bytes.unwrap_or(0) as f64 / 1024.0))
                .collect();
            if !ns.is_empty() {
                let m = median(&mut ns);
                b.push("host/crc32c", name, "ns_per_kib", m, "ns/KiB");
                crc_ns.insert(v, m);
            }
        }
        // The engine checksums with the instruction where the CPU has it.
        if let Some(&t) = crc_ns.get("sse4.2").or(crc_ns.get("table")) {
            let table = crc_ns.get("table").map_or(String::new(), |t| {
                format!("; the table-driven oracle {t:.0} ns")
            });
            let _ = writeln!(
                b.table,
                "  CRC-32C alone (median): the engine's {t:.0} ns per KiB{table}"
            );
            // The engine checksums, per transaction, the uuid (16 bytes), the entries
            // and 56 header bytes: journal bytes + 8.
            let mut shares = Vec::new();
            for w in ALL {
                for v in ["memkit-coalesced", "memkit-strict"] {
                    let Some(a) = host_aggs.get(&(w.name.into(), v.into())) else {
                        continue;
                    };
                    let ss = select("host", None, w.name, 1, v);
                    let tx: u64 = ss.iter().map(|s| s.tx).sum();
                    if let Some(jb) = per(total(&ss, |s| s.journal_bytes), tx) {
                        let share = t / 1024.0 * (jb + 8.0) / (1e9 / a.tx_s);
                        b.push(
                            &format!("host/{}", w.name),
                            v,
                            "crc_share_est",
                            share,
                            "fraction",
                        );
                        if v == "memkit-coalesced" {
                            shares.push(format!("{} {:.0}%", w.name, share * 100.0));
                        }
                    }
                }
            }
            if !shares.is_empty() {
                let _ = writeln!(
                    b.table,
                    "  estimated share of a coalesced commit spent in the checksum: {}",
                    shares.join(", ")
                );
            }
        }
        // Issue targets: >= 3x PMDK on the 64-byte workloads, >= 1.5x on 4 KiB;
        // within 1.5x of the one-fence floor; bytes per payload byte.
        for w in ALL {
            let Some(a) = host_aggs.get(&(w.name.into(), "memkit-coalesced".into())) else {
                continue;
            };
            let c = select("host", None, w.name, 1, "memkit-coalesced");
            let want = if w.len >= 4096 { 1.5 } else { 3.0 };
            if let Some((m, _, _)) = round_ratio(&c, &select("host", None, w.name, 1, "pmdk")) {
                targets.push((
                    format!(
                        "host engine >= {want}x libpmemobj tx/s on {} (coalesced)",
                        w.name
                    ),
                    format!("{m:.2}x ({} vs pmdk)", fmt_rate(a.tx_s)),
                    m >= want,
                ));
            }
            if let Some((m, _, _)) = round_ratio(&c, &select("host", None, w.name, 1, "floor")) {
                targets.push((
                    format!(
                        "host engine within 1.5x of the one-fence floor on {}",
                        w.name
                    ),
                    format!("floor {:.2}x the engine's rate", 1.0 / m),
                    1.0 / m <= 1.5,
                ));
            }
            if let Some(x) = a.bytes_per_payload {
                let want = if w.name == "1x64B" { 2.7 } else { 2.2 };
                targets.push((
                    format!("bytes written <= {want}x payload, {}", w.name),
                    format!("{x:.3}x"),
                    x <= want,
                ));
            }
        }
        b.table.push('\n');
    }

    // Guest: the device, per pmem kind.
    let mut devices: Vec<&str> = samples
        .iter()
        .filter(|s| s.kind == "guest")
        .filter_map(|s| s.device.as_deref())
        .collect();
    devices.sort_by_key(|d| (*d != "virtio-pmem", *d));
    devices.dedup();
    let mut guest_aggs: BTreeMap<(String, String, u32, String), Agg> = BTreeMap::new();
    for dev in &devices {
        let denv = env_where(&format!("guest/{dev}"));
        b.at_guest(&denv);
        let _ = writeln!(
            b.table,
            "Guest: /dev/memkit-journal (coalesced, strict) and PMDK libpmemobj (pmdk) on \
             {dev}\n  {}",
            env_summary(
                &denv,
                &[
                    "kernel_config",
                    "vm",
                    "cpu",
                    "kernel",
                    "cpus",
                    "block",
                    "queue_dax",
                    "sync_dax",
                    "mj",
                    "pmdk_map_sync",
                    "pmdk_dir"
                ]
            )
        );
        for (key, metric) in [("sync_dax", "sync_dax"), ("queue_dax", "queue_dax")] {
            let vals: Vec<f64> = denv
                .iter()
                .filter_map(|e| e.get(key).and_then(|v| v.parse().ok()))
                .collect();
            if let Some(&v) = vals.first() {
                let same = vals.iter().all(|&x| x == v);
                b.push(
                    &format!("guest/{dev}"),
                    "device",
                    metric,
                    if same { v } else { -1.0 },
                    "bool",
                );
            }
        }
        let mut rows = vec![[
            "workload",
            "threads",
            "mode",
            "tx/s (median)",
            "min..max",
            "barriers/tx",
            "flushes/tx",
            "tx/group",
            "bytes/payload",
            "lat p50/p99 us",
            "kernel p50 us (log2 bucket)",
            "coalesced/strict",
            "vs pmdk",
        ]
        .map(String::from)
        .to_vec()];
        let mut threads: Vec<u32> = samples
            .iter()
            .filter(|s| s.kind == "guest" && s.device.as_deref() == Some(dev))
            .map(|s| s.threads)
            .collect();
        threads.sort_unstable();
        threads.dedup();
        for w in ALL {
            for &t in &threads {
                let bench = format!("guest/{dev}/{}/{t}t", w.name);
                for mode in ["coalesced", "strict", "pmdk"] {
                    let ss = select("guest", Some(dev), w.name, t, mode);
                    if ss.is_empty() {
                        continue;
                    }
                    let a = aggregate(&ss);
                    b.push_agg(&bench, mode, &a);
                    let vs = if mode == "coalesced" {
                        let st = select("guest", Some(dev), w.name, t, "strict");
                        match round_ratio(&ss, &st) {
                            Some((m, _, _)) => {
                                b.push(&bench, "coalesced/strict", "tx_per_s_ratio", m, "x");
                                format!("{m:.2}x")
                            }
                            None => "-".into(),
                        }
                    } else {
                        String::new()
                    };
                    let vs_pmdk = if mode == "pmdk" {
                        String::new()
                    } else {
                        let p = select("guest", Some(dev), w.name, t, "pmdk");
                        match round_ratio(&ss, &p) {
                            Some((m, _, _)) => {
                                b.push(&bench, &format!("{mode}/pmdk"), "tx_per_s_ratio", m, "x");
                                format!("{m:.2}x")
                            }
                            None => "-".into(),
                        }
                    };
                    rows.push(vec![
                        w.name.into(),
                        t.to_string(),
                        mode.into(),
                        fmt_rate(a.tx_s),
                        format!("{}..{}", fmt_rate(a.tx_s_min), fmt_rate(a.tx_s_max)),
                        fmt_opt(a.barriers, 2),
                        fmt_opt(a.flushes, 2),
                        fmt_opt(a.tx_per_group, 2),
                        fmt_opt(a.bytes_per_payload, 2),
                        format!("{}/{}", fmt_opt(a.lat_p50_us, 0), fmt_opt(a.lat_p99_us, 0)),
                        fmt_opt(a.klat_p50_us, 0),
                        vs,
                        vs_pmdk,
                    ]);
                    guest_aggs.insert((dev.to_string(), w.name.into(), t, mode.into()), a);
                }
            }
        }
        b.table.push_str(&columns(&rows));
        b.table.push('\n');
    }

    // The cost of the device flush: the same 1x64B single-thread run on both kinds.
    let v = guest_aggs.get(&("virtio-pmem".into(), "1x64B".into(), 1, "coalesced".into()));
    let m = guest_aggs.get(&("memmap-pmem".into(), "1x64B".into(), 1, "coalesced".into()));
    if let (Some(v), Some(m)) = (v, m) {
        let bench = "guest-dax/1x64B/1t";
        let ratio = m.tx_s / v.tx_s;
        b.push(
            bench,
            "memmap-pmem/virtio-pmem",
            "tx_per_s_ratio",
            ratio,
            "x",
        );
        let diff = v.lat_mean_us.zip(m.lat_mean_us).map(|(a, c)| a - c);
        b.push_opt(
            bench,
            "virtio-pmem-minus-memmap-pmem",
            "lat_us_mean_diff",
            diff,
            "us",
        );
        let _ = writeln!(
            b.table,
            "Device flush cost (1x64B, 1 thread, coalesced; separate boots):"
        );
        let rows = vec![
            [
                "device",
                "tx/s",
                "lat mean us",
                "lat p50/p99 us",
                "flushes/tx",
            ]
            .map(String::from)
            .to_vec(),
            vec![
                "virtio-pmem (flush per barrier)".into(),
                fmt_rate(v.tx_s),
                fmt_opt(v.lat_mean_us, 1),
                format!("{}/{}", fmt_opt(v.lat_p50_us, 0), fmt_opt(v.lat_p99_us, 0)),
                fmt_opt(v.flushes, 2),
            ],
            vec![
                "memmap pmem (synchronous DAX)".into(),
                fmt_rate(m.tx_s),
                fmt_opt(m.lat_mean_us, 1),
                format!("{}/{}", fmt_opt(m.lat_p50_us, 0), fmt_opt(m.lat_p99_us, 0)),
                fmt_opt(m.flushes, 2),
            ],
        ];
        b.table.push_str(&columns(&rows));
        let _ = writeln!(
            b.table,
            "  memmap/virtio tx/s: {ratio:.2}x; mean latency difference (the flush round trip): {} us\n",
            fmt_opt(diff, 1)
        );
    }

    let ckpt_envs: Vec<&BTreeMap<String, String>> = envs
        .iter()
        .filter(|e| e.get("where").is_some_and(|w| w.ends_with("ckpt")))
        .copied()
        .collect();
    b.at_guest(&ckpt_envs);
    ckpt_section(&mut b, &ckpts, &ckpt_envs, &mut targets);
    run::section(&mut b, &runs, &ckpt_envs, &mut targets);
    if !runs.is_empty() {
        b.table.push('\n');
    }
    b.at_guest(&env_where("guest/rmem"));
    rmem::section(&mut b, &rmems, &mut targets);

    // Targets on the guest's numbers (virtio-pmem, the test device).
    for w in ALL {
        let g = |t: u32, mode: &str| {
            guest_aggs
                .get(&("virtio-pmem".into(), w.name.into(), t, mode.into()))
                .and_then(|a| a.barriers)
        };
        if let Some(x) = g(1, "coalesced") {
            targets.push((
                format!("<= 1.0 barrier/tx, 1 thread, coalesced, guest {}", w.name),
                format!("{x:.3}"),
                x <= 1.0,
            ));
        }
        if let Some(x) = g(1, "strict") {
            targets.push((
                format!("2 barriers/tx, 1 thread, strict, guest {}", w.name),
                format!("{x:.3}"),
                (x - 2.0).abs() < 1e-9,
            ));
        }
        if let Some(x) = g(4, "coalesced") {
            targets.push((
                format!("< 0.6 barrier/tx, 4 threads, coalesced, guest {}", w.name),
                format!("{x:.3}"),
                x < 0.6,
            ));
        }
    }
    // The ioctl path against PMDK on synchronous pmem (MAP_SYNC: PMDK flushes with
    // CPU instructions there, its best case): >= 1x at 1 thread, >= 1.5x at 4.
    for w in ALL {
        for (t, want) in [(1u32, 1.0), (4, 1.5)] {
            let c = select("guest", Some("memmap-pmem"), w.name, t, "coalesced");
            let p = select("guest", Some("memmap-pmem"), w.name, t, "pmdk");
            if let Some((m, _, _)) = round_ratio(&c, &p) {
                targets.push((
                    format!(
                        "guest ioctl >= {want}x PMDK on memmap pmem, {} {t} thread(s)",
                        w.name
                    ),
                    format!("{m:.2}x"),
                    m >= want,
                ));
            }
        }
    }
    if !targets.is_empty() {
        let _ = writeln!(b.table, "Targets:");
        let mut rows = vec![["target", "measured", "met"].map(String::from).to_vec()];
        for (name, got, ok) in &targets {
            b.push("target", name, "met", if *ok { 1.0 } else { 0.0 }, "bool");
            rows.push(vec![
                name.clone(),
                got.clone(),
                if *ok { "yes" } else { "NO" }.into(),
            ]);
        }
        b.table.push_str(&columns(&rows));
    }
    Report {
        lines: b.lines,
        table: b.table,
    }
}

/// `0.1%`, `1%`, `10%`.
fn pct_name(p: f64) -> String {
    format!("{p}%")
}

fn fmt_us(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// One variant at one (size, dirty %): its per-round medians, in microseconds.
struct CkptAgg {
    /// `(round, median collect + clear us)`.
    rounds: Vec<(u32, f64)>,
    us: f64,
    us_min: f64,
    us_max: f64,
    write_us: f64,
    reported_per_iter: f64,
    false_pos: u64,
}

fn ckpt_aggregate(ss: &[&CkptSample]) -> Option<CkptAgg> {
    let med = |v: &[u64]| median(&mut v.iter().map(|&x| x as f64 / 1e3).collect::<Vec<_>>());
    let rounds: Vec<(u32, f64)> = ss
        .iter()
        .filter(|s| !s.collect_ns.is_empty())
        .map(|s| (s.round, med(&s.collect_ns)))
        .collect();
    if rounds.is_empty() {
        return None;
    }
    let mut us: Vec<f64> = rounds.iter().map(|r| r.1).collect();
    let m = median(&mut us);
    let writes: Vec<u64> = ss.iter().flat_map(|s| s.write_ns.iter().copied()).collect();
    let iters: usize = ss.iter().map(|s| s.collect_ns.len()).sum();
    Some(CkptAgg {
        us: m,
        us_min: us[0],
        us_max: us[us.len() - 1],
        write_us: med(&writes),
        reported_per_iter: ss.iter().map(|s| s.reported).sum::<u64>() as f64 / iters as f64,
        false_pos: ss.iter().map(|s| s.false_pos).sum(),
        rounds,
    })
}

/// Median, min and max over rounds of `base`'s time / `memkit`'s time.
fn ckpt_speedup(memkit: &CkptAgg, base: &CkptAgg) -> Option<(f64, f64, f64)> {
    let mut r: Vec<f64> = memkit
        .rounds
        .iter()
        .filter_map(|&(round, m)| base.rounds.iter().find(|b| b.0 == round).map(|b| b.1 / m))
        .collect();
    if r.is_empty() {
        return None;
    }
    let m = median(&mut r);
    Some((m, r[0], r[r.len() - 1]))
}

/// The `ckpt-collect` variant that stands for memkit at `pct` % dirty: the mode the
/// module's own choice settles in at that fraction of the region written per
/// interval (`memkit_core::ckpt::track`: recording below its lower threshold, else
/// the scan it starts in).
fn settled_variant(pct: f64) -> &'static str {
    if pct * 10.0 < memkit::core::ckpt::track::RECORD_BELOW_PERMILLE as f64 {
        "memkit-record"
    } else {
        "memkit-scan"
    }
}

/// The checkpoint collect + clear comparison: result lines, a table, three targets.
fn ckpt_section(
    b: &mut Builder,
    cs: &[&CkptSample],
    env: &[&BTreeMap<String, String>],
    targets: &mut Vec<(String, String, bool)>,
) {
    if cs.is_empty() {
        return;
    }
    let _ = writeln!(
        b.table,
        "Checkpoint collect + clear: /dev/memkit-ckpt ioctl (scan and recording modes) vs \
         soft-dirty (pagemap read or PAGEMAP_SCAN, + clear_refs) vs PAGEMAP_SCAN (uffd \
         async write-protect)"
    );
    let summary = env_summary(
        env,
        &[
            "where",
            "kernel_config",
            "vm",
            "cpu",
            "kernel",
            "cpus",
            "rounds",
            "iters",
            "warmup",
        ],
    );
    if !summary.is_empty() {
        let _ = writeln!(b.table, "  {summary}");
    }
    let mut points: Vec<(u64, f64)> = cs.iter().map(|s| (s.bytes, s.dirty_pct)).collect();
    points.sort_by(|a, c| a.0.cmp(&c.0).then(a.1.total_cmp(&c.1)));
    points.dedup();
    let mut rows = vec![[
        "region",
        "dirty",
        "pages",
        "scan us",
        "record us",
        "soft-dirty us",
        "sd-scan us",
        "pagemap-scan us",
        "memkit",
        "vs soft-dirty",
        "vs pagemap-scan",
        "write us (sc/rec/sd/sds/ps)",
        "extra",
    ]
    .map(String::from)
    .to_vec()];
    // Each baseline, and the soft-dirty target's: the faster of its two ways.
    let bases = ["soft-dirty", "soft-dirty-scan", "pagemap-scan"];
    // (lowest vs soft-dirty, lowest vs pagemap-scan, lowest vs pagemap-scan at 0.1 %)
    let mut worst: [Option<(f64, String)>; 3] = [None, None, None];
    let mut note = |k: usize, m: f64, point: &str| {
        if worst[k].as_ref().is_none_or(|w| m < w.0) {
            worst[k] = Some((m, point.to_string()));
        }
    };
    for &(bytes, pct) in &points {
        let point = format!("{}/{}", size_name(bytes), pct_name(pct));
        let bench = format!("ckpt-collect/{point}");
        let of = |v: &str| -> Vec<&CkptSample> {
            cs.iter()
                .filter(|s| s.bytes == bytes && s.dirty_pct == pct && s.variant == v)
                .copied()
                .collect()
        };
        let aggs: BTreeMap<&str, CkptAgg> = ckpt::VARIANTS
            .iter()
            .filter_map(|&v| ckpt_aggregate(&of(v)).map(|a| (v, a)))
            .collect();
        let pages = cs
            .iter()
            .find(|s| s.bytes == bytes && s.dirty_pct == pct)
            .map_or(0, |s| s.dirty_pages);
        let mut cells = vec![size_name(bytes), pct_name(pct), pages.to_string()];
        for v in ckpt::VARIANTS {
            let Some(a) = aggs.get(v) else {
                cells.push("-".into());
                continue;
            };
            b.push(&bench, v, "collect_clear_us", a.us, "us");
            b.push(&bench, v, "collect_clear_us_min", a.us_min, "us");
            b.push(&bench, v, "collect_clear_us_max", a.us_max, "us");
            b.push(&bench, v, "rounds", a.rounds.len() as f64, "count");
            b.push(&bench, v, "write_us", a.write_us, "us");
            b.push(&bench, v, "dirty_pages", pages as f64, "pages");
            b.push(&bench, v, "reported_per_iter", a.reported_per_iter, "pages");
            b.push(&bench, v, "false_positives", a.false_pos as f64, "pages");
            cells.push(fmt_us(a.us));
        }
        let settled = settled_variant(pct);
        cells.push(settled.trim_start_matches("memkit-").into());
        let mut speedups = BTreeMap::new();
        if let Some(m) = aggs.get(settled) {
            for base in bases {
                if let Some(r) = aggs.get(base).and_then(|o| ckpt_speedup(m, o)) {
                    b.push(&bench, "memkit", &format!("speedup_vs_{base}"), r.0, "x");
                    speedups.insert(base, r);
                }
            }
        }
        // Against soft-dirty: the faster of its two ways (the lower speedup).
        let sd = ["soft-dirty", "soft-dirty-scan"]
            .iter()
            .filter_map(|base| speedups.get(base).copied())
            .min_by(|a, c| a.0.total_cmp(&c.0));
        for (k, r) in [(0, sd), (1, speedups.get("pagemap-scan").copied())] {
            match r {
                Some((m, lo, hi)) => {
                    cells.push(format!("{m:.2}x ({lo:.2}..{hi:.2})"));
                    note(k, m, &point);
                    if k == 1 && pct <= 0.1 {
                        note(2, m, &point);
                    }
                }
                None => cells.push("-".into()),
            }
        }
        let cell = |f: &dyn Fn(&CkptAgg) -> String| -> String {
            ckpt::VARIANTS
                .iter()
                .map(|v| aggs.get(v).map_or("-".into(), f))
                .collect::<Vec<_>>()
                .join("/")
        };
        cells.push(cell(&|a| fmt_us(a.write_us)));
        cells.push(cell(&|a| a.false_pos.to_string()));
        rows.push(cells);
    }
    b.table.push_str(&columns(&rows));
    let _ = writeln!(
        b.table,
        "  us: median over rounds of each round's median iteration (min and max in the \
         results); memkit: the mode the module settles in at that fraction (recording \
         below {} per mille, else scan), its speedup = baseline us / its us per round, \
         median (min..max); vs soft-dirty: the faster of soft-dirty's two ways; write us: \
         the writes before a collect, their faults included\n",
        memkit::core::ckpt::track::RECORD_BELOW_PERMILLE
    );
    let points_n = points.len();
    let checks = [
        (0, "ckpt collect+clear >= 3x faster than soft-dirty", 3.0),
        (1, "ckpt collect+clear no slower than PAGEMAP_SCAN", 1.0),
        (
            2,
            "ckpt collect+clear >= 3x faster than PAGEMAP_SCAN at 0.1 %",
            3.0,
        ),
    ];
    for (k, what, floor) in checks {
        if let Some((m, at)) = &worst[k] {
            targets.push((
                format!("{what} ({points_n} points)"),
                format!("lowest {m:.2}x ({at})"),
                *m >= floor,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(w: &str, v: &str, round: u32, tx: u64) -> Raw {
        Raw::Sample(Box::new(Sample {
            kind: "host".into(),
            workload: w.into(),
            variant: v.into(),
            threads: 1,
            round,
            tx,
            secs: 1.0,
            payload_bytes: tx * 512,
            barriers: v.starts_with("memkit").then_some(tx),
            journal_bytes: v.starts_with("memkit").then_some(tx * 704),
            inplace_bytes: v.starts_with("memkit").then_some(tx * 512),
            ..Default::default()
        }))
    }

    #[test]
    fn medians_ratios_and_targets() {
        let raw = vec![
            host("8x64B", "memkit-coalesced", 0, 300),
            host("8x64B", "pmdk", 0, 100),
            host("8x64B", "memkit-coalesced", 1, 400),
            host("8x64B", "pmdk", 1, 200),
            host("8x64B", "memkit-coalesced", 2, 1000),
            host("8x64B", "pmdk", 2, 250),
        ];
        let r = build(&raw);
        let get = |b: &str, v: &str, m: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == b && l.variant == v && l.metric == m)
                .map(|l| l.value)
        };
        assert_eq!(
            get("host/8x64B", "memkit-coalesced", "tx_per_s"),
            Some(400.0)
        );
        assert_eq!(get("host/8x64B", "pmdk", "tx_per_s_min"), Some(100.0));
        // Per-round ratios 3, 2, 4: median 3.
        assert_eq!(
            get("host/8x64B", "memkit-coalesced/pmdk", "tx_per_s_ratio"),
            Some(3.0)
        );
        assert_eq!(
            get("host/8x64B", "memkit-coalesced", "barriers_per_tx"),
            Some(1.0)
        );
        assert_eq!(
            get("host/8x64B", "memkit-coalesced", "bytes_per_payload_byte"),
            Some(1216.0 / 512.0)
        );
        assert!(get("host/8x64B", "pmdk", "barriers_per_tx").is_none());
        let met = |name: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == "target" && l.variant.starts_with(name))
                .map(|l| l.value)
        };
        assert_eq!(met("host engine >= 3x"), Some(1.0));
        assert_eq!(met("bytes written <= 2.2x payload, 8x64B"), Some(0.0));
        assert!(r.table.contains("3.00x (2.00..4.00)"), "{}", r.table);
    }

    #[test]
    fn parse_skips_noise_and_carriage_returns() {
        let line = host("1x64B", "pmdk", 0, 5).line();
        let text = format!("progress\n{line}\r\n{{broken\n\n{line}\n");
        let (raw, bad) = parse(&text);
        assert_eq!(raw.len(), 2);
        assert_eq!(bad, 1);
    }

    #[test]
    fn json_line_has_its_keys_in_order() {
        let l = Line {
            bench: "b".into(),
            variant: "v".into(),
            metric: "m".into(),
            value: 1.5,
            unit: "u".into(),
            kernel: "production".into(),
            vm: "tcg".into(),
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"bench":"b","variant":"v","metric":"m","value":1.5,"unit":"u","kernel":"production","vm":"tcg"}"#
        );
    }

    fn ck(v: &str, round: u32, ns: &[u64]) -> Raw {
        Raw::Ckpt(Box::new(CkptSample {
            variant: v.into(),
            bytes: 64 << 20,
            dirty_pct: 1.0,
            dirty_pages: 164,
            round,
            collect_ns: ns.to_vec(),
            write_ns: vec![1000; ns.len()],
            reported: 164 * ns.len() as u64,
            ..Default::default()
        }))
    }

    #[test]
    fn ckpt_medians_and_speedups() {
        let raw = vec![
            ck("memkit-scan", 0, &[1000, 2000, 9000]),
            ck("memkit-record", 0, &[9000, 9000, 9000]),
            ck("soft-dirty-scan", 0, &[9000, 9000, 9000]),
            ck("soft-dirty", 0, &[8000, 8000, 8000]),
            ck("pagemap-scan", 0, &[1000, 1000, 1000]),
            ck("memkit-scan", 1, &[4000]),
            ck("soft-dirty", 1, &[16000]),
            ck("pagemap-scan", 1, &[6000]),
        ];
        let r = build(&raw);
        let get = |v: &str, m: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == "ckpt-collect/64MiB/1%" && l.variant == v && l.metric == m)
                .map(|l| l.value)
        };
        // Round medians 2 and 4 us: median 3.
        // At 1 % the module settles in the scan: memkit's speedups are the scan's.
        assert_eq!(get("memkit-scan", "collect_clear_us"), Some(3.0));
        assert_eq!(get("memkit-scan", "collect_clear_us_max"), Some(4.0));
        // Per round 8/2 = 4 and 16/4 = 4; 1/2 and 6/4.
        assert_eq!(get("memkit", "speedup_vs_soft-dirty"), Some(4.0));
        assert_eq!(get("memkit", "speedup_vs_pagemap-scan"), Some(1.0));
        assert_eq!(get("soft-dirty", "reported_per_iter"), Some(164.0));
        assert!(r.table.contains("4.00x (4.00..4.00)"), "{}", r.table);
        let met = |name: &str| {
            r.lines
                .iter()
                .find(|l| l.bench == "target" && l.variant.starts_with(name))
                .map(|l| l.value)
        };
        assert_eq!(met("ckpt collect+clear >= 3x"), Some(1.0));
        assert_eq!(met("ckpt collect+clear no slower"), Some(1.0));
    }
}
