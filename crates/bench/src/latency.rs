//! Restart latency: from a task's death to the start of its replacement, both read from
//! CLOCK_REALTIME (the task's own `E` record, or the moment the harness SIGKILLs it, and the
//! next task's `S` record).
//!
//! - Case A: the task exits at once. Case B: it runs 2 s, then exits. Case C: it sleeps and the
//!   harness SIGKILLs it (after 1.2 s + 0.3 s × series, so that series drift apart and none of
//!   the deaths counts as a "quick" one).
//! - Every supervisor runs `series` copies of each case side by side; a series is staggered on
//!   its first run so that series do not die at the same moment.
//! - Ours restarts a task at once after its first death only; a second death within
//!   `--min-uptime` enters yo-yo mode (100 ms × 2ⁿ). So for case A, ours is measured over fresh
//!   supervisors, one first restart each; in B and C every death follows a run longer than
//!   `--min-uptime`, so every restart there is a first restart.
use crate::interrupt;
use crate::kind::Kind;
use crate::launch::{self, Ctx, OursOpts, Service};
use crate::procs::Pidfd;
use crate::records::{self, Reader};
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Case {
    A,
    B,
    C,
}

impl Case {
    pub fn label(self) -> &'static str {
        match self {
            Case::A => "A",
            Case::B => "B",
            Case::C => "C",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Case::A => "exits at once",
            Case::B => "runs 2 s, then exits",
            Case::C => "SIGKILLed by the harness",
        }
    }
}

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Restarts measured per series.
    pub restarts: usize,
    /// Series per case (the "repeated 3 times").
    pub series: usize,
    /// A series that shows no progress for this long is given up (and the table says so).
    pub stall: Duration,
}

/// One series: its samples in milliseconds, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub series: usize,
    pub samples_ms: Vec<f64>,
    pub note: Option<String>,
}

/// A case on one supervisor.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: Case,
    pub method: String,
    pub series: Vec<Series>,
    /// The first restart of each series (ours, case A: every trial).
    pub first: Option<Summary>,
    /// Every restart.
    pub all: Option<Summary>,
    /// The median of each series, to show how much the repetitions agree.
    pub series_medians_ms: Vec<f64>,
}

impl CaseResult {
    fn new(case: Case, method: String, series: Vec<Series>, first_is_all: bool) -> CaseResult {
        let all: Vec<f64> = series
            .iter()
            .flat_map(|s| s.samples_ms.iter().copied())
            .collect();
        let firsts: Vec<f64> = if first_is_all {
            all.clone()
        } else {
            series
                .iter()
                .filter_map(|s| s.samples_ms.first().copied())
                .collect()
        };
        let series_medians_ms = series
            .iter()
            .filter_map(|s| Summary::of(&s.samples_ms).map(|m| m.median))
            .collect();
        CaseResult {
            case,
            method,
            first: Summary::of(&firsts),
            all: Summary::of(&all),
            series,
            series_medians_ms,
        }
    }

    /// Notes of the series that fell short, joined.
    pub fn notes(&self) -> Option<String> {
        let n: Vec<String> = self
            .series
            .iter()
            .filter_map(|s| {
                s.note
                    .as_ref()
                    .map(|t| format!("series {}: {t}", s.series + 1))
            })
            .collect();
        (!n.is_empty()).then(|| n.join("; "))
    }
}

/// SIGKILLs the process behind `fd`; returns the moment of the kill (CLOCK_REALTIME ns, read
/// just before the signal is sent), the death that case C measures from.
pub fn sigkill_now(fd: &Pidfd) -> std::io::Result<u128> {
    let at = launch::now_ns();
    fd.signal(libc::SIGKILL)?;
    Ok(at)
}

/// Milliseconds from `from_ns` to `to_ns` (CLOCK_REALTIME ns; negative if `to_ns` is earlier).
pub fn ms_between(from_ns: u128, to_ns: u128) -> f64 {
    // The difference first: an f64 holds today's ns since 1970 only to 256 ns.
    (to_ns as i128 - from_ns as i128) as f64 / 1e6
}

