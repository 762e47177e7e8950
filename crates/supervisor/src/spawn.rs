//! Starting one task process.
//!
//! The child gets: its own session and process group (`setsid`), so a stop reaches its whole
//! tree and a Ctrl-C at the supervisor's terminal does not; standard input from the `input` file
//! (default `/dev/null`); standard output and error appended to their files (parent folders
//! created), handed over directly so the child never depends on a pipe the supervisor owns; no
//! other descriptor (everything the supervisor opens is close-on-exec); `PORT` and the markers
//! that let a restarted supervisor find it. No shell: argv is exec'd as is, with `PATH` lookup for
//! bare names.
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use supervisor_core::TaskSpec;

/// Environment variable naming the supervisor instance; inherited by every descendant.
pub const INSTANCE_VAR: &str = "TIMESERVICE_SUPERVISOR";
/// Environment variable naming the task a process belongs to.
pub const TASK_VAR: &str = "TIMESERVICE_TASK";

/// `close_range(2)` flag: set close-on-exec instead of closing (Linux 5.11+).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Why a spawn failed, in words for the log.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot open {field} file {path}: {source}")]
    File {
        field: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot create folder {path} for the {field} file: {source}")]
    Folder {
        field: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Exec { program: String, source: io::Error },
}

/// True when nothing is bound to `port` on 127.0.0.1 right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Starts `argv` for `spec` and returns the child's pid. The `Child` handle is dropped without
/// waiting: the supervisor's single reaper collects the exit status.
pub fn spawn(
    spec: &TaskSpec,
    argv: &[String],
    port: Option<u16>,
    instance: &str,
) -> Result<u32, SpawnError> {
    let stdin = match &spec.input {
        Some(p) => Stdio::from(open_input(p)?),
        None => Stdio::null(),
    };
    let stdout = open_output(spec.output.as_deref(), "output")?;
    let stderr = open_output(spec.error.as_deref(), "error")?;
    let (program, args) = argv.split_first().ok_or_else(|| SpawnError::Exec {
        program: String::new(),
        source: io::Error::other("empty command"),
    })?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(stdin).stdout(stdout).stderr(stderr);
    cmd.envs(&spec.env);
    cmd.env(INSTANCE_VAR, instance).env(TASK_VAR, &spec.name);
    if let Some(p) = port {
        cmd.env("PORT", p.to_string());
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    // SAFETY: the closure runs in the child between fork and exec and only makes raw system calls
    // (setsid, close_range), which are async-signal-safe, and reads errno.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            // Descriptors the supervisor itself inherited without close-on-exec must not leak
            // into tasks: mark everything above stderr close-on-exec (not closed: the standard
            // library's exec-error pipe must survive until exec). Best effort on old kernels.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| SpawnError::Exec {
        program: program.clone(),
        source,
    })?;
    Ok(child.id())
}

fn open_input(path: &str) -> Result<File, SpawnError> {
    File::open(path).map_err(|source| SpawnError::File {
        field: "input",
        path: path.into(),
        source,
    })
}

fn open_output(path: Option<&str>, field: &'static str) -> Result<Stdio, SpawnError> {
    let Some(path) = path else {
        return Ok(Stdio::null());
    };
    let p = Path::new(path);
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| {
            // "File exists" would puzzle: say which path is in the way.
            let source = match dir.ancestors().find(|a| a.is_file()) {
                Some(file) => io::Error::new(
                    source.kind(),
                    format!("{} is a file, not a folder", file.display()),
                ),
                None => source,
            };
            SpawnError::Folder {
                field,
                path: dir.into(),
                source,
            }
        })?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(p)
        .map_err(|source| SpawnError::File {
            field,
            path: p.into(),
            source,
        })?;
    Ok(Stdio::from(f))
}
