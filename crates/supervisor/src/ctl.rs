//! `supervisor ctl`: a command line for a running supervisor's API.
//!
//! Which supervisor it talks to, and the refusal of any other, is `ctl_target`'s part; this
//! module builds the request and prints the answer (tables for people, `--json` for scripts).
//!
//! Exit status: 0 when the call worked (and, for `health`, the supervisor is ok); 1 when the call
//! failed, reached another supervisor than the one named, or the supervisor is degraded; 2 for
//! bad usage.
use crate::api::{EXPECT_HEADER, INSTANCE_HEADER};
use crate::cli::{CtlAction, CtlArgs};
use crate::ctl_target::{Expected, Target};
use servicekit::http_client;
use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

pub fn main(args: CtlArgs) -> ExitCode {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("supervisor ctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &CtlArgs) -> Result<ExitCode, String> {
    if matches!(args.action, CtlAction::Pid) {
        // Without an API, the runtime file's pid and start time are all there is to check.
        if let Some(e) = Expected::find(args.api.as_deref(), args.dumpfile.as_deref())? {
            if e.info.api.is_none() && args.api.is_none() {
                return pid_from_runtime_file(&e);
            }
        }
    }
    let target = Target::resolve(args.api.as_deref(), args.dumpfile.as_deref())?;
    let token_file = args
        .token_file
        .clone()
        .or_else(|| target.token_file().map(ToOwned::to_owned));
    let token = match &token_file {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t.trim().to_string()),
            // The runtime file's token file is a convenience: unreadable, it is not used.
            Err(_) if args.token_file.is_none() => None,
            Err(e) => return Err(format!("cannot read token file {}: {e}", p.display())),
        },
        None => None,
    };
    let given = args.token_file.as_deref();
    if matches!(args.action, CtlAction::Pid) {
        return pid(&target, token.as_deref(), given);
    }
    if let CtlAction::Top { once, interval } = args.action {
        return crate::ctl_top::run(&target, token.as_deref(), given, once, interval);
    }
    if let CtlAction::Logs {
        name,
        follow,
        stderr,
        lines,
    } = &args.action
    {
        let ask = crate::ctl_logs::LogsAsk {
            follow: *follow,
            stderr: *stderr,
            lines: *lines as usize,
        };
        crate::ctl_logs::run(&target, token.as_deref(), given, &ask, &encode(name))?;
        return Ok(ExitCode::SUCCESS);
    }
    let (method, path, body) = match &args.action {
        CtlAction::Status => ("GET", "/tasks".to_string(), None),
        CtlAction::Health | CtlAction::Pid | CtlAction::Top { .. } | CtlAction::Logs { .. } => {
            ("GET", "/health".to_string(), None)
        }
        CtlAction::Restart { name } => ("POST", format!("/tasks/{}/restart", encode(name)), None),
        CtlAction::Stop { name } => ("POST", format!("/tasks/{}/stop", encode(name)), None),
        CtlAction::Start { name } => ("POST", format!("/tasks/{}/start", encode(name)), None),
        CtlAction::Remove { name } => ("DELETE", format!("/tasks/{}", encode(name)), None),
        CtlAction::Add => ("POST", "/tasks".to_string(), Some(stdin("the task")?)),
        CtlAction::Apply => ("PUT", "/tasks".to_string(), Some(stdin("the task list")?)),
        CtlAction::Diff => (
            "PUT",
            "/tasks?dry_run=1".to_string(),
            Some(stdin("the task list")?),
        ),
    };
    let (status, json) = call(&target, token.as_deref(), given, method, &path, body)?;
    if !(200..300).contains(&status) {
        if args.json {
            println!("{json}");
        }
        let msg = json
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string());
        return Err(format!("{msg} (HTTP {status})"));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        match &args.action {
            CtlAction::Status => print!("{}", status_table(&json)),
            CtlAction::Health | CtlAction::Pid | CtlAction::Top { .. } | CtlAction::Logs { .. } => {
                print!("{}", health_text(&json))
            }
            CtlAction::Add => println!(
                "added {}",
                json.get("name").and_then(|n| n.as_str()).unwrap_or("?")
            ),
            CtlAction::Apply => print!("{}", plan_text(&json, true)),
            CtlAction::Diff => print!("{}", plan_text(&json, false)),
            CtlAction::Restart { name } => println!("{name}: restarting"),
            CtlAction::Stop { name } => println!("{name}: stopping"),
            CtlAction::Start { name } => println!("{name}: starting"),
            CtlAction::Remove { name } => println!("{name}: removing"),
        }
    }
    let degraded = matches!(args.action, CtlAction::Health)
        && json.get("status").and_then(|s| s.as_str()) != Some("ok");
    Ok(if degraded {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn stdin(what: &str) -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read {what} from standard input: {e}"))?;
    Ok(s)
}

/// A plan as a diff of task names: `+` added, `-` removed, `~` replaced.
fn plan_text(plan: &serde_json::Value, applied: bool) -> String {
    let list = |k: &str| -> Vec<String> {
        plan.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = String::new();
    for (sign, key) in [("+", "added"), ("-", "removed"), ("~", "replaced")] {
        for name in list(key) {
            out.push_str(&format!("{sign} {name}\n"));
        }
    }
    let unchanged = list("unchanged").len();
    let changes = list("added").len() + list("removed").len() + list("replaced").len();
    let revision = plan.get("revision").and_then(|r| r.as_u64()).unwrap_or(0);
    out.push_str(&match (changes, applied) {
        (0, _) => format!("no change ({unchanged} unchanged)\n"),
        (_, true) => {
            format!("applied: {changes} changed, {unchanged} unchanged (revision {revision})\n")
        }
        (_, false) => format!("{changes} to change, {unchanged} unchanged (nothing applied)\n"),
    });
    out
}

/// One request; the answers that mean "wrong supervisor" or "no token" become errors that say
/// so. Returns the status and the body (JSON, or the text as a JSON string).
pub(crate) fn call(
    target: &Target,
    token: Option<&str>,
    given_token_file: Option<&std::path::Path>,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, serde_json::Value), String> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if let Some(i) = target.expected_instance() {
        headers.push((EXPECT_HEADER, i));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let url = target.base.join(path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    let resp = rt
        .block_on(http_client::request(
            method,
            &url,
            &headers,
            body.as_deref().map(str::as_bytes),
            Duration::from_secs(30),
        ))
        .map_err(|e| target.unreachable(&e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&resp.body).unwrap_or(serde_json::Value::String(resp.body.clone()));
    let error = || {
        json.get("error")
            .and_then(|e| e.as_str())
            .unwrap_or(&resp.body)
            .to_string()
    };
    if resp.status == 412 {
        return Err(target.wrong_instance(&json));
    }
    if resp.status == 401 {
        return Err(target.needs_token(given_token_file, &error()));
    }
    if let Some(want) = target.expected_instance() {
        // A supervisor checks the instance itself; anything else at that address does not.
        let got = resp.header(INSTANCE_HEADER).unwrap_or("none");
        if got != want {
            return Err(format!(
                "the answer from {} came from instance {got}, not {want} as {} says: whatever answers there is not that supervisor (HTTP {} to {method} {path})",
                target.shown,
                target
                    .expected
                    .as_ref()
                    .map(|e| e.file.display().to_string())
                    .unwrap_or_default(),
                resp.status
            ));
        }
    }
    Ok((resp.status, json))
}

fn check_alive(e: &Expected) -> Result<(), String> {
    if e.info.liveness() == crate::runtime::Liveness::Alive {
        return Ok(());
    }
    Err(format!(
        "no live supervisor: {} names {}; {}",
        e.file.display(),
        e.info.describe(),
        e.liveness_note()
    ))
}

fn pid_from_runtime_file(e: &Expected) -> Result<ExitCode, String> {
    check_alive(e)?;
    println!("{}", e.info.pid);
    Ok(ExitCode::SUCCESS)
}

/// `ctl pid`: the pid of the live supervisor, printed only once checked: it answers on its API
/// (as the instance the runtime file names, if one does) and `/proc/PID/stat` still shows the
/// start time it reports. Without an API, the runtime file's pid and start time are checked.
fn pid(
    target: &Target,
    token: Option<&str>,
    given_token_file: Option<&std::path::Path>,
) -> Result<ExitCode, String> {
    if let Some(e) = &target.expected {
        check_alive(e)?;
    }
    let (status, health) = call(target, token, given_token_file, "GET", "/health", None)?;
    if status != 200 {
        return Err(format!("GET /health answered HTTP {status}: {health}"));
    }
    let pid = health["pid"].as_u64().unwrap_or(0) as i32;
    let start = health["start_time"].as_u64();
    let here = procio::procfs::stat(pid).ok().filter(|s| !s.is_zombie());
    match (here, start) {
        (Some(s), Some(t)) if s.start_ticks == t => {
            println!("{pid}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!(
            "the supervisor at {} reports pid {pid}, but no process with that pid and start time runs on this machine",
            target.shown
        )),
    }
}

/// Task names are `[A-Za-z0-9._-]`, but a user may type anything: escape the rest.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn uptime(secs: f64) -> String {
    let s = secs as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// `12.3s` / `2h05m` of CPU time.
fn cpu_text(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = secs as u64;
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

/// Bytes in binary units, one decimal: `812K`, `12.5M`, `1.2G`.
fn bytes_text(b: u64) -> String {
    let mut v = b as f64;
    for unit in ["B", "K", "M", "G"] {
        if v < 1024.0 {
            return if unit == "B" {
                format!("{b}B")
            } else {
                format!("{v:.1}{unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1}T")
}

/// An aligned table: NAME STATE PID PORT RESTARTS UPTIME CPU MEM LAST EXIT REASON.
pub fn status_table(tasks: &serde_json::Value) -> String {
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "PID",
            "PORT",
            "RESTARTS",
            "UPTIME",
            "CPU",
            "MEM",
            "LAST EXIT",
            "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for t in tasks.as_array().map(Vec::as_slice).unwrap_or_default() {
        let s = |k: &str| {
            t.get(k).map(|v| {
                if v.is_null() {
                    "-".to_string()
                } else {
                    v.to_string().trim_matches('"').to_string()
                }
            })
        };
        let state = s("state").unwrap_or_default().to_uppercase();
        let state = if t.get("yoyo").is_some_and(|y| !y.is_null()) {
            format!("{state} (YO-YO)")
        } else {
            state
        };
        rows.push(vec![
            s("name").unwrap_or_default(),
            state,
            s("pid").unwrap_or_default(),
            s("port").unwrap_or_default(),
            s("restarts").unwrap_or_default(),
            t.get("uptime_secs")
                .and_then(|u| u.as_f64())
                .map(uptime)
                .unwrap_or_else(|| "-".into()),
            t.get("cpu_seconds")
                .and_then(|u| u.as_f64())
                .map(cpu_text)
                .unwrap_or_else(|| "-".into()),
            t.get("memory_bytes")
                .and_then(|u| u.as_u64())
                .map(bytes_text)
                .unwrap_or_else(|| "-".into()),
            t.get("last_exit")
                .and_then(|e| e.get("status"))
                .and_then(|s| s.as_str())
                .unwrap_or("-")
                .to_string(),
            t.get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or("-")
                .to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn health_text(h: &serde_json::Value) -> String {
    let get = |k: &str| {
        h.get(k)
            .map(|v| v.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let mut out = format!(
        "{} (pid {}, instance {}, version {}, up {})\n",
        get("status"),
        get("pid"),
        get("instance"),
        get("version"),
        uptime(h["uptime_secs"].as_f64().unwrap_or(0.0))
    );
    let t = &h["tasks"];
    out.push_str(&format!(
        "tasks: {} total, {} running, {} starting, {} backoff, {} stopping, {} stopped, {} in yo-yo\n",
        t["total"], t["running"], t["starting"], t["backoff"], t["stopping"], t["stopped"], t["yoyo"]
    ));
    if let Some(n) = h["log"]["dropped_lines"].as_u64().filter(|n| *n > 0) {
        out.push_str(&format!(
            "log: {n} lines dropped (the log sink did not keep up)\n"
        ));
    }
    for r in h["reasons"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.push_str(&format!("  - {}\n", r.as_str().unwrap_or("")));
    }
    out
}
