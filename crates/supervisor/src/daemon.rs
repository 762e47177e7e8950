//! The event loop: the one place that owns the [`Core`] and carries out its actions.
//!
//! ```text
//!   SIGCHLD ──► reap (peek, clean up group, reap) ──► core.handle(Exited)
//!   timers  ──► core.handle_timeout(now)
//!   SIGTERM/SIGINT ──► core.shutdown(now, force on the second SIGINT)
//!   SIGHUP  ──► reopen the log file
//!   writer  ──► core.checkpoint_written(now)
//!                 │
//!   core.poll_action() ──► spawn / signal / check group / checkpoint / log event
//! ```
//! Everything runs on one thread; the checkpoint writer is the only helper thread.
use crate::checkpoint_io::{self, WriteResult, Writer};
use crate::control::{
    ApiError, CheckpointHealth, Clock, Counts, Envelope, Health, Reply, Request, TaskJson,
};
use crate::events::{event_json, log_event};
use crate::kill;
use crate::logging::LogTarget;
use crate::metrics::Metrics;
use crate::procfs;
use crate::reaper;
use crate::spawn::{self, INSTANCE_VAR, TASK_VAR};
use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use supervisor_core::checkpoint::VERSION;
use supervisor_core::{
    Action, BackoffReason, Checkpoint, Core, Event, ExitStatus, Input, Sig, SupervisorIdentity,
    TaskState, parse_task,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc};

/// Where and how to checkpoint.
pub struct DumpConfig {
    pub path: PathBuf,
}

/// Everything the loop needs besides the core.
pub struct Daemon {
    pub core: Core,
    pub instance: String,
    pub identity: SupervisorIdentity,
    pub log: LogTarget,
    pub dump: Option<DumpConfig>,
    writer: Option<Writer>,
    written_rx: Option<mpsc::UnboundedReceiver<WriteResult>>,
    last_checkpoint_error: Option<String>,
    checkpoint_error_gate: Option<Instant>,
    control_rx: Option<mpsc::Receiver<Envelope>>,
    events_tx: broadcast::Sender<Arc<str>>,
    pub metrics: Metrics,
    clock: Clock,
    started: Instant,
    last_checkpoint_ok: Option<Instant>,
    /// Escaped descendants by task, read from /proc at most once per loop turn.
    escaped_index: OnceCell<HashMap<String, Vec<(i32, i32)>>>,
    /// Start times of live children, filled when a checkpoint first needs them.
    start_ticks: RefCell<HashMap<u32, u64>>,
}

