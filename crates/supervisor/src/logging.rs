//! The supervisor's own log: one line per event, to a file (reopened on SIGHUP, for logrotate)
//! or to standard error.
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go; cheap to clone, shared with the subscriber.
#[derive(Clone)]
pub struct LogTarget {
    inner: Arc<Mutex<Sink>>,
}

enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create log folder {}: {e}", dir.display()),
            )
        })?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        })
}

impl LogTarget {
    pub fn stderr() -> Self {
        LogTarget {
            inner: Arc::new(Mutex::new(Sink::Stderr)),
        }
    }

    pub fn file(path: &Path) -> io::Result<Self> {
        let file = open_append(path)?;
        Ok(LogTarget {
            inner: Arc::new(Mutex::new(Sink::File {
                path: path.to_path_buf(),
                file,
            })),
        })
    }

    /// Reopens the log file by name (after logrotate moved it away). A failure keeps the old
    /// file open, so no line is lost.
    pub fn reopen(&self) -> io::Result<()> {
        let mut sink = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Sink::File { path, file } = &mut *sink {
            *file = open_append(path)?;
        }
        Ok(())
    }

    /// Installs the global tracing subscriber writing here.
    pub fn install(&self, level: tracing::Level) {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_max_level(level)
            .with_ansi(false)
            .with_target(false)
            .finish();
        // Only fails when a subscriber is already set (tests calling twice): keep the first.
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
}

/// One log line's writer: holds the lock for the line's duration so lines never interleave.
pub struct LineWriter<'a> {
    guard: std::sync::MutexGuard<'a, Sink>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *self.guard {
            Sink::Stderr => io::stderr().write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.guard {
            Sink::Stderr => io::stderr().flush(),
            Sink::File { file, .. } => file.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogTarget {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            guard: self.inner.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }
}
