//! Raw measurements, one JSON object a line, as the runs print them; `report`
//! aggregates them into the results.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One measurement: a number of transactions in a time, with the counters' deltas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `host` (engine vs PMDK), `guest` (the device) or `crc32c` (a diagnostic).
    pub kind: String,
    /// Workload name (`1x64B`, ...).
    pub workload: String,
    /// host: `memkit-coalesced`, `memkit-strict` or `pmdk`; guest: the commit mode.
    pub variant: String,
    /// guest: which pmem device (`virtio-pmem`, `memmap-pmem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Threads committing.
    pub threads: u32,
    /// Round number: samples of one round ran next to each other.
    pub round: u32,
    /// Transactions committed in the measurement.
    pub tx: u64,
    /// Seconds of the measurement (wall clock).
    pub secs: f64,
    /// Bytes the transactions asked to write.
    pub payload_bytes: u64,
    /// Persistence barriers (engine or status counter delta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barriers: Option<u64>,
    /// Device flushes (status delta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushes: Option<u64>,
    /// Commit groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<u64>,
    /// Bytes written to MJs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_bytes: Option<u64>,
    /// Bytes written in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inplace_bytes: Option<u64>,
    /// 64-byte lines written back (host: `clwb`s issued; guest: the status counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    /// Sum of the per-transaction latencies, nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat_ns_sum: Option<u64>,
    /// Latency histogram: `(bucket, count)` with [`Hist`]'s buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat_hist: Option<Vec<(u32, u64)>>,
    /// guest: the journal's own commit-latency histogram (status delta; bucket `i`
    /// counts commits of `[2^i, 2^(i+1))` microseconds from the ioctl's entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub klat_hist: Option<Vec<(u32, u64)>>,
    /// crc32c: bytes checksummed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// One measurement of `memkit-bench ckpt-collect`: one variant's collect + clear of
/// one region size at one dirty fraction, in one round (several iterations).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CkptSample {
    /// `memkit`, `soft-dirty` or `pagemap-scan`.
    pub variant: String,
    /// Bytes of the tracked region.
    pub bytes: u64,
    /// Percentage of its pages written per iteration (0.1, 1, 10).
    pub dirty_pct: f64,
    /// Pages written per iteration (distinct).
    pub dirty_pages: u64,
    /// Round number: the variants of a round ran back to back, on the same pages.
    pub round: u32,
    /// Per iteration: nanoseconds of the collect + clear (the timed part).
    pub collect_ns: Vec<u64>,
    /// Per iteration: nanoseconds the writes of the dirty pages took (their write
    /// faults included), before the collect.
    pub write_ns: Vec<u64>,
    /// Pages reported over every iteration.
    pub reported: u64,
    /// Reported pages that were not written, over every iteration. (A written page
    /// not reported fails the run.)
    pub false_pos: u64,
}

/// The summary `memkit --json ckpt run` prints at the end (the fields used here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSummary {
    /// `memkit` (a region) or `soft-dirty`.
    pub source: String,
    /// Pre-copy on.
    pub precopy: bool,
    /// Diffs on (not `--no-diff`).
    pub diff: bool,
    /// Checkpoints taken.
    pub checkpoints: u64,
    /// Seconds of the whole run, the first checkpoint included.
    pub secs: f64,
    /// `checkpoints / secs`, the first checkpoint included.
    pub checkpoints_per_s: f64,
    /// Time stopped, the first checkpoint excluded, microseconds.
    pub stopped_us_p50: f64,
    /// Its 99th percentile.
    pub stopped_us_p99: f64,
    /// Its maximum.
    pub stopped_us_max: f64,
    /// Pages sent, every checkpoint.
    pub pages: u64,
    /// Of those, pre-copied.
    pub precopied: u64,
    /// Of those, sent as diffs.
    pub diffed: u64,
    /// Record bytes sent, every checkpoint.
    pub record_bytes: u64,
    /// The same pages whole (4096 bytes each).
    pub full_bytes: u64,
    /// With `--cow`: pages written before they were copied out of a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cow_copies: Option<u64>,
    /// Why the run ended before `--count`, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// One checkpoint's report line (`memkit ckpt run --reports`).
pub use memkit::primary::Report as RunReport;

/// The session line `memkit ckpt backup` prints when the primary disconnects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupSession {
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// Pages received.
    pub pages: u64,
    /// Record bytes received.
    pub record_bytes: u64,
    /// Diff lists sent to the primary.
    pub diff_lists: u64,
    /// Milliseconds over the checkpoints after the first, by step (`memkit ckpt
    /// backup`'s session line): the records checked and staged,
    pub stage_ms: f64,
    /// the log written and synced,
    pub log_ms: f64,
    /// renamed (the commit point),
    pub rename_ms: f64,
    /// the pages written into the replica.
    pub apply_ms: f64,
    /// The error that ended the session, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run of `memkit ckpt run` by `memkit-bench ckpt-run`: the settings, and what
