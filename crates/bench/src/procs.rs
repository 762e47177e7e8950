//! Processes, read from `/proc` and signalled through pidfds.
//!
//! Every process the harness starts carries two environment marks (the run's and the
//! supervisor instance's); every descendant inherits them, so "all processes of this peer" is a
//! scan of `/proc/*/environ`, immune to re-parenting. Signals go through a pidfd opened and then
//! checked against the start time seen in the scan, so a reused pid is never hit.
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The fields of `/proc/PID/stat` the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    /// Start time in clock ticks after boot (field 22).
    pub start: u64,
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and parentheses: it runs from the
/// first `(` to the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some(Stat {
        pid,
        comm,
        state,
        ppid,
        start,
    })
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every pid in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// True when `VAR=value` is in the process's environment (false for zombies and the gone).
pub fn environ_has(pid: i32, entry: &[u8]) -> bool {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(env) => env.split(|b| *b == 0).any(|e| e == entry),
        Err(_) => false,
    }
}

/// The executable of a live process.
pub fn exe(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// (pid, start time) of every live process carrying `var=value`, except the harness.
pub fn marked(var: &str, value: &str) -> Vec<(i32, u64)> {
    let entry = format!("{var}={value}").into_bytes();
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|p| *p != me && environ_has(*p, &entry))
        .filter_map(|p| stat(p).filter(|s| s.state != 'Z').map(|s| (p, s.start)))
        .collect()
}

/// A pidfd checked to refer to the process that had `start` as its start time.
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// `None` when the process is gone or the pid now names another process.
    pub fn open(pid: i32, start: u64) -> Option<Pidfd> {
        // SAFETY: pidfd_open(pid, 0) takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        let fd = Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        // Opened first, checked second: if the start time still matches now, the pidfd pins
        // that very process.
        (stat(pid)?.start == start).then_some(fd)
    }

    /// Opens a pidfd for a live pid without a start time to check against (the caller knows the
    /// pid cannot have been reused, e.g. a child not yet reaped).
    pub fn open_now(pid: i32) -> Option<Pidfd> {
        let s = stat(pid)?;
        Pidfd::open(pid, s.start)
    }

    pub fn signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a valid pidfd, a null siginfo and no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Reaps `pid` if it is a zombie child of the harness (its own or re-parented to it, the
/// subreaper). Never blocks; never touches other children.
pub fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on one specific pid with a valid status pointer; WNOHANG never blocks.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Kills every process carrying `var=value`: each round freezes them all (SIGSTOP, so no
/// supervisor can restart what is killed next), then SIGKILLs them, then reaps those that became
/// the harness's zombies. Returns how many processes it signalled and whether any survived.
pub fn kill_marked(var: &str, value: &str, deadline: Duration) -> (usize, bool) {
    let until = Instant::now() + deadline;
    let mut seen: HashSet<i32> = HashSet::new();
    let mut signalled = 0;
    loop {
        let procs = marked(var, value);
        if procs.is_empty() {
            for p in &seen {
                reap(*p);
            }
            return (signalled, false);
        }
        if Instant::now() > until {
            return (signalled, true);
        }
        let fds: Vec<Pidfd> = procs
            .iter()
            .filter_map(|(p, s)| Pidfd::open(*p, *s))
            .collect();
        for f in &fds {
            let _ = f.signal(libc::SIGSTOP);
        }
        for f in &fds {
            let _ = f.signal(libc::SIGKILL);
        }
        signalled += fds.len();
        seen.extend(procs.iter().map(|(p, _)| *p));
        std::thread::sleep(Duration::from_millis(10));
        for p in &seen {
            reap(*p);
        }
    }
}

/// Resource use of one thread.
#[derive(Debug, Clone, Default)]
pub struct ThreadUse {
    pub name: String,
    pub cpu_ns: u64,
    pub switches: u64,
}

/// Resource use of one process, with its threads.
#[derive(Debug, Clone, Default)]
pub struct ProcUse {
    pub start: u64,
    pub rss_kb: u64,
    pub pss_kb: u64,
    pub threads: HashMap<i32, ThreadUse>,
}

fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// Clock ticks per second for the `stat` fallback.
fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

fn thread_use(dir: &Path) -> Option<ThreadUse> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let name = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let switches = status_field(&status, "voluntary_ctxt_switches:")?
        + status_field(&status, "nonvoluntary_ctxt_switches:")?;
    let cpu_ns = match std::fs::read_to_string(dir.join("schedstat")) {
        Ok(s) => s.split_ascii_whitespace().next()?.parse().ok()?,
        Err(_) => {
            // Without schedstat: utime + stime (fields 14, 15) in clock ticks.
            let st = std::fs::read_to_string(dir.join("stat")).ok()?;
            let rest: Vec<&str> = st
                .get(st.rfind(')')? + 1..)?
                .split_ascii_whitespace()
                .collect();
            let ticks: u64 =
                rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
            ticks * 1_000_000_000 / ticks_per_sec()
        }
    };
    Some(ThreadUse {
        name,
        cpu_ns,
        switches,
    })
}

/// Samples one process: memory (VmRSS, Pss) and per-thread CPU time and context switches.
pub fn proc_use(pid: i32, with_pss: bool) -> Option<ProcUse> {
    let start = stat(pid)?.start;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status_field(&status, "VmRSS:").unwrap_or(0);
    let pss_kb = if with_pss {
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|s| status_field(&s, "Pss:"))
            .unwrap_or(0)
    } else {
        0
    };
    let mut threads = HashMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Some(t) = thread_use(&e.path()) {
            threads.insert(tid, t);
        }
    }
    Some(ProcUse {
        start,
        rss_kb,
        pss_kb,
        threads,
    })
}

