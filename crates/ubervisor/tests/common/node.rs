//! A real supervisor in cluster mode, for the tests that need processes on nodes.
use std::process::{Child, Stdio};

use serde_json::Value;
use testkit::{Etcd, Spawner, http_get, wait_for_value};

use super::LONG;

/// A supervisor in cluster mode: node `name`, 1 core, 512 MB, node TTL 2 s, ports of its own.
pub struct Node {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub spawner: Spawner,
    pub child: Child,
}

impl Node {
    pub fn start(etcd: &Etcd, name: &str, extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let spawner = Spawner::new();
        let ports = testkit::free_port_range(5);
        let out = std::fs::File::create(dir.path().join("sup.stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("sup.stderr")).unwrap();
        let mut cmd = spawner.bin("supervisor");
        cmd.current_dir(dir.path())
            .arg(format!("--etcd={}", etcd.endpoints_arg()))
            .arg(format!("--node={name}"))
            .args(["--node-cpu=1", "--node-mem=512M", "--node-ttl=2s"])
            .arg(format!("--port-range={}-{}", ports.0, ports.1))
            .args(["--listen=127.0.0.1:0", "--log=sup.log"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if std::env::var("SUPERVISOR_TEST_NO_CGROUPS").as_deref() == Ok("1") {
            cmd.arg("--no-cgroups");
        }
        let child = cmd.spawn().unwrap();
        Node {
            name: name.to_string(),
            dir,
            spawner,
            child,
        }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sup.log")).unwrap_or_default()
    }
    pub fn api(&self) -> String {
        wait_for_value(LONG, || testkit::logged_api_addr(&self.log()))
            .expect("the API address is logged")
    }
    /// The supervisor's own `GET /tasks`.
    pub fn tasks(&self) -> Vec<Value> {
        http_get(&self.api(), "/tasks", &[])
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }
    /// (task, pid) of the tasks running here whose names start with `prefix`.
    pub fn running(&self, prefix: &str) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .tasks()
            .into_iter()
            .filter(|t| t["state"] == "running")
            .filter_map(|t| {
                let name = t["name"].as_str()?.to_string();
                Some((name, t["pid"].as_u64()?))
            })
            .filter(|(n, _)| n.starts_with(prefix))
            .collect();
        out.sort();
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.spawner.kill_all();
        testkit::clean_supervisor_cgroups(&self.log());
        if std::thread::panicking() {
            eprintln!("---- node {} ----\n{}", self.name, self.log());
        }
    }
}
