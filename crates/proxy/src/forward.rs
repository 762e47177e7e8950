//! One request's life: pick a backend, connect (or reuse), send, and retry on another backend
//! when that is safe; then relay the answer.
//!
//! When a retry is safe:
//! - the connection could not be made (refused, timed out): nothing was sent, so any request
//!   goes to another backend, its body untouched;
//! - a pooled connection turned out closed before the request went out (hyper hands the
//!   request back): the same, and the backend is not blamed;
//! - the connection broke before any byte of an answer (the backend died under the request):
//!   only a request that can be sent again, one without a body and with an idempotent method;
//! - the backend shed it, 503 with `Retry-After` (a time server over its in-flight limit):
//!   once per request, under the same condition, when another backend is available.
//!
//! A response timeout is not retried: the backend may still be working on it, and a second
//! wait would double the client's. At most `--retries` more sends follow the first.
//!
//! When no backend is available (none listed, all ejected), a request that can still be sent
//! waits for one, until the connect timeout: an ejection that ends or a new list from the
//! source wakes it, and then every backend may be tried again. This bridges the moment when a
//! time server has just died and the other one's new port was refused because it was still
//! being bound. At the connect timeout the request is answered 503 with a body that says why.
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::backends::{Backend, BackendSet, Registry};
use crate::balance::Balancer;
use crate::body::{DownBody, Relay, UpBody};
use crate::health::{self, Failure};
use crate::metrics::Metrics;
use crate::pool::{self, ConnectError};
use crate::{access_log, headers};

static NO_BACKEND: LazyLock<Arc<String>> = LazyLock::new(|| Arc::new("none".to_string()));

/// Everything a request needs, shared by all of them.
pub struct Proxy {
    pub registry: Arc<Registry>,
    pub balancer: Balancer,
    pub policy: health::Policy,
    pub metrics: Arc<Metrics>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub access_log: bool,
}

/// The backends a request has tried (a handful at most).
struct Tried {
    ids: [u64; 8],
    n: usize,
}

impl Tried {
    fn contains(&self, id: u64) -> bool {
        self.n >= self.ids.len() || self.ids[..self.n].contains(&id)
    }

    fn push(&mut self, id: u64) {
        if self.n < self.ids.len() {
            self.ids[self.n] = id;
        }
        self.n += 1;
    }

    fn forget(&mut self, id: u64) {
        if self.n <= self.ids.len() && self.n > 0 && self.ids[self.n - 1] == id {
            self.n -= 1;
        }
    }
}

/// What an attempt that did not produce an answer to relay leaves for the client.
struct Failed {
    status: StatusCode,
    message: String,
}

/// How a request ended, for the metrics and the access log.
struct Done {
    response: Response<DownBody>,
    backend: Option<Arc<Backend>>,
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

fn text(status: StatusCode, message: String) -> Response<DownBody> {
    let mut r = Response::new(DownBody::text(message));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    r
}

/// The URI a backend gets: origin form (`/path?query`), whatever form the client used.
fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    pq.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

impl Proxy {
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<DownBody> {
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let method = req.method().clone();
        let path = self.access_log.then(|| req.uri().path().to_string());
        let mut attempts = 0;
        let done = self.forward(req, peer, &mut attempts).await;
        self.metrics.in_flight.dec();
        let status = done.response.status().as_u16();
        let name = done.backend.as_ref().map_or(&*NO_BACKEND, |b| &b.name);
        let elapsed = started.elapsed();
        self.metrics.request(name, status, elapsed.as_secs_f64());
        if let Some(path) = &path {
            access_log::write(&access_log::Entry {
                method: &method,
                path,
                status,
                backend: name,
                upstream: done.backend.as_ref().map(|b| b.addr),
                attempts,
                duration: elapsed,
                peer,
            });
        }
        done.response
    }

