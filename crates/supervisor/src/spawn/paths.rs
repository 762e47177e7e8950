//! The one path rule for tasks, used both to check a task before anything starts and to start
//! it: every relative path in a task (its program, `cwd`, `input`, `output`, `error`, and the
//! folders of a `PATH` it sets) is relative to the supervisor's working directory, never to the
//! task's `cwd`. A program without a slash is looked up in the task's `PATH` (its own, when its
//! `env` sets one; else the supervisor's), like a shell does.
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use supervisor_core::TaskSpec;

/// The supervisor's working directory, read once (it never changes it).
pub fn base_dir() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")))
}

/// `p` made absolute against the supervisor's working directory.
pub fn absolute(p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir().join(p)
    }
}

/// Why a program cannot be run, in words that name the real cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    #[error("{program} does not exist")]
    Missing { program: String },
    #[error("{program} is a folder, not a program")]
    Folder { program: String },
    #[error("{program} is not executable (chmod +x?)")]
    NotExecutable { program: String },
    #[error("{program} was not found in PATH ({path})")]
    NotInPath { program: String, path: String },
    #[error("cannot look at {program}: {error}")]
    Other { program: String, error: String },
}

/// The file a task's program names, by the rule above.
pub fn resolve_program(spec: &TaskSpec, program: &str) -> Result<PathBuf, ProgramError> {
    if program.contains('/') {
        let path = absolute(program);
        check_executable(&path, program)?;
        return Ok(path);
    }
    let path = search_path(spec);
    let path_text = path.to_string_lossy().into_owned();
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            base_dir().to_path_buf()
        } else if dir.is_relative() {
            base_dir().join(dir)
        } else {
            dir
        };
        let candidate = dir.join(program);
        if check_executable(&candidate, program).is_ok() {
            return Ok(candidate);
        }
    }
    Err(ProgramError::NotInPath {
        program: program.to_string(),
        path: path_text,
    })
}

/// The `PATH` a task's bare program name is looked up in.
fn search_path(spec: &TaskSpec) -> OsString {
    match spec.env.get("PATH") {
        Some(p) => OsString::from(p),
        None => std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin")),
    }
}

fn check_executable(path: &Path, program: &str) -> Result<(), ProgramError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ProgramError::Missing {
            program: program.to_string(),
        },
        _ => ProgramError::Other {
            program: program.to_string(),
            error: e.to_string(),
        },
    })?;
    if meta.is_dir() {
        return Err(ProgramError::Folder {
            program: program.to_string(),
        });
    }
    if meta.permissions().mode() & 0o111 == 0 || !meta.is_file() {
        return Err(ProgramError::NotExecutable {
            program: program.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(env_path: Option<&str>) -> TaskSpec {
        let mut env = BTreeMap::new();
        if let Some(p) = env_path {
            env.insert("PATH".to_string(), p.to_string());
        }
        TaskSpec {
            name: "t".into(),
            command: vec!["x".into()],
            input: None,
            output: None,
            error: None,
            env,
            cwd: Some("/".into()),
            ..TaskSpec::default()
        }
    }

    #[test]
    fn programs_resolve_against_the_supervisors_folder_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tool");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let d = dir.path().to_str().unwrap();
        let s = spec(Some(d));
        assert_eq!(resolve_program(&s, "tool").unwrap(), bin);
        assert_eq!(
            resolve_program(&s, bin.to_str().unwrap()).unwrap(),
            bin,
            "absolute"
        );
        assert!(matches!(
            resolve_program(&s, "nope"),
            Err(ProgramError::NotInPath { .. })
        ));
        assert!(matches!(
            resolve_program(&s, plain.to_str().unwrap()),
            Err(ProgramError::NotExecutable { .. })
        ));
        assert!(matches!(
            resolve_program(&s, d),
            Err(ProgramError::Folder { .. })
        ));
        assert!(matches!(
            resolve_program(&s, "./no/such/thing"),
            Err(ProgramError::Missing { .. })
        ));
        // A relative program is the supervisor's, whatever the task's cwd ("/").
        let rel = resolve_program(&spec(None), "./no/such/thing").unwrap_err();
        assert_eq!(rel.to_string(), "./no/such/thing does not exist");
        assert_eq!(
            absolute("a/b"),
            std::env::current_dir().unwrap().join("a/b")
        );
        // The supervisor's own PATH finds sh.
        assert!(resolve_program(&spec(None), "sh").is_ok());
    }
}
