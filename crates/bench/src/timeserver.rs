//! Ours only: a real `timeserver` under our supervisor is SIGKILLed; how long until its
//! replacement (on the next port of the range) answers HTTP on 127.0.0.1.
use crate::api;
use crate::interrupt;
use crate::kind::Kind;
use crate::launch::{self, Ctx, OursOpts, Service};
use crate::procs::{self, Pidfd};
use crate::records::Tail;
use crate::scale::field;
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct TimeserverResult {
    pub port_range: String,
    /// SIGKILL → first HTTP answer of the replacement, ms.
    pub to_http_ms: Option<Summary>,
    /// SIGKILL → the replacement's start, as the supervisor logs it (`since_death`), ms.
    pub supervisor_since_death_ms: Option<Summary>,
    pub samples_ms: Vec<f64>,
    pub note: Option<String>,
}

/// `(pid, port, since_death ms)` of a "task started"/"task restarted" line of task `name`.
fn start_line(line: &str, name: &str) -> Option<(i32, u16, Option<f64>)> {
    if !(line.contains("task started") || line.contains("task restarted"))
        || field(line, "task") != Some(name)
    {
        return None;
    }
    let pid = field(line, "pid")?.parse().ok()?;
    let port = field(line, "port")?.parse().ok()?;
    let since = field(line, "since_death").and_then(|v| v.trim_end_matches("ms").parse().ok());
    Some((pid, port, since))
}

fn wait_start(
    log: &mut Tail,
    name: &str,
    not_pid: Option<i32>,
    limit: Duration,
) -> Result<(i32, u16, Option<f64>)> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        interrupt::check()?;
        for l in log.lines()? {
            if let Some(s) = start_line(&l, name).filter(|s| Some(s.0) != not_pid) {
                return Ok(s);
            }
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    bail!("no start of {name} in the supervisor's log within {limit:?}")
}

fn wait_http(port: u16, limit: Duration) -> Result<()> {
    let until = Instant::now() + limit;
    loop {
        interrupt::check()?;
        if api::get(port, "/time", Duration::from_secs(2)).is_ok() {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("nothing answered HTTP on 127.0.0.1:{port} within {limit:?}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

pub fn run(ctx: &Ctx, restarts: usize) -> Result<TimeserverResult> {
    let ts = ctx
        .bins
        .timeserver
        .clone()
        .context("target/release/timeserver is not built")?;
    let from = api::free_range(38100, 100).context("no 100 free ports from 38100 on 127.0.0.1")?;
    let range = format!("{from}-{}", from + 99);
    let dir = ctx.run_dir("ours-timeserver")?;
    let name = "timeserver";
    let svc = Service {
        id: name.into(),
        argv: vec![
            ts.display().to_string(),
            "--port".into(),
            "{{port}}".into(),
            "--host".into(),
            "127.0.0.1".into(),
        ],
    };
    let opts = OursOpts {
        log_level: None,
        args: vec![format!("--port-range={range}")],
    };
    let mut run = launch::launch(ctx, Kind::Ours, "ours-timeserver", dir, &[svc], &opts)?;
    let mut log = Tail::new(&run.log);
    let (mut pid, port, _) = wait_start(&mut log, name, None, Duration::from_secs(10))
        .with_context(|| run.log_tail(10))?;
    wait_http(port, Duration::from_secs(10))?;
    let mut started = Instant::now();
    let (mut samples, mut since) = (Vec::new(), Vec::new());
    let mut note = None;
    for _ in 0..restarts {
        // Older than --min-uptime: a first restart, not yo-yo mode.
        interrupt::sleep(Duration::from_millis(1200).saturating_sub(started.elapsed()))?;
        let fd = Pidfd::open_now(pid).context("the timeserver is gone")?;
        if procs::exe(pid).as_ref() != Some(&ts) {
            bail!("pid {pid} is not the timeserver");
        }
        let t0 = Instant::now();
        fd.signal(libc::SIGKILL)
            .context("cannot SIGKILL the timeserver")?;
        let step = wait_start(&mut log, name, Some(pid), Duration::from_secs(10)).and_then(
            |(p, port, s)| {
                wait_http(port, Duration::from_secs(10))?;
                Ok((p, s))
            },
        );
        match step {
            Ok((p, s)) => {
                samples.push(t0.elapsed().as_secs_f64() * 1e3);
                since.extend(s);
                pid = p;
                started = Instant::now();
            }
            Err(e) => {
                note = Some(format!("{e:#}"));
                break;
            }
        }
    }
    run.stop();
    Ok(TimeserverResult {
        port_range: range,
        to_http_ms: Summary::of(&samples),
        supervisor_since_death_ms: Summary::of(&since),
        samples_ms: samples,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_lines() {
        let l = "2026-01-01T00:00:00Z  INFO task restarted task=timeserver pid=42 port=8001 generation=2 since_death=0.474ms";
        assert_eq!(start_line(l, "timeserver"), Some((42, 8001, Some(0.474))));
        assert_eq!(start_line(l, "other"), None);
        let l = "2026-01-01T00:00:00Z  INFO task started task=timeserver pid=7 port=8000";
        assert_eq!(start_line(l, "timeserver"), Some((7, 8000, None)));
        assert_eq!(
            start_line("x WARN task died task=timeserver pid=7", "timeserver"),
            None
        );
    }
}
