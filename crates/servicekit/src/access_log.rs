//! One log line per request, request counters by route and status for `/monitor`, and the
//! HTTP series of `/metrics` ([`HttpMetrics`]).
//!
//! Counters are keyed by the *route* (`/css/{file}`), not the raw path, so a scanner probing a
//! million URLs cannot grow the map: everything that matched no route counts as
//! [`UNMATCHED`] (and as `other` in the metrics). A request whose client went away before the
//! answer (axum drops the handler future) is still logged and counted, with [`CLIENT_CLOSED`] as
//! its status, so every request leaves a trace.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::metrics::HttpMetrics;

/// Counter key for requests that matched no route.
pub const UNMATCHED: &str = "(unmatched)";

/// Status recorded when the client disconnected before the answer (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

/// Requests counted by route, then by status.
#[derive(Debug, Default)]
pub struct RequestStats {
    by_route: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
}

impl RequestStats {
    /// Counts one finished request.
    pub fn record(&self, route: &str, status: u16) {
        // A panic elsewhere while holding the lock cannot leave the counters inconsistent
        // (each update is one increment), so a poisoned lock is safe to keep using.
        let mut map = self.by_route.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(route.to_string())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// A copy for JSON: `{"/time": {"200": 3, "503": 1}}` (JSON keys must be strings).
    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let map = self.by_route.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(route, by_status)| {
                let s = by_status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                (route.clone(), s)
            })
            .collect()
    }

    /// How many requests were answered with `status` on `route` so far.
    pub fn count(&self, route: &str, status: u16) -> u64 {
        let map = self.by_route.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(route)
            .and_then(|m| m.get(&status))
            .copied()
            .unwrap_or(0)
    }
}

/// Where the access log records what it sees.
#[derive(Debug, Clone, Default)]
pub struct AccessLog {
    /// For `/monitor`.
    pub stats: Arc<RequestStats>,
    /// For `/metrics`.
    pub metrics: HttpMetrics,
}

/// Wraps every route of `router` (and its fallback) in the access log.
pub fn with_access_log<S>(router: Router<S>, log: AccessLog) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(middleware::from_fn_with_state(log, log_request))
}

async fn log_request(State(log): State<AccessLog>, req: Request, next: Next) -> Response {
    log.metrics.started();
    let mut pending = Pending {
        log,
        method: req.method().to_string(),
        // The path only: query strings carry session cookies and names.
        path: req.uri().path().to_string(),
        route: req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string()),
        peer: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        started: Instant::now(),
        done: false,
    };
    let response = next.run(req).await;
    pending.finish(response.status().as_u16());
    response
}

/// A request between arrival and answer. If it is dropped unfinished, the client went away.
struct Pending {
    log: AccessLog,
    method: String,
    path: String,
    /// `None`: no route matched.
    route: Option<String>,
    peer: Option<SocketAddr>,
    started: Instant,
    done: bool,
}

impl Pending {
    fn finish(&mut self, status: u16) {
        self.done = true;
        self.emit(status);
    }

    fn emit(&self, status: u16) {
        let took = self.started.elapsed();
        let route = self.route.as_deref();
        self.log.stats.record(route.unwrap_or(UNMATCHED), status);
        self.log.metrics.finished(route, status, took);
        let duration_ms = took.as_secs_f64() * 1000.0;
        let duration_ms = (duration_ms * 10.0).round() / 10.0;
        let peer = self.peer.map_or_else(|| "-".to_string(), |p| p.to_string());
        if status == CLIENT_CLOSED {
            tracing::info!(target: "access", method = %self.method, path = %self.path, status,
                duration_ms, peer = %peer, "client went away before the answer");
        } else {
            tracing::info!(target: "access", method = %self.method, path = %self.path, status,
                duration_ms, peer = %peer, "request");
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.emit(CLIENT_CLOSED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status() {
        let s = RequestStats::default();
        s.record("/time", 200);
        s.record("/time", 200);
        s.record("/time", 503);
        s.record(UNMATCHED, 404);
        assert_eq!(s.count("/time", 200), 2);
        assert_eq!(s.count("/time", 404), 0);
        let snap = s.snapshot();
        assert_eq!(snap["/time"]["503"], 1);
        assert_eq!(snap[UNMATCHED]["404"], 1);
    }
}
