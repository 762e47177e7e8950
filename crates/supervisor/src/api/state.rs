//! `GET /state?since=REV&wait=30s`: level-triggered status. The answer is the whole task state
//! with its revision, at once when the revision is already above `since` (or no `since` was
//! given), else as soon as anything changes, or when `wait` runs out (`"changed": false`).
//! A client keeps the revision it got and asks again with it: nothing is lost between two
//! polls, however slow the client, because each answer is the level, not an edge.
use super::{ApiState, snapshot};
use crate::control::ApiError;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// The longest a poll may wait.
const MAX_WAIT: Duration = Duration::from_secs(300);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
pub(super) struct StateQuery {
    since: Option<u64>,
    wait: Option<String>,
}

pub(super) async fn long_poll(
    State(s): State<ApiState>,
    Query(q): Query<StateQuery>,
) -> Result<Response, ApiError> {
    let wait = match &q.wait {
        None => DEFAULT_WAIT,
        Some(w) => supervisor_core::controls::duration(&serde_json::Value::String(w.clone()))
            .map_err(|m| ApiError::new(400, format!("wait: {m}")))?,
    };
    if wait > MAX_WAIT {
        return Err(ApiError::new(
            400,
            format!(
                "wait: {:?} is longer than the longest allowed, 5m",
                q.wait.unwrap_or_default()
            ),
        ));
    }
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first look, so a change between the look and the wait wakes it.
    let mut changes = s.events.subscribe();
    loop {
        let snap = snapshot(&s).await?;
        let changed = q.since.is_none_or(|since| snap.revision > since);
        if changed || tokio::time::Instant::now() >= deadline {
            let body = serde_json::json!({
                "revision": snap.revision,
                "changed": changed,
                "tasks": snap.tasks(),
            });
            return Ok(Json(body).into_response());
        }
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) | Err(_) => {}
            Ok(Err(RecvError::Closed)) => {
                return Err(ApiError::new(503, "the supervisor is shutting down"));
            }
        }
    }
}
