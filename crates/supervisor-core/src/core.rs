//! The state machine that drives every task. See the crate docs for the shape.
//!
//! ```text
//!            add/start                 spawned
//!  Stopped ───────────► Starting ──────────────► Running
//!     ▲                  ▲    │ spawn failed /       │ exited
//!     │                  │    │ no free port         ▼
//!     │     retry timer  │    └──────────────► Backoff (maybe yo-yo)
//!     │                  └───────────────────────┘   ▲ quick death: backoff
//!     │                                             │ first death: straight to Starting
//!     │  group gone (stop)     TERM, grace, KILL     │
//!     └────────────────── Stopping ◄──── stop / restart / remove / shutdown
//! ```
use crate::backoff::{Backoff, SplitMix64};
use crate::checkpoint::TaskRecord;
use crate::ports::{PortAllocator, PortRange};
use crate::spec::TaskSpec;
use crate::status::ExitStatus;
pub use crate::task::StopReason;
use crate::task::{BackoffReason, LastExit, Phase, Task, TaskId, TaskView, Yoyo};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Consecutive quick deaths blamed on a taken port that are forgiven (not counted towards yo-yo
/// mode); the next one counts.
const MAX_PORT_CONFLICTS: u32 = 3;

/// Floating-point slack of the spawn token bucket: a refill over exactly `1 / spawn_rate` must
/// yield a whole token even when the arithmetic lands a hair below 1.
const TOKEN_SLACK: f64 = 1e-9;

/// Tunables. Defaults follow DESIGN.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// A death sooner than this after a start is a "quick" death.
    pub min_uptime: Duration,
    /// Consecutive quick deaths that put a task in yo-yo mode (the first restart is immediate).
    pub yoyo_after: u32,
    /// Running this long leaves yo-yo mode.
    pub stable_after: Duration,
    /// Delays in yo-yo mode and after spawn failures.
    pub backoff: Backoff,
    /// TERM → KILL grace period.
    pub stop_timeout: Duration,
    /// After KILL, how long to wait for the group to be gone before giving up (and saying so).
    pub kill_timeout: Duration,
    /// How often to look again whether a stopping task's group is empty.
    pub group_poll: Duration,
    /// How long to wait before trying again when every port of the range is taken.
    pub port_retry: Duration,
    /// Rate-limited log lines come at most this often per task.
    pub log_every: Duration,
    /// Host-wide spawn rate cap: sustained spawns per second.
    pub spawn_rate: f64,
    /// Host-wide spawn rate cap: burst size.
    pub spawn_burst: f64,
    /// Periodic checkpoint; `None` when there is no dump file.
    pub checkpoint_interval: Option<Duration>,
    /// A change is checkpointed at most this long after it happened.
    pub checkpoint_coalesce: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_uptime: Duration::from_secs(1),
            yoyo_after: 2,
            stable_after: Duration::from_secs(60),
            backoff: Backoff::default(),
            stop_timeout: Duration::from_secs(10),
            kill_timeout: Duration::from_secs(5),
            group_poll: Duration::from_millis(20),
            port_retry: Duration::from_secs(1),
            log_every: Duration::from_secs(30),
            spawn_rate: 5_000.0,
            spawn_burst: 1_000.0,
            checkpoint_interval: None,
            checkpoint_coalesce: Duration::from_millis(100),
        }
    }
}

/// What happened, as the shell saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The `Spawn` of `generation` produced process `pid` (its own group leader).
    Spawned {
        task: TaskId,
        generation: u64,
        pid: u32,
        start_ticks: Option<u64>,
    },
    /// The `Spawn` of `generation` could not start a process (exec failed, file unwritable...).
    SpawnFailed {
        task: TaskId,
        generation: u64,
        error: String,
    },
    /// The bind probe before the `Spawn` of `generation` found `port` in use.
    PortBusy {
        task: TaskId,
        generation: u64,
        port: u16,
    },
    /// A child was reaped. `port_taken`: it died within `min_uptime` and a probe found its port
    /// held by another process, so the death is blamed on the port, not on the program.
    /// The shell must report `Spawned` for a pid before its `Exited`: an `Exited` for a pid the
    /// core does not know is ignored.
    Exited {
        pid: u32,
        status: ExitStatus,
        port_taken: bool,
    },
    /// Answer to `CheckGroup`: whether any process of the task's group (or an escaped
    /// descendant of it) is still alive.
    GroupStatus {
        task: TaskId,
        generation: u64,
        empty: bool,
    },
}

