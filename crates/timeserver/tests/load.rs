//! Simulated load: the in-flight cap, the delay distribution, and the in-flight count.
use std::io::Write;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use testkit::{Spawner, http_get, wait_for};

use crate::common::{SOON, count, dead_port, monitor, timeserver};

#[test]
fn over_the_cap_is_refused_at_once_and_nothing_leaks() {
    let sp = Spawner::new();
    let ts = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            "--max-inflight=2",
            "--avg-response-ms=2000",
            "--response-deviation-ms=0",
        ],
    );
    let start = Barrier::new(10);
    let results: Vec<(u16, Duration, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t = Instant::now();
                    let r = http_get(ts.addr(), "/time", &[]).unwrap();
                    (
                        r.status,
                        t.elapsed(),
                        r.header("retry-after").map(str::to_string),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let shed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    assert_eq!((ok.len(), shed.len()), (2, 8), "{results:?}");
    for (_, took, retry) in &shed {
        assert!(
            *took < Duration::from_millis(1000),
            "refused at once, not after the delay: {took:?}"
        );
        assert_eq!(
            retry.as_deref(),
            Some("2"),
            "Retry-After: about one mean response time"
        );
    }
    for (_, took, _) in &ok {
        assert!(
            *took >= Duration::from_millis(1900),
            "admitted ones were delayed: {took:?}"
        );
    }
    let m = monitor(&ts);
    assert_eq!(m["in_flight"], 0, "{m}");
    assert_eq!(m["shed"], 8, "{m}");
    assert_eq!(m["max_inflight"], 2, "{m}");
    assert_eq!(
        (count(&m, "/time", 200), count(&m, "/time", 503)),
        (2, 8),
        "{m}"
    );
}

#[test]
fn mean_delay_follows_avg_response_ms() {
    let sp = Spawner::new();
    let ts = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            "--avg-response-ms=50",
            "--response-deviation-ms=10",
        ],
    );
    let n = 40;
    let start = Barrier::new(n);
    let times: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t = Instant::now();
                    let r = http_get(ts.addr(), "/time", &[]).unwrap();
                    assert_eq!(r.status, 200);
                    t.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mean_ms = times.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / n as f64;
    // A behaviour check, not a benchmark: the delay is there and is about 50 ms, not 0 or 500.
    assert!(
        (25.0..150.0).contains(&mean_ms),
        "mean {mean_ms:.1} ms over {n} requests: {times:?}"
    );
    let fastest = times.iter().min().unwrap();
    assert!(
        *fastest >= Duration::from_millis(5),
        "every request was delayed somewhat: {fastest:?}"
    );
}

#[test]
fn client_disconnecting_mid_delay_frees_its_slot() {
    let sp = Spawner::new();
    let ts = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            "--max-inflight=1",
            "--avg-response-ms=30000",
            "--response-deviation-ms=0",
        ],
    );
    for round in 1..=2 {
        // With a cap of 1, a leaked slot from round 1 would make round 2's request a 503.
        let mut conn = std::net::TcpStream::connect(ts.addr()).unwrap();
        conn.write_all(b"GET /time HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        assert!(
            wait_for(SOON, || monitor(&ts)["in_flight"] == 1),
            "round {round}: request admitted"
        );
        drop(conn);
        assert!(
            wait_for(SOON, || monitor(&ts)["in_flight"] == 0),
            "round {round}: slot released"
        );
    }
    // Counted when the dropped request's log guard drops, a moment after its slot: poll.
    let counted = wait_for(SOON, || count(&monitor(&ts), "/time", 499) == 2);
    let m = monitor(&ts);
    assert!(counted, "logged and counted as client-closed: {m}");
    assert_eq!(m["shed"], 0, "{m}");
}
