//! Cluster mode with every real component: an etcd member, an `ubervisor` and three
//! supervisors started with `--etcd --node`, each its own folder and port range. A job of
//! count 3 runs as real processes on the nodes, their ports answer, and a lowered count or a
//! deleted job stops them; a node-local task is never touched by the cluster.
use crate::common::*;
use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::time::Duration;
use testkit::{
    Etcd, Spawner, free_port, http_get, http_request, pid_alive, wait_for, wait_for_value,
};

struct Uv {
    child: Child,
    addr: String,
}

impl Drop for Uv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `ubervisor` replica's command line: on `etcd`, listening on `addr`, with `extra` flags
/// (`--election-ttl=2s` when none), its standard error to `err`.
pub fn ubervisor_command(
    sp: &Spawner,
    etcd: &Etcd,
    addr: &str,
    id: &str,
    extra: &[String],
    err: std::fs::File,
) -> std::process::Command {
    let mut cmd = sp.bin("ubervisor");
    cmd.arg(format!("--etcd={}", etcd.endpoints_arg()))
        .arg(format!("--listen={addr}"))
        .arg(format!("--id={id}"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    cmd
}

fn ubervisor(sp: &Spawner, etcd: &Etcd, dir: &std::path::Path) -> Uv {
    let addr = format!("127.0.0.1:{}", free_port());
    let err = std::fs::File::create(dir.join("uv.stderr")).unwrap();
    let ttl = ["--election-ttl=2s".to_string()];
    let child = ubervisor_command(sp, etcd, &addr, "uv-test", &ttl, err)
        .spawn()
        .unwrap();
    let uv = Uv { child, addr };
    assert!(
        wait_for(LONG, || http_get(&uv.addr, "/health", &[])
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .is_some_and(|h| h["role"] == "leader")),
        "the ubervisor never led"
    );
    uv
}

fn tasks_of(sup: &Sup) -> Vec<Value> {
    http_get(&sup.api(), "/tasks", &[])
        .ok()
        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_job_runs_on_supervisor_nodes_and_follows_its_count() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let mut nodes: Vec<Sup> = Vec::new();
    for i in 0..3 {
        let mut sup = Sup::new();
        let first = 20000 + (std::process::id() % 400) as u16 * 20 + i * 5;
        let local = json!([{"name": "local", "command": ["sleep", "1000"]}]).to_string();
        let tasks = if i == 0 { local } else { String::new() };
        sup.start(
            &tasks,
            &[
                &format!("--etcd={}", etcd.endpoints_arg()),
                &format!("--node=n{i}"),
                "--node-cpu=1",
                "--node-mem=512M",
                "--node-ttl=3s",
                &format!("--port-range={first}-{}", first + 4),
            ],
        );
        nodes.push(sup);
    }
    let uv = ubervisor(&sp, &etcd, nodes[0].path("").as_path());
    assert!(
        wait_for(LONG, || http_get(&uv.addr, "/nodes", &[])
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(3)),
        "three nodes registered"
    );
    let job = json!({
        "name": "web",
        "task": {"command": [testkit::bin_path("timeserver"), "--port={{port}}", format!("--authport={}", free_port()), "--authhost=127.0.0.1"]},
        "count": 3, "cpu": 400, "mem": 64,
    });
    let r = http_request("POST", &uv.addr, "/jobs", &[], Some(&job.to_string())).unwrap();
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.body);
    // One instance per node (spread), each a real process whose port answers.
    let running = |sup: &Sup| -> Vec<(String, u64, u64)> {
        tasks_of(sup)
            .into_iter()
            .filter(|t| {
                t["name"].as_str().is_some_and(|n| n.starts_with("web-")) && t["state"] == "running"
            })
            .filter_map(|t| {
                Some((
                    t["name"].as_str()?.to_string(),
                    t["pid"].as_u64()?,
                    t["port"].as_u64()?,
                ))
            })
            .collect()
    };
    assert!(
        wait_for(LONG, || nodes.iter().all(|n| running(n).len() == 1)),
        "one web instance per node: {:?}",
        nodes.iter().map(running).collect::<Vec<_>>()
    );
    let all: Vec<(String, u64, u64)> = nodes.iter().flat_map(running).collect();
    let mut names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["web-1", "web-2", "web-3"]);
    for (_, _, port) in &all {
        let answered = wait_for_value(LONG, || {
            http_get(&format!("127.0.0.1:{port}"), "/", &[]).ok()
        });
        assert_eq!(answered.map(|r| r.status), Some(200), "port {port} answers");
    }
    // The ubervisor sees the instances' live status from the nodes.
    assert!(wait_for(LONG, || {
        let j: Value = http_get(&uv.addr, "/jobs/web", &[])
            .ok()
            .and_then(|r| serde_json::from_str(&r.body).ok())
            .unwrap_or(Value::Null);
        j.to_string().matches("\"running\"").count() >= 3
    }));
    // Prometheus discovery: the ubervisor lists every running instance cluster-wide, with
    // its node; each node lists its own with the `node` label.
    let sd: Value = wait_for_value(LONG, || {
        let v: Value = serde_json::from_str(&http_get(&uv.addr, "/sd", &[]).ok()?.body).ok()?;
        let tasks = v
            .as_array()?
            .iter()
            .filter(|g| g["labels"]["role"] == "task")
            .count();
        (tasks == 3).then_some(v)
    })
    .expect("three task targets in the ubervisor's /sd");
    for (name, _, port) in &all {
        let g = sd
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["labels"]["task"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} in {sd}"));
        assert_eq!(g["targets"][0], format!("127.0.0.1:{port}"));
        assert!(
            g["labels"]["node"]
                .as_str()
                .is_some_and(|n| n.starts_with('n'))
        );
        assert_eq!(g["labels"]["uv_job"], "web");
        assert!(g["labels"]["generation"].as_str().is_some());
    }
    assert_eq!(
        sd.as_array()
            .unwrap()
            .iter()
            .filter(|g| g["labels"]["role"] == "supervisor")
            .count(),
        3,
        "every node's supervisor too: {sd}"
    );
    let own: Value =
        serde_json::from_str(&http_get(&nodes[1].api(), "/sd", &[]).unwrap().body).unwrap();
    assert!(
        own.as_array()
            .unwrap()
            .iter()
            .all(|g| g["labels"]["node"] == "n1"),
        "{own}"
    );
    // The ubervisor's dashboard: three nodes, the job with its three instances as links.
    let browser = testkit::browser::Browser::launch()
        .unwrap_or_else(|e| panic!("the dashboard check needs headless Chromium: {e}"));
    let page = browser.new_page().unwrap();
    page.navigate(&format!("http://{}/", uv.addr)).unwrap();
    page.wait_for(
        "document.querySelectorAll('tr[data-node]').length === 3 && \
         document.querySelectorAll('tr[data-job=\"web\"] a.inst').length === 3",
        LONG,
    )
    .unwrap();
    let hrefs = page
        .eval("[...document.querySelectorAll('a.inst')].map(a => a.href).sort()")
        .unwrap();
    let mut want: Vec<String> = all
        .iter()
        .map(|(_, _, p)| format!("http://127.0.0.1:{p}/"))
        .collect();
    want.sort();
    assert_eq!(hrefs, json!(want), "each instance links to its host:port");
    // The front door in cluster mode: a proxy following the job through the ubervisor
    // answers from the instances on the three nodes.
    let (listen, admin) = (free_port(), free_port());
    let perr = std::fs::File::create(nodes[0].path("proxy.stderr")).unwrap();
    let mut proxy = sp
        .bin("proxy")
        .arg(format!("--listen=127.0.0.1:{listen}"))
        .arg(format!("--admin=127.0.0.1:{admin}"))
        .arg(format!("--backends=ubervisor:http://{}/web", uv.addr))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(perr)
        .spawn()
        .unwrap();
    let backends = wait_for_value(LONG, || {
        let v: Value = serde_json::from_str(
            &http_get(&format!("127.0.0.1:{admin}"), "/backends", &[])
                .ok()?
                .body,
        )
        .ok()?;
        let n = v.to_string().matches("\"web-").count();
        (n >= 3).then_some(v)
    });
    let through: Vec<u16> = (0..20)
        .map(|_| http_get(&format!("127.0.0.1:{listen}"), "/monitor", &[]).map_or(0, |r| r.status))
        .collect();
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(
        backends.is_some(),
        "the proxy follows the job's three instances"
    );
    assert!(
        through.iter().all(|s| *s == 200),
        "answers through the proxy: {through:?}"
    );
    // Count 1: two instances stop on their nodes; the node-local task is untouched.
    let local_pid = tasks_of(&nodes[0])
        .iter()
        .find(|t| t["name"] == "local")
        .and_then(|t| t["pid"].as_u64())
        .unwrap();
    let less = json!({"name": "web", "task": job["task"], "count": 1, "cpu": 400, "mem": 64});
    let r = http_request("PUT", &uv.addr, "/jobs/web", &[], Some(&less.to_string())).unwrap();
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.body);
    assert!(
        wait_for(LONG, || nodes
            .iter()
            .map(|n| running(n).len())
            .sum::<usize>()
            == 1),
        "count 1"
    );
    // The page follows by itself.
    page.wait_for(
        "document.querySelectorAll('tr[data-job=\"web\"] a.inst').length === 1",
        LONG,
    )
    .unwrap();
    assert!(page.js_errors().is_empty(), "{:?}", page.js_errors());
    drop(page);
    drop(browser);
    for (_, pid, _) in &all {
        if !nodes.iter().flat_map(running).any(|(_, p, _)| p == *pid) {
            assert!(
                wait_for(LONG, || !pid_alive(*pid as i32)),
                "stopped instance {pid} is gone"
            );
        }
    }
    let r = http_request("DELETE", &uv.addr, "/jobs/web", &[], None).unwrap();
    assert!((200..300).contains(&r.status));
    assert!(wait_for(LONG, || nodes
        .iter()
        .all(|n| running(n).is_empty())));
    let local = tasks_of(&nodes[0])
        .into_iter()
        .find(|t| t["name"] == "local")
        .unwrap();
    assert_eq!(
        local["pid"].as_u64(),
        Some(local_pid),
        "the node-local task was never touched"
    );
    for mut n in nodes {
        n.signal(libc::SIGTERM);
        assert_eq!(n.wait_exit(), Some(0));
    }
    drop(uv);
}

