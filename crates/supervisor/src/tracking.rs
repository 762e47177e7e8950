//! Which processes belong to a group the core names, and acting on all of them.
//!
//! Two ways to know, chosen at start:
//! - **cgroup** (where a writable cgroup v2 hierarchy exists): every task instance is started
//!   inside its own cgroup `ROOT/NAME@GENERATION`, where `ROOT` is
//!   `<the supervisor's cgroup>/timeservice@<instance>`. Membership is the kernel's; no process
//!   can leave by itself (`setsid`, a double fork, `env -i`, a rewritten process title change
//!   nothing). TERM goes to each member through a pinned pidfd; KILL is `cgroup.kill`; "gone"
//!   is `cgroup.events` saying `populated 0`.
//! - **process group** (the fallback): a task's leader leads its own group and session. While
//!   the group is provably the same (its leader is our unreaped child, or a member pinned earlier
//!   still has its id) its members are found by group id and pinned by pidfd; processes that
//!   left the group are found by the instance's environment markers. A bare group id is never
//!   signalled once nothing pins it, so a stranger that reuses the pid is never hit.
//!
//! Groups recovery or the final sweep found are kept by handle ([`Found`]): a cgroup folder,
//! or (without cgroups) pinned processes and the markers they carry.
use crate::spawn::{GENERATION_VAR, INSTANCE_VAR, TASK_VAR};
use procio::cgroup::{self, Hierarchy};
use procio::{Pinned, procfs};
use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
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
}

