//! The HTTP API, `supervisor ctl`, metrics, events and upstream reports, against a real supervisor.
use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;
use testkit::{http_get, http_request, pid_alive, wait_for, wait_for_value};

fn json(r: &testkit::Response) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

fn get(api: &str, path: &str) -> (u16, Value) {
    let r = http_get(api, path, &[]).unwrap();
    (r.status, json(&r))
}

fn post(api: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let r = http_request(
        "POST",
        api,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    (r.status, json(&r))
}

fn pid_of(api: &str, name: &str) -> Option<u64> {
    get(api, &format!("/tasks/{name}")).1["pid"].as_u64()
}

#[test]
fn api_round_trips_control_every_task() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            sh_task("a", "exec sleep 1000"),
            sh_task("b", "exec sleep 1000"),
        ]),
        &[],
    );
    let api = sup.api();
    assert!(wait_for(
        LONG,
        || get(&api, "/health").1["tasks"]["running"] == 2
    ));
    let (status, h) = get(&api, "/health");
    assert_eq!(status, 200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["pid"].as_u64(), Some(sup.pid() as u64));
    assert!(h["uptime_secs"].as_f64().unwrap() >= 0.0);

    let (_, tasks) = get(&api, "/tasks");
    let names: Vec<&str> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        tasks[0]["argv"],
        serde_json::json!(["sh", "-c", "exec sleep 1000"])
    );

    let pid = pid_of(&api, "a").unwrap();
    assert_eq!(post(&api, "/tasks/a/restart", None).0, 202);
    let new_pid = wait_for_value(LONG, || pid_of(&api, "a").filter(|p| *p != pid))
        .expect("restart gives a new pid");
    assert!(!pid_alive(pid as i32));
    assert_eq!(get(&api, "/tasks/a").1["restarts"], 1);

    assert_eq!(post(&api, "/tasks/a/stop", None).0, 202);
    assert!(wait_for(LONG, || get(&api, "/tasks/a").1["state"] == "stopped"));
    assert!(!pid_alive(new_pid as i32));
    let (status, err) = post(&api, "/tasks/a/stop", None);
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("already stopped"),
        "{err}"
    );
    assert_eq!(post(&api, "/tasks/a/start", None).0, 202);
    assert!(wait_for(LONG, || get(&api, "/tasks/a").1["state"] == "running"));

    // Adding: the same validation as the task list.
    let (status, added) = post(
        &api,
        "/tasks",
        Some(r#"{"name": "c", "command": ["sleep", "1000"]}"#),
    );
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["name"], "c");
    assert!(wait_for(LONG, || get(&api, "/tasks/c").1["state"] == "running"));
    let (status, err) = post(
        &api,
        "/tasks",
        Some(r#"{"name": "d", "comand": ["sleep"]}"#),
    );
    assert_eq!(status, 400);
    let msg = err["error"].as_str().unwrap();
    assert!(
        msg.contains("\"comand\"") || err["problems"].to_string().contains("comand"),
        "{err}"
    );
    let (status, err) = post(
        &api,
        "/tasks",
        Some(r#"{"name": "c", "command": ["sleep", "1"]}"#),
    );
    assert_eq!(status, 409, "{err}");
    let (status, err) = post(&api, "/tasks", Some("not json"));
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("not valid JSON"),
        "{err}"
    );

    let (status, err) = get(&api, "/tasks/nope");
    assert_eq!(status, 404);
    assert!(err["error"].as_str().unwrap().contains("nope"));
    assert_eq!(post(&api, "/tasks/a/explode", None).0, 404);

    let b = pid_of(&api, "b").unwrap();
    let r = http_request("DELETE", &api, "/tasks/b", &[], None).unwrap();
    assert_eq!(r.status, 202);
    assert!(wait_for(LONG, || get(&api, "/tasks/b").0 == 404));
    assert!(!pid_alive(b as i32));

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(sup.marked_pids().is_empty());
}

