//! A machine lost: three real supervisors in cluster mode run a job of real timeservers;
//! one supervisor and all its tasks are SIGKILLed at once; the time until every instance it
//! ran answers HTTP on another node, at the host:port the ubervisor's `GET /jobs/{name}`
//! reports.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::Env;
use super::etcd::{Etcd, safe_port};
use super::procs::{Proc, clean_cgroups};
use super::rig::Ubervisor;
use crate::{api, interrupt};

/// Instances of the job: two per node.
const COUNT: usize = 6;
const PORTS_PER_NODE: u16 = 20;

/// One supervisor node.
struct Node {
    name: String,
    ports: (u16, u16),
    log: PathBuf,
    proc: Proc,
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGTERM first: the supervisor stops its tasks and removes its cgroups.
        self.proc.terminate(Duration::from_secs(10));
        clean_cgroups(&self.log);
    }
}

struct Cluster<'a> {
    env: &'a Env,
    etcd: &'a Etcd,
    prefix: String,
    ttl: Option<&'a str>,
    dir: PathBuf,
}

impl Cluster<'_> {
    fn node(&self, name: &str, ports: (u16, u16)) -> Result<Node> {
        let dir = self.dir.join(format!("{name}-{}", self.env.next()));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("supervisor.log");
        let mut cmd = Command::new(&self.env.supervisor);
        cmd.current_dir(&dir)
            .arg(format!("--etcd={}", self.etcd.arg()))
            .arg(format!("--etcd-prefix={}", self.prefix))
            .arg(format!("--node={name}"))
            .args(["--node-cpu=2", "--node-mem=2G"])
            .arg(format!("--listen=127.0.0.1:{}", safe_port()?))
            .arg(format!("--port-range={}-{}", ports.0, ports.1))
            .arg(format!("--log={}", log.display()))
            .arg(format!(
                "--dumpfile={}",
                dir.join("supervisor.dump").display()
            ));
        if let Some(ttl) = self.ttl {
            cmd.arg(format!("--node-ttl={ttl}"));
        }
        let proc = Proc::spawn(
            self.env,
            &format!("supervisor {name}"),
            cmd,
            &dir.join("out"),
        )?;
        Ok(Node {
            name: name.to_string(),
            ports,
            log,
            proc,
        })
    }
}

