//! The checkpointer, backup and verify end to end in the guest (`memkit ckpt run |
//! backup | verify | writer` on loopback): the replica equals the program's memory
//! after checkpoints at a high rate of a multi-threaded random writer — on a memkit
//! region with and without pre-copy, attached by pid, and on anonymous memory
//! through soft-dirty — a target that exits mid-run ends the run cleanly, and a
//! checkpointer killed while the target is stopped leaves it continued. Also
//! what `mremap` of a tracked mapping does.

use crate::ktap::{Outcome, TestResult};
use memkit::dev::{CkptMap, Device, DeviceKind, CKPT_PAGE_SIZE};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Orphaned targets (left by `memkit ckpt run`) become this process's children, so
/// that it can reap them.
pub(crate) fn subreaper() -> Result<(), String> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integers only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(format!("prctl: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

pub(crate) fn kill_and_reap(pid: i32) {
    // SAFETY: kill(2) and waitpid(2) with a null status have no memory effects here.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

pub(crate) fn memkit(args: &[&str]) -> Result<Value, String> {
    // stderr to a file, not a pipe: a target `memkit ckpt run` leaves stopped
    // inherits it, and a pipe would not reach end-of-file while it lives.
    let err_path = format!("/tmp/memkit-stderr-{}", std::process::id());
    let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let out = Command::new("memkit")
        .arg("--json")
        .args(args)
        .stderr(err)
        .output()
        .map_err(|e| format!("memkit {args:?}: {e}"))?;
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    let text = String::from_utf8_lossy(&out.stdout);
    // The last JSON document on stdout (per-checkpoint lines may precede it).
    let v: Value = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .last()
        .ok_or_else(|| {
            format!(
                "memkit {args:?}: no JSON ({}); stderr: {stderr}",
                out.status
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "memkit {args:?}: {}: {v}; stderr: {stderr}",
            out.status
        ));
    }
    Ok(v)
}

/// A process printing one JSON line first (backup, writer), and that line.
pub(crate) fn spawn_line(args: &[&str]) -> Result<(Child, Value), String> {
    let mut c = Command::new("memkit")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("memkit {args:?}: {e}"))?;
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v =
        serde_json::from_str(&line).map_err(|e| format!("memkit {args:?} said {line:?}: {e}"))?;
    Ok((c, v))
}

pub(crate) struct Backup {
    child: Child,
    pub(crate) addr: String,
    dir: PathBuf,
}

impl Backup {
    pub(crate) fn start(name: &str) -> Result<Backup, String> {
        let dir = PathBuf::from(format!("/tmp/replica-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.to_str().ok_or("path")?;
        let (child, v) = spawn_line(&[
            "ckpt",
            "backup",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            d,
        ])?;
        let addr = v["listening"].as_str().ok_or("no address")?.to_string();
        Ok(Backup { child, addr, dir })
    }

    pub(crate) fn dir(&self) -> &str {
        self.dir.to_str().unwrap_or("/nonexistent")
    }

    /// Waits up to `within` for the backup to exit by itself (`--once`: after its
    /// connection ends); whether it did.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Backup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn num(v: &Value, k: &str) -> Result<u64, String> {
    v[k].as_u64().ok_or_else(|| format!("no {k} in {v}"))
}

/// `memkit ckpt verify` of process `pid` against the replica in `dir`: equal, at
/// checkpoint `want_seq`.
pub(crate) fn verify_replica(pid: i32, dir: &str, what: &str, want_seq: u64) -> Result<(), String> {
    let v = memkit(&["ckpt", "verify", "--pid", &pid.to_string(), "--dir", dir])?;
    check_verify(&v, what, want_seq)
}

fn check_verify(v: &Value, what: &str, want_seq: u64) -> Result<(), String> {
    if v["equal"] != Value::Bool(true) {
        return Err(format!("{what}: the replica differs: {v}"));
    }
    if num(v, "checkpoint")? != want_seq {
        return Err(format!(
            "{what}: verified checkpoint {} not {want_seq}",
            v["checkpoint"]
        ));
    }
    Ok(())
}

/// Writes per writer thread between two checkpoints. The writers' rate alone would
/// make the pages written per checkpoint grow with how long a checkpoint takes (the
/// debug kernel's took seconds, and every page was written again before the next:
/// 6,144 pages sent for 12 checkpoints of 512), so what the checks see would depend
/// on the kernel's and the host's speed; capped per checkpoint, it does not.
const PER_CHECKPOINT: &str = "4";

/// 12 checkpoints, 10 ms apart (or as fast as they go: the guest is emulated), of
/// 3 threads writing 2 MiB at random, [`PER_CHECKPOINT`] writes each between two
/// checkpoints; the target is left stopped at the last one and compared.
fn run_and_verify(what: &str, run_extra: &[&str], writer: &[&str]) -> Result<Value, String> {
    let b = Backup::start(what)?;
    let mut args = vec![
        "ckpt",
        "run",
        "--backup",
        &b.addr,
        "--bytes",
        "2M",
        "--count",
        "12",
        "--interval-ms",
        "10",
        "--then",
        "stop",
    ];
    args.extend_from_slice(run_extra);
    args.extend_from_slice(&[
        "--",
        "memkit",
        "workload",
        "ckpt-writer",
        "--threads",
        "3",
        "--rate",
        "500",
        "--per-checkpoint",
        PER_CHECKPOINT,
    ]);
    args.extend_from_slice(writer);
    let s = memkit(&args)?;
    let pid = num(&s, "pid")? as i32;
    let checked = (|| {
        if num(&s, "checkpoints")? != 12 {
            return Err(format!("{what}: {s}"));
        }
        verify_replica(pid, b.dir(), what, num(&s, "last_seq")?)
    })();
    kill_and_reap(pid);
    checked.map(|()| s)
}

pub fn ckpt_run_replica_equals_memory(_: &crate::Options) -> TestResult {
    subreaper()?;
    let plain = run_and_verify("plain", &[], &["--write", "random"])?;
    let pre = run_and_verify(
        "precopy",
        &["--precopy"],
        &["--pattern", "zipf", "--write", "random"],
    )?;
    if num(&pre, "precopied")? == 0 {
        return Err(format!(
            "pre-copy copied nothing while the target ran: {pre}"
        ));
    }
    // Copy-on-write snapshots: the writer is never stopped but for the first and the
    // last checkpoint; every page it wrote still reaches the replica.
    let cow = run_and_verify("cow", &["--cow"], &["--write", "random"])?;
    if cow["cow"] != true || num(&cow, "pages")? == 0 || !cow["cow_copies"].is_u64() {
        return Err(format!("--cow: {cow}"));
    }
    // Sparse 8-byte writes: pages the backup lists as worth diffing go as diffs, and
    // a diff costs less than the page. How much they save is the benchmark's to
    // measure; this asserts that diffs are used and pay.
    let sparse = run_and_verify("sparse", &[], &["--write", "sparse"])?;
    if num(&sparse, "diffed")? == 0 || num(&sparse, "record_bytes")? >= num(&sparse, "full_bytes")?
    {
        return Err(format!("sparse writes were not sent as diffs: {sparse}"));
    }
    println!(
        "plain: {} pages, p50 stop {} us; cow: {} pages, p50 collect {} us, {} copied by a \
         write first; pre-copy: {} pages ({} pre-copied), p50 stop {} us; sparse: {} of {} bytes",
        plain["pages"],
        plain["stopped_us_p50"],
        cow["pages"],
        cow["stopped_us_p50"],
        cow["cow_copies"],
        pre["pages"],
        pre["precopied"],
        pre["stopped_us_p50"],
        sparse["record_bytes"],
        sparse["full_bytes"]
    );
    Ok(Outcome::Pass)
}

/// `memkit workload ckpt-writer` on 2 MiB with 2 threads at 500 writes/s each, at most
/// [`PER_CHECKPOINT`] each between two checkpoints.
const WRITER_2M: [&str; 10] = [
    "workload",
    "ckpt-writer",
    "--bytes",
    "2M",
    "--threads",
    "2",
    "--rate",
    "500",
    "--per-checkpoint",
    PER_CHECKPOINT,
];

/// `count` checkpoints of the running process `pid` (10 ms apart, `extra` added to
/// the run's and `--addr`s to verify's arguments) that leave it stopped; then the
/// replica must equal its memory.
fn checkpoint_pid_and_verify(
    b: &Backup,
    pid: &str,
    count: &str,
    extra: &[&str],
    addr: Option<&str>,
    what: &str,
) -> Result<(), String> {
    let mut args = vec![
        "ckpt",
        "run",
        "--backup",
        &b.addr,
        "--pid",
        pid,
        "--count",
        count,
        "--interval-ms",
        "10",
        "--then",
        "stop",
    ];
    args.extend_from_slice(extra);
    let s = memkit(&args)?;
    let mut v = vec!["ckpt", "verify", "--pid", pid, "--dir", b.dir()];
    if let Some(a) = addr {
        v.extend_from_slice(&["--addr", a]);
    }
    check_verify(&memkit(&v)?, what, num(&s, "last_seq")?)
}

/// `--pid` takes the region's descriptor from a running writer (pidfd_getfd);
/// `--soft-dirty` tracks a writer's anonymous memory.
pub fn ckpt_run_attached_and_soft_dirty(_: &crate::Options) -> TestResult {
    subreaper()?;
    for (what, writer_extra, soft) in [
        ("attach", &[][..], false),
        ("soft-dirty", &["--anon"][..], true),
    ] {
        let b = Backup::start(what)?;
        let mut wargs = WRITER_2M.to_vec();
        wargs.extend_from_slice(writer_extra);
        let (mut w, ready) = spawn_line(&wargs)?;
        let pid = w.id().to_string();
        let addr = ready["addr"].as_str().ok_or("no addr")?.to_string();
        let checked = if soft {
            let extra = ["--soft-dirty", "--addr", &addr, "--bytes", "2M"];
            checkpoint_pid_and_verify(&b, &pid, "10", &extra, Some(&addr), what)
        } else {
            checkpoint_pid_and_verify(&b, &pid, "10", &[], None, what)
                .and_then(|()| verify_finds_new_writes(&b, &pid))
        };
        let _ = w.kill();
        let _ = w.wait();
        checked?;
    }
    Ok(Outcome::Pass)
}

/// The writer `pid`, left stopped equal to the replica, continued: it makes its
/// writes of the next interval, and `memkit ckpt verify` then finds them, with its
/// own exit status (3) and `"equal": false` in its JSON.
fn verify_finds_new_writes(b: &Backup, pid: &str) -> Result<(), String> {
    let ipid: i32 = pid.parse().map_err(|e| format!("pid {pid}: {e}"))?;
    // SAFETY: kill(2) has no memory-safety precondition.
    if unsafe { libc::kill(ipid, libc::SIGCONT) } != 0 {
        return Err(format!(
            "SIGCONT {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Its threads make their writes (at 500/s) and wait for the next checkpoint.
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("memkit")
        .args(["--json", "ckpt", "verify", "--pid", pid, "--dir", b.dir()])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("memkit ckpt verify: {e}"))?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "verify after new writes: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    if out.status.code() != Some(3) || v["equal"] != false || num(&v, "differing_pages")? == 0 {
        return Err(format!(
            "verify after new writes: exit {:?}, {v} (want 3 and a difference)",
            out.status.code()
        ));
    }
    Ok(())
}

/// A target that exits while being checkpointed ends the run with a note, not an
/// error, and the module is left clean (the runner's dmesg check and kmemleak).
/// One checkpoint is enough to show the exit was met mid-run: on a loaded debug
/// kernel the first, full checkpoint alone has taken 3.7 s of the writer's 3 s.
pub fn ckpt_run_target_exits(_: &crate::Options) -> TestResult {
    subreaper()?;
    let b = Backup::start("exit")?;
    let s = memkit(&[
        "ckpt",
        "run",
        "--backup",
        &b.addr,
        "--bytes",
        "1M",
        "--interval-ms",
        "5",
        "--",
        "memkit",
        "workload",
        "ckpt-writer",
        "--threads",
        "2",
        "--rate",
        "500",
        "--secs",
        "3",
    ])?;
    if s["ended"].as_str().is_none_or(|e| !e.contains("exited")) || num(&s, "checkpoints")? < 1 {
        return Err(format!("the run did not end with the target: {s}"));
    }
    Ok(Outcome::Pass)
}

/// The state letter of `/proc/PID/stat` (`T`: stopped).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// `ckpt_run_killed_target_resumes`: `memkit ckpt run` SIGKILLed while its target
/// is stopped for a checkpoint, 5 times: each time its guardian continues the target
/// within 2 s; then a new checkpointer makes a replica equal to the memory, and the
/// kernel log stays clean.
pub fn ckpt_run_killed_target_resumes(_: &crate::Options) -> TestResult {
    const ROUNDS: usize = 5;
    subreaper()?;
    let problems = crate::ktap::kernel_problems()?.len();
    let (w, _) = spawn_line(&WRITER_2M)?;
    let wpid = w.id() as i32;
    let pid = wpid.to_string();
    let checked = (|| {
        for round in 0..ROUNDS {
            let b = Backup::start(&format!("killed-{round}"))?;
            let mut run = Command::new("memkit")
                .args(["--json", "ckpt", "run", "--backup", &b.addr, "--pid", &pid])
                .args(["--count", "0", "--interval-ms", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("memkit ckpt run: {e}"))?;
            let end = Instant::now() + Duration::from_secs(60);
            while proc_state(wpid) != Some('T') {
                if Instant::now() > end {
                    let _ = run.kill();
                    let _ = run.wait();
                    return Err(format!("round {round}: the target was never seen stopped"));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = run.kill();
            let _ = run.wait();
            let end = Instant::now() + Duration::from_secs(2);
            while proc_state(wpid) == Some('T') {
                if Instant::now() > end {
                    return Err(format!(
                        "round {round}: the target stayed stopped after its checkpointer was \
                         killed"
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let b = Backup::start("killed-final")?;
        checkpoint_pid_and_verify(&b, &pid, "5", &[], None, "after killed checkpointers")
    })();
    kill_and_reap(wpid);
    checked?;
    crate::race_tests::no_new_problems(problems, "killed checkpointers")?;
    println!("{ROUNDS} checkpointers killed with the target stopped; each time it was continued");
    Ok(Outcome::Pass)
}

/// `mremap` moves a tracked mapping and tracking goes on at the new address;
/// growing it is refused (the region's mappings never grow).
pub fn ckpt_mremap_moves_tracking(_: &crate::Options) -> TestResult {
    mremap_moves_tracking(0)
}

/// [`ckpt_mremap_moves_tracking`] in the recording mode: page 0, write-protected by
/// the collect before the move, stays so after it.
pub fn ckpt_record_mremap_moves_tracking(_: &crate::Options) -> TestResult {
    mremap_moves_tracking(memkit_core::abi::CKPT_START_RECORD)
}

fn mremap_moves_tracking(start_flags: u32) -> TestResult {
    let dev = Device::open(DeviceKind::Ckpt).map_err(|e| e.to_string())?;
    let pages = 8u64;
    let len = pages as usize * CKPT_PAGE_SIZE;
    let off = dev.ckpt_create(len as u64).map_err(|e| e.to_string())?;
    let map = CkptMap::new(&dev, off, len).map_err(|e| e.to_string())?;
    dev.ckpt_start_with(start_flags)
        .map_err(|e| e.to_string())?;
    map.write_u64(0, 1);
    dev.ckpt_collect_ranges(0, pages, true)
        .map_err(|e| e.to_string())?;
    let old = map.addr() as *mut libc::c_void;
    // SAFETY: a mapping this test owns, moved wholesale (MREMAP_MAYMOVE); `map` is
    // forgotten below and the new address unmapped by hand, so no Rust reference
    // points into the old range afterwards.
    let new = unsafe { libc::mremap(old, len, len * 2, libc::MREMAP_MAYMOVE) };
    if new != libc::MAP_FAILED {
        return Err("mremap grew a region mapping".into());
    }
    // SAFETY: as above; same size, so only the address may change.
    let new = unsafe { libc::mremap(old, len, len, libc::MREMAP_MAYMOVE) };
    if new == libc::MAP_FAILED {
        return Err(format!("mremap: {}", std::io::Error::last_os_error()));
    }
    std::mem::forget(map);
    // SAFETY: page 3 of the moved mapping, inside its `len` bytes, 8-aligned.
    unsafe { std::ptr::write_volatile(new.cast::<u8>().add(3 * CKPT_PAGE_SIZE).cast::<u64>(), 7) };
    // SAFETY: page 0 of the moved mapping, 8-aligned.
    unsafe { std::ptr::write_volatile(new.cast::<u8>().add(8).cast::<u64>(), 9) };
    let runs = dev
        .ckpt_collect_ranges(0, pages, true)
        .map_err(|e| e.to_string())?;
    let got: Vec<(u64, u64)> = runs.iter().map(|r| (r.first, r.count)).collect();
    // SAFETY: the moved mapping, which nothing else refers to.
    unsafe { libc::munmap(new, len) };
    if got != [(0, 1), (3, 1)] {
        return Err(format!(
            "after mremap the writes to pages 0 and 3 were reported as {got:?}"
        ));
    }
    Ok(Outcome::Pass)
}
