//! One log line per event, with structured fields:
//! `task=timeserver-1 pid=4242 port=8001 status="killed by SIGKILL" uptime=12.300s`.
use std::time::Duration;
use supervisor_core::Event;
use tracing::{debug, error, info, warn};

/// Seconds with millisecond precision, e.g. `12.300s`.
pub fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

pub fn log_event(e: &Event) {
    match e {
        Event::Added { name, .. } => debug!(task = %name, "task added"),
        Event::Started {
            name,
            pid,
            port,
            generation,
            restart,
            since_death,
            quiet,
            ..
        } => {
            let port = port.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let latency = since_death
                .map(|d| format!("{:.3}ms", d.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "-".into());
            if *quiet {
                debug!(task = %name, pid, port = %port, generation, "task restarted");
            } else if *restart {
                info!(task = %name, pid, port = %port, generation, since_death = %latency, "task restarted");
            } else {
                info!(task = %name, pid, port = %port, "task started");
            }
        }
        Event::Exited {
            name,
            pid,
            status,
            uptime,
            expected,
            quiet,
            ..
        } => {
            let status = status.to_string();
            if *expected {
                info!(task = %name, pid, status = ?status, uptime = %secs(*uptime), "task exited after stop request");
            } else if *quiet {
                debug!(task = %name, pid, status = ?status, uptime = %secs(*uptime), "task died");
            } else {
                warn!(task = %name, pid, status = ?status, uptime = %secs(*uptime), "task died");
            }
        }
        Event::Backoff {
            name,
            delay,
            reason,
            quiet,
            ..
        } => {
            if *quiet {
                debug!(task = %name, delay = %secs(*delay), reason = ?reason, "restart delayed");
            } else {
                info!(task = %name, delay = %secs(*delay), reason = ?reason, "restart delayed");
            }
        }
        Event::YoyoEntered {
            name,
            quick_deaths,
            next_delay,
            ..
        } => error!(
            task = %name, quick_deaths, next_retry_in = %secs(*next_delay),
            "task is in yo-yo mode: it keeps dying right after start; restarting with growing delays (further deaths are logged at most every 30s)"
        ),
        Event::YoyoContinues {
            name,
            quick_deaths,
            suppressed,
            next_delay,
            ..
        } => warn!(
            task = %name, quick_deaths, suppressed_lines = suppressed, next_retry_in = %secs(*next_delay),
            "task still in yo-yo mode"
        ),
        Event::YoyoLeft {
            name, stable_for, ..
        } => {
            info!(task = %name, stable_for = %secs(*stable_for), "task left yo-yo mode: running stably")
        }
        Event::SpawnFailed {
            name,
            error,
            failures,
            retry_in,
            quiet,
            suppressed,
            ..
        } => {
            if *quiet {
                debug!(task = %name, error = %error, failures, retry_in = %secs(*retry_in), "task could not be started");
            } else {
                error!(task = %name, error = %error, failures, suppressed_lines = suppressed, retry_in = %secs(*retry_in), "task could not be started");
            }
        }
        Event::PortBusy { name, port, .. } => {
            info!(task = %name, port, "port in use by another process; trying the next one")
        }
        Event::PortConflictDeath { name, port, .. } => {
            warn!(task = %name, port, "task died at start and its port is held by another process; restarting on the next port")
        }
        Event::NoFreePort {
            name,
            retry_in,
            quiet,
            ..
        } => {
            if *quiet {
                debug!(task = %name, retry_in = %secs(*retry_in), "no free port in the range");
            } else {
                error!(task = %name, retry_in = %secs(*retry_in), "no free port in the range: every port is held by a task or in use; waiting");
            }
        }
        Event::Stopping {
            name, pid, reason, ..
        } => {
            info!(task = %name, pid, reason = ?reason, "stopping task (SIGTERM to its processes)")
        }
        Event::StopEscalated { name, after, .. } => {
            warn!(task = %name, after = %secs(*after), "did not stop after SIGTERM; sending SIGKILL to the rest of the group")
        }
        Event::StopFailed { name, .. } => {
            error!(task = %name, "processes survived SIGKILL; giving up on them")
        }
        Event::RemainsKilled {
            name, generation, ..
        } => {
            info!(task = %name, generation, "the dead leader left processes behind; killing them before the restart")
        }
        Event::LeftoverStopping {
            name,
            generation,
            pid,
            via,
            blocks_task,
        } => {
            let task = name.as_deref().unwrap_or("-");
            let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let generation = generation
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into());
            info!(task = %task, pid = %pid, generation = %generation, via, waits_for_it = blocks_task, "stopping a leftover of the previous supervisor")
        }
        Event::LeftoverStopped { name, failed, took } => {
            let task = name.as_deref().unwrap_or("-");
            if *failed {
                error!(task = %task, took = %secs(*took), "a leftover survived SIGKILL; giving up on it")
            } else {
                info!(task = %task, took = %secs(*took), "leftover stopped")
            }
        }
        Event::LeftAlone {
            reason,
            tasks,
            pids,
            writer,
        } => {
            let tasks = if tasks.is_empty() {
                "-".to_string()
            } else {
                tasks.join(",")
            };
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            let pids = if pids.is_empty() {
                "-".to_string()
            } else {
                pids.join(",")
            };
            match writer {
                Some(w) => {
                    warn!(tasks = %tasks, pids = %pids, writer_pid = w, why = reason.as_str(), "recovery: left alone: the dump's own supervisor still runs them (was the dump copied?)")
                }
                None => {
                    info!(tasks = %tasks, pids = %pids, why = reason.as_str(), "recovery: dump entries or processes left alone")
                }
            }
        }
        Event::RecoveryFinished {
            stopped,
            failed,
            took,
        } => {
            if *failed > 0 {
                error!(stopped, failed, took = %secs(*took), "recovery: leftovers of the previous supervisor stopped, some survived SIGKILL")
            } else {
                info!(stopped, took = %secs(*took), "recovery: leftovers of the previous supervisor stopped")
            }
        }
        Event::Invalid { name, what } => {
            error!(task = %name, transition = %what, "internal error: a state change the supervisor does not allow (please report)")
        }
        Event::Stopped { name, .. } => info!(task = %name, "task stopped"),
        Event::Replacing { name, .. } => info!(task = %name, "task spec changed: replacing it"),
        Event::Ready {
            name, generation, ..
        } => {
            debug!(task = %name, generation, "task ready")
        }
        Event::CheckFailed {
            name,
            kind,
            failures,
            detail,
            restart,
            ..
        } => {
            if *restart {
                warn!(task = %name, check = kind.field(), failures, detail = %detail, "check failed too often: restarting the task")
            } else {
                warn!(task = %name, check = kind.field(), failures, detail = %detail, "check failed")
            }
        }
        Event::NotRestarted { name, policy, .. } => {
            info!(task = %name, restart = policy.as_str(), "task ended; its restart policy says not to start it again")
        }
        Event::Removed { name, .. } => info!(task = %name, "task removed"),
    }
}

