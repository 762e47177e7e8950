//! The proxy benchmark of issue 16: our `proxy` against HAProxy and nginx from Debian, in one
//! run, in front of the same two time servers (no simulated delay) under our supervisor.
//!
//! For each front door, one after the other:
//! 1. most requests per second: `wrk -t1 -c32` on `/time`, and the front door's own CPU time
//!    during the run, from `/proc`: requests per CPU-second is the per-core figure (every
//!    front door runs one thread; wrk and the time servers share the machine's two cores);
//! 2. latency at a fixed rate (our paced generator, 16 connections): p50 and p99 through the
//!    front door, minus the same run straight to the time servers, is the added latency;
//! 3. kill during load: the same fixed rate while the time servers are SIGKILLed in turn every
//!    1.5 s; the supervisor restarts each on the next port of its range. Every non-2xx answer
//!    and every transport error counts.
//!
//! Then, ours only: how long from a SIGKILL until the proxy lists the replacement's new port.
use crate::api;
use crate::interrupt;
use crate::kind::Kind;
use crate::launch::{self, Ctx, OursOpts, Service};
use crate::procs::{self, Pidfd};
use crate::proxy_load::{self, Paced, Wrk};
use crate::proxy_peers::{self, Backends, Front};
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The run's lengths.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub wrk_runs: usize,
    pub wrk_secs: u64,
    pub wrk_conns: usize,
    pub rate: f64,
    pub conns: usize,
    pub latency_secs: u64,
    pub kill_secs: u64,
    pub kill_every_ms: u64,
    pub follow_kills: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        Plan {
            wrk_runs: if quick { 1 } else { 3 },
            wrk_secs: if quick { 5 } else { 8 },
            wrk_conns: 32,
            rate: 1000.0,
            conns: 16,
            latency_secs: if quick { 5 } else { 10 },
            kill_secs: if quick { 9 } else { 15 },
            kill_every_ms: 1500,
            follow_kills: if quick { 5 } else { 10 },
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub front: String,
    pub version: Option<String>,
    pub wrk: Vec<Wrk>,
    /// Median requests per second over the wrk runs.
    pub rps: Option<f64>,
    /// Requests per CPU-second of the front door (median over the wrk runs).
    pub rps_per_core: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub added_p50_ms: Option<f64>,
    pub added_p99_ms: Option<f64>,
    pub latency_errors: Option<u64>,
    pub kill: Option<Paced>,
    pub kills: usize,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyResults {
    pub plan: Plan,
    pub port_range: String,
    pub direct: Row,
    pub rows: Vec<Row>,
    /// Ours: SIGKILL of a time server → its new port in the proxy's `/backends`, ms.
    pub follow_ms: Option<Summary>,
    pub follow_samples_ms: Vec<f64>,
    pub notes: Vec<String>,
}

const TOOLS: [(&str, &str); 4] = [
    ("haproxy", "haproxy"),
    ("nginx", "nginx-light"),
    ("wrk", "wrk"),
    ("h2load", "nghttp2-client"),
];

/// The tools the proxy benchmark needs, installed from Debian when missing.
pub fn ensure_tools(install: bool, log: &Path) -> Vec<String> {
    crate::install::ensure_binaries(&TOOLS, install, log)
}

fn get_body(addr: &str, path: &str) -> Result<String> {
    let sa: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {path} on {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_string())
}

/// (name, pid, port) of the running tasks, from the supervisor's `GET /tasks`.
fn running(api: &str) -> Result<Vec<(String, i32, u16)>> {
    let tasks: serde_json::Value = serde_json::from_str(&get_body(api, "/tasks")?)?;
    Ok(tasks
        .as_array()
        .context("GET /tasks is not a list")?
        .iter()
        .filter(|t| t["state"] == "running")
        .filter_map(|t| {
            Some((
                t["name"].as_str()?.to_string(),
                t["pid"].as_i64()? as i32,
                t["port"].as_u64()? as u16,
            ))
        })
        .collect())
}

/// Waits until both time servers run and answer; their (name, pid, port), sorted.
fn both_serving(api: &str) -> Result<Vec<(String, i32, u16)>> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        interrupt::check()?;
        if let Ok(mut r) = running(api) {
            r.sort();
            if r.len() == 2
                && r.iter().all(|(_, _, p)| {
                    matches!(api::get(*p, "/about", Duration::from_secs(1)), Ok((200, _)))
                })
            {
                return Ok(r);
            }
        }
        if Instant::now() > until {
            bail!("the two time servers did not come up within 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs the time server `name` (checked to be the time server through a pidfd).
fn kill(api: &str, name: &str, timeserver: &Path) -> Result<i32> {
    let (_, pid, _) = both_serving(api)?
        .into_iter()
        .find(|(n, _, _)| n == name)
        .with_context(|| format!("{name} is not running"))?;
    let fd = Pidfd::open_now(pid).with_context(|| format!("{name} (pid {pid}) is gone"))?;
    if procs::exe(pid).as_deref() != Some(timeserver) {
        bail!("pid {pid} is not the time server");
    }
    fd.signal(libc::SIGKILL).context("SIGKILL")?;
    Ok(pid)
}

pub fn run(ctx: &Ctx, plan: &Plan, proxy_bin: &Path, peers_ok: &[Front]) -> Result<ProxyResults> {
    let ts = ctx
        .bins
        .timeserver
        .clone()
        .context("target/release/timeserver is not built")?;
    let from = api::free_range(38300, 6).context("no 6 free ports from 38300 on 127.0.0.1")?;
    let range: Vec<u16> = (from..from + 6).collect();
    let api_port = api::free_port()?;
    let dir = ctx.run_dir("proxy-backends")?;
    let root: PathBuf = dir.path.clone();
    let services: Vec<Service> = ["timeserver-1", "timeserver-2"]
        .iter()
        .map(|n| Service {
            id: n.to_string(),
            argv: vec![ts.display().to_string(), "--port".into(), "{{port}}".into()],
        })
        .collect();
    let opts = OursOpts {
        log_level: None,
        args: vec![
            format!("--port-range={from}-{}", from + 5),
            format!("--listen=127.0.0.1:{api_port}"),
        ],
    };
    let mut sup = launch::launch(ctx, Kind::Ours, "proxy-backends", dir, &services, &opts)?;
    let api = format!("127.0.0.1:{api_port}");
    let mut out = ProxyResults {
        plan: plan.clone(),
        port_range: format!("{from}-{}", from + 5),
        direct: Row {
            front: "direct".into(),
            ..Row::default()
        },
        rows: Vec::new(),
        follow_ms: None,
        follow_samples_ms: Vec::new(),
        notes: Vec::new(),
    };
    let serving = both_serving(&api).with_context(|| sup.log_tail(10))?;
    let targets: Vec<SocketAddr> = serving
        .iter()
        .map(|(_, _, p)| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    eprintln!(
        "bench: proxy: straight to the time servers at {} req/s",
        plan.rate
    );
    let direct = proxy_load::paced(
        &targets,
        "/time",
        plan.conns,
        plan.rate,
        Duration::from_secs(plan.latency_secs),
    );
    out.direct.p50_ms = direct.quantile_ms(0.5);
    out.direct.p99_ms = direct.quantile_ms(0.99);
    out.direct.latency_errors = Some(direct.errors());
    for front in Front::ALL {
        if front != Front::Ours && !peers_ok.contains(&front) {
            out.rows.push(Row {
                front: front.name().into(),
                error: Some("not installed".into()),
                ..Row::default()
            });
            continue;
        }
        let mut row = Row {
            front: front.name().into(),
            version: version(front),
            ..Row::default()
        };
        if let Err(e) = measure(
            ctx,
            plan,
            front,
            &api,
            &root,
            proxy_bin,
            &ts,
            &range,
            &out.direct,
            &mut row,
        ) {
            interrupt::check()?;
            eprintln!("bench: proxy: {}: {e:#}", front.name());
            row.error = Some(format!("{e:#}"));
        }
        out.rows.push(row);
    }
    eprintln!(
        "bench: proxy: ours, SIGKILL → new port in /backends ({} kills)",
        plan.follow_kills
    );
    match follow(ctx, plan, &api, &root, proxy_bin, &ts) {
        Ok(s) => {
            out.follow_ms = Summary::of(&s);
            out.follow_samples_ms = s;
        }
        Err(e) => {
            interrupt::check()?;
            out.notes.push(format!("follow: {e:#}"));
        }
    }
    sup.stop();
    Ok(out)
}

fn version(front: Front) -> Option<String> {
    match front {
        Front::Ours => Some(env!("CARGO_PKG_VERSION").to_string()),
        Front::Haproxy => crate::install::package_version("haproxy"),
        Front::Nginx => crate::install::package_version("nginx-light")
            .or_else(|| crate::install::package_version("nginx")),
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    ctx: &Ctx,
    plan: &Plan,
    front: Front,
    api: &str,
    root: &Path,
    proxy_bin: &Path,
    ts: &Path,
    range: &[u16],
    direct: &Row,
    row: &mut Row,
) -> Result<()> {
    let ports: Vec<u16> = both_serving(api)?.iter().map(|(_, _, p)| *p).collect();
    let b = Backends {
        api: api.to_string(),
        pattern: "timeserver-*".into(),
        ports,
    };
    let mut p = proxy_peers::start(
        ctx,
        front,
        &b,
        proxy_bin,
        &root.join(format!("{}-perf", front.name())),
    )?;
    let url = format!("http://127.0.0.1:{}/time", p.port);
    let mut per_core = Vec::new();
    let mut rps = Vec::new();
    for i in 0..plan.wrk_runs {
        eprintln!(
            "bench: proxy: {}: wrk run {}/{}",
            front.name(),
            i + 1,
            plan.wrk_runs
        );
        let cpu0 = p.cpu_secs();
        let w = proxy_load::wrk(&url, plan.wrk_conns, plan.wrk_secs)?;
        let cpu = p.cpu_secs() - cpu0;
        rps.push(w.rps);
        if cpu > 0.0 {
            per_core.push(w.requests as f64 / cpu);
        }
        row.wrk.push(w);
        interrupt::check()?;
    }
    row.rps = Summary::of(&rps).map(|s| s.median);
    row.rps_per_core = Summary::of(&per_core).map(|s| s.median);
    eprintln!(
        "bench: proxy: {}: {} req/s for {} s",
        front.name(),
        plan.rate,
        plan.latency_secs
    );
    let target = [SocketAddr::from(([127, 0, 0, 1], p.port))];
    let lat = proxy_load::paced(
        &target,
        "/time",
        plan.conns,
        plan.rate,
        Duration::from_secs(plan.latency_secs),
    );
    row.p50_ms = lat.quantile_ms(0.5);
    row.p99_ms = lat.quantile_ms(0.99);
    row.latency_errors = Some(lat.errors());
    row.added_p50_ms = row.p50_ms.zip(direct.p50_ms).map(|(a, b)| a - b);
    row.added_p99_ms = row.p99_ms.zip(direct.p99_ms).map(|(a, b)| a - b);
    p.stop();

    // The kill run: peers know every port of the range.
    let b = Backends {
        ports: range.to_vec(),
        ..b
    };
    let mut p = proxy_peers::start(
        ctx,
        front,
        &b,
        proxy_bin,
        &root.join(format!("{}-kill", front.name())),
    )?;
    eprintln!(
        "bench: proxy: {}: {} req/s for {} s, a time server SIGKILLed every {} ms",
        front.name(),
        plan.rate,
        plan.kill_secs,
        plan.kill_every_ms
    );
    let target = [SocketAddr::from(([127, 0, 0, 1], p.port))];
    let (rate, conns, secs) = (plan.rate, plan.conns, plan.kill_secs);
    let load = std::thread::spawn(move || {
        proxy_load::paced(&target, "/time", conns, rate, Duration::from_secs(secs))
    });
    let started = Instant::now();
    let mut turn = 0;
    let mut kill_error = None;
    while started.elapsed() + Duration::from_millis(plan.kill_every_ms)
        < Duration::from_secs(plan.kill_secs)
    {
        std::thread::sleep(Duration::from_millis(plan.kill_every_ms));
        let name = ["timeserver-1", "timeserver-2"][turn];
        match kill(api, name, ts) {
            Ok(_) => row.kills += 1,
            Err(e) => {
                kill_error = Some(e);
                break;
            }
        }
        turn = 1 - turn;
    }
    let seen = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
    row.kill = Some(seen);
    p.stop();
    if let Some(e) = kill_error {
        return Err(e.context("killing a time server"));
    }
    Ok(())
}

/// Ours with its admin address: SIGKILL → the replacement's port listed in `/backends`.
fn follow(
    ctx: &Ctx,
    plan: &Plan,
    api: &str,
    root: &Path,
    proxy_bin: &Path,
    ts: &Path,
) -> Result<Vec<f64>> {
    let admin = format!("127.0.0.1:{}", api::free_port()?);
    let dir = root.join("ours-follow");
    std::fs::create_dir_all(&dir)?;
    let port = api::free_port()?;
    let mark = format!("{}-follow", ctx.run_id);
    let mut child = std::process::Command::new(proxy_bin)
        .args([
            &format!("--listen=127.0.0.1:{port}"),
            &format!("--admin={admin}"),
            "--access-log=off",
            &format!("--backends=supervisor:http://{api}/timeserver-*"),
        ])
        .env(launch::RUN_VAR, &ctx.run_id)
        .env(launch::MARK_VAR, &mark)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .spawn()
        .context("cannot start the proxy")?;
    let result = (|| -> Result<Vec<f64>> {
        let mut samples = Vec::new();
        for i in 0..plan.follow_kills {
            interrupt::sleep(Duration::from_millis(1200))?;
            let name = ["timeserver-1", "timeserver-2"][i % 2];
            let before = both_serving(api)?;
            let listed = |port: u16| {
                get_body(&admin, "/backends")
                    .is_ok_and(|b| b.contains(&format!("127.0.0.1:{port}\"")))
            };
            let old = before
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|t| t.2)
                .context("no task")?;
            let until = Instant::now() + Duration::from_secs(10);
            while !listed(old) {
                if Instant::now() > until {
                    bail!("the proxy never listed {name} on port {old}");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let t0 = Instant::now();
            let pid = kill(api, name, ts)?;
            let port = loop {
                if let Some((_, _, p)) = running(api)?
                    .into_iter()
                    .find(|(n, p, _)| n == name && *p != pid)
                {
                    break p;
                }
                if t0.elapsed() > Duration::from_secs(10) {
                    bail!("{name} was not restarted within 10 s");
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            while !listed(port) {
                if t0.elapsed() > Duration::from_secs(10) {
                    bail!("the proxy did not list {name}'s new port {port} within 10 s");
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            samples.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        Ok(samples)
    })();
    procs::kill_marked(launch::MARK_VAR, &mark, Duration::from_secs(10));
    let _ = child.wait();
    result
}
