//! A submitted job, checked field by field, with errors that name the field.
use std::collections::HashSet;

use cluster::{Job, VERSION};
use serde_json::Value;
use supervisor_core::PortRange;

/// A problem with one field of a submitted job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

const FIELDS: [&str; 5] = ["name", "task", "count", "cpu", "mem"];
/// The most instances one job may ask for (its instance keys fit a handful of transactions).
pub const MAX_COUNT: u64 = 10_000;

/// Validates a `POST /jobs` (or `PUT /jobs/{name}`) body; every problem is reported at once.
/// `path_name` is the name in the URL of a `PUT`, which the body must agree with.
pub fn parse_job(body: &Value, path_name: Option<&str>) -> Result<Job, Vec<FieldError>> {
    let mut errs = Vec::new();
    let err = |errs: &mut Vec<FieldError>, f: &str, m: String| {
        errs.push(FieldError {
            field: f.into(),
            message: m,
        })
    };
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError {
            field: "(body)".into(),
            message: "expected a JSON object {\"name\",\"task\",\"count\",\"cpu\",\"mem\"}".into(),
        }]);
    };
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            err(
                &mut errs,
                k,
                format!("unknown field; expected one of {}", FIELDS.join(", ")),
            );
        }
    }
    let name = match (obj.get("name"), path_name) {
        (Some(Value::String(s)), Some(p)) if s != p => {
            err(
                &mut errs,
                "name",
                format!("{s:?} differs from the URL's {p:?}"),
            );
            None
        }
        (Some(Value::String(s)), _) => Some(s.clone()),
        (None, Some(p)) => Some(p.to_string()),
        (Some(_), _) => {
            err(&mut errs, "name", "expected a string".into());
            None
        }
        (None, None) => {
            err(&mut errs, "name", "missing".into());
            None
        }
    };
    if let Some(n) = &name
        && !valid_name(n)
    {
        err(
            &mut errs,
            "name",
            format!("{n:?}: expected 1 to 50 of A-Z a-z 0-9 . _ - (not starting with . or -)"),
        );
    }
    let num = |errs: &mut Vec<FieldError>, f: &str, min: u64, max: u64| -> u64 {
        match obj.get(f) {
            None => {
                err(errs, f, "missing".into());
                0
            }
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => n,
                _ => {
                    err(
                        errs,
                        f,
                        format!("expected an integer from {min} to {max}, got {v}"),
                    );
                    0
                }
            },
        }
    };
    let count = num(&mut errs, "count", 0, MAX_COUNT);
    let cpu = num(&mut errs, "cpu", 1, 1_000_000);
    let mem = num(&mut errs, "mem", 1, 1 << 40);
    let task = match obj.get("task") {
        None => {
            err(&mut errs, "task", "missing".into());
            Value::Null
        }
        Some(t) => {
            let mut t = t.clone();
            if let (Some(o), Some(n)) = (t.as_object_mut(), &name) {
                // The instance names are the job's: the task's own name is replaced.
                o.remove("name");
                // Validated as a supervisor would validate it, {{port}} allowed (the node
                // has a port range; which one is the node's business).
                let mut probe = t.clone();
                if let Some(p) = probe.as_object_mut() {
                    p.insert("name".into(), Value::String(format!("{n}-1")));
                }
                let ports = Some(PortRange {
                    first: 1024,
                    last: 65535,
                });
                if let Err(e) = supervisor_core::parse_task(&probe, 1, &HashSet::new(), ports) {
                    for c in e.0 {
                        let f = c
                            .field
                            .map(|f| format!("task.{f}"))
                            .unwrap_or("task".into());
                        err(&mut errs, &f, c.message);
                    }
                }
            } else if !t.is_object() {
                err(
                    &mut errs,
                    "task",
                    "expected a supervisor task object".into(),
                );
            }
            t
        }
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Job {
        v: VERSION,
        name: name.unwrap_or_default(),
        task,
        count: count as u32,
        cpu,
        mem,
        avoid: vec![],
        generation: 1,
    })
}

/// Like a task name, a bit shorter: instance names (`<job>-<n>`) must still be task names.
pub fn valid_name(n: &str) -> bool {
    (1..=50).contains(&n.len())
        && !n.starts_with(['.', '-'])
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_bad_field_is_named() {
        let e = parse_job(
            &json!({"name":"a/b","task":{"command":[]},"count":-1,"mem":0,"colour":1}),
            None,
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        for f in ["colour", "name", "count", "cpu", "mem", "task.command"] {
            assert!(fields.contains(&f), "{f} not reported: {e:?}");
        }
    }

    #[test]
    fn a_good_job_parses_and_port_placeholders_are_fine() {
        let j = parse_job(
            &json!({"name":"web","task":{"name":"x","command":["ts","--port={{port}}"]},
                    "count":3,"cpu":250,"mem":64}),
            None,
        )
        .unwrap();
        assert_eq!((j.count, j.cpu, j.mem), (3, 250, 64));
        assert!(j.task.get("name").is_none());
    }
}
