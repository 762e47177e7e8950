//! Per-task usage (`cpu_seconds`, `memory_bytes` in `/tasks`, two series in `/metrics`, two
//! columns in `ctl status`) from real busy and idle tasks, with cgroups and without; and
//! resource limits enforced by the kernel on real tasks.
use crate::common::*;
use serde_json::{Value, json};
use testkit::{http_get, wait_for, wait_for_value};

fn task(api: &str, name: &str) -> Value {
    let r = http_get(api, &format!("/tasks/{name}"), &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn from_list(api: &str, name: &str) -> Value {
    let r = http_get(api, "/tasks", &[]).unwrap();
    let all: Value = serde_json::from_str(&r.body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

fn usage_grows_for_a_busy_task(args: &[&str]) {
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            sh_task("busy", "while :; do :; done"),
            // A shell that forks a busy child: the child's time counts for the task too.
            sh_task("parent", "sh -c 'while :; do :; done' & wait"),
            sh_task("idle", "exec sleep 1000"),
        ]),
        args,
    );
    let api = sup.api();
    let cpu = |name: &str| from_list(&api, name)["cpu_seconds"].as_f64();
    let first = wait_for_value(LONG, || cpu("busy").filter(|c| *c > 0.1)).expect("busy uses CPU");
    assert!(
        wait_for(LONG, || cpu("busy").is_some_and(|c| c > first + 0.3)),
        "cpu_seconds grows"
    );
    assert!(
        wait_for(LONG, || cpu("parent").is_some_and(|c| c > 0.3)),
        "a child's CPU time counts for its task: {:?}",
        cpu("parent")
    );
    let idle = from_list(&api, "idle");
    assert!(idle["cpu_seconds"].as_f64().unwrap() < 0.2, "{idle}");
    assert!(idle["memory_bytes"].as_u64().unwrap() > 0, "{idle}");
    let one = task(&api, "busy");
    assert!(one["cpu_seconds"].as_f64().unwrap() > first, "{one}");
    assert!(one["memory_bytes"].as_u64().unwrap() > 0, "{one}");

    // /metrics: both series for every running task, and promtool is happy with them.
    let text = http_get(&api, "/metrics", &[]).unwrap().body;
    let busy_cpu = testkit::prom::sample(&text, "supervisor_task_cpu_seconds_total{task=\"busy\"}")
        .unwrap_or_else(|| panic!("no cpu series in {text}"));
    assert!(busy_cpu > first, "{busy_cpu}");
    assert!(
        testkit::prom::sample(&text, "supervisor_task_memory_bytes{task=\"idle\"}")
            .is_some_and(|m| m > 0.0),
        "{text}"
    );
    testkit::prom::assert_promtool_passes(&sup.spawner, &text);

    // ctl status has the columns.
    let (code, out, err) = crate::api::ctl(&["--api", &format!("http://{api}"), "status"], None);
    assert_eq!(code, Some(0), "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.contains("CPU") && header.contains("MEM"), "{out}");
    let busy_row = out.lines().find(|l| l.starts_with("busy ")).unwrap();
    assert!(busy_row.contains('K') || busy_row.contains('M'), "{out}");

    // A restart starts the count again (the new instance may reuse the old cgroup).
    let before = cpu("busy").unwrap();
    let old_pid = from_list(&api, "busy")["pid"].clone();
    let r = testkit::http_request("POST", &api, "/tasks/busy/restart", &[], None).unwrap();
    assert_eq!(r.status, 202);
    let after = wait_for_value(LONG, || {
        let t = from_list(&api, "busy");
        (t["pid"] != old_pid && t["state"] == "running")
            .then(|| t["cpu_seconds"].as_f64())
            .flatten()
    })
    .expect("restarted");
    assert!(
        after < before,
        "a new instance counts from 0: {after} after {before}"
    );
}

#[test]
fn usage_in_tasks_metrics_and_ctl_with_cgroups() {
    usage_grows_for_a_busy_task(&[]);
}

#[test]
fn usage_in_tasks_metrics_and_ctl_without_cgroups() {
    usage_grows_for_a_busy_task(&["--no-cgroups"]);
}

#[test]
fn a_stopped_task_has_no_usage() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            json!({"name": "later", "command": ["sleep", "1000"], "autostart": false}).to_string(),
        ]),
        &[],
    );
    let api = sup.api();
    assert!(wait_for(LONG, || from_list(&api, "later")["state"] == "stopped"));
    let t = from_list(&api, "later");
    assert!(
        t["cpu_seconds"].is_null() && t["memory_bytes"].is_null(),
        "{t}"
    );
}

