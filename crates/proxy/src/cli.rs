//! Command-line flags. Every flag takes `--flag=value` and `--flag value`; durations are
//! seconds (`5`) or carry a unit (`500ms`, `10s`). A bad flag exits 2 with a message naming it.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use servicekit::duration::parse_duration_arg;

use crate::balance::Policy;
use crate::source::Spec;

/// Usage and configuration errors.
pub const USAGE_ERROR: u8 = 2;
/// Failures at run time (address in use, no runtime).
pub const RUNTIME_ERROR: u8 = 1;

/// A reverse proxy for the time servers. It follows them as the supervisor restarts them on
/// new ports, balances by least requests in flight, retries on another backend when a backend
/// dies under a request, and drains on SIGTERM.
///
/// Example: proxy --listen=127.0.0.1:8080 --backends=supervisor:http://127.0.0.1:7171/timeserver-*
#[derive(Debug, Clone, Parser)]
#[command(name = "proxy", version, about, long_about = None)]
pub struct Cli {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,

    /// Where the backends come from: `supervisor:http://HOST:PORT/PATTERN` (the running tasks of
    /// a supervisor whose names match PATTERN, `*` and `?` as wildcards; they are reached on
    /// HOST), `ubervisor:http://HOST:PORT/JOB` (the running instances of a cluster job, on the
    /// nodes that run them), or a static list `static:HOST:PORT,HOST:PORT` (the `static:` may be
    /// left out).
    #[arg(long, value_parser = Spec::parse_arg, value_name = "SOURCE")]
    pub backends: Spec,

    /// File holding the supervisor's API token (sent as `Authorization: Bearer TOKEN`).
    #[arg(long = "backends-token-file", value_name = "PATH")]
    pub backends_token_file: Option<PathBuf>,

    /// Address of `/metrics`, the status page and `/backends`, or `none`.
    #[arg(long, default_value = "127.0.0.1:9901", value_parser = parse_admin, value_name = "ADDR:PORT|none")]
    pub admin: Admin,

    /// How a backend is chosen: `p2c` (the one with fewer requests in flight of two picked at
    /// random; ties go to the faster one) or `round-robin`.
    #[arg(long, value_enum, default_value = "p2c")]
    pub balance: Policy,

    /// How long connecting to a backend may take; also how long a request waits for a backend
    /// when none is available before it is answered 503.
    #[arg(long = "connect-timeout", default_value = "1s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub connect_timeout: Duration,

    /// How long a backend may take to start answering (its status line and headers); then 504.
    #[arg(long = "response-timeout", default_value = "60s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub response_timeout: Duration,

    /// Most times a request is sent again, to another backend, after a failure. Connecting does
    /// not count: a backend that refuses is skipped (and ejected) until the connect timeout.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,

    /// Consecutive failures (timeouts, resets) that eject a backend; a refused connection
    /// ejects it at once.
    #[arg(long = "eject-after", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub eject_after: u32,

    /// First ejection's length; each further one in a row doubles it, up to `--eject-max`.
    #[arg(long = "eject-for", default_value = "250ms", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub eject_for: Duration,

    /// Longest ejection.
    #[arg(long = "eject-max", default_value = "30s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub eject_max: Duration,

    /// Active health check: GET this path on every backend each `--health-interval`; a backend
    /// that does not answer 2xx or 3xx within `--health-timeout` is taken out until it does.
    #[arg(long = "health-path", value_name = "PATH")]
    pub health_path: Option<String>,

    #[arg(long = "health-interval", default_value = "2s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub health_interval: Duration,

    #[arg(long = "health-timeout", default_value = "1s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub health_timeout: Duration,

    /// Most client connections open at once; further ones wait in the listen queue.
    #[arg(long = "max-connections", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub max_connections: u32,

    /// Largest request head (request line and headers), bytes; larger ones are answered 431.
    #[arg(long = "max-header-bytes", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1024..=1_048_576), value_name = "BYTES")]
    pub max_header_bytes: u32,

    /// How long a client may take to send a request head.
    #[arg(long = "header-timeout", default_value = "10s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub header_timeout: Duration,

    /// Idle connections kept open to each backend for reuse.
    #[arg(long = "max-idle-per-backend", default_value_t = 64, value_name = "N")]
    pub max_idle_per_backend: usize,

    /// On SIGTERM or SIGINT: how long requests in flight get to finish before the proxy exits.
    #[arg(long = "drain-timeout", default_value = "10s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// Worker threads; 0 means one per core.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,

