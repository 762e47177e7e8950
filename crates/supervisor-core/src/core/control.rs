//! Control requests: add, start, stop, restart, remove, shutdown; and why one is refused.
use super::Core;
use super::io::{Event, GroupKey};
use super::stops::{JobKind, NewJob};
use crate::spec::TaskSpec;
use crate::task::{Phase, StopReason, Task, TaskId, Then};
use std::sync::Arc;
use std::time::Instant;

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no task named {0:?}")]
    NotFound(String),
    #[error("task {name:?} is {state}: {what}")]
    Conflict {
        name: String,
        state: &'static str,
        what: &'static str,
    },
    #[error("a task named {0:?} already exists")]
    Exists(String),
    #[error("task {name:?} uses {{{{port}}}} but the supervisor has no --port-range")]
    NoPortRange { name: String },
    #[error("the supervisor is shutting down")]
    ShuttingDown,
}

impl Core {
    /// Adds a validated task and starts it (once leftovers of a task of that name, which
    /// recovery may be stopping, are gone).
    pub fn add_task(&mut self, now: Instant, spec: TaskSpec) -> Result<TaskId, ControlError> {
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        if self.by_name.contains_key(&spec.name) {
            return Err(ControlError::Exists(spec.name));
        }
        if spec.uses_port() && self.ports.is_none() {
            return Err(ControlError::NoPortRange { name: spec.name });
        }
        let name = spec.name.clone();
        let autostart = spec.autostart;
        let uid = match self.known_uids.remove(&name) {
            Some(u) => u,
            None => format!("{:016x}", self.rng.next_u64()),
        };
        let task = Task::new(uid, Arc::new(spec));
        let id = match self.free_ids.pop() {
            Some(i) => {
                self.tasks[i] = Some(task);
                TaskId(i)
            }
            None => {
                self.tasks.push(Some(task));
                TaskId(self.tasks.len() - 1)
            }
        };
        self.by_name.insert(name.clone(), id);
        self.emit(Event::Added {
            task: id,
            name: name.clone(),
        });
        // Leftovers of this name (recovery's, or the remains of a removed task's instance)
        // go first.
        let mut blocking = 0;
        for job in self.jobs.values_mut() {
            let ours = job.owner.is_none()
                && matches!(job.kind, JobKind::Leftover | JobKind::Remains)
                && job.name.as_deref() == Some(name.as_str());
            if ours {
                job.owner = Some(id);
                blocking += 1;
            }
        }
        self.task_mut(id).remnants = blocking;
        match (blocking > 0, autostart) {
            (true, true) => self.set_phase(id, Phase::Held { then: Then::Start }),
            (true, false) => self.set_phase(
                id,
                Phase::Held {
                    then: Then::Stop(StopReason::Requested),
                },
            ),
            (false, true) => self.enqueue(now, id),
            (false, false) => self.set_phase(id, Phase::Stopped),
        }
        self.mark_dirty(now);
        Ok(id)
    }

    /// Starts a stopped task.
    pub fn start(&mut self, now: Instant, name: &str) -> Result<(), ControlError> {
        let id = self.lookup(name)?;
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        match self.task(id).phase {
            Phase::Stopped | Phase::Backoff { .. } => {
                self.task_mut(id).spawn_failures = 0;
                self.enqueue(now, id);
                Ok(())
            }
            Phase::Held {
                then: Then::Stop(StopReason::Requested),
            } => {
                self.set_phase(id, Phase::Held { then: Then::Start });
                Ok(())
            }
            _ => Err(self.conflict(id, "only a stopped or waiting task can be started")),
        }
    }

    /// Stops a task and keeps it down.
    pub fn stop(&mut self, now: Instant, name: &str) -> Result<(), ControlError> {
        let id = self.lookup(name)?;
        if matches!(self.task(id).phase, Phase::Stopped) {
            return Err(self.conflict(id, "it is already stopped"));
        }
        match self.pending_stop(id) {
            Some(StopReason::Requested) => Err(self.conflict(id, "it is already stopping")),
            Some(StopReason::Remove) => Err(self.conflict(id, "it is being removed")),
            _ => {
                self.begin_stop(now, id, StopReason::Requested);
                Ok(())
            }
        }
    }

