//! Bearer-token check for the API.
use crate::control::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The API token, read from `--api-token-file`.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(s: &str) -> Self {
        Token(Arc::from(s))
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

pub async fn require_token(
    State(token): State<Option<Token>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
    };
    if req.method() == Method::GET && req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let from_query = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    let ok = from_header
        .into_iter()
        .chain(from_query)
        .any(|t| token.matches(t));
    if ok {
        return next.run(req).await;
    }
    let mut resp = ApiError::new(
        401,
        "missing or wrong API token: with supervisor ctl, pass --token-file=PATH (the file given to the supervisor's --api-token-file); with curl, send the header \"Authorization: Bearer <token>\"; for the dashboard, add ?token=<token> to its address",
    )
    .into_response();
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}
