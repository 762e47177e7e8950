//! Stop jobs: the one sub-machine that empties a group of processes.
//!
//! ```text
//!  TERM (+CONT) ── grace ──► KILL ── kill timeout ──► give up (StopFailed)
//!       │                      │ (KILL again at every check that finds survivors)
//!       └──── group empty ─────┴──► done: Release, then what the job's kind says
//! ```
//!
//! A group with a live leader is not polled: the leader's exit (`Exited`, with `remains`) says
//! when to look. One without (a dead instance's remains, a leftover, a stray) is checked at
//! 1 ms, 2 ms, 4 ms ... up to `group_poll` apart, so that remains killed with SIGKILL are seen
//! gone within a millisecond or two, and a long stop costs one check per `group_poll`.
use super::Core;
use super::io::{Action, Event, Found, Group, GroupKey, Sig};
use super::policy::later;
use super::timers::TimerKey;
use super::{Recovery, Sweep};
use crate::task::{Phase, TaskId, Then};
use std::time::{Duration, Instant};

/// The first gap between checks of a group without a live leader.
const FIRST_POLL: Duration = Duration::from_millis(1);

/// What a stop job empties, and so what follows when it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobKind {
    /// The current instance of its task, which is `Stopping`.
    Instance,
    /// What a dead leader left behind; its task is `Held` until it is gone.
    Remains,
    /// Something recovery found; it holds its task's next start, if that task exists.
    Leftover,
    /// Something the final sweep found.
    Stray,
    /// The old instance of a start-first replacement, stopped once the new one is ready.
    Outgoing,
}

#[derive(Debug, Clone)]
pub(super) struct StopJob {
    pub group: Group,
    pub kind: JobKind,
    /// The task that waits for this job (`Instance`, `Remains`, and `Leftover` when a task of
    /// its name exists).
    pub owner: Option<TaskId>,
    /// For messages: the task's name, when known.
    pub name: Option<String>,
    pub started: Instant,
    /// Until `killed`: the end of the grace period; then: when the core stops waiting.
    pub deadline: Instant,
    pub killed: bool,
    /// When the last KILL went out: a check at that same moment cannot see its effect yet.
    pub killed_at: Option<Instant>,
    /// A leader whose exit the shell will report is still alive: no polling until then.
    pub leader_alive: bool,
    /// The gap before the next check, while polling.
    pub poll_gap: Duration,
    /// A port the group's processes held, given back once they are gone (`Outgoing`).
    pub port: Option<u16>,
}

/// What a new stop job is about.
pub(super) struct NewJob {
    pub group: Group,
    pub kind: JobKind,
    pub owner: Option<TaskId>,
    pub name: Option<String>,
    /// TERM and this long, or with `None` KILL at once.
    pub grace: Option<Duration>,
    /// A leader whose exit the shell will report is alive.
    pub leader_alive: bool,
}

impl Core {
    /// Starts emptying a group: TERM and a grace period, or KILL at once.
    pub(super) fn start_job(&mut self, now: Instant, new: NewJob) {
        let NewJob {
            group,
            kind,
            owner,
            name,
            grace,
            leader_alive,
        } = new;
        let key = group.key();
        let grace = if self.force { None } else { grace };
        let job = StopJob {
            group: group.clone(),
            kind,
            owner,
            name: name.clone(),
            started: now,
            deadline: later(now, grace.unwrap_or(self.policy.kill_timeout)),
            killed: grace.is_none(),
            killed_at: grace.is_none().then_some(now),
            leader_alive,
            poll_gap: FIRST_POLL,
            port: None,
        };
        self.jobs.insert(key, job);
        let sig = match (grace, kind) {
            (None, _) => Sig::Kill,
            // A task's own instance is asked the way its spec says.
            (Some(_), JobKind::Instance | JobKind::Outgoing) => owner
                .and_then(|id| self.get(id))
                .and_then(|t| t.spec.stop_signal)
                .map_or(Sig::Term, Sig::Other),
            (Some(_), _) => Sig::Term,
        };
        self.actions.push_back(Action::Signal {
            group: group.clone(),
            name: name.unwrap_or_default(),
            sig,
        });
        if leader_alive {
            let deadline = self.jobs[&key].deadline;
            self.schedule_at(key, deadline);
        } else {
            self.actions.push_back(Action::CheckGroup { group });
            self.poll_later(now, key);
        }
    }