/// the checkpointer and the backup said.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CkptRunSample {
    /// `rate` (checkpoints per second), `stop` (time stopped, with and without
    /// pre-copy) or `bytes` (bytes sent, with and without diffs).
    pub part: String,
    /// rate: `memkit` or `soft-dirty`; stop: `precopy` or `no-precopy`; bytes:
    /// `diff` or `no-diff`.
    pub variant: String,
    /// rate: `uniform`; stop: the pattern (`uniform`, `zipf`); bytes: the write
    /// kind (`sparse`, `dense`).
    pub workload: String,
    /// Round: the variants of a round ran back to back with the same writer.
    pub round: u32,
    /// Writes per writer thread between two checkpoints (0: no cap; `rate`: the
    /// writes that dirty the wanted fraction).
    #[serde(default)]
    pub per_checkpoint: u64,
    /// Bytes of the checkpointed memory.
    pub bytes: u64,
    /// Writer threads.
    pub threads: u32,
    /// Writes per second per writer thread.
    pub rate: u64,
    /// Writer page choice (`uniform`, `zipf`).
    pub pattern: String,
    /// Writer write kind (`sparse`, `dense`, `random`).
    pub write: String,
    /// `--interval-ms` (0: back to back).
    pub interval_ms: u64,
    /// Writer seed.
    pub seed: u64,
    /// Checkpoints after the first left out of the steady state: the catch-up
    /// after the first checkpoint (which sends every page and takes long, while the
    /// writer keeps writing) and, for diffs, the time the backup's diff list takes to
    /// form.
    #[serde(default)]
    pub warmup: u64,
    /// The checkpointer's summary.
    pub summary: RunSummary,
    /// Its report of every checkpoint, the first (everything, whole) included.
    pub reports: Vec<RunReport>,
    /// The backup's account of the session.
    pub backup: BackupSession,
    /// `memkit ckpt verify` of the target, stopped at the last checkpoint, against
    /// the replica (absent if not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

impl CkptRunSample {
    /// The steady-state checkpoints: all but the first, which sends every page, and
    /// the warm-up after it.
    pub fn steady(&self) -> &[RunReport] {
        let from = usize::try_from(self.warmup).map_or(usize::MAX, |w| w.saturating_add(1));
        self.reports.get(from..).unwrap_or(&[])
    }

    /// Every checkpoint but the first.
    pub fn after_first(&self) -> &[RunReport] {
        self.reports.get(1..).unwrap_or(&[])
    }
}

/// One run of the remote-memory access program: the JSON line `memkit workload rmem-run`
/// prints (guest job `bench-rmem`), read back with the same type.
pub use memkit::workload::RunReport as RmemSample;

/// One line of raw output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Raw {
    /// A measurement.
    Sample(Box<Sample>),
    /// A checkpoint collect measurement.
    Ckpt(Box<CkptSample>),
    /// A checkpointer run.
    #[serde(rename = "ckpt-run")]
    CkptRun(Box<CkptRunSample>),
    /// A remote-memory run (region or Linux swap peer).
    Rmem(Box<RmemSample>),
    /// Facts about where it ran (CPU, kernel, flush instruction, DAX mode, ...).
    Env(BTreeMap<String, String>),
}

impl Raw {
    /// The JSON line.
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("serialisable")
    }
}

/// A latency histogram with 8 buckets per power of two (about 9% wide each).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    counts: BTreeMap<u32, u64>,
    total: u64,
}

/// Buckets per power of two.
const SUB: f64 = 8.0;

impl Hist {
    /// Counts one value of `ns` nanoseconds.
    pub fn add(&mut self, ns: u64) {
        let b = ((ns.max(1) as f64).log2() * SUB).floor() as u32;
        *self.counts.entry(b).or_default() += 1;
        self.total += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, pairs: &[(u32, u64)]) {
        for &(b, n) in pairs {
            *self.counts.entry(b).or_default() += n;
            self.total += n;
        }
    }

    /// `(bucket, count)` pairs, for [`Sample::lat_hist`].
    pub fn pairs(&self) -> Vec<(u32, u64)> {
        self.counts.iter().map(|(&b, &n)| (b, n)).collect()
    }

    /// The `q` quantile (0..=1), as the geometric middle of its bucket; `None` if
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let want = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (&b, &n) in &self.counts {
            seen += n;
            if seen >= want {
                return Some(2f64.powf((f64::from(b) + 0.5) / SUB));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_round_trip() {
        let s = Raw::Sample(Box::new(Sample {
            kind: "host".into(),
            workload: "1x64B".into(),
            variant: "pmdk".into(),
            threads: 1,
            tx: 10,
            secs: 0.5,
            payload_bytes: 640,
            lat_hist: Some(vec![(3, 4)]),
            ..Default::default()
        }));
        let line = s.line();
        assert!(line.starts_with("{\"sample\":"), "{line}");
        assert!(!line.contains("barriers"));
        assert_eq!(serde_json::from_str::<Raw>(&line).unwrap(), s);
        let c = Raw::Ckpt(Box::new(CkptSample {
            variant: "memkit".into(),
            bytes: 64 << 20,
            dirty_pct: 0.1,
            dirty_pages: 16,
            collect_ns: vec![1000, 2000],
            write_ns: vec![10, 20],
            reported: 32,
            ..Default::default()
        }));
        assert!(c.line().starts_with("{\"ckpt\":"), "{}", c.line());
        assert_eq!(serde_json::from_str::<Raw>(&c.line()).unwrap(), c);
        let r = Raw::Rmem(Box::new(RmemSample {
            memory: "anon+swap".into(),
            pattern: "stride:4".into(),
            policy: "linux-swap".into(),
            accuracy: 0.5,
            ..Default::default()
        }));
        assert!(r.line().starts_with("{\"rmem\":"), "{}", r.line());
        assert_eq!(serde_json::from_str::<Raw>(&r.line()).unwrap(), r);
        let e = Raw::Env([("cpu".to_string(), "x".to_string())].into());
        assert_eq!(serde_json::from_str::<Raw>(&e.line()).unwrap(), e);
    }

    #[test]
    fn quantiles_within_a_bucket() {
        let mut h = Hist::default();
        for ns in 1..=1000u64 {
            h.add(ns * 1000);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.1, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.1, "{p99}");
        let mut m = Hist::default();
        m.merge(&h.pairs());
        assert_eq!(m, h);
        assert_eq!(Hist::default().quantile(0.5), None);
    }
}
