//! The event loop: the one place that owns the [`Core`] and carries out its actions.
//!
//! ```text
//!   SIGCHLD ──► peek ──► core.handle(Exited) ──► spawn the replacement now
//!                                           └──► clean up the dead group, reap
//!   timers  ──► core.handle_timeout(now)
//!   SIGTERM/SIGINT ──► core.shutdown(now, force on the second SIGINT)
//!   SIGHUP  ──► reopen the log file
//!   writer  ──► core.checkpoint_written(now)
//!                 │
//!   core.poll_action() ──► spawn / signal / check group / checkpoint / log event
//! ```
//! The core lives on this one thread. Two helper threads never touch it: the checkpoint writer
//! (write, fsync, rename) and the HTTP API, which gets a [`Snapshot`] of the state and encodes
//! it there.
use crate::checkpoint_io::{self, WriteResult, Writer};
use crate::control::{
    ApiError, CheckpointHealth, Clock, Envelope, Reply, Request, Snapshot, TaskJson,
};
use crate::events::{event_json, log_event};
use crate::kill;
use crate::logging::LogTarget;
use crate::metrics::Metrics;
use crate::reaper;
use crate::spawn::{self, GENERATION_VAR, INSTANCE_VAR, TASK_VAR};
use procio::procfs;
use serde_json::value::RawValue;
use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use supervisor_core::checkpoint::VERSION;
use supervisor_core::{
    Action, Checkpoint, Core, Event, ExitStatus, Input, Sig, SupervisorIdentity, TaskRecord,
    TaskState, parse_task,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc};

/// A descendant of a task that left the task's process group and was reparented to us.
#[derive(Debug, Clone, Copy)]
struct Escapee {
    pid: i32,
    pgid: i32,
    /// The generation of the task process it descends from (`TIMESERVICE_GENERATION`).
    generation: Option<u64>,
}

/// Where and how to checkpoint.
pub struct DumpConfig {
    pub path: PathBuf,
}

/// Everything the loop needs besides the core.
pub struct Daemon {
    pub core: Core,
    /// Who we are; `identity.instance` is the marker every task carries.
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
    escaped_index: OnceCell<HashMap<String, Vec<Escapee>>>,
    /// Start times of live children, filled when a checkpoint first needs them.
    start_ticks: RefCell<HashMap<u32, u64>>,
    /// The encoded checkpoint records and the core's change count they reflect.
    encoded_records: Option<(u64, Box<RawValue>)>,
    /// Actions taken out of the core while reaping, kept for the end of the loop turn: only
    /// spawns are carried out at once.
    deferred: VecDeque<Action>,
}

