//! Integration tests against the real `timeserver` (and `authserver`) binaries on loopback.
//! One test binary for the crate (link time), one module per topic.
#![allow(clippy::unwrap_used)]

mod common;
mod drain;
mod lifecycle;
mod load;
mod login;
mod metrics;
mod pages;
mod sessions;
