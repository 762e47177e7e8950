//! What a person sees: the start-up lines and task table on the terminal, why a task is down
//! (`reason` in `GET /tasks`, the REASON column of `ctl status`), and a 401 that names
//! `ctl --token-file`.
use crate::apiaddr::ctl_in;
use crate::common::*;
use serde_json::{Value, json};
use testkit::{http_get, wait_for, wait_for_value};

fn stderr_of(sup: &Sup) -> String {
    std::fs::read_to_string(sup.path("sup.stderr")).unwrap_or_default()
}

/// The task list of the tests below: one runs, one crash-loops, one waits for a free port.
fn mixed(held_port: u16) -> (String, String) {
    let tasks = list(&[
        sh_task("web", "echo $$ > web.pid; exec sleep 1000"),
        sh_task("crash", "exit 3"),
        json!({"name": "porty", "command": ["sh", "-c", "exec sleep 1000", "{{port}}"]})
            .to_string(),
    ]);
    (tasks, format!("--port-range={held_port}-{held_port}"))
}

#[test]
fn the_terminal_shows_dashboard_log_how_to_stop_and_a_task_table() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let (tasks, range) = mixed(port);
    let mut sup = Sup::new();
    sup.start(&tasks, &[&range, "--dumpfile=run/supervisor.dump"]);
    let api = sup.api();
    let web = wait_pid_file(&sup.path("web.pid"));
    let table = wait_for_value(LONG, || {
        let e = stderr_of(&sup);
        e.contains("tasks running:").then_some(e)
    })
    .expect("the task table is printed after start-up");
    for want in [
        format!("supervisor: pid {}, 3 tasks, log: sup.log", sup.pid()),
        format!("dashboard: http://{api}/"),
        "stop with Ctrl-C".to_string(),
        "NAME".to_string(),
        "REASON".to_string(),
        "ctl status` shows them again".to_string(),
    ] {
        assert!(table.contains(&want), "stderr lacks {want:?}:\n{table}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .to_string()
    };
    let web_row = row("web");
    assert!(
        web_row.contains("running") && web_row.contains(&web.to_string()),
        "{web_row}"
    );
    assert!(row("porty").contains("waiting for a free port"), "{table}");
    assert!(row("crash").contains("exit code 3"), "{table}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn ctl_status_and_get_tasks_say_why_a_task_is_down() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let (tasks, range) = mixed(port);
    let mut sup = Sup::new();
    sup.start(&tasks, &[&range]);
    let api = sup.api();
    wait_pid_file(&sup.path("web.pid"));
    let task = |name: &str| -> Value {
        serde_json::from_str(&http_get(&api, &format!("/tasks/{name}"), &[]).unwrap().body).unwrap()
    };
    // The crash-looper reaches yo-yo mode; its reason gives the status and the next retry.
    let crash = wait_for_value(LONG, || {
        let t = task("crash");
        t["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("yo-yo"))
            .then_some(t)
    })
    .expect("crash goes yo-yo");
    let why = crash["reason"].as_str().unwrap();
    assert!(why.contains("exit code 3"), "{why}");
    assert!(
        why.contains("retry in") || why.contains("up again"),
        "{why}"
    );
    assert!(
        task("porty")["reason"]
            .as_str()
            .unwrap()
            .contains("waiting for a free port")
    );
    assert_eq!(task("web")["reason"], Value::Null);
    let (code, _, err) = ctl_in(
        sup.dir.path(),
        &["--api", &format!("http://{api}"), "stop", "web"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(wait_for(LONG, || task("web")["state"] == "stopped"));
    assert_eq!(
        task("web")["reason"],
        "stopped on request (last exit: killed by SIGTERM)"
    );

    let (code, out, err) = ctl_in(
        sup.dir.path(),
        &["--api", &format!("http://{api}"), "status"],
    );
    assert_eq!(code, Some(0), "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.ends_with("REASON"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
    };
    assert!(line("web").contains("stopped on request"), "{out}");
    assert!(line("porty").contains("waiting for a free port"), "{out}");
    assert!(line("crash").contains("yo-yo"), "{out}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn a_401_names_ctl_token_file_and_ctl_finds_the_token_file_through_the_dumpfile() {
    let mut sup = Sup::new();
    std::fs::write(sup.path("token"), "t0ken\n").unwrap();
    std::fs::write(sup.path("wrong"), "nope\n").unwrap();
    sup.start(
        &list(&[sh_task("a", "exec sleep 1000")]),
        &["--api-token-file=token", "--dumpfile=s.dump"],
    );
    let api = sup.api();
    let r = http_get(&api, "/tasks", &[]).unwrap();
    assert_eq!(r.status, 401);
    assert!(r.body.contains("ctl, pass --token-file=PATH"), "{}", r.body);

    let url = format!("http://{api}");
    let (code, _, err) = ctl_in(sup.dir.path(), &["--api", &url, "status"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("needs its API token: pass --token-file=PATH"),
        "{err}"
    );
    let (code, _, err) = ctl_in(
        sup.dir.path(),
        &["--api", &url, "--token-file=wrong", "status"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("the token in wrong is not the one"), "{err}");
    let (code, out, err) = ctl_in(
        sup.dir.path(),
        &["--api", &url, "--token-file=token", "status"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("RUNNING"), "{out}");
    // Through the runtime file, ctl uses the token file the supervisor was started with.
    let (code, out, err) = ctl_in(sup.dir.path(), &["--dumpfile=s.dump", "status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("RUNNING"), "{out}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}
