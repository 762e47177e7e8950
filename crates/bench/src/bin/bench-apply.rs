//! `bench-apply`: what declarative use costs (issue 13's benchmark rows). Against a real
//! supervisor (release build), over its API:
//! - `PUT /tasks` with N new tasks: until all N run (goal: ≤ 3 s for 10 000);
//! - the same list again (nothing to do), and with one task changed: the PUT's round trip,
//!   which is the loop's time for the apply plus parsing and the answer (goal: ≤ 50 ms).
//!
//! Medians over `--reps`. Every process it starts is stopped by pid (the supervisor stops its
//! tasks on SIGTERM).
//!
//! Usage: `bench-apply [--tasks=N] [--reps=N] [--supervisor=PATH]`
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let mut tasks = 10_000usize;
    let mut reps = 5usize;
    let exe = std::env::current_exe().context("current_exe")?;
    let mut supervisor = exe.with_file_name("supervisor");
    for a in std::env::args().skip(1) {
        if let Some(v) = a.strip_prefix("--tasks=") {
            tasks = v.parse().context("--tasks")?;
        } else if let Some(v) = a.strip_prefix("--reps=") {
            reps = v.parse().context("--reps")?;
        } else if let Some(v) = a.strip_prefix("--supervisor=") {
            supervisor = v.into();
        } else {
            bail!("unknown argument {a:?}: expected --tasks=N, --reps=N, --supervisor=PATH");
        }
    }
    let dir = tempfile::tempdir()?;
    let port = bench::api::free_port()?;
    let mut child = Command::new(&supervisor)
        .current_dir(dir.path())
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--log=sup.log")
        .arg("--spawn-rate=100000")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", supervisor.display()))?;
    let result = run(&mut child, port, tasks, reps, &dir.path().join("sup.log"));
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    result
}

/// N tasks of the benchmarks' own task program (tiny, static, no libc: 10 000 of them cost
/// little memory), sleeping until stopped; `changed`: that one gets another argument.
fn list(task: &str, n: usize, changed: Option<usize>) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            let id = if Some(i) == changed { format!("t{i}b") } else { format!("t{i}") };
            format!(r#"{{"name":"t{i}","command":["{task}","--mode","sleep","--record","/dev/null","--id","{id}"]}}"#)
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// `loop_ms` of the supervisor's last "task set applied" log line.
fn last_loop_ms(log: &std::path::Path) -> Result<f64> {
    let text = std::fs::read_to_string(log).context("the supervisor's log")?;
    text.lines()
        .rev()
        .filter(|l| l.contains("task set applied"))
        .find_map(|l| {
            let v = l.split("loop_ms=").nth(1)?;
            v.trim_matches('"').split(['"', ' ']).next()?.parse().ok()
        })
        .context("no \"task set applied\" line with loop_ms in the log")
}

fn run(
    child: &mut std::process::Child,
    port: u16,
    n: usize,
    reps: usize,
    log: &std::path::Path,
) -> Result<()> {
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(br#"[{"name":"idle","command":["sleep","100000"]}]"#)?;
    }
    let up = Instant::now();
    while request(port, "GET", "/health", None).is_err() {
        if up.elapsed() > Duration::from_secs(10) {
            bail!("the supervisor's API never answered");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let task = bench::task::binary();
    if !task.exists() {
        bail!(
            "{} is not built: run `cargo run --release -p bench -- --quick` once, or build crates/bench-task",
            task.display()
        );
    }
    let task = task.display().to_string();
    let full = list(&task, n, None);
    let t = Instant::now();
    let (status, _) = request(port, "PUT", "/tasks", Some(&full))?;
    if status != 200 {
        bail!("PUT /tasks answered {status}");
    }
    let put_ms = t.elapsed().as_secs_f64() * 1e3;
    loop {
        let (_, body) = request(port, "GET", "/health", None)?;
        let h: serde_json::Value = serde_json::from_str(&body)?;
        // The idle task of the start is not in the list: the apply removes it.
        if h["tasks"]["running"].as_u64() == Some(n as u64) {
            break;
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("not all {n} tasks ran within 120 s: {}", h["tasks"]);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let all_running = t.elapsed().as_secs_f64();
    let mut same = Vec::new();
    let mut one = Vec::new();
    let mut loop_ms = Vec::new();
    for r in 0..reps {
        let t = Instant::now();
        request(port, "PUT", "/tasks", Some(&full))?;
        same.push(t.elapsed().as_secs_f64() * 1e3);
        let changed = list(&task, n, Some(r % n));
        let t = Instant::now();
        let (status, body) = request(port, "PUT", "/tasks", Some(&changed))?;
        one.push(t.elapsed().as_secs_f64() * 1e3);
        loop_ms.push(last_loop_ms(log)?);
        let plan: serde_json::Value = serde_json::from_str(&body)?;
        if status != 200 || plan["replaced"].as_array().map(Vec::len) != Some(1) {
            bail!(
                "one change should replace one task: {status} {}",
                &body[..body.len().min(300)]
            );
        }
        // Back to the full list (the changed task is replaced again) before the next round.
        request(port, "PUT", "/tasks", Some(&full))?;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!("| row ({n} tasks, {reps} reps, medians) | value | goal |");
    println!("|---|---|---|");
    println!("| PUT /tasks with {n} new tasks: answered | {put_ms:.1} ms | - |");
    println!("| PUT /tasks with {n} new tasks: all running | {all_running:.2} s | ≤ 3 s |");
    println!(
        "| PUT /tasks, nothing changed | {:.1} ms | - |",
        median(&mut same)
    );
    println!(
        "| PUT /tasks, one task changed among {n}: round trip (parsing and file checks on the API thread) | {:.1} ms | - |",
        median(&mut one)
    );
    println!(
        "| PUT /tasks, one task changed among {n}: event-loop time | {:.2} ms | ≤ 50 ms |",
        median(&mut loop_ms)
    );
    Ok(())
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: status and body.
fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    bench::api::request(
        &format!("127.0.0.1:{port}"),
        method,
        path,
        body,
        Duration::from_secs(60),
    )
}