/// `n` supervisor nodes in cluster mode, each with its own port range.
fn nodes(etcd: &Etcd, n: usize) -> Vec<Sup> {
    (0..n)
        .map(|i| {
            let mut sup = Sup::new();
            let (first, last) = testkit::free_port_range(6);
            sup.start(
                "",
                &[
                    &format!("--etcd={}", etcd.endpoints_arg()),
                    &format!("--node=n{i}"),
                    "--node-cpu=1",
                    "--node-mem=512M",
                    "--node-ttl=3s",
                    &format!("--port-range={first}-{last}"),
                ],
            );
            sup
        })
        .collect()
}

/// The (instance, pid, port) of every running instance of `job` on `sup` (port 0: none).
pub fn running_instances(sup: &Sup, job: &str) -> Vec<(String, i32, u16)> {
    tasks_of(sup)
        .into_iter()
        .filter(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{job}-")))
                && t["state"] == "running"
        })
        .filter_map(|t| {
            Some((
                t["name"].as_str()?.to_string(),
                t["pid"].as_i64()? as i32,
                t["port"].as_u64().unwrap_or(0) as u16,
            ))
        })
        .collect()
}

fn environ_has(pid: i32, var: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|e| e.split(|b| *b == 0).any(|kv| kv == var.as_bytes()))
        .unwrap_or(false)
}

