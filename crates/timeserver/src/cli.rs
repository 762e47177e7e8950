//! Command-line flags. Names and defaults are the course's, so the brief's task list runs as is.
use std::path::PathBuf;

use clap::Parser;
use servicekit::server::ServerArgs;

/// The time service's front end: tells the time, greets users who logged in through the auth
/// server, and simulates load (random delays, a cap on requests in flight).
#[derive(Debug, Clone, Parser)]
#[command(name = "timeserver", version)]
pub struct Cli {
    /// Port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    // --host, --log, --drain-timeout.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Host of the auth server.
    #[arg(long, default_value = "localhost")]
    pub authhost: String,

    /// Port of the auth server.
    #[arg(long, default_value_t = 7070)]
    pub authport: u16,

    /// How long to wait for the auth server before treating the user as anonymous.
    #[arg(long = "authtimeout-ms", default_value_t = 1000, value_name = "MS")]
    pub authtimeout_ms: u64,

    /// Mean of the simulated delay before answering /time.
    #[arg(long = "avg-response-ms", default_value_t = 0, value_name = "MS")]
    pub avg_response_ms: u64,

    /// Standard deviation of the simulated delay (normally distributed, never below 0).
    #[arg(long = "response-deviation-ms", default_value_t = 0, value_name = "MS")]
    pub response_deviation_ms: u64,

    /// Most /time requests in flight at once; more are answered 503 at once. 0: no limit.
    #[arg(long = "max-inflight", default_value_t = 0, value_name = "N")]
    pub max_inflight: usize,

    /// Folder whose files override the built-in templates of the same name (header.html,
    /// footer.html, login.html, greeting.html, time.html, logout.html, about.html,
    /// message.html, style.css).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = Cli::try_parse_from(["timeserver"]).expect("no flags");
        assert_eq!((c.port, c.server.host.as_str()), (8080, "127.0.0.1"));
        assert_eq!(
            (c.authhost.as_str(), c.authport, c.authtimeout_ms),
            ("localhost", 7070, 1000)
        );
        assert_eq!(
            (c.avg_response_ms, c.response_deviation_ms, c.max_inflight),
            (0, 0, 0)
        );
        assert_eq!((c.server.log, c.templates), (None, None));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_briefs_command_line_parses_in_both_spellings() {
        let joined = [
            "timeserver",
            "--log=etc/log-01.xml",
            "--port=8001",
            "--max-inflight=80",
            "--avg-response-ms=500",
            "--response-deviation-ms=300",
        ];
        let split = [
            "timeserver",
            "--log",
            "etc/log-01.xml",
            "--port",
            "8001",
            "--max-inflight",
            "80",
            "--avg-response-ms",
            "500",
            "--response-deviation-ms",
            "300",
        ];
        for argv in [&joined[..], &split[..]] {
            let c = Cli::try_parse_from(argv).expect("parses");
            assert_eq!(
                c.server.log.as_deref(),
                Some(std::path::Path::new("etc/log-01.xml"))
            );
            assert_eq!((c.port, c.max_inflight), (8001, 80));
            assert_eq!((c.avg_response_ms, c.response_deviation_ms), (500, 300));
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            &["timeserver", "--port=http"][..],
            &["timeserver", "--port=70000"],
            &["timeserver", "--avg-response-ms=-5"],
            &["timeserver", "--drain-timeout=soon"],
            &["timeserver", "--frobnicate"],
        ] {
            let err = Cli::try_parse_from(argv).expect_err("rejected");
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }
}
