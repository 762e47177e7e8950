//! `etc/timeservice.json`: the whole time service in one task list, the proxy in front. Run
//! with its fixed ports (7070, 8080, 9901 and the supervisor's 7171) moved to free ones, so
//! that tests can run side by side; everything else is the file as shipped.
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use testkit::{SOON, bin_path, free_port, http_get, wait_for, wait_for_value};

/// The task list with every fixed port replaced.
fn with_free_ports(list: &str, auth: u16, proxy: u16, admin: u16, api: &str) -> Value {
    let mut tasks: Value = serde_json::from_str(list).unwrap();
    for t in tasks.as_array_mut().unwrap() {
        let argv = t["command"].as_array_mut().unwrap();
        let prog = argv[0].as_str().unwrap().to_string();
        for a in argv.iter_mut() {
            let s = a.as_str().unwrap();
            let replaced = s
                .replace("127.0.0.1:8080", &format!("127.0.0.1:{proxy}"))
                .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
                .replace("127.0.0.1:7171", api);
            *a = Value::String(replaced);
        }
        if prog.ends_with("authserver") {
            argv.push(format!("--authport={auth}").into());
        } else if prog.ends_with("timeserver") {
            argv.push(format!("--authport={auth}").into());
            argv.push("--authhost=127.0.0.1".into());
        }
    }
    tasks
}

#[test]
fn the_time_service_runs_behind_the_proxy_and_survives_kill_9() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let list = std::fs::read_to_string(repo.join("etc/timeservice.json")).unwrap();
    let (auth, proxy, admin) = (free_port(), free_port(), free_port());
    let mut sup = Sup::prepare(&Value::Array(vec![]), &[]);
    sup.tasks = with_free_ports(&list, auth, proxy, admin, &sup.api).to_string();
    for d in ["bin", "etc"] {
        std::fs::create_dir_all(sup.path(d)).unwrap();
    }
    for b in ["authserver", "timeserver", "proxy"] {
        std::os::unix::fs::symlink(bin_path(b), sup.path(&format!("bin/{b}"))).unwrap();
    }
    for f in ["auth.xml", "log-01.xml", "log-02.xml", "proxy.xml"] {
        std::fs::copy(repo.join("etc").join(f), sup.path(&format!("etc/{f}"))).unwrap();
    }
    sup.spawn();
    sup.wait_serving("timeserver-1");
    sup.wait_serving("timeserver-2");
    let front = format!("127.0.0.1:{proxy}");
    let admin = format!("127.0.0.1:{admin}");
    let backends = || -> usize {
        http_get(&admin, "/backends", &[])
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .and_then(|v| v["backends"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    assert!(wait_for(LONG, || backends() == 2), "log:\n{}", sup.log());

    // Log in through the proxy; /time greets the user.
    let mut c = Client::new(&front, Duration::from_secs(30));
    let login = c.get("/login?name=Grace").unwrap();
    assert_eq!(login.status, 302, "{}", login.text());
    let cookie = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let head = format!("GET /time HTTP/1.1\r\nHost: {front}\r\nCookie: {cookie}");
    let time = c.send(&head, b"").unwrap();
    assert_eq!(time.status, 200);
    assert!(time.text().contains("Grace"), "{}", time.text());

    // kill -9 the fast time server: /time keeps answering, and the proxy follows it to its
    // new port (timeserver-2 answers slowly by design: 20 s at most 2 at a time).
    let (pid, port) = sup.wait_serving("timeserver-1");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for _ in 0..3 {
        let a = c.get("/time").unwrap();
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(a.text().contains("The time is now"));
    }
    let (_, moved) = wait_for_value(LONG, || {
        sup.running("timeserver-1").filter(|(p, _)| *p != pid)
    })
    .expect("timeserver-1 restarted");
    assert_ne!(moved, port);
    let listed = || {
        http_get(&admin, "/backends", &[])
            .map(|r| r.body.contains(&format!("127.0.0.1:{moved}")))
            .unwrap_or(false)
    };
    assert!(wait_for(SOON, listed));
    // The proxy logs where etc/proxy.xml says.
    assert!(wait_for(SOON, || std::fs::read_to_string(
        sup.path("log/proxy.log")
    )
    .is_ok_and(|l| l.contains("path=/time"))));
}
