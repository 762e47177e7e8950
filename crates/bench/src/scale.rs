//! Scale: N idle tasks (`bench-task --mode sleep`) under one supervisor instance.
//!
//! - **All running**: from just before the supervisor starts to the last task's own start
//!   record (bounded; a peer that does not get there says how far it got).
//! - **Idle**: over the idle window, summed over the supervisor's own processes (one for ours
//!   and supervisord, one per service plus the scanner for runit, s6 and daemontools): CPU time
//!   (`/proc/PID/task/*/schedstat`), wake-ups (voluntary + involuntary context switches of every
//!   thread) and, at the end, VmRSS (and PSS, which does not count shared pages N times).
//! - **Storm**: SIGKILL every task at once (through pidfds opened beforehand), then the time
//!   until every task has a new start record; tasks without one are lost.
//! - **Restart under API load** (ours, at the largest N, with the API): SIGKILL → replacement's
//!   start of one task at a time (as case C of the latency phase), first with the API idle, then
//!   while two clients read `GET /tasks` and `GET /metrics` back to back (see [`api_load`]).
use crate::api::{self, Hammered};
use crate::interrupt;
use crate::kind::Kind;
use crate::latency;
use crate::launch::{self, Ctx, OursOpts, Running, StopReport};
use crate::procs::{self, Delta, Pidfd, Sample};
use crate::records::{self, Latest, Reader};
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Waiting for tasks to start ends early after this long without a new one.
const STALL: Duration = Duration::from_secs(15);

/// Tasks must have run this long before the storm, so that no death counts as a quick one.
const MIN_AGE_BEFORE_STORM: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Serialize)]
pub struct Idle {
    pub secs: f64,
    pub supervisor_processes: usize,
    pub rss_mb: f64,
    pub pss_mb: f64,
    pub cpu_pct: f64,
    pub wakeups_per_s: f64,
    /// Ours: over the idle window without the moments of a checkpoint (see [`idle`]).
    pub cpu_excl_checkpoint_pct: Option<f64>,
    pub wakeups_excl_checkpoint_per_s: Option<f64>,
    pub checkpoints: Option<usize>,
    pub delta: Delta,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    pub killed: usize,
    pub replaced: usize,
    pub lost: usize,
    /// From the first SIGKILL to the last replacement's start.
    pub secs: Option<f64>,
    /// Task processes alive a moment after the storm (more than N: duplicates).
    pub live_after: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// `took_ms` of the supervisor's own "checkpoint written" lines (write, fsync, rename,
    /// fsync of the folder, on the writer thread).
    pub write_ms: Summary,
    pub bytes: u64,
    /// Event-loop CPU per checkpoint over the idle window: building and encoding the document,
    /// which happens on the event loop before the write.
    pub main_thread_cpu_ms_per_checkpoint: Option<f64>,
}

/// Restart latency while the HTTP API is read continuously (ours only; see [`api_load`]).
#[derive(Debug, Clone, Serialize)]
pub struct ApiLoad {
    pub method: String,
    /// SIGKILL → the replacement's start, ms, with nothing reading the API, in kill order.
    pub idle_samples_ms: Vec<f64>,
    pub idle_ms: Option<Summary>,
    /// The same, while the clients read the API back to back.
    pub loaded_samples_ms: Vec<f64>,
    pub loaded_ms: Option<Summary>,
    /// The tasks killed, in order (distinct: every death is a first one, after a long run).
    pub idle_victims: Vec<String>,
    pub loaded_victims: Vec<String>,
    /// One entry per client thread.
    pub clients: Vec<Hammered>,
    /// From the start of the clients to their end.
    pub load_secs: f64,
    /// Requests answered 200 per second, all clients together.
    pub requests_per_s: f64,
    /// Task processes alive after the measurement (must be N: the storm expects all running).
    pub running_after: usize,
    /// What fell short (a kill series cut off, request errors, tasks not running after).
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScaleResult {
    pub kind: Kind,
    pub n: usize,
    pub reached: usize,
    pub all_running_s: Option<f64>,
    pub note: Option<String>,
    pub idle: Option<Idle>,
    pub storm: Option<Storm>,
    pub checkpoint: Option<Checkpoint>,
    pub api_tasks_ms: Option<Summary>,
    pub api_note: Option<String>,
    pub api_load: Option<ApiLoad>,
    /// Why [`ScaleResult::api_load`] is missing.
    pub api_load_note: Option<String>,
    pub stop: Option<StopReport>,
}

impl ScaleResult {
    /// A result with nothing measured (yet), e.g. for a peer skipped at this N.
    pub fn empty(kind: Kind, n: usize, note: Option<String>) -> ScaleResult {
        ScaleResult {
            kind,
            n,
            reached: 0,
            all_running_s: None,
            note,
            idle: None,
            storm: None,
            checkpoint: None,
            api_tasks_ms: None,
            api_note: None,
            api_load: None,
            api_load_note: None,
            stop: None,
        }
    }
}

/// What the scale phase needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub idle: Duration,
    pub start_timeout: Duration,
    pub storm_timeout: Duration,
    /// Measure `GET /tasks` on ours at this N (with `--listen`).
    pub api_at: Option<usize>,
}

