//! A server binary under test: output captured to files, readiness found by polling its port.
//!
//! Output goes to files, not pipes: a pipe nobody drains fills up after 64 KiB and the server
//! blocks in the middle of a test.
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::http::{Response, http_get};
use crate::net::free_port;
use crate::proc::Spawner;
use crate::wait::SOON;

/// How long a server gets to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running server process. Dropping it SIGKILLs and reaps it (by its own PID) if it is still
/// running; use it together with a [`crate::Spawner`] so anything it forked goes too.
pub struct ServerProc {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl ServerProc {
    /// Starts `cmd` and waits until `addr` accepts connections. Panics, showing the server's
    /// stderr, if it exits first or does not listen within [`START_TIMEOUT`].
    pub fn start(cmd: Command, addr: &str) -> ServerProc {
        let mut s = ServerProc::spawn(cmd, addr);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = s.child.try_wait().expect("try_wait") {
                panic!(
                    "server for {addr} exited with {status} before listening; stderr:\n{}",
                    s.stderr()
                );
            }
            if TcpStream::connect(addr).is_ok() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server for {addr} did not listen in time; stderr:\n{}",
                s.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `cmd` without waiting for anything (for servers expected to fail at start).
    pub fn spawn(mut cmd: Command, addr: &str) -> ServerProc {
        let dir = tempfile::tempdir().expect("tempdir for server output");
        let stderr_path = dir.path().join("stderr");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        ServerProc {
            child,
            addr: addr.to_string(),
            _dir: dir,
            stderr_path,
        }
    }

    /// `host:port` the server was started for.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) to the server's PID.
    pub fn signal(&self, sig: i32) {
        // Our own unreaped child: its PID cannot have been reused.
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits up to `timeout` for the server to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill9(&mut self) -> ExitStatus {
        // Ignored error: the process may have exited already; wait() below reaps either way.
        let _ = self.child.kill();
        self.child.wait().expect("wait after SIGKILL")
    }
}

/// Requests to the server, for tests that expect it to answer.
impl ServerProc {
    /// `GET path` on the server. Panics, showing the server's stderr, if there is no answer.
    pub fn get(&self, path: &str) -> Response {
        http_get(self.addr(), path, &[])
            .unwrap_or_else(|e| panic!("GET {path}: {e}; stderr:\n{}", self.stderr()))
    }

    /// `GET path`, which must answer 200 with a JSON document (`Content-Type:
    /// application/json`): the document, parsed.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        let ctype = r.header("content-type").unwrap_or_default();
        assert!(
            ctype.starts_with("application/json"),
            "GET {path}: Content-Type {ctype:?}"
        );
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.body))
    }
}

/// Starts the workspace binary `bin` with `PORT_FLAG=<a free loopback port>` followed by
/// `args`, and waits until it listens on `127.0.0.1` (see [`ServerProc::start`]).
pub fn start_on_free_port(sp: &Spawner, bin: &str, port_flag: &str, args: &[&str]) -> ServerProc {
    let port = free_port();
    let mut cmd = sp.bin(bin);
    cmd.arg(format!("{port_flag}={port}")).args(args);
    ServerProc::start(cmd, &format!("127.0.0.1:{port}"))
}

/// Runs the workspace binary `bin` with `args` to its exit (within [`SOON`]), asserts that it
/// exits with `code` and that its stderr contains each of `needles`, and returns the stderr.
pub fn assert_exits(sp: &Spawner, bin: &str, args: &[&str], code: i32, needles: &[&str]) -> String {
    let mut cmd = sp.bin(bin);
    cmd.args(args);
    let (status, stderr) = run_to_exit(cmd, SOON);
    assert_eq!(status.code(), Some(code), "{bin} {args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{bin} {args:?}: stderr should contain {needle:?}: {stderr}"
        );
    }
    stderr
}

/// Starts the workspace binary `bin` on a port this test holds (`PORT_FLAG=<port>`) and asserts
/// that it fails at once, as a supervisor trying ports needs: exit code 1 within 5 s, with a
/// message that names `127.0.0.1:<port>` and says it is in use.
pub fn assert_port_taken_fails_fast(sp: &Spawner, bin: &str, port_flag: &str) {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = held.local_addr().expect("local_addr").port();
    let started = Instant::now();
    let stderr = assert_exits(
        sp,
        bin,
        &[&format!("{port_flag}={port}")],
        1,
        &[&format!("127.0.0.1:{port}")],
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{bin} took {took:?} to fail");
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
    drop(held);
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion (at most `timeout`, then it is killed and this panics) and returns
/// its exit status and stderr.
pub fn run_to_exit(cmd: Command, timeout: Duration) -> (ExitStatus, String) {
    let mut s = ServerProc::spawn(cmd, "-");
    match s.wait_exit(timeout) {
        Some(status) => (status, s.stderr()),
        None => {
            s.kill9();
            panic!("still running after {timeout:?}; stderr:\n{}", s.stderr());
        }
    }
}
