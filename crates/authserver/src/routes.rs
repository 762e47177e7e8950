//! `/get`, `/set`, `/monitor` and `/metrics`, and the state they share.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use servicekit::access_log::AccessLog;
use uuid::Uuid;

use crate::checkpoint::{CheckpointStats, Checkpointer, lock};
use crate::metrics::{self, Metrics};
use crate::store::Store;

#[derive(Debug)]
pub struct App {
    pub store: Arc<Mutex<Store>>,
    /// What the access log records, for `/monitor` and `/metrics`.
    pub log: AccessLog,
    pub metrics: Metrics,
    /// `None` with `--dumpfile=none`.
    pub checkpoint: Option<Arc<Checkpointer>>,
}

/// The route table. Serving wraps it in the access log and the drain guard.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/get", get(get_name))
        .route("/set", get(set_name))
        .route("/monitor", get(monitor))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .with_state(app)
}

type Params = Query<HashMap<String, String>>;

/// `/get?cookie=UUID` → 200 and the name, 404 unknown, 400 missing or malformed.
async fn get_name(State(app): State<Arc<App>>, Query(params): Params) -> Response {
    let cookie = match cookie_param(&params) {
        Ok(c) => c,
        Err(bad) => return bad.into_response(),
    };
    match lock(&app.store).get(&cookie) {
        Some(name) => (StatusCode::OK, name.to_string()).into_response(),
        None => (StatusCode::NOT_FOUND, "unknown cookie").into_response(),
    }
}

/// `/set?cookie=UUID&name=NAME` → 200; an empty name deletes; 400 when a parameter is missing.
async fn set_name(State(app): State<Arc<App>>, Query(params): Params) -> Response {
    let cookie = match cookie_param(&params) {
        Ok(c) => c,
        Err(bad) => return bad.into_response(),
    };
    let Some(name) = params.get("name") else {
        return (
            StatusCode::BAD_REQUEST,
            "missing name parameter (use name= to delete)",
        )
            .into_response();
    };
    lock(&app.store).set(cookie, name);
    (StatusCode::OK, "ok").into_response()
}

/// The `cookie` parameter as a UUID, or the 400 to answer.
fn cookie_param(params: &HashMap<String, String>) -> Result<Uuid, (StatusCode, &'static str)> {
    let Some(raw) = params.get("cookie") else {
        return Err((StatusCode::BAD_REQUEST, "missing cookie parameter"));
    };
    Uuid::parse_str(raw).map_err(|_| (StatusCode::BAD_REQUEST, "malformed cookie: not a UUID"))
}

/// `/monitor`'s JSON document.
#[derive(Debug, Serialize)]
struct Snapshot {
    /// Requests by route, then by status code.
    requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Sessions stored.
    entries: usize,
    /// Absent with `--dumpfile=none`.
    checkpoint: Option<CheckpointStats>,
}

async fn monitor(State(app): State<Arc<App>>) -> Json<impl Serialize> {
    Json(Snapshot {
        requests: app.log.stats.snapshot(),
        entries: lock(&app.store).len(),
        checkpoint: app.checkpoint.as_ref().map(|c| c.stats()),
    })
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "no such endpoint: use /get, /set, /monitor or /metrics",
    )
}
