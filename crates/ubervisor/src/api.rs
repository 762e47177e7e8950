//! The HTTP API: reads from the replica's view, writes (leader only) as fenced transactions.
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cluster::{Cordon, Fenced, VERSION, encode, leader_value};
use etcd_client::{Compare, CompareOp, TxnOp};
use futures_util::Stream;
use serde_json::{Value, json};

use crate::jobs::{FieldError, parse_job};
use crate::leader::{Role, Shared};
use crate::reconcile::reconcile;

type S = State<Arc<Shared>>;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/jobs", get(list_jobs).post(create_job))
        .route(
            "/jobs/{name}",
            get(show_job).put(update_job).delete(delete_job),
        )
        .route("/nodes", get(list_nodes))
        .route("/nodes/{name}/{action}", post(node_action))
        .route("/moves/unfreeze", post(unfreeze))
        .route("/events", get(events))
        .route("/sd", get(sd))
        .with_state(shared)
}

/// An error answer: `{"error": ..., "problems": [{field, message}], "leader": ...}`.
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "error": error.into() }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The dashboard: nodes with their capacity and allocation, jobs with their instances (each a
/// link to its host:port), live through `/events`. One self-contained page.
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("dashboard.html"))
}

async fn health(State(s): S) -> Json<Value> {
    let view = s.view.borrow().clone();
    let leading = matches!(*s.role.borrow(), Role::Leader(_));
    // Bounded: with etcd away, /health must still answer (and say degraded) at once.
    let leader = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        leader_value(&s.client, &s.keys.election()),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .flatten();
    // Degraded: etcd unreachable, so what this replica serves is the last view it had.
    let degraded = view
        .degraded
        .as_ref()
        .map(|d| json!({"reason": d.reason, "since_ms": d.since_ms}));
    Json(json!({
        "ok": view.synced && degraded.is_none(),
        "status": if degraded.is_some() { "degraded" } else if !view.synced { "starting" } else { "ok" },
        "degraded": degraded,
        "id": s.id,
        "addr": s.addr,
        "role": if leading { "leader" } else { "standby" },
        "leader": leader,
        "revision": view.revision,
        "unreadable_records": view.bad,
        "moves": moves_json(&view),
    }))
}

/// Whether moves off lost nodes are frozen, and why (also why they were last unfrozen).
fn moves_json(view: &crate::view::View) -> Value {
    match &view.moves {
        Some(m) => json!({"frozen": m.frozen, "reason": m.reason, "since_ms": m.since_ms}),
        None => json!({"frozen": false, "reason": null, "since_ms": null}),
    }
}

/// `POST /moves/unfreeze`: moves off lost nodes resume; the losses so far are accepted (only
/// later ones count toward a new freeze).
async fn unfreeze(State(s): S) -> ApiResult {
    let view = s.view.borrow().clone();
    let was = view.frozen();
    let now = crate::page::now_ms();
    let m = cluster::Moves {
        v: VERSION,
        frozen: false,
        reason: format!("unfrozen by an operator (POST /moves/unfreeze on {})", s.id),
        since_ms: now,
        unfrozen_at_ms: now,
    };
    write(
        &s,
        vec![],
        vec![TxnOp::put(s.keys.moves(), encode(&m), None)],
    )
    .await?;
    tracing::warn!(was_frozen = was, "moves unfrozen by an operator");
    Ok(Json(json!({"frozen": false, "was_frozen": was})).into_response())
}

async fn list_jobs(State(s): S) -> Json<Value> {
    let view = s.view.borrow().clone();
    let jobs: Vec<Value> = view
        .jobs
        .values()
        .map(|(j, _)| {
            let placed = view.placements_of(&j.name).count();
            let running = view
                .placements_of(&j.name)
                .filter(|p| {
                    view.statuses
                        .get(&(p.node.clone(), p.assignment.instance.clone()))
                        .is_some_and(|st| st.state == "running")
                })
                .count();
            let (failed, moves) = resched_of(&view, &j.name);
            json!({"name": j.name, "count": j.count, "cpu": j.cpu, "mem": j.mem,
                   "generation": j.generation, "placed": placed, "running": running,
                   "failed": failed, "moves": moves.len()})
        })
        .collect();
    Json(Value::Array(jobs))
}

