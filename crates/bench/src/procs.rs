//! Processes, read from `/proc` and signalled through pidfds.
//!
//! Every process the harness starts carries two environment marks (the run's and the
//! supervisor instance's); every descendant inherits them, so "all processes of this peer" is a
//! scan of `/proc/*/environ`, immune to re-parenting. Signals go through a pidfd opened and then
//! checked against the start time seen in the scan, so a reused pid is never hit.
use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::time::Instant;

pub use procio::pidfd::kill_marked;
pub use procio::procfs::{all_pids, environ_has, exe};

/// (pid, start time) of every live process carrying `var=value`, except the harness.
pub fn marked(var: &str, value: &str) -> Vec<(i32, u64)> {
    procio::procfs::pids_with_env(var, value)
        .into_iter()
        .filter_map(|p| procio::procfs::stat(p).ok().map(|s| (p, s.start_ticks)))
        .collect()
}

/// A pidfd checked to refer to the process that had `start` as its start time.
pub struct Pidfd(procio::Pinned);

impl Pidfd {
    /// `None` when the process is gone or the pid now names another process.
    pub fn open(pid: i32, start: u64) -> Option<Pidfd> {
        procio::Pinned::open(pid, start).ok().flatten().map(Pidfd)
    }

    /// Opens a pidfd for a live pid without a start time to check against (the caller knows the
    /// pid cannot have been reused, e.g. a child not yet reaped).
    pub fn open_now(pid: i32) -> Option<Pidfd> {
        procio::Pinned::open_now(pid).ok().flatten().map(Pidfd)
    }

    pub fn signal(&self, sig: i32) -> io::Result<()> {
        match self.0.signal(sig)? {
            true => Ok(()),
            false => Err(io::Error::from_raw_os_error(libc::ESRCH)),
        }
    }
}

/// Reaps `pid` if it is a zombie child of the harness (its own or re-parented to it, the
/// subreaper). Never blocks; never touches other children.
pub fn reap(pid: i32) {
    procio::pidfd::reap_if_child(pid);
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
    let start = procio::procfs::stat(pid).ok()?.start_ticks;
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
    fn own_process_is_readable() {
        let me = std::process::id() as i32;
        let s = procio::procfs::stat(me).unwrap();
        let u = proc_use(me, true).unwrap();
        assert!(u.rss_kb > 0 && !u.threads.is_empty());
        assert!(Pidfd::open(me, s.start_ticks).is_some());
        assert!(Pidfd::open(me, s.start_ticks + 1).is_none());
    }
}
