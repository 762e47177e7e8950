//! Start-up failures and logging (stopping: `drain.rs`).
use testkit::{
    Spawner, assert_exits, assert_port_taken_fails_fast, free_port, one_access_line,
    wait_for_file_containing,
};

use crate::common::{dead_port, timeserver};

#[test]
fn port_taken_exits_at_once_naming_the_address() {
    assert_port_taken_fails_fast(&Spawner::new(), "timeserver", "--port");
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
        assert_exits(&sp, "timeserver", args, 2, &[named]);
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
        let args = [&format!("--log={path}"), &format!("--port={}", free_port())];
        // Names the file and says why.
        assert_exits(
            &sp,
            "timeserver",
            &args.map(String::as_str),
            2,
            &[&path, why],
        );
    }
}

#[test]
fn bad_templates_folder_is_a_usage_error() {
    let args = [
        "--templates=/nonexistent/templates",
        &format!("--port={}", free_port()),
    ];
    assert_exits(
        &Spawner::new(),
        "timeserver",
        &args,
        2,
        &["/nonexistent/templates"],
    );
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
    assert_eq!(ts.get("/time").status, 200);
    assert_eq!(ts.get("/nope").status, 404);

    let text = wait_for_file_containing(&log, "path=/nope");
    one_access_line(&text, "GET", "/time", 200);
    one_access_line(&text, "GET", "/nope", 404);
    assert!(text.contains("timeserver listening"), "{text}");
    assert!(
        ts.stderr().is_empty(),
        "nothing on stderr when logging to a file: {}",
        ts.stderr()
    );
}
