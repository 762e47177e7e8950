//! Ready and health probes, run off the event loop on a thread of their own.
//!
//! Every 50 ms the thread asks the loop which probes are wanted (`Request::CheckTargets`: the
//! ready check of each running instance not ready yet, the health check of each ready one),
//! starts those whose interval has passed, each with its timeout, and reports each result
//! (`Request::Checked`); the core decides what follows (ready, restart after N failures).
//!
//! An `exec` probe is a child of the supervisor like any task, and the loop's reaper reaps
//! every child: the probe's pid is registered ([`Registry`]) before the reaper can see it die,
//! and the reaper hands its status here instead of to the core.
use crate::control::{Envelope, Reply, Request};
use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use supervisor_core::checks::{CheckKind, Probe};
use supervisor_core::{CheckTarget, TaskId};
use tokio::sync::{mpsc, oneshot};

/// Exec probes' pids, and their wait status once the reaper has seen them die.
static CHILDREN: Mutex<Option<HashMap<u32, Option<i32>>>> = Mutex::new(None);

/// The registry the reaper consults.
pub struct Registry;

impl Registry {
    /// Starts `cmd` and registers its pid, both under the lock (the reaper takes it too, so it
    /// cannot see the child die before it is registered).
    fn spawn(cmd: &mut std::process::Command) -> std::io::Result<u32> {
        let mut guard = CHILDREN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let child = cmd.spawn()?;
        let pid = child.id();
        // Dropping a std Child neither waits nor kills: the reaper reaps it.
        drop(child);
        guard.get_or_insert_with(HashMap::new).insert(pid, None);
        Ok(pid)
    }

    /// Called by the reaper for every dead child: true when it was a probe (its status is
    /// kept here, and the reaper just reaps it).
    pub fn record(pid: u32, raw_status: i32) -> bool {
        let mut guard = CHILDREN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.as_mut().and_then(|m| m.get_mut(&pid)) {
            Some(slot) => {
                *slot = Some(raw_status);
                true
            }
            None => false,
        }
    }

    /// The status once reaped (and forgets the pid); `None` while it runs.
    fn take(pid: u32) -> Option<i32> {
        let mut guard = CHILDREN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let m = guard.as_mut()?;
        let status = (*m.get(&pid)?)?;
        m.remove(&pid);
        Some(status)
    }

    /// Kills a probe that outlived its timeout, if it is not reaped yet (under the lock, so its
    /// pid cannot have been reused), and forgets it once reaped.
    fn kill(pid: u32) {
        let guard = CHILDREN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard
            .as_ref()
            .and_then(|m| m.get(&pid))
            .is_some_and(Option::is_none)
        {
            // SAFETY: the pid is our unreaped child (the reaper records under this lock
            // before reaping), so it names that process and no other.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Starts the probe thread.
pub fn spawn(control: mpsc::Sender<Envelope>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("probes".into())
        .spawn(move || rt.block_on(run(control)))?;
    Ok(())
}

async fn ask(control: &mpsc::Sender<Envelope>, request: Request) -> Option<Reply> {
    let (tx, rx) = oneshot::channel();
    control.send(Envelope { request, reply: tx }).await.ok()?;
    rx.await.ok()
}

async fn run(control: mpsc::Sender<Envelope>) {
    // When each (task, generation, kind) was last probed, and whether a probe is out.
    let mut last: HashMap<(TaskId, u64, CheckKind), (Instant, bool)> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(TaskId, u64, CheckKind)>();
    loop {
        let Some(Reply::CheckTargets(targets)) = ask(&control, Request::CheckTargets).await else {
            return; // the loop is gone: shutting down
        };
        while let Ok(key) = done_rx.try_recv() {
            if let Some(e) = last.get_mut(&key) {
                e.1 = false;
            }
        }
        let now = Instant::now();
        let mut live = std::collections::HashSet::new();
        for t in targets {
            let key = (t.task, t.generation, t.kind);
            live.insert(key);
            let due = match last.get(&key) {
                None => true,
                Some((at, running)) => !running && now.duration_since(*at) >= t.check.interval,
            };
            if !due {
                continue;
            }
            last.insert(key, (now, true));
            let control = control.clone();
            let done = done_tx.clone();
            tokio::spawn(async move {
                let (ok, detail) = probe(&t).await;
                let request = Request::Checked {
                    task: t.task,
                    generation: t.generation,
                    kind: t.kind,
                    ok,
                    detail,
                };
                let _ = ask(&control, request).await;
                let _ = done.send(key);
            });
        }
        last.retain(|k, _| live.contains(k));
        let pause = if live.is_empty() { 200 } else { 20 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Runs one probe: `(ok, why not)`.
async fn probe(t: &CheckTarget) -> (bool, String) {
    let timeout = t.check.timeout;
    match &t.check.probe {
        Probe::Tcp => {
            let Some(port) = t.port else {
                return (false, "no port".into());
            };
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("127.0.0.1", port)))
                .await
            {
                Ok(Ok(_)) => (true, String::new()),
                Ok(Err(e)) => (false, format!("connect to 127.0.0.1:{port}: {e}")),
                Err(_) => (
                    false,
                    format!("connect to 127.0.0.1:{port}: no answer within {timeout:?}"),
                ),
            }
        }
        Probe::Http(path) => {
            let Some(port) = t.port else {
                return (false, "no port".into());
            };
            let url = servicekit::http_client::Url {
                authority: format!("127.0.0.1:{port}"),
                path: path.clone(),
            };
            match servicekit::http_client::request("GET", &url, &[], None, timeout).await {
                Ok(r) if (200..400).contains(&r.status) => (true, String::new()),
                Ok(r) => (false, format!("GET {path}: HTTP {}", r.status)),
                Err(e) => (false, format!("GET {path}: {e}")),
            }
        }
        Probe::Exec(argv) => exec(argv, t, timeout).await,
    }
}

async fn exec(argv: &[String], t: &CheckTarget, timeout: Duration) -> (bool, String) {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("PID", t.pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(p) = t.port {
        cmd.env("PORT", p.to_string());
    }
    let pid = match Registry::spawn(&mut cmd) {
        Ok(pid) => pid,
        Err(e) => return (false, format!("cannot run {}: {e}", argv[0])),
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(raw) = Registry::take(pid) {
            let status = std::process::ExitStatus::from_raw(raw);
            return if status.success() {
                (true, String::new())
            } else {
                (false, format!("{} exited: {status}", argv[0]))
            };
        }
        if Instant::now() >= deadline {
            Registry::kill(pid);
            return (false, format!("{} took longer than {timeout:?}", argv[0]));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