/// `(instance, node, host:port)` of every running instance of `job` the ubervisor reports.
fn running(uv: &Ubervisor, job: &str) -> Vec<(String, String, String)> {
    let Ok((200, v)) = uv.call("GET", &format!("/jobs/{job}"), None) else {
        return Vec::new();
    };
    let Some(list) = v["instances"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .filter(|i| i["state"] == "running")
        .filter_map(|i| {
            Some((
                i["instance"].as_str()?.to_string(),
                i["node"].as_str()?.to_string(),
                format!("{}:{}", i["host"].as_str()?, i["port"].as_u64()?),
            ))
        })
        .collect()
}

fn answers(addr: &str) -> bool {
    matches!(
        api::request(addr, "GET", "/", None, Duration::from_millis(500)),
        Ok((200, _))
    )
}

/// Waits until `job` has all its instances running and answering, one node each at most
/// `COUNT / 3` apart; returns them.
fn settled(uv: &Ubervisor, job: &str, limit: Duration) -> Result<Vec<(String, String, String)>> {
    let deadline = Instant::now() + limit;
    loop {
        interrupt::check()?;
        let r = running(uv, job);
        let names: BTreeSet<&str> = r.iter().map(|(i, _, _)| i.as_str()).collect();
        if r.len() == COUNT && names.len() == COUNT && r.iter().all(|(_, _, a)| answers(a)) {
            return Ok(r);
        }
        if Instant::now() > deadline {
            bail!(
                "job {job}: {} of {COUNT} instances running and answering after {limit:?}",
                r.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `reps` node losses with the nodes' `--node-ttl` (`None`: the default, 10 s): ms from the
/// SIGKILL to the last of the lost instances answering elsewhere.
pub fn node_loss(
    env: &Env,
    etcd: &Etcd,
    dir: &Path,
    ttl: Option<Duration>,
    reps: usize,
) -> Result<Vec<f64>> {
    let ttl_arg = ttl.map(|t| format!("{}s", t.as_secs()));
    let ttl_d = ttl.unwrap_or(Duration::from_secs(10));
    let c = Cluster {
        env,
        etcd,
        prefix: env.prefix("nodeloss"),
        ttl: ttl_arg.as_deref(),
        dir: dir.to_path_buf(),
    };
    let uv = Ubervisor::start(env, etcd, &c.prefix, "uv-nodeloss", None, dir)?;
    let mut nodes = Vec::new();
    let mut from = 21_000;
    for i in 1..=3 {
        let Some(first) = api::free_range(from, PORTS_PER_NODE) else {
            bail!("no {PORTS_PER_NODE} free ports from {from}");
        };
        from = first + PORTS_PER_NODE;
        nodes.push(c.node(&format!("n{i}"), (first, first + PORTS_PER_NODE - 1))?);
    }
    uv.wait_ready(3, Duration::from_secs(30))?;
    // A new leader may hold off declaring nodes lost for a TTL (issue 15's storm guard):
    // measure the steady state, not that grace.
    interrupt::sleep(ttl_d + Duration::from_secs(1))?;
    let task = json!({"command": [
        env.timeserver.display().to_string(), "--port={{port}}",
        format!("--authport={}", safe_port()?), "--authhost=127.0.0.1",
    ]});
    let mut samples = Vec::new();
    for rep in 0..reps {
        let job = format!("ts{rep}");
        if rep > 0 {
            let prev = format!("ts{}", rep - 1);
            uv.call("DELETE", &format!("/jobs/{prev}"), None)?;
            let until = Instant::now() + Duration::from_secs(30);
            while !running(&uv, &prev).is_empty()
                || uv.call("GET", &format!("/jobs/{prev}"), None)?.0 != 404
            {
                interrupt::check()?;
                if Instant::now() > until {
                    bail!("job {prev} still has instances 30 s after its deletion");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let body: Value = json!({"name": job, "count": COUNT, "cpu": 300, "mem": 64, "task": task});
        uv.submit(&body)?;
        let placed = settled(&uv, &job, Duration::from_secs(60))?;
        // The node with the most instances (the first such by name) is the one lost.
        let victim = nodes
            .iter()
            .map(|n| n.name.clone())
            .max_by_key(|n| {
                (
                    placed.iter().filter(|(_, x, _)| x == n).count(),
                    std::cmp::Reverse(n.clone()),
                )
            })
            .unwrap_or_default();
        let lost: Vec<String> = placed
            .iter()
            .filter(|(_, n, _)| *n == victim)
            .map(|(i, _, _)| i.clone())
            .collect();
        let idx = nodes.iter().position(|n| n.name == victim).unwrap_or(0);
        let t0 = Instant::now();
        nodes[idx].proc.kill();
        clean_cgroups(&nodes[idx].log);
        let deadline = t0 + ttl_d + Duration::from_secs(60);
        let mut answered: BTreeSet<String> = BTreeSet::new();
        while answered.len() < lost.len() {
            interrupt::check()?;
            for (inst, node, addr) in running(&uv, &job) {
                if lost.contains(&inst)
                    && node != victim
                    && !answered.contains(&inst)
                    && answers(&addr)
                {
                    answered.insert(inst);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "node {victim} lost: {} of {} instances answering elsewhere after {:?}",
                    answered.len(),
                    lost.len(),
                    t0.elapsed()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
        eprintln!(
            "bench-cluster: node loss (ttl {ttl_d:?}) {}/{reps}: {} instances of {victim} answering elsewhere after {:.0} ms",
            rep + 1,
            lost.len(),
            samples[rep]
        );
        // The machine comes back, empty (its assignments moved), under the same name.
        let ports = nodes[idx].ports;
        let fresh = c.node(&victim, ports)?;
        nodes[idx] = fresh;
        uv.wait_ready(3, ttl_d + Duration::from_secs(30))?;
    }
    Ok(samples)
}