    /// Stops a task (if running) and starts it again.
    pub fn restart(&mut self, now: Instant, name: &str) -> Result<(), ControlError> {
        let id = self.lookup(name)?;
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        if self.pending_stop(id) == Some(StopReason::Remove) {
            return Err(self.conflict(id, "it is being removed"));
        }
        match self.task(id).phase {
            Phase::Running
            | Phase::Stopping { .. }
            | Phase::Spawning { stop: Some(_) }
            | Phase::Probing { stop: Some(_) } => self.begin_stop(now, id, StopReason::Restart),
            // About to start afresh anyway.
            Phase::Queued | Phase::Spawning { stop: None } => {}
            // Restarts once what holds it is gone, whatever it meant to do after.
            Phase::Held { .. } => self.set_phase(id, Phase::Held { then: Then::Start }),
            Phase::Probing { stop: None } | Phase::Stopped | Phase::Backoff { .. } => {
                if matches!(self.task(id).phase, Phase::Probing { .. }) {
                    self.release_port(id);
                    // The probe's answer is now stale: Probing → Queued drops it.
                }
                let t = self.task_mut(id);
                t.spawn_failures = 0;
                t.restarts += 1;
                self.enqueue(now, id);
            }
        }
        Ok(())
    }

    /// Stops a task and forgets it.
    pub fn remove(&mut self, now: Instant, name: &str) -> Result<(), ControlError> {
        let id = self.lookup(name)?;
        self.begin_stop(now, id, StopReason::Remove);
        Ok(())
    }

    /// Stops every task (TERM, grace, KILL; or KILL at once when `force`), and then whatever
    /// the final sweep finds. Nothing is started from now on. [`Core::is_finished`] tells when
    /// all of it is down.
    pub fn shutdown(&mut self, now: Instant, force: bool) {
        self.shutting_down = true;
        self.force |= force;
        self.spawn_queue.clear();
        let ids: Vec<TaskId> = self.ids().collect();
        for id in ids {
            match self.pending_stop(id) {
                // Already down: nothing to stop, nothing to report.
                None if matches!(self.task(id).phase, Phase::Stopped) => {}
                None => self.begin_stop(now, id, StopReason::Shutdown),
                // A remove stays a remove, a stop stays a stop; a restart now ends in a stop.
                Some(StopReason::Restart) => self.begin_stop(now, id, StopReason::Shutdown),
                Some(_) => {}
            }
        }
        if self.force {
            let keys: Vec<GroupKey> = self.jobs.keys().copied().collect();
            for key in keys {
                self.escalate(now, key);
            }
        }
        self.mark_dirty(now);
        self.check_finished();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The stop under way (or waiting for an answer, or for what holds the task), if any.
    pub(super) fn pending_stop(&self, id: TaskId) -> Option<StopReason> {
        match self.task(id).phase {
            Phase::Stopping { reason }
            | Phase::Spawning { stop: Some(reason) }
            | Phase::Probing { stop: Some(reason) }
            | Phase::Held {
                then: Then::Stop(reason),
            } => Some(reason),
            _ => None,
        }
    }

    fn lookup(&self, name: &str) -> Result<TaskId, ControlError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| ControlError::NotFound(name.to_string()))
    }

    fn conflict(&self, id: TaskId, what: &'static str) -> ControlError {
        let t = self.task(id);
        ControlError::Conflict {
            name: t.spec.name.clone(),
            state: t.state().as_str(),
            what,
        }
    }
}

