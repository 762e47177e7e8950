//! The benchmark harness of issue 6: our supervisor side by side with supervisord, runit, s6
//! and daemontools, on this machine, in one run.
//!
//! # Layout
//! - `cli`: flags, and the `--quick` / full defaults.
//! - `kind`: the supervisors compared and where their binaries are.
//! - `install`: missing peers from Debian's packages.
//! - `launch`: one supervisor instance in a temporary folder, and the guard that kills it and
//!   all below it by PID.
//! - `procs`: `/proc` reading, pidfd signalling, resource sampling.
//! - `records`: the start/end records `bench-task` appends.
//! - `task`: building and finding `bench-task`, the task program (`crates/bench-task`).
//! - `latency`, `scale`, `timeserver`, `api`: the measurements.
//! - `proxy`, `proxy_peers`, `proxy_load`, `proxy_report`: our proxy against HAProxy and nginx
//!   (issue 16): the run, the peers' configurations, the load (a paced generator of our own,
//!   and wrk), the table.
//! - `stats`, `report`: medians and spreads, the table, the targets, the JSON.
//! - `cluster`: the cluster scheduler's rows (issues 14 and 15), run by `bench-cluster`: pure
//!   placement, placements per second and latency on a 3-member etcd, node loss, failover.
//!
//! # Theory of operation
//! Every number comes from the processes themselves, never from the supervisors' claims: each
//! task (`bench-task`) appends its CLOCK_REALTIME start (and, when it exits on its own, its
//! end) to one record file; the harness reads that file, and reads `/proc` for memory, CPU and
//! wake-ups. Every process the harness starts carries an environment mark, which all its
//! descendants inherit; stopping an instance freezes and kills everything carrying the mark,
//! through pidfds checked against the process start time. The harness is a child subreaper,
//! so nothing it started can escape to init, and it stops everything on Ctrl-C or a panic too.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod install;
pub mod interrupt;
pub mod kind;
pub mod latency;
pub mod launch;
pub mod procs;
pub mod proxy;
pub mod proxy_load;
pub mod proxy_peers;
pub mod proxy_report;
pub mod records;
pub mod report;
pub mod scale;
pub mod stats;
pub mod task;
pub mod timeserver;
