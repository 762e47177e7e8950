//! Hostile tasks: programs that daemonize, ignore SIGTERM, get SIGSTOPped, flood their output,
//! close their descriptors, exit before they are recorded, crash in a loop, keep forking while
//! being stopped; and a stranger that really owns a pid recorded in the dump.
use crate::chaos::proc_util::*;
use crate::common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use testkit::{Spawner, pid_alive, wait_for, wait_for_value};

const DUMP: &str = "run/sup.dump";

fn dump_args(extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=200ms".to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits until `path` holds at least `n` pids; returns them.
fn wait_pids(path: &Path, n: usize) -> Vec<i32> {
    wait_for_value(LONG, || {
        let v = pids_in(path);
        (v.len() >= n).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} never held {n} pids: {:?}",
            path.display(),
            pids_in(path)
        )
    })
}

fn alive_of(path: &Path) -> Vec<i32> {
    pids_in(path)
        .into_iter()
        .filter(|p| pid_alive(*p))
        .collect()
}

/// SIGKILLs the supervisor and reaps it; its tasks keep running.
fn crash(sup: &mut Sup) {
    sup.signal(libc::SIGKILL);
    assert_eq!(sup.wait_exit(), None, "killed by a signal");
}

fn stop(sup: &mut Sup) {
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0), "a clean stop exits 0");
    assert!(
        sup.marked_pids().is_empty(),
        "left running: {:?}",
        sup.marked_pids()
    );
}

/// A double fork with `setsid` in the middle, the grandchild ignoring SIGTERM.
const DAEMONIZE: &str = "(setsid sh -c 'trap \"\" TERM; echo $$ >> gc.pids; exec sleep 1000' &); echo $$ >> leader.pids; exec sleep 1000";

#[test]
fn a_daemonizing_task_is_stopped_at_recovery_and_at_shutdown() {
    let mut sup = Sup::new();
    let args = dump_args(&["--stop-timeout=1s"]);
    let tasks = list(&[sh_task("daemon", DAEMONIZE)]);
    sup.start(&tasks, &strs(&args));
    let gc = wait_pids(&sup.path("gc.pids"), 1)[0];
    let leader = wait_pids(&sup.path("leader.pids"), 1)[0];
    let g = stat(gc).unwrap();
    assert_eq!(
        (g.pid, g.sid),
        (g.pgid, gc),
        "the grandchild leads its own session"
    );
    assert_eq!(
        g.ppid,
        sup.pid(),
        "the escaped grandchild was reparented to the subreaper"
    );

    crash(&mut sup);
    assert!(
        pid_alive(gc) && pid_alive(leader),
        "tasks outlive a SIGKILLed supervisor"
    );
    sup.start(&tasks, &strs(&args));
    assert!(sup.wait_log_count("recovery:", 2));
    assert!(
        !pid_alive(gc) && !pid_alive(leader),
        "recovery stopped the leader and its escaped grandchild: {}",
        sup.log()
    );
    wait_pids(&sup.path("gc.pids"), 2);
    wait_pids(&sup.path("leader.pids"), 2);
    assert_eq!(alive_of(&sup.path("gc.pids")).len(), 1);
    assert_eq!(alive_of(&sup.path("leader.pids")).len(), 1);

    stop(&mut sup);
    assert!(
        alive_of(&sup.path("gc.pids")).is_empty() && alive_of(&sup.path("leader.pids")).is_empty()
    );
}

/// When a task's leader dies on its own, the supervisor kills what is left of its process group
/// (it belongs to a dead instance). A grandchild that escaped the group with `setsid` is left
/// running, and every restart adds one more: after N deaths, N stray daemons.
#[test]
fn a_dead_leaders_escaped_grandchild_is_stopped_with_it() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("daemon", DAEMONIZE)]),
        &["--stop-timeout=1s"],
    );
    let gc = wait_pids(&sup.path("gc.pids"), 1)[0];
    let leader = wait_pids(&sup.path("leader.pids"), 1)[0];
    unsafe { libc::kill(leader, libc::SIGKILL) };
    wait_pids(&sup.path("gc.pids"), 2);
    assert!(
        wait_for(LONG, || !pid_alive(gc)),
        "the dead instance's grandchild {gc} still runs beside the new one"
    );
    assert_eq!(alive_of(&sup.path("gc.pids")).len(), 1);
    stop(&mut sup);
}

