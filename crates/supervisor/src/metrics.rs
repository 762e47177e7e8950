//! `GET /metrics` in the Prometheus text format.
//!
//! Counters and histograms that accumulate over the supervisor's life live in [`Metrics`];
//! per-task values are read from the core at scrape time into a fresh registry, so a removed
//! task's series simply disappear instead of lingering.
use crate::control::{Clock, Counts};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use supervisor_core::{TaskState, TaskView};

type Labels = Vec<(String, String)>;

/// Life-long counters of the supervisor.
#[derive(Clone)]
pub struct Metrics {
    pub spawn_failures: Counter,
    pub task_deaths: Counter,
    pub restart_latency: Histogram,
    pub checkpoint_duration: Histogram,
    pub checkpoint_errors: Counter,
    pub yoyo_entered: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            spawn_failures: Counter::default(),
            task_deaths: Counter::default(),
            // 50 µs … ~26 s
            restart_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 20)),
            // 100 µs … ~3 s
            checkpoint_duration: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            checkpoint_errors: Counter::default(),
            yoyo_entered: Counter::default(),
        }
    }
}

impl Metrics {
    /// Encodes everything, with per-task series from `views`; `degraded` is what `/health`
    /// says (so an alert on `supervisor_degraded` fires exactly when `/health` is degraded).
    pub fn render(
        &self,
        views: &[TaskView],
        usage: &[Option<crate::usage::Usage>],
        now: Instant,
        clock: &Clock,
        started: Instant,
        degraded: bool,
    ) -> String {
        let mut r = Registry::default();
        let up = Family::<Labels, Gauge>::default();
        let yoyo = Family::<Labels, Gauge>::default();
        let restarts = Family::<Labels, Counter>::default();
        let start_time = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let port = Family::<Labels, Gauge>::default();
        let cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
        let memory = Family::<Labels, Gauge>::default();
        let info = Family::<Labels, Gauge>::default();
        for (v, u) in views.iter().zip(usage) {
            if let Some(u) = u {
                let l = vec![("task".to_string(), v.spec.name.clone())];
                cpu.get_or_create(&l).inc_by(u.cpu_seconds);
                memory
                    .get_or_create(&l)
                    .set(i64::try_from(u.memory_bytes).unwrap_or(i64::MAX));
            }
        }
        for v in views {
            let l = vec![("task".to_string(), v.spec.name.clone())];
            up.get_or_create(&l)
                .set(i64::from(v.state == TaskState::Running));
            yoyo.get_or_create(&l)
                .set(i64::from(v.yoyo_since.is_some()));
            restarts.get_or_create(&l).inc_by(v.restarts);
            if let (TaskState::Running, Some(t)) = (v.state, v.started_at) {
                start_time
                    .get_or_create(&l)
                    .set(clock.unix_ms(t) as f64 / 1000.0);
            }
            if let Some(p) = v.port {
                port.get_or_create(&l).set(i64::from(p));
            }
            info.get_or_create(&vec![
                ("task".to_string(), v.spec.name.clone()),
                ("uid".to_string(), v.uid.clone()),
                ("generation".to_string(), v.generation.to_string()),
            ])
            .set(1);
        }
        let by_state = Family::<Labels, Gauge>::default();
        let c = Counts::of(views);
        for (s, n) in [
            ("starting", c.starting),
            ("running", c.running),
            ("backoff", c.backoff),
            ("stopping", c.stopping),
            ("stopped", c.stopped),
        ] {
            by_state
                .get_or_create(&vec![("state".to_string(), s.to_string())])
                .set(n as i64);
        }
        let health = Gauge::<i64>::default();
        health.set(i64::from(degraded));
        r.register(
            "supervisor_degraded",
            "1 while GET /health says degraded (a task in yo-yo mode or unable to start, failing checkpoints, dropped log lines, shutting down)",
            health,
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        uptime.set(now.saturating_duration_since(started).as_secs_f64());

        r.register(
            "supervisor_task_info",
            "Always 1: the task's stable uid and current generation as labels (join on task)",
            info,
        );
        r.register(
            "supervisor_task_up",
            "1 when the task's process is running",
            up,
        );
        r.register(
            "supervisor_task_yoyo",
            "1 when the task is in yo-yo mode (crashing right after start, again and again)",
            yoyo,
        );
        r.register(
            "supervisor_task_restarts",
            "Restarts of the task (after deaths and on request)",
            restarts,
        );
        r.register_with_unit(
            "supervisor_task_start_time",
            "Unix time the running process started",
            Unit::Seconds,
            start_time,
        );
        r.register(
            "supervisor_task_port",
            "The port the task's current process was given",
            port,
        );
        r.register_with_unit(
            "supervisor_task_cpu",
            "CPU time (user + system) of the task's running instance, its processes together",
            Unit::Seconds,
            cpu,
        );
        r.register_with_unit(
            "supervisor_task_memory",
            "Memory of the task's running instance (its cgroup's memory.current, else the resident set of its processes)",
            Unit::Bytes,
            memory,
        );
        r.register("supervisor_tasks", "Tasks by state", by_state);
        r.register(
            "supervisor_task_deaths",
            "Task processes that died without a stop request",
            self.task_deaths.clone(),
        );
        r.register(
            "supervisor_spawn_failures",
            "Task starts that failed (exec error, unopenable file)",
            self.spawn_failures.clone(),
        );
        r.register(
            "supervisor_yoyo_entered",
            "Times a task entered yo-yo mode",
            self.yoyo_entered.clone(),
        );
        r.register_with_unit(
            "supervisor_restart_latency",
            "Time from a task's death to its replacement's start",
            Unit::Seconds,
            self.restart_latency.clone(),
        );
        r.register_with_unit(
            "supervisor_checkpoint_duration",
            "Time to write one checkpoint (fsync included)",
            Unit::Seconds,
            self.checkpoint_duration.clone(),
        );
        r.register(
            "supervisor_checkpoint_errors",
            "Checkpoint writes that failed",
            self.checkpoint_errors.clone(),
        );
        r.register(
            "supervisor_log_dropped_lines",
            "Lines of the supervisor's own log dropped because the log sink did not keep up",
            ConstCounter::new(crate::logging::stats().dropped),
        );
        r.register_with_unit(
            "supervisor_uptime",
            "Time since the supervisor started",
            Unit::Seconds,
            uptime,
        );
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &r) {
            return format!("# encoding failed: {e}\n");
        }
        to_text_format(&out)
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Turns the OpenMetrics output of `prometheus-client` into the classic Prometheus text format
/// (0.0.4) that every scraper and `promtool check metrics` read: counters are described under
/// their `_total` sample name, and the OpenMetrics-only `# UNIT` and `# EOF` lines go.
fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_openmetrics_counters_to_text_format() {
        let om = "# HELP x_errors Errors.\n# TYPE x_errors counter\nx_errors_total 3\n# HELP d Time.\n# TYPE d_seconds gauge\n# UNIT d_seconds seconds\nd_seconds 1.5\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP x_errors_total Errors.\n# TYPE x_errors_total counter\nx_errors_total 3\n# HELP d Time.\n# TYPE d_seconds gauge\nd_seconds 1.5\n"
        );
    }
}
