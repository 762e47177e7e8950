//! The backends in force, and what the proxy knows of each.
//!
//! The set is immutable and swapped whole when the source publishes a new list: a request
//! holds an `Arc` of the set it picked from, so a swap never waits for requests in flight,
//! and a backend that left the set lives on until its last request is done. A backend whose
//! name and address are unchanged keeps its state (health, pool, averages) across swaps; a
//! task restarted on a new port is a new backend.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::health::{self, Failure, Passive};
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::source::{SourceStatus, Target};

pub struct Backend {
    /// Unique for the process's life: a request's list of tried backends holds these.
    pub id: u64,
    pub name: Arc<String>,
    pub addr: SocketAddr,
    pub pool: Pool,
    in_flight: AtomicUsize,
    /// Response-time average (to the response head), microseconds; 0 until the first answer.
    ewma_us: AtomicU64,
    /// Copy of the ejection's end, in ms after `epoch`, so that picking needs no lock.
    ejected_until_ms: AtomicU64,
    passive: Mutex<Passive>,
    /// Set by a failure, cleared by the next success: most successes then skip the lock.
    troubled: AtomicBool,
    active_up: AtomicBool,
    requests: AtomicU64,
    failures: AtomicU64,
    ejections: AtomicU64,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

/// A request's slot on a backend: counted in flight until dropped.
pub struct InFlight {
    backend: Arc<Backend>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backend {
    /// Not ejected, and not failing its active check.
    pub fn available(&self, now: Instant) -> bool {
        self.active_up.load(Ordering::Relaxed)
            && self.ms(now) >= self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// What the balancer compares.
    pub fn load(&self) -> (usize, u64) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.ewma_us.load(Ordering::Relaxed),
        )
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight {
            backend: self.clone(),
        }
    }

    /// An answer came back after `latency`.
    pub fn success(&self, latency: Duration) {
        let sample = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample.max(1)
        } else {
            (old * 4 + sample) / 5
        };
        self.ewma_us.store(new.max(1), Ordering::Relaxed);
        if self.troubled.swap(false, Ordering::Relaxed) {
            let mut p = self.lock();
            p.success();
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// A failure; ejects the backend when the policy says so.
    pub fn failure(&self, policy: &health::Policy, kind: Failure, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut p = self.lock();
        self.troubled.store(true, Ordering::Relaxed);
        if let Some(length) = p.failure(policy, now, kind) {
            self.ejected_until_ms
                .store(self.ms(now + length), Ordering::Relaxed);
            drop(p);
            self.ejections.fetch_add(1, Ordering::Relaxed);
            self.metrics.ejection(&self.name, kind.label());
            tracing::warn!(backend = %self.name, addr = %self.addr, error, ejected_ms = length.as_millis() as u64,
                "backend ejected");
        }
    }

    /// When the backend will be available again, if it is ejected now.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.lock().until().filter(|u| *u > now)
    }

    /// Records an active check's result; true when that changes the backend's state.
    pub fn set_active_up(&self, up: bool) -> bool {
        self.active_up.swap(up, Ordering::Relaxed) != up
    }

