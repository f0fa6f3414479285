//! `memkit-bench`: memkit's benchmarks (`make bench`, scripts/bench.sh).
//!
//! - `memkit-bench host`: the shared engine on a DRAM-backed file with clwb + sfence
//!   against PMDK libpmemobj transactions doing the same writes (single thread).
//! - `memkit-bench guest`: transactions through `/dev/memkit-journal` from several
//!   threads, with the journal's counters (run in the test guest).
//! - `memkit-bench guest-pmdk`: the same with PMDK libpmemobj on a DAX-mounted
//!   filesystem on the same kind of pmem (run in the test guest).
//! - `memkit-bench ckpt-collect`: the checkpoint device's collect + clear against
//!   soft-dirty and `PAGEMAP_SCAN` (run in the test guest).
//! - `memkit-bench ckpt-run`: the checkpointer through the `memkit` CLI —
//!   checkpoints per second, time stopped with and without pre-copy, bytes sent with
//!   and without diffs (run in the test guest).
//! - `memkit-bench report RAW...`: aggregates the raw lines the others print into
//!   result JSON lines and a table.
//!
//! The runs print raw measurements, one JSON object a line, on stdout and progress
//! on stderr.

mod ckpt;
mod ckpt_run;
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
#[command(name = "memkit-bench", about = "memkit's benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The journal engine vs PMDK libpmemobj on DRAM-backed files (needs
    /// PMEM_IS_PMEM_FORCE=1).
    Host(host::HostOpts),
    /// Transactions through /dev/memkit-journal (attached) from 1..N threads.
    Guest(guest::GuestOpts),
    /// The same transactions with PMDK libpmemobj on a pool in a DAX-mounted
    /// directory (the peer of `guest`, on the same kind of pmem).
    GuestPmdk(guest::GuestPmdkOpts),
    /// Collect + clear of dirty pages: /dev/memkit-ckpt vs soft-dirty vs PAGEMAP_SCAN.
    CkptCollect(ckpt::CkptOpts),
    /// The checkpointer through `memkit ckpt run | backup | writer`: checkpoints per
    /// second, time stopped with and without pre-copy, bytes with and without diffs.
    CkptRun(Box<ckpt_run::CkptRunOpts>),
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

pub(crate) fn parse_note(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{s}': want KEY=VALUE"))
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
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
        Cmd::Host(opts) => host::run(&opts, &mut emitter()),
        Cmd::Guest(opts) => guest::run(&opts, &mut emitter()),
        Cmd::GuestPmdk(opts) => guest::run_pmdk(&opts, &mut emitter()),
        Cmd::CkptCollect(opts) => ckpt::run(&opts, &mut emitter()),
        Cmd::CkptRun(opts) => ckpt_run::run(&opts, &mut emitter()),
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
