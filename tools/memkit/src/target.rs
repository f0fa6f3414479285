//! The process being checkpointed: stopping and resuming it, finding its mappings,
//! and taking a file descriptor from it.
//!
//! A stop is `SIGSTOP` followed by waiting until every thread of the process shows
//! state `T` (or `t`) in `/proc/PID/task/TID/stat`: a thread that was inside the
//! kernel (a `read` into the region, say) finishes that call first, so once all are
//! stopped nothing writes the memory until `SIGCONT`.
//!
//! A stop outlives the process that made it, so a checkpointer keeps a [`Guardian`]:
//! if it dies while the target is stopped (`SIGKILL`, a crash), the guardian
//! continues the target.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A running process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pid: libc::pid_t,
}

/// The state letter of `/proc/.../stat` text (the field after `comm`'s `)`).
fn state_of(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

impl Target {
    /// The process `pid` (checked to exist).
    pub fn new(pid: libc::pid_t) -> io::Result<Target> {
        if pid <= 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        fs::metadata(format!("/proc/{pid}"))?;
        Ok(Target { pid })
    }

    /// Its pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        // SAFETY: kill(2) has no memory effects in this process.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether every thread is stopped.
    fn all_stopped(&self) -> io::Result<bool> {
        for t in fs::read_dir(format!("/proc/{}/task", self.pid))? {
            let stat = match fs::read_to_string(t?.path().join("stat")) {
                // A thread that exited meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            };
            match state_of(&stat) {
                Some('T' | 't') => {}
                Some('Z' | 'X') => {
                    return Err(io::Error::other(format!("process {} exited", self.pid)));
                }
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Stops the process and waits (at most `timeout`) until all its threads are
    /// stopped; on failure the process is continued again.
    pub fn stop(&self, timeout: Duration) -> io::Result<()> {
        self.signal(libc::SIGSTOP)?;
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            match self.all_stopped() {
                Ok(true) => return Ok(()),
                Ok(false) if start.elapsed() < timeout => {}
                Ok(false) => {
                    let _ = self.resume();
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("process {} did not stop within {timeout:?}", self.pid),
                    ));
                }
                Err(e) => {
                    let _ = self.resume();
                    return Err(e);
                }
            }
            spins += 1;
            if spins < 50 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// Continues the process.
    pub fn resume(&self) -> io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// The mappings of the process whose path is `path`: `(start, end, file offset)`.
    pub fn mappings_of(&self, path: &str) -> io::Result<Vec<(u64, u64, u64)>> {
        let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid))?;
        Ok(maps
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let range = f.next()?;
                let offset = f.nth(1)?;
                let name = f.nth(2)?;
                if name != path {
                    return None;
                }
                let (a, b) = range.split_once('-')?;
                Some((
                    u64::from_str_radix(a, 16).ok()?,
                    u64::from_str_radix(b, 16).ok()?,
                    u64::from_str_radix(offset, 16).ok()?,
                ))
            })
            .collect())
    }

    /// The descriptors of the process open on `path`.
    pub fn fds_of(&self, path: &str) -> io::Result<Vec<i32>> {
        let mut fds = Vec::new();
        for e in fs::read_dir(format!("/proc/{}/fd", self.pid))? {
            let e = e?;
            if fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == path) {
                if let Some(fd) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                    fds.push(fd);
                }
            }
        }
        fds.sort_unstable();
        Ok(fds)
    }

    /// A duplicate of the process's descriptor `fd` (`pidfd_getfd`, Linux 5.6; needs
    /// the right to ptrace the process).
    pub fn take_fd(&self, fd: i32) -> io::Result<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `pidfd` is a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_getfd takes a pidfd, a descriptor number of the target and
        // flags, and returns a new descriptor in this process.
        let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(got as i32) })
    }
}

/// A process that continues a target if the process that made it dies first.
///
/// It waits on a pipe whose only write end this process holds (close-on-exec, so no
/// program started later inherits it). End-of-file with nothing written means this
/// process is gone, however it ended: the guardian sends the target `SIGCONT`
/// (harmless if it was not stopped) and exits. Dropping the guardian — the
/// checkpointer ended normally, perhaps leaving the target stopped on purpose —
/// writes a byte first, so it exits without touching the target; it is then reaped.
///
/// The guardian leaves the terminal's process group (a `Ctrl-C` for the
/// checkpointer does not take it along) and closes every other descriptor it
/// inherited (a socket to the backup, a region).
#[derive(Debug)]
pub struct Guardian {
    pid: libc::pid_t,
    tell: Option<OwnedFd>,
}

