//! Command-line flags. Names and defaults are the course's, so the brief's task list runs as is.
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use servicekit::duration::parse_duration;
use servicekit::server::ServerArgs;

/// The time service's session store: remembers which name goes with which cookie, and dumps
/// the lot to a JSON file now and then so a restart does not log everyone out.
#[derive(Debug, Clone, Parser)]
#[command(name = "authserver", version)]
pub struct Cli {
    /// Port to listen on.
    #[arg(long, default_value_t = 7070)]
    pub authport: u16,

    // --host, --log, --drain-timeout.
    #[command(flatten)]
    pub server: ServerArgs,

    /// JSON file of cookie → name: loaded at start, written at each checkpoint when something
    /// changed and at SIGTERM/SIGINT. Without it, sessions live in memory only.
    #[arg(long, value_name = "FILE")]
    pub dumpfile: Option<PathBuf>,

    /// How often to write the dump file if something changed: a bare number is seconds; 500ms,
    /// 10s, 1m also work.
    #[arg(long = "checkpoint-interval", default_value = "10s", value_parser = positive_duration, value_name = "DURATION")]
    pub checkpoint_interval: Duration,
}

/// A checkpoint interval of 0 would mean a busy loop of dumps.
fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!("{s:?} is zero; the interval must be positive")),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_the_briefs_command_line() {
        let c = Cli::try_parse_from(["authserver", "--log=etc/auth.xml"]).expect("parses");
        assert_eq!((c.authport, c.server.host.as_str()), (7070, "127.0.0.1"));
        assert_eq!(
            c.server.log.as_deref(),
            Some(std::path::Path::new("etc/auth.xml"))
        );
        assert_eq!(c.dumpfile, None);
        assert_eq!(c.checkpoint_interval, Duration::from_secs(10));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn interval_spellings() {
        for (text, want) in [("3", 3000), ("1.5", 1500), ("500ms", 500), ("1m", 60_000)] {
            let c = Cli::try_parse_from(["authserver", "--checkpoint-interval", text]).expect(text);
            assert_eq!(c.checkpoint_interval, Duration::from_millis(want), "{text}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            &["authserver", "--checkpoint-interval=soon"][..],
            &["authserver", "--checkpoint-interval=0"],
            &["authserver", "--authport=seventy"],
            &["authserver", "--port=7070"],
        ] {
            let err = Cli::try_parse_from(argv).expect_err("rejected");
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }
}
