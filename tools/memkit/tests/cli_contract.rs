//! The contract `memkit` keeps with scripts, for every subcommand (a table, checked to
//! name every command the CLI has): with `--json`, stdout holds only JSON objects,
//! one per line; a failure ends with `{"error": …, "status": N}` and exits N; a usage
//! error exits 2, in JSON too; the exit statuses are the documented ones (0 success,
//! 1 error, 2 usage, 3 `ckpt verify` differs, 4 `journal check` not recoverable,
//! 5 `check` not ready).
//!
//! On the host there is no memkit device (`MEMKIT_DEV_DIR` is an empty directory), so
//! the device commands show their error path; what needs the module is the guest's
//! (`cli_memkit_check`, `cli_memkit_list`, the ckpt and rmem selftests).

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_memkit");

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-contract-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(devs: &Path, args: &[String]) -> Output {
    Command::new(BIN)
        .env("MEMKIT_DEV_DIR", devs)
        .args(args)
        .output()
        .unwrap()
}

/// Every line of stdout, each a JSON object.
fn json_lines(o: &Output, what: &str) -> Vec<Value> {
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(!out.is_empty(), "{what}: nothing on stdout");
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {l:?}"));
            assert!(v.is_object(), "{what}: not an object: {l}");
            v
        })
        .collect()
}

/// The commands that have no subcommand, as `memkit generate man` names their pages
/// (`memkit-journal-check.1` → `journal check`).
fn leaf_commands(scratch: &Path) -> BTreeSet<String> {
    let o = run(
        scratch,
        &[
            "generate".into(),
            "man".into(),
            scratch.display().to_string(),
        ],
    );
    assert!(o.status.success());
    let names: Vec<String> = std::fs::read_dir(scratch)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.strip_suffix(".1").map(str::to_string)
        })
        .collect();
    names
        .iter()
        .filter(|n| !names.iter().any(|m| m.starts_with(&format!("{n}-"))))
        .filter_map(|n| n.strip_prefix("memkit-").map(|c| c.replace('-', " ")))
        .collect()
}

