//! `bench-baseline`: the physical limit the supervisors are measured against. A bare
//! `waitpid` loop: it starts every task of a task list (the same JSON array on stdin as our
//! supervisor's, only `name` and `command` used) and restarts a task the moment it is reaped.
//! No policy, no log, no checkpoint; `posix_spawn` (no copy of the parent), standard streams
//! on /dev/null, its own process group per task. It runs until killed.
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};

#[derive(serde::Deserialize)]
struct Task {
    command: Vec<String>,
}

fn spawn(t: &Task) -> Option<u32> {
    let (prog, args) = t.command.split_first()?;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match child {
        // The handle is dropped without waiting: the loop below reaps.
        Ok(c) => Some(c.id()),
        Err(e) => {
            eprintln!("bench-baseline: cannot start {prog}: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("bench-baseline: cannot read the task list: {e}");
        return ExitCode::from(2);
    }
    let tasks: Vec<Task> = match serde_json::from_str(&text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench-baseline: bad task list: {e}");
            return ExitCode::from(2);
        }
    };
    let mut by_pid: HashMap<u32, usize> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if let Some(pid) = spawn(t) {
            by_pid.insert(pid, i);
        }
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid(-1) with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => return ExitCode::SUCCESS,
            }
        }
        if let Some(i) = by_pid.remove(&(pid as u32)) {
            if let Some(new) = spawn(&tasks[i]) {
                by_pid.insert(new, i);
            }
        }
    }
}
