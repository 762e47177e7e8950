//! The dashboard (`GET /`) in headless Chromium against a real supervisor: it lists the tasks
//! with their states and port links, and its restart button restarts the task. The screenshot
//! goes to `target/dashboard.png` for a person to look at.
//!
//! These tests need Chromium (Debian package `chromium`, installed by `.ci/run`): without it
//! they fail, saying so.
use crate::common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use testkit::browser::{Browser, Page};
use testkit::{free_port_range, http_get, pid_alive, wait_for, wait_for_value};

fn launch() -> Browser {
    Browser::launch().unwrap_or_else(|e| panic!("the dashboard tests need headless Chromium: {e}"))
}

/// `target/` (the test binary is `target/<profile>/deps/<name>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn task_json(api: &str, name: &str, auth: &[(&str, &str)]) -> Value {
    let r = http_get(api, &format!("/tasks/{name}"), auth).unwrap();
    assert_eq!(r.status, 200, "GET /tasks/{name}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// A CSS selector for an element inside task `name`'s row.
fn in_row(name: &str, sel: &str) -> String {
    format!("tr[data-task=\"{name}\"] {sel}")
}

/// Waits until the page shows task `name` running with a pid, and returns that pid.
fn shown_running_pid(page: &Page, name: &str) -> i64 {
    let state = json!(in_row(name, ".state")).to_string();
    let pid = json!(in_row(name, ".pid")).to_string();
    let v = page
        .wait_for(
            &format!(
                "(() => {{ const s = document.querySelector({state}), p = document.querySelector({pid}); \
                 return s && p && s.textContent === 'running' && p.textContent !== '' \
                 && Number(p.textContent); }})()"
            ),
            LONG,
        )
        .unwrap_or_else(|e| panic!("the page shows {name} running with a pid: {e}"));
    v.as_i64().unwrap()
}

/// Clicks `name`'s restart button and waits until the page (and the API) show a new pid.
fn restart_from_page(page: &Page, api: &str, name: &str, auth: &[(&str, &str)]) -> i64 {
    let old = shown_running_pid(page, name);
    assert_eq!(task_json(api, name, auth)["pid"], old, "page and API agree");
    page.click(&in_row(name, "button.restart")).unwrap();
    let pid = json!(in_row(name, ".pid")).to_string();
    let state = json!(in_row(name, ".state")).to_string();
    let new = page
        .wait_for(
            &format!(
                "(() => {{ const p = document.querySelector({pid})?.textContent; \
                 return document.querySelector({state})?.textContent === 'running' \
                 && p && p !== '{old}' && Number(p); }})()"
            ),
            LONG,
        )
        .unwrap_or_else(|e| panic!("after the restart click the page shows a new pid: {e}"))
        .as_i64()
        .unwrap();
    assert_ne!(new, old);
    let api_pid = task_json(api, name, auth)["pid"].as_i64();
    assert_eq!(api_pid, Some(new), "the API reports the pid the page shows");
    assert!(!pid_alive(old as i32), "the old process {old} is gone");
    assert!(pid_alive(new as i32), "the new process {new} runs");
    new
}

#[test]
fn dashboard_shows_tasks_and_ports_and_restarts_a_task() {
    let (first, last) = free_port_range(8);
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            json!({"name": "web", "command": ["sh", "-c", "exec sleep 1000", "web", "--port={{port}}"]})
                .to_string(),
            sh_task("worker", "exec sleep 1000"),
        ]),
        &[&format!("--port-range={first}-{last}")],
    );
    let api = sup.api();
    let browser = launch();
    let page = browser.new_page().unwrap();
    page.navigate(&format!("http://{api}/")).unwrap();
    assert!(
        page.text("#events .none")
            .unwrap()
            .is_some_and(|t| t.starts_with("No events yet")),
        "the events box says it is empty"
    );

    // Both tasks, running, in the order of the task list.
    page.wait_for(
        "document.querySelectorAll('tr[data-task]').length === 2 && \
         [...document.querySelectorAll('tr[data-task] .state')].every(s => s.textContent === 'running')",
        LONG,
    )
    .unwrap();
    let names = page
        .eval("[...document.querySelectorAll('tr[data-task] .name')].map(e => e.textContent)")
        .unwrap();
    assert_eq!(names, json!(["web", "worker"]));

    // The port link of the task with a port; none for the other.
    let port = task_json(&api, "web", &[])["port"].as_u64().unwrap();
    assert!((first as u64..=last as u64).contains(&port), "{port}");
    let link_js = format!(
        "document.querySelector({})?.href",
        json!(in_row("web", "a.port"))
    );
    assert_eq!(
        page.eval(&link_js).unwrap(),
        json!(format!("http://127.0.0.1:{port}/"))
    );
    assert_eq!(
        page.text(&in_row("web", "a.port")).unwrap().as_deref(),
        Some(port.to_string().as_str())
    );
    assert_eq!(page.text(&in_row("worker", "a.port")).unwrap(), None);
    assert_eq!(
        page.text(&in_row("web", ".argv")).unwrap().as_deref(),
        Some(format!("sh -c 'exec sleep 1000' web --port={port}").as_str())
    );

    // Restart from the page: a new pid, and (round robin) a new port, shown live.
    restart_from_page(&page, &api, "web", &[]);
    page.wait_for(
        "!document.querySelector('#events .none') && document.getElementById('events').textContent.includes('web')",
        LONG,
    )
    .unwrap();
    let new_port = task_json(&api, "web", &[])["port"].as_u64().unwrap();
    page.wait_for(
        &format!("({link_js}) === 'http://127.0.0.1:{new_port}/'"),
        LONG,
    )
    .unwrap();
    page.wait_for(
        &format!(
            "document.querySelector({})?.textContent === '1'",
            json!(in_row("web", ".restarts"))
        ),
        LONG,
    )
    .unwrap();
    page.wait_for(
        "document.getElementById('conn').textContent === 'live'",
        LONG,
    )
    .unwrap();
    page.wait_for(
        "document.getElementById('health').textContent === 'ok'",
        LONG,
    )
    .unwrap();
    // The other task was left alone; stop it from the page (its button becomes "start").
    assert_eq!(task_json(&api, "worker", &[])["restarts"], 0);
    let worker_pid = shown_running_pid(&page, "worker");
    page.click(&in_row("worker", "button.stop")).unwrap();
    page.wait_for(
        &format!(
            "document.querySelector({})?.textContent === 'stopped' && \
             document.querySelector({})?.textContent === '' && !!document.querySelector({})",
            json!(in_row("worker", ".state")),
            json!(in_row("worker", ".pid")),
            json!(in_row("worker", "button.start")),
        ),
        LONG,
    )
    .unwrap();
    assert_eq!(task_json(&api, "worker", &[])["state"], "stopped");
    assert!(!pid_alive(worker_pid as i32));
    assert_eq!(
        page.js_errors(),
        Vec::<String>::new(),
        "no errors in the page"
    );

    let shot = target_dir().join("dashboard.png");
    page.screenshot(&shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is a PNG",
        shot.display()
    );
    eprintln!("dashboard screenshot: {}", shot.display());

    // Start the stopped task again from the page.
    page.click(&in_row("worker", "button.start")).unwrap();
    let worker_pid = shown_running_pid(&page, "worker");
    assert_eq!(task_json(&api, "worker", &[])["pid"], worker_pid);
    assert_eq!(
        page.js_errors(),
        Vec::<String>::new(),
        "no errors in the page"
    );

    // Chromium and its helpers die with the Browser.
    let chromium = browser.pids();
    assert!(
        chromium.len() > 1,
        "the browser and its helper processes are found: {chromium:?}"
    );
    drop(page);
    drop(browser);
    assert!(
        wait_for(LONG, || chromium.iter().all(|p| !pid_alive(*p))),
        "{chromium:?}"
    );
}

