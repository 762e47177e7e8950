//! `--dumpfile` checkpoints and recovery after the supervisor's own crash.
use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use testkit::{pid_alive, wait_for, wait_for_value};

const DUMP: &str = "run/sup.dump";

fn tasks() -> String {
    list(&[
        sh_task("a", "echo $$ >> a.pids; exec sleep 1000"),
        sh_task(
            "b",
            "setsid -f sh -c 'echo $$ >> gc.pids; exec sleep 1000'; echo $$ >> b.pids; exec sleep 1000",
        ),
    ])
}

#[test]
fn the_dump_lists_exactly_the_live_task_processes() {
    let mut sup = Sup::new();
    sup.start(
        &tasks(),
        &[&format!("--dumpfile={DUMP}"), "--checkpoint-interval=1"],
    );
    let a = wait_pid_file(&sup.path("a.pids"));
    let b = wait_pid_file(&sup.path("b.pids"));
    sup.wait_dump_pids(DUMP, &[a, b]);
    let d = sup.dump(DUMP).unwrap();
    assert_eq!(d["version"], supervisor_core::checkpoint::VERSION);
    assert_eq!(d["clean"], false);
    assert_eq!(d["supervisor"]["pid"].as_u64(), Some(sup.pid() as u64));
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    for t in d["tasks"].as_array().unwrap() {
        assert_eq!(t["boot_id"].as_str(), Some(boot.trim()));
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", t["pid"])).unwrap();
        let start: u64 = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            t["start_time"].as_u64(),
            Some(start),
            "start time is /proc/PID/stat field 22"
        );
        assert_eq!(t["pgid"], t["pid"]);
    }
    let mode = std::fs::metadata(sup.path(DUMP))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // A restart reaches the dump soon (coalesced), well before the 1 s interval matters.
    unsafe { libc::kill(a, libc::SIGKILL) };
    let a2 = wait_for_value(LONG, || pids_in(&sup.path("a.pids")).get(1).copied()).unwrap();
    sup.wait_dump_pids(DUMP, &[a2, b]);

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    let d = sup.dump(DUMP).unwrap();
    assert_eq!(d["clean"], true, "a clean shutdown is marked: {d}");
    assert_eq!(d["tasks"].as_array().unwrap().len(), 0);
}

