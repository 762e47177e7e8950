//! Machines lost under a running cluster: real supervisors in cluster mode running real
//! timeservers, an `ubervisor` and an etcd member. A machine is lost by SIGKILLing its
//! supervisor and its tasks; a hung one by SIGSTOPping its supervisor (its tasks keep
//! running); a supervisor that falls over by SIGKILLing it alone. Node TTL 2 s.
use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use testkit::{Etcd, Spawner, free_port, http_get, http_request, pid_alive, wait_for};

const TTL: Duration = Duration::from_secs(2);

struct Uv {
    child: Child,
    addr: String,
    stderr: std::path::PathBuf,
}

impl Uv {
    fn start(sp: &Spawner, etcd: &Etcd, dir: &Path, id: &str, extra: &[String]) -> Uv {
        let addr = format!("127.0.0.1:{}", free_port());
        let stderr = dir.join(format!("{id}.stderr"));
        let err = std::fs::File::create(&stderr).unwrap();
        let flags: Vec<String> = ["--election-ttl=2s", "--lost-grace=2s"]
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .collect();
        let child = crate::cluster::ubervisor_command(sp, etcd, &addr, id, &flags, err)
            .spawn()
            .unwrap();
        Uv {
            child,
            addr,
            stderr,
        }
    }
    fn get(&self, path: &str) -> Value {
        http_get(&self.addr, path, &[])
            .ok()
            .and_then(|r| serde_json::from_str(&r.body).ok())
            .unwrap_or(Value::Null)
    }
    fn leads(&self) -> bool {
        self.get("/health")["role"] == "leader"
    }
    fn node(&self, name: &str) -> Value {
        self.get("/nodes")
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }
    fn send(&self, method: &str, path: &str, body: &Value) {
        let r = http_request(method, &self.addr, path, &[], Some(&body.to_string())).unwrap();
        assert!((200..300).contains(&r.status), "{} {}", r.status, r.body);
    }
}

impl Drop for Uv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            eprintln!("---- {} ----\n{err}", self.stderr.display());
        }
    }
}

/// The supervisor flags of node `i` (its own port range, a dump file in its folder).
fn node_args(etcd: &Etcd, i: u16) -> Vec<String> {
    let (first, _) = testkit::free_port_range(6);
    vec![
        format!("--etcd={}", etcd.endpoints_arg()),
        format!("--node=n{i}"),
        "--node-cpu=1".into(),
        "--node-mem=512M".into(),
        format!("--node-ttl={}s", TTL.as_secs()),
        "--dumpfile=sup.dump".into(),
        format!("--port-range={first}-{}", first + 5),
    ]
}

fn start_node(sup: &mut Sup, args: &[String]) {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    sup.start("", &a);
}

/// (instance, pid, port) of the `web-*` tasks running on `sup`.
fn web(sup: &Sup) -> Vec<(String, i32, u16)> {
    crate::cluster::running_instances(sup, "web")
}

fn answers(port: u16) -> bool {
    http_get(&format!("127.0.0.1:{port}"), "/", &[]).is_ok_and(|r| r.status == 200)
}

fn timeserver_job(count: u32) -> Value {
    json!({
        "name": "web",
        "task": {"command": [testkit::bin_path("timeserver"), "--port={{port}}",
                 format!("--authport={}", free_port()), "--authhost=127.0.0.1"]},
        "count": count, "cpu": 400, "mem": 64,
    })
}

/// Waits until `instance` runs and answers on one of `on`; returns when, and where.
fn wait_answering(on: &[&Sup], instance: &str, t0: Instant) -> (Duration, usize) {
    let found = testkit::wait_for_value(LONG, || {
        on.iter().enumerate().find_map(|(i, s)| {
            web(s)
                .iter()
                .find(|(n, _, port)| n == instance && answers(*port))
                .map(|_| (t0.elapsed(), i))
        })
    });
    found.unwrap_or_else(|| panic!("{instance} never answered elsewhere"))
}

/// Every running web instance across `nodes`, by name, sorted (duplicates show twice).
fn all_web(nodes: &[&Sup]) -> Vec<String> {
    let mut v: Vec<String> = nodes
        .iter()
        .flat_map(|s| web(s))
        .map(|(n, _, _)| n)
        .collect();
    v.sort();
    v
}

