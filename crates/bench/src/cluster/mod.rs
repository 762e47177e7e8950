//! `bench-cluster`: the cluster scheduler's benchmark rows (issues 14 and 15), on this
//! machine, against real processes on loopback.
//!
//! # Layout
//! - [`procs`]: the processes a measurement starts (etcd members, ubervisors, supervisors),
//!   each a guard that kills it and everything carrying its mark, by pid.
//! - [`etcd`]: a 3-member etcd on free loopback ports in temporary folders.
//! - [`rig`]: one ubervisor over in-process node agents whose apply only records.
//! - [`pure`]: `placement::place` alone (1 000 jobs on 100 nodes).
//! - [`store`]: placements per second and the raw etcd baseline, and `POST /jobs` → assignment
//!   latency.
//! - [`nodeloss`]: SIGKILL of a supervisor node and its tasks → every lost instance answering
//!   on another node.
//! - [`failover`]: SIGKILL of the leading ubervisor → a standby leads and accepts a write.
//! - [`report`]: the rows, PASS/FAIL against each goal, the Markdown table.
//!
//! # Theory of operation
//! Every number is taken from outside the scheduler: assignments from an etcd watch of the
//! assign prefix, answers from the instances' own HTTP ports, leadership from each replica's
//! `GET /health` and an accepted `POST /jobs`. Every process carries the run's environment
//! mark (`TIMESERVICE_BENCH_RUN`) and one of its own, so a guard kills it and all it forked by
//! pid, and the binary sweeps the run's mark at the end whatever happened (Ctrl-C included).
pub mod etcd;
pub mod failover;
pub mod nodeloss;
pub mod procs;
pub mod pure;
pub mod report;
pub mod rig;
pub mod store;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the binaries measured are, and the run's marks and folders.
pub struct Env {
    pub ubervisor: PathBuf,
    pub supervisor: PathBuf,
    pub timeserver: PathBuf,
    pub run_id: String,
    pub work: PathBuf,
    seq: AtomicU64,
}

impl Env {
    pub fn new(bin_dir: &std::path::Path, run_id: String, work: PathBuf) -> Env {
        Env {
            ubervisor: bin_dir.join("ubervisor"),
            supervisor: bin_dir.join("supervisor"),
            timeserver: bin_dir.join("timeserver"),
            run_id,
            work,
            seq: AtomicU64::new(0),
        }
    }

    /// A fresh number: process marks, folders and key prefixes of one run never collide.
    pub fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh key prefix, so each measurement starts from an empty cluster on the same etcd.
    pub fn prefix(&self, what: &str) -> String {
        format!("/bench/{what}-{}/", self.next())
    }
}
