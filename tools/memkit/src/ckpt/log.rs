//! `memkit workload ckpt-log`: a program whose memory is a self-checking log
//! ([`memkit::ckpt_log`]). On start it checks the log it finds in its memory (a
//! region restored by `memkit ckpt restore`) and refuses a broken one; then it goes
//! on appending records, each carrying the checksum of the one before.

use memkit::ckpt_log::{self, State};
use serde::Serialize;
use std::io::{self, Write};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

/// The log program's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct LogOpts {
    /// Bytes of memory when it makes its own region (not under `memkit ckpt run`
    /// or `restore`, which pass theirs).
    #[arg(long, default_value = "1M", value_parser = crate::journal::parse_size)]
    pub bytes: u64,
    /// Records appended per second (0: as fast as it can).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Stop after this many seconds (0: run until killed).
    #[arg(long, default_value_t = 0.0)]
    pub secs: f64,
}

#[derive(Serialize)]
struct Started {
    pid: u32,
    addr: String,
    bytes: u64,
    memory: &'static str,
    /// Whether the memory held a log (checked) that this run continues.
    resumed: bool,
    /// Records in the log at the start.
    records: u64,
    capacity: u64,
}

#[derive(Serialize)]
struct Ended {
    records: u64,
    appended: u64,
}

fn line<T: Serialize>(v: &T) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(v).expect("serialisable"));
    let _ = out.flush();
}

/// Runs the program; returns only with `--secs` or on error.
pub fn run(o: &LogOpts) -> Result<(), String> {
    let (map, what) = super::writer::memory(o.bytes, false)?;
    let found = ckpt_log::check(&map.to_vec())
        .map_err(|e| format!("the log in this program's memory is broken: {e}"))?;
    let resumed = found.is_some();
    let mut s = match found {
        Some(s) => s,
        None => {
            let h = ckpt_log::header(map.len())
                .ok_or_else(|| format!("{} bytes hold no log of two records", map.len()))?;
            map.write_bytes(0, &h);
            State {
                capacity: ckpt_log::capacity(map.len()),
                count: 0,
                last: 0,
            }
        }
    };
    line(&Started {
        pid: std::process::id(),
        addr: format!("{:#x}", map.addr()),
        bytes: map.len() as u64,
        memory: what,
        resumed,
        records: s.count,
        capacity: s.capacity,
    });
    let start = Instant::now();
    let mut appended = 0u64;
    loop {
        let elapsed = start.elapsed();
        if o.secs > 0.0 && elapsed.as_secs_f64() >= o.secs {
            break;
        }
        if o.rate > 0 && appended >= (elapsed.as_secs_f64() * o.rate as f64) as u64 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let r = ckpt_log::record(s.count, s.last);
        map.write_bytes(ckpt_log::slot(s.capacity, s.count), &r);
        // The record before the count that admits it: any state this thread is
        // stopped in is a valid log.
        fence(Ordering::Release);
        s.count += 1;
        s.last = ckpt_log::checksum(&r);
        map.write_bytes(16, &s.count.to_le_bytes());
        appended += 1;
    }
    match ckpt_log::check(&map.to_vec()) {
        Ok(Some(end)) if end == s => {}
        other => return Err(format!("the log broke while running: {other:?}")),
    }
    line(&Ended {
        records: s.count,
        appended,
    });
    Ok(())
}