/// A task's own stop: from the request to its instance's stop job, and back when it is done.
impl Core {
    /// Stops a task's instance (or records the stop, when there is nothing to stop yet).
    pub(super) fn begin_stop(&mut self, now: Instant, id: TaskId, reason: StopReason) {
        self.stop_outgoing(now, id);
        let t = self.task(id);
        match t.phase {
            Phase::Running => {
                // A running task always has a pid; without one there is nothing to signal.
                let Some(pid) = t.pid else {
                    self.finish_stop_with(now, id, reason);
                    return;
                };
                let name = t.spec.name.clone();
                let grace = Some(t.spec.stop_timeout.unwrap_or(self.policy.stop_timeout));
                let group = self.instance_group(id, t.generation, Some(pid));
                self.set_phase(id, Phase::Stopping { reason });
                self.set_task_timer(id, None);
                self.emit(Event::Stopping {
                    task: id,
                    name: name.clone(),
                    pid,
                    reason,
                });
                self.start_job(
                    now,
                    NewJob {
                        group,
                        kind: JobKind::Instance,
                        owner: Some(id),
                        name: Some(name),
                        grace,
                        leader_alive: true,
                    },
                );
            }
            Phase::Stopping { reason: r } => {
                if r != StopReason::Remove {
                    self.set_phase(id, Phase::Stopping { reason });
                }
                if self.force {
                    let key = self.instance_key(id);
                    self.escalate(now, key);
                }
            }
            Phase::Spawning { stop } => {
                // The process may be starting right now; stop it once the answer arrives.
                let stop = Some(keep_remove(stop, reason));
                self.set_phase(id, Phase::Spawning { stop });
            }
            Phase::Probing { stop } => {
                let stop = Some(keep_remove(stop, reason));
                self.set_phase(id, Phase::Probing { stop });
            }
            Phase::Held { then } => {
                let old = match then {
                    Then::Stop(r) => Some(r),
                    _ => None,
                };
                let then = Then::Stop(keep_remove(old, reason));
                self.set_phase(id, Phase::Held { then });
                if self.force {
                    let keys: Vec<GroupKey> = self
                        .jobs
                        .iter()
                        .filter(|(_, j)| j.owner == Some(id))
                        .map(|(k, _)| *k)
                        .collect();
                    for k in keys {
                        self.escalate(now, k);
                    }
                }
            }
            Phase::Queued | Phase::Backoff { .. } | Phase::Stopped => {
                self.finish_stop_with(now, id, reason)
            }
        }
    }

    fn instance_key(&self, id: TaskId) -> GroupKey {
        GroupKey::Instance(self.task(id).generation)
    }

    pub(super) fn finish_stop(&mut self, now: Instant, id: TaskId) {
        let Some(Phase::Stopping { reason }) = self.get(id).map(|t| t.phase) else {
            return;
        };
        self.finish_stop_with(now, id, reason);
    }

    pub(super) fn finish_stop_with(&mut self, now: Instant, id: TaskId, reason: StopReason) {
        if reason != StopReason::Remove {
            let t = self.task_mut(id);
            if let Some(spec) = t.next_spec.take() {
                t.spec = spec;
                t.quick_deaths = 0;
                t.yoyo = None;
            }
        }
        self.release_port(id);
        self.set_task_timer(id, None);
        self.forget_leader(id);
        self.set_phase(id, Phase::Stopped);
        let name = self.task(id).spec.name.clone();
        self.mark_dirty(now);
        match reason {
            StopReason::Remove => self.remove_slot(id, name),
            StopReason::Restart if !self.shutting_down => {
                self.emit(Event::Stopped { task: id, name });
                let t = self.task_mut(id);
                t.restarts += 1;
                t.spawn_failures = 0;
                self.enqueue(now, id);
            }
            _ => self.emit(Event::Stopped { task: id, name }),
        }
        self.check_finished();
    }

    /// Forgets a removed task; what still blocks it goes on as a plain leftover.
    fn remove_slot(&mut self, id: TaskId, name: String) {
        debug_assert!(super::transitions::allowed(
            Some(self.task(id).phase.kind()),
            None
        ));
        for job in self.jobs.values_mut().filter(|j| j.owner == Some(id)) {
            job.owner = None;
        }
        self.tasks[id.0] = None;
        self.by_name.remove(&name);
        self.free_ids.push(id.0);
        self.set_task_timer(id, None);
        self.emit(Event::Removed { task: id, name });
    }
}

/// A remove asked earlier stays a remove; anything else takes the latest reason.
fn keep_remove(old: Option<StopReason>, new: StopReason) -> StopReason {
    match old {
        Some(StopReason::Remove) => StopReason::Remove,
        _ => new,
    }
}
