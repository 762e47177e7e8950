//! `timeserver`: the time service's front end.
//!
//! # Layout
//! - `cli`: flags. `routes`: handlers and shared state. `pages`: templates. `load`: the
//!   in-flight cap and the simulated delay. `auth_client`: the auth server over plain HTTP.
//!   `clock`: local and UTC time of day. `monitor`: `/monitor`'s counters.
//!
//! # Theory of operation
//! Start-up order matters to the supervisor: flags (bad: exit 2), log config (bad: exit 2),
//! templates (bad: exit 2), then bind (port taken: exit 1 at once, so the supervisor can try
//! the next port). Then serve until SIGTERM/SIGINT, give requests in flight `--drain-timeout`
//! to finish, and exit 0.
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use clap::Parser;
use servicekit::access_log::RequestStats;
use servicekit::logconfig::{self, LogGuard};
use servicekit::serve::{self, Stopped};
use servicekit::shutdown::shutdown_signal;

mod auth_client;
mod cli;
mod clock;
mod load;
mod monitor;
mod pages;
mod routes;

use auth_client::AuthClient;
use cli::Cli;
use load::{Admission, Delay};
use pages::Templates;
use routes::App;

const USAGE_ERROR: u8 = 2;
const RUNTIME_ERROR: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on bad flags, 0 on --help/--version
    let log = match logconfig::init_from_flag(cli.log.as_deref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("timeserver: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let templates = match cli.templates.as_deref().map(Templates::load).transpose() {
        Ok(t) => t.unwrap_or_else(Templates::builtin),
        Err(e) => return fatal(&log, USAGE_ERROR, &e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fatal(
                &log,
                RUNTIME_ERROR,
                &format!("cannot start the runtime: {e}"),
            );
        }
    };
    runtime.block_on(run(cli, templates, &log))
}

async fn run(cli: Cli, templates: Templates, log: &LogGuard) -> ExitCode {
    let listener = match serve::bind(&cli.host, cli.port).await {
        Ok(l) => l,
        Err(e) => return fatal(log, RUNTIME_ERROR, &e),
    };
    let stop = match shutdown_signal() {
        Ok(s) => s,
        Err(e) => {
            return fatal(
                log,
                RUNTIME_ERROR,
                &format!("cannot install signal handlers: {e}"),
            );
        }
    };
    let app = Arc::new(App {
        templates,
        auth: AuthClient::new(
            &cli.authhost,
            cli.authport,
            Duration::from_millis(cli.authtimeout_ms),
        ),
        admission: Admission::new(cli.max_inflight),
        delay: Delay::new(cli.avg_response_ms, cli.response_deviation_ms),
        auth_errors: AtomicU64::new(0),
        stats: Arc::new(RequestStats::default()),
    });
    let addr = listener
        .local_addr()
        .map_or_else(|_| format!("{}:{}", cli.host, cli.port), |a| a.to_string());
    tracing::info!(
        addr = %addr,
        auth = %format!("{}:{}", cli.authhost, cli.authport),
        max_inflight = cli.max_inflight,
        avg_response_ms = cli.avg_response_ms,
        response_deviation_ms = cli.response_deviation_ms,
        templates_overridden = ?app.templates.overridden(),
        version = env!("CARGO_PKG_VERSION"),
        "timeserver listening"
    );
    match serve::serve(listener, routes::router(app), stop, cli.drain_timeout).await {
        Ok(Stopped::Drained(signal)) => {
            tracing::info!(%signal, "stopped cleanly");
            ExitCode::SUCCESS
        }
        Ok(Stopped::DrainTimedOut(signal)) => {
            tracing::warn!(%signal, "stopped; some requests were cut off at the drain deadline");
            ExitCode::SUCCESS
        }
        Err(e) => fatal(log, RUNTIME_ERROR, &format!("server failed: {e}")),
    }
}

/// Reports a fatal error in the log and, if the log does not already go there, on stderr (where
/// a supervisor's error file catches it), then gives the exit code.
fn fatal(log: &LogGuard, code: u8, error: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!("{error}");
    if !log.to_console() {
        eprintln!("timeserver: {error}");
    }
    ExitCode::from(code)
}
