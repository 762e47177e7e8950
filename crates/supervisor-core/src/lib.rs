//! The supervisor's pure core: every decision, no IO.
//!
//! # Layout
//! - [`spec`]: the task list (JSON) → validated [`TaskSpec`]s, reporting every problem at once.
//! - [`controls`]: the per-task controls (`restart`, `stop_signal`, `stop_timeout`, `autostart`).
//! - [`limits`]: the `limits` field (memory and cpu), validated; the shell enforces it.
//! - [`ports`]: `--port-range` parsing and the round-robin [`PortAllocator`].
//! - [`backoff`]: exponential, jittered restart delays from a seeded generator.
//! - [`status`]: how a process ended ([`ExitStatus`]) and signal names.
//! - [`task`]: the per-task record, its phases and its [`TaskState`].
//! - [`core`]: the state machine driving all tasks ([`Core`]), split along its sub-machines.
//! - [`checkpoint`]: the versioned dump document written by `--dumpfile`.
//!
//! # Theory of operation
//! The core follows the shape of a sans-IO protocol engine. The shell (the `supervisor` crate)
//! feeds it what happened ([`Core::handle`] with an [`Input`]: a spawn succeeded or failed, a
//! leader died and whether its instance left processes behind, a port probe's answer, a group
//! is empty or not, what recovery and the final sweep found) and asks it what to do next
//! ([`Core::poll_action`] → [`Action`]: spawn this argv on this port, signal this group, check
//! it, probe this port, release it, write a checkpoint, report this event) and when to wake it
//! up ([`Core::poll_timeout`]). Time is always passed in as `now`; the core never reads a
//! clock, never touches a file, never sends a signal.
//!
//! Every decision about *what gets killed* is made here: the remains of a dead instance, a
//! stopping task's group, which found leftovers are provably ours at start, the strays of the
//! final sweep. The shell reports facts (a cgroup is populated, a dump entry's start time
//! matches, a process carries a marker) and carries out the actions. That makes every policy
//! (immediate first restart, yo-yo detection and backoff, the spawn-rate cap, stop escalation,
//! recovery) testable with a hand-driven clock, thousands of scenarios in milliseconds,
//! deterministically (jitter comes from a seeded generator).

pub mod backoff;
pub mod checkpoint;
pub mod checks;
pub mod controls;
pub mod core;
pub mod limits;
pub mod ports;
pub mod spec;
pub mod status;
pub mod task;

pub use crate::core::apply::Plan;
pub use crate::core::io::{
    Action, EntryFacts, Event, Evidence, Found, Group, GroupKey, Input, LeftAlone, ProcessFacts,
    Sig, Writer,
};
pub use crate::core::policy::{MAX_SETTING, Policy, later};
pub use crate::core::readiness::CheckTarget;
pub use crate::core::{ControlError, Core};
pub use backoff::{Backoff, SplitMix64};
pub use checkpoint::{Checkpoint, CheckpointError, SupervisorIdentity, TaskRecord};
pub use controls::RestartPolicy;
pub use limits::Limits;
pub use ports::{PortAllocator, PortRange, PortRangeError};
pub use spec::{
    ConfigError, ConfigErrors, PORT_PLACEHOLDER, TaskSpec, parse_task, parse_task_list,
};
pub use status::{ExitStatus, signal_name};
pub use task::{BackoffReason, LastExit, PhaseKind, StopReason, TaskId, TaskState, TaskView};
