//! Test helpers shared by every crate's integration tests.
//!
//! # Layout
//! - [`proc`]: start the workspace's binaries with a per-test marker in their environment, and
//!   guards that, on drop, kill by PID every process carrying that marker (the binary itself and
//!   anything it spawned, grandchildren included), so a failing test leaves nothing behind.
//! - [`wait`]: `wait_for(deadline, condition)` polling instead of sleeps.
//! - [`net`]: free loopback ports and ranges of them.
//! - [`http`]: a tiny blocking HTTP/1.1 client for loopback tests (no extra dependencies).
//! - [`server`]: a server binary under test, its output in files, ready when its port answers;
//!   start-up checks shared by the servers' tests (usage errors, a taken port).
//! - [`logs`]: waiting for a log file, and the access-log line of one request.
//! - [`etcd`]: a real etcd (one member or three) on free loopback ports, stopped by PID.
//! - [`prom`]: `promtool check metrics` on a `/metrics` page, and reading one of its samples.
//!
//! # Theory of operation
//! Every process a test starts through [`proc::Spawner`] gets `TESTKIT_MARK=<unique id>` in its
//! environment. Environments are inherited, so whatever it forks carries the mark too, even after
//! `setsid` or a double fork. Dropping the [`proc::Spawner`] scans `/proc/*/environ` for the mark
//! and sends SIGKILL to each matching PID (never by name).
#![allow(clippy::unwrap_used)]

pub mod browser;
pub mod etcd;
pub mod http;
pub mod logs;
pub mod net;
pub mod proc;
pub mod prom;
pub mod server;
pub mod wait;

pub use etcd::Etcd;
pub use http::{Response, http_get, http_request};
pub use logs::{logged_api_addr, one_access_line, wait_for_file_containing};
pub use net::{free_port, free_port_range};
pub use proc::{Spawner, bin_path, clean_supervisor_cgroups, pid_alive, pids_with_env};
pub use prom::{assert_promtool_passes, sample};
pub use server::{
    ServerProc, assert_exits, assert_port_taken_fails_fast, run_to_exit, start_on_free_port,
};
pub use wait::{SOON, wait_for, wait_for_value};
