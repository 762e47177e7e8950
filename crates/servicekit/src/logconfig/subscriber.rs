//! The global `tracing` subscriber a config describes.
use std::fs::{File, OpenOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use super::{LogConfig, LogConfigError, Output};

/// Keeps log files open for the life of the process; on drop, flushes them to disk so the last
/// lines before a clean exit are not lost in the page cache of a crashing machine.
#[must_use = "dropping the guard early is harmless but loses the final fsync"]
pub struct LogGuard {
    files: Vec<(PathBuf, Arc<File>)>,
    console_errors: bool,
}

impl LogGuard {
    /// Whether error lines reach stderr through the log; if not, a fatal start-up error should
    /// also be printed there, where a supervisor's error file catches it.
    pub fn to_console(&self) -> bool {
        self.console_errors
    }

    /// The log files being written, for the start-up message.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        for (_, f) in &self.files {
            // Best effort at exit: there is nowhere left to report a failure to.
            let _ = f.sync_data();
        }
    }
}

/// Installs the global `tracing` subscriber for `cfg` (`None`: info and above to stderr).
///
/// Log files are opened in append mode, so a restarted server adds to the old log rather than
/// wiping the lines that explain why it restarted; their folders are created.
pub fn init_logging(cfg: Option<&LogConfig>) -> Result<LogGuard, LogConfigError> {
    let default = LogConfig::default();
    let cfg = cfg.unwrap_or(&default);
    let filter = cfg.min_level.filter();
    let mut files = Vec::new();
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    for output in &cfg.outputs {
        match output {
            Output::Console => layers.push(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter)
                    .boxed(),
            ),
            Output::File(path) => {
                let file = Arc::new(open_log_file(path)?);
                files.push((path.clone(), file.clone()));
                layers.push(
                    tracing_subscriber::fmt::layer()
                        .with_writer(file)
                        .with_ansi(false)
                        .with_filter(filter)
                        .boxed(),
                );
            }
        }
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| LogConfigError::AlreadyInitialised)?;
    let console_errors = cfg.outputs.contains(&Output::Console) && filter >= LevelFilter::ERROR;
    Ok(LogGuard {
        files,
        console_errors,
    })
}

/// Loads the config named by a `--log` flag, if any, and installs it.
pub fn init_from_flag(path: Option<&Path>) -> Result<LogGuard, LogConfigError> {
    let cfg = path.map(LogConfig::load).transpose()?;
    init_logging(cfg.as_ref())
}

fn open_log_file(path: &Path) -> Result<File, LogConfigError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LogConfigError::CreateDir {
            path: path.to_path_buf(),
            source,
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogConfigError::OpenFile {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_folder_is_created_and_opened_for_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deep/er/x.log");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"earlier line\n").expect("seed");
        let f = open_log_file(&path).expect("open");
        std::io::Write::write_all(&mut &f, b"later line\n").expect("append");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "earlier line\nlater line\n"
        );

        let fresh = dir.path().join("new/folder/y.log");
        open_log_file(&fresh).expect("creates folders");
        assert!(fresh.exists());

        let blocked = dir.path().join("deep/er/x.log/z.log");
        let err = open_log_file(&blocked).expect_err("parent is a file");
        assert!(err.to_string().contains("z.log"), "{err}");
    }
}
