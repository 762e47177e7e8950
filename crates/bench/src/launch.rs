//! Starting a supervisor (ours or a peer) over a set of services in a temporary folder, and the
//! guard that stops it and everything below it, by PID, whatever happens.
//!
//! Peer configurations (kept close to each peer's defaults, so that the comparison is about the
//! designs, not about tuning):
//! - runit: `runsvdir -P SCANDIR`, one folder per service whose `run` is a symlink to
//!   `bench-task` (no shell in between; it reads its arguments from `./bench-task.args`).
//! - s6: `s6-svscan -c MAX SCANDIR`, same service folders.
//! - daemontools: `svscan SCANDIR`, same service folders.
//! - supervisord: `supervisord -n -c CONF`, one `[program:x]` per service with
//!   `autorestart=true`, `startsecs=0` (so that a task that exits at once is restarted forever,
//!   instead of going FATAL after 3 tries, as it would by default), `stdout_logfile=NONE`.
//! - ours: `supervisor --log=... --dumpfile=...` with the task list on stdin.
use crate::kind::{Bins, Kind};
use crate::procs;
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Carried by every process of a benchmark run (the final sweep kills what has it).
pub const RUN_VAR: &str = "TIMESERVICE_BENCH_RUN";
/// Carried by every process of one supervisor instance under test.
pub const MARK_VAR: &str = "TIMESERVICE_BENCH_MARK";

/// CLOCK_REALTIME in nanoseconds, the clock `bench-task` records.
pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A fresh id for one benchmark run.
pub fn new_run_id() -> String {
    format!("{}-{}", std::process::id(), now_ns())
}

/// What every measurement needs: binaries, the run's id, where temporary folders go.
pub struct Ctx {
    pub bins: Bins,
    pub run_id: String,
    pub work: PathBuf,
    pub keep_dirs: bool,
    /// Run our supervisor's HTTP API: every instance gets a free loopback port (its default,
    /// 127.0.0.1:7171, would clash between instances).
    pub api: bool,
    /// Our supervisor knows `--listen` (without `api`, it gets `--listen=none`).
    pub has_listen: bool,
    seq: AtomicU64,
}

impl Ctx {
    pub fn new(
        bins: Bins,
        run_id: String,
        work: PathBuf,
        keep_dirs: bool,
        has_listen: bool,
        api: bool,
    ) -> Ctx {
        Ctx {
            bins,
            run_id,
            work,
            keep_dirs,
            api,
            has_listen,
            seq: AtomicU64::new(0),
        }
    }

    /// A fresh temporary folder for one supervisor instance.
    pub fn run_dir(&self, label: &str) -> Result<RunDir> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = tempfile::Builder::new()
            .prefix(&format!("{n:03}-{label}-"))
            .tempdir_in(&self.work)
            .with_context(|| {
                format!(
                    "cannot create a temporary folder in {}",
                    self.work.display()
                )
            })?;
        let path = t.path().to_path_buf();
        let temp = if self.keep_dirs {
            let _ = t.keep();
            None
        } else {
            Some(t)
        };
        Ok(RunDir {
            path,
            temp,
            mark: format!("{}-{n}", self.run_id),
        })
    }

    /// A `bench-task` service recording into `records`.
    pub fn task(&self, id: &str, records: &Path, extra: &[String]) -> Service {
        let mut argv = vec![
            self.bins.bench_task.display().to_string(),
            "--id".into(),
            id.into(),
            "--record".into(),
            records.display().to_string(),
        ];
        argv.extend(extra.iter().cloned());
        Service {
            id: id.to_string(),
            argv,
        }
    }
}

/// A temporary folder (removed with the [`Running`] that owns it, unless `--keep-dirs`).
pub struct RunDir {
    pub path: PathBuf,
    temp: Option<tempfile::TempDir>,
    mark: String,
}

impl RunDir {
    pub fn records(&self) -> PathBuf {
        self.path.join("records.log")
    }
}

/// One supervised program: a name and its argv.
#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub argv: Vec<String>,
}

/// Options for our supervisor.
#[derive(Debug, Clone, Default)]
pub struct OursOpts {
    /// `--log-level` (default info).
    pub log_level: Option<&'static str>,
    /// Extra flags (`--port-range=...`, `--listen=...`).
    pub args: Vec<String>,
}

/// How a stop went.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StopReport {
    /// Our supervisor's exit status after SIGTERM (`None` for peers, which are killed).
    pub exit: Option<String>,
    pub stop_secs: Option<f64>,
    /// Processes still carrying the instance's mark that had to be killed by the sweep.
    pub swept: usize,
    pub survivors: bool,
}

/// A running supervisor instance. Dropping it stops it and kills every process that carries
/// its mark, then removes its folder.
pub struct Running {
    pub kind: Kind,
    pub label: String,
    pub dir: PathBuf,
    pub mark: String,
    pub records: PathBuf,
    /// Ours: its `--log`; peers: the root process's output.
    pub log: PathBuf,
    pub root_pid: i32,
    /// Ours: the port of its HTTP API on 127.0.0.1.
    pub api_port: Option<u16>,
    /// CLOCK_REALTIME just before the root process was started.
    pub started_ns: u128,
    pub stop_report: Option<StopReport>,
    root: Option<Child>,
    // Declared last: removed after the processes are gone.
    _temp: Option<tempfile::TempDir>,
}

