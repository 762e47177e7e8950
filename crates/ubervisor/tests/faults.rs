//! Node loss and its storm guards, with real `ubervisor` processes on a real etcd and node
//! agents from the cluster library (the code a supervisor runs in cluster mode). A node is
//! lost by stopping its agent, which revokes its lease: its `info` key goes at once, as it
//! does one TTL after a machine dies. Each test fails without the guard it is named after.
#![allow(clippy::unwrap_used)]
mod common;

use std::time::{Duration, Instant};

use cluster::NodeAgent;
use common::*;
use serde_json::{Value, json};
use testkit::{Etcd, Spawner, wait_for, wait_for_value};

/// A recording node agent with room for `cpu` millicores.
fn agent(etcd: &Etcd, prefix: &str, name: &str, cpu: u64) -> NodeAgent {
    node(etcd, prefix, name, cpu, 4096).0
}

fn sleeper(name: &str, count: u32, cpu: u64) -> Value {
    job(name, count, cpu, 64)
}

/// (instance, node) of a job's assignments, sorted.
fn placed(uv: &Uv, job: &str) -> Vec<(String, String)> {
    instances(uv, job)
        .into_iter()
        .map(|(i, n, _)| (i, n))
        .collect()
}

fn on(uv: &Uv, job: &str, node: &str) -> usize {
    placed(uv, job).iter().filter(|(_, n)| n == node).count()
}

fn wait_nodes(uv: &Uv, n: usize) {
    assert!(
        wait_for(LONG, || uv
            .get("/nodes")
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["alive"] == true)
            .count()
            == n),
        "{} nodes alive: {}",
        n,
        uv.get("/nodes")
    );
}

