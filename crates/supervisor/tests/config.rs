//! Bad task lists and flags: exit status 2, a message naming task and field, nothing started.
use crate::common::run_to_exit;

fn assert_rejected(tasks: &str, args: &[&str], wants: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_to_exit(dir.path(), tasks, args);
    assert_eq!(
        code,
        Some(2),
        "exit status for {tasks:?} {args:?}; stderr: {err}"
    );
    for w in wants {
        assert!(
            err.contains(w),
            "stderr for {tasks:?} should contain {w:?}, got:\n{err}"
        );
    }
    let created: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        created.is_empty(),
        "nothing may be created for a rejected list, found {created:?}"
    );
}

#[test]
fn bad_task_lists_are_rejected_with_task_and_field() {
    let ok = r#"[{"command": ["sleep", "1000"], "output": "out/x.out"}]"#;
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "[{\"command\": [\"sleep\"]",
            &[],
            &["not valid JSON", "line 1", "column"],
        ),
        (
            "{\"command\": [\"sleep\"]}",
            &[],
            &["must be a JSON array", "object"],
        ),
        ("[42]", &[], &["task 1", "expected an object"]),
        (
            "[{\"output\": \"x\"}]",
            &[],
            &["task 1", "\"command\"", "missing"],
        ),
        (
            "[{\"command\": []}]",
            &[],
            &["task 1", "\"command\"", "empty"],
        ),
        (
            "[{\"command\": \"sleep 5\"}]",
            &[],
            &["task 1", "\"command\"", "not run by a shell"],
        ),
        (
            "[{\"command\": [\"sleep\", 5]}]",
            &[],
            &["task 1", "command[1]", "expected a string"],
        ),
        (
            "[{\"name\": \"a\", \"command\": [\"sleep\"]}, {\"name\": \"a\", \"command\": [\"sleep\"]}]",
            &[],
            &["task 2 (a)", "\"name\"", "duplicate name \"a\"", "task 1"],
        ),
        (
            "[{\"command\": [\"srv\", \"--port={{port}}\"]}]",
            &[],
            &["task 1", "{{port}}", "no --port-range"],
        ),
        (
            "[{\"command\": [\"a\", \"{{port}}\"]}, {\"command\": [\"b\", \"{{port}}\"]}]",
            &["--port-range=9000-9000"],
            &["--port-range", "1 port", "2 tasks"],
        ),
        (
            "[{\"command\": [\"sleep\"], \"ouptut\": \"x\"}]",
            &[],
            &["task 1 (", "\"ouptut\"", "did you mean \"output\""],
        ),
        (
            "[{\"command\": [\"sleep\"], \"input\": \"no/such/file\"}]",
            &[],
            &["task 1 (sleep)", "\"input\"", "no/such/file"],
        ),
        ("   \n", &[], &["standard input is empty"]),
        (ok, &["--port-range=9000-8000"], &["reversed"]),
        (ok, &["--port-range=8000"], &["malformed"]),
        (ok, &["--port-range=0-10"], &["out of range"]),
        (ok, &["--min-uptime=soon"], &["invalid duration", "soon"]),
        (ok, &["--no-such-flag"], &["--no-such-flag"]),
    ];
    for (tasks, args, wants) in cases {
        assert_rejected(tasks, args, wants);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let tasks = r#"[{"command": []}, {"command": ["x"], "env": {"A": 1}}, {"name": "b/c", "command": ["y"]}]"#;
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_to_exit(dir.path(), tasks, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("3 problems"), "{err}");
    for w in ["task 1", "task 2 (x)", "env.A", "task 3 (b/c)", "\"name\""] {
        assert!(err.contains(w), "missing {w:?} in {err}");
    }
}

#[test]
fn accepts_both_flag_forms() {
    // `--flag value` and `--flag=value`: a reversed range is refused either way, so the flag
    // was read in both forms.
    let ok = r#"[{"command": ["sleep", "1000"]}]"#;
    assert_rejected(ok, &["--port-range", "9-8"], &["reversed"]);
    assert_rejected(ok, &["--port-range=9-8"], &["reversed"]);
}
