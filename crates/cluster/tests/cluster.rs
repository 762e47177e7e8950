//! The cluster library against a real etcd: the node agent, leases, fencing.
#![allow(clippy::unwrap_used)]
use std::time::Duration;

use cluster::recording::{Calls, recording_agent};
use cluster::{
    AgentConfig, AgentError, Assignment, Capacity, Fenced, Keys, Lease, NodeAgent, NodeInfo,
    TaskStatus, VERSION, campaign, connect, decode, encode, leader_value,
};
use etcd_client::{Client, GetOptions, TxnOp};
use serde_json::{Value, json};
use testkit::{Etcd, wait_for};

fn prefix() -> String {
    format!("/t/{}/", std::process::id())
}

/// A recording agent (see `cluster::recording`): statuses say every applied task is running
/// on port 9000 + its index.
fn agent(etcd: &Etcd, keys: &Keys, node: &str) -> (NodeAgent, Calls) {
    let mut cfg = AgentConfig::new(
        etcd.endpoints(),
        node,
        Capacity {
            cpu: 2000,
            mem: 1024,
        },
    );
    cfg.prefix = keys.prefix().to_string();
    cfg.ttl = Duration::from_secs(2);
    cfg.status_interval = Duration::from_millis(100);
    recording_agent(cfg).unwrap()
}

