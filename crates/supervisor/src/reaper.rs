//! The one and only reaper: `waitid(P_ALL)` until no child is left to collect.
//!
//! Driven by SIGCHLD. Each dead child is first *peeked at* (`WNOWAIT`): while it is an unreaped
//! zombie its pid, and so its process group id, cannot be reused, which lets the caller signal
//! what is left of its group safely before the pid is released by the real reap.
use std::io;

/// One reaped child: pid and raw wait status (the `waitpid` layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    pub pid: u32,
    pub raw_status: i32,
}

/// Peeks at one child that has exited, without reaping it. `None`: none has.
pub fn peek() -> io::Result<Option<u32>> {
    // SAFETY: zeroed siginfo is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: P_ALL with a valid siginfo pointer.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r == -1 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ECHILD) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: waitid filled `info` for a child, or left si_pid 0 when none is ready.
    let pid = unsafe { info.si_pid() };
    Ok((pid > 0).then_some(pid as u32))
}

/// Reaps `pid`, which `peek` reported dead.
pub fn reap(pid: u32) -> io::Result<Reaped> {
    let mut status = 0;
    // SAFETY: waitpid with a valid status pointer.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(Reaped {
        pid,
        raw_status: status,
    })
}
