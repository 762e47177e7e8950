//! Integration tests of the `supervisor` binary: real processes, real signals, real ports.
#![allow(clippy::unwrap_used)]

mod api;
mod checkpoint;
mod common;
mod config;
mod dashboard;
mod run;
mod timeservice;
