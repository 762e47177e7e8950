//! Requests from the API (and so from `supervisor ctl` and an ubervisor) to the event loop, and
//! the JSON shapes they answer with.
//!
//! The API never touches the core: it sends a [`Request`] with a reply channel, and the loop
//! answers between two events. One owner, no locks.
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use supervisor_core::{BackoffReason, ConfigErrors, ControlError, ExitStatus, TaskState, TaskView};
use tokio::sync::oneshot;

/// Why the supervisor stopped by itself on a configuration found unusable after start
/// (exit 2, like a bad flag).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FatalConfig(pub String);

/// What the API can ask.
#[derive(Debug)]
pub enum Request {
    /// Everything `GET /health`, `GET /tasks` and `GET /metrics` need, in one [`Snapshot`].
    Snapshot,
    GetTask(String),
    Start(String),
    Stop(String),
    Restart(String),
    Remove(String),
    /// A task object as in the task list, validated like one.
    Add(serde_json::Value),
    /// `PUT /tasks` (a whole task list, `whole`) or `PUT /tasks/{name}` (one task object):
    /// converge on it, or with `dry_run` only say what that would do.
    Apply {
        body: ApplyBody,
        dry_run: bool,
    },
    /// For the probe thread: which ready and health probes are wanted now.
    CheckTargets,
    /// A part of the supervisor found its configuration unusable after start (the node
    /// agent: `--node` taken by another live process): stop every task and exit 2.
    Fatal(String),
    /// A probe's result.
    Checked {
        task: supervisor_core::TaskId,
        generation: u64,
        kind: supervisor_core::checks::CheckKind,
        ok: bool,
        detail: String,
    },
}

/// What `PUT` brought.
#[derive(Debug)]
pub enum ApplyBody {
    /// A whole list already parsed and checked (by the API thread, with the same port range).
    Checked(Vec<supervisor_core::TaskSpec>),
    /// One task object, for the task the path names.
    One {
        name: String,
        task: serde_json::Value,
    },
    /// Cluster mode: the whole set the ubervisor assigned to this node (each object with its
    /// `name`); tasks of an earlier assignment that are not in it are removed, node-local ones
    /// are left alone.
    Cluster(Vec<serde_json::Value>),
}

/// The loop's answer.
#[derive(Debug)]
pub enum Reply {
    Snapshot(Box<Snapshot>),
    Task(Box<TaskJson>),
    Done,
    Added(Box<TaskJson>),
    Applied(supervisor_core::Plan),
    CheckTargets(Vec<supervisor_core::CheckTarget>),
    Error(ApiError),
}

/// The loop's state at one moment, copied out for the read-only requests. Turning it into task
/// JSON, health or metrics text (tens of milliseconds at 10 000 tasks) happens on the API's own
/// thread: the loop only copies, and a restart never waits behind a scrape.
#[derive(Debug)]
pub struct Snapshot {
    pub views: Vec<TaskView>,
    /// Where each view's usage is read (same order; `None` without a live leader).
    pub usage: Vec<Option<crate::usage::Source>>,
    /// The core's revision: equal revisions, equal task state (`GET /state`).
    pub revision: u64,
    pub now: Instant,
    pub clock: Clock,
    /// When the supervisor started.
    pub started: Instant,
    pub instance: String,
    pub shutting_down: bool,
    /// Leftovers of a crashed predecessor are still being stopped.
    pub recovering: bool,
    /// How tasks are tracked: cgroups, or process groups (and why).
    pub tracking: crate::tracking::Mode,
    pub checkpoint: CheckpointHealth,
    /// Cluster mode: assigned tasks this node refused, with the supervisor's reason.
    pub refused: Vec<(String, String)>,
}

impl Snapshot {
    /// `GET /tasks`.
    pub fn tasks(&self) -> Vec<TaskJson> {
        let usage = self.measure_usage();
        self.views
            .iter()
            .zip(usage)
            .map(|(v, u)| {
                let mut t = TaskJson::from_view(v, self.now, &self.clock);
                t.set_usage(u);
                t
            })
            .collect()
    }

    /// Each view's CPU time and memory, read now (file reads: call it off the loop).
    pub fn measure_usage(&self) -> Vec<Option<crate::usage::Usage>> {
        let mut u = crate::usage::lookup(&self.usage);
        u.resize(self.views.len(), None);
        u
    }

