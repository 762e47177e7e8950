//! Start-up failures and logging.
use testkit::{
    Spawner, assert_exits, assert_port_taken_fails_fast, free_port, one_access_line,
    wait_for_file_containing,
};

use crate::common::{A, lookup};

#[test]
fn port_taken_exits_at_once_naming_the_address() {
    assert_port_taken_fails_fast(&Spawner::new(), "authserver", "--authport");
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
        assert_exits(&sp, "authserver", args, 2, &[named]);
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
        let path = path.display().to_string();
        let args = [
            &format!("--log={path}"),
            &format!("--authport={}", free_port()),
        ];
        assert_exits(
            &sp,
            "authserver",
            &args.map(String::as_str),
            2,
            &[&path, why],
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

    let text = wait_for_file_containing(&dir.path().join("log/auth.log"), "path=/get");
    one_access_line(&text, "GET", "/get", 404);
    assert!(!text.contains(A), "cookies stay out of the log: {text}");
}