#[test]
fn a_task_ignoring_sigterm_is_killed_after_the_grace_period() {
    let mut sup = Sup::new();
    let args = dump_args(&["--stop-timeout=2s"]);
    let tasks = list(&[sh_task(
        "stubborn",
        "trap '' TERM; echo $$ >> p.pids; exec sleep 1000",
    )]);
    sup.start(&tasks, &strs(&args));
    let p1 = wait_pids(&sup.path("p.pids"), 1)[0];

    // At recovery: TERM, the grace period, KILL.
    crash(&mut sup);
    let t = Instant::now();
    sup.start(&tasks, &strs(&args));
    assert!(wait_for(LONG, || !pid_alive(p1)));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "the leftover got its grace period: {took:?}"
    );
    wait_pids(&sup.path("p.pids"), 2);

    // At shutdown.
    let p2 = alive_of(&sup.path("p.pids"));
    assert_eq!(p2.len(), 1);
    std::thread::sleep(Duration::from_millis(300)); // past min-uptime noise; not synchronisation
    let t = Instant::now();
    sup.signal(libc::SIGTERM);
    assert!(
        !wait_for(Duration::from_millis(1500), || !pid_alive(p2[0])),
        "SIGTERM alone must not stop it"
    );
    assert_eq!(sup.wait_exit(), Some(0));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "shutdown waited for the grace period: {took:?}"
    );
    assert!(!pid_alive(p2[0]));
    assert!(
        sup.log().contains("task=stubborn")
            && sup
                .log()
                .contains("did not stop after SIGTERM; sending SIGKILL"),
        "{}",
        sup.log()
    );
    assert!(sup.marked_pids().is_empty());
}

fn sigstop(pid: i32) {
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    assert!(
        wait_for(LONG, || stat(pid).is_some_and(|p| p.state == 'T')),
        "{pid} stopped"
    );
}

#[test]
fn a_sigstopped_task_is_still_stopped_at_recovery_and_at_shutdown() {
    let mut sup = Sup::new();
    let args = dump_args(&["--stop-timeout=3s"]);
    let tasks = list(&[
        sh_task("frozen", "echo $$ >> f.pids; exec sleep 1000"),
        sh_task(
            "frozen-stubborn",
            "trap '' TERM; echo $$ >> s.pids; exec sleep 1000",
        ),
    ]);
    sup.start(&tasks, &strs(&args));
    let f = wait_pids(&sup.path("f.pids"), 1)[0];
    let s = wait_pids(&sup.path("s.pids"), 1)[0];
    sigstop(f);
    sigstop(s);

    crash(&mut sup);
    let t = Instant::now();
    sup.start(&tasks, &strs(&args));
    // A stopped process acts on TERM only once continued: the supervisor sends CONT too.
    assert!(
        wait_for(LONG, || !pid_alive(f)),
        "stopped leftover {f} terminated"
    );
    let f_took = t.elapsed();
    assert!(
        f_took < Duration::from_millis(2500),
        "TERM+CONT ends it before the grace period: {f_took:?}"
    );
    assert!(
        wait_for(LONG, || !pid_alive(s)),
        "stopped, TERM-ignoring leftover {s} killed"
    );
    let f2 = wait_pids(&sup.path("f.pids"), 2)[1];
    let s2 = wait_pids(&sup.path("s.pids"), 2)[1];
    sigstop(f2);
    sigstop(s2);

    let t = Instant::now();
    sup.signal(libc::SIGTERM);
    assert!(wait_for(LONG, || !pid_alive(f2)));
    let f_took = t.elapsed();
    assert!(
        f_took < Duration::from_millis(2500),
        "the stopped task got TERM and CONT, not a wait for KILL: {f_took:?}"
    );
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(!pid_alive(s2), "the stopped TERM-ignoring task was killed");
    assert!(sup.log().contains("sending SIGKILL"), "{}", sup.log());
    for l in sup.log().lines().filter(|l| l.contains("sending SIGKILL")) {
        assert!(
            l.contains("task=frozen-stubborn"),
            "only the TERM-ignoring task needs KILL: {l}"
        );
    }
    assert!(sup.marked_pids().is_empty());
}

