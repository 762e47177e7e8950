//! The routes, and the state they share.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use servicekit::access_log::AccessLog;
use uuid::Uuid;

use crate::auth_client::AuthClient;
use crate::clock;
use crate::load::{Admission, Delay};
use crate::metrics::{self, Metrics};
use crate::monitor;
use crate::pages::Templates;

/// The session cookie: a random UUID v4 that the auth server maps to a name.
pub const SESSION_COOKIE: &str = "timeservice-session";

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    pub templates: Templates,
    pub auth: AuthClient,
    pub admission: Admission,
    pub delay: Delay,
    pub auth_errors: AtomicU64,
    /// What the access log records, for `/monitor` and `/metrics`.
    pub log: AccessLog,
    pub metrics: Metrics,
}

/// The route table. Serving wraps it in the access log and the drain guard.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/time", get(time))
        .route("/", get(home))
        .route("/index.html", get(home))
        .route("/login", get(login))
        .route("/logout", get(logout))
        .route("/about", get(about))
        .route("/css/{file}", get(stylesheet))
        .route("/monitor", get(monitor::monitor))
        .route("/metrics", get(metrics::metrics))
        .fallback(not_found)
        .with_state(app)
}

/// The time page, behind the simulated load: cap first, then the delay, then the answer.
async fn time(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(_slot) = app.admission.try_admit() else {
        let retry = app.delay.retry_after_secs().to_string();
        let page = app.templates.message_page(
            "Busy",
            "Too many requests at the moment; please try again shortly.",
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, retry)],
            Html(page),
        )
            .into_response();
    };
    // `_slot` lives until the answer is built, or until this future is dropped because the
    // client went away: either way the in-flight count goes back down.
    let delay = app.delay.sample(&mut rand::rng());
    tokio::time::sleep(delay).await;
    let name = current_user(&app, &headers).await;
    let now = clock::unix_now();
    let local = clock::local(now).twelve_hour();
    let utc = clock::utc(now).twenty_four_hour();
    let page = app.templates.time_page(&local, &utc, name.as_deref());
    ([(CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

/// `/` and `/index.html`: a greeting for someone we know, the login form otherwise.
async fn home(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let page = match current_user(&app, &headers).await {
        Some(name) => app.templates.greeting_page(&name),
        None => app.templates.login_page(),
    };
    ([(CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

/// `/login?name=NAME`: a fresh session cookie, stored with the name in the auth server.
async fn login(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let name = query.get("name").map_or("", |n| n.trim());
    if name.is_empty() {
        let page = app.templates.message_page("Login", "C'mon, I need a name.");
        return (StatusCode::BAD_REQUEST, Html(page)).into_response();
    }
    let cookie = Uuid::new_v4();
    if let Err(e) = app.auth.store(cookie, name).await {
        app.auth_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "login failed: cannot store the session");
        let page = app.templates.message_page(
            "Login",
            "Sorry, you cannot log in right now: the auth server is unavailable.",
        );
        return (StatusCode::BAD_GATEWAY, Html(page)).into_response();
    }
    let set_cookie = format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax");
    (
        StatusCode::FOUND,
        [(LOCATION, "/".to_string()), (SET_COOKIE, set_cookie)],
    )
        .into_response()
}

/// `/logout`: forget the session in the auth server and in the browser; the page goes home
/// by itself after 10 s. Works even when the auth server is down (the cookie is cleared).
async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(cookie) = session_cookie(&headers) {
        if let Err(e) = app.auth.store(cookie, "").await {
            app.auth_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "logout: cannot delete the session in the auth server");
        }
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    ([(SET_COOKIE, clear)], Html(app.templates.logout_page())).into_response()
}

async fn about(State(app): State<Arc<App>>) -> Html<String> {
    Html(app.templates.about_page())
}

async fn stylesheet(State(app): State<Arc<App>>, Path(file): Path<String>) -> Response {
    if file != "style.css" {
        return not_found().await.into_response();
    }
    let css = app.templates.stylesheet().to_string();
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], css).into_response()
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "These are not the URLs you're looking for.",
    )
}

/// The name behind the request's session cookie, or `None` for anyone anonymous — including
/// everyone, while the auth server is down or slower than `--authtimeout-ms`.
async fn current_user(app: &App, headers: &HeaderMap) -> Option<String> {
    let cookie = session_cookie(headers)?;
    match app.auth.lookup(cookie).await {
        Ok(name) => name,
        Err(e) => {
            app.auth_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "auth lookup failed; the user is anonymous");
            None
        }
    }
}

/// Our cookie's value, if present and a UUID (anything else never came from us: ignored, and
/// never sent on to the auth server).
fn session_cookie(headers: &HeaderMap) -> Option<Uuid> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .and_then(|(_, value)| Uuid::parse_str(value.trim().trim_matches('"')).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).expect("header value"));
        }
        h
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let id = Uuid::new_v4();
        let h = headers(&[&format!("theme=dark; {SESSION_COOKIE}={id}; lang=en")]);
        assert_eq!(session_cookie(&h), Some(id));
        let h = headers(&["theme=dark", &format!("{SESSION_COOKIE}=\"{id}\"")]);
        assert_eq!(session_cookie(&h), Some(id));
    }

    #[test]
    fn ignores_missing_and_malformed_cookies() {
        assert_eq!(session_cookie(&headers(&[])), None);
        assert_eq!(session_cookie(&headers(&["theme=dark"])), None);
        assert_eq!(
            session_cookie(&headers(&[&format!("{SESSION_COOKIE}=not-a-uuid")])),
            None
        );
        assert_eq!(
            session_cookie(&headers(&[&format!(
                "x{SESSION_COOKIE}={}",
                Uuid::new_v4()
            )])),
            None
        );
    }
}
