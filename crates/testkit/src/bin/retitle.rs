//! `retitle`: a test daemon that behaves like nginx, redis or postgres towards a supervisor:
//! it overwrites its environment with a process title (so `/proc/PID/environ` no longer holds
//! the markers it was started with), forks workers that do the same, and can put its workers in
//! sessions of their own (`--setsid`), clear their environment (`--env-i`), or ignore SIGTERM
//! (`--ignore-term`).
//!
//! Usage: `retitle PIDFILE [--workers=N] [--setsid] [--ignore-term] [--title=TEXT]`
//! Every process appends its pid to PIDFILE, then sleeps until killed.
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(pidfile) = args.get(1).cloned() else {
        eprintln!("usage: retitle PIDFILE [--workers=N] [--setsid] [--ignore-term]");
        std::process::exit(2);
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let workers: usize = args
        .iter()
        .find_map(|a| a.strip_prefix("--workers=")?.parse().ok())
        .unwrap_or(2);
    let title = args
        .iter()
        .find_map(|a| a.strip_prefix("--title="))
        .unwrap_or("retitle: master process")
        .to_string();
    if flag("--ignore-term") {
        // SAFETY: setting a signal to SIG_IGN has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    overwrite_environment(&title);
    record(&pidfile);
    for i in 0..workers {
        // SAFETY: single-threaded program; the child only makes system calls and sleeps.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if flag("--setsid") {
                // SAFETY: no preconditions.
                unsafe { libc::setsid() };
            }
            overwrite_environment(&format!("retitle: worker {i}"));
            record(&pidfile);
            sleep_forever();
        }
    }
    sleep_forever();
}

fn record(pidfile: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(pidfile)
    {
        // One write: workers record at the same moment, and O_APPEND keeps only whole writes
        // apart (`writeln!` would write the number and the newline separately).
        let _ = f.write_all(format!("{}\n", std::process::id()).as_bytes());
    }
}

fn sleep_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

/// Writes `title` over the memory the kernel reads `/proc/self/environ` from (the
/// `env_start..env_end` range of `/proc/self/stat`), as programs that set their process title
/// do: the environment the process was started with is gone from `/proc`.
fn overwrite_environment(title: &str) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    // `rest` starts at field 3; env_start and env_end are fields 50 and 51.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (Some(start), Some(end)) = (
        f.get(47).and_then(|v| v.parse::<usize>().ok()),
        f.get(48).and_then(|v| v.parse::<usize>().ok()),
    ) else {
        return;
    };
    if end <= start {
        return;
    }
    let len = end - start;
    let mut bytes = title.as_bytes().to_vec();
    bytes.resize(len, 0);
    // SAFETY: env_start..env_end is this process's own initial environment block, mapped and
    // writable (it lives in the stack's region); nothing in this program reads it afterwards.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, len) };
}
