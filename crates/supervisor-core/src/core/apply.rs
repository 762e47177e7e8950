//! Apply: converge on a desired task set, leaving alone what did not change.
//!
//! For every task of the desired set, by name:
//! - unknown: it is **added** (and starts unless `autostart` is false);
//! - being removed: the removal becomes a replacement; the task is **added** back and starts as
//!   soon as its old instance is gone (a name being removed can be re-added at once);
//! - the same spec as it has (or is about to get): **unchanged**, not touched at all;
//! - another spec: **replaced**. A running instance is stopped (its own stop signal and
//!   timeout) and the new spec starts once its group is gone (stop-first); a task that is not
//!   running takes the new spec at once (a waiting one starts again now: the change may be the
//!   fix). A task stopped on request stays stopped, with the new spec.
//!
//! For a whole set (`PUT /tasks`), every other task is **removed**. The plan is computed
//! before anything changes, so a refused apply changes nothing, and `plan` alone is the dry run.
use super::ControlError;
use super::Core;
use crate::spec::TaskSpec;
use crate::task::{Phase, StopReason, TaskId, Then};
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// What an apply does (or did), by task name, and the revision it produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub replaced: Vec<String>,
    pub unchanged: Vec<String>,
    /// The core's revision after the apply (for a dry run: now).
    pub revision: u64,
}

impl Plan {
    /// True when applying it would change nothing.
    pub fn is_noop(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.replaced.is_empty()
    }
}

enum Step {
    Add(TaskSpec),
    Readd(TaskId, TaskSpec),
    Replace(TaskId, TaskSpec),
    Remove(TaskId),
}

impl Core {
    /// What [`Core::apply`] would do with `desired`, without doing it. `whole`: tasks not in
    /// `desired` are to be removed.
    pub fn plan(&self, desired: &[TaskSpec], whole: bool) -> Result<Plan, ControlError> {
        let (plan, _) = self.steps(desired.to_vec(), whole)?;
        Ok(plan)
    }

    /// Converges on `desired` (see the module doc); `whole`: remove every task not in it.
    pub fn apply(
        &mut self,
        now: Instant,
        desired: Vec<TaskSpec>,
        whole: bool,
    ) -> Result<Plan, ControlError> {
        let (mut plan, steps) = self.steps(desired, whole)?;
        for step in steps {
            match step {
                Step::Add(spec) => {
                    self.add_task(now, spec)?;
                }
                Step::Readd(id, spec) => self.readd(now, id, spec),
                Step::Replace(id, spec) => self.replace(now, id, spec),
                Step::Remove(id) => {
                    let name = self.task(id).spec.name.clone();
                    self.remove(now, &name)?;
                }
            }
        }
        self.bump();
        plan.revision = self.revision;
        Ok(plan)
    }

    fn steps(
        &self,
        desired: Vec<TaskSpec>,
        whole: bool,
    ) -> Result<(Plan, Vec<Step>), ControlError> {
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        let mut plan = Plan {
            revision: self.revision,
            ..Plan::default()
        };
        let mut steps = Vec::new();
        let mut wanted = HashSet::new();
        for spec in desired {
            if spec.uses_port() && self.ports.is_none() {
                return Err(ControlError::NoPortRange { name: spec.name });
            }
            if !wanted.insert(spec.name.clone()) {
                return Err(ControlError::Exists(spec.name));
            }
            match self.by_name.get(&spec.name).copied() {
                None => {
                    plan.added.push(spec.name.clone());
                    steps.push(Step::Add(spec));
                }
                Some(id) if self.pending_stop(id) == Some(StopReason::Remove) => {
                    plan.added.push(spec.name.clone());
                    steps.push(Step::Readd(id, spec));
                }
                Some(id) if *self.effective_spec(id) == spec => {
                    plan.unchanged.push(spec.name);
                }
                Some(id) => {
                    plan.replaced.push(spec.name.clone());
                    steps.push(Step::Replace(id, spec));
                }
            }
        }
        if whole {
            for id in self.ids() {
                let t = self.task(id);
                if !wanted.contains(&t.spec.name)
                    && self.pending_stop(id) != Some(StopReason::Remove)
                {
                    plan.removed.push(t.spec.name.clone());
                    steps.push(Step::Remove(id));
                }
            }
        }
        plan.added.sort();
        plan.removed.sort();
        plan.replaced.sort();
        plan.unchanged.sort();
        Ok((plan, steps))
    }

    /// The spec a task runs with from its next start on.
    fn effective_spec(&self, id: TaskId) -> &TaskSpec {
        let t = self.task(id);
        t.next_spec.as_deref().unwrap_or(&t.spec)
    }

    /// A task being removed is wanted again: its stop ends in a start (with `spec`).
    fn readd(&mut self, now: Instant, id: TaskId, spec: TaskSpec) {
        let t = self.task_mut(id);
        t.next_spec = (*t.spec != spec).then(|| Arc::new(spec));
        let restart = Some(StopReason::Restart);
        let phase = match t.phase {
            Phase::Stopping { .. } => Phase::Stopping {
                reason: StopReason::Restart,
            },
            Phase::Spawning { .. } => Phase::Spawning { stop: restart },
            Phase::Probing { .. } => Phase::Probing { stop: restart },
            Phase::Held { .. } => Phase::Held {
                then: Then::Stop(StopReason::Restart),
            },
            other => other,
        };
        self.set_phase(id, phase);
        self.mark_dirty(now);
    }

    /// A task gets another spec (see the module doc).
    fn replace(&mut self, now: Instant, id: TaskId, spec: TaskSpec) {
        let name = spec.name.clone();
        let spec = Arc::new(spec);
        self.emit(super::io::Event::Replacing {
            task: id,
            name: name.clone(),
        });
        match self.task(id).phase {
            Phase::Stopped => self.task_mut(id).spec = spec,
            Phase::Queued => self.task_mut(id).spec = spec,
            Phase::Backoff { .. } => {
                let t = self.task_mut(id);
                t.spec = spec;
                t.spawn_failures = 0;
                t.quick_deaths = 0;
                t.yoyo = None;
                self.set_task_timer(id, None);
                self.enqueue(now, id);
            }
            Phase::Running
                if spec.replace == crate::controls::ReplaceMode::StartFirst
                    && !self.shutting_down =>
            {
                self.start_first(now, id, spec)
            }
            _ => {
                self.task_mut(id).next_spec = Some(spec);
                if self.pending_stop(id) != Some(StopReason::Requested) {
                    self.begin_stop(now, id, StopReason::Restart);
                }
            }
        }
        self.mark_dirty(now);
    }
}