    /// `GET /health`: degraded while a task is in yo-yo mode or cannot be started, while the
    /// checkpoint fails, or while shutting down.
    pub fn health(&self) -> Health {
        let mut reasons = Vec::new();
        for v in &self.views {
            if v.yoyo_since.is_some() {
                reasons.push(format!(
                    "task {} is in yo-yo mode ({} quick deaths in a row)",
                    v.spec.name, v.quick_deaths
                ));
            } else if v.backoff_reason == Some(BackoffReason::SpawnFailed) {
                reasons.push(format!(
                    "task {} cannot be started: {}",
                    v.spec.name,
                    v.last_error.as_deref().unwrap_or("unknown error")
                ));
            } else if v.backoff_reason == Some(BackoffReason::NoFreePort) {
                reasons.push(format!("task {} is waiting for a free port", v.spec.name));
            }
        }
        if let Some(e) = &self.checkpoint.last_error {
            reasons.push(format!("checkpoint failing: {e}"));
        }
        let log = crate::logging::stats();
        if log.dropping {
            reasons.push(format!(
                "log lines are being dropped: the log cannot be written as fast as they come ({} dropped so far)",
                log.dropped
            ));
        }
        if self.shutting_down {
            reasons.push("shutting down".into());
        }
        let more = reasons.len().saturating_sub(20);
        reasons.truncate(20);
        if more > 0 {
            reasons.push(format!("and {more} more"));
        }
        Health {
            status: if reasons.is_empty() { "ok" } else { "degraded" },
            reasons,
            pid: std::process::id(),
            start_time: crate::checkpoint_io::own_start_ticks(),
            instance: self.instance.clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self
                .now
                .saturating_duration_since(self.started)
                .as_secs_f64(),
            shutting_down: self.shutting_down,
            recovering: self.recovering,
            tracking: TrackingJson::of(&self.tracking),
            tasks: Counts::of(&self.views),
            checkpoint: self.checkpoint.clone(),
            log: LogHealth {
                dropped_lines: log.dropped,
                dropping: log.dropping,
                queued_lines: log.queued,
            },
        }
    }
}

/// A request and where to send its reply.
#[derive(Debug)]
pub struct Envelope {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// Why a request failed, with the HTTP status it maps to.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    pub error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// On a 412 (wrong instance): who answered instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<String>,
}

/// One validation problem of an added task.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            problems: Vec::new(),
            instance: None,
            pid: None,
            dump: None,
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match &e {
            ControlError::NotFound(_) => 404,
            ControlError::Conflict { .. } | ControlError::Exists(_) => 409,
            ControlError::NoPortRange { .. } => 400,
            ControlError::ShuttingDown => 503,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ConfigErrors> for ApiError {
    fn from(e: ConfigErrors) -> Self {
        let conflict = e.0.iter().any(|p| p.message.contains("already exists"));
        let problems: Vec<Problem> =
            e.0.iter()
                .map(|p| Problem {
                    field: p.field.clone(),
                    message: p.to_string(),
                })
                .collect();
        let first = problems
            .first()
            .map(|p| p.message.clone())
            .unwrap_or_default();
        ApiError {
            problems,
            ..ApiError::new(
                if conflict { 409 } else { 400 },
                format!("invalid task: {first}"),
            )
        }
    }
}

/// Converts the loop's monotonic instants to wall-clock time for people.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub inst: Instant,
    pub sys: SystemTime,
}

impl Clock {
    pub fn now() -> Self {
        Clock {
            inst: Instant::now(),
            sys: SystemTime::now(),
        }
    }

    pub fn unix_ms(&self, t: Instant) -> u64 {
        let sys = if t >= self.inst {
            self.sys + (t - self.inst)
        } else {
            self.sys - (self.inst - t)
        };
        sys.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// How a process last ended.
#[derive(Debug, Clone, Serialize)]
pub struct ExitJson {
    pub pid: u32,
    pub status: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at_unix_ms: u64,
    pub uptime_secs: f64,
}

/// Yo-yo details.
#[derive(Debug, Clone, Serialize)]
pub struct YoyoJson {
    pub since_unix_ms: u64,
    pub quick_deaths: u32,
    pub next_retry_in_secs: Option<f64>,
}

/// Backoff details.
#[derive(Debug, Clone, Serialize)]
pub struct BackoffJson {
    pub reason: BackoffReason,
    pub retry_in_secs: f64,
}

/// One task, as `GET /tasks` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskJson {
    pub name: String,
    /// Stable across restarts, replacements and supervisor restarts.
    pub uid: String,
    /// Running and past its ready check (or without one).
    pub ready: bool,
    /// `depends_on` tasks not ready yet, while it waits to start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    /// Health check failures in a row.
    pub health_failures: u32,
    pub state: TaskState,
    pub argv: Vec<String>,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    pub generation: u64,
    pub restarts: u64,
    pub started_at_unix_ms: Option<u64>,
    pub uptime_secs: Option<f64>,
    pub last_exit: Option<ExitJson>,
    pub last_error: Option<String>,
    pub backoff: Option<BackoffJson>,
    pub yoyo: Option<YoyoJson>,
    /// Why the task is not running (spawn error, last exit, waiting for a port, yo-yo and its
    /// next retry); `null` while it runs normally.
    pub reason: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    /// CPU time (user + system) of the running instance, its processes together; `null`
    /// without one.
    pub cpu_seconds: Option<f64>,
    /// Memory of the running instance: its cgroup's `memory.current`, else the resident set
    /// of its processes; `null` without one.
    pub memory_bytes: Option<u64>,
    /// Where the loop said the usage is read; filled in on the API thread.
    #[serde(skip)]
    pub usage_source: Option<crate::usage::Source>,
}

impl TaskJson {
    pub fn set_usage(&mut self, u: Option<crate::usage::Usage>) {
        self.cpu_seconds = u.map(|u| u.cpu_seconds);
        self.memory_bytes = u.map(|u| u.memory_bytes);
    }

