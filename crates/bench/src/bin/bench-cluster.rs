//! `bench-cluster`: the cluster scheduler's benchmark rows (issues 14 and 15). See
//! `bench::cluster` for how each is measured and `docs/BENCHMARKS.md` for the results.
//!
//! Usage: `bench-cluster [--quick] [--only placement,throughput,latency,nodeloss,failover]
//! [--markdown PATH] [--bin-dir DIR]` (the release binaries `ubervisor`, `supervisor` and
//! `timeserver`; default: beside this program).
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bench::cluster::report::{Row, markdown, spread};
use bench::cluster::{Env, etcd::Etcd, failover, nodeloss, pure, store};
use bench::launch::{RUN_VAR, new_run_id};
use bench::{interrupt, procs};
use clap::{Parser, ValueEnum};

/// Benchmarks the cluster scheduler on this machine: pure placement, placements per second
/// and POST→assignment latency on a 3-member loopback etcd, node loss with real supervisors
/// and timeservers, leader failover of real ubervisor replicas. Prints a table with
/// PASS/FAIL against each goal. Loopback only; stops everything it starts, by pid.
#[derive(Debug, Parser)]
#[command(name = "bench-cluster", about, long_about = None)]
struct Args {
    /// Small N and one repetition each: a smoke run of about a minute.
    #[arg(long)]
    quick: bool,
    /// Run only these measurements (comma-separated). Default: all.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "WHAT,...")]
    only: Vec<What>,
    /// Also write the table as Markdown here.
    #[arg(long, value_name = "PATH")]
    markdown: Option<PathBuf>,
    /// Where the release binaries `ubervisor`, `supervisor` and `timeserver` are (default:
    /// beside this program, i.e. target/release).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Jobs of 100 instances submitted for the throughput row (default 50; 5 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    throughput_jobs: Option<u32>,
    /// Samples of the latency row (default 200; 30 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    latency_samples: Option<u32>,
    /// Keep the temporary folder (etcd data, every process's log) and print where it is.
    #[arg(long)]
    keep_dirs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum What {
    Placement,
    Throughput,
    Latency,
    Nodeloss,
    Failover,
}

/// The sizes of one run.
struct Plan {
    placement_runs: usize,
    throughput_jobs: usize,
    throughput_count: u32,
    latency_samples: usize,
    reps_short: usize,
    reps_default: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                placement_runs: 5,
                throughput_jobs: 5,
                throughput_count: 100,
                latency_samples: 30,
                reps_short: 1,
                reps_default: 1,
            }
        } else {
            Plan {
                placement_runs: 21,
                throughput_jobs: 50,
                throughput_count: 100,
                latency_samples: 200,
                reps_short: 5,
                reps_default: 3,
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    interrupt::install();
    let run_id = new_run_id();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&args, &run_id)));
    // Whatever happened, nothing the run started survives it.
    let (swept, survivors) = procs::kill_marked(RUN_VAR, &run_id, Duration::from_secs(60));
    if swept > 0 {
        eprintln!("bench-cluster: final sweep killed {swept} leftover processes");
    }
    if survivors {
        eprintln!("bench-cluster: WARNING: some processes of this run survived SIGKILL");
    }
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("bench-cluster: {e:#}");
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
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("current_exe")?
            .parent()
            .context("this program's folder")?
            .to_path_buf(),
    };
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        eprintln!(
            "bench-cluster: warning: cannot become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let work = tempfile::Builder::new()
        .prefix("timeservice-bench-cluster-")
        .tempdir()
        .context("cannot create the work folder")?;
    let work_path = work.path().to_path_buf();
    let _work_guard = if args.keep_dirs {
        let _ = work.keep();
        eprintln!(
            "bench-cluster: keeping the temporary folder {}",
            work_path.display()
        );
        None
    } else {
        Some(work)
    };
    let env = Env::new(&bin_dir, run_id.to_string(), work_path.clone());
    let want = |w: What| args.only.is_empty() || args.only.contains(&w);
    let needs_etcd = [
        What::Throughput,
        What::Latency,
        What::Nodeloss,
        What::Failover,
    ]
    .into_iter()
    .any(want);
    let mut needed = vec![];
    if needs_etcd {
        needed.push(&env.ubervisor);
        needed.push(&env.timeserver);
    }
    if want(What::Nodeloss) {
        needed.push(&env.supervisor);
    }
    for b in needed {
        if !b.exists() {
            bail!(
                "{} is missing: build it first with `cargo build --release -p ubervisor -p supervisor -p timeserver` (or `make bench-cluster`)",
                b.display()
            );
        }
    }
    let mut plan = Plan::new(args.quick);
    if let Some(n) = args.throughput_jobs {
        plan.throughput_jobs = n as usize;
    }
    if let Some(n) = args.latency_samples {
        plan.latency_samples = n as usize;
    }
    let mut rows = Vec::new();
    if want(What::Placement) {
        rows.push(placement_row(&plan)?);
    }
    if needs_etcd {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let etcd_dir = work_path.join("etcd");
        std::fs::create_dir_all(&etcd_dir)?;
        let etcd = Etcd::start(&env, &etcd_dir)?;
        eprintln!("bench-cluster: etcd, 3 members at {}", etcd.arg());
        let dir = work_path.as_path();
        if want(What::Latency) {
            rows.push(guard(
                latency_row(&env, &rt, &etcd, dir, &plan),
                "POST /jobs → assignment key, p99",
                "≤ 100 ms",
            )?);
        }
        if want(What::Throughput) {
            rows.push(guard(
                throughput_row(&env, &rt, &etcd, dir, &plan),
                "Placements per second sustained",
                "≥ 1 500/s",
            )?);
        }
        if want(What::Nodeloss) {
            for (ttl, reps) in [(Some(2), plan.reps_short), (None, plan.reps_default)] {
                let secs = ttl.unwrap_or(10);
                let what = format!(
                    "Node loss → all its tasks answering elsewhere, `--node-ttl={secs}s`{} (median of {reps})",
                    if ttl.is_none() { " (default)" } else { "" }
                );
                let goal_ms = (secs + 3) * 1000;
                let goal = format!("≤ TTL + 3 s = {goal_ms} ms");
                let r = nodeloss::node_loss(&env, &etcd, dir, ttl.map(Duration::from_secs), reps)
                    .and_then(|ms| {
                        let s = spread(&ms).context("no samples")?;
                        Ok(Row::new(
                            &what,
                            format!("{:.0} ms ({:.0}–{:.0})", s.median, s.min, s.max),
                        )
                        .against(format!("{:.2} × the TTL", s.median / (secs * 1000) as f64))
                        .goal(&goal, s.median <= goal_ms as f64))
                    });
                rows.push(guard(r, &what, &goal)?);
            }
        }
        if want(What::Failover) {
            for (ttl, reps) in [(Some(2), plan.reps_short), (None, plan.reps_default)] {
                let secs = ttl.unwrap_or(5);
                let what = format!(
                    "Leader failover: SIGKILL → a standby leads and accepts a write, `--election-ttl={secs}s`{} (median of {reps})",
                    if ttl.is_none() { " (default)" } else { "" }
                );
                let goal = if ttl.is_some() { "≤ 3 000 ms" } else { "-" };
                let r = failover::failover(&env, &etcd, dir, ttl.map(Duration::from_secs), reps)
                    .and_then(|f| {
                        let w = spread(&f.iter().map(|x| x.write_ms).collect::<Vec<_>>())
                            .context("no samples")?;
                        let l = spread(&f.iter().map(|x| x.leading_ms).collect::<Vec<_>>())
                            .context("no samples")?;
                        let row = Row::new(
                            &what,
                            format!("{:.0} ms ({:.0}–{:.0})", w.median, w.min, w.max),
                        )
                        .against(format!(
                            "leads after {:.0} ms; {:.2} × the TTL",
                            l.median,
                            w.median / (secs * 1000) as f64
                        ));
                        Ok(if ttl.is_some() {
                            row.goal(goal, w.median <= 3000.0)
                        } else {
                            row
                        })
                    });
                rows.push(guard(r, &what, goal)?);
            }
        }
    }
    let table = markdown(&rows);
    println!("{table}");
    if let Some(p) = &args.markdown {
        write(p, &table)?;
    }
    Ok(())
}

