//! The Prometheus series. Counters that accumulate over the proxy's life live in [`Metrics`];
//! per-backend state (up, in flight) is read from the backend set at scrape time, so a
//! backend that left the set leaves the page instead of lingering.
//!
//! Backends are labelled by name (the task name, or the address of a static backend), not by
//! port: a time server gets a new port at every restart, and a label per port would grow the
//! series without bound.
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::backends::BackendSet;
use crate::source::SourceStatus;

/// The classic Prometheus text format, as the supervisor serves it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    backend: Arc<String>,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EjectionLabels {
    backend: Arc<String>,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
    addr: String,
}

pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    retries: Family<ReasonLabels, Counter>,
    ejections: Family<EjectionLabels, Counter>,
    duration: Histogram,
    pub in_flight: Gauge,
    pub connections: Gauge,
    pub upstream_connects: Counter,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            requests: Family::default(),
            retries: Family::default(),
            ejections: Family::default(),
            // 100 µs … ~105 s
            duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 21)),
            in_flight: Gauge::default(),
            connections: Gauge::default(),
            upstream_connects: Counter::default(),
            started: Instant::now(),
        }
    }

    /// One answered request: `backend` is `none` when no backend was reached.
    pub fn request(&self, backend: &Arc<String>, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                backend: backend.clone(),
                status,
            })
            .inc();
        self.duration.observe(seconds);
    }

    /// One more attempt on another backend, and why.
    pub fn retry(&self, reason: &'static str) {
        self.retries.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn ejection(&self, backend: &Arc<String>, reason: &'static str) {
        self.ejections
            .get_or_create(&EjectionLabels {
                backend: backend.clone(),
                reason,
            })
            .inc();
    }

    /// The text format, with the backends in force and the source's state.
    pub fn render(&self, set: &BackendSet, source: &SourceStatus) -> String {
        let mut r = Registry::default();
        r.register(
            "proxy_requests",
            "Requests answered, by backend (none: no backend was reached) and status",
            self.requests.clone(),
        );
        r.register(
            "proxy_retries",
            "Attempts on another backend, by reason (refused, connect, reset, shed, stale)",
            self.retries.clone(),
        );
        r.register(
            "proxy_ejections",
            "Backends ejected by passive health, by backend and reason",
            self.ejections.clone(),
        );
        r.register_with_unit(
            "proxy_request_duration",
            "Time from a request's arrival to its answer's head",
            Unit::Seconds,
            self.duration.clone(),
        );
        r.register(
            "proxy_requests_in_flight",
            "Requests being answered now",
            self.in_flight.clone(),
        );
        r.register(
            "proxy_client_connections",
            "Client connections open now",
            self.connections.clone(),
        );
        r.register(
            "proxy_upstream_connects",
            "Connections opened to backends",
            self.upstream_connects.clone(),
        );
        let now = Instant::now();
        let up = Family::<BackendLabels, Gauge>::default();
        let in_flight = Family::<BackendLabels, Gauge>::default();
        for b in &set.backends {
            let l = BackendLabels {
                backend: b.name.to_string(),
                addr: b.addr.to_string(),
            };
            up.get_or_create(&l).set(i64::from(b.available(now)));
            in_flight.get_or_create(&l).set(b.in_flight() as i64);
        }
        r.register(
            "proxy_backend_up",
            "1 for a backend that takes requests, 0 while ejected or failing its check",
            up,
        );
        r.register(
            "proxy_backend_in_flight",
            "Requests in flight on each backend",
            in_flight,
        );
        let connected = Gauge::<i64>::default();
        connected.set(i64::from(source.connected));
        r.register(
            "proxy_source_connected",
            "1 while the backend source follows its origin live",
            connected,
        );
        let updates = Counter::<u64>::default();
        updates.inc_by(source.updates);
        r.register(
            "proxy_source_updates",
            "Backend lists published by the source",
            updates,
        );
        let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        uptime.set(self.started.elapsed().as_secs_f64());
        r.register_with_unit(
            "proxy_uptime",
            "Time since the proxy started",
            Unit::Seconds,
            uptime,
        );
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &r) {
            return format!("# encoding failed: {e}\n");
        }
        text_format(&out)
    }
}

/// `prometheus-client` writes OpenMetrics; scrapers and `promtool check metrics` also read the
/// older text format, where a counter's HELP and TYPE name its `_total` series and there are
/// no `# UNIT` or `# EOF` lines.
fn text_format(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?.split_once(' ')?)));
        match meta {
            Some((p, (name, rest))) if counters.contains(&name) => {
                out.push_str(&format!("{p}{name}_total {rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_described_under_their_total_series() {
        let om = "# HELP a_hits Hits.\n# TYPE a_hits counter\na_hits_total 3\n# HELP b_seconds Time.\n# TYPE b_seconds gauge\n# UNIT b_seconds seconds\nb_seconds 1.5\n# EOF\n";
        assert_eq!(
            text_format(om),
            "# HELP a_hits_total Hits.\n# TYPE a_hits_total counter\na_hits_total 3\n# HELP b_seconds Time.\n# TYPE b_seconds gauge\nb_seconds 1.5\n"
        );
    }
}