    pub(super) fn on_job_timer(&mut self, now: Instant, key: GroupKey) {
        let Some(job) = self.jobs.get(&key) else {
            return;
        };
        if now >= job.deadline {
            if !job.killed {
                self.escalate(now, key);
            } else {
                self.job_done(now, key, true);
            }
            return;
        }
        if !job.leader_alive {
            let group = job.group.clone();
            self.actions.push_back(Action::CheckGroup { group });
            self.poll_later(now, key);
        } else {
            let deadline = job.deadline;
            self.schedule_at(key, deadline);
        }
    }

    fn schedule_at(&mut self, key: GroupKey, at: Instant) {
        self.timers.set(TimerKey::Job(key), Some(at));
    }

    /// The next check of a polled job: the gap doubles up to `group_poll`.
    fn poll_later(&mut self, now: Instant, key: GroupKey) {
        let max = self.policy.group_poll.max(FIRST_POLL);
        let Some(job) = self.jobs.get_mut(&key) else {
            return;
        };
        let at = later(now, job.poll_gap).min(job.deadline);
        job.poll_gap = (job.poll_gap * 2).min(max);
        self.timers.set(TimerKey::Job(key), Some(at));
    }

    /// The grace period is over: KILL, and wait up to the kill timeout.
    pub(super) fn escalate(&mut self, now: Instant, key: GroupKey) {
        let kill_timeout = self.policy.kill_timeout;
        let stop_timeout = self.policy.stop_timeout;
        let Some(job) = self.jobs.get_mut(&key) else {
            return;
        };
        if job.killed {
            return;
        }
        job.killed = true;
        job.killed_at = Some(now);
        job.deadline = later(now, kill_timeout);
        let (group, name, owner, leader_alive) = (
            job.group.clone(),
            job.name.clone(),
            job.owner,
            job.leader_alive,
        );
        let after = now.saturating_duration_since(job.started).min(stop_timeout);
        self.actions.push_back(Action::Signal {
            group: group.clone(),
            name: name.clone().unwrap_or_default(),
            sig: Sig::Kill,
        });
        self.emit(Event::StopEscalated {
            task: owner,
            name: name.unwrap_or_default(),
            after,
        });
        if leader_alive {
            let deadline = later(now, kill_timeout);
            self.schedule_at(key, deadline);
        } else {
            self.actions.push_back(Action::CheckGroup { group });
            if let Some(job) = self.jobs.get_mut(&key) {
                job.poll_gap = FIRST_POLL;
            }
            self.poll_later(now, key);
        }
    }

    /// The leader of a job's group exited; `remains`: others of the group live on.
    pub(super) fn job_leader_gone(&mut self, now: Instant, key: GroupKey, remains: bool) {
        let Some(job) = self.jobs.get_mut(&key) else {
            return;
        };
        job.leader_alive = false;
        if !remains {
            self.job_done(now, key, false);
            return;
        }
        job.poll_gap = FIRST_POLL;
        if job.killed {
            // What a KILL already went to may have forked since.
            job.killed_at = Some(now);
            let group = job.group.clone();
            let name = job.name.clone().unwrap_or_default();
            self.actions.push_back(Action::Signal {
                group,
                name,
                sig: Sig::Kill,
            });
        }
        let group = self.jobs[&key].group.clone();
        self.actions.push_back(Action::CheckGroup { group });
        self.poll_later(now, key);
    }

    pub(super) fn on_group_status(&mut self, now: Instant, key: GroupKey, empty: bool) {
        let Some(job) = self.jobs.get(&key) else {
            return;
        };
        if job.leader_alive {
            // The leader's exit will come; a check answered meanwhile changes nothing.
            return;
        }
        if empty {
            self.job_done(now, key, false);
            return;
        }
        if job.killed && job.killed_at.is_some_and(|t| now > t) {
            // Survivors of a KILL a while ago forked after it (or it raced their fork): again.
            let (group, name) = (job.group.clone(), job.name.clone().unwrap_or_default());
            if let Some(job) = self.jobs.get_mut(&key) {
                job.killed_at = Some(now);
            }
            self.actions.push_back(Action::Signal {
                group,
                name,
                sig: Sig::Kill,
            });
        }
    }