    pub fn from_view(v: &TaskView, now: Instant, clock: &Clock) -> Self {
        let running = v.state == TaskState::Running;
        let retry_in = v
            .retry_at
            .map(|t| t.saturating_duration_since(now).as_secs_f64());
        TaskJson {
            name: v.spec.name.clone(),
            uid: v.uid.clone(),
            ready: v.ready,
            waiting_on: v.waiting_on.clone(),
            health_failures: v.health_failures,
            state: v.state,
            argv: v.argv(),
            pid: v.pid,
            port: v.port,
            generation: v.generation,
            restarts: v.restarts,
            started_at_unix_ms: v.started_at.filter(|_| running).map(|t| clock.unix_ms(t)),
            uptime_secs: v
                .started_at
                .filter(|_| running)
                .map(|t| now.saturating_duration_since(t).as_secs_f64()),
            last_exit: v.last_exit.map(|e| {
                let (code, signal) = match e.status {
                    ExitStatus::Code { code } => (Some(code), None),
                    ExitStatus::Signal { signal, .. } => (None, Some(signal)),
                };
                ExitJson {
                    pid: e.pid,
                    status: e.status.to_string(),
                    code,
                    signal,
                    at_unix_ms: clock.unix_ms(e.at),
                    uptime_secs: e.uptime.as_secs_f64(),
                }
            }),
            last_error: v.last_error.clone(),
            backoff: v.backoff_reason.map(|reason| BackoffJson {
                reason,
                retry_in_secs: retry_in.unwrap_or(0.0),
            }),
            yoyo: v.yoyo_since.map(|since| YoyoJson {
                since_unix_ms: clock.unix_ms(since),
                quick_deaths: v.quick_deaths,
                next_retry_in_secs: retry_in,
            }),
            reason: crate::reason::reason(v, now),
            output: v.spec.output.clone(),
            error: v.spec.error.clone(),
            cpu_seconds: None,
            memory_bytes: None,
            usage_source: None,
        }
    }
}

/// How tasks are tracked, in `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct TrackingJson {
    /// `cgroup` or `process-group`.
    pub mode: &'static str,
    /// The folder of the task cgroups, in cgroup mode.
    pub cgroup: Option<String>,
    /// Why cgroups are not used, in process-group mode.
    pub reason: Option<String>,
}

impl TrackingJson {
    pub fn of(m: &crate::tracking::Mode) -> TrackingJson {
        use crate::tracking::Mode;
        TrackingJson {
            mode: m.name(),
            cgroup: match m {
                Mode::Cgroup { root } => Some(root.display().to_string()),
                Mode::ProcessGroup { .. } => None,
            },
            reason: match m {
                Mode::ProcessGroup { reason } => Some(reason.clone()),
                Mode::Cgroup { .. } => None,
            },
        }
    }
}

/// Task counts by state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub starting: usize,
    pub running: usize,
    pub backoff: usize,
    pub stopping: usize,
    pub stopped: usize,
    pub yoyo: usize,
}

/// Checkpoint health.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointHealth {
    pub enabled: bool,
    pub path: Option<String>,
    pub last_age_secs: Option<f64>,
    pub last_error: Option<String>,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// Why not ok, one sentence each.
    pub reasons: Vec<String>,
    pub pid: u32,
    /// `/proc/PID/stat` start time of `pid` (clock ticks after boot): with it, `supervisor ctl
    /// pid` checks that the pid still names this process.
    pub start_time: u64,
    pub instance: String,
    pub version: &'static str,
    pub uptime_secs: f64,
    pub shutting_down: bool,
    /// Leftovers of a crashed predecessor are still being stopped.
    pub recovering: bool,
    pub tracking: TrackingJson,
    pub tasks: Counts,
    pub checkpoint: CheckpointHealth,
    pub log: LogHealth,
}

/// The supervisor's own log.
#[derive(Debug, Clone, Serialize)]
pub struct LogHealth {
    /// Lines dropped since start because the log sink did not keep up (or refused them).
    pub dropped_lines: u64,
    /// A line was dropped within the last 10 s (the health is degraded meanwhile).
    pub dropping: bool,
    pub queued_lines: usize,
}

impl Counts {
    pub fn of(views: &[TaskView]) -> Counts {
        let mut c = Counts {
            total: views.len(),
            ..Counts::default()
        };
        for v in views {
            match v.state {
                TaskState::Starting => c.starting += 1,
                TaskState::Running => c.running += 1,
                TaskState::Backoff => c.backoff += 1,
                TaskState::Stopping => c.stopping += 1,
                TaskState::Stopped => c.stopped += 1,
            }
            if v.yoyo_since.is_some() {
                c.yoyo += 1;
            }
        }
        c
    }
}

/// Seconds as f64, for JSON.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
