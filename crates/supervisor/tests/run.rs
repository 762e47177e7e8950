//! Running, restarting and stopping real processes.
use crate::common::*;
use std::time::Duration;
use testkit::{pid_alive, wait_for, wait_for_value};

#[test]
fn restarts_a_killed_task_at_once_on_the_next_port() {
    let (first, last) = testkit::free_port_range(5);
    let mut sup = Sup::new();
    let task = serde_json::json!({
        "name": "web",
        "command": ["sh", "-c", "echo $$ > pid.$PORT; exec sleep 1000", "{{port}}"],
        "output": "out/web.out", "error": "out/web.err"
    });
    sup.start(
        &format!("[{task}]"),
        &[&format!("--port-range={first}-{last}")],
    );
    let pid1 = wait_pid_file(&sup.path(&format!("pid.{first}")));
    unsafe { libc::kill(pid1, libc::SIGKILL) };
    let pid2 = wait_pid_file(&sup.path(&format!("pid.{}", first + 1)));
    assert_ne!(pid1, pid2);
    assert!(sup.wait_log("task restarted"));
    let log = sup.log();
    assert!(
        log.contains(&format!(
            "task died task=web pid={pid1} status=\"killed by SIGKILL\""
        )) || log.contains("killed by SIGKILL"),
        "{log}"
    );
    assert!(
        log.contains(&format!("pid={pid2}")) && log.contains(&format!("port={}", first + 1)),
        "{log}"
    );
    assert!(
        sup.path("out/web.out").exists(),
        "output folder created, file opened"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(sup.marked_pids().is_empty());
}

#[test]
fn a_task_that_exits_at_once_goes_yoyo_with_growing_gaps() {
    let mut sup = Sup::new();
    // Each start appends a nanosecond timestamp; the task then exits 3 at once.
    sup.start(
        &list(&[sh_task("crash", "date +%s%N >> starts; exit 3")]),
        &[],
    );
    assert!(wait_for(LONG, || std::fs::read_to_string(
        sup.path("starts")
    )
    .unwrap_or_default()
    .lines()
    .count()
        >= 7));
    let starts: Vec<u128> = std::fs::read_to_string(sup.path("starts"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect();
    // First restart immediate; then 100 ms × 2ⁿ with at most 25% jitter down, so each delay is
    // strictly longer than the one before.
    assert!(gaps[0] < 100.0, "first restart is immediate: {gaps:?}");
    for w in gaps[1..].windows(2) {
        assert!(w[1] > w[0], "gaps must grow: {gaps:?}");
    }
    assert!(
        gaps[4] >= 450.0,
        "fifth gap is at least 0.75 × 800 ms: {gaps:?}"
    );
    let log = sup.log();
    assert_eq!(
        log.matches("yo-yo mode: it keeps dying").count(),
        1,
        "yo-yo is logged once at error level: {log}"
    );
    assert!(log.contains("ERROR"), "{log}");
    assert!(log.contains("status=\"exit code 3\""), "{log}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn sigterm_stops_every_task_and_double_forked_grandchildren() {
    let mut sup = Sup::new();
    let daemonizing = "setsid -f sh -c 'echo $$ > gc.pid; exec sleep 1000'; echo $$ > leader.pid; exec sleep 1000";
    let ignoring = "trap '' TERM; echo $$ > stubborn.pid; while true; do sleep 0.1; done";
    sup.start(
        &list(&[
            sh_task("daemon", daemonizing),
            sh_task("stubborn", ignoring),
            sh_task("plain", "exec sleep 1000"),
        ]),
        &["--stop-timeout=1s"],
    );
    let gc = wait_pid_file(&sup.path("gc.pid"));
    let leader = wait_pid_file(&sup.path("leader.pid"));
    let stubborn = wait_pid_file(&sup.path("stubborn.pid"));
    assert!(pid_alive(gc) && pid_alive(leader) && pid_alive(stubborn));
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    for (what, pid) in [
        ("grandchild", gc),
        ("leader", leader),
        ("TERM-ignoring task", stubborn),
    ] {
        assert!(!pid_alive(pid), "{what} {pid} must be gone after shutdown");
    }
    assert!(
        sup.marked_pids().is_empty(),
        "left running: {:?}",
        sup.marked_pids()
    );
    let log = sup.log();
    assert!(
        log.contains("sending SIGKILL"),
        "the TERM-ignoring task is escalated: {log}"
    );
    assert!(log.contains("all tasks stopped"), "{log}");
}

#[test]
fn a_restart_kills_the_dead_instances_escapees_and_spares_the_replacements() {
    // Every instance double-forks a daemon at once. When a leader dies, its daemon goes with it;
    // the replacement (which is started first) may have forked its own daemon by the time the
    // dead one's are cleaned up, and that one must live: TIMESERVICE_GENERATION tells them apart.
    let mut sup = Sup::new();
    let script = "setsid -f sh -c 'echo \"$$ $TIMESERVICE_GENERATION\" >> escapees; exec sleep 1000'; \
                  echo \"$$ $TIMESERVICE_GENERATION\" >> leaders; exec sleep 1000";
    sup.start(&list(&[sh_task("d", script)]), &["--min-uptime=200ms"]);
    let lines = |file: &str, n: usize| -> Vec<(i32, u64)> {
        wait_for_value(LONG, || {
            let text = std::fs::read_to_string(sup.path(file)).ok()?;
            let v: Vec<(i32, u64)> = text
                .lines()
                .map(|l| {
                    let (pid, generation) = l.split_once(' ').unwrap();
                    (pid.parse().unwrap(), generation.parse().unwrap())
                })
                .collect();
            (v.len() >= n).then_some(v)
        })
        .unwrap_or_else(|| panic!("{file}: fewer than {n} lines; log: {}", sup.log()))
    };
    const ROUNDS: usize = 4;
    for round in 1..=ROUNDS {
        let leaders = lines("leaders", round);
        lines("escapees", round);
        // A second death within --min-uptime would be a quick one (yo-yo); these are not.
        std::thread::sleep(Duration::from_millis(250));
        unsafe { libc::kill(leaders[round - 1].0, libc::SIGKILL) };
    }
    let leaders = lines("leaders", ROUNDS + 1);
    let escapees = lines("escapees", ROUNDS + 1);
    let generations = |v: &[(i32, u64)]| v.iter().map(|(_, g)| *g).collect::<Vec<_>>();
    assert_eq!(
        generations(&leaders),
        generations(&escapees),
        "every escapee carries its leader's generation"
    );
    assert!(
        generations(&leaders).windows(2).all(|w| w[0] < w[1]),
        "generations grow: {leaders:?}"
    );
    let (last, older) = escapees.split_last().unwrap();
    for (pid, generation) in older {
        assert!(
            wait_for(LONG, || !pid_alive(*pid)),
            "the escapee {pid} of dead generation {generation} must be killed"
        );
    }
    // Give a wrong clean-up time to happen, then check the live one is still there.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        pid_alive(last.0),
        "the replacement's escapee {} must live; log: {}",
        last.0,
        sup.log()
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(!pid_alive(last.0));
}

#[test]
fn a_supervisor_started_with_sigchld_ignored_still_sees_its_tasks_die() {
    // With SIGCHLD at SIG_IGN the kernel reaps children itself: a supervisor that kept that
    // disposition would never learn of a death, and nothing would be restarted.
    let mut sup = Sup::new();
    sup.pre_exec = Some(|| unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    });
    sup.start(
        &list(&[sh_task(
            "t",
            "echo $$ > pid.$TIMESERVICE_GENERATION; exec sleep 1000",
        )]),
        &[],
    );
    let pid_of = |generation: &str| wait_pid_file(&sup.path(&format!("pid.{generation}")));
    let first = pid_of("1");
    unsafe { libc::kill(first, libc::SIGKILL) };
    let second = pid_of("2");
    assert_ne!(first, second);
    assert!(sup.wait_log("task restarted"), "{}", sup.log());
    assert!(sup.log().contains("killed by SIGKILL"), "{}", sup.log());
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(!pid_alive(second));
}

#[test]
fn signals_blocked_by_the_supervisors_parent_are_unblocked() {
    // A blocked signal mask survives exec: SIGTERM blocked by the parent would never stop us.
    let mut sup = Sup::new();
    sup.pre_exec = Some(|| unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    });
    sup.start(&list(&[sh_task("t", "exec sleep 1000")]), &[]);
    assert!(sup.wait_log("task started"), "{}", sup.log());
    let status = std::fs::read_to_string(format!("/proc/{}/status", sup.pid())).unwrap();
    let blocked = status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(
        blocked,
        1 << (libc::SIGCHLD - 1),
        "only SIGCHLD is blocked (it is read from a signalfd): {blocked:#x}"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn second_interrupt_kills_at_once() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task(
            "stubborn",
            "trap '' TERM INT; echo $$ > p; while true; do sleep 0.1; done",
        )]),
        &["--stop-timeout=60s"],
    );
    let pid = wait_pid_file(&sup.path("p"));
    sup.signal(libc::SIGINT);
    assert!(sup.wait_log("SIGINT: stopping every task"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pid_alive(pid),
        "a 60 s grace period is honoured after the first interrupt"
    );
    sup.signal(libc::SIGINT);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(!pid_alive(pid));
}

#[test]
fn sighup_reopens_the_log_file() {
    let mut sup = Sup::new();
    sup.start(&list(&[sh_task("s", "exec sleep 1000")]), &[]);
    assert!(sup.wait_log("task started"));
    std::fs::rename(sup.path("sup.log"), sup.path("sup.log.1")).unwrap();
    sup.signal(libc::SIGHUP);
    assert!(
        sup.wait_log("log file reopened"),
        "a new sup.log is written after SIGHUP"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(
        std::fs::read_to_string(sup.path("sup.log.1"))
            .unwrap()
            .contains("task started")
    );
}

#[test]
fn a_program_that_vanishes_is_retried_without_harming_the_others() {
    let mut sup = Sup::new();
    let script = sup.path("prog");
    let write_script = || {
        std::fs::write(
            &script,
            "#!/bin/sh\necho $$ >> ghost.pids\nexec sleep 1000\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_script();
    sup.start(
        &list(&[
            serde_json::json!({"name": "ghost", "command": ["./prog"]}).to_string(),
            sh_task("ok", "echo $$ > ok.pid; exec sleep 1000"),
        ]),
        &[],
    );
    wait_pid_file(&sup.path("ok.pid"));
    let first = wait_pid_file(&sup.path("ghost.pids"));
    // The program is deleted while it runs (an upgrade gone wrong), then its process dies.
    std::fs::remove_file(&script).unwrap();
    unsafe { libc::kill(first, libc::SIGKILL) };
    assert!(sup.wait_log("task could not be started"));
    let log = sup.log();
    assert!(
        log.contains("task=ghost") && log.contains("./prog does not exist"),
        "{log}"
    );
    // Make the program appear again: the backoff retry starts it without anyone's help.
    write_script();
    let ghost = wait_for_value(LONG, || pids_in(&sup.path("ghost.pids")).get(1).copied())
        .expect("restarted");
    assert!(pid_alive(ghost));
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn env_cwd_and_port_variable_reach_the_task() {
    let (first, last) = testkit::free_port_range(2);
    let mut sup = Sup::new();
    std::fs::create_dir(sup.path("work")).unwrap();
    let task = serde_json::json!({
        "name": "envy",
        "command": ["sh", "-c", "echo \"$GREETING $PORT $1 $(pwd)\" > seen; exec sleep 1000", "sh", "{{port}}"],
        "env": {"GREETING": "hello"},
        "cwd": "work"
    });
    sup.start(
        &format!("[{task}]"),
        &[&format!("--port-range={first}-{last}")],
    );
    let seen = wait_written(&sup.path("work/seen"));
    let want = format!(
        "hello {first} {first} {}",
        sup.path("work").canonicalize().unwrap().display()
    );
    assert_eq!(seen.trim(), want);
    // Only fds 0, 1 and 2 are inherited.
    let pid = wait_for_value(LONG, || {
        testkit::pids_with_env("TIMESERVICE_TASK", "envy")
            .into_iter()
            .find(|p| {
                std::fs::read_link(format!("/proc/{p}/exe"))
                    .map(|e| e.ends_with("sleep"))
                    .unwrap_or(false)
            })
    })
    .unwrap();
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds: Vec<u32> = fds.iter().map(|f| f.parse().unwrap()).collect();
    fds.sort();
    assert_eq!(
        fds,
        vec![0, 1, 2],
        "the task inherits only stdin, stdout, stderr"
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn a_task_starts_with_no_signal_blocked_or_ignored() {
    // The supervisor blocks SIGCHLD (it reads child deaths from a signalfd) and ignores SIGPIPE
    // (Rust does); none of that may reach a task. `sigs.txt` is written by `grep`, a child of
    // the task's shell, which passes its own mask and ignored set on.
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task(
            "sigs",
            "grep -E '^Sig(Blk|Ign)' /proc/self/status > sigs.tmp; mv sigs.tmp sigs.txt; exec sleep 1000",
        )]),
        &[],
    );
    let text = wait_for_value(LONG, || std::fs::read_to_string(sup.path("sigs.txt")).ok()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        let mask = line.split_whitespace().nth(1).unwrap();
        assert_eq!(
            u64::from_str_radix(mask, 16).unwrap(),
            0,
            "no signal blocked or ignored: {text}"
        );
    }
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

#[test]
fn a_bare_program_name_is_looked_up_in_the_tasks_own_path() {
    let mut sup = Sup::new();
    std::fs::create_dir(sup.path("tools")).unwrap();
    let tool = sup.path("tools/mytool");
    std::fs::write(&tool, "#!/bin/sh\necho $$ > tool.pid\nexec sleep 1000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", sup.path("tools").display());
    let task = serde_json::json!({"name": "t", "command": ["mytool"], "env": {"PATH": path}});
    sup.start(&format!("[{task}]"), &[]);
    let pid = wait_pid_file(&sup.path("tool.pid"));
    assert!(pid_alive(pid));
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}
