//! Which processes belong to a group the core names, and acting on all of them.
//!
//! Two ways to know, chosen at start:
//! - **cgroup** (where a writable cgroup v2 hierarchy exists): every task instance is started
//!   inside a cgroup of its own in `ROOT = <the supervisor's cgroup>/timeservice@<instance>`:
//!   `ROOT/NAME`, or `ROOT/NAME@N` when that one is still occupied. A cgroup holds one instance
//!   at a time; once empty it goes back to its task's pool and the task's next instance reuses
//!   it, because the first process ever to enter a new cgroup costs about 0.1 ms more (the
//!   kernel sets the cgroup up on first use), which would be a third of a restart. A cgroup that
//!   ever got `cgroup.kill` is removed instead: on the kernels here (6.x with `kill_seq`) a
//!   process started into it with `CLONE_INTO_CGROUP` compares the kill count of the
//!   *supervisor's* cgroup with the target's and is killed at birth when they differ. When the
//!   supervisor's own cgroup was once killed, a start-up probe finds that children born into
//!   any fresh cgroup die, and tasks join their cgroup as their first step instead
//!   ([`Placement::Join`]). Membership is the kernel's; no process can leave by itself (`setsid`, a double fork, `env -i`, a
//!   rewritten process title change nothing). TERM goes to each member through a pinned pidfd;
//!   KILL is `cgroup.kill`; "gone" is `cgroup.events` saying `populated 0`.
//! - **process group** (the fallback): a task's leader leads its own group and session. While
//!   the group is provably the same (its leader is our unreaped child, or a member pinned earlier
//!   still has its id) its members are found by group id and pinned by pidfd; processes that
//!   left the group are found by the instance's environment markers. A bare group id is never
//!   signalled once nothing pins it, so a stranger that reuses the pid is never hit.
//!
//! Groups recovery or the final sweep found are kept by handle ([`Found`]): a cgroup folder,
//! or (without cgroups) pinned processes and the markers they carry.
use crate::spawn::{self, GENERATION_VAR, INSTANCE_VAR, Placement, TASK_VAR};
use procio::cgroup::{self, Hierarchy};
use procio::{Pinned, procfs};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use supervisor_core::{Group, Sig};

/// How tasks are tracked, for `/health` and the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Cgroup { root: PathBuf },
    ProcessGroup { reason: String },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Cgroup { .. } => "cgroup",
            Mode::ProcessGroup { .. } => "process-group",
        }
    }
}

/// A group recovery or the sweep found.
#[derive(Debug)]
pub enum FoundGroup {
    /// A cgroup folder (ours or the dump's instance's).
    Cgroup(PathBuf),
    /// Processes pinned when found, plus (without cgroups) every process that carries `marker`:
    /// this instance's marker, the task's, and a generation no newer than `max_generation`
    /// (so that this supervisor's own new instances never match).
    Procs {
        pinned: Vec<Pinned>,
        marker: Option<Marker>,
    },
}

/// Environment markers that identify a predecessor's processes of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub instance: String,
    pub task: Option<String>,
    pub max_generation: u64,
}

/// The tracker: the mode, and what it holds for groups in progress.
pub struct Tracker {
    mode: Mode,
    hierarchy: Option<Hierarchy>,
    /// This supervisor's instance (its processes' marker).
    instance: String,
    /// Without cgroups: members pinned while their group was provably the same, by generation.
    pinned: HashMap<u64, Vec<Pinned>>,
    /// Our spawned leaders not yet reaped → their generation: while a leader is unreaped its
    /// pid, and so its group id, cannot be reused.
    unreaped: HashMap<u32, u64>,
    /// Groups found by recovery or the sweep, by handle.
    found: HashMap<u64, FoundGroup>,
    next_found: u64,
    /// The cgroup of each live instance (cgroup mode), by generation.
    dirs: HashMap<u64, PathBuf>,
    /// Instances whose cgroup got `cgroup.kill`: never reused (see the module doc).
    killed: HashSet<u64>,
    /// Instances whose cgroup was empty when their leader died ([`Tracker::remains`], which
    /// only reads): their release trusts that.
    empty_at_death: HashSet<u64>,
    /// Empty cgroups of each task, ready for its next instance.
    pool: HashMap<String, Vec<PathBuf>>,
    /// Cgroups to remove that the kernel still refused (processes not quite gone yet).
    retired: Vec<PathBuf>,
    /// Tasks join their cgroup as their first step instead of being born in it (see the
    /// module doc).
    join: bool,
    /// CPU time (`usage_usec`) an emptied, pooled cgroup had used, read when it was released:
    /// the next instance's usage is counted from there ([`crate::usage`]).
    pooled_cpu: HashMap<PathBuf, u64>,
    /// The same baseline for each live instance, by generation.
    cpu_base: HashMap<u64, u64>,
    /// Limited instances' controller settings and v1 cgroups.
    limiter: crate::limits_cgroup::Limiter,
}

