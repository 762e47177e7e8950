//! The task list: JSON in, validated [`TaskSpec`]s out, every problem reported at once.
//!
//! Validation walks a `serde_json::Value` by hand rather than deriving `Deserialize`, because
//! serde stops at the first error and cannot say "task 3 (timeserver-2), field `command`"; an
//! operator fixing a task list wants the whole list of problems in one go.
use crate::checks::{self, Check, CheckKind};
use crate::controls::{self, PortMode, ReplaceMode, RestartPolicy};
use crate::ports::PortRange;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// The placeholder replaced by the task's port in every argv element.
pub const PORT_PLACEHOLDER: &str = "{{port}}";

const FIELDS: [&str; 20] = [
    "command",
    "name",
    "input",
    "output",
    "error",
    "env",
    "cwd",
    "restart",
    "stop_signal",
    "stop_timeout",
    "autostart",
    "replace",
    "port",
    "user",
    "group",
    "depends_on",
    "instances",
    "ready",
    "health",
    "limits",
];
const MAX_NAME_LEN: usize = 64;

/// One validated task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique, `[A-Za-z0-9._-]{1,64}`; from the list or derived from `command[0]`.
    pub name: String,
    /// argv, exec'd without a shell; `command[0]` is looked up in `PATH` when it has no slash.
    pub command: Vec<String>,
    /// Standard input file; `None` means `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Standard output file, opened for appending; `None` means `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Standard error file, opened for appending; `None` means `/dev/null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Extra environment variables (added to the supervisor's own environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory; `None` means the supervisor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// What follows a death of its process (see [`RestartPolicy`]).
    #[serde(default, skip_serializing_if = "RestartPolicy::is_always")]
    pub restart: RestartPolicy,
    /// The signal that asks it to stop; `None` means SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// From the stop signal to SIGKILL; `None` means `--stop-timeout`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "stop_timeout_ms",
        with = "controls::opt_millis"
    )]
    pub stop_timeout: Option<Duration>,
    /// Started when added (and at the supervisor's start); false: only on request.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub autostart: bool,
    /// How a changed spec replaces it.
    #[serde(default, skip_serializing_if = "ReplaceMode::is_default")]
    pub replace: ReplaceMode,
    /// Which port each start gets.
    #[serde(default, skip_serializing_if = "PortMode::is_default")]
    pub port: PortMode,
    /// Runs as this user (name or number; the supervisor must be root to switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Runs with this group (default: the user's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Tasks that must be ready before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// When the task counts as ready (default: as soon as it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Check>,
    /// A check that restarts the task after `failures` failures in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Check>,
    /// Memory and CPU limits, enforced through the task's cgroup (see [`crate::limits`]).
    #[serde(default, skip_serializing_if = "crate::limits::Limits::is_none")]
    pub limits: crate::limits::Limits,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

impl Default for TaskSpec {
    fn default() -> Self {
        TaskSpec {
            name: String::new(),
            command: Vec::new(),
            input: None,
            output: None,
            error: None,
            env: BTreeMap::new(),
            cwd: None,
            restart: RestartPolicy::Always,
            stop_signal: None,
            stop_timeout: None,
            autostart: true,
            replace: ReplaceMode::StopFirst,
            port: PortMode::Rotate,
            user: None,
            group: None,
            depends_on: Vec::new(),
            ready: None,
            health: None,
            limits: crate::limits::Limits::default(),
        }
    }
}

impl TaskSpec {
    /// True when some argv element contains `{{port}}`.
    pub fn uses_port(&self) -> bool {
        self.command.iter().any(|a| a.contains(PORT_PLACEHOLDER))
    }

    /// argv with every `{{port}}` replaced by `port` (plain replacement, as the brief says).
    pub fn argv_for_port(&self, port: Option<u16>) -> Vec<String> {
        match port {
            Some(p) => {
                let p = p.to_string();
                self.command
                    .iter()
                    .map(|a| a.replace(PORT_PLACEHOLDER, &p))
                    .collect()
            }
            None => self.command.clone(),
        }
    }
}

