//! The HTTP API: JSON endpoints, Server-Sent Events, Prometheus metrics and the dashboard.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /` | the dashboard (one self-contained page) |
//! | `GET /health` | ok or degraded, and why (never needs the token) |
//! | `GET /tasks`, `GET /tasks/{name}` | task state |
//! | `POST /tasks` | add a task (same JSON object as in the task list) |
//! | `PUT /tasks` | apply a whole task list (converge on it); `?dry_run=1`: the plan only |
//! | `PUT /tasks/{name}` | apply one task object (add or replace that task) |
//! | `GET /state?since=REV&wait=30s` | the tasks and revision, once the revision is above REV |
//! | `POST /tasks/{name}/restart` `…/stop` `…/start` | control one task |
//! | `DELETE /tasks/{name}` | stop and remove a task |
//! | `GET /tasks/{name}/logs?stream=stdout\|stderr&tail=N&follow=1` | the last lines of a task's output or error file; `follow=1` streams what is appended |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /events` | Server-Sent Events: one `data:` JSON object per task event |
//! | `GET /sd` | Prometheus service discovery (http_sd): running tasks with a port, and us ([`crate::sd`]) |
//!
//! Handlers hold no state of their own: each request becomes a [`Request`] to the event loop.
//! The server runs on a thread of its own ([`spawn_server`]): encoding 10 000 tasks as JSON or
//! metrics text happens there, not on the loop that restarts tasks.
//! With a token (`--api-token-file`), every request but `GET /health` must carry
//! `Authorization: Bearer TOKEN` (or `?token=TOKEN`, for the browser's EventSource).
//!
//! Every response names the supervisor instance that gave it (`X-Timeservice-Instance`), and a
//! request naming another instance in `X-Timeservice-Expect-Instance` is refused with 412
//! before anything is done ([`instance`]).
mod auth;
pub mod instance;
mod logs;
mod state;

use crate::control::{ApiError, ApplyBody, Envelope, Reply, Request, Snapshot};
use crate::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use auth::Token;
pub use instance::{EXPECT_HEADER, INSTANCE_HEADER, Me};

const DASHBOARD: &str = include_str!("dashboard.html");

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub control: mpsc::Sender<Envelope>,
    /// Task events, already encoded as JSON, with ids and the last ones kept.
    pub events: crate::event_log::EventLog,
    pub token: Option<Token>,
    /// The supervisor's life-long counters (shared with the loop, which counts into them).
    pub metrics: Metrics,
    /// Who answers: the instance every response names.
    pub me: Me,
    /// The API's own address, listed in `/sd` as the supervisor's target.
    pub addr: Option<std::net::SocketAddr>,
    /// `--port-range`: a task list is parsed and checked here, on the API thread, so that an
    /// apply of 10 000 tasks costs the event loop only the comparison.
    pub ports: Option<supervisor_core::PortRange>,
    /// Cluster mode: the node's name (a label of every `/sd` target).
    pub node: Option<String>,
}

/// The router with every endpoint.
pub fn router(state: ApiState) -> Router {
    let token = state.token.clone();
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/tasks", get(list_tasks).post(add_task).put(apply_list))
        .route(
            "/tasks/{name}",
            get(get_task).delete(remove_task).put(apply_one),
        )
        .route("/tasks/{name}/logs", get(logs::logs))
        .route("/state", get(state::long_poll))
        .route("/tasks/{name}/{action}", post(control_task))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .route("/sd", get(sd))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
        // Outermost: refusals by the token check name the instance too.
        .layer(axum::middleware::from_fn_with_state(
            state.me.clone(),
            instance::check,
        ))
        .with_state(state)
}

/// Serves the API on `listener` from a thread of its own (with its own single-threaded runtime)
/// until the process exits.
pub fn spawn_server(listener: std::net::TcpListener, state: ApiState) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            rt.block_on(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => axum::serve(l, router(state)).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "the HTTP API stopped");
                }
            })
        })?;
    Ok(())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

