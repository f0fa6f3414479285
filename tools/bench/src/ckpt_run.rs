//! `memkit-bench ckpt-run`: the checkpointer end to end, through the `memkit` CLI
//! exactly as a user runs it — `memkit ckpt backup` on loopback, `memkit workload ckpt-writer`
//! as the program, `memkit --json ckpt run --pid PID --reports` — in three parts:
//!
//! - `rate`: checkpoints per second sustained back to back (`--interval-ms 0`) on
//!   64 MiB with about 1 % of the pages dirty per checkpoint: a memkit region with
//!   the writer stopped for each checkpoint (`memkit`) and not stopped, with
//!   copy-on-write snapshots (`memkit-cow`, `--cow`), and their peer, anonymous
//!   memory through soft-dirty (`--soft-dirty`). The writer makes
//!   the writes that dirty that many pages (random pages, repeats included) after
//!   each checkpoint and then waits for the next (`ckpt-writer --per-checkpoint`):
//!   every checkpoint of every variant sees the same work, however long checkpoints
//!   take. The dirty fraction each achieves is measured and reported next to the
//!   rate.
//! - `precopy`: time stopped per checkpoint with and without `--precopy`, on
//!   uniform and Zipf writes, the same writer settings and seed both ways, the order
//!   alternating between rounds.
//! - `diff`: record bytes sent per checkpoint with diffs and with `--no-diff`, on
//!   sparse (one 8-byte word) and dense (whole-page) writes.
//!
//! Every run: a fresh backup (`--once`, `--listen 127.0.0.1:0`, its replica under
//! `--dir`, removed afterwards), a fresh writer, which has written every page once
//! before it says it is ready, then `memkit ckpt run --pid` with `--then stop` and,
//! with `--verify`, `memkit ckpt verify` of the stopped writer against the replica.
//! The checkpointer's summary and per-checkpoint reports and the backup's session
//! line are recorded verbatim; they must agree (checkpoints, pages, record bytes), or
//! the run fails.
//!
//! Steady state: the first checkpoint sends every page (seconds on the emulated
//! guest's loopback) while the writer keeps writing at its rate, so the next ones
//! carry that backlog. Each run records a warm-up left out of the steady state:
//! at least `--*-warmup` checkpoints after the first and, with a fixed interval,
//! every one until the checkpointer is back on its schedule (`ckpt run` takes the
//! checkpoints it is late for back to back) plus the one after, whose interval
//! was cut short.

use crate::host::{cpu_model, kernel_release};
use crate::sample::{BackupSession, CkptRunSample, Raw, RunReport, RunSummary};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

/// Bytes per page.
const PAGE: u64 = 4096;

/// The parts, in the order they run.
pub const PARTS: [&str; 3] = ["rate", "precopy", "diff"];