    /// A job is over (its group is empty, or it outlived the kill timeout: `failed`).
    pub(super) fn job_done(&mut self, now: Instant, key: GroupKey, failed: bool) {
        let Some(job) = self.jobs.remove(&key) else {
            return;
        };
        self.timers.set(TimerKey::Job(key), None);
        if failed {
            self.emit(Event::StopFailed {
                task: job.owner,
                name: job.name.clone().unwrap_or_default(),
            });
        }
        self.actions.push_back(Action::Release {
            group: job.group.clone(),
        });
        if let (Some(p), Some(a)) = (job.port, self.ports.as_mut()) {
            a.release(p);
        }
        match job.kind {
            JobKind::Outgoing => {}
            JobKind::Instance => {
                if let Some(id) = job.owner {
                    self.finish_stop(now, id);
                }
            }
            JobKind::Remains => self.unblock(now, job.owner),
            JobKind::Leftover | JobKind::Stray => {
                self.emit(Event::LeftoverStopped {
                    name: job.name.clone(),
                    failed,
                    took: now.saturating_duration_since(job.started),
                });
                if job.kind == JobKind::Leftover {
                    self.count_recovered(now, failed);
                }
                self.unblock(now, job.owner);
            }
        }
        self.check_finished();
    }

    /// One recovery leftover is over; the last one ends recovery.
    fn count_recovered(&mut self, now: Instant, failed: bool) {
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        if failed {
            r.failed += 1;
        } else {
            r.stopped += 1;
        }
        let left = self.jobs.values().any(|j| j.kind == JobKind::Leftover);
        if !left {
            let Recovery {
                started,
                stopped,
                failed,
            } = *r;
            self.recovery = None;
            self.emit(Event::RecoveryFinished {
                stopped,
                failed,
                took: now.saturating_duration_since(started),
            });
        }
    }

    /// A group that held task `owner` is gone; once none is left the task goes on.
    fn unblock(&mut self, now: Instant, owner: Option<TaskId>) {
        let Some(id) = owner else { return };
        let Some(t) = self.tasks.get_mut(id.0).and_then(Option::as_mut) else {
            return;
        };
        t.remnants = t.remnants.saturating_sub(1);
        if t.remnants > 0 {
            return;
        }
        let Phase::Held { then } = t.phase else {
            return;
        };
        match then {
            Then::Start => {
                // A death's port was kept for judging it; a restart takes a new one.
                self.release_port(id);
                self.enqueue(now, id);
            }
            Then::AfterDeath => self.after_death(now, id),
            Then::Stop(reason) => self.finish_stop_with(now, id, reason),
        }
    }

    /// At shutdown, once every task is down and every job over: ask for the final sweep.
    pub(super) fn check_finished(&mut self) {
        if self.shutting_down
            && self.sweep == Sweep::NotYet
            && self.jobs.is_empty()
            && self.all_stopped()
        {
            self.sweep = Sweep::Asked;
            self.actions.push_back(Action::Sweep);
        }
    }

    fn all_stopped(&self) -> bool {
        self.tasks
            .iter()
            .flatten()
            .all(|t| matches!(t.phase, Phase::Stopped))
    }

    /// True after `shutdown` once no task has a process left, every group is gone and the final
    /// sweep found nothing more (or what it found is gone too).
    pub fn is_finished(&self) -> bool {
        self.shutting_down
            && self.sweep == Sweep::Answered
            && self.jobs.is_empty()
            && self.all_stopped()
    }

    pub(super) fn on_swept(&mut self, now: Instant, found: Vec<Found>) {
        if self.sweep != Sweep::Asked {
            return;
        }
        self.sweep = Sweep::Answered;
        let grace = self.policy.sweep_grace.min(self.policy.stop_timeout);
        for f in found {
            if let Ok(via) = super::recovery::proves_ours(&f) {
                self.emit(Event::LeftoverStopping {
                    name: f.task.clone(),
                    generation: f.generation,
                    pid: f.pid,
                    via,
                    blocks_task: false,
                });
                self.start_job(
                    now,
                    NewJob {
                        group: Group::Found { id: f.id },
                        kind: JobKind::Stray,
                        owner: None,
                        name: f.task,
                        grace: Some(grace),
                        leader_alive: false,
                    },
                );
            }
        }
    }
}
