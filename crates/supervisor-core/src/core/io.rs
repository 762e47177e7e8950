//! What the core is told ([`Input`]), what it asks for ([`Action`]), and what it tells a person
//! ([`Event`]).
use crate::spec::TaskSpec;
use crate::status::ExitStatus;
use crate::task::{BackoffReason, StopReason, TaskId};
use std::sync::Arc;
use std::time::Duration;

/// A set of processes the core asks the shell to signal or to watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Group {
    /// Everything of one instance of a task: its cgroup (`NAME` or `NAME@N`), or, where there
    /// are no cgroups, the process group of `leader` (while the shell can prove it is still the
    /// same group) and the processes that carry the instance's markers.
    Instance {
        name: String,
        generation: u64,
        leader: Option<u32>,
    },
    /// Something recovery or the final sweep found, by the handle the shell gave it.
    Found { id: u64 },
}

/// The identity of a [`Group`]: generations and found handles are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Instance(u64),
    Found(u64),
}

impl Group {
    pub fn key(&self) -> GroupKey {
        match self {
            Group::Instance { generation, .. } => GroupKey::Instance(*generation),
            Group::Found { id } => GroupKey::Found(*id),
        }
    }
}

/// A signal the core asks the shell to send (TERM is followed by CONT, for stopped processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
    /// A task's own stop signal (`stop_signal`), by number.
    Other(i32),
}

/// What happened, as the shell saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A ready or health probe of instance `generation` of `task` came back.
    Checked {
        task: TaskId,
        generation: u64,
        kind: crate::checks::CheckKind,
        ok: bool,
        /// Why it failed, for the log and status (empty when ok).
        detail: String,
    },
    /// The `Spawn` of `generation` produced process `pid` (its own session and group leader).
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
    /// A task's leader died; the shell has looked at it but not reaped it yet. `remains`: other
    /// processes of its instance are still alive (or the shell cannot tell that none is). The
    /// shell must report `Spawned` for a pid before its `Exited`: an `Exited` for a pid the
    /// core does not know is ignored.
    Exited {
        pid: u32,
        status: ExitStatus,
        remains: bool,
    },
    /// Answer to [`Action::ProbePort`].
    PortProbed {
        task: TaskId,
        generation: u64,
        port: u16,
        free: bool,
    },
    /// Answer to [`Action::CheckGroup`]: whether any process of the group is still alive.
    GroupStatus { group: GroupKey, empty: bool },
    /// Answer to [`Action::Sweep`]: what is still ours after every task stopped.
    Swept { found: Vec<Found> },
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Probe `port` (if any), then start `argv` with the spec's files, env and cwd, in a new
    /// session and in the instance's own group (a cgroup of its own where there are
    /// cgroups), with `PORT` set; answer with `Spawned`, `SpawnFailed` or `PortBusy`.
    Spawn {
        task: TaskId,
        generation: u64,
        spec: Arc<TaskSpec>,
        argv: Vec<String>,
        port: Option<u16>,
    },
    /// Send `sig` to every process of `group`. `name` is for messages.
    Signal {
        group: Group,
        name: String,
        sig: Sig,
    },
    /// Find out whether any process of `group` is alive; answer `GroupStatus`.
    CheckGroup { group: Group },
    /// Bind-probe `port` on loopback; answer `PortProbed`.
    ProbePort {
        task: TaskId,
        generation: u64,
        port: u16,
    },
    /// `group` is over: the shell forgets it (removes its cgroup, closes what it held open).
    Release { group: Group },
    /// Every task is stopped at shutdown: look for anything of ours still alive (marked
    /// processes, populated cgroups) and answer `Swept`.
    Sweep,
    /// Write the checkpoint now (`Core::checkpoint_records`), then call `checkpoint_written`.
    Checkpoint,
    /// Report this (log line, event stream, metrics).
    Event(Event),
}

/// Something recovery (or the final sweep) found that may be a leftover of ours. The shell
/// reports what it observed; the core decides (see `recovery.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The shell's handle: [`Group::Found`] actions name it.
    pub id: u64,
    /// The task it belongs to, when something says (a cgroup's name, a dump entry, a marker).
    pub task: Option<String>,
    pub generation: Option<u64>,
    /// A process to name in messages (a dump entry's pid, a marked process).
    pub pid: Option<u32>,
    pub evidence: Evidence,
}

/// Why something found might be ours.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// A populated cgroup in this instance's own folder. Only a supervisor of this instance
    /// creates those, and this one now holds the instance's dump lock: its writer is gone.
    OwnCgroup,
    /// A populated cgroup in the folder of the instance a dump names, which is not ours (the
    /// dump was copied or moved here).
    OtherCgroup { writer: Writer },
    /// A live process a dump entry names.
    DumpEntry {
        entry: EntryFacts,
        process: ProcessFacts,
        writer: Writer,
    },
    /// A process carrying this instance's marker.
    Marked { process: ProcessFacts },
}

