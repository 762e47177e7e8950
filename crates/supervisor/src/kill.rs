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
use procio::pidfd::delivered;
pub use procio::{Pinned, stop_pinned};
use std::io;

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

/// True when process group `pgid` still has a member.
pub fn group_exists(pgid: u32) -> bool {
    signal_group(pgid, 0).unwrap_or(true)
}
