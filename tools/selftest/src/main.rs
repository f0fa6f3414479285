//! `memkit-selftest`: memkit's in-guest selftests, in KTAP.
//!
//! Runs on any machine with `memkit.ko` loaded, as root:
//! `memkit-selftest [--module PATH/memkit.ko] [--filter SUBSTRING] [--shard K/N]
//! [--timeout SECS]`. `--shard K/N` runs the K-th of N parts of the cases (`make
//! check` runs two guests side by side on four cores or more, [`ktap::shard`]).
//! `--list` prints the names of the cases it would run; `--one NAME` runs a single
//! case without KTAP framing (that is how the runner isolates cases).
//! `memkit-selftest fuzz ...` runs the ioctl fuzzer (`fuzz/mod.rs`).

mod abi_tests;
mod ckpt_tests;
mod cli_tests;
mod crash;
mod failover_tests;
mod fuzz;
mod journal_tests;
mod ktap;
mod media_tests;
mod module_tests;
mod perm_tests;
mod race_tests;
mod replica_tests;
mod rmem_defect_tests;
mod rmem_nbd_tests;
mod rmem_tests;
mod rmem_wait_tests;
mod snapshot_tests;
mod stress_tests;

use ktap::{Case, Options};
use std::process::ExitCode;
use std::time::Duration;

