//! Starting one task process.
//!
//! The child gets: its own session and process group (`setsid`), so a stop reaches its whole
//! tree and a Ctrl-C at the supervisor's terminal does not; its own cgroup, from its first
//! instruction on (where the supervisor tracks tasks by cgroup); standard input from the
//! `input` file (default `/dev/null`); standard output and error appended to their files
//! (parent folders created), handed over directly so the child never depends on a pipe the
//! supervisor owns; no other descriptor (everything the supervisor opens is close-on-exec); the
//! open-files limit the supervisor itself was started with (it raises its own); every signal
//! at its default and none blocked; `PORT` and the markers that let a restarted supervisor
//! find it. No shell: argv is exec'd as is. Paths follow one rule ([`paths`]).
//!
//! Task files are opened without blocking: a FIFO with no reader on the other end is a clear
//! spawn error, not an event loop stuck in `open`.
mod clone;
pub mod identity;
pub mod paths;

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use supervisor_core::TaskSpec;

pub use clone::Placement;
pub use paths::ProgramError;

/// Environment variable naming the supervisor instance; inherited by every descendant.
pub const INSTANCE_VAR: &str = "TIMESERVICE_SUPERVISOR";
/// Environment variable naming the task a process belongs to.
pub const TASK_VAR: &str = "TIMESERVICE_TASK";
/// Environment variable with the generation (the supervisor's count of starts) of the task's
/// process: tells a dead instance's escaped descendants from the replacement's.
pub const GENERATION_VAR: &str = "TIMESERVICE_GENERATION";

/// `close_range(2)` flag: set close-on-exec instead of closing (Linux 5.11+).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Marks every descriptor above stderr close-on-exec, so that nothing the supervisor inherited
/// from its own parent (a jobserver pipe, a terminal) leaks into tasks. Called once at start;
/// everything the supervisor opens later is close-on-exec already.
pub fn cloexec_inherited_fds() {
    // SAFETY: close_range(2) with the CLOEXEC flag only changes descriptor flags.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r != 0 {
        // Kernels before 5.11: do it one by one.
        if let Ok(dir) = fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds.into_iter().filter(|fd| *fd > 2) {
                // SAFETY: F_SETFD on a descriptor number; a closed one just fails with EBADF.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Puts `/dev/null` on any of descriptors 0–2 the supervisor was started without, so that
/// nothing it opens later lands there (a task's files are dup'd onto 0–2 from above 2).
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD on a descriptor number only asks.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: open returns the lowest free descriptor: this one.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

/// The open-files limit tasks get: the supervisor's own, as it was started with, before it
/// raised its soft limit for itself. `select()`-based programs break above 1024.
static TASK_NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// Records the current open-files limit as the one tasks get. Call once, before raising it.
pub fn keep_task_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        let _ = TASK_NOFILE.set(lim);
    }
}

