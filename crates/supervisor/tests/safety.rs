//! Operator safety: recovery touches only what is provably its own; what can be checked is
//! checked before anything starts; a stuck file never blocks the loop; tasks get the limits
//! the supervisor was started with.
use crate::common::*;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};
use testkit::{http_request, pid_alive, wait_for, wait_for_value};

fn start_ticks(pid: u32) -> u64 {
    procio::procfs::stat(pid as i32).unwrap().start_ticks
}

fn boot_id() -> String {
    procio::procfs::boot_id().unwrap()
}

/// A second supervisor given a copy of a live supervisor's dump (another path) leaves the
/// first one's tasks alone, and says why once, naming them.
#[test]
fn a_copied_dump_of_a_live_supervisor_leaves_its_tasks_alone() {
    let mut sup = Sup::new();
    let tasks = list(&[
        sh_task("web", "echo $$ >> web.pids; exec sleep 1000"),
        sh_task("api", "echo $$ >> api.pids; exec sleep 1000"),
    ]);
    sup.start(
        &tasks,
        &["--dumpfile=run/a.dump", "--checkpoint-interval=100ms"],
    );
    let web = wait_pid_file(&sup.path("web.pids"));
    let api = wait_pid_file(&sup.path("api.pids"));
    sup.wait_dump_pids("run/a.dump", &[web, api]);
    std::fs::copy(sup.path("run/a.dump"), sup.path("run/b.dump")).unwrap();
    let mut b = sup.spawn_raw(
        &list(&[sh_task("web", "echo $$ >> b-web.pids; exec sleep 1000")]),
        &["--dumpfile=run/b.dump", "--log=b.log"],
        false,
    );
    let blog = || std::fs::read_to_string(sup.path("b.log")).unwrap_or_default();
    assert!(
        wait_for(LONG, || blog().contains("task started")),
        "{}",
        blog()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        pid_alive(web) && pid_alive(api),
        "the live supervisor's tasks are untouched\n{}",
        blog()
    );
    let log = blog();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("left alone")).collect();
    assert_eq!(lines.len(), 1, "said once: {log}");
    assert!(
        (lines[0].contains("tasks=web,api") || lines[0].contains("tasks=api,web"))
            && lines[0].contains(&format!("writer_pid={}", sup.pid())),
        "{}",
        lines[0]
    );
    let inst = |text: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("instance="))
            .map(str::to_string)
    };
    assert_ne!(
        inst(&log),
        inst(&sup.log()),
        "two supervisors never share an instance"
    );
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    let st = wait_for_value(LONG, || b.try_wait().unwrap()).expect("b stops");
    assert_eq!(st.code(), Some(0));
    assert!(
        pid_alive(web) && pid_alive(api),
        "and untouched by b's shutdown"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

/// A hand-edited dump whose entry matches an unrelated process's pid and start time (and that
/// process leads its own session, like a task) does not get it killed: it lacks the marker.
#[test]
fn a_dump_entry_matching_an_unmarked_process_leaves_it_alone() {
    let mut sup = Sup::new();
    let mut cmd = sup.spawner.command("sleep");
    cmd.arg("1000");
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut stranger = cmd.spawn().unwrap();
    let pid = stranger.id();
    let boot = boot_id();
    let doc = serde_json::json!({
        "version": 2,
        "supervisor": {"instance": "dump-0000000000000042", "pid": 1, "start_time": 1,
                       "boot_id": boot, "version": "0.1.0"},
        "written_at_ms": 0, "clean": false,
        "tasks": [{"index": 0, "name": "victim", "argv": ["sleep", "1000"], "port": null,
                   "generation": 1, "pid": pid, "pgid": pid, "start_time": start_ticks(pid),
                   "boot_id": boot}]
    });
    std::fs::create_dir_all(sup.path("run")).unwrap();
    std::fs::write(sup.path("run/sup.dump"), doc.to_string()).unwrap();
    sup.start(
        &list(&[sh_task("a", "exec sleep 1000")]),
        &["--dumpfile=run/sup.dump"],
    );
    assert!(sup.wait_log("task started"));
    assert!(sup.wait_log("recovery: leftovers of the previous supervisor stopped"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger lives\n{}",
        sup.log()
    );
    let log = sup.log();
    assert!(
        log.contains("it does not carry the marker of the dump's supervisor")
            && log.contains("tasks=victim"),
        "{log}"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(stranger.try_wait().unwrap().is_none());
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

/// Every problem the file system can show is reported before anything starts, all at once,
/// each with its task and field, and nothing runs.
#[test]
fn missing_programs_folders_and_unwritable_outputs_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "a file").unwrap();
    std::fs::write(dir.path().join("plain.sh"), "#!/bin/sh\n").unwrap();
    let tasks = serde_json::json!([
        {"name": "ok", "command": ["sh", "-c", "touch started; exec sleep 1000"]},
        {"name": "nope", "command": ["./no-such-program"]},
        {"name": "bare", "command": ["no-such-program-anywhere"]},
        {"name": "notexec", "command": ["./plain.sh"]},
        {"name": "nowhere", "command": ["sh"], "cwd": "missing-folder"},
        {"name": "blocked", "command": ["sh"], "output": "blocker/out.log"},
        {"name": "noinput", "command": ["cat"], "input": "missing.txt"}
    ])
    .to_string();
    let (code, err) = run_to_exit(dir.path(), &tasks, &[]);
    assert_eq!(code, Some(2), "{err}");
    for want in [
        "invalid task list (6 problems)",
        "task 2 (nope): field \"command[0]\": ./no-such-program does not exist; relative paths are relative to the supervisor's folder",
        "task 3 (bare): field \"command[0]\": no-such-program-anywhere was not found in PATH",
        "task 4 (notexec): field \"command[0]\": ./plain.sh is not executable",
        "task 5 (nowhere): field \"cwd\": missing-folder: no such file or folder",
        "task 6 (blocked): field \"output\": cannot create blocker/out.log:",
        "is a file, not a folder",
        "task 7 (noinput): field \"input\": cannot open missing.txt for reading",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    assert!(!dir.path().join("started").exists(), "nothing started");
}

/// A relative program is the supervisor folder's, whatever the task's `cwd`; and `POST
/// /tasks` checks the same things (400 naming the field).
#[test]
fn relative_paths_are_the_supervisors_and_the_api_checks_like_the_list() {
    let mut sup = Sup::new();
    std::fs::create_dir(sup.path("work")).unwrap();
    std::fs::create_dir(sup.path("bin")).unwrap();
    let script = sup.path("bin/hello.sh");
    std::fs::write(&script, "#!/bin/sh\npwd > where\nexec sleep 1000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let task = serde_json::json!({"name": "hello", "command": ["./bin/hello.sh"], "cwd": "work"});
    sup.start(&format!("[{task}]"), &[]);
    let where_ = wait_for_value(LONG, || {
        std::fs::read_to_string(sup.path("work/where")).ok()
    })
    .expect("the program ran in its cwd");
    assert_eq!(
        where_.trim(),
        sup.path("work")
            .canonicalize()
            .unwrap()
            .display()
            .to_string()
    );
    let api = sup.api();
    let body =
        serde_json::json!({"name": "ghost", "command": ["./bin/ghost.sh"], "cwd": "nowhere"})
            .to_string();
    let r = http_request(
        "POST",
        &api,
        "/tasks",
        &[("Content-Type", "application/json")],
        Some(&body),
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let fields: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert_eq!(fields, ["command[0]", "cwd"], "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("./bin/ghost.sh does not exist"),
        "{v}"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

/// An output file that is a FIFO nobody reads: its task cannot start (said clearly, retried),
/// and the event loop is not stuck in `open`: another task killed meanwhile is back at once.
#[test]
fn a_fifo_output_without_a_reader_never_blocks_the_loop() {
    let mut sup = Sup::new();
    let fifo = sup.path("out.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let tasks = format!(
        "[{},{}]",
        serde_json::json!({"name": "piped", "command": ["sh", "-c", "echo hi; exec sleep 1000"], "output": "out.fifo"}),
        sh_task("ok", "echo $$ >> ok.pids; exec sleep 1000"),
    );
    sup.start(&tasks, &[]);
    let ok = wait_pid_file(&sup.path("ok.pids"));
    assert!(sup.wait_log("is a FIFO with no reader"), "{}", sup.log());
    for round in 1..=3 {
        let pid = *pids_in(&sup.path("ok.pids")).last().unwrap();
        let t = Instant::now();
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let next = wait_for_value(LONG, || pids_in(&sup.path("ok.pids")).get(round).copied());
        assert!(next.is_some(), "round {round}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "round {round}: {:?}",
            t.elapsed()
        );
    }
    assert!(!pid_alive(ok));
    let health = testkit::http_get(&sup.api(), "/health", &[]).unwrap();
    assert_eq!(health.status, 200, "the API answers");
    assert!(
        health.body.contains("FIFO with no reader"),
        "{}",
        health.body
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

fn low_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with valid pointers; async-signal-safe.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = 512.min(lim.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// The supervisor raises its own open-files soft limit (10 000 tasks need it); its tasks get
/// the one it was started with (select()-based programs break above 1024).
#[test]
fn tasks_get_the_open_files_limit_the_supervisor_was_started_with() {
    let mut sup = Sup::new();
    sup.pre_exec = Some(low_open_files_limit);
    sup.start(
        &list(&[sh_task("t", "ulimit -Sn > soft; exec sleep 1000")]),
        &[],
    );
    let soft = wait_written(&sup.path("soft"));
    assert_eq!(soft.trim(), "512");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", sup.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        nums[0], nums[1],
        "the supervisor raised its own soft limit: {line}"
    );
    assert_ne!(nums[0], "512");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

fn ignore_sigusr2() {
    // SAFETY: setting a disposition to SIG_IGN; async-signal-safe.
    unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
}

/// A task starts with every signal at its default and none blocked, whatever the supervisor
/// ignores (here SIGUSR2, which it inherited) or blocks.
#[test]
fn tasks_start_with_default_signal_dispositions_and_an_empty_mask() {
    let mut sup = Sup::new();
    sup.pre_exec = Some(ignore_sigusr2);
    let task = serde_json::json!({
        "name": "sigs",
        "command": ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
        "output": "sigs.txt",
    });
    sup.start(&list(&[task.to_string()]), &[]);
    let supervisor_ignores = std::fs::read_to_string(format!("/proc/{}/status", sup.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:").map(|v| v.trim().to_string()))
        .unwrap();
    let seen = wait_for_value(LONG, || {
        let text = std::fs::read_to_string(sup.path("sigs.txt")).ok()?;
        let lines: Vec<String> = text.lines().take(2).map(str::to_string).collect();
        (lines.len() == 2).then_some(lines)
    })
    .unwrap();
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    let usr2 = 1u64 << (libc::SIGUSR2 - 1);
    assert_eq!(
        u64::from_str_radix(&supervisor_ignores, 16).unwrap() & usr2,
        usr2,
        "the test needs a supervisor that ignores SIGUSR2: {supervisor_ignores}"
    );
    assert_eq!(
        seen,
        vec!["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"],
        "the task's signal state"
    );
}
