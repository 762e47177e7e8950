//! The course's seelog-style XML log configs, and the `tracing` subscriber they describe.
//!
//! ```xml
//! <seelog minlevel="info">
//!     <outputs>
//!         <file path="log/timeserver-01.log"/>
//!         <console/>
//!     </outputs>
//! </seelog>
//! ```
//!
//! The subset understood: `minlevel` (trace, debug, info, warn, error, critical, off; seelog's
//! default when absent is to log everything, so trace), outputs `<file path>`,
//! `<rollingfile filename>` (written as a plain append-only file: rolling is left to logrotate),
//! `<console/>` (stderr), and `<buffered>`/`<splitter>` wrappers around outputs. `<formats>` and
//! seelog's logger-type attributes are accepted and ignored. Anything else is an error rather
//! than silently ignored: a config that looks right but logs nowhere is the worst outcome.
//!
//! # Layout
//! - this file: the config's types and [`LogConfig::load`];
//! - `parse`: the XML reader (quick-xml events, a small scope stack);
//! - `subscriber`: [`init_logging`], which turns a config into the global `tracing` subscriber.
use std::path::{Path, PathBuf};

use tracing_subscriber::filter::LevelFilter;

mod parse;
mod subscriber;

pub use subscriber::{LogGuard, init_from_flag, init_logging};

/// seelog's levels. `critical` has no `tracing` twin and is logged as error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
    Off,
}

impl Level {
    /// The names accepted in `minlevel`, in order.
    pub const NAMES: [&'static str; 7] =
        ["trace", "debug", "info", "warn", "error", "critical", "off"];

    fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Level::Trace,
            "debug" => Level::Debug,
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "critical" => Level::Critical,
            "off" => Level::Off,
            _ => return None,
        })
    }

    fn filter(self) -> LevelFilter {
        match self {
            Level::Trace => LevelFilter::TRACE,
            Level::Debug => LevelFilter::DEBUG,
            Level::Info => LevelFilter::INFO,
            Level::Warn => LevelFilter::WARN,
            Level::Error | Level::Critical => LevelFilter::ERROR,
            Level::Off => LevelFilter::OFF,
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Appended to this file (relative paths are relative to the working folder, as in seelog).
    File(PathBuf),
    /// Standard error.
    Console,
}

/// A parsed config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub min_level: Level,
    pub outputs: Vec<Output>,
}

impl Default for LogConfig {
    /// What a server does without `--log`: info and above to stderr.
    fn default() -> Self {
        LogConfig {
            min_level: Level::Info,
            outputs: vec![Output::Console],
        }
    }
}

/// What is wrong with a config's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid XML at line {line}, column {column}: {message}")]
    Xml {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("no <seelog> element found")]
    NoRoot,
    #[error("the root element is <{found}>, expected <seelog>")]
    WrongRoot { found: String },
    #[error(
        "unknown minlevel {value:?}, expected one of: trace, debug, info, warn, error, critical, off"
    )]
    UnknownLevel { value: String },
    #[error("<{element}> needs a {attribute}=\"...\" attribute")]
    MissingAttribute {
        element: String,
        attribute: &'static str,
    },
    #[error("unsupported element <{element}> inside <{parent}>")]
    UnsupportedElement { element: String, parent: String },
    #[error("unsupported attribute {attribute:?} on <{element}>")]
    UnsupportedAttribute { element: String, attribute: String },
    #[error("more than one <outputs> element")]
    DuplicateOutputs,
    #[error("no outputs: add <outputs> with <file path=\"...\"/> or <console/>")]
    NoOutputs,
}

/// A config that could not be loaded, or logging that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogConfigError {
    #[error("cannot read log config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid log config {path}: {source}")]
    Invalid { path: PathBuf, source: ParseError },
    #[error("cannot create the folder for log file {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open log file {path}: {source}")]
    OpenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("logging was already set up in this process")]
    AlreadyInitialised,
}

impl LogConfig {
    /// Reads and parses the config at `path`.
    pub fn load(path: &Path) -> Result<LogConfig, LogConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| LogConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        LogConfig::parse(&text).map_err(|source| LogConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses a config's text.
    pub fn parse(text: &str) -> Result<LogConfig, ParseError> {
        parse::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.xml");
        let err = LogConfig::load(&missing).expect_err("missing");
        assert!(matches!(err, LogConfigError::Read { .. }));
        assert!(err.to_string().contains("nope.xml"), "{err}");

        let bad = dir.path().join("bad.xml");
        std::fs::write(
            &bad,
            r#"<seelog minlevel="chatty"><outputs><console/></outputs></seelog>"#,
        )
        .expect("write");
        let err = LogConfig::load(&bad).expect_err("bad level").to_string();
        assert!(
            err.contains("bad.xml") && err.contains("\"chatty\""),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_configs_parse() {
        let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc");
        for name in ["auth.xml", "log-01.xml", "log-02.xml"] {
            let cfg = LogConfig::load(&etc.join(name)).expect(name);
            assert_eq!(cfg.min_level, Level::Info, "{name}");
            assert!(
                matches!(cfg.outputs.as_slice(), [Output::File(p)] if p.starts_with("log")),
                "{name}"
            );
        }
    }
}