impl Running {
    /// Stops the instance (ours: SIGTERM and a wait for its clean exit; peers: killed), then
    /// kills whatever still carries its mark. Idempotent.
    pub fn stop(&mut self) -> StopReport {
        if let Some(r) = &self.stop_report {
            return r.clone();
        }
        let mut report = StopReport::default();
        if let (Kind::Ours, Some(child)) = (self.kind, self.root.as_mut()) {
            let t = Instant::now();
            // The child is not reaped yet, so its pid cannot have been reused.
            if let Some(fd) = procs::Pidfd::open_now(child.id() as i32) {
                let _ = fd.signal(libc::SIGTERM);
            }
            let until = t + Duration::from_secs(60);
            while Instant::now() < until {
                match child.try_wait() {
                    Ok(Some(st)) => {
                        report.exit = Some(st.to_string());
                        report.stop_secs = Some(t.elapsed().as_secs_f64());
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
        }
        let (swept, survivors) = procs::kill_marked(MARK_VAR, &self.mark, Duration::from_secs(60));
        if let Some(child) = self.root.as_mut() {
            let _ = child.try_wait();
        }
        report.swept = swept;
        report.survivors = survivors;
        self.stop_report = Some(report.clone());
        report
    }

    /// Processes of the supervisor itself (everything with the mark that is not a task).
    pub fn supervisor_pids(&self, bins: &Bins) -> Vec<i32> {
        procs::marked(MARK_VAR, &self.mark)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !is_task(bins, *p))
            .collect()
    }

    /// Live task processes (bench-task or timeserver).
    pub fn task_pids(&self, bins: &Bins) -> Vec<i32> {
        procs::marked(MARK_VAR, &self.mark)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| is_task(bins, *p))
            .collect()
    }

    /// The last `n` lines of the log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// True while the root process runs.
    pub fn alive(&mut self) -> bool {
        self.root
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let r = self.stop();
        if r.survivors {
            eprintln!(
                "bench: WARNING: processes of {} ({}) survived SIGKILL",
                self.label,
                self.kind.name()
            );
        }
    }
}

fn is_task(bins: &Bins, pid: i32) -> bool {
    match procs::exe(pid) {
        Some(e) => e == bins.bench_task || bins.timeserver.as_ref() == Some(&e),
        None => false,
    }
}

/// Quotes for a POSIX shell and for Python's `shlex` (supervisord's command parser).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,+-@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Starts `kind` over `services` in `dir`.
pub fn launch(
    ctx: &Ctx,
    kind: Kind,
    label: &str,
    dir: RunDir,
    services: &[Service],
    ours: &OursOpts,
) -> Result<Running> {
    let path = dir.path.clone();
    let mut api_port = None;
    let (mut cmd, log) = match kind {
        Kind::Ours => {
            let mut opts = ours.clone();
            if !opts.args.iter().any(|a| a.starts_with("--listen")) {
                if ctx.api {
                    let port = crate::api::free_port()?;
                    opts.args.push(format!("--listen=127.0.0.1:{port}"));
                    api_port = Some(port);
                } else if ctx.has_listen {
                    opts.args.push("--listen=none".into());
                }
            }
            ours_command(ctx, &path, services, &opts)?
        }
        Kind::Bare => {
            let list = write_task_list(&path, services)?;
            let mut c = Command::new(&ctx.bins.baseline);
            c.stdin(File::open(&list).with_context(|| format!("cannot open {}", list.display()))?);
            (c, path.join("bench-baseline.out"))
        }
        Kind::Runit => {
            let scan = service_dirs(ctx, &path.join("service"), services)?;
            let mut c = Command::new("runsvdir");
            c.arg("-P").arg(scan);
            (c, path.join("runsvdir.out"))
        }
        Kind::S6 => {
            let scan = service_dirs(ctx, &path.join("scan"), services)?;
            let mut c = Command::new("s6-svscan");
            c.arg("-c")
                .arg((services.len() + 16).max(1000).to_string())
                .arg(scan);
            (c, path.join("s6-svscan.out"))
        }
        Kind::Daemontools => {
            let scan = service_dirs(ctx, &path.join("svc"), services)?;
            let mut c = Command::new("svscan");
            c.arg(scan);
            (c, path.join("svscan.out"))
        }
        Kind::Supervisord => {
            let conf = supervisord_conf(&path, services)?;
            let mut c = Command::new("supervisord");
            c.arg("-n").arg("-c").arg(conf);
            (c, path.join("supervisord.out"))
        }
    };
    if kind != Kind::Ours {
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out
            .try_clone()
            .context("cannot duplicate a file descriptor")?;
        if kind != Kind::Bare {
            cmd.stdin(Stdio::null());
        }
        cmd.stdout(out).stderr(err);
    }
    cmd.current_dir(&path)
        .env(RUN_VAR, &ctx.run_id)
        .env(MARK_VAR, &dir.mark)
        .process_group(0);
    let started_ns = now_ns();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} ({:?})", kind.name(), cmd.get_program()))?;
    Ok(Running {
        kind,
        label: label.to_string(),
        records: dir.records(),
        dir: path,
        mark: dir.mark,
        log,
        root_pid: child.id() as i32,
        api_port,
        started_ns,
        stop_report: None,
        root: Some(child),
        _temp: dir.temp,
    })
}

