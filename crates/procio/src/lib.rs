//! What Linux says about processes, and how to act on them without hitting a stranger.
//!
//! # Layout
//! - [`procfs`]: `/proc/PID/stat` (start times, groups, sessions), environments, children,
//!   executables, the cgroup a process is in.
//! - [`pidfd`]: [`Pinned`] processes: a pidfd opened, then checked against the start time the
//!   caller saw, so a signal through it can never reach a process that reused the pid.
//! - [`cgroup`]: the cgroup v2 hierarchy (pure `/sys/fs/cgroup`, or the hybrid
//!   `/sys/fs/cgroup/unified`), folders for groups of processes, `cgroup.kill`,
//!   `cgroup.events`, and signalling the members of a cgroup through pinned pidfds.
//!
//! # Theory of operation
//! A pid alone does not identify a process: pids are reused, and on a busy machine quickly.
//! (pid, start time, boot id) does. Every function here that sends a signal either goes through
//! a pidfd whose start time was checked *after* it was opened (so the pidfd pins the process
//! that was meant), or through `cgroup.kill`, which the kernel applies to the members of the
//! cgroup at that moment. Used by the supervisor, by the tests' process guards (testkit) and by
//! the benchmarks, so there is one implementation of each of these rules.

pub mod cgroup;
pub mod pidfd;
pub mod procfs;

pub use pidfd::{Pinned, stop_pinned};
pub use procfs::Stat;