/// A cgroup made ready for a spawn.
pub struct CgroupFd {
    fd: OwnedFd,
    join: bool,
}

impl CgroupFd {
    pub fn placement(&self) -> Placement {
        if self.join {
            Placement::Join(self.fd.as_raw_fd())
        } else {
            Placement::Into(self.fd.as_raw_fd())
        }
    }
}

impl Tracker {
    /// Cgroup tracking when `want_cgroups` and the hierarchy allows it (`ROOT` is created);
    /// the fallback otherwise, with the reason.
    pub fn new(instance: &str, want_cgroups: bool) -> Tracker {
        let mut join = false;
        let (mode, hierarchy) = if want_cgroups {
            match cgroup_root(instance) {
                Ok((h, root, j)) => {
                    join = j;
                    (Mode::Cgroup { root }, Some(h))
                }
                Err(reason) => (Mode::ProcessGroup { reason }, None),
            }
        } else {
            (
                Mode::ProcessGroup {
                    reason: "switched off (--no-cgroups)".into(),
                },
                None,
            )
        };
        Tracker {
            mode,
            hierarchy,
            instance: instance.to_string(),
            pinned: HashMap::new(),
            unreaped: HashMap::new(),
            found: HashMap::new(),
            next_found: 1,
            dirs: HashMap::new(),
            killed: HashSet::new(),
            empty_at_death: HashSet::new(),
            pool: HashMap::new(),
            retired: Vec::new(),
            join,
            pooled_cpu: HashMap::new(),
            cpu_base: HashMap::new(),
            limiter: crate::limits_cgroup::Limiter::new(root_name(instance)),
        }
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    pub fn hierarchy(&self) -> Option<&Hierarchy> {
        self.hierarchy.as_ref()
    }

    /// The cgroup folder of instance `generation`, once [`Tracker::prepare`] gave it one.
    pub fn instance_dir(&self, generation: u64) -> Option<&Path> {
        self.dirs.get(&generation).map(PathBuf::as_path)
    }

    /// Where the usage of a live instance is read ([`crate::usage`]), for snapshots.
    pub fn usage_source(&self, pid: u32, generation: u64) -> crate::usage::Source {
        crate::usage::Source {
            pid,
            cgroup: self.dirs.get(&generation).cloned(),
            cpu_base_usec: self.cpu_base.get(&generation).copied().unwrap_or(0),
        }
    }

    /// Before a spawn: a cgroup for instance `generation` of task `name` (one of the task's
    /// empty ones, or a new one), as a descriptor to start the process in.
    pub fn prepare(&mut self, name: &str, generation: u64) -> io::Result<Option<CgroupFd>> {
        let Mode::Cgroup { root } = &self.mode else {
            return Ok(None);
        };
        let join = self.join;
        let open = |dir: &Path| {
            if join {
                cgroup::open_procs(dir)
            } else {
                cgroup::open_dir(dir)
            }
        };
        let mut dir = match self.pool.get_mut(name).and_then(Vec::pop) {
            Some(d) => d,
            None => new_dir(root, name)?,
        };
        let fd = match open(&dir) {
            Ok(fd) => fd,
            Err(e) => {
                // Gone (removed by hand?): make another.
                dir = new_dir(root, name).map_err(|_| e)?;
                open(&dir)?
            }
        };
        let base = self.pooled_cpu.remove(&dir).unwrap_or(0);
        self.cpu_base.insert(generation, base);
        self.dirs.insert(generation, dir);
        Ok(Some(CgroupFd { fd, join }))
    }

    /// After [`Tracker::prepare`]: the task's `limits` on its instance's cgroup (v2), or on v1
    /// cgroups made for it, whose `cgroup.procs` the child joins first (the descriptors).
    pub fn prepare_limits(
        &mut self,
        name: &str,
        generation: u64,
        limits: &supervisor_core::Limits,
    ) -> io::Result<Vec<OwnedFd>> {
        let v2 = self.dirs.get(&generation).map(PathBuf::as_path);
        self.limiter.prepare(name, generation, limits, v2)
    }

    /// A leader of instance `generation` was spawned.
    pub fn spawned(&mut self, pid: u32, generation: u64) {
        self.unreaped.insert(pid, generation);
    }

    /// A leader was reaped: its pid may be reused from now on.
    pub fn reaped(&mut self, pid: u32) {
        self.unreaped.remove(&pid);
    }

    /// Registers a found group; returns its handle.
    pub fn add_found(&mut self, g: FoundGroup) -> u64 {
        let id = self.next_found;
        self.next_found += 1;
        self.found.insert(id, g);
        id
    }

    /// At a leader's death (before it is reaped): whether other processes of its instance live.
    pub fn remains(&mut self, name: &str, generation: u64, leader: u32) -> bool {
        if let Some(dir) = self.instance_dir(generation) {
            // An unreadable cgroup is treated as populated: the core then kills and checks.
            let populated = cgroup::populated(dir).unwrap_or(true);
            if !populated {
                // Nothing can enter an empty cgroup but what the supervisor starts there: the
                // release that follows needs no second look.
                self.empty_at_death.insert(generation);
            }
            return populated;
        }
        // The leader is an unreaped zombie here: its group id is pinned, and so is its start
        // time. One pass over /proc: a live member of its group, or a process started after it
        // (every descendant was) that carries this instance's markers.
        let leader = leader as i32;
        let Ok(ls) = procfs::stat(leader) else {
            return true;
        };
        let me = std::process::id() as i32;
        let entry = format!("{INSTANCE_VAR}={}", self.instance);
        let gen_text = generation.to_string();
        procfs::all_pids().into_iter().any(|pid| {
            if pid == leader || pid == me {
                return false;
            }
            let Ok(s) = procfs::stat(pid) else {
                return false;
            };
            if s.is_zombie() {
                return false;
            }
            if s.pgid == leader {
                return true;
            }
            s.start_ticks >= ls.start_ticks
                && procfs::environ(pid).is_some_and(|env| {
                    has_entry(&env, &entry) && is_instance_of(&env, name, &gen_text)
                })
        })
    }

    /// Sends `sig` (and CONT after TERM) to every process of `group`.
    pub fn signal(&mut self, group: &Group, sig: Sig) -> io::Result<usize> {
        let signo = match sig {
            Sig::Term => libc::SIGTERM,
            Sig::Kill => libc::SIGKILL,
            Sig::Other(n) => n,
        };
        if let Some(dir) = self.dir_of(group) {
            let Some(h) = &self.hierarchy else {
                return Ok(0);
            };
            return if sig == Sig::Kill {
                if let Group::Instance { generation, .. } = group {
                    self.killed.insert(*generation);
                }
                cgroup::kill(&dir).map(|()| 1)
            } else {
                let n = h.signal_members(&dir, signo)?;
                h.signal_members(&dir, libc::SIGCONT)?;
                Ok(n)
            };
        }
        let procs = self.fallback_members(group);
        let mut n = 0;
        for p in &procs {
            if p.signal(signo).unwrap_or(false) {
                n += 1;
            }
            if sig != Sig::Kill {
                let _ = p.signal(libc::SIGCONT);
            }
        }
        // Keep what was pinned: a later KILL reaches it even after its group id is gone.
        if let Group::Instance { generation, .. } = group {
            let kept = self.pinned.entry(*generation).or_default();
            for p in procs {
                if !kept
                    .iter()
                    .any(|k| k.pid == p.pid && k.start_ticks == p.start_ticks)
                {
                    kept.push(p);
                }
            }
        }
        Ok(n)
    }

    /// True when no process of `group` is alive.
    pub fn is_empty(&self, group: &Group) -> bool {
        if let Some(dir) = self.dir_of(group) {
            return !cgroup::populated(&dir).unwrap_or(true);
        }
        let pinned_alive = match group {
            Group::Instance { generation, .. } => self
                .pinned
                .get(generation)
                .is_some_and(|v| v.iter().any(Pinned::alive)),
            Group::Found { id } => match self.found.get(id) {
                Some(FoundGroup::Procs { pinned, .. }) => pinned.iter().any(Pinned::alive),
                _ => false,
            },
        };
        !pinned_alive && self.fallback_members(group).is_empty()
    }

    /// The group is over: an instance's empty cgroup goes back to its task's pool, a found
    /// one is removed; what was pinned for it is let go.
    pub fn release(&mut self, group: &Group) {
        match group {
            Group::Instance {
                name, generation, ..
            } => {
                self.pinned.remove(generation);
                let killed = self.killed.remove(generation);
                let seen_empty = self.empty_at_death.remove(generation);
                self.cpu_base.remove(generation);
                self.limiter.release(*generation);
                if let Some(dir) = self.dirs.remove(generation) {
                    if !seen_empty && cgroup::populated(&dir).unwrap_or(true) {
                        // Processes survived SIGKILL (a stuck process): never reused.
                        tracing::warn!(cgroup = %dir.display(), "a cgroup still holds processes that survived SIGKILL; it is not reused");
                    } else if killed {
                        self.retired.push(dir);
                    } else {
                        // Off the restart path (after the reap): one small read.
                        if let Some(used) = crate::usage::cpu_usec(&dir) {
                            self.pooled_cpu.insert(dir.clone(), used);
                        }
                        self.pool.entry(name.clone()).or_default().push(dir);
                    }
                }
            }
            Group::Found { id } => {
                if let Some(FoundGroup::Cgroup(dir)) = self.found.remove(id) {
                    self.retired.push(dir);
                }
            }
        }
        self.retired.retain(|dir| match cgroup::remove(dir) {
            Ok(()) => false,
            Err(e) => {
                tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup not removed yet");
                true
            }
        });
    }

    /// Task `name` was removed: its empty cgroups go.
    pub fn task_removed(&mut self, name: &str) {
        for dir in self.pool.remove(name).unwrap_or_default() {
            self.pooled_cpu.remove(&dir);
            if let Err(e) = cgroup::remove(&dir) {
                tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup not removed");
            }
        }
    }

    /// At a clean exit: the (empty) instance folder goes too.
    pub fn finish(&self) {
        self.limiter.finish();
        if let Mode::Cgroup { root } = &self.mode {
            if let Err(e) = cgroup::remove(root) {
                tracing::warn!(cgroup = %root.display(), error = %e, "cannot remove the supervisor's cgroup folder");
            }
        }
    }

    fn dir_of(&self, group: &Group) -> Option<PathBuf> {
        match group {
            Group::Instance { generation, .. } => {
                self.instance_dir(*generation).map(Path::to_path_buf)
            }
            Group::Found { id } => match self.found.get(id) {
                Some(FoundGroup::Cgroup(dir)) => Some(dir.clone()),
                _ => None,
            },
        }
    }

    /// Without cgroups: the live processes of `group` now, each pinned.
    fn fallback_members(&self, group: &Group) -> Vec<Pinned> {
        match group {
            Group::Instance {
                name,
                generation,
                leader,
            } => {
                let mut out = Vec::new();
                if let Some(leader) = leader {
                    let pinned = self.pinned.get(generation).map(Vec::as_slice);
                    if self.group_is_provable(*leader, *generation, pinned.unwrap_or_default()) {
                        out = self.members_by_group(*leader as i32);
                    }
                }
                for p in self.marked(name, *generation) {
                    if !out.iter().any(|o| o.pid == p.pid) {
                        out.push(p);
                    }
                }
                out
            }
            Group::Found { id } => match self.found.get(id) {
                Some(FoundGroup::Procs {
                    marker: Some(m), ..
                }) => marked_procs(m),
                _ => Vec::new(),
            },
        }
    }

    /// A group id can be used to find members only while something pins it: its leader is our
    /// unreaped child (alive or a zombie), or a member pinned earlier is alive and still in it.
    fn group_is_provable(&self, leader: u32, generation: u64, pinned: &[Pinned]) -> bool {
        self.unreaped.get(&leader) == Some(&generation)
            || pinned
                .iter()
                .any(|p| p.alive() && procfs::stat(p.pid).is_ok_and(|s| s.pgid == leader as i32))
    }

    /// Live processes in process group `pgid`, pinned.
    fn members_by_group(&self, pgid: i32) -> Vec<Pinned> {
        let mut out = Vec::new();
        for pid in procfs::all_pids() {
            let Ok(s) = procfs::stat(pid) else { continue };
            if s.pgid != pgid || s.is_zombie() {
                continue;
            }
            if let Ok(Some(p)) = Pinned::open(pid, s.start_ticks) {
                out.push(p);
            }
        }
        out
    }

    /// Live processes carrying this instance's markers for `name`, generation `generation`.
    fn marked(&self, name: &str, generation: u64) -> Vec<Pinned> {
        let gen_text = generation.to_string();
        marked_where(&self.instance, |env| is_instance_of(env, name, &gen_text))
    }

    /// Everything of ours still alive once every task is stopped (the final sweep): populated
    /// cgroups in our folder, and processes carrying our marker (the supervisor's own
    /// ancestors and session excluded by the caller's judgement).
    pub fn sweep(&mut self) -> Vec<(u64, Option<String>, Option<u32>, bool)> {
        let mut out = Vec::new();
        if let Mode::Cgroup { root } = &self.mode {
            let dirs: Vec<PathBuf> = cgroup::subtree(root).into_iter().skip(1).collect();
            for dir in dirs {
                if cgroup::populated(&dir).unwrap_or(false) {
                    let task = task_of_dir(&dir);
                    let id = self.add_found(FoundGroup::Cgroup(dir));
                    out.push((id, task, None, true));
                }
            }
        }
        let me = std::process::id() as i32;
        for pid in procfs::pids_with_env(INSTANCE_VAR, &self.instance) {
            if pid == me {
                continue;
            }
            let Ok(s) = procfs::stat(pid) else { continue };
            let Ok(Some(p)) = Pinned::open(pid, s.start_ticks) else {
                continue;
            };
            let task = procfs::environ_var(pid, TASK_VAR);
            let in_cgroup = self.in_own_cgroup(pid);
            let id = self.add_found(FoundGroup::Procs {
                pinned: vec![p],
                marker: None,
            });
            out.push((id, task, Some(pid as u32), in_cgroup));
        }
        out
    }

    /// True when `pid` is in one of this supervisor's task cgroups.
    pub fn in_own_cgroup(&self, pid: i32) -> bool {
        match (&self.mode, &self.hierarchy) {
            (Mode::Cgroup { root }, Some(h)) => h
                .of_pid(pid)
                .is_ok_and(|d| d.starts_with(root) && d != *root),
            _ => false,
        }
    }
}

impl Drop for Tracker {
    /// A start-up that fails after the folder was made leaves no empty folder behind (one that
    /// still holds cgroups is kept: `rmdir` refuses it).
    fn drop(&mut self) {
        if let Mode::Cgroup { root } = &self.mode {
            let _ = std::fs::remove_dir(root);
        }
    }
}

/// True when the environment block `env` holds the `KEY=VALUE` string `entry`.
fn has_entry(env: &[u8], entry: &str) -> bool {
    env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes())
}