/// The task list (JSON array) that ours and the bare loop read on stdin.
fn write_task_list(dir: &Path, services: &[Service]) -> Result<PathBuf> {
    let tasks: Vec<serde_json::Value> = services
        .iter()
        .map(|s| serde_json::json!({"name": s.id, "command": s.argv}))
        .collect();
    let list = dir.join("tasks.json");
    std::fs::write(
        &list,
        serde_json::to_vec(&tasks).context("cannot encode the task list")?,
    )
    .with_context(|| format!("cannot write {}", list.display()))?;
    Ok(list)
}

fn ours_command(
    ctx: &Ctx,
    dir: &Path,
    services: &[Service],
    opts: &OursOpts,
) -> Result<(Command, PathBuf)> {
    let list = write_task_list(dir, services)?;
    let log = dir.join("supervisor.log");
    let out = File::create(dir.join("supervisor.out")).context("cannot create supervisor.out")?;
    let err = out
        .try_clone()
        .context("cannot duplicate a file descriptor")?;
    let mut c = Command::new(&ctx.bins.supervisor);
    c.arg(format!("--log={}", log.display()))
        .arg(format!("--log-level={}", opts.log_level.unwrap_or("info")))
        .arg(format!(
            "--dumpfile={}",
            dir.join("supervisor.dump").display()
        ))
        .args(&opts.args)
        .stdin(File::open(&list).with_context(|| format!("cannot open {}", list.display()))?)
        .stdout(out)
        .stderr(err);
    Ok((c, log))
}

/// runit, s6 and daemontools: one folder per service under `scan`, `run` being a symlink to
/// `bench-task` (arguments in `bench-task.args`) or, for other programs, a shell script that
/// execs it.
fn service_dirs(ctx: &Ctx, scan: &Path, services: &[Service]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(scan).with_context(|| format!("cannot create {}", scan.display()))?;
    for s in services {
        let d = scan.join(&s.id);
        std::fs::create_dir(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let (prog, args) = s
            .argv
            .split_first()
            .context("a service with an empty command")?;
        let run = d.join("run");
        if Path::new(prog) == ctx.bins.bench_task {
            std::os::unix::fs::symlink(prog, &run)
                .with_context(|| format!("cannot create {}", run.display()))?;
            let mut text = String::new();
            for a in args {
                if a.contains('\n') {
                    bail!("argument {a:?} of {} holds a newline", s.id);
                }
                let _ = writeln!(text, "{a}");
            }
            std::fs::write(d.join("bench-task.args"), text)
                .with_context(|| format!("cannot write {}/bench-task.args", d.display()))?;
        } else {
            let line: Vec<String> = s.argv.iter().map(|a| shell_quote(a)).collect();
            std::fs::write(&run, format!("#!/bin/sh\nexec {}\n", line.join(" ")))
                .with_context(|| format!("cannot write {}", run.display()))?;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot chmod {}", run.display()))?;
        }
    }
    Ok(scan.to_path_buf())
}

/// The hard RLIMIT_NOFILE of the harness (inherited by what it starts).
fn nofile_hard() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_max).unwrap_or(usize::MAX)
    } else {
        1024
    }
}

fn supervisord_conf(dir: &Path, services: &[Service]) -> Result<PathBuf> {
    let n = services.len();
    let mut c = String::new();
    let _ = writeln!(c, "[supervisord]\nnodaemon=true\nloglevel=info");
    let _ = writeln!(
        c,
        "logfile={}\npidfile={}\nchildlogdir={}",
        dir.join("supervisord.log").display(),
        dir.join("supervisord.pid").display(),
        dir.display()
    );
    // Two pipes per child; the defaults (1024 fds, 200 processes) are too few beyond ~400 tasks.
    // Never more than the hard limit: supervisord refuses to start when it cannot raise its
    // limit to minfds (it then runs out of descriptors at some N instead, which the table shows).
    let _ = writeln!(
        c,
        "minfds={}\nminprocs={}\n",
        (2 * n + 128).max(1024).min(nofile_hard()),
        (n + 64).max(200)
    );
    for s in services {
        let cmd: Vec<String> = s.argv.iter().map(|a| shell_quote(a)).collect();
        let _ = writeln!(
            c,
            "[program:{}]\ncommand={}\nautostart=true\nautorestart=true\nstartsecs=0\nstopwaitsecs=2\nstdout_logfile=NONE\nstderr_logfile=NONE\n",
            s.id,
            cmd.join(" ")
        );
    }
    let conf = dir.join("supervisord.conf");
    std::fs::write(&conf, c).with_context(|| format!("cannot write {}", conf.display()))?;
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/x"), "/usr/bin/x");
        assert_eq!(shell_quote("--mode=run:2000"), "--mode=run:2000");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
