//! The supervisor's own log, written by a thread of its own: nothing the sink does (a full disk,
//! a stderr pipe nobody reads, a slow terminal) can stop the event loop.
//!
//! # Theory of operation
//! A thread that logs (the loop, the API, the checkpoint writer) formats its line and puts it on
//! a bounded queue ([`MAX_QUEUED_LINES`], [`MAX_QUEUED_BYTES`]); it never waits for IO and
//! never for the writer. When the queue is full the line is dropped and counted ([`stats`],
//! shown by `/health` and `/metrics`); once the writer can write again it logs how many were
//! lost. The writer thread takes everything queued at once and writes it with one `write`.
//!
//! SIGHUP's reopen opens the new file on the caller's thread without blocking (`O_NONBLOCK`: a
//! FIFO without a reader is an error, not a hang) and hands it to the writer, which switches
//! between two batches: no line is lost, and none logged after the reopen goes to the old file.
//!
//! With `--log=FILE` and a terminal on standard error, WARN and ERROR lines are copied to the
//! terminal too ([`LogTarget::tee_warnings`]), through a queue and a writer thread of their own:
//! a paused terminal (Ctrl-S) loses copies, never lines of the file. At an exit
//! [`LogTarget::flush`] waits a bounded time for the queues to drain: a stuck sink delays the
//! exit, but cannot prevent it.
use crate::log_queue::LineQueue;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds at most. A start-up of 10 000 tasks logs about 5 lines per ms; the
/// writer takes them in batches far faster, so only a sink that is stuck (or a writer starved
/// of CPU for most of a second) fills this.
pub const MAX_QUEUED_LINES: usize = 4096;
/// Bytes the queue holds at most (long lines must not make the queue huge).
pub const MAX_QUEUED_BYTES: usize = 1 << 20;
/// Lines dropped less than this long ago make `/health` degraded.
pub const DROP_DEGRADES_FOR: Duration = Duration::from_secs(10);

/// Where log lines go; cheap to clone, shared with the subscriber.
#[derive(Clone)]
pub struct LogTarget {
    shared: Arc<Shared>,
}

/// What `/health` and `/metrics` show about the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Lines dropped since start because the queue was full (the sink did not keep up), or
    /// because the sink refused them (a write error).
    pub dropped: u64,
    /// Whether a line was dropped within [`DROP_DEGRADES_FOR`].
    pub dropping: bool,
    /// Lines waiting for the writer now.
    pub queued: usize,
}

/// The stats of the installed log (zero before one is installed).
pub fn stats() -> LogStats {
    INSTALLED.get().map(|s| s.stats()).unwrap_or_default()
}

/// The log that [`LogTarget::install`] made the global subscriber's.
static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

#[derive(Debug, Clone)]
enum Kind {
    Stderr,
    File(PathBuf),
}

struct Shared {
    kind: Kind,
    /// Every line, for the log itself.
    lines: LineQueue,
    /// Copies of WARN and ERROR lines for the terminal (only with a log file).
    tee_lines: LineQueue,
    /// A file opened by [`LogTarget::reopen`], for the writer to switch to.
    reopened: Mutex<Option<File>>,
    /// Copy WARN and ERROR lines to standard error too.
    tee: AtomicBool,
    dropped: AtomicU64,
    /// When the last line was dropped, in ms after `epoch` (0: never).
    last_drop_ms: AtomicU64,
    epoch: Instant,
    started: OnceLock<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens `path` for appending without blocking in `open` (a FIFO without a reader fails with
/// ENXIO instead of hanging); the descriptor is made blocking again for the writer thread.
fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create log folder {}: {e}", dir.display()),
            )
        })?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::ENXIO) {
                " (a FIFO that nobody reads)"
            } else {
                ""
            };
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}{hint}", path.display()),
            )
        })?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; only the O_NONBLOCK status flag changes.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !ok {
        return Err(io::Error::other(format!(
            "cannot set up log file {}: {}",
            path.display(),
            io::Error::last_os_error()
        )));
    }
    Ok(file)
}

impl LogTarget {
    pub fn stderr() -> Self {
        Self::new(Kind::Stderr, None)
    }

    pub fn file(path: &Path) -> io::Result<Self> {
        let file = open_append(path)?;
        Ok(Self::new(Kind::File(path.to_path_buf()), Some(file)))
    }

    fn new(kind: Kind, file: Option<File>) -> Self {
        LogTarget {
            shared: Arc::new(Shared {
                kind,
                lines: LineQueue::new(MAX_QUEUED_LINES, MAX_QUEUED_BYTES),
                tee_lines: LineQueue::new(MAX_QUEUED_LINES, MAX_QUEUED_BYTES),
                reopened: Mutex::new(file),
                tee: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                last_drop_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                started: OnceLock::new(),
            }),
        }
    }

