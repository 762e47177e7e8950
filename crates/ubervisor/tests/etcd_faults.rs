//! etcd faults, on a real 3-member etcd with real ubervisors and real supervisor nodes: one
//! member down changes nothing a user sees; all of etcd down leaves every task running (same
//! pids), the ubervisor says degraded, and when etcd is back every job has exactly its count
//! of live instances again, the same ones, with their statuses.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use testkit::{Etcd, Spawner, pid_alive, wait_for};

fn sleeper(name: &str, count: u32) -> Value {
    json!({"name": name, "task": {"command": ["sleep", "1000"]}, "count": count, "cpu": 100, "mem": 16})
}

/// instance -> (node, pid) of every task of the jobs running on the real supervisors.
fn on_nodes(nodes: &[Node]) -> BTreeMap<String, Vec<(String, u64)>> {
    let mut out: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for n in nodes {
        for (task, pid) in n.running("") {
            out.entry(task).or_default().push((n.name.clone(), pid));
        }
    }
    out
}

/// Every instance of `jobs` runs exactly once across the nodes, and the replica reports it
/// running there with that pid.
fn converged(uv: &Uv, nodes: &[Node], jobs: &[(&str, u32)]) -> bool {
    let real = on_nodes(nodes);
    let want: usize = jobs.iter().map(|(_, c)| *c as usize).sum();
    if real.len() != want || real.values().any(|v| v.len() != 1) {
        return false;
    }
    jobs.iter().all(|(job, count)| {
        let seen = instances_with_pid(uv, job);
        seen.len() == *count as usize
            && seen.iter().all(|(inst, node, state, pid)| {
                state == "running" && real.get(inst) == Some(&vec![(node.clone(), *pid)])
            })
    })
}

#[test]
fn with_one_member_of_three_down_jobs_are_still_submitted_placed_and_run() {
    let mut etcd = Etcd::start_cluster();
    let sp = Spawner::new();
    let nodes = vec![Node::start(&etcd, "n1", &[]), Node::start(&etcd, "n2", &[])];
    let uv = Uv::start(&sp, &etcd, cluster::DEFAULT_PREFIX, "uv-a", &[]);
    wait_leader(&[&uv]);
    assert!(wait_for(LONG, || uv.get("/nodes").as_array().map(Vec::len)
        == Some(2)));

    // Each member in turn is the one that is down (the first is every client's first URL).
    // Several writes each time, every one answered at its first try: a client that kept
    // sending to the dead member would fail a share of them.
    let mut jobs: Vec<(String, u32)> = Vec::new();
    for down in [0, 2] {
        etcd.kill(down);
        // Clients take a dead member out of their balance within 250 ms, and a killed raft
        // leader is replaced within the election timeout (500 ms in tests).
        std::thread::sleep(Duration::from_secs(1));
        for k in 0..4 {
            let job = format!("m{down}-{k}");
            let (st, body) = uv.send("POST", "/jobs", &sleeper(&job, 1));
            assert_eq!(st, 201, "member {down} down, {job}: {body}");
            jobs.push((job, 1));
        }
        let want: Vec<(&str, u32)> = jobs.iter().map(|(j, c)| (j.as_str(), *c)).collect();
        assert!(
            wait_for(LONG, || converged(&uv, &nodes, &want)),
            "member {down} down: {:?}",
            on_nodes(&nodes)
        );
        etcd.start_stopped();
    }
    for (inst, copies) in on_nodes(&nodes) {
        assert!(pid_alive(copies[0].1 as i32), "{inst}");
    }
}

#[test]
fn with_all_of_etcd_down_tasks_keep_running_and_everything_reconciles_when_it_returns() {
    let mut etcd = Etcd::start_cluster();
    let sp = Spawner::new();
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Node::start(&etcd, n, &[]))
        .collect();
    let uva = Uv::start(&sp, &etcd, cluster::DEFAULT_PREFIX, "uv-a", &[]);
    let uvb = Uv::start(&sp, &etcd, cluster::DEFAULT_PREFIX, "uv-b", &[]);
    let uv = wait_leader(&[&uva, &uvb]);
    assert!(wait_for(LONG, || uv.get("/nodes").as_array().map(Vec::len)
        == Some(3)));
    let jobs = [("web", 3), ("api", 2)];
    for (job, count) in jobs {
        assert_eq!(uv.send("POST", "/jobs", &sleeper(job, count)).0, 201);
    }
    assert!(
        wait_for(LONG, || converged(uv, &nodes, &jobs)),
        "{:?}",
        on_nodes(&nodes)
    );
    let before = on_nodes(&nodes);

    for i in 0..3 {
        etcd.kill(i);
    }
    let down = Instant::now();
    // Both replicas say degraded, why, and since when.
    for r in [&uva, &uvb] {
        assert!(
            wait_for(LONG, || r
                .health()
                .is_some_and(|h| h["status"] == "degraded")),
            "{} never said degraded: {:?}",
            r.id,
            r.health()
        );
        let h = r.health().unwrap();
        assert_eq!(h["ok"], false);
        assert!(
            h["degraded"]["reason"]
                .as_str()
                .is_some_and(|s| s.contains("etcd")),
            "{h}"
        );
        assert!(
            h["degraded"]["since_ms"].as_u64().is_some_and(|t| t > 0),
            "{h}"
        );
    }
    // Longer than two node leases: the nodes keep every task, the same processes.
    while down.elapsed() < Duration::from_secs(5) {
        assert_eq!(on_nodes(&nodes), before, "while etcd is down");
        std::thread::sleep(Duration::from_millis(250));
    }
    for copies in before.values() {
        assert!(pid_alive(copies[0].1 as i32));
    }

    etcd.start_stopped();
    assert!(
        wait_for(LONG, || [&uva, &uvb]
            .iter()
            .all(|r| r.health().is_some_and(|h| h["status"] == "ok"))),
        "health back: {:?} {:?}",
        uva.health(),
        uvb.health()
    );
    let uv = wait_leader(&[&uva, &uvb]);
    assert!(
        wait_for(LONG, || converged(uv, &nodes, &jobs)),
        "after etcd returned: {:?} vs {:?} {:?}",
        on_nodes(&nodes),
        instances_with_pid(uv, "web"),
        instances_with_pid(uv, "api")
    );
    // And it stays so past every lease that could still expire: the very same processes,
    // no copy started elsewhere, none stopped.
    let back = Instant::now();
    while back.elapsed() < Duration::from_secs(5) {
        assert_eq!(on_nodes(&nodes), before, "after etcd returned");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(converged(uv, &nodes, &jobs));
}