impl Tracker {
    /// Cgroup tracking when `want_cgroups` and the hierarchy allows it (`ROOT` is created);
    /// the fallback otherwise, with the reason.
    pub fn new(instance: &str, want_cgroups: bool) -> Tracker {
        let (mode, hierarchy) = if want_cgroups {
            match cgroup_root(instance) {
                Ok((h, root)) => (Mode::Cgroup { root }, Some(h)),
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
        }
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    pub fn hierarchy(&self) -> Option<&Hierarchy> {
        self.hierarchy.as_ref()
    }

    /// The cgroup folder of instance `generation` of task `name`.
    pub fn instance_dir(&self, name: &str, generation: u64) -> Option<PathBuf> {
        match &self.mode {
            Mode::Cgroup { root } => Some(root.join(format!("{name}@{generation}"))),
            Mode::ProcessGroup { .. } => None,
        }
    }

    /// Before a spawn: the instance's cgroup, created, as a descriptor to start the process in.
    pub fn prepare(&self, name: &str, generation: u64) -> io::Result<Option<OwnedFd>> {
        let Some(dir) = self.instance_dir(name, generation) else {
            return Ok(None);
        };
        cgroup::create(&dir)?;
        cgroup::open_dir(&dir).map(Some)
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
    pub fn remains(&self, name: &str, generation: u64, leader: u32) -> bool {
        if let Some(dir) = self.instance_dir(name, generation) {
            // An unreadable cgroup is treated as populated: the core then kills and checks.
            return cgroup::populated(&dir).unwrap_or(true);
        }
        // The leader is an unreaped zombie here: its group id is pinned.
        self.members_by_group(leader as i32, true)
            .iter()
            .any(|p| p.pid != leader as i32)
            || !self.marked(name, generation).is_empty()
    }

    /// Sends `sig` (and CONT after TERM) to every process of `group`.
    pub fn signal(&mut self, group: &Group, sig: Sig) -> io::Result<usize> {
        let signo = match sig {
            Sig::Term => libc::SIGTERM,
            Sig::Kill => libc::SIGKILL,
        };
        if let Some(dir) = self.dir_of(group) {
            let Some(h) = &self.hierarchy else {
                return Ok(0);
            };
            return if sig == Sig::Kill {
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
            if sig == Sig::Term {
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

    /// The group is over: its cgroup is removed, what was pinned for it is let go.
    pub fn release(&mut self, group: &Group) {
        if let Some(dir) = self.dir_of(group) {
            if let Err(e) = cgroup::remove(&dir) {
                tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup not removed");
            }
        }
        match group {
            Group::Instance { generation, .. } => {
                self.pinned.remove(generation);
            }
            Group::Found { id } => {
                self.found.remove(id);
            }
        }
    }

    /// At a clean exit: the (empty) instance folder goes too.
    pub fn finish(&self) {
        if let Mode::Cgroup { root } = &self.mode {
            if let Err(e) = cgroup::remove(root) {
                tracing::warn!(cgroup = %root.display(), error = %e, "cannot remove the supervisor's cgroup folder");
            }
        }
    }

    fn dir_of(&self, group: &Group) -> Option<PathBuf> {
        match group {
            Group::Instance {
                name, generation, ..
            } => self.instance_dir(name, *generation),
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
                        out = self.members_by_group(*leader as i32, false);
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

    /// Live processes in process group `pgid`, pinned; `quick`: stop at the first one that is
    /// not the leader (enough to answer "is anything left").
    fn members_by_group(&self, pgid: i32, quick: bool) -> Vec<Pinned> {
        let mut out = Vec::new();
        for pid in procfs::all_pids() {
            let Ok(s) = procfs::stat(pid) else { continue };
            if s.pgid != pgid || s.is_zombie() {
                continue;
            }
            if let Ok(Some(p)) = Pinned::open(pid, s.start_ticks) {
                out.push(p);
                if quick && pid != pgid {
                    break;
                }
            }
        }
        out
    }

    /// Live processes carrying this instance's markers for `name`, generation `generation`.
    fn marked(&self, name: &str, generation: u64) -> Vec<Pinned> {
        let gen_text = generation.to_string();
        marked_where(&self.instance, |env| {
            procfs::env_value(env, TASK_VAR).as_deref() == Some(name)
                && procfs::env_value(env, GENERATION_VAR).as_deref() == Some(gen_text.as_str())
        })
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
                    let task = task_of_dir(&dir).map(|(t, _)| t);
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
        if !env.split(|b| *b == 0).any(|kv| kv == entry.as_bytes()) || !more(&env) {
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

/// `(task, generation)` from a task cgroup's folder name `NAME@GENERATION`.
pub fn task_of_dir(dir: &Path) -> Option<(String, u64)> {
    let name = dir.file_name()?.to_str()?;
    let (task, generation) = name.rsplit_once('@')?;
    Some((task.to_string(), generation.parse().ok()?))
}

/// The name of an instance's folder of task cgroups.
pub fn root_name(instance: &str) -> String {
    format!("timeservice@{instance}")
}

/// Finds the v2 hierarchy, this process's cgroup in it, and creates `ROOT` there.
fn cgroup_root(instance: &str) -> Result<(Hierarchy, PathBuf), String> {
    let h = Hierarchy::find()
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?
        .ok_or_else(|| "no cgroup v2 hierarchy is mounted".to_string())?;
    let own = h
        .of_pid(std::process::id() as i32)
        .map_err(|e| format!("cannot tell this process's cgroup: {e}"))?;
    let root = own.join(root_name(instance));
    cgroup::create(&root).map_err(|e| format!("{e} (is the hierarchy writable?)"))?;
    // Probe: can a task cgroup be made and entered here?
    let probe = root.join(".probe");
    cgroup::create(&probe).map_err(|e| e.to_string())?;
    let _ = cgroup::remove(&probe);
    if !root.join("cgroup.events").exists() {
        return Err(format!("{} has no cgroup.events", root.display()));
    }
    Ok((h, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_cgroup_names_parse_back() {
        assert_eq!(
            task_of_dir(Path::new("/x/timeservice@dump-1/web.api-2@17")),
            Some(("web.api-2".into(), 17))
        );
        assert_eq!(task_of_dir(Path::new("/x/web")), None);
        assert_eq!(task_of_dir(Path::new("/x/web@x")), None);
        assert_eq!(root_name("dump-ab"), "timeservice@dump-ab");
    }
}
