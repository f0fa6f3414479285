//! Failover as a user does it: a program keeping a self-checking log in its region
//! (`memkit workload ckpt-log`) is checkpointed 100 times a second, the primary —
//! checkpointer and program — is SIGKILLed at a random moment, and `memkit ckpt
//! restore` starts the program again from the backup's replica and checkpoints it
//! to a new backup. Half the rounds checkpoint with `--cow`: copy-on-write
//! snapshots, the program never stopped, whose replica must hold as good a log.

use crate::ktap::{Outcome, TestResult};
use crate::replica_tests::{kill_and_reap, memkit, num, subreaper, verify_replica, Backup};
use memkit::ckpt_log::{self, State};
use memkit::replica::Replica;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

const ROUNDS: u64 = 4;

/// The log in a replica directory, checked.
fn replica_log(dir: &str) -> Result<(Vec<u8>, State), String> {
    let img = std::fs::read(Path::new(dir).join("replica")).map_err(|e| e.to_string())?;
    let st = ckpt_log::check(&img)
        .map_err(|e| format!("the replica in {dir} holds a broken log: {e}"))?
        .ok_or_else(|| format!("the replica in {dir} holds no log"))?;
    Ok((img, st))
}

/// Runs the primary, at most `window` checkpoints in flight (snapshots with `cow`),
/// until `acks` checkpoints were acknowledged after the program started writing its
/// log and `extra` more time passed, then SIGKILLs it (its process group:
/// checkpointer and program). Returns the last checkpoint it reported acknowledged.
fn primary_killed(
    b: &Backup,
    window: u64,
    cow: bool,
    acks: u64,
    extra: Duration,
) -> Result<u64, String> {
    let mut run = Command::new("memkit")
        .args([
            "--json", "ckpt", "run", "--backup", &b.addr, "--bytes", "1M",
        ])
        .args(["--window", &window.to_string()])
        .args(cow.then_some("--cow"))
        .args(["--interval-ms", "10", "--reports", "--"])
        .args(["memkit", "workload", "ckpt-log", "--rate", "2000"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("memkit ckpt run: {e}"))?;
    let out = run.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut last = 0;
    // The first checkpoint after the one of every page that carries pages: the
    // program has started and written its log's header (a checkpoint before that,
    // of a program still starting, holds no log).
    let mut started: Option<u64> = None;
    let waited = (|| {
        let end = Instant::now() + Duration::from_secs(120);
        while started.is_none_or(|s| last < s + acks) {
            let left = end.saturating_duration_since(Instant::now());
            let v = rx.recv_timeout(left).map_err(|_| {
                format!("{last} checkpoints acknowledged, from {started:?}; {acks} wanted")
            })?;
            let seq = v["seq"]
                .as_u64()
                .ok_or(format!("a report without seq: {v}"))?;
            if seq > 1 && started.is_none() && v["pages"].as_u64().unwrap_or(0) > 0 {
                started = Some(seq);
            }
            last = last.max(seq);
        }
        Ok::<(), String>(())
    })();
    std::thread::sleep(extra);
    // SAFETY: kill(2) of the process group the checkpointer leads.
    unsafe { libc::kill(-(run.id() as i32), libc::SIGKILL) };
    let _ = run.wait();
    waited?;
    let _ = reader.join();
    // Reports printed before the kill.
    for v in rx.try_iter() {
        last = last.max(v["seq"].as_u64().unwrap_or(0));
    }
    Ok(last)
}

/// `ckpt_failover_restores_an_acknowledged_checkpoint`: 4 rounds, each killing the
/// primary, once the program has written to its region, after a random number
/// (3–20) of acknowledged checkpoints plus a random
/// 0–15 ms; rounds alternate between waiting for each acknowledgement (`--window
/// 1`) and 4 checkpoints in flight. The backup's replica is then the last
/// acknowledged checkpoint or one sent after it — the next with a window of 1, at
/// most 4 later with 4 — its log is intact, `memkit ckpt restore`
/// refuses the directory while a backup serves it, and then starts the program on
/// it: the program's own check of the log passes, it goes on appending from where
/// the replica was (the same chain), and 6 checkpoints to a new backup (more if it
/// had not appended yet, see below) make a replica equal to its memory.
pub fn ckpt_failover_restores_an_acknowledged_checkpoint(_: &crate::Options) -> TestResult {
    subreaper()?;
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    let mut rand = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut said = Vec::new();
    for round in 0..ROUNDS {
        let acks = 3 + rand(18);
        let extra = Duration::from_millis(rand(16));
        let mut b = Backup::start(&format!("failover-{round}"))?;
        if round == 0 {
            let refused = memkit(&["ckpt", "restore", "--dir", b.dir(), "--", "true"]);
            if !refused.as_ref().is_err_and(|e| e.contains("in use")) {
                return Err(format!(
                    "restore from a directory a backup serves: {refused:?}"
                ));
            }
        }
        let window = if round % 2 == 0 { 1 } else { 4 };
        // The last two rounds take their checkpoints as snapshots, without a stop.
        let cow = round >= ROUNDS / 2;
        let last = primary_killed(&b, window, cow, acks, extra)?;
        if !b.wait_exit(Duration::from_secs(30)) {
            return Err(format!(
                "round {round}: the backup did not end with its primary"
            ));
        }
        let committed = Replica::committed_in(Path::new(b.dir())).map_err(|e| e.to_string())?;
        if committed < last || committed > last + window {
            return Err(format!(
                "round {round}: the replica holds checkpoint {committed}; the last acknowledged \
                 was {last}, at most {window} in flight"
            ));
        }
        let (img, st) = replica_log(b.dir())?;
        // The restored program must have appended by the last checkpoint of the
        // restore. It starts (exec, map, check its log) at its own pace: on a busy
        // debug guest it once had not written a record by the 6th checkpoint of
        // 10 ms. So a restore that saw no new record is run again, from the same
        // replica with 5 times as many checkpoints, up to 750 (at least 7.5 s);
        // every check must hold for the restore in which it appended.
        const COUNTS: [u64; 4] = [6, 30, 150, 750];
        let mut appended = None;
        for count in COUNTS {
            if let Some(st2) = restore_and_check(&b, round, committed, count, (&img, st))? {
                appended = Some((count, st2));
                break;
            }
        }
        let Some((count, st2)) = appended else {
            return Err(format!(
                "round {round}: the restored program wrote no record in {} checkpoints \
                 of 10 ms; its log holds {st:?}",
                COUNTS[COUNTS.len() - 1]
            ));
        };
        said.push(format!(
            "window {window}{}, killed after {last} acks (+{} ms): replica {committed}, {} \
             records, then {} after {count} checkpoints",
            if cow { " cow" } else { "" },
            extra.as_millis(),
            st.count,
            st2.count
        ));
    }
    println!("{}", said.join("; "));
    Ok(Outcome::Pass)
}

/// Restores `b`'s replica (checkpoint `committed`, holding log state `st` in `img`)
/// and checkpoints the program `count` times to a new backup, then checks: the
/// restore's summary, the new replica equal to the program's memory, and the same
/// chain continued. `None` if the program had not appended a record yet.
fn restore_and_check(
    b: &Backup,
    round: u64,
    committed: u64,
    count: u64,
    (img, st): (&[u8], State),
) -> Result<Option<State>, String> {
    let b2 = Backup::start(&format!("failover-{round}-next-{count}"))?;
    let s = memkit(&[
        "ckpt",
        "restore",
        "--dir",
        b.dir(),
        "--backup",
        &b2.addr,
        "--count",
        &count.to_string(),
        "--interval-ms",
        "10",
        "--then",
        "stop",
        "--",
        "memkit",
        "workload",
        "ckpt-log",
        "--rate",
        "2000",
    ])?;
    let pid = num(&s, "pid")? as i32;
    let checked = (|| {
        if num(&s, "restored")? != committed || num(&s, "checkpoints")? != count {
            return Err(format!("round {round}: restore said {s}"));
        }
        let (img2, st2) = replica_log(b2.dir())?;
        if st2.capacity != st.capacity || st2.count < st.count {
            return Err(format!(
                "round {round}: the restored program's log went from {st:?} to {st2:?}"
            ));
        }
        if st2.count == st.count {
            // Not started yet (it may not even map its region): no record to check.
            return Ok(None);
        }
        verify_replica(pid, b2.dir(), "the restored program", num(&s, "last_seq")?)?;
        // The restored program continued the replica's chain: its newest record
        // then is still in the ring, the same bytes.
        if st.count > 0 && st2.count - st.count < st.capacity - 1 {
            let at = ckpt_log::slot(st.capacity, st.count - 1);
            let r = at..at + ckpt_log::RECORD;
            if img[r.clone()] != img2[r] {
                return Err(format!(
                    "round {round}: record {} changed after the restore",
                    st.count - 1
                ));
            }
        }
        Ok(Some(st2))
    })();
    kill_and_reap(pid);
    checked
}
