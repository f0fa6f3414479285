//! A small KTAP runner: every test case runs in a child process of its own (this
//! program re-executed with `--one NAME`), so a crash or a hang is that case's failure
//! and the others still run. Output follows kselftest: `TAP version 13`, `1..N`,
//! `ok`/`not ok`, `# SKIP`, diagnostics as `# ` lines, exit 0 / 1 (/ 4 if all skipped).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// What a test case concluded, when it did not fail.
pub enum Outcome {
    /// It checked what it set out to check.
    Pass,
    /// It could not run here; the reason is printed.
    Skip(String),
}

/// A test case's result: `Err` carries the reason it failed.
pub type TestResult = Result<Outcome, String>;

/// A test case.
pub struct Case {
    /// Its KTAP name.
    pub name: &'static str,
    /// Its body, run in a child process.
    pub run: fn(&Options) -> TestResult,
}

/// Settings shared by every case.
pub struct Options {
    /// `memkit.ko`, for the cases that load and unload the module.
    pub module: Option<String>,
    /// Hard time limit of each case.
    pub timeout: Duration,
}

const EXIT_SKIP: u8 = 4;

/// Runs one case in this process (the child side of [`run_all`]).
pub fn run_one(case: &Case, opts: &Options) -> ExitCode {
    match (case.run)(opts) {
        Ok(Outcome::Pass) => ExitCode::SUCCESS,
        Ok(Outcome::Skip(why)) => {
            println!("SKIP: {why}");
            ExitCode::from(EXIT_SKIP)
        }
        Err(why) => {
            println!("FAIL: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Shard `k` of `n` (1-based) of the cases, for guests that run them side by side
/// (`make check` boots two on a host with four cores or more): every case goes, in
/// the list's order, to the shard that has the least expected time so far
/// (`seconds`; ties to the lower shard), so each shard keeps the list's order and
/// the shards take about as long. A case in `every` runs in every shard (a check of
/// the whole guest's state, such as kmemleak's verdict, belongs to each guest).
pub fn shard<'a>(
    cases: &[&'a Case],
    k: usize,
    n: usize,
    seconds: impl Fn(&str) -> u32,
    every: &[&str],
) -> Vec<&'a Case> {
    let mut load = vec![0u64; n];
    let mut mine = Vec::new();
    for &case in cases {
        if every.contains(&case.name) {
            mine.push(case);
            continue;
        }
        let least = (0..n).min_by_key(|&i| (load[i], i)).unwrap_or(0);
        load[least] += u64::from(seconds(case.name).max(1));
        if least + 1 == k {
            mine.push(case);
        }
    }
    mine
}

/// Runs every case of `selected`, each in a child process with the time limit of
/// `opts`, and prints KTAP.
pub fn run_all(selected: &[&Case], opts: &Options, child_args: &[String]) -> ExitCode {
    println!("TAP version 13");
    println!("1..{}", selected.len());
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for (i, case) in selected.iter().enumerate() {
        let n = i + 1;
        let started = Instant::now();
        let hung_before = hung_tasks().len();
        let result = run_child(case.name, opts.timeout, child_args);
        // A task the kernel saw blocked (D state) past the guest's
        // hung_task_timeout_secs while the case ran fails it, whatever it said.
        let mut hung = hung_tasks();
        let hung = hung.split_off(hung_before.min(hung.len()));
        let result = match result {
            Ok((_, output)) if !hung.is_empty() => Ok((
                Some(1),
                format!(
                    "{output}FAIL: the kernel reported a hung task:\n{}",
                    hung.join("\n")
                ),
            )),
            other => other,
        };
        match result {
            Ok((code, output)) => {
                let last = output.lines().last().unwrap_or("").to_string();
                for line in output.lines().filter(|l| !l.starts_with("SKIP: ")) {
                    println!("# {line}");
                }
                let secs = started.elapsed().as_secs_f64();
                match code {
                    Some(0) => {
                        pass += 1;
                        println!("ok {n} {} # time={secs:.2}s", case.name);
                    }
                    Some(c) if c == i32::from(EXIT_SKIP) => {
                        skip += 1;
                        let why = last.strip_prefix("SKIP: ").unwrap_or("");
                        println!("ok {n} {} # SKIP {why}", case.name);
                    }
                    other => {
                        fail += 1;
                        if other.is_none() {
                            println!("# killed by a signal");
                        }
                        println!("not ok {n} {}", case.name);
                    }
                }
            }
            Err(why) => {
                fail += 1;
                println!("# {why}");
                println!("not ok {n} {}", case.name);
            }
        }
    }
    println!("# Totals: pass:{pass} fail:{fail} xfail:0 xpass:0 skip:{skip} error:0");
    if fail > 0 {
        ExitCode::FAILURE
    } else if pass == 0 && skip > 0 {
        ExitCode::from(EXIT_SKIP)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `self --one NAME` and returns its exit code (`None`: killed) and output.
fn run_child(
    name: &str,
    timeout: Duration,
    child_args: &[String],
) -> Result<(Option<i32>, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // Its own process group: a timeout kills the processes it forked too, which would
    // otherwise keep its stdout open.
    let mut child = Command::new(exe)
        .args(child_args)
        .args(["--one", name])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).ok();
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(|e| format!("wait: {e}"))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                // SAFETY: kill(2) of the case's process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                child.kill().ok();
                child.wait().ok();
                let out = reader.join().unwrap_or_default();
                return Err(format!("{out}timed out after {} s", timeout.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let out = reader.join().unwrap_or_default();
    Ok((status.code(), out))
}

/// Fails unless `res` is the error `errno`.
pub fn expect_errno<T: std::fmt::Debug>(
    what: &str,
    res: std::io::Result<T>,
    errno: i32,
) -> Result<(), String> {
    match res {
        Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
        other => Err(format!(
            "{what}: expected {}, got {other:?}",
            std::io::Error::from_raw_os_error(errno)
        )),
    }
}

/// The kernel log's hung-task reports ("task ... blocked for more than N seconds").
fn hung_tasks() -> Vec<String> {
    kernel_problems()
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.contains("blocked for more than"))
        .collect()
}

/// Lines of the kernel log (`dmesg`) that report a problem: BUG, WARNING, Oops,
/// UBSAN, KASAN, kmemleak, lockdep, hung tasks, soft lockups, RCU stalls.
pub fn kernel_problems() -> Result<Vec<String>, String> {
    const MARKS: [&str; 12] = [
        "BUG:",
        "WARNING:",
        "Oops",
        "kernel BUG",
        "UBSAN:",
        "KASAN",
        "suspected memory leak",
        "possible recursive locking",
        "possible circular locking",
        "INFO: task",
        "soft lockup",
        "rcu_sched self-detected stall",
    ];
    let out = std::process::Command::new("dmesg")
        .output()
        .map_err(|e| format!("dmesg: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| MARKS.iter().any(|m| l.contains(m)))
        .map(str::to_string)
        .collect())
}
