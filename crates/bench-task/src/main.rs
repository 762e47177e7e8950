//! `bench-task`: the task program of the benchmarks.
//!
//! At start it appends `S <id> <pid> <CLOCK_REALTIME ns>` to the record file (one `O_APPEND`
//! write, so lines of thousands of concurrent tasks never interleave), then per `--mode`:
//! `exit` exits at once, `run:MS` runs MS milliseconds and exits, `sleep` sleeps until killed.
//! Before a voluntary exit it appends `E <id> <pid> <ns>`: the moment of death that a restart
//! latency is measured from. It exits with status 1 (2 for a bad command line).
//!
//! `--marker PATH` tells the first run from later ones (the first run creates the file):
//! `--stagger-ms K` delays the first run's mode by K ms (so that series that start together do
//! not die together), `--once` makes every later run sleep instead ("dies only the first time").
//! Flags are `--key value` or `--key=value`.
//!
//! Without `--` arguments it reads them, one per line, from `./bench-task.args`: runit, s6 and
//! daemontools exec `./run` (a symlink to this binary) without a shell in between (s6 passes
//! the service's name as the one argument).
//! The record file and id may also come from `BENCH_TASK_RECORD` and `BENCH_TASK_ID`.
//!
//! Its own start-up is part of every restart latency measured, so it has none: no libc (whose
//! static start-up alone, CPU feature detection with a trapping `cpuid`, IRELATIVE relocations
//! and TLS set-up, costs about 0.3 ms on a small VM), no Rust runtime, no heap, no dynamic
//! loader. `_start` is ours (`sys`), the system calls are raw `syscall` instructions, and the
//! memory functions the compiler needs are in `mem`. It reads the clock before anything else.
//! `build.rs` links it as a static ELF without the C start files. x86_64 Linux only.
#![no_std]
#![no_main]

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "bench-task is x86_64 Linux only: its `_start` and its system calls (numbers and registers) \
     are written by hand for that ABI"
);

mod mem;
mod sys;

use core::mem::MaybeUninit;
use sys::{CPath, Errno, Fd, Startup};

/// The arguments file read when no argument starts with `--`.
const ARGS_FILE: &[u8] = b"bench-task.args";
/// The largest arguments file taken, bytes.
const ARGS_MAX: usize = 8192;
/// The longest `--id`, bytes (the record line is built on the stack).
const ID_MAX: usize = 1024;
/// A record line: kind, id, pid, nanoseconds, separators.
const LINE_MAX: usize = ID_MAX + 64;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let _ = sys::write(2, b"bench-task: panicked\n");
    sys::exit(101)
}

/// The prebuilt `core` is compiled for unwinding, and its unwind tables name this personality
/// routine; without LTO the linker keeps them and wants the symbol. Nothing unwinds here
/// (`panic = "abort"`), so nothing ever calls it.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Exit,
    /// Runs this many milliseconds, then exits.
    Run(u64),
    Sleep,
}

#[derive(Debug)]
struct Opts<'a> {
    id: &'a [u8],
    record: &'a [u8],
    mode: Mode,
    marker: Option<&'a [u8]>,
    stagger_ms: u64,
    once: bool,
}