#[test]
fn a_restarted_supervisor_stops_every_leftover_and_runs_one_of_each() {
    let mut sup = Sup::new();
    let args = [
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=1".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sup.start(&tasks(), &args);
    let (a, b, gc) = (
        wait_pid_file(&sup.path("a.pids")),
        wait_pid_file(&sup.path("b.pids")),
        wait_pid_file(&sup.path("gc.pids")),
    );
    assert!(wait_for(LONG, || sup.dump_pids(DUMP).len() == 2));

    sup.signal(libc::SIGKILL);
    assert_eq!(sup.wait_exit(), None);
    std::thread::sleep(std::time::Duration::from_millis(200));
    for p in [a, b, gc] {
        assert!(
            pid_alive(p),
            "tasks outlive a SIGKILLed supervisor (no parent-death signal): {p}"
        );
    }

    sup.start(&tasks(), &args);
    assert!(sup.wait_log("recovery:"), "{}", sup.log());
    assert!(wait_for(LONG, || pids_in(&sup.path("a.pids")).len() == 2
        && pids_in(&sup.path("b.pids")).len() == 2));
    assert!(wait_for(LONG, || pids_in(&sup.path("gc.pids")).len() == 2));
    for p in [a, b, gc] {
        assert!(wait_for(LONG, || !pid_alive(p)), "leftover {p} stopped");
    }
    for f in ["a.pids", "b.pids", "gc.pids"] {
        assert_eq!(
            alive_in(&sup.path(f)).len(),
            1,
            "exactly one live instance for {f}"
        );
    }
    let log = sup.log();
    for task in ["a", "b"] {
        assert!(
            log.contains(&format!("leftover stopped task={task} ")),
            "{task}'s leftovers are named: {log}"
        );
    }
    assert!(
        log.contains("recovery: leftovers of the previous supervisor stopped stopped="),
        "{log}"
    );
    assert!(!log.contains("survived SIGKILL"), "{log}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn processes_started_after_the_last_checkpoint_are_found_by_marker() {
    let mut sup = Sup::new();
    let args = [
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=60".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sup.start(&tasks(), &args);
    let a = wait_pid_file(&sup.path("a.pids"));
    assert!(wait_for(LONG, || sup.dump_pids(DUMP).len() == 2));
    let stale = std::fs::read(sup.path(DUMP)).unwrap();
    unsafe { libc::kill(a, libc::SIGKILL) };
    let a2 = wait_for_value(LONG, || pids_in(&sup.path("a.pids")).get(1).copied()).unwrap();
    sup.signal(libc::SIGKILL);
    assert_eq!(sup.wait_exit(), None);
    // As if the crash came before the restart was checkpointed: the dump knows only `a`.
    std::fs::write(sup.path(DUMP), &stale).unwrap();
    assert!(pid_alive(a2));

    sup.start(&tasks(), &args);
    assert!(sup.wait_log("recovery:"));
    assert!(
        wait_for(LONG, || !pid_alive(a2)),
        "the unrecorded restart was found by its marker and stopped"
    );
    assert!(wait_for(LONG, || pids_in(&sup.path("a.pids")).len() == 3));
    assert_eq!(alive_in(&sup.path("a.pids")).len(), 1);
    // Found by its cgroup (or, without cgroups, by its marker): not by the stale dump. (Log
    // lines of a loop turn are written after its spawns: wait for them.)
    let found_by = |log: &str| {
        ["via=\"cgroup\"", "via=\"marker\""]
            .iter()
            .any(|v| log.contains(v))
    };
    assert!(wait_for(LONG, || found_by(&sup.log())), "{}", sup.log());
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn strangers_named_in_the_dump_are_never_signalled() {
    let mut sup = Sup::new();
    // Two processes of the test's own, not the supervisor's.
    let mut reused = sup.spawner.command("sleep").arg("1000").spawn().unwrap();
    let mut other_boot = sup.spawner.command("sleep").arg("1000").spawn().unwrap();
    let start = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(19)
            .unwrap()
            .parse()
            .unwrap()
    };
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string();
    let rec = |name: &str, pid: u32, start: u64, boot: &str| {
        serde_json::json!({"index": 0, "name": name, "argv": ["sleep", "1000"], "port": null, "generation": 1,
            "pid": pid, "pgid": pid, "start_time": start, "boot_id": boot})
    };
    let doc = serde_json::json!({
        "version": 1,
        "supervisor": {"instance": "dump-0000000000000000", "pid": 1, "start_time": 1, "boot_id": boot, "version": "0.1.0"},
        "written_at_ms": 0, "clean": false,
        "tasks": [
            rec("reused", reused.id(), start(reused.id()) + 1, &boot),
            rec("elsewhere", other_boot.id(), start(other_boot.id()), "00000000-0000-0000-0000-000000000000"),
        ]
    });
    std::fs::create_dir_all(sup.path("run")).unwrap();
    std::fs::write(sup.path(DUMP), doc.to_string()).unwrap();
    sup.start(
        &list(&[sh_task("a", "exec sleep 1000")]),
        &[&format!("--dumpfile={DUMP}")],
    );
    assert!(sup.wait_log("recovery:"));
    assert!(sup.wait_log("task started"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        reused.try_wait().unwrap().is_none(),
        "a pid with another start time is a stranger"
    );
    assert!(
        other_boot.try_wait().unwrap().is_none(),
        "an entry of another boot is a stranger"
    );
    let log = sup.log();
    assert!(
        log.contains("pid reused") && log.contains("another boot"),
        "{log}"
    );
    assert!(log.contains("stopped=0"), "{log}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(reused.try_wait().unwrap().is_none() && other_boot.try_wait().unwrap().is_none());
}

#[test]
fn a_corrupt_dump_is_kept_aside_and_the_supervisor_runs() {
    let mut sup = Sup::new();
    std::fs::create_dir_all(sup.path("run")).unwrap();
    std::fs::write(sup.path(DUMP), b"{\"version\": 1, \"tasks\": [tru").unwrap();
    sup.start(
        &list(&[sh_task("a", "echo $$ >> a.pids; exec sleep 1000")]),
        &[&format!("--dumpfile={DUMP}")],
    );
    wait_pid_file(&sup.path("a.pids"));
    assert!(sup.wait_log("dump file is corrupt"));
    let aside: Vec<_> = std::fs::read_dir(sup.path("run"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("sup.dump.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"{\"version\": 1, \"tasks\": [tru"
    );
    assert!(
        wait_for(LONG, || sup.dump_pids(DUMP).len() == 1),
        "a fresh dump replaces it"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn a_second_supervisor_on_the_same_dump_is_refused() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("a", "exec sleep 1000")]),
        &[&format!("--dumpfile={DUMP}")],
    );
    assert!(sup.wait_log("task started"));
    let (code, err) = run_to_exit(
        sup.dir.path(),
        &list(&[sh_task("a", "exec sleep 1000")]),
        &[&format!("--dumpfile={DUMP}")],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("another supervisor") && err.contains(&format!("pid {}", sup.pid())),
        "{err}"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn an_unwritable_dump_keeps_tasks_running_and_is_logged() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("a", "echo $$ >> a.pids; exec sleep 1000")]),
        &[&format!("--dumpfile={DUMP}"), "--checkpoint-interval=100ms"],
    );
    let a = wait_pid_file(&sup.path("a.pids"));
    assert!(wait_for(LONG, || sup.dump_pids(DUMP).len() == 1));
    // A non-empty folder where the dump was: every rename onto it fails.
    std::fs::remove_file(sup.path(DUMP)).unwrap();
    std::fs::create_dir_all(sup.path(&format!("{DUMP}/blocker"))).unwrap();
    assert!(sup.wait_log("cannot write checkpoint"));
    assert!(pid_alive(a), "tasks keep running");
    let health: serde_json::Value =
        serde_json::from_str(&testkit::http_get(&sup.api(), "/health", &[]).unwrap().body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["checkpoint"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("sup.dump")),
        "{health}"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        sup.log().matches("cannot write checkpoint").count(),
        1,
        "the error is rate-limited"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn the_frozen_v1_dump_is_still_understood() {
    let text = include_str!("data/checkpoint-v1.json");
    let c = supervisor_core::Checkpoint::parse(text).unwrap();
    assert_eq!(c.version, 1);
    assert_eq!(c.tasks.len(), 2);
    assert_eq!(c.tasks[1].port, Some(8001));
    assert_eq!(c.tasks[1].argv[2], "--port=8001");
    assert!(
        supervisor_core::Checkpoint::parse(&text.replace("\"version\": 1", "\"version\": 99"))
            .is_err()
    );
}
