//! The state machine that drives every task. See the crate docs for the shape.
//!
//! A task's life (the phases of `task.rs`; `transitions.rs` holds the whole table):
//!
//! ```text
//!            add/start                 spawned
//!  Stopped ───────────► Queued ─► Spawning ─────────► Running ───────────┐ died
//!     ▲   ▲               ▲ ▲         │ failed / no port                  │
//!     │   │   retry timer │ │         ▼                                   ▼
//!     │   │           Backoff ◄──────────── quick death: probe ◄── Held (remains of the dead
//!     │   │           (maybe yo-yo)          the port (Probing)      instance are killed first)
//!     │   │                 first death without remains: straight to Queued
//!     │   └──── group gone ─── Stopping ◄── stop / restart / remove / shutdown
//!     └── leftovers gone ── Held (recovery found leftovers of this task: they go first)
//! ```
//!
//! # Layout
//! - [`io`]: inputs, actions, events, and what recovery reports.
//! - [`policy`]: tunables, their bounds, and checked instant arithmetic.
//! - [`apply`]: converge on a desired task set (add, replace, remove; the plan).
//! - `control`: requests (add, start, stop, restart, remove, shutdown) and their refusals.
//! - `spawns`: the spawn queue and the host-wide token bucket.
//! - `deaths`: a leader's death: remains, port probe, restart now or back off, yo-yo.
//! - `stops`: stop jobs, the one sub-machine that empties a group (TERM, grace, KILL, verify),
//!   for a task's instance, a dead instance's remains, recovery leftovers and strays alike.
//! - `recovery`: which found things are provably ours.
//! - `transitions`: the table of allowed phase changes, checked at every change.
//! - `timers`: one timer per task and per stop job.
pub mod apply;
pub mod io;
pub mod policy;
pub mod readiness;

mod control;
mod deaths;
mod recovery;
mod spawns;
mod stops;
mod timers;
pub mod transitions;

use crate::backoff::SplitMix64;
use crate::checkpoint::TaskRecord;
use crate::ports::{PortAllocator, PortRange};
use crate::task::{LastExit, Phase, Task, TaskId, TaskView};
use io::{Action, Event, GroupKey, Input};
use policy::{Policy, later};
use std::collections::{HashMap, VecDeque};
use std::time::Instant;
use stops::StopJob;
use timers::{TimerKey, Timers};

pub use control::ControlError;

/// How far recovery has come (from `Core::recover` until its last leftover is gone).
#[derive(Debug, Clone, Copy)]
struct Recovery {
    started: Instant,
    stopped: usize,
    failed: usize,
}

/// The final sweep at shutdown, once every task is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sweep {
    NotYet,
    Asked,
    Answered,
}

/// The core. See the crate docs.
#[derive(Debug)]
pub struct Core {
    /// Tunables, fixed at start.
    policy: Policy,
    /// Jitter of backoff delays; seeded by the shell, so tests are deterministic.
    rng: SplitMix64,
    /// `--port-range`, round robin; `None` without a range.
    ports: Option<PortAllocator>,
    /// Tasks by [`TaskId`]; a removed task leaves `None` until its slot is reused.
    tasks: Vec<Option<Task>>,
    by_name: HashMap<String, TaskId>,
    /// Live leaders → their task: how an `Exited` finds its task.
    by_pid: HashMap<u32, TaskId>,
    /// Free slots of `tasks`, reused by `add_task`.
    free_ids: Vec<usize>,
    /// One timer per task and per stop job.
    timers: Timers,
    /// Tasks waiting for a spawn token, oldest first (entries of tasks that left `Queued` are
    /// skipped when reached).
    spawn_queue: VecDeque<TaskId>,
    /// Spawn tokens available, as of `tokens_at` (the host-wide rate cap).
    tokens: f64,
    tokens_at: Instant,
    /// Groups being emptied: tasks' instances, dead instances' remains, recovery leftovers and
    /// the final sweep's strays (see `stops.rs`).
    jobs: HashMap<GroupKey, StopJob>,
    /// What the shell has still to do, in order.
    actions: VecDeque<Action>,
    shutting_down: bool,
    /// `shutdown(force = true)` was asked: every stop goes straight to KILL.
    force: bool,
    /// Source of spawn generations. Core-wide rather than per task, so that an answer meant for
    /// a removed task can never be mistaken for one about a new task that reuses its slot; it
    /// continues above what a predecessor used (`recover`), so cgroup names never collide.
    next_generation: u64,
    checkpoint_due: Option<Instant>,
    checkpoint_in_flight: bool,
    /// Moves on every change that can alter `checkpoint_records`.
    changes: u64,
    /// Set while recovery's leftovers are being stopped.
    recovery: Option<Recovery>,
    sweep: Sweep,
    /// Moves on every change a client of `GET /state` could see (phase, pid, port, spec,
    /// counters): equal revisions mean equal state. It continues above a predecessor's.
    revision: u64,
    /// Task uids a predecessor gave (from the dump), by name: a task of that name added again
    /// keeps its uid.
    known_uids: HashMap<String, String>,
    /// Queued tasks that wait for their `depends_on` to be ready (they take no spawn token
    /// until then); looked at again whenever a task becomes ready.
    waiting_deps: std::collections::BTreeSet<TaskId>,
}