#[test]
fn a_changed_job_rolls_through_the_nodes_and_always_answers() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let nodes = nodes(&etcd, 2);
    let uv = ubervisor(&sp, &etcd, nodes[0].path("").as_path());
    let auth = free_port();
    let job = |version: &str, count: u32| {
        json!({
            "name": "web",
            "task": {
                "command": [testkit::bin_path("timeserver"), "--port={{port}}", format!("--authport={auth}"), "--authhost=127.0.0.1"],
                "env": {"V": version},
            },
            "count": count, "cpu": 400, "mem": 64,
        })
        .to_string()
    };
    let all = |nodes: &[Sup]| -> Vec<(String, i32, u16)> {
        nodes
            .iter()
            .flat_map(|n| running_instances(n, "web"))
            .collect()
    };
    let r = http_request("POST", &uv.addr, "/jobs", &[], Some(&job("1", 2))).unwrap();
    assert!((200..300).contains(&r.status), "{} {}", r.status, r.body);
    assert!(
        wait_for(LONG, || all(&nodes).len() == 2),
        "two instances run: {:?}",
        all(&nodes)
    );
    let old: Vec<i32> = all(&nodes).iter().map(|(_, p, _)| *p).collect();

    // Watch what answers while the job changes: at every sample at least one instance runs
    // and answers, and the two are never both being replaced.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let samples = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            // (pids running, how many answered)
            let mut samples: Vec<(Vec<i32>, usize)> = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let now = all(&nodes);
                let answering = now
                    .iter()
                    .filter(|(_, _, port)| {
                        http_get(&format!("127.0.0.1:{port}"), "/", &[])
                            .is_ok_and(|r| r.status == 200)
                    })
                    .count();
                samples.push((now.iter().map(|(_, p, _)| *p).collect(), answering));
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        });
        let r = http_request("PUT", &uv.addr, "/jobs/web", &[], Some(&job("2", 2))).unwrap();
        assert!((200..300).contains(&r.status), "{} {}", r.status, r.body);
        let rolled = wait_for(LONG, || {
            let now = all(&nodes);
            now.len() == 2 && now.iter().all(|(_, pid, _)| environ_has(*pid, "V=2"))
        });
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = watcher.join().unwrap();
        assert!(rolled, "both instances run version 2: {:?}", all(&nodes));
        samples
    });
    let worst = samples.iter().map(|(_, a)| *a).min().unwrap_or(0);
    assert!(
        worst >= 1,
        "an instance answered at every sample: {samples:?}"
    );
    // One at a time: the watcher saw an old and a new instance running side by side.
    assert!(
        samples
            .iter()
            .any(|(pids, _)| pids.iter().any(|p| old.contains(p))
                && pids.iter().any(|p| !old.contains(p))),
        "a moment with one instance replaced and the other not yet: {samples:?}"
    );
    for pid in old {
        assert!(
            wait_for(LONG, || !pid_alive(pid)),
            "old instance {pid} stopped"
        );
    }
    // The ubervisor reports every instance on the new generation.
    let j: Value =
        serde_json::from_str(&http_get(&uv.addr, "/jobs/web", &[]).unwrap().body).unwrap();
    let generation = j["job"]["generation"].as_u64().unwrap();
    assert!(
        j["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["generation"].as_u64() == Some(generation)),
        "{j}"
    );
    for mut n in nodes {
        n.signal(libc::SIGTERM);
        assert_eq!(n.wait_exit(), Some(0));
    }
    drop(uv);
}