#[test]
fn a_lost_machines_instances_answer_elsewhere_in_time_and_a_returning_node_stops_its_copies() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let mut nodes: Vec<Sup> = (0..3).map(|_| Sup::new()).collect();
    let args: Vec<Vec<String>> = (0..3).map(|i| node_args(&etcd, i)).collect();
    for (sup, a) in nodes.iter_mut().zip(&args) {
        start_node(sup, a);
    }
    let uv = Uv::start(&sp, &etcd, nodes[0].path("").as_path(), "uv-a", &[]);
    assert!(wait_for(LONG, || uv.leads()), "the ubervisor never led");
    assert!(wait_for(LONG, || (0..3)
        .all(|i| uv.node(&format!("n{i}"))["alive"] == true)));
    uv.send("POST", "/jobs", &timeserver_job(3));
    assert!(
        wait_for(LONG, || nodes.iter().all(|n| web(n).len() == 1)),
        "one web instance per node"
    );
    let (lost_name, lost_pid, _) = web(&nodes[1])[0].clone();

    // Machine n1 lost: its supervisor and its task SIGKILLed together.
    nodes[1].signal(libc::SIGKILL);
    unsafe { libc::kill(lost_pid, libc::SIGKILL) };
    let t0 = Instant::now();
    let _ = nodes[1].wait_exit();
    let (took, _) = wait_answering(&[&nodes[0], &nodes[2]], &lost_name, t0);
    assert!(
        took <= TTL + Duration::from_secs(3),
        "{lost_name} took {took:?}"
    );
    eprintln!(
        "{lost_name} answered elsewhere {} ms after the SIGKILL",
        took.as_millis()
    );
    assert_eq!(uv.node("n1")["lost"], true);

    // n1 comes back (same name, same dump file): it runs nothing, the job still has three.
    start_node(&mut nodes[1], &args[1]);
    assert!(wait_for(LONG, || uv.node("n1")["alive"] == true));
    std::thread::sleep(Duration::from_millis(500)); // its first list and apply
    let all = [&nodes[0], &nodes[1], &nodes[2]];
    assert_eq!(all_web(&all), ["web-1", "web-2", "web-3"]);
    assert!(web(&nodes[1]).is_empty());

    // Machine n2 hangs (its supervisor stopped, its timeserver still serving): the instance
    // is started elsewhere; two copies run while n2 is cut off, nothing can stop that.
    let (hung_name, hung_pid, hung_port) = web(&nodes[2])[0].clone();
    nodes[2].signal(libc::SIGSTOP);
    let t0 = Instant::now();
    let (took, _) = wait_answering(&[&nodes[0], &nodes[1]], &hung_name, t0);
    assert!(
        took <= TTL + Duration::from_secs(3),
        "{hung_name} took {took:?}"
    );
    eprintln!(
        "{hung_name} answered elsewhere {} ms after the SIGSTOP",
        took.as_millis()
    );
    assert!(pid_alive(hung_pid) && answers(hung_port));

    // n2 returns as a new supervisor on the same dump file: it recovers its machine (stops
    // the old copy) and runs only what is assigned to it, which is nothing now.
    nodes[2].signal(libc::SIGKILL);
    let _ = nodes[2].wait_exit();
    start_node(&mut nodes[2], &args[2]);
    assert!(wait_for(LONG, || uv.node("n2")["alive"] == true));
    let back = Instant::now();
    assert!(
        wait_for(LONG, || !pid_alive(hung_pid)),
        "the old copy still runs"
    );
    assert!(
        back.elapsed() < TTL,
        "the old copy outlived the return by {:?}",
        back.elapsed()
    );
    let all = [&nodes[0], &nodes[1], &nodes[2]];
    assert_eq!(all_web(&all), ["web-1", "web-2", "web-3"]);
    assert!(web(&nodes[2]).is_empty());
    drop(uv);
}