fn names(set: &[Value]) -> Vec<String> {
    set.iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn last_names(calls: &Calls) -> Option<Vec<String>> {
    calls.lock().unwrap().last().map(|s| names(s))
}

async fn assign(c: &mut Client, keys: &Keys, node: &str, instance: &str) {
    let a = Assignment {
        v: VERSION,
        job: "web".into(),
        instance: instance.into(),
        generation: 1,
        cpu: 100,
        mem: 64,
        task: json!({"command": ["sleep", "100"]}),
    };
    c.put(keys.assign(node, instance), encode(&a), None)
        .await
        .unwrap();
}

async fn get(c: &mut Client, key: &str) -> Option<etcd_client::KeyValue> {
    c.get(key, None).await.unwrap().kvs().first().cloned()
}

async fn count(c: &mut Client, prefix: &str) -> usize {
    let opts = GetOptions::new().with_prefix().with_count_only();
    c.get(prefix, Some(opts)).await.unwrap().count() as usize
}

/// Polls an async condition (the blocking `wait_for` would stall the runtime's own thread).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_registers_applies_its_own_assignments_and_publishes_statuses() {
    let etcd = Etcd::start();
    let keys = Keys::new(&prefix());
    let mut c = connect(&etcd.endpoints()).await.unwrap();
    assign(&mut c, &keys, "n1", "web-1").await;
    assign(&mut c, &keys, "n2", "web-3").await; // another node's: never applied here
    let (agent, calls) = agent(&etcd, &keys, "n1");

    eventually("first apply", || async {
        last_names(&calls) == Some(vec!["web-1".into()])
    })
    .await;
    let info = get(&mut c, &keys.node_info("n1")).await.unwrap();
    assert_ne!(info.lease(), 0, "node info must live under the node lease");
    let info: NodeInfo = decode("info", info.value()).unwrap();
    assert_eq!(info.capacity.cpu, 2000);

    assign(&mut c, &keys, "n1", "web-2").await;
    eventually("apply after a new assignment", || async {
        last_names(&calls) == Some(vec!["web-1".into(), "web-2".into()])
    })
    .await;
    eventually("statuses published", || {
        let mut c = c.clone();
        let k = keys.status_node("n1");
        async move { count(&mut c, &k).await == 2 }
    })
    .await;
    let st = get(&mut c, &keys.status("n1", "web-2")).await.unwrap();
    assert_ne!(st.lease(), 0);
    let st: TaskStatus = decode("status", st.value()).unwrap();
    assert_eq!((st.state.as_str(), st.port), ("running", Some(9001)));

    c.delete(keys.assign("n1", "web-1"), None).await.unwrap();
    eventually("apply after a removal, with the whole set", || async {
        last_names(&calls) == Some(vec!["web-2".into()])
    })
    .await;
    eventually("the removed instance's status deleted", || {
        let mut c = c.clone();
        let k = keys.status("n1", "web-1");
        async move { get(&mut c, &k).await.is_none() }
    })
    .await;
    assert!(
        calls
            .lock()
            .unwrap()
            .iter()
            .all(|s| !names(s).contains(&"web-3".to_string())),
        "another node's assignment was applied"
    );

    // Stopping revokes the lease: info and statuses go at once, not after the TTL.
    tokio::task::spawn_blocking(move || agent.stop().unwrap())
        .await
        .unwrap();
    assert!(get(&mut c, &keys.node_info("n1")).await.is_none());
    assert_eq!(count(&mut c, &keys.status_node("n1")).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_keeps_going_through_an_etcd_outage_and_never_applies_emptiness() {
    let mut etcd = Etcd::start();
    let keys = Keys::new(&prefix());
    let mut c = connect(&etcd.endpoints()).await.unwrap();
    assign(&mut c, &keys, "n1", "web-1").await;
    let (agent, calls) = agent(&etcd, &keys, "n1");
    eventually("first apply", || async { last_names(&calls).is_some() }).await;
    let before = calls.lock().unwrap().len();

    etcd.kill(0);
    // Longer than the node TTL: the agent's keep-alives fail and it declares the lease lost.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        calls.lock().unwrap().len(),
        before,
        "apply was called while etcd was down"
    );
    assert!(!agent.is_finished(), "the agent gave up during the outage");
    etcd.restart(0);

    // Back in touch: a new session lists and applies the same set again.
    eventually("re-applied after etcd came back", || async {
        calls.lock().unwrap().len() > before
    })
    .await;
    let mut c = connect(&etcd.endpoints()).await.unwrap();
    assign(&mut c, &keys, "n1", "web-2").await;
    eventually("new assignments seen after the outage", || async {
        last_names(&calls) == Some(vec!["web-1".into(), "web-2".into()])
    })
    .await;
    eventually("registered again", || {
        let mut c = c.clone();
        let k = keys.node_info("n1");
        async move { get(&mut c, &k).await.is_some() }
    })
    .await;
    assert!(
        calls.lock().unwrap().iter().all(|s| !s.is_empty()),
        "apply got an empty set, but something was assigned all along"
    );
    tokio::task::spawn_blocking(move || agent.stop().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_agent_with_a_taken_node_name_gives_up_with_a_clear_error() {
    let etcd = Etcd::start();
    let keys = Keys::new(&prefix());
    let (first, calls) = agent(&etcd, &keys, "n1");
    eventually("first registered", || async {
        last_names(&calls).is_some()
    })
    .await;
    let (second, _) = agent(&etcd, &keys, "n1");
    let r = tokio::task::spawn_blocking(move || {
        assert!(wait_for(Duration::from_secs(10), || second.is_finished()));
        second.stop()
    })
    .await
    .unwrap();
    match r {
        Err(e @ AgentError::NameTaken { .. }) => assert!(e.to_string().contains("\"n1\""), "{e}"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    tokio::task::spawn_blocking(move || first.stop().unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_leader_writes_nothing() {
    let etcd = Etcd::start();
    let keys = Keys::new(&prefix());
    let c = connect(&etcd.endpoints()).await.unwrap();
    let la = Lease::grant(&c, Duration::from_secs(1)).await.unwrap();
    let a = campaign(&c, &keys.election(), "127.0.0.1:1", la.id())
        .await
        .unwrap();
    assert_eq!(
        leader_value(&c, &keys.election()).await.unwrap().as_deref(),
        Some("127.0.0.1:1")
    );
    let put = |v: &str| vec![TxnOp::put(keys.job("x"), v, None)];
    assert_eq!(a.txn(&c, vec![], put("a1")).await.unwrap(), Fenced::Applied);

    // b campaigns; a's lease is dropped (as if a were paused), so b takes over.
    let lb = Lease::grant(&c, Duration::from_secs(5)).await.unwrap();
    let b_task = {
        let (c, name) = (c.clone(), keys.election());
        let id = lb.id();
        tokio::spawn(async move { campaign(&c, &name, "127.0.0.1:2", id).await })
    };
    drop(la);
    let b = b_task.await.unwrap().unwrap();
    assert_ne!(a.term(), b.term());
    assert_eq!(a.txn(&c, vec![], put("a2")).await.unwrap(), Fenced::Deposed);
    assert_eq!(b.txn(&c, vec![], put("b1")).await.unwrap(), Fenced::Applied);
    let mut c2 = c.clone();
    let v = get(&mut c2, &keys.job("x")).await.unwrap();
    assert_eq!(v.value(), b"b1", "the deposed leader's write landed");
    assert_eq!(
        leader_value(&c, &keys.election()).await.unwrap().as_deref(),
        Some("127.0.0.1:2")
    );
}