#[test]
fn a_node_name_held_by_a_live_supervisor_is_refused_with_exit_2() {
    let etcd = Etcd::start();
    let args = |first: u16| {
        vec![
            format!("--etcd={}", etcd.endpoints_arg()),
            "--node=twin".to_string(),
            "--node-ttl=1s".to_string(),
            format!("--port-range={first}-{}", first + 1),
        ]
    };
    let (a, _) = testkit::free_port_range(2);
    let (b, _) = testkit::free_port_range(2);
    let local = list(&[sh_task("local", "echo $$ >> local.pids; exec sleep 1000")]);
    let mut first = Sup::new();
    let first_args = args(a);
    first.start(
        "",
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(first.wait_log("node registered"), "{}", first.log());
    let mut second = Sup::new();
    let second_args = args(b);
    second.start(
        &local,
        &second_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let pid = wait_pid_file(&second.path("local.pids"));
    assert_eq!(second.wait_exit(), Some(2), "{}", second.log());
    assert!(
        second
            .log()
            .contains("node name \"twin\" is registered by another live process"),
        "{}",
        second.log()
    );
    assert!(!pid_alive(pid), "its tasks were stopped");
    assert!(
        !first.log().contains("node lease lost"),
        "the holder was left alone: {}",
        first.log()
    );
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(), Some(0));
}

#[test]
fn an_assignment_a_node_cannot_run_is_refused_alone_and_said_why() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let nodes = nodes(&etcd, 1);
    let uv = ubervisor(&sp, &etcd, nodes[0].path("").as_path());
    let submit = |method: &str, path: &str, job: Value| {
        let r = http_request(method, &uv.addr, path, &[], Some(&job.to_string())).unwrap();
        assert!((200..300).contains(&r.status), "{} {}", r.status, r.body);
    };
    let good = |count: u32| json!({"name": "good", "task": {"command": ["sleep", "1000"]}, "count": count, "cpu": 100, "mem": 16});
    submit("POST", "/jobs", good(1));
    assert!(wait_for(LONG, || running_instances(&nodes[0], "good")
        .len()
        == 1));
    // Valid as a task, but the program is not on this machine.
    submit(
        "POST",
        "/jobs",
        json!({"name": "bad", "task": {"command": ["/nonexistent/program"]}, "count": 1, "cpu": 100, "mem": 16}),
    );
    let shown = wait_for_value(LONG, || {
        let j: Value =
            serde_json::from_str(&http_get(&uv.addr, "/jobs/bad", &[]).ok()?.body).ok()?;
        let i = j["instances"].as_array()?.first()?.clone();
        (i["state"] == "refused").then_some(i)
    })
    .expect("the node reports the instance refused");
    assert!(
        shown["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/nonexistent/program")),
        "{shown}"
    );
    // The rest of the node's work goes on: a new count of the good job is applied.
    submit("PUT", "/jobs/good", good(2));
    assert!(
        wait_for(LONG, || running_instances(&nodes[0], "good").len() == 2),
        "{}",
        nodes[0].log()
    );
    for mut n in nodes {
        n.signal(libc::SIGTERM);
        assert_eq!(n.wait_exit(), Some(0));
    }
    drop(uv);
}