/// A snapshot of a set of processes.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub procs: HashMap<i32, ProcUse>,
}

pub fn sample(pids: &[i32], with_pss: bool) -> Sample {
    let at = Instant::now();
    let procs = pids
        .iter()
        .filter_map(|p| Some((*p, proc_use(*p, with_pss)?)))
        .collect();
    Sample { at, procs }
}

/// What a set of processes did between two samples.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Delta {
    pub secs: f64,
    pub processes: usize,
    pub threads: usize,
    pub cpu_ns: u64,
    pub switches: u64,
    /// Context switches per thread name (e.g. the supervisor's checkpoint writer).
    pub switches_by_thread: std::collections::BTreeMap<String, u64>,
    pub cpu_ns_by_thread: std::collections::BTreeMap<String, u64>,
    pub rss_kb: u64,
    pub pss_kb: u64,
}

/// The difference `b − a` over the processes and threads present in both (the same process:
/// same start time); memory is `b`'s.
pub fn delta(a: &Sample, b: &Sample) -> Delta {
    let mut d = Delta {
        secs: b.at.duration_since(a.at).as_secs_f64(),
        ..Delta::default()
    };
    for (pid, pb) in &b.procs {
        d.rss_kb += pb.rss_kb;
        d.pss_kb += pb.pss_kb;
        let Some(pa) = a.procs.get(pid).filter(|pa| pa.start == pb.start) else {
            continue;
        };
        d.processes += 1;
        for (tid, tb) in &pb.threads {
            let Some(ta) = pa.threads.get(tid) else {
                continue;
            };
            d.threads += 1;
            let cpu = tb.cpu_ns.saturating_sub(ta.cpu_ns);
            let sw = tb.switches.saturating_sub(ta.switches);
            d.cpu_ns += cpu;
            d.switches += sw;
            *d.switches_by_thread.entry(tb.name.clone()).or_default() += sw;
            *d.cpu_ns_by_thread.entry(tb.name.clone()).or_default() += cpu;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        let line = "4242 (we ird) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.ppid, s.start),
            (4242, "we ird) (x)", 'S', 1, 987_654)
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.pid, me);
        let u = proc_use(me, true).unwrap();
        assert!(u.rss_kb > 0 && !u.threads.is_empty());
        assert!(Pidfd::open(me, s.start).is_some());
        assert!(Pidfd::open(me, s.start + 1).is_none());
    }
}