impl Daemon {
    pub fn new(
        core: Core,
        identity: SupervisorIdentity,
        log: LogTarget,
        dump: Option<DumpConfig>,
        control_rx: Option<mpsc::Receiver<Envelope>>,
        events_tx: broadcast::Sender<Arc<str>>,
        metrics: Metrics,
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
            identity,
            log,
            dump,
            writer,
            written_rx,
            last_checkpoint_error: None,
            checkpoint_error_gate: None,
            control_rx,
            events_tx,
            metrics,
            clock: Clock::now(),
            started: Instant::now(),
            last_checkpoint_ok: None,
            escaped_index: OnceCell::new(),
            start_ticks: RefCell::new(HashMap::new()),
            encoded_records: None,
            deferred: VecDeque::new(),
        })
    }

    /// Runs until every task is stopped after SIGTERM/SIGINT.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let children = reaper::ChildSignals::new()?;
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
                r = children.recv() => match r {
                    Ok(hints) => self.reap_all(&hints),
                    Err(e) => {
                        // Cannot happen with a valid signalfd; reaping on a timer would hide it.
                        anyhow::bail!("cannot read the SIGCHLD descriptor: {e}");
                    }
                },
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
        while let Some(action) = self
            .deferred
            .pop_front()
            .or_else(|| self.core.poll_action())
        {
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
                let input =
                    match spawn::spawn(&spec, &argv, port, &self.identity.instance, generation) {
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
                for e in self.escaped(&name) {
                    tracing::info!(task = %name, pid = e.pid, "signalling a descendant that left the task's process group");
                    let _ = kill::signal_group(e.pgid as u32, signo);
                    if sig == Sig::Term {
                        let _ = kill::signal_group(e.pgid as u32, libc::SIGCONT);
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
    /// reparented to us, the subreaper. They are our children, so their pids are stable until
    /// we reap them.
    fn escaped(&self, name: &str) -> Vec<Escapee> {
        self.escaped_index
            .get_or_init(|| self.build_escaped_index())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Task name → its escaped descendants, from one read of our children list.
    /// Built at most once per loop turn: a storm of 10 000 deaths must not read a list of
    /// 10 000 children 10 000 times.
    fn build_escaped_index(&self) -> HashMap<String, Vec<Escapee>> {
        let mut index: HashMap<String, Vec<Escapee>> = HashMap::new();
        for pid in procfs::own_children() {
            if self.core.task_by_pid(pid as u32).is_some() {
                continue;
            }
            let Some(env) = procfs::environ(pid) else {
                continue;
            };
            if procfs::env_value(&env, INSTANCE_VAR).as_deref()
                != Some(self.identity.instance.as_str())
            {
                continue;
            }
            let Some(task) = procfs::env_value(&env, TASK_VAR) else {
                continue;
            };
            let generation = procfs::env_value(&env, GENERATION_VAR).and_then(|g| g.parse().ok());
            if let Some(s) = procfs::stat(pid).ok().filter(|s| !s.is_zombie()) {
                index.entry(task).or_default().push(Escapee {
                    pid,
                    pgid: s.pgid,
                    generation,
                });
            }
        }
        index
    }

    /// Handles every child that has died. `hints`: pids named by the SIGCHLDs just read, looked
    /// at first and directly (a scan of 10 000 children for the dead one costs milliseconds);
    /// then a scan finds the deaths whose signals coalesced, and shows none is left.
    fn reap_all(&mut self, hints: &[u32]) {
        // Escaped descendants were reparented to us long before their leader died: one index
        // for the whole batch has them.
        self.escaped_index = OnceCell::new();
        let mut yielded = false;
        for &pid in hints {
            match reaper::peek_pid(pid) {
                Ok(Some(dead)) => {
                    if !self.on_dead(dead, &mut yielded) {
                        return;
                    }
                }
                Ok(None) => {}
                // ECHILD: already reaped, or not ours (the pid was only a hint).
                Err(_) => {}
            }
        }
        loop {
            let dead = match reaper::peek() {
                Ok(Some(dead)) => dead,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "waitid failed");
                    return;
                }
            };
            if !self.on_dead(dead, &mut yielded) {
                return;
            }
        }
    }

    /// One dead, unreaped child: the core decides, the replacement is spawned, then what is
    /// left of the dead instance goes and the child is reaped. False when it could not be
    /// reaped (the caller stops: peeking again would find the same child).
    fn on_dead(&mut self, dead: reaper::Dead, yielded: &mut bool) -> bool {
        let pid = dead.pid;
        let now = Instant::now();
        let mut port_taken = false;
        let mut leader_of = None;
        if let Some(view) = self.core.task_by_pid(pid).and_then(|id| self.core.view(id)) {
            if view.state == TaskState::Running {
                let uptime = view
                    .started_at
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
                if let Some(port) = view.port {
                    port_taken =
                        uptime < self.core.policy().min_uptime && !spawn::port_is_free(port);
                }
                leader_of = Some((view.spec.name.clone(), view.generation));
            }
        }
        self.start_ticks.get_mut().remove(&pid);
        self.core.handle(
            now,
            Input::Exited {
                pid,
                status: ExitStatus::from_wait_status(dead.raw_status),
                port_taken,
            },
        );
        // The replacement first: the peek gave the core all it needs to decide, and the
        // clean-up below does not change what it decided.
        if self.spawn_now() && !*yielded {
            // The new process most likely sits on this CPU's run queue (we were blocked in
            // its vfork), and it would wait there for all the bookkeeping below unless the
            // CPU is handed over now. Once per batch: in a storm the other CPUs take over.
            // SAFETY: sched_yield has no arguments and cannot fail on Linux.
            unsafe { libc::sched_yield() };
            *yielded = true;
        }
        if let Some((name, generation)) = leader_of {
            // The leader died on its own: what is left of its group belongs to a dead
            // instance and would hold its port. Safe: the unreaped leader pins the pgid.
            // Descendants that left the group (setsid) and were reparented to us go too,
            // as with systemd's control-group kill; otherwise every restart would add
            // another. They are our children, so their pids are pinned as well. The
            // replacement may have escapees of its own by now: its generation is newer.
            let _ = kill::signal_group(pid, libc::SIGKILL);
            for e in self.escaped(&name) {
                if e.generation.is_none_or(|g| g <= generation) {
                    let _ = kill::signal_group(e.pgid as u32, libc::SIGKILL);
                }
            }
        }
        if let Err(e) = reaper::reap(pid) {
            tracing::error!(pid, error = %e, "waitpid failed");
            return false;
        }
        true
    }

    /// Carries out the spawns the core wants now; every other action waits for the end of the
    /// loop turn, in order (see [`Daemon::drain_actions`]). True when it tried to spawn.
    fn spawn_now(&mut self) -> bool {
        let mut spawned = false;
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Spawn { .. } => {
                    self.execute(action);
                    spawned = true;
                }
                other => self.deferred.push_back(other),
            }
        }
        spawned
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

    /// The checkpoint document around `tasks`, stamped now.
    fn checkpoint_doc<T>(&self, clean: bool, tasks: T) -> Checkpoint<T> {
        Checkpoint {
            version: VERSION,
            supervisor: self.identity.clone(),
            written_at_ms: checkpoint_io::unix_ms(SystemTime::now()),
            clean,
            tasks,
        }
    }

    /// Encodes the checkpoint records of the live processes, unless the core reports no change
    /// since the last time: an idle supervisor of 10 000 tasks then only restamps the document.
    fn refresh_encoded_records(&mut self) -> serde_json::Result<()> {
        let changes = self.core.changes();
        if self
            .encoded_records
            .as_ref()
            .is_some_and(|(seen, _)| *seen == changes)
        {
            return Ok(());
        }
        let mut tasks = self.core.checkpoint_records();
        for t in &mut tasks {
            t.boot_id = Some(self.identity.boot_id.clone());
            if t.start_time.is_none() {
                t.start_time = self.start_ticks_of(t.pid);
            }
        }
        self.encoded_records = Some((changes, serde_json::value::to_raw_value(&tasks)?));
        Ok(())
    }

    fn checkpoint(&mut self) {
        let encoded = self.refresh_encoded_records().and_then(|()| {
            let tasks = self.encoded_records.as_ref().map(|(_, raw)| &**raw);
            serde_json::to_vec(&self.checkpoint_doc(false, tasks))
        });
        let submitted = match (&self.writer, encoded) {
            (Some(w), Ok(mut bytes)) => {
                bytes.push(b'\n');
                w.submit(bytes)
            }
            (_, Err(e)) => {
                tracing::error!(error = %e, "cannot encode the checkpoint");
                false
            }
            (None, Ok(_)) => false,
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
        let doc = self.checkpoint_doc(true, Vec::<TaskRecord>::new());
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
            Request::Snapshot => return Reply::Snapshot(Box::new(self.snapshot(now))),
            Request::GetTask(name) => {
                return self
                    .task_json(&name, now)
                    .map_or_else(Reply::Error, |t| Reply::Task(Box::new(t)));
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

    /// The state the read-only requests need; the API thread does the rest.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        Snapshot {
            views: self.core.views(),
            now,
            clock: self.clock,
            started: self.started,
            instance: self.identity.instance.clone(),
            shutting_down: self.core.is_shutting_down(),
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
        self.reap_all(&[]);
        let me = std::process::id() as i32;
        let mut strays = Vec::new();
        for pid in procfs::all_pids() {
            if pid == me
                || procfs::environ_var(pid, INSTANCE_VAR).as_deref()
                    != Some(self.identity.instance.as_str())
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
        self.reap_all(&[]);
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
