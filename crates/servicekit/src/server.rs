//! A server binary's life from parsed flags to exit code: the part every server shares.
//!
//! Exit codes are the supervisor's contract: 2 for usage errors (flags, log config, templates…),
//! 1 for runtime errors (port taken, no runtime, no signal handlers, and whatever the server's
//! own code reports, such as a failed final dump), 0 after a stop by SIGTERM/SIGINT. A fatal error goes to the log and, when the log does not reach
//! stderr, to stderr as well, prefixed with the program's name (a supervisor's error file catches
//! it there).
//!
//! ```no_run
//! # use std::process::ExitCode;
//! # use servicekit::server::{Server, ServerArgs};
//! # fn main_of_a_server(args: ServerArgs, port: u16) -> ExitCode {
//! let server = match Server::start("myserver", &args) {
//!     Ok(s) => s,
//!     Err(code) => return code,
//! };
//! // Anything needing the runtime (spawned tasks, the router's state) is set up in here.
//! server.run(port, |listening| serve(&server, listening))
//! # }
//! # async fn serve(server: &Server, listening: servicekit::server::Listening) -> ExitCode {
//! #     tracing::info!(addr = %listening.addr(), "myserver listening");
//! #     let log = servicekit::access_log::AccessLog::default();
//! #     server.stopped(listening.serve(axum::Router::new(), log).await)
//! # }
//! ```
use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::duration::parse_duration_arg;
use crate::logconfig::{self, LogGuard};
use crate::serve::{self, Stopped};
use crate::shutdown::{StopSignal, shutdown_signal};

/// Exit code for bad flags or configuration (clap uses it too).
pub const USAGE_ERROR: u8 = 2;
/// Exit code for failures while starting or running.
pub const RUNTIME_ERROR: u8 = 1;

/// The flags every server has, for `#[command(flatten)]` into its own `Cli`. The listening port
/// is not among them: each server names it differently (`--port`, `--authport`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Log config (seelog-style XML). Without it, info and above go to stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// On SIGTERM/SIGINT, how long requests in flight get to finish (e.g. 5s, 500ms, 2). Those
    /// still running then are answered 503 with Retry-After; the server writes its final state,
    /// if it keeps any, and exits.
    #[arg(long = "drain-timeout", default_value = "5s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub drain_timeout: Duration,
}

/// A server process whose log is set up: it reports fatal errors and runs the serving part.
///
/// Keep it alive until `main` returns: it holds the [`LogGuard`] that flushes the log files.
pub struct Server {
    name: &'static str,
    log: LogGuard,
    host: String,
    drain: Duration,
}

impl Server {
    /// Sets up logging from `--log`. A bad log config is a usage error: it is printed on stderr
    /// (there is no log yet) and `Err` holds the exit code to return from `main`.
    pub fn start(name: &'static str, args: &ServerArgs) -> Result<Server, ExitCode> {
        match logconfig::init_from_flag(args.log.as_deref()) {
            Ok(log) => Ok(Server {
                name,
                log,
                host: args.host.clone(),
                drain: args.drain_timeout,
            }),
            Err(e) => {
                eprintln!("{name}: {e}");
                Err(ExitCode::from(USAGE_ERROR))
            }
        }
    }

    /// Reports a fatal error in the log and, if the log does not already go there, on stderr,
    /// then gives the exit code.
    pub fn fatal(&self, code: u8, error: &dyn Display) -> ExitCode {
        tracing::error!("{error}");
        if !self.log.to_console() {
            eprintln!("{}: {error}", self.name);
        }
        ExitCode::from(code)
    }

    /// Starts the runtime, binds `--host`:`port` (before anything slow: a taken port must fail at
    /// once, so a supervisor can move on to the next one), installs the SIGTERM/SIGINT handlers,
    /// then runs `body` to completion with the listener. Failures up to there are fatal with
    /// [`RUNTIME_ERROR`]; afterwards the exit code is `body`'s.
    pub fn run<F, Fut>(&self, port: u16, body: F) -> ExitCode
    where
        F: FnOnce(Listening) -> Fut,
        Fut: Future<Output = ExitCode>,
    {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return self.fatal(RUNTIME_ERROR, &format!("cannot start the runtime: {e}")),
        };
        runtime.block_on(async {
            match self.listen(port).await {
                Ok(listening) => body(listening).await,
                Err(code) => code,
            }
        })
    }

    async fn listen(&self, port: u16) -> Result<Listening, ExitCode> {
        let listener = serve::bind(&self.host, port)
            .await
            .map_err(|e| self.fatal(RUNTIME_ERROR, &e))?;
        let stop = shutdown_signal().map_err(|e| {
            self.fatal(
                RUNTIME_ERROR,
                &format!("cannot install signal handlers: {e}"),
            )
        })?;
        let addr = listener
            .local_addr()
            .map_or_else(|_| serve::host_port(&self.host, port), |a| a.to_string());
        Ok(Listening {
            listener,
            stop: Box::pin(stop),
            drain: self.drain,
            addr,
        })
    }

    /// The exit code for how serving ended, with a log line that says so: 0 after a stop by
    /// signal, whether or not every request finished in time.
    pub fn stopped(&self, served: Stopped) -> ExitCode {
        match served {
            Stopped::Drained(signal) => {
                tracing::info!(%signal, "stopped cleanly");
            }
            Stopped::DrainTimedOut {
                signal,
                cut_off,
                dropped,
            } => {
                tracing::warn!(%signal, cut_off, dropped_connections = dropped,
                    "stopped; requests still running at the drain deadline were answered 503");
            }
        }
        ExitCode::SUCCESS
    }
}

/// A bound listener with the stop signal armed: ready to serve.
pub struct Listening {
    listener: TcpListener,
    stop: Pin<Box<dyn Future<Output = StopSignal> + Send>>,
    drain: Duration,
    addr: String,
}

impl Listening {
    /// The address actually bound (with the real port when `0` was asked for), for the
    /// start-up log line.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Serves `routes` behind the access log `log` until SIGTERM/SIGINT, then gives requests in
    /// flight `--drain-timeout` to finish (see [`serve::serve`]).
    pub async fn serve(self, routes: Router, log: AccessLog) -> Stopped {
        serve::serve(self.listener, routes, log, self.stop, self.drain).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = Cli::try_parse_from(["x"]).expect("no flags");
        assert_eq!(c.server.host, "127.0.0.1");
        assert_eq!(c.server.log, None);
        assert_eq!(c.server.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn flags_in_both_spellings() {
        for argv in [
            &["x", "--host=::1", "--log=l.xml", "--drain-timeout=250ms"][..],
            &[
                "x",
                "--host",
                "::1",
                "--log",
                "l.xml",
                "--drain-timeout",
                "0.25",
            ],
        ] {
            let c = Cli::try_parse_from(argv).expect("parses");
            assert_eq!(c.server.host, "::1");
            assert_eq!(c.server.log, Some(PathBuf::from("l.xml")));
            assert_eq!(c.server.drain_timeout, Duration::from_millis(250));
        }
    }

    #[test]
    fn bad_drain_timeout_is_a_usage_error_naming_the_value() {
        let err = Cli::try_parse_from(["x", "--drain-timeout=soon"]).expect_err("rejected");
        assert_eq!(i32::from(USAGE_ERROR), err.exit_code());
        assert!(err.to_string().contains("\"soon\""), "{err}");
    }
}