/// The event as one JSON object for `GET /events` and upstream reports:
/// `{"type": "exited", "task": "web", "at_unix_ms": ..., ...}`.
pub fn event_json(e: &Event, at_unix_ms: u64) -> serde_json::Value {
    use serde_json::json;
    let none = String::new();
    let (kind, name, mut extra) = match e {
        Event::Added { name, .. } => ("added", name, json!({})),
        Event::Started {
            name,
            pid,
            port,
            generation,
            restart,
            since_death,
            ..
        } => (
            if *restart { "restarted" } else { "started" },
            name,
            json!({"pid": pid, "port": port, "generation": generation,
                   "since_death_secs": since_death.map(|d| d.as_secs_f64())}),
        ),
        Event::Exited {
            name,
            pid,
            status,
            uptime,
            expected,
            ..
        } => (
            "exited",
            name,
            json!({"pid": pid, "status": status.to_string(), "uptime_secs": uptime.as_secs_f64(), "expected": expected}),
        ),
        Event::Backoff {
            name,
            delay,
            reason,
            ..
        } => (
            "backoff",
            name,
            json!({"delay_secs": delay.as_secs_f64(), "reason": reason}),
        ),
        Event::YoyoEntered {
            name,
            quick_deaths,
            next_delay,
            ..
        } => (
            "yoyo_entered",
            name,
            json!({"quick_deaths": quick_deaths, "next_retry_in_secs": next_delay.as_secs_f64()}),
        ),
        Event::YoyoContinues {
            name,
            quick_deaths,
            suppressed,
            next_delay,
            ..
        } => (
            "yoyo_continues",
            name,
            json!({"quick_deaths": quick_deaths, "suppressed": suppressed, "next_retry_in_secs": next_delay.as_secs_f64()}),
        ),
        Event::YoyoLeft {
            name, stable_for, ..
        } => (
            "yoyo_left",
            name,
            json!({"stable_for_secs": stable_for.as_secs_f64()}),
        ),
        Event::SpawnFailed {
            name,
            error,
            failures,
            retry_in,
            ..
        } => (
            "spawn_failed",
            name,
            json!({"error": error, "failures": failures, "retry_in_secs": retry_in.as_secs_f64()}),
        ),
        Event::PortBusy { name, port, .. } => ("port_busy", name, json!({"port": port})),
        Event::PortConflictDeath { name, port, .. } => {
            ("port_conflict", name, json!({"port": port}))
        }
        Event::NoFreePort { name, retry_in, .. } => (
            "no_free_port",
            name,
            json!({"retry_in_secs": retry_in.as_secs_f64()}),
        ),
        Event::Stopping {
            name, pid, reason, ..
        } => ("stopping", name, json!({"pid": pid, "reason": reason})),
        Event::StopEscalated { name, .. } => ("stop_escalated", name, json!({})),
        Event::StopFailed { name, .. } => ("stop_failed", name, json!({})),
        Event::RemainsKilled {
            name, generation, ..
        } => ("remains_killed", name, json!({"generation": generation})),
        Event::LeftoverStopping {
            name,
            generation,
            pid,
            via,
            ..
        } => (
            "leftover_stopping",
            name.as_ref().unwrap_or(&none),
            json!({"pid": pid, "generation": generation, "via": via}),
        ),
        Event::LeftoverStopped { name, failed, took } => (
            "leftover_stopped",
            name.as_ref().unwrap_or(&none),
            json!({"failed": failed, "took_secs": took.as_secs_f64()}),
        ),
        Event::LeftAlone {
            reason,
            tasks,
            pids,
            writer,
        } => (
            "left_alone",
            &none,
            json!({"why": reason.as_str(), "tasks": tasks, "pids": pids, "writer_pid": writer}),
        ),
        Event::RecoveryFinished {
            stopped,
            failed,
            took,
        } => (
            "recovery_finished",
            &none,
            json!({"stopped": stopped, "failed": failed, "took_secs": took.as_secs_f64()}),
        ),
        Event::Invalid { name, what } => ("invalid_transition", name, json!({"what": what})),
        Event::Stopped { name, .. } => ("stopped", name, json!({})),
        Event::Replacing { name, .. } => ("replacing", name, json!({})),
        Event::Ready {
            name, generation, ..
        } => ("ready", name, json!({"generation": generation})),
        Event::CheckFailed {
            name,
            kind,
            failures,
            detail,
            restart,
            ..
        } => (
            "check_failed",
            name,
            json!({"check": kind.field(), "failures": failures, "detail": detail, "restart": restart}),
        ),
        Event::NotRestarted { name, policy, .. } => {
            ("not_restarted", name, json!({"restart": policy.as_str()}))
        }
        Event::Removed { name, .. } => ("removed", name, json!({})),
    };
    if let Some(m) = extra.as_object_mut() {
        m.insert("type".into(), json!(kind));
        m.insert("task".into(), json!(name));
        m.insert("at_unix_ms".into(), json!(at_unix_ms));
    }
    extra
}