    /// Log config (seelog-style XML, as the time servers take). Without it, info and above go
    /// to stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// One log line per request (method, path without the query, status, backend, attempts,
    /// duration, client), at info level with target `access`.
    #[arg(long = "access-log", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub access_log: bool,
}

/// The admin address, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    Off,
    On(SocketAddr),
}

fn parse_admin(s: &str) -> Result<Admin, String> {
    if s == "none" {
        return Ok(Admin::Off);
    }
    s.parse()
        .map(Admin::On)
        .map_err(|e| format!("{s:?} is not ADDR:PORT or none: {e}"))
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

impl Cli {
    /// Parses the flags and checks what clap cannot: combinations, and paths that must be
    /// readable. `Err` holds the exit code after the message was printed.
    pub fn parse_checked() -> Result<Cli, ExitCode> {
        let cli = Cli::parse(); // exits 2 on bad flags, 0 on --help/--version
        match cli.check() {
            Ok(()) => Ok(cli),
            Err(e) => {
                eprintln!("proxy: {e}");
                Err(ExitCode::from(USAGE_ERROR))
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(p) = &self.health_path {
            if !p.starts_with('/') {
                return Err(format!(
                    "--health-path={p:?}: expected a path starting with /"
                ));
            }
        }
        if self.eject_max < self.eject_for {
            return Err(format!(
                "--eject-max ({:?}) is shorter than --eject-for ({:?})",
                self.eject_max, self.eject_for
            ));
        }
        for (flag, d) in [
            ("--connect-timeout", self.connect_timeout),
            ("--response-timeout", self.response_timeout),
            ("--health-interval", self.health_interval),
            ("--health-timeout", self.health_timeout),
            ("--header-timeout", self.header_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{flag} must be longer than 0"));
            }
        }
        if self.backends_token_file.is_some() && !matches!(self.backends, Spec::Supervisor(_)) {
            return Err("--backends-token-file is only used with a supervisor: source".into());
        }
        if let Some(p) = &self.backends_token_file {
            self.token_from(p)?;
        }
        Ok(())
    }

    /// The token in `--backends-token-file`, trimmed.
    pub fn token(&self) -> Result<Option<String>, String> {
        self.backends_token_file
            .as_deref()
            .map(|p| self.token_from(p))
            .transpose()
    }

    fn token_from(&self, p: &std::path::Path) -> Result<String, String> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| format!("--backends-token-file: cannot read {}: {e}", p.display()))?;
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("--backends-token-file: {} is empty", p.display()));
        }
        Ok(t.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let mut argv = vec!["proxy"];
        argv.extend(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        cli.check()?;
        Ok(cli)
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = parse(&["--backends=127.0.0.1:8001"]).expect("parses");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin, Admin::On("127.0.0.1:9901".parse().expect("addr")));
        assert_eq!(c.balance, Policy::P2c);
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert!(c.access_log);
        let c = parse(&["--backends=127.0.0.1:8001", "--access-log=off"]).expect("parses");
        assert!(!c.access_log);
    }

    #[test]
    fn both_spellings() {
        let c = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--backends",
            "static:127.0.0.1:1,127.0.0.1:2",
            "--admin=none",
            "--balance=round-robin",
            "--connect-timeout=250ms",
        ])
        .expect("parses");
        assert_eq!(c.admin, Admin::Off);
        assert_eq!(c.balance, Policy::RoundRobin);
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, needle) in [
            (&["--backends=nowhere"][..], "--backends"),
            (&["--backends=127.0.0.1:1", "--listen=8080"], "--listen"),
            (&["--backends=127.0.0.1:1", "--admin=x"], "--admin"),
            (
                &["--backends=127.0.0.1:1", "--health-path=health"],
                "--health-path",
            ),
            (
                &["--backends=127.0.0.1:1", "--connect-timeout=0"],
                "--connect-timeout",
            ),
            (
                &[
                    "--backends=127.0.0.1:1",
                    "--eject-for=10s",
                    "--eject-max=1s",
                ],
                "--eject-max",
            ),
            (
                &[
                    "--backends=127.0.0.1:1",
                    "--backends-token-file=/nonexistent",
                ],
                "--backends-token-file",
            ),
            (
                &["--backends=127.0.0.1:1", "--eject-after=0"],
                "--eject-after",
            ),
        ] {
            let err = parse(args).expect_err("rejected");
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
