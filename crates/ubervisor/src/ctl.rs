//! `ubervisor ctl`: the jobs API as tables (or `--json`), for people and scripts.
use std::io::Read;
use std::time::Duration;

use serde_json::Value;
use servicekit::http_client::{Url, request};

use crate::cli::{CtlArgs, CtlCommand};

/// Runs one ctl command; the exit code is 0, 1 (the ubervisor said no, or is unreachable),
/// or 2 (bad input).
pub async fn run(args: CtlArgs) -> u8 {
    let base = match Url::parse(&format!("http://{}/", args.addr)) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("ubervisor ctl: --addr: {e}");
            return 2;
        }
    };
    let (method, path, body) = match &args.command {
        CtlCommand::Jobs => ("GET", "/jobs".to_string(), None),
        CtlCommand::Job { name } => ("GET", format!("/jobs/{name}"), None),
        CtlCommand::Nodes => ("GET", "/nodes".to_string(), None),
        CtlCommand::Submit => {
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                eprintln!("ubervisor ctl submit: cannot read the job from stdin: {e}");
                return 2;
            }
            ("POST", "/jobs".to_string(), Some(s))
        }
        CtlCommand::Delete { name } => ("DELETE", format!("/jobs/{name}"), None),
        CtlCommand::Cordon { name } => ("POST", format!("/nodes/{name}/cordon"), None),
        CtlCommand::Uncordon { name } => ("POST", format!("/nodes/{name}/uncordon"), None),
        CtlCommand::Drain { name } => ("POST", format!("/nodes/{name}/drain"), None),
        CtlCommand::Unfreeze => ("POST", "/moves/unfreeze".to_string(), None),
    };
    let url = base.join(&path);
    let hdrs = [("Content-Type", "application/json")];
    let r = match request(
        method,
        &url,
        &hdrs,
        body.as_deref().map(str::as_bytes),
        Duration::from_secs(10),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ubervisor ctl: {e}");
            return 1;
        }
    };
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body.clone()));
    if !(200..300).contains(&r.status) {
        let msg = v.get("error").and_then(Value::as_str).unwrap_or(&r.body);
        eprintln!("ubervisor ctl: {} {path}: {} {msg}", method, r.status);
        return 1;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return 0;
    }
    match &args.command {
        CtlCommand::Jobs => {
            let mut table = rows(
                &v,
                &[
                    "name",
                    "count",
                    "placed",
                    "running",
                    "cpu",
                    "mem",
                    "generation",
                    "moves",
                ],
            );
            let jobs = v.as_array().cloned().unwrap_or_default();
            for (row, j) in table.iter_mut().zip(&jobs) {
                row.push(
                    if j["failed"].is_null() {
                        "ok"
                    } else {
                        "FAILED"
                    }
                    .into(),
                );
            }
            print_table(
                &[
                    "NAME", "COUNT", "PLACED", "RUNNING", "CPU", "MEM", "GEN", "MOVES", "STATUS",
                ],
                &table,
            );
            for j in &jobs {
                if let Some(why) = j["failed"]["reason"].as_str() {
                    println!("{}: failed: {why}", cell(&j["name"]));
                }
            }
        }
        CtlCommand::Nodes => {
            let list = v.as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    let cap = |r: &str| {
                        n["capacity"][r]
                            .as_u64()
                            .map(|x| x.to_string())
                            .unwrap_or("-".into())
                    };
                    let used = |r: &str| n["allocated"][r].as_u64().unwrap_or(0).to_string();
                    vec![
                        cell(&n["name"]),
                        if n["alive"].as_bool() == Some(true) {
                            "alive".into()
                        } else if n["lost"].as_bool() == Some(true) {
                            "lost".into()
                        } else {
                            "missing".into()
                        },
                        n["cordon_reason"].as_str().unwrap_or("-").to_string(),
                        format!("{}/{}", used("cpu"), cap("cpu")),
                        format!("{}/{}", used("mem"), cap("mem")),
                        cell(&n["instances"]),
                    ]
                })
                .collect();
            print_table(
                &["NODE", "HEALTH", "CORDON", "CPU", "MEM", "INSTANCES"],
                &rows,
            );
            if let Some(why) = list.iter().find_map(|n| n["moves_frozen"].as_str()) {
                println!("moves frozen: {why}");
            }
        }
        CtlCommand::Job { .. } => {
            let rows = rows(
                &v["instances"],
                &["instance", "node", "state", "host", "port", "pid"],
            );
            if let Some(why) = v["failed"]["reason"].as_str() {
                println!("FAILED: {why}");
            }
            print_table(&["INSTANCE", "NODE", "STATE", "HOST", "PORT", "PID"], &rows);
            for i in v["instances"].as_array().into_iter().flatten() {
                if let Some(d) = i["detail"].as_str() {
                    println!("{} on {}: {d}", cell(&i["instance"]), cell(&i["node"]));
                }
            }
            for m in v["moves"].as_array().into_iter().flatten() {
                println!(
                    "{}: moved {} -> {} (yo-yo)",
                    cell(&m["instance"]),
                    cell(&m["from"]),
                    cell(&m["to"])
                );
            }
            for u in v["unplaced"].as_array().into_iter().flatten() {
                println!(
                    "{}: not placed: {}",
                    cell(&u["instance"]),
                    cell(&u["reason"])
                );
            }
        }
        CtlCommand::Submit => println!("submitted job {}", cell(&v["name"])),
        CtlCommand::Delete { name } => println!("deleted job {name}"),
        CtlCommand::Cordon { name } => println!("cordoned node {name}"),
        CtlCommand::Uncordon { name } => println!("uncordoned node {name}"),
        CtlCommand::Drain { name } => println!("draining node {name}"),
        CtlCommand::Unfreeze if v["was_frozen"] == true => println!("moves unfrozen"),
        CtlCommand::Unfreeze => println!("moves were not frozen (the losses so far are accepted)"),
    }
    0
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rows(v: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|o| fields.iter().map(|f| cell(&o[*f])).collect())
        .collect()
}

fn print_table(head: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(head.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}
