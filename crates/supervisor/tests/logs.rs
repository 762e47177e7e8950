//! `GET /tasks/{name}/logs` and `supervisor ctl logs`: real tasks writing real files, a real
//! `ctl logs -f` following them (killed by pid), a copytruncate while it follows, and the
//! dashboard's log panel in headless Chromium.
use crate::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use testkit::browser::Browser;
use testkit::{http_get, wait_for};

/// A task printing `tick N` to its output and `err N` to its error file every 100 ms.
fn ticker() -> String {
    json!({
        "name": "ticker",
        "command": ["sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; echo err $i >&2; sleep 0.1; done"],
        "output": "out/ticker.log",
        "error": "out/ticker.err",
    })
    .to_string()
}

fn number(line: &str, prefix: &str) -> u64 {
    line.strip_prefix(prefix)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line:?} is not \"{prefix}N\""))
}

#[test]
fn tail_returns_exactly_the_last_lines_and_errors_name_what_is_wrong() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            json!({"name": "counted", "command": ["sh", "-c", "for i in $(seq 1 50); do echo line $i; done; echo oops >&2; exec sleep 1000"], "output": "out/counted.log", "error": "out/counted.err"}).to_string(),
            sh_task("silent", "exec sleep 1000"),
        ]),
        &[],
    );
    let api = sup.api();
    assert!(wait_for(LONG, || std::fs::read_to_string(
        sup.path("out/counted.log")
    )
    .is_ok_and(|t| t.ends_with("line 50\n"))));
    let get = |q: &str| http_get(&api, q, &[]).unwrap();

    let r = get("/tasks/counted/logs?tail=7");
    assert_eq!(r.status, 200, "{}", r.body);
    let want: String = (44..=50).map(|i| format!("line {i}\n")).collect();
    assert_eq!(r.body, want);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(get("/tasks/counted/logs?tail=0").body, "");
    assert_eq!(
        get("/tasks/counted/logs?tail=1000").body.lines().count(),
        50
    );
    assert_eq!(
        get("/tasks/counted/logs?stream=stderr&tail=5").body,
        "oops\n"
    );

    // ctl prints the same lines.
    let (code, out, err) = crate::api::ctl(
        &[
            "--api",
            &format!("http://{api}"),
            "logs",
            "counted",
            "-n",
            "3",
        ],
        None,
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "line 48\nline 49\nline 50\n");

    let r = get("/tasks/nope/logs");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no task named \\\"nope\\\""), "{}", r.body);
    let r = get("/tasks/silent/logs");
    assert_eq!(r.status, 409);
    assert!(
        r.body.contains("task \\\"silent\\\" has no output file") && r.body.contains("/dev/null"),
        "{}",
        r.body
    );
    for (q, field) in [
        ("stream=stdin", "stream="),
        ("tail=10001", "tail="),
        ("tail=-1", "tail="),
        ("follow=yes", "follow="),
    ] {
        let r = get(&format!("/tasks/counted/logs?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.body.contains(field), "{q}: {}", r.body);
    }
    let (code, _, err) =
        crate::api::ctl(&["--api", &format!("http://{api}"), "logs", "silent"], None);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("has no output file") && err.contains("409"),
        "{err}"
    );
}

