//! `/metrics`: valid for promtool, and moving with requests, sessions and dumps.
use testkit::{Spawner, assert_promtool_passes, sample, wait_for};

use crate::common::{A, B, SOON, authserver, set, with_dump};

fn scrape(s: &testkit::ServerProc) -> String {
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
fn requests_sessions_and_unknown_paths() {
    let sp = Spawner::new();
    let auth = authserver(&sp, &[]);
    assert_promtool_passes(&sp, &scrape(&auth));
    set(&auth, A, "Ada");
    set(&auth, B, "Bob");
    assert_eq!(auth.get(&format!("/get?cookie={A}")).status, 200);
    assert_eq!(auth.get("/get?cookie=nope").status, 400);
    for i in 0..25 {
        assert_eq!(auth.get(&format!("/probe-{i}")).status, 404);
    }
    let page = scrape(&auth);
    for (series, want) in [
        ("authserver_sessions", 2.0),
        (
            "authserver_http_requests_total{path=\"/set\",status=\"200\"}",
            2.0,
        ),
        (
            "authserver_http_requests_total{path=\"/get\",status=\"200\"}",
            1.0,
        ),
        (
            "authserver_http_requests_total{path=\"/get\",status=\"400\"}",
            1.0,
        ),
        (
            "authserver_http_requests_total{path=\"other\",status=\"404\"}",
            25.0,
        ),
        (
            "authserver_http_request_duration_seconds_count{path=\"/set\"}",
            2.0,
        ),
        // This scrape is the one request in flight.
        ("authserver_http_requests_in_flight", 1.0),
        ("authserver_dumps_written_total", 0.0),
    ] {
        assert_eq!(value(&page, series), want, "{series} in\n{page}");
    }
    assert!(!page.contains("probe"), "raw URLs never become labels");
    set(&auth, A, "");
    assert_eq!(value(&scrape(&auth), "authserver_sessions"), 1.0);
    assert_promtool_passes(&sp, &page);
}

#[test]
fn dumps_written_and_failed_are_counted() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("state");
    let auth = with_dump(&sp, &folder.join("auth.json"), "100ms");
    set(&auth, A, "Ada");
    assert!(wait_for(SOON, || sample(
        &scrape(&auth),
        "authserver_dumps_written_total"
    ) == Some(1.0)));

    // The folder goes away under the server: the next dump cannot be written.
    std::fs::remove_dir_all(&folder).unwrap();
    set(&auth, B, "Bob");
    assert!(
        wait_for(SOON, || sample(
            &scrape(&auth),
            "authserver_dump_failures_total"
        ) >= Some(1.0)),
        "{}",
        scrape(&auth)
    );
    // Back: the sessions still in memory are written at the next checkpoint.
    std::fs::create_dir_all(&folder).unwrap();
    assert!(wait_for(SOON, || sample(
        &scrape(&auth),
        "authserver_dumps_written_total"
    ) == Some(2.0)));
    let page = scrape(&auth);
    assert_eq!(value(&page, "authserver_sessions"), 2.0);
    assert_promtool_passes(&sp, &page);
}
