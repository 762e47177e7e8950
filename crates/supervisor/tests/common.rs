//! A supervisor under test: started in a temp dir, its log read back, everything it started
//! killed by PID on drop (via testkit's environment marker).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::{Spawner, wait_for, wait_for_value};

pub const LONG: Duration = Duration::from_secs(20);

pub struct Sup {
    pub dir: tempfile::TempDir,
    pub spawner: Spawner,
    pub child: Option<Child>,
    pub args: Vec<String>,
    /// Run in the supervisor's process before exec: signal state some parents leave behind
    /// (ignored dispositions and blocked signals survive exec). Must be async-signal-safe.
    pub pre_exec: Option<fn()>,
}

impl Sup {
    /// A fresh temp dir with nothing running yet.
    pub fn new() -> Sup {
        Sup {
            dir: tempfile::tempdir().unwrap(),
            spawner: Spawner::new(),
            child: None,
            args: Vec::new(),
            pre_exec: None,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts the supervisor with `tasks` on stdin, logging to `sup.log` in the temp dir.
    pub fn start(&mut self, tasks: &str, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
        let child = self.spawn_raw(tasks, args, true);
        self.child = Some(child);
    }

    /// Starts another supervisor process (not remembered as `child`).
    pub fn spawn_raw(&self, tasks: &str, args: &[&str], with_log: bool) -> Child {
        let mut cmd = self.spawner.bin("supervisor");
        cmd.current_dir(self.dir.path()).args(args);
        if with_log {
            cmd.arg("--log=sup.log");
        }
        // Parallel tests must not fight over the default API port.
        if !args.iter().any(|a| a.starts_with("--listen")) {
            cmd.arg("--listen=127.0.0.1:0");
        }
        if without_cgroups() && !args.contains(&"--no-cgroups") {
            cmd.arg("--no-cgroups");
        }
        // Files, not pipes: a pipe nobody reads fills up and blocks the supervisor.
        let out = std::fs::File::create(self.dir.path().join("sup.stdout")).unwrap();
        let err = std::fs::File::create(self.dir.path().join("sup.stderr")).unwrap();
        cmd.stdin(Stdio::piped()).stdout(out).stderr(err);
        if let Some(hook) = self.pre_exec {
            use std::os::unix::process::CommandExt;
            // SAFETY: the hooks only make async-signal-safe calls (signal, sigprocmask).
            unsafe {
                cmd.pre_exec(move || {
                    hook();
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(tasks.as_bytes());
        drop(stdin);
        child
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// The API address from the (last) log line `API listening ... addr=HOST:PORT`.
    pub fn api(&self) -> String {
        wait_for_value(LONG, || testkit::logged_api_addr(&self.log()))
            .expect("the API address is logged")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("sup.log")).unwrap_or_default()
    }

    /// Waits until the log holds `n` lines containing `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> bool {
        wait_for(LONG, || self.log().matches(needle).count() >= n)
    }

    pub fn wait_log(&self, needle: &str) -> bool {
        self.wait_log_count(needle, 1)
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the supervisor to exit; returns its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let status = wait_for_value(LONG, || child.try_wait().unwrap())
            .expect("supervisor did not exit in time");
        status.code()
    }

    /// The dump file as JSON.
    pub fn dump(&self, rel: &str) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.path(rel)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The pids the dump at `rel` lists, sorted (empty while there is no readable dump).
    pub fn dump_pids(&self, rel: &str) -> Vec<u64> {
        let Some(d) = self.dump(rel) else {
            return Vec::new();
        };
        let mut v: Vec<u64> = d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["pid"].as_u64().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Waits until the dump at `rel` lists exactly `pids` (in any order); fails the test otherwise.
    pub fn wait_dump_pids(&self, rel: &str, pids: &[i32]) {
        let mut want: Vec<u64> = pids.iter().map(|p| *p as u64).collect();
        want.sort();
        assert!(
            wait_for(LONG, || self.dump_pids(rel) == want),
            "dump {:?} vs live {want:?}",
            self.dump(rel)
        );
    }

    /// Live processes started under this test (supervisor and tasks), by marker.
    pub fn marked_pids(&self) -> Vec<i32> {
        self.spawner.pids()
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawner.kill_all();
        // Every supervisor log in the folder: a supervisor killed above leaves its task
        // cgroups, and tasks that rewrote their environment escape the spawner's mark.
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") || path.ends_with("sup.stderr") {
                testkit::clean_supervisor_cgroups(
                    &std::fs::read_to_string(&path).unwrap_or_default(),
                );
            }
        }
        if std::thread::panicking() {
            eprintln!("---- supervisor log ----\n{}", self.log());
        }
    }
}

/// True when the suite runs in its second pass, with every supervisor started `--no-cgroups`
/// (`SUPERVISOR_TEST_NO_CGROUPS=1`, as `make test` does), so the fallback is tested too.
pub fn without_cgroups() -> bool {
    std::env::var("SUPERVISOR_TEST_NO_CGROUPS").as_deref() == Ok("1")
}

/// Runs the supervisor to completion with `tasks` on stdin; returns (exit code, stderr).
pub fn run_to_exit(dir: &Path, tasks: &str, args: &[&str]) -> (Option<i32>, String) {
    let spawner = Spawner::new();
    let mut cmd: Command = spawner.bin("supervisor");
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !args.iter().any(|a| a.starts_with("--listen")) {
        cmd.arg("--listen=127.0.0.1:0");
    }
    if without_cgroups() && !args.contains(&"--no-cgroups") {
        cmd.arg("--no-cgroups");
    }
    let mut child = cmd.spawn().unwrap();
    // The supervisor may refuse its flags before reading stdin: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(tasks.as_bytes());
    let status =
        wait_for_value(LONG, || child.try_wait().unwrap()).expect("supervisor should exit");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        spawner.pids().is_empty(),
        "nothing may be left running: {:?}",
        spawner.pids()
    );
    (status.code(), err)
}

/// A file a task writes with `echo … > file`, once its line is whole: the shell creates the file
/// before `echo` writes, so an empty or unterminated read means "not yet".
pub fn written_line(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|text| text.ends_with('\n'))
}

/// Waits for [`written_line`].
pub fn wait_written(path: &Path) -> String {
    wait_for_value(LONG, || written_line(path))
        .unwrap_or_else(|| panic!("{} was never written", path.display()))
}

/// A number from the environment (`CHAOS_ITERATIONS` and the like).
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// `CHAOS_SEED` to replay a chaos run, else one from the clock (the tests print it).
pub fn chaos_seed() -> u64 {
    env_u64("CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    })
}

/// Pids a task appended to a file, one per start.
pub fn pids_in(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The live ones of [`pids_in`]: alive, and still a process of this test (its working folder
/// is the pid file's, or below it), not a stranger that reused a recorded pid meanwhile.
pub fn alive_in(path: &Path) -> Vec<i32> {
    let dir = path
        .parent()
        .and_then(|d| d.canonicalize().ok())
        .unwrap_or_default();
    pids_in(path)
        .into_iter()
        .filter(|p| testkit::pid_alive(*p))
        .filter(|p| std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.starts_with(&dir)))
        .collect()
}

/// Reads a pid written by a task into a file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn wait_pid_file(path: &Path) -> i32 {
    wait_for_value(LONG, || read_pid(path))
        .unwrap_or_else(|| panic!("{} never appeared", path.display()))
}

/// A JSON task running `script` under `sh -c`, with optional extra fields.
pub fn sh_task(name: &str, script: &str) -> String {
    serde_json::json!({"name": name, "command": ["sh", "-c", script]}).to_string()
}

pub fn list(tasks: &[String]) -> String {
    format!("[{}]", tasks.join(","))
}

/// The folder a test runs in when [`in_pid_namespace`] re-ran it inside a private pid
/// namespace (as that namespace's pid 1); `None` in the normal run.
pub fn pid_namespace_dir() -> Option<PathBuf> {
    std::env::var_os(PIDNS_VAR).map(PathBuf::from)
}

const PIDNS_VAR: &str = "SUPERVISOR_TEST_PIDNS_DIR";

/// Runs this test binary's test `name` again, as pid 1 of a private pid namespace
/// (`unshare --pid --fork --mount-proc`), where pids can be handed out at will through
/// `/proc/sys/kernel/ns_last_pid`. The inner run finds its folder with [`pid_namespace_dir`]
/// and writes `ok` to `result` there when all went well. Returns false (after saying why)
/// where that cannot run: not root, or no `unshare`; under `CI=true` that fails the test.
pub fn in_pid_namespace(name: &str, logs: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let probe = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status();
    if !root || !probe.as_ref().is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true, but a private pid namespace cannot be made here (root: {root}, unshare: {probe:?})"
        );
        eprintln!("skipped: a private pid namespace needs root and unshare ({probe:?})");
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let spawner = Spawner::new();
    let out = std::fs::File::create(dir.path().join("inner.out")).unwrap();
    let mut cmd = spawner.command("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(PIDNS_VAR, dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut child = cmd.spawn().unwrap();
    let status = wait_for_value(Duration::from_secs(90), || child.try_wait().unwrap());
    let output = std::fs::read_to_string(dir.path().join("inner.out")).unwrap_or_default();
    let logs: String = logs
        .iter()
        .map(|f| {
            format!(
                "---- {f}\n{}",
                std::fs::read_to_string(dir.path().join(f)).unwrap_or_default()
            )
        })
        .collect();
    assert!(
        status.is_some_and(|s| s.success()),
        "inner run failed: {status:?}\n{output}\n{logs}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("result")).unwrap_or_default(),
        "ok",
        "{output}\n{logs}"
    );
    true
}

/// Hands pid `pid` to a new `sleep` in its own session, by setting `ns_last_pid` (inside a
/// private pid namespace only). Returns the stranger.
pub fn stranger_with_pid(spawner: &Spawner, pid: i32) -> Child {
    use std::os::unix::process::CommandExt;
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut cmd = spawner.command("sleep");
        cmd.arg("1000");
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut c = cmd.spawn().unwrap();
        if c.id() as i32 == pid {
            return c;
        }
        c.kill().unwrap();
        c.wait().unwrap();
    }
    panic!("pid {pid} could not be handed to a stranger");
}
