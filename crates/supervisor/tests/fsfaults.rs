//! File-system faults: a dump folder (and a log folder) on a tiny tmpfs that fills up, output
//! and input files that cannot be opened for one task.
use crate::common::pids_in;
use crate::common::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{pid_alive, wait_for, wait_for_value};

const DUMP: &str = "run/sup.dump";

/// A tmpfs of `size` mounted on `dir`, lazily unmounted on drop (even while files on it are
/// still open, e.g. by a supervisor a failing test has not killed yet).
struct TinyFs {
    dir: PathBuf,
}

impl TinyFs {
    /// `None` (with a message saying why the test is skipped) when not root or mounting fails.
    fn mount(dir: &Path, size: &str) -> Option<TinyFs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but not root: the full-disk tests cannot run"
            );
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let data = CString::new(format!("size={size},mode=0755")).unwrap();
        // SAFETY: valid NUL-terminated strings; tmpfs needs no source device.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but a tmpfs cannot be mounted on {}: {e}",
                dir.display()
            );
            eprintln!("skipped: cannot mount a tmpfs on {}: {e}", dir.display());
            return None;
        }
        Some(TinyFs {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes a filler file until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = [0u8; 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(
                        e.raw_os_error(),
                        Some(libc::ENOSPC),
                        "filling {}: {e}",
                        self.dir.display()
                    );
                    break;
                }
            }
        }
        drop(f);
        path
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let target = CString::new(self.dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!(
                "cannot unmount {}: {}",
                self.dir.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect()
}

#[test]
fn a_full_dump_folder_keeps_the_old_dump_and_the_tasks() {
    let mut sup = Sup::new();
    let Some(fs) = TinyFs::mount(&sup.path("run"), "64k") else {
        return;
    };
    let tasks = list(&[
        sh_task("a", "echo $$ >> a.pids; exec sleep 1000"),
        sh_task("b", "echo $$ >> b.pids; exec sleep 1000"),
    ]);
    let api = format!("127.0.0.1:{}", testkit::free_port());
    sup.start(
        &tasks,
        &[
            &format!("--dumpfile={DUMP}"),
            "--checkpoint-interval=100ms",
            &format!("--listen={api}"),
        ],
    );
    let health = || -> serde_json::Value {
        let r = testkit::http_get(&api, "/health", &[])
            .map(|r| r.body)
            .unwrap_or_default();
        serde_json::from_str(&r).unwrap_or_default()
    };
    let a = wait_pid_file(&sup.path("a.pids"));
    let b = wait_pid_file(&sup.path("b.pids"));
    sup.wait_dump_pids(DUMP, &[a, b]);
    let before = std::fs::read(sup.path(DUMP)).unwrap();

    let filler = fs.fill();
    unsafe { libc::kill(a, libc::SIGKILL) };
    let a2 = wait_for_value(LONG, || pids_in(&sup.path("a.pids")).get(1).copied())
        .expect("a restarted on a full disk");
    assert!(sup.wait_log("cannot write checkpoint"), "{}", sup.log());
    let t = Instant::now();
    let log = sup.log();
    assert!(
        log.contains("No space left on device"),
        "the error says why: {log}"
    );
    assert!(
        log.contains("the previous dump stays in place, tasks keep running"),
        "{log}"
    );
    // Several 100 ms checkpoints fail meanwhile: the error is logged once, not every time.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        sup.log().matches("cannot write checkpoint").count(),
        1,
        "rate-limited: {}",
        sup.log()
    );
    assert_eq!(
        std::fs::read(sup.path(DUMP)).unwrap(),
        before,
        "the old dump is intact"
    );
    assert!(supervisor_core::Checkpoint::parse(&String::from_utf8_lossy(&before)).is_ok());
    assert!(
        temp_files(&sup.path("run")).is_empty(),
        "no temp file left: {:?}",
        temp_files(&sup.path("run"))
    );
    assert!(pid_alive(a2) && pid_alive(b), "tasks keep running");
    // Exposed, not only logged.
    let h = health();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["checkpoint"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left on device")),
        "{h}"
    );
    // A restart on a full disk is as immediate as ever.
    let pids = pids_in(&sup.path("b.pids")).len();
    unsafe { libc::kill(b, libc::SIGKILL) };
    assert!(wait_for(LONG, || pids_in(&sup.path("b.pids")).len() > pids));
    assert!(t.elapsed() < LONG);

    // Space comes back: the next checkpoint succeeds and says so.
    std::fs::remove_file(filler).unwrap();
    assert!(
        sup.wait_log("checkpoint written again after earlier failures"),
        "{}",
        sup.log()
    );
    let b2 = *pids_in(&sup.path("b.pids")).last().unwrap();
    sup.wait_dump_pids(DUMP, &[a2, b2]);
    assert!(
        wait_for(LONG, || health()["checkpoint"]["last_error"].is_null()),
        "{}",
        health()
    );
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert_eq!(sup.dump(DUMP).unwrap()["clean"], true);
    assert!(sup.marked_pids().is_empty());
    drop(fs);
}

