//! Task-list validation: the brief's sample, every bad case the supervisor issue lists (each with
//! a message naming task, name and field), all problems at once, and property tests.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use serde_json::json;

const SAMPLE: &str = include_str!("../../../etc/tasks.json");

fn range(s: &str) -> Option<PortRange> {
    Some(s.parse().unwrap())
}

fn errors(text: &str, ports: Option<PortRange>) -> Vec<ConfigError> {
    match parse_task_list(text, ports) {
        Ok(specs) => panic!("expected errors for {text:?}, got {specs:?}"),
        Err(ConfigErrors(e)) => {
            assert!(!e.is_empty(), "an Err carries at least one problem");
            e
        }
    }
}

/// What one expected problem must look like: position, name, field and words of the message.
struct Want {
    task: Option<usize>,
    name: Option<&'static str>,
    field: Option<&'static str>,
    says: &'static [&'static str],
}

fn want(
    task: Option<usize>,
    name: Option<&'static str>,
    field: Option<&'static str>,
    says: &'static [&'static str],
) -> Want {
    Want {
        task,
        name,
        field,
        says,
    }
}

fn check(case: &str, text: &str, ports: Option<PortRange>, wants: &[Want]) {
    let got = errors(text, ports);
    assert_eq!(
        got.len(),
        wants.len(),
        "{case}: number of problems in {got:#?}"
    );
    for (g, w) in got.iter().zip(wants) {
        assert_eq!(g.task, w.task, "{case}: task index of {g}");
        assert_eq!(g.name.as_deref(), w.name, "{case}: task name of {g}");
        assert_eq!(g.field.as_deref(), w.field, "{case}: field of {g}");
        for s in w.says {
            assert!(
                g.message.contains(s),
                "{case}: {:?} should contain {s:?}",
                g.message
            );
        }
        // The rendered line repeats the position, so a person can find the task.
        let line = g.to_string();
        if let Some(i) = w.task {
            assert!(line.starts_with(&format!("task {i}")), "{case}: {line}");
        }
        match w.name {
            Some("") => assert!(
                !line.contains("()"),
                "{case}: an empty name is not shown: {line}"
            ),
            Some(n) => assert!(line.contains(&format!("({n})")), "{case}: {line}"),
            None => {}
        }
        if let Some(f) = w.field {
            assert!(line.contains(f), "{case}: {line}");
        }
    }
}

#[test]
fn the_brief_sample_parses_into_three_named_tasks() {
    let specs = parse_task_list(SAMPLE, range("8000-8099")).unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["authserver", "timeserver-1", "timeserver-2"]);
    assert_eq!(specs[0].command, ["./bin/authserver", "--log=etc/auth.xml"]);
    assert_eq!(specs[0].output.as_deref(), Some("out/auth.out"));
    assert_eq!(specs[0].error.as_deref(), Some("out/auth.err"));
    assert_eq!(specs[0].input, None, "input defaults to /dev/null (None)");
    assert!(!specs[0].uses_port());
    assert!(specs[1].uses_port() && specs[2].uses_port());
    assert_eq!(specs[1].argv_for_port(Some(8007))[2], "--port=8007");
    assert_eq!(specs[2].output.as_deref(), Some("out/timeserver-02.out"));
}

#[test]
fn the_brief_sample_without_a_port_range_names_both_port_users() {
    check(
        "sample without --port-range",
        SAMPLE,
        None,
        &[
            want(
                Some(2),
                Some("timeserver"),
                Some("command"),
                &["{{port}}", "--port-range"],
            ),
            want(
                Some(3),
                Some("timeserver"),
                Some("command"),
                &["{{port}}", "--port-range"],
            ),
        ],
    );
}

