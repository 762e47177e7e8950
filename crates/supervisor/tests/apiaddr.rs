//! No silent API loss, and a `ctl` that cannot act on the wrong supervisor: a taken API address
//! is exit 1 naming its holder; the runtime file `DUMP.api` leads `ctl` to its supervisor; a
//! supervisor other than the one a runtime file names refuses to act (412); after a clean exit
//! no file names a pid as if it were alive.
//!
//! Tests whose name holds `default_api_port` use 127.0.0.1:7171 itself; `.config/nextest.toml`
//! runs them one at a time.
use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{Spawner, free_port, http_get, http_request, pid_alive, wait_for, wait_for_value};

pub const DEFAULT_API: &str = "127.0.0.1:7171";

/// `supervisor ctl ARGS` in `dir`, without the environment that would point it elsewhere:
/// (exit code, stdout, stderr).
pub fn ctl_in(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(testkit::bin_path("supervisor"))
        .arg("ctl")
        .args(args)
        .current_dir(dir)
        .env_remove("SUPERVISOR_API")
        .env_remove("SUPERVISOR_DUMPFILE")
        .env_remove("SUPERVISOR_TOKEN_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(addr: &str, path: &str) -> Value {
    let r = http_get(addr, path, &[]).unwrap();
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Starts `sup` with `--listen=127.0.0.1:7171` (a supervisor of another worktree may hold it
/// for a moment: then it is tried again). Returns when its API answers.
fn start_on_default_port(sup: &mut Sup, tasks: &str, args: &[&str]) {
    let mut all: Vec<&str> = args.to_vec();
    let listen = format!("--listen={DEFAULT_API}");
    all.push(&listen);
    let ok = wait_for(Duration::from_secs(60), || {
        sup.start(tasks, &all);
        let up = wait_for_value(LONG, || {
            if sup.log().contains("API listening") {
                return Some(true);
            }
            sup.child
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
                .map(|_| false)
        });
        if up == Some(true) {
            return true;
        }
        let _ = sup.child.as_mut().unwrap().wait();
        std::thread::sleep(Duration::from_millis(500));
        false
    });
    assert!(
        ok,
        "127.0.0.1:7171 stayed taken by someone else for a minute; this test needs it: {}",
        std::fs::read_to_string(sup.path("sup.stderr")).unwrap_or_default()
    );
}

/// Runs a supervisor in `dir` with `args` exactly (no `--listen` added) until it exits:
/// (exit code, stderr). Asserts that nothing it started is left running.
fn run_exactly(dir: &Path, tasks: &str, args: &[&str]) -> (Option<i32>, String) {
    let spawner = Spawner::new();
    let mut cmd = spawner.bin("supervisor");
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::{Read, Write};
    let _ = child.stdin.take().unwrap().write_all(tasks.as_bytes());
    let status = wait_for_value(LONG, || child.try_wait().unwrap()).expect("it exits");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        spawner.pids().is_empty(),
        "nothing may be left running: {:?}",
        spawner.pids()
    );
    (status.code(), err)
}

#[test]
fn a_taken_default_api_port_is_exit_1_naming_the_holder_and_the_flag() {
    let mut a = Sup::new();
    start_on_default_port(
        &mut a,
        &list(&[sh_task("a", "exec sleep 1000")]),
        &["--dumpfile=run/a.dump"],
    );
    let a_dump = a.path("run/a.dump");
    let a_instance = json_of(DEFAULT_API, "/health")["instance"]
        .as_str()
        .unwrap()
        .to_string();

    // The second one, with the default address and a task that would leave a trace.
    let b = tempfile::tempdir().unwrap();
    let tasks = list(&[sh_task("b", "touch started; exec sleep 1000")]);
    let (code, err) = run_exactly(b.path(), &tasks, &["--dumpfile=run/b.dump", "--log=b.log"]);
    assert_eq!(code, Some(1), "{err}");
    for want in [
        "cannot listen on the default API address 127.0.0.1:7171",
        "another supervisor",
        &format!("pid {}", a.pid()),
        &a_dump.display().to_string(),
        &a_instance,
        "--listen=127.0.0.1:PORT",
        "--listen=none",
    ] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
    assert!(
        !b.path().join("started").exists(),
        "no task may start before the API is bound"
    );
    assert!(
        !b.path().join("run/b.dump.api").exists(),
        "no runtime file is left behind"
    );
    // The first supervisor is untouched and still answers as itself.
    assert_eq!(json_of(DEFAULT_API, "/health")["instance"], a_instance);
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(), Some(0));
}

#[test]
fn an_explicitly_taken_api_address_names_the_flag_and_the_holding_process() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tasks = list(&[sh_task("b", "touch started; exec sleep 1000")]);
    let (code, err) = run_exactly(dir.path(), &tasks, &[&format!("--listen={addr}")]);
    assert_eq!(code, Some(1), "{err}");
    for want in [
        format!("cannot listen on --listen={addr} for the API"),
        format!("held by pid {}", std::process::id()),
        "--listen=none".to_string(),
    ] {
        assert!(err.contains(&want), "stderr lacks {want:?}:\n{err}");
    }
    assert!(!dir.path().join("started").exists());
}

