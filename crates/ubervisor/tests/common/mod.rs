//! What the ubervisor's integration tests share: a real `ubervisor` process on a real etcd;
//! in-process node agents (`cluster::recording`) that run nothing but are otherwise the agent
//! a supervisor runs in cluster mode; and real supervisors in cluster mode ([`Node`]).
#![allow(dead_code)] // each test file uses its own part of it
mod node;
#[allow(unused_imports)] // not every test file runs real supervisors
pub use node::Node;

use std::process::{Child, Stdio};
use std::time::Duration;

use cluster::recording::{Calls, recording_agent};
use cluster::{AgentConfig, Capacity, NodeAgent};
use serde_json::{Value, json};
use testkit::{Etcd, Spawner, free_port, http_get, http_request, wait_for, wait_for_value};

pub const LONG: Duration = Duration::from_secs(20);

/// One replica, killed by pid on drop (its standard error printed if the test failed).
pub struct Uv {
    pub child: Child,
    pub addr: String,
    pub id: String,
    dir: tempfile::TempDir,
}

impl Uv {
    /// Starts a replica under `prefix` with `--election-ttl=2s` and `extra` flags, and waits
    /// until it has listed the store.
    pub fn start(sp: &Spawner, etcd: &Etcd, prefix: &str, id: &str, extra: &[&str]) -> Uv {
        let addr = format!("127.0.0.1:{}", free_port());
        let dir = tempfile::tempdir().unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = sp
            .bin("ubervisor")
            .arg(format!("--etcd={}", etcd.endpoints_arg()))
            .arg(format!("--listen={addr}"))
            .arg(format!("--id={id}"))
            .arg("--election-ttl=2s")
            .arg(format!("--prefix={prefix}"))
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
            dir,
        };
        assert!(
            wait_for(LONG, || uv.health().is_some_and(|h| h["ok"] == true)),
            "ubervisor {id} not healthy:\n{}",
            uv.log()
        );
        uv
    }
    pub fn health(&self) -> Option<Value> {
        let r = http_get(&self.addr, "/health", &[]).ok()?;
        serde_json::from_str(&r.body).ok()
    }
    pub fn leads(&self) -> bool {
        self.health().is_some_and(|h| h["role"] == "leader")
    }
    /// The JSON answer of `GET path` (null when there is none: etcd or the replica away).
    pub fn get(&self, path: &str) -> Value {
        http_get(&self.addr, path, &[])
            .ok()
            .and_then(|r| serde_json::from_str(&r.body).ok())
            .unwrap_or(Value::Null)
    }
    /// The status and the JSON answer (null when the body is not JSON).
    pub fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let b = body.to_string();
        let r = http_request(method, &self.addr, path, &[], Some(&b)).unwrap();
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(Value::Null),
        )
    }
    /// One entry of `GET /nodes` (null when absent).
    pub fn node(&self, name: &str) -> Value {
        self.get("/nodes")
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
    /// What it wrote to its standard error.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
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
            eprintln!("---- {} stderr ----\n{}", self.id, self.log());
        }
    }
}

/// `ubervisor ctl ARGS` against `uv`: its exit code and standard output.
pub fn ctl(sp: &Spawner, uv: &Uv, args: &[&str]) -> (Option<i32>, String) {
    let out = sp
        .bin("ubervisor")
        .arg("ctl")
        .arg(format!("--addr={}", uv.addr))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The replica of `uvs` that leads, once one does.
pub fn wait_leader<'a>(uvs: &[&'a Uv]) -> &'a Uv {
    wait_for_value(LONG, || uvs.iter().find(|u| u.leads()).copied()).expect("no leader")
}

/// A recording node agent with a 2 s TTL, publishing statuses every 100 ms.
pub fn node(etcd: &Etcd, prefix: &str, name: &str, cpu: u64, mem: u64) -> (NodeAgent, Calls) {
    let mut cfg = AgentConfig::new(etcd.endpoints(), name, Capacity { cpu, mem });
    cfg.prefix = prefix.to_string();
    cfg.ttl = Duration::from_secs(2);
    cfg.status_interval = Duration::from_millis(100);
    recording_agent(cfg).unwrap()
}

/// A key prefix of this test process and `tag`, so tests share one etcd without meeting.
pub fn prefix(tag: &str) -> String {
    format!("/t/{}-{tag}/", std::process::id())
}

/// A job of `count` sleeping instances.
pub fn job(name: &str, count: u32, cpu: u64, mem: u64) -> Value {
    json!({"name": name, "task": {"command": ["sleep", "1000"]}, "count": count, "cpu": cpu, "mem": mem})
}

/// (instance, node, state) of a job's instances, sorted.
pub fn instances(uv: &Uv, job: &str) -> Vec<(String, String, String)> {
    instances_with_pid(uv, job)
        .into_iter()
        .map(|(i, n, s, _)| (i, n, s))
        .collect()
}

/// (instance, node, state, pid) of a job's instances as a replica reports them, sorted.
pub fn instances_with_pid(uv: &Uv, job: &str) -> Vec<(String, String, String, u64)> {
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