#[test]
fn a_full_log_folder_does_not_stop_the_supervisor() {
    let sup = Sup::new();
    let Some(fs) = TinyFs::mount(&sup.path("logs"), "64k") else {
        return;
    };
    let tasks = list(&[sh_task("a", "echo $$ >> a.pids; exec sleep 1000")]);
    // Started by hand: `Sup::start` logs to sup.log, outside the tiny file system.
    let mut child = {
        use std::io::Write;
        let mut cmd = sup.spawner.bin("supervisor");
        cmd.current_dir(sup.dir.path()).args([
            "--log=logs/own.log",
            "--log-level=debug",
            "--min-uptime=1ms",
            "--listen=none",
        ]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut c = cmd.spawn().unwrap();
        c.stdin.take().unwrap().write_all(tasks.as_bytes()).unwrap();
        c
    };
    let log = || std::fs::read_to_string(sup.path("logs/own.log")).unwrap_or_default();
    assert!(wait_for(LONG, || log().contains("task started")));
    wait_pid_file(&sup.path("a.pids"));
    let filler = fs.fill();
    // Every restart writes debug lines nobody can store: the supervisor carries on regardless.
    for round in 0..5 {
        let pids = pids_in(&sup.path("a.pids"));
        unsafe { libc::kill(*pids.last().unwrap(), libc::SIGKILL) };
        assert!(
            wait_for(LONG, || pids_in(&sup.path("a.pids")).len() > pids.len()),
            "restart {round} on a full log disk"
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the supervisor is still running"
    );
    std::fs::remove_file(filler).unwrap();
    let pids = pids_in(&sup.path("a.pids"));
    unsafe { libc::kill(*pids.last().unwrap(), libc::SIGKILL) };
    let last = wait_for_value(LONG, || {
        pids_in(&sup.path("a.pids")).get(pids.len()).copied()
    })
    .unwrap();
    assert!(
        wait_for(LONG, || log().contains(&format!("pid={last}"))),
        "logging resumes once there is room"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for_value(LONG, || child.try_wait().unwrap()).expect("supervisor exits");
    assert_eq!(status.code(), Some(0));
    assert!(sup.marked_pids().is_empty());
    drop(fs);
}

#[test]
fn unopenable_output_and_input_files_fail_only_their_task() {
    let mut sup = Sup::new();
    std::fs::create_dir(sup.path("logs")).unwrap();
    std::fs::write(sup.path("in.txt"), b"input\n").unwrap();
    let tasks = format!(
        "[{},{},{},{}]",
        serde_json::json!({"name": "blocked", "command": ["sh", "-c", "echo $$ >> blocked.pids; exec sleep 1000"], "output": "logs/out.log"}),
        serde_json::json!({"name": "into-dir", "command": ["sh", "-c", "echo $$ >> into-dir.pids; exec sleep 1000"], "error": "adir"}),
        serde_json::json!({"name": "reader", "command": ["sh", "-c", "echo $$ >> reader.pids; exec sleep 1000"], "input": "in.txt"}),
        sh_task("ok", "echo $$ >> ok.pids; exec sleep 1000"),
    );
    sup.start(&tasks, &["--log-level=debug", "--min-uptime=1ms"]);
    let ok = wait_pid_file(&sup.path("ok.pids"));
    wait_pid_file(&sup.path("reader.pids"));
    // Everything was fine at start (it is checked then); now the files go bad under the
    // running tasks: a file where the output folder was, a folder where the error file was.
    std::fs::remove_dir_all(sup.path("logs")).unwrap();
    std::fs::write(sup.path("logs"), b"a file where a folder should be").unwrap();
    std::fs::remove_file(sup.path("adir")).unwrap();
    std::fs::create_dir(sup.path("adir")).unwrap();
    for f in ["blocked.pids", "into-dir.pids"] {
        let p = wait_pid_file(&sup.path(f));
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let failures = |task: &str| {
        sup.log()
            .lines()
            .filter(|l| {
                l.contains("task could not be started") && l.contains(&format!("task={task} "))
            })
            .count()
    };
    assert!(
        wait_for(LONG, || failures("blocked") >= 3
            && failures("into-dir") >= 3),
        "retried with backoff: {}",
        sup.log()
    );
    let log = sup.log();
    assert!(
        log.contains("cannot create folder logs for the output file: logs is a file, not a folder")
            || log.contains("logs is a file, not a folder"),
        "{log}"
    );
    assert!(
        log.contains("cannot open error file adir: Is a directory"),
        "{log}"
    );
    // Reported once at error level, the retries at debug level.
    let errors = log
        .lines()
        .filter(|l| l.contains(" ERROR ") && l.contains("task=blocked "))
        .count();
    assert_eq!(errors, 1, "{log}");

    // The input file disappears: the next restart of `reader` fails, and is retried.
    std::fs::remove_file(sup.path("in.txt")).unwrap();
    let r = *pids_in(&sup.path("reader.pids")).last().unwrap();
    unsafe { libc::kill(r, libc::SIGKILL) };
    assert!(wait_for(LONG, || failures("reader") >= 2), "{}", sup.log());
    assert!(
        sup.log().contains("cannot open input file in.txt"),
        "{}",
        sup.log()
    );

    // The others are unaffected: a restart of `ok` is immediate.
    let t = Instant::now();
    unsafe { libc::kill(ok, libc::SIGKILL) };
    let ok2 = wait_for_value(LONG, || pids_in(&sup.path("ok.pids")).get(1).copied()).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "restart of an unaffected task took {:?}",
        t.elapsed()
    );
    assert!(pid_alive(ok2));

    // Faults fixed: each task starts by itself at its next retry.
    std::fs::remove_file(sup.path("logs")).unwrap();
    std::fs::remove_dir(sup.path("adir")).unwrap();
    std::fs::write(sup.path("in.txt"), b"input\n").unwrap();
    for f in ["blocked.pids", "into-dir.pids"] {
        assert!(
            wait_for(Duration::from_secs(40), || pids_in(&sup.path(f)).len() == 2),
            "{f}: {}",
            sup.log()
        );
    }
    assert!(wait_for(Duration::from_secs(40), || pids_in(
        &sup.path("reader.pids")
    )
    .len()
        == 2));
    assert!(sup.path("logs/out.log").is_file() && sup.path("adir").is_file());
    sup.signal(libc::SIGTERM);
    assert_eq!(sup.wait_exit(), Some(0));
    assert!(sup.marked_pids().is_empty());
}
