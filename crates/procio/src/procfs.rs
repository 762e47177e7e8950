//! What `/proc` says about processes: start times, groups, parents, environments, children,
//! executables and cgroups.
//!
//! A pid alone does not identify a process (pids are reused); (pid, start time, boot id) does.
use std::fs;
use std::io;
use std::path::PathBuf;

/// The fields of `/proc/PID/stat` the supervisor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    pub ppid: i32,
    pub pgid: i32,
    /// Session id (field 6). Every task leads its own session (`setsid` at spawn), and no
    /// process can leave a session it leads.
    pub sid: i32,
    /// Field 22: clock ticks after boot at which the process started.
    pub start_ticks: u64,
}

impl Stat {
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Reads `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so the
/// fields are counted from the *last* `)`.
pub fn stat(pid: i32) -> io::Result<Stat> {
    // One read into a buffer on the stack (the file is under 1 KiB; the kernel makes it whole
    // at the first read): a scan of /proc reads one per process.
    use std::io::Read;
    let mut buf = [0u8; 1024];
    let mut f = fs::File::open(format!("/proc/{pid}/stat"))?;
    let n = f.read(&mut buf)?;
    let text = std::str::from_utf8(&buf[..n]).map_err(|_| malformed(pid))?;
    parse_stat(pid, text).ok_or_else(|| malformed(pid))
}

fn malformed(pid: i32) -> io::Error {
    io::Error::other(format!("/proc/{pid}/stat is malformed"))
}

fn parse_stat(pid: i32, text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field N is f[N - 3].
    Some(Stat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// `pid`'s ancestors, parent first, up to (not including) pid 0. Bounded, in case of a loop
/// that pid reuse could make up mid-walk.
pub fn ancestors(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut cur = pid;
    while out.len() < 4096 {
        match stat(cur) {
            Ok(s) if s.ppid > 0 && !out.contains(&s.ppid) => {
                out.push(s.ppid);
                cur = s.ppid;
            }
            _ => break,
        }
    }
    out
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Every pid in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The *initial* environment of `pid` (what it was exec'd with): `KEY=VALUE\0...`.
pub fn environ(pid: i32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The value of `var` in an environment read by [`environ`].
pub fn env_value(env: &[u8], var: &str) -> Option<String> {
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(var.as_bytes())?.strip_prefix(b"="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The value of `var` in the *initial* environment of `pid`.
pub fn environ_var(pid: i32, var: &str) -> Option<String> {
    env_value(&environ(pid)?, var)
}

/// True when the initial environment of `pid` holds exactly `KEY=VALUE` as `entry`.
pub fn environ_has(pid: i32, entry: &[u8]) -> bool {
    environ(pid).is_some_and(|env| env.split(|b| *b == 0).any(|kv| kv == entry))
}

/// Live (non-zombie) processes other than this one whose initial environment has `var=value`.
pub fn pids_with_env(var: &str, value: &str) -> Vec<i32> {
    let entry = format!("{var}={value}");
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me && environ_has(pid, entry.as_bytes()))
        .filter(|&pid| stat(pid).is_ok_and(|s| !s.is_zombie()))
        .collect()
}

/// The program `pid` runs (`/proc/PID/exe`).
pub fn exe(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The cgroup v2 path of `pid` (the `0::/path` line of `/proc/PID/cgroup`), relative to the
/// root of the v2 hierarchy, without the leading `/`.
pub fn cgroup_v2(pid: i32) -> io::Result<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    parse_cgroup_v2(&text)
        .map(str::to_string)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/cgroup has no cgroup v2 line")))
}

fn parse_cgroup_v2(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/'))
}

/// Direct children of this process (all threads), from `/proc/self/task/*/children`.
pub fn own_children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let s = parse_stat(4242, line).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.pgid, s.sid, s.start_ticks),
            ('S', 1, 4242, 4242, 987654)
        );
    }

    #[test]
    fn reads_own_stat_and_boot_id() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.start_ticks > 0);
        assert_eq!(boot_id().unwrap().len(), 36);
    }

    #[test]
    fn env_values_match_whole_names_only() {
        let env =
            b"TIMESERVICE_TASK_X=no\0TIMESERVICE_TASK=web\0EMPTY=\0TIMESERVICE_GENERATION=7\0";
        assert_eq!(env_value(env, "TIMESERVICE_TASK").as_deref(), Some("web"));
        assert_eq!(
            env_value(env, "TIMESERVICE_GENERATION").as_deref(),
            Some("7")
        );
        assert_eq!(env_value(env, "EMPTY").as_deref(), Some(""));
        assert_eq!(env_value(env, "TIMESERVICE"), None);
        assert_eq!(env_value(b"", "X"), None);
        // Our own environment, read back from /proc.
        let own = environ(std::process::id() as i32).unwrap();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(env_value(&own, "PATH"), Some(path));
    }

    #[test]
    fn finds_the_v2_line_of_a_cgroup_file() {
        let hybrid = "9:name=systemd:/\n4:memory:/a/b\n0::/x/y@3\n";
        assert_eq!(parse_cgroup_v2(hybrid), Some("x/y@3"));
        assert_eq!(parse_cgroup_v2("0::/\n"), Some(""));
        assert_eq!(parse_cgroup_v2("4:memory:/a\n"), None);
        // Our own is readable, whatever it says.
        assert!(cgroup_v2(std::process::id() as i32).is_ok());
    }

    #[test]
    fn finds_processes_by_environment_and_names_their_program() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("PROCIO_TEST_MARK", format!("m{me}"))
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let found = crate::pidfd::wait_until(std::time::Duration::from_secs(5), || {
            pids_with_env("PROCIO_TEST_MARK", &format!("m{me}")) == vec![pid]
        });
        let exe = exe(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "the marked child is found");
        assert!(exe.is_some_and(|p| p.ends_with("sleep")));
        assert!(!environ_has(me, b"PROCIO_TEST_MARK=none"));
    }

    #[test]
    fn ancestors_lead_to_init() {
        let me = std::process::id() as i32;
        let a = ancestors(me);
        assert_eq!(a.first().copied(), Some(stat(me).unwrap().ppid));
        assert_eq!(a.last().copied(), Some(1));
    }
}