#[test]
fn a_task_flooding_its_output_leaves_the_supervisor_unaffected() {
    let mut sup = Sup::new();
    // Writes as fast as it can, truncating now and then so the disk does not fill up.
    let flood = serde_json::json!({
        "name": "flood",
        "command": ["sh", "-c", "while [ ! -e stop-flood ]; do yes | head -c 20000000; : > out/flood.out; done; exec sleep 1000"],
        "output": "out/flood.out", "error": "out/flood.out"
    });
    let tasks = format!(
        "[{flood},{}]",
        sh_task("v", "echo $$ >> v.pids; exec sleep 1000")
    );
    sup.start(&tasks, &["--min-uptime=100ms"]);
    let sup_pid = sup.pid();
    wait_pids(&sup.path("v.pids"), 1);
    assert!(wait_for(LONG, || std::fs::metadata(
        sup.path("out/flood.out")
    )
    .is_ok_and(|m| m.len() > 1_000_000)));
    let (rss0, cpu0, fds0) = (
        rss_kib(sup_pid),
        stat(sup_pid).unwrap().cpu,
        fd_count(sup_pid),
    );
    let t0 = Instant::now();
    let mut kills = 0;
    while t0.elapsed() < Duration::from_secs(3) || kills < 3 {
        let pids = pids_in(&sup.path("v.pids"));
        let last = *pids.last().unwrap();
        assert!(pid_alive(last));
        let t = Instant::now();
        unsafe { libc::kill(last, libc::SIGKILL) };
        let next = wait_pids(&sup.path("v.pids"), pids.len() + 1);
        assert!(pid_alive(*next.last().unwrap()));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "restart took {:?} during the flood",
            t.elapsed()
        );
        kills += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (stat(sup_pid).unwrap().cpu - cpu0) as f64 / ticks_per_sec() as f64;
    let rss1 = rss_kib(sup_pid);
    // The supervisor never reads task output: its CPU goes to the restarts only.
    assert!(
        cpu / wall < 0.10,
        "supervisor used {cpu:.2}s of CPU in {wall:.1}s of flood"
    );
    assert!(
        rss1 < rss0 + 8 * 1024,
        "supervisor RSS grew from {rss0} KiB to {rss1} KiB"
    );
    // Every restart after the first death is immediate, as the supervisor measured it.
    let latencies: Vec<f64> = sup
        .log()
        .lines()
        .filter(|l| l.contains("task restarted") && l.contains("task=v "))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("since_death="))?
                .strip_suffix("ms")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(latencies.len(), kills, "{}", sup.log());
    assert!(
        latencies.iter().all(|ms| *ms < 1000.0),
        "restart latencies under flood: {latencies:?}"
    );
    std::fs::write(sup.path("stop-flood"), b"").unwrap();
    assert!(
        wait_for(LONG, || fd_count(sup_pid) == fds0),
        "supervisor fds: {} then {}",
        fds0,
        fd_count(sup_pid)
    );
    stop(&mut sup);
}

#[test]
fn tasks_closing_or_redirecting_their_descriptors_change_nothing() {
    let mut sup = Sup::new();
    let tasks = list(&[
        sh_task(
            "closer",
            "echo $$ >> closer.pids; exec 0<&- 1>&- 2>&- sleep 1000",
        ),
        sh_task(
            "redirector",
            "echo $$ >> redir.pids; exec </dev/zero >/dev/null 2>&1 3>/dev/null sleep 1000",
        ),
    ]);
    sup.start(&tasks, &["--min-uptime=1ms", "--stop-timeout=2s"]);
    let sup_pid = sup.pid();
    let closer = wait_pids(&sup.path("closer.pids"), 1)[0];
    wait_pids(&sup.path("redir.pids"), 1);
    assert!(
        wait_for(LONG, || fd_count(closer) == 0),
        "the task closed its standard descriptors"
    );
    // Let start-up settle (no spawn in flight), then count the supervisor's descriptors.
    assert!(wait_for(LONG, || children(sup_pid).len() == 2));
    let fds0 = fd_count(sup_pid);
    for round in 0..10 {
        for f in ["closer.pids", "redir.pids"] {
            let pids = pids_in(&sup.path(f));
            unsafe { libc::kill(*pids.last().unwrap(), libc::SIGKILL) };
            wait_pids(&sup.path(f), pids.len() + 1);
        }
        assert_eq!(pids_in(&sup.path("closer.pids")).len(), round + 2);
    }
    assert_eq!(alive_of(&sup.path("closer.pids")).len(), 1);
    assert_eq!(alive_of(&sup.path("redir.pids")).len(), 1);
    // At most as many as before (a descriptor open for a moment when `fds0` was read, such as
    // a cgroup file being read, may be closed by now).
    assert!(
        wait_for(LONG, || fd_count(sup_pid) <= fds0),
        "20 restarts leaked descriptors in the supervisor: {fds0} then {}",
        fd_count(sup_pid)
    );
    assert!(
        wait_for(LONG, || children(sup_pid)
            .iter()
            .all(|p| stat(*p).is_some_and(|s| !s.zombie()))),
        "every dead task is reaped"
    );
    stop(&mut sup);
}