const CASES: &[Case] = &[
    Case {
        name: "devices_exist_0600_root",
        run: abi_tests::devices_exist_0600_root,
    },
    Case {
        name: "version_journal",
        run: abi_tests::version_journal,
    },
    Case {
        name: "version_rmem",
        run: abi_tests::version_rmem,
    },
    Case {
        name: "version_ckpt",
        run: abi_tests::version_ckpt,
    },
    Case {
        name: "unknown_command_enotty",
        run: abi_tests::unknown_command_enotty,
    },
    Case {
        name: "size_too_small_einval",
        run: abi_tests::size_too_small_einval,
    },
    Case {
        name: "size_larger_zero_tail_ok",
        run: abi_tests::size_larger_zero_tail_ok,
    },
    Case {
        name: "size_larger_nonzero_tail_e2big",
        run: abi_tests::size_larger_nonzero_tail_e2big,
    },
    Case {
        name: "size_over_max_e2big",
        run: abi_tests::size_over_max_e2big,
    },
    Case {
        name: "nonzero_padding_einval",
        run: abi_tests::nonzero_padding_einval,
    },
    Case {
        name: "unknown_flags_einval",
        run: abi_tests::unknown_flags_einval,
    },
    Case {
        name: "bad_pointer_efault",
        run: abi_tests::bad_pointer_efault,
    },
    Case {
        name: "perm_nodes_root_only_by_default",
        run: perm_tests::perm_nodes_root_only_by_default,
    },
    Case {
        name: "journal_attach_format",
        run: journal_tests::journal_attach_format,
    },
    Case {
        name: "journal_tx_and_read",
        run: journal_tests::journal_tx_and_read,
    },
    Case {
        name: "journal_read_into_slow_buffer_does_not_block_commits",
        run: journal_tests::journal_read_into_slow_buffer_does_not_block_commits,
    },
    Case {
        name: "journal_bad_tx_rejected",
        run: journal_tests::journal_bad_tx_rejected,
    },
    Case {
        name: "journal_recovery_on_reattach",
        run: journal_tests::journal_recovery_on_reattach,
    },
    Case {
        name: "journal_group_commit",
        run: journal_tests::journal_group_commit,
    },
    Case {
        name: "journal_commit_without_grouping",
        run: journal_tests::journal_commit_without_grouping,
    },
    Case {
        name: "journal_attach_errors",
        run: journal_tests::journal_attach_errors,
    },
    Case {
        name: "journal_corrupted_media",
        run: media_tests::journal_corrupted_media,
    },
    Case {
        name: "rmem_config_rejected",
        run: rmem_tests::rmem_config_rejected,
    },
    Case {
        name: "rmem_integrity_small_budget",
        run: rmem_tests::rmem_integrity_small_budget,
    },
    Case {
        name: "rmem_threads_fault_same_pages",
        run: rmem_tests::rmem_threads_fault_same_pages,
    },
    Case {
        name: "rmem_ptline_prefetch_cuts_scan_faults",
        run: rmem_tests::rmem_ptline_prefetch_cuts_scan_faults,
    },
    Case {
        name: "rmem_deadline_leaves_late_pages_not_present",
        run: rmem_tests::rmem_deadline_leaves_late_pages_not_present,
    },
    Case {
        name: "rmem_exit_and_unmap_with_fetches_in_flight",
        run: rmem_tests::rmem_exit_and_unmap_with_fetches_in_flight,
    },
    Case {
        name: "rmem_agent_end_to_end",
        run: rmem_tests::rmem_agent_end_to_end,
    },
    Case {
        name: "rmem_nbd_integrity",
        run: rmem_nbd_tests::rmem_nbd_integrity,
    },
    Case {
        name: "rmem_nbd_agent_prefetches_overlap",
        run: rmem_nbd_tests::rmem_nbd_agent_prefetches_overlap,
    },
    Case {
        name: "rmem_memory_charged_to_cgroup",
        run: perm_tests::rmem_memory_charged_to_cgroup,
    },
    Case {
        name: "rmem_agent_rejects_bad_replies",
        run: rmem_tests::rmem_agent_rejects_bad_replies,
    },
    Case {
        name: "rmem_writeback_one_eviction_per_fault",
        run: rmem_defect_tests::rmem_writeback_one_eviction_per_fault,
    },
    Case {
        name: "rmem_ckpt_map_shared_read_only",
        run: rmem_defect_tests::rmem_ckpt_map_shared_read_only,
    },
    Case {
        name: "rmem_clock_probe_allocates_no_page_tables",
        run: rmem_defect_tests::rmem_clock_probe_allocates_no_page_tables,
    },
    Case {
        name: "rmem_fault_killable_agent_silent",
        run: rmem_wait_tests::rmem_fault_killable_agent_silent,
    },
    Case {
        name: "rmem_fault_sleep_bounded_emulated",
        run: rmem_wait_tests::rmem_fault_sleep_bounded_emulated,
    },
    Case {
        name: "ckpt_create_and_map",
        run: ckpt_tests::ckpt_create_and_map,
    },
    Case {
        name: "ckpt_collect_reports_written_pages",
        run: ckpt_tests::ckpt_collect_reports_written_pages,
    },
    Case {
        name: "ckpt_no_write_is_missed",
        run: ckpt_tests::ckpt_no_write_is_missed,
    },
    Case {
        name: "ckpt_false_positives_counted",
        run: ckpt_tests::ckpt_false_positives_counted,
    },
    Case {
        name: "ckpt_written_then_unmapped_is_reported",
        run: ckpt_tests::ckpt_written_then_unmapped_is_reported,
    },
    Case {
        name: "ckpt_fork_child_writes_are_reported",
        run: ckpt_tests::ckpt_fork_child_writes_are_reported,
    },
    Case {
        name: "ckpt_record_no_write_is_missed",
        run: ckpt_tests::ckpt_record_no_write_is_missed,
    },
    Case {
        name: "ckpt_mode_switch_no_write_is_missed",
        run: ckpt_tests::ckpt_mode_switch_no_write_is_missed,
    },
    Case {
        name: "ckpt_record_false_positives_counted",
        run: ckpt_tests::ckpt_record_false_positives_counted,
    },
    Case {
        name: "ckpt_record_written_then_unmapped_is_reported",
        run: ckpt_tests::ckpt_record_written_then_unmapped_is_reported,
    },
    Case {
        name: "ckpt_record_fork_child_writes_are_reported",
        run: ckpt_tests::ckpt_record_fork_child_writes_are_reported,
    },
    Case {
        name: "ckpt_kernel_writes_are_reported",
        run: ckpt_tests::ckpt_kernel_writes_are_reported,
    },
    Case {
        name: "ckpt_record_kernel_writes_are_reported",
        run: ckpt_tests::ckpt_record_kernel_writes_are_reported,
    },
    Case {
        name: "ckpt_mode_follows_the_dirty_fraction",
        run: ckpt_tests::ckpt_mode_follows_the_dirty_fraction,
    },
    Case {
        name: "ckpt_start_mode_flags",
        run: ckpt_tests::ckpt_start_mode_flags,
    },
    Case {
        name: "ckpt_record_mremap_moves_tracking",
        run: replica_tests::ckpt_record_mremap_moves_tracking,
    },
    Case {
        name: "ckpt_history_tracks_intervals",
        run: ckpt_tests::ckpt_history_tracks_intervals,
    },
    Case {
        name: "ckpt_copy_returns_contents",
        run: ckpt_tests::ckpt_copy_returns_contents,
    },
    Case {
        name: "ckpt_diffs_rebuild_the_replica",
        run: ckpt_tests::ckpt_diffs_rebuild_the_replica,
    },
    Case {
        name: "ckpt_copy_diff_fault_keeps_the_versions_true",
        run: ckpt_tests::ckpt_copy_diff_fault_keeps_the_versions_true,
    },
    Case {
        name: "ckpt_snapshot_copies_pages_as_they_were",
        run: snapshot_tests::ckpt_snapshot_copies_pages_as_they_were,
    },
    Case {
        name: "ckpt_snapshot_is_a_cut_of_racing_writers",
        run: snapshot_tests::ckpt_snapshot_is_a_cut_of_racing_writers,
    },
    Case {
        name: "ckpt_baseline_soft_dirty_of_another_process",
        run: ckpt_tests::ckpt_baseline_soft_dirty_of_another_process,
    },
    Case {
        name: "ckpt_bad_collect_args",
        run: ckpt_tests::ckpt_bad_collect_args,
    },
    Case {
        name: "ckpt_close_with_mapping_alive",
        run: ckpt_tests::ckpt_close_with_mapping_alive,
    },
    Case {
        name: "ckpt_mremap_moves_tracking",
        run: replica_tests::ckpt_mremap_moves_tracking,
    },
    Case {
        name: "ckpt_run_replica_equals_memory",
        run: replica_tests::ckpt_run_replica_equals_memory,
    },
    Case {
        name: "ckpt_run_attached_and_soft_dirty",
        run: replica_tests::ckpt_run_attached_and_soft_dirty,
    },
    Case {
        name: "ckpt_run_target_exits",
        run: replica_tests::ckpt_run_target_exits,
    },
    Case {
        name: "ckpt_run_killed_target_resumes",
        run: replica_tests::ckpt_run_killed_target_resumes,
    },
    Case {
        name: "ckpt_failover_restores_an_acknowledged_checkpoint",
        run: failover_tests::ckpt_failover_restores_an_acknowledged_checkpoint,
    },
    Case {
        name: "fuzz_ioctl",
        run: fuzz::fuzz_ioctl,
    },
    Case {
        name: "fuzz_ioctl_unprivileged",
        run: fuzz::fuzz_ioctl_unprivileged,
    },
    Case {
        name: "race_close_during_ioctl",
        run: race_tests::race_close_during_ioctl,
    },
    Case {
        name: "race_rmem_munmap_prefetch_install",
        run: race_tests::race_rmem_munmap_prefetch_install,
    },
    Case {
        name: "race_ckpt_checkpointer_killed",
        run: race_tests::race_ckpt_checkpointer_killed,
    },
    Case {
        name: "race_ckpt_munmap_while_writing_loses_no_write",
        run: race_tests::race_ckpt_munmap_while_writing_loses_no_write,
    },
    Case {
        name: "stress_journal_atomicity",
        run: stress_tests::stress_journal_atomicity,
    },
    Case {
        name: "stress_rmem_shared_region",
        run: stress_tests::stress_rmem_shared_region,
    },
    Case {
        name: "stress_ckpt_processes",
        run: stress_tests::stress_ckpt_processes,
    },
    Case {
        name: "ckpt_memory_charged_to_cgroup",
        run: perm_tests::ckpt_memory_charged_to_cgroup,
    },
    Case {
        name: "perm_unprivileged_own_regions_only",
        run: perm_tests::perm_unprivileged_own_regions_only,
    },
    Case {
        name: "perm_region_ids_reused",
        run: perm_tests::perm_region_ids_reused,
    },
    Case {
        name: "perm_journal_admin_needs_cap_sys_admin",
        run: perm_tests::perm_journal_admin_needs_cap_sys_admin,
    },
    Case {
        name: "race_unload_with_mappings_in_flight",
        run: race_tests::race_unload_with_mappings_in_flight,
    },
    Case {
        name: "unload_refused_while_open",
        run: module_tests::unload_refused_while_open,
    },
    Case {
        name: "load_unload_50",
        run: module_tests::load_unload_50,
    },
    Case {
        name: "modprobe_loads_the_installed_module",
        run: module_tests::modprobe_loads_the_installed_module,
    },
    Case {
        name: "cli_memkit_check",
        run: module_tests::cli_memkit_check,
    },
    Case {
        name: "cli_memkit_list",
        run: cli_tests::cli_memkit_list,
    },
    Case {
        name: "kmemleak_clean",
        run: module_tests::kmemleak_clean,
    },
];

