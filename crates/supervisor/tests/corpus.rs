//! The bad-input corpus (`tests/data/corpus/`, see its README): malformed task lists, flags and
//! dumps, each run against the real binary and compared with its snapshot of expected output.
//! Bad task lists and flags: the exact message, the documented exit status, nothing started,
//! no file created or changed. Bad dumps: the supervisor runs, the dump is moved aside intact,
//! the log names the problem, nothing else is touched.
//!
//! `CORPUS_BLESS=1` rewrites the `exact:` snapshots from what the binary prints now (review the
//! diff before committing it).
//!
//! Also: property tests over the three parsers (task list, dump, log config) with proptest.
use crate::chaos::proc_util::stat;
use crate::common::pids_in;
use crate::common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use testkit::{Spawner, pid_alive, wait_for, wait_for_value};

fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/corpus")
        .join(kind)
}

fn bless() -> bool {
    std::env::var("CORPUS_BLESS").is_ok_and(|v| v == "1")
}

/// A case's snapshot: `exit N` (or `corrupt` / `valid` for dumps), then either `exact:` and the
/// whole expected text, or `contains: TEXT` lines.
#[derive(Debug, Default)]
struct Expected {
    head: String,
    exact: Option<String>,
    contains: Vec<String>,
}

impl Expected {
    fn read(path: &Path) -> Option<Expected> {
        let text = std::fs::read_to_string(path).ok()?;
        let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let mut e = Expected {
            head: head.trim().to_string(),
            ..Expected::default()
        };
        if let Some(exact) = rest.strip_prefix("exact:\n") {
            e.exact = Some(exact.to_string());
        } else {
            e.contains = rest
                .lines()
                .filter_map(|l| l.strip_prefix("contains: "))
                .map(str::to_string)
                .collect();
        }
        Some(e)
    }

    fn exit(&self) -> Option<i32> {
        self.head.strip_prefix("exit ")?.parse().ok()
    }
}

/// Names of the cases in `dir`: every `NAME.<ext>` with the given extensions, once.
fn cases(dir: &Path, exts: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let ext = p.extension()?.to_str()?;
            exts.contains(&ext)
                .then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every file under `dir` with its content (folders as `/`), to prove nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(rel, b"/".to_vec());
                stack.push(p);
            } else if ft.is_file() {
                out.insert(rel, std::fs::read(&p).unwrap());
            } else {
                out.insert(rel, b"?".to_vec());
            }
        }
    }
    out
}

/// A work folder with a few files a careless supervisor could touch.
fn work_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), b"keep me\n").unwrap();
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(dir.path().join("out/probe.out"), b"old output\n").unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    dir
}

/// A valid task list whose task would leave traces if it were ever started.
const PROBE_TASKS: &str = r#"[{"name": "probe", "command": ["sh", "-c", "touch started; exec sleep 1000"], "output": "out/probe.out"}]"#;