#[test]
fn a_fallen_supervisor_is_restarted_by_remediation_and_cordoned_when_lost_too_often() {
    let etcd = Etcd::start();
    let sp = Spawner::new();
    let mut n0 = Sup::new();
    let mut n1 = Sup::new();
    let (a0, a1) = (node_args(&etcd, 0), node_args(&etcd, 1));
    start_node(&mut n0, &a0);
    start_node(&mut n1, &a1);
    // What the remediation runs for n1: a new supervisor with n1's flags and dump file, in
    // the background (output to files), its pid noted. Marked as n1's, so it is stopped
    // with n1's processes.
    let mut restart = format!(
        "cd {} || exit 1\nexport {}={}\ncat > event.json\necho \"$UV_NODE\" >> remediated\n\
         {} {} --log=sup.log --listen=127.0.0.1:0",
        n1.path("").display(),
        testkit::proc::MARK_VAR,
        n1.spawner.mark(),
        testkit::bin_path("supervisor").display(),
        a1.join(" ")
    );
    if without_cgroups() {
        restart.push_str(" --no-cgroups");
    }
    restart.push_str(" </dev/null >sup.stdout 2>sup.stderr &\necho $! >> restarted.pids\n");
    let scripts = tempfile::tempdir().unwrap();
    std::fs::write(scripts.path().join("restart-n1.sh"), restart).unwrap();
    let pages = scripts.path().join("pages.jsonl");
    let flags = vec![
        format!(
            "--remediate-command=sh {}/restart-$UV_NODE.sh",
            scripts.path().display()
        ),
        format!("--page-command=cat >> {0}; echo >> {0}", pages.display()),
        "--lost-cordon=2/1h".to_string(),
        "--freeze-share=1".to_string(),
    ];
    let dir = scripts.path();
    let a = Uv::start(&sp, &etcd, dir, "uv-a", &flags);
    assert!(wait_for(LONG, || a.leads()));
    let b = Uv::start(&sp, &etcd, dir, "uv-b", &flags);
    assert!(wait_for(LONG, || ["n0", "n1"]
        .iter()
        .all(|n| a.node(n)["alive"] == true)));
    a.send("POST", "/jobs", &timeserver_job(2));
    assert!(wait_for(LONG, || web(&n0).len() == 1 && web(&n1).len() == 1));
    let (_, old_pid, _) = web(&n1)[0].clone();
    let old_sup = n1.pid();

    // n1's supervisor falls over (its timeserver keeps running): declared lost, remediated.
    n1.signal(libc::SIGKILL);
    let _ = n1.wait_exit();
    let remediated = n1.path("remediated");
    let who = testkit::wait_for_file_containing(&remediated, "n1");
    assert_eq!(who.trim(), "n1", "UV_NODE names the node");
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(n1.path("event.json")).unwrap()).unwrap();
    assert_eq!(
        (event["kind"].as_str(), event["subject"].as_str()),
        (Some("node_lost"), Some("n1"))
    );
    // The new supervisor recovers the machine as usual (the old copy is stopped: its
    // instance moved to n0 meanwhile) and registers again.
    assert!(
        wait_for(LONG, || a.node("n1")["alive"] == true),
        "n1 never came back"
    );
    assert!(
        wait_for(LONG, || !pid_alive(old_pid)),
        "the leftover still runs"
    );
    let restarted = |sup: &Sup| -> Vec<i32> {
        std::fs::read_to_string(sup.path("restarted.pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    let first = restarted(&n1);
    assert!(
        first.len() == 1 && first[0] != old_sup && pid_alive(first[0]),
        "{first:?}"
    );
    assert!(wait_for(LONG, || web(&n0).len() == 2));
    let n = a.node("n1");
    assert_eq!(
        (
            n["cordoned"].as_bool(),
            n["lost_at_ms"].as_array().map(Vec::len)
        ),
        (Some(false), Some(1)),
        "{n}"
    );

    // A third instance lands on n1; then the leader dies, and n1 falls over again under the
    // new leader, which knows of the first loss only from etcd: lost twice, cordoned, paged.
    a.send("PUT", "/jobs/web", &timeserver_job(3));
    assert!(wait_for(LONG, || web(&n1).len() == 1));
    let mut a = a;
    let _ = a.child.kill();
    let _ = a.child.wait();
    assert!(wait_for(LONG, || b.leads()), "uv-b never took over");
    unsafe { libc::kill(first[0], libc::SIGKILL) };
    let paged = testkit::wait_for_file_containing(&pages, "node_cordoned");
    let page: Value =
        serde_json::from_str(paged.lines().find(|l| l.contains("node_cordoned")).unwrap()).unwrap();
    assert_eq!(
        (page["subject"].as_str(), page["by"].as_str()),
        (Some("n1"), Some("uv-b"))
    );
    let n = b.node("n1");
    let reason = n["cordon_reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("lost 2 times within 1h"), "{n}");
    // Remediated again; back, but cordoned: nothing is placed on it.
    assert!(wait_for(LONG, || restarted(&n1).len() == 2));
    assert!(wait_for(LONG, || b.node("n1")["alive"] == true));
    std::thread::sleep(Duration::from_millis(500));
    assert!(web(&n1).is_empty(), "{:?}", web(&n1));
    for pid in restarted(&n1) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
