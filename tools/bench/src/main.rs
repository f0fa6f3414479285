//! `memkit-bench`: memkit's journal benchmarks (`make bench`, scripts/bench.sh).
//!
//! - `memkit-bench host`: the shared engine on a DRAM-backed file with clwb + sfence
//!   against PMDK libpmemobj transactions doing the same writes (single thread).
//! - `memkit-bench guest`: transactions through `/dev/memkit-journal` from several
//!   threads, with the journal's counters (run in the test guest).
//! - `memkit-bench report RAW...`: aggregates the raw lines the two print into
//!   result JSON lines and a table.
//!
//! The runs print raw measurements, one JSON object a line, on stdout and progress
//! on stderr.

mod guest;
mod host;
mod pmdk;
mod report;
mod sample;
mod shm;
mod workload;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "memkit-bench", about = "memkit's journal benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The journal engine vs PMDK libpmemobj on DRAM-backed files (needs
    /// PMEM_IS_PMEM_FORCE=1).
    Host {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 0.5)]
        secs: f64,
        /// Rounds (every variant once per round).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Directory of the journal and pool files; must be DRAM-backed.
        #[arg(long, default_value = "/dev/shm")]
        dir: PathBuf,
        /// Workloads, comma-separated.
        #[arg(long, default_value = "1x64B,8x64B,1x4KiB", value_parser = workload::parse_list)]
        workloads: std::vec::Vec<workload::Workload>,
        /// KEY=VALUE facts recorded with the results (e.g. the PMDK version).
        #[arg(long, value_parser = parse_note)]
        note: Vec<(String, String)>,
    },
    /// Transactions through /dev/memkit-journal (attached) from 1..N threads.
    Guest {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Thread counts, comma-separated.
        #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
        threads: Vec<u32>,
        /// Workloads, comma-separated.
        #[arg(long, default_value = "1x64B,8x64B,1x4KiB", value_parser = workload::parse_list)]
        workloads: std::vec::Vec<workload::Workload>,
        /// Round number recorded with the samples.
        #[arg(long, default_value_t = 0)]
        round: u32,
        /// The pmem device's kind, as results name it.
        #[arg(long, default_value = "virtio-pmem")]
        device: String,
        /// The block device under the journal (for /sys/block/NAME/queue/dax).
        #[arg(long, default_value = "pmem0")]
        block: String,
        /// Refuse to run unless the journal commits in this mode.
        #[arg(long, value_parser = ["coalesced", "strict"])]
        expect_mode: Option<String>,
        /// Bytes of the data region to scatter the transactions over (K, M, G).
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        region: u64,
    },
    /// Aggregate raw lines into results: the table on stdout, JSON lines to --out.
    Report {
        /// Files of raw lines (progress lines and console noise are skipped).
        #[arg(required = true)]
        raw: Vec<PathBuf>,
        /// Write the result JSON lines here (default: after the table, on stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_note(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}': want KEY=VALUE"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{s}' is not a byte count"))
}

fn emitter() -> impl FnMut(sample::Raw) {
    |raw| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", raw.line());
        let _ = out.flush();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Host {
            secs,
            rounds,
            dir,
            workloads,
            note,
        } => host::run(
            &host::HostOpts {
                secs,
                rounds,
                dir,
                workloads,
                notes: note,
            },
            &mut emitter(),
        ),
        Cmd::Guest {
            secs,
            threads,
            workloads,
            round,
            device,
            block,
            expect_mode,
            region,
        } => guest::run(
            &guest::GuestOpts {
                secs,
                threads,
                workloads,
                round,
                device,
                block,
                expect_mode,
                region,
            },
            &mut emitter(),
        ),
        Cmd::Report { raw, out } => run_report(&raw, out.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memkit-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_report(files: &[PathBuf], out: Option<&std::path::Path>) -> std::io::Result<()> {
    let mut raw = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
        let (mut r, bad) = report::parse(&text);
        if bad > 0 {
            eprintln!(
                "memkit-bench: {}: {bad} JSON-looking lines did not parse",
                f.display()
            );
        }
        raw.append(&mut r);
    }
    let rep = report::build(&raw);
    let mut jsonl = String::new();
    for l in &rep.lines {
        jsonl.push_str(&serde_json::to_string(l).expect("serialisable"));
        jsonl.push('\n');
    }
    print!("{}", rep.table);
    match out {
        Some(path) => std::fs::write(path, jsonl)?,
        None => print!("{jsonl}"),
    }
    Ok(())
}