#[test]
fn whole_list_problems_get_a_specific_message() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("empty input", "", &["empty", "JSON array"]),
        ("blank input", " \n\t ", &["empty"]),
        (
            "not JSON",
            "command: ls",
            &["not valid JSON", "line 1, column 1"],
        ),
        (
            "truncated JSON",
            "[{\"command\": [\"a\"]},\n {\"command\": ",
            &["not valid JSON", "line 2, column 13"],
        ),
        (
            "trailing garbage",
            "[]\n]",
            &["not valid JSON", "line 2, column 1"],
        ),
        (
            "not an array: object",
            r#"{"command": ["a"]}"#,
            &["must be a JSON array", "got an object"],
        ),
        (
            "not an array: string",
            r#""ls""#,
            &["must be a JSON array", "a string (\"ls\")"],
        ),
        (
            "not an array: number",
            "42",
            &["must be a JSON array", "a number (42)"],
        ),
        (
            "not an array: null",
            "null",
            &["must be a JSON array", "null"],
        ),
    ];
    for (case, text, says) in cases {
        let e = errors(text, None);
        assert_eq!(e.len(), 1, "{case}: {e:?}");
        assert_eq!(
            (e[0].task, e[0].field.as_deref()),
            (None, None),
            "{case}: about the whole list"
        );
        for s in *says {
            assert!(
                e[0].message.contains(s),
                "{case}: {:?} should contain {s:?}",
                e[0].message
            );
        }
    }
}