/// One problem in a task list, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// 1-based position of the task in the list, when the problem is in a task.
    pub task: Option<usize>,
    /// The task's name, when known.
    pub name: Option<String>,
    /// The field (or flag) at fault, e.g. `command[2]`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.task, &self.name) {
            (Some(i), Some(n)) if !n.is_empty() => write!(f, "task {i} ({n}): ")?,
            (Some(i), Some(_)) => write!(f, "task {i}: ")?,
            (Some(i), None) => write!(f, "task {i}: ")?,
            (None, _) => {}
        }
        if let Some(field) = &self.field {
            if field.starts_with("--") {
                write!(f, "{field}: ")?;
            } else {
                write!(f, "field \"{field}\": ")?;
            }
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a task list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "invalid task list ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            task: None,
            name: None,
            field: None,
            message: message.into(),
        }])
    }
}

/// Parses and validates a whole task list. `ports` is the `--port-range`, if any.
pub fn parse_task_list(
    text: &str,
    ports: Option<PortRange>,
) -> Result<Vec<TaskSpec>, ConfigErrors> {
    // Editors on some systems save UTF-8 with a byte-order mark; it is not part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(ConfigErrors::one(
            "the task list is empty: expected a JSON array of task objects on standard input",
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ConfigErrors::one(format!(
            "the task list is not valid JSON: {} (line {}, column {})",
            strip_position(&e.to_string()),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Array(items) = value else {
        return Err(ConfigErrors::one(format!(
            "the task list must be a JSON array of task objects, got {}",
            describe(&value)
        )));
    };
    let mut errors = Vec::new();
    let mut partial = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match check_task(i + 1, item, ports) {
            Ok(t) => partial.push(Some(t)),
            Err(mut e) => {
                errors.append(&mut e);
                partial.push(None);
            }
        }
    }
    let counts: Vec<(usize, u32)> = partial
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, p.as_ref().map_or(1, |c| c.instances)))
        .collect();
    let specs = assign_names(partial, &HashSet::new(), &mut errors);
    let specs = expand_instances(specs, &counts, &mut errors);
    check_dependencies(&specs, &mut errors);
    let specs: Vec<Option<TaskSpec>> = specs.into_iter().map(|s| s.map(|(_, s)| s)).collect();
    if let Some(range) = ports {
        let users: Vec<usize> = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(TaskSpec::uses_port))
            .map(|(i, _)| i + 1)
            .collect();
        if users.len() > range.len() {
            errors.push(ConfigError {
                task: None,
                name: None,
                field: Some("--port-range".into()),
                message: format!(
                    "{range} holds {} port{} but {} tasks use {PORT_PLACEHOLDER} at once (tasks {}): widen the range",
                    range.len(),
                    if range.len() == 1 { "" } else { "s" },
                    users.len(),
                    users.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(specs.into_iter().flatten().collect())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Validates one task added at run time (e.g. through the API). `index` is its would-be
/// position; `taken` are the names already in use.
pub fn parse_task(
    value: &Value,
    index: usize,
    taken: &HashSet<String>,
    ports: Option<PortRange>,
) -> Result<TaskSpec, ConfigErrors> {
    let mut errors = Vec::new();
    let t = check_task(index, value, ports).map_err(ConfigErrors)?;
    if t.instances > 1 {
        return Err(ConfigErrors(vec![ConfigError {
            task: Some(index),
            name: Some(t.spec.name.clone()),
            field: Some("instances".into()),
            message: "copies of a task come with a whole list (PUT /tasks, or the task list at start); add one task here".into(),
        }]));
    }
    let mut specs = assign_names(vec![Some(t)], taken, &mut errors);
    match specs.pop().flatten() {
        Some(s) if errors.is_empty() => Ok(s),
        _ => Err(ConfigErrors(errors)),
    }
}

/// A task whose fields are valid, before names are made unique.
struct Checked {
    index: usize,
    spec: TaskSpec,
    /// `instances`: copies named `NAME-1..N` (1: the task itself).
    instances: u32,
    explicit_name: bool,
}

fn check_task(
    index: usize,
    item: &Value,
    ports: Option<PortRange>,
) -> Result<Checked, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let Value::Object(obj) = item else {
        return Err(vec![ConfigError {
            task: Some(index),
            name: None,
            field: None,
            message: format!(
                "expected an object with at least \"command\", got {}",
                describe(item)
            ),
        }]);
    };
    let name = obj.get("name").and_then(Value::as_str).map(str::to_string);
    // For messages only: the explicit name, or the one the program would give it.
    let label = name.clone().or_else(|| {
        let program = obj.get("command")?.as_array()?.first()?.as_str()?;
        (!program.is_empty()).then(|| base_name(program))
    });
    let mut err = |field: &str, message: String| {
        errors.push(ConfigError {
            task: Some(index),
            name: label.clone(),
            field: Some(field.to_string()),
            message,
        });
    };
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            let hint = closest(key)
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            err(
                key,
                format!("unknown field (known fields: {}){hint}", FIELDS.join(", ")),
            );
        }
    }
    let command = match obj.get("command") {
        None => {
            err("command", "missing: expected a non-empty array of strings (argv), e.g. [\"./bin/timeserver\", \"--port={{port}}\"]".into());
            None
        }
        Some(Value::Array(a)) if a.is_empty() => {
            err(
                "command",
                "is empty: expected at least the program to run".into(),
            );
            None
        }
        Some(Value::Array(a)) => {
            let mut argv = Vec::with_capacity(a.len());
            for (j, v) in a.iter().enumerate() {
                match v {
                    Value::String(s) if s.contains('\0') => {
                        err(&format!("command[{j}]"), "contains a NUL byte".into())
                    }
                    Value::String(s) if j == 0 && s.is_empty() => {
                        err("command[0]", "the program name is empty".into())
                    }
                    Value::String(s) => argv.push(s.clone()),
                    other => err(
                        &format!("command[{j}]"),
                        format!("expected a string, got {}", describe(other)),
                    ),
                }
            }
            (argv.len() == a.len()).then_some(argv)
        }
        Some(other) => {
            let hint = if other.is_string() {
                "; write [\"prog\", \"arg\", ...]: commands are not run by a shell"
            } else {
                ""
            };
            err(
                "command",
                format!(
                    "expected a non-empty array of strings (argv), got {}{hint}",
                    describe(other)
                ),
            );
            None
        }
    };
    if let Some(argv) = &command {
        if ports.is_none() && argv.iter().any(|a| a.contains(PORT_PLACEHOLDER)) {
            err(
                "command",
                format!("uses {PORT_PLACEHOLDER} but no --port-range was given"),
            );
        }
    }
    let mut opt_path = |field: &str| -> Option<String> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => {
                err(
                    field,
                    "is empty: expected a file path (or leave the field out)".into(),
                );
                None
            }
            Some(Value::String(s)) if s.contains('\0') => {
                err(field, "contains a NUL byte".into());
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                err(
                    field,
                    format!("expected a path as a string, got {}", describe(other)),
                );
                None
            }
        }
    };
    let input = opt_path("input");
    let output = opt_path("output");
    let error = opt_path("error");
    let cwd = opt_path("cwd");
    let ctl = controls::check(obj, &mut |f, m| err(f, m));
    let has_port = command
        .as_ref()
        .is_some_and(|a| a.iter().any(|s| s.contains(PORT_PLACEHOLDER)));
    let ready = checks::check(obj, CheckKind::Ready, has_port, &mut |f, m| err(f, m));
    let health = checks::check(obj, CheckKind::Health, has_port, &mut |f, m| err(f, m));
    if ctl.replace == ReplaceMode::StartFirst && !has_port && ready.is_none() {
        err(
            "replace",
            "\"start-first\" runs two instances at once: give the task a {{port}} (each instance gets its own) or a ready check".into(),
        );
    }
    let limits = crate::limits::check(obj, &mut |f, m| err(f, m));
    let mut env = BTreeMap::new();
    match obj.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    err(
                        &format!("env.{k}"),
                        "is not a valid variable name (empty, or contains '=' or NUL)".into(),
                    );
                } else if let Value::String(s) = v {
                    if s.contains('\0') {
                        err(&format!("env.{k}"), "contains a NUL byte".into());
                    } else {
                        env.insert(k.clone(), s.clone());
                    }
                } else {
                    err(
                        &format!("env.{k}"),
                        format!("expected a string value, got {}", describe(v)),
                    );
                }
            }
        }
        Some(other) => err(
            "env",
            format!("expected an object of strings, got {}", describe(other)),
        ),
    }
    let explicit_name = match obj.get("name") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => {
            if let Some(problem) = name_problem(s) {
                err("name", problem);
            }
            true
        }
        Some(other) => {
            err(
                "name",
                format!("expected a string, got {}", describe(other)),
            );
            true
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let command = command.unwrap_or_default();
    Ok(Checked {
        index,
        spec: TaskSpec {
            name: name.unwrap_or_default(),
            command,
            input,
            output,
            error,
            env,
            cwd,
            restart: ctl.restart,
            stop_signal: ctl.stop_signal,
            stop_timeout: ctl.stop_timeout,
            autostart: ctl.autostart,
            replace: ctl.replace,
            port: ctl.port,
            user: ctl.user,
            group: ctl.group,
            depends_on: ctl.depends_on,
            ready,
            health,
            limits,
        },
        instances: ctl.instances,
        explicit_name,
    })
}

