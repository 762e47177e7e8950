//! One line per request, in the time servers' access-log format with the proxy's own fields:
//! `method=GET path=/time status=200 backend=timeserver-1 upstream=127.0.0.1:8001 attempts=1
//! duration_ms=0.4 peer=127.0.0.1:40000`. The path goes without its query string: queries
//! carry names (`/login?name=`) and session ids.
use std::net::SocketAddr;
use std::time::Duration;

pub struct Entry<'a> {
    pub method: &'a http::Method,
    pub path: &'a str,
    pub status: u16,
    pub backend: &'a str,
    pub upstream: Option<SocketAddr>,
    pub attempts: u32,
    pub duration: Duration,
    pub peer: SocketAddr,
}

pub fn write(e: &Entry<'_>) {
    let duration_ms = (e.duration.as_secs_f64() * 10_000.0).round() / 10.0;
    let upstream = e
        .upstream
        .map_or_else(|| "-".to_string(), |a| a.to_string());
    tracing::info!(target: "access", method = %e.method, path = %e.path, status = e.status,
        backend = %e.backend, upstream = %upstream, attempts = e.attempts, duration_ms,
        peer = %e.peer, "request");
}
