//! Why a task is not running, in one sentence for a person: the `reason` of `GET /tasks`, the
//! REASON column of `supervisor ctl status` and of the start-up table on the terminal.
use std::time::{Duration, Instant};
use supervisor_core::{BackoffReason, TaskState, TaskView};

/// `None` while the task runs normally.
pub fn reason(v: &TaskView, now: Instant) -> Option<String> {
    let retry = v
        .retry_at
        .map(|t| format!("; retry in {}", short(t.saturating_duration_since(now))))
        .unwrap_or_default();
    let last = v.last_exit.map(|e| e.status.to_string());
    if v.yoyo_since.is_some() {
        let mut s = format!("yo-yo: {} quick deaths in a row", v.quick_deaths);
        if let Some(l) = &last {
            s.push_str(&format!(", last {l}"));
        }
        match v.state {
            TaskState::Running => s.push_str("; up again, leaves yo-yo mode once it runs stably"),
            TaskState::Backoff => s.push_str(&retry),
            _ => {}
        }
        return Some(s);
    }
    match (v.state, v.backoff_reason) {
        (TaskState::Running, _) => None,
        (TaskState::Backoff, Some(BackoffReason::SpawnFailed)) => Some(format!(
            "cannot start: {}{retry}",
            v.last_error.as_deref().unwrap_or("unknown error")
        )),
        (TaskState::Backoff, Some(BackoffReason::NoFreePort)) => Some(format!(
            "waiting for a free port (every port of --port-range is held by a task or in use){retry}"
        )),
        (TaskState::Backoff, _) => Some(match &last {
            Some(l) => format!("died: {l}{retry}"),
            None => format!("restarting{retry}"),
        }),
        (TaskState::Starting, _) => match (&last, &v.last_error) {
            (Some(l), _) => Some(format!("restarting after {l}")),
            (None, Some(e)) => Some(format!("starting again after: {e}")),
            (None, None) => None,
        },
        (TaskState::Stopping, _) => Some("stopping: SIGTERM sent to its process group".into()),
        (TaskState::Stopped, _) => Some(match &last {
            Some(l) => format!("stopped on request (last exit: {l})"),
            None => "stopped on request".into(),
        }),
    }
}

/// `450ms`, `3.2s`, `2m05s`.
pub fn short(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations() {
        assert_eq!(short(Duration::from_millis(450)), "450ms");
        assert_eq!(short(Duration::from_millis(3_240)), "3.2s");
        assert_eq!(short(Duration::from_secs(125)), "2m05s");
    }
}