/// A signal the core asks the shell to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Probe `port` (if any), then start `argv` with the spec's files, env and cwd, in a new
    /// session, with `PORT` set; answer with `Spawned`, `SpawnFailed` or `PortBusy`.
    Spawn {
        task: TaskId,
        generation: u64,
        spec: Arc<TaskSpec>,
        argv: Vec<String>,
        port: Option<u16>,
    },
    /// Send `sig` to process group `pgid` and to the task's escaped descendants.
    Signal {
        task: TaskId,
        name: String,
        pgid: u32,
        sig: Sig,
    },
    /// Find out whether group `pgid` (and escaped descendants) is empty; answer `GroupStatus`.
    CheckGroup {
        task: TaskId,
        generation: u64,
        name: String,
        pgid: u32,
    },
    /// Write the checkpoint now (`Core::checkpoint_records`), then call `checkpoint_written`.
    Checkpoint,
    /// Report this (log line, event stream, metrics).
    Event(Event),
}

/// Something worth telling a person or a metric. `quiet` events are rate-limited away from the
/// log (they still reach the event stream and metrics).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Added {
        task: TaskId,
        name: String,
    },
    Started {
        task: TaskId,
        name: String,
        pid: u32,
        port: Option<u16>,
        generation: u64,
        restart: bool,
        since_death: Option<Duration>,
        quiet: bool,
    },
    Exited {
        task: TaskId,
        name: String,
        pid: u32,
        status: ExitStatus,
        uptime: Duration,
        expected: bool,
        quiet: bool,
    },
    /// The next start is delayed.
    Backoff {
        task: TaskId,
        name: String,
        delay: Duration,
        reason: crate::task::BackoffReason,
        quiet: bool,
    },
    YoyoEntered {
        task: TaskId,
        name: String,
        quick_deaths: u32,
        next_delay: Duration,
    },
    /// Rate-limited reminder while in yo-yo mode.
    YoyoContinues {
        task: TaskId,
        name: String,
        quick_deaths: u32,
        suppressed: u32,
        next_delay: Duration,
    },
    YoyoLeft {
        task: TaskId,
        name: String,
        stable_for: Duration,
    },
    SpawnFailed {
        task: TaskId,
        name: String,
        error: String,
        failures: u32,
        retry_in: Duration,
        quiet: bool,
        suppressed: u32,
    },
    PortBusy {
        task: TaskId,
        name: String,
        port: u16,
    },
    PortConflictDeath {
        task: TaskId,
        name: String,
        port: u16,
    },
    NoFreePort {
        task: TaskId,
        name: String,
        retry_in: Duration,
        quiet: bool,
    },
    Stopping {
        task: TaskId,
        name: String,
        pid: u32,
        reason: StopReason,
    },
    StopEscalated {
        task: TaskId,
        name: String,
        pid: u32,
        after: Duration,
    },
    StopFailed {
        task: TaskId,
        name: String,
        pgid: u32,
    },
    Stopped {
        task: TaskId,
        name: String,
    },
    Removed {
        task: TaskId,
        name: String,
    },
}

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

/// The core. See the crate docs.
#[derive(Debug)]
pub struct Core {
    policy: Policy,
    rng: SplitMix64,
    ports: Option<PortAllocator>,
    tasks: Vec<Option<Task>>,
    by_name: HashMap<String, TaskId>,
    by_pid: HashMap<u32, TaskId>,
    free_ids: Vec<usize>,
    /// Timers: (when, task, generation of the timer). Stale entries are skipped when popped.
    timers: BinaryHeap<Reverse<(Instant, TaskId)>>,
    spawn_queue: VecDeque<TaskId>,
    tokens: f64,
    tokens_at: Instant,
    actions: VecDeque<Action>,
    shutting_down: bool,
    /// `shutdown(force = true)` was asked: every stop goes straight to KILL.
    force: bool,
    /// Source of spawn generations. Core-wide rather than per task, so that an answer meant for
    /// a removed task can never be mistaken for one about a new task that reuses its slot.
    next_generation: u64,
    checkpoint_due: Option<Instant>,
    checkpoint_in_flight: bool,
    /// Moves on every change that can alter `checkpoint_records`.
    changes: u64,
}