const C_HOLD_MS: u64 = 1200;
const C_HOLD_STEP_MS: u64 = 300;
const B_RUN_MS: u64 = 2000;

struct Track {
    case: Case,
    series: usize,
    id: String,
    hold_ns: u128,
    current: Option<(i32, u128, Option<Pidfd>)>,
    death_ns: Option<u128>,
    killed: bool,
    samples: Vec<f64>,
    progress: Instant,
    done: bool,
    note: Option<String>,
}

fn case_args(case: Case, series: usize, marker: &str) -> Vec<String> {
    let s = series as u64;
    let mut a: Vec<String> = match case {
        Case::A => vec![
            "--mode".into(),
            "exit".into(),
            "--stagger-ms".into(),
            (s * 300).to_string(),
        ],
        Case::B => vec![
            "--mode".into(),
            format!("run:{B_RUN_MS}"),
            "--stagger-ms".into(),
            (s * 667).to_string(),
        ],
        Case::C => vec!["--mode".into(), "sleep".into()],
    };
    if case != Case::C {
        a.extend(["--marker".to_string(), marker.to_string()]);
    }
    a
}

/// Runs `cases` × `plan.series` side by side on one instance of `kind`.
pub fn series_run(ctx: &Ctx, kind: Kind, cases: &[Case], plan: Plan) -> Result<Vec<CaseResult>> {
    let dir = ctx.run_dir(&format!("{}-latency", kind.name()))?;
    let records = dir.records();
    let mut tracks = Vec::new();
    let mut services: Vec<Service> = Vec::new();
    let now = Instant::now();
    for &case in cases {
        for s in 0..plan.series {
            let id = format!("lat-{}-{}", case.label().to_lowercase(), s + 1);
            let marker = dir.path.join(format!("marker-{id}")).display().to_string();
            services.push(ctx.task(&id, &records, &case_args(case, s, &marker)));
            let hold_ms = C_HOLD_MS + C_HOLD_STEP_MS * s as u64;
            tracks.push(Track {
                case,
                series: s,
                id,
                hold_ns: u128::from(hold_ms) * 1_000_000,
                current: None,
                death_ns: None,
                killed: false,
                samples: Vec::new(),
                progress: now,
                done: false,
                note: None,
            });
        }
    }
    let mut run = launch::launch(
        ctx,
        kind,
        &format!("{}-latency", kind.name()),
        dir,
        &services,
        &OursOpts::default(),
    )?;
    let mut reader = Reader::new(&records);
    // The slowest cycle: B's 2 s run plus a peer's ~1 s floor, with room to spare.
    let bound = Duration::from_secs(30)
        + Duration::from_millis((B_RUN_MS + 1500) * plan.restarts as u64 + 2000);
    let until = Instant::now() + bound;
    loop {
        interrupt::check()?;
        if !run.alive() {
            bail!(
                "{} exited during the latency run; its log ends:\n{}",
                kind.name(),
                run.log_tail(20)
            );
        }
        for r in reader.poll()? {
            let Some(t) = tracks.iter_mut().find(|t| t.id == r.id) else {
                continue;
            };
            match r.kind {
                records::Kind::Start => {
                    if let Some(d) = t.death_ns.take() {
                        if !t.done {
                            t.samples.push(ms_between(d, r.ns));
                            if t.samples.len() >= plan.restarts {
                                t.done = true;
                            }
                        }
                    }
                    let fd = if t.case == Case::C && !t.done {
                        Pidfd::open_now(r.pid)
                    } else {
                        None
                    };
                    t.current = Some((r.pid, r.ns, fd));
                    t.killed = false;
                    t.progress = Instant::now();
                }
                records::Kind::End => {
                    t.death_ns = Some(r.ns);
                    t.progress = Instant::now();
                }
            }
        }
        let now_ns = launch::now_ns();
        for t in tracks
            .iter_mut()
            .filter(|t| t.case == Case::C && !t.done && !t.killed)
        {
            if let Some((_, started, Some(fd))) = &t.current {
                if now_ns.saturating_sub(*started) >= t.hold_ns {
                    t.death_ns = Some(
                        sigkill_now(fd).with_context(|| format!("cannot SIGKILL task {}", t.id))?,
                    );
                    t.killed = true;
                    t.progress = Instant::now();
                }
            }
        }
        for t in tracks.iter_mut().filter(|t| !t.done) {
            if t.progress.elapsed() > plan.stall {
                t.done = true;
                t.note = Some(format!(
                    "{} restarts, then none within {:.0} s{}",
                    t.samples.len(),
                    plan.stall.as_secs_f64(),
                    if t.death_ns.is_some() {
                        " of a death"
                    } else {
                        ""
                    }
                ));
            }
        }
        if tracks.iter().all(|t| t.done) {
            break;
        }
        if Instant::now() > until {
            for t in tracks.iter_mut().filter(|t| !t.done) {
                t.done = true;
                t.note = Some(format!(
                    "only {} restarts within the {:.0} s limit",
                    t.samples.len(),
                    bound.as_secs_f64()
                ));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    run.stop();
    let method = match kind {
        Kind::Ours => "one supervisor, series side by side; every death follows a run longer than --min-uptime, so every restart is a first restart".to_string(),
        _ => format!("one {} instance, series side by side, {} restarts each", kind.name(), plan.restarts),
    };
    Ok(cases
        .iter()
        .map(|&case| {
            let series = tracks
                .iter()
                .filter(|t| t.case == case)
                .map(|t| Series {
                    series: t.series,
                    samples_ms: t.samples.clone(),
                    note: t.note.clone(),
                })
                .collect();
            CaseResult::new(case, method.clone(), series, false)
        })
        .collect())
}

/// Ours, case A: `trials` fresh supervisors, each with one task that exits at once on its first
/// run and sleeps on its second; one first restart measured per supervisor.
pub fn ours_first_restarts(ctx: &Ctx, plan: Plan) -> Result<CaseResult> {
    let mut series = Vec::new();
    for s in 0..plan.series {
        let mut samples = Vec::new();
        let mut notes = Vec::new();
        for i in 0..plan.restarts {
            interrupt::check()?;
            let dir = ctx.run_dir("ours-first-restart")?;
            let records = dir.records();
            let id = format!("a-{}-{}", s + 1, i + 1);
            let marker = dir.path.join("marker").display().to_string();
            let extra = ["--mode", "exit", "--once", "--marker", &marker].map(String::from);
            let svc = ctx.task(&id, &records, &extra);
            let mut run = launch::launch(
                ctx,
                Kind::Ours,
                "ours-first-restart",
                dir,
                &[svc],
                &OursOpts::default(),
            )?;
            let mut reader = Reader::new(&records);
            let (mut end, mut got) = (None, None);
            let until = Instant::now() + Duration::from_secs(10);
            while got.is_none() && Instant::now() < until {
                interrupt::check()?;
                for r in reader.poll()? {
                    match (r.kind, end) {
                        (records::Kind::End, _) => end = Some(r.ns),
                        (records::Kind::Start, Some(e)) => got = Some(ms_between(e, r.ns)),
                        _ => {}
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let stop = run.stop();
            match got {
                Some(ms) => samples.push(ms),
                None => notes.push(format!("trial {}: no restart within 10 s", i + 1)),
            }
            if stop.exit.as_deref() != Some("exit status: 0") {
                notes.push(format!(
                    "trial {}: supervisor ended with {:?} after SIGTERM",
                    i + 1,
                    stop.exit
                ));
            }
        }
        series.push(Series {
            series: s,
            samples_ms: samples,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        });
    }
    Ok(CaseResult::new(
        Case::A,
        format!(
            "{} fresh supervisors × {} series, one first restart each (a second quick death would be yo-yo mode: 100 ms × 2ⁿ)",
            plan.restarts, plan.series
        ),
        series,
        true,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_between_realtime_stamps() {
        let t = 1_764_000_000_123_456_789u128;
        assert_eq!(ms_between(t, t + 250_001), 0.250001);
        assert_eq!(ms_between(t + 1_000_000, t), -1.0);
    }
}