/// Options of `memkit-bench ckpt-run`.
#[derive(clap::Args)]
pub struct CkptRunOpts {
    /// The `memkit` program.
    #[arg(long, default_value = "memkit")]
    pub memkit: String,
    /// Parts to run, comma-separated.
    #[arg(long, default_value = "rate,precopy,diff", value_delimiter = ',', value_parser = PARTS)]
    pub parts: Vec<String>,
    /// Directory of the backups' replicas (one at a time, each removed after its run).
    #[arg(long, default_value = "/tmp")]
    pub dir: PathBuf,
    /// Writer threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Compare the writer's memory with the replica after every run.
    #[arg(long)]
    pub verify: bool,
    /// Seed of the writers (the round is added).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// rate: bytes of the checkpointed memory.
    #[arg(long, default_value = "64M", value_parser = crate::parse_size)]
    pub rate_bytes: u64,
    /// rate: the wanted percentage of the pages dirty per checkpoint.
    #[arg(long, default_value_t = 1.0)]
    pub rate_dirty: f64,
    /// rate: checkpoints of a run (the first included).
    #[arg(long, default_value_t = 40)]
    pub rate_count: u64,
    /// rate: checkpoints after the first left out of the steady state (the writer
    /// waits for each checkpoint, so the first one leaves no backlog; these absorb
    /// the start of the diff list and of the caches).
    #[arg(long, default_value_t = 3)]
    pub rate_warmup: u64,
    /// rate: rounds (each variant once; the order alternating).
    #[arg(long, default_value_t = 2)]
    pub rate_rounds: u32,
    /// rate: the writer's write kind (dense: every dirty page goes whole, diffs or
    /// not, so a checkpoint's cost per page does not drift as the diff list forms).
    #[arg(long, default_value = "dense", value_parser = ["sparse", "dense", "random"])]
    pub rate_write: String,
    /// rate: variants, comma-separated.
    #[arg(long, default_value = "memkit,memkit-cow,soft-dirty", value_delimiter = ',',
          value_parser = ["memkit", "memkit-cow", "soft-dirty"])]
    pub rate_variants: Vec<String>,

    /// precopy: bytes of the region.
    #[arg(long, default_value = "16M", value_parser = crate::parse_size)]
    pub precopy_bytes: u64,
    /// precopy: writer page choices, comma-separated.
    #[arg(long, default_value = "uniform,zipf", value_delimiter = ',',
          value_parser = ["uniform", "zipf"])]
    pub precopy_patterns: Vec<String>,
    /// precopy: the writer's write kind.
    #[arg(long, default_value = "random", value_parser = ["sparse", "dense", "random"])]
    pub precopy_write: String,
    /// precopy: writes per second per thread.
    #[arg(long, default_value_t = 400)]
    pub precopy_rate: u64,
    /// precopy: milliseconds from one checkpoint's start to the next.
    #[arg(long, default_value_t = 1000)]
    pub precopy_interval_ms: u64,
    /// precopy: checkpoints per run (the first included).
    #[arg(long, default_value_t = 20)]
    pub precopy_count: u64,
    /// precopy: at least this many checkpoints after the first left out of the
    /// steady state (more until the run is back on its schedule).
    #[arg(long, default_value_t = 2)]
    pub precopy_warmup: u64,
    /// precopy: rounds (with and without pre-copy each, the order alternating).
    #[arg(long, default_value_t = 2)]
    pub precopy_rounds: u32,

    /// diff: bytes of the region.
    #[arg(long, default_value = "4M", value_parser = crate::parse_size)]
    pub diff_bytes: u64,
    /// diff: the writer's write kinds, comma-separated.
    #[arg(long, default_value = "sparse,dense", value_delimiter = ',',
          value_parser = ["sparse", "dense", "random"])]
    pub diff_writes: Vec<String>,
    /// diff: the writer's page choice.
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "zipf"])]
    pub diff_pattern: String,
    /// diff: writes per second per thread.
    #[arg(long, default_value_t = 780)]
    pub diff_rate: u64,
    /// diff: milliseconds from one checkpoint's start to the next.
    #[arg(long, default_value_t = 500)]
    pub diff_interval_ms: u64,
    /// diff: checkpoints per run (the first included).
    #[arg(long, default_value_t = 41)]
    pub diff_count: u64,
    /// diff: at least this many checkpoints after the first left out of the steady
    /// state (the backup lists a page for diffs after two low-diff checkpoints that
    /// wrote it, and its next copy is whole: the list takes a while to form).
    #[arg(long, default_value_t = 20)]
    pub diff_warmup: u64,
    /// diff: rounds (with and without diffs each, the order alternating).
    #[arg(long, default_value_t = 1)]
    pub diff_rounds: u32,

    /// Where it runs, recorded as the env line's `where`.
    #[arg(long = "where", default_value = "guest/ckpt")]
    pub place: String,
    /// KEY=VALUE facts recorded with the results.
    #[arg(long = "note", value_name = "KEY=VALUE", value_parser = crate::parse_note)]
    pub notes: Vec<(String, String)>,
}

/// One run's settings.
#[derive(Clone, Debug, Default)]
struct Spec {
    part: &'static str,
    variant: String,
    workload: String,
    round: u32,
    bytes: u64,
    rate: u64,
    /// Writes per thread between two checkpoints (0: no cap).
    per_checkpoint: u64,
    pattern: String,
    write: String,
    interval_ms: u64,
    count: u64,
    min_warmup: u64,
    seed: u64,
    soft_dirty: bool,
    /// `ckpt run --cow`: snapshots, the writer never stopped.
    cow: bool,
    precopy: bool,
    no_diff: bool,
}