impl Daemon {
    pub fn new(
        core: Core,
        instance: String,
        identity: SupervisorIdentity,
        log: LogTarget,
        dump: Option<DumpConfig>,
        control_rx: Option<mpsc::Receiver<Envelope>>,
        events_tx: broadcast::Sender<Arc<str>>,
    ) -> std::io::Result<Self> {
        let (writer, written_rx) = match &dump {
            Some(d) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(Writer::start(d.path.clone(), tx)?), Some(rx))
            }
            None => (None, None),
        };
        Ok(Daemon {
            core,
            instance,
            identity,
            log,
            dump,
            writer,
            written_rx,
            last_checkpoint_error: None,
            checkpoint_error_gate: None,
            control_rx,
            events_tx,
            metrics: Metrics::default(),
            clock: Clock::now(),
            started: Instant::now(),
            last_checkpoint_ok: None,
            escaped_index: OnceCell::new(),
            start_ticks: RefCell::new(HashMap::new()),
        })
    }

    /// Runs until every task is stopped after SIGTERM/SIGINT.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut interrupts = 0u32;
        let mut written_rx = self.written_rx.take();
        let mut control_rx = self.control_rx.take();
        loop {
            self.core.handle_timeout(Instant::now());
            self.drain_actions();
            if self.core.is_finished() {
                break;
            }
            let sleep_until = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = sigchld.recv() => self.reap_all(),
                _ = sigterm.recv() => {
                    tracing::info!("SIGTERM: stopping every task");
                    self.core.shutdown(Instant::now(), false);
                }
                _ = sigint.recv() => {
                    interrupts += 1;
                    let force = interrupts > 1 || self.core.is_shutting_down();
                    if force {
                        tracing::warn!("second interrupt: killing every task at once");
                    } else {
                        tracing::info!("SIGINT: stopping every task (interrupt again to kill at once)");
                    }
                    self.core.shutdown(Instant::now(), force);
                }
                _ = sighup.recv() => match self.log.reopen() {
                    Ok(()) => tracing::info!("SIGHUP: log file reopened"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: cannot reopen the log file; still writing to the old one"),
                },
                Some(r) = recv_opt(&mut written_rx) => self.on_written(r),
                Some(env) = recv_bounded(&mut control_rx) => self.on_control(env),
                _ = sleep_opt(sleep_until) => {}
            }
        }
        self.final_sweep();
        self.write_final_checkpoint();
        tracing::info!("all tasks stopped; supervisor exiting");
        Ok(())
    }

    fn drain_actions(&mut self) {
        // Actions beget actions (a spawn → its `Started` event, a busy port → the next port).
        // Processes come first: a replacement is spawned before the death that caused it is
        // logged, counted and streamed, so those microseconds are not added to the restart.
        // Events keep their order among themselves.
        self.escaped_index = OnceCell::new();
        let mut events = Vec::new();
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Event(e) => events.push(e),
                other => self.execute(other),
            }
        }
        for e in &events {
            self.on_event(e);
        }
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Spawn {
                task,
                generation,
                spec,
                argv,
                port,
            } => {
                if let Some(p) = port {
                    if !spawn::port_is_free(p) {
                        self.core.handle(
                            Instant::now(),
                            Input::PortBusy {
                                task,
                                generation,
                                port: p,
                            },
                        );
                        return;
                    }
                }
                let input = match spawn::spawn(&spec, &argv, port, &self.instance) {
                    Ok(pid) => {
                        // The start time is read when a checkpoint needs it, not here: an
                        // unreaped child keeps its /proc entry, and the spawn path stays short.
                        let start_ticks = None;
                        Input::Spawned {
                            task,
                            generation,
                            pid,
                            start_ticks,
                        }
                    }
                    Err(e) => Input::SpawnFailed {
                        task,
                        generation,
                        error: e.to_string(),
                    },
                };
                self.core.handle(Instant::now(), input);
            }
            Action::Signal {
                name, pgid, sig, ..
            } => {
                let signo = match sig {
                    Sig::Term => libc::SIGTERM,
                    Sig::Kill => libc::SIGKILL,
                };
                if let Err(e) = kill::signal_group(pgid, signo) {
                    tracing::warn!(task = %name, pgid, error = %e, "cannot signal process group");
                }
                if sig == Sig::Term {
                    // A stopped (SIGSTOP) process only acts on TERM once continued.
                    let _ = kill::signal_group(pgid, libc::SIGCONT);
                }
                for (pid, pgid) in self.escaped(&name) {
                    tracing::info!(task = %name, pid, "signalling a descendant that left the task's process group");
                    let _ = kill::signal_group(pgid as u32, signo);
                    if sig == Sig::Term {
                        let _ = kill::signal_group(pgid as u32, libc::SIGCONT);
                    }
                }
            }
            Action::CheckGroup {
                task,
                generation,
                name,
                pgid,
            } => {
                let empty = !kill::group_exists(pgid) && self.escaped(&name).is_empty();
                self.core.handle(
                    Instant::now(),
                    Input::GroupStatus {
                        task,
                        generation,
                        empty,
                    },
                );
            }
            Action::Checkpoint => self.checkpoint(),
            Action::Event(e) => self.on_event(&e),
        }
    }

    /// Descendants of task `name` that left its process group (double fork + setsid) and were
    /// reparented to us, the subreaper: (pid, pgid). They are our children, so their pids are
    /// stable until we reap them.
    fn escaped(&self, name: &str) -> Vec<(i32, i32)> {
        self.escaped_index
            .get_or_init(|| self.build_escaped_index())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Task name → (pid, pgid) of its escaped descendants, from one read of our children list.
    /// Built at most once per loop turn: a storm of 10 000 deaths must not read a list of
    /// 10 000 children 10 000 times.
    fn build_escaped_index(&self) -> HashMap<String, Vec<(i32, i32)>> {
        let mut index: HashMap<String, Vec<(i32, i32)>> = HashMap::new();
        for pid in procfs::own_children() {
            if self.core.task_by_pid(pid as u32).is_some() {
                continue;
            }
            if procfs::environ_var(pid, INSTANCE_VAR).as_deref() != Some(self.instance.as_str()) {
                continue;
            }
            let Some(task) = procfs::environ_var(pid, TASK_VAR) else {
                continue;
            };
            if let Some(s) = procfs::stat(pid).ok().filter(|s| !s.is_zombie()) {
                index.entry(task).or_default().push((pid, s.pgid));
            }
        }
        index
    }

    fn reap_all(&mut self) {
        // Escaped descendants were reparented to us long before their leader died: the index
        // from the start of this batch has them.
        self.escaped_index = OnceCell::new();
        loop {
            let pid = match reaper::peek() {
                Ok(Some(pid)) => pid,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "waitid failed");
                    return;
                }
            };
            let now = Instant::now();
            let mut port_taken = false;
            if let Some(view) = self.core.task_by_pid(pid).and_then(|id| self.core.view(id)) {
                if view.state == TaskState::Running {
                    let uptime = view
                        .started_at
                        .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                    if let Some(port) = view.port {
                        port_taken =
                            uptime < self.core.policy().min_uptime && !spawn::port_is_free(port);
                    }
                    // The leader died on its own: what is left of its group belongs to a dead
                    // instance and would hold its port. Safe: the unreaped leader pins the pgid.
                    // Descendants that left the group (setsid) and were reparented to us go too,
                    // as with systemd's control-group kill; otherwise every restart would add
                    // another. They are our children, so their pids are pinned as well.
                    let _ = kill::signal_group(pid, libc::SIGKILL);
                    for (_, pgid) in self.escaped(&view.spec.name) {
                        let _ = kill::signal_group(pgid as u32, libc::SIGKILL);
                    }
                }
            }
            self.start_ticks.get_mut().remove(&pid);
            match reaper::reap(pid) {
                Ok(r) => {
                    let status = ExitStatus::from_wait_status(r.raw_status);
                    self.core.handle(
                        Instant::now(),
                        Input::Exited {
                            pid,
                            status,
                            port_taken,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(pid, error = %e, "waitpid failed");
                    return;
                }
            }
        }
    }

    /// `/proc/PID/stat` start time of our live child `pid`, read once per process.
    fn start_ticks_of(&self, pid: u32) -> Option<u64> {
        let mut cache = self.start_ticks.borrow_mut();
        if let Some(t) = cache.get(&pid) {
            return Some(*t);
        }
        let t = procfs::stat(pid as i32).ok()?.start_ticks;
        cache.insert(pid, t);
        Some(t)
    }

    fn checkpoint_doc(&self, clean: bool) -> Checkpoint {
        let mut tasks = if clean {
            Vec::new()
        } else {
            self.core.checkpoint_records()
        };
        for t in &mut tasks {
            t.boot_id = Some(self.identity.boot_id.clone());
            if t.start_time.is_none() {
                t.start_time = self.start_ticks_of(t.pid);
            }
        }
        Checkpoint {
            version: VERSION,
            supervisor: self.identity.clone(),
            written_at_ms: checkpoint_io::unix_ms(SystemTime::now()),
            clean,
            tasks,
        }
    }

    fn checkpoint(&mut self) {
        let doc = self.checkpoint_doc(false);
        let submitted = match (&self.writer, serde_json::to_vec(&doc)) {
            (Some(w), Ok(mut bytes)) => {
                bytes.push(b'\n');
                w.submit(bytes)
            }
            _ => false,
        };
        if !submitted {
            self.core.checkpoint_written(Instant::now());
        }
    }

    fn on_written(&mut self, r: WriteResult) {
        let now = Instant::now();
        self.metrics
            .checkpoint_duration
            .observe(r.took.as_secs_f64());
        match r.error {
            None => {
                self.last_checkpoint_ok = Some(now);
                if self.last_checkpoint_error.take().is_some() {
                    tracing::info!("checkpoint written again after earlier failures");
                }
                tracing::debug!(
                    took_ms = r.took.as_secs_f64() * 1e3,
                    bytes = r.bytes,
                    "checkpoint written"
                );
            }
            Some(e) => {
                self.metrics.checkpoint_errors.inc();
                let due = self.checkpoint_error_gate.is_none_or(|t| now >= t);
                if due {
                    tracing::error!(error = %e, "cannot write checkpoint; the previous dump stays in place, tasks keep running");
                    self.checkpoint_error_gate = Some(now + Duration::from_secs(30));
                }
                self.last_checkpoint_error = Some(e);
            }
        }
        self.core.checkpoint_written(now);
    }

    fn write_final_checkpoint(&self) {
        let Some(d) = &self.dump else { return };
        let doc = self.checkpoint_doc(true);
        match serde_json::to_vec(&doc) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                if let Err(e) = checkpoint_io::write_now(&d.path, &bytes) {
                    tracing::error!(error = %e, "cannot write the final checkpoint");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode the final checkpoint"),
        }
    }

    /// Logs an event, counts it, and tells the event stream.
    fn on_event(&mut self, e: &Event) {
        log_event(e);
        match e {
            Event::Exited {
                expected: false, ..
            } => {
                self.metrics.task_deaths.inc();
            }
            Event::SpawnFailed { .. } => {
                self.metrics.spawn_failures.inc();
            }
            Event::YoyoEntered { .. } => {
                self.metrics.yoyo_entered.inc();
            }
            Event::Started {
                since_death: Some(d),
                ..
            } => self.metrics.restart_latency.observe(d.as_secs_f64()),
            _ => {}
        }
        if self.events_tx.receiver_count() > 0 {
            let json = event_json(e, checkpoint_io::unix_ms(SystemTime::now())).to_string();
            let _ = self.events_tx.send(Arc::from(json));
        }
    }

    fn on_control(&mut self, env: Envelope) {
        let reply = self.answer(env.request);
        // The requester may have given up (timeout, closed connection): nothing to do then.
        let _ = env.reply.send(reply);
    }

    fn answer(&mut self, request: Request) -> Reply {
        let now = Instant::now();
        let result = match request {
            Request::Health => return Reply::Health(Box::new(self.health(now))),
            Request::ListTasks => {
                let views = self.core.views();
                return Reply::Tasks(
                    views
                        .iter()
                        .map(|v| TaskJson::from_view(v, now, &self.clock))
                        .collect(),
                );
            }
            Request::GetTask(name) => {
                return self
                    .task_json(&name, now)
                    .map_or_else(Reply::Error, |t| Reply::Task(Box::new(t)));
            }
            Request::Metrics => {
                return Reply::Metrics(self.metrics.render(
                    &self.core.views(),
                    now,
                    &self.clock,
                    self.started,
                ));
            }
            Request::Start(name) => self.core.start(now, &name),
            Request::Stop(name) => self.core.stop(now, &name),
            Request::Restart(name) => self.core.restart(now, &name),
            Request::Remove(name) => self.core.remove(now, &name),
            Request::Add(value) => {
                let taken: HashSet<String> = self
                    .core
                    .views()
                    .into_iter()
                    .map(|v| v.spec.name.clone())
                    .collect();
                let spec = match parse_task(
                    &value,
                    self.core.task_count() + 1,
                    &taken,
                    self.core.port_range(),
                ) {
                    Ok(s) => s,
                    Err(e) => return Reply::Error(ApiError::from(e)),
                };
                if let Some(input) = &spec.input {
                    if let Err(e) = std::fs::File::open(input) {
                        return Reply::Error(ApiError::new(
                            400,
                            format!(
                                "task {}: field \"input\": cannot open {input} for reading: {e}",
                                spec.name
                            ),
                        ));
                    }
                }
                let name = spec.name.clone();
                tracing::info!(task = %name, argv = ?spec.command, "task added through the API");
                return match self.core.add_task(now, spec) {
                    Ok(_) => self
                        .task_json(&name, now)
                        .map_or_else(Reply::Error, |t| Reply::Added(Box::new(t))),
                    Err(e) => Reply::Error(e.into()),
                };
            }
        };
        match result {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Error(e.into()),
        }
    }

    fn task_json(&self, name: &str, now: Instant) -> Result<TaskJson, ApiError> {
        let id = self
            .core
            .task_id(name)
            .ok_or_else(|| ApiError::new(404, format!("no task named {name:?}")))?;
        let v = self
            .core
            .view(id)
            .ok_or_else(|| ApiError::new(404, format!("no task named {name:?}")))?;
        Ok(TaskJson::from_view(&v, now, &self.clock))
    }

    /// `GET /health`: ok unless a task is in yo-yo mode or cannot be started, or checkpoints fail.
    pub fn health(&self, now: Instant) -> Health {
        let views = self.core.views();
        let mut reasons = Vec::new();
        for v in &views {
            if v.yoyo_since.is_some() {
                reasons.push(format!(
                    "task {} is in yo-yo mode ({} quick deaths in a row)",
                    v.spec.name, v.quick_deaths
                ));
            } else if v.backoff_reason == Some(BackoffReason::SpawnFailed) {
                reasons.push(format!(
                    "task {} cannot be started: {}",
                    v.spec.name,
                    v.last_error.as_deref().unwrap_or("unknown error")
                ));
            } else if v.backoff_reason == Some(BackoffReason::NoFreePort) {
                reasons.push(format!("task {} is waiting for a free port", v.spec.name));
            }
        }
        if let Some(e) = &self.last_checkpoint_error {
            reasons.push(format!("checkpoint failing: {e}"));
        }
        if self.core.is_shutting_down() {
            reasons.push("shutting down".into());
        }
        let more = reasons.len().saturating_sub(20);
        reasons.truncate(20);
        if more > 0 {
            reasons.push(format!("and {more} more"));
        }
        Health {
            status: if reasons.is_empty() { "ok" } else { "degraded" },
            reasons,
            pid: std::process::id(),
            instance: self.instance.clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            shutting_down: self.core.is_shutting_down(),
            tasks: Counts::of(&views),
            checkpoint: CheckpointHealth {
                enabled: self.dump.is_some(),
                path: self.dump.as_ref().map(|d| d.path.display().to_string()),
                last_age_secs: self
                    .last_checkpoint_ok
                    .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                last_error: self.last_checkpoint_error.clone(),
            },
        }
    }

    /// After every task is stopped: anything still carrying our marker escaped its group and
    /// our children list (e.g. a grandchild whose parent still ran when its task stopped).
    fn final_sweep(&mut self) {
        self.reap_all();
        let me = std::process::id() as i32;
        let mut strays = Vec::new();
        for pid in procfs::all_pids() {
            if pid == me
                || procfs::environ_var(pid, INSTANCE_VAR).as_deref() != Some(self.instance.as_str())
            {
                continue;
            }
            if let Ok(s) = procfs::stat(pid) {
                if let Ok(Some(p)) = kill::Pinned::open(pid, s.start_ticks) {
                    tracing::warn!(
                        pid,
                        task = procfs::environ_var(pid, TASK_VAR).unwrap_or_default(),
                        "stopping a stray process of a stopped task"
                    );
                    strays.push(p);
                }
            }
        }
        if !strays.is_empty() {
            let left = kill::stop_pinned(
                &strays,
                self.core.policy().stop_timeout.min(Duration::from_secs(2)),
                Duration::from_secs(2),
            );
            if !left.is_empty() {
                tracing::error!(pids = ?left, "processes survived SIGKILL");
            }
        }
        self.reap_all();
    }
}

async fn recv_bounded<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
