//! Readiness and health checks of a task (`ready`, `health`): what to probe, how often, how
//! long to wait, and (for health) how many failures in a row restart the task. The shell runs
//! the probes off the event loop and reports each result; the core decides what follows.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A TCP connection to the task's port succeeds.
    Tcp,
    /// `GET path` on the task's port answers 2xx or 3xx.
    Http(String),
    /// The command exits 0 (argv, no shell; `PORT` and `PID` in its environment).
    Exec(Vec<String>),
}

/// One check, as validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub probe: Probe,
    /// From one probe to the next.
    pub interval: Duration,
    /// A probe that takes longer has failed.
    pub timeout: Duration,
    /// Health: failures in a row that restart the task (ready checks ignore it).
    pub failures: u32,
}

impl Check {
    /// True when the probe needs the task's port.
    pub fn needs_port(&self) -> bool {
        matches!(self.probe, Probe::Tcp | Probe::Http(_))
    }
}

/// Which check a result is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Ready,
    Health,
}

impl CheckKind {
    pub fn field(&self) -> &'static str {
        match self {
            CheckKind::Ready => "ready",
            CheckKind::Health => "health",
        }
    }
}

const KEYS: [&str; 6] = ["tcp", "http", "exec", "interval", "timeout", "failures"];

/// Checks field `kind` (`ready` or `health`) of a task object; `err(field, message)` records a
/// problem. `has_port`: whether the task's command uses `{{port}}`.
pub fn check(
    obj: &serde_json::Map<String, Value>,
    kind: CheckKind,
    has_port: bool,
    err: &mut dyn FnMut(&str, String),
) -> Option<Check> {
    let field = kind.field();
    let v = match obj.get(field) {
        None | Some(Value::Null) => return None,
        Some(v) => v,
    };
    let Value::Object(m) = v else {
        err(
            field,
            format!(
                "expected an object like {{\"tcp\": true}}, {{\"http\": \"/health\"}} or {{\"exec\": [\"prog\", \"arg\"]}}, got {}",
                crate::spec::describe(v)
            ),
        );
        return None;
    };
    for k in m.keys() {
        if !KEYS.contains(&k.as_str()) {
            err(
                &format!("{field}.{k}"),
                format!("unknown field (known: {})", KEYS.join(", ")),
            );
        }
    }
    let mut probes = Vec::new();
    if let Some(t) = m.get("tcp") {
        match t {
            Value::Bool(true) => probes.push(Probe::Tcp),
            _ => err(&format!("{field}.tcp"), "expected true".into()),
        }
    }
    if let Some(h) = m.get("http") {
        match h {
            Value::String(p) if p.starts_with('/') && !p.contains(char::is_whitespace) => {
                probes.push(Probe::Http(p.clone()))
            }
            _ => err(
                &format!("{field}.http"),
                "expected a path starting with /, like \"/health\"".into(),
            ),
        }
    }
    if let Some(e) = m.get("exec") {
        match e {
            Value::Array(a)
                if !a.is_empty()
                    && a.iter().all(|x| {
                        x.as_str()
                            .is_some_and(|s| !s.is_empty() && !s.contains('\0'))
                    }) =>
            {
                probes.push(Probe::Exec(
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                ))
            }
            _ => err(
                &format!("{field}.exec"),
                "expected a non-empty array of strings (argv, run without a shell)".into(),
            ),
        }
    }
    let probe = match probes.len() {
        1 => probes.pop()?,
        0 => {
            err(field, "needs one of \"tcp\", \"http\" or \"exec\"".into());
            return None;
        }
        _ => {
            err(
                field,
                "give only one of \"tcp\", \"http\" and \"exec\"".into(),
            );
            return None;
        }
    };
    let (default_interval, default_failures) = match kind {
        CheckKind::Ready => (Duration::from_millis(100), 1),
        CheckKind::Health => (Duration::from_secs(10), 3),
    };
    let mut dur = |key: &str, default: Duration| match m.get(key) {
        None | Some(Value::Null) => Some(default),
        Some(v) => match crate::controls::duration(v) {
            Ok(d) if d >= Duration::from_millis(10) => Some(d),
            Ok(_) => {
                err(&format!("{field}.{key}"), "must be at least 10ms".into());
                None
            }
            Err(m) => {
                err(&format!("{field}.{key}"), m);
                None
            }
        },
    };
    let interval = dur("interval", default_interval)?;
    let timeout = dur("timeout", Duration::from_secs(1))?;
    let failures = match m.get("failures") {
        None | Some(Value::Null) => default_failures,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1000).contains(&n) => n as u32,
            _ => {
                err(
                    &format!("{field}.failures"),
                    "expected a whole number from 1 to 1000".into(),
                );
                return None;
            }
        },
    };
    let check = Check {
        probe,
        interval,
        timeout,
        failures,
    };
    if check.needs_port() && !has_port {
        err(
            field,
            "a tcp or http check needs the task's port: use {{port}} in its command (or an exec check)"
                .into(),
        );
        return None;
    }
    Some(check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value, kind: CheckKind, port: bool) -> (Option<Check>, Vec<String>) {
        let mut errs = Vec::new();
        let c = check(v.as_object().unwrap(), kind, port, &mut |f, m| {
            errs.push(format!("{f}: {m}"))
        });
        (c, errs)
    }

    #[test]
    fn each_probe_with_defaults_and_bounds() {
        let (c, e) = run(json!({"ready": {"tcp": true}}), CheckKind::Ready, true);
        assert!(e.is_empty());
        let c = c.unwrap();
        assert_eq!(
            (c.probe, c.interval, c.failures),
            (Probe::Tcp, Duration::from_millis(100), 1)
        );
        let (c, _) = run(
            json!({"health": {"http": "/health", "interval": "2s", "failures": 2}}),
            CheckKind::Health,
            true,
        );
        let c = c.unwrap();
        assert_eq!(c.probe, Probe::Http("/health".into()));
        assert_eq!((c.interval, c.failures), (Duration::from_secs(2), 2));
        let (c, e) = run(
            json!({"ready": {"exec": ["true"]}}),
            CheckKind::Ready,
            false,
        );
        assert!(e.is_empty() && c.is_some());
    }

    #[test]
    fn mistakes_name_the_field() {
        let (_, e) = run(json!({"ready": {"tcp": true}}), CheckKind::Ready, false);
        assert!(
            e[0].starts_with("ready: a tcp or http check needs the task's port"),
            "{e:?}"
        );
        let (_, e) = run(
            json!({"health": {"http": "health", "retries": 1}}),
            CheckKind::Health,
            true,
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.starts_with("health.retries: unknown field"))
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("health.http: expected a path"))
        );
        let (_, e) = run(
            json!({"ready": {"tcp": true, "exec": ["x"]}}),
            CheckKind::Ready,
            true,
        );
        assert!(e[0].contains("only one of"), "{e:?}");
        let (_, e) = run(json!({"ready": "tcp"}), CheckKind::Ready, true);
        assert!(e[0].starts_with("ready: expected an object"), "{e:?}");
    }
}