/// `(pid, status)` of every `task died` line of `task`, and the pids of its start lines.
fn deaths_and_starts(log: &str, task: &str) -> (Vec<(i32, String)>, Vec<i32>) {
    let field = |l: &str, k: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .map(str::to_string)
    };
    let needle = format!("task={task} ");
    let mut deaths = Vec::new();
    let mut starts = Vec::new();
    for l in log.lines().filter(|l| l.contains(&needle)) {
        let Some(pid) = field(l, "pid=").and_then(|p| p.parse().ok()) else {
            continue;
        };
        if l.contains("task died") {
            let status = l
                .split("status=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string();
            deaths.push((pid, status));
        } else if l.contains("task started") || l.contains("task restarted") {
            starts.push(pid);
        }
    }
    (deaths, starts)
}

#[test]
fn tasks_exiting_before_they_are_recorded_are_still_accounted_for() {
    let mut sup = Sup::new();
    let tasks = list(&[
        serde_json::json!({"name": "t", "command": ["true"]}).to_string(),
        sh_task("e7", "exit 7"),
    ]);
    let args = dump_args(&["--log-level=debug"]);
    sup.start(&tasks, &strs(&args));
    let sup_pid = sup.pid();
    for (task, status) in [("t", "exit code 0"), ("e7", "exit code 7")] {
        // Every start is followed by exactly one death line for the same pid, whatever the race
        // between the exit and the supervisor's bookkeeping.
        let ok = wait_for(LONG, || {
            let (deaths, starts) = deaths_and_starts(&sup.log(), task);
            starts.len() >= 5 && starts.iter().all(|p| deaths.iter().any(|(d, _)| d == p))
        });
        let (deaths, starts) = deaths_and_starts(&sup.log(), task);
        assert!(
            ok,
            "{task}: starts {starts:?}, deaths {deaths:?}\n{}",
            sup.log()
        );
        for p in &starts {
            assert_eq!(
                deaths.iter().filter(|(d, _)| d == p).count(),
                1,
                "{task}: pid {p} died once"
            );
        }
        assert!(
            deaths.iter().all(|(_, s)| s == status),
            "{task}: {deaths:?}"
        );
    }
    let log = sup.log();
    assert_eq!(
        log.matches("yo-yo mode: it keeps dying").count(),
        2,
        "both tasks went yo-yo, each logged once: {log}"
    );
    assert!(
        wait_for(LONG, || children(sup_pid)
            .iter()
            .all(|p| stat(*p).is_some_and(|s| !s.zombie()))),
        "no zombie is left unreaped"
    );
    // The dump lists no process that is gone, once the death is checkpointed (a change is
    // written within the 100 ms coalescing window, so a read right after a death may still
    // show the pid; give it a few windows).
    let dead_in_dump = || -> Vec<i32> {
        let d = sup.dump(DUMP).unwrap();
        d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["pid"].as_i64().unwrap() as i32)
            .filter(|pid| !(pid_alive(*pid) || stat(*pid).is_some_and(|s| s.ppid == sup_pid)))
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(2), || dead_in_dump().is_empty()),
        "dump lists dead pids {:?}",
        dead_in_dump()
    );
    stop(&mut sup);
}