/// The cases that took 5 s or more on the debug kernel under TCG (one `make check`,
/// rounded seconds): a hint for splitting the cases between guests, so that the
/// shards take about as long; every other case counts as 1 s. A case missing here
/// only makes the split less even.
const SLOW: &[(&str, u32)] = &[
    ("fuzz_ioctl", 55),
    ("rmem_agent_end_to_end", 43),
    ("load_unload_50", 24),
    ("rmem_nbd_integrity", 22),
    ("ckpt_failover_restores_an_acknowledged_checkpoint", 18),
    ("journal_corrupted_media", 16),
    ("ckpt_run_replica_equals_memory", 15),
    ("fuzz_ioctl_unprivileged", 14),
    ("race_ckpt_munmap_while_writing_loses_no_write", 12),
    ("ckpt_run_killed_target_resumes", 10),
    ("rmem_nbd_agent_prefetches_overlap", 10),
    ("ckpt_run_attached_and_soft_dirty", 9),
    ("ckpt_mode_switch_no_write_is_missed", 8),
    ("rmem_integrity_small_budget", 8),
    ("stress_rmem_shared_region", 8),
    ("rmem_threads_fault_same_pages", 8),
    ("perm_region_ids_reused", 6),
    ("cli_memkit_list", 6),
    ("ckpt_no_write_is_missed", 6),
    ("ckpt_run_target_exits", 5),
    ("race_close_during_ioctl", 5),
];