/// A child process killed and reaped when dropped (a run that fails half-way
/// leaves nothing behind).
struct Proc {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Proc {
    /// Starts `memkit ARGS` and reads the JSON line it prints first.
    fn start(memkit: &str, args: &[String]) -> io::Result<(Proc, Value)> {
        let mut child = Command::new(memkit)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{memkit} {args:?}: {e}")))?;
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut p = Proc { child, out };
        let mut line = String::new();
        p.out.read_line(&mut line)?;
        let v = serde_json::from_str(&line)
            .map_err(|e| io::Error::other(format!("{memkit} {args:?} said {line:?} first: {e}")))?;
        Ok((p, v))
    }

    /// The JSON lines it prints until it exits, then its exit status.
    fn finish(mut self) -> io::Result<(Vec<Value>, std::process::ExitStatus)> {
        let mut lines = Vec::new();
        let mut line = String::new();
        while self.out.read_line(&mut line)? > 0 {
            if let Ok(v) = serde_json::from_str(&line) {
                lines.push(v);
            }
            line.clear();
        }
        let status = self.child.wait()?;
        Ok((lines, status))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already reaped after `finish`: both calls then fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `memkit ARGS` to the end; its JSON lines on stdout.
fn memkit_json(memkit: &str, args: &[String]) -> io::Result<Vec<Value>> {
    let out = Command::new(memkit)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{memkit} {args:?}: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .collect();
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{memkit} {}: {}: {}",
            args.join(" "),
            out.status,
            values
                .last()
                .map_or_else(|| text.to_string(), Value::to_string)
        )));
    }
    Ok(values)
}

fn field<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> io::Result<T> {
    serde_json::from_value(v).map_err(|e| io::Error::other(format!("{what}: {e}")))
}

