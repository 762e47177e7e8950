//! Start-up failures, logging, and stopping.
use std::time::{Duration, Instant};

use testkit::{ServerProc, Spawner, free_port, http_get, run_to_exit, wait_for};

use crate::common::{SOON, dead_port, get, monitor, timeserver};

#[test]
fn port_taken_exits_at_once_naming_the_address() {
    let sp = Spawner::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let mut cmd = sp.bin("timeserver");
    cmd.arg(format!("--port={port}"));
    let started = Instant::now();
    let (status, stderr) = run_to_exit(cmd, SOON);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.to_lowercase().contains("in use"), "{stderr}");
    drop(held);
}

#[test]
fn bad_flags_are_usage_errors() {
    let sp = Spawner::new();
    let cases: [(&[&str], &str); 5] = [
        (&["--port=http"], "--port"),
        (&["--frobnicate"], "--frobnicate"),
        (&["--max-inflight=-1"], "--max-inflight"),
        (&["--avg-response-ms", "fast"], "--avg-response-ms"),
        (&["--drain-timeout=soon"], "\"soon\""),
    ];
    for (args, named) in cases {
        let mut cmd = sp.bin("timeserver");
        cmd.args(args);
        let (status, stderr) = run_to_exit(cmd, SOON);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{args:?} should name {named}: {stderr}"
        );
    }
}

#[test]
fn bad_log_configs_are_clear_errors() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases = [
        (
            dir.path().join("missing.xml").display().to_string(),
            "cannot read log config",
        ),
        (
            write(
                "broken.xml",
                "<seelog>\n<outputs>\n<file path=\"x\">\n</outputs>",
            ),
            "line 4",
        ),
        (
            write(
                "level.xml",
                r#"<seelog minlevel="chatty"><outputs><console/></outputs></seelog>"#,
            ),
            "\"chatty\"",
        ),
        (
            write(
                "empty.xml",
                r#"<seelog minlevel="info"><outputs/></seelog>"#,
            ),
            "no outputs",
        ),
        (write("root.xml", "<log/>"), "expected <seelog>"),
    ];
    for (path, why) in cases {
        let mut cmd = sp.bin("timeserver");
        cmd.arg(format!("--log={path}"))
            .arg(format!("--port={}", free_port()));
        let (status, stderr) = run_to_exit(cmd, SOON);
        assert_eq!(status.code(), Some(2), "{path}: {stderr}");
        assert!(stderr.contains(&path), "names the file: {stderr}");
        assert!(stderr.contains(why), "says why ({why}): {stderr}");
    }
}

#[test]
fn bad_templates_folder_is_a_usage_error() {
    let sp = Spawner::new();
    let mut cmd = sp.bin("timeserver");
    cmd.args([
        "--templates=/nonexistent/templates",
        &format!("--port={}", free_port()),
    ]);
    let (status, stderr) = run_to_exit(cmd, SOON);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/templates"), "{stderr}");
}

#[test]
fn log_config_sends_one_line_per_request_to_its_file() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/sub/timeserver.log"); // folders created on demand
    let cfg = dir.path().join("log.xml");
    let xml = format!(
        r#"<seelog minlevel="info"><outputs><file path="{}"/></outputs></seelog>"#,
        log.display()
    );
    std::fs::write(&cfg, xml).unwrap();
    let ts = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            &format!("--log={}", cfg.display()),
        ],
    );
    assert_eq!(get(&ts, "/time").status, 200);
    assert_eq!(get(&ts, "/nope").status, 404);

    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for(SOON, || read().contains("path=/nope")),
        "log: {}",
        read()
    );
    let text = read();
    let time_lines: Vec<&str> = text.lines().filter(|l| l.contains("path=/time")).collect();
    assert_eq!(time_lines.len(), 1, "{text}");
    for field in [
        "method=GET",
        "status=200",
        "duration_ms=",
        "peer=127.0.0.1:",
    ] {
        assert!(
            time_lines[0].contains(field),
            "{field} in {}",
            time_lines[0]
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains("path=/nope") && l.contains("status=404")),
        "{text}"
    );
    assert!(text.contains("timeserver listening"), "{text}");
    assert!(
        ts.stderr().is_empty(),
        "nothing on stderr when logging to a file: {}",
        ts.stderr()
    );
}

#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let sp = Spawner::new();
    let mut ts = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            "--avg-response-ms=1000",
            "--response-deviation-ms=0",
        ],
    );
    std::thread::scope(|s| {
        let pending = s.spawn(|| http_get(ts.addr(), "/time", &[]));
        assert!(wait_for(SOON, || monitor(&ts)["in_flight"] == 1));
        ts.signal(libc::SIGTERM);
        let r = pending.join().unwrap().unwrap();
        assert_eq!(r.status, 200, "the request in flight was answered");
    });
    let status = ts.wait_exit(SOON).expect("exited after the drain");
    assert_eq!(status.code(), Some(0), "{}", ts.stderr());
    assert!(ts.stderr().contains("stopped cleanly"), "{}", ts.stderr());
}

#[test]
fn drain_is_bounded() {
    let sp = Spawner::new();
    let mut ts: ServerProc = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            "--avg-response-ms=60000",
            "--drain-timeout=300ms",
        ],
    );
    let addr = ts.addr().to_string();
    std::thread::scope(|s| {
        let pending = s.spawn(|| http_get(&addr, "/time", &[]));
        assert!(wait_for(SOON, || monitor(&ts)["in_flight"] == 1));
        let t = Instant::now();
        ts.signal(libc::SIGINT);
        let status = ts
            .wait_exit(SOON)
            .expect("exited despite the request in flight");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(status.code(), Some(0), "{}", ts.stderr());
        assert!(
            pending.join().unwrap().is_err(),
            "the 60 s request was cut off"
        );
    });
    assert!(ts.stderr().contains("SIGINT"), "{}", ts.stderr());
}
