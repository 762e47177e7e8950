//! CPU time and memory of each running task instance, for `GET /tasks`, `/metrics`, `ctl
//! status` and the dashboard. Measured on the API thread from a snapshot, never by the loop.
//!
//! - **With a task cgroup** (v2): CPU is `cpu.stat`'s `usage_usec`, which the kernel keeps
//!   even without the cpu controller, minus what the cgroup had used when its previous
//!   instance was done (cgroups are reused, [`crate::tracking`] keeps that baseline). Memory
//!   is `memory.current` where the memory controller is on for the cgroup, else the resident
//!   set of every process in `cgroup.procs` (`/proc/PID/statm`), summed.
//! - **Without** (process-group tracking): one pass over `/proc` per request sums, for each
//!   task's process group, user + system time (the leader's reaped children included) and
//!   the resident set.
//!
//! **Cost**: reading a cgroup's files costs tens of microseconds per task, so 10 000 tasks
//! would make every `/tasks` wait for about a second. [`lookup`] therefore measures in place
//! up to [`SMALL`] instances, and above that only while a whole pass is estimated to stay
//! under [`SYNC_BUDGET`]; beyond, answers come
//! from the last pass of a sampler thread, which makes a pass only when asked (so an idle
//! supervisor does not read anything) and at most every ten times a pass's cost (so it takes
//! at most about a tenth of a core), and a new instance shows `null` until the next pass.
//!
//! The numbers are of the current instance: a restart starts them again from 0 (a counter
//! reset, which Prometheus' `rate` expects).
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest a request measures in place (above [`SMALL`] instances).
pub const SYNC_BUDGET: Duration = Duration::from_millis(20);
/// Up to this many instances a request always measures in place.
pub const SMALL: u32 = 200;

/// Where the usage of one running instance is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The leader; its process group without cgroups.
    pub pid: u32,
    /// The instance's cgroup, in cgroup mode.
    pub cgroup: Option<PathBuf>,
    /// `usage_usec` of that cgroup before this instance (it may have held earlier ones).
    pub cpu_base_usec: u64,
}

/// One instance's usage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
}

/// The usage of each source (in order); `None` where nothing could be read (the instance just
/// ended, or its files are gone).
pub fn measure(sources: &[Option<Source>]) -> Vec<Option<Usage>> {
    let groups = if sources.iter().flatten().any(|s| s.cgroup.is_none()) {
        group_totals()
    } else {
        HashMap::new()
    };
    sources
        .iter()
        .map(|s| {
            let s = s.as_ref()?;
            match &s.cgroup {
                Some(dir) => of_cgroup(dir, s.cpu_base_usec),
                None => groups.get(&(s.pid as i32)).map(|t| Usage {
                    cpu_seconds: t.ticks as f64 / ticks_per_sec(),
                    memory_bytes: t.rss_pages * page_size(),
                }),
            }
        })
        .collect()
}

