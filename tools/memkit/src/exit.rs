//! The exit statuses of `memkit`, one per outcome a script needs to tell apart, and
//! the one way results and errors are printed (a result as text, or one line of JSON
//! with `--json`; an error on stderr, and as a JSON object on stdout with `--json`).
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | error: the command could not do what it was asked |
//! | 2 | usage: the command line is wrong (clap's status) |
//! | 3 | `ckpt verify`: compared, and the memory differs from the replica |
//! | 4 | `journal check`: read, and the journal is not recoverable |
//! | 5 | `check`: a check memkit needs did not pass |

use serde::Serialize;
use std::process::ExitCode;

/// The command failed.
pub const ERROR: u8 = 1;
/// The command line is wrong.
pub const USAGE: u8 = 2;
/// `ckpt verify` compared and found a difference.
pub const DIFFERENT: u8 = 3;
/// `journal check` found the journal not recoverable.
pub const NOT_RECOVERABLE: u8 = 4;
/// `check` found a required check failing.
pub const NOT_READY: u8 = 5;

/// Prints `value` as one line of JSON, or `text()` as it is.
pub(crate) fn emit<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string(value) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("memkit: cannot encode JSON: {e}"),
        }
    } else {
        print!("{}", text());
    }
}

/// Reports `msg` on stderr (and as `{"error": …, "status": …}` on stdout with
/// `--json`); returns `status`.
pub fn fail(json: bool, msg: &str, status: u8) -> ExitCode {
    eprintln!("memkit: {msg}");
    if json {
        println!("{}", serde_json::json!({ "error": msg, "status": status }));
    }
    ExitCode::from(status)
}

/// `--json` on a command line (before a `--` that starts another program's
/// arguments): usage errors are then reported in JSON too.
pub fn wants_json<I: IntoIterator<Item = String>>(args: I) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_distinct() {
        let all = [0, ERROR, USAGE, DIFFERENT, NOT_RECOVERABLE, NOT_READY];
        for (i, a) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|b| a != b));
        }
    }

    #[test]
    fn json_is_seen_before_a_command_only() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(wants_json(v("memkit --json journal status")));
        assert!(wants_json(v("memkit journal status --json")));
        assert!(!wants_json(v("memkit journal status")));
        assert!(!wants_json(v("memkit ckpt run --backup x -- prog --json")));
        assert!(!wants_json(v("--json")));
    }
}
