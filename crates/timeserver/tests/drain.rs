//! SIGTERM with requests in flight: every client gets a whole answer (200 or 503 with
//! `Retry-After`), never an empty reply or a reset.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::{Response, ServerProc, Spawner, http_get, wait_for};

use crate::common::{SOON, dead_port, monitor, timeserver};

/// A slow server: every `/time` takes exactly `ms`.
fn slow_server(sp: &Spawner, ms: u64, drain: &str) -> ServerProc {
    timeserver(
        sp,
        &[
            "--authport",
            &dead_port(),
            &format!("--avg-response-ms={ms}"),
            "--response-deviation-ms=0",
            &format!("--drain-timeout={drain}"),
        ],
    )
}

/// Starts `n` `/time` requests, each on its own connection, and waits until all are in flight.
fn start_slow_requests<'s>(
    s: &'s std::thread::Scope<'s, '_>,
    ts: &'s ServerProc,
    n: usize,
) -> Vec<std::thread::ScopedJoinHandle<'s, std::io::Result<Response>>> {
    let pending: Vec<_> = (0..n)
        .map(|_| s.spawn(|| http_get(ts.addr(), "/time", &[])))
        .collect();
    assert!(
        wait_for(SOON, || monitor(ts)["in_flight"] == n),
        "{n} requests in flight"
    );
    pending
}

fn assert_shutting_down(r: &Response) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"), "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
}

/// A connection that has had one answer and stays open (keep-alive).
fn idle_keep_alive(addr: &str) -> BufReader<TcpStream> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"GET /about HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    let mut length = None;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if line.starts_with("HTTP/1.1") {
            assert!(line.starts_with("HTTP/1.1 200 "), "{line}");
        }
    }
    let mut body = vec![0; length.expect("a Content-Length")];
    r.read_exact(&mut body).unwrap();
    r
}

#[test]
fn sigterm_lets_slow_requests_finish_closes_idle_connections_and_turns_new_ones_away() {
    let sp = Spawner::new();
    let mut ts = slow_server(&sp, 2000, "10s");
    let addr = ts.addr().to_string();
    let mut idle = idle_keep_alive(&addr);
    // Open before the stop, asks only after it.
    let mut late = TcpStream::connect(&addr).unwrap();
    std::thread::scope(|s| {
        let pending = start_slow_requests(s, &ts, 4);
        let stopped_at = Instant::now();
        ts.signal(libc::SIGTERM);

        // The idle connection is closed cleanly (EOF, not a reset) at once, not at the end.
        let mut rest = Vec::new();
        let read = idle.read_to_end(&mut rest);
        assert!(read.is_ok(), "closed cleanly, not reset: {read:?}");
        assert!(rest.is_empty(), "nothing more: {rest:?}");
        assert!(
            stopped_at.elapsed() < Duration::from_millis(1500),
            "closed while the slow requests still run: {:?}",
            stopped_at.elapsed()
        );

        // A request on a connection opened before the stop: a whole 503.
        late.write_all(b"GET /about HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        late.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 1\r\n"),
            "{text}"
        );

        // New connections: refused, or (if one got in) a whole 503. Never an empty reply.
        for _ in 0..5 {
            match http_get(&addr, "/about", &[]) {
                Ok(r) => assert_shutting_down(&r),
                Err(e) => assert_eq!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused,
                    "refused, not cut: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        for p in pending {
            let r = p.join().unwrap().expect("a whole answer");
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.body.contains("The time is now"), "{}", r.body);
        }
    });
    let status = ts.wait_exit(SOON).expect("exited after the drain");
    assert_eq!(status.code(), Some(0), "{}", ts.stderr());
    assert!(ts.stderr().contains("stopped cleanly"), "{}", ts.stderr());
}

#[test]
fn a_drain_shorter_than_the_requests_answers_each_with_503_and_retry_after() {
    let sp = Spawner::new();
    let mut ts = slow_server(&sp, 60_000, "500ms");
    let stopped_at = std::thread::scope(|s| {
        let pending = start_slow_requests(s, &ts, 5);
        let stopped_at = Instant::now();
        ts.signal(libc::SIGTERM);
        for p in pending {
            let r = p
                .join()
                .unwrap()
                .expect("a whole answer, not an empty reply");
            assert_shutting_down(&r);
            let took = stopped_at.elapsed();
            assert!(
                took >= Duration::from_millis(450),
                "answered at the end of the drain, not before: {took:?}"
            );
        }
        stopped_at
    });
    let status = ts.wait_exit(SOON).expect("exited");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(5),
        "bounded by the drain: {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(status.code(), Some(0), "{}", ts.stderr());
    let stderr = ts.stderr();
    assert!(stderr.contains("answered 503"), "{stderr}");
    assert!(stderr.contains("cut_off=5"), "{stderr}");
    assert!(stderr.contains("dropped_connections=0"), "{stderr}");
}

#[test]
fn sigint_drains_the_same_way() {
    let sp = Spawner::new();
    let mut ts = slow_server(&sp, 60_000, "300ms");
    std::thread::scope(|s| {
        let pending = start_slow_requests(s, &ts, 1);
        ts.signal(libc::SIGINT);
        for p in pending {
            assert_shutting_down(&p.join().unwrap().expect("a whole answer"));
        }
    });
    let status = ts.wait_exit(SOON).expect("exited");
    assert_eq!(status.code(), Some(0), "{}", ts.stderr());
    assert!(ts.stderr().contains("SIGINT"), "{}", ts.stderr());
}
