//! Cluster chaos: a real etcd, two ubervisor replicas and four supervisor nodes, and random
//! faults: a machine lost (its supervisor and every task SIGKILLed) and back later, a
//! supervisor that falls over and is restarted at once (its tasks left running), a supervisor
//! frozen (SIGSTOP) past its lease while its tasks run on, the leader SIGKILLed, a job's count
//! changed; a crash-looping job throughout. After each fault the
//! cluster settles, and then every healthy job has exactly its count of running instances, no
//! instance runs twice (counted in /proc, not only as the nodes say), no node holds more than
//! its capacity, and what etcd records (the ubervisor's view) matches what the nodes run.
//!
//! Bounded: `CHAOS_ROUNDS` rounds (default 10, under a minute). The seed is printed;
//! `CHAOS_SEED=N` replays a run.
use crate::cluster::ubervisor_command;
use crate::common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::{Duration, Instant};
use supervisor_core::SplitMix64;
use testkit::{Etcd, Spawner, free_port, http_get, http_request, wait_for};

const NODES: usize = 4;
const NODE_CPU: u64 = 1000;
/// How long the cluster may take to settle after a fault (node TTL 2 s, a lost node's
/// instances placed and started elsewhere, a restarted node's leftovers stopped).
const SETTLE: Duration = Duration::from_secs(25);

struct Replica {
    addr: String,
    child: Option<Child>,
    err: std::path::PathBuf,
}

struct World {
    etcd: Etcd,
    spawner: Spawner,
    nodes: Vec<Sup>,
    node_args: Vec<Vec<String>>,
    /// Which nodes are up (a lost machine is down until it comes back).
    up: Vec<bool>,
    uvs: Vec<Replica>,
    /// Job name -> count.
    counts: BTreeMap<String, u32>,
    rng: SplitMix64,
    seed: u64,
    history: Vec<String>,
    dir: tempfile::TempDir,
}

impl World {
    fn new(seed: u64) -> World {
        let etcd = Etcd::start();
        let mut w = World {
            etcd,
            spawner: Spawner::new(),
            nodes: Vec::new(),
            node_args: Vec::new(),
            up: Vec::new(),
            uvs: Vec::new(),
            counts: BTreeMap::new(),
            rng: SplitMix64::new(seed),
            seed,
            history: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..NODES {
            let (first, last) = testkit::free_port_range(12);
            let args = vec![
                format!("--etcd={}", w.etcd.endpoints_arg()),
                format!("--node=c{i}"),
                format!("--node-cpu={}", NODE_CPU / 1000),
                "--node-mem=1G".into(),
                "--node-ttl=2s".into(),
                "--dumpfile=dump.json".into(),
                format!("--port-range={first}-{last}"),
            ];
            let mut sup = Sup::new();
            sup.start("", &args.iter().map(String::as_str).collect::<Vec<_>>());
            w.nodes.push(sup);
            w.node_args.push(args);
            w.up.push(true);
        }
        for i in 0..2 {
            let addr = format!("127.0.0.1:{}", free_port());
            let err = w.dir.path().join(format!("uv{i}.stderr"));
            w.uvs.push(Replica {
                addr,
                child: None,
                err,
            });
            w.start_replica(i);
        }
        w
    }

    fn note(&mut self, what: String) {
        eprintln!("chaos-cluster: {what}");
        self.history.push(what);
    }

    fn below(&mut self, n: usize) -> usize {
        (self.rng.next_u64() % n as u64) as usize
    }

    fn start_replica(&mut self, i: usize) {
        let r = &mut self.uvs[i];
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&r.err)
            .unwrap();
        let child = ubervisor_command(
            &self.spawner,
            &self.etcd,
            &r.addr,
            &format!("uv{i}"),
            // Short timings; a node restarted again and again is no reason to cordon it here.
            &[
                "--election-ttl=1s".into(),
                "--lost-grace=2s".into(),
                "--lost-cordon=0/1h".into(),
            ],
            err,
        )
        .spawn()
        .unwrap();
        r.child = Some(child);
    }

    fn health(&self, i: usize) -> Option<Value> {
        let r = http_get(&self.uvs[i].addr, "/health", &[]).ok()?;
        serde_json::from_str(&r.body).ok()
    }

    fn leader(&self) -> Option<usize> {
        (0..self.uvs.len()).find(|i| {
            self.uvs[*i].child.is_some() && self.health(*i).is_some_and(|h| h["role"] == "leader")
        })
    }

