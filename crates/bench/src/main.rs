//! `bench`: see the crate docs (`src/lib.rs`), `bench --help` and `docs/BENCHMARKS.md`.
use anyhow::{Context, Result};
use bench::cli::{Args, Config};
use bench::install::{self, PeerInfo};
use bench::kind::{Bins, Kind};
use bench::latency::{self, Case, CaseResult};
use bench::launch::{self, Ctx, RUN_VAR};
use bench::proxy_peers::Front;
use bench::report::{KindLatency, Machine, Results};
use bench::scale::{self, ScaleResult};
use bench::{interrupt, procs, proxy, proxy_report, report, timeserver};
use clap::Parser;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The open-files limit for the harness and all it starts (10 000 pidfds in a storm, and the
/// peers' pipes).
const NOFILE: u64 = 65_536;
/// Processes that may run at once in a concurrent scale step (pid_max here is 32 768).
const CONCURRENT_PROCS: usize = 12_000;

fn main() -> ExitCode {
    let args = Args::parse();
    interrupt::install();
    let run_id = launch::new_run_id();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&args, &run_id)));
    // Whatever happened, nothing the run started survives it.
    let (swept, survivors) = procs::kill_marked(RUN_VAR, &run_id, Duration::from_secs(60));
    if swept > 0 {
        eprintln!("bench: final sweep killed {swept} leftover processes");
    }
    if survivors {
        eprintln!("bench: WARNING: some processes of this run survived SIGKILL");
    }
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("bench: {e:#}");
            ExitCode::from(if interrupt::received().is_some() {
                130
            } else {
                1
            })
        }
        Err(_) => ExitCode::from(101),
    }
}

