//! `supervisor ctl top`: the course's monitor for someone with only a shell. A table of every
//! task, refreshed every `--interval` (1 s): state, pid, port, restarts, CPU and memory, and for
//! tasks with a port the request rate, error rate and requests in flight from their `/metrics`.
//!
//! # Theory of operation
//! Each frame is two samples apart. A sample reads `GET /tasks` and `GET /health` through the
//! same target resolution, token and instance check as every `ctl` command, then, at the same
//! time for every running task with a port, `GET /metrics` on the task (on the supervisor's
//! host; 500 ms each at most). Rates are differences of counters between two samples of the
//! same pid; a restarted task shows `-` for one frame instead of a negative rate.
//!
//! CPU and memory come from `/proc/PID/stat` (utime + stime) and `/proc/PID/statm` (resident
//! pages), summed over the task's cgroup (`cgroup.procs`) when the task's pid lives in a cgroup
//! under the supervisor's task root (`/health` → `tracking.cgroup`), and of the pid alone
//! otherwise. They are read only when the supervisor runs on this machine (its pid and start
//! time in `/health` match `/proc`); elsewhere the columns show `-`.
//!
//! The series read from `/metrics`: every `*_requests_total` sample with a `status` label
//! (the time and auth servers' `*_http_requests_total`, the proxy's `proxy_requests_total`)
//! counts as a request, those with a `5xx` status as errors, except those of
//! `path="/metrics"`: scrapes (ours, Prometheus's) are not the service's traffic. In flight is
//! `*_http_requests_in_flight` less the one `/metrics` request reading it (else an unlabelled
//! `*_requests_in_flight`, on an admin port of its own).
//!
//! On a terminal the screen is cleared and redrawn (ANSI home + clear) each frame until Ctrl-C;
//! with `--once`, or when standard output is not a terminal, one frame is printed and ctl exits.
use crate::ctl::call;
use crate::ctl_target::Target;
use servicekit::http_client::{self, Url};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long a task's `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(500);

/// What one task's `/metrics` says (counters since the task started).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HttpCounts {
    pub requests: f64,
    pub errors: f64,
    pub in_flight: Option<f64>,
}

/// One task at one moment.
#[derive(Debug, Clone, Default)]
struct TaskSample {
    name: String,
    state: String,
    pid: Option<u32>,
    port: Option<u16>,
    restarts: u64,
    /// utime + stime of its processes, in clock ticks.
    cpu_ticks: Option<u64>,
    rss_bytes: Option<u64>,
    http: Option<HttpCounts>,
}

/// Everything one frame needs from one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    header: String,
    tasks: Vec<TaskSample>,
}

/// `ctl top`: one frame with `once` (or off a terminal), else a frame every `interval`.
pub fn run(
    target: &Target,
    token: Option<&str>,
    given: Option<&Path>,
    once: bool,
    interval: Duration,
) -> Result<ExitCode, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let live = !once && std::io::stdout().is_terminal();
    let mut prev = sample(target, token, given, &rt)?;
    loop {
        std::thread::sleep(interval);
        let cur = sample(target, token, given, &rt)?;
        let text = frame(&prev, &cur);
        let mut out = std::io::stdout().lock();
        let written = if live {
            write!(out, "\x1b[H\x1b[2J{text}")
        } else {
            write!(out, "{text}")
        };
        written
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to standard output: {e}"))?;
        if !live {
            return Ok(ExitCode::SUCCESS);
        }
        prev = cur;
    }
}

fn sample(
    target: &Target,
    token: Option<&str>,
    given: Option<&Path>,
    rt: &tokio::runtime::Runtime,
) -> Result<Sample, String> {
    let get = |path: &str| -> Result<serde_json::Value, String> {
        let (status, json) = call(target, token, given, "GET", path, None)?;
        if !(200..300).contains(&status) {
            let msg = json
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string);
            return Err(format!(
                "GET {path}: {} (HTTP {status})",
                msg.unwrap_or_else(|| json.to_string())
            ));
        }
        Ok(json)
    };
    let health = get("/health")?;
    let tasks = get("/tasks")?;
    let at = Instant::now();
    let local = is_local(&health);
    let root = health["tracking"]["cgroup"].as_str().map(PathBuf::from);
    let host = target
        .base
        .authority
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let mut out: Vec<TaskSample> = tasks
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let mut state = t["state"].as_str().unwrap_or("?").to_string();
            if t.get("yoyo").is_some_and(|y| !y.is_null()) {
                state.push_str(" (yo-yo)");
            }
            let pid = t["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
            let running = t["state"].as_str() == Some("running");
            let usage = pid
                .filter(|_| local && running)
                .map(|p| usage(p, root.as_deref()));
            TaskSample {
                name: t["name"].as_str().unwrap_or("?").to_string(),
                state,
                pid,
                port: t["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
                restarts: t["restarts"].as_u64().unwrap_or(0),
                cpu_ticks: usage.and_then(|u| u.0),
                rss_bytes: usage.and_then(|u| u.1),
                http: None,
            }
        })
        .collect();
    let scrapes = out.iter().map(|t| {
        let url = t.port.filter(|_| t.state == "running").map(|p| Url {
            authority: format!("{host}:{p}"),
            path: "/metrics".into(),
        });
        async move {
            let url = url?;
            let r = http_client::request("GET", &url, &[], None, SCRAPE_TIMEOUT)
                .await
                .ok()?;
            (r.status == 200).then(|| http_counts(&r.body)).flatten()
        }
    });
    let counts = rt.block_on(futures_util::future::join_all(scrapes));
    for (t, c) in out.iter_mut().zip(counts) {
        t.http = c;
    }
    let header = format!(
        "supervisor pid {} (instance {}) at {}: {}, up {}, {} tasks",
        health["pid"],
        health["instance"].as_str().unwrap_or("?"),
        target.shown,
        health["status"].as_str().unwrap_or("?"),
        hms(health["uptime_secs"].as_f64().unwrap_or(0.0)),
        out.len()
    );
    Ok(Sample {
        at,
        header,
        tasks: out,
    })
}