/// A task with `instances: N` becomes N tasks `NAME-1..N` (each with its own port); a
/// `depends_on` naming such a task means all its copies. Keeps each task's list position.
fn expand_instances(
    specs: Vec<Option<TaskSpec>>,
    counts: &[(usize, u32)],
    errors: &mut Vec<ConfigError>,
) -> Vec<Option<(usize, TaskSpec)>> {
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut out = Vec::with_capacity(specs.len());
    for (spec, (index, n)) in specs.into_iter().zip(counts) {
        match spec {
            Some(s) if *n > 1 => {
                let names: Vec<String> = (1..=*n).map(|k| format!("{}-{k}", s.name)).collect();
                for name in &names {
                    let mut copy = s.clone();
                    copy.name = name.clone();
                    out.push(Some((*index, copy)));
                }
                groups.insert(s.name, names);
            }
            Some(s) => out.push(Some((*index, s))),
            None => out.push(None),
        }
    }
    // Duplicates among plain names are reported already; a copy's name clashing is new.
    let copies: HashSet<usize> = counts
        .iter()
        .filter(|(_, n)| *n > 1)
        .map(|(i, _)| *i)
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, s) in out.iter().flatten() {
        if let Some(first) = seen.insert(s.name.clone(), *index) {
            if first != *index && (copies.contains(index) || copies.contains(&first)) {
                errors.push(ConfigError {
                    task: Some(*index),
                    name: Some(s.name.clone()),
                    field: Some("instances".into()),
                    message: format!("the copy {:?} has the name of task {first}", s.name),
                });
            }
        }
    }
    for (_, s) in out.iter_mut().flatten() {
        let deps = std::mem::take(&mut s.depends_on);
        for d in deps {
            match groups.get(&d) {
                Some(names) => s.depends_on.extend(names.iter().cloned()),
                None => s.depends_on.push(d),
            }
        }
    }
    out
}

