//! Following the supervisor: restarts on new ports, kills under load, the supervisor away and
//! back, a protected API.
use crate::common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::{SOON, Spawner, http_get, wait_for};

const PATTERN: &str = "timeserver-*";

fn two_time_servers(extra: &[&str]) -> Sup {
    Sup::start(
        &json!([
            timeserver("timeserver-1", None, &[]),
            timeserver("timeserver-2", None, &[]),
        ]),
        extra,
    )
}

fn source(sup: &Sup) -> String {
    format!("--backends=supervisor:http://{}/{PATTERN}", sup.api)
}

fn kill(pid: i32) {
    // The supervisor's own unreaped child, read from its API a moment ago.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

#[test]
fn zero_failed_requests_while_each_time_server_is_killed_again_and_again() {
    let sup = two_time_servers(&[]);
    sup.wait_serving("timeserver-1");
    sup.wait_serving("timeserver-2");
    let sp = Spawner::new();
    let proxy = Proxy::start(&sp, &[&source(&sup), "--access-log=off"]);
    assert!(
        wait_for(SOON, || proxy.ports().len() == 2),
        "{}",
        proxy.backends()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (addr, stop) = (proxy.addr.clone(), stop.clone());
        std::thread::spawn(move || load(&addr, "/time", 6, 110.0, stop))
    };
    // 20 s of load; every 1.5 s one of the two is SIGKILLed, in turn: each dies 6 or 7 times,
    // 3 s after its previous start (longer than --min-uptime: no yo-yo backoff).
    let started = Instant::now();
    let mut kills = [0u32; 2];
    let mut turn = 0;
    while started.elapsed() < Duration::from_secs(19) {
        std::thread::sleep(Duration::from_millis(1500));
        let name = format!("timeserver-{}", turn + 1);
        let (pid, _) = sup.wait_serving(&name);
        kill(pid);
        kills[turn] += 1;
        turn = 1 - turn;
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let report = loader.join().unwrap();

    eprintln!(
        "{} requests in {:?} ({:.0}/s), {} failed; kills {kills:?}",
        report.ok + report.failures.len() as u64,
        report.elapsed,
        report.rate(),
        report.failures.len()
    );
    assert!(kills.iter().all(|k| *k >= 6), "kills: {kills:?}");
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed; first: {:?}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        &report.failures[..report.failures.len().min(5)]
    );
    assert!(
        report.rate() >= 500.0,
        "only {:.0} requests per second ({} in {:?})",
        report.rate(),
        report.ok,
        report.elapsed
    );
    // The deaths were seen: requests cut by a kill went to the other backend.
    let log = sup.log();
    assert!(log.matches("task died").count() >= 12, "{log}");
    assert!(
        proxy.metric("proxy_retries_total{reason=\"reset\"}")
            + proxy.metric("proxy_retries_total{reason=\"refused\"}")
            >= 1.0,
        "{}",
        proxy.metrics()
    );
}

#[test]
fn follows_a_restart_to_its_new_port() {
    let sup = two_time_servers(&[]);
    let (pid, port) = sup.wait_serving("timeserver-1");
    let (_, port2) = sup.wait_serving("timeserver-2");
    let sp = Spawner::new();
    let proxy = Proxy::start(&sp, &[&source(&sup)]);
    let want = vec![
        ("timeserver-1".to_string(), port),
        ("timeserver-2".to_string(), port2),
    ];
    assert!(
        wait_for(SOON, || proxy.ports() == want),
        "{}",
        proxy.backends()
    );

    kill(pid);
    let (_, moved) = testkit::wait_for_value(LONG, || {
        sup.running("timeserver-1").filter(|(p, _)| *p != pid)
    })
    .expect("restarted");
    assert_ne!(moved, port);
    let want = vec![
        ("timeserver-1".to_string(), moved),
        ("timeserver-2".to_string(), port2),
    ];
    assert!(
        wait_for(SOON, || proxy.ports() == want),
        "{}",
        proxy.backends()
    );
    let r = http_get(&proxy.addr, "/time", &[]).unwrap();
    assert_eq!(r.status, 200);

    // A stopped task leaves the set; started again, it comes back.
    let stop =
        testkit::http_request("POST", &sup.api, "/tasks/timeserver-2/stop", &[], None).unwrap();
    assert_eq!(stop.status, 202, "{}", stop.body);
    assert!(
        wait_for(SOON, || proxy.ports().len() == 1),
        "{}",
        proxy.backends()
    );
    assert_eq!(proxy.ports()[0].0, "timeserver-1");
    // The start is refused while the stop is still under way (409): try until it is taken.
    assert!(wait_for(SOON, || testkit::http_request(
        "POST",
        &sup.api,
        "/tasks/timeserver-2/start",
        &[],
        None
    )
    .is_ok_and(|r| r.status == 202)));
    assert!(
        wait_for(SOON, || proxy.ports().len() == 2),
        "{}\n{:?}",
        proxy.backends(),
        sup.tasks()
    );
    let status = proxy.backends();
    assert_eq!(status["source"]["connected"], true, "{status}");
}

#[test]
fn keeps_the_last_backends_while_the_supervisor_is_away_and_follows_the_next_one() {
    let mut sup = two_time_servers(&["--dumpfile=sup.dump"]);
    sup.wait_serving("timeserver-1");
    sup.wait_serving("timeserver-2");
    let sp = Spawner::new();
    let proxy = Proxy::start(&sp, &[&source(&sup)]);
    assert!(wait_for(SOON, || proxy.ports().len() == 2));
    let before = proxy.ports();

    sup.kill9();
    assert!(
        wait_for(SOON, || proxy.backends()["source"]["connected"] == false),
        "{}",
        proxy.backends()
    );
    let status = proxy.backends();
    assert!(status["source"]["last_error"].is_string(), "{status}");
    assert_eq!(proxy.ports(), before, "the last known backends stay");
    for _ in 0..20 {
        let r = http_get(&proxy.addr, "/time", &[]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // A new supervisor on the same API address and dump: it stops the old tasks and starts
    // new ones, on new ports (from a range of its own). The proxy reconnects and follows.
    let (first, last) = testkit::free_port_range(20);
    sup.extra.retain(|a| !a.starts_with("--port-range"));
    sup.extra.push(format!("--port-range={first}-{last}"));
    sup.spawn();
    let (_, p1) = sup.wait_serving("timeserver-1");
    let (_, p2) = sup.wait_serving("timeserver-2");
    assert!((first..=last).contains(&p1) && (first..=last).contains(&p2));
    let want = vec![
        ("timeserver-1".to_string(), p1),
        ("timeserver-2".to_string(), p2),
    ];
    assert!(
        wait_for(SOON, || proxy.ports() == want),
        "{} vs {want:?}",
        proxy.backends()
    );
    assert!(
        proxy.backends()["source"]["connected"] == true,
        "{}\n{}",
        proxy.backends(),
        proxy.proc.stderr()
    );
    let r = http_get(&proxy.addr, "/time", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_token_file_reaches_a_protected_supervisor_and_a_wrong_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, "s3cret\n").unwrap();
    std::fs::write(&bad, "guess\n").unwrap();
    let sup = two_time_servers(&[&format!("--api-token-file={}", good.display())]);
    let sp = Spawner::new();
    let ok = Proxy::start(
        &sp,
        &[
            &source(&sup),
            &format!("--backends-token-file={}", good.display()),
        ],
    );
    assert!(
        wait_for(SOON, || ok.ports().len() == 2),
        "{}",
        ok.backends()
    );
    let wrong = Proxy::start(
        &sp,
        &[
            &source(&sup),
            &format!("--backends-token-file={}", bad.display()),
            "--connect-timeout=200ms",
        ],
    );
    assert!(
        wait_for(SOON, || wrong.backends()["source"]["last_error"]
            .as_str()
            .is_some_and(
                |e| e.contains("401") && e.contains("--backends-token-file")
            )),
        "{}",
        wrong.backends()
    );
    let r = http_get(&wrong.addr, "/time", &[]).unwrap();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("401"), "{}", r.body);
}

/// Issue 13's start-first replacement, seen by a client: both time servers get a new spec
/// (twice each, in turn) while requests flow through the proxy; each new instance starts on its
/// own port, passes its ready check, and only then is the old one stopped. Not one request
/// fails.
#[test]
fn a_start_first_replacement_behind_the_proxy_fails_no_request() {
    let ts = |name: &str, v: u32| {
        let mut t = timeserver(name, None, &[]);
        t["replace"] = json!("start-first");
        t["ready"] = json!({"http": "/monitor", "interval": "20ms"});
        t["env"] = json!({"SPEC_VERSION": v.to_string()});
        t
    };
    let sup = Sup::start(&json!([ts("timeserver-1", 0), ts("timeserver-2", 0)]), &[]);
    sup.wait_serving("timeserver-1");
    sup.wait_serving("timeserver-2");
    let sp = Spawner::new();
    let proxy = Proxy::start(&sp, &[&source(&sup), "--access-log=off"]);
    assert!(
        wait_for(SOON, || proxy.ports().len() == 2),
        "{}",
        proxy.backends()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (addr, stop) = (proxy.addr.clone(), stop.clone());
        std::thread::spawn(move || load(&addr, "/time", 4, 100.0, stop))
    };
    let mut replaced = 0;
    for round in 1..=2 {
        for name in ["timeserver-1", "timeserver-2"] {
            std::thread::sleep(Duration::from_millis(700));
            let (old, _) = sup.wait_serving(name);
            let body = ts(name, round).to_string();
            let r =
                testkit::http_request("PUT", &sup.api, &format!("/tasks/{name}"), &[], Some(&body))
                    .unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            assert!(r.body.contains("\"replaced\":[\""), "{}", r.body);
            // The new instance serves, and the old process is gone.
            assert!(wait_for(SOON, || sup.wait_serving(name).0 != old));
            assert!(
                wait_for(SOON, || !testkit::pid_alive(old)),
                "old {name} stopped"
            );
            replaced += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let report = loader.join().unwrap();
    eprintln!(
        "{} requests, {} failed, {replaced} replacements",
        report.ok + report.failures.len() as u64,
        report.failures.len()
    );
    assert_eq!(replaced, 4);
    assert!(report.ok > 500, "{} requests answered", report.ok);
    assert!(
        report.failures.is_empty(),
        "{} failed; first: {:?}",
        report.failures.len(),
        &report.failures[..report.failures.len().min(5)]
    );
}
