//! Starting instances: the spawn queue behind the host-wide token bucket, the `Spawn` action,
//! and what the shell answers to it.
use super::Core;
use super::io::{Action, Event, Group};
use super::policy::later;
use crate::ports::PortAllocator;
use crate::task::{BackoffReason, Phase, StopReason, TaskId};
use std::time::{Duration, Instant};

/// Floating-point slack of the spawn token bucket: a refill over exactly `1 / spawn_rate` must
/// yield a whole token even when the arithmetic lands a hair below 1.
const TOKEN_SLACK: f64 = 1e-9;

impl Core {
    /// Puts a task in the spawn queue (the rate cap decides when it goes).
    pub(super) fn enqueue(&mut self, now: Instant, id: TaskId) {
        if self.shutting_down {
            self.set_phase(id, Phase::Stopped);
            return;
        }
        self.set_task_timer(id, None);
        self.set_phase(id, Phase::Queued);
        self.spawn_queue.push_back(id);
        self.pump_spawns(now);
    }

    pub(super) fn enter_backoff(
        &mut self,
        now: Instant,
        id: TaskId,
        reason: BackoffReason,
        delay: Duration,
    ) {
        let retry_at = later(now, delay);
        self.set_phase(id, Phase::Backoff { reason, retry_at });
        self.set_task_timer(id, Some(retry_at));
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.tokens_at).as_secs_f64();
        let rate = self.policy.spawn_rate.max(0.0);
        self.tokens = (self.tokens + dt * rate).min(self.policy.spawn_burst.max(1.0));
        self.tokens_at = now.max(self.tokens_at);
    }

    pub(super) fn pump_spawns(&mut self, now: Instant) {
        if self.spawn_queue.is_empty() {
            return;
        }
        self.refill(now);
        while self.tokens >= 1.0 - TOKEN_SLACK {
            let Some(id) = self.spawn_queue.pop_front() else {
                break;
            };
            if self
                .get(id)
                .is_some_and(|t| matches!(t.phase, Phase::Queued))
            {
                if !self.task(id).spec.depends_on.is_empty() && !self.unready_deps(id).is_empty() {
                    // No token spent: it goes back in line when what it waits for is ready.
                    self.waiting_deps.insert(id);
                    continue;
                }
                self.tokens -= 1.0;
                self.spawn_now(now, id);
            }
        }
    }

    /// When the queue next gets a token, if anything waits for one.
    pub(super) fn spawn_wake(&self) -> Option<Instant> {
        let waiting = self.spawn_queue.iter().any(|id| {
            self.get(*id)
                .is_some_and(|t| matches!(t.phase, Phase::Queued))
        });
        if !waiting {
            None
        } else if self.tokens >= 1.0 - TOKEN_SLACK {
            Some(self.tokens_at)
        } else {
            // Rounded up, and at least 1 ns: a wait that rounds down to nothing would have the
            // shell call `handle_timeout` again and again at the same instant, refilling nothing.
            let secs = (1.0 - self.tokens) / self.policy.spawn_rate.max(1e-9);
            let wait = Duration::from_nanos(((secs * 1e9).ceil() as u64).max(1));
            Some(later(self.tokens_at, wait))
        }
    }

    /// Takes a port (if the task needs one) and emits the `Spawn`.
    pub(super) fn spawn_now(&mut self, now: Instant, id: TaskId) {
        let t = self.task(id);
        let needs_port = t.spec.uses_port();
        let sticky = (t.spec.port == crate::controls::PortMode::Sticky)
            .then_some(t.last_port)
            .flatten();
        let port = if needs_port {
            let again = sticky.filter(|p| self.ports.as_mut().is_some_and(|a| a.take_exact(*p)));
            match again.or_else(|| self.ports.as_mut().and_then(PortAllocator::take)) {
                Some(p) => Some(p),
                None => {
                    let retry_in = self.policy.port_retry;
                    let every = self.policy.log_every;
                    let t = self.task_mut(id);
                    let quiet = t.log_gate.allow(now, every).is_none();
                    let name = t.spec.name.clone();
                    self.emit(Event::NoFreePort {
                        task: id,
                        name,
                        retry_in,
                        quiet,
                    });
                    self.enter_backoff(now, id, BackoffReason::NoFreePort, retry_in);
                    return;
                }
            }
        } else {
            None
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        self.set_phase(id, Phase::Spawning { stop: None });
        let t = self.task_mut(id);
        t.generation = generation;
        t.port = port;
        if port.is_some() {
            t.last_port = port;
        }
        let argv = t.spec.argv_for_port(port);
        let action = Action::Spawn {
            task: id,
            generation,
            spec: t.spec.clone(),
            argv,
            port,
        };
        self.actions.push_back(action);
    }

    /// `Some(pending stop)` when `id` exists and waits for the answer to the `Spawn` of
    /// `generation`; `None` when an answer about it would be stale.
    fn spawning(&self, id: TaskId, generation: u64) -> Option<Option<StopReason>> {
        match self.get(id) {
            Some(t) if t.generation == generation => match t.phase {
                Phase::Spawning { stop } => Some(stop),
                _ => None,
            },
            _ => None,
        }
    }

    /// The group of the instance `generation` of task `id`.
    pub(super) fn instance_group(&self, id: TaskId, generation: u64, leader: Option<u32>) -> Group {
        Group::Instance {
            name: self.task(id).spec.name.clone(),
            generation,
            leader,
        }
    }

    pub(super) fn on_spawned(
        &mut self,
        now: Instant,
        id: TaskId,
        generation: u64,
        pid: u32,
        start_ticks: Option<u64>,
    ) {
        let Some(pending) = self.spawning(id, generation) else {
            return;
        };
        let quiet_log = self.quiet(id);
        self.set_phase(id, Phase::Running);
        let stable_after = self.policy.stable_after;
        let t = self.task_mut(id);
        let restart = t.started_at.is_some();
        t.pid = Some(pid);
        t.start_ticks = start_ticks;
        t.started_at = Some(now);
        t.spawn_failures = 0;
        t.last_error = None;
        let since_death = t.died_at.take().map(|d| now.saturating_duration_since(d));
        let (name, port) = (t.spec.name.clone(), t.port);
        let stable_check = t.yoyo.map(|_| later(now, stable_after));
        let ready_at_once = t.spec.ready.is_none();
        t.ready = false;
        t.health_failures = 0;
        self.by_pid.insert(pid, id);
        self.set_task_timer(id, stable_check);
        self.emit(Event::Started {
            task: id,
            name,
            pid,
            port,
            generation,
            restart,
            since_death,
            quiet: quiet_log,
        });
        self.mark_dirty(now);
        // A stop asked for while the spawn was under way is carried out now that there is a
        // process to stop.
        if let Some(reason) = pending.or(self.shutting_down.then_some(StopReason::Shutdown)) {
            self.begin_stop(now, id, reason);
        } else if ready_at_once {
            self.became_ready(now, id);
        }
    }

    pub(super) fn on_spawn_failed(
        &mut self,
        now: Instant,
        id: TaskId,
        generation: u64,
        error: String,
    ) {
        let Some(pending) = self.spawning(id, generation) else {
            return;
        };
        self.release_port(id);
        let group = self.instance_group(id, generation, None);
        self.actions.push_back(Action::Release { group });
        if let Some(reason) = pending {
            // Nothing to stop: the stop (or restart, or remove) is done at once, no backoff.
            self.task_mut(id).last_error = Some(error);
            self.finish_stop_with(now, id, reason);
            return;
        }
        let every = self.policy.log_every;
        let t = self.task_mut(id);
        t.spawn_failures = t.spawn_failures.saturating_add(1);
        t.last_error = Some(error.clone());
        let failures = t.spawn_failures;
        let gate = t.log_gate.allow(now, every);
        let delay = self.policy.backoff.delay(failures - 1, &mut self.rng);
        let name = self.task(id).spec.name.clone();
        self.emit(Event::SpawnFailed {
            task: id,
            name,
            error,
            failures,
            retry_in: delay,
            quiet: gate.is_none(),
            suppressed: gate.unwrap_or(0),
        });
        self.enter_backoff(now, id, BackoffReason::SpawnFailed, delay);
    }

    pub(super) fn on_port_busy(&mut self, now: Instant, id: TaskId, generation: u64, port: u16) {
        let Some(pending) = self.spawning(id, generation) else {
            return;
        };
        // Only the port this task holds is marked: trusting `port` blindly would release a port
        // that another live task holds.
        let own = self.task_mut(id).port.take();
        if let (Some(p), Some(a)) = (own, self.ports.as_mut()) {
            a.mark_busy(p);
        }
        let group = self.instance_group(id, generation, None);
        self.actions.push_back(Action::Release { group });
        let name = self.task(id).spec.name.clone();
        self.emit(Event::PortBusy {
            task: id,
            name,
            port: own.unwrap_or(port),
        });
        if let Some(reason) = pending {
            self.finish_stop_with(now, id, reason);
            return;
        }
        // Try the next port straight away, ahead of the queue: the token was already spent.
        self.set_phase(id, Phase::Queued);
        self.spawn_now(now, id);
    }
}
