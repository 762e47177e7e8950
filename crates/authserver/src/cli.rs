//! Command-line flags. Names and defaults are the course's, so the brief's task list runs as is.
//!
//! One default is ours: `--dumpfile` is `run/authserver.json` unless told otherwise (`none`
//! turns persistence off). The brief's task list starts the auth server without the flag, and a
//! restart under the supervisor must not log everyone out.
use std::path::{Path, PathBuf};
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

    /// JSON file of cookie → name, relative to the working folder: loaded at start, written at
    /// each checkpoint when something changed and at SIGTERM/SIGINT, locked (FILE.lock) so that
    /// two auth servers never share it. `none`: sessions live in memory only, and a restart logs
    /// everyone out.
    #[arg(long, value_name = "FILE|none", default_value = DEFAULT_DUMPFILE, value_parser = dumpfile)]
    pub dumpfile: DumpFile,

    /// How often to write the dump file if something changed: a bare number is seconds; 500ms,
    /// 10s, 1m also work.
    #[arg(long = "checkpoint-interval", default_value = "10s", value_parser = positive_duration, value_name = "DURATION")]
    pub checkpoint_interval: Duration,
}

/// Where the sessions live when `--dumpfile` is not given: next to the supervisor's own dump
/// when the brief's task list is run from the repository (`make run`).
pub const DEFAULT_DUMPFILE: &str = "run/authserver.json";

/// `--dumpfile`: a file, or none at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpFile {
    At(PathBuf),
    Off,
}

impl DumpFile {
    pub fn path(&self) -> Option<&Path> {
        match self {
            DumpFile::At(p) => Some(p),
            DumpFile::Off => None,
        }
    }
}

/// `none` turns the dump off (`./none` is a file of that name); an empty value is a mistake.
fn dumpfile(s: &str) -> Result<DumpFile, String> {
    match s {
        "" => Err("empty; give a file name, or none to keep sessions in memory only".to_string()),
        "none" => Ok(DumpFile::Off),
        path => Ok(DumpFile::At(PathBuf::from(path))),
    }
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
        assert_eq!(
            c.dumpfile,
            DumpFile::At(PathBuf::from("run/authserver.json"))
        );
        assert_eq!(c.checkpoint_interval, Duration::from_secs(10));
        assert_eq!(c.server.drain_timeout, Duration::from_secs(5));
    }

    #[test]
    fn dumpfile_can_be_moved_or_turned_off() {
        let parse = |arg: &str| Cli::try_parse_from(["authserver", arg]).map(|c| c.dumpfile);
        assert_eq!(
            parse("--dumpfile=/var/lib/auth.json").expect("a path"),
            DumpFile::At(PathBuf::from("/var/lib/auth.json"))
        );
        assert_eq!(parse("--dumpfile=none").expect("off"), DumpFile::Off);
        assert_eq!(
            parse("--dumpfile=./none").expect("a file named none"),
            DumpFile::At(PathBuf::from("./none"))
        );
        let err = parse("--dumpfile=").expect_err("empty");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("none to keep sessions in memory"),
            "{err}"
        );
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