/// One checkpointer run: backup, writer, `ckpt run`, checks.
fn one_run(o: &CkptRunOpts, s: &Spec) -> io::Result<CkptRunSample> {
    let t0 = Instant::now();
    let dir = o
        .dir
        .join(format!("memkit-bench-replica-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir_s = dir.display().to_string();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (backup, hello) = Proc::start(
        &o.memkit,
        &args(&[
            "ckpt",
            "backup",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            &dir_s,
        ]),
    )?;
    let addr = hello["listening"]
        .as_str()
        .ok_or_else(|| io::Error::other(format!("the backup said {hello}")))?
        .to_string();

    let mut w = args(&[
        "workload",
        "ckpt-writer",
        "--bytes",
        &s.bytes.to_string(),
        "--threads",
        &o.threads.to_string(),
        "--rate",
        &s.rate.to_string(),
        "--pattern",
        &s.pattern,
        "--write",
        &s.write,
        "--seed",
        &s.seed.to_string(),
    ]);
    if s.soft_dirty {
        w.push("--anon".into());
    }
    if s.per_checkpoint > 0 {
        w.extend(args(&["--per-checkpoint", &s.per_checkpoint.to_string()]));
    }
    let (writer, ready) = Proc::start(&o.memkit, &w)?;
    let pid = ready["pid"]
        .as_u64()
        .ok_or_else(|| io::Error::other(format!("the writer said {ready}")))?
        .to_string();
    let waddr = ready["addr"].as_str().unwrap_or_default().to_string();
    if ready["bytes"].as_u64() != Some(s.bytes) {
        return Err(io::Error::other(format!(
            "the writer maps {ready}, not {} bytes",
            s.bytes
        )));
    }

    let mut r = args(&[
        "--json",
        "ckpt",
        "run",
        "--backup",
        &addr,
        "--pid",
        &pid,
        "--count",
        &s.count.to_string(),
        "--interval-ms",
        &s.interval_ms.to_string(),
        "--reports",
        "--then",
        "stop",
    ]);
    if s.soft_dirty {
        r.extend(args(&[
            "--soft-dirty",
            "--addr",
            &waddr,
            "--bytes",
            &s.bytes.to_string(),
        ]));
    }
    if s.precopy {
        r.push("--precopy".into());
    }
    if s.cow {
        r.push("--cow".into());
    }
    if s.no_diff {
        r.push("--no-diff".into());
    }
    let ran = memkit_json(&o.memkit, &r);
    let verified = match (&ran, o.verify) {
        (Ok(_), true) => {
            let mut v = args(&["--json", "ckpt", "verify", "--pid", &pid, "--dir", &dir_s]);
            if s.soft_dirty {
                v.extend(args(&["--addr", &waddr]));
            }
            // Exit status 2 (differs) is an error here too; the verdict says why.
            let out = memkit_json(&o.memkit, &v)?;
            Some(out.last().and_then(|v| v["equal"].as_bool()) == Some(true))
        }
        _ => None,
    };
    drop(writer);
    let mut sample = CkptRunSample {
        part: s.part.into(),
        variant: s.variant.clone(),
        workload: s.workload.clone(),
        round: s.round,
        per_checkpoint: s.per_checkpoint,
        bytes: s.bytes,
        threads: o.threads,
        rate: s.rate,
        pattern: s.pattern.clone(),
        write: s.write.clone(),
        interval_ms: s.interval_ms,
        seed: s.seed,
        verified,
        ..Default::default()
    };
    let values = match ran {
        Ok(v) => v,
        Err(e) => {
            drop(backup);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    // The connection is closed: the backup prints its session and exits.
    let (lines, status) = backup.finish()?;
    let _ = std::fs::remove_dir_all(&dir);
    for v in values {
        if v.get("seq").is_some() {
            sample.reports.push(field(v, "a checkpoint report")?);
        } else if v.get("checkpoints").is_some() {
            sample.summary = field::<RunSummary>(v, "the run's summary")?;
        }
    }
    if let Some(v) = lines.into_iter().rfind(|v| v.get("checkpoints").is_some()) {
        sample.backup = field::<BackupSession>(v, "the backup's session")?;
    }
    check(s, &sample, status.success())?;
    sample.warmup = warmup(&sample.reports, s.interval_ms, s.min_warmup);
    if sample.steady().is_empty() {
        // Too short a run (a smoke test): the last checkpoint stands for it.
        eprintln!(
            "ckpt-run {} {}: WARNING: no steady state after a warm-up of {}: more --{}-count",
            s.part, s.variant, sample.warmup, s.part
        );
        sample.warmup = s.count - 2;
    }
    let st = sample.steady();
    let n = st.len().max(1) as f64;
    eprintln!(
        "ckpt-run {} {} {} round {}: {}: {} checkpoints in {:.1}s (first {:.1}s); \
         warm-up {}; steady: {:.1} pages, {:.0} record bytes, stopped {:.0} us, {:.0} ms each; \
         {:.0}s in all",
        s.part,
        s.workload,
        s.variant,
        s.round,
        match (s.rate, s.per_checkpoint) {
            (0, 0) => "writes as fast as it can".to_string(),
            (0, n) => format!("{n} writes per checkpoint"),
            (r, _) => format!("{r} writes/s"),
        },
        sample.summary.checkpoints,
        sample.summary.secs,
        sample.reports[0].total_ns as f64 / 1e9,
        sample.warmup,
        st.iter().map(|r| r.pages).sum::<u64>() as f64 / n,
        st.iter().map(|r| r.record_bytes).sum::<u64>() as f64 / n,
        med_ns(st.iter().map(|r| r.stopped_ns)) / 1e3,
        st.iter().map(|r| r.total_ns).sum::<u64>() as f64 / n / 1e6,
        t0.elapsed().as_secs_f64(),
    );
    Ok(sample)
}

/// The checkpointer, its reports and the backup must tell the same story.
fn check(s: &Spec, x: &CkptRunSample, backup_ok: bool) -> io::Result<()> {
    let sum = x.summary.clone();
    let fail = |m: String| Err(io::Error::other(format!("{} {}: {m}", s.part, s.variant)));
    if let Some(e) = &sum.ended {
        return fail(format!("the run ended early: {e}"));
    }
    if sum.checkpoints != s.count || x.reports.len() as u64 != s.count {
        return fail(format!(
            "{} checkpoints, {} reports, {} asked",
            sum.checkpoints,
            x.reports.len(),
            s.count
        ));
    }
    let pages: u64 = x.reports.iter().map(|r| r.pages).sum();
    let bytes: u64 = x.reports.iter().map(|r| r.record_bytes).sum();
    if pages != sum.pages || bytes != sum.record_bytes {
        return fail(format!(
            "reports add up to {pages} pages and {bytes} bytes, the summary says {} and {}",
            sum.pages, sum.record_bytes
        ));
    }
    let b = &x.backup;
    if !backup_ok || b.error.is_some() {
        return fail(format!("the backup failed: {:?}", b.error));
    }
    if b.checkpoints != s.count || b.pages != pages || b.record_bytes != bytes {
        return fail(format!(
            "the backup committed {} checkpoints of {} pages and {} bytes; the primary sent \
             {} of {pages} and {bytes}",
            b.checkpoints, b.pages, b.record_bytes, s.count
        ));
    }
    if x.reports[0].pages != s.bytes / PAGE {
        return fail(format!(
            "the first checkpoint sent {} pages, not all {}",
            x.reports[0].pages,
            s.bytes / PAGE
        ));
    }
    if sum.precopy != s.precopy || sum.diff == s.no_diff {
        return fail("the summary's settings differ from those asked".into());
    }
    if x.verified == Some(false) {
        return fail("the replica differs from the writer's memory".into());
    }
    Ok(())
}

fn med_ns(v: impl Iterator<Item = u64>) -> f64 {
    let mut v: Vec<u64> = v.collect();
    v.sort_unstable();
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
}

/// Checkpoints after the first to leave out of the steady state: at least `min`;
/// with an interval, also every one until the run is back on its schedule (a
/// checkpoint that starts on time: the ones before it took less than their share
/// of intervals), and that one, whose interval the late one before it cut short.
pub fn warmup(reports: &[RunReport], interval_ms: u64, min: u64) -> u64 {
    let mut w = min;
    if interval_ms > 0 {
        let interval = interval_ms as u128 * 1_000_000;
        // When checkpoint k started, from the first's start.
        let mut started = 0u128;
        for (k, r) in reports.iter().enumerate().skip(1) {
            started += u128::from(r.interval_ns);
            if started <= k as u128 * interval {
                w = w.max(k as u64);
                break;
            }
        }
    }
    w
}

/// Uniform writes needed for `distinct` distinct pages of `pages`, on average.
pub fn writes_for(distinct: f64, pages: f64) -> f64 {
    let d = distinct.clamp(0.5, pages - 0.5);
    -pages * (1.0 - d / pages).ln()
}

/// Runs the parts, handing every raw line to `emit`.
pub fn run(o: &CkptRunOpts, emit: &mut dyn FnMut(Raw)) -> io::Result<()> {
    for b in [o.rate_bytes, o.precopy_bytes, o.diff_bytes] {
        if b == 0 || !b.is_multiple_of(PAGE) {
            return Err(io::Error::other(format!(
                "{b} bytes: not a non-zero multiple of {PAGE}"
            )));
        }
    }
    if !(o.rate_dirty > 0.0 && o.rate_dirty < 100.0) {
        return Err(io::Error::other("--rate-dirty must be in (0, 100)"));
    }
    if o.rate_count < 2 || o.precopy_count < 2 || o.diff_count < 2 {
        return Err(io::Error::other(
            "every run needs 2 checkpoints or more (the first is not steady state)",
        ));
    }
    let mut env = BTreeMap::new();
    env.insert("where".into(), o.place.clone());
    env.insert("cpu".into(), cpu_model());
    env.insert("kernel".into(), kernel_release());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    env.insert("cpus".into(), cpus.to_string());
    env.insert("writer_threads".into(), o.threads.to_string());
    env.insert("verify".into(), o.verify.to_string());
    for (k, v) in &o.notes {
        env.insert(k.clone(), v.clone());
    }
    emit(Raw::Env(env));
    let t0 = Instant::now();
    let go = |s: &Spec, emit: &mut dyn FnMut(Raw)| -> io::Result<CkptRunSample> {
        let x = one_run(o, s)?;
        emit(Raw::CkptRun(Box::new(x.clone())));
        Ok(x)
    };
    let part = |p: &str| o.parts.iter().any(|x| x == p);

    if part("rate") {
        let pages = (o.rate_bytes / PAGE) as f64;
        let want = pages * o.rate_dirty / 100.0;
        // The writes that dirty `want` distinct pages, shared by the threads.
        let per = (writes_for(want, pages) / f64::from(o.threads.max(1))).ceil() as u64;
        let spec = |v: &str, round: u32| Spec {
            part: "rate",
            variant: v.into(),
            workload: "uniform".into(),
            round,
            bytes: o.rate_bytes,
            per_checkpoint: per.max(1),
            pattern: "uniform".into(),
            write: o.rate_write.clone(),
            interval_ms: 0,
            count: o.rate_count,
            min_warmup: o.rate_warmup,
            seed: o.seed + u64::from(round),
            soft_dirty: v == "soft-dirty",
            cow: v == "memkit-cow",
            ..Default::default()
        };
        for round in 0..o.rate_rounds {
            let mut order = o.rate_variants.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for v in order {
                go(&spec(&v, round), emit)?;
            }
        }
    }
    if part("precopy") {
        for round in 0..o.precopy_rounds {
            for pattern in &o.precopy_patterns {
                let mut order = [false, true];
                if round % 2 == 1 {
                    order.reverse();
                }
                for precopy in order {
                    go(
                        &Spec {
                            part: "precopy",
                            variant: if precopy { "precopy" } else { "no-precopy" }.into(),
                            workload: pattern.clone(),
                            round,
                            bytes: o.precopy_bytes,
                            rate: o.precopy_rate,
                            pattern: pattern.clone(),
                            write: o.precopy_write.clone(),
                            interval_ms: o.precopy_interval_ms,
                            count: o.precopy_count,
                            min_warmup: o.precopy_warmup,
                            seed: o.seed + u64::from(round),
                            precopy,
                            ..Default::default()
                        },
                        emit,
                    )?;
                }
            }
        }
    }
    if part("diff") {
        for round in 0..o.diff_rounds {
            for write in &o.diff_writes {
                let mut order = [false, true];
                if round % 2 == 1 {
                    order.reverse();
                }
                for no_diff in order {
                    go(
                        &Spec {
                            part: "diff",
                            variant: if no_diff { "no-diff" } else { "diff" }.into(),
                            workload: write.clone(),
                            round,
                            bytes: o.diff_bytes,
                            rate: o.diff_rate,
                            pattern: o.diff_pattern.clone(),
                            write: write.clone(),
                            interval_ms: o.diff_interval_ms,
                            count: o.diff_count,
                            min_warmup: o.diff_warmup,
                            seed: o.seed + u64::from(round),
                            no_diff,
                            ..Default::default()
                        },
                        emit,
                    )?;
                }
            }
        }
    }
    eprintln!("ckpt-run: done in {:.0}s", t0.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_for_distinct_pages() {
        // Few writes over many pages: nearly all distinct.
        let w = writes_for(164.0, 16384.0);
        assert!((164.0..166.0).contains(&w), "{w}");
        // Half the pages take ln 2 per page.
        let w = writes_for(512.0, 1024.0);
        assert!((w - 1024.0 * std::f64::consts::LN_2).abs() < 1e-6, "{w}");
        // Clamped: never infinite.
        assert!(writes_for(1024.0, 1024.0).is_finite());
        assert!(writes_for(0.0, 1024.0) > 0.0);
    }

    /// Reports of checkpoints back to back, each taking its `ms`.
    fn reps(pages: u64, ms: &[u64]) -> Vec<RunReport> {
        let mut prev = 0;
        ms.iter()
            .map(|&ms| {
                let r = RunReport {
                    pages,
                    total_ns: ms * 1_000_000,
                    interval_ns: prev,
                    ..Default::default()
                };
                prev = r.total_ns;
                r
            })
            .collect()
    }

    #[test]
    fn warmup_waits_for_the_schedule() {
        // 1 s intervals: the first takes 3.5 s, then 0.5 s each.
        let r = reps(10, &[3500, 500, 500, 500, 500, 500, 500, 500, 500, 500]);
        // Started at index k: 3.5 + 0.5 (k - 1) <= k once k >= 6.
        assert_eq!(warmup(&r, 1000, 1), 6);
        assert_eq!(warmup(&r, 1000, 8), 8);
        // Back to back: the minimum only.
        assert_eq!(warmup(&r, 0, 3), 3);
        // Never late: the minimum.
        let r = reps(10, &[100; 5]);
        assert_eq!(warmup(&r, 1000, 0), 1);
        assert_eq!(warmup(&r, 1000, 2), 2);
    }
}
