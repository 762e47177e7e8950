//! `serve`'s stop, driven by a oneshot instead of a signal, with raw sockets as clients (each
//! request is written by hand, so the tests see exactly what went over the wire).
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};

use super::*;

/// A router whose `/slow` waits `delay` (announcing each arrival on `entered`) and whose
/// `/fast` answers at once.
fn app(delay: Duration, entered: Arc<Notify>) -> Router {
    Router::new()
        .route(
            "/slow",
            axum::routing::get(move || async move {
                entered.notify_one();
                tokio::time::sleep(delay).await;
                "late"
            }),
        )
        .route("/fast", axum::routing::get(|| async { "quick" }))
}

/// A stop that fires when the sender is used (or dropped).
fn stop_switch() -> (oneshot::Sender<()>, impl Future<Output = StopSignal>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
        StopSignal::Term
    })
}

async fn send(conn: &mut TcpStream, path: &str, close: bool) {
    let connection = if close { "close" } else { "keep-alive" };
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("send");
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.expect("read to EOF");
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_shutting_down(response: &str) {
    assert!(
        response.starts_with("HTTP/1.1 503 "),
        "a 503, not {response:?}"
    );
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: 1\r\n"), "{response}");
    assert!(lower.contains("\r\nconnection: close\r\n"), "{response}");
}

#[tokio::test]
async fn taken_port_names_the_address() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let err = bind("127.0.0.1", port).await.expect_err("port is taken");
    assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[test]
fn host_port_brackets_bare_ipv6_literals_only() {
    assert_eq!(host_port("::1", 7070), "[::1]:7070");
    assert_eq!(host_port("[::1]", 7070), "[::1]:7070");
    assert_eq!(host_port("localhost", 7070), "localhost:7070");
    assert_eq!(host_port("127.0.0.1", 0), "127.0.0.1:0");
}

#[tokio::test]
async fn ipv6_literal_is_bracketed() {
    // ::1 may be unavailable in a container; only the message shape is checked then.
    match bind("::1", 0).await {
        Ok(l) => assert!(l.local_addr().expect("addr").is_ipv6()),
        Err(e) => assert!(e.addr.starts_with("[::1]:"), "{e}"),
    }
}

#[tokio::test]
async fn a_request_running_at_the_deadline_gets_a_503_and_the_stop_is_bounded() {
    let listener = bind("127.0.0.1", 0).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let entered = Arc::new(Notify::new());
    let routes = app(Duration::from_secs(60), entered.clone());
    let (stop_tx, stop) = stop_switch();
    let log = AccessLog::default();
    let server = tokio::spawn(serve(
        listener,
        routes,
        log.clone(),
        stop,
        Duration::from_millis(200),
    ));
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    send(&mut conn, "/slow", false).await;
    entered.notified().await;
    let started = std::time::Instant::now();
    stop_tx.send(()).expect("stop");
    let response = read_to_close(&mut conn).await;
    assert_shutting_down(&response);
    let outcome = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returned in time")
        .expect("join");
    assert_eq!(
        outcome,
        Stopped::DrainTimedOut {
            signal: StopSignal::Term,
            cut_off: 1,
            dropped: 0
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(log.metrics.count(Some("/slow"), 503), 1, "logged as a 503");
}

#[tokio::test]
async fn idle_server_drains_at_once() {
    let listener = bind("127.0.0.1", 0).await.expect("bind");
    let routes = app(Duration::ZERO, Arc::new(Notify::new()));
    let outcome = serve(
        listener,
        routes,
        AccessLog::default(),
        async { StopSignal::Int },
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(outcome, Stopped::Drained(StopSignal::Int));
}

#[tokio::test]
async fn during_the_drain_running_requests_finish_new_ones_get_503_and_idle_ones_close() {
    let listener = bind("127.0.0.1", 0).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let entered = Arc::new(Notify::new());
    let routes = app(Duration::from_millis(800), entered.clone());
    let (stop_tx, stop) = stop_switch();
    let server = tokio::spawn(serve(
        listener,
        routes,
        AccessLog::default(),
        stop,
        Duration::from_secs(10),
    ));

    // An idle keep-alive connection: one request answered, then nothing.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    send(&mut idle, "/fast", false).await;
    let mut first = [0u8; 512];
    let n = idle.read(&mut first).await.expect("first answer");
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        &first[..n]
    );
    // A keep-alive connection that has a request running when the stop comes.
    let mut busy = TcpStream::connect(addr).await.expect("connect");
    send(&mut busy, "/slow", false).await;
    entered.notified().await;
    // A connection open before the stop that sends its request only after it.
    let mut late = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await; // accepted by now

    stop_tx.send(()).expect("stop");
    let closed = tokio::time::timeout(Duration::from_secs(5), read_to_close(&mut idle))
        .await
        .expect("the idle connection is closed at once, not at the end of the drain");
    assert_eq!(closed, "", "closed cleanly with nothing more to say");

    send(&mut late, "/fast", false).await;
    assert_shutting_down(&read_to_close(&mut late).await);

    let answer = read_to_close(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("late"), "the whole answer: {answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    let outcome = server.await.expect("join");
    assert_eq!(outcome, Stopped::Drained(StopSignal::Term));
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the listener is closed after the stop");
}

#[tokio::test]
async fn a_connection_still_in_the_accept_queue_is_answered_not_reset() {
    let listener = bind("127.0.0.1", 0).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // The kernel completes the handshake with nobody calling accept: the connection waits in the
    // queue, its request with it. The stop is already there when serving begins, so the accept
    // loop never takes it; only the sweep at the stop does.
    let mut queued = TcpStream::connect(addr).await.expect("connect");
    send(&mut queued, "/fast", true).await;
    let outcome = serve(
        listener,
        app(Duration::ZERO, Arc::new(Notify::new())),
        AccessLog::default(),
        async { StopSignal::Term },
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(outcome, Stopped::Drained(StopSignal::Term));
    assert_shutting_down(&read_to_close(&mut queued).await);
}

#[tokio::test]
async fn a_client_that_never_asks_is_dropped_after_the_grace() {
    let listener = bind("127.0.0.1", 0).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop) = stop_switch();
    let server = tokio::spawn(serve(
        listener,
        app(Duration::ZERO, Arc::new(Notify::new())),
        AccessLog::default(),
        stop,
        Duration::from_millis(100),
    ));
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await; // accepted by now
    let started = std::time::Instant::now();
    stop_tx.send(()).expect("stop");
    let outcome = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("bounded")
        .expect("join");
    assert_eq!(
        outcome,
        Stopped::DrainTimedOut {
            signal: StopSignal::Term,
            cut_off: 0,
            dropped: 1
        }
    );
    assert!(started.elapsed() >= FLUSH_GRACE, "{:?}", started.elapsed());
    assert_eq!(read_to_close(&mut silent).await, "");
}
