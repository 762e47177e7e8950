//! Cleaning up after a crashed predecessor, before anything is spawned.
//!
//! A process is a leftover of ours only if (a) the dump names it and its boot id, pid and start
//! time all still match and it leads its own session, as every task leader does, or it is in the
//! process group of such a one (a group cannot be joined from another session); or (b) it carries
//! this instance's marker in its environment (every task and descendant inherits it, so this also
//! finds processes spawned after the last checkpoint). The supervisor itself, its ancestors and
//! its own session are never leftovers, whatever a dump or an inherited marker says. Everything
//! else is left alone, and the log says why. Signals go through pidfds whose start time was
//! checked after opening.
//!
//! Nothing of this supervisor runs yet, so every process that matches is a leftover, however
//! recently it started: a leftover that ignores SIGTERM may fork during its grace period, and its
//! children are leftovers too. So the scan is repeated until it finds nothing new; what later
//! rounds find has been forked by processes that already had their grace period, and is killed
//! at once.
use crate::kill::{Pinned, stop_pinned};
use crate::spawn::INSTANCE_VAR;
use procio::procfs;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use supervisor_core::Checkpoint;

/// Scans after the first that may still find new leftovers before recovery gives up (and says
/// so). A leftover that forks faster than it can be killed is the only way to need more than two.
const MAX_ROUNDS: usize = 20;

/// How long SIGKILLed leftovers get to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What recovery found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Processes stopped (leaders, group members and marked strays).
    pub stopped: usize,
    /// Dump entries skipped, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Processes that survived SIGKILL (should be empty).
    pub survivors: Vec<i32>,
}

impl Report {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }
}

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
            sid: own.map(|s| s.sid),
            pgid: own.map(|s| s.pgid),
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

/// Stops every leftover of a previous incarnation of `instance`. `my_start` (this supervisor's
/// start time) only tells, in the log, leftovers that were forked after it started.
pub fn recover(
    dump: Option<&Checkpoint>,
    instance: &str,
    boot_id: &str,
    my_start: u64,
    grace: Duration,
) -> Report {
    let mut report = Report::default();
    let protected = Protected::new();
    let groups = verified_groups(dump, boot_id, &protected, &mut report);
    let mut seen: HashSet<(i32, u64)> = HashSet::new();
    for round in 0..=MAX_ROUNDS {
        let targets = scan(&groups, instance, &protected, &mut seen, my_start);
        if targets.is_empty() {
            return report;
        }
        if round == MAX_ROUNDS {
            tracing::error!(
                found = targets.len(),
                rounds = MAX_ROUNDS,
                "recovery: leftovers keep forking faster than they are killed; giving up on the rest"
            );
            report.survivors.extend(targets.iter().map(|p| p.pid));
            return report;
        }
        if round > 0 {
            tracing::warn!(
                found = targets.len(),
                round,
                "recovery: leftovers forked while being stopped; killing their children at once"
            );
        }
        report.stopped += targets.len();
        // The first round is the leftovers' grace period; later rounds find what they forked
        // during it.
        let g = if round == 0 { grace } else { Duration::ZERO };
        report.survivors.extend(stop_pinned(&targets, g, KILL_WAIT));
    }
    report
}

/// Process groups of dump entries that are provably leftovers of ours.
fn verified_groups(
    dump: Option<&Checkpoint>,
    boot_id: &str,
    protected: &Protected,
    report: &mut Report,
) -> HashSet<i32> {
    let mut groups = HashSet::new();
    let skip = |report: &mut Report, why: &'static str| {
        *report.skipped.entry(why).or_default() += 1;
    };
    for rec in dump.map(|d| d.tasks.as_slice()).unwrap_or_default() {
        let rec_boot = rec
            .boot_id
            .as_deref()
            .or(dump.map(|d| d.supervisor.boot_id.as_str()));
        if rec_boot != Some(boot_id) {
            tracing::info!(task = %rec.name, pid = rec.pid, "dump entry left alone: recorded in another boot");
            skip(report, "other boot");
            continue;
        }
        let Ok(pid) = i32::try_from(rec.pid) else {
            tracing::warn!(task = %rec.name, pid = rec.pid, "dump entry left alone: not a valid pid");
            skip(report, "invalid pid");
            continue;
        };
        let Some(want) = rec.start_time else {
            tracing::warn!(task = %rec.name, pid, "dump entry left alone: no start time recorded, cannot prove it is ours");
            skip(report, "no start time");
            continue;
        };
        match procfs::stat(pid) {
            Err(_) => {
                tracing::info!(task = %rec.name, pid, "dump entry: process already gone");
                skip(report, "gone");
            }
            Ok(s) if s.start_ticks != want => {
                tracing::warn!(task = %rec.name, pid, recorded_start = want, actual_start = s.start_ticks,
                    "dump entry left alone: pid now belongs to another process (pid reused)");
                skip(report, "pid reused");
            }
            Ok(s) if s.is_zombie() => skip(report, "gone"),
            Ok(s) if protected.covers(&s) => {
                tracing::warn!(task = %rec.name, pid, "dump entry left alone: it is this supervisor, one of its ancestors or in its session");
                skip(report, "the supervisor's own");
            }
            Ok(s) if s.sid != pid || s.pgid != pid => {
                tracing::warn!(task = %rec.name, pid, pgid = s.pgid, sid = s.sid,
                    "dump entry left alone: it does not lead its own session, as every task leader does");
                skip(report, "not a task leader");
            }
            Ok(s) => {
                groups.insert(s.pgid);
            }
        }
    }
    groups
}

/// Leftovers not handled yet: members of `groups` and processes carrying `instance`'s marker.
fn scan(
    groups: &HashSet<i32>,
    instance: &str,
    protected: &Protected,
    seen: &mut HashSet<(i32, u64)>,
    my_start: u64,
) -> Vec<Pinned> {
    let mut targets = Vec::new();
    for pid in procfs::all_pids() {
        let Ok(s) = procfs::stat(pid) else { continue };
        if s.is_zombie() || seen.contains(&(pid, s.start_ticks)) {
            continue;
        }
        let in_group = s.pgid > 1 && groups.contains(&s.pgid);
        let marked = procfs::environ_var(pid, INSTANCE_VAR).as_deref() == Some(instance);
        if !(in_group || marked) {
            continue;
        }
        if protected.covers(&s) {
            if marked {
                tracing::warn!(
                    pid,
                    "a process carrying this instance's marker is the supervisor, one of its ancestors or in its session: left alone"
                );
            }
            seen.insert((pid, s.start_ticks));
            continue;
        }
        match Pinned::open(pid, s.start_ticks) {
            Ok(Some(p)) => {
                tracing::info!(
                    pid,
                    pgid = s.pgid,
                    via = if in_group { "dump" } else { "marker" },
                    forked_after_start = s.start_ticks > my_start,
                    "stopping leftover of the previous supervisor"
                );
                seen.insert((pid, s.start_ticks));
                targets.push(p);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(pid, error = %e, "cannot pin leftover process; left alone"),
        }
    }
    targets
}
