//! Starting one task process.
//!
//! The child gets: its own session and process group (`setsid`), so a stop reaches its whole
//! tree and a Ctrl-C at the supervisor's terminal does not; standard input from the `input` file
//! (default `/dev/null`); standard output and error appended to their files (parent folders
//! created), handed over directly so the child never depends on a pipe the supervisor owns; no
//! other descriptor (everything the supervisor opens is close-on-exec); `PORT` and the markers
//! that let a restarted supervisor find it. No shell: argv is exec'd as is, with `PATH` lookup for
//! bare names.
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use supervisor_core::TaskSpec;

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

/// Starts `argv` for `spec` and returns the child's pid. The supervisor's single reaper
/// collects the exit status.
///
/// `posix_spawnp` rather than fork: glibc starts the child with `CLONE_VM | CLONE_VFORK`, so the
/// cost does not grow with the supervisor's page tables (a fork of a supervisor of 10 000 tasks
/// spent most of its time copying them), and exec errors come back synchronously.
pub fn spawn(
    spec: &TaskSpec,
    argv: &[String],
    port: Option<u16>,
    instance: &str,
    generation: u64,
) -> Result<u32, SpawnError> {
    let program = argv.first().ok_or_else(|| SpawnError::Exec {
        program: String::new(),
        source: io::Error::other("empty command"),
    })?;
    let exec_err = |source: io::Error| SpawnError::Exec {
        program: program.clone(),
        source,
    };
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

    let c_args: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(exec_err)?;
    // posix_spawnp searches the supervisor's PATH; a task that sets its own PATH means that one.
    let c_program = match spec.env.get("PATH") {
        Some(path) if !program.contains('/') => {
            cstring(search_path(program, path).as_os_str().as_bytes()).map_err(exec_err)?
        }
        _ => c_args[0].clone(),
    };
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
    let cwd = spec
        .cwd
        .as_deref()
        .map(|d| cstring(d.as_bytes()))
        .transpose()
        .map_err(exec_err)?;

    let mut argv_ptrs: Vec<*mut libc::c_char> =
        c_args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let env_ptrs = environment(&extra, &extra_env);

    let null = dev_null().map_err(exec_err)?;
    let fd_or_null = |f: &Option<OwnedFd>| f.as_ref().map_or(null, |f| f.as_raw_fd());
    let dups = [
        (fd_or_null(&stdin), 0),
        (fd_or_null(&stdout), 1),
        (fd_or_null(&stderr), 2),
    ];
    // The common case (no files, no working directory) reuses one set of file actions.
    let own_actions;
    let actions = if dups.iter().all(|(fd, _)| *fd == null) && cwd.is_none() {
        null_actions(null).map_err(exec_err)?
    } else {
        own_actions = FileActions::new(&dups, cwd.as_ref()).map_err(exec_err)?;
        &own_actions
    };
    let attr = spawn_attr().map_err(exec_err)?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: `c_program`/`c_args`/`extra_env` and the
    // base environment own the strings the NULL-terminated pointer arrays point into, and
    // `actions`/`attr` are initialised. posix_spawnp only reads the shared actions/attributes.
    let rc = unsafe {
        libc::posix_spawnp(
            &mut pid,
            c_program.as_ptr(),
            &actions.0,
            &attr.0,
            argv_ptrs.as_ptr(),
            env_ptrs.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(exec_err(io::Error::from_raw_os_error(rc)));
    }
    Ok(pid as u32)
}

/// The first executable `program` in the colon-separated `path`; the bare name when none is,
/// so that the spawn fails with the usual "No such file or directory".
fn search_path(program: &str, path: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from(program))
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("contains a NUL byte"))
}

/// `build()`, run once; a failure is kept (as text) and returned on every later call.
fn built_once<T>(
    cell: &'static OnceLock<Result<T, String>>,
    build: impl FnOnce() -> io::Result<T>,
) -> io::Result<&'static T> {
    cell.get_or_init(|| build().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(e.clone()))
}

