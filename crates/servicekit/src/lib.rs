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
//!   route and status for `/monitor` and `/metrics`.
//! - [`metrics`]: the HTTP series every server exports (requests, latency, in flight) and the
//!   Prometheus text format.
//! - [`shutdown`]: a future that resolves on SIGTERM or SIGINT.
//! - [`drain`]: what a request gets while the server stops: a 503 with `Retry-After`, never a
//!   closed connection.
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
//! server's own code, which serves its routes through [`serve::serve`] (each request passes the
//! access log, then the drain guard). When a signal arrives, new requests are answered 503, the
//! listener closes once the connections already queued are taken, and requests in flight get the
//! drain period to finish; those still running then are answered 503 too. `serve` returns so that
//! the server can save state before exiting.

pub mod access_log;
pub mod atomic_file;
pub mod drain;
pub mod duration;
pub mod http_client;
pub mod logconfig;
pub mod metrics;
pub mod serve;
pub mod server;
pub mod shutdown;
