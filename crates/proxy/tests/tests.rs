//! Integration tests of the `proxy` binary: a real supervisor, real time servers and auth
//! server, real signals, loopback ports only.
#![allow(clippy::unwrap_used)]

mod balance;
mod common;
mod follow;
mod proxying;
mod timeservice;