/// True when `env` marks a process of task `name`, generation `generation`.
fn is_instance_of(env: &[u8], name: &str, generation: &str) -> bool {
    procfs::env_value(env, TASK_VAR).as_deref() == Some(name)
        && procfs::env_value(env, GENERATION_VAR).as_deref() == Some(generation)
}

/// Live processes, pinned, carrying `instance`'s marker and passing `more` on their environment.
fn marked_where(instance: &str, more: impl Fn(&[u8]) -> bool) -> Vec<Pinned> {
    let me = std::process::id() as i32;
    let entry = format!("{INSTANCE_VAR}={instance}");
    let mut out = Vec::new();
    for pid in procfs::all_pids() {
        if pid == me {
            continue;
        }
        let Some(env) = procfs::environ(pid) else {
            continue;
        };
        if !has_entry(&env, &entry) || !more(&env) {
            continue;
        }
        let Ok(s) = procfs::stat(pid) else { continue };
        if s.is_zombie() {
            continue;
        }
        if let Ok(Some(p)) = Pinned::open(pid, s.start_ticks) {
            out.push(p);
        }
    }
    out
}

/// Live processes matching a predecessor's markers (see [`FoundGroup::Procs`]).
pub fn marked_procs(m: &Marker) -> Vec<Pinned> {
    marked_where(&m.instance, |env| {
        let task_ok = m
            .task
            .as_deref()
            .is_none_or(|t| procfs::env_value(env, TASK_VAR).as_deref() == Some(t));
        let gen_ok = procfs::env_value(env, GENERATION_VAR)
            .and_then(|g| g.parse::<u64>().ok())
            .is_none_or(|g| g <= m.max_generation);
        task_ok && gen_ok
    })
}

