//! Which supervisor answers: every response names its instance (`X-Timeservice-Instance`), and
//! a request that names the instance it expects (`X-Timeservice-Expect-Instance`, sent by
//! `supervisor ctl` when it found the API through a runtime file) is refused with 412 before
//! anything is done, when another supervisor answers at that address. The check and the act
//! happen in the same process, so no other supervisor can slip in between them.
use crate::control::ApiError;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The response header naming the supervisor instance that answered.
pub const INSTANCE_HEADER: &str = "x-timeservice-instance";
/// The request header naming the instance the client means to talk to.
pub const EXPECT_HEADER: &str = "x-timeservice-expect-instance";

/// Who this supervisor is, for the check and the header.
#[derive(Debug, Clone)]
pub struct Me {
    pub instance: Arc<str>,
    pub pid: u32,
    /// The dump file (absolute), if any: helps a person tell supervisors apart.
    pub dump: Option<String>,
}

pub async fn check(State(me): State<Me>, req: Request, next: Next) -> Response {
    let expected = req
        .headers()
        .get(EXPECT_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
    let mut resp = match expected {
        Some(want) if want != *me.instance => {
            let dump = me
                .dump
                .as_deref()
                .map(|d| format!(", dump file {d}"))
                .unwrap_or_default();
            let mut e = ApiError::new(
                412,
                format!(
                    "refused: this is supervisor instance {} (pid {}{dump}), not the expected instance {want}",
                    me.instance, me.pid
                ),
            );
            e.instance = Some(me.instance.to_string());
            e.pid = Some(me.pid);
            e.dump.clone_from(&me.dump);
            e.into_response()
        }
        _ => next.run(req).await,
    };
    if let Ok(v) = HeaderValue::from_str(&me.instance) {
        resp.headers_mut().insert(INSTANCE_HEADER, v);
    }
    resp
}
