//! Start-up failures and logging.
use std::time::{Duration, Instant};

use testkit::{Spawner, free_port, run_to_exit, wait_for};

use crate::common::{A, SOON, lookup};

#[test]
fn port_taken_exits_at_once_naming_the_address() {
    let sp = Spawner::new();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let mut cmd = sp.bin("authserver");
    cmd.arg(format!("--authport={port}"));
    let started = Instant::now();
    let (status, stderr) = run_to_exit(cmd, SOON);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    drop(held);
}

#[test]
fn bad_flags_are_usage_errors() {
    let sp = Spawner::new();
    let cases: [(&[&str], &str); 5] = [
        (&["--checkpoint-interval=soon"], "\"soon\""),
        (&["--checkpoint-interval=0"], "positive"),
        (&["--authport=seventy"], "--authport"),
        (&["--port=7070"], "--port"),
        (&["--dumpfile"], "--dumpfile"),
    ];
    for (args, named) in cases {
        let mut cmd = sp.bin("authserver");
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
    let missing = dir.path().join("missing.xml");
    let broken = dir.path().join("broken.xml");
    std::fs::write(
        &broken,
        "<seelog minlevel=\"info\"><outputs><console/></outputs>",
    )
    .unwrap();
    for (path, why) in [
        (&missing, "cannot read log config"),
        (&broken, "not closed"),
    ] {
        let mut cmd = sp.bin("authserver");
        cmd.arg(format!("--log={}", path.display()))
            .arg(format!("--authport={}", free_port()));
        let (status, stderr) = run_to_exit(cmd, SOON);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(why),
            "{stderr}"
        );
    }
}

#[test]
fn the_shipped_config_logs_one_line_per_request_without_secrets() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    // etc/auth.xml writes to log/auth.log relative to the working folder, as in the brief.
    let etc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/auth.xml");
    let port = free_port();
    let mut cmd = sp.bin("authserver");
    cmd.current_dir(dir.path())
        .arg(format!("--log={}", etc.display()))
        .arg(format!("--authport={port}"));
    let auth = testkit::ServerProc::start(cmd, &format!("127.0.0.1:{port}"));
    assert_eq!(lookup(&auth, A), None);

    let log = dir.path().join("log/auth.log");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for(SOON, || read().contains("path=/get")),
        "log: {}",
        read()
    );
    let text = read();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("path=/get")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    for field in [
        "method=GET",
        "status=404",
        "duration_ms=",
        "peer=127.0.0.1:",
    ] {
        assert!(lines[0].contains(field), "{field} in {}", lines[0]);
    }
    assert!(!text.contains(A), "cookies stay out of the log: {text}");
}
