//! Monitoring with the real things: Debian's `prometheus` following the time servers through
//! `GET /sd`, `--sd-file`, `promtool` on the shipped config and rules and on every server's
//! `/metrics`, and `ctl top` against a live time server.
use crate::common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::{
    Spawner, free_port, free_port_range, http_get, http_request, wait_for, wait_for_value,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An auth server on `auth_port` and two fast time servers that use it.
fn time_service(auth_port: u16) -> String {
    let ts = |name: &str| {
        serde_json::json!({"name": name, "command": [
            testkit::bin_path("timeserver"), "--port={{port}}", format!("--authport={auth_port}"),
            "--authhost=127.0.0.1"
        ], "output": format!("{name}.out"), "error": format!("{name}.err")})
        .to_string()
    };
    let auth = serde_json::json!({"name": "authserver", "command": [
        testkit::bin_path("authserver"), format!("--authport={auth_port}"), "--dumpfile=none"
    ], "error": "auth.err"})
    .to_string();
    list(&[auth, ts("timeserver-1"), ts("timeserver-2")])
}

fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let r = http_get(addr, path, &[]).unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    assert_eq!(r.status, 200, "GET {addr}{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
}

/// (pid, port) of a running task, from `GET /tasks`.
fn running(api: &str, task: &str) -> Option<(u64, u16)> {
    let tasks = get_json(api, "/tasks");
    let t = tasks.as_array()?.iter().find(|t| t["name"] == task)?;
    (t["state"] == "running").then_some(())?;
    Some((t["pid"].as_u64()?, t["port"].as_u64()? as u16))
}

/// A running `prometheus`, stopped by its pid on drop (SIGTERM, then reaped).
struct Prometheus {
    addr: String,
    child: std::process::Child,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let stopped = wait_for(LONG, || self.child.try_wait().ok().flatten().is_some());
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `prometheus` on a free loopback port with storage in `dir`, scraping `sd_url`'s
/// targets every second and evaluating the shipped rules; returns once it is ready.
fn start_prometheus(sp: &Spawner, dir: &Path, sd_url: &str) -> Prometheus {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
rule_files:\n  - {rules}\n\
scrape_configs:\n  - job_name: timeservice\n    http_sd_configs:\n      - url: {sd_url}\n        refresh_interval: 1s\n",
        rules = repo().join("etc/prometheus-rules.yml").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = sp
        .command("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus is needed (Debian package prometheus; `make test-deps` installs it)");
    let ready = wait_for(LONG, || {
        http_get(&addr, "/-/ready", &[]).is_ok_and(|r| r.status == 200)
    });
    assert!(
        ready,
        "prometheus never got ready:\n{}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
    Prometheus { addr, child }
}

/// Prometheus's active targets: (address, health, task label).
fn targets(prom: &str) -> Vec<(String, String, String)> {
    let t = get_json(prom, "/api/v1/targets?state=active");
    t["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            (
                s(&t["labels"]["instance"]),
                s(&t["health"]),
                s(&t["labels"]["task"]),
            )
        })
        .collect()
}

/// The first sample's value of an instant query, if any.
fn query(prom: &str, q: &str) -> Option<f64> {
    let path = format!("/api/v1/query?query={}", url_encode(q));
    let r = get_json(prom, &path);
    r["data"]["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_time_service_through_sd_and_follows_a_restart() {
    let (first, last) = free_port_range(20);
    let auth_port = free_port();
    let mut sup = Sup::new();
    sup.start(
        &time_service(auth_port),
        &[&format!("--port-range={first}-{last}")],
    );
    let api = sup.api();
    let (pid1, port1) = wait_for_value(LONG, || running(&api, "timeserver-1")).expect("ts1 runs");
    let (_, port2) = wait_for_value(LONG, || running(&api, "timeserver-2")).expect("ts2 runs");

    // promtool on every server's /metrics, as Prometheus will read them.
    for addr in [
        api.clone(),
        format!("127.0.0.1:{port1}"),
        format!("127.0.0.1:{auth_port}"),
    ] {
        let page = wait_for_value(LONG, || {
            http_get(&addr, "/metrics", &[])
                .ok()
                .filter(|r| r.status == 200)
        })
        .unwrap_or_else(|| panic!("{addr}/metrics"));
        testkit::assert_promtool_passes(&sup.spawner, &page.body);
    }

    let pdir = tempfile::tempdir().unwrap();
    let prometheus = start_prometheus(&sup.spawner, pdir.path(), &format!("http://{api}/sd"));
    let prom = prometheus.addr.clone();
    let want: BTreeSet<String> = [
        api.clone(),
        format!("127.0.0.1:{port1}"),
        format!("127.0.0.1:{port2}"),
    ]
    .into_iter()
    .collect();
    let all_up = |want: &BTreeSet<String>| {
        let t = targets(&prom);
        let got: BTreeSet<String> = t.iter().map(|(a, _, _)| a.clone()).collect();
        got == *want && t.iter().all(|(_, h, _)| h == "up")
    };
    assert!(
        wait_for(LONG, || all_up(&want)),
        "every target up: {:?} (want {want:?})",
        targets(&prom)
    );
    let tasks_of = |want_task: &str| {
        targets(&prom)
            .into_iter()
            .filter(|(_, _, t)| t == want_task)
            .count()
    };
    assert_eq!(tasks_of("timeserver-1"), 1, "{:?}", targets(&prom));
    let restarts_before = wait_for_value(LONG, || {
        query(
            &prom,
            "supervisor_task_restarts_total{task=\"timeserver-1\"}",
        )
    })
    .expect("the supervisor's restart counter is scraped");

    // kill -9: the new port is scraped and the old target gone within 15 s.
    let killed = Instant::now();
    unsafe { libc::kill(pid1 as i32, libc::SIGKILL) };
    let (_, port1b) = wait_for_value(LONG, || {
        running(&api, "timeserver-1").filter(|(p, _)| *p != pid1)
    })
    .expect("ts1 restarted");
    assert_ne!(port1b, port1);
    let want_after: BTreeSet<String> = [
        api.clone(),
        format!("127.0.0.1:{port1b}"),
        format!("127.0.0.1:{port2}"),
    ]
    .into_iter()
    .collect();
    let followed = wait_for(
        Duration::from_secs(15).saturating_sub(killed.elapsed()),
        || all_up(&want_after),
    );
    assert!(
        followed,
        "after {:?}, targets {:?} (want {want_after:?})",
        killed.elapsed(),
        targets(&prom)
    );
    eprintln!("prometheus followed the restart in {:?}", killed.elapsed());

    // PromQL: the counter went up, and the shipped recording rule sees it.
    let after = wait_for_value(LONG, || {
        query(
            &prom,
            "supervisor_task_restarts_total{task=\"timeserver-1\"}",
        )
        .filter(|v| *v >= restarts_before + 1.0)
    });
    assert!(after.is_some(), "restarts stayed at {restarts_before}");
    let per_minute = wait_for_value(LONG, || {
        query(
            &prom,
            "task:supervisor_task_restarts:increase1m{task=\"timeserver-1\"} > 0",
        )
    });
    assert!(
        per_minute.is_some(),
        "the recording rule never showed the restart"
    );
    assert_eq!(query(&prom, "supervisor_degraded"), Some(0.0));
    drop(prometheus);

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

/// A task with a port that does nothing but run.
fn idle_task(name: &str) -> String {
    serde_json::json!({"name": name, "command": ["sh", "-c", "exec sleep 1000", "{{port}}"]})
        .to_string()
}

fn port_in_sd(doc: &serde_json::Value, task: &str) -> Option<u16> {
    doc.as_array()?
        .iter()
        .find(|g| g["labels"]["task"] == task)?["targets"][0]
        .as_str()?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()
}

fn read_sd(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[test]
fn the_sd_file_follows_restarts_atomically_and_survives_write_failures() {
    use std::os::unix::fs::MetadataExt;
    let (first, last) = free_port_range(40);
    let mut sup = Sup::new();
    std::fs::create_dir(sup.path("sd")).unwrap();
    let file = sup.path("sd/targets.json");
    sup.start(
        &list(&[idle_task("a"), idle_task("b")]),
        &[
            &format!("--port-range={first}-{last}"),
            "--sd-file=sd/targets.json",
        ],
    );
    let api = sup.api();
    let (mut pid, _) = wait_for_value(LONG, || running(&api, "a")).expect("a runs");
    wait_for_value(LONG, || running(&api, "b")).expect("b runs");
    // Equal to /sd, the supervisor's own entry included.
    let same = || read_sd(&file).is_some_and(|f| f == get_json(&api, "/sd"));
    assert!(
        wait_for(LONG, same),
        "{:?} vs {}",
        read_sd(&file),
        get_json(&api, "/sd")
    );
    let doc = read_sd(&file).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 3, "{doc}");
    assert!(
        doc.as_array()
            .unwrap()
            .iter()
            .any(|g| g["labels"]["role"] == "supervisor" && g["targets"][0] == api.as_str()),
        "{doc}"
    );

    // Read in a tight loop while restarts rewrite it: every read is a whole document.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, file) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            let (mut reads, mut bad, mut seen) = (0u64, Vec::new(), BTreeSet::new());
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).unwrap();
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) if v.is_array() => {
                        seen.insert(text);
                    }
                    _ => bad.push(text),
                }
                reads += 1;
            }
            (reads, bad, seen.len())
        })
    };
    for _ in 0..5 {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let (p, port) = wait_for_value(LONG, || running(&api, "a").filter(|(p, _)| *p != pid))
            .expect("a restarted");
        pid = p;
        assert!(
            wait_for(LONG, || read_sd(&file)
                .is_some_and(|d| port_in_sd(&d, "a") == Some(port))),
            "the file never showed port {port}: {:?}",
            read_sd(&file)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, bad, versions) = reader.join().unwrap();
    assert!(
        bad.is_empty(),
        "{} of {reads} reads were not a whole document, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
    assert!(versions >= 5, "{versions} versions in {reads} reads");
    assert!(reads > 100, "only {reads} reads");
    assert!(wait_for(LONG, same));

    // A change that does not touch the list (a task without a port) leaves the file alone.
    let inode = std::fs::metadata(&file).unwrap().ino();
    let portless = serde_json::json!({"name": "quiet", "command": ["sleep", "1000"]}).to_string();
    let r = http_request(
        "POST",
        &api,
        "/tasks",
        &[("Content-Type", "application/json")],
        Some(&portless),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(wait_for(LONG, || running_portless(&api, "quiet")));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "identical content was rewritten"
    );

    // The folder goes away: the write fails, is logged with the path, and the supervisor goes
    // on; once the folder is back, the file is written again.
    std::fs::rename(sup.path("sd"), sup.path("sd.gone")).unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (_, port) = wait_for_value(LONG, || running(&api, "a").filter(|(p, _)| *p != pid))
        .expect("a restarted while the sd file cannot be written");
    assert!(sup.wait_log("cannot write --sd-file"), "{}", sup.log());
    let line = sup
        .log()
        .lines()
        .find(|l| l.contains("cannot write --sd-file"))
        .unwrap()
        .to_string();
    assert!(line.contains("sd/targets.json"), "{line}");
    assert!(line.contains("WARN"), "{line}");
    std::fs::create_dir(sup.path("sd")).unwrap();
    assert!(
        wait_for(LONG, || read_sd(&file)
            .is_some_and(|d| port_in_sd(&d, "a") == Some(port))),
        "not rewritten once the folder came back: {:?}",
        read_sd(&file)
    );
    assert!(wait_for(LONG, same));

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}

fn running_portless(api: &str, task: &str) -> bool {
    get_json(api, "/tasks")
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == task && t["state"] == "running")
}