/// One `/dev/null`, opened once (close-on-exec) and duplicated onto 0, 1 or 2 as needed.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<Result<OwnedFd, String>> = OnceLock::new();
    let fd = built_once(&NULL, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/null: {e}")))
    })?;
    Ok(fd.as_raw_fd())
}

/// The file actions of a task without files or working directory: `/dev/null` onto 0–2.
fn null_actions(null: RawFd) -> io::Result<&'static FileActions> {
    static ACTIONS: OnceLock<Result<FileActions, String>> = OnceLock::new();
    built_once(&ACTIONS, || {
        FileActions::new(&[(null, 0), (null, 1), (null, 2)], None)
    })
}

/// The spawn attributes, the same for every task.
fn spawn_attr() -> io::Result<&'static SpawnAttr> {
    static ATTR: OnceLock<Result<SpawnAttr, String>> = OnceLock::new();
    built_once(&ATTR, SpawnAttr::new)
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

/// `posix_spawn_file_actions_t`: stdio onto 0–2, then the working directory.
struct FileActions(libc::posix_spawn_file_actions_t);

// SAFETY: after `new` the actions are only read (posix_spawn takes them by const pointer), so
// sharing one set between threads, or moving it, cannot race.
unsafe impl Send for FileActions {}
// SAFETY: see above.
unsafe impl Sync for FileActions {}

impl FileActions {
    fn new(dups: &[(RawFd, i32)], cwd: Option<&CString>) -> io::Result<FileActions> {
        // SAFETY: zeroed storage is initialised by posix_spawn_file_actions_init before use.
        let mut fa = FileActions(unsafe { std::mem::zeroed() });
        check(unsafe { libc::posix_spawn_file_actions_init(&mut fa.0) })?;
        for (fd, target) in dups {
            // SAFETY: initialised actions, valid descriptor numbers. dup2 onto 0–2 clears
            // close-on-exec on the copy; the originals (close-on-exec) vanish at exec.
            check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut fa.0, *fd, *target) })?;
        }
        if let Some(dir) = cwd {
            // SAFETY: initialised actions; glibc copies the path.
            check(unsafe { libc::posix_spawn_file_actions_addchdir_np(&mut fa.0, dir.as_ptr()) })?;
        }
        Ok(fa)
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new` (a failed init leaves zeroed storage, which destroy accepts).
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

const _: () = assert!(
    std::mem::size_of::<libc::sigset_t>() >= 8 && std::mem::align_of::<libc::sigset_t>() >= 8
);

/// `posix_spawnattr_t`: a new session, an empty signal mask, every signal at its default.
struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    fn new() -> io::Result<SpawnAttr> {
        // SAFETY: zeroed storage is initialised by posix_spawnattr_init before use; the signal
        // sets are initialised by sigemptyset before being filled; a sigset_t is an array of
        // (8-byte aligned) unsigned longs of at least 64 bits (asserted above the struct), so
        // writing its first u64 stays inside it.
        unsafe {
            let mut a = SpawnAttr(std::mem::zeroed());
            check(libc::posix_spawnattr_init(&mut a.0))?;
            let flags = libc::POSIX_SPAWN_SETSID
                | (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
            check(libc::posix_spawnattr_setflags(&mut a.0, flags))?;
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut a.0, &empty))?;
            // Signals the supervisor ignores (Rust ignores SIGPIPE; `nohup` ignores SIGHUP) would
            // stay ignored across exec: give the task every default back, signals 1 to 64.
            // The bits are set directly: glibc's sigaddset refuses its two internal real-time
            // signals (32 and 33), which its posix_spawn child otherwise leaves at SIG_IGN for
            // the program it execs.
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut defaults);
            let not_settable = (1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1));
            // The first word of the set holds signals 1 to 64, signal n in bit n - 1.
            let first_word = std::ptr::from_mut(&mut defaults).cast::<u64>();
            first_word.write(!not_settable);
            check(libc::posix_spawnattr_setsigdefault(&mut a.0, &defaults))?;
            Ok(a)
        }
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn open_input(path: &str) -> Result<File, SpawnError> {
    File::open(path).map_err(|source| SpawnError::File {
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
    Ok(Some(OwnedFd::from(f)))
}