/// Runs the supervisor to its exit with `stdin` and `args` in `dir`: (exit code, stderr).
fn run_bytes(dir: &Path, stdin: &[u8], args: &[String]) -> (Option<i32>, String) {
    let spawner = Spawner::new();
    let mut cmd = spawner.bin("supervisor");
    cmd.current_dir(dir)
        .args(args)
        .env_remove("SUPERVISOR_API")
        .env_remove("SUPERVISOR_TOKEN_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // A writer thread: a supervisor that refuses its flags before reading stdin must not block us.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let status = wait_for_value(LONG, || child.try_wait().unwrap());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = writer.join();
    let err = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let status =
        status.unwrap_or_else(|| panic!("supervisor {args:?} did not exit; stderr so far:\n{err}"));
    let left = spawner.pids();
    assert!(
        left.is_empty(),
        "nothing may be left running after {args:?}: {left:?}"
    );
    (
        status.code(),
        normalize(&err.replace(&dir.display().to_string(), "$DIR")),
    )
}

/// Log lines that reach stderr start with a timestamp: `$TIME` in snapshots.
fn normalize(text: &str) -> String {
    let stamp = |w: &str| {
        w.len() > 20 && w.as_bytes()[4] == b'-' && w.as_bytes()[10] == b'T' && w.ends_with('Z')
    };
    text.split_inclusive('\n')
        .map(|l| match l.split_once(' ') {
            Some((w, rest)) if stamp(w) => format!("$TIME {rest}"),
            _ => l.to_string(),
        })
        .collect()
}

/// Runs one task-list or flags case; `Err` describes every mismatch.
fn run_refusal_case(dir: &Path, name: &str, default_stdin: &[u8]) -> Result<(), String> {
    let stdin =
        std::fs::read(dir.join(format!("{name}.json"))).unwrap_or_else(|_| default_stdin.to_vec());
    let args: Vec<String> = std::fs::read_to_string(dir.join(format!("{name}.args")))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let expected_path = dir.join(format!("{name}.expected"));
    let expected = Expected::read(&expected_path);
    let work = work_dir();
    let before = snapshot(work.path());
    let (code, err) = run_bytes(work.path(), &stdin, &args);
    let after = snapshot(work.path());
    let mut problems = Vec::new();
    if before != after {
        let changed: Vec<&PathBuf> = after
            .keys()
            .chain(before.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        problems.push(format!("files created or changed: {changed:?}"));
    }
    if bless() && expected.as_ref().is_none_or(|e| e.exact.is_some()) {
        let code = code.map_or("signal".to_string(), |c| c.to_string());
        std::fs::write(&expected_path, format!("exit {code}\nexact:\n{err}")).unwrap();
        return if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        };
    }
    let Some(expected) = expected else {
        return Err(format!(
            "no {name}.expected (run with CORPUS_BLESS=1 to write it); stderr:\n{err}"
        ));
    };
    if code != expected.exit() {
        problems.push(format!(
            "exit status {code:?}, expected {:?}",
            expected.exit()
        ));
    }
    if let Some(exact) = &expected.exact {
        if *exact != err {
            problems.push(format!(
                "stderr differs:\n--- expected\n{exact}--- got\n{err}---"
            ));
        }
    }
    for c in &expected.contains {
        if !err.contains(c.as_str()) {
            problems.push(format!("stderr lacks {c:?}:\n{err}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn run_refusal_corpus(kind: &str, exts: &[&str], default_stdin: &[u8], at_least: usize) {
    let dir = corpus_dir(kind);
    let names = cases(&dir, exts);
    assert!(
        names.len() >= at_least,
        "{kind}: only {} cases",
        names.len()
    );
    let mut failures = Vec::new();
    for name in &names {
        if let Err(e) = run_refusal_case(&dir, name, default_stdin) {
            failures.push(format!("==== {kind}/{name}\n{e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {kind} cases failed:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_bad_task_lists_are_refused_with_their_exact_message() {
    run_refusal_corpus("tasks", &["json"], b"", 30);
}

#[test]
fn corpus_bad_flags_are_refused_with_their_exact_message() {
    run_refusal_corpus("flags", &["args"], PROBE_TASKS.as_bytes(), 12);
}

/// Placeholders a dump case may use, and their values for this run.
struct DumpVars {
    vars: Vec<(&'static str, String)>,
    sentinel: Option<(std::process::Child, i32)>,
}

fn start_ticks(pid: i32) -> u64 {
    stat(pid).map_or(0, |p| p.start)
}

impl DumpVars {
    /// `$SENTINEL_*` is a process of the test's own that is not a session leader, in a session
    /// of its own (so neither "the supervisor's session" nor "a task leader").
    fn new(spawner: &Spawner, dir: &Path, need_sentinel: bool) -> DumpVars {
        let me = std::process::id() as i32;
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
            .to_string();
        let mut vars = vec![
            ("$BOOT_ID", boot),
            ("$TEST_PID", me.to_string()),
            ("$TEST_START", start_ticks(me).to_string()),
            ("$INIT_START", start_ticks(1).to_string()),
        ];
        let mut sentinel = None;
        if need_sentinel {
            let child = spawner
                .command("setsid")
                .args(["sh", "-c", "sleep 1000 & echo $! > sentinel.pid; wait"])
                .current_dir(dir)
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let pid = wait_pid_file(&dir.join("sentinel.pid"));
            std::fs::remove_file(dir.join("sentinel.pid")).unwrap();
            vars.push(("$SENTINEL_PID", pid.to_string()));
            vars.push(("$SENTINEL_START", start_ticks(pid).to_string()));
            sentinel = Some((child, pid));
        }
        DumpVars { vars, sentinel }
    }

    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return bytes.to_vec();
        };
        let mut t = text.to_string();
        for (k, v) in &self.vars {
            t = t.replace(k, v);
        }
        t.into_bytes()
    }
}

impl Drop for DumpVars {
    fn drop(&mut self) {
        if let Some((c, _)) = &mut self.sentinel {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const DUMP: &str = "run/sup.dump";
const DUMP_TASKS: &str =
    r#"[{"name": "probe", "command": ["sh", "-c", "echo $$ >> probe.pids; exec sleep 1000"]}]"#;

/// Files under `run/` named `sup.dump.corrupt-*`.
fn kept_aside(work: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(work.join("run"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("sup.dump.corrupt-"))
        })
        .collect();
    v.sort();
    v
}

/// Starts a supervisor on the dump already in `work`, waits for its task, stops it cleanly;
/// returns its log.
fn run_on_dump(work: &Path) -> Result<String, String> {
    let spawner = Spawner::new();
    let mut cmd = spawner.bin("supervisor");
    cmd.current_dir(work)
        .args([
            format!("--dumpfile={DUMP}"),
            "--log=sup.log".to_string(),
            // A taken API address is fatal, and 127.0.0.1:7171 is shared by every test.
            "--listen=none".to_string(),
        ])
        .env_remove("SUPERVISOR_API")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let log = || std::fs::read_to_string(work.join("sup.log")).unwrap_or_default();
    // The log is appended to: wait for this run's line, not an earlier run's.
    let started_before = log().matches("task started").count();
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(DUMP_TASKS.as_bytes())
        .unwrap();
    let result = (|| {
        if !wait_for(LONG, || {
            log().matches("task started").count() > started_before
        }) {
            return Err(format!("the supervisor did not start its task:\n{}", log()));
        }
        // Our unreaped child: its pid is still its own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_for_value(LONG, || child.try_wait().unwrap());
        if status.is_none_or(|s| s.code() != Some(0)) {
            return Err(format!("exit status {status:?} after SIGTERM:\n{}", log()));
        }
        let left = spawner.pids();
        if !left.is_empty() {
            return Err(format!("left running: {left:?}"));
        }
        Ok(log())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Runs one dump case: `dump` is written to `run/sup.dump` (unless `prepare` sets it up).
fn run_dump_case(
    name: &str,
    dump: &[u8],
    expected: &Expected,
    need_sentinel: bool,
) -> Result<(), String> {
    let work = work_dir();
    let spawner = Spawner::new();
    let vars = DumpVars::new(&spawner, work.path(), need_sentinel);
    let dump = vars.apply(dump);
    std::fs::write(work.path().join(DUMP), &dump).unwrap();
    let before = snapshot(work.path());
    let log = run_on_dump(work.path())?;
    let mut problems = Vec::new();
    let aside = kept_aside(work.path());
    match expected.head.as_str() {
        "corrupt" => {
            if aside.len() != 1 {
                problems.push(format!(
                    "expected exactly one kept-aside dump, found {aside:?}"
                ));
            } else if std::fs::read(&aside[0]).unwrap() != dump {
                problems.push("the kept-aside dump is not the original, byte for byte".into());
            }
            if !log.contains("dump file is corrupt; kept aside, not trusted") {
                problems.push("no 'dump file is corrupt' line".into());
            }
        }
        "valid" => {
            if !aside.is_empty() {
                problems.push(format!("a valid dump was kept aside: {aside:?}"));
            }
            if log.contains("dump file is corrupt") {
                problems.push("a valid dump was called corrupt".into());
            }
        }
        other => problems.push(format!("{name}.expected: unknown head {other:?}")),
    }
    for c in &expected.contains {
        if !log.contains(c.as_str()) {
            problems.push(format!("log lacks {c:?}"));
        }
    }
    // The fresh dump is a clean one written by this supervisor.
    match std::fs::read_to_string(work.path().join(DUMP))
        .map(|t| supervisor_core::Checkpoint::parse(&t))
    {
        Ok(Ok(c)) if c.clean && c.tasks.is_empty() => {}
        other => problems.push(format!("no clean final dump: {other:?}")),
    }
    // Nothing else changed: only the dump, its lock, the kept-aside copy, the log and the
    // task's own file are new.
    let after = snapshot(work.path());
    let allowed = |p: &Path| {
        let s = p.to_string_lossy();
        s == DUMP
            || s == "run/sup.dump.lock"
            || s.starts_with("run/sup.dump.corrupt-")
            || s == "sup.log"
            || s == "probe.pids"
    };
    for k in after.keys().chain(before.keys()) {
        if before.get(k) != after.get(k) && !allowed(k) {
            problems.push(format!("{} created or changed", k.display()));
        }
    }
    if let Some((_, pid)) = &vars.sentinel {
        if !pid_alive(*pid) {
            problems.push(format!("sentinel {pid} was killed"));
        }
    }
    // Every probe instance is gone after the clean stop.
    for p in pids_in(&work.path().join("probe.pids")) {
        if pid_alive(p) {
            problems.push(format!("probe {p} still runs"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n---- log\n{log}", problems.join("\n")))
    }
}

/// The line that tells what was wrong with a dump: the `error=` of the corrupt-dump line, or
/// the recovery summary's reasons for skipping entries.
fn bless_dump_case(dump: &[u8], head: &str, need_sentinel: bool) -> Result<String, String> {
    let work = work_dir();
    let spawner = Spawner::new();
    let vars = DumpVars::new(&spawner, work.path(), need_sentinel);
    std::fs::write(work.path().join(DUMP), vars.apply(dump)).unwrap();
    let log = run_on_dump(work.path())?;
    let found = match head {
        "corrupt" => log
            .lines()
            .find(|l| l.contains("dump file is corrupt"))
            .and_then(|l| {
                let from = l.find("error=")?;
                let to = l.find(" kept_as=").unwrap_or(l.len());
                Some(l[from..to].to_string())
            }),
        _ => log
            .lines()
            .find(|l| l.contains("recovery: leftovers"))
            .and_then(|l| {
                let from = l.find("stopped=")?;
                let to = l.find(" took_ms=").unwrap_or(l.len());
                Some(l[from..to].to_string())
            }),
    };
    found.ok_or_else(|| format!("no telling line in the log:\n{log}"))
}

#[test]
fn corpus_bad_dumps_are_kept_aside_and_never_trusted() {
    let dir = corpus_dir("dumps");
    let names = cases(&dir, &["dump"]);
    assert!(names.len() >= 15, "only {} dump cases", names.len());
    let mut failures = Vec::new();
    for name in &names {
        let dump = std::fs::read(dir.join(format!("{name}.dump"))).unwrap();
        let Some(expected) = Expected::read(&dir.join(format!("{name}.expected"))) else {
            failures.push(format!("==== dumps/{name}: no .expected file"));
            continue;
        };
        let need_sentinel = dump.windows(10).any(|w| w == b"$SENTINEL_");
        if bless() && expected.contains.is_empty() {
            let expected_path = dir.join(format!("{name}.expected"));
            match bless_dump_case(&dump, &expected.head, need_sentinel) {
                Ok(line) => std::fs::write(
                    &expected_path,
                    format!("{}\ncontains: {line}\n", expected.head),
                )
                .unwrap(),
                Err(e) => failures.push(format!("==== dumps/{name} (bless)\n{e}")),
            }
            continue;
        }
        if let Err(e) = run_dump_case(name, &dump, &expected, need_sentinel) {
            failures.push(format!("==== dumps/{name}\n{e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dump cases failed:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

/// Dumps that are not files at all, or absurdly large: kept aside, the start-up never blocks.
#[test]
fn corpus_odd_dump_files_never_block_the_start() {
    type Make = fn(&Path);
    // (A folder at the dump path is refused at start: see flags/dumpfile-is-a-folder.)
    let cases: [(&str, Make, &str); 2] = [
        (
            "a FIFO (reading it would block forever)",
            |p| {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            },
            "run/sup.dump is not a regular file",
        ),
        (
            "a sparse 100 MB file",
            |p| {
                std::fs::File::create(p)
                    .unwrap()
                    .set_len(100 << 20)
                    .unwrap()
            },
            "run/sup.dump is too large for a dump (104857600 bytes, at most 67108864)",
        ),
    ];
    for (what, make, message) in cases {
        let work = work_dir();
        make(&work.path().join(DUMP));
        let log = run_on_dump(work.path()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(log.contains(message), "{what}: {log}");
        assert!(log.contains("kept aside, not trusted"), "{what}: {log}");
        assert_eq!(kept_aside(work.path()).len(), 1, "{what} is kept aside");
    }
}

/// Two corrupt dumps found within the same second both stay as evidence.
#[test]
fn corpus_corrupt_dumps_found_in_the_same_second_are_all_kept() {
    let work = work_dir();
    let mut kept = Vec::new();
    for (i, junk) in [&b"{\"version\": 1, trunc"[..], b"\x00\x01junk", b"[]"]
        .into_iter()
        .enumerate()
    {
        std::fs::write(work.path().join(DUMP), junk).unwrap();
        run_on_dump(work.path()).unwrap();
        let aside = kept_aside(work.path());
        assert_eq!(aside.len(), i + 1, "{aside:?}");
        kept.push(junk.to_vec());
    }
    let mut contents: Vec<Vec<u8>> = kept_aside(work.path())
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    contents.sort();
    kept.sort();
    assert_eq!(
        contents, kept,
        "every corrupt dump is kept, none overwritten"
    );
}

/// Property tests: the parsers never panic on anything, and accept what they should.
mod props {
    use proptest::prelude::*;
    use servicekit::logconfig::{Level, LogConfig, Output};
    use std::path::PathBuf;
    use supervisor_core::{
        Checkpoint, PortRange, SupervisorIdentity, TaskRecord, TaskSpec, parse_task_list,
    };

    /// Any JSON value, a few levels deep, with the task fields' names likely as keys.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let key = prop_oneof![
            Just("command".to_string()),
            Just("name".to_string()),
            Just("input".to_string()),
            Just("output".to_string()),
            Just("error".to_string()),
            Just("env".to_string()),
            Just("cwd".to_string()),
            "[a-z]{0,8}",
        ];
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::from("{{port}}")),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn spec() -> impl Strategy<Value = TaskSpec> {
        let path = "[a-z0-9_./-]{1,20}";
        (
            "[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}",
            prop::collection::vec("[^\u{0}]{1,12}", 1..5),
            prop::option::of(path),
            prop::option::of(path),
            prop::option::of(path),
            prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", "[^\u{0}]{0,10}", 0..3),
            prop::option::of(path),
        )
            .prop_map(|(name, command, input, output, error, env, cwd)| TaskSpec {
                name,
                command,
                input,
                output,
                error,
                env,
                cwd,
                ..TaskSpec::default()
            })
    }

    fn record() -> impl Strategy<Value = TaskRecord> {
        (
            any::<usize>(),
            ".{0,12}",
            prop::collection::vec(".{0,8}", 0..4),
            any::<Option<u16>>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<Option<u64>>(),
            prop::option::of("[0-9a-f-]{0,36}"),
        )
            .prop_map(
                |(index, name, argv, port, generation, pid, pgid, start_time, boot_id)| {
                    TaskRecord {
                        index,
                        name,
                        argv,
                        port,
                        generation,
                        pid,
                        pgid,
                        start_time,
                        boot_id,
                    }
                },
            )
    }

    fn checkpoint() -> impl Strategy<Value = Checkpoint> {
        (
            ".{0,16}",
            any::<u32>(),
            any::<u64>(),
            ".{0,36}",
            ".{0,8}",
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(record(), 0..5),
        )
            .prop_map(
                |(instance, pid, start_time, boot_id, version, written_at_ms, clean, tasks)| {
                    Checkpoint {
                        version: supervisor_core::checkpoint::VERSION,
                        supervisor: SupervisorIdentity {
                            instance,
                            pid,
                            start_time,
                            boot_id: boot_id.clone(),
                            version,
                            dumpfile: (written_at_ms % 2 == 0)
                                .then(|| format!("/run/{boot_id}.dump")),
                        },
                        written_at_ms,
                        clean,
                        tasks,
                        uids: Default::default(),
                        revision: written_at_ms % 7,
                        next_generation: written_at_ms % 11,
                    }
                },
            )
    }

    /// Flips, drops or inserts bytes of `text` at the given spots.
    fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> String {
        let mut b = text.as_bytes().to_vec();
        for &(at, op, byte) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let i = at % b.len();
            match op % 3 {
                0 => b[i] = byte,
                1 => {
                    b.remove(i);
                }
                _ => b.insert(i, byte),
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    const BRIEF: &str = include_str!("../../../etc/tasks.json");
    const DUMP_V1: &str = include_str!("data/checkpoint-v1.json");
    const LOG_01: &str = include_str!("../../../etc/log-01.xml");

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn task_list_parser_never_panics_on_text(text in ".{0,300}", ranged in any::<bool>()) {
            let range = ranged.then_some(PortRange { first: 8000, last: 8009 });
            let _ = parse_task_list(&text, range);
        }

        #[test]
        fn task_list_parser_never_panics_on_json(v in json(), ranged in any::<bool>()) {
            let range = ranged.then_some(PortRange { first: 8000, last: 8000 });
            if let Ok(specs) = parse_task_list(&v.to_string(), range) {
                let names: std::collections::HashSet<_> = specs.iter().map(|s| &s.name).collect();
                prop_assert_eq!(names.len(), specs.len(), "names are unique");
                prop_assert!(specs.iter().all(|s| !s.command.is_empty()));
            }
        }

        #[test]
        fn task_list_parser_never_panics_on_mutated_brief(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
            let _ = parse_task_list(&mutate(BRIEF, &edits), Some(PortRange { first: 8000, last: 8099 }));
        }

        /// Valid tasks with explicit, distinct names parse back to themselves.
        #[test]
        fn task_lists_round_trip(specs in prop::collection::vec(spec(), 0..6)) {
            let mut seen = std::collections::HashSet::new();
            let specs: Vec<TaskSpec> = specs.into_iter().filter(|s| s.name != "." && s.name != ".." && seen.insert(s.name.clone())).collect();
            let text = serde_json::to_string(&specs).unwrap();
            let back = parse_task_list(&text, Some(PortRange { first: 1, last: 65535 }));
            prop_assert_eq!(back, Ok(specs));
        }

        #[test]
        fn dump_parser_never_panics(text in ".{0,300}") {
            let _ = Checkpoint::parse(&text);
        }

        #[test]
        fn dump_parser_never_panics_on_mutated_dumps(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
            if let Ok(c) = Checkpoint::parse(&mutate(DUMP_V1, &edits)) {
                prop_assert_eq!(Checkpoint::parse(&c.to_json()).unwrap(), c);
            }
        }

        #[test]
        fn dumps_round_trip(c in checkpoint()) {
            prop_assert_eq!(Checkpoint::parse(&c.to_json()).unwrap(), c);
        }

        #[test]
        fn log_config_parser_never_panics(text in ".{0,300}") {
            let _ = LogConfig::parse(&text).map_err(|e| e.to_string());
        }

        #[test]
        fn log_config_parser_never_panics_on_mutated_configs(edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)) {
            let _ = LogConfig::parse(&mutate(LOG_01, &edits)).map_err(|e| e.to_string());
        }

        /// Generated configs of known elements parse to the outputs they list.
        #[test]
        fn log_configs_round_trip(
            level in prop::sample::select(&Level::NAMES[..]),
            outs in prop::collection::vec((any::<bool>(), "[a-zA-Z0-9_./-]{1,20}", 0u8..3), 1..5),
        ) {
            let mut xml = format!("<seelog minlevel=\"{level}\"><outputs>");
            let mut want = Vec::new();
            for (console, path, wrap) in &outs {
                let (open, close) = match wrap { 0 => ("", ""), 1 => ("<buffered size=\"10\">", "</buffered>"), _ => ("<splitter>", "</splitter>") };
                let el = if *console {
                    want.push(Output::Console);
                    "<console/>".to_string()
                } else {
                    want.push(Output::File(PathBuf::from(path)));
                    format!("<file path=\"{path}\"/>")
                };
                xml.push_str(&format!("{open}{el}{close}"));
            }
            xml.push_str("</outputs></seelog>");
            let cfg = LogConfig::parse(&xml);
            prop_assert!(cfg.is_ok(), "{xml}: {cfg:?}");
            prop_assert_eq!(cfg.unwrap().outputs, want);
        }
    }

    #[test]
    fn the_shipped_inputs_parse() {
        assert_eq!(
            parse_task_list(
                BRIEF,
                Some(PortRange {
                    first: 8000,
                    last: 8099
                })
            )
            .unwrap()
            .len(),
            3
        );
        assert_eq!(Checkpoint::parse(DUMP_V1).unwrap().tasks.len(), 2);
        assert!(LogConfig::parse(LOG_01).is_ok());
    }
}
