//! What a crashed predecessor may have left running, as facts for the core to judge
//! (`supervisor_core::core::recovery` decides; this module only looks).
//!
//! Looked at, before anything of this supervisor is spawned:
//! - with cgroups: the folders `timeservice@<instance>` anywhere in the v2 hierarchy, for this
//!   instance and (when the dump was copied or moved here) the dump's; every populated task
//!   cgroup in them is reported, empty ones are removed;
//! - every dump entry: whether its process still matches the recorded boot, pid and start time,
//!   leads its own session, carries the dump instance's marker, is ours to protect, or is the
//!   child of a live supervisor;
//! - every process carrying this instance's marker, by task.
//!
//! And whether the supervisor that wrote the dump is still alive. The supervisor itself, its
//! ancestors and its session are marked protected: never leftovers, whatever a dump says.
use crate::checkpoint_io;
use crate::spawn::{GENERATION_VAR, INSTANCE_VAR, TASK_VAR};
use crate::tracking::{self, FoundGroup, Marker, Mode, Tracker};
use procio::cgroup;
use procio::{Pinned, procfs};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use supervisor_core::{Checkpoint, EntryFacts, Evidence, Found, ProcessFacts, TaskRecord, Writer};

/// The supervisor itself, its ancestors and its session: never signalled by recovery.
struct Protected {
    me: i32,
    ancestors: HashSet<i32>,
    sid: Option<i32>,
    pgid: Option<i32>,
}

impl Protected {
    fn new() -> Protected {
        let me = std::process::id() as i32;
        let own = procfs::stat(me).ok();
        Protected {
            me,
            ancestors: procfs::ancestors(me).into_iter().collect(),
            sid: own.as_ref().map(|s| s.sid),
            pgid: own.as_ref().map(|s| s.pgid),
        }
    }

    fn covers(&self, s: &procfs::Stat) -> bool {
        s.pid == self.me
            || s.pid <= 1
            || self.ancestors.contains(&s.pid)
            || Some(s.sid) == self.sid
            || Some(s.pgid) == self.pgid
    }
}

/// What recovery needs to know about this supervisor.
pub struct Context<'a> {
    pub dump: Option<&'a Checkpoint>,
    pub instance: &'a str,
    pub boot_id: &'a str,
    /// This supervisor's dump file.
    pub dump_path: &'a Path,
}

/// Everything found, and the highest generation the predecessor used.
pub fn gather(ctx: &Context<'_>, tracker: &mut Tracker) -> (Vec<Found>, u64) {
    let protected = Protected::new();
    let writer = writer(ctx);
    let mut found = Vec::new();
    let mut max_generation = 0;
    // Cgroups first: dump entries and marked processes inside them are covered by them.
    let mut roots: Vec<PathBuf> = Vec::new();
    if let (Mode::Cgroup { .. }, Some(h)) = (tracker.mode().clone(), tracker.hierarchy().cloned()) {
        let mut instances = vec![ctx.instance.to_string()];
        if let Some(d) = ctx.dump {
            if d.supervisor.instance != ctx.instance {
                instances.push(d.supervisor.instance.clone());
            }
        }
        for inst in &instances {
            let name = tracking::root_name(inst);
            for root in cgroup::find_named(h.mount(), 12, 200_000, |n| n == name) {
                let ours = inst == ctx.instance;
                for dir in cgroup::subtree(&root).into_iter().skip(1) {
                    let Some(task) = tracking::task_of_dir(&dir) else {
                        continue;
                    };
                    if !cgroup::populated(&dir).unwrap_or(true) {
                        let _ = cgroup::remove(&dir);
                        continue;
                    }
                    let evidence = if ours {
                        Evidence::OwnCgroup
                    } else {
                        Evidence::OtherCgroup { writer }
                    };
                    let id = tracker.add_found(FoundGroup::Cgroup(dir));
                    found.push(Found {
                        id,
                        task: Some(task),
                        generation: None,
                        pid: None,
                        evidence,
                    });
                }
                roots.push(root);
            }
        }
    }
    let hierarchy = tracker.hierarchy().cloned();
    let in_roots = |pid: i32| -> bool {
        match &hierarchy {
            Some(h) => h
                .of_pid(pid)
                .is_ok_and(|d| roots.iter().any(|r| d.starts_with(r) && d != *r)),
            None => false,
        }
    };
    if let Some(d) = ctx.dump {
        for rec in &d.tasks {
            max_generation = max_generation.max(rec.generation);
            let (facts, process, pinned) = entry_facts(d, rec, ctx.boot_id, &protected, &in_roots);
            let id = tracker.add_found(FoundGroup::Procs {
                pinned,
                marker: None,
            });
            found.push(Found {
                id,
                task: Some(rec.name.clone()),
                generation: Some(rec.generation),
                pid: Some(rec.pid),
                evidence: Evidence::DumpEntry {
                    entry: facts,
                    process,
                    writer,
                },
            });
        }
    }
    // Marked processes, by task. One group per task: without cgroups it is "everything that
    // carries the markers", so what its members fork while being stopped is stopped too.
    let mut by_task: BTreeMap<Option<String>, (Vec<Pinned>, ProcessFacts)> = BTreeMap::new();
    for pid in procfs::pids_with_env(INSTANCE_VAR, ctx.instance) {
        let Ok(s) = procfs::stat(pid) else { continue };
        let Ok(Some(p)) = Pinned::open(pid, s.start_ticks) else {
            continue;
        };
        let env = procfs::environ(pid).unwrap_or_default();
        if let Some(g) = procfs::env_value(&env, GENERATION_VAR).and_then(|g| g.parse().ok()) {
            max_generation = max_generation.max(g);
        }
        let task = procfs::env_value(&env, TASK_VAR);
        let facts = ProcessFacts {
            protected: protected.covers(&s),
            parent_is_live_supervisor: parent_is_supervisor(&s),
            in_found_cgroup: in_roots(pid),
        };
        let entry = by_task.entry(task).or_insert_with(|| (Vec::new(), facts));
        // The group is only as trustworthy as its least trustworthy member.
        entry.1.protected |= facts.protected;
        entry.1.parent_is_live_supervisor |= facts.parent_is_live_supervisor;
        entry.1.in_found_cgroup &= facts.in_found_cgroup;
        entry.0.push(p);
    }
    for (task, (pinned, process)) in by_task {
        let pid = pinned.first().map(|p| p.pid as u32);
        let marker = (!matches!(tracker.mode(), Mode::Cgroup { .. })).then(|| Marker {
            instance: ctx.instance.to_string(),
            task: task.clone(),
            max_generation,
        });
        let id = tracker.add_found(FoundGroup::Procs { pinned, marker });
        found.push(Found {
            id,
            task,
            generation: None,
            pid,
            evidence: Evidence::Marked { process },
        });
    }
    (found, max_generation)
}

