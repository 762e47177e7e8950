//! Readiness, health and what waits for them: `depends_on` (a task starts once the tasks it
//! names are ready) and start-first replacement (the old instance is stopped once the new one
//! is ready). The shell probes; the core decides.
use super::Core;
use super::io::{Event, Group, GroupKey};
use super::stops::{JobKind, NewJob};
use crate::checks::CheckKind;
use crate::task::{Outgoing, Phase, StopReason, TaskId};
use std::time::Instant;

/// A probe the shell should run now or soon: the ready check of a running instance that is
/// not ready yet, or the health check of a ready one.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckTarget {
    pub task: TaskId,
    pub generation: u64,
    pub name: String,
    pub port: Option<u16>,
    pub pid: u32,
    pub kind: CheckKind,
    pub check: crate::checks::Check,
}

impl Core {
    /// Every probe that is due by kind (the shell keeps the intervals).
    pub fn check_targets(&self) -> Vec<CheckTarget> {
        let mut out = Vec::new();
        for id in self.ids() {
            let t = self.task(id);
            if !matches!(t.phase, Phase::Running) {
                continue;
            }
            let Some(pid) = t.pid else { continue };
            let (kind, check) = match (&t.spec.ready, &t.spec.health, t.ready) {
                (Some(c), _, false) => (CheckKind::Ready, c),
                (_, Some(c), true) => (CheckKind::Health, c),
                _ => continue,
            };
            out.push(CheckTarget {
                task: id,
                generation: t.generation,
                name: t.spec.name.clone(),
                port: t.port,
                pid,
                kind,
                check: check.clone(),
            });
        }
        out
    }

    pub(super) fn on_checked(
        &mut self,
        now: Instant,
        id: TaskId,
        generation: u64,
        kind: CheckKind,
        ok: bool,
        detail: String,
    ) {
        let Some(t) = self.get(id) else { return };
        if t.generation != generation || !matches!(t.phase, Phase::Running) {
            return;
        }
        match kind {
            CheckKind::Ready => {
                if ok && !t.ready {
                    self.became_ready(now, id);
                }
            }
            CheckKind::Health => {
                let Some(limit) = t.spec.health.as_ref().map(|c| c.failures) else {
                    return;
                };
                let t = self.task_mut(id);
                if ok {
                    t.health_failures = 0;
                    return;
                }
                t.health_failures = t.health_failures.saturating_add(1);
                let failures = t.health_failures;
                let restart = failures >= limit;
                let name = t.spec.name.clone();
                t.last_error = Some(format!("health check failed: {detail}"));
                self.emit(Event::CheckFailed {
                    task: id,
                    name,
                    kind,
                    failures,
                    detail,
                    restart,
                });
                self.mark_dirty(now);
                if restart {
                    self.begin_stop(now, id, StopReason::Restart);
                }
            }
        }
    }

    /// The running instance of `id` is ready: say so, let go of a start-first replacement's
    /// old instance, and start what waited for it.
    pub(super) fn became_ready(&mut self, now: Instant, id: TaskId) {
        let t = self.task_mut(id);
        t.ready = true;
        let (name, generation) = (t.spec.name.clone(), t.generation);
        self.emit(Event::Ready {
            task: id,
            name,
            generation,
        });
        self.mark_dirty(now);
        self.stop_outgoing(now, id);
        if self.waiting_deps.is_empty() {
            return;
        }
        let waiting: Vec<TaskId> = self.waiting_deps.iter().copied().collect();
        let mut woke = false;
        for w in waiting {
            let still_queued = self
                .get(w)
                .is_some_and(|t| matches!(t.phase, Phase::Queued));
            if !still_queued {
                self.waiting_deps.remove(&w);
            } else if self.unready_deps(w).is_empty() {
                self.waiting_deps.remove(&w);
                self.spawn_queue.push_back(w);
                woke = true;
            }
        }
        if woke {
            self.pump_spawns(now);
        }
    }

    /// The names in `depends_on` of `id` that are not running and ready.
    pub(super) fn unready_deps(&self, id: TaskId) -> Vec<String> {
        let t = self.task(id);
        t.spec
            .depends_on
            .iter()
            .filter(|d| {
                !self
                    .by_name
                    .get(d.as_str())
                    .and_then(|dep| self.get(*dep))
                    .is_some_and(|dep| dep.ready && matches!(dep.phase, Phase::Running))
            })
            .cloned()
            .collect()
    }

    /// Start-first: the running instance becomes the outgoing one, and the task starts again
    /// with `spec` (on another port) while it keeps running.
    pub(super) fn start_first(
        &mut self,
        now: Instant,
        id: TaskId,
        spec: std::sync::Arc<crate::spec::TaskSpec>,
    ) {
        // An older outgoing instance (a replacement replaced again) goes now.
        self.stop_outgoing(now, id);
        let t = self.task_mut(id);
        let Some(pid) = t.pid.take() else { return };
        let old = std::mem::replace(&mut t.spec, spec);
        t.outgoing = Some(Outgoing {
            pid,
            generation: t.generation,
            port: t.port.take(),
            spec: old,
        });
        t.ready = false;
        t.health_failures = 0;
        t.start_ticks = None;
        self.set_task_timer(id, None);
        self.enqueue(now, id);
    }

    /// Stops the outgoing instance of a start-first replacement, if there is one. Its port is
    /// given back once its group is gone.
    pub(super) fn stop_outgoing(&mut self, now: Instant, id: TaskId) {
        let Some(o) = self.get_mut_task(id).and_then(|t| t.outgoing.take()) else {
            return;
        };
        let name = o.spec.name.clone();
        let grace = Some(o.spec.stop_timeout.unwrap_or(self.policy.stop_timeout));
        self.emit(Event::Stopping {
            task: id,
            name: name.clone(),
            pid: o.pid,
            reason: StopReason::Restart,
        });
        let key = GroupKey::Instance(o.generation);
        self.start_job(
            now,
            NewJob {
                group: Group::Instance {
                    name: name.clone(),
                    generation: o.generation,
                    leader: Some(o.pid),
                },
                kind: JobKind::Outgoing,
                owner: Some(id),
                name: Some(name),
                grace,
                leader_alive: self.by_pid.contains_key(&o.pid),
            },
        );
        if let Some(job) = self.jobs.get_mut(&key) {
            job.port = o.port;
        } else if let (Some(p), Some(a)) = (o.port, self.ports.as_mut()) {
            a.release(p);
        }
    }

    /// `pid` was the outgoing instance of `id`, and it died: true when handled here.
    pub(super) fn outgoing_exited(
        &mut self,
        now: Instant,
        id: TaskId,
        pid: u32,
        remains: bool,
    ) -> bool {
        let gen_of_job = self
            .get(id)
            .and_then(|t| t.outgoing.as_ref())
            .filter(|o| o.pid == pid)
            .map(|o| o.generation);
        if let Some(generation) = gen_of_job {
            // It died on its own before the new instance was ready: its remains go, its port
            // comes back; the new instance carries on.
            self.stop_outgoing(now, id);
            let key = GroupKey::Instance(generation);
            self.job_leader_gone(now, key, remains);
            return true;
        }
        let key = self
            .jobs
            .iter()
            .find(|(_, j)| {
                j.kind == JobKind::Outgoing
                    && j.owner == Some(id)
                    && matches!(j.group, Group::Instance { leader: Some(l), .. } if l == pid)
            })
            .map(|(k, _)| *k);
        match key {
            Some(k) => {
                self.job_leader_gone(now, k, remains);
                true
            }
            None => false,
        }
    }
}
