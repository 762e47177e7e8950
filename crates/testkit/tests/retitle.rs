//! The `retitle` test daemon does what the supervisor's tracking tests rely on: every process of
//! it records its pid, and none of them still shows the environment it was started with.
//! (Having an integration test also makes cargo build the binary for the other crates' tests.)
use std::process::Command;
use std::time::{Duration, Instant};

const MARKER: &str = "RETITLE_TEST_MARKER=eb1c7f";

#[test]
fn every_process_of_retitle_hides_the_environment_it_was_started_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pids");
    let mut master = Command::new(env!("CARGO_BIN_EXE_retitle"))
        .arg(&pidfile)
        .arg("--workers=2")
        .env("RETITLE_TEST_MARKER", "eb1c7f")
        .spawn()
        .expect("start retitle");
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        if pids.len() == 3 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let environs: Vec<Vec<u8>> = pids
        .iter()
        .map(|p| std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default())
        .collect();
    for &pid in &pids {
        // SAFETY: each pid is a live process of this test's, recorded a moment ago; none exits
        // before its own SIGKILL (they only pause), so no pid can have been reused.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = master.kill();
    let _ = master.wait();

    assert_eq!(
        pids.len(),
        3,
        "master and two workers record their pids: {pids:?}"
    );
    assert_eq!(pids[0] as u32, master.id(), "the master records first");
    for (pid, env) in pids.iter().zip(&environs) {
        assert!(
            !env.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "process {pid} still shows its marker in /proc/{pid}/environ"
        );
    }
    assert!(
        environs[0].starts_with(b"retitle: master process"),
        "the master's environment block holds its title: {:?}",
        String::from_utf8_lossy(&environs[0])
    );
    assert!(environs[1].starts_with(b"retitle: worker"));
}