impl Core {
    pub fn new(now: Instant, mut policy: Policy, port_range: Option<PortRange>, seed: u64) -> Self {
        // A zero interval would ask for a checkpoint again at the very instant it was written.
        policy.checkpoint_interval = policy
            .checkpoint_interval
            .map(|d| d.max(policy::MIN_CHECKPOINT_INTERVAL));
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
            timers: Timers::default(),
            spawn_queue: VecDeque::new(),
            jobs: HashMap::new(),
            actions: VecDeque::new(),
            shutting_down: false,
            force: false,
            next_generation: 0,
            checkpoint_due,
            checkpoint_in_flight: false,
            changes: 0,
            recovery: None,
            sweep: Sweep::NotYet,
            revision: 0,
            known_uids: HashMap::new(),
            waiting_deps: std::collections::BTreeSet::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn port_range(&self) -> Option<PortRange> {
        self.ports.as_ref().map(PortAllocator::range)
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
                remains,
            } => self.on_exited(now, pid, status, remains),
            Input::PortProbed {
                task,
                generation,
                port,
                free,
            } => self.on_port_probed(now, task, generation, port, free),
            Input::GroupStatus { group, empty } => self.on_group_status(now, group, empty),
            Input::Swept { found } => self.on_swept(now, found),
            Input::Checked {
                task,
                generation,
                kind,
                ok,
                detail,
            } => self.on_checked(now, task, generation, kind, ok, detail),
        }
    }

    // ---------------------------------------------------------------- time

    /// Runs whatever is due at `now`: restarts after backoff, yo-yo exits, stop escalation and
    /// group checks, spawns the rate cap held back, checkpoints.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Task(id) => self.on_task_timer(now, id),
                TimerKey::Job(group) => self.on_job_timer(now, group),
            }
        }
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
        let Some(t) = self.tasks.get(id.0).and_then(Option::as_ref) else {
            return;
        };
        match t.phase {
            Phase::Backoff { .. } => self.enqueue(now, id),
            Phase::Running => self.check_stable(now, id),
            _ => {}
        }
    }

    /// The next moment `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let checkpoint = if self.checkpoint_in_flight {
            None
        } else {
            self.checkpoint_due
        };
        [self.timers.next(), self.spawn_wake(), checkpoint]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next thing for the shell to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The shell wrote (or failed to write) the checkpoint asked for.
    pub fn checkpoint_written(&mut self, now: Instant) {
        self.checkpoint_in_flight = false;
        if let Some(every) = self.policy.checkpoint_interval {
            let next = later(now, every);
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

    /// The number of timers set: at most one per task and one per stop job.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Groups being stopped right now (instances, remains, leftovers, strays).
    pub fn stop_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// The next generation a spawn will get.
    pub fn next_generation(&self) -> u64 {
        self.next_generation + 1
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
            uid: t.uid.clone(),
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
            waiting_for: t.remnants,
            ready: t.ready && matches!(t.phase, Phase::Running),
            waiting_on: if matches!(t.phase, Phase::Queued) {
                self.unready_deps(id)
            } else {
                Vec::new()
            },
            health_failures: t.health_failures,
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

    /// What the checkpoint must hold: every task that has a live leader.
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

    /// The task at `id`, if the slot holds one.
    fn get_mut_task(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(id.0).and_then(Option::as_mut)
    }

    fn get(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(id.0).and_then(Option::as_ref)
    }

    /// True when this task's routine log lines should be held back (yo-yo mode).
    fn quiet(&self, id: TaskId) -> bool {
        self.task(id).yoyo.is_some()
    }

    fn emit(&mut self, e: Event) {
        self.revision += 1;
        self.actions.push_back(Action::Event(e));
    }

    /// Marks a visible change (see `revision`).
    fn bump(&mut self) {
        self.revision += 1;
    }

    /// The uid of the task named `name`.
    pub fn uid_of(&self, name: &str) -> Option<&str> {
        let id = self.by_name.get(name)?;
        self.get(*id).map(|t| t.uid.as_str())
    }

    /// The revision of the state (see [`Core::apply`] and `GET /state`).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Identities a predecessor left in its dump: uids by task name, and the revision and
    /// generation it had reached. Call before adding tasks.
    pub fn adopt_identities(
        &mut self,
        uids: impl IntoIterator<Item = (String, String)>,
        revision: u64,
        next_generation: u64,
    ) {
        self.known_uids.extend(uids);
        self.revision = self.revision.max(revision);
        self.next_generation = self.next_generation.max(next_generation.saturating_sub(1));
    }

    /// Every task's uid by name, plus those adopted for names not (yet) added again: what the
    /// dump keeps so that identities outlive the supervisor.
    pub fn identities(&self) -> std::collections::BTreeMap<String, String> {
        let mut m: std::collections::BTreeMap<String, String> = self
            .known_uids
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for id in self.ids() {
            let t = self.task(id);
            m.insert(t.spec.name.clone(), t.uid.clone());
        }
        m
    }

    /// Changes a task's phase, checked against the transition table. A change the table does
    /// not allow is a bug: debug builds panic, release builds carry on and report it.
    fn set_phase(&mut self, id: TaskId, to: Phase) {
        self.revision += 1;
        let t = self.task_mut(id);
        let from = (!t.fresh).then(|| t.phase.kind());
        t.fresh = false;
        t.phase = to;
        if !transitions::allowed(from, Some(to.kind())) {
            let name = t.spec.name.clone();
            let from = from.map_or("(new)", |f| f.as_str());
            debug_assert!(
                false,
                "task {name}: {from} → {:?} is not allowed",
                to.kind()
            );
            self.emit(Event::Invalid {
                name,
                what: format!("{from} → {}", to.kind().as_str()),
            });
        }
    }

    fn set_task_timer(&mut self, id: TaskId, at: Option<Instant>) {
        self.timers.set(TimerKey::Task(id), at);
    }

    fn mark_dirty(&mut self, now: Instant) {
        self.changes += 1;
        self.revision += 1;
        if self.policy.checkpoint_interval.is_some() {
            let soon = later(now, self.policy.checkpoint_coalesce);
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

    /// Records a leader as gone: it no longer names this task, and it is not checkpointed.
    fn forget_leader(&mut self, id: TaskId) -> Option<u32> {
        let pid = self.task_mut(id).pid.take();
        if let Some(pid) = pid {
            self.by_pid.remove(&pid);
        }
        pid
    }

    fn record_exit(&mut self, now: Instant, id: TaskId, pid: u32, status: crate::ExitStatus) {
        let t = self.task_mut(id);
        let uptime = t.started_at.map_or(std::time::Duration::ZERO, |s| {
            now.saturating_duration_since(s)
        });
        t.last_exit = Some(LastExit {
            status,
            at: now,
            uptime,
            pid,
        });
    }
}