#[test]
fn task_problems_name_task_and_field() {
    let r = range("8000-8099");
    let cases: Vec<(&str, String, Option<PortRange>, Vec<Want>)> = vec![
        ("task not an object", json!([1]).to_string(), None, vec![want(Some(1), None, None, &["expected an object", "a number (1)"])]),
        (
            "task is an array",
            json!([{"command": ["a"]}, ["b"]]).to_string(),
            None,
            vec![want(Some(2), None, None, &["expected an object", "an array of 1 element"])],
        ),
        ("missing command", json!([{"name": "web"}]).to_string(), None, vec![want(Some(1), Some("web"), Some("command"), &["missing", "array of strings"])]),
        ("empty command", json!([{"command": []}]).to_string(), None, vec![want(Some(1), None, Some("command"), &["is empty"])]),
        (
            "command is a string",
            json!([{"name": "w", "command": "ls -l"}]).to_string(),
            None,
            vec![want(Some(1), Some("w"), Some("command"), &["a string (\"ls -l\")", "not run by a shell"])],
        ),
        ("command is null", json!([{"command": null}]).to_string(), None, vec![want(Some(1), None, Some("command"), &["null"])]),
        (
            "non-string element",
            json!([{"name": "web", "command": ["a", "b", 3]}]).to_string(),
            None,
            vec![want(Some(1), Some("web"), Some("command[2]"), &["expected a string", "a number (3)"])],
        ),
        (
            "two non-string elements",
            json!([{"command": [true, "b", {}]}]).to_string(),
            None,
            vec![
                want(Some(1), None, Some("command[0]"), &["a boolean (true)"]),
                want(Some(1), None, Some("command[2]"), &["an object"]),
            ],
        ),
        ("empty program", json!([{"command": [""]}]).to_string(), None, vec![want(Some(1), None, Some("command[0]"), &["program name is empty"])]),
        ("NUL in argv", json!([{"command": ["a", "b\u{0}c"]}]).to_string(), None, vec![want(Some(1), Some("a"), Some("command[1]"), &["NUL"])]),
        (
            "duplicate names",
            json!([{"name": "x", "command": ["a"]}, {"command": ["b"]}, {"name": "x", "command": ["c"]}]).to_string(),
            None,
            vec![want(Some(3), Some("x"), Some("name"), &["duplicate name \"x\"", "task 1"])],
        ),
        (
            "{{port}} without --port-range",
            json!([{"name": "ts", "command": ["ts", "--port={{port}}"]}]).to_string(),
            None,
            vec![want(Some(1), Some("ts"), Some("command"), &["{{port}}", "no --port-range"])],
        ),
        (
            "fewer ports than port users",
            json!([{"command": ["a", "{{port}}"]}, {"command": ["b"]}, {"command": ["c", "-p{{port}}"]}, {"command": ["d", "{{port}}"]}])
                .to_string(),
            range("8000-8001"),
            vec![want(None, None, Some("--port-range"), &["8000-8001 holds 2 ports", "3 tasks", "tasks 1, 3, 4", "widen"])],
        ),
        (
            "one-port range, two users",
            json!([{"command": ["a", "{{port}}"]}, {"command": ["b", "{{port}}"]}]).to_string(),
            range("9000-9000"),
            vec![want(None, None, Some("--port-range"), &["holds 1 port but 2 tasks"])],
        ),
        (
            "unknown field with a near miss",
            json!([{"name": "w", "comand": ["a"], "command": ["a"]}]).to_string(),
            None,
            vec![want(Some(1), Some("w"), Some("comand"), &["unknown field", "did you mean \"command\"?"])],
        ),
        (
            "unknown field from another supervisor",
            json!([{"command": ["a"], "stdout": "x.log", "cmd": ["a"]}]).to_string(),
            None,
            vec![
                want(Some(1), Some("a"), Some("cmd"), &["did you mean \"command\"?"]),
                want(Some(1), Some("a"), Some("stdout"), &["did you mean \"output\"?"]),
            ],
        ),
        (
            "unknown field, nothing near",
            json!([{"command": ["a"], "priority": 5}]).to_string(),
            None,
            vec![want(Some(1), Some("a"), Some("priority"), &["unknown field", "known fields: command, name"])],
        ),
        ("env not an object", json!([{"command": ["a"], "env": ["A=1"]}]).to_string(), None, vec![want(Some(1), Some("a"), Some("env"), &["object of strings"])]),
        (
            "env value not a string",
            json!([{"name": "w", "command": ["a"], "env": {"A": 1, "B": "ok"}}]).to_string(),
            None,
            vec![want(Some(1), Some("w"), Some("env.A"), &["string value", "a number (1)"])],
        ),
        (
            "env name with '='",
            json!([{"command": ["a"], "env": {"A=B": "1", "": "2"}}]).to_string(),
            None,
            vec![want(Some(1), Some("a"), Some("env."), &["not a valid variable name"]), want(Some(1), Some("a"), Some("env.A=B"), &["not a valid variable name"])],
        ),
        (
            "bad name characters",
            json!([{"name": "web server", "command": ["a"]}]).to_string(),
            None,
            vec![want(Some(1), Some("web server"), Some("name"), &["letters, digits"])],
        ),
        ("empty name", json!([{"name": "", "command": ["a"]}]).to_string(), None, vec![want(Some(1), Some(""), Some("name"), &["is empty"])]),
        ("dot-dot name", json!([{"name": "..", "command": ["a"]}]).to_string(), None, vec![want(Some(1), Some(".."), Some("name"), &["not a usable name"])]),
        ("name not a string", json!([{"name": 7, "command": ["a"]}]).to_string(), None, vec![want(Some(1), Some("a"), Some("name"), &["a number (7)"])]),
        (
            "bad paths",
            json!([{"command": ["a"], "input": 5, "output": "", "error": "e\u{0}", "cwd": []}]).to_string(),
            None,
            vec![
                want(Some(1), Some("a"), Some("input"), &["path as a string", "a number (5)"]),
                want(Some(1), Some("a"), Some("output"), &["is empty"]),
                want(Some(1), Some("a"), Some("error"), &["NUL"]),
                want(Some(1), Some("a"), Some("cwd"), &["an array of 0 elements"]),
            ],
        ),
        (
            "port range fine, other task broken",
            json!([{"command": ["a", "{{port}}"]}, {"command": []}]).to_string(),
            r,
            vec![want(Some(2), None, Some("command"), &["is empty"])],
        ),
    ];
    for (case, text, ports, wants) in &cases {
        check(case, text, *ports, wants);
    }
    let long = "n".repeat(65);
    let got = errors(&json!([{"name": long, "command": ["a"]}]).to_string(), None);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].task, got[0].name.as_deref(), got[0].field.as_deref()),
        (Some(1), Some(long.as_str()), Some("name"))
    );
    assert!(
        got[0].message.contains("65 characters") && got[0].message.contains("at most 64"),
        "{}",
        got[0]
    );
}

