//! Yo-yo moves with real supervisor nodes: a task that exits at once is put in yo-yo mode by
//! the real supervisor, moved by the ubervisor to a node it has not yo-yoed on, under a
//! reschedule budget kept in etcd that a leader change (the leader SIGKILLed between moves)
//! does not reset; the spent budget fails the job and pages (the page command writes a file
//! read here); ctl and the dashboard say why; once the task runs, the job recovers by itself.
#![allow(clippy::unwrap_used)]
mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::{Value, json};
use testkit::{Etcd, Spawner, pid_alive, wait_for, wait_for_value};

/// Every page the page command appended, one JSON object a line.
fn pages(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("pages.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `ubervisor ctl ARGS` against `uv`, which must succeed; its output.
fn ctl_ok(sp: &Spawner, uv: &Uv, args: &[&str]) -> String {
    let (code, out) = ctl(sp, uv, args);
    assert_eq!(code, Some(0), "ctl {args:?}: {out}");
    out
}

/// The nodes whose supervisor has `task` (in whatever state).
fn holders(nodes: &[Node], task: &str) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.tasks().iter().any(|t| t["name"] == task))
        .map(|n| n.name.clone())
        .collect()
}

#[test]
fn a_yoyo_task_moves_spends_its_budget_across_a_leader_change_fails_pages_and_recovers() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok");
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Node::start(&etcd, n, &["--stable-after=1s"]))
        .collect();
    let page_cmd = format!(
        "--page-command=cat >> {0}/pages.jsonl; echo >> {0}/pages.jsonl",
        dir.path().display()
    );
    let flags: Vec<String> = vec![
        "--reschedule-delay=200ms".into(),
        "--reschedule-budget=2/1m".into(),
        "--recover-after=1s".into(),
        page_cmd,
    ];
    let flags_ref: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut uva = Uv::start(&sp, &etcd, cluster::DEFAULT_PREFIX, "uv-a", &flags_ref);
    wait_leader(&[&uva]);
    let uvb = Uv::start(&sp, &etcd, cluster::DEFAULT_PREFIX, "uv-b", &flags_ref);
    assert!(wait_for(LONG, || uva
        .get("/nodes")
        .as_array()
        .map(Vec::len)
        == Some(3)));

    // Exits at once (so the supervisor puts it in yo-yo mode) until the file `ok` exists.
    let script = format!("test -e {} && exec sleep 1000; exit 3", ok.display());
    let job = json!({"name": "flappy", "task": {"command": ["sh", "-c", script]},
                     "count": 1, "cpu": 100, "mem": 16});
    let (st, body) = uva.send("POST", "/jobs", &job);
    assert_eq!(st, 201, "{body}");

    // The first move, by uv-a: to another node, and the first node stops the task.
    let first = wait_for_value(LONG, || {
        let m = uva.get("/jobs/flappy")["moves"].as_array()?.clone();
        (!m.is_empty()).then_some(m)
    })
    .expect("the yo-yo instance was never moved");
    assert_eq!(
        first.len(),
        1,
        "moved twice before the leader could be killed"
    );
    let (from1, to1) = (
        first[0]["from"].as_str().unwrap().to_string(),
        first[0]["to"].as_str().unwrap().to_string(),
    );
    assert_ne!(from1, to1);
    uva.kill();
    let lead = wait_leader(&[&uvb]);
    assert_eq!(lead.id, "uv-b");
    assert!(
        wait_for(LONG, || holders(&nodes, "flappy-1") == [to1.clone()]),
        "after the first move the task is only on {to1}: {:?}",
        holders(&nodes, "flappy-1")
    );

    // uv-b goes on counting: one more move (to the third node, not back), then the budget
    // of 2 is spent: failed, paged, the instance left where it is.
    let failed = wait_for_value(LONG, || {
        let j = uvb.get("/jobs/flappy");
        (!j["failed"].is_null()).then_some(j)
    })
    .expect("the job never failed");
    let moves = failed["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 2, "{failed}");
    assert_eq!(moves[0]["from"], from1.as_str());
    let visited: BTreeSet<&str> = [&moves[0]["from"], &moves[0]["to"], &moves[1]["to"]]
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        visited.len(),
        3,
        "never back to a node it yo-yoed on: {moves:?}"
    );
    let reason = failed["failed"]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("budget") && reason.contains("2/60s") && reason.contains("flappy-1"),
        "{reason}"
    );
    let last = moves[1]["to"].as_str().unwrap().to_string();
    assert_eq!(failed["instances"][0]["node"], last.as_str());
    let page = wait_for_value(LONG, || {
        pages(dir.path())
            .into_iter()
            .find(|p| p["kind"] == "job_failed")
    })
    .expect("the failure was paged");
    assert_eq!(page["subject"], "flappy");
    assert_eq!(page["by"], "uv-b");
    assert_eq!(page["reason"].as_str(), Some(reason.as_str()));
    assert!(
        wait_for(LONG, || holders(&nodes, "flappy-1") == [last.clone()]),
        "{:?}",
        holders(&nodes, "flappy-1")
    );

    // Said by the API's list, ctl and the dashboard.
    let listed = uvb.get("/jobs");
    assert_eq!(
        listed[0]["failed"]["reason"].as_str(),
        Some(reason.as_str())
    );
    let table = ctl_ok(&sp, &uvb, &["jobs"]);
    assert!(
        table.contains("FAILED") && table.contains("budget"),
        "{table}"
    );
    let one = ctl_ok(&sp, &uvb, &["job", "flappy"]);
    assert!(
        one.contains("FAILED: ") && one.contains(&format!("-> {last}")),
        "{one}"
    );
    let browser = testkit::browser::Browser::launch()
        .unwrap_or_else(|e| panic!("the dashboard check needs headless Chromium: {e}"));
    let tab = browser.new_page().unwrap();
    tab.navigate(&format!("http://{}/", uvb.addr)).unwrap();
    tab.wait_for(
        "(document.querySelector('tr[data-job=\"flappy\"] .status') || {}).textContent?.includes('budget')",
        LONG,
    )
    .unwrap();

    // Healthy again: the supervisor starts it, it runs past --stable-after, and after
    // --recover-after the job is failed no more, by itself, and that is paged too.
    std::fs::write(&ok, "").unwrap();
    let recovered = wait_for_value(LONG, || {
        let j = uvb.get("/jobs/flappy");
        j["failed"].is_null().then_some(j)
    })
    .expect("the job never recovered");
    assert_eq!(recovered["instances"][0]["state"], "running", "{recovered}");
    let pid = recovered["instances"][0]["pid"].as_u64().unwrap();
    assert!(pid_alive(pid as i32));
    let back = wait_for_value(LONG, || {
        pages(dir.path())
            .into_iter()
            .find(|p| p["kind"] == "job_recovered")
    })
    .expect("the recovery was paged");
    assert_eq!(back["subject"], "flappy");
    tab.wait_for(
        "!document.querySelector('tr[data-job=\"flappy\"] .failed')",
        LONG,
    )
    .unwrap();
    assert!(tab.js_errors().is_empty(), "{:?}", tab.js_errors());
    // Still where it was: a recovery moves nothing.
    assert_eq!(holders(&nodes, "flappy-1"), [last]);
}
