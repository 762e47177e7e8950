//! The supervisor's pure core: every decision, no IO.
//!
//! # Layout
//! - [`spec`]: the task list (JSON) → validated [`TaskSpec`]s, reporting every problem at once.
//! - [`ports`]: `--port-range` parsing and the round-robin [`PortAllocator`].
//! - [`backoff`]: exponential, jittered restart delays from a seeded generator.
//! - [`status`]: how a process ended ([`ExitStatus`]) and signal names.
//! - [`task`]: the per-task record and its [`TaskState`].
//! - [`core`]: the state machine driving all tasks: [`Core`].
//! - [`checkpoint`]: the versioned dump document written by `--dumpfile`.
//!
//! # Theory of operation
//! The core follows the shape of a sans-IO protocol engine. The shell (the `supervisor` crate)
//! feeds it what happened ([`Core::handle`] with an [`Input`]: a spawn succeeded or failed, a
//! process exited, a port was busy, a process group is gone) and asks it what to do next
//! ([`Core::poll_action`] → [`Action`]: spawn this argv on this port, signal this group, write a
//! checkpoint, report this event) and when to wake it up ([`Core::poll_timeout`]). Time is always
//! passed in as `now`; the core never reads a clock, never touches a file, never sends a signal.
//! That makes every policy (immediate first restart, yo-yo detection and backoff, the spawn-rate
//! cap, stop escalation) testable with a hand-driven clock, thousands of scenarios in
//! milliseconds, deterministically (jitter comes from a seeded generator).

pub mod backoff;
pub mod checkpoint;
pub mod core;
pub mod ports;
pub mod spec;
pub mod status;
pub mod task;

pub use crate::core::{Action, ControlError, Core, Event, Input, Policy, Sig, StopReason};
pub use backoff::{Backoff, SplitMix64};
pub use checkpoint::{Checkpoint, CheckpointError, SupervisorIdentity, TaskRecord};
pub use ports::{PortAllocator, PortRange, PortRangeError};
pub use spec::{ConfigError, ConfigErrors, TaskSpec, parse_task, parse_task_list};
pub use status::{ExitStatus, signal_name};
pub use task::{BackoffReason, LastExit, TaskId, TaskState, TaskView};