/// Cases that check the whole guest after everything that ran before them in it:
/// the module unloads (`modprobe -r`) and loads again, and kmemleak finds no leak.
/// Every shard runs them, at their place near the end of the list.
const EVERY_SHARD: &[&str] = &["modprobe_loads_the_installed_module", "kmemleak_clean"];

fn expected_seconds(name: &str) -> u32 {
    SLOW.iter().find(|(n, _)| *n == name).map_or(1, |&(_, s)| s)
}

/// `K/N` with 1 ≤ K ≤ N.
fn parse_shard(v: &str) -> Option<(usize, usize)> {
    let (k, n) = v.split_once('/')?;
    let (k, n) = (k.parse().ok()?, n.parse().ok()?);
    (1..=n).contains(&k).then_some((k, n))
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: memkit-selftest [--module KO] [--filter S] [--shard K/N] [--timeout SECS] [--list] [--one NAME]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fuzz") {
        return fuzz::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--media-image") {
        return media_tests::media_image_main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("--journal-crash-run") {
        return crash::main(&args[1..]);
    }
    let mut opts = Options {
        module: None,
        timeout: Duration::from_secs(240),
    };
    let (mut filter, mut one, mut list, mut part) = (None, None, false, (1, 1));
    let mut child_args = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--module" | "--timeout" | "--filter" | "--one" | "--shard" => {
                let Some(v) = it.next() else { return usage() };
                match a.as_str() {
                    "--module" => opts.module = Some(v.clone()),
                    "--timeout" => match v.parse() {
                        Ok(s) => opts.timeout = Duration::from_secs(s),
                        Err(_) => return usage(),
                    },
                    "--filter" => filter = Some(v.clone()),
                    "--shard" => match parse_shard(v) {
                        Some(kn) => part = kn,
                        None => return usage(),
                    },
                    _ => one = Some(v.clone()),
                }
                if matches!(a.as_str(), "--module" | "--timeout") {
                    child_args.extend([a.clone(), v.clone()]);
                }
            }
            "--list" => list = true,
            _ => return usage(),
        }
    }
    if let Some(name) = one {
        return match CASES.iter().find(|c| c.name == name) {
            Some(case) => ktap::run_one(case, &opts),
            None => usage(),
        };
    }
    let selected = select(filter.as_deref(), part);
    if list {
        selected.iter().for_each(|c| println!("{}", c.name));
        return ExitCode::SUCCESS;
    }
    ktap::run_all(&selected, &opts, &child_args)
}

