//! cgroup v2: a folder per group of processes, which no member can leave, whose members the
//! kernel lists (`cgroup.procs`), counts (`cgroup.events`: `populated 0|1`) and kills at once
//! (`cgroup.kill`).
//!
//! The v2 hierarchy is found in `/proc/self/mountinfo`: on a pure v2 host it is
//! `/sys/fs/cgroup`; on a hybrid one (v1 controllers, v2 beside them) usually
//! `/sys/fs/cgroup/unified`. Membership and killing need no controller, so both kinds work the
//! same way here.
use crate::pidfd::Pinned;
use crate::procfs;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A mounted cgroup v2 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    mount: PathBuf,
}

impl Hierarchy {
    /// The v2 hierarchy of this system, if one is mounted. A pure v2 mount at `/sys/fs/cgroup`
    /// wins over others.
    pub fn find() -> io::Result<Option<Hierarchy>> {
        let text = fs::read_to_string("/proc/self/mountinfo")?;
        let mounts = v2_mounts(&text);
        let pick = mounts
            .iter()
            .find(|m| m.as_path() == Path::new("/sys/fs/cgroup"))
            .or_else(|| mounts.first());
        Ok(pick.map(|m| Hierarchy { mount: m.clone() }))
    }

    /// A hierarchy mounted at `mount` (for tests and `--cgroup-root`-like settings).
    pub fn at(mount: impl Into<PathBuf>) -> Hierarchy {
        Hierarchy {
            mount: mount.into(),
        }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The cgroup `pid` is in, as a folder of this hierarchy.
    pub fn of_pid(&self, pid: i32) -> io::Result<PathBuf> {
        Ok(self.path_of(&procfs::cgroup_v2(pid)?))
    }

    /// The folder for a cgroup path as `/proc/PID/cgroup` writes it (relative to the root).
    pub fn path_of(&self, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            self.mount.clone()
        } else {
            self.mount.join(rel)
        }
    }

    /// `dir` relative to the root, as `/proc/PID/cgroup` would write it (no leading `/`).
    pub fn relative<'a>(&self, dir: &'a Path) -> Option<&'a Path> {
        dir.strip_prefix(&self.mount).ok()
    }
}

/// Mount points of cgroup2 filesystems in a `mountinfo` text.
fn v2_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER"
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            (fstype == "cgroup2").then(|| left.split_whitespace().nth(4).map(unescape))?
        })
        .collect()
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal (`\040`).
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let octal = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(v) = octal {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Creates the cgroup `dir` (its parent must exist). An existing one is fine.
pub fn create(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r.map_err(|e| with_path(e, "cannot create cgroup", dir)),
    }
}

/// Creates `dir` and every missing parent below an existing cgroup.
pub fn create_all(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir).map_err(|e| with_path(e, "cannot create cgroup", dir))
}

/// A descriptor of the cgroup folder, for `clone3(CLONE_INTO_CGROUP)`.
pub fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|e| with_path(e, "cannot open cgroup", dir))
}

/// `cgroup.procs` of `dir`, open for writing: a process writing `0` to it moves there.
pub fn open_procs(dir: &Path) -> io::Result<OwnedFd> {
    let path = dir.join("cgroup.procs");
    fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map(OwnedFd::from)
        .map_err(|e| with_path(e, "cannot open", &path))
}

/// True while some process is in `dir` or a cgroup below it (`cgroup.events`). A cgroup that
/// does not exist is empty. Zombies do not count: a process leaves its cgroup when it exits.
pub fn populated(dir: &Path) -> io::Result<bool> {
    // Three system calls (open, read, close): this is read at every death, before the restart.
    // kernfs hands out the whole (small) file in one read.
    let path = dir.join("cgroup.events");
    let mut buf = [0u8; 128];
    let n = match fs::File::open(&path) {
        Ok(mut f) => f
            .read(&mut buf)
            .map_err(|e| with_path(e, "cannot read", &path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(with_path(e, "cannot read", &path)),
    };
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(parse_populated)
        .ok_or_else(|| io::Error::other(format!("{} has no populated line", path.display())))
}

fn parse_populated(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| l.strip_prefix("populated "))
        .map(|v| v.trim() != "0")
}

/// The processes in `dir` itself (`cgroup.procs`); empty when the cgroup does not exist.
pub fn procs(dir: &Path) -> io::Result<Vec<i32>> {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(with_path(e, "cannot read", &dir.join("cgroup.procs"))),
    }
}

