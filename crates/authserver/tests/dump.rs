//! The dump file: written at checkpoints and at shutdown, read back at start.
use std::os::unix::fs::PermissionsExt;

use testkit::{Spawner, assert_exits, free_port, wait_for};

use crate::common::{A, B, C, SOON, lookup, monitor, read_dump, set, with_dump};

#[test]
fn checkpoint_survives_kill_9_and_later_changes_do_not() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("state/auth.json"); // folder created at start

    let mut first = with_dump(&sp, &dump, "100ms");
    set(&first, A, "Ada");
    assert!(
        wait_for(SOON, || read_dump(&dump)
            .is_some_and(|d| d.get(A).is_some())),
        "checkpoint written"
    );
    let mode = std::fs::metadata(&dump).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "sessions are secrets");
    // The counter moves just after the rename that made the file visible: poll, don't read once.
    assert!(wait_for(SOON, || monitor(&first)["checkpoint"]["written"] == 1));
    first.kill9();

    // A long interval: nothing is dumped before the next kill -9.
    let mut second = with_dump(&sp, &dump, "1h");
    assert_eq!(
        lookup(&second, A).as_deref(),
        Some("Ada"),
        "restored from the checkpoint"
    );
    set(&second, B, "Bob");
    second.kill9();

    let third = with_dump(&sp, &dump, "1h");
    assert_eq!(lookup(&third, A).as_deref(), Some("Ada"));
    assert_eq!(
        lookup(&third, B),
        None,
        "changes after the last checkpoint are lost to kill -9"
    );
    assert_eq!(monitor(&third)["entries"], 1);
}

#[test]
fn sigterm_and_sigint_write_a_final_dump() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("auth.json");
    for (signal, cookie, name) in [(libc::SIGTERM, B, "Bob"), (libc::SIGINT, C, "Cy")] {
        let mut auth = with_dump(&sp, &dump, "1h");
        set(&auth, cookie, name);
        auth.signal(signal);
        let status = auth.wait_exit(SOON).expect("stops");
        assert_eq!(status.code(), Some(0), "{}", auth.stderr());
        let saved = read_dump(&dump).unwrap();
        assert_eq!(
            saved.get(cookie).and_then(|v| v.as_str()),
            Some(name),
            "{saved:?}"
        );
    }
    let saved = read_dump(&dump).unwrap();
    assert_eq!(
        saved.len(),
        2,
        "the second run started from the first one's dump: {saved:?}"
    );
}

#[test]
fn unchanged_state_is_not_rewritten() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("auth.json");
    let mut auth = with_dump(&sp, &dump, "1h");
    auth.signal(libc::SIGTERM);
    assert_eq!(auth.wait_exit(SOON).expect("stops").code(), Some(0));
    assert!(!dump.exists(), "nothing changed, nothing written");

    // A dump that was loaded and not changed is left byte for byte as it was.
    let original = format!("{{\"{A}\":   \"Ada\"}}");
    std::fs::write(&dump, &original).unwrap();
    let mut auth = with_dump(&sp, &dump, "1h");
    assert_eq!(lookup(&auth, A).as_deref(), Some("Ada"));
    auth.signal(libc::SIGTERM);
    assert_eq!(auth.wait_exit(SOON).expect("stops").code(), Some(0));
    assert_eq!(std::fs::read_to_string(&dump).unwrap(), original);
}

#[test]
fn corrupt_dump_is_a_clear_error_and_left_untouched() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("auth.json");
    let cases: [(&[u8], &str); 3] = [
        (
            b"{\"0f8fad5b-d9cb-469f-a165-70867728950e\": \"Ada\",\n  \"trunc",
            "line 2 column",
        ),
        (
            b"{\"not-a-cookie\": \"Ada\"}",
            "\"not-a-cookie\" is not a UUID",
        ),
        (b"\xff\xfe binary junk", "not a JSON object"),
    ];
    for (bytes, why) in cases {
        std::fs::write(&dump, bytes).unwrap();
        let shown = dump.display().to_string();
        let args = [
            &format!("--dumpfile={shown}"),
            &format!("--authport={}", free_port()),
        ];
        // Names the file and says why.
        let needles = [shown.as_str(), "corrupt", why];
        assert_exits(&sp, "authserver", &args.map(String::as_str), 1, &needles);
        assert_eq!(std::fs::read(&dump).unwrap(), bytes, "file byte-identical");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let mut names: Vec<_> = names.iter().map(|n| n.to_string_lossy()).collect();
        names.sort();
        assert_eq!(
            names,
            ["auth.json", "auth.json.lock"],
            "no temp or replacement files"
        );
    }
}
