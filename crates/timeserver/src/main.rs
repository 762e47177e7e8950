//! `timeserver`: the time service's front end.
//!
//! # Layout
//! - `cli`: flags. `routes`: handlers and shared state. `pages`: templates. `load`: the
//!   in-flight cap and the simulated delay. `auth_client`: the auth server over plain HTTP.
//!   `clock`: local and UTC time of day. `monitor`: `/monitor`'s counters (JSON).
//!   `metrics`: `/metrics` (Prometheus).
//!
//! # Theory of operation
//! Start-up order matters to the supervisor: flags (bad: exit 2), log config (bad: exit 2),
//! templates (bad: exit 2), then bind (port taken: exit 1 at once, so the supervisor can try
//! the next port). Then serve until SIGTERM/SIGINT: from then on new requests are answered 503
//! with `Retry-After`, requests in flight get `--drain-timeout` to finish, those still running
//! then are answered 503 too, and we exit 0 (see `servicekit::serve`).
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use clap::Parser;
use servicekit::access_log::AccessLog;
use servicekit::server::{Listening, Server, USAGE_ERROR};

mod auth_client;
mod cli;
mod clock;
mod load;
mod metrics;
mod monitor;
mod pages;
mod routes;

use auth_client::AuthClient;
use cli::Cli;
use load::{Admission, Delay};
use metrics::Metrics;
use pages::Templates;
use routes::App;

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on bad flags, 0 on --help/--version
    let server = match Server::start("timeserver", &cli.server) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let templates = match cli.templates.as_deref().map(Templates::load).transpose() {
        Ok(t) => t.unwrap_or_else(Templates::builtin),
        Err(e) => return server.fatal(USAGE_ERROR, &e),
    };
    server.run(cli.port, |listening| {
        run(&server, cli, templates, listening)
    })
}

async fn run(server: &Server, cli: Cli, templates: Templates, listening: Listening) -> ExitCode {
    let admission = Admission::new(cli.max_inflight);
    let metrics = Metrics::new(&admission);
    let app = Arc::new(App {
        templates,
        auth: AuthClient::new(
            &cli.authhost,
            cli.authport,
            Duration::from_millis(cli.authtimeout_ms),
            metrics.auth_calls.clone(),
        ),
        admission,
        delay: Delay::new(cli.avg_response_ms, cli.response_deviation_ms),
        auth_errors: AtomicU64::new(0),
        log: AccessLog {
            stats: Default::default(),
            metrics: metrics.http.clone(),
        },
        metrics,
    });
    tracing::info!(
        addr = %listening.addr(),
        auth = %format!("{}:{}", cli.authhost, cli.authport),
        max_inflight = cli.max_inflight,
        avg_response_ms = cli.avg_response_ms,
        response_deviation_ms = cli.response_deviation_ms,
        templates_overridden = ?app.templates.overridden(),
        version = env!("CARGO_PKG_VERSION"),
        "timeserver listening"
    );
    let log = app.log.clone();
    server.stopped(listening.serve(routes::router(app), log).await)
}
