//! HTTP through the proxy: headers, streamed bodies, limits, no backend, the drain, metrics,
//! the status page, bad flags. A small echo server (a real one, on loopback) shows what a
//! backend receives; the time servers show the rest.
use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use testkit::{SOON, Spawner, assert_exits, free_port, http_get, start_on_free_port, wait_for};

/// An HTTP/1.1 server on a free loopback port, on threads of its own, for as long as the test
/// process lives. `/echo` answers with the request head and body it received; `/stream`
/// answers chunked, its second chunk 700 ms after the first.
fn echo_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve_echo(conn);
            });
        }
    });
    addr
}

fn serve_echo(conn: TcpStream) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut line = String::new();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = header("content-length").and_then(|v| v.parse().ok()) {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        if path == "/stream" {
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")?;
            w.flush()?;
            std::thread::sleep(Duration::from_millis(700));
            w.write_all(b"7\r\nsecond\n\r\n0\r\n\r\n")?;
        } else {
            let mut out = head.into_bytes();
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive, x-hop\r\n\
                 X-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n",
                out.len()
            )?;
            w.write_all(&out)?;
        }
    }
}

fn proxy_to(sp: &Spawner, backend: &str, extra: &[&str]) -> Proxy {
    let mut args = vec![format!("--backends=static:{backend}")];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(sp, &refs)
}

#[test]
fn hop_by_hop_headers_go_and_forwarded_headers_come() {
    let sp = Spawner::new();
    let proxy = proxy_to(&sp, &echo_server(), &[]);
    let mut c = Client::new(&proxy.addr, SOON);
    let a = c
        .send(
            "GET /echo?q=1 HTTP/1.1\r\nHost: front.example\r\nConnection: keep-alive, x-private\r\n\
                 X-Private: drop me\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\n\
                 X-Forwarded-For: 127.0.0.7\r\nCookie: a=b",
            b"",
        )
        .unwrap();
    assert_eq!(a.status, 200);
    let seen = a.text().to_ascii_lowercase();
    assert!(seen.starts_with("get /echo?q=1 http/1.1\r\n"), "{seen}");
    for want in [
        "host: front.example",
        "cookie: a=b",
        "x-forwarded-for: 127.0.0.7, 127.0.0.1",
        "x-forwarded-proto: http",
        "x-forwarded-host: front.example",
    ] {
        assert!(
            seen.contains(want),
            "{want} missing from what the backend got:\n{seen}"
        );
    }
    for gone in ["x-private", "keep-alive", "te:"] {
        assert!(!seen.contains(gone), "{gone} reached the backend:\n{seen}");
    }
    // And on the way back.
    assert_eq!(a.header("x-kept"), Some("yes"));
    assert_eq!(a.header("x-hop"), None);
    assert_eq!(a.header("keep-alive"), None);
}

#[test]
fn bodies_stream_both_ways() {
    let sp = Spawner::new();
    let proxy = proxy_to(&sp, &echo_server(), &[]);
    let mut c = Client::new(&proxy.addr, SOON);
    // A 2 MiB request body arrives whole.
    let big: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let a = c
        .send(
            &format!("POST /echo HTTP/1.1\r\nHost: {}", proxy.addr),
            &big,
        )
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(a.body.ends_with(&big), "the body arrived changed");
    // A chunked answer's first chunk arrives before the backend writes the second.
    let mut s = TcpStream::connect(&proxy.addr).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let t = Instant::now();
    write!(
        s,
        "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let first_at = t.elapsed();
    assert!(!String::from_utf8_lossy(&got).contains("second"));
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("second"), "{text}");
    assert!(
        first_at < t.elapsed() - Duration::from_millis(300),
        "the first chunk came at {first_at:?}, only with the second"
    );
}

