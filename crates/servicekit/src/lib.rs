//! What the time service's servers (`timeserver`, `authserver`) share, and what the supervisor
//! reuses (`duration`, `atomic_file`, `http_client`).
//!
//! # Layout
//! - [`duration`]: `10`, `1.5`, `500ms`, `10s`, `1m` → [`std::time::Duration`]; a bare number is
//!   seconds, as the course's servers had it.
//! - [`atomic_file`]: replace a file so that a crash at any instant leaves either the old or the
//!   new content, never a torn mix.
//! - [`logconfig`]: the course's seelog-style XML log configs, parsed and turned into a `tracing`
//!   subscriber that writes to files and/or stderr.
//! - [`access_log`]: axum middleware that writes one log line per request and counts requests by
//!   route and status for `/monitor`.
//! - [`shutdown`]: a future that resolves on SIGTERM or SIGINT.
//! - [`serve`]: bind with a clear error, serve until a signal, then drain for a bounded time.
//! - [`http_client`]: a small async HTTP/1.1 client (plain `http://`, one request per
//!   connection, bounded in time and size) for the timeserver's auth calls and the supervisor's
//!   `ctl` and upstream reports.
//! - [`server`]: the flags every server has (`--host`, `--log`, `--drain-timeout`), and a
//!   server's life from those flags to its exit code, built from the modules above.
//!
//! # Theory of operation
//! A server's `main` parses flags (its `Cli` flattens [`server::ServerArgs`]) and calls
//! [`server::Server::start`], which installs the log config ([`logconfig::init_from_flag`]; a bad
//! config is a usage error, exit 2). [`server::Server::run`] then starts the runtime, binds with
//! [`serve::bind`] *before* anything slow (a taken port must fail at once: the supervisor moves on
//! to the next port), installs [`shutdown::shutdown_signal`] and hands the bound listener to the
//! server's own code, which serves its router, wrapped in [`access_log::with_access_log`], through
//! [`serve::serve`]. When a signal arrives the listener stops accepting, requests in flight get the
//! drain period to finish, and `serve` returns so that the server can save state before exiting.

pub mod access_log;
pub mod atomic_file;
pub mod duration;
pub mod http_client;
pub mod logconfig;
pub mod serve;
pub mod server;
pub mod shutdown;
