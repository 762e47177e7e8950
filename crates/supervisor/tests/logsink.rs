//! Nothing the log does can block the event loop: with standard error a pipe that nobody reads,
//! restarts still happen at once, dropped lines are counted in `/health` and `/metrics`, and a
//! clean exit is bounded; WARN+ lines reach a terminal when the log is a file.
use crate::common::*;
use serde_json::Value;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use testkit::{free_port, http_get, wait_for, wait_for_value};

/// Crash-looping tasks: together they log enough to fill the pipe and the log queue in seconds.
const CRASHERS: usize = 4;

/// A supervisor logging to standard error (a pipe the test holds and does not read), at debug
/// level, with `CRASHERS` crash-looping tasks and one long-running `victim`.
struct Stuck {
    sup: Sup,
    child: Child,
    reader: Option<std::fs::File>,
    api: String,
}

impl Stuck {
    fn start() -> Stuck {
        let sup = Sup::new();
        let mut tasks: Vec<String> = (0..CRASHERS)
            .map(|i| sh_task(&format!("crash-{i}"), "sleep 0.002; exit 1"))
            .collect();
        tasks.push(sh_task("victim", "echo $$ >> victim.pids; exec sleep 1000"));
        let api = format!("127.0.0.1:{}", free_port());
        let (reader, writer) = pipe();
        let mut cmd = sup.spawner.bin("supervisor");
        cmd.current_dir(sup.dir.path())
            .args([
                "--log-level=debug",
                // Deaths after 2 ms are not quick: no yo-yo back-off, an endless crash loop.
                "--min-uptime=1ms",
                "--dumpfile=s.dump",
                "--checkpoint-interval=50ms",
                &format!("--listen={api}"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::from(writer));
        let mut child = cmd.spawn().unwrap();
        drop(cmd); // our copy of the pipe's write end
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(list(&tasks).as_bytes())
            .unwrap();
        Stuck {
            sup,
            child,
            reader: Some(reader),
            api,
        }
    }

    fn health(&self) -> Option<Value> {
        let r = http_get(&self.api, "/health", &[]).ok()?;
        serde_json::from_str(&r.body).ok()
    }

    fn victim_pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.sup.path("victim.pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Waits until the supervisor reports dropped log lines.
    fn wait_for_drops(&self) -> Value {
        wait_for_value(Duration::from_secs(60), || {
            self.health()
                .filter(|h| h["log"]["dropped_lines"].as_u64().unwrap_or(0) > 0)
        })
        .expect("the supervisor reports dropped log lines within a minute")
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = &mut self.child;
        wait_for_value(within, || child.try_wait().unwrap())
            .map(|s| s.code())
            .unwrap_or_else(|| panic!("the supervisor did not exit within {within:?}"))
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_stderr_pipe_nobody_reads_neither_delays_a_restart_nor_stops_a_clean_exit() {
    let mut s = Stuck::start();
    let victim = wait_pid_file(&s.sup.path("victim.pids"));
    let health = s.wait_for_drops();
    assert_eq!(health["status"], "degraded", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(reasons.contains("log lines are being dropped"), "{reasons}");

    // The loop still restarts a killed task at once, although every log line is stuck.
    let killed = Instant::now();
    unsafe { libc::kill(victim, libc::SIGKILL) };
    assert!(
        wait_for(Duration::from_secs(1), || s.victim_pids().len() >= 2),
        "the victim was not restarted within a second (after {:?}): {:?}",
        killed.elapsed(),
        s.victim_pids()
    );
    eprintln!("victim restarted {:?} after its SIGKILL", killed.elapsed());
    let r = http_get(&s.api, "/metrics", &[]).unwrap();
    let dropped: u64 = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("supervisor_log_dropped_lines_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no dropped-lines counter in\n{}", r.body));
    assert!(dropped > 0);

    // Someone reads the pipe again: the queued lines come out, with a note of what was lost,
    // and SIGTERM stops everything cleanly.
    let mut reader = s.reader.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = reader.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    assert_eq!(s.wait_exit(LONG), Some(0));
    let text = drained.join().unwrap();
    assert!(
        text.contains("log lines were dropped"),
        "the log says lines were lost: {}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(
        text.contains("all tasks stopped"),
        "the last lines are flushed"
    );
    assert!(s.sup.marked_pids().is_empty(), "{:?}", s.sup.marked_pids());
}

#[test]
fn a_clean_exit_does_not_wait_for_a_stuck_stderr() {
    let mut s = Stuck::start();
    wait_pid_file(&s.sup.path("victim.pids"));
    s.wait_for_drops();
    let t = Instant::now();
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    // Stopping the tasks, then at most 2 s for the log: well within LONG.
    assert_eq!(s.wait_exit(LONG), Some(0));
    eprintln!("exited {:?} after SIGTERM with stderr stuck", t.elapsed());
    assert!(s.sup.marked_pids().is_empty(), "{:?}", s.sup.marked_pids());
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [-1; 2];
    // SAFETY: a valid two-element out-array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh descriptors that nothing else owns.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (-1, -1);
    // SAFETY: valid out-pointers; no name, termios or window size wanted.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh descriptors that nothing else owns.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(m),
            std::os::fd::OwnedFd::from_raw_fd(s),
        )
    }
}

#[test]
fn with_a_log_file_warnings_and_errors_also_reach_the_terminal() {
    let sup = Sup::new();
    let (master, slave) = pty();
    let tasks = list(&[sh_task("web", "echo $$ >> web.pids; exec sleep 1000")]);
    let mut cmd = sup.spawner.bin("supervisor");
    cmd.current_dir(sup.dir.path())
        .args(["--log=sup.log", "--listen=127.0.0.1:0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(tasks.as_bytes())
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let mut m = std::fs::File::from(master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the supervisor (the last holder of the terminal's other end) is gone.
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let terminal = || seen.lock().unwrap().clone();
    let pid = wait_pid_file(&sup.path("web.pids"));
    assert!(
        wait_for(LONG, || terminal().contains("running:")),
        "{}",
        terminal()
    );
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(
        wait_for(LONG, || terminal().contains("WARN task died task=web")),
        "the death's WARN line reaches the terminal:\n{}",
        terminal()
    );
    assert!(sup.wait_log("task restarted"));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for_value(LONG, || child.try_wait().unwrap()).expect("exits");
    assert_eq!(status.code(), Some(0));
    reader.join().unwrap();
    let shown = terminal();
    // Only WARN and ERROR lines are copied: the INFO lines stay in the file.
    assert!(!shown.contains("INFO"), "{shown}");
    assert!(sup.log().contains("INFO task restarted task=web"));
    assert!(shown.contains("dashboard: http://127.0.0.1:"), "{shown}");
}

#[test]
fn a_terminal_that_nobody_reads_holds_up_neither_the_log_file_nor_the_exit() {
    let sup = Sup::new();
    // The terminal's other end is kept open and never read: it fills after about 20 KB.
    let (_master, slave) = pty();
    let mut tasks: Vec<String> = (0..CRASHERS)
        .map(|i| sh_task(&format!("crash-{i}"), "sleep 0.002; exit 1"))
        .collect();
    tasks.push(sh_task("victim", "echo $$ >> victim.pids; exec sleep 1000"));
    let api = format!("127.0.0.1:{}", free_port());
    let mut cmd = sup.spawner.bin("supervisor");
    cmd.current_dir(sup.dir.path())
        .args([
            "--log=sup.log",
            "--min-uptime=1ms",
            &format!("--listen={api}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list(&tasks).as_bytes())
        .unwrap();
    let victim = wait_pid_file(&sup.path("victim.pids"));
    // Every death is a WARN line copied to the terminal: 1500 of them are several times what
    // it holds, and the file must get them all the same.
    assert!(
        wait_for(Duration::from_secs(60), || sup
            .log()
            .matches("WARN task died")
            .count()
            >= 1500),
        "the log file stalled with the terminal: {} deaths logged",
        sup.log().matches("WARN task died").count()
    );
    unsafe { libc::kill(victim, libc::SIGKILL) };
    assert!(
        wait_for(Duration::from_secs(1), || sup
            .log()
            .contains("task restarted task=victim")),
        "the victim's restart reaches the file at once"
    );
    let health: Value =
        serde_json::from_str(&http_get(&api, "/health", &[]).unwrap().body).unwrap();
    assert_eq!(health["log"]["dropped_lines"], 0, "{health}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for_value(LONG, || child.try_wait().unwrap()).expect("it exits");
    assert_eq!(status.code(), Some(0));
    assert!(sup.log().contains("all tasks stopped"));
}