#[test]
fn an_oversized_head_is_refused_with_431() {
    let sp = Spawner::new();
    let proxy = proxy_to(&sp, &echo_server(), &["--max-header-bytes=2048"]);
    let mut c = Client::new(&proxy.addr, SOON);
    let ok = c
        .send(
            &format!(
                "GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
                "a".repeat(1000)
            ),
            b"",
        )
        .unwrap();
    assert_eq!(ok.status, 200);
    let mut c = Client::new(&proxy.addr, SOON);
    let big = c
        .send(
            &format!(
                "GET /echo HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
                "a".repeat(4000)
            ),
            b"",
        )
        .unwrap();
    assert_eq!(big.status, 431);
}

#[test]
fn connections_over_the_cap_wait_until_one_closes() {
    let sp = Spawner::new();
    let proxy = proxy_to(&sp, &echo_server(), &["--max-connections=2"]);
    let mut first = Client::new(&proxy.addr, SOON);
    let mut second = Client::new(&proxy.addr, SOON);
    assert_eq!(first.get("/echo").unwrap().status, 200);
    assert_eq!(second.get("/echo").unwrap().status, 200);
    // A third connection is not served while both stay open...
    let mut third = TcpStream::connect(&proxy.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    write!(
        third,
        "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 64];
    assert!(third.read(&mut buf).is_err(), "served over the cap");
    // ...and is, once one of them closes.
    drop(first);
    third.set_read_timeout(Some(SOON)).unwrap();
    let mut got = Vec::new();
    third.read_to_end(&mut got).unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{got:?}"
    );
    assert_eq!(second.get("/echo").unwrap().status, 200);
}

#[test]
fn all_backends_down_or_none_listed_is_503_within_the_connect_timeout() {
    let sp = Spawner::new();
    let (a, b) = (free_port(), free_port());
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends=127.0.0.1:{a},127.0.0.1:{b}"),
            "--connect-timeout=500ms",
            "--eject-for=5s",
        ],
    );
    for _ in 0..3 {
        let t = Instant::now();
        let r = http_get(&proxy.addr, "/time", &[]).unwrap();
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains("no backend"), "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            t.elapsed()
        );
    }
    let status = proxy.backends();
    assert!(
        status["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "ejected"),
        "{status}"
    );
    assert!(proxy.metric("proxy_requests_total{backend=\"none\",status=\"503\"}") >= 3.0);

    // A supervisor with no matching task: the request waits for one, then gives up.
    let sup = Sup::start(&serde_json::json!([timeserver("other", None, &[])]), &[]);
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends=supervisor:http://{}/timeserver-*", sup.api),
            "--connect-timeout=400ms",
        ],
    );
    assert!(wait_for(SOON, || proxy.backends()["source"]["connected"] == true));
    let t = Instant::now();
    let r = http_get(&proxy.addr, "/time", &[]).unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, 503);
    assert!(r.body.contains("lists 0 backends"), "{}", r.body);
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(3),
        "took {took:?}"
    );
}

#[test]
fn sigterm_stops_accepting_and_drains_requests_in_flight() {
    let sp = Spawner::new();
    let ts = start_on_free_port(&sp, "timeserver", "--port", &["--avg-response-ms=1500"]);
    let mut proxy = proxy_to(&sp, ts.addr(), &["--drain-timeout=10s"]);
    let addr = proxy.addr.clone();
    let in_flight = std::thread::spawn(move || http_get(&addr, "/time", &[]));
    assert!(wait_for(SOON, || proxy.metric("proxy_requests_in_flight") == 1.0));
    let t = Instant::now();
    proxy.proc.signal(libc::SIGTERM);
    assert!(
        wait_for(SOON, || TcpStream::connect(&proxy.addr).is_err()),
        "still accepting after SIGTERM"
    );
    let r = in_flight
        .join()
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("The time is now"), "{}", r.body);
    let status = proxy.proc.wait_exit(SOON).expect("exits after the drain");
    assert_eq!(status.code(), Some(0), "{}", proxy.proc.stderr());
    assert!(t.elapsed() < Duration::from_secs(8));
    assert!(
        proxy.proc.stderr().contains("stopped cleanly"),
        "{}",
        proxy.proc.stderr()
    );

    // With a drain shorter than the request, the proxy exits at the deadline anyway.
    let mut proxy = proxy_to(&sp, ts.addr(), &["--drain-timeout=200ms"]);
    let addr = proxy.addr.clone();
    let cut = std::thread::spawn(move || http_get(&addr, "/time", &[]));
    assert!(wait_for(SOON, || proxy.metric("proxy_requests_in_flight") == 1.0));
    let t = Instant::now();
    proxy.proc.signal(libc::SIGTERM);
    let status = proxy.proc.wait_exit(SOON).expect("exits at the deadline");
    assert_eq!(status.code(), Some(0));
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        proxy.proc.stderr().contains("cut off"),
        "{}",
        proxy.proc.stderr()
    );
    assert!(
        cut.join().unwrap().is_err(),
        "the cut request gets no answer"
    );
}

