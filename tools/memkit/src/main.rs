//! `memkit`: the command-line tool of the memkit kernel module.

mod check;
mod ckpt;
mod exit;
mod journal;
mod list;
mod progress;
mod rmem;

use clap::{error::ErrorKind, CommandFactory, Parser, Subcommand};
use memkit::dev::{feature_names, Device, DeviceKind};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Drive memkit's devices: /dev/memkit-journal, /dev/memkit-rmem, /dev/memkit-ckpt.
///
/// Exit status: 0 success, 1 error, 2 usage error, 3 `ckpt verify` found a
/// difference, 4 `journal check` found the journal not recoverable, 5 `check` found
/// a required check failing.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// Print results as JSON on stdout: one object per line (errors too, as
    /// {"error": ..., "status": N}); streams print one object per event.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that memkit can run here: the module and its ABI, each device and
    /// whether this user can open it, the kernel features each part relies on.
    /// Exit status 0 if every required check passed, 5 if not.
    Check {
        /// Also check that this block device supports DAX (the journal's device).
        #[arg(long, value_name = "DEV")]
        device: Option<PathBuf>,
    },
    /// The attached journal and the live rmem and ckpt regions (those of the
    /// processes this user may inspect: all of them for root).
    List,
    /// Show the ABI version and features of each device (MEMKIT_IOC_VERSION).
    Version {
        /// Only this device (default: all three).
        #[arg(long, value_enum)]
        device: Option<DeviceKind>,
    },
    /// The persistent-memory micro-journal: offline image tools and /dev/memkit-journal.
    Journal {
        #[command(subcommand)]
        cmd: journal::JournalCmd,
    },
    /// Checkpoint dirty tracking on /dev/memkit-ckpt.
    Ckpt {
        #[command(subcommand)]
        cmd: ckpt::CkptCmd,
    },
    /// Remote-memory regions: run an access pattern, read the counters.
    Rmem {
        #[command(subcommand)]
        cmd: rmem::RmemCmd,
    },
    /// Programs that exercise memkit for demos, tests and benchmarks (not needed to
    /// use it).
    Workload {
        #[command(subcommand)]
        cmd: WorkloadCmd,
    },
    /// Write this tool's man pages or shell completions (what `make install` installs).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Subcommand)]
enum WorkloadCmd {
    /// Checkpoint rounds over a region of this process: collect, diff, replica.
    CkptDemo(ckpt::DemoOpts),
    /// A program that writes its memory at random: something to checkpoint.
    CkptWriter(ckpt::WriterOpts),
    /// A program that appends to a self-checking log in its memory, and checks the
    /// log it finds on start (after `memkit ckpt restore`).
    CkptLog(ckpt::LogOpts),
    /// An access pattern over a new remote-memory region (or anonymous memory,
    /// Linux swap's side of the benchmark), with a report.
    RmemRun(rmem::RunOpts),
}

#[derive(Subcommand)]
enum Generate {
    /// One man page per command and subcommand (memkit.1, memkit-journal.1, ...).
    Man {
        /// Directory to write the pages into (created if missing).
        dir: PathBuf,
    },
    /// The completion script for SHELL (memkit.bash, _memkit, memkit.fish, ...).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// Directory to write the script into (created if missing).
        dir: PathBuf,
    },
}

/// Writes what `what` asks for; the files written, or the error.
fn generate(what: &Generate) -> std::io::Result<Vec<PathBuf>> {
    let dir: &Path = match what {
        Generate::Man { dir } | Generate::Completions { dir, .. } => dir,
    };
    std::fs::create_dir_all(dir)?;
    match what {
        Generate::Man { dir } => {
            clap_mangen::generate_to(Cli::command(), dir)?;
            let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "1"))
                .collect();
            pages.sort();
            Ok(pages)
        }
        Generate::Completions { shell, dir } => {
            let path = clap_complete::generate_to(*shell, &mut Cli::command(), "memkit", dir)?;
            Ok(vec![path])
        }
    }
}

/// One device's answer to `memkit version`.
#[derive(Serialize)]
struct VersionReport {
    device: DeviceKind,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    abi: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn version(devices: &[DeviceKind]) -> Vec<VersionReport> {
    devices
        .iter()
        .map(|&kind| {
            let mut r = VersionReport {
                device: kind,
                path: kind.path().display().to_string(),
                abi: None,
                features: None,
                error: None,
            };
            match Device::open(kind).and_then(|d| d.version()) {
                Ok(v) if v.device == kind.id() => {
                    r.abi = Some(format!("{}.{}", v.abi_major, v.abi_minor));
                    r.features = Some(feature_names(v.features));
                }
                Ok(v) => r.error = Some(format!("answered as device {}", v.device)),
                Err(e) => r.error = Some(e.to_string()),
            }
            r
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            // clap's own report on stderr; with --json, the same as a JSON object.
            let _ = e.print();
            if exit::wants_json(std::env::args()) {
                let msg = e.kind().as_str().unwrap_or("invalid usage").to_string();
                let detail = e.render().to_string();
                let first = detail
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                println!(
                    "{}",
                    serde_json::json!({ "error": first, "kind": msg, "status": exit::USAGE })
                );
            }
            return ExitCode::from(exit::USAGE);
        }
    };
    let json = cli.json;
    match cli.cmd {
        Cmd::Journal { cmd } => journal::run(cmd, json),
        Cmd::Ckpt { cmd } => ckpt::run(cmd, json),
        Cmd::Rmem { cmd } => rmem::run(cmd, json),
        Cmd::Check { device } => check::run(device.as_deref(), json),
        Cmd::List => list::run(json),
        Cmd::Workload { cmd } => match cmd {
            WorkloadCmd::CkptDemo(o) => ckpt::run_demo(&o, json),
            WorkloadCmd::CkptWriter(o) => ckpt::run_writer(&o, json),
            WorkloadCmd::CkptLog(o) => ckpt::run_log(&o, json),
            WorkloadCmd::RmemRun(o) => rmem::run_workload(&o, json),
        },
        Cmd::Generate { what } => match generate(&what) {
            Ok(files) => {
                let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                exit::emit(json, &serde_json::json!({ "files": files }), || {
                    files.iter().map(|f| format!("{f}\n")).collect()
                });
                ExitCode::SUCCESS
            }
            Err(e) => exit::fail(json, &format!("generate: {e}"), exit::ERROR),
        },
        Cmd::Version { device } => {
            let kinds = device.map_or(DeviceKind::ALL.to_vec(), |d| vec![d]);
            let reports = version(&kinds);
            let failed = reports.iter().filter(|r| r.error.is_some()).count();
            if json {
                // One object, with the error fields of a failure when a device
                // could not be asked.
                let mut v = serde_json::json!({ "devices": reports });
                if failed > 0 {
                    v["error"] =
                        format!("{failed} of {} devices could not be asked", kinds.len()).into();
                    v["status"] = exit::ERROR.into();
                }
                println!("{v}");
            } else {
                for r in &reports {
                    match (&r.abi, &r.features, &r.error) {
                        (Some(abi), Some(f), _) => {
                            let f = if f.is_empty() {
                                "none".to_string()
                            } else {
                                f.join(",")
                            };
                            println!("{:<20} ABI {abi:<6} features: {f}", r.path);
                        }
                        (_, _, e) => {
                            eprintln!("memkit: {}: {}", r.path, e.as_deref().unwrap_or("?"))
                        }
                    }
                }
            }
            if failed > 0 {
                ExitCode::from(exit::ERROR)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