    fn get(&self, path: &str) -> Option<Value> {
        let i = self.leader()?;
        serde_json::from_str(&http_get(&self.uvs[i].addr, path, &[]).ok()?.body).ok()
    }

    fn submit(&mut self, name: &str, script: &str, count: u32, cpu: u64) {
        let job = json!({"name": name, "task": {"command": ["sh", "-c", script]},
                         "count": count, "cpu": cpu, "mem": 32});
        let ok = wait_for(SETTLE, || {
            let Some(i) = self.leader() else {
                return false;
            };
            let method = if self.counts.contains_key(name) {
                "PUT"
            } else {
                "POST"
            };
            let path = if method == "PUT" {
                format!("/jobs/{name}")
            } else {
                "/jobs".to_string()
            };
            http_request(
                method,
                &self.uvs[i].addr,
                &path,
                &[],
                Some(&job.to_string()),
            )
            .is_ok_and(|r| (200..300).contains(&r.status))
        });
        if !ok {
            self.fail(&format!("could not submit {name}"));
        }
        self.counts.insert(name.to_string(), count);
    }

    /// (node index, instance, pid) of every running instance the live nodes report.
    fn running(&self) -> Vec<(usize, String, i64)> {
        let mut out = Vec::new();
        for (i, sup) in self.nodes.iter().enumerate() {
            if !self.up[i] {
                continue;
            }
            let Some(tasks) = http_get(&sup.api(), "/tasks", &[])
                .ok()
                .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            else {
                continue;
            };
            for t in tasks.as_array().into_iter().flatten() {
                if t["state"] == "running"
                    && let (Some(n), Some(pid)) = (t["name"].as_str(), t["pid"].as_i64())
                {
                    out.push((i, n.to_string(), pid));
                }
            }
        }
        out
    }