#[test]
fn dashboard_with_a_token_sends_it_on_every_call() {
    let token = "dash-token-42";
    let mut sup = Sup::new();
    std::fs::write(sup.path("token"), format!("{token}\n")).unwrap();
    sup.start(
        &list(&[sh_task("solo", "exec sleep 1000")]),
        &["--api-token-file=token"],
    );
    let api = sup.api();
    let auth = format!("Bearer {token}");
    let auth = [("Authorization", auth.as_str())];
    let browser = launch();

    // Without the token even the page itself is refused.
    let refused = browser.new_page().unwrap();
    refused.navigate(&format!("http://{api}/")).unwrap();
    let body = refused.eval("document.body.innerText").unwrap();
    assert!(
        body.as_str()
            .unwrap()
            .contains("missing or wrong API token"),
        "{body}"
    );

    // With `?token=`, the fetches, the event stream and the buttons all carry it.
    let page = browser.new_page().unwrap();
    page.navigate(&format!("http://{api}/?token={token}"))
        .unwrap();
    shown_running_pid(&page, "solo");
    page.wait_for(
        "document.getElementById('conn').textContent === 'live'",
        LONG,
    )
    .unwrap();
    restart_from_page(&page, &api, "solo", &auth);
    assert_eq!(page.text("#error").unwrap().as_deref(), Some(""));
    assert_eq!(
        page.js_errors(),
        Vec::<String>::new(),
        "no errors in the page"
    );
    // The live update came over the event stream, which needs the token too.
    let ev = wait_for_value(LONG, || {
        let v = page
            .eval("document.getElementById('events').textContent")
            .unwrap();
        v.as_str()
            .filter(|t| t.contains("solo"))
            .map(str::to_string)
    });
    assert!(ev.is_some(), "the event log shows solo's restart");
}

