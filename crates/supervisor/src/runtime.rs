//! The runtime file `DUMP.api`: which supervisor runs for a dump, and where its API is.
//!
//! `supervisor ctl --dumpfile=DUMP` reads it to find the API, and sends the instance it names
//! with every request, so that it acts on that supervisor or on none (the API refuses another
//! instance, see `api::instance`). `supervisor ctl pid` checks its pid against the process's
//! start time and boot id before printing it.
//!
//! It is written atomically with mode 0600 once the dump lock is held and the API is bound, and
//! removed when the supervisor exits (any exit that runs destructors: a clean stop, a fatal
//! error). Only a crash leaves it behind, and then its pid is checked, never trusted.
use crate::checkpoint_io::{self, DumpLock};
use procio::procfs;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// The runtime file's path for a dump file: `DUMP.api`.
pub fn runtime_path(dump: &Path) -> PathBuf {
    let mut s = dump.as_os_str().to_owned();
    s.push(".api");
    PathBuf::from(s)
}

/// What the runtime file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub version: u32,
    pub pid: u32,
    /// `/proc/PID/stat` start time, clock ticks after boot.
    pub start_time: u64,
    pub boot_id: String,
    /// The supervisor's instance id (`X-Timeservice-Instance`, `TIMESERVICE_SUPERVISOR`).
    pub instance: String,
    /// `host:port` of the API; `None` with `--listen=none`.
    pub api: Option<String>,
    /// The dump file, absolute.
    pub dump: PathBuf,
    /// `--api-token-file`, absolute, when the API needs a token (the token itself is not here).
    pub token_file: Option<PathBuf>,
}

/// Whether the process a runtime file names is the one that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// No such process, or the pid now belongs to a process that started at another time.
    Gone,
    /// Written during another boot.
    OtherBoot,
}

impl RuntimeInfo {
    pub fn liveness(&self) -> Liveness {
        if procfs::boot_id().ok().as_deref() != Some(self.boot_id.as_str()) {
            return Liveness::OtherBoot;
        }
        match procfs::stat(self.pid as i32) {
            Ok(s) if s.start_ticks == self.start_time && !s.is_zombie() => Liveness::Alive,
            _ => Liveness::Gone,
        }
    }

    /// `pid 4242, dump /x/run/supervisor.dump, instance dump-…`.
    pub fn describe(&self) -> String {
        format!(
            "pid {}, dump file {}, instance {}",
            self.pid,
            self.dump.display(),
            self.instance
        )
    }
}

/// Why a runtime file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "no supervisor is running for dump file {dump}: {path} does not exist (a supervisor writes it while it runs)"
    )]
    Missing { dump: PathBuf, path: PathBuf },
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a supervisor runtime file: {error}")]
    Bad { path: PathBuf, error: String },
}

/// Reads the runtime file of `dump`.
pub fn read(dump: &Path) -> Result<RuntimeInfo, ReadError> {
    let path = runtime_path(dump);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReadError::Missing {
                dump: dump.to_path_buf(),
                path,
            });
        }
        Err(error) => return Err(ReadError::Io { path, error }),
    };
    serde_json::from_str(&text).map_err(|e| ReadError::Bad {
        path,
        error: e.to_string(),
    })
}

/// The runtime file of a live supervisor, and the dump lock it goes with. Dropping it removes
/// the file first and only then releases the lock, so the file never outlives the lock (and a
/// successor's file is never removed by us).
#[derive(Debug)]
pub struct RuntimeFile {
    path: PathBuf,
    written: bool,
    _lock: DumpLock,
}