/// True when the supervisor that answered runs on this machine: its pid's start time matches.
fn is_local(health: &serde_json::Value) -> bool {
    let pid = health["pid"].as_u64().and_then(|p| i32::try_from(p).ok());
    let start = health["start_time"].as_u64();
    match (pid, start) {
        (Some(pid), Some(start)) => {
            procio::procfs::stat(pid).is_ok_and(|s| s.start_ticks == start && !s.is_zombie())
        }
        _ => false,
    }
}

/// CPU ticks and resident bytes of a task: its cgroup's processes, or its pid alone.
fn usage(pid: u32, root: Option<&Path>) -> (Option<u64>, Option<u64>) {
    let pids = members(pid, root).unwrap_or_else(|| vec![pid as i32]);
    let page = page_size();
    let mut cpu = None;
    let mut rss = None;
    for p in pids {
        if let Some(t) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| cpu_ticks(&s))
        {
            *cpu.get_or_insert(0) += t;
        }
        if let Some(pages) = std::fs::read_to_string(format!("/proc/{p}/statm"))
            .ok()
            .and_then(|s| resident_pages(&s))
        {
            *rss.get_or_insert(0) += pages * page;
        }
    }
    (cpu, rss)
}

/// The processes of `pid`'s cgroup, when that cgroup is a task cgroup under `root`.
fn members(pid: u32, root: Option<&Path>) -> Option<Vec<i32>> {
    let root = root?;
    let rel = procio::procfs::cgroup_v2(pid as i32).ok()?;
    let mount = procio::cgroup::Hierarchy::find().ok()??;
    let dir = mount.path_of(&rel);
    if !dir.starts_with(root) || dir == root {
        return None;
    }
    procio::cgroup::procs(&dir).ok().filter(|p| !p.is_empty())
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The resident set (field 2) of `/proc/PID/statm`, in pages.
pub fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system setting.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).unwrap_or(4096)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a system setting.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

/// Requests, errors and in flight from a Prometheus text page (see the module docs), or `None`
/// when the page has no request counter.
pub fn http_counts(text: &str) -> Option<HttpCounts> {
    let mut c = HttpCounts::default();
    let mut found = false;
    let mut http_in_flight = None;
    let mut other_in_flight = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, value)) = split_sample(line) else {
            continue;
        };
        if name.ends_with("_requests_total") {
            let Some(status) = label(labels, "status") else {
                continue;
            };
            if label(labels, "path") == Some("/metrics") {
                found = true;
                continue;
            }
            found = true;
            c.requests += value;
            if status.starts_with('5') {
                c.errors += value;
            }
        } else if name.ends_with("_http_requests_in_flight") {
            *http_in_flight.get_or_insert(0.0) += value;
        } else if name.ends_with("_requests_in_flight") && labels.is_empty() {
            other_in_flight.get_or_insert(value);
        }
    }
    // The servers count the request being answered: this scrape.
    c.in_flight = http_in_flight
        .map(|n: f64| (n - 1.0).max(0.0))
        .or(other_in_flight);
    found.then_some(c)
}

/// `name{labels} value [timestamp]` → (name, labels without braces, value). Label values may
/// hold `{` and `}` (routes like `/css/{file}`): the labels end at the last `}`.
fn split_sample(line: &str) -> Option<(&str, &str, f64)> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').filter(|c| *c > open)?;
            (&line[..open], &line[open + 1..close], &line[close + 1..])
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, "", rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name.trim(), labels, value))
}

/// The value of label `key` in `a="x",b="y"` (values without escaped quotes, as ours are).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = labels;
    loop {
        let (k, after) = rest.split_once("=\"")?;
        let (v, tail) = after.split_once('"')?;
        if k.trim_start_matches(',').trim() == key {
            return Some(v);
        }
        rest = tail;
    }
}

fn hms(secs: f64) -> String {
    let s = secs as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn mem(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.1}G", mib / 1024.0)
    } else {
        format!("{mib:.1}M")
    }
}