async fn show_job(State(s): S, Path(name): Path<String>) -> ApiResult {
    let view = s.view.borrow().clone();
    let Some((j, _)) = view.jobs.get(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job {name:?}"),
        ));
    };
    let instances: Vec<Value> = view
        .placements_of(&name)
        .map(|p| {
            let st = view
                .statuses
                .get(&(p.node.clone(), p.assignment.instance.clone()));
            json!({
                "instance": p.assignment.instance, "node": p.node,
                "generation": p.assignment.generation, "alloc": p.create_revision,
                "state": st.map(|s| s.state.as_str()).unwrap_or("assigned"),
                "host": st.and_then(|s| s.host.clone()), "port": st.and_then(|s| s.port),
                "pid": st.and_then(|s| s.pid),
                "detail": st.and_then(|s| s.detail.clone()),
            })
        })
        .collect();
    // The same pure plan the leader computes, so any replica can say why.
    let (_, unplaced) = reconcile(&view);
    let unplaced: Vec<Value> = unplaced
        .iter()
        .filter(|u| u.job == name)
        .map(
            |u| json!({"instance": u.instance, "reason": u.reason.to_string(), "detail": u.reason}),
        )
        .collect();
    let (failed, moves) = resched_of(&view, &name);
    Ok(Json(
        json!({"job": j, "instances": instances, "unplaced": unplaced,
                   "failed": failed, "moves": moves}),
    )
    .into_response())
}

/// A job's failure (`{reason, at_ms}` or null) and its remembered yo-yo moves.
fn resched_of(view: &crate::view::View, job: &str) -> (Value, Vec<cluster::Move>) {
    match view.resched.get(job) {
        Some((r, _)) => (
            r.failed.as_ref().map_or(
                Value::Null,
                |f| json!({"reason": f.reason, "at_ms": f.at_ms}),
            ),
            r.moves.clone(),
        ),
        None => (Value::Null, Vec::new()),
    }
}

fn bad_job(errs: Vec<FieldError>) -> ApiError {
    let first = errs
        .first()
        .map(|e| format!("field \"{}\": {}", e.field, e.message))
        .unwrap_or_default();
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body: json!({"error": format!("invalid job: {first}"), "problems": errs}),
    }
}

fn parse_body(body: &str) -> Result<Value, ApiError> {
    serde_json::from_str(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}; expected {{\"name\",\"task\",\"count\",\"cpu\",\"mem\"}}"),
        )
    })
}

/// A write through the leader's fence; standbys answer 503 naming the leader.
async fn write(s: &Shared, when: Vec<Compare>, ops: Vec<TxnOp>) -> Result<(), ApiError> {
    let role = s.role.borrow().clone();
    let not_leader = || async {
        let leader = leader_value(&s.client, &s.keys.election())
            .await
            .ok()
            .flatten();
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({"error": format!("{} is not the leader; send writes to {}", s.id,
                        leader.as_deref().unwrap_or("(no leader elected)")),
                        "leader": leader}),
        }
    };
    let Role::Leader(l) = role else {
        return Err(not_leader().await);
    };
    match l.txn(&s.client, when, ops).await {
        Ok(Fenced::Applied) => Ok(()),
        Ok(Fenced::Conflict) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "changed by someone else meanwhile; read it again and retry",
        )),
        Ok(Fenced::Deposed) => Err(not_leader().await),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

async fn create_job(State(s): S, body: String) -> ApiResult {
    let job = parse_job(&parse_body(&body)?, None).map_err(bad_job)?;
    let view = s.view.borrow().clone();
    let nodes: Vec<placement::Node> = view
        .nodes
        .values()
        .map(|n| placement::Node {
            name: n.name.clone(),
            capacity: placement::Resources::new(n.capacity.cpu, n.capacity.mem),
            allocated: placement::Resources::default(),
            cordoned: false,
            alive: true,
        })
        .collect();
    let demand = placement::Resources::new(job.cpu, job.mem);
    if let Err(reason) = placement::could_ever_fit(&job.name, demand, &nodes) {
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"error": format!("refused: {reason}"), "reason": reason}),
        });
    }
    let key = s.keys.job(&job.name);
    write(
        &s,
        vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)],
        vec![TxnOp::put(key, encode(&job), None)],
    )
    .await
    .map_err(|e| {
        if e.status == StatusCode::CONFLICT {
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "job {:?} exists; use PUT /jobs/{} to change it",
                    job.name, job.name
                ),
            )
        } else {
            e
        }
    })?;
    Ok((StatusCode::CREATED, Json(json!(job))).into_response())
}

async fn update_job(State(s): S, Path(name): Path<String>, body: String) -> ApiResult {
    let mut job = parse_job(&parse_body(&body)?, Some(&name)).map_err(bad_job)?;
    let view = s.view.borrow().clone();
    let Some((old, rev)) = view.jobs.get(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job {name:?}; create it with POST /jobs"),
        ));
    };
    let changed = old.task != job.task || old.cpu != job.cpu || old.mem != job.mem;
    job.generation = old.generation + u64::from(changed);
    job.avoid = old.avoid.clone();
    let key = s.keys.job(&name);
    write(
        &s,
        vec![Compare::mod_revision(key.clone(), CompareOp::Equal, *rev)],
        vec![TxnOp::put(key, encode(&job), None)],
    )
    .await?;
    Ok(Json(json!(job)).into_response())
}

