//! `proxy`: the time service's front door. A reverse proxy that follows the time servers as
//! the supervisor moves them from port to port.
//!
//! # Layout
//! - `cli`: flags and their checks (bad ones exit 2, naming the flag).
//! - `source/`: where the list of backends comes from. `source::Source` is the abstraction;
//!   `statics` (a fixed list) and `supervisor` (a local supervisor's `GET /tasks` and
//!   `GET /events`) implement it; `sse` reads Server-Sent Events.
//! - `backends`: the current set of backends, each with its in-flight count, latency average,
//!   passive-health state and idle connections; rebuilt when the source publishes a new list.
//! - `health`: passive health (consecutive failures, ejection with a growing backoff) as a pure
//!   state machine, and the optional active check (`--health-path`).
//! - `balance`: least in-flight over two random choices (P2C), or round robin.
//! - `pool`: connections to backends: connect with a deadline, keep idle ones for reuse.
//! - `forward`: one request's life: pick, connect, send, retry on another backend when that is
//!   safe, relay the answer. `headers`: hop-by-hop and `X-Forwarded-*`. `body`: the body types.
//! - `server`: the accept loop, the connection cap, the drain at SIGTERM.
//! - `admin`: `/metrics`, the status page, `/backends` (JSON), on their own address.
//! - `metrics`: the Prometheus series. `access_log`: one line per request, without the query.
//!
//! # Theory of operation
//! A source task keeps the backend list current: the supervisor source subscribes to
//! `GET /events` first and then reads `GET /tasks`, so no change can fall between the two. An
//! event about a matching task is applied at once (a restart carries its new port), and a
//! re-read of `GET /tasks` follows (debounced, at most one per 100 ms) to confirm it; a `lagged`
//! event triggers a re-read too. When the supervisor is away the source reconnects with a
//! backoff and the last known list stays in force.
//!
//! Each request picks a backend among those not ejected. A failure to connect, or a connection
//! reset before any byte of an answer, ejects that backend at once and the request goes to
//! another one (after a reset only when the request can be sent again: no body, idempotent
//! method). A 503 with `Retry-After` (a time server shedding load) is retried once elsewhere.
//! An ejected backend comes back after its backoff, or sooner when the source reports it anew.
//! Nothing is held across an await but `Arc`s: the backend set is swapped whole.
use std::process::ExitCode;

mod access_log;
mod admin;
mod backends;
mod balance;
mod body;
mod cli;
mod forward;
mod headers;
mod health;
mod metrics;
mod pool;
mod server;
mod source;

fn main() -> ExitCode {
    let cli = match cli::Cli::parse_checked() {
        Ok(c) => c,
        Err(code) => return code,
    };
    server::main(cli)
}