#[test]
fn every_problem_of_a_list_is_reported_at_once() {
    let text = json!([
        {"name": "ok", "command": ["./bin/ok"]},
        {"name": "a", "command": "ls"},
        {"command": ["x", 1], "outptu": "o"},
        7,
        {"name": "a b", "command": ["y"], "env": {"K": false}},
        {"name": "ok", "command": ["z"]},
    ])
    .to_string();
    let e = errors(&text, None);
    let tasks: Vec<Option<usize>> = e.iter().map(|e| e.task).collect();
    for i in [2, 3, 4, 5, 6] {
        assert!(tasks.contains(&Some(i)), "task {i} is reported: {e:#?}");
    }
    assert!(
        e.len() >= 7,
        "three problems in task 5 and 3 alone, one each elsewhere: {e:#?}"
    );
    assert!(
        e.iter().any(|e| e.field.as_deref() == Some("outptu")
            && e.message.contains("did you mean \"output\""))
    );
    let all = ConfigErrors(e).to_string();
    assert!(
        all.starts_with(&format!(
            "invalid task list ({} problems):",
            all.lines().count() - 1
        )),
        "{all}"
    );
    assert!(all.contains("task 2 (a): field \"command\""), "{all}");
    assert!(all.contains("task 3 (x): field \"command[1]\""), "{all}");
    assert!(all.contains("task 4: expected an object"), "{all}");
    assert!(
        all.contains("task 6 (ok): field \"name\": duplicate name \"ok\", already used by task 1"),
        "{all}"
    );
}