    /// Copies WARN and ERROR lines to standard error as well (for a log file with a person at
    /// the terminal). No effect when the log is standard error already.
    pub fn tee_warnings(&self, on: bool) {
        let on = on && matches!(self.shared.kind, Kind::File(_));
        self.shared.tee.store(on, Ordering::Relaxed);
    }

    /// Reopens the log file by name (after logrotate moved it away). The open happens here and
    /// cannot block; every line logged after this call goes to the new file. A failure keeps
    /// the old file, so no line is lost.
    pub fn reopen(&self) -> io::Result<()> {
        let Kind::File(path) = &self.shared.kind else {
            return Ok(());
        };
        let file = open_append(path)?;
        *lock(&self.shared.reopened) = Some(file);
        self.shared.lines.kick();
        Ok(())
    }

    /// Installs the global tracing subscriber writing here, and starts the writer thread.
    pub fn install(&self, level: tracing::Level) {
        self.start_writer();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_max_level(level)
            .with_ansi(false)
            .with_target(false)
            .finish();
        // Only fails when a subscriber is already set (tests calling twice): keep the first.
        if tracing::subscriber::set_global_default(subscriber).is_ok() {
            let _ = INSTALLED.set(self.shared.clone());
        }
    }

    /// Waits up to `timeout` until every line queued so far is written. False when the sink
    /// did not take them in time (they stay queued; the process may exit regardless).
    pub fn flush(&self, timeout: Duration) -> bool {
        if self.shared.started.get().is_none() {
            return true;
        }
        let deadline = Instant::now() + timeout;
        let lines = self.shared.lines.wait_drained(deadline);
        let copies = !self.shared.tee.load(Ordering::Relaxed)
            || self.shared.tee_lines.wait_drained(deadline);
        lines && copies
    }

    pub fn stats(&self) -> LogStats {
        self.shared.stats()
    }

    fn start_writer(&self) {
        if self.shared.started.set(()).is_err() {
            return;
        }
        let shared = self.shared.clone();
        let spawned = without_signals(|| {
            std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || shared.write_loop())
        });
        if let Err(e) = spawned {
            // Without a writer the lines would only pile up: say so once, where someone looks.
            eprintln!("supervisor: cannot start the log writer thread: {e}; logging is off");
        }
        if matches!(self.shared.kind, Kind::File(_)) {
            let shared = self.shared.clone();
            let spawned = without_signals(|| {
                std::thread::Builder::new()
                    .name("log-tee".into())
                    .spawn(move || shared.tee_loop())
            });
            if let Err(e) = spawned {
                eprintln!("supervisor: cannot start the log's terminal thread: {e}");
            }
        }
    }

    /// Queues one finished line; never blocks on IO.
    fn push(&self, text: Vec<u8>, severe: bool) {
        let s = &self.shared;
        if text.is_empty() {
            return;
        }
        if severe && s.tee.load(Ordering::Relaxed) {
            // A copy for the terminal; lost (not counted) if the terminal does not keep up.
            let _ = s.tee_lines.push(text.clone());
        }
        if !s.lines.push(text) {
            s.count_drop(1);
        }
    }
}

impl Shared {
    fn stats(&self) -> LogStats {
        let last = self.last_drop_ms.load(Ordering::Relaxed);
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        LogStats {
            dropped: self.dropped.load(Ordering::Relaxed),
            dropping: last != 0
                && now_ms.saturating_sub(last) < DROP_DEGRADES_FOR.as_millis() as u64,
            queued: self.lines.len(),
        }
    }

    fn count_drop(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        // +1: 0 means "never".
        let now_ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_drop_ms.store(now_ms, Ordering::Relaxed);
    }

    fn write_loop(&self) {
        disfavor_on_wakeup();
        let mut file: Option<File> = lock(&self.reopened).take();
        let mut reported_drops = 0u64;
        let mut buf = Vec::new();
        loop {
            let batch = self.lines.take();
            // A file reopened before a line was queued is in place before that line is
            // written; lines queued before the reopen may go to either file, never lost.
            if let Some(f) = lock(&self.reopened).take() {
                file = Some(f);
            }
            buf.clear();
            for l in &batch {
                buf.extend_from_slice(l);
            }
            let written = match (&self.kind, &mut file) {
                (Kind::File(_), Some(f)) => f.write_all(&buf),
                (Kind::File(_), None) => Ok(()),
                (Kind::Stderr, _) => io::stderr().lock().write_all(&buf),
            };
            if written.is_err() {
                self.count_drop(batch.len() as u64);
            }
            self.lines.done(batch.len());
            let dropped = self.dropped.load(Ordering::Relaxed);
            if dropped > reported_drops && written.is_ok() {
                tracing::warn!(
                    lost = dropped - reported_drops,
                    lost_total = dropped,
                    "log lines were dropped: the log could not be written as fast as they came"
                );
                reported_drops = dropped;
            }
        }
    }

