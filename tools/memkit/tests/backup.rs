//! `memkit ckpt backup` on the host, driven by the library's checkpointer over
//! loopback with an in-memory source: the replica is exactly the last committed
//! checkpoint after the backup is killed at random moments, never older than the
//! last acknowledged one, and malformed streams are refused without touching it.

use memkit::core::ckpt::diff::{self, Params, PAGE};
use memkit::core::crc32c::crc32c;
use memkit::primary::{NoPause, Options, Pause, Primary, Source, UserTracking};
use memkit::stream::{Frame, VERSION};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Memory of this test, with the dirty pages its writes record.
struct MemSource {
    mem: Vec<u8>,
    dirty: BTreeSet<u64>,
    user: UserTracking,
    /// Whether it offers snapshots, and how many it took.
    snapshots: bool,
    snapshots_taken: u64,
}

impl MemSource {
    fn new(pages: usize) -> MemSource {
        MemSource {
            mem: vec![0; pages * PAGE],
            dirty: BTreeSet::new(),
            user: UserTracking::new(pages as u64),
            snapshots: false,
            snapshots_taken: 0,
        }
    }

    fn write(&mut self, at: usize, bytes: &[u8]) {
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        for p in at / PAGE..=(at + bytes.len() - 1) / PAGE {
            self.dirty.insert(p as u64);
        }
    }
}

impl Source for MemSource {
    fn pages(&self) -> u64 {
        (self.mem.len() / PAGE) as u64
    }

    fn collect_clear(&mut self) -> io::Result<Vec<u64>> {
        let d: Vec<u64> = std::mem::take(&mut self.dirty).into_iter().collect();
        self.user.end_interval(&d);
        Ok(d)
    }

    fn history(&mut self) -> io::Result<Vec<u64>> {
        Ok(self.user.history())
    }

    fn copy(&mut self, p: Params, pages: &[u64], out: &mut Vec<u8>) -> io::Result<u64> {
        let mut diffed = 0;
        for &i in pages {
            let page = &self.mem[i as usize * PAGE..(i as usize + 1) * PAGE];
            diffed += u64::from(self.user.encode(p, i, page, out));
        }
        Ok(diffed)
    }

    fn set_diff(&mut self, pages: &[u64]) -> io::Result<()> {
        self.user.set_diff(pages);
        Ok(())
    }

    fn atomic_collect(&self) -> bool {
        true
    }

    fn snapshots(&self) -> bool {
        self.snapshots
    }

    /// Nothing writes this memory during a checkpoint: a collect is a snapshot.
    fn collect_snapshot(&mut self, all: bool) -> io::Result<Vec<u64>> {
        self.snapshots_taken += 1;
        let written = self.collect_clear()?;
        Ok(if all {
            (0..self.pages()).collect()
        } else {
            written
        })
    }
}

/// A pause that counts its stops, and may hold the target stopped.
#[derive(Default)]
struct CountingPause {
    stops: u64,
    holds: bool,
}

impl Pause for CountingPause {
    fn stop(&mut self) -> io::Result<()> {
        self.stops += 1;
        Ok(())
    }