#[test]
fn ctl_finds_its_supervisor_by_dumpfile_while_another_holds_the_default_api_port() {
    let mut a = Sup::new();
    start_on_default_port(
        &mut a,
        &list(&[sh_task("only-in-a", "exec sleep 1000")]),
        &[],
    );
    let mut b = Sup::new();
    b.start(
        &list(&[sh_task("only-in-b", "echo $$ >> b.pids; exec sleep 1000")]),
        &["--dumpfile=run/supervisor.dump"],
    );
    let b_api = b.api();
    let first = wait_pid_file(&b.path("b.pids"));
    let b_dump = b.path("run/supervisor.dump").display().to_string();
    let elsewhere = tempfile::tempdir().unwrap();

    // --dumpfile from anywhere.
    let (code, out, err) = ctl_in(elsewhere.path(), &["--dumpfile", &b_dump, "status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("only-in-b") && !out.contains("only-in-a"),
        "{out}"
    );
    let (code, out, err) = ctl_in(
        elsewhere.path(),
        &[&format!("--dumpfile={b_dump}"), "restart", "only-in-b"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let b_pids = || std::fs::read_to_string(b.path("b.pids")).unwrap_or_default();
    assert!(
        wait_for(LONG, || b_pids().lines().count() >= 2),
        "restarted"
    );
    assert!(!pid_alive(first));
    // No flag, in the folder whose run/supervisor.dump.api exists (as after `make run`): B.
    let (code, out, err) = ctl_in(b.dir.path(), &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("only-in-b") && !out.contains("only-in-a"),
        "{out}"
    );
    // No flag and no runtime file: the default address, which is A.
    let (code, out, err) = ctl_in(elsewhere.path(), &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("only-in-a") && !out.contains("only-in-b"),
        "{out}"
    );
    let a_restarts = json_of(DEFAULT_API, "/tasks/only-in-a")["restarts"].clone();
    assert_eq!(a_restarts, 0, "A was never acted on");
    assert_eq!(json_of(&b_api, "/tasks/only-in-b")["restarts"], 1);
    for s in [&mut a, &mut b] {
        s.signal(libc::SIGTERM);
        assert_eq!(s.wait_exit(), Some(0));
    }
}

#[test]
fn ctl_refuses_a_supervisor_other_than_the_one_its_runtime_file_names() {
    let port = free_port();
    let listen = format!("--listen=127.0.0.1:{port}");
    let addr = format!("127.0.0.1:{port}");
    let mut a = Sup::new();
    a.start(
        &list(&[sh_task("web", "exec sleep 1000")]),
        &["--dumpfile=a.dump", &listen],
    );
    a.api();
    let a_instance = json_of(&addr, "/health")["instance"]
        .as_str()
        .unwrap()
        .to_string();
    let a_pid = a.pid();
    // A crashes: its runtime file stays; B (another dump) takes the port, with a task of the
    // same name.
    a.signal(libc::SIGKILL);
    a.wait_exit();
    assert!(a.path("a.dump.api").exists());
    let mut b = Sup::new();
    b.start(
        &list(&[sh_task("web", "exec sleep 1000")]),
        &["--dumpfile=b.dump", &listen],
    );
    b.api();
    let b_health = json_of(&addr, "/health");
    let b_instance = b_health["instance"].as_str().unwrap().to_string();
    assert_ne!(a_instance, b_instance);
    let b_pid_before = json_of(&addr, "/tasks/web")["pid"].clone();

    let a_dump = a.path("a.dump").display().to_string();
    let (code, out, err) = ctl_in(a.dir.path(), &["--dumpfile", &a_dump, "restart", "web"]);
    assert_eq!(code, Some(1), "{out}{err}");
    for want in [
        "refusing to act".to_string(),
        b_instance.clone(),
        format!("pid {}", b.pid()),
        a_instance.clone(),
        format!("pid {a_pid}"),
        "no longer running".into(),
    ] {
        assert!(err.contains(&want), "stderr lacks {want:?}:\n{err}");
    }
    // The same through the API directly: refused before acting, and named.
    let expect = [("X-Timeservice-Expect-Instance", a_instance.as_str())];
    let r = http_request("POST", &addr, "/tasks/web/restart", &expect, None).unwrap();
    assert_eq!(r.status, 412, "{}", r.body);
    assert_eq!(
        r.header("x-timeservice-instance"),
        Some(b_instance.as_str())
    );
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["instance"], b_instance.as_str());
    let web = json_of(&addr, "/tasks/web");
    assert_eq!(web["restarts"], 0, "B's task was not restarted");
    assert_eq!(web["pid"], b_pid_before);
    // Every answer names its instance; the right expectation is served.
    let right = [("X-Timeservice-Expect-Instance", b_instance.as_str())];
    for (method, path, status) in [
        ("GET", "/health", 200),
        ("GET", "/nope", 404),
        ("POST", "/tasks/web/restart", 202),
    ] {
        let r = http_request(method, &addr, path, &right, None).unwrap();
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(
            r.header("x-timeservice-instance"),
            Some(b_instance.as_str()),
            "{method} {path}"
        );
    }
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(), Some(0));
}

#[test]
fn the_runtime_file_names_the_live_supervisor_and_no_file_names_a_pid_after_a_clean_exit() {
    use std::os::unix::fs::PermissionsExt;
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("t", "exec sleep 1000")]),
        &["--dumpfile=run/s.dump"],
    );
    let api = sup.api();
    let rt_path = sup.path("run/s.dump.api");
    let rt: Value = serde_json::from_str(&std::fs::read_to_string(&rt_path).unwrap()).unwrap();
    let health = json_of(&api, "/health");
    assert_eq!(rt["pid"], sup.pid());
    assert_eq!(rt["api"], api.as_str());
    assert_eq!(rt["instance"], health["instance"]);
    assert_eq!(rt["start_time"], health["start_time"]);
    assert_eq!(
        std::fs::metadata(&rt_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let lock = std::fs::read_to_string(sup.path("run/s.dump.lock")).unwrap();
    assert_eq!(lock, "", "the lock file names no pid");
    let dump = sup.path("run/s.dump").display().to_string();
    let elsewhere = tempfile::tempdir().unwrap();
    let (code, out, err) = ctl_in(elsewhere.path(), &["--dumpfile", &dump, "pid"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), sup.pid().to_string().as_str()),
        "{err}"
    );
    let (code, out, _) = ctl_in(
        elsewhere.path(),
        &["--api", &format!("http://{api}"), "pid"],
    );
    assert_eq!(
        (code, out.trim()),
        (Some(0), sup.pid().to_string().as_str())
    );
    let (code, out, _) = ctl_in(elsewhere.path(), &["--dumpfile", &dump, "health"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&format!("pid {}", sup.pid())), "{out}");

    // A second supervisor on the same dump is told who holds it, by the live pid.
    let (code, err) = run_exactly(
        sup.dir.path(),
        "[]",
        &["--dumpfile=run/s.dump", "--listen=none"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "another supervisor (pid {}, API {api})",
            sup.pid()
        )),
        "{err}"
    );

    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(
        !rt_path.exists(),
        "the runtime file is removed at a clean exit"
    );
    assert_eq!(
        std::fs::read_to_string(sup.path("run/s.dump.lock")).unwrap(),
        ""
    );
    let (code, out, err) = ctl_in(elsewhere.path(), &["--dumpfile", &dump, "pid"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("no supervisor is running"), "{err}");
}