/// What the shell checked of one dump entry, and its process (leader and group members,
/// pinned while the leader is alive and so pins the group id) when it matches.
fn entry_facts(
    d: &Checkpoint,
    rec: &TaskRecord,
    boot_id: &str,
    protected: &Protected,
    in_roots: &dyn Fn(i32) -> bool,
) -> (EntryFacts, ProcessFacts, Vec<Pinned>) {
    let mut facts = EntryFacts::default();
    let mut process = ProcessFacts::default();
    let rec_boot = rec.boot_id.as_deref().unwrap_or(&d.supervisor.boot_id);
    facts.recorded_in_this_boot = rec_boot == boot_id;
    let Ok(pid) = i32::try_from(rec.pid) else {
        return (facts, process, Vec::new());
    };
    let Ok(s) = procfs::stat(pid) else {
        return (facts, process, Vec::new());
    };
    facts.alive = !s.is_zombie();
    facts.has_start_time = rec.start_time.is_some();
    facts.start_matches = rec.start_time == Some(s.start_ticks);
    facts.leads_session = s.sid == pid && s.pgid == pid;
    facts.marked =
        procfs::environ_var(pid, INSTANCE_VAR).as_deref() == Some(d.supervisor.instance.as_str());
    process.protected = protected.covers(&s);
    process.parent_is_live_supervisor = parent_is_supervisor(&s);
    process.in_found_cgroup = in_roots(pid);
    let ok =
        facts.recorded_in_this_boot && facts.alive && facts.start_matches && facts.leads_session;
    if !ok {
        return (facts, process, Vec::new());
    }
    let Ok(Some(leader)) = Pinned::open(pid, s.start_ticks) else {
        facts.alive = false;
        return (facts, process, Vec::new());
    };
    let mut pinned = vec![leader];
    for other in procfs::all_pids() {
        if other == pid {
            continue;
        }
        if let Ok(o) = procfs::stat(other) {
            if o.pgid == pid && !o.is_zombie() && !protected.covers(&o) {
                if let Ok(Some(p)) = Pinned::open(other, o.start_ticks) {
                    pinned.push(p);
                }
            }
        }
    }
    (facts, process, pinned)
}

/// Whether the dump's writer still runs: its pid and start time match a live process of this
/// boot, or (when the dump names its file) that file's lock is held.
fn writer(ctx: &Context<'_>) -> Writer {
    let Some(d) = ctx.dump else {
        return Writer {
            pid: 0,
            alive: false,
        };
    };
    let w = &d.supervisor;
    let me = std::process::id();
    let by_pid = w.pid != me
        && w.boot_id == ctx.boot_id
        && i32::try_from(w.pid)
            .ok()
            .and_then(|p| procfs::stat(p).ok())
            .is_some_and(|s| s.start_ticks == w.start_time && !s.is_zombie());
    let by_lock = w
        .dumpfile
        .as_deref()
        .map(Path::new)
        .filter(|p| checkpoint_io::absolute(p) != checkpoint_io::absolute(ctx.dump_path))
        .is_some_and(checkpoint_io::lock_is_held);
    Writer {
        pid: w.pid,
        alive: by_pid || by_lock,
    }
}

/// True when `s`'s parent is a running supervisor (not this one: it has no children yet).
fn parent_is_supervisor(s: &procfs::Stat) -> bool {
    if s.ppid <= 1 || s.ppid == std::process::id() as i32 {
        return false;
    }
    let own = procfs::exe(std::process::id() as i32);
    let parent = procfs::exe(s.ppid);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", s.ppid)).unwrap_or_default();
    (parent.is_some() && parent == own) || comm.trim() == "supervisor"
}

/// The final sweep's findings (every task is stopped by now): populated cgroups of ours and
/// processes carrying our marker, as facts for the core.
pub fn sweep(tracker: &mut Tracker) -> Vec<Found> {
    let protected = Protected::new();
    tracker
        .sweep()
        .into_iter()
        .map(|(id, task, pid, in_cgroup)| {
            let evidence = match pid {
                None => Evidence::OwnCgroup,
                Some(pid) => {
                    let s = procfs::stat(pid as i32).ok();
                    Evidence::Marked {
                        process: ProcessFacts {
                            protected: s.as_ref().is_none_or(|s| protected.covers(s)),
                            parent_is_live_supervisor: s.as_ref().is_some_and(parent_is_supervisor),
                            in_found_cgroup: in_cgroup,
                        },
                    }
                }
            };
            Found {
                id,
                task,
                generation: None,
                pid,
                evidence,
            }
        })
        .collect()
}