impl Guardian {
    /// Starts the guardian of `target`.
    pub fn spawn(target: &Target) -> io::Result<Guardian> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let [rd, wr] = fds;
        // SAFETY: both are new descriptors that nothing else owns.
        let (rd_owned, tell) = unsafe { (OwnedFd::from_raw_fd(rd), OwnedFd::from_raw_fd(wr)) };
        let tpid = target.pid;
        // SAFETY: the child makes only async-signal-safe calls (this process may have
        // other threads) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls on plain integers and a one-byte stack
            // buffer; `_exit` never returns.
            unsafe {
                libc::setpgid(0, 0);
                if rd > 3 {
                    libc::syscall(libc::SYS_close_range, 3u32, (rd - 1) as u32, 0u32);
                }
                libc::syscall(libc::SYS_close_range, (rd + 1) as u32, u32::MAX, 0u32);
                let mut b = 0u8;
                loop {
                    let n = libc::read(rd, (&raw mut b).cast(), 1);
                    if n < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    if n == 0 {
                        libc::kill(tpid, libc::SIGCONT);
                    }
                    libc::_exit(0);
                }
            }
        }
        drop(rd_owned);
        Ok(Guardian {
            pid,
            tell: Some(tell),
        })
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        if let Some(fd) = self.tell.take() {
            use std::os::fd::AsRawFd;
            // SAFETY: writes one byte from a static to an open pipe.
            unsafe { libc::write(fd.as_raw_fd(), b"d".as_ptr().cast(), 1) };
        }
        // SAFETY: reaps this guardian's own child; a null status is allowed.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_letter_after_comm() {
        assert_eq!(state_of("12 (a) b) T 1 2"), Some('T'));
        assert_eq!(state_of("12 (memkit) R 1"), Some('R'));
        assert_eq!(state_of("garbage"), None);
    }

    #[test]
    fn stops_and_resumes_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let t = Target::new(child.id() as i32).unwrap();
        t.stop(Duration::from_secs(5)).unwrap();
        assert!(t.all_stopped().unwrap());
        t.resume().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn state(pid: u32) -> char {
        state_of(&fs::read_to_string(format!("/proc/{pid}/stat")).unwrap()).unwrap()
    }

    fn wait_state(pid: u32, stopped: bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if (state(pid) == 'T') == stopped {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The guardian of a process that dies continues the stopped target; dropped,
    /// it leaves the target stopped.
    #[test]
    fn guardian_continues_the_target_when_its_owner_dies() {
        let mut target = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let t = Target::new(target.id() as i32).unwrap();
        // The owner: a forked child that makes a guardian, stops the target and is
        // killed. (The test harness has other threads: the child allocates nothing.)
        // SAFETY: the child only makes the guardian (no allocation), signals and
        // pauses.
        let owner = unsafe { libc::fork() };
        assert!(owner >= 0);
        if owner == 0 {
            // Other tests' descriptors are not this child's to hold (a replica's
            // lock goes with its file's last descriptor).
            // SAFETY: close_range(2) on integers; the child uses none of them.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            let g = Guardian::spawn(&t);
            let ok = g.is_ok();
            std::mem::forget(g);
            // SAFETY: async-signal-safe calls; leaves the forked child.
            unsafe {
                if !ok {
                    libc::_exit(1);
                }
                libc::kill(t.pid, libc::SIGSTOP);
                libc::pause();
                libc::_exit(0);
            }
        }
        assert!(
            wait_state(target.id(), true),
            "the owner never stopped the target"
        );
        // SAFETY: kills and reaps the owner forked above.
        unsafe {
            libc::kill(owner, libc::SIGKILL);
            libc::waitpid(owner, std::ptr::null_mut(), 0);
        }
        assert!(
            wait_state(target.id(), false),
            "the target stayed stopped after its owner was killed"
        );
        // Dropped: the target stays stopped.
        let g = Guardian::spawn(&t).unwrap();
        t.stop(Duration::from_secs(5)).unwrap();
        drop(g);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(state(target.id()), 'T');
        t.resume().unwrap();
        target.kill().unwrap();
        target.wait().unwrap();
    }
}
