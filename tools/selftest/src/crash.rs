//! The guest side of the journal crash test (`scripts/journal-crash.sh`).
//!
//! `memkit-selftest --journal-crash-run THREADS SLOTS [--format]` attaches (or
//! formats) the journal on the first pmem device, prints what is in the slots now
//! (`SLOTS t v...`, one line per writer thread), then runs `THREADS` writers forever:
//! writer `t` commits transactions that write its next sequence number into its
//! `SLOTS` scattered 8-byte slots, and prints `ACK t seq id` after each commit
//! returns. The host kills the VM at a random moment, boots it again on the same
//! pmem file, and checks from the next `SLOTS` lines that every writer's slots agree
//! (atomicity) and hold at least its last acknowledged sequence number (durability).
//!
//! An ACK line is drained (tcdrain(3)) to the serial port before the writer begins
//! its next transaction, so the host has seen every acknowledgement but the one being
//! printed: a writer's slots hold its last ACK the host read or the one after it.
//! Without the drain, lines queued in the tty when the VM is killed are lost and the
//! host sees a writer several transactions ahead of its last acknowledgement.

use memkit::dev::{Device, DeviceKind};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;

/// Distance between two slots: not a multiple of the line or page size, so slots
/// of one transaction land in different cache lines and pages.
const STRIDE: u64 = 4104;

fn slot_offset(thread: u64, slot: u64, slots: u64) -> u64 {
    (thread * slots + slot) * STRIDE
}

fn run(threads: u64, slots: u64, format: bool) -> Result<(), String> {
    let dev = Device::open(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
    let st = dev.journal_status().map_err(|e| format!("status: {e}"))?;
    if format || st.attached == 0 {
        if st.attached != 0 {
            dev.journal_detach().map_err(|e| format!("detach: {e}"))?;
        }
        dev.journal_attach(Path::new("/dev/pmem0"), format, 16, 4096)
            .map_err(|e| format!("attach: {e}"))?;
    }
    let st = dev.journal_status().map_err(|e| format!("status: {e}"))?;
    println!(
        "RECOVERY replayed={} discarded={} stale={} incomplete={} empty={} lwm={} next_id={}",
        st.rec_replayed,
        st.rec_discarded,
        st.rec_stale,
        st.rec_incomplete,
        st.rec_empty,
        st.rec_lwm,
        st.next_id
    );
    let reader = std::fs::File::open("/dev/memkit-journal").map_err(|e| format!("open: {e}"))?;
    let mut starts = Vec::new();
    for t in 0..threads {
        let mut line = format!("SLOTS {t}");
        let mut max = 0;
        for s in 0..slots {
            let mut v = [0u8; 8];
            reader
                .read_exact_at(&mut v, slot_offset(t, s, slots))
                .map_err(|e| format!("read: {e}"))?;
            let v = u64::from_le_bytes(v);
            max = max.max(v);
            line += &format!(" {v}");
        }
        println!("{line}");
        starts.push(max + 1);
    }
    std::io::stdout().flush().ok();
    let writers: Vec<_> = starts
        .into_iter()
        .enumerate()
        .map(|(t, start)| {
            std::thread::spawn(move || -> Result<(), String> {
                let t = t as u64;
                let dev = Device::open(DeviceKind::Journal).map_err(|e| format!("open: {e}"))?;
                for seq in start.. {
                    let v = seq.to_le_bytes();
                    let ranges: Vec<(u64, &[u8])> = (0..slots)
                        .map(|s| (slot_offset(t, s, slots), &v[..]))
                        .collect();
                    let id = dev
                        .journal_tx(&ranges)
                        .map_err(|e| format!("tx {seq}: {e}"))?;
                    println!("ACK {t} {seq} {id}");
                    drain_stdout().map_err(|e| format!("tcdrain after ACK {seq}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().map_err(|_| "writer panicked".to_string())??;
    }
    Ok(())
}

/// Waits until what was written to stdout (the guest's serial port, ttyS1) has been
/// sent, so the host has read it before the writer goes on.
fn drain_stdout() -> std::io::Result<()> {
    // SAFETY: tcdrain(3) on fd 1 only waits on the terminal; it touches no memory of ours.
    if unsafe { libc::tcdrain(1) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Entry point of `--journal-crash-run THREADS SLOTS [--format]`.
pub fn main(args: &[String]) -> ExitCode {
    let parse = |s: Option<&String>| s.and_then(|s| s.parse::<u64>().ok());
    let (Some(threads @ 1..=16), Some(slots @ 1..=64)) = (parse(args.first()), parse(args.get(1)))
    else {
        eprintln!(
            "usage: memkit-selftest --journal-crash-run THREADS(1-16) SLOTS(1-64) [--format]"
        );
        return ExitCode::from(2);
    };
    let format = args.get(2).is_some_and(|a| a == "--format");
    match run(threads, slots, format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("ERROR {e}");
            ExitCode::FAILURE
        }
    }
}