#[test]
fn health_is_degraded_while_a_task_yoyos() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            sh_task("crash", "exit 1"),
            sh_task("fine", "exec sleep 1000"),
        ]),
        &[],
    );
    let api = sup.api();
    assert!(wait_for(LONG, || get(&api, "/health").1["status"] == "degraded"));
    let (_, h) = get(&api, "/health");
    assert!(
        h["reasons"][0]
            .as_str()
            .unwrap()
            .contains("crash is in yo-yo mode"),
        "{h}"
    );
    assert_eq!(h["tasks"]["yoyo"], 1);
    let (_, t) = get(&api, "/tasks/crash");
    assert!(t["yoyo"]["quick_deaths"].as_u64().unwrap() >= 2, "{t}");
    assert_eq!(t["last_exit"]["code"], 1);
}

#[test]
fn events_stream_task_events() {
    let mut sup = Sup::new();
    sup.start(&list(&[sh_task("a", "exec sleep 1000")]), &[]);
    let api = sup.api();
    assert!(wait_for(LONG, || pid_of(&api, "a").is_some()));
    let mut stream = std::net::TcpStream::connect(&api).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /events HTTP/1.1\r\nHost: {api}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    // Headers are sent: now cause events.
    let killer = std::thread::spawn({
        let api = api.clone();
        move || {
            std::thread::sleep(Duration::from_millis(200));
            post(&api, "/tasks/a/restart", None)
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + LONG;
    while !seen.iter().any(|t: &String| t == "restarted") && std::time::Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(data) = line.trim().strip_prefix("data:") {
            let ev: Value = serde_json::from_str(data.trim()).unwrap();
            assert_eq!(ev["task"], "a");
            assert!(ev["at_unix_ms"].as_u64().unwrap() > 0);
            seen.push(ev["type"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(killer.join().unwrap().0, 202);
    for want in ["stopping", "exited", "stopped", "restarted"] {
        assert!(
            seen.iter().any(|s| s == want),
            "{want} missing from {seen:?}"
        );
    }
}

#[test]
fn metrics_pass_promtool() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("a", "exec sleep 1000"), sh_task("b", "exit 3")]),
        &[],
    );
    let api = sup.api();
    assert!(wait_for(LONG, || get(&api, "/health").1["tasks"]["yoyo"] == 1));
    let r = http_get(&api, "/metrics", &[]).unwrap();
    assert_eq!(r.status, 200);
    for want in [
        "supervisor_task_up{task=\"a\"} 1",
        "supervisor_task_yoyo{task=\"b\"} 1",
        "supervisor_restart_latency_seconds_bucket",
        "supervisor_task_deaths_total",
        "supervisor_tasks{state=\"running\"}",
    ] {
        assert!(r.body.contains(want), "{want} missing from\n{}", r.body);
    }
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(r.body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_token_protects_everything_but_health() {
    let mut sup = Sup::new();
    std::fs::write(sup.path("token"), "s3cret-token\n").unwrap();
    sup.start(
        &list(&[sh_task("a", "exec sleep 1000")]),
        &["--api-token-file=token"],
    );
    let api = sup.api();
    assert_eq!(http_get(&api, "/health", &[]).unwrap().status, 200);
    for path in ["/tasks", "/metrics", "/", "/tasks/a"] {
        let r = http_get(&api, path, &[]).unwrap();
        assert_eq!(r.status, 401, "{path} without a token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(
            http_get(&api, path, &[("Authorization", "Bearer wrong")])
                .unwrap()
                .status,
            401
        );
        assert_eq!(
            http_get(&api, path, &[("Authorization", "Bearer s3cret-token")])
                .unwrap()
                .status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        http_get(&api, "/tasks?token=s3cret-token", &[])
            .unwrap()
            .status,
        200
    );
    let r = http_request("POST", &api, "/tasks/a/restart", &[], None).unwrap();
    assert_eq!(r.status, 401);
}

#[test]
fn a_public_address_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let listen = format!("--listen=0.0.0.0:{port}");
    let (code, err) = run_to_exit(
        dir.path(),
        r#"[{"command": ["sleep", "1000"]}]"#,
        &[&listen],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("not a loopback address") && err.contains("--api-token-file"),
        "{err}"
    );
}

/// A tiny HTTP receiver: every request body is sent down the channel, answered with 200.
fn receiver() -> (String, mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut len = 0;
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                if let Ok(v) = serde_json::from_slice(&body) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        }
    });
    (addr, rx)
}

#[test]
fn heartbeats_and_yoyo_events_reach_the_ubervisor() {
    let (addr, rx) = receiver();
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("crash", "exit 1")]),
        &[
            &format!("--report-url=http://{addr}/report"),
            "--report-interval=200ms",
        ],
    );
    // Every report is the whole level: health, the tasks in yo-yo mode, the revision.
    let mut first = None;
    let mut yoyo = None;
    let deadline = std::time::Instant::now() + LONG;
    while yoyo.is_none() && std::time::Instant::now() < deadline {
        let Ok(v) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        assert_eq!(v["type"], "level", "{v}");
        if first.is_none() {
            first = Some(v.clone());
        }
        if v["yoyo"].as_array().is_some_and(|a| !a.is_empty()) {
            yoyo = Some(v);
        }
    }
    let first = first.expect("a report");
    assert_eq!(first["health"]["pid"].as_u64(), Some(sup.pid() as u64));
    let yoyo = yoyo.expect("a report with the task in yo-yo mode");
    assert_eq!(yoyo["yoyo"][0]["task"], "crash");
    assert_eq!(yoyo["yoyo"][0]["uid"].as_str().map(str::len), Some(16));
    assert!(yoyo["revision"].as_u64() >= first["revision"].as_u64());
    // Reports keep coming every interval while nothing changes: a receiver that missed one
    // has the level again within the interval.
    let more = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("another report");
    assert_eq!(more["type"], "level");
}

