//! Tasks tracked by cgroup (and, with `--no-cgroups`, by process group and markers): whatever
//! a task's processes do to their group, session, environment or title, a restart, a stop, a
//! shutdown and a recovery leave none of them behind, and never touch anything else.
use crate::common::*;
use procio::Pinned;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{pid_alive, wait_for, wait_for_value};

const DUMP: &str = "run/sup.dump";

/// True where the supervisor will track by cgroup (a writable v2 hierarchy, as root). Under
/// `CI=true` a machine without one fails the tests that need it instead of skipping them.
fn cgroups_here() -> bool {
    if without_cgroups() {
        eprintln!("skipped: this pass runs every supervisor with --no-cgroups");
        return false;
    }
    let usable = procio::cgroup::Hierarchy::find()
        .ok()
        .flatten()
        .and_then(|h| h.of_pid(std::process::id() as i32).ok())
        .is_some_and(|own| procio::cgroup::writable(&own).is_ok());
    if !usable {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no writable cgroup v2 hierarchy: the cgroup tests cannot run"
        );
        eprintln!("skipped: no writable cgroup v2 hierarchy");
    }
    usable
}

/// Kills, on drop, every process whose pid a `retitle` daemon wrote to `file` (they rewrite
/// their environment, so testkit's marker cannot find them), checked by their command line.
struct Recorded(std::path::PathBuf);

impl Drop for Recorded {
    fn drop(&mut self) {
        for pid in pids_in(&self.0) {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(7).any(|w| w == b"retitle"));
            if let (true, Ok(Some(p))) = (ours, Pinned::open_now(pid)) {
                let _ = p.signal(libc::SIGKILL);
            }
        }
    }
}

/// A task running the `retitle` test daemon: it overwrites its environment with a process
/// title and forks `workers` that do the same, in sessions of their own.
fn retitle_task(name: &str, pidfile: &str, workers: usize) -> String {
    let bin = testkit::bin_path("retitle");
    serde_json::json!({"name": name, "command": [bin, pidfile, format!("--workers={workers}"), "--setsid"]})
        .to_string()
}

fn alive(path: &Path) -> Vec<i32> {
    alive_in(path)
}

/// Every recorded pid with its state, for failure messages.
fn states(path: &Path) -> Vec<String> {
    pids_in(path)
        .into_iter()
        .map(|p| {
            let st = procio::procfs::stat(p)
                .map(|s| format!("{} ppid {} pgid {}", s.state, s.ppid, s.pgid))
                .unwrap_or_else(|_| "gone".into());
            format!("{p}: {st}")
        })
        .collect()
}

fn get(api: &str, path: &str) -> testkit::Response {
    testkit::http_get(api, path, &[]).unwrap()
}

fn post(api: &str, path: &str) -> testkit::Response {
    testkit::http_request("POST", api, path, &[], None).unwrap()
}

/// The cgroup (v2 path) a process is in.
fn cgroup_of(pid: i32) -> String {
    procio::procfs::cgroup_v2(pid).unwrap_or_default()
}

