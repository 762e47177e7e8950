//! `bench-task`, the benchmarks' task program: built as the harness builds it
//! (`bench::task::build_command`), then run as a real process in a temporary folder, with its
//! records read back from the file it appends to.
use bench::launch::now_ns;
use bench::records::{self, Kind, Record};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long any single run may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(10);

/// The release build of `crates/bench-task`, built once per test process.
fn task() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = bench::task::build_command(&cargo);
        let line = bench::task::describe(&cmd);
        let out = cmd.output().expect("cannot run cargo");
        assert!(
            out.status.success(),
            "cargo {line} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = bench::task::binary();
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// A task process, SIGKILLed (by its pid, through `Child::kill`) and reaped on drop if it is
/// still running, so a failed assertion leaves nothing behind.
struct Task(Child);

impl Task {
    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid fits in i32")
    }

    /// Waits for the exit, at most `DEADLINE`.
    fn wait(&mut self) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.0.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < until,
                "bench-task {} still runs after {DEADLINE:?}",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }

    fn kill(&mut self) -> ExitStatus {
        self.0.kill().expect("kill");
        self.wait()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `bench-task ARGS` in `dir`, with only the environment given (none inherited).
fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Task {
    let child = Command::new(task())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start bench-task");
    Task(child)
}

/// Runs it to its exit: the exit status, stderr, and the wall clock around the run.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, i32, u128, u128) {
    let before = now_ns();
    let mut t = spawn(dir, args, env);
    let pid = t.pid();
    let status = t.wait();
    let after = now_ns();
    let mut stderr = Vec::new();
    if let Some(mut e) = t.0.stderr.take() {
        use std::io::Read;
        e.read_to_end(&mut stderr).expect("read stderr");
    }
    let out = Output {
        status,
        stdout: Vec::new(),
        stderr,
    };
    (out, pid, before, after)
}

/// Every line of the record file, which must all be well formed.
fn records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| records::parse_line(l).unwrap_or_else(|| panic!("malformed record {l:?}")))
        .collect()
}

/// Asserts one `S` then one `E` record of `id` by `pid`, in order, within `[before, after]`;
/// returns their times.
fn start_end(recs: &[Record], id: &str, pid: i32, before: u128, after: u128) -> (u128, u128) {
    let mine: Vec<&Record> = recs.iter().filter(|r| r.pid == pid).collect();
    assert_eq!(mine.len(), 2, "want S and E of pid {pid}: {recs:?}");
    let (s, e) = (mine[0], mine[1]);
    assert_eq!((s.kind, e.kind), (Kind::Start, Kind::End), "{recs:?}");
    assert_eq!((s.id.as_str(), e.id.as_str()), (id, id), "{recs:?}");
    assert!(s.ns <= e.ns, "S after E: {recs:?}");
    assert!(
        before <= s.ns && e.ns <= after,
        "records {}..{} outside the run {before}..{after}",
        s.ns,
        e.ns
    );
    (s.ns, e.ns)
}