async fn ask(state: &ApiState, request: Request) -> Result<Reply, ApiError> {
    let (tx, rx) = oneshot::channel();
    let busy = || {
        ApiError::new(
            503,
            "the supervisor's event loop did not answer (shutting down or overloaded)",
        )
    };
    state
        .control
        .send(Envelope { request, reply: tx })
        .await
        .map_err(|_| busy())?;
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(Reply::Error(e))) => Err(e),
        Ok(Ok(r)) => Ok(r),
        _ => Err(busy()),
    }
}

fn unexpected() -> ApiError {
    ApiError::new(500, "unexpected reply from the event loop")
}

/// The page with the current tasks and health embedded, so its first paint already shows the
/// rows (no empty table until the first fetch). Without an answer from the loop the page comes
/// without them and fetches them itself.
async fn dashboard(State(s): State<ApiState>) -> impl IntoResponse {
    let initial = match snapshot(&s).await {
        Ok(snap) => serde_json::json!({"tasks": snap.tasks(), "health": snap.health()}),
        Err(_) => serde_json::Value::Null,
    };
    let page = DASHBOARD.replacen("__INITIAL_STATE__", &script_safe(&initial.to_string()), 1);
    ([(header::CACHE_CONTROL, "no-store")], Html(page))
}

/// JSON that can sit inside `<script>`: no `</script>` (nor `<!--`) can appear, because `<`,
/// `>` and `&` only occur inside JSON strings, where their `\u` escapes mean the same.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The loop's snapshot for the read-only endpoints (see [`Snapshot`]).
async fn snapshot(s: &ApiState) -> Result<Box<Snapshot>, ApiError> {
    match ask(s, Request::Snapshot).await? {
        Reply::Snapshot(snap) => Ok(snap),
        _ => Err(unexpected()),
    }
}

async fn health(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(snapshot(&s).await?.health()).into_response())
}

async fn list_tasks(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(snapshot(&s).await?.tasks()).into_response())
}

async fn get_task(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match ask(&s, Request::GetTask(name)).await? {
        Reply::Task(mut t) => {
            let source = t.usage_source.take();
            t.set_usage(crate::usage::measure(&[source]).pop().flatten());
            Ok(Json(t).into_response())
        }
        _ => Err(unexpected()),
    }
}

async fn add_task(
    State(s): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(400, format!("the body is not valid JSON: {e}; expected a task object like {{\"command\": [\"prog\", \"arg\"]}}"))
    })?;
    match ask(&s, Request::Add(value)).await? {
        Reply::Added(t) => Ok((StatusCode::CREATED, Json(t)).into_response()),
        _ => Err(unexpected()),
    }
}

/// `?dry_run=1` (or `true`): only the plan.
#[derive(serde::Deserialize, Default)]
struct ApplyQuery {
    #[serde(default)]
    dry_run: Option<String>,
}

impl ApplyQuery {
    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("0") | Some("false") => Ok(false),
            Some("1") | Some("true") | Some("") => Ok(true),
            Some(other) => Err(ApiError::new(
                400,
                format!("dry_run={other:?}: expected 1 or 0 (true or false)"),
            )),
        }
    }
}

async fn apply_list(
    State(s): State<ApiState>,
    Query(q): Query<ApplyQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let text = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::new(
            400,
            "the body is not UTF-8 text: expected a task list (a JSON array of task objects)",
        )
    })?;
    let dry_run = q.dry_run()?;
    let ports = s.ports;
    // Parsing and the file checks (a stat or two per task) off the loop, off this runtime.
    let checked = tokio::task::spawn_blocking(move || {
        supervisor_core::parse_task_list(&text, ports).and_then(|specs| {
            let problems = crate::precheck::check(&specs, 1);
            if problems.is_empty() {
                Ok(specs)
            } else {
                Err(supervisor_core::ConfigErrors(problems))
            }
        })
    })
    .await
    .map_err(|_| ApiError::new(500, "the task list check did not finish"))?;
    let specs = checked.map_err(ApiError::from)?;
    let request = Request::Apply {
        body: ApplyBody::Checked(specs),
        dry_run,
    };
    applied(ask(&s, request).await?)
}