#[test]
fn a_new_leader_waits_one_grace_before_declaring_a_node_lost() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("grace");
    let n1 = agent(&etcd, &p, "n1", 2000);
    let _n2 = agent(&etcd, &p, "n2", 2000);
    let _n3 = agent(&etcd, &p, "n3", 2000);
    let grace = ["--lost-grace=5s"];
    let a = Uv::start(&sp, &etcd, &p, "uv-a", &grace);
    assert!(wait_for(LONG, || a.leads()));
    let b = Uv::start(&sp, &etcd, &p, "uv-b", &grace);
    wait_nodes(&a, 3);
    assert_eq!(a.send("POST", "/jobs", &sleeper("web", 2, 100)).0, 201);
    assert!(wait_for(LONG, || on(&a, "web", "n1") == 1
        && on(&a, "web", "n2") == 1));
    let before = placed(&a, "web");

    // The leader dies and n1's info vanishes at the same moment (a network blip that hit
    // both): the new leader finds n1 missing, but may not act on it within its grace.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGKILL) };
    drop(n1);
    assert!(wait_for(LONG, || b.leads()), "b never took over");
    let led = Instant::now();
    // Within the grace: nothing moves, n1 is not declared lost.
    while led.elapsed() < Duration::from_millis(2500) {
        assert_eq!(
            placed(&b, "web"),
            before,
            "moved within the new leader's grace"
        );
        assert_eq!(b.node("n1")["lost"], false);
        std::thread::sleep(Duration::from_millis(100));
    }
    // n1 seen alive meanwhile: simply alive, past the grace too.
    let n1 = agent(&etcd, &p, "n1", 2000);
    assert!(wait_for(LONG, || b.node("n1")["alive"] == true));
    while led.elapsed() < Duration::from_secs(7) {
        assert_eq!(
            placed(&b, "web"),
            before,
            "a node back within the grace was moved"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let n = b.node("n1");
    assert_eq!(n["lost_at_ms"], json!([]), "{n}");

    // Past the grace, a steady leader declares a missing node lost at once (one of three is
    // no storm).
    let t = Instant::now();
    drop(n1);
    assert!(
        wait_for(LONG, || on(&b, "web", "n2") == 1
            && on(&b, "web", "n3") == 1),
        "{:?}",
        placed(&b, "web")
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let n = b.node("n1");
    assert_eq!(n["lost"], true, "{n}");
    assert_eq!(n["lost_at_ms"].as_array().unwrap().len(), 1, "{n}");
}

#[test]
fn a_storm_of_losses_freezes_moves_pages_and_unfreezes_on_command() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("storm");
    let pages = tempfile::tempdir().unwrap();
    let file = pages.path().join("pages.jsonl");
    let cmd = format!("--page-command=cat >> {0}; echo >> {0}", file.display());
    let _n1 = agent(&etcd, &p, "n1", 4000);
    let n2 = agent(&etcd, &p, "n2", 4000);
    let n3 = agent(&etcd, &p, "n3", 4000);
    let uv = Uv::start(&sp, &etcd, &p, "uv-a", &["--lost-grace=1s", &cmd]);
    assert!(wait_for(LONG, || uv.leads()));
    wait_nodes(&uv, 3);
    assert_eq!(uv.send("POST", "/jobs", &sleeper("web", 3, 100)).0, 201);
    assert!(wait_for(LONG, || ["n1", "n2", "n3"]
        .iter()
        .all(|n| on(&uv, "web", n) == 1)));
    std::thread::sleep(Duration::from_millis(1200)); // past the first grace

    // Two of three nodes gone within one grace: moves freeze, and the on-call is paged.
    drop(n2);
    drop(n3);
    let h = wait_for_value(LONG, || {
        uv.health().filter(|h| h["moves"]["frozen"] == true)
    })
    .expect("moves frozen in /health");
    let why = h["moves"]["reason"].as_str().unwrap().to_string();
    assert!(why.contains("2 of 3 nodes"), "{why}");
    let paged = testkit::wait_for_file_containing(&file, "moves_frozen");
    let page: Value =
        serde_json::from_str(paged.lines().find(|l| l.contains("moves_frozen")).unwrap()).unwrap();
    assert_eq!(page["by"], "uv-a");
    assert!(
        page["reason"].as_str().unwrap().contains("2 of 3"),
        "{page}"
    );
    for n in uv.get("/nodes").as_array().unwrap() {
        assert_eq!(n["moves_frozen"].as_str(), Some(why.as_str()), "{n}");
    }
    // Frozen: what was not moved before the freeze stays (at most the first loss moved).
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        assert!(
            on(&uv, "web", "n1") <= 2,
            "moved while frozen: {:?}",
            placed(&uv, "web")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The dashboard says so too, and which nodes are lost.
    let browser = testkit::browser::Browser::launch()
        .unwrap_or_else(|e| panic!("the dashboard check needs headless Chromium: {e}"));
    let page = browser.new_page().unwrap();
    page.navigate(&format!("http://{}/", uv.addr)).unwrap();
    page.wait_for(
        "document.getElementById('moves').textContent.startsWith('Moves frozen: 2 of 3') && \
         document.querySelector('tr[data-node=\"n3\"] .health').textContent === 'lost'",
        LONG,
    )
    .unwrap();
    assert!(page.js_errors().is_empty(), "{:?}", page.js_errors());
    drop(page);
    drop(browser);
    let ctl = |args: &[&str]| ctl(&sp, &uv, args);
    let (code, table) = ctl(&["nodes"]);
    assert_eq!(code, Some(0));
    assert!(table.contains("moves frozen: 2 of 3"), "{table}");
    assert!(table.contains("lost"), "{table}");

    // An operator accepts the losses: the instances move onto n1, and stay unfrozen.
    let (code, out) = ctl(&["unfreeze"]);
    assert_eq!((code, out.trim()), (Some(0), "moves unfrozen"));
    assert!(
        wait_for(LONG, || on(&uv, "web", "n1") == 3),
        "{:?}",
        placed(&uv, "web")
    );
    let h = uv.health().unwrap();
    assert_eq!(h["moves"]["frozen"], false, "{h}");
    assert!(h["moves"]["reason"].as_str().unwrap().contains("operator"));
}

#[test]
fn a_freeze_lifts_by_itself_once_the_lost_nodes_are_back_under_the_share() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("thaw");
    let _n1 = agent(&etcd, &p, "n1", 4000);
    let n2 = agent(&etcd, &p, "n2", 4000);
    let n3 = agent(&etcd, &p, "n3", 4000);
    let uv = Uv::start(&sp, &etcd, &p, "uv-a", &["--lost-grace=1s"]);
    assert!(wait_for(LONG, || uv.leads()));
    wait_nodes(&uv, 3);
    assert_eq!(uv.send("POST", "/jobs", &sleeper("web", 3, 100)).0, 201);
    assert!(wait_for(LONG, || placed(&uv, "web").len() == 3));
    std::thread::sleep(Duration::from_millis(1200)); // past the first grace
    drop(n2);
    drop(n3);
    assert!(wait_for(LONG, || uv
        .health()
        .is_some_and(|h| h["moves"]["frozen"] == true)));
    // n2 registers again: one of three still lost is not more than a third.
    let _n2 = agent(&etcd, &p, "n2", 4000);
    let h = wait_for_value(LONG, || {
        uv.health().filter(|h| h["moves"]["frozen"] == false)
    })
    .expect("unfrozen by itself");
    let why = h["moves"]["reason"].as_str().unwrap();
    assert!(why.contains("by itself") && why.contains("1 of 3"), "{why}");
    // n3's instance moves now; n2 kept what it held (if it was not moved before the freeze).
    assert!(
        wait_for(LONG, || on(&uv, "web", "n1") + on(&uv, "web", "n2") == 3),
        "{:?}",
        placed(&uv, "web")
    );
    assert_eq!(uv.node("n3")["lost"], true);
    assert_eq!(uv.node("n2")["lost"], false);
}

#[test]
fn moves_off_a_lost_node_are_rate_limited() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let p = prefix("rate");
    let _n1 = agent(&etcd, &p, "n1", 4000);
    let n2 = agent(&etcd, &p, "n2", 4000);
    let flags = ["--lost-grace=1s", "--max-moves=1/1s", "--freeze-share=1"];
    let uv = Uv::start(&sp, &etcd, &p, "uv-a", &flags);
    assert!(wait_for(LONG, || uv.leads()));
    wait_nodes(&uv, 2);
    // Four instances, all on n2.
    assert_eq!(uv.send("POST", "/nodes/n1/cordon", &json!({})).0, 200);
    assert_eq!(uv.send("POST", "/jobs", &sleeper("web", 4, 100)).0, 201);
    assert!(wait_for(LONG, || on(&uv, "web", "n2") == 4));
    assert_eq!(uv.send("POST", "/nodes/n1/uncordon", &json!({})).0, 200);
    std::thread::sleep(Duration::from_millis(1200)); // past the first grace

    drop(n2);
    let t = Instant::now();
    let mut seen = Vec::new();
    while seen.len() < 4 && t.elapsed() < LONG {
        let k = on(&uv, "web", "n1");
        while seen.len() < k {
            seen.push(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen.len(), 4, "{:?}", placed(&uv, "web"));
    // One a second: the fourth at least three seconds after the first (less a tick).
    let spread = seen[3] - seen[0];
    assert!(spread >= Duration::from_millis(2600), "{seen:?}");
    assert!(seen[3] < Duration::from_secs(8), "{seen:?}");
}

#[test]
fn bad_loss_flags_are_refused_naming_the_flag() {
    let sp = Spawner::new();
    for (flag, needle) in [
        ("--max-moves=0/1s", "--max-moves"),
        ("--max-moves=fast", "N/PERIOD"),
        ("--lost-cordon=3", "N/PERIOD"),
        ("--freeze-share=2", "(0, 1]"),
        ("--lost-grace=soon", "lost-grace"),
    ] {
        let out = sp
            .bin("ubervisor")
            .arg("--etcd=http://127.0.0.1:1")
            .arg(flag)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(err.contains(needle), "{flag}: {err}");
    }
}