#[test]
fn ctl_logs_follow_prints_appended_lines_and_survives_copytruncate() {
    let mut sup = Sup::new();
    sup.start(&list(&[ticker()]), &[]);
    let api = sup.api();
    let log = sup.path("out/ticker.log");
    assert!(wait_for(LONG, || std::fs::read_to_string(&log)
        .is_ok_and(|t| t.lines().count() >= 2)));

    let mut ctl = sup
        .spawner
        .bin("supervisor")
        .args([
            "ctl",
            "--api",
            &format!("http://{api}"),
            "logs",
            "ticker",
            "-f",
            "-n",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(sup.path("ctl.stderr")).unwrap())
        .spawn()
        .unwrap();
    let ctl_err = sup.path("ctl.stderr");
    let (tx, rx) = mpsc::channel();
    let stdout = ctl.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| {
                panic!(
                    "ctl logs -f prints a line within 10 s ({e}); its stderr: {}",
                    std::fs::read_to_string(&ctl_err).unwrap_or_default()
                )
            })
    };
    // The last line first, then three lines the task wrote afterwards, in order.
    let first = number(&next(), "tick ");
    let mut last = first;
    for _ in 0..3 {
        let n = number(&next(), "tick ");
        assert_eq!(n, last + 1, "lines follow one another");
        last = n;
    }

    // logrotate's copytruncate: copy, then truncate in place. The task goes on appending (its
    // file is O_APPEND) and the follower starts again from the file's start.
    let before = std::fs::read_to_string(&log).unwrap();
    std::fs::write(sup.path("out/ticker.log.1"), &before).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let size_after = || std::fs::metadata(&log).unwrap().len();
    assert!(
        wait_for(LONG, || size_after() > 0
            && size_after() < before.len() as u64),
        "the task writes to the start of the truncated file"
    );
    // Everything up to the truncation arrives; then the lines written after it.
    let mut seen_after = Vec::new();
    while seen_after.len() < 3 {
        let n = number(&next(), "tick ");
        assert!(
            n > last,
            "{n} after {last}: no line twice, none from before"
        );
        last = n;
        let line = format!("tick {n}\n");
        if std::fs::read_to_string(&log).unwrap().contains(&line) {
            seen_after.push(n);
        }
    }
    assert!(!before.contains(&format!("tick {}\n", seen_after[2])));

    assert!(ctl.try_wait().unwrap().is_none(), "ctl is still following");
    ctl.kill().unwrap();
    ctl.wait().unwrap();
}

#[test]
fn http_follow_streams_stderr_chunked() {
    let mut sup = Sup::new();
    sup.start(&list(&[ticker()]), &[]);
    let api = sup.api();
    assert!(wait_for(LONG, || sup.path("out/ticker.err").exists()));
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /tasks/ticker/logs?stream=stderr&tail=0&follow=1 HTTP/1.1\r\nHost: {api}\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream stays open");
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).matches("err ").count() >= 3 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(!text.contains("tick"), "stderr only: {text}");
}

#[test]
fn dashboard_shows_a_tasks_last_lines() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[ticker(), sh_task("silent", "exec sleep 1000")]),
        &[],
    );
    let api = sup.api();
    let browser =
        Browser::launch().unwrap_or_else(|e| panic!("this test needs headless Chromium: {e}"));
    let page = browser.new_page().unwrap();
    page.navigate(&format!("http://{api}/")).unwrap();
    page.wait_for(
        "document.querySelectorAll('tr[data-task]').length === 2",
        LONG,
    )
    .unwrap();
    // Only a task with a file has a logs button.
    assert_eq!(
        page.eval("!!document.querySelector('tr[data-task=\"silent\"] button.logs')")
            .unwrap(),
        Value::Bool(false)
    );
    page.click("tr[data-task=\"ticker\"] button.logs").unwrap();
    let lines = page
        .wait_for(
            "(() => { const t = document.getElementById('log-text').textContent; \
             return /tick \\d+\\n$/.test(t) && t.split('\\n').length - 1; })()",
            LONG,
        )
        .unwrap();
    assert!(lines.as_u64().unwrap() <= 50, "at most 50 lines: {lines}");
    // It refreshes: a later line shows up.
    let last_of = "(() => { const m = document.getElementById('log-text').textContent.match(/tick (\\d+)\\n$/); return m && Number(m[1]); })()";
    let first = page.eval(last_of).unwrap().as_u64().unwrap();
    page.wait_for(&format!("{last_of} > {first}"), LONG)
        .unwrap();
    // The error stream.
    page.click("#log-switch").unwrap();
    page.wait_for(
        "document.getElementById('log-stream').textContent === '(stderr)' && \
         /^err \\d+\\n/.test(document.getElementById('log-text').textContent)",
        LONG,
    )
    .unwrap();
    assert_eq!(page.text("#log-task").unwrap().as_deref(), Some("ticker"));
    assert_eq!(page.js_errors(), Vec::<String>::new());
}