/// A started instance and what is known about its tasks.
pub struct Instance {
    pub run: Running,
    pub result: ScaleResult,
    reader: Reader,
    latest: Latest,
    /// Measure `GET /tasks` on this instance.
    api_at: bool,
}

impl Instance {
    /// True when the API rows are measured on this instance (ours, at the API's N).
    pub fn measures_api(&self) -> bool {
        self.api_at
    }

    fn refresh(&mut self) -> Result<Vec<records::Record>> {
        let r = self.reader.poll()?;
        self.latest.add(&r);
        Ok(r)
    }
}

/// Starts `kind` with `n` sleeping tasks and waits until all run (or the time is up).
/// `None` in the instance slot when it did not get there (it is then already stopped).
pub fn start(
    ctx: &Ctx,
    kind: Kind,
    n: usize,
    plan: &Plan,
) -> Result<(Option<Instance>, ScaleResult)> {
    let label = format!("{}-n{n}", kind.name());
    let dir = ctx.run_dir(&label)?;
    let records_path = dir.records();
    let extra = ["--mode".to_string(), "sleep".to_string()];
    let services: Vec<_> = (0..n)
        .map(|i| ctx.task(&format!("s{i}"), &records_path, &extra))
        .collect();
    let opts = OursOpts {
        log_level: Some("debug"),
        args: Vec::new(),
    };
    let mut result = ScaleResult::empty(kind, n, None);
    let run = launch::launch(ctx, kind, &label, dir, &services, &opts)?;
    let mut inst = Instance {
        reader: Reader::new(&run.records),
        run,
        result: result.clone(),
        latest: Latest::default(),
        api_at: plan.api_at == Some(n),
    };
    let mut first: HashMap<String, u128> = HashMap::new();
    let until = Instant::now() + plan.start_timeout;
    let mut progress = Instant::now();
    let mut stalled = false;
    while first.len() < n && Instant::now() < until {
        interrupt::check()?;
        for r in inst.refresh()? {
            if r.kind == records::Kind::Start && !first.contains_key(&r.id) {
                first.insert(r.id, r.ns);
                progress = Instant::now();
            }
        }
        if !inst.run.alive() {
            break;
        }
        // A peer that hit a limit of its own (runit's and daemontools' 1 000 services) starts
        // nothing more: no need to wait for the whole time limit.
        if progress.elapsed() > STALL {
            stalled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    result.reached = first.len();
    if first.len() == n {
        let last = first.values().copied().max().unwrap_or(inst.run.started_ns);
        result.all_running_s = Some(last.saturating_sub(inst.run.started_ns) as f64 / 1e9);
        inst.result = result.clone();
        return Ok((Some(inst), result));
    }
    let why = if stalled {
        format!("(no new task for {:.0} s)", STALL.as_secs_f64())
    } else if inst.run.alive() {
        format!("after {:.0} s", plan.start_timeout.as_secs_f64())
    } else {
        "(it exited)".to_string()
    };
    let tail = inst.run.log_tail(3).replace('\n', " | ");
    result.note = Some(format!(
        "only {} of {n} running {why}; log: {}",
        first.len(),
        tail.trim()
    ));
    result.stop = Some(inst.run.stop());
    Ok((None, result))
}

/// Waits until every task has run at least [`MIN_AGE_BEFORE_STORM`].
fn wait_until_aged(inst: &mut Instance) -> Result<()> {
    inst.refresh()?;
    let youngest = inst.latest.starts.values().map(|r| r.ns).max().unwrap_or(0);
    let age = launch::now_ns().saturating_sub(youngest);
    let want = MIN_AGE_BEFORE_STORM.as_nanos();
    if age < want {
        interrupt::sleep(Duration::from_nanos((want - age) as u64))?;
    }
    Ok(())
}

/// Measures every instance over the same idle window.
///
/// Ours also gets its threads sampled every [`FINE_STEP`]: a step in which its checkpoint
/// writer thread ran, and the steps either side of it (where the event loop built and encoded
/// the document, and took the writer's answer), count as checkpoint time; the rest gives CPU
/// and wake-ups "apart from the checkpoint".
pub fn idle(ctx: &Ctx, insts: &mut [&mut Instance], window: Duration) -> Result<()> {
    for i in insts.iter_mut() {
        wait_until_aged(i)?;
    }
    let mut starts: Vec<(Vec<i32>, Sample, u64)> = Vec::new();
    for i in insts.iter() {
        let pids = i.run.supervisor_pids(&ctx.bins);
        let log_at = std::fs::metadata(&i.run.log).map(|m| m.len()).unwrap_or(0);
        let s = procs::sample(&pids, false);
        starts.push((pids, s, log_at));
    }
    let mut fine: Vec<Vec<Fine>> = vec![Vec::new(); insts.len()];
    let until = Instant::now() + window;
    loop {
        for (i, f) in insts.iter().zip(fine.iter_mut()) {
            if i.run.kind == Kind::Ours {
                f.extend(Fine::sample(i.run.root_pid));
            }
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        interrupt::sleep(FINE_STEP.min(until - now))?;
    }
    for ((i, (pids, a, log_at)), f) in insts.iter_mut().zip(starts).zip(fine) {
        let b = procs::sample(&pids, true);
        let d = procs::delta(&a, &b);
        let secs = d.secs.max(1e-9);
        let mut idle = Idle {
            secs: d.secs,
            supervisor_processes: d.processes,
            rss_mb: d.rss_kb as f64 / 1024.0,
            pss_mb: d.pss_kb as f64 / 1024.0,
            cpu_pct: d.cpu_ns as f64 / (secs * 1e9) * 100.0,
            wakeups_per_s: d.switches as f64 / secs,
            cpu_excl_checkpoint_pct: None,
            wakeups_excl_checkpoint_per_s: None,
            checkpoints: None,
            delta: d.clone(),
        };
        if i.run.kind == Kind::Ours {
            let lines = checkpoint_lines(&i.run.log, log_at);
            idle.checkpoints = Some(lines.len());
            if let Some((cpu_pct, wakeups)) = Fine::apart_from_checkpoint(&f) {
                idle.cpu_excl_checkpoint_pct = Some(cpu_pct);
                idle.wakeups_excl_checkpoint_per_s = Some(wakeups);
            }
            let all = if lines.is_empty() {
                checkpoint_lines(&i.run.log, 0)
            } else {
                lines.clone()
            };
            let ms: Vec<f64> = all.iter().map(|(ms, _)| *ms).collect();
            if let Some(write_ms) = Summary::of(&ms) {
                i.result.checkpoint = Some(Checkpoint {
                    write_ms,
                    bytes: all.last().map(|(_, b)| *b).unwrap_or(0),
                    main_thread_cpu_ms_per_checkpoint: Fine::loop_cpu_per_checkpoint(
                        &f,
                        lines.len(),
                    ),
                });
            }
        }
        i.result.idle = Some(idle);
    }
    Ok(())
}

/// How often ours' threads are sampled during the idle window.
const FINE_STEP: Duration = Duration::from_millis(100);

/// One sample of ours' threads: the checkpoint writer, and everything else.
#[derive(Debug, Clone, Copy)]
struct Fine {
    at: Instant,
    writer_cpu: u64,
    writer_switches: u64,
    rest_cpu: u64,
    rest_switches: u64,
}

impl Fine {
    fn sample(pid: i32) -> Option<Fine> {
        let u = procs::proc_use(pid, false)?;
        let mut f = Fine {
            at: Instant::now(),
            writer_cpu: 0,
            writer_switches: 0,
            rest_cpu: 0,
            rest_switches: 0,
        };
        for t in u.threads.values() {
            if t.name.starts_with("checkpoint") {
                f.writer_cpu += t.cpu_ns;
                f.writer_switches += t.switches;
            } else {
                f.rest_cpu += t.cpu_ns;
                f.rest_switches += t.switches;
            }
        }
        Some(f)
    }

    /// Steps in which the writer ran, with their neighbours.
    fn checkpoint_steps(f: &[Fine]) -> Vec<bool> {
        let steps = f.len().saturating_sub(1);
        let active: Vec<bool> = (0..steps)
            .map(|k| {
                f[k + 1].writer_cpu != f[k].writer_cpu
                    || f[k + 1].writer_switches != f[k].writer_switches
            })
            .collect();
        (0..steps)
            .map(|k| {
                active[k] || (k > 0 && active[k - 1]) || active.get(k + 1).copied().unwrap_or(false)
            })
            .collect()
    }

    /// (CPU %, wake-ups/s) of all threads but the writer, over the steps without a checkpoint.
    fn apart_from_checkpoint(f: &[Fine]) -> Option<(f64, f64)> {
        let marked = Fine::checkpoint_steps(f);
        let (mut secs, mut cpu, mut sw) = (0.0, 0u64, 0u64);
        for (k, m) in marked.iter().enumerate() {
            if !m {
                secs += f[k + 1].at.duration_since(f[k].at).as_secs_f64();
                cpu += f[k + 1].rest_cpu.saturating_sub(f[k].rest_cpu);
                sw += f[k + 1].rest_switches.saturating_sub(f[k].rest_switches);
            }
        }
        (secs > 0.0).then(|| (cpu as f64 / (secs * 1e9) * 100.0, sw as f64 / secs))
    }

    /// CPU of the non-writer threads in the checkpoint steps, per checkpoint: building and
    /// encoding the document on the event loop.
    fn loop_cpu_per_checkpoint(f: &[Fine], checkpoints: usize) -> Option<f64> {
        if checkpoints == 0 {
            return None;
        }
        let marked = Fine::checkpoint_steps(f);
        let cpu: u64 = marked
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .map(|(k, _)| f[k + 1].rest_cpu.saturating_sub(f[k].rest_cpu))
            .sum();
        Some(cpu as f64 / 1e6 / checkpoints as f64)
    }
}

/// `(took_ms, bytes)` of the "checkpoint written" lines after byte `from` of the log.
fn checkpoint_lines(log: &std::path::Path, from: u64) -> Vec<(f64, u64)> {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned();
    tail.lines()
        .filter(|l| l.contains("checkpoint written"))
        .filter_map(|l| {
            Some((
                field(l, "took_ms")?.parse().ok()?,
                field(l, "bytes")?.parse().ok()?,
            ))
        })
        .collect()
}

/// The value of `key=value` in a log line (unquoted values).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

/// `GET /tasks` on ours at the N chosen for it (when it runs the API).
pub fn api(inst: &mut Instance, reps: usize) {
    if !inst.api_at {
        return;
    }
    let Some(port) = inst.run.api_port else {
        inst.result.api_note = Some("the supervisor has no --listen".into());
        return;
    };
    match api::tasks_latency(port, reps) {
        Ok(s) => inst.result.api_tasks_ms = Some(s),
        Err(e) => inst.result.api_note = Some(format!("{e:#}")),
    }
}

/// SIGKILLs per half of [`api_load`] (idle API, then under load).
pub const API_LOAD_KILLS: usize = 20;
/// The paths the load clients read, one client thread each.
pub const API_LOAD_PATHS: [&str; 2] = ["/tasks", "/metrics"];
/// Pause after a replacement's start before the next kill. Ours checkpoints a change 100 ms
/// after it (its `checkpoint_coalesce`), and building the changed document holds its event loop
/// for about 10 ms at 10 000 tasks: after a 50 ms pause every other kill fell into the previous
/// restart's checkpoint (0.4 ms, then 10–15 ms, in turn, with the API idle). 200 ms keeps the
/// checkpoint out of the samples, so the two halves differ by the API load only.
const API_LOAD_SETTLE: Duration = Duration::from_millis(200);
/// How long the clients run before the first kill under load.
const API_LOAD_WARMUP: Duration = Duration::from_millis(300);
/// A replacement that has not started after this long cuts the series off.
const API_LOAD_RESTART_LIMIT: Duration = Duration::from_secs(10);

/// `count` distinct ids spread evenly over `ids` sorted (all of them if there are fewer).
pub fn pick_victims(ids: &[String], count: usize) -> Vec<String> {
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let count = count.min(sorted.len());
    (0..count)
        .map(|j| sorted[j * sorted.len() / count].clone())
        .collect()
}

/// Splits `victims` into two interleaved halves (every other one), so that both spread alike.
pub fn halves(victims: &[String]) -> (Vec<String>, Vec<String>) {
    let (a, b): (Vec<_>, Vec<_>) = victims.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    (
        a.into_iter().map(|(_, v)| v.clone()).collect(),
        b.into_iter().map(|(_, v)| v.clone()).collect(),
    )
}

/// A pidfd of the running `bench-task` process of task `id` (from its latest start record).
fn task_pidfd(ctx: &Ctx, inst: &Instance, id: &str) -> Result<Pidfd> {
    let rec = inst
        .latest
        .starts
        .get(id)
        .with_context(|| format!("no start record of task {id}"))?;
    let fd = Pidfd::open_now(rec.pid)
        .with_context(|| format!("task {id} (pid {}) is not running", rec.pid))?;
    if procs::exe(rec.pid).as_ref() != Some(&ctx.bins.bench_task) {
        bail!("pid {} of task {id} is no longer bench-task", rec.pid);
    }
    Ok(fd)
}

/// Waits for a start record of `id` at or after `since_ns`; returns its time.
fn wait_replacement(inst: &mut Instance, id: &str, since_ns: u128) -> Result<u128> {
    let until = Instant::now() + API_LOAD_RESTART_LIMIT;
    loop {
        interrupt::check()?;
        if let Some(r) = inst
            .refresh()?
            .into_iter()
            .find(|r| r.kind == records::Kind::Start && r.id == id && r.ns >= since_ns)
        {
            return Ok(r.ns);
        }
        if !inst.run.alive() {
            bail!(
                "the supervisor exited; its log ends:\n{}",
                inst.run.log_tail(10)
            );
        }
        if Instant::now() > until {
            bail!(
                "task {id} not restarted within {:.0} s of its SIGKILL",
                API_LOAD_RESTART_LIMIT.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILLs `victims` one at a time, as case C of the latency phase: from the moment the
/// harness sends SIGKILL to the replacement's start record, then [`API_LOAD_SETTLE`] before the
/// next. Samples go to `out` as they come, so a series cut off keeps what it measured.
fn kill_series(
    ctx: &Ctx,
    inst: &mut Instance,
    victims: &[String],
    out: &mut Vec<f64>,
) -> Result<()> {
    for id in victims {
        interrupt::check()?;
        inst.refresh()?;
        let fd = task_pidfd(ctx, inst, id)?;
        let death =
            latency::sigkill_now(&fd).with_context(|| format!("cannot SIGKILL task {id}"))?;
        let started = wait_replacement(inst, id, death)?;
        out.push(latency::ms_between(death, started));
        interrupt::sleep(API_LOAD_SETTLE)?;
    }
    Ok(())
}

/// Ours, at the N chosen for the API rows (when it runs the API): restart latency with the API
/// idle, then while one client per path of [`API_LOAD_PATHS`] reads it back to back. `kills`
/// distinct tasks per half. The tasks end up replaced and running (checked; the note says
/// otherwise). Errors other than an interrupt become the row's note.
pub fn api_load(ctx: &Ctx, inst: &mut Instance, kills: usize) -> Result<()> {
    if !inst.api_at {
        return Ok(());
    }
    let Some(port) = inst.run.api_port else {
        inst.result.api_load_note = Some("the supervisor has no --listen".into());
        return Ok(());
    };
    match measure_api_load(ctx, inst, port, kills) {
        Ok(r) => inst.result.api_load = Some(r),
        Err(e) => {
            interrupt::check()?;
            inst.result.api_load_note = Some(format!("{e:#}"));
        }
    }
    Ok(())
}

fn measure_api_load(ctx: &Ctx, inst: &mut Instance, port: u16, kills: usize) -> Result<ApiLoad> {
    // Every victim must have run longer than --min-uptime, so that its death is a first one.
    wait_until_aged(inst)?;
    let n = inst.result.n;
    let ids: Vec<String> = inst.latest.starts.keys().cloned().collect();
    let (idle_victims, loaded_victims) = halves(&pick_victims(&ids, 2 * kills));
    if loaded_victims.is_empty() {
        bail!("too few tasks ({}) to kill two distinct ones", ids.len());
    }
    let mut r = ApiLoad {
        method: format!(
            "SIGKILL of one running task at a time ({} distinct tasks per half), from the moment the harness sends it to the replacement's start record, {} ms between a start and the next kill; first with the API idle, then while {} clients (one per path: {}) GET back to back, one connection per request",
            idle_victims.len(),
            API_LOAD_SETTLE.as_millis(),
            API_LOAD_PATHS.len(),
            API_LOAD_PATHS.join(", ")
        ),
        idle_samples_ms: Vec::new(),
        idle_ms: None,
        loaded_samples_ms: Vec::new(),
        loaded_ms: None,
        idle_victims,
        loaded_victims,
        clients: Vec::new(),
        load_secs: 0.0,
        requests_per_s: 0.0,
        running_after: 0,
        note: None,
    };
    let mut notes = Vec::new();
    if let Err(e) = kill_series(ctx, inst, &r.idle_victims, &mut r.idle_samples_ms) {
        interrupt::check()?;
        notes.push(format!("API idle: {e:#}"));
    }

    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (loaded, clients) = std::thread::scope(|s| {
        let handles: Vec<_> = API_LOAD_PATHS
            .iter()
            .map(|&path| {
                let stop = &stop;
                (path, s.spawn(move || api::hammer(port, path, stop)))
            })
            .collect();
        let loaded = interrupt::sleep(API_LOAD_WARMUP)
            .and_then(|()| kill_series(ctx, inst, &r.loaded_victims, &mut r.loaded_samples_ms));
        stop.store(true, Ordering::Relaxed);
        let clients: Vec<Hammered> = handles
            .into_iter()
            .map(|(path, h)| {
                h.join().unwrap_or_else(|_| Hammered {
                    path: path.to_string(),
                    first_error: Some("the client thread panicked".into()),
                    ..Hammered::default()
                })
            })
            .collect();
        (loaded, clients)
    });
    r.load_secs = t0.elapsed().as_secs_f64();
    if let Err(e) = loaded {
        interrupt::check()?;
        notes.push(format!("under load: {e:#}"));
    }
    let ok: u64 = clients.iter().map(|c| c.ok).sum();
    r.requests_per_s = ok as f64 / r.load_secs.max(1e-9);
    for c in clients.iter().filter(|c| c.errors > 0 || c.ok == 0) {
        notes.push(format!(
            "GET {}: {} answered 200, {} failed{}",
            c.path,
            c.ok,
            c.errors,
            c.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        ));
    }
    r.clients = clients;
    r.idle_ms = Summary::of(&r.idle_samples_ms);
    r.loaded_ms = Summary::of(&r.loaded_samples_ms);

    // The storm that follows expects all N running: every victim replaced, nothing lost.
    inst.refresh()?;
    let not_running: Vec<&String> = r
        .idle_victims
        .iter()
        .chain(&r.loaded_victims)
        .filter(|id| task_pidfd(ctx, inst, id).is_err())
        .collect();
    if !not_running.is_empty() {
        notes.push(format!(
            "{} killed tasks not running again: {}",
            not_running.len(),
            not_running
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    r.running_after = inst.run.task_pids(&ctx.bins).len();
    if r.running_after != n {
        notes.push(format!(
            "{} task processes alive afterwards, not {n}",
            r.running_after
        ));
    }
    r.note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok(r)
}

/// SIGKILLs every task of `inst` at once and waits until all are replaced.
pub fn storm(ctx: &Ctx, inst: &mut Instance, timeout: Duration) -> Result<()> {
    wait_until_aged(inst)?;
    let n = inst.result.n;
    let mut targets: HashMap<String, (i32, Pidfd)> = HashMap::new();
    for (id, r) in &inst.latest.starts {
        if let Some(fd) = Pidfd::open_now(r.pid) {
            if procs::exe(r.pid).as_ref() == Some(&ctx.bins.bench_task) {
                targets.insert(id.clone(), (r.pid, fd));
            }
        }
    }
    let killed = targets.len();
    let mut reader = Reader::at_end(&inst.run.records);
    let t0 = launch::now_ns();
    for (_, fd) in targets.values() {
        fd.signal(libc::SIGKILL).context("cannot SIGKILL a task")?;
    }
    let mut replaced: HashMap<String, u128> = HashMap::new();
    let until = Instant::now() + timeout;
    let mut progress = Instant::now();
    while replaced.len() < killed && Instant::now() < until && progress.elapsed() < STALL {
        interrupt::check()?;
        let recs = reader.poll()?;
        inst.latest.add(&recs);
        for r in recs.into_iter().filter(|r| r.kind == records::Kind::Start) {
            // Any start after the kill is a replacement (its pid may even be the old one's: with
            // 20 000 processes and pid_max 32 768, pids come round fast).
            if targets.contains_key(&r.id) && r.ns >= t0 && !replaced.contains_key(&r.id) {
                replaced.insert(r.id, r.ns);
                progress = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(targets);
    let secs = (replaced.len() == killed).then(|| {
        replaced
            .values()
            .copied()
            .max()
            .unwrap_or(t0)
            .saturating_sub(t0) as f64
            / 1e9
    });
    interrupt::sleep(Duration::from_millis(500))?;
    let live_after = inst.run.task_pids(&ctx.bins).len();
    inst.result.storm = Some(Storm {
        killed,
        replaced: replaced.len(),
        lost: n.saturating_sub(replaced.len()),
        secs,
        live_after,
    });
    Ok(())
}

/// Stops the instance and returns its result.
pub fn finish(mut inst: Instance) -> ScaleResult {
    inst.result.stop = Some(inst.run.stop());
    inst.result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn victims_are_distinct_spread_and_bounded() {
        let all = ids(10_000);
        let v = pick_victims(&all, 40);
        assert_eq!(v.len(), 40);
        let mut d = v.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 40, "distinct");
        assert!(v.iter().all(|x| all.contains(x)));
        // Evenly spread over the sorted ids: the first one, then every 250th.
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(v[0], sorted[0]);
        assert_eq!(v[1], sorted[250]);
        assert_eq!(v[39], sorted[9750]);
        // Fewer tasks than asked: all of them, once; duplicates in the input count once.
        assert_eq!(pick_victims(&ids(3), 40).len(), 3);
        let twice = ["a".to_string(), "a".to_string(), "b".to_string()];
        assert_eq!(pick_victims(&twice, 5), vec!["a", "b"]);
        assert!(pick_victims(&[], 4).is_empty());
        assert!(pick_victims(&all, 0).is_empty());
        // Deterministic, whatever the input order (a HashMap's keys).
        let mut rev = all.clone();
        rev.reverse();
        assert_eq!(pick_victims(&rev, 40), v);
    }

    #[test]
    fn halves_interleave_without_overlap() {
        let v = pick_victims(&ids(100), 40);
        let (a, b) = halves(&v);
        assert_eq!((a.len(), b.len()), (20, 20));
        assert!(a.iter().all(|x| !b.contains(x)));
        assert_eq!(a[0], v[0]);
        assert_eq!(b[0], v[1]);
        let (a, b) = halves(&ids(3));
        assert_eq!((a.len(), b.len()), (2, 1));
        let (a, b) = halves(&ids(1));
        assert_eq!((a.len(), b.len()), (1, 0));
    }

    #[test]
    fn log_fields() {
        let l =
            r#"2026-01-01T00:00:00.1Z DEBUG checkpoint written took_ms=3.25 bytes=1234 note="x""#;
        assert_eq!(field(l, "took_ms"), Some("3.25"));
        assert_eq!(field(l, "bytes"), Some("1234"));
        assert_eq!(field(l, "note"), Some("x"));
        assert_eq!(field(l, "took"), None);
    }
}