/// A measurement's row, or a failed row saying why; an interrupt ends the run instead.
fn guard(r: Result<Row>, what: &str, goal: &str) -> Result<Row> {
    match r {
        Ok(row) => Ok(row),
        Err(e) => {
            interrupt::check()?;
            eprintln!("bench-cluster: {what}: {e:#}");
            Ok(Row::failed(what, goal, &e))
        }
    }
}

fn placement_row(plan: &Plan) -> Result<Row> {
    let t = pure::measure(100, 1_000, plan.placement_runs)?;
    let s = spread(&t.ms).context("no samples")?;
    Ok(Row::new(
        format!(
            "Pure placement: `placement::place` of 1 000 jobs ({} instances, {} placed) on 100 nodes (median of {})",
            t.instances, t.placed, plan.placement_runs
        ),
        format!("{:.1} ms ({:.1}–{:.1})", s.median, s.min, s.max),
    )
    .against(format!("{:.1} µs per instance", s.median * 1e3 / t.instances as f64))
    .goal("≤ 50 ms", s.median <= 50.0))
}

fn latency_row(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    etcd: &Etcd,
    dir: &Path,
    plan: &Plan,
) -> Result<Row> {
    let l = store::latency(env, rt, etcd, dir, plan.latency_samples)?;
    let a = spread(&l.assigned_ms).context("no samples")?;
    let p = spread(&l.answered_ms).context("no samples")?;
    Ok(Row::new(
        format!(
            "`POST /jobs` → assignment key, p99 ({} samples, one job of one instance at a time, {} nodes)",
            a.n,
            store::RIG_NODES
        ),
        format!("{:.1} ms (median {:.1}, max {:.1})", a.p99, a.median, a.max),
    )
    .against(format!("`POST /jobs` answered: median {:.1} ms, p99 {:.1}", p.median, p.p99))
    .goal("≤ 100 ms", a.p99 <= 100.0))
}

fn throughput_row(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    etcd: &Etcd,
    dir: &Path,
    plan: &Plan,
) -> Result<Row> {
    let t = store::throughput(
        env,
        rt,
        etcd,
        dir,
        plan.throughput_jobs,
        plan.throughput_count,
    )?;
    Ok(Row::new(
        format!(
            "Placements per second sustained ({} instances in {} jobs submitted back to back, {} nodes; first POST → last assignment)",
            t.placements, t.jobs, store::RIG_NODES
        ),
        format!(
            "{:.0}/s ({:.2} s; submitting took {:.2} s)",
            t.rate(),
            t.secs,
            t.submit_secs
        ),
    )
    .against(format!(
        "raw etcd puts of {} B values, {} per txn: {:.0}/s; ratio {:.2}",
        t.value_bytes,
        store::TXN_OPS,
        t.raw_rate(),
        t.rate() / t.raw_rate()
    ))
    .goal("≥ 1 500/s", t.rate() >= 1500.0))
}

fn write(p: &Path, text: &str) -> Result<()> {
    if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))
}