/// Every `depends_on` names another task of the list, and no task waits for itself through
/// a chain of others.
fn check_dependencies(specs: &[Option<(usize, TaskSpec)>], errors: &mut Vec<ConfigError>) {
    let by_name: HashMap<&str, &TaskSpec> = specs
        .iter()
        .flatten()
        .map(|(_, s)| (s.name.as_str(), s))
        .collect();
    for (index, s) in specs.iter().flatten() {
        for (j, d) in s.depends_on.iter().enumerate() {
            let problem = if d == &s.name {
                Some("a task cannot depend on itself".to_string())
            } else if !by_name.contains_key(d.as_str()) {
                Some(format!("no task named {d:?} in the list"))
            } else {
                None
            };
            if let Some(message) = problem {
                errors.push(ConfigError {
                    task: Some(*index),
                    name: Some(s.name.clone()),
                    field: Some(format!("depends_on[{j}]")),
                    message,
                });
            }
        }
    }
    // Cycles: a depth-first walk; a task met again on the current path closes one.
    let mut done: HashSet<&str> = HashSet::new();
    for (index, s) in specs.iter().flatten() {
        let mut path: Vec<&str> = Vec::new();
        if let Some(cycle) = find_cycle(s.name.as_str(), &by_name, &mut path, &mut done) {
            errors.push(ConfigError {
                task: Some(*index),
                name: Some(s.name.clone()),
                field: Some("depends_on".into()),
                message: format!("a cycle: {}", cycle.join(" → ")),
            });
            return;
        }
    }
}

fn find_cycle<'a>(
    name: &'a str,
    by_name: &HashMap<&'a str, &'a TaskSpec>,
    path: &mut Vec<&'a str>,
    done: &mut HashSet<&'a str>,
) -> Option<Vec<&'a str>> {
    if let Some(at) = path.iter().position(|p| *p == name) {
        let mut cycle = path[at..].to_vec();
        cycle.push(name);
        return Some(cycle);
    }
    if done.contains(name) {
        return None;
    }
    path.push(name);
    if let Some(s) = by_name.get(name) {
        for d in &s.depends_on {
            if d != name && by_name.contains_key(d.as_str()) {
                if let Some(c) = find_cycle(d.as_str(), by_name, path, done) {
                    return Some(c);
                }
            }
        }
    }
    path.pop();
    done.insert(name);
    None
}

