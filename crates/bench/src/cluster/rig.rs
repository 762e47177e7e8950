//! Ubervisor processes (the real release binary), and a scheduler rig: one ubervisor over
//! in-process `cluster::NodeAgent`s whose apply only records what it was given. The rig
//! measures the scheduler and the store, not the supervisors.
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cluster::{AgentConfig, Capacity, Keys, NodeAgent};
use serde_json::Value;

use super::Env;
use super::etcd::{Etcd, safe_port};
use super::procs::Proc;
use crate::{api, interrupt};

/// How long an API call may take before the benchmark calls it failed.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One ubervisor replica.
pub struct Ubervisor {
    pub id: String,
    pub addr: String,
    pub proc: Proc,
}

impl Ubervisor {
    /// Starts a replica on a free port and waits until its API answers.
    pub fn start(
        env: &Env,
        etcd: &Etcd,
        prefix: &str,
        id: &str,
        election_ttl: Option<&str>,
        dir: &Path,
    ) -> Result<Ubervisor> {
        let addr = format!("127.0.0.1:{}", safe_port()?);
        let mut cmd = Command::new(&env.ubervisor);
        cmd.arg(format!("--etcd={}", etcd.arg()))
            .arg(format!("--listen={addr}"))
            .arg(format!("--id={id}"))
            .arg(format!("--prefix={prefix}"));
        if let Some(ttl) = election_ttl {
            cmd.arg(format!("--election-ttl={ttl}"));
        }
        let log = dir.join(format!("{id}-{}.log", env.next()));
        let mut uv = Ubervisor {
            id: id.to_string(),
            addr,
            proc: Proc::spawn(env, &format!("ubervisor {id}"), cmd, &log)?,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while uv.health().is_none() {
            interrupt::check()?;
            if !uv.proc.alive() {
                bail!("ubervisor {id} exited:\n{}", uv.proc.log_tail(20));
            }
            if Instant::now() > deadline {
                bail!(
                    "ubervisor {id}'s API did not answer within 20 s:\n{}",
                    uv.proc.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(uv)
    }

    /// `GET /health`, or `None` when it does not answer 200 with JSON.
    pub fn health(&self) -> Option<Value> {
        match api::request(&self.addr, "GET", "/health", None, Duration::from_secs(1)) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    pub fn leads(&self) -> bool {
        self.health().is_some_and(|h| h["role"] == "leader")
    }

    /// A request to its API: status and JSON body (`Null` when the body is not JSON).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let text = body.map(Value::to_string);
        let (status, body) = api::request(&self.addr, method, path, text.as_deref(), HTTP_TIMEOUT)
            .with_context(|| format!("{method} http://{}{path}", self.addr))?;
        Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
    }

    /// `POST /jobs`; anything but 201 is an error naming the answer.
    pub fn submit(&self, job: &Value) -> Result<()> {
        let (status, body) = self.call("POST", "/jobs", Some(job))?;
        if status != 201 {
            bail!("POST /jobs {} answered {status}: {body}", job["name"]);
        }
        Ok(())
    }

    /// Waits until `GET /nodes` lists `n` live nodes and this replica leads.
    pub fn wait_ready(&self, n: usize, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            interrupt::check()?;
            let live = self
                .call("GET", "/nodes", None)
                .ok()
                .and_then(|(_, v)| v.as_array().cloned())
                .map_or(0, |a| a.iter().filter(|n| n["alive"] == true).count());
            if live == n && self.leads() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "ubervisor {}: {live} of {n} nodes live, leading: {}, after {limit:?}",
                    self.id,
                    self.leads()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An ubervisor and its recording node agents, on a key prefix of their own.
pub struct Rig {
    pub keys: Keys,
    pub uv: Ubervisor,
    /// Per agent: how many tasks its last apply was given.
    pub applied: Arc<Vec<AtomicUsize>>,
    agents: Vec<NodeAgent>,
}

impl Rig {
    /// `nodes` agents of `capacity` each, then the ubervisor; ready once it leads and sees
    /// them all.
    pub fn start(
        env: &Env,
        etcd: &Etcd,
        nodes: usize,
        capacity: Capacity,
        dir: &Path,
    ) -> Result<Rig> {
        let prefix = env.prefix("rig");
        let applied: Arc<Vec<AtomicUsize>> =
            Arc::new((0..nodes).map(|_| AtomicUsize::new(0)).collect());
        let mut agents = Vec::new();
        for i in 0..nodes {
            let mut cfg = AgentConfig::new(etcd.endpoints.clone(), &format!("n{i:03}"), capacity);
            cfg.prefix = prefix.clone();
            let seen = applied.clone();
            let apply: cluster::ApplyFn = Box::new(move |tasks| {
                seen[i].store(tasks.len(), Ordering::Relaxed);
                Ok(())
            });
            let status: cluster::StatusFn = Box::new(Vec::new);
            agents.push(NodeAgent::spawn(cfg, apply, status).context("start a node agent")?);
        }
        let uv = Ubervisor::start(env, etcd, &prefix, "uv-rig", None, dir)?;
        uv.wait_ready(nodes, Duration::from_secs(30))?;
        Ok(Rig {
            keys: Keys::new(&prefix),
            uv,
            applied,
            agents,
        })
    }

    /// Tasks the agents were last given, summed over all of them.
    pub fn applied_total(&self) -> usize {
        self.applied.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The scheduler first, so that it sees no node leave.
        self.uv.proc.kill();
        for a in self.agents.drain(..) {
            let _ = a.stop();
        }
    }
}