/// Why the task cannot run (exit status 2).
#[derive(Debug)]
enum Error<'a> {
    /// `{key} needs a value`.
    NeedsValue(&'a [u8]),
    /// `{flag} {value}: {why}`.
    BadNumber(&'static str, &'a [u8], &'static str),
    UnknownMode(&'a [u8]),
    UnknownArgument(&'a [u8]),
    /// `{what} is required`.
    Required(&'static str),
    IdTooLong,
    /// A path flag whose value is too long for the kernel or holds a NUL byte.
    BadPath(&'static str),
    ArgsFile(Errno),
    ArgsFileTooLarge,
}

impl Error<'_> {
    fn write_to<const N: usize>(&self, b: &mut Buf<N>) {
        match *self {
            Error::NeedsValue(key) => b.push(key).push(b" needs a value"),
            Error::BadNumber(flag, value, why) => b
                .push(flag.as_bytes())
                .push(b" ")
                .push(value)
                .push(b": ")
                .push(why.as_bytes()),
            Error::UnknownMode(m) => b
                .push(b"unknown --mode ")
                .push(m)
                .push(b" (exit, run:MS, sleep)"),
            Error::UnknownArgument(a) => b.push(b"unknown argument ").push(a),
            Error::Required(what) => b.push(what.as_bytes()).push(b" is required"),
            Error::IdTooLong => b
                .push(b"--id is longer than ")
                .push_u64(ID_MAX as u64)
                .push(b" bytes"),
            Error::BadPath(flag) => b
                .push(flag.as_bytes())
                .push(b": the path is too long or holds a NUL byte"),
            Error::ArgsFile(e) => {
                b.push(b"no arguments and cannot read ./")
                    .push(ARGS_FILE)
                    .push(b": ");
                if let Some(s) = strerror(e) {
                    b.push(s.as_bytes()).push(b" ");
                }
                b.push(b"(os error ").push_u64(e.0 as u64).push(b")")
            }
            Error::ArgsFileTooLarge => b
                .push(b"no arguments and ./")
                .push(ARGS_FILE)
                .push(b" is larger than ")
                .push_u64(ARGS_MAX as u64)
                .push(b" bytes"),
        };
    }
}

/// The text of the errors an arguments file is likely to meet.
fn strerror(e: Errno) -> Option<&'static str> {
    Some(match e.0 {
        2 => "No such file or directory",
        13 => "Permission denied",
        20 => "Not a directory",
        21 => "Is a directory",
        36 => "File name too long",
        40 => "Too many levels of symbolic links",
        _ => return None,
    })
}

/// A line being built on the stack; what does not fit is cut off.
struct Buf<const N: usize> {
    data: [MaybeUninit<u8>; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    fn new() -> Self {
        Buf {
            data: [MaybeUninit::uninit(); N],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) -> &mut Self {
        for &c in s {
            if self.len == N {
                break;
            }
            self.data[self.len].write(c);
            self.len += 1;
        }
        self
    }

    fn push_u64(&mut self, mut v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }

    /// The bytes so far, ending with a newline (which replaces the last byte when full).
    fn line(&mut self) -> &[u8] {
        if self.len == N {
            self.len -= 1;
        }
        self.push(b"\n");
        // SAFETY: the first `len` bytes were written by `push`.
        unsafe { core::slice::from_raw_parts(self.data.as_ptr().cast::<u8>(), self.len) }
    }
}

/// Rust's `u64::from_str`, with its error texts: an optional `+`, then decimal digits.
fn parse_u64(s: &[u8]) -> Result<u64, &'static str> {
    const INVALID: &str = "invalid digit found in string";
    let digits = match s {
        [] => return Err("cannot parse integer from empty string"),
        [b'+'] => return Err(INVALID),
        [b'+', rest @ ..] => rest,
        _ => s,
    };
    let mut v: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(INVALID);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or("number too large to fit in target type")?;
    }
    Ok(v)
}

/// The lines of the arguments file, without empty ones (like `str::lines`: `\n` or `\r\n`).
struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.0.is_empty() {
            let (line, rest) = match self.0.iter().position(|&c| c == b'\n') {
                Some(i) => (&self.0[..i], &self.0[i + 1..]),
                None => (self.0, &[][..]),
            };
            self.0 = rest;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    }
}

fn parse<'a>(
    mut args: impl Iterator<Item = &'a [u8]>,
    env: &Startup,
) -> Result<Opts<'a>, Error<'a>> {
    let mut id = env.env(b"BENCH_TASK_ID");
    let mut record = env.env(b"BENCH_TASK_RECORD");
    let mut mode = Mode::Sleep;
    let mut marker = None;
    let mut stagger_ms = 0;
    let mut once = false;
    while let Some(a) = args.next() {
        let (key, inline) = match a.iter().position(|&c| c == b'=') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        };
        if key == b"--once" {
            once = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or(Error::NeedsValue(key))?,
        };
        match key {
            b"--id" => id = Some(value),
            b"--record" => record = Some(value),
            b"--marker" => marker = Some(value),
            b"--stagger-ms" => {
                stagger_ms =
                    parse_u64(value).map_err(|why| Error::BadNumber("--stagger-ms", value, why))?
            }
            b"--mode" => {
                mode = match value {
                    b"exit" => Mode::Exit,
                    b"sleep" => Mode::Sleep,
                    _ => match value.strip_prefix(b"run:") {
                        Some(ms) => Mode::Run(
                            parse_u64(ms).map_err(|why| Error::BadNumber("--mode", value, why))?,
                        ),
                        None => return Err(Error::UnknownMode(value)),
                    },
                }
            }
            _ => return Err(Error::UnknownArgument(key)),
        }
    }
    let id = id.ok_or(Error::Required("--id (or BENCH_TASK_ID)"))?;
    let record = record.ok_or(Error::Required("--record (or BENCH_TASK_RECORD)"))?;
    if id.len() > ID_MAX {
        return Err(Error::IdTooLong);
    }
    if CPath::new(record).is_none() {
        return Err(Error::BadPath("--record"));
    }
    if marker.is_some_and(|m| CPath::new(m).is_none()) {
        return Err(Error::BadPath("--marker"));
    }
    Ok(Opts {
        id,
        record,
        mode,
        marker,
        stagger_ms,
        once,
    })
}

