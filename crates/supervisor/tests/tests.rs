//! Integration tests of the `supervisor` binary: real processes, real signals, real ports.
#![allow(clippy::unwrap_used)]

mod api;
mod apiaddr;
mod chaos;
mod checkpoint;
mod cluster;
mod cluster_chaos;
mod common;
mod config;
mod corpus;
mod dashboard;
mod declarative;
mod faults;
mod fsfaults;
mod hostile;
mod logs;
mod logsink;
mod monitor;
mod run;
mod safety;
mod terminal;
mod timeservice;
mod tracking;
mod usage_limits;