/// The cases whose name contains `filter`, then shard `k` of `n` of them.
fn select(filter: Option<&str>, (k, n): (usize, usize)) -> Vec<&'static Case> {
    let matching: Vec<&Case> = CASES
        .iter()
        .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
        .collect();
    ktap::shard(&matching, k, n, expected_seconds, EVERY_SHARD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hint_names_a_case() {
        for (name, _) in SLOW {
            assert!(CASES.iter().any(|c| c.name == *name), "SLOW names {name}");
        }
        for name in EVERY_SHARD {
            assert!(
                CASES.iter().any(|c| c.name == *name),
                "EVERY_SHARD names {name}"
            );
        }
    }

    #[test]
    fn shards_split_the_cases_in_order_and_evenly() {
        let all = select(None, (1, 1));
        assert_eq!(all.len(), CASES.len());
        for n in 1..=4 {
            let parts: Vec<Vec<&Case>> = (1..=n).map(|k| select(None, (k, n))).collect();
            for case in CASES {
                let runs = parts
                    .iter()
                    .filter(|p| p.iter().any(|c| c.name == case.name))
                    .count();
                let want = if EVERY_SHARD.contains(&case.name) {
                    n
                } else {
                    1
                };
                assert_eq!(runs, want, "{} runs in {runs} of {n} shards", case.name);
            }
            for p in &parts {
                let at = |c: &&Case| CASES.iter().position(|x| x.name == c.name);
                assert!(p.windows(2).all(|w| at(&w[0]) < at(&w[1])), "list order");
            }
            // Balanced within the slowest single case.
            let secs = |p: &Vec<&Case>| -> u32 { p.iter().map(|c| expected_seconds(c.name)).sum() };
            let (lo, hi) = (
                parts.iter().map(secs).min().unwrap(),
                parts.iter().map(secs).max().unwrap(),
            );
            let slowest = SLOW.iter().map(|&(_, s)| s).max().unwrap();
            assert!(hi - lo <= slowest, "{n} shards: {lo} s to {hi} s");
        }
        // A filter is applied before the split.
        let ckpt: Vec<&Case> = select(Some("ckpt_"), (2, 2));
        assert!(!ckpt.is_empty() && ckpt.iter().all(|c| c.name.contains("ckpt_")));
        assert!(parse_shard("0/2").is_none() && parse_shard("3/2").is_none());
        assert_eq!(parse_shard("2/2"), Some((2, 2)));
    }
}
