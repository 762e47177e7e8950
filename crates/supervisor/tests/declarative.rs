//! The declarative supervisor against real processes: `PUT /tasks` converges on a task list,
//! `GET /state` long-polls, and the per-task controls (restart policy, stop signal and
//! timeout, autostart) act on real processes; uids and generations outlive a SIGKILL.
use crate::common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::{http_get, http_request, pid_alive, wait_for, wait_for_value};

fn call(api: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let r = http_request(
        method,
        api,
        path,
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    let v = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body));
    (r.status, v)
}

fn task(api: &str, name: &str) -> Value {
    call(api, "GET", &format!("/tasks/{name}"), None).1
}

fn running_pid(api: &str, name: &str) -> u64 {
    wait_for_value(LONG, || {
        let t = task(api, name);
        (t["state"] == "running")
            .then(|| t["pid"].as_u64())
            .flatten()
    })
    .unwrap_or_else(|| panic!("{name} never ran: {}", task(api, name)))
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect()
}

fn sleeper(name: &str) -> Value {
    json!({"name": name, "command": ["sleep", "1000"]})
}

#[test]
fn put_tasks_converges_and_applying_twice_touches_nothing() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sleeper("a").to_string(), sleeper("b").to_string()]),
        &[],
    );
    let api = sup.api();
    let (a, b) = (running_pid(&api, "a"), running_pid(&api, "b"));
    let same = json!([sleeper("a"), sleeper("b")]).to_string();

    let (status, plan) = call(&api, "PUT", "/tasks", Some(&same));
    assert_eq!(status, 200, "{plan}");
    assert_eq!(names(&plan["unchanged"]), ["a", "b"]);
    assert!(plan["added"].as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        (running_pid(&api, "a"), running_pid(&api, "b")),
        (a, b),
        "no restart"
    );

    // A dry run says what would change and changes nothing.
    let next = json!([sleeper("a"), {"name": "b", "command": ["sleep", "2000"]}, sleeper("c")])
        .to_string();
    let (status, dry) = call(&api, "PUT", "/tasks?dry_run=1", Some(&next));
    assert_eq!(status, 200, "{dry}");
    assert_eq!(names(&dry["replaced"]), ["b"]);
    assert_eq!(names(&dry["added"]), ["c"]);
    assert_eq!(call(&api, "GET", "/tasks/c", None).0, 404);
    assert_eq!(running_pid(&api, "b"), b);

    // One changed field replaces only that task; the new one starts.
    let (_, plan) = call(&api, "PUT", "/tasks", Some(&next));
    assert_eq!(names(&plan["replaced"]), ["b"]);
    assert_eq!(names(&plan["unchanged"]), ["a"]);
    assert!(plan["revision"].as_u64().unwrap() > dry["revision"].as_u64().unwrap());
    let b2 = wait_for_value(LONG, || {
        let t = task(&api, "b");
        (t["state"] == "running" && t["pid"].as_u64() != Some(b))
            .then(|| t["pid"].as_u64())
            .flatten()
    })
    .unwrap();
    assert!(
        wait_for(LONG, || !pid_alive(b as i32)),
        "the old b is stopped"
    );
    assert_eq!(task(&api, "b")["argv"], json!(["sleep", "2000"]));
    assert_eq!(running_pid(&api, "a"), a, "a untouched");
    running_pid(&api, "c");

    // A list without a task removes it.
    let (_, plan) = call(
        &api,
        "PUT",
        "/tasks",
        Some(&json!([sleeper("c")]).to_string()),
    );
    assert_eq!(names(&plan["removed"]), ["a", "b"]);
    assert!(wait_for(LONG, || call(&api, "GET", "/tasks/a", None).0 == 404));
    assert!(wait_for(LONG, || !pid_alive(a as i32) && !pid_alive(b2 as i32)));

    // Bad input is a 400 naming the task and field, and changes nothing.
    let (status, err) = call(
        &api,
        "PUT",
        "/tasks",
        Some(r#"[{"command": ["sleep", "1"], "restart": "sometimes"}]"#),
    );
    assert_eq!(status, 400, "{err}");
    assert!(err.to_string().contains("restart"), "{err}");
    assert_eq!(task(&api, "c")["state"], "running");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn put_one_task_adds_or_replaces_it_and_a_removed_name_comes_back_at_once() {
    let mut sup = Sup::new();
    // The task ignores TERM for a while, so its removal is still under way below.
    let slow = json!({"name": "w", "command": ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"], "stop_timeout": "1s"});
    sup.start(&list(&[slow.to_string()]), &[]);
    let api = sup.api();
    let old = running_pid(&api, "w");
    let (status, _) = call(&api, "DELETE", "/tasks/w", None);
    assert_eq!(status, 202);
    assert_eq!(task(&api, "w")["state"], "stopping");
    let (status, plan) = call(
        &api,
        "PUT",
        "/tasks/w",
        Some(&json!({"command": ["sleep", "1000"]}).to_string()),
    );
    assert_eq!(status, 200, "{plan}");
    assert_eq!(names(&plan["added"]), ["w"]);
    let new = wait_for_value(LONG, || {
        let t = task(&api, "w");
        (t["state"] == "running" && t["pid"].as_u64() != Some(old))
            .then(|| t["pid"].as_u64())
            .flatten()
    })
    .unwrap();
    assert!(
        !pid_alive(old as i32),
        "started only once the old instance was gone"
    );
    assert_eq!(task(&api, "w")["argv"], json!(["sleep", "1000"]));
    let (status, err) = call(
        &api,
        "PUT",
        "/tasks/w",
        Some(&json!({"name": "other", "command": ["sleep", "1"]}).to_string()),
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(running_pid(&api, "w"), new);
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn restart_policies_stop_signal_and_autostart_act_on_real_processes() {
    let mut sup = Sup::new();
    let tasks = json!([
        {"name": "once", "command": ["sh", "-c", "echo ran >> once.txt"], "restart": "never"},
        {"name": "fails", "command": ["sh", "-c", "echo ran >> fails.txt; exit 3"], "restart": "on-failure"},
        {"name": "ok", "command": ["sh", "-c", "echo ran >> ok.txt; exit 0"], "restart": "on-failure"},
        {"name": "int", "command": ["sh", "-c", "trap 'echo INT > int.txt; exit 0' INT; trap '' TERM; while :; do sleep 0.05; done"],
         "stop_signal": "INT", "stop_timeout": "5s"},
        {"name": "manual", "command": ["sleep", "1000"], "autostart": false},
    ]);
    sup.start(&tasks.to_string(), &[]);
    let api = sup.api();
    assert!(wait_for(LONG, || task(&api, "once")["state"] == "stopped"));
    assert!(wait_for(LONG, || task(&api, "ok")["state"] == "stopped"));
    let runs = |f: &str| {
        std::fs::read_to_string(sup.path(f))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(
        wait_for(LONG, || runs("fails.txt") >= 3),
        "on-failure restarts exit 3"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(runs("once.txt"), 1, "never: ran once");
    assert_eq!(runs("ok.txt"), 1, "on-failure: exit 0 is not restarted");
    assert_eq!(task(&api, "manual")["state"], "stopped");
    assert!(task(&api, "manual")["pid"].is_null());

    let pid = running_pid(&api, "int");
    let asked = Instant::now();
    let (status, _) = call(&api, "POST", "/tasks/int/stop", None);
    assert_eq!(status, 202);
    assert!(wait_for(LONG, || task(&api, "int")["state"] == "stopped"));
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "it stopped on INT, not at the KILL"
    );
    assert_eq!(
        std::fs::read_to_string(sup.path("int.txt")).unwrap().trim(),
        "INT"
    );
    assert!(!pid_alive(pid as i32));

    let (status, _) = call(&api, "POST", "/tasks/manual/start", None);
    assert_eq!(status, 202);
    running_pid(&api, "manual");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn get_state_long_polls_until_something_changes() {
    let mut sup = Sup::new();
    sup.start(&list(&[sleeper("a").to_string()]), &[]);
    let api = sup.api();
    running_pid(&api, "a");
    let (_, now) = call(&api, "GET", "/state", None);
    let rev = now["revision"].as_u64().unwrap();
    assert_eq!(now["tasks"][0]["name"], "a");
    // Nothing changes: the poll waits, then says so.
    let t = Instant::now();
    let (status, same) = call(&api, "GET", &format!("/state?since={rev}&wait=300ms"), None);
    assert_eq!(status, 200);
    assert_eq!(same["changed"], false, "{same}");
    assert!(t.elapsed() >= Duration::from_millis(250));
    // A change wakes a waiting poll at once.
    let api2 = api.clone();
    let poll = std::thread::spawn(move || {
        let t = Instant::now();
        let r = call(&api2, "GET", &format!("/state?since={rev}&wait=20s"), None).1;
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    call(&api, "POST", "/tasks/a/restart", None);
    let (woke, took) = poll.join().unwrap();
    assert_eq!(woke["changed"], true, "{woke}");
    assert!(woke["revision"].as_u64().unwrap() > rev);
    assert!(
        took < Duration::from_secs(10),
        "woken by the change, not the wait: {took:?}"
    );
    // An old revision answers at once.
    let t = Instant::now();
    call(&api, "GET", "/state?since=0&wait=20s", None);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(call(&api, "GET", "/state?since=1&wait=10m", None).0, 400);
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn uids_and_generations_survive_a_supervisor_sigkill_and_recovery() {
    let mut sup = Sup::new();
    let tasks = list(&[sleeper("a").to_string()]);
    sup.start(&tasks, &["--dumpfile=sup.dump"]);
    let api = sup.api();
    let pid = running_pid(&api, "a");
    call(&api, "POST", "/tasks/a/restart", None);
    let pid2 = wait_for_value(LONG, || {
        let t = task(&api, "a");
        (t["state"] == "running" && t["pid"].as_u64() != Some(pid))
            .then(|| t["pid"].as_u64())
            .flatten()
    })
    .unwrap();
    let before = task(&api, "a");
    let uid = before["uid"].as_str().unwrap().to_string();
    assert_eq!(uid.len(), 16);
    // The dump holds it before the kill.
    assert!(wait_for(LONG, || sup.dump("sup.dump").is_some_and(
        |d| d["uids"]["a"] == uid.as_str() && d["tasks"][0]["pid"].as_u64() == Some(pid2)
    )));
    sup.signal(libc::SIGKILL);
    sup.wait_exit();
    sup.start(&tasks, &["--dumpfile=sup.dump"]);
    assert!(sup.wait_log_count("API listening", 2));
    let api = sup.api();
    assert!(
        wait_for(LONG, || !pid_alive(pid2 as i32)),
        "the leftover is stopped"
    );
    running_pid(&api, "a");
    let after = task(&api, "a");
    assert_eq!(after["uid"], uid.as_str(), "same task, same uid");
    assert!(
        after["generation"].as_u64() > before["generation"].as_u64(),
        "generations only grow: {before} then {after}"
    );
    let metrics = http_get(&api, "/metrics", &[]).unwrap().body;
    let info = format!(
        "supervisor_task_info{{task=\"a\",uid=\"{uid}\",generation=\"{}\"}} 1",
        after["generation"]
    );
    assert!(metrics.contains(&info), "{info} in /metrics");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn ctl_diff_shows_the_plan_and_ctl_apply_carries_it_out() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sleeper("a").to_string(), sleeper("b").to_string()]),
        &[],
    );
    let api = sup.api();
    let a = running_pid(&api, "a");
    let next =
        json!([sleeper("a"), {"name": "b", "command": ["sleep", "999"]}, sleeper("c")]).to_string();
    let flag = format!("--api=http://{api}");
    let (code, out, err) = crate::api::ctl(&[&flag, "diff"], Some(&next));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "+ c\n~ b\n2 to change, 1 unchanged (nothing applied)\n"
    );
    assert_eq!(call(&api, "GET", "/tasks/c", None).0, 404);
    let (code, out, err) = crate::api::ctl(&[&flag, "apply"], Some(&next));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("+ c\n~ b\napplied: 2 changed, 1 unchanged (revision "),
        "{out}"
    );
    running_pid(&api, "c");
    assert_eq!(running_pid(&api, "a"), a);
    let (code, out, _) = crate::api::ctl(&[&flag, "apply"], Some(&next));
    assert_eq!(code, Some(0));
    assert_eq!(out, "no change (3 unchanged)\n");
    let (code, _, err) = crate::api::ctl(&[&flag, "apply"], Some("[{\"command\": []}]"));
    assert_eq!(code, Some(1));
    assert!(err.contains("command"), "{err}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn user_switches_to_nobody_and_an_unknown_user_is_refused_before_start() {
    let mut sup = Sup::new();
    let t = json!({"name": "who", "command": ["sh", "-c", "id -u; id -g; exec sleep 1000"], "user": "nobody", "output": "uid.txt"});
    sup.start(&list(&[t.to_string()]), &[]);
    let ids = wait_for_value(LONG, || {
        let s = std::fs::read_to_string(sup.path("uid.txt")).ok()?;
        (s.lines().count() == 2).then_some(s)
    })
    .unwrap();
    let pid = running_pid(&sup.api(), "who");
    let nobody = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        });
    assert_eq!(ids.lines().next(), Some("65534"), "{ids}");
    assert_eq!(nobody.as_deref(), Some("65534"));
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));

    let bad =
        json!([{"name": "x", "command": ["sleep", "1"], "user": "no-such-user-ts"}]).to_string();
    let (code, out) = run_to_exit(&sup.path(""), &bad, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("task 1 (x): field \"user\": no user named \"no-such-user-ts\""),
        "{out}"
    );
}

#[test]
fn a_dependent_waits_for_readiness_and_a_failing_health_check_restarts_its_task() {
    let mut sup = Sup::new();
    let tasks = json!([
        {"name": "db", "command": ["sh", "-c", "sleep 0.4; touch db.ready; exec sleep 1000"],
         "ready": {"exec": ["test", "-e", "db.ready"], "interval": "50ms"}},
        {"name": "app", "depends_on": ["db"],
         "command": ["sh", "-c", "if test -e db.ready; then echo after > app.txt; else echo before > app.txt; fi; exec sleep 1000"]},
        {"name": "hung", "command": ["sleep", "1000"],
         "health": {"exec": ["test", "-e", "hung.ok"], "interval": "100ms", "failures": 2}},
    ]);
    sup.start(&tasks.to_string(), &[]);
    let api = sup.api();
    assert_eq!(task(&api, "app")["state"], "starting");
    assert_eq!(task(&api, "app")["waiting_on"], json!(["db"]));
    assert!(wait_for(LONG, || task(&api, "db")["ready"] == true));
    running_pid(&api, "app");
    assert!(wait_for(LONG, || sup.path("app.txt").exists()));
    assert_eq!(
        std::fs::read_to_string(sup.path("app.txt")).unwrap().trim(),
        "after"
    );
    // The hung task runs, but its health check fails: it is restarted (a new process).
    let first = running_pid(&api, "hung");
    assert!(wait_for(LONG, || task(&api, "hung")["restarts"].as_u64() >= Some(1)));
    assert!(
        wait_for(LONG, || !pid_alive(first as i32)),
        "the hung instance was stopped"
    );
    assert!(sup.wait_log("check failed too often: restarting the task"));
    // Healthy from now on: no more restarts.
    std::fs::write(sup.path("hung.ok"), "").unwrap();
    let pid = running_pid(&api, "hung");
    let restarts = task(&api, "hung")["restarts"].as_u64();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(task(&api, "hung")["restarts"].as_u64(), restarts);
    assert_eq!(running_pid(&api, "hung"), pid);
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn start_first_starts_the_new_instance_before_the_old_one_stops_and_sticky_keeps_a_port() {
    let mut sup = Sup::new();
    let range = {
        let first = 30000 + (std::process::id() % 1000) as u16 * 10;
        format!("--port-range={first}-{}", first + 9)
    };
    let ts = |v: &str| {
        json!({"name": "ts", "command": [testkit::bin_path("timeserver"), "--port={{port}}",
                format!("--authport={}", testkit::free_port()), "--authhost=127.0.0.1"],
               "env": {"V": v}, "replace": "start-first", "ready": {"tcp": true, "interval": "20ms"}})
    };
    let sticky = json!({"name": "st", "command": ["sh", "-c", "echo $PORT >> st.txt; exec sleep 1000 # {{port}}"], "port": "sticky"});
    sup.start(&json!([ts("1"), sticky]).to_string(), &[&range]);
    let api = sup.api();
    assert!(wait_for(LONG, || task(&api, "ts")["ready"] == true));
    let old = running_pid(&api, "ts");
    let old_port = task(&api, "ts")["port"].as_u64().unwrap();
    let (_, plan) = call(&api, "PUT", "/tasks/ts", Some(&ts("2").to_string()));
    assert_eq!(names(&plan["replaced"]), ["ts"]);
    // The new instance is there while the old one still runs.
    let new = wait_for_value(LONG, || {
        let t = task(&api, "ts");
        t["pid"].as_u64().filter(|p| *p != old)
    })
    .unwrap();
    assert!(
        pid_alive(old as i32),
        "the old instance waits for the new one to be ready"
    );
    assert!(
        wait_for(LONG, || !pid_alive(old as i32)),
        "then it is stopped"
    );
    let t = task(&api, "ts");
    assert_eq!(t["pid"].as_u64(), Some(new));
    assert_ne!(
        t["port"].as_u64(),
        Some(old_port),
        "the new instance has its own port"
    );
    assert_eq!(t["ready"], true);
    // Sticky: killed, it comes back on the same port.
    let st = running_pid(&api, "st");
    let port = task(&api, "st")["port"].as_u64();
    // SAFETY: the task's live process, which the supervisor has not reaped (it is running).
    unsafe { libc::kill(st as i32, libc::SIGKILL) };
    assert!(wait_for(LONG, || task(&api, "st")["pid"]
        .as_u64()
        .is_some_and(|p| p != st)));
    assert_eq!(task(&api, "st")["port"].as_u64(), port);
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

/// The events of `GET /events` (name, id, data) read for `for_ms`, sent with `last_id`.
fn sse(api: &str, last_id: Option<&str>, for_ms: u64) -> Vec<(String, String, String)> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(api).unwrap();
    let mut req = format!("GET /events HTTP/1.1\r\nHost: {api}\r\nAccept: text/event-stream\r\n");
    if let Some(id) = last_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut r = BufReader::new(s);
    let (mut out, mut name, mut id, mut data) =
        (Vec::new(), String::new(), String::new(), String::new());
    let end = Instant::now() + Duration::from_millis(for_ms);
    let mut line = String::new();
    while Instant::now() < end {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => continue,
        }
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = l.strip_prefix("data:") {
            data = v.trim().to_string();
        } else if l.is_empty() && !name.is_empty() {
            out.push((
                std::mem::take(&mut name),
                std::mem::take(&mut id),
                std::mem::take(&mut data),
            ));
        }
    }
    out
}

#[test]
fn events_carry_ids_and_a_reconnect_gets_what_it_missed_or_a_resync() {
    let mut sup = Sup::new();
    sup.start(&list(&[sleeper("a").to_string()]), &[]);
    let api = sup.api();
    running_pid(&api, "a");
    // Two restarts happen while no client listens.
    let seen = sse(&api, None, 300);
    assert!(
        seen.is_empty(),
        "no backlog without Last-Event-ID: {seen:?}"
    );
    let before: Vec<(String, String, String)> = {
        let api2 = api.clone();
        let t = std::thread::spawn(move || sse(&api2, None, 1500));
        std::thread::sleep(Duration::from_millis(300));
        call(&api, "POST", "/tasks/a/restart", None);
        t.join().unwrap()
    };
    let last = before.last().expect("an event while listening");
    assert_eq!(last.0, "task");
    assert!(!last.1.is_empty(), "every event has an id");
    let data: Value = serde_json::from_str(&last.2).unwrap();
    assert_eq!(data["id"], last.1.as_str(), "the JSON carries the id too");
    assert_eq!(data["uid"], task(&api, "a")["uid"], "and the task's uid");
    call(&api, "POST", "/tasks/a/restart", None);
    assert!(wait_for(LONG, || task(&api, "a")["restarts"].as_u64()
        == Some(2)
        && task(&api, "a")["state"] == "running"));
    // Reconnecting with the last id seen: the missed events come first, none twice.
    let missed = sse(&api, Some(&last.1), 500);
    assert!(
        missed
            .iter()
            .any(|e| e.2.contains("\"type\":\"restarted\"")),
        "{missed:?}"
    );
    assert!(missed.iter().all(|e| e.1 != last.1));
    // An id of another run (or too old) gets a resync marker.
    let other = sse(&api, Some("0.1"), 500);
    assert_eq!(
        other.first().map(|e| e.0.as_str()),
        Some("resync"),
        "{other:?}"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}