/// Waits until the record file holds an `S` of `pid`.
fn wait_start(path: &Path, pid: i32) {
    let until = Instant::now() + DEADLINE;
    while !records(path)
        .iter()
        .any(|r| r.pid == pid && r.kind == Kind::Start)
    {
        assert!(Instant::now() < until, "no S record of {pid}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn is_a_static_elf_without_interpreter() {
    let elf = std::fs::read(task()).expect("read bench-task");
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not 64-bit");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]);
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes")) as usize;
    assert_eq!(
        u16_at(16),
        2,
        "e_type is not ET_EXEC (a PIE needs a loader)"
    );
    let (phoff, phentsize, phnum) = (u64_at(32), usize::from(u16_at(54)), usize::from(u16_at(56)));
    let types: Vec<u32> = (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes"))
        })
        .collect();
    // PT_DYNAMIC = 2, PT_INTERP = 3, PT_TLS = 7 (libc's thread-local set-up).
    for (t, what) in [(2, "PT_DYNAMIC"), (3, "PT_INTERP"), (7, "PT_TLS")] {
        assert!(!types.contains(&t), "bench-task has {what}: {types:?}");
    }
}

#[test]
fn exit_mode_records_start_and_end_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("r.log");
    let rec_s = rec.to_str().expect("utf-8 path");
    let (out, pid, before, after) = run(
        dir.path(),
        &["--id", "a1", "--record", rec_s, "--mode", "exit"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    let recs = records(&rec);
    assert_eq!(recs.len(), 2, "{recs:?}");
    start_end(&recs, "a1", pid, before, after);

    // A second task appends to the same file.
    let (out, pid2, before, after) = run(
        dir.path(),
        &["--id", "a2", "--record", "r.log", "--mode", "exit"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let recs = records(&rec);
    assert_eq!(recs.len(), 4, "{recs:?}");
    start_end(&recs, "a2", pid2, before, after);
}

#[test]
fn run_mode_lasts_its_milliseconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = Instant::now();
    let (out, pid, before, after) = run(
        dir.path(),
        &["--id", "r", "--record", "r.log", "--mode", "run:200"],
        &[],
    );
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(took >= Duration::from_millis(200), "ran {took:?}");
    let (s, e) = start_end(&records(&dir.path().join("r.log")), "r", pid, before, after);
    assert!(e - s >= 200_000_000, "S to E {} ns", e - s);
}

#[test]
fn key_equals_value_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, pid, before, after) = run(
        dir.path(),
        &["--id=k=v", "--record=r.log", "--mode=run:20"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // Split at the first `=`: the id is `k=v`.
    let (s, e) = start_end(
        &records(&dir.path().join("r.log")),
        "k=v",
        pid,
        before,
        after,
    );
    assert!(e - s >= 20_000_000);
}

#[test]
fn environment_fallbacks_and_flags_over_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("BENCH_TASK_ID", "from-env"),
        ("BENCH_TASK_RECORD", "env.log"),
    ];
    let (out, pid, before, after) = run(dir.path(), &["--mode", "exit"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    start_end(
        &records(&dir.path().join("env.log")),
        "from-env",
        pid,
        before,
        after,
    );

    let (out, pid, before, after) = run(dir.path(), &["--id", "flag", "--mode", "exit"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    start_end(
        &records(&dir.path().join("env.log")),
        "flag",
        pid,
        before,
        after,
    );
}

#[test]
fn arguments_file_when_no_flag_is_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    // As launch.rs writes it (one per line), plus an empty line and a CRLF to skip.
    std::fs::write(
        dir.path().join("bench-task.args"),
        "--id\nfrom-file\n\n--record\nf.log\r\n--mode\nexit\n",
    )
    .expect("write bench-task.args");
    // s6-supervise passes the service's name; runit and daemontools pass nothing.
    for args in [&["svc"][..], &[]] {
        let (out, pid, before, after) = run(dir.path(), args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        start_end(
            &records(&dir.path().join("f.log")),
            "from-file",
            pid,
            before,
            after,
        );
    }
}

#[test]
fn marker_once_and_stagger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--id",
        "o",
        "--record",
        "o.log",
        "--marker",
        "first",
        "--once",
        "--stagger-ms",
        "150",
        "--mode",
        "exit",
    ];
    let rec = dir.path().join("o.log");
    // First run: creates the marker, waits its stagger, exits.
    let (out, pid, before, after) = run(dir.path(), &args, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(dir.path().join("first").exists(), "no marker");
    let (s, e) = start_end(&records(&rec), "o", pid, before, after);
    assert!(e - s >= 150_000_000, "stagger not waited: {} ns", e - s);

    // Later runs: record their start, then sleep until killed, without using the CPU.
    let mut t = spawn(dir.path(), &args, &[]);
    let pid = t.pid();
    wait_start(&rec, pid);
    std::thread::sleep(Duration::from_millis(300));
    assert!(t.running(), "a later --once run exited");
    let stat = procio::procfs::stat(pid).expect("its /proc/PID/stat");
    assert_eq!(stat.state, 'S', "not asleep: {stat:?}");
    let on_cpu: u64 = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .expect("schedstat")
        .split_ascii_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat's first field");
    assert!(on_cpu < 20_000_000, "{on_cpu} ns on the CPU while asleep");
    let status = t.kill();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let mine: Vec<Record> = records(&rec).into_iter().filter(|r| r.pid == pid).collect();
    assert_eq!(mine.len(), 1, "a sleeping run writes only S: {mine:?}");
    assert_eq!(mine[0].kind, Kind::Start);
}

#[test]
fn bad_command_lines_exit_2_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--id", "x", "--record", "r.log", "--mode", "bogus"],
            "bench-task: unknown --mode bogus (exit, run:MS, sleep)\n",
        ),
        (
            &["--id", "x", "--record", "r.log", "--mode", "run:1x"],
            "bench-task: --mode run:1x: invalid digit found in string\n",
        ),
        (
            &["--id", "x", "--record", "r.log", "--stagger-ms="],
            "bench-task: --stagger-ms : cannot parse integer from empty string\n",
        ),
        (
            &["--id", "x", "--record", "r.log", "--nope", "1"],
            "bench-task: unknown argument --nope\n",
        ),
        (
            &["--record", "r.log", "--id"],
            "bench-task: --id needs a value\n",
        ),
        (
            &["--record", "r.log"],
            "bench-task: --id (or BENCH_TASK_ID) is required\n",
        ),
    ];
    for (args, want) in cases {
        let (out, _, _, _) = run(dir.path(), args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), want, "{args:?}");
    }
    // No arguments file.
    let (out, _, _, _) = run(dir.path(), &["svc"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.starts_with("bench-task: no arguments and cannot read ./bench-task.args: ")
            && msg.ends_with('\n')
            && msg.lines().count() == 1,
        "{msg:?}"
    );
    assert!(
        !dir.path().join("r.log").exists(),
        "a rejected command line recorded something"
    );
}
