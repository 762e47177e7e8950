//! The supervisor daemon: the IO shell around `supervisor-core`.
//!
//! # Layout
//! - `cli`: flags.
//! - `startup`: read and validate the task list, take the dump lock, recover, build the core.
//! - `daemon`: the event loop that owns the core and carries out its actions.
//! - `spawn`: starting one task (clone3 into its cgroup, own session, files, markers, limits);
//!   the path rule; port probes.
//! - `precheck`: what must hold of a task's files before anything starts.
//! - `tracking`: which processes belong to a group the core names (cgroups, or process groups
//!   and markers), and signalling, checking and releasing them.
//! - `reaper`: the single `waitid` reaper.
//! - `kill`: signalling a process group.
//! - `checkpoint_io`: the dump lock, reading and writing the dump.
//! - `recovery`: the facts about what a crashed predecessor may have left running, for the core
//!   to judge; and the final sweep's.
//! - `events`: one log line (and one JSON object for the event stream) per event.
//! - `api`, `control`, `metrics`: the HTTP API, its requests to the loop, Prometheus metrics.
//! - `report`: heartbeats and yo-yo events to an ubervisor (`--report-url`).
//! - `ctl`: `supervisor ctl`, a command line for the API (over `servicekit::http_client`).
//! - `logging`: the log file, reopened on SIGHUP.
//!
//! # Theory of operation
//! All decisions live in the pure core; this crate turns its actions into system calls and the
//! system's news (SIGCHLD, signals, timers, finished writes) into core inputs. One thread owns
//! the core; the checkpoint writer thread only ever sees finished byte buffers.

pub mod api;
pub mod checkpoint_io;
pub mod cli;
pub mod control;
pub mod ctl;
pub mod daemon;
pub mod events;
pub mod kill;
pub mod logging;
pub mod metrics;
pub mod precheck;
pub mod reaper;
pub mod recovery;
pub mod report;
pub mod spawn;
pub mod startup;
pub mod tracking;
