//! Logged-in users stay logged in across a restart of the auth server: its default dump file
//! (`run/authserver.json` in its working folder) carries the sessions over, with the brief's
//! command line (no `--dumpfile`).
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use testkit::{
    ServerProc, Spawner, free_port, free_port_range, http_get, wait_for, wait_for_value,
};

use crate::common::{SOON, timeserver};

/// Long enough for the default 10 s checkpoint interval on a loaded machine.
const CHECKPOINT: Duration = Duration::from_secs(25);

/// `etc/auth.xml` as the brief has it, in `dir`, so `--log=etc/auth.xml` works from there.
fn lay_out_etc(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy(repo.join("etc/auth.xml"), dir.join("etc/auth.xml")).unwrap();
}

/// Logs `name` in through the time server: the session cookie, or `None` if the login failed
/// (the auth server is not up yet).
fn try_log_in(ts_addr: &str, name: &str) -> Option<String> {
    let r = http_get(
        ts_addr,
        &format!("/login?name={}", name.replace(' ', "%20")),
        &[],
    )
    .ok()?;
    if r.status != 302 {
        return None;
    }
    let set = r.header("set-cookie")?;
    let value = set.strip_prefix("timeservice-session=")?;
    Some(value.split(';').next()?.to_string())
}

fn log_in(ts_addr: &str, name: &str) -> String {
    try_log_in(ts_addr, name).unwrap_or_else(|| panic!("cannot log {name} in"))
}

/// Whether `/time` with `cookie` greets `name`.
fn greets(ts_addr: &str, cookie: &str, name: &str) -> bool {
    let header = format!("timeservice-session={cookie}");
    http_get(ts_addr, "/time", &[("Cookie", &header)])
        .is_ok_and(|r| r.status == 200 && r.body.contains(&format!(" UTC), {name}.</p>")))
}

fn dump_holds(dump: &Path, cookie: &str) -> bool {
    std::fs::read_to_string(dump).is_ok_and(|t| t.contains(cookie))
}

#[test]
fn sessions_survive_kill_9_and_sigterm_of_the_auth_server() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    lay_out_etc(dir.path());
    let authport = free_port();
    // The brief's command line, on a free port; the interval only where a test needs it.
    let start_auth = |extra: &[&str]| {
        let mut cmd = sp.bin("authserver");
        cmd.current_dir(dir.path())
            .args(["--log=etc/auth.xml", &format!("--authport={authport}")])
            .args(extra);
        ServerProc::start(cmd, &format!("127.0.0.1:{authport}"))
    };
    let ts = timeserver(&sp, &["--authport", &authport.to_string()]);
    let dump = dir.path().join("run/authserver.json");

    let mut auth = start_auth(&["--checkpoint-interval=200ms"]);
    let ada = log_in(ts.addr(), "Ada Lovelace");
    assert!(greets(ts.addr(), &ada, "Ada Lovelace"));
    assert!(
        wait_for(SOON, || dump_holds(&dump, &ada)),
        "checkpointed to the default file"
    );
    auth.kill9();
    assert!(
        !greets(ts.addr(), &ada, "Ada Lovelace"),
        "anonymous while the auth server is down"
    );

    // A checkpoint interval no test outlasts: only the final dump can save Bob.
    let mut auth = start_auth(&["--checkpoint-interval=1h"]);
    assert!(
        greets(ts.addr(), &ada, "Ada Lovelace"),
        "restored after kill -9"
    );
    let bob = log_in(ts.addr(), "Bob");
    auth.signal(libc::SIGTERM);
    let status = auth.wait_exit(SOON).expect("stops");
    assert_eq!(status.code(), Some(0), "{}", auth.stderr());
    assert!(dump_holds(&dump, &bob), "the final dump has Bob");

    let _auth = start_auth(&[]);
    assert!(greets(ts.addr(), &ada, "Ada Lovelace"));
    assert!(greets(ts.addr(), &bob, "Bob"), "restored after SIGTERM");
}

/// A supervisor running the time service from `dir`, with its API on `api`.
struct Supervised {
    child: Child,
    api: String,
}

