//! Enforcing a task's `limits` (memory, cpu) through cgroups, where the machine has a
//! controller for them.
//!
//! - **v2**: when this supervisor's own cgroup delegates the controller (it is in its
//!   `cgroup.subtree_control`), the task root enables it for the task cgroups and each
//!   instance's cgroup gets `memory.max` (and `memory.swap.max` 0, so the limit kills instead
//!   of swapping) or `cpu.max`. Only with cgroup tracking.
//! - **v1** (hybrid hosts, where the controllers sit in their own hierarchies, e.g.
//!   `/sys/fs/cgroup/memory`, `/sys/fs/cgroup/cpu,cpuacct`): each limited instance gets a cgroup
//!   `timeservice@<instance>/<task>@<generation>` under the supervisor's own cgroup of that
//!   hierarchy, with `memory.limit_in_bytes` or `cpu.cfs_quota_us`; the child joins it by
//!   writing `0` to its `cgroup.procs` as its very first step (before any code of its own
//!   runs), and the cgroup is removed once the instance is gone.
//!
//! Where neither is available the task is refused before it is added, naming the task and the
//! field ([`problems`], part of the file-system checks): exit 2 at start, 400 from the API.
use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use supervisor_core::Limits;

/// CFS period for a cpu limit: quota = CPUs × period.
const PERIOD_US: u64 = 100_000;

/// Which controllers this supervisor can use, probed once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub v2_memory: bool,
    pub v2_cpu: bool,
    /// This process's own cgroup in the v1 memory hierarchy, when it can make cgroups there.
    pub v1_memory: Option<PathBuf>,
    pub v1_cpu: Option<PathBuf>,
}

static V2_ALLOWED: OnceLock<bool> = OnceLock::new();

/// Called once at start: v2 controllers are only used with cgroup tracking (`--no-cgroups`
/// leaves the v2 hierarchy alone).
pub fn init(cgroup_tracking: bool) {
    let _ = V2_ALLOWED.set(cgroup_tracking);
}

/// What this machine offers (probed at the first call).
pub fn capabilities() -> &'static Capabilities {
    static CAPS: OnceLock<Capabilities> = OnceLock::new();
    CAPS.get_or_init(|| probe(*V2_ALLOWED.get().unwrap_or(&true)))
}

fn probe(v2_allowed: bool) -> Capabilities {
    let mut caps = Capabilities::default();
    if v2_allowed {
        if let Ok(Some(h)) = procio::cgroup::Hierarchy::find() {
            if let Ok(own) = h.of_pid(std::process::id() as i32) {
                let delegated =
                    std::fs::read_to_string(own.join("cgroup.subtree_control")).unwrap_or_default();
                let has = |c: &str| delegated.split_whitespace().any(|w| w == c);
                caps.v2_memory = has("memory");
                caps.v2_cpu = has("cpu");
            }
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    caps.v1_memory = v1_own_dir(&mountinfo, &own, "memory").filter(|d| writable(d));
    caps.v1_cpu = v1_own_dir(&mountinfo, &own, "cpu").filter(|d| writable(d));
    caps
}

/// This process's cgroup in the v1 hierarchy of `controller`: the mount whose super options
/// name it, joined with the path `/proc/self/cgroup` gives (relative to the mount's root).
pub fn v1_own_dir(mountinfo: &str, proc_cgroup: &str, controller: &str) -> Option<PathBuf> {
    let (mount, root) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let (fstype, _source, options) = (r.next()?, r.next()?, r.next()?);
        if fstype != "cgroup" || !options.split(',').any(|o| o == controller) {
            return None;
        }
        let f: Vec<&str> = left.split_whitespace().collect();
        Some((unescape(f.get(4)?), f.get(3)?.to_string()))
    })?;
    let path = proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })?;
    let rel = path.strip_prefix(root.as_str()).unwrap_or(&path);
    Some(PathBuf::from(mount).join(rel.trim_start_matches('/')))
}

/// Mount points in mountinfo escape spaces and the like as `\040`.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}

fn writable(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string; access only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Why `limits` cannot be enforced here, per field (empty when they can).
pub fn problems(limits: &Limits) -> Vec<(&'static str, String)> {
    problems_with(capabilities(), limits)
}

fn problems_with(caps: &Capabilities, limits: &Limits) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if limits.memory.is_some() && !caps.v2_memory && caps.v1_memory.is_none() {
        out.push(("limits.memory", "cannot be enforced on this machine: no memory controller is available to this supervisor (not delegated in its cgroup v2 cgroup.subtree_control, and no writable v1 memory hierarchy)".to_string()));
    }
    if limits.cpu_millis.is_some() && !caps.v2_cpu && caps.v1_cpu.is_none() {
        out.push(("limits.cpu", "cannot be enforced on this machine: no cpu controller is available to this supervisor (not delegated in its cgroup v2 cgroup.subtree_control, and no writable v1 cpu hierarchy)".to_string()));
    }
    out
}

/// The v1 cgroups of limited instances, and enabling the v2 controllers once.
#[derive(Debug, Default)]
pub struct Limiter {
    /// `timeservice@<instance>`.
    root_name: String,
    v1_dirs: HashMap<u64, Vec<PathBuf>>,
    /// v1 cgroups the kernel did not let go yet (a process not quite gone).
    retired: Vec<PathBuf>,
    v2_enabled: bool,
}

impl Limiter {
    pub fn new(root_name: String) -> Limiter {
        Limiter {
            root_name,
            ..Limiter::default()
        }
    }

