//! The ubervisor as a real process, against a real etcd, with node agents from the cluster
//! library whose apply callbacks record what they were asked to run.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::Duration;

use cluster::recording::{Calls, last_applied};
use common::*;
use serde_json::json;
use testkit::{Etcd, Spawner, http_request, wait_for, wait_for_value};

fn applied(calls: &Calls) -> Vec<String> {
    last_applied(calls)
}

#[test]
fn a_job_of_three_is_spread_within_capacity_and_a_too_big_one_is_refused() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("place");
    let nodes: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(&etcd, &p, n, 1000, 1024))
        .collect();
    let uv = Uv::start(&sp, &etcd, &p, "uv-a", &[]);
    wait_leader(&[&uv]);
    assert!(wait_for(LONG, || uv
        .get("/nodes")
        .as_array()
        .unwrap()
        .len()
        == 3));

    let (st, body) = uv.send("POST", "/jobs", &job("web", 3, 400, 256));
    assert_eq!(st, 201, "{body}");
    assert!(
        wait_for(LONG, || {
            let i = instances(&uv, "web");
            i.len() == 3 && i.iter().all(|(_, _, s)| s == "running")
        }),
        "{:?}",
        instances(&uv, "web")
    );
    let mut on: Vec<String> = instances(&uv, "web")
        .into_iter()
        .map(|(_, n, _)| n)
        .collect();
    on.dedup();
    assert_eq!(on, ["n1", "n2", "n3"], "instances were not spread");
    // Each node was asked to run exactly its own instance, named after it.
    for (i, (_, calls)) in nodes.iter().enumerate() {
        let got = applied(calls);
        assert_eq!(got.len(), 1, "node {i} runs {got:?}");
        assert!(got[0].starts_with("web-"));
    }
    for n in uv.get("/nodes").as_array().unwrap() {
        assert_eq!(n["allocated"]["cpu"], 400, "{n}");
    }

    // Too big for any node ever: refused at submission, naming the resource.
    let (st, body) = uv.send("POST", "/jobs", &job("huge", 1, 5000, 10));
    assert_eq!(st, 422, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(e.contains("huge") && e.contains("cpu"), "{e}");
    // Fits a node's capacity but not what is free now: accepted, shown unplaced with why.
    let (st, _) = uv.send("POST", "/jobs", &job("big", 1, 700, 10));
    assert_eq!(st, 201);
    let why = wait_for_value(LONG, || {
        let v = uv.get("/jobs/big");
        v["unplaced"][0]["reason"].as_str().map(str::to_string)
    })
    .unwrap();
    assert!(why.contains("big") && why.contains("cpu"), "{why}");
    assert!(instances(&uv, "big").is_empty());

    // Bad input: 400 naming the field.
    let (st, body) = uv.send(
        "POST",
        "/jobs",
        &json!({"name": "x", "task": {"command": ["sleep"]}, "count": "three", "cpu": 1, "mem": 1}),
    );
    assert_eq!(st, 400);
    assert_eq!(body["problems"][0]["field"], "count", "{body}");
    let (st, _) = uv.send("POST", "/jobs", &job("web", 1, 1, 1));
    assert_eq!(st, 409, "a second job of the same name");
    drop(nodes);
}

#[test]
fn cordon_stops_placements_drain_moves_them_and_put_changes_the_count() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("cordon");
    let (_a1, c1) = node(&etcd, &p, "n1", 2000, 2048);
    let (_a2, c2) = node(&etcd, &p, "n2", 2000, 2048);
    let uv = Uv::start(&sp, &etcd, &p, "uv-a", &[]);
    wait_leader(&[&uv]);
    assert!(wait_for(LONG, || uv
        .get("/nodes")
        .as_array()
        .unwrap()
        .len()
        == 2));

    let (st, _) = uv.send("POST", "/nodes/n1/cordon", &json!({}));
    assert_eq!(st, 200);
    assert_eq!(uv.send("POST", "/nodes/nx/cordon", &json!({})).0, 404);
    uv.send("POST", "/jobs", &job("web", 2, 100, 64));
    assert!(wait_for(LONG, || instances(&uv, "web").len() == 2));
    assert!(
        instances(&uv, "web").iter().all(|(_, n, _)| n == "n2"),
        "placed on a cordoned node: {:?}",
        instances(&uv, "web")
    );
    assert!(applied(&c1).is_empty());

    // Drain n2 with n1 open again: both instances move, and n2 ends empty.
    uv.send("POST", "/nodes/n1/uncordon", &json!({}));
    uv.send("POST", "/nodes/n2/drain", &json!({}));
    assert!(
        wait_for(LONG, || {
            let i = instances(&uv, "web");
            i.len() == 2 && i.iter().all(|(_, n, s)| n == "n1" && s == "running")
        }),
        "{:?}",
        instances(&uv, "web")
    );
    assert!(wait_for(LONG, || applied(&c2).is_empty()));
    assert_eq!(applied(&c1), ["web-1", "web-2"]);
    let nodes = uv.get("/nodes");
    let n2 = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "n2")
        .unwrap();
    assert_eq!(n2["cordon_reason"], "drain");

    uv.send("POST", "/nodes/n2/uncordon", &json!({}));
    let (st, body) = uv.send("PUT", "/jobs/web", &job("web", 4, 100, 64));
    assert_eq!(st, 200, "{body}");
    assert!(wait_for(LONG, || instances(&uv, "web").len() == 4));
    let (st, _) = uv.send("PUT", "/jobs/web", &job("web", 1, 100, 64));
    assert_eq!(st, 200);
    assert!(wait_for(LONG, || {
        instances(&uv, "web")
            .iter()
            .map(|(i, _, _)| i.as_str())
            .collect::<Vec<_>>()
            == ["web-1"]
    }));
    assert_eq!(uv.send("PUT", "/jobs/nope", &job("nope", 1, 1, 1)).0, 404);
    let (st, _) = uv.send("DELETE", "/jobs/web", &json!({}));
    assert_eq!(st, 200);
    assert!(wait_for(LONG, || applied(&c1).is_empty() && applied(&c2).is_empty()));
}