/// The supervisor that wrote a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Writer {
    pub pid: u32,
    /// Its pid and start time still match a live process, or its dump lock is held.
    pub alive: bool,
}

/// What the shell checked of a dump entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryFacts {
    pub recorded_in_this_boot: bool,
    /// A process with the recorded pid exists (and is not a zombie).
    pub alive: bool,
    /// The entry records a start time (without one nothing proves the process is the same).
    pub has_start_time: bool,
    /// The recorded start time matches the live process's.
    pub start_matches: bool,
    /// The process leads its own session and group, as every task leader does.
    pub leads_session: bool,
    /// Its environment carries the marker of the instance that wrote the dump.
    pub marked: bool,
}

/// What the shell checked of a found process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessFacts {
    /// It is this supervisor, one of its ancestors, or in its session or process group.
    pub protected: bool,
    /// Its parent is a live supervisor (another one: ours has no children yet).
    pub parent_is_live_supervisor: bool,
    /// It is inside a cgroup reported in the same batch (stopping that stops it).
    pub in_found_cgroup: bool,
}

/// Why something found was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeftAlone {
    OtherBoot,
    Gone,
    NoStartTime,
    PidReused,
    Protected,
    NotALeader,
    Unmarked,
    WriterAlive,
    ChildOfLiveSupervisor,
}

impl LeftAlone {
    pub fn as_str(&self) -> &'static str {
        match self {
            LeftAlone::OtherBoot => "recorded in another boot",
            LeftAlone::Gone => "already gone",
            LeftAlone::NoStartTime => {
                "no start time recorded: nothing proves it is the same process"
            }
            LeftAlone::PidReused => "pid reused: it now belongs to another process",
            LeftAlone::Protected => "it is this supervisor, an ancestor, or in its session",
            LeftAlone::NotALeader => "it does not lead its own session, as every task leader does",
            LeftAlone::Unmarked => "it does not carry the marker of the dump's supervisor",
            LeftAlone::WriterAlive => "the supervisor that wrote the dump is still running",
            LeftAlone::ChildOfLiveSupervisor => "its parent is a running supervisor",
        }
    }
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
    /// The leader died and other processes of its instance live on: they are killed before
    /// anything else happens (a replacement would find them holding its port or its files).
    RemainsKilled {
        task: TaskId,
        name: String,
        generation: u64,
    },
    /// The next start is delayed.
    Backoff {
        task: TaskId,
        name: String,
        delay: Duration,
        reason: BackoffReason,
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
    /// A group did not empty within its grace period: SIGKILL. `task` is `None` for leftovers.
    StopEscalated {
        task: Option<TaskId>,
        name: String,
        after: Duration,
    },
    /// Processes of a group survived SIGKILL for the kill timeout; the core stops waiting.
    StopFailed {
        task: Option<TaskId>,
        name: String,
    },
    Stopped {
        task: TaskId,
        name: String,
    },
    /// The running instance passed its ready check (or has none).
    Ready {
        task: TaskId,
        name: String,
        generation: u64,
    },
    /// A health probe failed; `failures` in a row so far, `restart` when that is the limit.
    CheckFailed {
        task: TaskId,
        name: String,
        kind: crate::checks::CheckKind,
        failures: u32,
        detail: String,
        restart: bool,
    },
    /// An apply gave the task another spec: its instance (if any) is replaced.
    Replacing {
        task: TaskId,
        name: String,
    },
    /// Its process is gone and its `restart` policy says not to start it again.
    NotRestarted {
        task: TaskId,
        name: String,
        policy: crate::controls::RestartPolicy,
    },
    Removed {
        task: TaskId,
        name: String,
    },
    /// Recovery (or the final sweep) stops something found. `via`: what proved it ours.
    LeftoverStopping {
        name: Option<String>,
        generation: Option<u64>,
        pid: Option<u32>,
        via: &'static str,
        /// The next start of task `name` waits until it is gone.
        blocks_task: bool,
    },
    /// A leftover is gone (or survived SIGKILL: `failed`).
    LeftoverStopped {
        name: Option<String>,
        failed: bool,
        took: Duration,
    },
    /// Found things left alone, one event per reason, naming the tasks and pids.
    LeftAlone {
        reason: LeftAlone,
        tasks: Vec<String>,
        pids: Vec<u32>,
        /// The pid of the dump's writer, when `reason` is [`LeftAlone::WriterAlive`].
        writer: Option<u32>,
    },
    /// Every leftover recovery found is gone.
    RecoveryFinished {
        stopped: usize,
        failed: usize,
        took: Duration,
    },
    /// A transition the state machine does not allow was attempted (a bug; debug builds
    /// panic instead). Reported so that it is seen in production.
    Invalid {
        name: String,
        what: String,
    },
}