    /// Before instance `generation` of task `name` starts: its v2 cgroup `v2_dir` (if any) gets
    /// the limits the v2 controllers can take; the rest go to v1 cgroups made for it, whose
    /// `cgroup.procs` descriptors the child writes itself into first.
    pub fn prepare(
        &mut self,
        name: &str,
        generation: u64,
        limits: &Limits,
        v2_dir: Option<&Path>,
    ) -> io::Result<Vec<OwnedFd>> {
        let caps = capabilities();
        let mut joins = Vec::new();
        if limits.is_none() {
            return Ok(joins);
        }
        let v2 = v2_dir.filter(|_| caps.v2_memory || caps.v2_cpu);
        if let Some(dir) = v2 {
            self.enable_v2(dir);
        }
        if let Some(bytes) = limits.memory {
            match (v2.filter(|_| caps.v2_memory), &caps.v1_memory) {
                (Some(dir), _) => {
                    write(dir, "memory.max", &bytes.to_string())?;
                    let _ = write(dir, "memory.swap.max", "0");
                }
                (None, Some(own)) => {
                    let dir = self.v1_dir(own, name, generation)?;
                    write(&dir, "memory.limit_in_bytes", &bytes.to_string())?;
                    // Best effort: where swap is accounted, the limit holds for it too.
                    let _ = write(&dir, "memory.memsw.limit_in_bytes", &bytes.to_string());
                    joins.push(procio::cgroup::open_procs(&dir)?);
                }
                (None, None) => return Err(io::Error::other("no memory controller")),
            }
        }
        if let Some(millis) = limits.cpu_millis {
            let quota = u64::from(millis) * PERIOD_US / 1000;
            match (v2.filter(|_| caps.v2_cpu), &caps.v1_cpu) {
                (Some(dir), _) => write(dir, "cpu.max", &format!("{quota} {PERIOD_US}"))?,
                (None, Some(own)) => {
                    let dir = self.v1_dir(own, name, generation)?;
                    write(&dir, "cpu.cfs_period_us", &PERIOD_US.to_string())?;
                    write(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
                    joins.push(procio::cgroup::open_procs(&dir)?);
                }
                (None, None) => return Err(io::Error::other("no cpu controller")),
            }
        }
        Ok(joins)
    }

    /// The v1 cgroup of an instance in the hierarchy of `own` (made now).
    fn v1_dir(&mut self, own: &Path, name: &str, generation: u64) -> io::Result<PathBuf> {
        let dir = own
            .join(&self.root_name)
            .join(format!("{name}@{generation}"));
        match std::fs::create_dir_all(&dir) {
            Ok(()) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot make cgroup {}: {e}", dir.display()),
                ));
            }
        }
        self.v1_dirs
            .entry(generation)
            .or_default()
            .push(dir.clone());
        Ok(dir)
    }

    /// The task root (the parent of an instance's cgroup) passes the controllers on.
    fn enable_v2(&mut self, instance_dir: &Path) {
        if self.v2_enabled {
            return;
        }
        let caps = capabilities();
        if let Some(root) = instance_dir.parent() {
            for (c, on) in [("+memory", caps.v2_memory), ("+cpu", caps.v2_cpu)] {
                if on {
                    if let Err(e) = write(root, "cgroup.subtree_control", c) {
                        tracing::warn!(cgroup = %root.display(), controller = c, error = %e, "cannot enable the controller for task cgroups");
                    }
                }
            }
        }
        self.v2_enabled = true;
    }

    /// Instance `generation` is gone: its v1 cgroups go too.
    pub fn release(&mut self, generation: u64) {
        if let Some(dirs) = self.v1_dirs.remove(&generation) {
            self.retired.extend(dirs);
        }
        self.retired.retain(|d| match std::fs::remove_dir(d) {
            Ok(()) => false,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(_) => true,
        });
    }

    /// At exit: whatever is left, and the v1 task roots.
    pub fn finish(&self) {
        for d in self.v1_dirs.values().flatten().chain(&self.retired) {
            let _ = std::fs::remove_dir(d);
        }
        let caps = capabilities();
        for own in [&caps.v1_memory, &caps.v1_cpu].into_iter().flatten() {
            let _ = std::fs::remove_dir(own.join(&self.root_name));
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot write {value:?} to {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_dir_comes_from_mountinfo_and_proc_cgroup() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let own = "4:memory:/a/b\n3:cpu,cpuacct:/\n0::/x\n";
        assert_eq!(
            v1_own_dir(mountinfo, own, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/a/b"))
        );
        assert_eq!(
            v1_own_dir(mountinfo, own, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(v1_own_dir(mountinfo, own, "pids"), None);
        // A mount of a sub-tree (as in a container): the path is taken relative to its root.
        let nested = "40 25 0:27 /a /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            v1_own_dir(nested, own, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/b"))
        );
    }

    #[test]
    fn no_controller_means_a_problem_naming_the_field() {
        // The refusal itself, whatever this machine has: with no capability, both fields.
        let caps = Capabilities::default();
        let limits = Limits {
            memory: Some(1 << 30),
            cpu_millis: Some(500),
        };
        let p = problems_with(&caps, &limits);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, "limits.memory");
        assert!(p[0].1.contains("no memory controller"));
        assert_eq!(p[1].0, "limits.cpu");
        assert!(problems_with(&caps, &Limits::default()).is_empty());
        let v1 = Capabilities {
            v1_memory: Some("/m".into()),
            ..Capabilities::default()
        };
        assert_eq!(
            problems_with(&v1, &limits).len(),
            1,
            "memory is fine, cpu is not"
        );
    }
}
