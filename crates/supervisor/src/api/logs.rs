//! `GET /tasks/{name}/logs?stream=stdout|stderr&tail=N&follow=1`: a task's output (or error)
//! file, its last `N` lines and, with `follow=1`, what is appended afterwards, as one chunked
//! answer that lasts until the client goes away.
//!
//! The loop is only asked for the task (its file names); the files are read by the API
//! thread's blocking pool ([`crate::task_logs`]), so a large or slow file never delays a restart.
use super::{ApiState, ask, unexpected};
use crate::control::{ApiError, Reply, Request};
use crate::task_logs::{self, MAX_TAIL, POLL, Position};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// Lines given when `tail` is not.
const DEFAULT_TAIL: usize = 100;

#[derive(serde::Deserialize, Default)]
pub(super) struct LogsQuery {
    stream: Option<String>,
    tail: Option<String>,
    follow: Option<String>,
}

/// What a valid query asks for.
struct Ask {
    stderr: bool,
    tail: usize,
    follow: bool,
}

impl LogsQuery {
    fn check(&self) -> Result<Ask, ApiError> {
        let stderr = match self.stream.as_deref() {
            None | Some("stdout") => false,
            Some("stderr") => true,
            Some(other) => {
                return Err(ApiError::new(
                    400,
                    format!("stream={other:?}: expected stdout (the default) or stderr"),
                ));
            }
        };
        let tail = match self.tail.as_deref() {
            None => DEFAULT_TAIL,
            Some(t) => match t.parse::<usize>() {
                Ok(n) if n <= MAX_TAIL => n,
                _ => {
                    return Err(ApiError::new(
                        400,
                        format!("tail={t:?}: expected a number of lines from 0 to {MAX_TAIL}"),
                    ));
                }
            },
        };
        let follow = match self.follow.as_deref() {
            None | Some("0") | Some("false") => false,
            Some("1") | Some("true") | Some("") => true,
            Some(other) => {
                return Err(ApiError::new(
                    400,
                    format!("follow={other:?}: expected 1 or 0 (true or false)"),
                ));
            }
        };
        Ok(Ask {
            stderr,
            tail,
            follow,
        })
    }
}

pub(super) async fn logs(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let want = q.check()?;
    let task = match ask(&s, Request::GetTask(name.clone())).await? {
        Reply::Task(t) => t,
        _ => return Err(unexpected()),
    };
    let (field, file) = if want.stderr {
        ("error", task.error.as_deref())
    } else {
        ("output", task.output.as_deref())
    };
    let Some(file) = file else {
        return Err(ApiError::new(
            409,
            format!(
                "task {name:?} has no {field} file: its standard {} goes to /dev/null (set \"{field}\" in its task to keep it)",
                if want.stderr { "error" } else { "output" }
            ),
        ));
    };
    let path = crate::spawn::paths::absolute(file);
    let shown = path.display().to_string();
    let read_err = move |e: std::io::Error| ApiError::new(500, format!("cannot read {shown}: {e}"));
    let tail_path = path.clone();
    let n = want.tail;
    let (head, pos) = tokio::task::spawn_blocking(move || task_logs::tail(&tail_path, n))
        .await
        .map_err(|e| ApiError::new(500, format!("reading the log failed: {e}")))?
        .map_err(read_err)?;
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !want.follow {
        return Ok((text, head).into_response());
    }
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(head))]);
    let rest = futures_util::stream::unfold(
        Follow {
            path,
            pos,
            failed: false,
        },
        |mut f| async move {
            if f.failed {
                return None;
            }
            loop {
                tokio::time::sleep(POLL).await;
                let (path, pos) = (f.path.clone(), f.pos);
                let looked = tokio::task::spawn_blocking(move || task_logs::appended(&path, pos))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r);
                match looked {
                    Ok((data, pos)) => {
                        f.pos = pos;
                        if !data.is_empty() {
                            return Some((Ok(Bytes::from(data)), f));
                        }
                    }
                    // The answer has begun: an error can only end it.
                    Err(e) => {
                        f.failed = true;
                        return Some((Err(e), f));
                    }
                }
            }
        },
    );
    use futures_util::StreamExt;
    let body = Body::from_stream(first.chain(rest));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

/// A follower's state between two looks.
struct Follow {
    path: PathBuf,
    pos: Position,
    failed: bool,
}
