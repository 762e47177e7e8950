//! Replacing a file so that a crash at any instant leaves the old content or the new, never a mix.
//!
//! The recipe: write a temp file in the *same* folder (a rename is only atomic within one file
//! system), fsync it so its data is on disk before its name is, give it its final mode, rename it
//! over the target, then fsync the folder so the rename itself survives a power cut. On any error
//! before the rename the temp file is removed and the old file is untouched.
//!
//! Not handled, on purpose: if `path` is a symlink, the link itself is replaced (not its target);
//! a temp file orphaned by a `kill -9` between create and rename stays behind (its name starts
//! with `.NAME.tmp.` so it is easy to spot); removing it blindly could race a live writer.
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Atomically replaces (or creates) `path` with `bytes`, with permission bits `mode` (e.g. 0o600).
///
/// Errors name the path involved. Returns an error also when the data was renamed into place but
/// the folder could not be fsynced: the content is there but might not survive a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot write {}: the path has no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (tmp_path, file) = create_temp(dir, &name.to_string_lossy(), mode)?;
    if let Err(e) = fill_and_rename(file, &tmp_path, path, bytes, mode) {
        // Best effort: `e` is the error that matters. If the rename itself failed the temp file
        // is still there and goes now; the target was never touched.
        let _ = fs::remove_file(&tmp_path);
        return Err(e);
    }
    sync_dir(dir)
}

/// Creates `DIR/.NAME.tmp.PID.N` exclusively, so concurrent writers never share a temp file.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let mut last_err = None;
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp.{pid}.{n}"));
        // Created with the final mode (less the umask) so no wider-open window exists.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(with_path(e, "cannot create temp file", &tmp)),
        }
    }
    let e = last_err.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(with_path(e, "cannot find a free temp file name in", dir))
}

fn fill_and_rename(
    mut file: File,
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    file.write_all(bytes)
        .map_err(|e| with_path(e, "cannot write temp file", tmp))?;
    // Explicit chmod: the mode given at creation was narrowed by the umask.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| with_path(e, "cannot set the mode of temp file", tmp))?;
    file.sync_all()
        .map_err(|e| with_path(e, "cannot fsync temp file", tmp))?;
    drop(file);
    fs::rename(tmp, path).map_err(|e| {
        let msg = format!(
            "cannot rename {} over {}: {e}",
            tmp.display(),
            path.display()
        );
        io::Error::new(e.kind(), msg)
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, "cannot fsync folder", dir))
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn creates_a_new_file_with_the_given_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("state.json");
        write_atomic(&p, b"{}", 0o600).expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"{}");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(names_in(dir.path()), ["state.json"]);
    }

    #[test]
    fn mode_is_exact_even_when_wider_than_the_umask_allows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("shared");
        write_atomic(&p, b"x", 0o666).expect("write");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
    }

    #[test]
    fn replaces_an_existing_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("dump");
        fs::write(&p, b"old content that is longer").expect("seed");
        write_atomic(&p, b"new", 0o644).expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"new");
        assert_eq!(names_in(dir.path()), ["dump"]);
    }

    #[test]
    fn path_without_a_file_name_is_rejected() {
        let err = write_atomic(Path::new(""), b"x", 0o600).expect_err("empty path");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn missing_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("no-such-dir").join("dump");
        let err = write_atomic(&p, b"x", 0o600).expect_err("no folder");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("no-such-dir"), "{err}");
    }

    #[test]
    fn parent_that_is_a_regular_file_fails_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let not_a_dir = dir.path().join("plain");
        fs::write(&not_a_dir, b"i am a file").expect("seed");
        let p = not_a_dir.join("dump");
        let err = write_atomic(&p, b"x", 0o600).expect_err("parent is a file");
        assert!(err.to_string().contains("plain"), "{err}");
        assert_eq!(fs::read(&not_a_dir).expect("read"), b"i am a file");
        assert_eq!(names_in(dir.path()), ["plain"]);
    }

    #[test]
    fn failed_rename_removes_the_temp_and_keeps_the_target() {
        // A non-empty folder cannot be renamed over, even by root: the failure comes after the
        // temp file was written, which is the path that must clean up.
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("occupied");
        fs::create_dir(&target).expect("mkdir");
        fs::write(target.join("inside"), b"keep me").expect("seed");
        let err = write_atomic(&target, b"x", 0o600).expect_err("rename over a folder");
        assert!(err.to_string().contains("occupied"), "{err}");
        assert_eq!(names_in(dir.path()), ["occupied"]);
        assert_eq!(fs::read(target.join("inside")).expect("read"), b"keep me");
    }

    #[test]
    fn read_only_folder_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("dump");
        fs::write(&p, b"old").expect("seed");
        fs::set_permissions(dir.path(), Permissions::from_mode(0o500)).expect("chmod");
        // Root (and CAP_DAC_OVERRIDE) ignores folder permissions; probe instead of guessing.
        let privileged = fs::write(dir.path().join("probe"), b"").is_ok();
        if !privileged {
            let err = write_atomic(&p, b"new", 0o600).expect_err("read-only folder");
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
            assert!(
                err.to_string().contains(&dir.path().display().to_string()),
                "{err}"
            );
            assert_eq!(fs::read(&p).expect("read"), b"old");
            assert_eq!(names_in(dir.path()), ["dump"]);
        }
        fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).expect("chmod back");
    }

    #[test]
    fn concurrent_writers_never_tear_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("dump");
        let contents: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 4096]).collect();
        std::thread::scope(|s| {
            for c in &contents {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..25 {
                        write_atomic(p, c, 0o600).expect("write");
                        let now = fs::read(p).expect("read");
                        assert!(contents_ok(&now), "torn file of {} bytes", now.len());
                    }
                });
            }
        });
        assert!(contents.contains(&fs::read(&p).expect("read")));
        assert_eq!(names_in(dir.path()), ["dump"]);
    }

    /// A whole 4 KiB run of one letter.
    fn contents_ok(b: &[u8]) -> bool {
        b.len() == 4096 && b.iter().all(|x| *x == b[0])
    }
}
