//! A real etcd (Debian's `/usr/bin/etcd`) for tests: one member or three, on free loopback
//! ports (never 2379/2380), data in a temporary folder, stopped by PID on drop.
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::http_get;
use crate::net::free_port;
use crate::proc::Spawner;

/// Where Debian puts the server.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Running etcd members. Dropping it SIGKILLs every member (by PID, through the spawner's
/// mark) and removes their data folders.
pub struct Etcd {
    members: Vec<Member>,
    spawner: Spawner,
    dir: tempfile::TempDir,
}

/// A loopback port that is neither etcd's well-known ports nor one a packaged service uses.
fn safe_port() -> u16 {
    loop {
        let p = free_port();
        if ![2379, 2380, 9090, 9100].contains(&p) {
            return p;
        }
    }
}

impl Etcd {
    /// One member, healthy.
    pub fn start() -> Etcd {
        Etcd::start_members(1)
    }

    /// Three members forming one cluster, all healthy.
    pub fn start_cluster() -> Etcd {
        Etcd::start_members(3)
    }

    fn start_members(n: usize) -> Etcd {
        assert!(
            std::path::Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} is missing: install etcd-server (make test-deps does)"
        );
        let dir = tempfile::tempdir().expect("tempdir for etcd");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("e{i}"),
                client: safe_port(),
                peer: safe_port(),
                dir: dir.path().join(format!("e{i}")),
                child: None,
            })
            .collect();
        let mut etcd = Etcd {
            members,
            spawner: Spawner::new(),
            dir,
        };
        for i in 0..n {
            etcd.spawn_member(i);
        }
        for i in 0..n {
            etcd.wait_healthy(i);
        }
        etcd
    }

    fn spawn_member(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .expect("etcd log file");
        let mut cmd: Command = self.spawner.command(ETCD_BIN);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                &format!("t-{}", self.spawner.mark()),
            ])
            // Short raft timing: a lost member is noticed in half a second, and leases of
            // one second are accepted (the minimum is about 1.5 election timeouts).
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn etcd");
        self.members[i].child = Some(child);
    }

    fn wait_healthy(&mut self, i: usize) {
        let addr = format!("127.0.0.1:{}", self.members[i].client);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http_get(&addr, "/health", &[])
                && r.status == 200
                && r.body.contains("true")
            {
                return;
            }
            if let Some(c) = self.members[i].child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("etcd member {i} exited with {st}:\n{}", self.log(i));
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {i} not healthy in 20 s:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What member `i` logged.
    pub fn log(&self, i: usize) -> String {
        let p = self
            .dir
            .path()
            .join(format!("{}.log", self.members[i].name));
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// Client URLs, one per member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// The client URLs as one `--etcd=` value.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// PID of member `i`, if running.
    pub fn pid(&self, i: usize) -> Option<i32> {
        self.members[i].child.as_ref().map(|c| c.id() as i32)
    }

    /// Sends `sig` to member `i` (our own unreaped child, so the PID is its own).
    pub fn signal(&self, i: usize, sig: i32) {
        if let Some(pid) = self.pid(i) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGKILLs member `i` and reaps it; its data folder stays for [`Etcd::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its ports and data folder, and waits until it is healthy
    /// (for one member; a member of three is healthy once a quorum is up again).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn_member(i);
        self.wait_healthy(i);
    }
}

impl Etcd {
    /// Starts every member that is not running (killed by [`Etcd::kill`]) again, all at once,
    /// and waits until each is healthy: after all of a cluster was down, no member can be
    /// healthy before a quorum is back, so [`Etcd::restart`] one by one would never return.
    pub fn start_stopped(&mut self) {
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_none())
            .collect();
        for &i in &stopped {
            self.spawn_member(i);
        }
        for &i in &stopped {
            self.wait_healthy(i);
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        self.spawner.kill_all();
    }
}