#[test]
fn metrics_pass_promtool_and_the_status_page_lists_the_backends() {
    let sp = Spawner::new();
    let ts = start_on_free_port(&sp, "timeserver", "--port", &[]);
    let dead = free_port();
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends={},127.0.0.1:{dead}", ts.addr()),
            "--eject-for=30s",
        ],
    );
    for _ in 0..10 {
        assert_eq!(http_get(&proxy.addr, "/time", &[]).unwrap().status, 200);
    }
    let m = proxy.metrics();
    for want in [
        &format!(
            "proxy_requests_total{{backend=\"{}\",status=\"200\"}} 10",
            ts.addr()
        ),
        &format!("proxy_ejections_total{{backend=\"127.0.0.1:{dead}\",reason=\"refused\"}}"),
        "proxy_request_duration_seconds_bucket",
        "proxy_requests_in_flight 0",
        &format!("proxy_backend_up{{backend=\"127.0.0.1:{dead}\",addr=\"127.0.0.1:{dead}\"}} 0"),
        "proxy_source_connected 1",
    ] {
        assert!(m.contains(want), "{want} missing from\n{m}");
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus; make test installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(m.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let page = http_get(&proxy.admin, "/", &[]).unwrap();
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(ts.addr()) && page.body.contains("ejected"),
        "{}",
        page.body
    );
    // The access log: one line per request, with backend and attempts.
    let log = proxy.proc.stderr();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" path=/time ")).collect();
    assert_eq!(lines.len(), 10, "{log}");
    for l in lines {
        for field in [
            "method=GET",
            "status=200",
            &format!("backend={}", ts.addr()),
            &format!("upstream={}", ts.addr()),
            "attempts=",
            "duration_ms=",
            "peer=127.0.0.1:",
        ] {
            assert!(l.contains(field), "{field} missing from {l}");
        }
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag_and_a_taken_port_exits_1() {
    let sp = Spawner::new();
    assert_exits(
        &sp,
        "proxy",
        &["--backends=nowhere"],
        2,
        &["--backends", "HOST:PORT"],
    );
    assert_exits(&sp, "proxy", &[], 2, &["--backends"]);
    assert_exits(
        &sp,
        "proxy",
        &["--backends=supervisor:http://127.0.0.1:7171"],
        2,
        &["no task pattern"],
    );
    assert_exits(
        &sp,
        "proxy",
        &["--backends=ubervisor:http://127.0.0.1:7000/"],
        2,
        &["no job name"],
    );
    assert_exits(
        &sp,
        "proxy",
        &[
            "--backends=supervisor:http://127.0.0.1:7171/x",
            "--backends-token-file=/nonexistent/token",
        ],
        2,
        &["--backends-token-file", "/nonexistent/token"],
    );
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let stderr = assert_exits(
        &sp,
        "proxy",
        &[
            &format!("--listen=127.0.0.1:{port}"),
            "--admin=none",
            "--backends=127.0.0.1:1",
        ],
        1,
        &[&format!("127.0.0.1:{port}"), "--listen"],
    );
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
}

#[test]
fn the_active_check_takes_a_hung_backend_out_and_puts_it_back() {
    let sp = Spawner::new();
    let good = start_on_free_port(&sp, "timeserver", "--port", &[]);
    let hung = start_on_free_port(&sp, "timeserver", "--port", &[]);
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends={},{}", good.addr(), hung.addr()),
            "--health-path=/about",
            "--health-interval=100ms",
            "--health-timeout=300ms",
        ],
    );
    let state = |addr: &str| {
        proxy.backends()["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["addr"] == addr)
            .map(|b| b["state"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(state(hung.addr()), "up");
    // A stopped process still has its socket: connections succeed, answers never come.
    hung.signal(libc::SIGSTOP);
    assert!(
        wait_for(SOON, || state(hung.addr()) == "down"),
        "{}",
        proxy.backends()
    );
    for _ in 0..20 {
        let t = Instant::now();
        let r = http_get(&proxy.addr, "/time", &[]).unwrap();
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a request went to the hung backend"
        );
    }
    assert!(
        proxy.proc.stderr().contains("health check failed"),
        "{}",
        proxy.proc.stderr()
    );
    hung.signal(libc::SIGCONT);
    assert!(
        wait_for(SOON, || state(hung.addr()) == "up"),
        "{}",
        proxy.backends()
    );
    assert!(proxy.proc.stderr().contains("health check passes again"));
}

#[test]
fn a_backend_slower_than_the_response_timeout_gets_504_and_is_not_retried() {
    let sp = Spawner::new();
    let slow = start_on_free_port(&sp, "timeserver", "--port", &["--avg-response-ms=3000"]);
    let proxy = proxy_to(&sp, slow.addr(), &["--response-timeout=300ms"]);
    let t = Instant::now();
    let r = http_get(&proxy.addr, "/time", &[]).unwrap();
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.body.contains("did not answer within"), "{}", r.body);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // The backend saw the request once, and saw the proxy give up on it (499).
    assert!(
        wait_for(
            SOON,
            || slow.get_json("/monitor")["requests"]["/time"]["499"] == 1
        ),
        "{}",
        slow.get_json("/monitor")
    );
    let m = slow.get_json("/monitor");
    assert_eq!(m["requests"]["/time"].as_object().unwrap().len(), 1, "{m}");
    assert_eq!(
        proxy.metric(&format!(
            "proxy_requests_total{{backend=\"{}\",status=\"504\"}}",
            slow.addr()
        )),
        1.0
    );
}

/// A server that reads each request and closes the connection without a byte of answer: a
/// backend dying under the request.
fn closing_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut line = String::new();
            let mut length = 0;
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = r.read_exact(&mut body);
        }
    });
    addr
}

#[test]
fn a_reset_before_the_answer_is_retried_only_when_the_request_can_be_sent_again() {
    let sp = Spawner::new();
    let (closer, echo) = (closing_server(), echo_server());
    let proxy = Proxy::start(
        &sp,
        &[
            &format!("--backends={closer},{echo}"),
            "--balance=round-robin",
            "--eject-for=1ms",
            "--eject-max=1ms",
        ],
    );
    let mut c = Client::new(&proxy.addr, SOON);
    // Two of each in a row: round robin then sends each kind to both backends, whatever
    // the retries do to its turn.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(5));
            let a = c.get("/echo").unwrap();
            assert_eq!(
                a.status,
                200,
                "a GET is retried on the other backend: {}",
                a.text()
            );
        }
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(5));
            let head = format!("POST /echo HTTP/1.1\r\nHost: {}", proxy.addr);
            statuses.push(c.send(&head, b"pay once").unwrap().status);
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&502),
        "a POST with a body that reached the dying backend is not sent again: {statuses:?}"
    );
    assert!(
        proxy.metric("proxy_retries_total{reason=\"reset\"}") >= 1.0,
        "{}",
        proxy.metrics()
    );
}
