//! One action of the core, carried out, and the facts it produced fed back at once.
use super::Daemon;
use crate::recovery;
use crate::{spawn, tracking};
use std::os::fd::AsRawFd;
use std::time::Instant;
use supervisor_core::{Action, Input};

impl Daemon {
    pub(super) fn execute(&mut self, action: Action) {
        match action {
            Action::Spawn {
                task,
                generation,
                spec,
                argv,
                port,
            } => {
                if let Some(p) = port {
                    if !spawn::port_is_free(p) {
                        self.core.handle(
                            Instant::now(),
                            Input::PortBusy {
                                task,
                                generation,
                                port: p,
                            },
                        );
                        return;
                    }
                }
                let prepared = self.tracker.prepare(&spec.name, generation).and_then(|cg| {
                    let limited =
                        self.tracker
                            .prepare_limits(&spec.name, generation, &spec.limits)?;
                    Ok((cg, limited))
                });
                let started = match prepared {
                    Ok((cgroup, limited)) => {
                        let also: Vec<_> = limited.iter().map(AsRawFd::as_raw_fd).collect();
                        spawn::spawn(
                            &spec,
                            &argv,
                            port,
                            &self.identity.instance,
                            generation,
                            cgroup.as_ref().map(tracking::CgroupFd::placement),
                            &also,
                        )
                        .map_err(|e| e.to_string())
                    }
                    Err(e) => Err(format!("cannot make the task's cgroup: {e}")),
                };
                let input = match started {
                    Ok(pid) => {
                        self.tracker.spawned(pid, generation);
                        // The start time is read when a checkpoint needs it, not here.
                        Input::Spawned {
                            task,
                            generation,
                            pid,
                            start_ticks: None,
                        }
                    }
                    Err(error) => Input::SpawnFailed {
                        task,
                        generation,
                        error,
                    },
                };
                self.core.handle(Instant::now(), input);
            }
            Action::Signal { group, name, sig } => {
                if let Err(e) = self.tracker.signal(&group, sig) {
                    tracing::warn!(task = %name, group = ?group, error = %e, "cannot signal the group");
                }
            }
            Action::CheckGroup { group } => {
                let empty = self.tracker.is_empty(&group);
                self.core.handle(
                    Instant::now(),
                    Input::GroupStatus {
                        group: group.key(),
                        empty,
                    },
                );
            }
            Action::ProbePort {
                task,
                generation,
                port,
            } => {
                let free = spawn::port_is_free(port);
                self.core.handle(
                    Instant::now(),
                    Input::PortProbed {
                        task,
                        generation,
                        port,
                        free,
                    },
                );
            }
            Action::Release { group } => self.tracker.release(&group),
            Action::Sweep => {
                let found = recovery::sweep(&mut self.tracker);
                self.core.handle(Instant::now(), Input::Swept { found });
            }
            Action::Checkpoint => self.checkpoint(),
            Action::Event(e) => self.on_event(&e),
        }
    }

    /// Carries out, right now, the actions that touch processes (spawn, signal, check, probe,
    /// and release, so that a restart reuses the cgroup its dead instance just left); the rest
    /// (log lines, metrics, events, checkpoints) waits for the end of the loop turn, in order.
    /// True when it spawned.
    pub(super) fn process_actions_now(&mut self) -> bool {
        let mut spawned = false;
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Spawn { .. } => {
                    self.execute(action);
                    spawned = true;
                }
                Action::Signal { .. }
                | Action::CheckGroup { .. }
                | Action::ProbePort { .. }
                | Action::Release { .. } => self.execute(action),
                other => self.deferred.push_back(other),
            }
        }
        spawned
    }
}