/// The file `v1_file` of `pid`'s cgroup in the v1 hierarchy of `controller`, or else `v2_file`
/// of its v2 cgroup: where the supervisor put the task's limit.
fn limit_file(pid: u64, controller: &str, v1_file: &str, v2_file: &str) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let caps = supervisor::limits_cgroup::capabilities();
    let v2 = if controller == "memory" {
        caps.v2_memory
    } else {
        caps.v2_cpu
    };
    let path = if v2 {
        let h = procio::cgroup::Hierarchy::find().unwrap().unwrap();
        h.of_pid(pid as i32).unwrap().join(v2_file)
    } else {
        supervisor::limits_cgroup::v1_own_dir(&mountinfo, &cgroups, controller)
            .unwrap()
            .join(v1_file)
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

fn skip_without_controllers() -> bool {
    let caps = supervisor::limits_cgroup::capabilities();
    let ok = (caps.v2_memory || caps.v1_memory.is_some()) && (caps.v2_cpu || caps.v1_cpu.is_some());
    if !ok && std::env::var_os("CI").is_none() {
        eprintln!("skipped: no memory and cpu controllers here ({caps:?})");
        return true;
    }
    assert!(ok, "CI needs memory and cpu controllers: {caps:?}");
    false
}

#[test]
fn a_memory_limit_kills_an_allocating_task_and_it_is_restarted_by_policy() {
    if skip_without_controllers() {
        return;
    }
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            // `tail` looks for the end of a line that never ends: it grows until killed.
            json!({"name": "hog", "command": ["tail", "/dev/zero"], "limits": {"memory": "64M"}, "restart": "on-failure"}).to_string(),
            json!({"name": "small", "command": ["sleep", "1000"], "limits": {"memory": "64M"}}).to_string(),
        ]),
        &[],
    );
    let api = sup.api();
    let hog = wait_for_value(LONG, || {
        let t = from_list(&api, "hog");
        (t["restarts"].as_u64()? >= 2).then_some(t)
    })
    .expect("the hog is killed and restarted");
    assert_eq!(
        hog["last_exit"]["signal"], 9,
        "the kernel's OOM kill: {hog}"
    );
    assert!(sup.log().contains("task died task=hog"), "{}", sup.log());
    assert!(sup.log().contains("killed by SIGKILL"));
    // A task under its limit runs on, with the limit on its cgroup.
    let small = from_list(&api, "small");
    assert_eq!(small["state"], "running");
    let pid = small["pid"].as_u64().unwrap();
    assert_eq!(
        limit_file(pid, "memory", "memory.limit_in_bytes", "memory.max"),
        (64u64 << 20).to_string()
    );
    assert_eq!(small["restarts"], 0);
}

#[test]
fn a_cpu_limit_is_in_the_cgroup_and_holds_the_task_to_it() {
    if skip_without_controllers() {
        return;
    }
    let mut sup = Sup::new();
    sup.start(
        &list(&[json!({"name": "spin", "command": ["sh", "-c", "while :; do :; done"], "limits": {"cpu": 0.25}}).to_string()]),
        &[],
    );
    let api = sup.api();
    let t = wait_for_value(LONG, || {
        let t = from_list(&api, "spin");
        t["cpu_seconds"].as_f64().map(|_| t)
    })
    .unwrap();
    let pid = t["pid"].as_u64().unwrap();
    let quota = limit_file(pid, "cpu", "cpu.cfs_quota_us", "cpu.max");
    assert!(quota == "25000" || quota == "25000 100000", "{quota}");
    // Measured over 2 s: about a quarter of a CPU, far from a whole one.
    let cpu = || from_list(&api, "spin")["cpu_seconds"].as_f64().unwrap();
    let (c0, t0) = (cpu(), std::time::Instant::now());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let rate = (cpu() - c0) / t0.elapsed().as_secs_f64();
    assert!(rate < 0.4, "{rate} CPUs used under a 0.25 limit");
}

#[test]
fn bad_limits_are_refused_naming_task_and_field() {
    let mut sup = Sup::new();
    sup.start(&list(&[sh_task("idle", "exec sleep 1000")]), &[]);
    let api = sup.api();
    let r = testkit::http_request(
        "POST",
        &api,
        "/tasks",
        &[("Content-Type", "application/json")],
        Some(&json!({"name": "x", "command": ["sleep", "1"], "limits": {"memory": "lots", "cpu": -1}}).to_string()),
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("limits.memory") && r.body.contains("limits.cpu"),
        "{}",
        r.body
    );

    // At start: exit 2, every problem named.
    let mut bad = Sup::new();
    bad.start(
        &list(&[
            json!({"name": "y", "command": ["sleep", "1"], "limits": {"disk": "1G"}}).to_string(),
        ]),
        &[],
    );
    assert_eq!(bad.wait_exit(), Some(2));
    let err = std::fs::read_to_string(bad.path("sup.stderr")).unwrap() + &bad.log();
    assert!(
        err.contains("task 1 (y): field \"limits.disk\": unknown limit"),
        "{err}"
    );
}

#[test]
fn v1_limit_cgroups_are_removed_with_their_instance_and_at_exit() {
    let caps = supervisor::limits_cgroup::capabilities();
    let Some(own) = caps.v1_memory.clone().filter(|_| !caps.v2_memory) else {
        eprintln!("skipped: no v1 memory hierarchy in use here");
        return;
    };
    let mut sup = Sup::new();
    sup.start(
        &list(&[
            json!({"name": "lim", "command": ["sleep", "1000"], "limits": {"memory": "64M"}})
                .to_string(),
        ]),
        &[],
    );
    let api = sup.api();
    let pid = wait_for_value(LONG, || from_list(&api, "lim")["pid"].as_u64()).unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = supervisor::limits_cgroup::v1_own_dir(&mountinfo, &cgroups, "memory").unwrap();
    assert!(
        dir.starts_with(&own) && dir.to_string_lossy().contains("/timeservice@"),
        "{}",
        dir.display()
    );
    assert!(
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("lim@")
    );
    let r = testkit::http_request("POST", &api, "/tasks/lim/restart", &[], None).unwrap();
    assert_eq!(r.status, 202);
    assert!(
        wait_for(LONG, || !dir.exists()),
        "the old instance's cgroup is gone"
    );
    let pid2 = wait_for_value(LONG, || {
        from_list(&api, "lim")["pid"].as_u64().filter(|p| *p != pid)
    })
    .unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid2}/cgroup")).unwrap();
    let dir2 = supervisor::limits_cgroup::v1_own_dir(&mountinfo, &cgroups, "memory").unwrap();
    assert_ne!(dir, dir2);
    let root = dir2.parent().unwrap().to_path_buf();
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(
        !dir2.exists() && !root.exists(),
        "{} is removed at exit",
        root.display()
    );
}