    fn resume(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn holds(&self) -> bool {
        self.holds
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("memkit-backup-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Starts a backup on `dir` (one connection) and returns it with its address.
fn backup(dir: &Path) -> (Child, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_memkit"))
        .args([
            "ckpt",
            "backup",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--diff-after",
            "1",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["listening"].as_str().unwrap().to_string();
    (c, addr)
}

fn recovered(dir: &Path) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_memkit"))
        .args(["ckpt", "backup", "--recover"])
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["committed"].as_u64().unwrap()
}

fn opts(precopy: bool, window: u32) -> Options {
    Options {
        params: Params::new(256, 8).unwrap(),
        diff: true,
        precopy,
        cold_after: 1,
        window,
        cow: false,
    }
}

#[test]
fn killed_backup_recovers_the_last_complete_checkpoint() {
    let dir = tmpdir("kill");
    let pages = 256;
    let mut rng = Rng(0x5eed);
    let mut src = Some(MemSource::new(pages));
    // crc32c of the memory at each checkpoint number.
    let mut crcs: HashMap<u64, u32> = HashMap::from([(0, crc32c(&vec![0u8; pages * PAGE]))]);
    let mut kills = 0;
    for round in 0..12 {
        let (mut child, addr) = backup(&dir);
        // Rounds alternate pre-copy, and wait for each acknowledgement or keep up to
        // 1, 3 or 5 checkpoints in flight.
        let window = [1, 3, 1, 5][round % 4];
        let mut p =
            Primary::connect(src.take().unwrap(), &addr, opts(round % 2 == 1, window)).unwrap();
        let kill_at = 2 + rng.next() % 6;
        let mut acked = p.seq();
        let mut killer = None;
        for n in 0.. {
            // Sparse words on many pages, a few pages rewritten whole.
            let s = p.source_mut();
            for _ in 0..(rng.next() % 40) {
                let at = (rng.next() as usize % (pages * PAGE / 8)) * 8;
                s.write(at, &rng.next().to_le_bytes());
            }
            for _ in 0..(rng.next() % 8) {
                let pg = rng.next() as usize % pages;
                let fill = vec![rng.next() as u8; PAGE];
                s.write(pg * PAGE, &fill);
            }
            let seq = p.seq() + 1;
            crcs.insert(seq, crc32c(&p.source().mem));
            if n == kill_at {
                let pid = child.id() as i32;
                let delay = rng.next() % 3000;
                killer = Some(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_micros(delay));
                    // SAFETY: kill(2) has no memory effects in this process.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }));
            }
            match p.checkpoint(&mut NoPause) {
                Ok(reports) => {
                    for r in reports {
                        assert_eq!(r.seq, acked + 1, "acknowledged out of order");
                        acked = r.seq;
                    }
                    assert_eq!(acked, p.acked());
                    assert!(
                        p.in_flight() < window as usize,
                        "{} checkpoints in flight with a window of {window}",
                        p.in_flight()
                    );
                }
                Err(_) => break,
            }
            assert!(n < 10_000, "the backup was never killed");
        }
        killer.unwrap().join().unwrap();
        child.wait().unwrap();
        kills += 1;
        let committed = recovered(&dir);
        // Every acknowledged checkpoint survives; beyond, any checkpoint sent whole
        // may have been committed before the kill, never one that was not sent.
        assert!(
            committed >= acked && committed <= p.seq(),
            "round {round}: recovered {committed}, last acknowledged {acked}, last sent {}",
            p.seq()
        );
        let replica = std::fs::read(dir.join("replica")).unwrap();
        assert_eq!(
            crc32c(&replica),
            crcs[&committed],
            "round {round}: the replica is not checkpoint {committed}"
        );
        src = Some(p.into_source());
    }
    assert_eq!(kills, 12);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cow_checkpoints_stop_only_a_held_one() {
    for offered in [true, false] {
        let dir = tmpdir(&format!("cow-{offered}"));
        let (mut child, addr) = backup(&dir);
        let mut src = MemSource::new(16);
        src.snapshots = offered;
        let o = Options {
            cow: true,
            ..opts(false, 1)
        };
        let mut p = Primary::connect(src, &addr, o).unwrap();
        let mut pause = CountingPause::default();
        let mut reports = Vec::new();
        for n in 0..5u8 {
            p.source_mut().write(usize::from(n) * PAGE, &[n + 1; 64]);
            // The last one leaves the target stopped (`--then stop`).
            pause.holds = n == 4;
            reports.extend(p.checkpoint(&mut pause).unwrap());
        }
        reports.extend(p.drain().unwrap());
        let snapshot: Vec<bool> = reports.iter().map(|r| r.snapshot).collect();
        if offered {
            // Only the held one stops; the first is a snapshot of every page.
            assert_eq!(pause.stops, 1);
            assert_eq!(snapshot, [true, true, true, true, false]);
            assert_eq!(reports[0].pages, 16);
            assert_eq!(p.source().snapshots_taken, 4);
        } else {
            // A source without snapshots stops for every checkpoint.
            assert_eq!(pause.stops, 5);
            assert_eq!(snapshot, [false; 5]);
        }
        let mem = p.source().mem.clone();
        drop(p);
        child.wait().unwrap();
        assert_eq!(std::fs::read(dir.join("replica")).unwrap(), mem);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn hello(addr: &str, pages: u64) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    Frame::Hello {
        version: VERSION,
        segment: 256,
        max_changed: 8,
        bytes: pages * PAGE as u64,
    }
    .write(&mut s)
    .unwrap();
    match Frame::read(&mut s).unwrap() {
        Some(Frame::HelloReply { committed, .. }) => assert_eq!(committed, 0),
        other => panic!("{other:?}"),
    }
    s
}

fn full(page: u64, byte: u8) -> Vec<u8> {
    let mut out = vec![0u8; diff::MAX_RECORD];
    diff::encode(
        Params::new(256, 8).unwrap(),
        page,
        &[byte; PAGE],
        None,
        &mut out,
    )
    .unwrap();
    out
}

#[test]
fn malformed_streams_are_refused_and_change_nothing() {
    let good = full(1, 7);
    let bad_cases: Vec<(&str, Vec<Frame>)> = vec![
        ("wrong number", vec![Frame::Begin { seq: 5 }]),
        (
            "page past the end",
            vec![Frame::Begin { seq: 1 }, Frame::Records(full(4, 1))],
        ),
        (
            "torn record",
            vec![
                Frame::Begin { seq: 1 },
                Frame::Records(good[..100].to_vec()),
            ],
        ),
        (
            "bad crc",
            vec![
                Frame::Begin { seq: 1 },
                Frame::Records(good.clone()),
                Frame::End {
                    seq: 1,
                    records: 1,
                    crc: crc32c(&good) ^ 1,
                },
            ],
        ),
        (
            "wrong count",
            vec![
                Frame::Begin { seq: 1 },
                Frame::Records(good.clone()),
                Frame::End {
                    seq: 1,
                    records: 2,
                    crc: crc32c(&good),
                },
            ],
        ),
        (
            "ends early",
            vec![Frame::Begin { seq: 1 }, Frame::Records(good.clone())],
        ),
    ];
    for (why, frames) in bad_cases {
        let dir = tmpdir("bad");
        let (mut child, addr) = backup(&dir);
        let mut s = hello(&addr, 4);
        for f in &frames {
            f.write(&mut s).unwrap();
        }
        s.flush().unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        match Frame::read(&mut s) {
            Ok(Some(Frame::Error(_))) => {}
            other => panic!("{why}: {other:?}"),
        }
        child.wait().unwrap();
        assert_eq!(recovered(&dir), 0, "{why}");
        let replica = std::fs::read(dir.join("replica")).unwrap();
        assert!(
            replica.iter().all(|&b| b == 0),
            "{why}: the replica changed"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
