//! The default dump file: where it lives, that it is locked, and how to turn it off.
use std::path::Path;

use testkit::{ServerProc, Spawner, assert_exits, free_port, wait_for};

use crate::common::{A, B, SOON, lookup, set};

/// `authserver` started in `dir` (the default dump file is relative to it) with `args`.
fn in_folder(sp: &Spawner, dir: &Path, port: u16, args: &[&str]) -> ServerProc {
    let mut cmd = sp.bin("authserver");
    cmd.current_dir(dir)
        .arg(format!("--authport={port}"))
        .args(args);
    ServerProc::start(cmd, &format!("127.0.0.1:{port}"))
}

#[test]
fn without_flags_sessions_go_to_run_authserver_json() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dump = dir.path().join("run/authserver.json");

    let mut auth = in_folder(&sp, dir.path(), port, &["--checkpoint-interval=100ms"]);
    set(&auth, A, "Ada");
    assert!(
        wait_for(SOON, || std::fs::read_to_string(&dump)
            .is_ok_and(|t| t.contains(A))),
        "checkpointed to {}",
        dump.display()
    );
    assert!(dir.path().join("run/authserver.json.lock").exists());
    auth.kill9();

    let mut auth = in_folder(&sp, dir.path(), port, &[]);
    assert_eq!(
        lookup(&auth, A).as_deref(),
        Some("Ada"),
        "back after kill -9"
    );
    set(&auth, B, "Bob");
    auth.signal(libc::SIGTERM);
    assert_eq!(auth.wait_exit(SOON).expect("stops").code(), Some(0));

    let auth = in_folder(&sp, dir.path(), port, &[]);
    assert_eq!(lookup(&auth, B).as_deref(), Some("Bob"), "the final dump");
    assert_eq!(lookup(&auth, A).as_deref(), Some("Ada"));
}

#[test]
fn a_second_server_on_the_same_dump_file_is_refused_naming_the_first() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let first = in_folder(&sp, dir.path(), free_port(), &[]);
    set(&first, A, "Ada");

    let mut cmd = sp.bin("authserver");
    cmd.current_dir(dir.path())
        .arg(format!("--authport={}", free_port()));
    let (status, stderr) = testkit::run_to_exit(cmd, SOON);
    assert_eq!(status.code(), Some(1), "{stderr}");
    for needle in [
        "run/authserver.json is in use by another auth server",
        &format!("(pid {})", first.pid()),
        "--dumpfile=none",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
    assert_eq!(
        lookup(&first, A).as_deref(),
        Some("Ada"),
        "the first one is untouched"
    );
}

#[test]
fn dumpfile_none_keeps_sessions_in_memory_only() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut auth = in_folder(&sp, dir.path(), port, &["--dumpfile=none"]);
    set(&auth, A, "Ada");
    auth.signal(libc::SIGTERM);
    assert_eq!(auth.wait_exit(SOON).expect("stops").code(), Some(0));
    assert!(!dir.path().join("run").exists(), "nothing written");

    let auth = in_folder(&sp, dir.path(), port, &["--dumpfile=none"]);
    assert_eq!(lookup(&auth, A), None, "a restart forgets");
}

#[test]
fn a_dump_folder_that_cannot_be_made_is_a_clear_error() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "a file, not a folder").unwrap();
    let dump = plain.join("auth.json").display().to_string();
    let args = [
        format!("--dumpfile={dump}"),
        format!("--authport={}", free_port()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_exits(
        &sp,
        "authserver",
        &args,
        1,
        &[&dump, "cannot create the folder", "--dumpfile=none"],
    );
    assert_exits(&sp, "authserver", &["--dumpfile="], 2, &["--dumpfile"]);
}