#[test]
fn every_subcommand_keeps_the_json_and_exit_status_contract() {
    let d = dir("table");
    let devs = d.join("dev");
    std::fs::create_dir_all(&devs).unwrap();
    let img = d.join("j.img").display().to_string();
    let bad = d.join("bad.img");
    std::fs::write(&bad, vec![0x5au8; 1 << 20]).unwrap();
    let bad = bad.display().to_string();
    let missing = d.join("no/such/file").display().to_string();
    let out = d.join("gen").display().to_string();
    let replica = d.join("replica").display().to_string();
    // (command as its man page names it, arguments after it, exit status)
    let table: Vec<(&str, Vec<String>, u8)> = vec![
        ("check", vec![], 5),
        ("list", vec![], 0),
        ("version", vec![], 1),
        (
            "journal format",
            vec![img.clone(), "--size".into(), "8M".into(), "--force".into()],
            0,
        ),
        (
            "journal format",
            vec![missing.clone(), "--size".into(), "1M".into()],
            1,
        ),
        ("journal check", vec![img.clone()], 0),
        ("journal check", vec![bad], 4),
        ("journal check", vec![missing.clone()], 1),
        ("journal attach", vec![img.clone()], 1),
        ("journal detach", vec![], 1),
        ("journal status", vec![], 1),
        ("journal tx", vec!["--range".into(), "0:str:a".into()], 1),
        ("journal read", vec!["0".into(), "1".into()], 1),
        (
            "ckpt run",
            vec![
                "--backup".into(),
                "127.0.0.1:9".into(),
                "--".into(),
                "true".into(),
            ],
            1,
        ),
        (
            "ckpt backup",
            vec!["--dir".into(), replica.clone(), "--recover".into()],
            1,
        ),
        (
            "ckpt verify",
            vec![
                "--pid".into(),
                "999999999".into(),
                "--dir".into(),
                replica.clone(),
            ],
            1,
        ),
        (
            "ckpt restore",
            vec!["--dir".into(), replica, "--".into(), "true".into()],
            1,
        ),
        ("rmem stats", vec![], 1),
        (
            "rmem server",
            vec!["--listen".into(), "256.0.0.1:1".into()],
            1,
        ),
        (
            "rmem agent",
            vec![
                "--server".into(),
                "127.0.0.1:9".into(),
                "--".into(),
                "true".into(),
            ],
            1,
        ),
        ("workload ckpt demo", vec![], 1),
        ("workload ckpt writer", vec![], 1),
        ("workload ckpt log", vec![], 1),
        (
            "workload ckpt writer",
            vec![
                "--anon".into(),
                "--bytes".into(),
                "64K".into(),
                "--secs".into(),
                "0.1".into(),
            ],
            0,
        ),
        ("workload rmem run", vec!["--pages".into(), "16".into()], 1),
        (
            "workload rmem run",
            vec![
                "--anon".into(),
                "--pages".into(),
                "16".into(),
                "--budget".into(),
                "16".into(),
            ],
            0,
        ),
        ("generate man", vec![out.clone()], 0),
        ("generate completions", vec!["bash".into(), out], 0),
    ];
    // Page names join words with '-': `workload ckpt demo` is `workload ckpt-demo`.
    let argv = |name: &str| -> Vec<String> {
        match name.strip_prefix("workload ") {
            Some(rest) => vec!["workload".into(), rest.replacen(' ', "-", 1)],
            None => name.split(' ').map(String::from).collect(),
        }
    };
    let covered: BTreeSet<String> = table.iter().map(|(n, ..)| n.to_string()).collect();
    let leaves = leaf_commands(&dir("man"));
    let missing_rows: Vec<&String> = leaves.difference(&covered).collect();
    assert!(
        missing_rows.is_empty(),
        "commands without a row: {missing_rows:?}"
    );

    for (name, args, status) in &table {
        let mut full = vec!["--json".to_string()];
        full.extend(argv(name));
        full.extend(args.iter().cloned());
        let what = full.join(" ");
        let o = run(&devs, &full);
        assert_eq!(
            o.status.code(),
            Some(i32::from(*status)),
            "{what}: stderr {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let lines = json_lines(&o, &what);
        let last = lines.last().unwrap();
        match status {
            0 => assert!(last.get("error").is_none(), "{what}: {last}"),
            1 => {
                assert!(
                    last["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{what}: {last}"
                );
                assert_eq!(last["status"], 1, "{what}: {last}");
            }
            4 => assert_eq!(last["recoverable"], false, "{what}: {last}"),
            5 => assert_eq!(last["ok"], false, "{what}: {last}"),
            _ => unreachable!(),
        }
        // Without --json, stdout is never JSON error objects, and the status is the same.
        let o = run(&devs, &full[1..]);
        assert_eq!(
            o.status.code(),
            Some(i32::from(*status)),
            "{what} without --json"
        );
        if *status == 1 {
            assert!(!o.stderr.is_empty(), "{what}: an error says why on stderr");
        }

        // A usage error: status 2, reported in JSON as well.
        let mut usage = vec!["--json".to_string()];
        usage.extend(argv(name));
        usage.push("--no-such-option".into());
        let o = run(&devs, &usage);
        assert_eq!(o.status.code(), Some(2), "{}", usage.join(" "));
        let v = &json_lines(&o, &usage.join(" "))[0];
        assert_eq!(v["status"], 2);
        assert!(
            v["error"].as_str().unwrap().contains("--no-such-option"),
            "{v}"
        );
        assert!(!o.stderr.is_empty());
    }
}

#[test]
fn help_and_version_are_not_errors() {
    let devs = dir("help");
    for args in [["--help"], ["--version"]] {
        let o = run(&devs, &args.map(String::from));
        assert!(o.status.success());
        assert!(!o.stdout.is_empty());
    }
    let o = run(&devs, &["--help".into()]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Exit status"), "{help}");
}