    pub fn status(&self, now: Instant) -> BackendStatus {
        let until = self.ejected_until(now);
        let state = if !self.active_up.load(Ordering::Relaxed) {
            "down"
        } else if until.is_some() {
            "ejected"
        } else {
            "up"
        };
        BackendStatus {
            name: self.name.to_string(),
            addr: self.addr.to_string(),
            state,
            ejected_for_ms: until.map(|u| (u - now).as_millis() as u64),
            in_flight: self.in_flight(),
            idle_connections: self.pool.idle(),
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            latency_ewma_ms: self.ewma_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Passive> {
        // Passive's updates are single assignments: a poisoned lock holds a consistent value.
        self.passive.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One backend on the status page and in `/backends`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendStatus {
    pub name: String,
    pub addr: String,
    /// `up`, `ejected` (passive health) or `down` (active check).
    pub state: &'static str,
    pub ejected_for_ms: Option<u64>,
    pub in_flight: usize,
    pub idle_connections: usize,
    pub requests: u64,
    pub failures: u64,
    pub ejections: u64,
    pub latency_ewma_ms: f64,
}

/// The backends in force.
pub struct BackendSet {
    pub backends: Vec<Arc<Backend>>,
    /// Grows with every list the source publishes.
    pub revision: u64,
}

pub struct Registry {
    tx: watch::Sender<Arc<BackendSet>>,
    status: Mutex<SourceStatus>,
    max_idle: usize,
    epoch: Instant,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(describe: String, max_idle: usize, metrics: Arc<Metrics>) -> Registry {
        let (tx, _) = watch::channel(Arc::new(BackendSet {
            backends: Vec::new(),
            revision: 0,
        }));
        Registry {
            tx,
            status: Mutex::new(SourceStatus {
                describe,
                ..SourceStatus::default()
            }),
            max_idle,
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    pub fn current(&self) -> Arc<BackendSet> {
        self.tx.borrow().clone()
    }

    /// Wakes up on every swap.
    pub fn subscribe(&self) -> watch::Receiver<Arc<BackendSet>> {
        self.tx.subscribe()
    }

    /// Installs `targets` as the backends in force, keeping the state of those unchanged.
    pub fn replace(&self, mut targets: Vec<Target>) {
        targets.sort();
        targets.dedup();
        let old = self.current();
        let mut backends = Vec::with_capacity(targets.len());
        for t in targets {
            let kept = old
                .backends
                .iter()
                .find(|b| b.addr == t.addr && b.name == t.name);
            backends.push(match kept {
                Some(b) => b.clone(),
                None => {
                    tracing::info!(backend = %t.name, addr = %t.addr, "backend added");
                    Arc::new(self.backend(t))
                }
            });
        }
        for b in &old.backends {
            if !backends.iter().any(|n| n.id == b.id) {
                tracing::info!(backend = %b.name, addr = %b.addr, in_flight = b.in_flight(), "backend removed");
            }
        }
        let revision = old.revision + 1;
        self.tx
            .send_replace(Arc::new(BackendSet { backends, revision }));
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.source_status(|s| {
            s.updates += 1;
            s.last_update_unix_ms = Some(now_ms);
        });
    }

    fn backend(&self, t: Target) -> Backend {
        Backend {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            name: t.name,
            addr: t.addr,
            pool: Pool::new(self.max_idle),
            in_flight: AtomicUsize::new(0),
            ewma_us: AtomicU64::new(0),
            ejected_until_ms: AtomicU64::new(0),
            passive: Mutex::new(Passive::default()),
            troubled: AtomicBool::new(false),
            active_up: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU64::new(0),
            epoch: self.epoch,
            metrics: self.metrics.clone(),
        }
    }

    pub fn source_status(&self, f: impl FnOnce(&mut SourceStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn status(&self) -> SourceStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, port: u16) -> Target {
        Target {
            name: Arc::new(name.into()),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn unchanged_backends_keep_their_state_and_moved_ones_start_fresh() {
        let r = Registry::new("test".into(), 4, Arc::new(Metrics::new()));
        r.replace(vec![target("a", 1), target("b", 2)]);
        let first = r.current();
        assert_eq!(first.revision, 1);
        let a = first.backends[0].clone();
        let policy = health::Policy {
            eject_after: 1,
            eject_for: Duration::from_secs(60),
            eject_max: Duration::from_secs(60),
        };
        a.failure(&policy, Failure::Refused, "refused");
        assert!(!a.available(Instant::now()));
        // b moves to port 3; a stays.
        r.replace(vec![target("b", 3), target("a", 1)]);
        let second = r.current();
        assert_eq!(second.revision, 2);
        assert_eq!(second.backends[0].id, a.id, "same backend object for a");
        assert!(
            !second.backends[0].available(Instant::now()),
            "a is still ejected"
        );
        assert_eq!(second.backends[1].addr.port(), 3);
        assert_ne!(second.backends[1].id, first.backends[1].id);
        assert!(second.backends[1].available(Instant::now()));
        assert_eq!(r.status().updates, 2);
        // An answer from an ejected backend (a request sent before the ejection) readmits it.
        a.success(Duration::from_millis(1));
        assert!(a.available(Instant::now()));
        assert_eq!(a.status(Instant::now()).state, "up");
    }

    #[test]
    fn in_flight_counts_follow_the_slots() {
        let r = Registry::new("test".into(), 4, Arc::new(Metrics::new()));
        r.replace(vec![target("a", 1)]);
        let b = r.current().backends[0].clone();
        let s1 = b.start();
        let s2 = b.start();
        assert_eq!(b.load().0, 2);
        drop(s1);
        drop(s2);
        assert_eq!(b.load().0, 0);
        b.success(Duration::from_millis(10));
        b.success(Duration::from_millis(20));
        assert_eq!(b.load().1, 12_000);
    }
}
