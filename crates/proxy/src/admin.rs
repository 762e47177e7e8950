//! The admin address: `/metrics` (Prometheus text), `/` (a status page listing the backends
//! with their state), `/backends` (the same as JSON) and `/health`. Kept off the proxied
//! address so that nothing a client sends to the time service can reach it.
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::backends::{BackendStatus, Registry};
use crate::body::DownBody;
use crate::metrics::{self, Metrics};
use crate::source::SourceStatus;

/// `GET /backends`.
#[derive(Debug, serde::Serialize)]
struct Status {
    source: SourceStatus,
    revision: u64,
    backends: Vec<BackendStatus>,
}

pub async fn serve(listener: TcpListener, registry: Arc<Registry>, metrics: Arc<Metrics>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (registry, metrics) = (registry.clone(), metrics.clone());
        let service = service_fn(move |req| {
            let r = answer(&req, &registry, &metrics);
            async move { Ok::<_, Infallible>(r) }
        });
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<DownBody> {
    let mut r = Response::new(DownBody::text(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

fn status(registry: &Registry) -> Status {
    let set = registry.current();
    let now = Instant::now();
    Status {
        source: registry.status(),
        revision: set.revision,
        backends: set.backends.iter().map(|b| b.status(now)).collect(),
    }
}

fn answer(req: &Request<Incoming>, registry: &Registry, metrics: &Metrics) -> Response<DownBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET and HEAD here\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let text = metrics.render(&registry.current(), &registry.status());
            reply(StatusCode::OK, metrics::CONTENT_TYPE, text)
        }
        "/backends" => {
            let json = serde_json::to_string_pretty(&status(registry)).unwrap_or_default();
            reply(StatusCode::OK, "application/json", json)
        }
        "/health" => reply(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page(&status(registry)),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such page: see / (status), /backends (JSON), /metrics, /health\n".into(),
        ),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The status page: the source's state, then one row per backend. Refreshes itself.
fn page(s: &Status) -> String {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>proxy status</title>\
         <meta http-equiv=\"refresh\" content=\"2\">\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\
         .up{color:#080}.ejected,.down{color:#b00}</style></head><body><h1>proxy</h1>",
    );
    let src = &s.source;
    let state = if src.connected {
        "connected".to_string()
    } else {
        format!(
            "not connected{}",
            src.last_error
                .as_deref()
                .map(|e| format!(": {}", escape(e)))
                .unwrap_or_default()
        )
    };
    let _ = write!(
        h,
        "<p>Source: <b>{}</b>, {state}; {} updates.</p>",
        escape(&src.describe),
        src.updates
    );
    h.push_str(
        "<table><tr><th>backend</th><th>address</th><th>state</th><th>in flight</th>\
         <th>requests</th><th>failures</th><th>ejections</th><th>latency (avg)</th></tr>",
    );
    for b in &s.backends {
        let state = match b.ejected_for_ms {
            Some(ms) => format!("ejected ({ms} ms left)"),
            None => b.state.to_string(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{state}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{:.1} ms</td></tr>",
            escape(&b.name),
            escape(&b.addr),
            b.state,
            b.in_flight,
            b.requests,
            b.failures,
            b.ejections,
            b.latency_ewma_ms
        );
    }
    if s.backends.is_empty() {
        h.push_str("<tr><td colspan=\"8\">no backends</td></tr>");
    }
    h.push_str("</table></body></html>\n");
    h
}