#[test]
fn a_leader_that_exits_at_once_takes_its_group_along() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task(
            "leaky",
            "sleep 1000 & echo $! >> kids.pids; exit 0",
        )]),
        &[],
    );
    let mut max_alive = 0;
    let ok = wait_for(LONG, || {
        let kids = pids_in(&sup.path("kids.pids"));
        let alive = kids.iter().filter(|p| pid_alive(**p)).count();
        max_alive = max_alive.max(alive);
        kids.len() >= 4 && alive == 0
    });
    assert!(
        ok,
        "kids of dead leaders are killed: {:?}",
        alive_of(&sup.path("kids.pids"))
    );
    assert!(
        max_alive <= 1,
        "at most the newest instance's child lives: saw {max_alive}"
    );
    stop(&mut sup);
}

#[test]
fn a_crash_loop_costs_little_cpu_logs_little_and_ends_by_itself() {
    let secs: u64 = std::env::var("CRASHLOOP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut sup = Sup::new();
    let task = sh_task(
        "crashy",
        "if [ -e healthy ]; then echo $$ > healthy.pid; exec sleep 1000; fi; echo $$ >> crash.pids; exit 1",
    );
    sup.start(&list(&[task]), &[&format!("--dumpfile={DUMP}")]);
    let sup_pid = sup.pid();
    wait_pids(&sup.path("crash.pids"), 3);
    let (cpu0, rss0, lines0) = (
        stat(sup_pid).unwrap().cpu,
        rss_kib(sup_pid),
        sup.log().lines().count(),
    );
    let t0 = Instant::now();
    // Measuring a duration, not waiting for an event.
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (stat(sup_pid).unwrap().cpu - cpu0) as f64 / ticks_per_sec() as f64;
    let crashes = pids_in(&sup.path("crash.pids")).len();
    let log = sup.log();
    let lines = log.lines().count() - lines0;
    eprintln!(
        "crash loop: {crashes} crashes, {cpu:.3}s CPU in {wall:.1}s, {lines} new log lines, RSS {rss0} → {} KiB",
        rss_kib(sup_pid)
    );
    assert!(
        cpu <= 0.01 * wall,
        "supervisor CPU {cpu:.3}s in {wall:.1}s exceeds 1% of a core"
    );
    // At info level: the first deaths and restarts, one yo-yo error, then a reminder at most
    // every 30 s.
    let allowed = 8 + 2 * secs.div_ceil(30) as usize;
    let task_lines = log.lines().filter(|l| l.contains("task=crashy ")).count();
    assert!(
        task_lines <= allowed,
        "{task_lines} log lines about the crash loop: {log}"
    );
    assert!(lines <= allowed, "{lines} log lines during the loop");
    assert_eq!(
        log.matches("yo-yo mode: it keeps dying").count(),
        1,
        "{log}"
    );
    assert!(
        rss_kib(sup_pid) < rss0 + 4 * 1024,
        "RSS grew from {rss0} KiB"
    );
    assert!(crashes >= 6, "it kept retrying: {crashes} starts");

    // The fault goes away: the task recovers by itself at the next retry (30 s at most).
    std::fs::write(sup.path("healthy"), b"").unwrap();
    let healthy = wait_for_value(Duration::from_secs(45), || {
        read_pid(&sup.path("healthy.pid"))
    });
    let healthy = healthy.expect("the task came back by itself once it stopped crashing");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(pid_alive(healthy), "and stays up");
    stop(&mut sup);
}

/// A leftover that keeps forking while recovery stops it: children forked after recovery
/// looked at `/proc` must not survive.
#[test]
fn a_leftover_forking_during_recovery_leaves_no_descendant() {
    let mut sup = Sup::new();
    let args = dump_args(&["--stop-timeout=1s"]);
    let tasks = list(&[sh_task(
        "breeder",
        "trap '' TERM; echo $$ >> b.pids; while :; do sleep 1000 & sleep 0.05; done",
    )]);
    sup.start(&tasks, &strs(&args));
    let old_leader = wait_pids(&sup.path("b.pids"), 1)[0];
    let mark = sup.spawner.mark().to_string();
    let breeders = move || -> Vec<Proc> {
        procs_with_env("TESTKIT_MARK", &mark)
            .into_iter()
            .filter(|p| env_var(p.pid, "TIMESERVICE_TASK").as_deref() == Some("breeder"))
            .collect()
    };
    assert!(wait_for(LONG, || breeders().len() > 5));
    crash(&mut sup);
    sup.start(&tasks, &strs(&args));
    assert!(sup.wait_log_count("recovery:", 2));
    let new_leader = wait_pids(&sup.path("b.pids"), 2)[1];
    assert!(!pid_alive(old_leader));
    // Everything of the task now descends from the new leader.
    let strays = || -> Vec<Proc> {
        breeders()
            .into_iter()
            .filter(|p| p.pid != new_leader && p.ppid != new_leader)
            .collect()
    };
    let s = strays();
    assert!(
        s.is_empty(),
        "{} processes of the old instance survived recovery: {s:?}\n{}",
        s.len(),
        sup.log()
    );
    stop(&mut sup);
}

/// Real pid reuse: inside a private pid namespace (where `ns_last_pid` can be driven), the pid
/// of a recorded task is handed to a stranger before the supervisor comes back.
#[test]
fn a_stranger_that_reuses_a_recorded_pid_is_never_signalled() {
    match pid_namespace_dir() {
        Some(dir) => pidns_inner(&dir),
        None => {
            in_pid_namespace(
                "hostile::a_stranger_that_reuses_a_recorded_pid_is_never_signalled",
                &["sup1.log", "sup2.log"],
            );
        }
    }
}

/// Runs as pid 1 of a fresh pid namespace.
fn pidns_inner(dir: &Path) {
    assert_eq!(std::process::id(), 1, "runs as the namespace's init");
    let spawner = Spawner::new();
    let tasks = list(&[sh_task("victim", "echo $$ > victim.pid; exec sleep 1000")]);
    let run = |n: u32| -> Child {
        let mut cmd = spawner.bin("supervisor");
        cmd.current_dir(dir)
            .args([
                &format!("--dumpfile={DUMP}"),
                "--checkpoint-interval=100ms",
                &format!("--log=sup{n}.log"),
                "--listen=none",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut c = cmd.spawn().unwrap();
        let _ = c.stdin.take().unwrap().write_all(tasks.as_bytes());
        c
    };
    let mut sup1 = run(1);
    let victim = wait_pid_file(&dir.join("victim.pid"));
    let recorded = wait_for_value(LONG, || {
        let d = supervisor_core::Checkpoint::parse(&std::fs::read_to_string(dir.join(DUMP)).ok()?)
            .ok()?;
        d.tasks.into_iter().find(|t| t.pid == victim as u32)
    })
    .expect("the victim is recorded in the dump");
    sup1.kill().unwrap();
    sup1.wait().unwrap();
    // The victim is now an orphan, reparented to us: kill it and reap it, freeing its pid.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let mut st = 0;
    assert_eq!(unsafe { libc::waitpid(victim, &mut st, 0) }, victim);
    let start = recorded.start_time.unwrap();
    assert!(wait_for(LONG, || now_ticks() > start + 2), "time moves on");
    let mut stranger = stranger_with_pid(&spawner, victim);
    let s = stat(victim).unwrap();
    assert_ne!(s.start, start, "same pid, another start time");

    let mut sup2 = run(2);
    let log2 = || std::fs::read_to_string(dir.join("sup2.log")).unwrap_or_default();
    assert!(
        wait_for(LONG, || log2().contains("task started")),
        "{}",
        log2()
    );
    assert!(log2().contains("pid reused"), "{}", log2());
    assert!(log2().contains("stopped=0"), "{}", log2());
    let check = |stranger: &mut Child, when: &str| {
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "stranger killed {when}"
        );
        assert!(
            stat(victim).is_some_and(|p| p.start == s.start && p.state != 'T'),
            "stranger touched {when}"
        );
    };
    check(&mut stranger, "at recovery");
    unsafe { libc::kill(sup2.id() as i32, libc::SIGTERM) };
    let status = wait_for_value(LONG, || sup2.try_wait().unwrap()).expect("supervisor stops");
    assert_eq!(status.code(), Some(0));
    check(&mut stranger, "at shutdown");
    std::fs::write(dir.join("result"), "ok").unwrap();
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}
