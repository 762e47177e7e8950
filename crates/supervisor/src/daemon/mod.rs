//! The event loop: the one place that owns the [`Core`] and carries out its actions.
//!
//! ```text
//!   SIGCHLD ──► peek ──► core.handle(Exited, with the facts: remains?) ──► process actions now
//!                                   (kill the remains, check them, probe the port, spawn)
//!                                └──► reap; log lines, metrics, events, checkpoint after
//!   timers  ──► core.handle_timeout(now)
//!   SIGTERM/SIGINT ──► core.shutdown(now, force on the second SIGINT)
//!   SIGHUP  ──► reopen the log file
//!   writer  ──► core.checkpoint_written(now)
//!   API     ──► answers (read-only requests get a snapshot; the API thread encodes it)
//! ```
//! The core lives on this one thread. Two helper threads never touch it: the checkpoint writer
//! (write, fsync, rename) and the HTTP API.
//!
//! # Layout
//! - `execute`: one action of the core, carried out (spawn, signal, check, probe, release,
//!   sweep).
//! - `reaping`: deaths, from the SIGCHLD descriptor to the reap.
//! - `checkpointing`: the dump, encoded here and written by the writer thread.
//! - `answers`: control requests and snapshots for the API.
mod answers;
mod checkpointing;
mod execute;
mod reaping;

use crate::checkpoint_io::{WriteResult, Writer};
use crate::control::Clock;
use crate::control::Envelope;
use crate::events::{event_json, log_event};
use crate::logging::LogTarget;
use crate::metrics::Metrics;
use crate::reaper;
use crate::tracking::Tracker;
use serde_json::value::RawValue;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};
use supervisor_core::{Action, Core, Event, SupervisorIdentity};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// Where and how to checkpoint.
pub struct DumpConfig {
    pub path: PathBuf,
}

/// Everything the loop needs besides the core.
pub struct Daemon {
    /// Every decision; this thread is its only owner.
    pub core: Core,
    /// Who we are; `identity.instance` is the marker every task carries and names our cgroups.
    pub identity: SupervisorIdentity,
    /// The supervisor's own log (reopened on SIGHUP).
    pub log: LogTarget,
    /// The dump file, when there is one.
    pub dump: Option<DumpConfig>,
    /// Which processes belong to which group: cgroups, or process groups and markers.
    pub tracker: Tracker,
    /// The checkpoint writer thread, and where it says a write is done.
    writer: Option<Writer>,
    written_rx: Option<mpsc::UnboundedReceiver<WriteResult>>,
    /// The last checkpoint failure, for `/health` (cleared by the next success).
    last_checkpoint_error: Option<String>,
    /// Until when checkpoint failures are not logged again (one line per 30 s).
    checkpoint_error_gate: Option<Instant>,
    /// When the last checkpoint was written.
    last_checkpoint_ok: Option<Instant>,
    /// Requests from the API thread.
    control_rx: Option<mpsc::Receiver<Envelope>>,
    /// Cluster mode: assigned tasks refused here (invalid on this node), and why. The rest of
    /// the assignment is applied all the same; a refused task's running copy, if any, stays.
    cluster_refused: std::collections::BTreeMap<String, String>,
    /// Set by [`Request::Fatal`](crate::control::Request::Fatal): the exit is an error.
    fatal: Option<String>,
    /// Task events as JSON, for `/events` and upstream reports.
    events_tx: crate::event_log::EventLog,
    /// Counters shared with the API thread.
    pub metrics: Metrics,
    /// Turns the loop's instants into wall-clock times for people.
    clock: Clock,
    /// When this supervisor started (uptime in `/health`).
    started: Instant,
    /// Start times of live leaders, read when a checkpoint first needs them (the spawn path
    /// stays short; an unreaped child keeps its /proc entry).
    start_ticks: RefCell<HashMap<u32, u64>>,
    /// The encoded checkpoint records and the core's change count they reflect.
    encoded_records: Option<(u64, Box<RawValue>)>,
    /// Actions taken out of the core while handling a death, kept for the end of the loop
    /// turn: only those that touch processes are carried out at once.
    deferred: VecDeque<Action>,
    /// Cluster mode: the tasks the last assignment from the ubervisor held. Only these are
    /// removed when an assignment drops them; node-local tasks are never touched by one.
    cluster_tasks: std::collections::BTreeSet<String>,
}

impl Daemon {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: Core,
        identity: SupervisorIdentity,
        log: LogTarget,
        dump: Option<DumpConfig>,
        tracker: Tracker,
        control_rx: Option<mpsc::Receiver<Envelope>>,
        events_tx: crate::event_log::EventLog,
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
            tracker,
            writer,
            written_rx,
            last_checkpoint_error: None,
            checkpoint_error_gate: None,
            last_checkpoint_ok: None,
            control_rx,
            events_tx,
            metrics,
            clock: Clock::now(),
            started: Instant::now(),
            start_ticks: RefCell::new(HashMap::new()),
            encoded_records: None,
            deferred: VecDeque::new(),
            cluster_tasks: std::collections::BTreeSet::new(),
            fatal: None,
            cluster_refused: std::collections::BTreeMap::new(),
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
        // Children of ours that died meanwhile (escaped descendants included) are reaped.
        self.reap_all(&[]);
        self.write_final_checkpoint();
        self.tracker.finish();
        tracing::info!("all tasks stopped; supervisor exiting");
        match self.fatal.take() {
            Some(e) => Err(crate::control::FatalConfig(e).into()),
            None => Ok(()),
        }
    }

    /// Carries out every pending action. Actions beget actions (a spawn → its `Started` event,
    /// a busy port → the next port). Processes come first: a replacement is spawned before the
    /// death that caused it is logged, counted and streamed, so those microseconds are not added
    /// to the restart. Events keep their order among themselves.
    fn drain_actions(&mut self) {
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

    /// Logs an event, counts it, and tells the event stream.
    fn on_event(&mut self, e: &Event) {
        log_event(e);
        if let Event::Removed { name, .. } = e {
            self.tracker.task_removed(name);
        }
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
        // Kept for reconnecting clients even while nobody listens.
        let mut json = event_json(e, crate::checkpoint_io::unix_ms(SystemTime::now()));
        let uid = json["task"]
            .as_str()
            .and_then(|name| self.core.uid_of(name))
            .map(str::to_string);
        if let (Some(uid), Some(m)) = (uid, json.as_object_mut()) {
            m.insert("uid".into(), serde_json::Value::String(uid));
        }
        self.events_tx.push(json);
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
