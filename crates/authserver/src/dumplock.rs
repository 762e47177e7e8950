//! One auth server per dump file.
//!
//! Two servers writing one file would overwrite each other's sessions without a word, and the
//! next start would load whichever wrote last. Now that every auth server has a dump file by
//! default, two started in one folder would share it; so the first takes an exclusive `flock` on
//! `FILE.lock` for its whole life and a second one fails at start, naming the first one's pid.
//!
//! The kernel drops the lock when its holder dies, however it dies: a `kill -9` never leaves a
//! stale lock, and the supervisor's replacement (started once the death is seen, when the
//! dead process's files are already closed) gets it at once. The lock file itself stays; removing
//! it would let two processes hold locks on two different files of the same name.
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Held for as long as the dump file is ours.
#[derive(Debug)]
pub struct DumpLock {
    _file: File,
}

/// The dump file could not be made ours.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "dump file {dump} is in use by another auth server{} (it holds {lock}); give this one its own --dumpfile, or --dumpfile=none",
        holder.as_ref().map_or_else(String::new, |pid| format!(" (pid {pid})"))
    )]
    Held {
        dump: PathBuf,
        lock: PathBuf,
        holder: Option<String>,
    },
    #[error("cannot lock {lock} (the dump file's lock): {source}")]
    Io {
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// `DUMP.lock`.
pub fn lock_path(dump: &Path) -> PathBuf {
    let mut name = dump.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Locks `dump` for this process (its folder must exist), or says who holds it.
pub fn lock(dump: &Path) -> Result<DumpLock, LockError> {
    let path = lock_path(dump);
    let io = |source| LockError::Io {
        lock: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock only reads the descriptor number, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let holder = file
                .read_to_string(&mut text)
                .ok()
                .map(|_| text.trim().to_string())
                .filter(|t| !t.is_empty());
            return Err(LockError::Held {
                dump: dump.to_path_buf(),
                lock: path,
                holder,
            });
        }
        return Err(io(err));
    }
    // Who holds it, for the next one's error message. Only ever written under the lock.
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DumpLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_one_is_free() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("auth.json");
        let first = lock(&dump).expect("free");
        assert_eq!(
            std::fs::read_to_string(lock_path(&dump)).expect("lock file"),
            format!("{}\n", std::process::id())
        );
        // flock locks belong to the open file: a second open, even in this process, conflicts.
        let err = lock(&dump).expect_err("held");
        let msg = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{msg}");
        assert!(msg.contains(&dump.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("--dumpfile=none"), "{msg}");
        drop(first);
        lock(&dump).expect("free again once released");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("nope").join("auth.json");
        let msg = lock(&dump).expect_err("no folder").to_string();
        assert!(msg.contains("nope/auth.json.lock"), "{msg}");
    }
}
