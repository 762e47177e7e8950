//! Processes pinned by a pidfd: opened first, checked against the start time the caller saw
//! second, so whatever is signalled through it is the process that was meant, even if its pid
//! is reused meanwhile.
use crate::procfs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A process pinned by a pidfd and verified to be the one seen (same start time, not a zombie).
#[derive(Debug)]
pub struct Pinned {
    pub pid: i32,
    pub start_ticks: u64,
    fd: OwnedFd,
}

/// The result of a kill-like system call: `Ok(true)` delivered, `Ok(false)` no such process.
pub fn delivered(r: libc::c_long) -> io::Result<bool> {
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(e)
    }
}

impl Pinned {
    /// Opens a pidfd for `pid` and checks that it is still the process that started at
    /// `start_ticks`. `Ok(None)`: gone, a zombie, or the pid now belongs to another process.
    pub fn open(pid: i32, start_ticks: u64) -> io::Result<Option<Pinned>> {
        let Some(fd) = open_pidfd(pid)? else {
            return Ok(None);
        };
        // The pidfd refers to whatever process had `pid` at open time; if that process started
        // at `start_ticks`, it is the one meant, and stays so for the fd's life.
        match procfs::stat(pid) {
            Ok(s) if s.start_ticks == start_ticks && !s.is_zombie() => Ok(Some(Pinned {
                pid,
                start_ticks,
                fd,
            })),
            _ => Ok(None),
        }
    }

    /// Pins whatever process has `pid` now, when the caller has its own reason to trust the
    /// pid (a child not yet reaped, a pid read from a cgroup and checked afterwards). The start
    /// time is read after the open, so it describes the pinned process.
    pub fn open_now(pid: i32) -> io::Result<Option<Pinned>> {
        let Some(fd) = open_pidfd(pid)? else {
            return Ok(None);
        };
        match procfs::stat(pid) {
            Ok(s) if !s.is_zombie() => Ok(Some(Pinned {
                pid,
                start_ticks: s.start_ticks,
                fd,
            })),
            _ => Ok(None),
        }
    }

    /// Sends `sig` through the pidfd. `Ok(false)` when the process has already exited.
    pub fn signal(&self, sig: i32) -> io::Result<bool> {
        // SAFETY: pidfd_send_signal(fd, sig, NULL, 0) on a pidfd we own.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        delivered(r)
    }

    /// True while the process has not exited (a pidfd polls readable once it has; a zombie
    /// waiting for its parent counts as exited).
    pub fn alive(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        r == 0
    }
}

fn open_pidfd(pid: i32) -> io::Result<Option<OwnedFd>> {
    if pid <= 0 {
        return Ok(None);
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// Polls `cond` every 10 ms until it holds or `limit` has passed; returns its last value.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stops every pinned process: `SIGTERM` (and `SIGCONT`, for stopped ones), up to `grace` for
/// them to exit, `SIGKILL` for the rest, up to `kill_wait` more. Returns the pids still alive
/// after all that.
pub fn stop_pinned(procs: &[Pinned], grace: Duration, kill_wait: Duration) -> Vec<i32> {
    for p in procs {
        let _ = p.signal(libc::SIGTERM);
        let _ = p.signal(libc::SIGCONT);
    }
    wait_until(grace, || !procs.iter().any(Pinned::alive));
    for p in procs.iter().filter(|p| p.alive()) {
        let _ = p.signal(libc::SIGKILL);
    }
    wait_until(kill_wait, || !procs.iter().any(Pinned::alive));
    procs.iter().filter(|p| p.alive()).map(|p| p.pid).collect()
}

/// SIGKILLs every live process carrying `var=value` in its initial environment, through pinned
/// pidfds, round after round (what a round kills may have forked), until none is left or
/// `limit` passes. Each round first stops them all (`SIGSTOP`), so that a supervisor among them
/// cannot restart what the same round kills next. Returns how many processes were signalled and
/// whether any is still alive.
pub fn kill_marked(var: &str, value: &str, limit: Duration) -> (usize, bool) {
    let end = Instant::now() + limit;
    let mut signalled = 0;
    loop {
        let pinned: Vec<Pinned> = procfs::pids_with_env(var, value)
            .into_iter()
            .filter_map(|pid| Pinned::open_now(pid).ok().flatten())
            // Re-checked through the pinned process: the pid may have been reused between the
            // scan and the open.
            .filter(|p| procfs::environ_has(p.pid, format!("{var}={value}").as_bytes()))
            .collect();
        if pinned.is_empty() {
            return (signalled, false);
        }
        if Instant::now() >= end {
            return (signalled, true);
        }
        for p in &pinned {
            let _ = p.signal(libc::SIGSTOP);
        }
        for p in &pinned {
            if p.signal(libc::SIGKILL).unwrap_or(false) {
                signalled += 1;
            }
        }
        for p in &pinned {
            reap_if_child(p.pid);
        }
        wait_until(Duration::from_millis(200), || {
            !pinned.iter().any(Pinned::alive)
        });
        for p in &pinned {
            reap_if_child(p.pid);
        }
    }
}

/// Reaps `pid` if it is a zombie child of this process. Never blocks; touches no other child.
pub fn reap_if_child(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on one pid with a valid status pointer; WNOHANG never blocks.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_pinned_process_is_signalled_and_seen_to_exit() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let s = procfs::stat(pid).unwrap();
        assert!(
            Pinned::open(pid, s.start_ticks + 1).unwrap().is_none(),
            "another start time is another process"
        );
        let p = Pinned::open(pid, s.start_ticks).unwrap().unwrap();
        assert!(p.alive());
        assert!(p.signal(libc::SIGTERM).unwrap());
        let status = child.wait().unwrap();
        assert!(!p.alive());
        assert!(!status.success());
        // Reaped: the pidfd still names the old process, never a newcomer.
        assert!(!p.signal(libc::SIGKILL).unwrap());
    }

    #[test]
    fn stop_pinned_kills_what_ignores_term() {
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Until the trap is set, TERM would just kill it; wait for the sleep child to exist.
        let sleeper = || {
            procfs::all_pids()
                .into_iter()
                .find(|p| procfs::stat(*p).is_ok_and(|s| s.ppid == pid))
        };
        assert!(wait_until(Duration::from_secs(5), || sleeper().is_some()));
        let both: Vec<Pinned> = [Some(pid), sleeper()]
            .into_iter()
            .flatten()
            .map(|p| Pinned::open_now(p).unwrap().unwrap())
            .collect();
        assert_eq!(both.len(), 2);
        let t = Instant::now();
        let left = stop_pinned(&both, Duration::from_millis(300), Duration::from_secs(5));
        let status = child.wait().unwrap();
        assert!(left.is_empty());
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "TERM was ignored"
        );
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn kill_marked_kills_the_marked_and_spares_the_rest() {
        let mark = format!("k{}", std::process::id());
        let mut marked = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .env("PROCIO_KILL_MARK", &mark)
            .spawn()
            .unwrap();
        let mut other = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(wait_until(Duration::from_secs(5), || {
            procfs::pids_with_env("PROCIO_KILL_MARK", &mark).len() == 3
        }));
        let (n, left) = kill_marked("PROCIO_KILL_MARK", &mark, Duration::from_secs(5));
        let _ = marked.wait();
        let spared = other.try_wait().unwrap().is_none();
        other.kill().unwrap();
        other.wait().unwrap();
        assert!(n >= 3, "signalled {n}");
        assert!(!left);
        assert!(procfs::pids_with_env("PROCIO_KILL_MARK", &mark).is_empty());
        assert!(spared, "an unmarked process is left alone");
    }
}