impl RuntimeFile {
    /// Writes the runtime file of `dump` for this process, which holds its `lock`. A failure
    /// (a full disk) is logged, not fatal: the supervisor runs, but `ctl --dumpfile` cannot
    /// find it.
    pub fn write(
        lock: DumpLock,
        dump: &Path,
        instance: &str,
        boot_id: &str,
        api: Option<SocketAddr>,
        token_file: Option<&Path>,
    ) -> RuntimeFile {
        let info = RuntimeInfo {
            version: 1,
            pid: std::process::id(),
            start_time: checkpoint_io::own_start_ticks(),
            boot_id: boot_id.to_string(),
            instance: instance.to_string(),
            api: api.map(|a| a.to_string()),
            dump: absolute(dump),
            token_file: token_file.map(absolute),
        };
        let path = runtime_path(dump);
        let written = serde_json::to_vec_pretty(&info)
            .map_err(std::io::Error::other)
            .and_then(|mut bytes| {
                bytes.push(b'\n');
                servicekit::atomic_file::write_atomic(&path, &bytes, 0o600)
            });
        if let Err(e) = &written {
            tracing::error!(path = %path.display(), error = %e, "cannot write the runtime file; supervisor ctl --dumpfile will not find this supervisor");
        }
        RuntimeFile {
            path,
            written: written.is_ok(),
            _lock: lock,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RuntimeFile {
    fn drop(&mut self) {
        // Nobody else writes this path while we hold the dump lock.
        if self.written {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// With the dump `lock` held, binds the API (`(address, given with --listen)`), then writes the
/// runtime file: in this order, so that a taken address fails before anything else happens,
/// and the runtime file, once written, names an API that is bound. (The lock is taken first,
/// by the caller: it creates the dump's folder, whose identity the instance id covers.)
pub fn claim(
    lock: Option<DumpLock>,
    dump: Option<&Path>,
    listen: Option<(SocketAddr, bool)>,
    instance: &str,
    boot_id: &str,
    token_file: Option<&Path>,
) -> anyhow::Result<(Option<TcpListener>, Option<RuntimeFile>)> {
    let listener = match listen {
        Some((addr, explicit)) => {
            Some(crate::api_listen::bind(addr, explicit).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    let file = match (lock, dump) {
        (Some(lock), Some(dump)) => Some(RuntimeFile::write(
            lock, dump, instance, boot_id, addr, token_file,
        )),
        _ => None,
    };
    Ok((listener, file))
}

/// `p` against the working directory (not canonicalised: the folder may be a symlink a person
/// recognises).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The holder of `dump`'s lock for the "already in use" message: the pid from the runtime file,
/// when that process is alive (checked by start time), else "unknown".
pub fn lock_holder(dump: &Path) -> String {
    match read(dump) {
        Ok(info) if info.liveness() == Liveness::Alive => match &info.api {
            Some(api) => format!("{}, API {api}", info.pid),
            None => info.pid.to_string(),
        },
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_with_mode_0600_read_back_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("s.dump");
        let boot = procfs::boot_id().expect("boot id");
        let addr: SocketAddr = "127.0.0.1:7171".parse().expect("addr");
        let lock = DumpLock::acquire(&dump).expect("lock");
        let f = RuntimeFile::write(lock, &dump, "dump-1", &boot, Some(addr), None);
        let mode = std::fs::metadata(f.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let info = read(&dump).expect("read");
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.api.as_deref(), Some("127.0.0.1:7171"));
        assert_eq!(info.liveness(), Liveness::Alive);
        assert!(lock_holder(&dump).starts_with(&std::process::id().to_string()));
        drop(f);
        assert!(matches!(read(&dump), Err(ReadError::Missing { .. })));
        assert_eq!(lock_holder(&dump), "unknown");
    }

    #[test]
    fn a_stale_pid_is_gone_and_another_boot_is_told_apart() {
        let mut info = RuntimeInfo {
            version: 1,
            pid: std::process::id(),
            start_time: checkpoint_io::own_start_ticks() + 1,
            boot_id: procfs::boot_id().expect("boot id"),
            instance: "x".into(),
            api: None,
            dump: "/d".into(),
            token_file: None,
        };
        assert_eq!(
            info.liveness(),
            Liveness::Gone,
            "same pid, other start time"
        );
        info.start_time -= 1;
        assert_eq!(info.liveness(), Liveness::Alive);
        info.boot_id = "another-boot".into();
        assert_eq!(info.liveness(), Liveness::OtherBoot);
    }
}