/// Gives unnamed tasks a name from their program (`timeserver`, or `timeserver-1`,
/// `timeserver-2` when several share it) and reports duplicate explicit names.
fn assign_names(
    tasks: Vec<Option<Checked>>,
    taken: &HashSet<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Option<TaskSpec>> {
    let mut used: HashMap<String, usize> = HashMap::new();
    for t in tasks.iter().flatten().filter(|t| t.explicit_name) {
        if taken.contains(&t.spec.name) {
            errors.push(ConfigError {
                task: Some(t.index),
                name: Some(t.spec.name.clone()),
                field: Some("name".into()),
                message: format!(
                    "duplicate name \"{}\": a task of that name already exists",
                    t.spec.name
                ),
            });
        } else if let Some(first) = used.get(&t.spec.name) {
            errors.push(ConfigError {
                task: Some(t.index),
                name: Some(t.spec.name.clone()),
                field: Some("name".into()),
                message: format!(
                    "duplicate name \"{}\", already used by task {first}",
                    t.spec.name
                ),
            });
        } else {
            used.insert(t.spec.name.clone(), t.index);
        }
    }
    let mut per_base: HashMap<String, usize> = HashMap::new();
    for t in tasks.iter().flatten().filter(|t| !t.explicit_name) {
        *per_base.entry(base_name(&t.spec.command[0])).or_default() += 1;
    }
    let mut counter: HashMap<String, usize> = HashMap::new();
    tasks
        .into_iter()
        .map(|t| {
            let mut t = t?;
            if !t.explicit_name {
                let base = base_name(&t.spec.command[0]);
                let shared = per_base.get(&base).copied().unwrap_or(0) > 1;
                let mut k = counter.get(&base).copied().unwrap_or(0);
                let name = loop {
                    k += 1;
                    let candidate = if shared || k > 1 {
                        format!("{base}-{k}")
                    } else {
                        base.clone()
                    };
                    if !used.contains_key(&candidate) && !taken.contains(&candidate) {
                        break candidate;
                    }
                };
                counter.insert(base, k);
                used.insert(name.clone(), t.index);
                t.spec.name = name;
            }
            Some(t.spec)
        })
        .collect()
}

/// The last path component of a program, reduced to the name alphabet.
fn base_name(program: &str) -> String {
    let last = program
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("task");
    let mut s: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(MAX_NAME_LEN - 6);
    if s.is_empty() || s == "." || s == ".." {
        "task".into()
    } else {
        s
    }
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("is empty".into())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
    {
        Some(format!(
            "{name:?} may only hold letters, digits, '.', '-' and '_'"
        ))
    } else if name == "." || name == ".." {
        Some(format!("{name:?} is not a usable name"))
    } else {
        None
    }
}

/// "a string", "an object", ... for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("a string ({:?}…)", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(a) => format!(
            "an array of {} element{}",
            a.len(),
            if a.len() == 1 { "" } else { "s" }
        ),
        Value::Object(_) => "an object".into(),
    }
}

/// What other supervisors (and habit) call our fields. Checked before spelling distance, which
/// would otherwise suggest "cwd" for "cmd".
const ALIASES: [(&str, &str); 18] = [
    ("autorestart", "restart"),
    ("restart_policy", "restart"),
    ("stopsignal", "stop_signal"),
    ("cmd", "command"),
    ("args", "command"),
    ("argv", "command"),
    ("exec", "command"),
    ("program", "command"),
    ("stdin", "input"),
    ("stdout", "output"),
    ("stderr", "error"),
    ("environment", "env"),
    ("environ", "env"),
    ("dir", "cwd"),
    ("directory", "cwd"),
    ("workdir", "cwd"),
    ("working_dir", "cwd"),
    ("working_directory", "cwd"),
];

/// The known field a misspelt or foreign one most likely means: a known alias, else the
/// nearest field by edit distance (at most 2), ignoring case.
fn closest(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    if let Some((_, field)) = ALIASES.iter().find(|(alias, _)| *alias == key) {
        return Some(field);
    }
    FIELDS
        .iter()
        .map(|f| (edit_distance(&key, f), *f))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, f)| f)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// serde_json appends " at line L column C"; we say it our own way.
fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

/// Exposed for callers that build a map from an already-parsed object (API bodies).
pub fn task_fields() -> &'static [&'static str] {
    &FIELDS
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
