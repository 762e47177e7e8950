//! Passive health: what failures a backend may have before it is ejected, and for how long;
//! a pure state machine with the time passed in. And the optional active check.
//!
//! A refused connection ejects at once: nothing listens there (a time server just died, or
//! was moved), and every further request sent there would only cost a retry. So does a
//! connection reset before any byte of an answer: the backend died under the request. Other
//! failures (timeouts, broken answers) eject after `--eject-after` in a row. The
//! n-th ejection in a row lasts `--eject-for` × 2ⁿ⁻¹, capped at `--eject-max`; once it is
//! over the backend takes requests again, and one success clears the count.
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backends::{Backend, Registry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub eject_after: u32,
    pub eject_for: Duration,
    pub eject_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens: ejects at once.
    Refused,
    /// The connection broke before any byte of an answer (the backend died under the
    /// request): ejects at once too.
    Reset,
    /// A timeout or a broken answer: counts toward `eject_after`.
    Other,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Reset => "reset",
            Failure::Other => "failures",
        }
    }
}

/// One backend's passive-health state.
#[derive(Debug, Clone, Default)]
pub struct Passive {
    consecutive: u32,
    ejections: u32,
    until: Option<Instant>,
}

impl Passive {
    /// A success: the failure count and the ejection backoff start over.
    pub fn success(&mut self) {
        self.consecutive = 0;
        self.ejections = 0;
        self.until = None;
    }

    /// A failure at `now`; `Some(length)` when it ejects the backend.
    pub fn failure(&mut self, policy: &Policy, now: Instant, kind: Failure) -> Option<Duration> {
        self.consecutive += 1;
        if self.ejected(now) {
            return None;
        }
        if kind == Failure::Other && self.consecutive < policy.eject_after {
            return None;
        }
        let doublings = self.ejections.min(20);
        let length = policy
            .eject_for
            .saturating_mul(1 << doublings)
            .min(policy.eject_max);
        self.ejections += 1;
        self.consecutive = 0;
        self.until = Some(now + length);
        Some(length)
    }

    pub fn ejected(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When the current ejection ends.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }
}

/// Active checks: `GET path` on every backend each interval. A backend that does not answer
/// 2xx or 3xx in time is marked down (not picked) until it does.
pub async fn active_checks(
    registry: Arc<Registry>,
    path: String,
    interval: Duration,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let set = registry.current();
        let checks = set
            .backends
            .iter()
            .map(|b| check(b.clone(), path.clone(), timeout));
        for (b, result) in futures_join(checks).await {
            let up = result.is_ok();
            if b.set_active_up(up) {
                match result {
                    Ok(()) => {
                        tracing::info!(backend = %b.name, addr = %b.addr, "health check passes again")
                    }
                    Err(e) => {
                        tracing::warn!(backend = %b.name, addr = %b.addr, error = %e, "health check failed; backend taken out")
                    }
                }
            }
        }
    }
}

async fn check(
    b: Arc<Backend>,
    path: String,
    timeout: Duration,
) -> (Arc<Backend>, Result<(), String>) {
    let url = servicekit::http_client::Url {
        authority: b.addr.to_string(),
        path: path.clone(),
    };
    let r = match servicekit::http_client::request_bytes("GET", &url, &[], None, timeout, 64 * 1024)
        .await
    {
        Ok(r) if (200..400).contains(&r.status) => Ok(()),
        Ok(r) => Err(format!("GET {path} answered {}", r.status)),
        Err(e) => Err(e.to_string()),
    };
    (b, r)
}

/// Runs the futures side by side and collects their outputs (a handful: no crate needed).
async fn futures_join<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        eject_after: 3,
        eject_for: Duration::from_millis(250),
        eject_max: Duration::from_secs(1),
    };

    #[test]
    fn refused_ejects_at_once_with_a_growing_backoff() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        assert_eq!(
            p.failure(&P, t0, Failure::Refused),
            Some(Duration::from_millis(250))
        );
        assert!(p.ejected(t0 + Duration::from_millis(249)));
        assert!(!p.ejected(t0 + Duration::from_millis(250)));
        // Failures while ejected (requests already under way) do not extend it.
        assert_eq!(
            p.failure(&P, t0 + Duration::from_millis(10), Failure::Refused),
            None
        );
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!(
            p.failure(&P, t1, Failure::Refused),
            Some(Duration::from_millis(500))
        );
        let t2 = t1 + Duration::from_millis(600);
        assert_eq!(
            p.failure(&P, t2, Failure::Refused),
            Some(Duration::from_secs(1))
        );
        let t3 = t2 + Duration::from_secs(2);
        assert_eq!(
            p.failure(&P, t3, Failure::Refused),
            Some(Duration::from_secs(1)),
            "capped"
        );
        p.success();
        assert!(!p.ejected(t3));
        assert_eq!(
            p.failure(&P, t3 + Duration::from_secs(5), Failure::Refused),
            Some(Duration::from_millis(250)),
            "a success starts the backoff over"
        );
    }

    #[test]
    fn a_reset_ejects_at_once_too() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        assert_eq!(
            p.failure(&P, t0, Failure::Reset),
            Some(Duration::from_millis(250))
        );
        assert!(p.ejected(t0));
    }

    #[test]
    fn other_failures_eject_after_n_in_a_row() {
        let t0 = Instant::now();
        let mut p = Passive::default();
        assert_eq!(p.failure(&P, t0, Failure::Other), None);
        assert_eq!(p.failure(&P, t0, Failure::Other), None);
        p.success();
        assert_eq!(p.failure(&P, t0, Failure::Other), None);
        assert_eq!(p.failure(&P, t0, Failure::Other), None);
        assert_eq!(
            p.failure(&P, t0, Failure::Other),
            Some(Duration::from_millis(250))
        );
        assert!(p.ejected(t0));
        assert_eq!(p.until(), Some(t0 + Duration::from_millis(250)));
    }
}
