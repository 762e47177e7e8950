//! Real processes for the cluster's failure tests: ubervisor replicas and supervisors in
//! cluster mode (`--etcd --node`), each in its own folder, stopped by pid on drop.
#![allow(dead_code, clippy::unwrap_used)]
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use testkit::{Etcd, Spawner, free_port, http_get, http_request, wait_for, wait_for_value};

pub const LONG: Duration = Duration::from_secs(20);

/// One ubervisor replica.
pub struct Uv {
    pub child: Child,
    pub addr: String,
    pub id: String,
    pub dir: PathBuf,
}

impl Uv {
    /// Starts a replica with `--election-ttl=2s` and `extra` flags; waits until it answers.
    pub fn start(sp: &Spawner, etcd: &Etcd, dir: &Path, id: &str, extra: &[String]) -> Uv {
        let addr = format!("127.0.0.1:{}", free_port());
        let err = std::fs::File::create(dir.join(format!("{id}.stderr"))).unwrap();
        let child = sp
            .bin("ubervisor")
            .arg(format!("--etcd={}", etcd.endpoints_arg()))
            .arg(format!("--listen={addr}"))
            .arg(format!("--id={id}"))
            .arg("--election-ttl=2s")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let uv = Uv {
            child,
            addr,
            id: id.to_string(),
            dir: dir.to_path_buf(),
        };
        assert!(
            wait_for(LONG, || uv.health().is_some_and(|h| h["ok"] == true)),
            "ubervisor {id} not healthy:\n{}",
            uv.log()
        );
        uv
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.stderr", self.id))).unwrap_or_default()
    }
    pub fn health(&self) -> Option<Value> {
        let r = http_get(&self.addr, "/health", &[]).ok()?;
        serde_json::from_str(&r.body).ok()
    }
    pub fn leads(&self) -> bool {
        self.health().is_some_and(|h| h["role"] == "leader")
    }
    pub fn get(&self, path: &str) -> Value {
        http_get(&self.addr, path, &[])
            .ok()
            .and_then(|r| serde_json::from_str(&r.body).ok())
            .unwrap_or(Value::Null)
    }
    pub fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let b = body.to_string();
        let r = http_request(method, &self.addr, path, &[], Some(&b)).unwrap();
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )
    }
    /// SIGKILLs the replica and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Uv {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- {} ----\n{}", self.id, self.log());
        }
    }
}

/// The replica of `uvs` that leads, once one does.
pub fn wait_leader<'a>(uvs: &[&'a Uv]) -> &'a Uv {
    wait_for_value(LONG, || uvs.iter().find(|u| u.leads()).copied()).expect("no leader")
}

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
        wait_for_value(LONG, || {
            self.log()
                .lines()
                .rev()
                .find(|l| l.contains("API listening"))
                .and_then(|l| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_string)
                })
        })
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

/// (instance, node, state, pid) of a job's instances as a replica reports them, sorted.
pub fn instances(uv: &Uv, job: &str) -> Vec<(String, String, String, u64)> {
    let v = uv.get(&format!("/jobs/{job}"));
    let mut out: Vec<_> = v["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["instance"].as_str().unwrap_or("").to_string(),
                i["node"].as_str().unwrap_or("").to_string(),
                i["state"].as_str().unwrap_or("").to_string(),
                i["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}