    /// Why the cluster is not (yet) in order, or `None` when it is.
    fn disorder(&self) -> Option<String> {
        if self.leader().is_none() {
            return Some("no replica leads".into());
        }
        let running = self.running();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, name, _) in &running {
            *seen.entry(name.as_str()).or_default() += 1;
        }
        for (job, count) in &self.counts {
            let flaky = job == "flaky";
            for k in 1..=*count + 3 {
                let inst = format!("{job}-{k}");
                let reported = seen.get(inst.as_str()).copied().unwrap_or(0);
                let procs = testkit::pids_with_env("TIMESERVICE_TASK", &inst).len();
                let want = usize::from(k <= *count && !flaky);
                if !flaky && (reported != want || procs != want) {
                    return Some(format!(
                        "{inst}: {reported} running on the nodes, {procs} processes, want {want}"
                    ));
                }
                if flaky && procs > usize::from(k <= *count) {
                    return Some(format!("{inst}: {procs} processes of a crash-looping job"));
                }
            }
            // What etcd says is what runs.
            let Some(j) = self.get(&format!("/jobs/{job}")) else {
                return Some(format!("GET /jobs/{job} did not answer"));
            };
            let recorded: BTreeSet<(String, String)> = j["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["state"] == "running")
                .map(|i| {
                    (
                        i["instance"].as_str().unwrap_or("").to_string(),
                        i["node"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            let actual: BTreeSet<(String, String)> = running
                .iter()
                .filter(|(_, n, _)| {
                    n.strip_prefix(job.as_str())
                        .is_some_and(|r| r.starts_with('-'))
                })
                .map(|(i, n, _)| (n.clone(), format!("c{i}")))
                .collect();
            if !flaky && recorded != actual {
                return Some(format!(
                    "{job}: etcd says {recorded:?}, nodes run {actual:?}"
                ));
            }
        }
        let Some(nodes) = self.get("/nodes") else {
            return Some("GET /nodes did not answer".into());
        };
        for n in nodes.as_array().into_iter().flatten() {
            let cap = n["capacity"]["cpu"].as_u64().unwrap_or(NODE_CPU);
            let used = n["allocated"]["cpu"].as_u64().unwrap_or(0);
            if used > cap {
                return Some(format!(
                    "node {} over-committed: {used} of {cap}",
                    n["name"]
                ));
            }
        }
        None
    }

    fn settle(&mut self, after: &str) {
        let t = Instant::now();
        let mut last = None;
        let ok = wait_for(SETTLE, || {
            last = self.disorder();
            last.is_none()
        });
        if !ok {
            self.fail(&format!(
                "not settled {SETTLE:?} after {after}: {}",
                last.unwrap_or_default()
            ));
        }
        self.note(format!("settled after {after} in {:?}", t.elapsed()));
    }

    fn fail(&self, what: &str) -> ! {
        let mut logs = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            logs += &format!("---- node c{i} ----\n{}\n", tail(&n.log(), 40));
        }
        for (i, r) in self.uvs.iter().enumerate() {
            let text = std::fs::read_to_string(&r.err).unwrap_or_default();
            logs += &format!("---- ubervisor uv{i} ----\n{}\n", tail(&text, 40));
        }
        panic!(
            "cluster chaos failure (replay with CHAOS_SEED={}): {what}\n---- history ----\n{}\n{logs}",
            self.seed,
            self.history.join("\n")
        );
    }

    /// A machine lost: its supervisor and every task it ran, SIGKILLed together.
    fn lose_machine(&mut self, i: usize) {
        for pid in self.nodes[i].marked_pids() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(c) = self.nodes[i].child.as_mut() {
            let _ = c.wait();
        }
        self.up[i] = false;
    }

    fn restart_node(&mut self, i: usize) {
        let args = self.node_args[i].clone();
        self.nodes[i].start("", &args.iter().map(String::as_str).collect::<Vec<_>>());
        self.up[i] = true;
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for World {
    fn drop(&mut self) {
        for r in &mut self.uvs {
            if let Some(c) = r.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.spawner.kill_all();
    }
}

#[test]
fn cluster_chaos_node_supervisor_and_leader_kills_end_in_exactly_the_count_of_each_job() {
    let seed = chaos_seed();
    let rounds = env_u64("CHAOS_ROUNDS").unwrap_or(10);
    eprintln!("cluster chaos: CHAOS_SEED={seed} CHAOS_ROUNDS={rounds}");
    let t0 = Instant::now();
    let mut w = World::new(seed);
    if !wait_for(SETTLE, || w.leader().is_some()) {
        w.fail("no leader");
    }
    if !wait_for(SETTLE, || {
        w.get("/nodes").and_then(|v| {
            v.as_array()
                .map(|a| a.iter().filter(|n| n["alive"] == true).count())
        }) == Some(NODES)
    }) {
        w.fail("the nodes never registered");
    }
    w.submit("cweb", "exec sleep 1000", 4, 300);
    w.submit("capi", "exec sleep 1000", 2, 300);
    w.submit("flaky", "exit 1", 1, 100);
    w.settle("the first submissions");
    for round in 0..rounds {
        match w.below(5) {
            0 => {
                let i = w.below(NODES);
                w.note(format!("round {round}: machine c{i} lost"));
                w.lose_machine(i);
                w.settle(&format!("losing c{i}"));
                w.note(format!("round {round}: machine c{i} back"));
                w.restart_node(i);
                w.settle(&format!("c{i} coming back"));
            }
            1 => {
                let i = w.below(NODES);
                w.note(format!(
                    "round {round}: supervisor of c{i} SIGKILLed and restarted"
                ));
                let pid = w.nodes[i].pid();
                unsafe { libc::kill(pid, libc::SIGKILL) };
                if let Some(c) = w.nodes[i].child.as_mut() {
                    let _ = c.wait();
                }
                w.restart_node(i);
                w.settle(&format!("restarting c{i}'s supervisor"));
            }
            2 => {
                let Some(l) = w.leader() else {
                    w.fail("no leader before a leader kill");
                };
                w.note(format!("round {round}: leader uv{l} SIGKILLed"));
                if let Some(c) = w.uvs[l].child.as_mut() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                w.uvs[l].child = None;
                w.settle(&format!("killing leader uv{l}"));
                w.start_replica(l);
            }
            3 => {
                // Cut off, not dead: its tasks keep running while its lease expires and the
                // leader places them elsewhere; woken, it must stop what is no longer its own.
                let i = w.below(NODES);
                w.note(format!(
                    "round {round}: supervisor of c{i} frozen past its lease"
                ));
                w.nodes[i].signal(libc::SIGSTOP);
                std::thread::sleep(Duration::from_millis(3500));
                w.nodes[i].signal(libc::SIGCONT);
                w.settle(&format!("thawing c{i}"));
            }
            _ => {
                let count = 2 + w.below(4) as u32;
                w.note(format!("round {round}: cweb count {count}"));
                w.submit("cweb", "exec sleep 1000", count, 300);
                w.settle(&format!("cweb count {count}"));
            }
        }
    }
    eprintln!("cluster chaos: {rounds} rounds in {:?}", t0.elapsed());
}
