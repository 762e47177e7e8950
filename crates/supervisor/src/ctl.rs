//! `supervisor ctl`: a command line for a running supervisor's API.
//!
//! Exit status: 0 when the call worked (and, for `health`, the supervisor is ok); 1 when the call
//! failed or the supervisor is degraded; 2 for bad usage.
use crate::cli::{CtlAction, CtlArgs};
use servicekit::http_client::{self, Url};
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
    let base = Url::parse(&args.api)?;
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read token file {}: {e}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let auth = token.map(|t| format!("Bearer {t}"));
    let (method, path, body) = match &args.action {
        CtlAction::Status => ("GET", "/tasks".to_string(), None),
        CtlAction::Health => ("GET", "/health".to_string(), None),
        CtlAction::Restart { name } => ("POST", format!("/tasks/{}/restart", encode(name)), None),
        CtlAction::Stop { name } => ("POST", format!("/tasks/{}/stop", encode(name)), None),
        CtlAction::Start { name } => ("POST", format!("/tasks/{}/start", encode(name)), None),
        CtlAction::Remove { name } => ("DELETE", format!("/tasks/{}", encode(name)), None),
        CtlAction::Add => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read the task from standard input: {e}"))?;
            ("POST", "/tasks".to_string(), Some(s))
        }
    };
    let mut headers = vec![("Accept", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let url = base.join(&path);
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
        .map_err(|e| format!("cannot reach the supervisor at {}: {e}", args.api))?;
    let json: serde_json::Value =
        serde_json::from_str(&resp.body).unwrap_or(serde_json::Value::String(resp.body.clone()));
    if !(200..300).contains(&resp.status) {
        let msg = json
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| resp.body.clone());
        if args.json {
            println!("{json}");
        }
        return Err(format!("{} (HTTP {})", msg, resp.status));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        match &args.action {
            CtlAction::Status => print!("{}", status_table(&json)),
            CtlAction::Health => print!("{}", health_text(&json)),
            CtlAction::Add => println!(
                "added {}",
                json.get("name").and_then(|n| n.as_str()).unwrap_or("?")
            ),
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

/// An aligned table: NAME STATE PID PORT RESTARTS UPTIME LAST EXIT.
pub fn status_table(tasks: &serde_json::Value) -> String {
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "PID",
            "PORT",
            "RESTARTS",
            "UPTIME",
            "LAST EXIT",
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
            t.get("last_exit")
                .and_then(|e| e.get("status"))
                .and_then(|s| s.as_str())
                .unwrap_or("-")
                .to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..7)
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
        "{} (pid {}, version {}, up {})\n",
        get("status"),
        get("pid"),
        get("version"),
        uptime(h["uptime_secs"].as_f64().unwrap_or(0.0))
    );
    let t = &h["tasks"];
    out.push_str(&format!(
        "tasks: {} total, {} running, {} starting, {} backoff, {} stopping, {} stopped, {} in yo-yo\n",
        t["total"], t["running"], t["starting"], t["backoff"], t["stopping"], t["stopped"], t["yoyo"]
    ));
    for r in h["reasons"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.push_str(&format!("  - {}\n", r.as_str().unwrap_or("")));
    }
    out
}