#[test]
fn a_standby_names_the_leader_takes_over_after_sigkill_and_jobs_survive_restarts() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("failover");
    let (_n, _c) = node(&etcd, &p, "n1", 4000, 4096);
    let a = Uv::start(&sp, &etcd, &p, "uv-a", &[]);
    let b = Uv::start(&sp, &etcd, &p, "uv-b", &[]);
    let both = [&a, &b];
    let leader = wait_leader(&both);
    let standby = if std::ptr::eq(leader, &a) { &b } else { &a };

    let (st, body) = standby.send("POST", "/jobs", &job("web", 1, 100, 64));
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["leader"], leader.addr, "{body}");
    assert!(body["error"].as_str().unwrap().contains(&leader.addr));
    // Reads work on a standby.
    assert!(standby.get("/jobs").is_array());

    assert_eq!(leader.send("POST", "/jobs", &job("web", 1, 100, 64)).0, 201);
    leader.signal(libc::SIGKILL);
    let killed = std::time::Instant::now();
    assert!(
        wait_for(LONG, || standby.leads()),
        "the standby never took over"
    );
    // --election-ttl=2s: the dead leader's lease expires within 2 s, and the standby's
    // campaign returns at once.
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the standby led {took:?} after the SIGKILL"
    );
    let (st, body) = standby.send("POST", "/jobs", &job("db", 1, 100, 64));
    assert_eq!(st, 201, "{body}");
    assert!(wait_for(LONG, || instances(standby, "db").len() == 1));

    // Every replica gone, then one started: the jobs were only ever in etcd.
    drop(a);
    drop(b);
    let c = Uv::start(&sp, &etcd, &p, "uv-c", &[]);
    let names: Vec<String> = c
        .get("/jobs")
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["db", "web"]);
}

#[test]
fn a_paused_leader_that_lost_its_lease_writes_nothing_when_it_wakes() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("fence");
    let (_n, _c) = node(&etcd, &p, "n1", 4000, 4096);
    let a = Uv::start(&sp, &etcd, &p, "uv-a", &[]);
    assert!(wait_for(LONG, || a.leads()));
    let b = Uv::start(&sp, &etcd, &p, "uv-b", &[]);

    a.signal(libc::SIGSTOP);
    assert!(wait_for(LONG, || b.leads()), "b never took over");
    // Quiet from here on (one node, no jobs): any data write would be the newest key.
    std::thread::sleep(Duration::from_millis(500));
    let rev = newest_data_write(&etcd, &p);
    // A write queued at the paused old leader: it is handled the moment it wakes, while it
    // may still believe it leads. The fence must stop it.
    let addr = a.addr.clone();
    let pending = std::thread::spawn(move || {
        let body = job("ghost", 1, 100, 64).to_string();
        http_request("POST", &addr, "/jobs", &[], Some(&body)).map(|r| r.status)
    });
    std::thread::sleep(Duration::from_millis(300));
    a.signal(libc::SIGCONT);
    let st = pending.join().unwrap().unwrap();
    assert_eq!(st, 503, "the deposed leader accepted a write");
    assert!(wait_for(LONG, || !a.leads() && b.leads()));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        b.get("/jobs").as_array().unwrap().is_empty(),
        "{}",
        b.get("/jobs")
    );
    // Nothing at all was written once it woke, not the API's write, not its placement loop
    // (its campaign keys, under election/, are not data).
    assert_eq!(
        newest_data_write(&etcd, &p),
        rev,
        "the deposed leader wrote"
    );
}

/// The newest mod revision of any key under `prefix` outside the election.
fn newest_data_write(etcd: &Etcd, prefix: &str) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = cluster::connect(&etcd.endpoints()).await.unwrap();
        let mut m = cluster::Mirror::new(c, prefix);
        m.sync().await.unwrap();
        m.entries()
            .iter()
            .filter(|(k, _)| !k.contains("/election/"))
            .map(|(_, e)| e.mod_revision)
            .max()
            .unwrap_or(0)
    })
}