/// `./bench-task.args`, read into `buf`.
fn read_args_file(buf: &mut [MaybeUninit<u8>]) -> Result<&[u8], Error<'static>> {
    let path = CPath::new(ARGS_FILE).ok_or(Error::ArgsFile(Errno(36)))?;
    let f = Fd::open(&path, sys::O_RDONLY | sys::O_CLOEXEC, 0).map_err(Error::ArgsFile)?;
    match f.read_to_end(buf) {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(Error::ArgsFileTooLarge),
        Err(e) => Err(Error::ArgsFile(e)),
    }
}

/// The record file, opened for appending (created if missing). A lost record shows up as a
/// missing sample in the harness; nothing better to do here.
fn open_record(path: &[u8]) -> Option<Fd> {
    let path = CPath::new(path)?;
    Fd::open(
        &path,
        sys::O_WRONLY | sys::O_APPEND | sys::O_CREAT | sys::O_CLOEXEC,
        0o644,
    )
    .ok()
}

/// Appends `KIND id pid ns` in one write.
fn append(f: &Fd, kind: u8, id: &[u8], pid: i32, ns: u64) {
    let mut line = Buf::<LINE_MAX>::new();
    line.push(&[kind, b' '])
        .push(id)
        .push(b" ")
        .push_u64(pid as u64)
        .push(b" ")
        .push_u64(ns);
    let _ = f.write(line.line());
}

/// True when this is the first run: it created `marker`.
fn first_run(marker: &[u8]) -> bool {
    CPath::new(marker).is_some_and(|p| {
        Fd::open(
            &p,
            sys::O_WRONLY | sys::O_CREAT | sys::O_EXCL | sys::O_CLOEXEC,
            0o644,
        )
        .is_ok()
    })
}

/// Writes `bench-task: {e}` on stderr and exits with status 2.
fn fail(e: &Error) -> ! {
    let mut msg = Buf::<1024>::new();
    msg.push(b"bench-task: ");
    e.write_to(&mut msg);
    let _ = sys::write(2, msg.line());
    sys::exit(2)
}

/// The program, from `sys::entry`: `started` is CLOCK_REALTIME at entry.
fn main(started: u64, start: Startup) -> ! {
    let mut file = [MaybeUninit::<u8>::uninit(); ARGS_MAX];
    // s6-supervise passes the service's name as the only argument.
    let parsed = if start.args().any(|a| a.starts_with(b"--")) {
        parse(start.args(), &start)
    } else {
        read_args_file(&mut file).and_then(|text| parse(Lines(text), &start))
    };
    let opts = match parsed {
        Ok(o) => o,
        Err(e) => fail(&e),
    };
    let pid = sys::getpid();
    // Kept open for the `E` record: no open between the moment of death and the exit.
    let mut record = open_record(opts.record);
    if let Some(f) = &record {
        append(f, b'S', opts.id, pid, started);
    }
    let first = opts.marker.is_none_or(first_run);
    if opts.once && !first {
        drop(record);
        sys::sleep_forever();
    }
    if first && opts.stagger_ms > 0 {
        sys::sleep_ms(opts.stagger_ms);
    }
    match opts.mode {
        Mode::Sleep => {
            drop(record);
            sys::sleep_forever()
        }
        Mode::Exit => {}
        Mode::Run(ms) => sys::sleep_ms(ms),
    }
    let ended = sys::clock_realtime_ns();
    if record.is_none() {
        record = open_record(opts.record);
    }
    if let Some(f) = &record {
        append(f, b'E', opts.id, pid, ended);
    }
    sys::exit(1)
}
