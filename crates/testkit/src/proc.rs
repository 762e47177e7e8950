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

/// Kills everything in the task cgroups a supervisor under test announced in its log, then
/// removes those folders (see [`procio::cgroup::clean_announced`]). Task processes that
/// rewrote their environment (so the spawner's mark cannot find them) go too; and a
/// supervisor that was SIGKILLed leaves no folder behind.
pub fn clean_supervisor_cgroups(log: &str) {
    procio::cgroup::clean_announced(log);
}