impl Supervised {
    fn start(sp: &Spawner, dir: &Path, tasks: &str) -> Supervised {
        let (first, last) = free_port_range(10);
        let api = format!("127.0.0.1:{}", free_port());
        let mut child = sp
            .bin("supervisor")
            .current_dir(dir)
            .args([
                format!("--port-range={first}-{last}"),
                format!("--listen={api}"),
                "--log=sup.log".to_string(),
                "--dumpfile=run/supervisor.dump".to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(tasks.as_bytes())
            .unwrap();
        Supervised { child, api }
    }

    /// `(pid, port)` of `task` once it runs.
    fn running(&self, task: &str, not_pid: Option<u64>) -> (u64, Option<u64>) {
        wait_for_value(SOON, || {
            let r = http_get(&self.api, &format!("/tasks/{task}"), &[]).ok()?;
            let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            let pid = v["pid"].as_u64()?;
            (v["state"] == "running" && Some(pid) != not_pid).then(|| (pid, v["port"].as_u64()))
        })
        .unwrap_or_else(|| panic!("{task} never ran (again)"))
    }

    fn ctl(&self, sp: &Spawner, args: &[&str]) {
        let out = sp
            .bin("supervisor")
            .arg("ctl")
            .arg(format!("--api=http://{}", self.api))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ctl {args:?}: {out:?}");
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // The Spawner kills the tasks by their mark; the supervisor is ours to reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn under_the_supervisor_a_restart_of_the_auth_server_logs_nobody_out() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    lay_out_etc(dir.path());
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    for b in ["authserver", "timeserver"] {
        std::os::unix::fs::symlink(testkit::bin_path(b), dir.path().join("bin").join(b)).unwrap();
    }
    let authport = free_port().to_string();
    // The brief's auth server command, moved off its fixed port 7070 for the test.
    let tasks = serde_json::json!([
        {"command": ["./bin/authserver", "--log=etc/auth.xml", format!("--authport={authport}")],
         "output": "out/auth.out", "error": "out/auth.err"},
        {"command": ["./bin/timeserver", "--port={{port}}", format!("--authport={authport}")],
         "output": "out/ts.out", "error": "out/ts.err"},
    ])
    .to_string();
    let mut sup = Supervised::start(&sp, dir.path(), &tasks);
    let (_, port) = sup.running("timeserver", None);
    let ts = format!("127.0.0.1:{}", port.expect("a port"));
    let (auth_pid, _) = sup.running("authserver", None);
    let ada = wait_for_value(SOON, || try_log_in(&ts, "Ada")).expect("the service is up");

    // `supervisor ctl restart`: SIGTERM, whose final dump carries Ada over.
    sup.ctl(&sp, &["restart", "authserver"]);
    let (auth_pid2, _) = sup.running("authserver", Some(auth_pid));
    assert!(
        wait_for(SOON, || greets(&ts, &ada, "Ada")),
        "still logged in after ctl restart"
    );

    // kill -9, after the checkpoint (every 10 s by default) has Bob.
    let bob = log_in(&ts, "Bob");
    let dump = dir.path().join("run/authserver.json");
    assert!(
        wait_for(CHECKPOINT, || dump_holds(&dump, &bob)),
        "checkpointed"
    );
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is the supervisor's live child.
    unsafe { libc::kill(auth_pid2 as i32, libc::SIGKILL) };
    sup.running("authserver", Some(auth_pid2));
    assert!(
        wait_for(SOON, || greets(&ts, &bob, "Bob")),
        "still logged in after kill -9"
    );
    assert!(greets(&ts, &ada, "Ada"));
    let home = http_get(
        &ts,
        "/",
        &[("Cookie", &format!("timeservice-session={ada}"))],
    )
    .unwrap();
    assert!(home.body.contains("Greetings, Ada"), "{}", home.body);

    // SAFETY: as above; the supervisor is our own child.
    unsafe { libc::kill(sup.child.id() as i32, libc::SIGTERM) };
    let status = wait_for_value(SOON, || sup.child.try_wait().unwrap()).expect("stops");
    assert_eq!(status.code(), Some(0));
}
