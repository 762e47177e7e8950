//! `/metrics`: valid for promtool, and moving with what the server does.
use std::io::{Read, Write};
use std::time::Duration;

use testkit::{ServerProc, Spawner, assert_promtool_passes, free_port, http_get, sample, wait_for};

use crate::common::{SOON, dead_port, get_with_cookie, timeserver};

/// The page, checked for its content type.
fn scrape(s: &ServerProc) -> String {
    let r = s.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body
}

fn value(page: &str, series: &str) -> f64 {
    sample(page, series).unwrap_or_else(|| panic!("no {series} in\n{page}"))
}

#[test]
fn shedding_requests_and_latency_show_up_and_pass_promtool() {
    let sp = Spawner::new();
    let ts = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            "--max-inflight=1",
            "--avg-response-ms=1500",
            "--response-deviation-ms=0",
        ],
    );
    let fresh = scrape(&ts);
    assert_promtool_passes(&sp, &fresh);
    assert_eq!(value(&fresh, "timeserver_requests_shed_total"), 0.0);
    assert_eq!(value(&fresh, "timeserver_time_requests_limit"), 1.0);

    std::thread::scope(|s| {
        let slow = s.spawn(|| http_get(ts.addr(), "/time", &[]).unwrap());
        assert!(
            wait_for(SOON, || sample(
                &scrape(&ts),
                "timeserver_time_requests_in_flight"
            ) == Some(1.0)),
            "the slow request is admitted"
        );
        let during = scrape(&ts);
        // The slow /time, and this scrape itself.
        assert_eq!(value(&during, "timeserver_http_requests_in_flight"), 2.0);
        let shed = ts.get("/time");
        assert_eq!(shed.status, 503);
        let after_shed = scrape(&ts);
        assert_eq!(value(&after_shed, "timeserver_requests_shed_total"), 1.0);
        assert_eq!(
            value(
                &after_shed,
                "timeserver_http_requests_total{path=\"/time\",status=\"503\"}"
            ),
            1.0
        );
        assert_eq!(slow.join().unwrap().status, 200);
    });

    let page = scrape(&ts);
    let time = |suffix: &str| {
        value(
            &page,
            &format!("timeserver_http_request_duration_seconds{suffix}"),
        )
    };
    assert_eq!(
        value(
            &page,
            "timeserver_http_requests_total{path=\"/time\",status=\"200\"}"
        ),
        1.0
    );
    // The 503 came at once, the 200 after 1.5 s.
    assert_eq!(time("_bucket{path=\"/time\",le=\"1\"}"), 1.0);
    assert_eq!(time("_bucket{path=\"/time\",le=\"2.5\"}"), 2.0);
    assert_eq!(time("_count{path=\"/time\"}"), 2.0);
    assert!(time("_sum{path=\"/time\"}") >= 1.5);
    assert_eq!(value(&page, "timeserver_time_requests_in_flight"), 0.0);
    assert!(
        value(
            &page,
            "timeserver_http_requests_total{path=\"/metrics\",status=\"200\"}"
        ) >= 4.0
    );
    assert_promtool_passes(&sp, &page);
}

#[test]
fn unknown_urls_fold_into_one_series() {
    let sp = Spawner::new();
    let ts = timeserver(&sp, &["--authport", &dead_port()]);
    for i in 0..40 {
        assert_eq!(ts.get(&format!("/scan/{i}/wp-login.php")).status, 404);
    }
    assert_eq!(ts.get("/css/other.css").status, 404);
    assert_eq!(ts.get("/about").status, 200);
    let page = scrape(&ts);
    assert_eq!(
        value(
            &page,
            "timeserver_http_requests_total{path=\"other\",status=\"404\"}"
        ),
        40.0
    );
    assert_eq!(
        value(
            &page,
            "timeserver_http_requests_total{path=\"/css/{file}\",status=\"404\"}"
        ),
        1.0
    );
    assert!(!page.contains("wp-login"), "raw URLs never become labels");
    let series = page
        .lines()
        .filter(|l| l.starts_with("timeserver_http_requests_total{"))
        .count();
    assert_eq!(series, 3, "other, /css/{{file}}, /about:\n{page}");
    assert_promtool_passes(&sp, &page);
}

/// `timeserver_auth_calls_total` for `call` and `outcome`, 0 when absent.
fn auth_calls(ts: &ServerProc, call: &str, outcome: &str) -> f64 {
    let series = format!("timeserver_auth_calls_total{{call=\"{call}\",outcome=\"{outcome}\"}}");
    sample(&scrape(ts), &series).unwrap_or(0.0)
}

const SOMEONE: &str = "5b0d7f5e-8a46-4b8e-9d41-0f5a3c1e2d77";

#[test]
fn auth_calls_are_counted_by_outcome() {
    let sp = Spawner::new();

    // Refused while nobody listens on the auth port, ok once the auth server is there.
    let authport = free_port();
    let ts = timeserver(
        &sp,
        &["--authhost=127.0.0.1", &format!("--authport={authport}")],
    );
    assert_eq!(get_with_cookie(&ts, "/time", SOMEONE).status, 200);
    assert_eq!(ts.get("/login?name=Ada").status, 502);
    assert_eq!(auth_calls(&ts, "get", "refused"), 1.0);
    assert_eq!(auth_calls(&ts, "set", "refused"), 1.0);
    let mut cmd = sp.bin("authserver");
    cmd.args([&format!("--authport={authport}"), "--dumpfile=none"]);
    let _auth = ServerProc::start(cmd, &format!("127.0.0.1:{authport}"));
    assert_eq!(ts.get("/login?name=Ada").status, 302);
    assert_eq!(get_with_cookie(&ts, "/time", SOMEONE).status, 200); // unknown cookie: still ok
    assert_eq!(auth_calls(&ts, "set", "ok"), 1.0);
    assert_eq!(auth_calls(&ts, "get", "ok"), 1.0);
    assert_eq!(auth_calls(&ts, "get", "error"), 0.0);

    // A listener that never answers: timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ts = timeserver(
        &sp,
        &[
            "--authhost=127.0.0.1",
            &format!("--authport={}", silent.local_addr().unwrap().port()),
            "--authtimeout-ms=200",
        ],
    );
    assert_eq!(get_with_cookie(&ts, "/time", SOMEONE).status, 200);
    assert_eq!(auth_calls(&ts, "get", "timeout"), 1.0);

    // A peer that answers with something that is not HTTP: error.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = garbage.local_addr().unwrap().port();
    let talker = std::thread::spawn(move || {
        let (mut conn, _) = garbage.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        conn.write_all(b"HELLO THERE\r\n\r\n").unwrap();
    });
    let ts = timeserver(
        &sp,
        &["--authhost=127.0.0.1", &format!("--authport={port}")],
    );
    assert_eq!(get_with_cookie(&ts, "/time", SOMEONE).status, 200);
    talker.join().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || auth_calls(&ts, "get", "error")
            == 1.0),
        "{}",
        scrape(&ts)
    );
    assert_promtool_passes(&sp, &scrape(&ts));
}
