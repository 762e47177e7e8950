//! A leader's death: what is left of its instance goes first, then (for a quick death on a
//! port) a probe tells whether someone else holds the port, then the restart decision: at once,
//! or after a delay in yo-yo mode.
use super::Core;
use super::io::{Action, Event};
use super::policy::later;
use super::stops::{JobKind, NewJob};
use crate::controls::RestartPolicy;
use crate::status::ExitStatus;
use crate::task::{BackoffReason, Phase, TaskId, Then, Yoyo};
use std::time::{Duration, Instant};

/// Consecutive quick deaths blamed on a taken port that are forgiven (not counted towards yo-yo
/// mode); the next one counts.
const MAX_PORT_CONFLICTS: u32 = 3;

impl Core {
    pub(super) fn on_exited(&mut self, now: Instant, pid: u32, status: ExitStatus, remains: bool) {
        let Some(id) = self.by_pid.remove(&pid) else {
            return;
        };
        if self.outgoing_exited(now, id, pid, remains) {
            return;
        }
        self.record_exit(now, id, pid, status);
        let t = self.task_mut(id);
        t.pid = None;
        t.ready = false;
        let (name, generation, phase) = (t.spec.name.clone(), t.generation, t.phase);
        let uptime = t.last_exit.map_or(Duration::ZERO, |e| e.uptime);
        self.mark_dirty(now);
        match phase {
            Phase::Stopping { .. } => {
                self.emit(Event::Exited {
                    task: id,
                    name,
                    pid,
                    status,
                    uptime,
                    expected: true,
                    quiet: false,
                });
                let key = super::io::GroupKey::Instance(generation);
                self.job_leader_gone(now, key, remains);
                return;
            }
            Phase::Running => {}
            // Only running and stopping tasks have a leader in `by_pid`.
            _ => return,
        }
        // A run as long as `stable_after` ends yo-yo mode even when the death is handled before
        // the timer that would have said so.
        if self.task(id).yoyo.is_some() && uptime >= self.policy.stable_after {
            self.leave_yoyo(id, uptime);
        }
        let quiet = self.quiet(id);
        self.emit(Event::Exited {
            task: id,
            name: name.clone(),
            pid,
            status,
            uptime,
            expected: false,
            quiet,
        });
        let t = self.task_mut(id);
        t.died_at = Some(now);
        t.restarts += 1;
        self.set_task_timer(id, None);
        let group = self.instance_group(id, generation, Some(pid));
        if remains {
            // Its workers would hold the port and the files the replacement needs, and a
            // death is only blamed on a port once nothing of ours holds it: they go first.
            self.emit(Event::RemainsKilled {
                task: id,
                name: name.clone(),
                generation,
            });
            self.set_phase(
                id,
                Phase::Held {
                    then: Then::AfterDeath,
                },
            );
            self.task_mut(id).remnants += 1;
            self.start_job(
                now,
                NewJob {
                    group,
                    kind: JobKind::Remains,
                    owner: Some(id),
                    name: Some(name),
                    grace: None,
                    leader_alive: false,
                },
            );
            return;
        }
        self.actions.push_back(Action::Release { group });
        self.after_death(now, id);
    }

