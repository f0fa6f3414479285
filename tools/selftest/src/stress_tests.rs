//! Concurrency stress in the guest: each device hammered by several processes for a
//! bounded time, with the results checked — journal transactions of many ranges
//! from four processes over shared slots (every slot ends as the last acknowledged
//! transaction that wrote it, whole, before and after a detach and recovering
//! attach); four processes sharing one remote-memory region with a small budget
//! (every read checked); three writer processes, a clearing collector and a second
//! process reading the same checkpoint region (the replica equals the memory).

use crate::ckpt_tests::Rng;
use crate::ktap::{kernel_problems, Outcome, TestResult};
use crate::race_tests::{
    ckpt_region, fork_child, no_new_problems, rmem_config, rmem_region, wait_ok, word, SharedWords,
    PAGE,
};
use memkit::dev::{Device, DeviceKind};
use memkit_core::abi;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Slots of the journal stress: slot `s` is `slot_len(s)` bytes at `slot_off(s)`,
/// across cache lines and pages.
const SLOTS: u64 = 24;

fn slot_off(s: u64) -> u64 {
    s * 4104 + (s * 24) % 64
}

fn slot_len(s: u64) -> usize {
    8 * (1 + (s * 5) % 33) as usize
}

/// The slots transaction `seq` of process `proc` writes (1 to 6 of them, distinct).
fn tx_slots(proc: u64, seq: u64) -> Vec<u64> {
    let mut rng = Rng((proc + 1) << 40 ^ (seq + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let n = 1 + rng.next() % 6;
    let mut v: Vec<u64> = Vec::new();
    while (v.len() as u64) < n {
        let s = rng.next() % SLOTS;
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

fn tag(proc: u64, seq: u64) -> u64 {
    (proc + 1) << 48 | (seq + 1)
}

/// Every slot is whole (one tag throughout) and holds the tag of the transaction
/// with the largest commit id among those that wrote it (`want`; 0: never written).
fn check_slots(journal: &Device, want: &[(u64, u64)], what: &str) -> Result<(), String> {
    for s in 0..SLOTS {
        let mut buf = vec![0u8; slot_len(s)];
        journal
            .read_at(&mut buf, slot_off(s))
            .map_err(|e| format!("{what}: pread slot {s}: {e}"))?;
        let words: Vec<u64> = buf
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        if words.iter().any(|&w| w != words[0]) {
            return Err(format!("{what}: slot {s} is torn: {words:x?}"));
        }
        let (id, t) = want[s as usize];
        if words[0] != t {
            return Err(format!(
                "{what}: slot {s} holds tag {:#x}, the last transaction that wrote it (commit {id}) has {t:#x}",
                words[0]
            ));
        }
    }
    Ok(())
}

/// Four processes commit transactions of 1-6 ranges over 24 shared slots (8-264
/// bytes, across lines and pages) for 3 s; each range is filled with its
/// transaction's tag. Each process reports its commit ids. Every slot must be whole
/// and hold the tag of the acknowledged transaction with the largest commit id that
/// wrote it (atomicity, and commits applied in id order), both right away and after
/// a detach and an attach that recovers the journal; commit ids are distinct.
pub fn stress_journal_atomicity(_: &crate::Options) -> TestResult {
    const PROCS: u64 = 4;
    const RUN: Duration = Duration::from_secs(3);
    let pmem = std::env::var("MEMKIT_PMEM").unwrap_or_else(|_| "/dev/pmem0".into());
    if !std::path::Path::new(&pmem).exists() {
        return Ok(Outcome::Skip(format!("no {pmem}")));
    }
    let problems = kernel_problems()?.len();
    let started = Instant::now();
    let journal = Device::open(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
    match journal.journal_detach() {
        Err(e) if e.raw_os_error() != Some(libc::ENODEV) => return Err(format!("detach: {e}")),
        _ => {}
    }
    // Small MJs, so that the ring wraps many times.
    journal
        .journal_attach(std::path::Path::new(&pmem), true, 16, 4096)
        .map_err(|e| format!("attach with format: {e}"))?;
    // Every writer forked first (this process is still single-threaded), then a
    // thread per writer reads the commit ids it reports.
    let mut forked = Vec::new();
    for proc in 0..PROCS {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
        // The closure owns `theirs`: this process's copy goes when it is dropped.
        let pid = fork_child(move || {
            let mut out = theirs;
            let dev = Device::open(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
            let t0 = Instant::now();
            let mut seq = 0u64;
            while t0.elapsed() < RUN {
                let t = tag(proc, seq).to_le_bytes();
                let slots = tx_slots(proc, seq);
                let bufs: Vec<Vec<u8>> = slots.iter().map(|&s| t.repeat(slot_len(s) / 8)).collect();
                let ranges: Vec<(u64, &[u8])> = slots
                    .iter()
                    .zip(&bufs)
                    .map(|(&s, b)| (slot_off(s), &b[..]))
                    .collect();
                let id = dev
                    .journal_tx(&ranges)
                    .map_err(|e| format!("proc {proc} tx {seq}: {e}"))?;
                out.write_all(&id.to_le_bytes())
                    .map_err(|e| format!("report: {e}"))?;
                seq += 1;
            }
            Ok(())
        })?;
        forked.push((pid, ours));
    }
    let children: Vec<_> = forked
        .into_iter()
        .map(|(pid, mut ours)| {
            let reader = std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = ours.read_to_end(&mut bytes);
                bytes
            });
            (pid, reader)
        })
        .collect();
    // Per slot, (largest commit id, its tag).
    let mut want = vec![(0u64, 0u64); SLOTS as usize];
    let mut ids = Vec::new();
    let mut counts = Vec::new();
    for (proc, (pid, reader)) in children.into_iter().enumerate() {
        let bytes = reader.join().map_err(|_| "reader panicked")?;
        wait_ok(pid, &format!("journal writer {proc}"))?;
        let proc = proc as u64;
        counts.push(bytes.len() / 8);
        for (seq, c) in bytes.chunks_exact(8).enumerate() {
            let id = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            ids.push(id);
            for s in tx_slots(proc, seq as u64) {
                if id > want[s as usize].0 {
                    want[s as usize] = (id, tag(proc, seq as u64));
                }
            }
        }
    }
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() != n {
        return Err(format!("{} duplicate commit ids among {n}", n - ids.len()));
    }
    if counts.contains(&0) {
        return Err(format!("a writer committed nothing: {counts:?}"));
    }
    check_slots(&journal, &want, "after the writers")?;
    journal
        .journal_detach()
        .map_err(|e| format!("detach: {e}"))?;
    journal
        .journal_attach(std::path::Path::new(&pmem), false, 0, 0)
        .map_err(|e| format!("re-attach: {e}"))?;
    check_slots(&journal, &want, "after detach and recovery")?;
    let st = journal
        .journal_status()
        .map_err(|e| format!("status: {e}"))?;
    println!(
        "{n} transactions ({counts:?} per process); recovery replayed {} stale {}",
        st.rec_replayed, st.rec_stale
    );
    no_new_problems(problems, "journal stress")?;
    println!("in {:?}", started.elapsed());
    Ok(Outcome::Pass)
}

/// Four processes share one region of 128 pages (forked after the mmap) with a
/// budget of 8, each reading and writing random words of its own pages (page % 4)
/// for 3 s and checking every read against its shadow, then every page of its own;
/// prefetches of one process's faults bring in the others' pages. The region
/// stayed within its budget and evicted, wrote back and fetched.
pub fn stress_rmem_shared_region(_: &crate::Options) -> TestResult {
    const PROCS: u64 = 4;
    const PAGES: u64 = 128;
    const RUN: Duration = Duration::from_secs(3);
    let problems = kernel_problems()?.len();
    let started = Instant::now();
    for policy in [abi::RMEM_POLICY_PTLINE, abi::RMEM_POLICY_WINDOW] {
        let cfg = rmem_config(PAGES, 8, policy);
        let (dev, map) = rmem_region(&cfg)?;
        let ops = SharedWords::new(PROCS as usize)?;
        let mut pids = Vec::new();
        for proc in 0..PROCS {
            let (map, ops) = (&map, &ops);
            pids.push(fork_child(move || {
                let mine: Vec<u64> = (0..PAGES).filter(|p| p % PROCS == proc).collect();
                let mut gens = vec![0u64; PAGES as usize];
                let mut rng = Rng(0x5151 + proc + u64::from(policy) * 16);
                let words = [0u64, 1, 255, 511];
                let t0 = Instant::now();
                let mut n = 0u64;
                let check = |p: u64, w: u64, g: u64, when: &str| -> Result<(), String> {
                    let want = if g == 0 { 0 } else { word(p, w, g) };
                    let got = map.read_u64(p as usize * PAGE + w as usize * 8);
                    if got != want {
                        return Err(format!(
                            "proc {proc} {when}: page {p} word {w} reads {got:#x}, want {want:#x}"
                        ));
                    }
                    Ok(())
                };
                while t0.elapsed() < RUN {
                    let p = mine[(rng.next() % mine.len() as u64) as usize];
                    let w = words[(rng.next() % 4) as usize];
                    check(p, w, gens[p as usize], &format!("op {n}"))?;
                    if rng.next().is_multiple_of(3) {
                        let g = gens[p as usize] + 1;
                        for w in words {
                            map.write_u64(p as usize * PAGE + w as usize * 8, word(p, w, g));
                        }
                        gens[p as usize] = g;
                    }
                    n += 1;
                }
                for &p in &mine {
                    for w in words {
                        check(p, w, gens[p as usize], "final pass")?;
                    }
                }
                ops.get(proc as usize).store(n, Ordering::Relaxed);
                Ok(())
            })?);
        }
        for (i, pid) in pids.into_iter().enumerate() {
            wait_ok(pid, &format!("rmem process {i} (policy {policy})"))?;
        }
        let s = dev.rmem_stats(false).map_err(|e| format!("stats: {e}"))?;
        let per: Vec<u64> = (0..PROCS as usize)
            .map(|i| ops.get(i).load(Ordering::Relaxed))
            .collect();
        println!(
            "policy {policy}: ops {per:?}; sync {} wait {} prefetches {} installed {} evictions {} writebacks {}",
            s.faults_sync, s.faults_wait, s.prefetches, s.installed, s.evictions, s.writebacks
        );
        if s.local > cfg.budget || s.evictions == 0 || s.writebacks == 0 || s.faults_sync == 0 {
            return Err(format!("policy {policy}: stats {s:?}"));
        }
        if per.contains(&0) {
            return Err(format!(
                "policy {policy}: a process made no access: {per:?}"
            ));
        }
    }
    no_new_problems(problems, "rmem stress")?;
    println!("in {:?}", started.elapsed());
    Ok(Outcome::Pass)
}

/// Three writer processes (forked after the mmap, each owning every third word of
/// every page) write for 3 s while this process collects with clear and copies the
/// dirty pages into a replica, and a fourth process makes non-clearing collects,
/// history and stats calls on the same file. After the writers stop, one more
/// collect and copy: the replica equals the memory, and nothing is left dirty.
pub fn stress_ckpt_processes(_: &crate::Options) -> TestResult {
    const PAGES: u64 = 256;
    const WRITERS: u64 = 3;
    const RUN: Duration = Duration::from_secs(3);
    const LIMIT: Duration = Duration::from_secs(20);
    const MIN_CHECKPOINTS: u64 = 8;
    let problems = kernel_problems()?.len();
    let started = Instant::now();
    let (dev, map, _) = ckpt_region(PAGES)?;
    let ctl = SharedWords::new(1 + WRITERS as usize)?;
    let stop = || ctl.get(0).load(Ordering::Relaxed) != 0;
    let mut pids = Vec::new();
    for t in 0..WRITERS {
        let (map, ctl, stop) = (&map, &ctl, &stop);
        pids.push(fork_child(move || {
            let mut rng = Rng(0xc0ffee + t);
            let mut n = 0u64;
            while !stop() {
                let p = rng.next() % PAGES;
                let w = (rng.next() % (PAGE as u64 / 8 / WRITERS)) * WRITERS + t;
                n += 1;
                map.write_u64((p * PAGE as u64 + w * 8) as usize, (t + 1) << 56 | n);
                // Bursts of 1000 writes: with five processes on two CPUs, writers
                // that never sleep leave the collector a checkpoint a second.
                if n.is_multiple_of(1000) {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            ctl.get(1 + t as usize).store(n, Ordering::Relaxed);
            Ok(())
        })?);
    }
    let dev_ref = &dev;
    let reader = fork_child(move || {
        while !stop() {
            let (_, dirty) = dev_ref
                .ckpt_collect(0, PAGES, false)
                .map_err(|e| format!("reader collect: {e}"))?;
            if dirty > PAGES {
                return Err(format!("collect reports {dirty} dirty of {PAGES}"));
            }
            dev_ref
                .ckpt_history(0, PAGES)
                .map_err(|e| format!("reader history: {e}"))?;
            dev_ref
                .ckpt_stats()
                .map_err(|e| format!("reader stats: {e}"))?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })?;
    let mut replica = vec![0u8; PAGES as usize * PAGE];
    let step = |replica: &mut Vec<u8>| -> Result<u64, String> {
        let runs = dev
            .ckpt_collect_ranges(0, PAGES, true)
            .map_err(|e| format!("collect: {e}"))?;
        let list: Vec<u64> = runs
            .iter()
            .flat_map(|r| r.first..r.first + r.count)
            .collect();
        let data = dev.ckpt_copy(&list).map_err(|e| format!("copy: {e}"))?;
        for (&p, page) in list.iter().zip(data.chunks_exact(PAGE)) {
            replica[p as usize * PAGE..(p as usize + 1) * PAGE].copy_from_slice(page);
        }
        Ok(list.len() as u64)
    };
    let t0 = Instant::now();
    let mut checkpoints = 0u64;
    let mut copied = 0u64;
    let mut during = Ok(());
    // At least RUN and MIN_CHECKPOINTS (a guest sharing its host is slow), at most
    // LIMIT.
    while t0.elapsed() < LIMIT && (t0.elapsed() < RUN || checkpoints < MIN_CHECKPOINTS) {
        match step(&mut replica) {
            Ok(n) => copied += n,
            Err(e) => {
                during = Err(e);
                break;
            }
        }
        checkpoints += 1;
    }
    ctl.get(0).store(1, Ordering::Relaxed);
    for (t, pid) in pids.into_iter().enumerate() {
        wait_ok(pid, &format!("ckpt writer {t}"))?;
    }
    wait_ok(reader, "ckpt reader")?;
    during?;
    copied += step(&mut replica)?;
    if !dev
        .ckpt_collect_ranges(0, PAGES, true)
        .map_err(|e| format!("collect: {e}"))?
        .is_empty()
    {
        return Err("pages dirty after the last checkpoint with the writers stopped".into());
    }
    let memory = map.to_vec();
    let differ: Vec<usize> = (0..PAGES as usize)
        .filter(|&p| memory[p * PAGE..(p + 1) * PAGE] != replica[p * PAGE..(p + 1) * PAGE])
        .collect();
    let writes: Vec<u64> = (0..WRITERS as usize)
        .map(|t| ctl.get(1 + t).load(Ordering::Relaxed))
        .collect();
    println!(
        "{checkpoints} checkpoints, {copied} pages copied, writes {writes:?}, {:?} a checkpoint",
        t0.elapsed() / checkpoints.max(1) as u32
    );
    if !differ.is_empty() {
        return Err(format!(
            "the replica differs from memory in {} pages: {:?}",
            differ.len(),
            &differ[..differ.len().min(16)]
        ));
    }
    if checkpoints < MIN_CHECKPOINTS || writes.contains(&0) {
        return Err(format!(
            "too little concurrency: {checkpoints} checkpoints, writes {writes:?}"
        ));
    }
    no_new_problems(problems, "ckpt stress")?;
    println!("in {:?}", started.elapsed());
    Ok(Outcome::Pass)
}