async fn apply_one(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<ApplyQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let task: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(400, format!("the body is not valid JSON: {e}; expected a task object like {{\"command\": [\"prog\", \"arg\"]}}"))
    })?;
    let request = Request::Apply {
        body: ApplyBody::One { name, task },
        dry_run: q.dry_run()?,
    };
    applied(ask(&s, request).await?)
}

fn applied(reply: Reply) -> Result<Response, ApiError> {
    match reply {
        Reply::Applied(plan) => Ok(Json(plan).into_response()),
        _ => Err(unexpected()),
    }
}

async fn remove_task(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match ask(&s, Request::Remove(name)).await? {
        Reply::Done => {
            Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"ok": true}))).into_response())
        }
        _ => Err(unexpected()),
    }
}

async fn control_task(
    State(s): State<ApiState>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let request = match action.as_str() {
        "restart" => Request::Restart(name),
        "stop" => Request::Stop(name),
        "start" => Request::Start(name),
        other => {
            return Err(ApiError::new(
                404,
                format!("unknown action {other:?}: expected restart, stop or start"),
            ));
        }
    };
    match ask(&s, request).await? {
        Reply::Done => {
            Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"ok": true}))).into_response())
        }
        _ => Err(unexpected()),
    }
}

async fn metrics(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let snap = snapshot(&s).await?;
    let text = s.metrics.render(
        &snap.views,
        &snap.measure_usage(),
        snap.now,
        &snap.clock,
        snap.started,
        snap.health().status != "ok",
    );
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

async fn sd(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let snap = snapshot(&s).await?;
    let doc = crate::sd::document(&crate::sd::groups_on(
        &snap.views,
        &snap.instance,
        s.addr,
        s.node.as_deref(),
    ));
    Ok(([(header::CONTENT_TYPE, "application/json")], doc).into_response())
}

/// `GET /events`: each event with its id; a client reconnecting with `Last-Event-ID` first
/// gets what it missed, or a `resync` event when that is no longer kept.
async fn events(
    State(s): State<ApiState>,
    headers: axum::http::HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.events.subscribe();
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let replay = s.events.replay(last.as_deref());
    let log = s.events.clone();
    let mut first: Vec<SseEvent> = Vec::new();
    if replay.resync {
        first.push(SseEvent::default().event("resync").data(
            "{\"type\":\"resync\",\"why\":\"the events after Last-Event-ID are no longer kept: read GET /state\"}",
        ));
    }
    let id = |e: &crate::event_log::Stamped| log.id(e.seq);
    for e in &replay.missed {
        first.push(SseEvent::default().event("task").id(id(e)).data(&*e.json));
    }
    let up_to = replay.up_to;
    let backlog = stream::iter(first.into_iter().map(Ok));
    let live = stream::unfold((rx, log), move |(mut rx, log)| async move {
        loop {
            let event = match rx.recv().await {
                Ok(e) if e.seq <= up_to => continue,
                Ok(e) => SseEvent::default()
                    .event("task")
                    .id(log.id(e.seq))
                    .data(&*e.json),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // A slow reader missed events: say so, so a dashboard reloads the full state.
                    SseEvent::default()
                        .event("resync")
                        .data(format!("{{\"type\":\"resync\",\"missed\":{n}}}"))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok(event), (rx, log)));
        }
    });
    use futures_util::StreamExt;
    Sse::new(backlog.chain(live)).keep_alive(KeepAlive::default())
}

async fn not_found() -> ApiError {
    ApiError::new(
        404,
        "no such endpoint: see GET / for the dashboard, /health, /tasks, /state, /metrics, /events, /sd",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_json_cannot_close_its_script_and_parses_back() {
        let v =
            serde_json::json!({"argv": ["</script><script>alert(1)</script>", "a & b", "<!--"]});
        let safe = script_safe(&v.to_string());
        assert!(
            !safe.contains('<') && !safe.contains('>') && !safe.contains('&'),
            "{safe}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, v);
        assert_eq!(DASHBOARD.matches("__INITIAL_STATE__").count(), 1);
    }
}
