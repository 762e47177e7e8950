//! The brief's sample configuration, verbatim: an auth server and two time servers.
use crate::common::*;
use std::path::Path;
use testkit::{bin_path, http_get, wait_for_value};

/// Lays out `bin/` and `etc/` in `dir` as `make bin` does in the repo.
pub fn lay_out_time_service(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    for b in ["authserver", "timeserver"] {
        std::os::unix::fs::symlink(bin_path(b), dir.join("bin").join(b)).unwrap();
    }
    for f in ["auth.xml", "log-01.xml", "log-02.xml", "tasks.json"] {
        std::fs::copy(repo.join("etc").join(f), dir.join("etc").join(f)).unwrap();
    }
}

/// The port in the newest log line `task started`/`task restarted` of `task` with a new pid.
fn port_of(log: &str, task: &str, not_pid: Option<&str>) -> Option<(String, u16)> {
    log.lines()
        .rev()
        .filter(|l| {
            l.contains(&format!("task={task} "))
                && (l.contains("task started") || l.contains("task restarted"))
        })
        .find_map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .map(str::to_string)
            };
            let pid = field("pid=")?;
            if Some(pid.as_str()) == not_pid {
                return None;
            }
            Some((pid, field("port=")?.parse().ok()?))
        })
}

#[test]
fn the_briefs_sample_configuration_runs_verbatim() {
    let (first, last) = testkit::free_port_range(10);
    let mut sup = Sup::new();
    lay_out_time_service(sup.dir.path());
    let tasks = std::fs::read_to_string(sup.path("etc/tasks.json")).unwrap();
    sup.start(&tasks, &[&format!("--port-range={first}-{last}")]);
    let (pid1, port1) = wait_for_value(LONG, || port_of(&sup.log(), "timeserver-1", None))
        .expect("timeserver-1 started");
    let (_, port2) = wait_for_value(LONG, || port_of(&sup.log(), "timeserver-2", None))
        .expect("timeserver-2 started");
    assert!(sup.log().contains("task=authserver"), "{}", sup.log());
    for p in [port1, port2] {
        assert!((first..=last).contains(&p), "port {p} inside the range");
    }
    let time = wait_for_value(LONG, || {
        http_get(&format!("127.0.0.1:{port1}"), "/time", &[]).ok()
    })
    .unwrap();
    assert_eq!(time.status, 200);
    assert!(time.body.contains("The time is now"), "{}", time.body);
    // timeserver-2 answers /time only after ~20 s by design; its front page is immediate.
    let index = wait_for_value(LONG, || {
        http_get(&format!("127.0.0.1:{port2}"), "/", &[]).ok()
    })
    .unwrap();
    assert_eq!(index.status, 200);

    // Kill a time server: it comes back at once, with a new pid, on the next port of the range.
    unsafe { libc::kill(pid1.parse().unwrap(), libc::SIGKILL) };
    let (pid1b, port1b) = wait_for_value(LONG, || port_of(&sup.log(), "timeserver-1", Some(&pid1)))
        .expect("restarted");
    assert_ne!(port1b, port1);
    assert!((first..=last).contains(&port1b));
    let again = wait_for_value(LONG, || {
        http_get(&format!("127.0.0.1:{port1b}"), "/time", &[]).ok()
    })
    .unwrap();
    assert!(again.body.contains("The time is now"));
    let log = sup.log();
    assert!(
        log.contains(&format!(
            "task died task=timeserver-1 pid={pid1} status=\"killed by SIGKILL\""
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "task restarted task=timeserver-1 pid={pid1b} port={port1b}"
        )),
        "{log}"
    );

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(
        sup.marked_pids().is_empty(),
        "left running: {:?}",
        sup.marked_pids()
    );
}
