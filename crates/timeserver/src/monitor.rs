//! `GET /monitor`: the counters an operator (or a test) needs to see what the server is doing.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::routes::App;

/// The JSON document. Field names are part of the interface: tests and dashboards read them.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Requests by route, then by status code.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// `/time` requests admitted and not yet answered.
    pub in_flight: usize,
    /// The `--max-inflight` cap (0: none).
    pub max_inflight: usize,
    /// `/time` requests refused with 503 because the cap was reached.
    pub shed: u64,
    /// Auth server calls that failed or timed out (the user was treated as anonymous).
    pub auth_errors: u64,
}

pub async fn monitor(State(app): State<Arc<App>>) -> Json<Snapshot> {
    Json(Snapshot {
        requests: app.log.stats.snapshot(),
        in_flight: app.admission.in_flight(),
        max_inflight: app.admission.limit(),
        shed: app.admission.shed(),
        auth_errors: app.auth_errors.load(Ordering::Relaxed),
    })
}
