//! Binding and serving with a bounded drain.
//!
//! `axum::serve(..).with_graceful_shutdown(..)` waits for every connection to finish, however
//! long: a `/time` request with a simulated 20 s delay would hold a stop for 20 s, and a stuck
//! client forever. Here the server gets `drain` to finish what is in flight, then `serve` returns
//! anyway so `main` can save state and exit within a known time.
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::shutdown::StopSignal;

/// The listening address could not be bound (port taken, bad host, no permission).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// `host:port` as given, so the message names exactly what was asked for.
    pub addr: String,
    #[source]
    pub source: io::Error,
}

/// Binds `host:port`. Fails at once when the port is taken: a supervisor relies on that to move
/// on to the next port, so nothing slow may come before this.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, BindError> {
    let addr = host_port(host, port);
    match TcpListener::bind(addr.as_str()).await {
        Ok(l) => Ok(l),
        Err(source) => Err(BindError { addr, source }),
    }
}

/// `host:port`, with a bare IPv6 literal bracketed (`[::1]:80`), as `connect` and `bind` want it.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A signal arrived and every request in flight finished within the drain period.
    Drained(StopSignal),
    /// A signal arrived and requests were still in flight when the drain period ran out.
    DrainTimedOut(StopSignal),
}

/// Serves `app` on `listener` until `stop` resolves, then drains for at most `drain`.
///
/// Handlers can extract `ConnectInfo<SocketAddr>` (the peer) — the access log uses it.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: impl Future<Output = StopSignal>,
    drain: Duration,
) -> io::Result<Stopped> {
    let (begin_drain, drain_requested) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        // An Err means the sender was dropped: also a reason to stop.
        let _ = drain_requested.await;
    });
    let mut running = tokio::spawn(server.into_future());
    let signal = tokio::select! {
        joined = &mut running => {
            // The server ended without being asked to: only an accept-loop error does that.
            return Err(match joined {
                Ok(Ok(())) => io::Error::other("the server stopped on its own"),
                Ok(Err(e)) => e,
                Err(e) => io::Error::other(format!("the server task failed: {e}")),
            });
        }
        s = stop => s,
    };
    tracing::info!(signal = %signal, drain_ms = drain.as_millis() as u64, "stopping: draining requests in flight");
    let _ = begin_drain.send(());
    match tokio::time::timeout(drain, &mut running).await {
        Ok(Ok(Ok(()))) => Ok(Stopped::Drained(signal)),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(io::Error::other(format!("the server task failed: {e}"))),
        Err(_) => {
            running.abort();
            tracing::warn!(signal = %signal, "requests still in flight after the drain period; dropping them");
            Ok(Stopped::DrainTimedOut(signal))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn drain_is_bounded() {
        let listener = bind("127.0.0.1", 0).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let entered = std::sync::Arc::new(tokio::sync::Notify::new());
        let in_handler = entered.clone();
        let app = Router::new().route(
            "/slow",
            axum::routing::get(move || async move {
                in_handler.notify_one();
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = stop_rx.await;
            StopSignal::Term
        };
        let server = tokio::spawn(serve(listener, app, stop, Duration::from_millis(200)));
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut conn, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        entered.notified().await;
        let started = std::time::Instant::now();
        stop_tx.send(()).expect("stop");
        let outcome = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returned in time")
            .expect("join")
            .expect("serve ok");
        assert_eq!(outcome, Stopped::DrainTimedOut(StopSignal::Term));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn idle_server_drains_at_once() {
        let listener = bind("127.0.0.1", 0).await.expect("bind");
        let app = Router::new().route("/", axum::routing::get(|| async { "hi" }));
        let outcome = serve(
            listener,
            app,
            async { StopSignal::Int },
            Duration::from_secs(10),
        )
        .await
        .expect("serve ok");
        assert_eq!(outcome, Stopped::Drained(StopSignal::Int));
    }
}
