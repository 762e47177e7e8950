//! The cluster's shared vocabulary and its etcd plumbing, used by the ubervisor and by the
//! supervisors that are its node agents.
//!
//! # Layout
//! - [`keys`]: the key layout under a configurable prefix (default `/uv/`), built and parsed;
//!   instance naming (`web` count 3 → `web-1..web-3`).
//! - [`records`]: the versioned JSON records stored there (Job, NodeInfo, Cordon, Assignment,
//!   TaskStatus, NodeLosses, Moves, Reschedule).
//! - [`store`]: connecting with timeouts, a [`Lease`] kept alive at a third of its TTL, and a
//!   [`Mirror`] of a prefix kept by list-then-watch (re-listing after compaction).
//! - [`failover`]: dead etcd members taken out of a client's balance until they answer.
//! - [`election`]: campaigning through etcd's Election API and [`Leadership::txn`], the fenced
//!   transaction every leader write goes through.
//! - [`agent`]: the node agent a supervisor runs on a thread of its own ([`NodeAgent::spawn`]);
//!   [`recording`]: the same agent running nothing, for tests and benchmarks of the scheduler.
//!
//! # Theory of operation
//! All cluster state lives in etcd; every process holds only a copy it can rebuild by listing.
//! Writers are partitioned by key: the leader writes jobs, cordons and assignments, always
//! fenced on its election key; each node agent writes only its own info and statuses, under
//! its own lease, so a node that dies takes its liveness with it. Readers list a prefix, then
//! watch from the listed revision, so no change falls between the two, and list again when
//! the watch is cancelled by compaction.

pub mod agent;
pub mod election;
pub mod failover;
pub mod keys;
pub mod recording;
pub mod records;
pub mod store;

pub use agent::{AgentConfig, AgentError, ApplyFn, FatalFn, NodeAgent, StatusFn};
pub use election::{Fenced, Leadership, campaign, leader_value};
pub use keys::{DEFAULT_PREFIX, Key, Keys, instance_index, instance_name};
pub use records::{
    Assignment, Capacity, Cordon, Failure, Job, Move, Moves, NodeInfo, NodeLosses, RecordError,
    Reschedule, TaskStatus, VERSION, decode, encode,
};
pub use store::{Entry, Lease, Mirror, StoreError, connect};
