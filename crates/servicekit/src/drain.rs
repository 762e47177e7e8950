//! What a request sees of a stop: the answer it gets once the server is draining.
//!
//! A stop moves the server through three [`Phase`]s, broadcast on a `watch` channel that
//! [`serve`](crate::serve::serve) owns:
//! - `Serving`: requests run normally.
//! - `Draining` (from SIGTERM on): a request that *arrives* now is answered `503` with
//!   `Retry-After` at once; requests already running go on.
//! - `CutOff` (the drain period is over): every request still running is dropped and answered
//!   `503` with `Retry-After` instead. Its handler future goes, so whatever it held (an in-flight
//!   slot, an auth call) is released as if the client had left.
//!
//! Every `503` says `Connection: close`, so the client does not send its next request down a
//! connection that is about to close. The guard sits *inside* the access log, so those answers
//! are logged and counted like any other.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONNECTION, RETRY_AFTER};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

/// `Retry-After` of the shutdown answers, in seconds: a supervisor has a replacement up within
/// milliseconds, so "soon" is right.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Where a stop has got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    Draining,
    CutOff,
}

/// The guard's view of the phase, and the count of requests it cut off.
#[derive(Debug, Clone)]
pub struct Gate {
    phase: watch::Receiver<Phase>,
    cut_off: Arc<AtomicU64>,
}

impl Gate {
    /// A gate following `phase`.
    pub fn new(phase: watch::Receiver<Phase>) -> Gate {
        Gate {
            phase,
            cut_off: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Puts every route of `router` (and its fallback) behind this gate.
    pub fn guard<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        router.layer(middleware::from_fn_with_state(self.clone(), guard))
    }

    /// Requests answered 503 at the end of the drain period instead of by their handler.
    pub fn cut_off(&self) -> u64 {
        self.cut_off.load(Ordering::Relaxed)
    }
}

async fn guard(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let mut phase = gate.phase.clone();
    if *phase.borrow_and_update() != Phase::Serving {
        return shutting_down();
    }
    let cut = async move {
        // An error means the server (the sender) is gone: nothing will ever cut this request.
        if phase.wait_for(|p| *p == Phase::CutOff).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        // The handler first: an answer that is ready wins over a cut-off that is too.
        biased;
        response = next.run(req) => response,
        () = cut => {
            gate.cut_off.fetch_add(1, Ordering::Relaxed);
            shutting_down()
        }
    }
}

/// The answer to a request that cannot be served because the server is stopping.
pub fn shutting_down() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (RETRY_AFTER, RETRY_AFTER_SECS.to_string()),
            (CONNECTION, "close".to_string()),
            (CACHE_CONTROL, "no-store".to_string()),
        ],
        "The server is shutting down; please retry in a moment.\n",
    )
        .into_response()
}
