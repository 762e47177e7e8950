//! Deaths: from the pids the SIGCHLDs name to the reap.
use super::Daemon;
use crate::reaper;
use std::time::Instant;
use supervisor_core::{ExitStatus, Input, TaskState};

impl Daemon {
    /// Handles every child that has died. `hints`: pids named by the SIGCHLDs just read, looked
    /// at first and directly (a scan of 10 000 children for the dead one costs milliseconds);
    /// then a scan finds the deaths whose signals coalesced, and shows none is left.
    pub(super) fn reap_all(&mut self, hints: &[u32]) {
        let mut yielded = false;
        for &pid in hints {
            match reaper::peek_pid(pid) {
                Ok(Some(dead)) => {
                    if !self.on_dead(dead, &mut yielded) {
                        return;
                    }
                }
                Ok(None) => {}
                // ECHILD: already reaped, or not ours (the pid was only a hint).
                Err(_) => {}
            }
        }
        loop {
            let dead = match reaper::peek() {
                Ok(Some(dead)) => dead,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "waitid failed");
                    return;
                }
            };
            if !self.on_dead(dead, &mut yielded) {
                return;
            }
        }
    }

    /// One dead, unreaped child. The shell reports what it sees (is anything of the leader's
    /// instance left?), the core decides, and what it asked that touches processes happens at
    /// once: killing the remains, the port probe, the replacement's spawn. Then the child is
    /// reaped. False when it could not be (the caller stops: peeking again would find it again).
    fn on_dead(&mut self, dead: reaper::Dead, yielded: &mut bool) -> bool {
        let pid = dead.pid;
        if crate::probes::Registry::record(pid, dead.raw_status) {
            // An exec probe: its status went to the probe thread.
            return reaper::reap(pid).is_ok();
        }
        let now = Instant::now();
        let remains = match self.core.task_by_pid(pid).and_then(|id| self.core.view(id)) {
            Some(v) if matches!(v.state, TaskState::Running | TaskState::Stopping) => {
                // The unreaped leader still pins its group id for the fallback's check.
                self.tracker.remains(&v.spec.name, v.generation, pid)
            }
            _ => false,
        };
        self.start_ticks.get_mut().remove(&pid);
        self.core.handle(
            now,
            Input::Exited {
                pid,
                status: ExitStatus::from_wait_status(dead.raw_status),
                remains,
            },
        );
        if self.process_actions_now() && !*yielded {
            // The new process most likely sits on this CPU's run queue (we were blocked in
            // its vfork), and it would wait there for all the bookkeeping below unless the
            // CPU is handed over now. Once per batch: in a storm the other CPUs take over.
            // SAFETY: sched_yield has no arguments and cannot fail on Linux.
            unsafe { libc::sched_yield() };
            *yielded = true;
        }
        if let Err(e) = reaper::reap(pid) {
            tracing::error!(pid, error = %e, "waitpid failed");
            return false;
        }
        self.tracker.reaped(pid);
        true
    }
}