/// SIGKILLs every process in `dir` and below, at once, through `cgroup.kill` (Linux 5.14+);
/// older kernels get a kill of each member through a pinned pidfd. A missing cgroup is fine.
pub fn kill(dir: &Path) -> io::Result<()> {
    let file = dir.join("cgroup.kill");
    match fs::OpenOptions::new().write(true).open(&file) {
        Ok(mut f) => f
            .write_all(b"1")
            .map_err(|e| with_path(e, "cannot write", &file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir.exists() => {
            kill_members(dir).map(|_| ())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(with_path(e, "cannot open", &file)),
    }
}

impl Hierarchy {
    /// Sends `sig` to every process in `dir` and the cgroups below it. Each is pinned by a
    /// pidfd first and its membership checked through the pinned process, so a pid reused
    /// between the read of `cgroup.procs` and the signal is never hit. Returns how many were
    /// signalled.
    pub fn signal_members(&self, dir: &Path, sig: i32) -> io::Result<usize> {
        let mut n = 0;
        for d in subtree(dir) {
            for p in pinned_members(&d)? {
                // The pidfd holds one process; if that one is (still) in `d`, it is a member.
                if self.of_pid(p.pid).is_ok_and(|now| now == d) && p.signal(sig).unwrap_or(false) {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

fn pinned_members(dir: &Path) -> io::Result<Vec<Pinned>> {
    Ok(procs(dir)?
        .into_iter()
        .filter_map(|pid| Pinned::open_now(pid).ok().flatten())
        .collect())
}

/// `cgroup.kill` by hand, for kernels without it: SIGKILL to each member, pinned. A member
/// that left between the read and the kill is not hit: SIGKILL through a pidfd reaches only
/// the process it was opened for, and a process cannot leave its cgroup by itself.
fn kill_members(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for d in subtree(dir) {
        for p in pinned_members(&d)? {
            if p.signal(libc::SIGKILL).unwrap_or(false) {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// `dir` and every cgroup folder below it, parents first.
pub fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() && out.len() < 100_000 {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            let mut kids: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            kids.sort();
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// Removes the cgroup `dir` and the (empty) cgroups below it, children first. A missing one
/// is fine; one that still has processes is an error (`EBUSY`).
pub fn remove(dir: &Path) -> io::Result<()> {
    for d in subtree(dir).into_iter().rev() {
        match fs::remove_dir(&d) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            r => r.map_err(|e| with_path(e, "cannot remove cgroup", &d))?,
        }
    }
    Ok(())
}

/// Folders below `root` (down to `max_depth` levels) whose name passes `wanted`; the walk does
/// not descend into a match. At most `max_dirs` folders are looked at.
pub fn find_named(
    root: &Path,
    max_depth: usize,
    max_dirs: usize,
    wanted: impl Fn(&str) -> bool,
) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![root.to_path_buf()];
    let mut seen = 0;
    for _ in 0..max_depth {
        let mut next = Vec::new();
        for dir in &level {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                seen += 1;
                if seen > max_dirs {
                    return found;
                }
                if e.file_name().to_str().is_some_and(&wanted) {
                    found.push(e.path());
                } else {
                    next.push(e.path());
                }
            }
        }
        level = next;
    }
    found.sort();
    found
}

/// True when this process may create cgroups in `dir` (tries it with a probe folder).
pub fn writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    create(&probe)?;
    fs::remove_dir(&probe).map_err(|e| with_path(e, "cannot remove cgroup", &probe))
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Kills everything in the task cgroups a supervisor announced in its log (`tasks are tracked
/// by cgroup cgroup=PATH`), waits (up to 5 s) until they are empty, and removes them, with the
/// v1 `memory` and `cpu` cgroups of the same name its limited tasks had. For the harnesses
/// (tests, benchmarks) that SIGKILL supervisors and must leave nothing behind.
pub fn clean_announced(log: &str) {
    for line in log.lines() {
        if !line.contains("tasks are tracked by cgroup") {
            continue;
        }
        let Some(path) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("cgroup="))
            .map(std::path::PathBuf::from)
        else {
            continue;
        };
        if !path.starts_with("/sys/fs/cgroup") || !path.exists() {
            continue;
        }
        let _ = kill(&path);
        crate::pidfd::wait_until(std::time::Duration::from_secs(5), || {
            !populated(&path).unwrap_or(false)
        });
        let _ = remove(&path);
        // Tasks with `limits` also had cgroups of the same name in the v1 memory and cpu
        // hierarchies (under this process's own cgroup there); their processes are gone now.
        if let Some(name) = path.file_name() {
            for (controller, mount) in [
                ("memory", "/sys/fs/cgroup/memory"),
                ("cpu", "/sys/fs/cgroup/cpu"),
            ] {
                if let Some(own) = own_v1_cgroup(controller) {
                    remove_tree(
                        &std::path::Path::new(mount)
                            .join(own.trim_start_matches('/'))
                            .join(name),
                    );
                }
            }
        }
    }
}

/// This process's cgroup in the v1 hierarchy of `controller` (from `/proc/self/cgroup`).
fn own_v1_cgroup(controller: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// Removes a cgroup folder and the cgroups below it, deepest first (empty ones only: the
/// kernel refuses the others).
fn remove_tree(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v2_mounts_in_mountinfo() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v2_mounts(hybrid),
            vec![PathBuf::from("/sys/fs/cgroup/unified")]
        );
        let pure =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(v2_mounts(pure), vec![PathBuf::from("/sys/fs/cgroup")]);
        let spaced = "41 31 0:38 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(v2_mounts(spaced), vec![PathBuf::from("/mnt/my cg")]);
        assert!(v2_mounts("1 2 3:4 / / rw - ext4 /dev/x rw\n").is_empty());
    }

    #[test]
    fn reads_populated() {
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("frozen 0\n"), None);
    }

    #[test]
    fn paths_map_both_ways() {
        let h = Hierarchy::at("/sys/fs/cgroup/unified");
        assert_eq!(h.path_of("/"), PathBuf::from("/sys/fs/cgroup/unified"));
        let d = h.path_of("/a/b@3");
        assert_eq!(d, PathBuf::from("/sys/fs/cgroup/unified/a/b@3"));
        assert_eq!(h.relative(&d), Some(Path::new("a/b@3")));
    }

    /// The hierarchy to test in, or `None` (skip) where cgroups cannot be used; under `CI=true`
    /// a missing hierarchy fails the test instead of skipping it silently.
    fn test_hierarchy() -> Option<(Hierarchy, PathBuf)> {
        let h = Hierarchy::find().ok().flatten();
        let usable = h.and_then(|h| {
            let own = h.of_pid(std::process::id() as i32).ok()?;
            writable(&own).ok()?;
            Some((h, own))
        });
        if usable.is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but no writable cgroup v2 hierarchy: this test cannot run"
            );
            eprintln!("skipped: no writable cgroup v2 hierarchy");
        }
        usable
    }

    fn spawn_into(dir: &Path, script: &str) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let procs = dir.join("cgroup.procs");
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", script]);
        // SAFETY: the hook only opens and writes a file, async-signal-safe enough for a test
        // (the child is single-threaded after fork).
        unsafe {
            cmd.pre_exec(move || fs::write(&procs, b"0"));
        }
        cmd.spawn().unwrap()
    }

    #[test]
    fn a_cgroup_lists_signals_kills_and_empties() {
        let Some((h, own)) = test_hierarchy() else {
            return;
        };
        let dir = own.join(format!("procio-test-{}", std::process::id()));
        create(&dir).unwrap();
        assert!(!populated(&dir).unwrap());
        let mut a = spawn_into(&dir, "sleep 30 & sleep 30 & wait");
        let listed = crate::pidfd::wait_until(std::time::Duration::from_secs(5), || {
            procs(&dir).unwrap().len() == 3
        });
        assert!(listed, "{:?}", procs(&dir));
        assert!(populated(&dir).unwrap());
        assert_eq!(h.of_pid(a.id() as i32).unwrap(), dir);
        assert_eq!(h.signal_members(&dir, libc::SIGTERM).unwrap(), 3);
        a.wait().unwrap();
        let emptied = crate::pidfd::wait_until(std::time::Duration::from_secs(5), || {
            !populated(&dir).unwrap()
        });
        assert!(emptied, "TERM emptied it");

        // A group that ignores TERM, with a nested cgroup: cgroup.kill takes all of it.
        let inner = dir.join("inner");
        create(&inner).unwrap();
        let mut b = spawn_into(&dir, "trap '' TERM; sleep 30 & wait");
        let mut c = spawn_into(&inner, "trap '' TERM; sleep 30 & wait");
        assert!(crate::pidfd::wait_until(
            std::time::Duration::from_secs(5),
            || { procs(&dir).unwrap().len() == 2 && procs(&inner).unwrap().len() == 2 }
        ));
        assert_eq!(subtree(&dir), vec![dir.clone(), inner.clone()]);
        assert!(
            remove(&dir).is_err(),
            "a populated cgroup cannot be removed"
        );
        kill(&dir).unwrap();
        b.wait().unwrap();
        c.wait().unwrap();
        assert!(crate::pidfd::wait_until(
            std::time::Duration::from_secs(5),
            || { !populated(&dir).unwrap() }
        ));
        let found = find_named(&own, 2, 10_000, |n| n == "inner");
        assert_eq!(found, vec![inner.clone()]);
        remove(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn missing_cgroups_are_empty_and_removable() {
        let d = Path::new("/nonexistent-procio-test/x");
        assert!(!populated(d).unwrap());
        assert!(procs(d).unwrap().is_empty());
        remove(d).unwrap();
        kill(d).unwrap();
    }
}