async fn delete_job(State(s): S, Path(name): Path<String>) -> ApiResult {
    let view = s.view.borrow().clone();
    if !view.jobs.contains_key(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job {name:?}"),
        ));
    }
    let key = s.keys.job(&name);
    write(
        &s,
        vec![Compare::version(key.clone(), CompareOp::Greater, 0)],
        vec![TxnOp::delete(key, None)],
    )
    .await?;
    Ok(Json(json!({"deleted": name})).into_response())
}

/// `GET /sd`: Prometheus http_sd for the whole cluster: every running instance the nodes
/// report (labels `task`, `node`, `generation`, and `uv_job`: `job` is Prometheus's own), and every node's
/// supervisor (`role="supervisor"`, `node`). Served by every replica from its view.
async fn sd(State(s): S) -> Json<Value> {
    let view = s.view.borrow().clone();
    Json(Value::Array(sd_groups(&view)))
}

pub(crate) fn sd_groups(view: &crate::view::View) -> Vec<Value> {
    let mut out = Vec::new();
    for ((node, instance), st) in &view.statuses {
        if st.state != "running" {
            continue;
        }
        let (Some(host), Some(port)) = (&st.host, st.port) else {
            continue;
        };
        let mut labels = serde_json::Map::new();
        labels.insert("role".into(), json!("task"));
        labels.insert("task".into(), json!(instance));
        labels.insert("node".into(), json!(node));
        if let Some((job, _)) = instance.rsplit_once('-') {
            labels.insert("uv_job".into(), json!(job));
        }
        if let Some(g) = st.generation {
            labels.insert("generation".into(), json!(g.to_string()));
        }
        out.push(json!({"targets": [format!("{host}:{port}")], "labels": labels}));
    }
    for (name, info) in &view.nodes {
        if let Some(addr) = &info.addr {
            out.push(json!({"targets": [addr], "labels": {"role": "supervisor", "node": name}}));
        }
    }
    out
}

async fn list_nodes(State(s): S) -> Json<Value> {
    let view = s.view.borrow().clone();
    let mut names: Vec<&String> = view.nodes.keys().chain(view.cordons.keys()).collect();
    names.extend(view.losses.iter().filter(|(_, l)| l.lost).map(|(n, _)| n));
    names.extend(view.assigns.keys().map(|(n, _)| n));
    names.sort();
    names.dedup();
    let nodes: Vec<Value> = names
        .into_iter()
        .map(|n| {
            let info = view.nodes.get(n);
            let (cpu, mem) = view.allocated(n);
            let losses = view.losses.get(n);
            json!({
                "name": n,
                "alive": info.is_some(),
                "lost": view.lost(n),
                "lost_at_ms": losses.map(|l| l.lost_at_ms.clone()).unwrap_or_default(),
                "moves_frozen": view.moves.as_ref().filter(|m| m.frozen).map(|m| m.reason.clone()),
                "capacity": info.map(|i| json!({"cpu": i.capacity.cpu, "mem": i.capacity.mem})),
                "allocated": {"cpu": cpu, "mem": mem},
                "cordoned": view.cordons.contains_key(n),
                "cordon_reason": view.cordons.get(n).map(|c| c.reason.clone()),
                "instances": view.assigns.keys().filter(|(x, _)| x == n).count(),
                "addr": info.and_then(|i| i.addr.clone()),
            })
        })
        .collect();
    Json(Value::Array(nodes))
}

async fn node_action(State(s): S, Path((name, action)): Path<(String, String)>) -> ApiResult {
    let view = s.view.borrow().clone();
    let known = view.nodes.contains_key(&name)
        || view.cordons.contains_key(&name)
        || view.assigns.keys().any(|(n, _)| *n == name);
    if !known {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no node {name:?}"),
        ));
    }
    let key = s.keys.cordon(&name);
    let op = match action.as_str() {
        "cordon" | "drain" => {
            let c = Cordon {
                v: VERSION,
                reason: action.clone(),
            };
            TxnOp::put(key, encode(&c), None)
        }
        "uncordon" => TxnOp::delete(key, None),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown node action {other:?}; expected cordon, uncordon or drain"),
            ));
        }
    };
    write(&s, vec![], vec![op]).await?;
    Ok(Json(json!({"node": name, "action": action})).into_response())
}

/// Server-Sent Events: one `change` event per new view (its revision and sizes).
async fn events(State(s): S) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.view.clone();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let v = rx.borrow_and_update().clone();
        let data = json!({"revision": v.revision, "jobs": v.jobs.len(), "nodes": v.nodes.len(),
                          "assignments": v.assigns.len()});
        Some((
            Ok(Event::default().event("change").data(data.to_string())),
            rx,
        ))
    });
    Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default())
}