/// The task a task cgroup belongs to, from its folder's name: `NAME` or `NAME@N`.
pub fn task_of_dir(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let task = match name.rsplit_once('@') {
        Some((task, n)) => {
            n.parse::<u64>().ok()?;
            task
        }
        None => name,
    };
    (!task.is_empty() && !task.starts_with('.')).then(|| task.to_string())
}

/// A new cgroup for task `name` in `root`: `root/NAME`, or `root/NAME@N` with the first `N`
/// not in use.
fn new_dir(root: &Path, name: &str) -> io::Result<PathBuf> {
    let mut n = 0u64;
    loop {
        let dir = if n == 0 {
            root.join(name)
        } else {
            root.join(format!("{name}@{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot create cgroup {}: {e}", dir.display()),
                ));
            }
        }
    }
}

/// The name of an instance's folder of task cgroups.
pub fn root_name(instance: &str) -> String {
    format!("timeservice@{instance}")
}

/// Finds the v2 hierarchy, this process's cgroup in it, and creates `ROOT` there; tells
/// whether tasks must join their cgroups (a child born into one is killed here).
fn cgroup_root(instance: &str) -> Result<(Hierarchy, PathBuf, bool), String> {
    let h = Hierarchy::find()
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?
        .ok_or_else(|| "no cgroup v2 hierarchy is mounted".to_string())?;
    let own = h
        .of_pid(std::process::id() as i32)
        .map_err(|e| format!("cannot tell this process's cgroup: {e}"))?;
    let root = own.join(root_name(instance));
    cgroup::create(&root).map_err(|e| format!("{e} (is the hierarchy writable?)"))?;
    if !root.join("cgroup.events").exists() {
        return Err(format!("{} has no cgroup.events", root.display()));
    }
    // Probe: can a task cgroup be made and a child be born in it?
    let probe = root.join(".probe");
    cgroup::create(&probe).map_err(|e| e.to_string())?;
    let survives =
        cgroup::open_dir(&probe).and_then(|fd| spawn::born_into_cgroup_survives(fd.as_raw_fd()));
    let _ = cgroup::remove(&probe);
    match survives {
        Ok(true) => Ok((h, root, false)),
        Ok(false) => {
            tracing::warn!(
                cgroup = %own.display(),
                "the kernel kills a child started straight into a cgroup from this supervisor's \
                 cgroup (it once got cgroup.kill); tasks join their cgroup as their first step instead"
            );
            Ok((h, root, true))
        }
        Err(e) => {
            let _ = cgroup::remove(&root);
            Err(format!("cannot start a process in a cgroup: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_cgroup_names_parse_back() {
        assert_eq!(
            task_of_dir(Path::new("/x/timeservice@dump-1/web.api-2@17")),
            Some("web.api-2".into())
        );
        assert_eq!(task_of_dir(Path::new("/x/web")), Some("web".into()));
        assert_eq!(task_of_dir(Path::new("/x/web@x")), None);
        assert_eq!(task_of_dir(Path::new("/x/.probe")), None);
        assert_eq!(root_name("dump-ab"), "timeservice@dump-ab");
    }
}
