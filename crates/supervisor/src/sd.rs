//! Prometheus service discovery: the running tasks with a port, and the supervisor itself, in
//! the `http_sd` / `file_sd` format (`[{"targets": ["HOST:PORT"], "labels": {...}}]`).
//!
//! Served as `GET /sd` and written to `--sd-file` (see `sd_file`). Both come from the same
//! pure function of the loop's snapshot, so they never disagree.
//!
//! # Labels
//! One group per target, because each carries labels of its own:
//! - tasks: `role="task"`, `task` (its name), `generation` (the instance of the task: a restart
//!   is a new target, with new series), `supervisor` (the supervisor's instance id);
//! - the supervisor: `role="supervisor"`, `supervisor`. It has no `task` label on purpose: its
//!   own series carry `task` (`supervisor_task_up{task=...}`), and a target label of the same
//!   name would make Prometheus rename theirs to `exported_task`.
//!
//! Neither `job` nor `instance` is set: they stay Prometheus's (the scrape job's name, and
//! `HOST:PORT`).
//!
//! Tasks are listed on `127.0.0.1` (the supervisor hands out ports on this machine, and the
//! time servers listen on loopback); the supervisor under the address its API listens on, with
//! an unspecified address (`0.0.0.0`, `::`) turned into loopback.
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use supervisor_core::{TaskState, TaskView};

/// Where task targets are reached.
pub const TASK_HOST: &str = "127.0.0.1";

/// One target group of the http_sd format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub targets: Vec<String>,
    pub labels: BTreeMap<&'static str, String>,
}

/// The groups for `views`: every running task with a port, in task order, then the supervisor
/// at `api` (none when the API is off).
pub fn groups(views: &[TaskView], instance: &str, api: Option<SocketAddr>) -> Vec<Group> {
    groups_on(views, instance, api, None)
}

/// [`groups`], each with the label `node` in cluster mode (`--node`).
pub fn groups_on(
    views: &[TaskView],
    instance: &str,
    api: Option<SocketAddr>,
    node: Option<&str>,
) -> Vec<Group> {
    let mut out: Vec<Group> = views
        .iter()
        .filter(|v| v.state == TaskState::Running)
        .filter_map(|v| {
            let port = v.port?;
            Some(Group {
                targets: vec![format!("{TASK_HOST}:{port}")],
                labels: BTreeMap::from([
                    ("role", "task".to_string()),
                    ("task", v.spec.name.clone()),
                    ("generation", v.generation.to_string()),
                    ("supervisor", instance.to_string()),
                ]),
            })
        })
        .collect();
    if let Some(addr) = api {
        out.push(Group {
            targets: vec![scrape_addr(addr).to_string()],
            labels: BTreeMap::from([
                ("role", "supervisor".to_string()),
                ("supervisor", instance.to_string()),
            ]),
        });
    }
    if let Some(n) = node {
        for g in &mut out {
            g.labels.insert("node", n.to_string());
        }
    }
    out
}

/// The groups as the JSON document both `/sd` and `--sd-file` hold (a newline at the end, so
/// the file is a proper text file).
pub fn document(groups: &[Group]) -> String {
    // Serializing strings and maps of strings cannot fail.
    let mut s = serde_json::to_string(groups).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// An address a scraper can connect to: the API's own, unless it listens on every address.
fn scrape_addr(a: SocketAddr) -> SocketAddr {
    let ip = match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, a.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use supervisor_core::{TaskId, TaskSpec};

    fn view(name: &str, state: TaskState, port: Option<u16>, generation: u64) -> TaskView {
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": name, "command": ["prog", "--port={{port}}"]
        }))
        .expect("a task spec");
        TaskView {
            id: TaskId(0),
            spec: Arc::new(spec),
            state,
            pid: Some(100),
            start_ticks: None,
            port,
            generation,
            restarts: 0,
            started_at: None,
            last_exit: None,
            last_error: None,
            backoff_reason: None,
            retry_at: None,
            yoyo_since: None,
            quick_deaths: 0,
            waiting_for: 0,
            uid: format!("{generation:016x}"),
            ready: true,
            waiting_on: Vec::new(),
            health_failures: 0,
        }
    }

    #[test]
    fn lists_running_tasks_with_ports_then_the_supervisor() {
        let views = vec![
            view("a", TaskState::Running, Some(8001), 3),
            view("no-port", TaskState::Running, None, 1),
            view("down", TaskState::Backoff, Some(8002), 2),
            view("stopping", TaskState::Stopping, Some(8003), 2),
            view("b", TaskState::Running, Some(8004), 7),
        ];
        let api: SocketAddr = "127.0.0.1:7171".parse().expect("addr");
        let doc: serde_json::Value =
            serde_json::from_str(&document(&groups(&views, "dump-x", Some(api)))).expect("json");
        assert_eq!(
            doc,
            serde_json::json!([
                {"targets": ["127.0.0.1:8001"], "labels": {"role": "task", "task": "a", "generation": "3", "supervisor": "dump-x"}},
                {"targets": ["127.0.0.1:8004"], "labels": {"role": "task", "task": "b", "generation": "7", "supervisor": "dump-x"}},
                {"targets": ["127.0.0.1:7171"], "labels": {"role": "supervisor", "supervisor": "dump-x"}},
            ])
        );
    }

    #[test]
    fn the_supervisor_is_listed_where_a_scraper_can_reach_it() {
        let v4: SocketAddr = "0.0.0.0:7171".parse().expect("addr");
        let v6: SocketAddr = "[::]:7172".parse().expect("addr");
        let own: SocketAddr = "127.0.0.2:7173".parse().expect("addr");
        assert_eq!(groups(&[], "i", Some(v4))[0].targets, ["127.0.0.1:7171"]);
        assert_eq!(groups(&[], "i", Some(v6))[0].targets, ["[::1]:7172"]);
        assert_eq!(groups(&[], "i", Some(own))[0].targets, ["127.0.0.2:7173"]);
        assert!(groups(&[], "i", None).is_empty(), "no API, no entry");
        assert_eq!(document(&[]), "[]\n");
    }
}