impl Core {
    pub fn new(now: Instant, policy: Policy, port_range: Option<PortRange>, seed: u64) -> Self {
        let checkpoint_due = policy.checkpoint_interval.map(|_| now);
        Core {
            tokens: policy.spawn_burst.max(1.0),
            tokens_at: now,
            rng: SplitMix64::new(seed),
            ports: port_range.map(PortAllocator::new),
            policy,
            tasks: Vec::new(),
            by_name: HashMap::new(),
            by_pid: HashMap::new(),
            free_ids: Vec::new(),
            timers: BinaryHeap::new(),
            spawn_queue: VecDeque::new(),
            actions: VecDeque::new(),
            shutting_down: false,
            force: false,
            next_generation: 0,
            checkpoint_due,
            checkpoint_in_flight: false,
            changes: 0,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn port_range(&self) -> Option<PortRange> {
        self.ports.as_ref().map(PortAllocator::range)
    }

    // ---------------------------------------------------------------- control requests

    /// Adds a validated task and starts it.
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
        self.emit(Event::Added { task: id, name });
        self.enqueue(now, id);
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
            Phase::Running | Phase::Stopping { .. } | Phase::Spawning { stop: Some(_) } => {
                self.begin_stop(now, id, StopReason::Restart)
            }
            // About to start afresh anyway.
            Phase::Queued | Phase::Spawning { stop: None } => {}
            Phase::Stopped | Phase::Backoff { .. } => {
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

    /// Stops every task (TERM, grace, KILL; or KILL at once when `force`). Nothing is started
    /// from now on. [`Core::is_finished`] tells when every task is down.
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
            if force {
                self.escalate(now, id);
            }
        }
        self.mark_dirty(now);
    }

    /// True after `shutdown` once no task has a process left.
    pub fn is_finished(&self) -> bool {
        self.shutting_down
            && self
                .tasks
                .iter()
                .flatten()
                .all(|t| matches!(t.phase, Phase::Stopped))
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    // ---------------------------------------------------------------- inputs

    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Spawned {
                task,
                generation,
                pid,
                start_ticks,
            } => self.on_spawned(now, task, generation, pid, start_ticks),
            Input::SpawnFailed {
                task,
                generation,
                error,
            } => self.on_spawn_failed(now, task, generation, error),
            Input::PortBusy {
                task,
                generation,
                port,
            } => self.on_port_busy(now, task, generation, port),
            Input::Exited {
                pid,
                status,
                port_taken,
            } => self.on_exited(now, pid, status, port_taken),
            Input::GroupStatus {
                task,
                generation,
                empty,
            } => self.on_group_status(now, task, generation, empty),
        }
    }

