//! Scenario and property tests of [`supervisor_core::Core`] with a hand-driven clock.
//!
//! One test binary (link time on 2 cores); the scenarios live in `tests/core/`. Every test
//! drives the core through [`sim::Sim`], a fake shell that answers the core's actions the way
//! the real one would, and never reads a clock after taking `t0`.
#![allow(clippy::unwrap_used)]

#[path = "core/sim.rs"]
mod sim;

#[path = "core/apply.rs"]
mod apply;
#[path = "core/control.rs"]
mod control;
#[path = "core/extreme.rs"]
mod extreme;
#[path = "core/invariants.rs"]
mod invariants;
#[path = "core/ports.rs"]
mod ports;
#[path = "core/rate_and_checkpoint.rs"]
mod rate_and_checkpoint;
#[path = "core/recovery.rs"]
mod recovery;
#[path = "core/remains.rs"]
mod remains;
#[path = "core/restart.rs"]
mod restart;
#[path = "core/stop.rs"]
mod stop;
