//! The dump file on disk: the lock that keeps one supervisor per dump, reading it defensively,
//! and writing it off the event loop.
use procio::procfs;
use servicekit::atomic_file::write_atomic;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use supervisor_core::Checkpoint;

/// An exclusive `flock` on `DUMP.lock`, held for the supervisor's life.
#[derive(Debug)]
pub struct DumpLock {
    _file: File,
    pub path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another supervisor (pid {pid}) is already using dump file {dump}; it holds {lock}")]
    Held {
        pid: String,
        dump: PathBuf,
        lock: PathBuf,
    },
    // The io::Error is part of the message, not a `source`: error chains would print it twice.
    #[error("cannot open lock file {lock}: {error}")]
    Io { lock: PathBuf, error: io::Error },
    #[error("cannot create folder {dir} for the dump file: {error}")]
    Folder { dir: PathBuf, error: io::Error },
}

/// The lock file's path for a dump file: `DUMP.lock`.
pub fn lock_path(dump: &Path) -> PathBuf {
    let mut s = dump.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl DumpLock {
    pub fn acquire(dump: &Path) -> Result<DumpLock, LockError> {
        let lock = lock_path(dump);
        let io_err = |error| LockError::Io {
            lock: lock.clone(),
            error,
        };
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| {
                // "File exists" would puzzle: say which path is in the way.
                let error = match dir.ancestors().find(|a| a.is_file()) {
                    Some(file) => io::Error::new(
                        error.kind(),
                        format!("{} is a file, not a folder", file.display()),
                    ),
                    None => error,
                };
                LockError::Folder {
                    dir: dir.to_path_buf(),
                    error,
                }
            })?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock)
            .map_err(io_err)?;
        // SAFETY: flock on a descriptor we own.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                // The holder is named by its runtime file (checked by start time), not by a
                // pid in this file that would outlive it.
                return Err(LockError::Held {
                    pid: crate::runtime::lock_holder(dump),
                    dump: dump.to_path_buf(),
                    lock,
                });
            }
            return Err(io_err(e));
        }
        // Older versions wrote their pid here; it would read as alive after they exit.
        file.set_len(0).map_err(io_err)?;
        Ok(DumpLock {
            _file: file,
            path: lock,
        })
    }
}

/// What was found at the dump path.
#[derive(Debug)]
pub enum DumpRead {
    Missing,
    Valid(Box<Checkpoint>),
    /// Unreadable or corrupt: moved aside (when possible) and not trusted.
    Corrupt {
        error: String,
        kept_as: Option<PathBuf>,
    },
}

/// Dumps larger than this are not read: 10 000 tasks take about 3 MB.
pub const MAX_DUMP_BYTES: u64 = 64 << 20;

/// Reads the dump at `path`; a corrupt one is renamed to `PATH.corrupt-<unix seconds>` (with
/// `-2`, `-3`, ... appended when that name is taken, so no earlier evidence is overwritten).
///
/// Anything but a regular file is corrupt too: a FIFO would block the start-up forever, a device
/// could be endless. The file is opened without blocking and checked through its descriptor.
pub fn read_dump(path: &Path) -> DumpRead {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return DumpRead::Missing,
        Err(e) => return set_aside(path, format!("cannot read {}: {e}", path.display())),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return set_aside(path, format!("cannot read {}: {e}", path.display())),
    };
    if !meta.is_file() {
        return set_aside(path, format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_DUMP_BYTES {
        return set_aside(
            path,
            format!(
                "{} is too large for a dump ({} bytes, at most {MAX_DUMP_BYTES})",
                path.display(),
                meta.len()
            ),
        );
    }
    let mut text = String::new();
    if let Err(e) = (&file).take(MAX_DUMP_BYTES + 1).read_to_string(&mut text) {
        return set_aside(path, format!("cannot read {}: {e}", path.display()));
    }
    match Checkpoint::parse(&text) {
        Ok(c) => DumpRead::Valid(Box::new(c)),
        // `CheckpointError` says "not a valid dump: ..." itself.
        Err(e) => set_aside(path, format!("{}: {e}", path.display())),
    }
}

fn set_aside(path: &Path, error: String) -> DumpRead {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Under the dump lock nobody else renames into this folder: checking for a free name first
    // is enough. A supervisor crash-looping under an init system can find a corrupt dump twice
    // within a second; each one is evidence worth keeping.
    let kept_as = (1..=1000)
        .map(|n| aside_name(path, secs, n))
        .find(|p| std::fs::symlink_metadata(p).is_err());
    let kept_as = kept_as.and_then(|aside| std::fs::rename(path, &aside).ok().map(|_| aside));
    DumpRead::Corrupt { error, kept_as }
}

/// `PATH.corrupt-SECS` for the first, `PATH.corrupt-SECS-N` after that.
fn aside_name(path: &Path, secs: u64, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    if n == 1 {
        s.push(format!(".corrupt-{secs}"));
    } else {
        s.push(format!(".corrupt-{secs}-{n}"));
    }
    PathBuf::from(s)
}

/// A stable id for the supervisor instance that owns `dump`: the same dump file gives the same
/// id across restarts, so a restarted supervisor recognises its predecessor's processes and
/// cgroups. Two supervisors never share one: a dump copied to another path (or the same path
/// in another folder, as in another mount namespace) gives another id, because the id covers the
/// absolute path and the device and inode of the dump's folder.
pub fn instance_id(dump: Option<&Path>) -> String {
    match dump {
        Some(p) => {
            let abs = absolute(p);
            let mut key = abs.as_os_str().as_encoded_bytes().to_vec();
            if let Some(meta) = abs.parent().and_then(|d| std::fs::metadata(d).ok()) {
                use std::os::unix::fs::MetadataExt;
                key.extend_from_slice(format!("\0{}:{}", meta.dev(), meta.ino()).as_bytes());
            }
            format!("dump-{:016x}", fnv1a(&key))
        }
        None => {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!(
                "run-{:016x}",
                fnv1a(format!("{}-{t}", std::process::id()).as_bytes())
            )
        }
    }
}

/// `p` made absolute against the working directory, with the folder resolved when it exists.
pub fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    match (
        joined.parent().and_then(|d| d.canonicalize().ok()),
        joined.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => joined,
    }
}