#[test]
fn reports_to_a_dead_ubervisor_do_not_slow_the_supervisor() {
    // Nothing listens there: posts fail and are retried, the loop is unaffected.
    let port = testkit::free_port();
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("a", "echo $$ >> pids; exec sleep 1000")]),
        &[
            &format!("--report-url=http://127.0.0.1:{port}/r"),
            "--report-interval=50ms",
        ],
    );
    let pid = wait_pid_file(&sup.path("pids"));
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_for(LONG, || std::fs::read_to_string(sup.path("pids"))
        .unwrap()
        .lines()
        .count()
        == 2));
    assert!(sup.wait_log("cannot send report upstream"));
}

pub fn ctl(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(testkit::bin_path("supervisor"));
    cmd.arg("ctl")
        .args(args)
        .stdin(std::process::Stdio::piped());
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_shows_status_and_controls_tasks() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            sh_task("web", "exec sleep 1000"),
            sh_task("crash", "exit 7"),
        ]),
        &[],
    );
    let api = format!("--api=http://{}", sup.api());
    assert!(wait_for(LONG, || ctl(&[&api, "status"], None)
        .1
        .contains("RUNNING")));
    let (code, out, _) = ctl(&[&api, "status"], None);
    assert_eq!(code, Some(0));
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("STATE") && header.contains("LAST EXIT"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("web") && l.contains("RUNNING")),
        "{out}"
    );
    assert!(wait_for(LONG, || ctl(&[&api, "status"], None)
        .1
        .contains("exit code 7")));

    let (code, out, _) = ctl(&[&api, "health"], None);
    assert_eq!(code, Some(1), "degraded while crash yo-yos: {out}");
    assert!(
        out.starts_with("degraded") && out.contains("crash is in yo-yo mode"),
        "{out}"
    );

    let (code, out, err) = ctl(&[&api, "--json", "status"], None);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let before = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "web")
        .unwrap()["pid"]
        .as_u64()
        .unwrap();
    assert_eq!(ctl(&[&api, "restart", "web"], None).0, Some(0));
    assert!(wait_for(LONG, || {
        let (_, out, _) = ctl(&[&api, "--json", "status"], None);
        let v: Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "web" && t["pid"].as_u64().is_some_and(|p| p != before))
    }));
    assert_eq!(ctl(&[&api, "remove", "crash"], None).0, Some(0));
    let (code, out, _) = ctl(
        &[&api, "add"],
        Some(r#"{"name": "extra", "command": ["sleep", "1000"]}"#),
    );
    assert_eq!(code, Some(0));
    assert!(out.contains("added extra"));
    assert!(
        wait_for(LONG, || ctl(&[&api, "health"], None).0 == Some(0)),
        "healthy once crash is gone"
    );

    let (code, _, err) = ctl(&[&api, "stop", "nope"], None);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no task named \"nope\"") && err.contains("404"),
        "{err}"
    );
    let dead = format!("--api=http://127.0.0.1:{}", testkit::free_port());
    let (code, _, err) = ctl(&[&dead, "status"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach the supervisor"), "{err}");
}
