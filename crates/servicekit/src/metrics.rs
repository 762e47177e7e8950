//! `GET /metrics` for the servers: the HTTP layer's own series, and the Prometheus text format.
//!
//! Every server registers [`HttpMetrics`] in its own [`Registry`] (prefixed with the server's
//! name, so `timeserver_http_requests_total`) next to the series only it has, and answers
//! `/metrics` with [`render`].
//!
//! The `path` label is the route that matched (`/time`, `/css/{file}`), or [`OTHER_PATH`] for
//! anything the route table does not know. Labelling with the raw URL would let a scanner probing
//! a million URLs create a million series; this way the label set is fixed by the code.
//!
//! Cost on the request path: counters and gauges are atomics; finding a labelled series takes a
//! read lock on the family's map for a hash lookup, and a histogram observation a mutex for a
//! bucket search. Neither is ever held across an `.await`.
use std::time::Duration;

use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `path` label of requests that matched no route.
pub const OTHER_PATH: &str = "other";

/// Upper bounds of the latency buckets, in seconds: from 1 ms (a page from memory) to 30 s (the
/// slow time server holds `/time` for about 20 s, so its requests land in the 15–25 s buckets).
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0,
    30.0,
];

/// A finished request's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub path: String,
    pub status: u16,
}

/// A latency series: by route only (a status label would multiply the buckets for little).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

type HistogramFamily = Family<PathLabel, Histogram, fn() -> Histogram>;

/// What the access log records for every request.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    in_flight: Gauge,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl HttpMetrics {
    /// Fresh metrics, registered in `registry` as `http_requests` (counter),
    /// `http_request_duration_seconds` (histogram) and `http_requests_in_flight` (gauge).
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics::default();
        registry.register(
            "http_requests",
            "Requests answered, by route and status (499: the client went away first)",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its answer, by route",
            Unit::Seconds,
            m.latency.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests arrived and not yet answered, on every route",
            m.in_flight.clone(),
        );
        m
    }

    /// A request arrived.
    pub fn started(&self) {
        self.in_flight.inc();
    }

    /// A request that [`started`](Self::started) was answered (or its client went away).
    /// `route` is the matched route, or `None` when no route matched.
    pub fn finished(&self, route: Option<&str>, status: u16, took: Duration) {
        self.in_flight.dec();
        let path = route.unwrap_or(OTHER_PATH);
        let labels = RequestLabels {
            path: path.to_string(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        let labels = PathLabel { path: labels.path };
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Requests answered on `route` (`None`: unmatched) with `status` so far.
    pub fn count(&self, route: Option<&str>, status: u16) -> u64 {
        let labels = RequestLabels {
            path: route.unwrap_or(OTHER_PATH).to_string(),
            status,
        };
        self.requests.get(&labels).map_or(0, |c| c.get())
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }
}

/// `registry` in the Prometheus text format (0.0.4), which every scraper and `promtool check
/// metrics` read.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    match prometheus_text::encode(&mut out, registry) {
        Ok(()) => out,
        // Writing into a String cannot fail; a metric's own encoder could, and then the scrape
        // says so rather than serving half a page.
        Err(e) => format!("# encoding failed: {e}\n"),
    }
}

/// The `/metrics` answer: [`encode`]d `registry` with its content type, never cached.
pub fn render(registry: &Registry) -> Response {
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, prometheus_text::CONTENT_TYPE),
            (CACHE_CONTROL, "no-store"),
        ],
        encode(registry),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status_with_unknown_paths_folded() {
        let mut r = Registry::with_prefix("demo");
        let m = HttpMetrics::register(&mut r);
        for _ in 0..3 {
            m.started();
        }
        assert_eq!(m.in_flight(), 3);
        m.finished(Some("/time"), 200, Duration::from_millis(2));
        m.finished(Some("/time"), 503, Duration::from_millis(1));
        m.finished(None, 404, Duration::from_secs(21));
        assert_eq!(m.in_flight(), 0);
        assert_eq!((m.count(Some("/time"), 200), m.count(None, 404)), (1, 1));
        let text = encode(&r);
        for want in [
            "# TYPE demo_http_requests_total counter",
            "demo_http_requests_total{path=\"/time\",status=\"200\"} 1",
            "demo_http_requests_total{path=\"other\",status=\"404\"} 1",
            "# TYPE demo_http_request_duration_seconds histogram",
            "demo_http_request_duration_seconds_bucket{path=\"/time\",le=\"0.0025\"} 2",
            "demo_http_request_duration_seconds_bucket{path=\"other\",le=\"20\"} 0",
            "demo_http_request_duration_seconds_bucket{path=\"other\",le=\"25\"} 1",
            "demo_http_requests_in_flight 0",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(!text.contains("# EOF"), "the classic text format: {text}");
    }

    #[test]
    fn buckets_rise_from_a_millisecond_to_thirty_seconds() {
        assert_eq!(LATENCY_BUCKETS.first(), Some(&0.001));
        assert_eq!(LATENCY_BUCKETS.last(), Some(&30.0));
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