    async fn forward(&self, req: Request<Incoming>, peer: SocketAddr, attempts: &mut u32) -> Done {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        headers::to_backend(&mut parts.headers, peer.ip());
        let uri = origin_form(&parts.uri);
        let replayable = body.is_end_stream();
        let retry_after_send = replayable && idempotent(&parts.method);
        let mut body = Some(if replayable {
            UpBody::Empty
        } else {
            UpBody::Stream(body)
        });
        let mut tried = Tried { ids: [0; 8], n: 0 };
        let mut shed_retried = false;
        let mut last: Option<Failed> = None;
        // Attempts that sent the request: `--retries` bounds these. Connecting is cheap, and a
        // refused backend is ejected, so connect failures are bounded by the backends and the
        // connect timeout instead.
        let mut sends = 0u32;
        let wait_until = started + self.connect_timeout;
        loop {
            let set = self.registry.current();
            let now = Instant::now();
            let ok = |i: usize| {
                let b: &Backend = &set.backends[i];
                !tried.contains(b.id) && b.available(now)
            };
            let pick = self
                .balancer
                .pick(set.backends.len(), ok, |i| set.backends[i].load());
            let (Some(i), true) = (pick, sends <= self.retries) else {
                // No backend can be had right now (none listed, all ejected: a time server
                // refused while it was still binding its new port, the other one just died;
                // or every available one was tried already, one of them dying as it was tried
                // while the source has not yet listed the other's new port). While the request
                // can still be sent and the connect timeout allows, wait for a new list or the
                // end of an ejection, and then every backend may be tried again.
                if body.is_some() && sends <= self.retries && now < wait_until {
                    self.wait_for_backend(&set, wait_until).await;
                    tried.n = 0;
                    continue;
                }
                if let Some(f) = last {
                    return Done {
                        response: text(f.status, f.message),
                        backend: None,
                    };
                }
                return Done {
                    response: text(StatusCode::SERVICE_UNAVAILABLE, self.no_backend(&set, now)),
                    backend: None,
                };
            };
            let b = set.backends[i].clone();
            *attempts += 1;
            tried.push(b.id);
            let slot = b.start();
            let mut sender = match b.pool.take().await {
                Some(s) => s,
                None => match pool::connect(b.addr, self.connect_timeout).await {
                    Ok(s) => {
                        self.metrics.upstream_connects.inc();
                        s
                    }
                    Err(e) => {
                        let (kind, reason) = match e {
                            ConnectError::Refused(_) => (Failure::Refused, "refused"),
                            _ => (Failure::Other, "connect"),
                        };
                        b.failure(&self.policy, kind, &e.to_string());
                        self.metrics.retry(reason);
                        last = Some(Failed {
                            status: StatusCode::SERVICE_UNAVAILABLE,
                            message: format!(
                                "no backend could be reached; the last one tried, {} ({}): {e}\n",
                                b.name, b.addr
                            ),
                        });
                        continue;
                    }
                },
            };
            let mut up = Request::new(body.take().unwrap_or(UpBody::Empty));
            *up.method_mut() = parts.method.clone();
            *up.uri_mut() = uri.clone();
            *up.version_mut() = Version::HTTP_11;
            *up.headers_mut() = if replayable {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let sent_at = Instant::now();
            sends += 1;
            let answer =
                tokio::time::timeout(self.response_timeout, sender.try_send_request(up)).await;
            let resp = match answer {
                Err(_) => {
                    let msg = format!(
                        "backend {} ({}) did not answer within {:?}\n",
                        b.name, b.addr, self.response_timeout
                    );
                    b.failure(&self.policy, Failure::Other, msg.trim_end());
                    return Done {
                        response: text(StatusCode::GATEWAY_TIMEOUT, msg),
                        backend: Some(b),
                    };
                }
                Ok(Err(mut e)) => {
                    if let Some(req) = e.take_message() {
                        // Never sent: the pooled connection closed under us. Not the backend's
                        // fault; try again with the request as it was.
                        self.metrics.retry("stale");
                        sends -= 1;
                        body = Some(req.into_body());
                        tried.forget(b.id);
                        continue;
                    }
                    let err = e.into_error();
                    let msg = format!("backend {} ({}) failed: {err}\n", b.name, b.addr);
                    let kind = if err.is_parse() || err.is_user() {
                        Failure::Other
                    } else {
                        Failure::Reset
                    };
                    b.failure(&self.policy, kind, msg.trim_end());
                    if retry_after_send {
                        self.metrics.retry("reset");
                        body = Some(UpBody::Empty);
                        last = Some(Failed {
                            status: StatusCode::BAD_GATEWAY,
                            message: msg,
                        });
                        continue;
                    }
                    return Done {
                        response: text(StatusCode::BAD_GATEWAY, msg),
                        backend: Some(b),
                    };
                }
                Ok(Ok(r)) => r,
            };
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE
                && resp.headers().contains_key(RETRY_AFTER)
                && retry_after_send
                && !shed_retried
                && sends <= self.retries
                && self.another_available(&set, &tried)
            {
                shed_retried = true;
                self.metrics.retry("shed");
                discard(resp.into_body(), sender, b, slot);
                body = Some(UpBody::Empty);
                continue;
            }
            b.success(sent_at.elapsed());
            let (mut head, rbody) = resp.into_parts();
            headers::strip_hop_by_hop(&mut head.headers);
            let relay = Relay::new(rbody, sender, b.clone(), slot);
            return Done {
                response: Response::from_parts(head, DownBody::Relay(relay)),
                backend: Some(b),
            };
        }
    }

    fn another_available(&self, set: &BackendSet, tried: &Tried) -> bool {
        let now = Instant::now();
        set.backends
            .iter()
            .any(|b| !tried.contains(b.id) && b.available(now))
    }

    /// Until a backend may be available: a new list, the end of an ejection, or `deadline`.
    async fn wait_for_backend(&self, set: &BackendSet, deadline: Instant) {
        let mut rx = self.registry.subscribe();
        if rx.borrow_and_update().revision != set.revision {
            return;
        }
        let now = Instant::now();
        let wake = set
            .backends
            .iter()
            .filter_map(|b| b.ejected_until(now))
            .min()
            .map_or(deadline, |u| u.min(deadline));
        let _ = tokio::time::timeout_at(wake.into(), rx.changed()).await;
    }

    fn no_backend(&self, set: &BackendSet, now: Instant) -> String {
        let source = self.registry.status();
        let state = if source.connected {
            "connected".to_string()
        } else {
            match &source.last_error {
                Some(e) => format!("not connected: {e}"),
                None => "not connected yet".to_string(),
            }
        };
        let unavailable = set.backends.iter().filter(|b| !b.available(now)).count();
        format!(
            "no backend available: the source ({}, {state}) lists {} backends, {unavailable} of them ejected or failing their health check\n",
            source.describe,
            set.backends.len()
        )
    }
}

/// Reads a shed answer's small body to its end in the background, so its connection can be
/// reused; gives up (and closes it) after a second or 64 KiB.
fn discard(body: Incoming, sender: pool::Sender, b: Arc<Backend>, slot: crate::backends::InFlight) {
    drop(slot);
    tokio::spawn(async move {
        let limited = http_body_util::Limited::new(body, 64 * 1024);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), limited.collect()).await {
            b.pool.put(sender);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_drops_scheme_and_authority() {
        let u: Uri = "http://127.0.0.1:8080/time?x=1".parse().expect("uri");
        assert_eq!(origin_form(&u), "/time?x=1");
        let u: Uri = "/login?name=ann".parse().expect("uri");
        assert_eq!(origin_form(&u), "/login?name=ann");
    }

    #[test]
    fn tried_backends() {
        let mut t = Tried { ids: [0; 8], n: 0 };
        assert!(!t.contains(3));
        t.push(3);
        t.push(4);
        assert!(t.contains(3) && t.contains(4) && !t.contains(5));
        t.forget(4);
        assert!(!t.contains(4));
        for i in 10..20 {
            t.push(i);
        }
        assert!(t.contains(999), "past the array everything counts as tried");
    }

    #[test]
    fn idempotent_methods() {
        assert!(idempotent(&Method::GET) && idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
    }
}
