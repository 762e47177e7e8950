//! `GET /metrics`: the timeserver's series in the Prometheus text format.
//!
//! | series | type | |
//! |---|---|---|
//! | `timeserver_http_requests_total{path,status}` | counter | every answer, by route (`other`: no route) |
//! | `timeserver_http_request_duration_seconds{path}` | histogram | arrival to answer, 1 ms … 30 s buckets |
//! | `timeserver_http_requests_in_flight` | gauge | requests arrived and not answered, all routes |
//! | `timeserver_time_requests_in_flight` | gauge | `/time` requests admitted under `--max-inflight` |
//! | `timeserver_time_requests_limit` | gauge | `--max-inflight` (0: none) |
//! | `timeserver_requests_shed_total` | counter | `/time` requests refused with 503 at the cap |
//! | `timeserver_auth_calls_total{call,outcome}` | counter | auth server calls: `get`/`set`, `ok`/`timeout`/`refused`/`error` |
//!
//! Everything is an atomic updated where it happens, except the two `/time` gauges, which are
//! read from the admission counter at scrape time (one atomic load).
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use servicekit::metrics::{HttpMetrics, render};

use crate::auth_client::CallCounts;
use crate::load::Admission;
use crate::routes::App;

/// The registry and the handles to the series that are set at scrape time.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Given to the access log.
    pub http: HttpMetrics,
    /// Given to the auth client.
    pub auth_calls: CallCounts,
    time_in_flight: Gauge,
}

impl Metrics {
    /// Registers every series; `admission`'s shed counter is registered as it is.
    pub fn new(admission: &Admission) -> Metrics {
        let mut registry = Registry::with_prefix("timeserver");
        let http = HttpMetrics::register(&mut registry);
        let time_in_flight = Gauge::default();
        registry.register(
            "time_requests_in_flight",
            "/time requests admitted and not yet answered (what --max-inflight caps)",
            time_in_flight.clone(),
        );
        let limit = Gauge::<i64>::default();
        limit.set(i64::try_from(admission.limit()).unwrap_or(i64::MAX));
        registry.register(
            "time_requests_limit",
            "The --max-inflight cap on /time requests (0: no limit)",
            limit,
        );
        registry.register(
            "requests_shed",
            "/time requests answered 503 at once because --max-inflight were in flight",
            admission.shed_counter(),
        );
        let auth_calls = CallCounts::default();
        registry.register(
            "auth_calls",
            "Calls to the auth server, by call (get, set) and outcome (ok, timeout, refused, error)",
            auth_calls.clone(),
        );
        Metrics {
            registry,
            http,
            auth_calls,
            time_in_flight,
        }
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let m = &app.metrics;
    m.time_in_flight
        .set(i64::try_from(app.admission.in_flight()).unwrap_or(i64::MAX));
    render(&m.registry)
}
