//! What a person at the terminal sees when the supervisor starts (on standard error): where the
//! dashboard and the log are, how to stop it, and, once every task has been started (or 2 s
//! have passed), a short table of the tasks with their pids, ports and why any is down.
//!
//! It runs on a thread of its own and asks the loop for a snapshot like the API does, so a
//! terminal that does not read its output delays nothing but this thread.
use crate::control::{Envelope, Reply, Request, Snapshot};
use crate::reason::reason;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use supervisor_core::TaskState;
use tokio::sync::{mpsc, oneshot};

/// How long the table waits for the tasks to start.
pub const TABLE_AFTER: Duration = Duration::from_secs(2);
/// How long the table waits after the last first start.
const SETTLE: Duration = Duration::from_millis(300);
/// Rows shown at most; `ctl status` shows them all.
const MAX_ROWS: usize = 20;

/// What the greeting needs to know.
pub struct Greeting {
    pub api: Option<SocketAddr>,
    pub token: bool,
    pub log: Option<PathBuf>,
    pub dump: Option<PathBuf>,
    pub tasks: usize,
    pub control: mpsc::Sender<Envelope>,
}

impl Greeting {
    /// Prints the first lines and then the table, from a thread of its own (standard error may
    /// be a pipe that nobody reads).
    pub fn start(self) {
        let spawned = std::thread::Builder::new()
            .name("greeting".into())
            .spawn(move || {
                eprint!("{}", self.header());
                if let Some(snap) = self.wait_for_start() {
                    eprint!("{}", self.table(&snap));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the start-up table thread");
        }
    }

    fn header(&self) -> String {
        let pid = std::process::id();
        let mut out = String::new();
        let log = match &self.log {
            Some(p) => p.display().to_string(),
            None => "standard error".into(),
        };
        let _ = writeln!(
            out,
            "supervisor: pid {pid}, {} task{}, log: {log}",
            self.tasks,
            if self.tasks == 1 { "" } else { "s" }
        );
        match self.api {
            Some(a) => {
                let token = if self.token {
                    " (add ?token=<the --api-token-file token>)"
                } else {
                    ""
                };
                let _ = writeln!(out, "supervisor: dashboard: http://{a}/{token}");
            }
            None => {
                let _ = writeln!(out, "supervisor: no API, dashboard or ctl (--listen=none)");
            }
        }
        let _ = writeln!(
            out,
            "supervisor: stop with Ctrl-C (or kill {pid}): every task is stopped, then it exits"
        );
        out
    }

    /// Snapshots until no task waits for its first start, or [`TABLE_AFTER`] passes. Then
    /// [`SETTLE`] more (within the deadline), so a task that dies right after its start (a bad
    /// flag, a missing library) shows that, not "running".
    fn wait_for_start(&self) -> Option<Snapshot> {
        let deadline = Instant::now() + TABLE_AFTER;
        loop {
            let snap = self.snapshot()?;
            let waiting = snap.views.iter().any(|v| {
                v.state == TaskState::Starting && v.pid.is_none() && v.last_exit.is_none()
            });
            let now = Instant::now();
            if now >= deadline {
                return Some(snap);
            }
            if !waiting {
                std::thread::sleep(SETTLE.min(deadline - now));
                return self.snapshot();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.control
            .blocking_send(Envelope {
                request: Request::Snapshot,
                reply: tx,
            })
            .ok()?;
        match rx.blocking_recv() {
            Ok(Reply::Snapshot(s)) => Some(*s),
            _ => None,
        }
    }

    fn table(&self, snap: &Snapshot) -> String {
        let mut rows = vec![["NAME", "STATE", "PID", "PORT", "REASON"].map(String::from)];
        for v in snap.views.iter().take(MAX_ROWS) {
            rows.push([
                v.spec.name.clone(),
                v.state.as_str().to_string(),
                v.pid.map_or("-".into(), |p| p.to_string()),
                v.port.map_or("-".into(), |p| p.to_string()),
                reason(v, snap.now)
                    .or_else(|| {
                        let e = v.last_exit.filter(|_| v.restarts > 0)?;
                        Some(format!("restarted after {}", e.status))
                    })
                    .unwrap_or_default(),
            ]);
        }
        let widths: Vec<usize> = (0..5)
            .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let running = snap
            .views
            .iter()
            .filter(|v| v.state == TaskState::Running)
            .count();
        let mut out = format!(
            "supervisor: {running} of {} tasks running:\n",
            snap.views.len()
        );
        for r in &rows {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
        }
        if snap.views.len() > MAX_ROWS {
            let _ = writeln!(out, "  … and {} more", snap.views.len() - MAX_ROWS);
        }
        if self.api.is_some() {
            let me = std::env::args()
                .next()
                .unwrap_or_else(|| "supervisor".into());
            let dump = match &self.dump {
                Some(d) if d.as_os_str() != crate::ctl_target::DEFAULT_RUN_DUMP => {
                    format!(" --dumpfile={}", d.display())
                }
                _ => String::new(),
            };
            let _ = writeln!(out, "supervisor: `{me} ctl{dump} status` shows them again");
        }
        out
    }
}