#[test]
fn an_sd_file_in_a_missing_folder_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_to_exit(
        dir.path(),
        &list(&[idle_task("a")]),
        &["--port-range=40000-40010", "--sd-file=nope/sd.json"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--sd-file=nope/sd.json") && err.contains("does not exist"),
        "{err}"
    );
    let (code, err) = run_to_exit(
        dir.path(),
        &list(&[idle_task("a")]),
        &["--port-range=40000-40010", "--sd-file=."],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a file path"), "{err}");
}

fn promtool(sp: &Spawner, args: &[&str]) -> String {
    let out = sp
        .command("promtool")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("promtool is needed (Debian package prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_shipped_prometheus_config_and_rules_pass_promtool_and_their_unit_tests() {
    let sp = Spawner::new();
    let out = promtool(&sp, &["check", "config", "etc/prometheus.yml"]);
    assert!(out.contains("1 rule files found"), "{out}");
    let out = promtool(&sp, &["check", "rules", "etc/prometheus-rules.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    // The rules on made-up series: what each records, and when each alert fires.
    let dir = tempfile::tempdir().unwrap();
    let test = RULE_TESTS.replace(
        "RULES",
        &repo()
            .join("etc/prometheus-rules.yml")
            .display()
            .to_string(),
    );
    let path = dir.path().join("rules.test.yml");
    std::fs::write(&path, test).unwrap();
    let out = promtool(&sp, &["test", "rules", path.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}");
}

const RULE_TESTS: &str = r#"
rule_files: [RULES]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'supervisor_task_restarts_total{job="timeservice",instance="s:1",supervisor="i",task="ts"}'
        values: '0+1x80'
      - series: 'timeserver_http_requests_total{job="timeservice",instance="t:1",task="ts1",path="/time",status="200"}'
        values: '0+3x80'
      - series: 'timeserver_http_requests_total{job="timeservice",instance="t:1",task="ts1",path="/time",status="503"}'
        values: '0+1x80'
      - series: 'supervisor_task_yoyo{job="timeservice",instance="s:1",task="ts"}'
        values: '1x80'
      - series: 'supervisor_degraded{job="timeservice",instance="s:1"}'
        values: '0x3 1x80'
      - series: 'proxy_backend_up{job="proxy",instance="p:1",backend="timeserver-1",addr="127.0.0.1:1"}'
        values: '1x7 0x80'
      - series: 'proxy_uptime_seconds{job="proxy",instance="p:1"}'
        values: '0+15x80'
      - series: 'proxy_uptime_seconds{job="proxy",instance="q:1"}'
        values: '_x7 0+15x80'
    promql_expr_test:
      - expr: task:supervisor_task_restarts:increase1m
        eval_time: 5m
        exp_samples:
          - labels: 'task:supervisor_task_restarts:increase1m{supervisor="i",task="ts"}'
            value: 4
      - expr: task:timeserver_http_requests_5xx:ratio_rate1m
        eval_time: 5m
        exp_samples:
          - labels: 'task:timeserver_http_requests_5xx:ratio_rate1m{task="ts1"}'
            value: 0.25
    alert_rule_test:
      - eval_time: 4m
        alertname: TaskInYoyoMode
        exp_alerts: []
      - eval_time: 6m
        alertname: TaskInYoyoMode
        exp_alerts:
          - exp_labels: {severity: warning, job: timeservice, instance: "s:1", task: ts}
            exp_annotations:
              summary: "Task ts keeps crashing right after it starts"
              description: "ts has been in yo-yo mode for 5 minutes; see `supervisor ctl status` and its error file."
      - eval_time: 1m
        alertname: SupervisorDegraded
        exp_alerts: []
      - eval_time: 3m
        alertname: SupervisorDegraded
        exp_alerts:
          - exp_labels: {severity: warning, job: timeservice, instance: "s:1"}
            exp_annotations:
              summary: "The supervisor at s:1 is degraded"
              description: "`supervisor ctl health` says why (yo-yo, a task that cannot start, failing checkpoints, dropped log lines)."
      - eval_time: 1m
        alertname: NoHealthyTimeServerBehindProxy
        exp_alerts: []
      - eval_time: 4m
        alertname: NoHealthyTimeServerBehindProxy
        exp_alerts:
          - exp_labels: {severity: critical, instance: "p:1"}
            exp_annotations:
              summary: "The proxy at p:1 has no healthy time server"
              description: "Requests through the front door get 503; see http://127.0.0.1:9901/backends."
          - exp_labels: {severity: critical, job: proxy, instance: "q:1"}
            exp_annotations:
              summary: "The proxy at q:1 has no healthy time server"
              description: "Requests through the front door get 503; see http://127.0.0.1:9901/backends."
"#;

#[test]
fn ctl_top_once_shows_each_task_with_its_request_rate_cpu_and_memory() {
    let (first, last) = free_port_range(10);
    let mut sup = Sup::new();
    std::fs::write(sup.path("token"), "s3cret\n").unwrap();
    let ts = serde_json::json!({"name": "ts", "command": [
        testkit::bin_path("timeserver"), "--port={{port}}", format!("--authport={}", free_port()),
        "--authhost=127.0.0.1", "--authtimeout-ms=50"
    ]})
    .to_string();
    sup.start(
        &list(&[ts, idle_task("idle")]),
        &[
            &format!("--port-range={first}-{last}"),
            "--api-token-file=token",
        ],
    );
    let api = sup.api();
    let auth = [("Authorization", "Bearer s3cret")];
    let (pid, port) = wait_for_value(LONG, || {
        let r = http_get(&api, "/tasks", &auth).ok()?;
        let tasks: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        let t = tasks
            .as_array()?
            .iter()
            .find(|t| t["name"] == "ts" && t["state"] == "running")?;
        Some((t["pid"].as_u64()?, t["port"].as_u64()? as u16))
    })
    .expect("ts runs");
    let ts_addr = format!("127.0.0.1:{port}");
    assert!(wait_for(LONG, || http_get(&ts_addr, "/about", &[]).is_ok()));
    // Requests all through the frame's two samples.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), ts_addr.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if http_get(&addr, "/time", &[]).is_ok_and(|r| r.status == 200) {
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };
    let top = |extra: &[&str]| {
        let out = sup
            .spawner
            .bin("supervisor")
            .args(["ctl", &format!("--api=http://{api}")])
            .args(extra)
            .args(["top", "--once", "--interval=1s"])
            .current_dir(sup.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = top(&["--token-file=token"]);
    eprintln!("{out}");
    stop.store(true, Ordering::Relaxed);
    let served = load.join().unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(served > 5, "only {served} requests");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("supervisor pid") && lines[0].contains("ok"),
        "{out}"
    );
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "STATE", "PID", "PORT", "RESTARTS", "CPU%", "MEM", "REQ/S", "ERR/S", "INFLIGHT"
        ],
        "{out}"
    );
    let row = |name: &str| -> Vec<String> {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let ts_row = row("ts");
    assert_eq!(ts_row[1], "running", "{out}");
    assert_eq!(ts_row[2], pid.to_string(), "{out}");
    assert_eq!(ts_row[3], port.to_string(), "{out}");
    let num = |s: &str| {
        s.parse::<f64>()
            .unwrap_or_else(|_| panic!("{s:?} is not a number:\n{out}"))
    };
    assert!(
        num(&ts_row[7]) > 0.0,
        "a request rate while requests were made:\n{out}"
    );
    assert_eq!(num(&ts_row[8]), 0.0, "{out}");
    num(&ts_row[5]);
    assert!(
        ts_row[6].ends_with('M') && num(ts_row[6].trim_end_matches('M')) > 0.5,
        "{out}"
    );
    // A task with a port that serves no /metrics: state and usage, no request columns.
    let idle = row("idle");
    assert_eq!(idle[1], "running", "{out}");
    assert_eq!(&idle[7..], ["-", "-", "-"], "{out}");
    assert!(idle[6].ends_with('M'), "{out}");

    // Without the token: the error says which flag is missing, exit 1.
    let (code, out, err) = top(&[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("--token-file"), "{err}");

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
}
