//! Binding, and serving until a signal with a drain that leaves no client without an answer.
//!
//! The accept loop is ours, with hyper's HTTP/1 connections and axum's router, rather than
//! `axum::serve`: a stop here needs what that one does not do.
//!
//! 1. SIGTERM (or SIGINT): the [`Phase`] becomes `Draining`. Requests that arrive from now on are
//!    answered `503` + `Retry-After` at once (see [`crate::drain`]); requests already running go on.
//! 2. Every connection is told to finish: an idle keep-alive connection is closed at once
//!    (cleanly, with a FIN), a busy one after its current answer.
//! 3. Connections the kernel has already completed but nobody accepted yet would be *reset* when
//!    the listener closes. They are accepted first (a non-blocking sweep of the queue) and served
//!    like the rest, so their requests get the 503. Then the listener closes: later connections
//!    are refused.
//! 4. When every connection is done, `serve` returns [`Stopped::Drained`].
//! 5. When `drain` runs out first, the phase becomes `CutOff`: each request still running is
//!    answered `503` + `Retry-After` in place of its handler. The connections get
//!    [`FLUSH_GRACE`] to write those answers and close; any still open then (a client that never
//!    sent a whole request, or does not read) is dropped. `serve` returns
//!    [`Stopped::DrainTimedOut`], and the caller saves its state and exits within a known time.
//!
//! Handlers can extract `ConnectInfo<SocketAddr>` (the peer): the access log uses it.
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::access_log::{AccessLog, with_access_log};
use crate::drain::{Gate, Phase};
use crate::shutdown::StopSignal;

/// After the drain period, how long the connections get to write their 503s and close.
pub const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// The most connections one sweep of the accept queue takes (the kernel caps the queue at
/// `somaxconn`, 4096 by default; this only stops a flood from holding the stop forever).
const MAX_BACKLOG_SWEEP: usize = 10_000;

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
    /// A signal arrived and the drain period ran out: `cut_off` requests still running were
    /// answered 503, and `dropped` connections were still open [`FLUSH_GRACE`] later.
    DrainTimedOut {
        signal: StopSignal,
        cut_off: u64,
        dropped: usize,
    },
}

/// Serves `routes`, behind the access log `log` and the drain guard, on `listener` until `stop`
/// resolves; then drains for at most `drain` (plus [`FLUSH_GRACE`]), as the module doc says.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    log: AccessLog,
    stop: impl Future<Output = StopSignal>,
    drain: Duration,
) -> Stopped {
    let (phase, watching) = watch::channel(Phase::Serving);
    let gate = Gate::new(watching.clone());
    // The guard inside the log: the 503s it gives are logged and counted like any answer.
    let app = with_access_log(gate.guard(routes), log);
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    let signal = loop {
        tokio::select! {
            biased;
            s = &mut stop => break s,
            // Reap finished connections as we go, so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn_connection(&mut conns, stream, peer, &app, &watching),
                Err(e) => pause_after_accept_error(e).await,
            },
        }
    };
    let deadline = tokio::time::Instant::now() + drain;
    tracing::info!(signal = %signal, drain_ms = drain.as_millis() as u64, open_connections = conns.len(), "stopping: draining requests in flight");
    phase.send_replace(Phase::Draining);
    for (stream, peer) in take_backlog(&listener) {
        spawn_connection(&mut conns, stream, peer, &app, &watching);
    }
    drop(listener);

    if tokio::time::timeout_at(deadline, join_all(&mut conns))
        .await
        .is_ok()
    {
        return Stopped::Drained(signal);
    }
    phase.send_replace(Phase::CutOff);
    let flushed = tokio::time::timeout(FLUSH_GRACE, join_all(&mut conns))
        .await
        .is_ok();
    let dropped = if flushed { 0 } else { conns.len() };
    conns.shutdown().await;
    Stopped::DrainTimedOut {
        signal,
        cut_off: gate.cut_off(),
        dropped,
    }
}

/// Serves one connection until it closes; when the stop begins, lets it finish the request it
/// is on (or answer its first one, if it has not sent it yet) and close.
fn spawn_connection(
    conns: &mut JoinSet<()>,
    stream: TcpStream,
    peer: SocketAddr,
    app: &Router,
    phase: &watch::Receiver<Phase>,
) {
    let asked = Arc::new(AtomicBool::new(false));
    let service = app.clone().map_request({
        let asked = asked.clone();
        move |mut req: hyper::Request<Incoming>| {
            asked.store(true, Ordering::Relaxed);
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        }
    });
    let service = TowerToHyperService::new(service);
    let mut phase = phase.clone();
    conns.spawn(async move {
        let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            done = conn.as_mut() => return log_connection_end(peer, done),
            // Ok: the stop began; Err: the server is gone. Either way, finish up.
            _ = phase.wait_for(|p| *p != Phase::Serving) => {}
        }
        // Told to shut down before it has read anything, hyper closes a connection at once, and
        // a first request on its way would meet a reset. A connection that has not asked yet is
        // left to ask: its answer is the guard's 503, whose `Connection: close` closes it.
        if asked.load(Ordering::Relaxed) {
            conn.as_mut().graceful_shutdown();
        }
        log_connection_end(peer, conn.await);
    });
}

fn log_connection_end(peer: SocketAddr, done: Result<(), hyper::Error>) {
    if let Err(e) = done {
        // A client that hangs up mid-request is routine; the access log has the request.
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

async fn join_all(conns: &mut JoinSet<()>) {
    while conns.join_next().await.is_some() {}
}

/// After a failed `accept`: a connection that died in the queue concerns that client only; any
/// other error (out of file descriptors, of memory) would repeat at once, so wait a moment.
async fn pause_after_accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Every connection waiting in the listener's accept queue now.
///
/// The accept goes through a duplicate of the listening socket in std's type: a plain
/// non-blocking `accept4` (the socket is `O_NONBLOCK`) sees the queue as it is, where tokio's
/// `accept` would trust readiness that its reactor may not have updated yet.
fn take_backlog(listener: &TcpListener) -> Vec<(TcpStream, SocketAddr)> {
    let dup = match listener.as_fd().try_clone_to_owned() {
        Ok(fd) => std::net::TcpListener::from(fd),
        Err(e) => {
            tracing::warn!(error = %e, "cannot look at the accept queue; connections waiting there will be reset");
            return Vec::new();
        }
    };
    let mut taken = Vec::new();
    while taken.len() < MAX_BACKLOG_SWEEP {
        match dup.accept() {
            Ok((stream, peer)) => {
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(s) => taken.push((s, peer)),
                    Err(e) => {
                        tracing::warn!(peer = %peer, error = %e, "cannot serve a queued connection")
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept the queued connections");
                break;
            }
        }
    }
    taken
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
