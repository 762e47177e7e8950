//! Balancing over real time servers: a session that moves between backends, a slow and
//! overloaded backend next to a fast one, load shed by one retried on the other.
use crate::common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::{SOON, Spawner, free_port, wait_for};

/// The backend field of the proxy's access-log line for `path`.
fn backend_of(log: &str, path: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!(" path={path} ")))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("backend="))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn login_through_the_proxy_then_time_from_the_other_backend_greets_the_user() {
    let auth = free_port();
    let sup = Sup::start(
        &json!([
            authserver(auth),
            timeserver("timeserver-1", Some(auth), &[]),
            timeserver("timeserver-2", Some(auth), &[]),
        ]),
        &[],
    );
    sup.wait_serving("timeserver-1");
    sup.wait_serving("timeserver-2");
    assert!(wait_for(LONG, || testkit::http_get(
        &format!("127.0.0.1:{auth}"),
        "/monitor",
        &[]
    )
    .is_ok()));
    let sp = Spawner::new();
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends=supervisor:http://{}/timeserver-*", sup.api),
            "--balance=round-robin",
        ],
    );
    assert!(wait_for(SOON, || proxy.ports().len() == 2));

    let mut c = Client::new(&proxy.addr, Duration::from_secs(10));
    let login = c.get("/login?name=Ada").unwrap();
    assert_eq!(login.status, 302, "{}", login.text());
    assert_eq!(login.header("location"), Some("/"));
    let cookie = login
        .header("set-cookie")
        .expect("the session cookie passes through")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("timeservice-session="), "{cookie}");
    let time = c
        .send(
            &format!(
                "GET /time HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}",
                proxy.addr
            ),
            b"",
        )
        .unwrap();
    assert_eq!(time.status, 200);
    assert!(time.text().contains("Ada"), "{}", time.text());

    assert!(wait_for(SOON, || backend_of(&proxy.proc.stderr(), "/time")
        .len()
        == 1));
    let stderr = proxy.proc.stderr();
    let (on_login, on_time) = (backend_of(&stderr, "/login"), backend_of(&stderr, "/time"));
    assert_eq!(on_login.len(), 1, "{stderr}");
    assert_ne!(
        on_login, on_time,
        "login and /time were answered by different backends"
    );
    // The access log has the path, never the query (it holds the name).
    assert!(!stderr.contains("Ada"), "{stderr}");
    // And the two time servers' own logs agree.
    let login_on: Vec<_> = ["timeserver-1", "timeserver-2"]
        .into_iter()
        .filter(|n| !lines_with(&sup.path(&format!("{n}.err")), "path=/login").is_empty())
        .collect();
    let time_on: Vec<_> = ["timeserver-1", "timeserver-2"]
        .into_iter()
        .filter(|n| !lines_with(&sup.path(&format!("{n}.err")), "path=/time ").is_empty())
        .collect();
    assert_eq!(login_on.len(), 1);
    assert_eq!(time_on.len(), 1);
    assert_ne!(login_on, time_on);
}

#[test]
fn a_slow_overloaded_backend_does_not_slow_the_fast_ones_share() {
    let sup = Sup::start(
        &json!([
            timeserver("fast", None, &[]),
            timeserver(
                "slow",
                None,
                &["--max-inflight=2", "--avg-response-ms=20000"]
            ),
        ]),
        &[],
    );
    sup.wait_serving("fast");
    sup.wait_serving("slow");
    let sp = Spawner::new();
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends=supervisor:http://{}/*", sup.api),
            "--access-log=off",
        ],
    );
    assert!(wait_for(SOON, || proxy.ports().len() == 2));

    // 8 clients back to back for 4 s. At most 2 requests can be held by the slow server (its
    // limit); the clients they hold give up after 6 s, when the others have stopped.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, stop) = (proxy.addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::new(&addr, Duration::from_secs(6));
                let (mut fast, mut held, mut other) = (Vec::new(), 0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match c.get("/time") {
                        Ok(a) if a.status == 200 => fast.push(t.elapsed()),
                        Ok(a) => other.push(format!("status {}", a.status)),
                        Err(_) if t.elapsed() >= Duration::from_secs(6) => held += 1,
                        Err(e) => other.push(e.to_string()),
                    }
                }
                (fast, held, other)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let (mut fast, mut held, mut other) = (Vec::new(), 0, Vec::new());
    for c in clients {
        let (f, h, o) = c.join().unwrap();
        fast.extend(f);
        held += h;
        other.extend(o);
    }
    assert!(other.is_empty(), "failed: {other:?}");
    assert!(
        held <= 2,
        "{held} requests were held by the slow server (its limit is 2)"
    );
    assert!(fast.len() >= 400, "only {} answers in 4 s", fast.len());
    fast.sort();
    let p99 = fast[fast.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(500),
        "the fast server's share was slowed: p99 {p99:?} over {} answers",
        fast.len()
    );
    assert!(proxy.metric("proxy_requests_total{backend=\"fast\",status=\"200\"}") >= 400.0);
}

#[test]
fn load_shed_with_retry_after_is_retried_once_on_the_other_backend() {
    let sup = Sup::start(
        &json!([
            timeserver("fast", None, &[]),
            timeserver(
                "full",
                None,
                &["--max-inflight=1", "--avg-response-ms=30000"]
            ),
        ]),
        &[],
    );
    sup.wait_serving("fast");
    let (_, full_port) = sup.wait_serving("full");
    // Fill the full server's only slot directly, so it sheds everything else.
    let direct = format!("127.0.0.1:{full_port}");
    let holder = {
        let direct = direct.clone();
        std::thread::spawn(move || {
            let _ = Client::new(&direct, Duration::from_secs(60)).get("/time");
        })
    };
    assert!(wait_for(SOON, || testkit::http_get(
        &direct,
        "/monitor",
        &[]
    )
    .is_ok_and(|r| r.body.contains("\"in_flight\":1"))));
    let shed = testkit::http_get(&direct, "/time", &[]).unwrap();
    assert_eq!(shed.status, 503);
    assert!(shed.header("retry-after").is_some());

    let sp = Spawner::new();
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends=supervisor:http://{}/*", sup.api),
            "--balance=round-robin",
        ],
    );
    assert!(wait_for(SOON, || proxy.ports().len() == 2));
    let mut c = Client::new(&proxy.addr, Duration::from_secs(10));
    for i in 0..20 {
        let a = c.get("/time").unwrap();
        assert_eq!(a.status, 200, "request {i}: {}", a.text());
    }
    let shed = proxy.metric("proxy_retries_total{reason=\"shed\"}");
    assert!(
        shed >= 9.0,
        "round robin sent half to the full server: {shed} retries\n{}",
        proxy.metrics()
    );
    let stderr = proxy.proc.stderr();
    assert!(stderr.matches("backend=fast").count() >= 20, "{stderr}");
    assert!(!stderr.contains("status=503"), "{stderr}");
    // A full server is alive: shedding never ejects it.
    assert!(
        !proxy
            .metrics()
            .contains("proxy_ejections_total{backend=\"full\""),
        "{}",
        proxy.metrics()
    );
    // The holder's request stays in the full server until this test's process ends.
    drop(holder);
}