fn run(args: &Args, run_id: &str) -> Result<()> {
    let wall = Instant::now();
    let cfg = args.config();
    if !args.no_build {
        build(cfg.kinds.contains(&Kind::Ours) && cfg.timeserver, cfg.proxy);
    }
    let mut bins = Bins::locate()?;
    if let Some(p) = &args.supervisor {
        bins.supervisor = p
            .canonicalize()
            .with_context(|| format!("no supervisor at {}", p.display()))?;
    }
    eprintln!(
        "bench: task program {} (libc-free, statically linked)",
        bins.bench_task.display()
    );
    let nofile = raise_nofile();
    eprintln!("bench: open-files limit {nofile}");
    let target_dir = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(std::env::temp_dir);
    let peers_wanted: Vec<Kind> = if args.proxy_only {
        Vec::new()
    } else {
        cfg.kinds.iter().copied().filter(|k| k.is_peer()).collect()
    };
    let peers = install::ensure(
        &peers_wanted,
        !args.no_install,
        &target_dir.join("bench-apt.log"),
    );
    for p in &peers {
        match &p.note {
            Some(n) => eprintln!("bench: {}: {n}", p.kind.name()),
            None => eprintln!(
                "bench: {} {}",
                p.kind.name(),
                p.version.as_deref().unwrap_or("(version unknown)")
            ),
        }
    }
    // From here on, nothing the harness starts can escape to init.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "bench: warning: cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let work_root = args.workdir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_root)
        .with_context(|| format!("cannot create {}", work_root.display()))?;
    let work = tempfile::Builder::new()
        .prefix("timeservice-bench-")
        .tempdir_in(&work_root)
        .context("cannot create the work folder")?;
    let work_path = work.path().to_path_buf();
    let _work_guard = if args.keep_dirs {
        let _ = work.keep();
        eprintln!(
            "bench: keeping the temporary folders in {}",
            work_path.display()
        );
        None
    } else {
        Some(work)
    };
    let has_listen = has_api(&bins.supervisor);
    let api = !args.no_api && (args.api || has_listen);
    let ctx = Ctx::new(
        bins,
        run_id.to_string(),
        work_path,
        args.keep_dirs,
        has_listen,
        api,
    );
    let available: Vec<Kind> = cfg
        .kinds
        .iter()
        .copied()
        .filter(|k| !k.is_peer() || peers.iter().any(|p| p.kind == *k && p.available))
        .collect();

    let mut results = Results {
        date_utc: report::utc_now(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: cfg.quick,
        machine: Machine::read(),
        sizes: if cfg.scale {
            cfg.sizes.clone()
        } else {
            Vec::new()
        },
        idle_secs: cfg.idle.as_secs_f64(),
        restarts_per_series: cfg.restarts,
        series: cfg.series,
        kinds: cfg.kinds.clone(),
        task_program: "bench-task, libc-free and statically linked".into(),
        supervisor_binary: format!(
            "{} (built {} UTC)",
            ctx.bins.supervisor.display(),
            std::fs::metadata(&ctx.bins.supervisor)
                .and_then(|m| m.modified())
                .map(report::utc)
                .unwrap_or_default()
        ),
        peers: peers.clone(),
        latency: Vec::new(),
        scale: Vec::new(),
        errors: Vec::new(),
        timeserver: None,
        api_enabled: api,
        api_available: has_listen,
        targets: Vec::new(),
        wall_secs: 0.0,
    };
    if cfg.latency {
        results.latency = latency_phase(&ctx, &cfg, &available)?;
    }
    if cfg.scale {
        scale_phase(&ctx, &cfg, &available, api, &mut results)?;
    }
    if cfg.timeserver && available.contains(&Kind::Ours) {
        eprintln!(
            "bench: timeserver restart latency ({} restarts)",
            cfg.timeserver_restarts
        );
        match timeserver::run(&ctx, cfg.timeserver_restarts) {
            Ok(t) => results.timeserver = Some(t),
            Err(e) => soft_error(&mut results.errors, "timeserver", e)?,
        }
    }
    let proxy = if cfg.proxy {
        proxy_phase(&ctx, &cfg, args, &target_dir, &mut results.errors)?
    } else {
        None
    };
    results.wall_secs = wall.elapsed().as_secs_f64();
    results.check_targets();
    print_and_write(args, &cfg, &results, &peers, &target_dir, proxy.as_ref())
}

/// Our proxy against HAProxy and nginx (issue 16); see `bench::proxy`.
fn proxy_phase(
    ctx: &Ctx,
    cfg: &Config,
    args: &Args,
    target_dir: &Path,
    errors: &mut Vec<String>,
) -> Result<Option<proxy::ProxyResults>> {
    let missing = proxy::ensure_tools(!args.no_install, &target_dir.join("bench-apt.log"));
    if missing.iter().any(|m| m == "wrk") {
        soft_error(errors, "proxy", anyhow::anyhow!("wrk is not installed"))?;
        return Ok(None);
    }
    let peers: Vec<Front> = [(Front::Haproxy, "haproxy"), (Front::Nginx, "nginx")]
        .into_iter()
        .filter(|(_, b)| !missing.iter().any(|m| m == b))
        .map(|(f, _)| f)
        .collect();
    let proxy_bin = ctx.bins.supervisor.with_file_name("proxy");
    eprintln!(
        "bench: proxy: ours ({}) against {}",
        proxy_bin.display(),
        peers
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match proxy::run(ctx, &proxy::Plan::new(cfg.quick), &proxy_bin, &peers) {
        Ok(r) => {
            eprintln!("{}", proxy_report::targets(&r));
            Ok(Some(r))
        }
        Err(e) => {
            soft_error(errors, "proxy", e)?;
            Ok(None)
        }
    }
}

/// Records an error and goes on, unless the run was interrupted.
fn soft_error(errors: &mut Vec<String>, what: &str, e: anyhow::Error) -> Result<()> {
    interrupt::check()?;
    eprintln!("bench: {what}: {e:#}");
    errors.push(format!("{what}: {e:#}"));
    Ok(())
}

fn latency_phase(ctx: &Ctx, cfg: &Config, kinds: &[Kind]) -> Result<Vec<KindLatency>> {
    let plan = latency::Plan {
        restarts: cfg.restarts,
        series: cfg.series,
        stall: cfg.stall,
    };
    let mut out = Vec::new();
    if kinds.contains(&Kind::Ours) {
        eprintln!(
            "bench: latency: ours, case A ({} fresh supervisors × {} series)",
            cfg.restarts, cfg.series
        );
        let mut cases = Vec::new();
        let mut error = None;
        match latency::ours_first_restarts(ctx, plan) {
            Ok(c) => cases.push(c),
            Err(e) => {
                interrupt::check()?;
                error = Some(format!("{e:#}"));
            }
        }
        eprintln!("bench: latency: ours, cases B and C");
        match latency::series_run(ctx, Kind::Ours, &[Case::B, Case::C], plan) {
            Ok(c) => cases.extend(c),
            Err(e) => {
                interrupt::check()?;
                error = Some(format!("{e:#}"));
            }
        }
        print_latency(Kind::Ours, &cases);
        out.push(KindLatency {
            kind: Kind::Ours,
            cases,
            error,
        });
    }
    if kinds.contains(&Kind::Bare) {
        eprintln!("bench: latency: bare waitpid loop (the physical limit)");
        let cases = [Case::A, Case::B, Case::C];
        let r = match latency::series_run(ctx, Kind::Bare, &cases, plan) {
            Ok(c) => {
                print_latency(Kind::Bare, &c);
                KindLatency {
                    kind: Kind::Bare,
                    cases: c,
                    error: None,
                }
            }
            Err(e) => {
                interrupt::check()?;
                KindLatency {
                    kind: Kind::Bare,
                    cases: Vec::new(),
                    error: Some(format!("{e:#}")),
                }
            }
        };
        out.push(r);
    }
    let peers: Vec<Kind> = kinds.iter().copied().filter(|k| k.is_peer()).collect();
    if peers.is_empty() {
        return Ok(out);
    }
    let one = |k: Kind| -> KindLatency {
        match latency::series_run(ctx, k, &[Case::A, Case::B, Case::C], plan) {
            Ok(cases) => {
                print_latency(k, &cases);
                KindLatency {
                    kind: k,
                    cases,
                    error: None,
                }
            }
            Err(e) => KindLatency {
                kind: k,
                cases: Vec::new(),
                error: Some(format!("{e:#}")),
            },
        }
    };
    if cfg.concurrent_peers {
        eprintln!("bench: latency: {} side by side", names(&peers));
        let done: Vec<KindLatency> = std::thread::scope(|s| {
            let handles: Vec<_> = peers.iter().map(|&k| s.spawn(move || one(k))).collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        out.extend(done);
    } else {
        for &k in &peers {
            eprintln!("bench: latency: {}", k.name());
            out.push(one(k));
            interrupt::check()?;
        }
    }
    interrupt::check()?;
    Ok(out)
}

fn names(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_latency(kind: Kind, cases: &[CaseResult]) {
    for c in cases {
        let f = c
            .first
            .map(|s| format!("first {:.3} ms", s.median))
            .unwrap_or_default();
        let a = c
            .all
            .map(|s| {
                format!(
                    "all: median {:.3} ms, p90 {:.3} ms, n={}",
                    s.median, s.p90, s.n
                )
            })
            .unwrap_or_default();
        eprintln!(
            "bench:   {} case {}: {f}; {a}{}",
            kind.name(),
            c.case.label(),
            c.notes().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
}

fn scale_phase(
    ctx: &Ctx,
    cfg: &Config,
    kinds: &[Kind],
    api: bool,
    results: &mut Results,
) -> Result<()> {
    let big = cfg.sizes.iter().copied().max();
    let plan = scale::Plan {
        idle: cfg.idle,
        start_timeout: cfg.scale_timeout,
        storm_timeout: cfg.scale_timeout,
        api_at: if api { big } else { None },
    };
    let mut stopped_at: HashMap<Kind, usize> = HashMap::new();
    let mut sizes = cfg.sizes.clone();
    sizes.sort_unstable();
    for n in sizes {
        let mut active = Vec::new();
        for &k in kinds.iter().filter(|k| **k != Kind::Bare) {
            match stopped_at.get(&k) {
                Some(m) => results.scale.push(ScaleResult::empty(
                    k,
                    n,
                    Some(format!("not run: stopped at N={m}")),
                )),
                None => active.push(k),
            }
        }
        let procs: usize = active.iter().map(|k| (k.procs_per_task() * n) + 1).sum();
        let concurrent = procs <= CONCURRENT_PROCS && active.len() > 1;
        eprintln!(
            "bench: scale N={n}: {} ({})",
            names(&active),
            if concurrent {
                "started one by one, idle window shared"
            } else {
                "one at a time"
            }
        );
        let mut done = Vec::new();
        if concurrent {
            let mut insts = Vec::new();
            for &k in &active {
                if let Some(i) = start_one(
                    ctx,
                    k,
                    n,
                    &plan,
                    &mut stopped_at,
                    &mut done,
                    &mut results.errors,
                )? {
                    insts.push(i);
                }
            }
            eprintln!("bench:   idle window {:.0} s", cfg.idle.as_secs_f64());
            let mut refs: Vec<&mut scale::Instance> = insts.iter_mut().collect();
            if let Err(e) = scale::idle(ctx, &mut refs, cfg.idle) {
                soft_error(&mut results.errors, &format!("idle window at N={n}"), e)?;
            }
            for mut i in insts {
                scale::api(&mut i, 20);
                api_load_one(ctx, &mut i)?;
                storm_one(ctx, &mut i, &plan, &mut results.errors)?;
                done.push(scale::finish(i));
            }
        } else {
            for &k in &active {
                let Some(mut i) = start_one(
                    ctx,
                    k,
                    n,
                    &plan,
                    &mut stopped_at,
                    &mut done,
                    &mut results.errors,
                )?
                else {
                    continue;
                };
                eprintln!(
                    "bench:   {}: idle window {:.0} s",
                    k.name(),
                    cfg.idle.as_secs_f64()
                );
                if let Err(e) = scale::idle(ctx, &mut [&mut i], cfg.idle) {
                    soft_error(
                        &mut results.errors,
                        &format!("{} idle window at N={n}", k.name()),
                        e,
                    )?;
                }
                scale::api(&mut i, 20);
                api_load_one(ctx, &mut i)?;
                storm_one(ctx, &mut i, &plan, &mut results.errors)?;
                done.push(scale::finish(i));
            }
        }
        for r in &done {
            print_scale(r);
        }
        results.scale.extend(done);
    }
    Ok(())
}

fn start_one(
    ctx: &Ctx,
    k: Kind,
    n: usize,
    plan: &scale::Plan,
    stopped_at: &mut HashMap<Kind, usize>,
    done: &mut Vec<ScaleResult>,
    errors: &mut Vec<String>,
) -> Result<Option<scale::Instance>> {
    eprintln!("bench:   {}: starting {n} tasks", k.name());
    match scale::start(ctx, k, n, plan) {
        Ok((Some(i), r)) => {
            eprintln!(
                "bench:   {}: all {n} running after {:.3} s",
                k.name(),
                r.all_running_s.unwrap_or(f64::NAN)
            );
            Ok(Some(i))
        }
        Ok((None, r)) => {
            eprintln!(
                "bench:   {}: {}",
                k.name(),
                r.note.as_deref().unwrap_or("did not start all tasks")
            );
            stopped_at.insert(k, n);
            done.push(r);
            Ok(None)
        }
        Err(e) => {
            stopped_at.insert(k, n);
            soft_error(errors, &format!("{} start at N={n}", k.name()), e)?;
            done.push(ScaleResult::empty(
                k,
                n,
                Some("error at start (see errors)".into()),
            ));
            Ok(None)
        }
    }
}

fn storm_one(
    ctx: &Ctx,
    i: &mut scale::Instance,
    plan: &scale::Plan,
    errors: &mut Vec<String>,
) -> Result<()> {
    let (k, n) = (i.result.kind, i.result.n);
    eprintln!("bench:   {}: storm (SIGKILL all {n})", k.name());
    if let Err(e) = scale::storm(ctx, i, plan.storm_timeout) {
        soft_error(errors, &format!("{} storm at N={n}", k.name()), e)?;
    }
    Ok(())
}

/// Ours at the API's N: restart latency with the API idle, then read back to back.
fn api_load_one(ctx: &Ctx, i: &mut scale::Instance) -> Result<()> {
    if i.result.kind != Kind::Ours || !i.measures_api() {
        return Ok(());
    }
    eprintln!(
        "bench:   ours: restart under API load ({k} SIGKILLs with the API idle, {k} while {} are read back to back)",
        scale::API_LOAD_PATHS.join(" and "),
        k = scale::API_LOAD_KILLS
    );
    scale::api_load(ctx, i, scale::API_LOAD_KILLS)?;
    match (&i.result.api_load, &i.result.api_load_note) {
        (Some(l), _) => eprintln!(
            "bench:   ours: restart under API load: {}",
            report::api_load_text(l)
        ),
        (None, Some(n)) => eprintln!("bench:   ours: restart under API load: {n}"),
        (None, None) => {}
    }
    Ok(())
}

fn print_scale(r: &ScaleResult) {
    let idle = r
        .idle
        .as_ref()
        .map(|i| {
            format!(
                "RSS {:.1} MB (PSS {:.1}), CPU {:.4} %, {:.2} wake-ups/s",
                i.rss_mb, i.pss_mb, i.cpu_pct, i.wakeups_per_s
            )
        })
        .unwrap_or_default();
    let storm = r
        .storm
        .as_ref()
        .map(|s| format!("storm {:?} s, {} lost", s.secs, s.lost))
        .unwrap_or_default();
    eprintln!(
        "bench:   {} N={}: running {:?} s; {idle}; {storm}",
        r.kind.name(),
        r.n,
        r.all_running_s
    );
}

fn print_and_write(
    args: &Args,
    cfg: &Config,
    results: &Results,
    peers: &[PeerInfo],
    target_dir: &Path,
    proxy: Option<&proxy::ProxyResults>,
) -> Result<()> {
    if let Some(p) = proxy {
        let path = target_dir.join("bench-proxy.json");
        let text = serde_json::to_string_pretty(p).context("cannot encode the proxy results")?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.proxy_only {
        let mut md = format!(
            "Run {} UTC on {} cores ({}), Linux {}; {} mode; took {:.0} s.\n\n",
            results.date_utc,
            results.machine.cores,
            results.machine.cpu,
            results.machine.kernel,
            if cfg.quick { "quick" } else { "full" },
            results.wall_secs
        );
        match proxy {
            Some(p) => md.push_str(&proxy_report::markdown(p)),
            None => md.push_str(&format!(
                "The proxy benchmark failed: {:?}\n",
                results.errors
            )),
        }
        println!("{md}");
        let md_path = args
            .markdown
            .clone()
            .unwrap_or_else(|| target_dir.join("bench-proxy.md"));
        std::fs::write(&md_path, &md)
            .with_context(|| format!("cannot write {}", md_path.display()))?;
        eprintln!(
            "bench: results in {} and {}",
            target_dir.join("bench-proxy.json").display(),
            md_path.display()
        );
        return Ok(());
    }
    let mut md = String::new();
    md.push_str(&format!(
        "Run {} UTC on {} cores ({}), {:.0} GiB, Linux {}; {} mode; {} restarts × {} series per case; idle window {:.0} s; took {:.0} s.\n\n",
        results.date_utc,
        results.machine.cores,
        results.machine.cpu,
        results.machine.memory_gib,
        results.machine.kernel,
        if cfg.quick { "quick" } else { "full" },
        cfg.restarts,
        cfg.series,
        cfg.idle.as_secs_f64(),
        results.wall_secs
    ));
    let versions: Vec<String> = peers
        .iter()
        .map(|p| format!("{} {}", p.kind.name(), p.version.as_deref().unwrap_or("?")))
        .collect();
    md.push_str(&format!(
        "Ours: {}. Task program: {}. Load average at start: {}.\n\n",
        results.supervisor_binary, results.task_program, results.machine.loadavg_at_start
    ));
    if !versions.is_empty() {
        md.push_str(&format!(
            "Peers (Debian packages): {}.\n\n",
            versions.join(", ")
        ));
    }
    md.push_str("Cells: median (p10–p90); first restart of the peers: median (min–max) over the series. Ratio: ours against the best peer in that row.\n\n");
    md.push_str(&results.table());
    md.push_str("\nTargets (issue 6, item 2):\n\n```\n");
    md.push_str(&results.targets_text());
    md.push_str("```\n");
    let notes = results.notes_text();
    if !notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        md.push_str(&notes);
    }
    if let Some(p) = proxy {
        md.push('\n');
        md.push_str(&proxy_report::markdown(p));
    }
    println!("{md}");
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-results.json"));
    let text = serde_json::to_string_pretty(results).context("cannot encode the results")?;
    std::fs::write(&json, text).with_context(|| format!("cannot write {}", json.display()))?;
    let md_path: PathBuf = args
        .markdown
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-results.md"));
    std::fs::write(&md_path, &md).with_context(|| format!("cannot write {}", md_path.display()))?;
    eprintln!(
        "bench: results in {} and {}",
        json.display(),
        md_path.display()
    );
    Ok(())
}

/// Builds what the harness runs, when started through cargo (`CARGO` is set). A failed build is
/// not fatal when an older binary exists; `Bins::locate` says what is missing.
fn build(timeserver: bool, proxy: bool) {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return;
    };
    let workspace = |line: &str| {
        let mut cmd = Command::new(&cargo);
        cmd.args(args_of(line));
        cmd
    };
    let mut steps = vec![workspace(
        "build --release -p supervisor -p bench --bin supervisor --bin bench-baseline",
    )];
    if timeserver {
        steps.push(workspace("build --release -p timeserver --bin timeserver"));
    }
    if proxy {
        steps.push(workspace(
            "build --release -p proxy -p timeserver --bin proxy --bin timeserver",
        ));
    }
    // The task program: libc-free, a package of its own outside the workspace.
    steps.push(bench::task::build_command(&cargo));
    for mut cmd in steps {
        let line = bench::task::describe(&cmd);
        eprintln!("bench: cargo {line}");
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!(
                "bench: warning: cargo {line} failed ({s}); using the binaries already built, if any"
            ),
            Err(e) => eprintln!("bench: warning: cannot run cargo: {e}"),
        }
    }
}

fn args_of(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(str::to_string).collect()
}

/// True when our supervisor has the HTTP API (`--listen` in its help).
fn has_api(supervisor: &Path) -> bool {
    Command::new(supervisor)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--listen"))
}

/// Raises RLIMIT_NOFILE (the hard limit too when allowed: root with CAP_SYS_RESOURCE); returns
/// the soft limit now in force.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid rlimit structs.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let want = NOFILE.max(lim.rlim_cur);
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}