#[test]
fn three_broken_tasks_give_at_least_three_errors() {
    let text = r#"[{"command": []}, {"command": [1]}, {"name": "?", "command": ["a"]}]"#;
    let e = errors(text, None);
    assert!(e.len() >= 3, "{e:#?}");
    assert_eq!(
        e.iter().map(|e| e.task).collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
}

#[test]
fn names_are_derived_from_the_program_and_made_unique() {
    let cases: &[(serde_json::Value, &[&str])] = &[
        (json!([{"command": ["/usr/bin/sleep", "1"]}]), &["sleep"]),
        (
            json!([{"command": ["a"]}, {"command": ["./a"]}, {"command": ["b"]}]),
            &["a-1", "a-2", "b"],
        ),
        // An explicit name wins; the derived one steps around it.
        (
            json!([{"command": ["a"]}, {"command": ["a"]}, {"name": "a-1", "command": ["z"]}]),
            &["a-2", "a-3", "a-1"],
        ),
        (
            json!([{"name": "a", "command": ["x"]}, {"command": ["a"]}]),
            &["a", "a-2"],
        ),
        // A program whose base looks like a derived name cannot collide with one.
        (
            json!([{"command": ["a"]}, {"command": ["a"]}, {"command": ["a-1"]}]),
            &["a-1", "a-2", "a-1-2"],
        ),
        // Odd programs still give a valid name.
        (
            json!([{"command": ["/"]}, {"command": ["bin/"]}, {"command": ["./x y"]}, {"command": ["..."]}]),
            &["task", "bin", "x_y", "..."],
        ),
        (
            json!([{"command": ["./ü"]}, {"command": [".."]}]),
            &["_", "task"],
        ),
    ];
    for (list, names) in cases {
        let specs = parse_task_list(&list.to_string(), None).unwrap();
        let got: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(&got, names, "{list}");
        for s in &specs {
            assert_eq!(
                name_problem(&s.name),
                None,
                "derived name {:?} is valid",
                s.name
            );
        }
    }
    let long = format!("/opt/{}", "x".repeat(200));
    let specs = parse_task_list(
        &json!([{"command": [long.clone()]}, {"command": [long]}]).to_string(),
        None,
    )
    .unwrap();
    assert!(
        specs.iter().all(|s| s.name.len() <= MAX_NAME_LEN),
        "{specs:?}"
    );
    assert_ne!(specs[0].name, specs[1].name);
}

#[test]
fn optional_fields_are_kept() {
    let text = json!([{
        "name": "w", "command": ["w", "--port={{port}}", "{{port}}{{port}}"],
        "input": "in.txt", "output": "o", "error": "e", "cwd": "/tmp", "env": {"A": "1", "B": ""},
    }, {"command": ["x"], "input": null, "env": null, "name": null}])
    .to_string();
    let specs = parse_task_list(&text, range("1-1")).unwrap();
    let w = &specs[0];
    assert_eq!(
        (
            w.input.as_deref(),
            w.output.as_deref(),
            w.error.as_deref(),
            w.cwd.as_deref()
        ),
        (Some("in.txt"), Some("o"), Some("e"), Some("/tmp"))
    );
    assert_eq!(w.env.get("B").map(String::as_str), Some(""));
    assert_eq!(
        w.argv_for_port(Some(1)),
        ["w", "--port=1", "11"],
        "every occurrence is replaced"
    );
    assert_eq!(w.argv_for_port(None), w.command);
    assert_eq!(specs[1].name, "x", "null means absent");
    assert!(specs[1].env.is_empty());
}

#[test]
fn parse_task_checks_against_the_names_in_use() {
    let taken: HashSet<String> = ["web".to_string(), "a".to_string()].into_iter().collect();
    let dup = parse_task(&json!({"name": "web", "command": ["x"]}), 4, &taken, None).unwrap_err();
    assert_eq!(dup.0.len(), 1);
    assert_eq!(
        (dup.0[0].task, dup.0[0].field.as_deref()),
        (Some(4), Some("name"))
    );
    assert!(dup.0[0].message.contains("already exists"), "{dup}");

    let derived = parse_task(&json!({"command": ["./a"]}), 3, &taken, None).unwrap();
    assert_eq!(derived.name, "a-2", "steps around the name in use");
    let fresh = parse_task(&json!({"command": ["./b"]}), 3, &taken, None).unwrap();
    assert_eq!(fresh.name, "b");

    let bad = parse_task(
        &json!({"command": ["a", "{{port}}"], "nmae": "q"}),
        9,
        &taken,
        None,
    )
    .unwrap_err();
    let fields: Vec<_> = bad.0.iter().map(|e| (e.task, e.field.clone())).collect();
    assert_eq!(
        fields,
        [
            (Some(9), Some("nmae".to_string())),
            (Some(9), Some("command".to_string()))
        ]
    );
    assert!(
        parse_task(
            &json!({"command": ["a", "{{port}}"]}),
            1,
            &taken,
            range("5-5")
        )
        .is_ok()
    );
    assert!(parse_task(&json!("ls"), 1, &taken, None).is_err());
}

#[test]
fn near_misses_get_the_right_hint() {
    let cases = [
        ("comand", Some("command")),
        ("commands", Some("command")),
        ("Command", Some("command")),
        ("cmd", Some("command")),
        ("args", Some("command")),
        ("stdin", Some("input")),
        ("stderr", Some("error")),
        ("STDOUT", Some("output")),
        ("environment", Some("env")),
        ("envv", Some("env")),
        ("workdir", Some("cwd")),
        ("nam", Some("name")),
        ("restart", Some("restart")),
        ("restarts", Some("restart")),
        ("autostrat", Some("autostart")),
        ("priority", None),
    ];
    for (key, hint) in cases {
        assert_eq!(closest(key), hint, "{key}");
    }
    assert_eq!(task_fields(), FIELDS);
}

proptest! {
    /// Any text at all: an answer, never a panic.
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = parse_task_list(&text, None);
        let _ = parse_task_list(&text, Some(PortRange { first: 1, last: 2 }));
    }

    /// JSON-shaped text built from the task list's own vocabulary reaches deeper into the
    /// validator than random characters do.
    #[test]
    fn json_ish_text_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "[", "]", "{", "}", ",", ":", "\"command\"", "\"name\"", "\"env\"", "\"cwd\"",
                "\"input\"", "\"{{port}}\"", "\"./a\"", "\"\"", "\"a b\"", "1", "-0.5e9", "null",
                "true", "\"\\u0000\"", "\"ü\"", " ", "\n", "\"x\"",
            ]),
            0..60,
        ),
        with_range: bool,
    ) {
        let text: String = parts.concat();
        let ports = with_range.then_some(PortRange { first: 8000, last: 8001 });
        if let Err(e) = parse_task_list(&text, ports) {
            prop_assert!(!e.0.is_empty());
            for p in &e.0 {
                prop_assert!(!p.message.is_empty());
            }
        }
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            let _ = parse_task(&v, 1, &HashSet::new(), ports);
        }
    }

    /// Valid task lists (some named, some not, some sharing a program) always parse, keep their
    /// order and commands, and get unique, valid names.
    #[test]
    fn valid_lists_parse_with_unique_names(
        tasks in prop::collection::vec(
            (
                prop::sample::select(vec!["./bin/timeserver", "authserver", "/usr/bin/a", "a", "a-1", "sleep"]),
                prop::collection::vec("[ -~]{0,8}", 0..4),
                prop::option::of(prop::sample::select(vec!["web", "a", "a-1", "a-2", "timeserver", "x.y_z", "timeserver-2"])),
                any::<bool>(),
            ),
            1..12,
        ),
    ) {
        // Explicit names must be unique in a valid list: keep the first use of each.
        let mut seen = HashSet::new();
        let list: Vec<Value> = tasks
            .iter()
            .map(|(prog, args, name, port)| {
                let mut argv = vec![prog.to_string()];
                argv.extend(args.iter().cloned());
                if *port {
                    argv.push("--port={{port}}".into());
                }
                let mut o = json!({ "command": argv, "output": "out/x.log" });
                if let Some(n) = name.filter(|n| seen.insert(*n)) {
                    o["name"] = json!(n);
                }
                o
            })
            .collect();
        let text = Value::Array(list.clone()).to_string();
        let specs = parse_task_list(&text, Some(PortRange { first: 8000, last: 8099 })).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(specs.len(), list.len());
        let names: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        prop_assert_eq!(names.len(), specs.len(), "names are unique: {:?}", specs.iter().map(|s| &s.name).collect::<Vec<_>>());
        for (s, v) in specs.iter().zip(&list) {
            prop_assert_eq!(&json!(s.command), &v["command"]);
            prop_assert!(name_problem(&s.name).is_none(), "{:?}", s.name);
            if let Some(n) = v["name"].as_str() {
                prop_assert_eq!(&s.name, n);
            }
        }
    }
}

