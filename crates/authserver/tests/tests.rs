//! Integration tests against the real `authserver` binary on loopback.
//! One test binary for the crate (link time), one module per topic.
#![allow(clippy::unwrap_used)]

mod api;
mod common;
mod dump;
mod lifecycle;
mod metrics;
mod persist;
