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
//! - `usage`: each running instance's CPU time and memory (its cgroup, or `/proc`), measured on
//!   the API thread from a snapshot.
//! - `limits_cgroup`: a task's `limits` through cgroups (v2 `memory.max`/`cpu.max`, or v1
//!   cgroups the child joins first); the refusal where no controller is available.
//! - `reaper`: the single `waitid` reaper.
//! - `kill`: signalling a process group.
//! - `checkpoint_io`: the dump lock, reading and writing the dump.
//! - `recovery`: the facts about what a crashed predecessor may have left running, for the core
//!   to judge; and the final sweep's.
//! - `events`: one log line (and one JSON object for the event stream) per event.
//! - `api`, `control`, `metrics`: the HTTP API, its requests to the loop, Prometheus metrics.
//! - `api_listen`: binding the API before anything starts; who holds a taken address.
//! - `runtime`: the runtime file `DUMP.api` (API address, pid, start time, instance).
//! - `reason`: why a task is down, in one sentence (`GET /tasks`, `ctl status`, the terminal).
//! - `greeting`: what the terminal shows at start: dashboard, log, how to stop, a task table.
//! - `sd`, `sd_file`: Prometheus service discovery: `GET /sd`, and `--sd-file` kept up to date
//!   by a thread of its own.
//! - `report`: heartbeats and yo-yo events to an ubervisor (`--report-url`).
//! - `ctl`, `ctl_target`: `supervisor ctl`, a command line for the API (over
//!   `servicekit::http_client`), and which supervisor it talks to; `ctl_top`: its live view.
//!   `servicekit::http_client`), and which supervisor it talks to; `ctl_logs`: `ctl logs`, which
//!   streams (hyper's client connection).
//! - `task_logs`: a task's output and error files read for the API: the tail from the end,
//!   following what is appended (truncation and rotation included).
//! - `logging`: the log, written by a thread of its own through a bounded queue; SIGHUP reopen.
//!
//! # Theory of operation
//! All decisions live in the pure core; this crate turns its actions into system calls and the
//! system's news (SIGCHLD, signals, timers, finished writes) into core inputs. One thread owns
//! the core; the checkpoint writer thread only ever sees finished byte buffers.

pub mod api;
pub mod api_listen;
pub mod checkpoint_io;
pub mod cli;
pub mod control;
pub mod ctl;
pub mod ctl_logs;
pub mod ctl_target;
pub mod ctl_top;
pub mod daemon;
pub mod event_log;
pub mod events;
pub mod greeting;
pub mod kill;
pub mod limits_cgroup;
pub mod log_queue;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod precheck;
pub mod probes;
pub mod reaper;
pub mod reason;
pub mod recovery;
pub mod report;
pub mod runtime;
pub mod sd;
pub mod sd_file;
pub mod spawn;
pub mod startup;
pub mod task_logs;
pub mod tracking;
pub mod usage;
