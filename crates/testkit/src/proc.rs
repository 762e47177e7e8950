//! Starting binaries under test, and killing everything they left, by PID, on drop.
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable that marks every process a test started.
pub const MARK_VAR: &str = "TESTKIT_MARK";

/// Path of a binary of this workspace (`target/<profile>/<name>`), next to the test executable.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test-binary> -> target/debug/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built; run the tests with `cargo nextest run --workspace`",
        p.display()
    );
    p
}

/// Hands out commands that carry a unique mark, and on drop SIGKILLs every marked process.
pub struct Spawner {
    mark: String,
}

impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}

impl Spawner {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mark = format!(
            "{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        Spawner { mark }
    }

    /// The mark this spawner puts in `TESTKIT_MARK`.
    pub fn mark(&self) -> &str {
        &self.mark
    }

    /// A command for `program` with the mark in its environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env(MARK_VAR, &self.mark);
        c
    }

    /// A command for the workspace binary `name` with the mark in its environment.
    pub fn bin(&self, name: &str) -> Command {
        self.command(bin_path(name))
    }

    /// PIDs of live processes carrying this spawner's mark.
    pub fn pids(&self) -> Vec<i32> {
        pids_with_env(MARK_VAR, &self.mark)
    }

    /// SIGKILLs every marked process, round after round, until none is left (or 5 s pass).
    /// Each is pinned by a pidfd and its mark re-checked through it first, so a pid reused by
    /// a stranger since the scan is never hit.
    pub fn kill_all(&self) {
        let (_, left) = procio::pidfd::kill_marked(MARK_VAR, &self.mark, Duration::from_secs(5));
        if left {
            eprintln!(
                "testkit: processes marked {} survived SIGKILL: {:?}",
                self.mark,
                self.pids()
            );
        }
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// PIDs (other than this process) whose initial environment has `var=value`; zombies excluded.
pub fn pids_with_env(var: &str, value: &str) -> Vec<i32> {
    procio::procfs::pids_with_env(var, value)
}

/// True when `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    procio::procfs::stat(pid).is_ok_and(|s| !s.is_zombie())
}

/// Kills everything in the task cgroups a supervisor under test announced in its log (`tasks
/// are tracked by cgroup cgroup=PATH`), then removes those folders. Task processes that
/// rewrote their environment (so the spawner's mark cannot find them) go too; and a
/// supervisor that was SIGKILLed leaves no folder behind.
pub fn clean_supervisor_cgroups(log: &str) {
    for line in log.lines() {
        if !line.contains("tasks are tracked by cgroup") {
            continue;
        }
        let Some(path) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cgroup="))
            .map(std::path::PathBuf::from)
        else {
            continue;
        };
        if !path.starts_with("/sys/fs/cgroup") || !path.exists() {
            continue;
        }
        let _ = procio::cgroup::kill(&path);
        procio::pidfd::wait_until(Duration::from_secs(5), || {
            !procio::cgroup::populated(&path).unwrap_or(false)
        });
        let _ = procio::cgroup::remove(&path);
        // Tasks with `limits` also had cgroups of the same name in the v1 memory and cpu
        // hierarchies (under this process's own cgroup there); their processes are gone now.
        if let Some(name) = path.file_name() {
            for (controller, mount) in [
                ("memory", "/sys/fs/cgroup/memory"),
                ("cpu", "/sys/fs/cgroup/cpu"),
            ] {
                if let Some(own) = own_v1_cgroup(controller) {
                    remove_tree(
                        &std::path::Path::new(mount)
                            .join(own.trim_start_matches('/'))
                            .join(name),
                    );
                }
            }
        }
    }
}

/// This process's cgroup in the v1 hierarchy of `controller` (from `/proc/self/cgroup`).
fn own_v1_cgroup(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// Removes a cgroup folder and the cgroups below it, deepest first (empty ones only: the
/// kernel refuses the others).
fn remove_tree(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