    fn on_spawned(
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
        let t = self.task_mut(id);
        let restart = t.started_at.is_some();
        t.phase = Phase::Running;
        t.pid = Some(pid);
        t.start_ticks = start_ticks;
        t.started_at = Some(now);
        t.spawn_failures = 0;
        t.last_error = None;
        let since_death = t.died_at.take().map(|d| now.saturating_duration_since(d));
        let (name, port) = (t.spec.name.clone(), t.port);
        let stable_check = t.yoyo.map(|_| now + self.policy.stable_after);
        self.by_pid.insert(pid, id);
        self.set_timer(id, stable_check);
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
        }
    }

    fn on_spawn_failed(&mut self, now: Instant, id: TaskId, generation: u64, error: String) {
        let Some(pending) = self.spawning(id, generation) else {
            return;
        };
        self.release_port(id);
        if let Some(reason) = pending {
            // Nothing to stop: the stop (or restart, or remove) is done at once, no backoff.
            self.task_mut(id).last_error = Some(error);
            self.finish_stop_with(now, id, reason);
            return;
        }
        let every = self.policy.log_every;
        let t = self.task_mut(id);
        t.spawn_failures += 1;
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

    fn on_port_busy(&mut self, now: Instant, id: TaskId, generation: u64, port: u16) {
        let Some(pending) = self.spawning(id, generation) else {
            return;
        };
        // Only the port this task holds is marked: trusting `port` blindly would release a port
        // that another live task holds.
        let own = self.task_mut(id).port.take();
        if let (Some(p), Some(a)) = (own, self.ports.as_mut()) {
            a.mark_busy(p);
        }
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
        self.task_mut(id).phase = Phase::Queued;
        self.spawn_now(now, id);
    }

    fn on_exited(&mut self, now: Instant, pid: u32, status: ExitStatus, port_taken: bool) {
        let Some(id) = self.by_pid.remove(&pid) else {
            return;
        };
        let policy = self.policy.clone();
        let t = self.task_mut(id);
        let uptime = t
            .started_at
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        t.last_exit = Some(LastExit {
            status,
            at: now,
            uptime,
            pid,
        });
        t.pid = None;
        let name = t.spec.name.clone();
        let stopping = matches!(t.phase, Phase::Stopping { .. });
        self.mark_dirty(now);
        if stopping {
            self.emit(Event::Exited {
                task: id,
                name: name.clone(),
                pid,
                status,
                uptime,
                expected: true,
                quiet: false,
            });
            let t = self.task_mut(id);
            if let Phase::Stopping { leader_gone, .. } = &mut t.phase {
                *leader_gone = true;
            }
            self.ask_group_check(id, pid);
            return;
        }
        // A run as long as `stable_after` ends yo-yo mode even when the death is handled before
        // the timer that would have said so.
        if self.task(id).yoyo.is_some() && uptime >= policy.stable_after {
            self.leave_yoyo(id, uptime);
        }
        let quiet = self.quiet(id);
        let port = self.release_port(id);
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
            _ => t.port_conflicts = 0,
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

    fn on_group_status(&mut self, now: Instant, id: TaskId, generation: u64, empty: bool) {
        if !self.current(id, generation, |p| matches!(p, Phase::Stopping { .. })) {
            return;
        }
        if empty {
            self.finish_stop(now, id);
        } else {
            let Phase::Stopping { deadline, .. } = self.task(id).phase else {
                return;
            };
            self.set_timer(id, Some((now + self.policy.group_poll).min(deadline)));
        }
    }

    // ---------------------------------------------------------------- time

    /// Runs whatever is due at `now`: restarts after backoff, yo-yo exits, stop escalation,
    /// spawns the rate cap held back, checkpoints.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.tasks.get(id.0).and_then(Option::as_ref) else {
                continue;
            };
            if t.wake_at != Some(at) {
                continue; // stale
            }
            self.task_mut(id).wake_at = None;
            self.on_task_timer(now, id);
        }
        self.prune_timers();
        self.pump_spawns(now);
        if let Some(due) = self.checkpoint_due {
            if due <= now && !self.checkpoint_in_flight {
                self.checkpoint_due = None;
                self.checkpoint_in_flight = true;
                self.actions.push_back(Action::Checkpoint);
            }
        }
    }

    fn on_task_timer(&mut self, now: Instant, id: TaskId) {
        let policy = self.policy.clone();
        match self.task(id).phase {
            Phase::Backoff { .. } => self.enqueue(now, id),
            Phase::Running => {
                let t = self.task_mut(id);
                if let (Some(_), Some(started)) = (t.yoyo, t.started_at) {
                    let stable_for = now.saturating_duration_since(started);
                    if stable_for >= policy.stable_after {
                        self.leave_yoyo(id, stable_for);
                    } else {
                        self.set_timer(id, Some(started + policy.stable_after));
                    }
                }
            }
            Phase::Stopping {
                deadline,
                killed,
                leader_gone,
                ..
            } => {
                let t = self.task(id);
                let name = t.spec.name.clone();
                let pgid = self.pgid(id);
                if now >= deadline {
                    if !killed {
                        self.escalate(now, id);
                        if let Some(pid) = self.task(id).pid.or(pgid) {
                            let after = policy.stop_timeout;
                            self.emit(Event::StopEscalated {
                                task: id,
                                name,
                                pid,
                                after,
                            });
                        }
                    } else {
                        self.emit(Event::StopFailed {
                            task: id,
                            name,
                            pgid: pgid.unwrap_or(0),
                        });
                        self.finish_stop(now, id);
                    }
                } else if leader_gone {
                    if let Some(pgid) = pgid {
                        self.ask_group_check(id, pgid);
                    }
                    self.set_timer(id, Some(deadline));
                }
            }
            Phase::Queued | Phase::Spawning { .. } | Phase::Stopped => {}
        }
    }

    /// The next moment `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let waiting = self.spawn_queue.iter().any(|id| {
            self.tasks
                .get(id.0)
                .and_then(Option::as_ref)
                .is_some_and(|t| matches!(t.phase, Phase::Queued))
        });
        let spawn = if !waiting {
            None
        } else if self.tokens >= 1.0 - TOKEN_SLACK {
            Some(self.tokens_at)
        } else {
            // Rounded up, and at least 1 ns: a wait that rounds down to nothing would have the
            // shell call `handle_timeout` again and again at the same instant, refilling nothing.
            let secs = (1.0 - self.tokens) / self.policy.spawn_rate.max(1e-9);
            let wait = Duration::from_nanos(((secs * 1e9).ceil() as u64).max(1));
            self.tokens_at.checked_add(wait)
        };
        let checkpoint = if self.checkpoint_in_flight {
            None
        } else {
            self.checkpoint_due
        };
        [timer, spawn, checkpoint].into_iter().flatten().min()
    }

    /// The next thing for the shell to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The shell wrote (or failed to write) the checkpoint asked for.
    pub fn checkpoint_written(&mut self, now: Instant) {
        self.checkpoint_in_flight = false;
        if let Some(every) = self.policy.checkpoint_interval {
            let next = now + every;
            self.checkpoint_due = Some(self.checkpoint_due.map_or(next, |d| d.min(next)));
        }
    }

    // ---------------------------------------------------------------- views

    pub fn task_count(&self) -> usize {
        self.by_name.len()
    }

    pub fn task_id(&self, name: &str) -> Option<TaskId> {
        self.by_name.get(name).copied()
    }

    pub fn task_by_pid(&self, pid: u32) -> Option<TaskId> {
        self.by_pid.get(&pid).copied()
    }

    /// A snapshot of one task.
    pub fn view(&self, id: TaskId) -> Option<TaskView> {
        let t = self.tasks.get(id.0)?.as_ref()?;
        let (backoff_reason, retry_at) = match t.phase {
            Phase::Backoff { reason, retry_at } => (Some(reason), Some(retry_at)),
            _ => (None, None),
        };
        Some(TaskView {
            id,
            spec: t.spec.clone(),
            state: t.state(),
            pid: t.pid,
            start_ticks: t.start_ticks,
            port: t.port,
            generation: t.generation,
            restarts: t.restarts,
            started_at: t.started_at,
            last_exit: t.last_exit,
            last_error: t.last_error.clone(),
            backoff_reason,
            retry_at,
            yoyo_since: t.yoyo.map(|y| y.since),
            quick_deaths: t.quick_deaths,
        })
    }

    /// Snapshots of all tasks, in the order they were added (slots reused after removal).
    pub fn views(&self) -> Vec<TaskView> {
        self.ids().filter_map(|id| self.view(id)).collect()
    }

    /// A counter that moves whenever `checkpoint_records` may have changed: equal counts mean
    /// equal records, so the shell can reuse what it encoded last time.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// What the checkpoint must hold: every task that has a live process.
    pub fn checkpoint_records(&self) -> Vec<TaskRecord> {
        self.ids()
            .filter_map(|id| {
                let t = self.task(id);
                let pid = t.pid?;
                Some(TaskRecord {
                    index: id.0,
                    name: t.spec.name.clone(),
                    argv: t.spec.argv_for_port(t.port),
                    port: t.port,
                    generation: t.generation,
                    pid,
                    pgid: pid,
                    start_time: t.start_ticks,
                    boot_id: None,
                })
            })
            .collect()
    }

    // ---------------------------------------------------------------- internals

    fn ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some())
            .map(|(i, _)| TaskId(i))
    }

    fn task(&self, id: TaskId) -> &Task {
        self.tasks[id.0]
            .as_ref()
            .expect("task ids held by the core always point at a live slot")
    }

    fn task_mut(&mut self, id: TaskId) -> &mut Task {
        self.tasks[id.0]
            .as_mut()
            .expect("task ids held by the core always point at a live slot")
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

    /// True when `id` exists, is at `generation`, and its phase passes `f`.
    fn current(&self, id: TaskId, generation: u64, f: impl Fn(&Phase) -> bool) -> bool {
        self.tasks
            .get(id.0)
            .and_then(Option::as_ref)
            .is_some_and(|t| t.generation == generation && f(&t.phase))
    }

    /// `Some(pending stop)` when `id` exists and is waiting for the answer to the `Spawn` of
    /// `generation`; `None` when an answer about it would be stale.
    fn spawning(&self, id: TaskId, generation: u64) -> Option<Option<StopReason>> {
        match self.tasks.get(id.0).and_then(Option::as_ref) {
            Some(t) if t.generation == generation => match t.phase {
                Phase::Spawning { stop } => Some(stop),
                _ => None,
            },
            _ => None,
        }
    }

    /// The stop under way (or waiting for a spawn's answer), if any.
    fn pending_stop(&self, id: TaskId) -> Option<StopReason> {
        match self.task(id).phase {
            Phase::Stopping { reason, .. } | Phase::Spawning { stop: Some(reason) } => Some(reason),
            _ => None,
        }
    }

    /// True when this task's routine log lines should be held back (yo-yo mode).
    fn quiet(&self, id: TaskId) -> bool {
        self.task(id).yoyo.is_some()
    }

    fn pgid(&self, id: TaskId) -> Option<u32> {
        let t = self.task(id);
        t.pid.or(t.last_exit.map(|e| e.pid))
    }

    fn emit(&mut self, e: Event) {
        self.actions.push_back(Action::Event(e));
    }

    fn set_timer(&mut self, id: TaskId, at: Option<Instant>) {
        self.task_mut(id).wake_at = at;
        if let Some(at) = at {
            self.timers.push(Reverse((at, id)));
        }
        self.prune_timers();
    }

    /// Drops superseded entries from the top of the timer heap, so that `poll_timeout` names a
    /// moment when there is work, not a deadline that no longer applies (a stopped task's stop
    /// deadline, a cancelled retry). Entries deeper down are dropped when they surface.
    fn prune_timers(&mut self) {
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            let live = self
                .tasks
                .get(id.0)
                .and_then(Option::as_ref)
                .is_some_and(|t| t.wake_at == Some(at));
            if live {
                break;
            }
            self.timers.pop();
        }
    }

    fn mark_dirty(&mut self, now: Instant) {
        self.changes += 1;
        if self.policy.checkpoint_interval.is_some() {
            let soon = now + self.policy.checkpoint_coalesce;
            self.checkpoint_due = Some(self.checkpoint_due.map_or(soon, |d| d.min(soon)));
        }
    }

    fn release_port(&mut self, id: TaskId) -> Option<u16> {
        let port = self.task_mut(id).port.take();
        if let (Some(p), Some(a)) = (port, self.ports.as_mut()) {
            a.release(p);
        }
        port
    }

    fn enter_backoff(&mut self, now: Instant, id: TaskId, reason: BackoffReason, delay: Duration) {
        let retry_at = now + delay;
        self.task_mut(id).phase = Phase::Backoff { reason, retry_at };
        self.set_timer(id, Some(retry_at));
    }

    /// Puts a task in the spawn queue (the rate cap decides when it goes).
    fn enqueue(&mut self, now: Instant, id: TaskId) {
        if self.shutting_down {
            self.task_mut(id).phase = Phase::Stopped;
            return;
        }
        self.set_timer(id, None);
        self.task_mut(id).phase = Phase::Queued;
        self.spawn_queue.push_back(id);
        self.pump_spawns(now);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.tokens_at).as_secs_f64();
        let rate = self.policy.spawn_rate.max(0.0);
        self.tokens = (self.tokens + dt * rate).min(self.policy.spawn_burst.max(1.0));
        self.tokens_at = now.max(self.tokens_at);
    }

    fn pump_spawns(&mut self, now: Instant) {
        if self.spawn_queue.is_empty() {
            return;
        }
        self.refill(now);
        while self.tokens >= 1.0 - TOKEN_SLACK {
            let Some(id) = self.spawn_queue.pop_front() else {
                break;
            };
            let queued = self
                .tasks
                .get(id.0)
                .and_then(Option::as_ref)
                .is_some_and(|t| matches!(t.phase, Phase::Queued));
            if queued {
                self.tokens -= 1.0;
                self.spawn_now(now, id);
            }
        }
    }

    /// Takes a port (if the task needs one) and emits the `Spawn`.
    fn spawn_now(&mut self, now: Instant, id: TaskId) {
        let needs_port = self.task(id).spec.uses_port();
        let port = if needs_port {
            match self.ports.as_mut().and_then(PortAllocator::take) {
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
        let t = self.task_mut(id);
        t.generation = generation;
        t.port = port;
        t.phase = Phase::Spawning { stop: None };
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

    fn begin_stop(&mut self, now: Instant, id: TaskId, reason: StopReason) {
        let stop_timeout = self.policy.stop_timeout;
        let force = self.force && reason == StopReason::Shutdown;
        let t = self.task_mut(id);
        match t.phase {
            Phase::Running => {
                // A running task always has a pid; without one there is nothing to signal, and
                // signalling group 0 would hit the supervisor's own group.
                let Some(pid) = t.pid else {
                    self.finish_stop_with(now, id, reason);
                    return;
                };
                let name = t.spec.name.clone();
                let deadline = now + stop_timeout;
                t.phase = Phase::Stopping {
                    reason,
                    deadline,
                    killed: false,
                    leader_gone: false,
                };
                self.set_timer(id, Some(deadline));
                self.emit(Event::Stopping {
                    task: id,
                    name: name.clone(),
                    pid,
                    reason,
                });
                self.actions.push_back(Action::Signal {
                    task: id,
                    name,
                    pgid: pid,
                    sig: Sig::Term,
                });
                if force {
                    self.escalate(now, id);
                }
            }
            Phase::Stopping {
                reason: ref mut r, ..
            }
            | Phase::Spawning {
                stop: Some(ref mut r),
            } => {
                if *r != StopReason::Remove {
                    *r = reason;
                }
            }
            Phase::Spawning { stop: None } => {
                // The process may be starting right now; stop it once the answer arrives.
                t.phase = Phase::Spawning { stop: Some(reason) };
            }
            Phase::Queued | Phase::Backoff { .. } | Phase::Stopped => {
                self.finish_stop_with(now, id, reason)
            }
        }
    }

    /// Asks the shell whether the task's process group (and escaped descendants) is empty.
    fn ask_group_check(&mut self, id: TaskId, pgid: u32) {
        let t = self.task(id);
        let (generation, name) = (t.generation, t.spec.name.clone());
        self.actions.push_back(Action::CheckGroup {
            task: id,
            generation,
            name,
            pgid,
        });
    }

    fn escalate(&mut self, now: Instant, id: TaskId) {
        let kill_timeout = self.policy.kill_timeout;
        let pgid = self.pgid(id);
        let t = self.task_mut(id);
        if let Phase::Stopping {
            killed,
            deadline,
            leader_gone,
            ..
        } = &mut t.phase
        {
            if *killed {
                return;
            }
            *killed = true;
            *deadline = now + kill_timeout;
            let (name, at, leader_gone) = (t.spec.name.clone(), *deadline, *leader_gone);
            if let Some(pgid) = pgid {
                self.actions.push_back(Action::Signal {
                    task: id,
                    name: name.clone(),
                    pgid,
                    sig: Sig::Kill,
                });
                if leader_gone {
                    // Nothing else would ask again before the kill deadline (the leader's exit,
                    // which triggers the check otherwise, has already happened).
                    self.ask_group_check(id, pgid);
                }
            }
            self.set_timer(id, Some(at));
        }
    }

    fn finish_stop(&mut self, now: Instant, id: TaskId) {
        let Phase::Stopping { reason, .. } = self.task(id).phase else {
            return;
        };
        self.finish_stop_with(now, id, reason);
    }

    fn finish_stop_with(&mut self, now: Instant, id: TaskId, reason: StopReason) {
        self.release_port(id);
        self.set_timer(id, None);
        let t = self.task_mut(id);
        if let Some(pid) = t.pid.take() {
            self.by_pid.remove(&pid);
        }
        let t = self.task_mut(id);
        t.phase = Phase::Stopped;
        let name = t.spec.name.clone();
        self.mark_dirty(now);
        match reason {
            StopReason::Remove => {
                self.tasks[id.0] = None;
                self.by_name.remove(&name);
                self.free_ids.push(id.0);
                self.prune_timers();
                self.emit(Event::Removed { task: id, name });
            }
            StopReason::Restart if !self.shutting_down => {
                self.emit(Event::Stopped { task: id, name });
                let t = self.task_mut(id);
                t.restarts += 1;
                t.spawn_failures = 0;
                self.enqueue(now, id);
            }
            _ => self.emit(Event::Stopped { task: id, name }),
        }
    }
}