/// Why a spawn failed, in words for the log and `ctl status`.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot open {field} file {path}: {source}")]
    File {
        field: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{field} file {path} is a FIFO with no reader: start its reader first")]
    Fifo { field: &'static str, path: PathBuf },
    #[error("cannot create folder {path} for the {field} file: {source}")]
    Folder {
        field: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot start {0}")]
    Program(#[from] ProgramError),
    #[error("cannot enter the task's folder (cwd) {path}: {source}")]
    Cwd { path: PathBuf, source: io::Error },
    #[error("cannot start {program}: {source}")]
    Exec { program: String, source: io::Error },
}

/// True when nothing is bound to `port` on 127.0.0.1 right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Starts `argv` for `spec` and returns the child's pid; `cgroup`: the cgroup to start it in.
/// The supervisor's single reaper collects the exit status.
pub fn spawn(
    spec: &TaskSpec,
    argv: &[String],
    port: Option<u16>,
    instance: &str,
    generation: u64,
    cgroup: Option<Placement>,
    also_join: &[RawFd],
) -> Result<u32, SpawnError> {
    let program = argv.first().ok_or_else(|| SpawnError::Exec {
        program: String::new(),
        source: io::Error::other("empty command"),
    })?;
    let exec_err = |source: io::Error| SpawnError::Exec {
        program: program.clone(),
        source,
    };
    let path = paths::resolve_program(spec, program)?;
    // Files named by the task are opened for every start (a rotated log gets a new file);
    // `/dev/null` is one descriptor for all.
    let stdin = spec
        .input
        .as_deref()
        .map(open_input)
        .transpose()?
        .map(OwnedFd::from);
    let stdout = open_output(spec.output.as_deref(), "output")?;
    let stderr = open_output(spec.error.as_deref(), "error")?;

    let c_path = cstring(path.as_os_str().as_bytes()).map_err(exec_err)?;
    let c_args: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(exec_err)?;
    let mut extra: Vec<(&OsStr, OsString)> = spec
        .env
        .iter()
        .map(|(k, v)| (OsStr::new(k.as_str()), OsString::from(v)))
        .collect();
    extra.push((OsStr::new(INSTANCE_VAR), instance.into()));
    extra.push((OsStr::new(TASK_VAR), spec.name.as_str().into()));
    extra.push((OsStr::new(GENERATION_VAR), generation.to_string().into()));
    if let Some(p) = port {
        extra.push((OsStr::new("PORT"), p.to_string().into()));
    }
    let extra_env: Vec<CString> = extra
        .iter()
        .map(|(k, v)| key_value(k, v))
        .collect::<Result<_, _>>()
        .map_err(exec_err)?;
    let cwd_path = spec.cwd.as_deref().map(paths::absolute);
    let cwd = cwd_path
        .as_ref()
        .map(|d| cstring(d.as_os_str().as_bytes()))
        .transpose()
        .map_err(exec_err)?;

    let mut argv_ptrs: Vec<*mut libc::c_char> =
        c_args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let env_ptrs = environment(&extra, &extra_env);

    let ids = identity::resolve(spec.user.as_deref(), spec.group.as_deref())
        .map_err(|(field, message)| exec_err(io::Error::other(format!("{field}: {message}"))))?;
    let null = dev_null().map_err(exec_err)?;
    let fd_or_null = |f: &Option<OwnedFd>| f.as_ref().map_or(null, |f| f.as_raw_fd());
    let child = clone::Child {
        program: &c_path,
        argv: &argv_ptrs,
        envp: &env_ptrs,
        stdio: [fd_or_null(&stdin), fd_or_null(&stdout), fd_or_null(&stderr)],
        cwd: cwd.as_deref(),
        nofile: TASK_NOFILE.get().copied(),
        cgroup,
        ids: ids.as_ref(),
        also_join: [
            also_join.first().copied().unwrap_or(-1),
            also_join.get(1).copied().unwrap_or(-1),
        ],
    };
    clone::start(&child).map_err(|f| match f.stage {
        clone::Stage::Cwd => SpawnError::Cwd {
            path: cwd_path.unwrap_or_default(),
            source: f.error,
        },
        clone::Stage::Exec => exec_err(f.error),
        clone::Stage::Identity => exec_err(io::Error::new(
            f.error.kind(),
            format!("cannot switch to the task's user or group: {}", f.error),
        )),
        stage => exec_err(io::Error::new(
            f.error.kind(),
            format!("{stage:?} set-up failed: {}", f.error),
        )),
    })
}

/// Whether a child started straight into the cgroup whose folder `dir` is open survives its
/// birth (see `tracking`: some kernels kill it). Starts a child that only fails to exec a
/// program that does not exist, and reaps it; call it before the reaper runs.
pub fn born_into_cgroup_survives(dir: RawFd) -> io::Result<bool> {
    let program = c"/nonexistent/timeservice-cgroup-probe";
    let argv = [program.as_ptr().cast_mut(), std::ptr::null_mut()];
    let envp = [std::ptr::null_mut()];
    let null = dev_null()?;
    let child = clone::Child {
        program,
        argv: &argv,
        envp: &envp,
        stdio: [null; 3],
        cwd: None,
        nofile: None,
        cgroup: Some(Placement::Into(dir)),
        ids: None,
        also_join: [-1, -1],
    };
    match clone::start(&child) {
        // It ran, tried the exec, and was reaped.
        Err(f) if f.stage == clone::Stage::Exec && f.error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(true)
        }
        Err(f) => Err(io::Error::new(
            f.error.kind(),
            format!("{:?}: {}", f.stage, f.error),
        )),
        // It never ran a step of its own: killed on the way out of the kernel.
        Ok(pid) => {
            let mut status = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(pid as i32, &mut status, 0) };
            if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL {
                Ok(false)
            } else {
                Err(io::Error::other(format!(
                    "the probe child ended with wait status {status}"
                )))
            }
        }
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("contains a NUL byte"))
}

/// One `/dev/null`, opened once (close-on-exec) and duplicated onto 0, 1 or 2 as needed.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    let fd = NULL
        .get_or_init(|| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| format!("cannot open /dev/null: {e}"))
        })
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))?;
    Ok(fd.as_raw_fd())
}

fn key_value(k: &OsStr, v: &OsStr) -> io::Result<CString> {
    let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
    kv.extend_from_slice(k.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    cstring(&kv)
}

/// The `envp` array: the supervisor's environment at start (converted once), without the
/// variables that `extra` sets, then `extra_env` (the same variables as `KEY=VALUE` strings).
/// The pointers are valid while `extra_env` lives.
fn environment(extra: &[(&OsStr, OsString)], extra_env: &[CString]) -> Vec<*mut libc::c_char> {
    // Key and `KEY=VALUE` of every variable; one with a NUL byte cannot be passed on and is left out.
    static BASE: OnceLock<Vec<(OsString, CString)>> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.clone(), key_value(&k, &v).ok()?)))
            .collect()
    });
    let overridden = |k: &OsStr| extra.iter().any(|(e, _)| *e == k);
    base.iter()
        .filter(|(k, _)| !overridden(k))
        .map(|(_, kv)| kv)
        .chain(extra_env)
        .map(|kv| kv.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Clears `O_NONBLOCK` again: it was only for the open; the task gets an ordinary descriptor.
fn blocking(f: File) -> io::Result<File> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(f)
}

fn open_input(path: &str) -> Result<File, SpawnError> {
    let p = paths::absolute(path);
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&p)
        .and_then(blocking)
        .map_err(|source| SpawnError::File {
            field: "input",
            path: path.into(),
            source,
        })
}

/// Opens an output file for appending (creating its folder); `None` when no file is named.
fn open_output(path: Option<&str>, field: &'static str) -> Result<Option<OwnedFd>, SpawnError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let p = paths::absolute(path);
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
                path: Path::new(path).parent().unwrap_or(Path::new("")).into(),
                source,
            }
        })?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&p)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ENXIO) {
                SpawnError::Fifo {
                    field,
                    path: path.into(),
                }
            } else {
                SpawnError::File {
                    field,
                    path: path.into(),
                    source,
                }
            }
        })?;
    let f = blocking(f).map_err(|source| SpawnError::File {
        field,
        path: path.into(),
        source,
    })?;
    Ok(Some(OwnedFd::from(f)))
}
