//! `memkit`: the command-line tool of the memkit kernel module.

mod check;
mod ckpt;
mod journal;
mod rmem;

use clap::{CommandFactory, Parser, Subcommand};
use memkit::dev::{feature_names, Device, DeviceKind};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Drive memkit's devices: /dev/memkit-journal, /dev/memkit-rmem, /dev/memkit-ckpt.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check that memkit can run here: the module and its ABI, each device and
    /// whether this user can open it, the kernel features each part relies on.
    /// Exit status 0 if every required check passed, 1 if not.
    Check {
        /// Also check that this block device supports DAX (the journal's device).
        #[arg(long, value_name = "DEV")]
        device: Option<PathBuf>,
    },
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
    /// Write this tool's man pages or shell completions (what `make install` installs).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
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
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Journal { cmd } => journal::run(cmd, cli.json),
        Cmd::Ckpt { cmd } => ckpt::run(cmd, cli.json),
        Cmd::Rmem { cmd } => rmem::run(cmd, cli.json),
        Cmd::Check { device } => check::run(device.as_deref(), cli.json),
        Cmd::Generate { what } => match generate(&what) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("memkit generate: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Version { device } => {
            let kinds = device.map_or(DeviceKind::ALL.to_vec(), |d| vec![d]);
            let reports = version(&kinds);
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&reports).expect("serialisable")
                );
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
                            println!("{:<20} error: {}", r.path, e.as_deref().unwrap_or("?"))
                        }
                    }
                }
            }
            if reports.iter().any(|r| r.error.is_some()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