/// What the sampler thread and the requests share.
#[derive(Default)]
struct Shared {
    /// The last pass, by leader pid.
    by_pid: Arc<HashMap<u32, Usage>>,
    /// When the last pass ended, and what one source cost in it.
    last: Option<(Instant, Duration)>,
    /// The sources of the latest request, for the next pass.
    wanted: Option<Vec<Option<Source>>>,
    sampler: bool,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();

/// The usage of each source, for a request: measured now when that is cheap, else the
/// sampler's last pass (see the module doc).
pub fn lookup(sources: &[Option<Source>]) -> Vec<Option<Usage>> {
    let live = sources.iter().flatten().count() as u32;
    let per_source = {
        let g = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.as_ref().and_then(|s| s.last).map(|(_, c)| c)
    };
    // A few hundred instances are always measured in place, however slow a busy machine makes
    // one pass look: the sampler is for the supervisors where a pass costs a real share of a
    // core, and its answers lag (a new instance shows null until the next pass).
    let cheap = live <= SMALL || per_source.is_some_and(|c| c * live <= SYNC_BUDGET);
    if cheap {
        let t0 = Instant::now();
        let got = measure(sources);
        let per = t0.elapsed() / live.max(1);
        let mut g = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = g.get_or_insert_with(Shared::default);
        // Only the estimate: a sampler pass is not needed while requests measure themselves.
        s.last = Some((Instant::now(), per));
        return got;
    }
    let mut g = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let s = g.get_or_insert_with(Shared::default);
    s.wanted = Some(sources.to_vec());
    if !s.sampler {
        s.sampler = std::thread::Builder::new()
            .name("usage".into())
            .spawn(sampler)
            .is_ok();
    }
    WAKE.notify_one();
    let by_pid = Arc::clone(&s.by_pid);
    drop(g);
    sources
        .iter()
        .map(|src| src.as_ref().and_then(|x| by_pid.get(&x.pid).copied()))
        .collect()
}

/// Makes a pass when a request left sources, at most every ten times a pass's cost.
fn sampler() {
    loop {
        let (sources, wait) = {
            let mut g = SHARED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                let s = g.get_or_insert_with(Shared::default);
                if let Some(w) = s.wanted.take() {
                    let pause = s.last.map_or(Duration::ZERO, |(at, per)| {
                        let pass = per * w.iter().flatten().count() as u32;
                        (pass * 10).saturating_sub(at.elapsed())
                    });
                    break (w, pause);
                }
                g = WAKE
                    .wait(g)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        std::thread::sleep(wait);
        let t0 = Instant::now();
        let got = measure(&sources);
        let live = sources.iter().flatten().count() as u32;
        let per = t0.elapsed() / live.max(1);
        let by_pid: HashMap<u32, Usage> = sources
            .iter()
            .zip(got)
            .filter_map(|(s, u)| Some((s.as_ref()?.pid, u?)))
            .collect();
        let mut g = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = g.get_or_insert_with(Shared::default);
        s.by_pid = Arc::new(by_pid);
        s.last = Some((Instant::now(), per));
    }
}

/// `usage_usec` of a cgroup's `cpu.stat`.
pub fn cpu_usec(dir: &std::path::Path) -> Option<u64> {
    let text = read_small(&dir.join("cpu.stat"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

fn of_cgroup(dir: &std::path::Path, base: u64) -> Option<Usage> {
    let cpu = cpu_usec(dir)?;
    let memory = match read_small(&dir.join("memory.current")) {
        Some(m) => m.trim().parse().ok()?,
        None => {
            let procs = read_small(&dir.join("cgroup.procs"))?;
            procs
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .filter_map(rss_pages)
                .sum::<u64>()
                * page_size()
        }
    };
    Some(Usage {
        cpu_seconds: cpu.saturating_sub(base) as f64 / 1e6,
        memory_bytes: memory,
    })
}

/// A small file in one read (the kernel makes these whole at the first read).
fn read_small(path: &std::path::Path) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    let mut buf = [0u8; 4096];
    let n = f.read(&mut buf).ok()?;
    String::from_utf8(buf[..n].to_vec()).ok()
}

/// Resident pages of `pid` (`/proc/PID/statm`, field 2).
fn rss_pages(pid: i32) -> Option<u64> {
    read_small(std::path::Path::new(&format!("/proc/{pid}/statm")))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    ticks: u64,
    rss_pages: u64,
}

/// CPU ticks and resident pages summed by process group, in one pass over `/proc`.
fn group_totals() -> HashMap<i32, Totals> {
    let mut by_group: HashMap<i32, Totals> = HashMap::new();
    for pid in procio::procfs::all_pids() {
        let Some(text) = read_small(std::path::Path::new(&format!("/proc/{pid}/stat"))) else {
            continue;
        };
        if let Some((pgid, ticks, rss)) = parse_stat_usage(&text) {
            let t = by_group.entry(pgid).or_default();
            t.ticks += ticks;
            t.rss_pages += rss;
        }
    }
    by_group
}

/// From `/proc/PID/stat`: the process group (field 5), utime + stime + cutime + cstime
/// (fields 14-17) and rss (field 24). Fields are counted from the last `)`: the command name
/// may hold anything.
fn parse_stat_usage(text: &str) -> Option<(i32, u64, u64)> {
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    let pgid = f.get(5 - 3)?.parse().ok()?;
    let ticks = field(14)? + field(15)? + field(16)? + field(17)?;
    Some((pgid, ticks, field(24)?))
}

fn page_size() -> u64 {
    static P: OnceLock<u64> = OnceLock::new();
    // SAFETY: sysconf only reads a constant.
    *P.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

fn ticks_per_sec() -> f64 {
    static T: OnceLock<f64> = OnceLock::new();
    // SAFETY: sysconf only reads a constant.
    *T.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 555 1000000 250 18446744073709551615";
        assert_eq!(parse_stat_usage(line), Some((42, 13, 250)));
    }

    #[test]
    fn the_process_group_of_this_test_has_cpu_time_and_memory() {
        // Burn a little CPU so there is something to count.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        // SAFETY: getpgrp has no failure mode.
        let pgid = unsafe { libc::getpgrp() };
        let got = measure(&[Some(Source {
            pid: pgid as u32,
            cgroup: None,
            cpu_base_usec: 0,
        })]);
        let u = got[0].expect("our own group is measured");
        assert!(u.cpu_seconds > 0.0 && u.memory_bytes > 1 << 20, "{u:?}");
    }
}