#[test]
fn ctl_pid_refuses_the_stale_pid_of_a_crashed_supervisor() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("t", "exec sleep 1000")]),
        &["--dumpfile=s.dump"],
    );
    sup.api();
    let pid = sup.pid();
    sup.signal(libc::SIGKILL);
    sup.wait_exit();
    let dump = sup.path("s.dump").display().to_string();
    let (code, out, err) = ctl_in(sup.dir.path(), &["--dumpfile", &dump, "pid"]);
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(
        err.contains(&format!("pid {pid} is no longer running")),
        "{err}"
    );
    let (code, _, err) = ctl_in(sup.dir.path(), &["--dumpfile", &dump, "status"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot reach") && err.contains("no longer running"),
        "{err}"
    );
}

#[test]
fn without_an_api_ctl_pid_checks_the_runtime_file_and_other_commands_say_why_they_cannot() {
    let mut sup = Sup::new();
    sup.start(
        &list(&[sh_task("t", "echo $$ > t.pid; exec sleep 1000")]),
        &["--dumpfile=s.dump", "--listen=none"],
    );
    wait_pid_file(&sup.path("t.pid"));
    assert!(wait_for(LONG, || sup.path("s.dump.api").exists()));
    let (code, out, err) = ctl_in(sup.dir.path(), &["--dumpfile=s.dump", "pid"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), sup.pid().to_string().as_str()),
        "{err}"
    );
    let (code, _, err) = ctl_in(sup.dir.path(), &["--dumpfile=s.dump", "status"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("runs without an API (--listen=none)"), "{err}");
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(!sup.path("s.dump.api").exists());
}