/// The table of `cur`, with rates and CPU from the difference to `prev`.
fn frame(prev: &Sample, cur: &Sample) -> String {
    let dt = cur.at.saturating_duration_since(prev.at).as_secs_f64();
    let before: HashMap<(&str, Option<u32>), &TaskSample> = prev
        .tasks
        .iter()
        .map(|t| ((t.name.as_str(), t.pid), t))
        .collect();
    let dash = || "-".to_string();
    let rate = |now: f64, then: f64| {
        if dt > 0.0 && now >= then {
            format!("{:.1}", (now - then) / dt)
        } else {
            dash()
        }
    };
    let mut rows = vec![
        [
            "NAME", "STATE", "PID", "PORT", "RESTARTS", "CPU%", "MEM", "REQ/S", "ERR/S", "INFLIGHT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in &cur.tasks {
        let old = t.pid.and_then(|_| before.get(&(t.name.as_str(), t.pid)));
        let cpu = match (t.cpu_ticks, old.and_then(|o| o.cpu_ticks)) {
            (Some(now), Some(then)) if dt > 0.0 && now >= then => {
                format!("{:.1}", (now - then) as f64 / ticks_per_sec() / dt * 100.0)
            }
            _ => dash(),
        };
        let (req, err) = match (t.http, old.and_then(|o| o.http)) {
            (Some(now), Some(then)) => (
                rate(now.requests, then.requests),
                rate(now.errors, then.errors),
            ),
            _ => (dash(), dash()),
        };
        rows.push(vec![
            t.name.clone(),
            t.state.clone(),
            t.pid.map(|p| p.to_string()).unwrap_or_else(dash),
            t.port.map(|p| p.to_string()).unwrap_or_else(dash),
            t.restarts.to_string(),
            cpu,
            t.rss_bytes.map(mem).unwrap_or_else(dash),
            req,
            err,
            t.http
                .and_then(|h| h.in_flight)
                .map(|n| format!("{n}"))
                .unwrap_or_else(dash),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{}\n", cur.header);
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP timeserver_http_requests_total Answers.\n\
# TYPE timeserver_http_requests_total counter\n\
timeserver_http_requests_total{path=\"/time\",status=\"200\"} 7\n\
timeserver_http_requests_total{path=\"/css/{file}\",status=\"200\"} 2\n\
timeserver_http_requests_total{path=\"/time\",status=\"503\"} 3\n\
timeserver_http_requests_total{path=\"/metrics\",status=\"200\"} 40\n\
timeserver_requests_shed_total 3\n\
timeserver_http_requests_in_flight 4\n\
timeserver_time_requests_in_flight 1\n";

    #[test]
    fn reads_requests_errors_and_in_flight_from_metrics_text() {
        assert_eq!(
            http_counts(PAGE),
            Some(HttpCounts {
                requests: 12.0,
                errors: 3.0,
                in_flight: Some(3.0)
            })
        );
        let proxy = "proxy_requests_total{backend=\"a\",status=\"502\"} 1\nproxy_requests_total{backend=\"none\",status=\"200\"} 5 1700000000\nproxy_requests_in_flight 2\n";
        assert_eq!(
            http_counts(proxy),
            Some(HttpCounts {
                requests: 6.0,
                errors: 1.0,
                in_flight: Some(2.0)
            })
        );
        assert_eq!(http_counts("supervisor_uptime_seconds 3\n"), None);
    }

    #[test]
    fn parses_proc_stat_after_the_command_name() {
        let stat =
            "42 (a ) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 1 0 999 1000 50";
        assert_eq!(cpu_ticks(stat), Some(267));
        assert_eq!(resident_pages("1000 250 30 1 0 80 0\n"), Some(250));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn a_frame_shows_rates_between_samples_of_the_same_pid() {
        let t0 = Instant::now();
        let task = |pid, requests, cpu| TaskSample {
            name: "ts".into(),
            state: "running".into(),
            pid: Some(pid),
            port: Some(8000),
            restarts: 1,
            cpu_ticks: Some(cpu),
            rss_bytes: Some(3 * 1024 * 1024),
            http: Some(HttpCounts {
                requests,
                errors: 0.0,
                in_flight: Some(1.0),
            }),
        };
        let prev = Sample {
            at: t0,
            header: "h".into(),
            tasks: vec![task(10, 100.0, 0)],
        };
        let cur = Sample {
            at: t0 + Duration::from_secs(2),
            header: "h".into(),
            tasks: vec![task(10, 150.0, 0)],
        };
        let text = frame(&prev, &cur);
        let row = text.lines().nth(2).expect("a row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "ts", "running", "10", "8000", "1", "0.0", "3.0M", "25.0", "0.0", "1"
            ],
            "{text}"
        );
        // Another pid: the counters restarted, no rate for this frame.
        let restarted = Sample {
            tasks: vec![task(11, 5.0, 0)],
            ..cur
        };
        let text = frame(&prev, &restarted);
        let cells: Vec<&str> = text
            .lines()
            .nth(2)
            .expect("row")
            .split_whitespace()
            .collect();
        assert_eq!(&cells[5..], ["-", "3.0M", "-", "-", "1"], "{text}");
    }
}
