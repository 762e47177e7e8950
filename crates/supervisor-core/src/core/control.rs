//! Control requests: add, start, stop, restart, remove, shutdown; and why one is refused.
use super::Core;
use super::io::{Event, GroupKey};
use super::stops::JobKind;
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
        let task = Task::new(Arc::new(spec));
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
        if blocking > 0 {
            self.set_phase(id, Phase::Held { then: Then::Start });
        } else {
            self.enqueue(now, id);
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
    fn pending_stop(&self, id: TaskId) -> Option<StopReason> {
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
