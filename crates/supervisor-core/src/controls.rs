//! Per-task controls beyond the brief's fields: what follows a death (`restart`), how a task
//! is asked to stop (`stop_signal`, `stop_timeout`), whether it starts by itself
//! (`autostart`), how a changed spec replaces it (`replace`), whether it keeps its port
//! (`port`), whom it runs as (`user`, `group`), what must be ready first (`depends_on`) and how
//! many copies run (`instances`). Validated like every other field (task and field named).
use crate::core::policy::MAX_SETTING;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// What follows the death of a task's process (a stop asked for is never followed by a start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Start it again, whatever the exit (the brief's behaviour).
    #[default]
    Always,
    /// Start it again unless it exited with status 0.
    OnFailure,
    /// Never: a one-shot task. It stays stopped once its process is gone.
    Never,
}

impl RestartPolicy {
    pub fn is_always(&self) -> bool {
        *self == RestartPolicy::Always
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

/// How a changed spec replaces a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplaceMode {
    /// Stop the old instance, then start the new one (the default).
    #[default]
    StopFirst,
    /// Start the new instance (on a new port), wait until it is ready, then stop the old one:
    /// no moment without a ready instance.
    StartFirst,
}

impl ReplaceMode {
    pub fn is_default(&self) -> bool {
        *self == ReplaceMode::StopFirst
    }
}

/// Which port a restart gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortMode {
    /// The next port of the range at every start (the brief's round robin).
    #[default]
    Rotate,
    /// The same port as last time while it is free.
    Sticky,
}

impl PortMode {
    pub fn is_default(&self) -> bool {
        *self == PortMode::Rotate
    }
}

/// The most copies one task object may ask for.
pub const MAX_INSTANCES: u64 = 1000;

/// Signals a task may ask to be stopped with, by name (as in `kill -l`, without `SIG`).
const SIGNALS: [(&str, i32); 12] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("ALRM", 14),
    ("TERM", 15),
    ("CONT", 18),
    ("TSTP", 20),
    ("WINCH", 28),
    ("PWR", 30),
];

/// The controls of one task, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controls {
    pub restart: RestartPolicy,
    pub stop_signal: Option<i32>,
    pub stop_timeout: Option<Duration>,
    pub autostart: bool,
    pub replace: ReplaceMode,
    pub port: PortMode,
    pub user: Option<String>,
    pub group: Option<String>,
    pub depends_on: Vec<String>,
    pub instances: u32,
}

fn choice<T: Copy>(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    options: &[(&str, T)],
    default: T,
    err: &mut dyn FnMut(&str, String),
) -> T {
    let names = options
        .iter()
        .map(|(k, _)| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    match obj.get(field) {
        None | Some(Value::Null) => default,
        Some(Value::String(s)) => match options.iter().find(|(k, _)| k == s) {
            Some((_, v)) => *v,
            None => {
                err(field, format!("unknown value {s:?}: expected {names}"));
                default
            }
        },
        Some(other) => {
            err(
                field,
                format!("expected {names}, got {}", crate::spec::describe(other)),
            );
            default
        }
    }
}

/// A user or group name (or number) as given; resolved by the shell before anything starts.
fn account(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    err: &mut dyn FnMut(&str, String),
) -> Option<String> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 64
                && !s.contains(|c: char| c == ':' || c == '\0' || c.is_whitespace()) =>
        {
            Some(s.clone())
        }
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v < u32::MAX as u64) => {
            Some(n.to_string())
        }
        Some(other) => {
            err(
                field,
                format!(
                    "expected a {field} name or number, got {}",
                    crate::spec::describe(other)
                ),
            );
            None
        }
    }
}