#[test]
fn instances_expand_and_dependencies_are_checked() {
    let list = json!([
        {"name": "web", "command": ["w", "--port={{port}}"], "instances": 3},
        {"name": "lb", "command": ["lb"], "depends_on": ["web"]},
    ])
    .to_string();
    let specs = parse_task_list(&list, Some("8000-8009".parse().unwrap())).unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web-1", "web-2", "web-3", "lb"]);
    assert_eq!(specs[3].depends_on, ["web-1", "web-2", "web-3"]);

    let bad = json!([
        {"name": "a", "command": ["a"], "depends_on": ["b"]},
        {"name": "b", "command": ["b"], "depends_on": ["a", "nope"]},
        {"name": "c", "command": ["c"], "depends_on": ["c"]},
    ])
    .to_string();
    let errs = parse_task_list(&bad, None).unwrap_err().0;
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("depends_on[1]") && t.contains("no task named \"nope\"")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("depends_on[0]") && t.contains("cannot depend on itself")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("a cycle: a → b → a")),
        "{text:?}"
    );

    let clash = json!([
        {"name": "w", "command": ["w"], "instances": 2},
        {"name": "w-2", "command": ["x"]},
    ])
    .to_string();
    let errs = parse_task_list(&clash, None).unwrap_err().0;
    assert!(
        errs.iter().any(|e| e.field.as_deref() == Some("instances")),
        "{errs:?}"
    );
    let one = parse_task(
        &json!({"command": ["a"], "instances": 2}),
        1,
        &HashSet::new(),
        None,
    );
    assert!(one.unwrap_err().0[0].message.contains("whole list"));
}