#[test]
fn the_first_paint_holds_the_rows_and_argv_is_shell_quoted_and_never_broken_inside_an_argument() {
    let mut wide: Vec<String> = ["sh", "-c", "exec sleep 1000", "wide"]
        .map(String::from)
        .to_vec();
    wide.extend((0..40).map(|i| format!("--option-number-{i}=value-{i}")));
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            json!({"name": "quoted", "command": ["sh", "-c", "exec sleep 1000", "", "two words", "it's", "--port=1"]})
                .to_string(),
            json!({"name": "wide", "command": wide}).to_string(),
        ]),
        &[],
    );
    let api = sup.api();
    let pids: Vec<i64> = ["quoted", "wide"]
        .iter()
        .map(|n| {
            wait_for_value(LONG, || task_json(&api, n, &[])["pid"].as_i64()).expect("the task runs")
        })
        .collect();
    let browser = launch();
    let page = browser.new_page().unwrap();
    // Nothing the page fetches can arrive: what it shows was served with it.
    page.block_urls(&["*/tasks*", "*/health*", "*/events*"])
        .unwrap();
    page.navigate(&format!("http://{api}/")).unwrap();
    let shown = page
        .eval(
            "[...document.querySelectorAll('tr[data-task]')].map(r => [r.querySelector('.name').textContent, \
             r.querySelector('.state').textContent, Number(r.querySelector('.pid').textContent)])",
        )
        .unwrap();
    assert_eq!(
        shown,
        json!([["quoted", "running", pids[0]], ["wide", "running", pids[1]]])
    );
    assert_eq!(page.text("#health").unwrap().as_deref(), Some("ok"));
    // Quoted as a shell needs it; the empty argument stays visible.
    assert_eq!(
        page.text(&in_row("quoted", ".argv")).unwrap().as_deref(),
        Some("sh -c 'exec sleep 1000' '' 'two words' 'it'\\''s' --port=1")
    );
    // A long command line wraps between arguments only.
    let layout = page
        .eval(&format!(
            "(() => {{ const d = document.querySelector({}); const spans = [...d.querySelectorAll('.arg')]; \
             const line = spans[0].getBoundingClientRect().height; \
             return {{ lines: Math.round(d.getBoundingClientRect().height / line), args: spans.length, \
             broken: spans.filter(s => s.getClientRects().length !== 1).map(s => s.textContent) }}; }})()",
            json!(in_row("wide", ".argv"))
        ))
        .unwrap();
    assert_eq!(layout["args"], 44, "{layout}");
    assert!(layout["lines"].as_i64().unwrap() >= 2, "it wraps: {layout}");
    assert_eq!(
        layout["broken"],
        json!([]),
        "no argument is broken: {layout}"
    );
}