/// Checks the controls' fields of task object `obj`; `err(field, message)` records a problem.
pub fn check(obj: &serde_json::Map<String, Value>, err: &mut dyn FnMut(&str, String)) -> Controls {
    let restart = match obj.get("restart") {
        None | Some(Value::Null) => RestartPolicy::Always,
        Some(Value::String(s)) => match s.as_str() {
            "always" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure,
            "never" => RestartPolicy::Never,
            other => {
                err(
                    "restart",
                    format!(
                        "unknown policy {other:?}: expected \"always\" (the default), \"on-failure\" or \"never\""
                    ),
                );
                RestartPolicy::Always
            }
        },
        Some(other) => {
            err(
                "restart",
                format!(
                    "expected \"always\", \"on-failure\" or \"never\", got {}",
                    crate::spec::describe(other)
                ),
            );
            RestartPolicy::Always
        }
    };
    let stop_signal = match obj.get("stop_signal") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let bare = s.strip_prefix("SIG").unwrap_or(s).to_ascii_uppercase();
            match SIGNALS.iter().find(|(k, _)| *k == bare) {
                Some((_, n)) => Some(*n),
                None => {
                    err(
                        "stop_signal",
                        format!(
                            "unknown signal {s:?}: expected one of {} (or its number)",
                            SIGNALS.map(|(k, _)| k).join(", ")
                        ),
                    );
                    None
                }
            }
        }
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (1..=64).contains(&v) && v != 19 => Some(v as i32),
            _ => {
                err(
                    "stop_signal",
                    format!("signal number {n} is out of range: expected 1 to 64, not 19 (STOP)"),
                );
                None
            }
        },
        Some(other) => {
            err(
                "stop_signal",
                format!(
                    "expected a signal name like \"INT\" or a number, got {}",
                    crate::spec::describe(other)
                ),
            );
            None
        }
    };
    let stop_timeout = match obj.get("stop_timeout") {
        None | Some(Value::Null) => None,
        Some(v) => match duration(v) {
            Ok(d) if d > MAX_SETTING => {
                err(
                    "stop_timeout",
                    format!(
                        "{} is longer than the longest allowed, 24h",
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                err("stop_timeout", m);
                None
            }
        },
    };
    let autostart = match obj.get("autostart") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            err(
                "autostart",
                format!(
                    "expected true or false, got {}",
                    crate::spec::describe(other)
                ),
            );
            true
        }
    };
    let replace = choice(
        obj,
        "replace",
        &[
            ("stop-first", ReplaceMode::StopFirst),
            ("start-first", ReplaceMode::StartFirst),
        ],
        ReplaceMode::StopFirst,
        err,
    );
    let port = choice(
        obj,
        "port",
        &[("rotate", PortMode::Rotate), ("sticky", PortMode::Sticky)],
        PortMode::Rotate,
        err,
    );
    let user = account(obj, "user", err);
    let group = account(obj, "group", err);
    let mut depends_on = Vec::new();
    match obj.get("depends_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                match v.as_str() {
                    Some(s) if !s.is_empty() => depends_on.push(s.to_string()),
                    _ => err(
                        &format!("depends_on[{i}]"),
                        format!("expected a task name, got {}", crate::spec::describe(v)),
                    ),
                }
            }
        }
        Some(other) => err(
            "depends_on",
            format!(
                "expected a list of task names, got {}",
                crate::spec::describe(other)
            ),
        ),
    }
    let instances = match obj.get("instances") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_INSTANCES).contains(&n) => n as u32,
            _ => {
                err(
                    "instances",
                    format!("expected a whole number from 1 to {MAX_INSTANCES}, got {v}"),
                );
                1
            }
        },
    };
    Controls {
        restart,
        stop_signal,
        stop_timeout,
        autostart,
        replace,
        port,
        user,
        group,
        depends_on,
        instances,
    }
}

/// A duration field: a number of seconds, or a string like `"500ms"`, `"30s"`, `"2m"`, `"1h"`.
pub fn duration(v: &Value) -> Result<Duration, String> {
    const HINT: &str = "expected seconds as a number, or a string like \"500ms\", \"30s\", \"2m\"";
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(s) if s.is_finite() && s >= 0.0 && s <= MAX_SETTING.as_secs_f64() => {
                Ok(Duration::from_secs_f64(s))
            }
            Some(s) if s > MAX_SETTING.as_secs_f64() => {
                Err(format!("{n} s is longer than the longest allowed, 24h"))
            }
            _ => Err(format!("{n} is not a duration: {HINT}")),
        },
        Value::String(s) => {
            let t = s.trim();
            let split = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let scale = match unit.trim() {
                "ms" => 0.001,
                "s" | "" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(format!("{s:?} is not a duration: {HINT}")),
            };
            match num.parse::<f64>() {
                Ok(x) if x.is_finite() => {
                    let secs = x * scale;
                    if secs > MAX_SETTING.as_secs_f64() {
                        Err(format!("{s:?} is longer than the longest allowed, 24h"))
                    } else {
                        Ok(Duration::from_secs_f64(secs))
                    }
                }
                _ => Err(format!("{s:?} is not a duration: {HINT}")),
            }
        }
        other => Err(format!(
            "expected a duration, got {}: {HINT}",
            crate::spec::describe(other)
        )),
    }
}

/// Serde for an optional duration as milliseconds (how the API and the dump show it).
pub mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> (Controls, Vec<String>) {
        let mut errs = Vec::new();
        let c = check(v.as_object().unwrap(), &mut |f, m| {
            errs.push(format!("{f}: {m}"))
        });
        (c, errs)
    }

    #[test]
    fn defaults_and_valid_values() {
        let (c, e) = run(json!({}));
        assert!(e.is_empty());
        assert_eq!(c.restart, RestartPolicy::Always);
        assert!(c.autostart && c.stop_signal.is_none() && c.stop_timeout.is_none());
        let (c, e) = run(
            json!({"restart": "never", "stop_signal": "SIGINT", "stop_timeout": "1.5s", "autostart": false}),
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c.restart, RestartPolicy::Never);
        assert_eq!(c.stop_signal, Some(2));
        assert_eq!(c.stop_timeout, Some(Duration::from_millis(1500)));
        assert!(!c.autostart);
        let (c, _) = run(json!({"stop_signal": "quit", "stop_timeout": 3}));
        assert_eq!(c.stop_signal, Some(3));
        assert_eq!(c.stop_timeout, Some(Duration::from_secs(3)));
    }

    #[test]
    fn bad_values_name_the_field_and_what_was_expected() {
        let (_, e) = run(
            json!({"restart": "sometimes", "stop_signal": "BOGUS", "stop_timeout": "25h", "autostart": "yes"}),
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("restart: unknown policy \"sometimes\""));
        assert!(e[1].starts_with("stop_signal: unknown signal \"BOGUS\""));
        assert!(e[2].contains("longer than the longest allowed"));
        assert!(e[3].starts_with("autostart: expected true or false"));
        let (_, e) = run(json!({"stop_signal": 19, "stop_timeout": -1}));
        assert_eq!(e.len(), 2, "{e:?}");
        let (_, e) = run(json!({"stop_timeout": "ten seconds"}));
        assert!(e[0].contains("is not a duration"), "{e:?}");
    }
}
