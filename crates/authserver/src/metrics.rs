//! `GET /metrics`: the auth server's series in the Prometheus text format.
//!
//! | series | type | |
//! |---|---|---|
//! | `authserver_http_requests_total{path,status}` | counter | every answer, by route (`other`: no route) |
//! | `authserver_http_request_duration_seconds{path}` | histogram | arrival to answer, 1 ms … 30 s buckets |
//! | `authserver_http_requests_in_flight` | gauge | requests arrived and not answered |
//! | `authserver_sessions` | gauge | sessions stored (cookie → name) |
//! | `authserver_dumps_written_total` | counter | dump files written (checkpoints and the final one) |
//! | `authserver_dump_failures_total` | counter | dump writes that failed (retried at the next checkpoint) |
//!
//! The session count is read from the store at scrape time (a lock held for one `len()`); the
//! rest are atomics updated where they happen.
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use servicekit::metrics::{HttpMetrics, render};

use crate::checkpoint::{DumpCounts, lock};
use crate::routes::App;

/// The registry and the handles its series are updated through.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Given to the access log.
    pub http: HttpMetrics,
    /// Given to the checkpointer.
    pub dumps: DumpCounts,
    sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authserver");
        let http = HttpMetrics::register(&mut registry);
        let sessions = Gauge::default();
        registry.register(
            "sessions",
            "Sessions stored (cookie → name)",
            sessions.clone(),
        );
        let dumps = DumpCounts {
            written: Counter::default(),
            failed: Counter::default(),
        };
        registry.register(
            "dumps_written",
            "Dump files written, at checkpoints and at shutdown",
            dumps.written.clone(),
        );
        registry.register(
            "dump_failures",
            "Dump writes that failed; the sessions are kept in memory and written at the next checkpoint",
            dumps.failed.clone(),
        );
        Metrics {
            registry,
            http,
            dumps,
            sessions,
        }
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let m = &app.metrics;
    let stored = lock(&app.store).len();
    m.sessions.set(i64::try_from(stored).unwrap_or(i64::MAX));
    render(&m.registry)
}
