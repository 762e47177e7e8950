//! The one and only reaper: `waitid` on the pids the SIGCHLDs name, then `waitid(P_ALL)` until
//! no dead child is left.
//!
//! Woken by SIGCHLD through a `signalfd`: the signal is blocked in every thread (see
//! [`block_sigchld`]), so a child's death makes the fd readable and wakes the event loop's
//! `epoll_wait` directly; no handler runs and nothing is written to a self-pipe.
//!
//! Each dead child is first *peeked at* (`WNOWAIT`): while it is an unreaped zombie its pid, and
//! so its process group id, cannot be reused, which lets the caller start the replacement and
//! then signal what is left of the group safely before the pid is released by the real reap.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// One dead child: pid and wait status (the `waitpid` layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dead {
    pub pid: u32,
    pub raw_status: i32,
}

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set before sigaddset adds to it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// Blocks SIGCHLD, and only SIGCHLD, in the calling thread and so in every thread it starts
/// later. Call it before any other thread exists: a thread with SIGCHLD unblocked would take the
/// signal (default action: discard) and the signalfd would never see it. Whatever else a parent
/// left blocked (a mask survives exec) is unblocked: SIGTERM must reach us. Spawned tasks get an
/// empty mask.
///
/// Also sets SIGCHLD's action back to the default: a parent that ignored SIGCHLD (`SIG_IGN`
/// survives exec) would otherwise have the kernel reap our children for us, and no death would
/// ever be seen.
pub fn block_sigchld() -> io::Result<()> {
    // SAFETY: a zeroed sigaction with SIG_DFL, no flags (so no SA_NOCLDWAIT) and an empty mask
    // is valid; the old action is not wanted.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let set = sigchld_set();
    // SAFETY: a valid signal set; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// A readable-when-a-child-died descriptor, for the event loop.
pub struct ChildSignals(AsyncFd<OwnedFd>);

impl ChildSignals {
    /// Needs SIGCHLD blocked ([`block_sigchld`]) and a Tokio runtime.
    pub fn new() -> io::Result<ChildSignals> {
        let set = sigchld_set();
        // SAFETY: a valid signal set; -1 asks for a new descriptor.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the OwnedFd is valid, stays open and is the same descriptor for as long as
        // the AsyncFd owns it (nothing else can reach it to close or replace it).
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(ChildSignals(fd))
    }

    /// Waits until at least one SIGCHLD arrived since the last call, consumes them all, and
    /// returns the pids they name. Those are hints: SIGCHLD does not queue, so deaths that came
    /// while one was pending have no signal of their own (the caller still reaps until no dead
    /// child is left).
    pub async fn recv(&self) -> io::Result<Vec<u32>> {
        const RECORD: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            let mut guard = self.0.readable().await?;
            let mut pids = Vec::new();
            let mut got = false;
            loop {
                let mut buf = [0u8; 16 * RECORD];
                // SAFETY: reads into a buffer of the length given, from our own descriptor.
                let n = unsafe {
                    libc::read(
                        self.0.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                };
                if n > 0 {
                    got = true;
                    // The kernel returns whole records only.
                    for record in buf[..n as usize].chunks_exact(RECORD) {
                        // SAFETY: `record` holds one signalfd_siginfo the kernel wrote; an
                        // unaligned read copies it out of the byte buffer.
                        let info = unsafe {
                            std::ptr::read_unaligned(
                                record.as_ptr().cast::<libc::signalfd_siginfo>(),
                            )
                        };
                        if info.ssi_pid > 0 {
                            pids.push(info.ssi_pid);
                        }
                    }
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => break,
                    _ => return Err(e),
                }
            }
            guard.clear_ready();
            if got {
                return Ok(pids);
            }
        }
    }
}

/// Peeks at one child that has exited, without reaping it: its pid and how it ended. `None`:
/// none has. The kernel walks the whole list of children for this: O(children).
pub fn peek() -> io::Result<Option<Dead>> {
    peek_at(libc::P_ALL, 0)
}

/// Like [`peek`], for the child `pid` only: O(1) (current kernels look the pid up directly
/// instead of walking the list).
/// `None`: it has not exited, or it is not our child.
pub fn peek_pid(pid: u32) -> io::Result<Option<Dead>> {
    peek_at(libc::P_PID, pid)
}

fn peek_at(idtype: libc::idtype_t, id: u32) -> io::Result<Option<Dead>> {
    // SAFETY: zeroed siginfo is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid siginfo pointer; WNOWAIT leaves the child as it is.
    let r = unsafe {
        libc::waitid(
            idtype,
            id,
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
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid <= 0 {
        return Ok(None);
    }
    Ok(Some(Dead {
        pid: pid as u32,
        raw_status: wait_status(info.si_code, status),
    }))
}

/// The `waitpid` status word for a `waitid` result (`si_code`, `si_status`).
fn wait_status(code: i32, status: i32) -> i32 {
    match code {
        libc::CLD_EXITED => (status & 0xff) << 8,
        libc::CLD_DUMPED => (status & 0x7f) | 0x80,
        _ => status & 0x7f,
    }
}

/// Reaps `pid`, which `peek` reported dead; the status `peek` gave is the one that counts.
pub fn reap(pid: u32) -> io::Result<()> {
    let mut status = 0;
    // SAFETY: waitpid with a valid status pointer.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_core::ExitStatus;

    #[test]
    fn waitid_results_map_to_wait_statuses() {
        let code = ExitStatus::from_wait_status(wait_status(libc::CLD_EXITED, 3));
        assert_eq!(code, ExitStatus::Code { code: 3 });
        let killed = ExitStatus::from_wait_status(wait_status(libc::CLD_KILLED, libc::SIGKILL));
        assert_eq!(
            killed,
            ExitStatus::Signal {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
        let dumped = ExitStatus::from_wait_status(wait_status(libc::CLD_DUMPED, libc::SIGSEGV));
        assert_eq!(
            dumped,
            ExitStatus::Signal {
                signal: libc::SIGSEGV,
                core_dumped: true
            }
        );
    }
}