    /// Nothing of the dead instance is left: decide about the death.
    pub(super) fn after_death(&mut self, now: Instant, id: TaskId) {
        let t = self.task(id);
        let policy = t.spec.restart;
        let success = t.last_exit.is_some_and(|e| e.status.success());
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::Never => false,
        };
        if !restart {
            let name = t.spec.name.clone();
            self.release_port(id);
            self.set_phase(id, Phase::Stopped);
            self.emit(Event::NotRestarted {
                task: id,
                name,
                policy,
            });
            self.mark_dirty(now);
            return;
        }
        let t = self.task(id);
        let uptime = t.last_exit.map_or(Duration::ZERO, |e| e.uptime);
        let quick = uptime < self.policy.min_uptime;
        match t.port {
            Some(port) if quick => {
                let generation = t.generation;
                self.set_phase(id, Phase::Probing { stop: None });
                self.actions.push_back(Action::ProbePort {
                    task: id,
                    generation,
                    port,
                });
            }
            _ => self.judge_death(now, id, false),
        }
    }

    pub(super) fn on_port_probed(
        &mut self,
        now: Instant,
        id: TaskId,
        generation: u64,
        port: u16,
        free: bool,
    ) {
        let Some(t) = self.get(id) else { return };
        let Phase::Probing { stop } = t.phase else {
            return;
        };
        if t.generation != generation || t.port != Some(port) {
            return;
        }
        if let Some(reason) = stop {
            self.finish_stop_with(now, id, reason);
            return;
        }
        self.judge_death(now, id, !free);
    }

    /// Restart at once, or back off. `port_taken`: a quick death whose port (nothing of ours
    /// holds it any more) is held by another process: the death is blamed on the port.
    fn judge_death(&mut self, now: Instant, id: TaskId, port_taken: bool) {
        let policy = self.policy.clone();
        let port = self.release_port(id);
        let t = self.task(id);
        let uptime = t.last_exit.map_or(Duration::ZERO, |e| e.uptime);
        let name = t.spec.name.clone();
        let quick = uptime < policy.min_uptime;
        match port {
            Some(p) if quick && port_taken => {
                if let Some(a) = self.ports.as_mut() {
                    a.mark_busy(p);
                }
                let t = self.task_mut(id);
                if t.port_conflicts < MAX_PORT_CONFLICTS {
                    t.port_conflicts += 1;
                    self.emit(Event::PortConflictDeath {
                        task: id,
                        name,
                        port: p,
                    });
                    self.enqueue(now, id);
                    return;
                }
                // More conflicts in a row than a race for a port explains: the program is at
                // fault, and this death counts like any other quick death (and so do the next
                // ones, until a death that is not blamed on a port).
            }
            _ => self.task_mut(id).port_conflicts = 0,
        }
        let t = self.task_mut(id);
        let in_yoyo = t.yoyo.is_some();
        if quick || in_yoyo {
            t.quick_deaths = t.quick_deaths.saturating_add(1);
        } else {
            t.quick_deaths = 0;
        }
        let quick_deaths = t.quick_deaths;
        let yoyo_after = policy.yoyo_after.max(1);
        if quick_deaths < yoyo_after {
            // The first restart after a death is immediate: that is the point of a supervisor.
            self.enqueue(now, id);
            return;
        }
        let delay = policy
            .backoff
            .delay(quick_deaths - yoyo_after, &mut self.rng);
        if !in_yoyo {
            let t = self.task_mut(id);
            t.yoyo = Some(Yoyo { since: now });
            t.log_gate.reset();
            t.log_gate.allow(now, policy.log_every);
            self.emit(Event::YoyoEntered {
                task: id,
                name,
                quick_deaths,
                next_delay: delay,
            });
        } else if let Some(suppressed) = self.task_mut(id).log_gate.allow(now, policy.log_every) {
            self.emit(Event::YoyoContinues {
                task: id,
                name,
                quick_deaths,
                suppressed,
                next_delay: delay,
            });
        }
        self.enter_backoff(now, id, BackoffReason::Crashed, delay);
    }

    /// The stability check of a running task in yo-yo mode.
    pub(super) fn check_stable(&mut self, now: Instant, id: TaskId) {
        let stable_after = self.policy.stable_after;
        let t = self.task(id);
        if let (Some(_), Some(started)) = (t.yoyo, t.started_at) {
            let stable_for = now.saturating_duration_since(started);
            if stable_for >= stable_after {
                self.leave_yoyo(id, stable_for);
            } else {
                self.set_task_timer(id, Some(later(started, stable_after)));
            }
        }
    }

    /// Ends yo-yo mode after a stable run: counters and log rate limit start afresh, so the next
    /// death is restarted at once.
    fn leave_yoyo(&mut self, id: TaskId, stable_for: Duration) {
        let t = self.task_mut(id);
        if t.yoyo.take().is_none() {
            return;
        }
        t.quick_deaths = 0;
        t.port_conflicts = 0;
        t.log_gate.reset();
        let name = t.spec.name.clone();
        self.emit(Event::YoyoLeft {
            task: id,
            name,
            stable_for,
        });
    }
}