#[test]
fn a_tasks_processes_are_in_a_cgroup_of_their_own_from_their_first_instruction() {
    if !cgroups_here() {
        return;
    }
    let mut sup = Sup::new();
    // The task reads its own cgroup as its very first act (sh execs cat).
    sup.start(
        &list(&[
            sh_task("a", "cat /proc/self/cgroup > a.cg; sleep 1000 & echo $! > a.child; echo $$ >> a.pids; wait"),
            sh_task("b", "echo $$ >> b.pids; exec sleep 1000"),
        ]),
        &[],
    );
    let a = wait_pid_file(&sup.path("a.pids"));
    let b = wait_pid_file(&sup.path("b.pids"));
    let child = wait_pid_file(&sup.path("a.child"));
    let first = wait_for_value(LONG, || std::fs::read_to_string(sup.path("a.cg")).ok()).unwrap();
    let line = first
        .lines()
        .find(|l| l.starts_with("0::"))
        .unwrap()
        .to_string();
    let (ca, cb) = (cgroup_of(a), cgroup_of(b));
    assert!(
        line.ends_with(&format!("/{ca}")) || line == format!("0::/{ca}"),
        "{line} vs {ca}"
    );
    assert!(ca.contains("timeservice@") && ca.ends_with("/a"), "{ca}");
    assert!(cb.ends_with("/b"), "{cb}");
    assert_ne!(ca, cb, "each task its own");
    assert_eq!(cgroup_of(child), ca, "children inherit it");
    let health = get(&sup.api(), "/health");
    let h: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(h["tracking"]["mode"], "cgroup", "{h}");
    // A restart after a death that left nothing behind: the next instance reuses the cgroup.
    let mount = procio::cgroup::Hierarchy::find().unwrap().unwrap();
    unsafe { libc::kill(b, libc::SIGKILL) };
    let b2 = wait_for_value(LONG, || pids_in(&sup.path("b.pids")).get(1).copied()).unwrap();
    assert_eq!(cgroup_of(b2), cb, "an emptied cgroup is reused");
    // A death with remains: they are killed (cgroup.kill) before the next instance starts, in
    // a cgroup that holds nothing of the old one (a killed cgroup is never reused).
    unsafe { libc::kill(a, libc::SIGKILL) };
    let a2 = wait_for_value(LONG, || pids_in(&sup.path("a.pids")).get(1).copied()).unwrap();
    assert!(!pid_alive(child), "its child went with it");
    let ca2 = cgroup_of(a2);
    assert!(
        ca2.starts_with(ca.rsplit_once('/').unwrap().0),
        "{ca2} vs {ca}"
    );
    let members = procio::cgroup::procs(&mount.path_of(&ca2)).unwrap();
    assert!(
        members.contains(&a2) && !members.contains(&a) && !members.contains(&child),
        "nothing of the dead instance: {members:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pid_alive(a2),
        "the new instance keeps running: {}",
        sup.log()
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    let root = mount.path_of(&ca);
    assert!(
        !root.parent().unwrap().exists(),
        "the instance's folder is removed at exit"
    );
}

/// A daemon that rewrites its title over its environment and forks workers into sessions of
/// their own: neither markers nor process groups find them; their cgroup does.
#[test]
fn a_daemon_that_rewrites_its_environment_is_fully_stopped_at_restart_stop_shutdown_and_recovery() {
    if !cgroups_here() {
        return;
    }
    let mut sup = Sup::new();
    let _guard = Recorded(sup.path("d.pids"));
    let args = [
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=100ms".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sup.start(&list(&[retitle_task("d", "d.pids", 3)]), &args);
    let pidfile = sup.path("d.pids");
    let count_alive = || alive(&pidfile).len();
    assert!(
        wait_for(LONG, || count_alive() == 4),
        "master and 3 workers"
    );
    let first: Vec<i32> = alive(&pidfile);
    let env = std::fs::read(format!("/proc/{}/environ", first[0])).unwrap();
    assert!(
        !env.windows(22).any(|w| w == b"TIMESERVICE_SUPERVISOR"),
        "the marker really is gone from the environment"
    );

    // Restart (ctl): every process of the old instance goes, a fresh four come.
    let api = sup.api();
    let r = post(&api, "/tasks/d/restart");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        wait_for(LONG, || pids_in(&pidfile).len() == 8 && count_alive() == 4),
        "{:?}",
        alive(&pidfile)
    );
    assert!(
        first.iter().all(|p| !pid_alive(*p)),
        "old workers gone at restart"
    );

    // Death of the master alone (SIGKILL): its workers are the remains, killed before the
    // restart.
    let master = pids_in(&pidfile)[4];
    unsafe { libc::kill(master, libc::SIGKILL) };
    assert!(
        wait_for(LONG, || pids_in(&pidfile).len() == 12 && count_alive() == 4),
        "{:?}",
        states(&pidfile)
    );

    // Stop: nothing left.
    let r = post(&api, "/tasks/d/stop");
    assert_eq!(r.status, 202);
    assert!(
        wait_for(LONG, || count_alive() == 0),
        "{:?}",
        states(&pidfile)
    );
    let stopped = || get(&api, "/tasks/d").body.contains("\"state\":\"stopped\"");
    assert!(wait_for(LONG, stopped), "{}", get(&api, "/tasks/d").body);
    let r = post(&api, "/tasks/d/start");
    assert_eq!(r.status, 202);
    assert!(wait_for(LONG, || count_alive() == 4));

    // Recovery after the supervisor's SIGKILL: the new supervisor finds them by cgroup.
    let before = alive(&pidfile);
    sup.signal(libc::SIGKILL);
    assert_eq!(sup.wait_exit(), None);
    assert!(
        before.iter().all(|p| pid_alive(*p)),
        "tasks outlive the supervisor"
    );
    sup.start(&list(&[retitle_task("d", "d.pids", 3)]), &args);
    assert!(
        wait_for(LONG, || before.iter().all(|p| !pid_alive(*p))
            && count_alive() == 4),
        "{:?}\n{}",
        states(&pidfile),
        sup.log()
    );

    // Shutdown: nothing left.
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert_eq!(count_alive(), 0, "{:?}", alive(&pidfile));
}

/// A grandchild that leaves the session (`setsid`) and clears its environment (`env -i`) is
/// stopped by `ctl stop`, by shutdown and by recovery.
#[test]
fn an_env_i_setsid_grandchild_is_stopped_by_stop_shutdown_and_recovery() {
    if !cgroups_here() {
        return;
    }
    let mut sup = Sup::new();
    let gc = sup.path("gc.pids");
    let script = format!(
        "setsid -f env -i sh -c 'echo $$ >> {}; exec sleep 1000'; echo $$ >> t.pids; exec sleep 1000",
        gc.display()
    );
    let tasks = list(&[sh_task("t", &script)]);
    let args = [
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=100ms".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let kill_gcs = || {
        for p in alive_in(&gc) {
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    };
    sup.start(&tasks, &args);
    let g1 = wait_pid_file(&gc);
    let env = std::fs::read(format!("/proc/{g1}/environ")).unwrap();
    assert!(
        !env.windows(7).any(|w| w == b"TESTKIT"),
        "no marker of any kind"
    );
    // ctl stop
    let r = post(&sup.api(), "/tasks/t/stop");
    assert_eq!(r.status, 202);
    let stopped = wait_for(LONG, || !pid_alive(g1));
    if !stopped {
        kill_gcs();
    }
    assert!(stopped, "ctl stop reached the grandchild");
    // shutdown (the grandchild is gone a moment before the supervisor has seen its cgroup
    // empty; until then the task is still stopping and a start is refused with 409)
    assert!(wait_for(LONG, || post(&sup.api(), "/tasks/t/start").status == 202));
    let g2 = wait_for_value(LONG, || pids_in(&gc).get(1).copied()).unwrap();
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    let stopped = !pid_alive(g2);
    kill_gcs();
    assert!(stopped, "shutdown reached the grandchild");
    // recovery after SIGKILL
    sup.start(&tasks, &args);
    let g3 = wait_for_value(LONG, || pids_in(&gc).get(2).copied()).unwrap();
    sup.signal(libc::SIGKILL);
    assert_eq!(sup.wait_exit(), None);
    assert!(pid_alive(g3));
    sup.start(&tasks, &args);
    let stopped = wait_for(LONG, || !pid_alive(g3));
    let _ = wait_for(LONG, || pids_in(&gc).len() == 4);
    sup.signal(libc::SIGTERM);
    let _ = sup.wait_exit();
    let left = alive_in(&gc);
    kill_gcs();
    assert!(stopped, "recovery reached the grandchild: {}", sup.log());
    assert!(left.is_empty(), "{left:?}");
}

/// A leader killed while the supervisor is down leaves its workers behind; recovery finds and
/// stops them even though the dump's entry (the leader) is gone.
fn a_task_killed_while_the_supervisor_is_down_leaves_nothing(extra: &[&str]) {
    let mut sup = Sup::new();
    let tasks = list(&[sh_task(
        "t",
        "sleep 1000 & echo $! >> w.pids; sleep 1000 & echo $! >> w.pids; echo $$ >> t.pids; wait",
    )]);
    let mut args = vec![
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=100ms".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sup.start(&tasks, &args);
    let leader = wait_pid_file(&sup.path("t.pids"));
    assert!(wait_for(LONG, || pids_in(&sup.path("w.pids")).len() == 2));
    let workers = pids_in(&sup.path("w.pids"));
    sup.wait_dump_pids(DUMP, &[leader]);
    sup.signal(libc::SIGKILL);
    assert_eq!(sup.wait_exit(), None);
    unsafe { libc::kill(leader, libc::SIGKILL) };
    assert!(wait_for(LONG, || !pid_alive(leader)));
    assert!(
        workers.iter().all(|p| pid_alive(*p)),
        "orphaned workers live on"
    );
    sup.start(&tasks, &args);
    assert!(
        wait_for(LONG, || workers.iter().all(|p| !pid_alive(*p))),
        "recovery stopped the dead leader's workers\n{}",
        sup.log()
    );
    assert!(wait_for(LONG, || alive_in(&sup.path("t.pids")).len() == 1));
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(sup.marked_pids().is_empty());
}

#[test]
fn a_task_killed_while_the_supervisor_is_down_leaves_nothing_after_recovery() {
    if cgroups_here() {
        a_task_killed_while_the_supervisor_is_down_leaves_nothing(&[]);
    }
}

#[test]
fn without_cgroups_a_task_killed_while_the_supervisor_is_down_leaves_nothing_after_recovery() {
    a_task_killed_while_the_supervisor_is_down_leaves_nothing(&["--no-cgroups"]);
}

/// SIGKILL of the supervisor at various moments right after it restarted a task: after
/// recovery there is exactly one instance of each task.
fn killed_right_after_a_restart_leaves_one_instance(extra: &[&str]) {
    let mut args = vec![
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=5s".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tasks = list(&[
        sh_task("a", "sleep 1000 & echo $$ >> a.pids; wait"),
        sh_task("b", "echo $$ >> b.pids; exec sleep 1000"),
    ]);
    for delay_ms in [0u64, 2, 5, 20, 50] {
        let mut sup = Sup::new();
        sup.start(&tasks, &args);
        let a = wait_pid_file(&sup.path("a.pids"));
        wait_pid_file(&sup.path("b.pids"));
        unsafe { libc::kill(a, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(delay_ms));
        sup.signal(libc::SIGKILL);
        assert_eq!(sup.wait_exit(), None);
        sup.start(&tasks, &args);
        let one = |f: &str| alive_in(&sup.path(f)).len() == 1;
        assert!(
            wait_for(LONG, || one("a.pids") && one("b.pids")),
            "delay {delay_ms} ms: a {:?} b {:?}\n{}",
            alive_in(&sup.path("a.pids")),
            alive_in(&sup.path("b.pids")),
            sup.log()
        );
        // And it stays one: nothing left over starts later, nothing kills the new one.
        std::thread::sleep(Duration::from_millis(300));
        assert!(one("a.pids") && one("b.pids"), "delay {delay_ms} ms");
        sup.signal(libc::SIGTERM);
        assert_eq!(sup.wait_exit(), Some(0));
        assert!(sup.marked_pids().is_empty(), "delay {delay_ms} ms");
    }
}

#[test]
fn a_supervisor_killed_right_after_a_restart_leaves_exactly_one_instance_after_recovery() {
    if cgroups_here() {
        killed_right_after_a_restart_leaves_one_instance(&[]);
    }
}

#[test]
fn without_cgroups_a_supervisor_killed_right_after_a_restart_leaves_one_instance() {
    killed_right_after_a_restart_leaves_one_instance(&["--no-cgroups"]);
}

/// A leftover that takes long to stop (it ignores TERM) holds only its own task: the API
/// answers at once, and the other task starts at once.
#[test]
fn a_slow_leftover_does_not_delay_the_api_or_the_other_tasks() {
    let mut sup = Sup::new();
    let args = [
        format!("--dumpfile={DUMP}"),
        "--checkpoint-interval=100ms".into(),
        "--stop-timeout=4s".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tasks = list(&[
        sh_task(
            "slow",
            "trap '' TERM; echo $$ >> slow.pids; while :; do sleep 0.1; done",
        ),
        sh_task("quick", "echo $$ >> quick.pids; exec sleep 1000"),
    ]);
    sup.start(&tasks, &args);
    let slow = wait_pid_file(&sup.path("slow.pids"));
    let quick = wait_pid_file(&sup.path("quick.pids"));
    sup.wait_dump_pids(DUMP, &[slow, quick]);
    sup.signal(libc::SIGKILL);
    assert_eq!(sup.wait_exit(), None);
    std::fs::remove_file(sup.path("sup.log")).unwrap();
    let t = Instant::now();
    sup.start(&tasks, &args);
    let api = sup.api();
    let h = get(&api, "/health");
    assert_eq!(h.status, 200);
    let h: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(
        h["recovering"], true,
        "the API answers while recovery runs: {h}"
    );
    let quick2 = wait_for_value(LONG, || pids_in(&sup.path("quick.pids")).get(1).copied()).unwrap();
    let quick_at = t.elapsed();
    assert!(pid_alive(quick2) && !pid_alive(quick));
    assert!(
        pid_alive(slow),
        "the slow leftover is still in its grace period"
    );
    assert!(
        quick_at < Duration::from_secs(3),
        "the other task waited {quick_at:?} for a leftover not its own"
    );
    assert_eq!(
        pids_in(&sup.path("slow.pids")).len(),
        1,
        "slow waits for its own leftover"
    );
    let slow2 = wait_for_value(LONG, || pids_in(&sup.path("slow.pids")).get(1).copied()).unwrap();
    assert!(
        t.elapsed() >= Duration::from_secs(4),
        "after the grace period: {:?}",
        t.elapsed()
    );
    assert!(!pid_alive(slow) && pid_alive(slow2));
    let h: serde_json::Value = serde_json::from_str(&get(&api, "/health").body).unwrap();
    assert_eq!(h["recovering"], false);
    sup.signal(libc::SIGINT);
    sup.signal(libc::SIGINT);
    assert_eq!(sup.wait_exit(), Some(0));
}

/// A leader killed while its worker holds the port and a lock file: the worker is killed
/// first, so the restart (at once) gets the lock, and each kill is exactly one death.
#[test]
fn a_leader_killed_while_its_worker_holds_the_port_and_a_lock_restarts_at_once() {
    let (first, last) = testkit::free_port_range(8);
    let mut sup = Sup::new();
    let timeserver = testkit::bin_path("timeserver");
    // The leader takes the lock (the worker inherits the locked descriptor), starts a worker
    // that binds the task's port, and waits. A second instance started while the lock is held
    // dies at once: that would be a quick death.
    let script = format!(
        "exec 9>>task.lock; flock -n 9 || exit 75; {} --port=$PORT --authport=1 >/dev/null 2>&1 & echo $$ >> t.pids; wait",
        timeserver.display()
    );
    let task = serde_json::json!({"name": "t", "command": ["sh", "-c", script, "{{port}}"]});
    sup.start(
        &format!("[{task}]"),
        &[
            &format!("--port-range={first}-{last}"),
            "--min-uptime=300ms",
        ],
    );
    let api = sup.api();
    let kills = 4;
    for i in 0..kills {
        let leader = wait_for_value(LONG, || {
            let pids = pids_in(&sup.path("t.pids"));
            (pids.len() == i + 1).then(|| pids[i])
        })
        .unwrap_or_else(|| panic!("instance {i} started\n{}", sup.log()));
        // The worker holds the port before the kill.
        let port: u16 = wait_for_value(LONG, || {
            let t = get(&api, "/tasks/t");
            let v: serde_json::Value = serde_json::from_str(&t.body).ok()?;
            let port = v["port"].as_u64()? as u16;
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            Some(port)
        })
        .expect("the worker listens");
        // Past --min-uptime: these deaths are the kills', not quick deaths of the program.
        std::thread::sleep(Duration::from_millis(400));
        let t = Instant::now();
        unsafe { libc::kill(leader, libc::SIGKILL) };
        let next = wait_for_value(LONG, || pids_in(&sup.path("t.pids")).get(i + 1).copied());
        assert!(next.is_some(), "kill {i}: restarted\n{}", sup.log());
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "kill {i}: restarted at once, not after a backoff: {:?}",
            t.elapsed()
        );
        let _ = port;
    }
    let _ = wait_for_value(LONG, || pids_in(&sup.path("t.pids")).get(kills).copied());
    let log = sup.log();
    assert_eq!(
        log.matches("task died").count(),
        kills,
        "one death per kill:\n{log}"
    );
    assert!(
        !log.contains("port_conflict") && !log.contains("its port is held by another"),
        "{log}"
    );
    assert!(
        !log.contains("yo-yo"),
        "no quick death from the held lock:\n{log}"
    );
    let v: serde_json::Value = serde_json::from_str(&get(&api, "/tasks/t").body).unwrap();
    assert_eq!(v["restarts"], kills as u64);
    assert_eq!(v["state"], "running");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

/// Pid reuse during a stop: the leader exits on TERM, alone in its process group, while a
/// grandchild in a session of its own ignores TERM and keeps the stop going until the KILL
/// deadline. Meanwhile the leader's pid, which was the group's id, goes to a stranger that
/// calls `setsid`: a KILL of the bare group id at the deadline would hit it.
fn pid_reuse_stop_inner(dir: &Path, extra: &[&str]) {
    use std::io::Write as _;
    assert_eq!(std::process::id(), 1, "runs as the namespace's init");
    let spawner = testkit::Spawner::new();
    let script = "setsid -f sh -c 'trap \"\" TERM; echo $$ > gc.pid; while :; do sleep 0.05; done'; echo $$ > leader.pid; while :; do sleep 0.05; done";
    let tasks = list(&[sh_task("t", script)]);
    let mut cmd = spawner.bin("supervisor");
    cmd.current_dir(dir)
        .args(["--log=sup.log", "--listen=127.0.0.1:0", "--stop-timeout=2s"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut sup = cmd.spawn().unwrap();
    let _ = sup.stdin.take().unwrap().write_all(tasks.as_bytes());
    let leader = wait_pid_file(&dir.join("leader.pid"));
    let gc = wait_pid_file(&dir.join("gc.pid"));
    unsafe { libc::kill(sup.id() as i32, libc::SIGTERM) };
    assert!(
        wait_for(LONG, || !pid_alive(leader)),
        "the leader exits on TERM"
    );
    assert!(
        pid_alive(gc),
        "the grandchild ignores TERM: the stop goes on"
    );
    let mut stranger = stranger_with_pid(&spawner, leader);
    let status = wait_for_value(LONG, || sup.try_wait().unwrap()).expect("supervisor stops");
    assert_eq!(status.code(), Some(0));
    assert!(!pid_alive(gc), "the grandchild got its KILL");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was killed"
    );
    std::fs::write(dir.join("result"), "ok").unwrap();
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn a_stranger_that_takes_a_stopping_tasks_group_id_survives_the_stop() {
    match pid_namespace_dir() {
        Some(dir) => pid_reuse_stop_inner(&dir, &[]),
        None => {
            in_pid_namespace(
                "tracking::a_stranger_that_takes_a_stopping_tasks_group_id_survives_the_stop",
                &["sup.log"],
            );
        }
    }
}

#[test]
fn without_cgroups_a_stranger_that_takes_a_stopping_tasks_group_id_survives_the_stop() {
    match pid_namespace_dir() {
        Some(dir) => pid_reuse_stop_inner(&dir, &["--no-cgroups"]),
        None => {
            in_pid_namespace(
                "tracking::without_cgroups_a_stranger_that_takes_a_stopping_tasks_group_id_survives_the_stop",
                &["sup.log"],
            );
        }
    }
}

/// `cgroup.procs` of the cgroup the next supervisor started by
/// [`a_supervisor_in_a_once_killed_cgroup_still_runs_its_tasks`] moves itself into.
static JOIN_PROCS: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// In the supervisor's process before exec: moves into [`JOIN_PROCS`] (open and write only).
fn join_cgroup() {
    if let Some(path) = JOIN_PROCS.get() {
        // SAFETY: async-signal-safe calls on a path prepared before the fork.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
    }
}

/// The kernels here kill a child born (`CLONE_INTO_CGROUP`) into a cgroup whose kill count
/// differs from its parent's. A supervisor whose own cgroup once got `cgroup.kill` (a service
/// manager's stop, say) detects that at start, and its tasks join their cgroup instead: they
/// run, are restarted, and are tracked as usual.
#[test]
fn a_supervisor_in_a_once_killed_cgroup_still_runs_its_tasks() {
    if !cgroups_here() {
        return;
    }
    let mount = procio::cgroup::Hierarchy::find().unwrap().unwrap();
    let own = mount.of_pid(std::process::id() as i32).unwrap();
    let killed = own.join(format!("test-killed-{}", std::process::id()));
    procio::cgroup::create(&killed).unwrap();
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = procio::cgroup::kill(&self.0);
            let _ = wait_for(Duration::from_secs(5), || {
                !procio::cgroup::populated(&self.0).unwrap_or(false)
            });
            let _ = procio::cgroup::remove(&self.0);
        }
    }
    let _remove = Remove(killed.clone());
    std::fs::write(killed.join("cgroup.kill"), "1").unwrap();
    let procs = killed.join("cgroup.procs");
    JOIN_PROCS
        .set(std::ffi::CString::new(procs.to_str().unwrap()).unwrap())
        .unwrap();

    let mut sup = Sup::new();
    sup.pre_exec = Some(join_cgroup);
    sup.start(
        &list(&[sh_task("t", "sleep 1000 & echo $$ >> t.pids; wait")]),
        &[],
    );
    assert!(
        sup.wait_log("tasks join their cgroup as their first step instead"),
        "{}",
        sup.log()
    );
    let own_cg = |pid: i32| mount.path_of(&cgroup_of(pid));
    assert_eq!(
        own_cg(sup.pid()),
        killed,
        "the supervisor runs in the killed cgroup"
    );
    let t = wait_pid_file(&sup.path("t.pids"));
    let ct = own_cg(t);
    assert!(
        ct.starts_with(&killed) && ct.parent() != Some(killed.as_path()),
        "the task is in a cgroup of its own: {}",
        ct.display()
    );
    // A death with remains, a cgroup.kill, a restart: the new instance lives.
    unsafe { libc::kill(t, libc::SIGKILL) };
    let t2 = wait_for_value(LONG, || pids_in(&sup.path("t.pids")).get(1).copied()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(pid_alive(t2), "{}", sup.log());
    assert!(own_cg(t2).starts_with(&killed));
    assert!(!sup.log().contains("yo-yo"), "{}", sup.log());
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(!pid_alive(t2));
}
