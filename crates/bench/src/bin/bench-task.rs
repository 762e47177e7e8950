//! `bench-task`: the task program of the benchmarks.
//!
//! At start it appends `S <id> <pid> <CLOCK_REALTIME ns>` to the record file (one `O_APPEND`
//! write, so lines of thousands of concurrent tasks never interleave), then per `--mode`:
//! `exit` exits at once, `run:MS` runs MS milliseconds and exits, `sleep` sleeps until killed.
//! Before a voluntary exit it appends `E <id> <pid> <ns>`: the moment of death that a restart
//! latency is measured from.
//!
//! `--marker PATH` tells the first run from later ones (the first run creates the file):
//! `--stagger-ms K` delays the first run's mode by K ms (so that series that start together do
//! not die together), `--once` makes every later run sleep instead ("dies only the first time").
//!
//! Without `--` arguments it reads them, one per line, from `./bench-task.args`: runit, s6 and
//! daemontools exec `./run` (a symlink to this binary) without a shell in between (s6 passes
//! the service's name as the one argument).
//! The record file and id may also come from `BENCH_TASK_RECORD` and `BENCH_TASK_ID`.
//!
//! Its own start-up is part of every restart latency measured, so it is kept short: no Rust
//! runtime start-up (`no_main`: the C `main` is ours; `std::env::args` still works on glibc),
//! and the harness builds it statically linked when it can (no dynamic loader: about 0.2 ms
//! less per start on a small VM).
#![no_main]

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ARGS_FILE: &str = "bench-task.args";

enum Mode {
    Exit,
    Run(Duration),
    Sleep,
}

struct Opts {
    id: String,
    record: String,
    mode: Mode,
    marker: Option<String>,
    stagger: Duration,
    once: bool,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn parse(args: Vec<String>) -> Result<Opts, String> {
    let mut id = std::env::var("BENCH_TASK_ID").ok();
    let mut record = std::env::var("BENCH_TASK_RECORD").ok();
    let mut mode = Mode::Sleep;
    let mut marker = None;
    let mut stagger = Duration::ZERO;
    let mut once = false;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        if key == "--once" {
            once = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{key} needs a value"))?,
        };
        match key.as_str() {
            "--id" => id = Some(value),
            "--record" => record = Some(value),
            "--marker" => marker = Some(value),
            "--stagger-ms" => {
                stagger = Duration::from_millis(
                    value
                        .parse()
                        .map_err(|e| format!("--stagger-ms {value}: {e}"))?,
                )
            }
            "--mode" => {
                mode = match value.as_str() {
                    "exit" => Mode::Exit,
                    "sleep" => Mode::Sleep,
                    other => match other.strip_prefix("run:") {
                        Some(ms) => Mode::Run(Duration::from_millis(
                            ms.parse().map_err(|e| format!("--mode {other}: {e}"))?,
                        )),
                        None => {
                            return Err(format!("unknown --mode {other} (exit, run:MS, sleep)"));
                        }
                    },
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Opts {
        id: id.ok_or("--id (or BENCH_TASK_ID) is required")?,
        record: record.ok_or("--record (or BENCH_TASK_RECORD) is required")?,
        mode,
        marker,
        stagger,
        once,
    })
}

fn append(path: &str, kind: char, id: &str, ns: u128) {
    let line = format!("{kind} {id} {} {ns}\n", std::process::id());
    // A lost record shows up as a missing sample in the harness; nothing better to do here.
    if let Ok(mut f) = OpenOptions::new().append(true).create(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

fn sleep_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// The C entry point.
#[unsafe(no_mangle)]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let started = now_ns();
    run(started)
}

fn run(started: u128) -> std::ffi::c_int {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // s6-supervise passes the service's name as the only argument.
    if !args.iter().any(|a| a.starts_with("--")) {
        match std::fs::read_to_string(ARGS_FILE) {
            Ok(text) => {
                args = text
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            Err(e) => {
                eprintln!("bench-task: no arguments and cannot read ./{ARGS_FILE}: {e}");
                return 2;
            }
        }
    }
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench-task: {e}");
            return 2;
        }
    };
    append(&opts.record, 'S', &opts.id, started);
    let first = match &opts.marker {
        Some(m) => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(m)
            .is_ok(),
        None => true,
    };
    if opts.once && !first {
        sleep_forever();
    }
    if first && !opts.stagger.is_zero() {
        std::thread::sleep(opts.stagger);
    }
    match opts.mode {
        Mode::Sleep => sleep_forever(),
        Mode::Exit => {}
        Mode::Run(d) => std::thread::sleep(d),
    }
    append(&opts.record, 'E', &opts.id, now_ns());
    1
}
