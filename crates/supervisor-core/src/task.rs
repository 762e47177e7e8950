//! One supervised task: its spec, where it is in its life, and what it has been through.
use crate::spec::TaskSpec;
use crate::status::ExitStatus;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A task's handle inside one [`crate::Core`]; stable for the task's life, never reused while
/// the task exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TaskId(pub usize);

/// The state a person (or the API) sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a spawn slot, or being spawned.
    Starting,
    Running,
    /// Dead, or failed to spawn, or waiting for a free port; restarts at `retry_at`.
    Backoff,
    /// Signalled to stop; waiting for its process group to be empty.
    Stopping,
    /// Stopped on request; stays down until started.
    Stopped,
}

impl TaskState {
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Backoff => "backoff",
            TaskState::Stopping => "stopping",
            TaskState::Stopped => "stopped",
        }
    }
}

/// Why a task is waiting in [`TaskState::Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffReason {
    Crashed,
    SpawnFailed,
    NoFreePort,
}

/// Why a stop was started, and so what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `stop`: stay down.
    Requested,
    /// `restart`: start again once the group is gone.
    Restart,
    /// `remove`: forget the task once the group is gone.
    Remove,
    /// The supervisor is shutting down.
    Shutdown,
}

/// The last way the task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastExit {
    pub status: ExitStatus,
    pub at: Instant,
    pub uptime: Duration,
    pub pid: u32,
}

/// Internal phase, finer than [`TaskState`]. Every change goes through
/// `Core::set_phase`, which checks it against the transition table (`transitions.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Phase {
    /// Down, and staying down until started.
    Stopped,
    /// Waiting for groups that must be gone before it may start again (the remains of its dead
    /// instance, leftovers recovery found of it); `then` says what comes next.
    Held {
        then: Then,
    },
    /// In the spawn queue, waiting for a token of the host-wide rate cap.
    Queued,
    /// A `Spawn` action is out; waiting for `Spawned`, `SpawnFailed` or `PortBusy`. `stop` is a
    /// stop (or restart, remove, shutdown) requested meanwhile: it is carried out once the answer
    /// arrives, because until then the process may exist and nobody else would stop it.
    Spawning {
        stop: Option<StopReason>,
    },
    Running,
    /// Died soon after its start, holding a port: waiting for the bind probe that tells whether
    /// the port was taken by someone else (then the death is not the program's fault).
    Probing {
        stop: Option<StopReason>,
    },
    Backoff {
        reason: BackoffReason,
        retry_at: Instant,
    },
    /// Its instance's group is being stopped (a stop job runs for it).
    Stopping {
        reason: StopReason,
    },
}

/// What a held task does once nothing holds it any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Start (recovery leftovers were in the way).
    Start,
    /// Decide about the death that left the remains (restart at once, probe, back off).
    AfterDeath,
    /// A stop was asked meanwhile: carry it out.
    Stop(StopReason),
}

/// [`Phase`] without its data: the rows and columns of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PhaseKind {
    Stopped,
    Held,
    Queued,
    Spawning,
    Running,
    Probing,
    Backoff,
    Stopping,
}

impl PhaseKind {
    pub const ALL: [PhaseKind; 8] = [
        PhaseKind::Stopped,
        PhaseKind::Held,
        PhaseKind::Queued,
        PhaseKind::Spawning,
        PhaseKind::Running,
        PhaseKind::Probing,
        PhaseKind::Backoff,
        PhaseKind::Stopping,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PhaseKind::Stopped => "Stopped",
            PhaseKind::Held => "Held",
            PhaseKind::Queued => "Queued",
            PhaseKind::Spawning => "Spawning",
            PhaseKind::Running => "Running",
            PhaseKind::Probing => "Probing",
            PhaseKind::Backoff => "Backoff",
            PhaseKind::Stopping => "Stopping",
        }
    }
}

impl Phase {
    pub(crate) fn kind(&self) -> PhaseKind {
        match self {
            Phase::Stopped => PhaseKind::Stopped,
            Phase::Held { .. } => PhaseKind::Held,
            Phase::Queued => PhaseKind::Queued,
            Phase::Spawning { .. } => PhaseKind::Spawning,
            Phase::Running => PhaseKind::Running,
            Phase::Probing { .. } => PhaseKind::Probing,
            Phase::Backoff { .. } => PhaseKind::Backoff,
            Phase::Stopping { .. } => PhaseKind::Stopping,
        }
    }
}

/// Yo-yo bookkeeping: when it started and how log lines are rate-limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Yoyo {
    pub since: Instant,
}

/// Rate limit for a task's repetitive log lines: one line, then at most one per interval with
/// the count of what was held back.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct LogGate {
    pub next: Option<Instant>,
    pub suppressed: u32,
}