    fn tee_loop(&self) {
        disfavor_on_wakeup();
        let mut buf = Vec::new();
        loop {
            let batch = self.tee_lines.take();
            buf.clear();
            for l in &batch {
                buf.extend_from_slice(l);
            }
            let _ = io::stderr().lock().write_all(&buf);
            self.tee_lines.done(batch.len());
        }
    }
}

/// Writes `text` to standard error from a helper thread and waits for it at most `timeout`:
/// for the last words of an exit, when standard error may be a pipe that nobody reads.
pub fn eprint_bounded(text: String, timeout: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("last-words".into())
        .spawn(move || {
            let _ = io::stderr().lock().write_all(text.as_bytes());
            let _ = tx.send(());
        });
    if spawned.is_ok() {
        let _ = rx.recv_timeout(timeout);
    }
}

/// Makes the calling thread `SCHED_BATCH`: woken by a queued line, it does not preempt what
/// runs on that CPU. A restart logs its lines right after the spawn, and on a busy machine the
/// writer would otherwise take the CPU from the task just started.
fn disfavor_on_wakeup() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; a valid parameter for a non-real-time policy.
    // Failure (a seccomp filter, say) only leaves the default policy.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

/// Runs `f` (a thread spawn) with every signal blocked, so the new thread starts with all of
/// them blocked: SIGCHLD must reach only the event loop's signalfd, never a helper thread.
fn without_signals<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigfillset/pthread_sigmask on valid, zero-initialised sets.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let r = f();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    r
}

/// One log line being formatted; queued when dropped.
pub struct LineWriter<'a> {
    target: &'a LogTarget,
    buf: Vec<u8>,
    severe: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        self.target.push(std::mem::take(&mut self.buf), self.severe);
    }
}

impl<'a> MakeWriter<'a> for LogTarget {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            target: self,
            buf: Vec::new(),
            severe: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            target: self,
            buf: Vec::with_capacity(256),
            severe: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_target() -> (tempfile::TempDir, LogTarget) {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = LogTarget::file(&dir.path().join("a.log")).expect("open");
        t.start_writer();
        (dir, t)
    }

    #[test]
    fn lines_reach_the_file_in_order_and_flush_waits_for_them() {
        let (dir, t) = file_target();
        for i in 0..1000 {
            t.push(format!("line {i}\n").into_bytes(), false);
        }
        assert!(t.flush(Duration::from_secs(10)));
        let text = std::fs::read_to_string(dir.path().join("a.log")).expect("read");
        let want: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, want);
        assert_eq!(t.stats().dropped, 0);
    }

    #[test]
    fn reopen_switches_files_after_the_lines_queued_before_it() {
        let (dir, t) = file_target();
        let path = dir.path().join("a.log");
        t.push(b"old 1\n".to_vec(), false);
        assert!(t.flush(Duration::from_secs(10)));
        std::fs::rename(&path, dir.path().join("a.log.1")).expect("rotate");
        t.push(b"old 2\n".to_vec(), false);
        t.reopen().expect("reopen");
        t.push(b"new 1\n".to_vec(), false);
        assert!(t.flush(Duration::from_secs(10)));
        let old = std::fs::read_to_string(dir.path().join("a.log.1")).expect("old");
        let new = std::fs::read_to_string(&path).expect("new");
        // "old 2" may land in either file (it raced the reopen); "new 1" only in the new one.
        assert!(old.starts_with("old 1\n"), "{old:?}");
        assert!(
            new.ends_with("new 1\n") && !old.contains("new"),
            "{old:?} {new:?}"
        );
        assert_eq!(format!("{old}{new}").matches("old 2").count(), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // No writer thread: nothing drains the queue, as with a sink that is stuck.
        let dir = tempfile::tempdir().expect("tempdir");
        let t = LogTarget::file(&dir.path().join("a.log")).expect("open");
        let t0 = Instant::now();
        for _ in 0..MAX_QUEUED_LINES + 500 {
            t.push(b"x\n".to_vec(), false);
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        let s = t.stats();
        assert_eq!(s.dropped, 500);
        assert!(s.dropping);
        assert_eq!(s.queued, MAX_QUEUED_LINES);
    }

    #[test]
    fn a_fifo_without_reader_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = LogTarget::file(&fifo).err().expect("an error");
        assert!(e.to_string().contains("FIFO"), "{e}");
    }
}