/// True when some supervisor holds the lock of dump file `dump` right now.
pub fn lock_is_held(dump: &Path) -> bool {
    let Ok(f) = File::open(lock_path(dump)) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; a shared lock taken is released at once.
    unsafe {
        if libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 {
            return io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
        }
        libc::flock(f.as_raw_fd(), libc::LOCK_UN);
    }
    false
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The result of one background write.
#[derive(Debug)]
pub struct WriteResult {
    pub took: Duration,
    pub error: Option<String>,
    pub bytes: usize,
}

/// A thread that writes dumps so the event loop never waits on fsync.
///
/// Dropping it waits (a bounded time) for the write in flight, so a clean exit never leaves a
/// half-written temp file behind. [`write_now`] (the final, clean dump) seals the path: a
/// periodic dump still queued in the writer can no longer land on top of it.
pub struct Writer {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    finished: mpsc::Receiver<()>,
}

/// How long dropping a [`Writer`] waits for its last write (fsync on a sick disk can hang).
const WRITER_DRAIN: Duration = Duration::from_secs(5);

/// Dumps written with [`write_now`]: later background writes to them are dropped.
static SEALED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn sealed() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    SEALED.lock().unwrap_or_else(|p| p.into_inner())
}

impl Writer {
    /// Starts the writer; each finished write is reported through `done`.
    pub fn start(
        path: PathBuf,
        done: tokio::sync::mpsc::UnboundedSender<WriteResult>,
    ) -> io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let (finished_tx, finished) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || {
                while let Ok(bytes) = rx.recv() {
                    let t = Instant::now();
                    // Holding the seal lock for the write orders it against `write_now`.
                    let guard = sealed();
                    if guard.contains(&path) {
                        break;
                    }
                    let error = write_atomic(&path, &bytes, 0o600)
                        .err()
                        .map(|e| e.to_string());
                    drop(guard);
                    let r = WriteResult {
                        took: t.elapsed(),
                        error,
                        bytes: bytes.len(),
                    };
                    if done.send(r).is_err() {
                        break;
                    }
                }
                let _ = finished_tx.send(());
            })?;
        Ok(Writer {
            tx: Some(tx),
            finished,
        })
    }

    pub fn submit(&self, bytes: Vec<u8>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(bytes).is_ok())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the write in flight (queued ones still go,
        // unless the path was sealed meanwhile).
        self.tx = None;
        let _ = self.finished.recv_timeout(WRITER_DRAIN);
    }
}

/// Writes synchronously (used for the final, clean dump at shutdown) and seals `path` against
/// background writes still queued.
pub fn write_now(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut guard = sealed();
    let r = write_atomic(path, bytes, 0o600);
    if !guard.iter().any(|p| p == path) {
        guard.push(path.to_path_buf());
    }
    r
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This process's start time in clock ticks after boot.
pub fn own_start_ticks() -> u64 {
    procfs::stat(std::process::id() as i32)
        .map(|s| s.start_ticks)
        .unwrap_or(0)
}