impl LogGate {
    /// True when a line may be logged now; otherwise counts it as suppressed.
    pub fn allow(&mut self, now: Instant, every: Duration) -> Option<u32> {
        match self.next {
            Some(t) if now < t => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.next = Some(crate::core::policy::later(now, every));
                let n = self.suppressed;
                self.suppressed = 0;
                Some(n)
            }
        }
    }

    pub fn reset(&mut self) {
        *self = LogGate::default();
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    /// Stable identity: kept across restarts, replacements and (through the dump) supervisor
    /// restarts; the name is what a person uses, the uid what a scheduler can rely on.
    pub uid: String,
    pub spec: Arc<TaskSpec>,
    /// The spec a replacement brings, taken on once the current instance is gone.
    pub next_spec: Option<Arc<TaskSpec>>,
    pub phase: Phase,
    /// Set at every spawn attempt from a core-wide counter (so it grows, but not by one per
    /// task, and is never shared by two spawns); inputs about other generations are ignored.
    pub generation: u64,
    /// The leader of the current instance, while it lives.
    pub pid: Option<u32>,
    /// `/proc/PID/stat` start time (clock ticks since boot) of `pid`, as the shell read it.
    pub start_ticks: Option<u64>,
    /// The port of the current instance; kept after a death until the death is judged.
    pub port: Option<u16>,
    pub started_at: Option<Instant>,
    /// When the last unexpected death was seen: restart latency is measured from here.
    pub died_at: Option<Instant>,
    /// Deaths followed by a restart, plus manual restarts.
    pub restarts: u64,
    /// Consecutive deaths within `min_uptime` of a start.
    pub quick_deaths: u32,
    /// Consecutive deaths right after start that a probe blamed on a taken port.
    pub port_conflicts: u32,
    pub spawn_failures: u32,
    pub yoyo: Option<Yoyo>,
    pub log_gate: LogGate,
    pub last_exit: Option<LastExit>,
    pub last_error: Option<String>,
    /// Stop jobs (dead instances' remains, recovery leftovers) that must finish before this
    /// task may start again; non-zero only while `Held`.
    pub remnants: u32,
    /// Not given a phase yet: its first phase change is checked as one from "no task".
    pub fresh: bool,
    /// The running instance passed its ready check (or has none).
    pub ready: bool,
    /// Health check failures in a row of the running instance.
    pub health_failures: u32,
    /// The port of the last instance, for `port: sticky`.
    pub last_port: Option<u16>,
    /// Start-first replacement: the old instance, running until the new one is ready.
    pub outgoing: Option<Outgoing>,
}

/// The old instance of a start-first replacement.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub pid: u32,
    pub generation: u64,
    pub port: Option<u16>,
    pub spec: Arc<TaskSpec>,
}

impl Task {
    pub fn new(uid: String, spec: Arc<TaskSpec>) -> Self {
        Task {
            uid,
            spec,
            next_spec: None,
            phase: Phase::Stopped,
            generation: 0,
            pid: None,
            start_ticks: None,
            port: None,
            started_at: None,
            died_at: None,
            restarts: 0,
            quick_deaths: 0,
            port_conflicts: 0,
            spawn_failures: 0,
            yoyo: None,
            log_gate: LogGate::default(),
            last_exit: None,
            last_error: None,
            remnants: 0,
            fresh: true,
            ready: false,
            health_failures: 0,
            last_port: None,
            outgoing: None,
        }
    }

    pub fn state(&self) -> TaskState {
        match self.phase {
            Phase::Held {
                then: Then::Stop(_),
            } => TaskState::Stopping,
            Phase::Queued
            | Phase::Spawning { stop: None }
            | Phase::Held { .. }
            | Phase::Probing { stop: None } => TaskState::Starting,
            Phase::Spawning { stop: Some(_) } | Phase::Probing { stop: Some(_) } => {
                TaskState::Stopping
            }
            Phase::Running => TaskState::Running,
            Phase::Backoff { .. } => TaskState::Backoff,
            Phase::Stopping { .. } => TaskState::Stopping,
            Phase::Stopped => TaskState::Stopped,
        }
    }
}

/// A read-only snapshot of one task, for the API, metrics and logs.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub id: TaskId,
    /// See `Task::uid`.
    pub uid: String,
    pub spec: Arc<TaskSpec>,
    pub state: TaskState,
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub port: Option<u16>,
    pub generation: u64,
    pub restarts: u64,
    pub started_at: Option<Instant>,
    pub last_exit: Option<LastExit>,
    pub last_error: Option<String>,
    pub backoff_reason: Option<BackoffReason>,
    pub retry_at: Option<Instant>,
    pub yoyo_since: Option<Instant>,
    pub quick_deaths: u32,
    /// Groups (a dead instance's remains, recovery leftovers) it waits for before starting.
    pub waiting_for: u32,
    /// Running and past its ready check (or without one).
    pub ready: bool,
    /// Tasks it waits for (`depends_on`) that are not ready yet, while it waits to start.
    pub waiting_on: Vec<String>,
    /// Health check failures in a row.
    pub health_failures: u32,
}

impl TaskView {
    /// argv as last run (placeholders replaced). Built on demand: a snapshot of 10 000 views
    /// should not copy 10 000 command lines.
    pub fn argv(&self) -> Vec<String> {
        self.spec.argv_for_port(self.port)
    }
}
