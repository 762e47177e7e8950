//! Where the ubervisor puts a job's instances: a pure function, no IO, no clock.
//!
//! # Layout
//! - [`model`]: the input (nodes with capacity, allocation, cordon and liveness; pending
//!   instances with their demand and avoid list; existing placements) and the [`Plan`].
//! - [`place`](mod@place): the pass itself ([`place()`]).
//! - [`reason`]: why an instance has no node ([`Reason`], naming the job and the short
//!   resource), and the submission-time check [`could_ever_fit`].
//!
//! # Theory of operation
//! Placement follows the filter-then-score shape of the schedulers that came before
//! (Kubernetes' NodeResourcesFit, Nomad's binpack): filter the nodes that could take an
//! instance at all, score those, take the best. Scoring prefers nodes with fewer instances of
//! the same job (spread), then best fit (least normalised leftover), then the node's name, so
//! a plan is a function of its input alone. Arithmetic is exact (integers, fractions compared
//! by cross-multiplication), so the same input gives the same plan on every machine, and
//! free resources are checked with subtraction that cannot wrap, so no node is ever
//! over-committed. The shell (the `ubervisor` crate) reads the cluster from etcd, calls
//! [`place()`] and writes the placed instances in fenced transactions.

pub mod model;
pub mod place;
pub mod reason;

pub use model::{Input, Instance, Node, Placement, Plan, Resources, Unplaced};
pub use place::place;
pub use reason::{Reason, Resource, could_ever_fit};
