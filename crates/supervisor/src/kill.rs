//! Sending signals safely.
//!
//! Two situations, two techniques:
//! - **Our own live children** (task leaders we have not reaped yet): their pid cannot be reused
//!   until we reap them, and a process group cannot vanish while its leader is unreaped, so
//!   `killpg` is safe. The reaper peeks at a dead leader (`WNOWAIT`) before reaping it for the
//!   same reason.
//! - **Anything else** (leftovers of a crashed supervisor, escaped descendants): open a pidfd,
//!   check the process's start time *through* the same pid after opening, and signal through the
//!   pidfd (`pidfd_send_signal`), so a pid reused in between can never be hit.
use crate::procfs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `killpg(pgid, sig)`; `Ok(false)` when the group does not exist.
pub fn signal_group(pgid: u32, sig: i32) -> io::Result<bool> {
    let pgid = i32::try_from(pgid)
        .map_err(|_| io::Error::other(format!("process group {pgid} out of range")))?;
    if pgid <= 1 {
        return Err(io::Error::other(format!(
            "refusing to signal process group {pgid}"
        )));
    }
    // SAFETY: kill(2) has no memory-safety preconditions; negative pid = process group.
    let r = unsafe { libc::kill(-pgid, sig) };
    delivered(r as libc::c_long)
}

/// The result of a kill-like system call: `Ok(true)` delivered, `Ok(false)` no such process.
fn delivered(r: libc::c_long) -> io::Result<bool> {
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

/// True when process group `pgid` still has a member.
pub fn group_exists(pgid: u32) -> bool {
    signal_group(pgid, 0).unwrap_or(true)
}

/// A process pinned by a pidfd and verified to be the one we saw (same start time).
#[derive(Debug)]
pub struct Pinned {
    pub pid: i32,
    pub start_ticks: u64,
    fd: OwnedFd,
}

impl Pinned {
    /// Opens a pidfd for `pid` and checks that it is still the process that started at
    /// `start_ticks`. `Ok(None)`: gone, or the pid now belongs to another process.
    pub fn open(pid: i32, start_ticks: u64) -> io::Result<Option<Pinned>> {
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
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // The pidfd now refers to whatever process had `pid` at open time; if that process
        // started at `start_ticks`, it is the one we mean, and stays so for the fd's life.
        match procfs::stat(pid) {
            Ok(s) if s.start_ticks == start_ticks && !s.is_zombie() => Ok(Some(Pinned {
                pid,
                start_ticks,
                fd,
            })),
            _ => Ok(None),
        }
    }

    /// Sends `sig` through the pidfd. `Ok(false)` when the process has already exited.
    pub fn signal(&self, sig: i32) -> io::Result<bool> {
        // SAFETY: pidfd_send_signal(fd, sig, NULL, 0).
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

    /// True while the process has not exited (a pidfd polls readable once it has).
    pub fn alive(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r == 0 {
            return true;
        }
        // Readable means exited; it may still be a zombie waiting for its parent, which is gone
        // for all practical purposes.
        false
    }
}

/// Stops every pinned process: `SIGTERM`, up to `grace` for them to exit, `SIGKILL` for the
/// rest, up to `kill_wait` more. Returns the ones still alive after all that.
pub fn stop_pinned(
    procs: &[Pinned],
    grace: std::time::Duration,
    kill_wait: std::time::Duration,
) -> Vec<i32> {
    use std::time::{Duration, Instant};
    for p in procs {
        let _ = p.signal(libc::SIGTERM);
        // A stopped process cannot act on TERM until continued.
        let _ = p.signal(libc::SIGCONT);
    }
    let wait = |d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end && procs.iter().any(Pinned::alive) {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait(grace);
    for p in procs.iter().filter(|p| p.alive()) {
        let _ = p.signal(libc::SIGKILL);
    }
    wait(kill_wait);
    procs.iter().filter(|p| p.alive()).map(|p| p.pid).collect()
}
