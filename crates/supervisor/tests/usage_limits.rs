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
