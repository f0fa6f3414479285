//! Progress of a long step on stderr: nothing for a step that ends within a second;
//! then one line a second (`memkit: WHAT: DONE of TOTAL UNIT (P%), S s`, or the
//! elapsed time alone for a step that cannot count), and a last line when it ends.
//! stdout is left alone, so `--json` output stays what it is.
//!
//! A thread prints the lines, so a step blocked in one long call (the first
//! checkpoint's copy of every page, a format's writes) still shows it is alive.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a step runs before its first line, and between lines.
const EVERY: Duration = Duration::from_secs(1);

struct Shared {
    done: AtomicU64,
    stop: AtomicBool,
    printed: AtomicBool,
}

/// A step whose progress is reported while this lives; [`Progress::finish`] ends it.
pub struct Progress {
    what: String,
    unit: &'static str,
    start: Instant,
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
}

/// One line: `WHAT: DONE of TOTAL UNIT (P%), S s`, or `WHAT: S s` without a total.
fn line(what: &str, done: u64, total: Option<u64>, unit: &str, secs: f64) -> String {
    match total {
        Some(t) if t > 0 => format!(
            "memkit: {what}: {done} of {t} {unit} ({}%), {secs:.0} s",
            done.saturating_mul(100) / t
        ),
        _ => format!("memkit: {what}: {secs:.0} s"),
    }
}

impl Progress {
    /// Starts reporting `what`, out of `total` `unit`s if it counts.
    pub fn start(what: impl Into<String>, total: Option<u64>, unit: &'static str) -> Progress {
        let what = what.into();
        let shared = Arc::new(Shared {
            done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            printed: AtomicBool::new(false),
        });
        let start = Instant::now();
        let ticker = {
            let (shared, what) = (shared.clone(), what.clone());
            std::thread::Builder::new()
                .name("memkit-progress".into())
                .spawn(move || {
                    let mut next = start + EVERY;
                    loop {
                        // Wakes early to end promptly when the step is done.
                        while Instant::now() < next {
                            if shared.stop.load(Ordering::Acquire) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        let done = shared.done.load(Ordering::Relaxed);
                        let secs = start.elapsed().as_secs_f64();
                        let _ = writeln!(
                            std::io::stderr(),
                            "{}",
                            line(&what, done, total, unit, secs)
                        );
                        shared.printed.store(true, Ordering::Release);
                        next += EVERY;
                    }
                })
                .ok()
        };
        Progress {
            what,
            unit,
            start,
            shared,
            ticker,
        }
    }

    /// `done` units so far.
    pub fn set(&self, done: u64) {
        self.shared.done.store(done, Ordering::Relaxed);
    }

    /// Ends the step; if a line was printed, a last one says how it ended.
    pub fn finish(mut self, outcome: &str) {
        self.stop();
        if self.shared.printed.load(Ordering::Acquire) {
            let done = self.shared.done.load(Ordering::Relaxed);
            let counted = if done > 0 {
                format!(" ({done} {})", self.unit)
            } else {
                String::new()
            };
            eprintln!(
                "memkit: {}: {outcome}{counted} in {:.1} s",
                self.what,
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_when_they_can() {
        assert_eq!(
            line("verify", 256, Some(1024), "pages", 2.4),
            "memkit: verify: 256 of 1024 pages (25%), 2 s"
        );
        assert_eq!(
            line("first checkpoint", 0, None, "pages", 3.0),
            "memkit: first checkpoint: 3 s"
        );
        assert_eq!(line("x", 5, Some(0), "pages", 1.0), "memkit: x: 1 s");
    }

    #[test]
    fn a_short_step_prints_nothing_and_a_long_one_does() {
        let p = Progress::start("short", Some(10), "pages");
        p.set(10);
        assert!(!p.shared.printed.load(Ordering::Acquire));
        p.finish("done");
        let p = Progress::start("long", Some(10), "pages");
        p.set(3);
        std::thread::sleep(EVERY + Duration::from_millis(300));
        assert!(p.shared.printed.load(Ordering::Acquire));
        p.finish("done");
    }
}
