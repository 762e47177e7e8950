//! Per-task resource limits (`"limits": {"memory": "256M", "cpu": 0.5}`), validated like every
//! other field (task and field named in errors). Enforcing them is the shell's part: through
//! the task instance's cgroup, where the machine has a controller for it.
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The smallest memory limit: below this a process cannot even be started.
pub const MIN_MEMORY: u64 = 1 << 20;
/// The largest cpu limit, in CPUs.
pub const MAX_CPUS: u32 = 1024;

/// A task's limits; both `None`: no limit (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Bytes; the kernel OOM-kills a process of the task beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Thousandths of a CPU (`0.5` is 500): the task's processes together get at most that
    /// much CPU time per wall-clock time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
}

impl Limits {
    pub fn is_none(&self) -> bool {
        self.memory.is_none() && self.cpu_millis.is_none()
    }
}

/// Checks the `limits` field of task object `obj`; `err(field, message)` records a problem.
pub fn check(obj: &serde_json::Map<String, Value>, err: &mut dyn FnMut(&str, String)) -> Limits {
    let mut limits = Limits::default();
    let m = match obj.get("limits") {
        None | Some(Value::Null) => return limits,
        Some(Value::Object(m)) => m,
        Some(other) => {
            err(
                "limits",
                format!(
                    "expected an object like {{\"memory\": \"256M\", \"cpu\": 0.5}}, got {}",
                    crate::spec::describe(other)
                ),
            );
            return limits;
        }
    };
    for key in m.keys() {
        if key != "memory" && key != "cpu" {
            err(
                &format!("limits.{key}"),
                "unknown limit (known: memory, cpu)".into(),
            );
        }
    }
    match m.get("memory") {
        None | Some(Value::Null) => {}
        Some(v) => match memory(v) {
            Ok(b) if b < MIN_MEMORY => err(
                "limits.memory",
                format!("{b} bytes is below the smallest limit, 1M"),
            ),
            Ok(b) => limits.memory = Some(b),
            Err(e) => err("limits.memory", e),
        },
    }
    match m.get("cpu") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_f64() {
            Some(c) if c >= 0.001 && c <= f64::from(MAX_CPUS) => {
                limits.cpu_millis = Some((c * 1000.0).round() as u32);
            }
            _ => err(
                "limits.cpu",
                format!("{n} is out of range: expected CPUs from 0.001 to {MAX_CPUS}, e.g. 0.5"),
            ),
        },
        Some(other) => err(
            "limits.cpu",
            format!(
                "expected a number of CPUs like 0.5 or 2, got {}",
                crate::spec::describe(other)
            ),
        ),
    }
    limits
}

/// `"256M"`, `"1G"`, `"512K"`, `"1048576"` or a number: bytes (K, M, G, T are powers of 1024).
fn memory(v: &Value) -> Result<u64, String> {
    let expected =
        "expected bytes as a number or a string like \"256M\" (K, M, G, T: powers of 1024)";
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| format!("{n}: {expected}")),
        Value::String(s) => {
            let t = s.trim();
            let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
                Some((i, _)) => t.split_at(i),
                None => (t, ""),
            };
            let shift = match unit
                .trim()
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "" => 0,
                "K" => 10,
                "M" => 20,
                "G" => 30,
                "T" => 40,
                _ => return Err(format!("{s:?}: {expected}")),
            };
            let n: u64 = digits.parse().map_err(|_| format!("{s:?}: {expected}"))?;
            n.checked_mul(1u64 << shift)
                .ok_or_else(|| format!("{s:?} is too large"))
        }
        other => Err(format!("{expected}, got {}", crate::spec::describe(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> (Limits, Vec<(String, String)>) {
        let mut errors = Vec::new();
        let obj = json!({ "limits": v });
        let l = check(obj.as_object().unwrap(), &mut |f, m| {
            errors.push((f.to_string(), m))
        });
        (l, errors)
    }

    #[test]
    fn memory_and_cpu_are_read_in_their_units() {
        let (l, e) = run(json!({"memory": "256M", "cpu": 0.5}));
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(l.memory, Some(256 << 20));
        assert_eq!(l.cpu_millis, Some(500));
        assert_eq!(run(json!({"memory": "1G"})).0.memory, Some(1 << 30));
        assert_eq!(run(json!({"memory": "2048KiB"})).0.memory, Some(2048 << 10));
        assert_eq!(run(json!({"memory": 2_097_152})).0.memory, Some(2 << 20));
        assert_eq!(run(json!({"cpu": 2})).0.cpu_millis, Some(2000));
        assert!(run(json!({})).0.is_none());
    }

    #[test]
    fn bad_limits_name_their_field() {
        for (v, field) in [
            (json!({"memory": "lots"}), "limits.memory"),
            (json!({"memory": "12X"}), "limits.memory"),
            (json!({"memory": 100}), "limits.memory"),
            (json!({"memory": -1}), "limits.memory"),
            (json!({"cpu": 0}), "limits.cpu"),
            (json!({"cpu": "half"}), "limits.cpu"),
            (json!({"cpu": 5000}), "limits.cpu"),
            (json!({"disk": "1G"}), "limits.disk"),
            (json!("256M"), "limits"),
        ] {
            let (_, e) = run(v.clone());
            assert_eq!(e.len(), 1, "{v}: {e:?}");
            assert_eq!(e[0].0, field, "{v}: {e:?}");
        }
    }
}
