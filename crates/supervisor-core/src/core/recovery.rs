//! Recovery: of what the shell found at start (populated cgroups, dump entries, marked
//! processes), which is provably a leftover of ours, and stopping it without holding up what
//! it does not concern.
//!
//! Provably ours means, for each kind of evidence:
//! - a populated cgroup in this instance's own folder: yes (only a supervisor of this
//!   instance makes those, and this one holds the instance's lock);
//! - a populated cgroup of the instance a copied or moved dump names: only once the supervisor
//!   that wrote the dump is gone;
//! - a dump entry: its process matches the recorded pid, start time and boot, leads its own
//!   session, carries the marker of the dump's instance, is not ours to protect (this
//!   supervisor, its ancestors, its session), is not the child of a live supervisor, and the
//!   dump's writer is gone;
//! - a marked process: it carries this instance's marker, is not protected, and is not the
//!   child of a live supervisor.
//!
//! Everything else is left alone, and one event per reason says what and why.
use super::io::{Event, Evidence, Found, Group, LeftAlone};
use super::stops::{JobKind, NewJob};
use super::{Core, Recovery};
use std::collections::BTreeMap;
use std::time::Instant;

/// `Ok(how it is proven ours)`, or why it is left alone.
pub(super) fn proves_ours(f: &Found) -> Result<&'static str, LeftAlone> {
    match &f.evidence {
        Evidence::OwnCgroup => Ok("cgroup"),
        Evidence::OtherCgroup { writer } => {
            if writer.alive {
                Err(LeftAlone::WriterAlive)
            } else {
                Ok("cgroup of the dump's instance")
            }
        }
        Evidence::DumpEntry {
            entry,
            process,
            writer,
        } => {
            if !entry.recorded_in_this_boot {
                Err(LeftAlone::OtherBoot)
            } else if !entry.alive {
                Err(LeftAlone::Gone)
            } else if !entry.has_start_time {
                Err(LeftAlone::NoStartTime)
            } else if !entry.start_matches {
                Err(LeftAlone::PidReused)
            } else if process.protected {
                Err(LeftAlone::Protected)
            } else if !entry.leads_session {
                Err(LeftAlone::NotALeader)
            } else if !entry.marked {
                Err(LeftAlone::Unmarked)
            } else if writer.alive {
                Err(LeftAlone::WriterAlive)
            } else if process.parent_is_live_supervisor {
                Err(LeftAlone::ChildOfLiveSupervisor)
            } else {
                Ok("dump")
            }
        }
        Evidence::Marked { process } => {
            if process.protected {
                Err(LeftAlone::Protected)
            } else if process.parent_is_live_supervisor {
                Err(LeftAlone::ChildOfLiveSupervisor)
            } else {
                Ok("marker")
            }
        }
    }
}

/// True when stopping `f` on its own would only repeat what stopping a found cgroup does.
fn covered(f: &Found) -> bool {
    match &f.evidence {
        Evidence::DumpEntry { process, .. } | Evidence::Marked { process } => {
            process.in_found_cgroup
        }
        _ => false,
    }
}

impl Core {
    /// Takes what the shell found at start, before any task is added. What is provably ours is
    /// stopped (TERM, grace, KILL) in parallel; a task added later waits only for the leftovers
    /// of its own name. `max_generation`: the highest generation the predecessor used (from the
    /// dump and the cgroups found), so that new instances never reuse one.
    pub fn recover(&mut self, now: Instant, found: Vec<Found>, max_generation: u64) {
        self.next_generation = self.next_generation.max(max_generation);
        // Per reason: the tasks, the pids, and the dump's writer (when it still runs).
        type Alone = (Vec<String>, Vec<u32>, Option<u32>);
        let mut left_alone: BTreeMap<LeftAlone, Alone> = BTreeMap::new();
        let mut stopping = 0;
        for f in found {
            match proves_ours(&f) {
                Ok(_) if covered(&f) => {}
                Ok(via) => {
                    let blocks_task = f.task.is_some();
                    self.emit(Event::LeftoverStopping {
                        name: f.task.clone(),
                        generation: f.generation,
                        pid: f.pid,
                        via,
                        blocks_task,
                    });
                    stopping += 1;
                    self.start_job(
                        now,
                        NewJob {
                            group: Group::Found { id: f.id },
                            kind: JobKind::Leftover,
                            owner: None,
                            name: f.task,
                            grace: Some(self.policy.stop_timeout),
                            leader_alive: false,
                        },
                    );
                }
                Err(reason) => {
                    let entry = left_alone.entry(reason).or_default();
                    if let Some(t) = f.task {
                        if !entry.0.contains(&t) {
                            entry.0.push(t);
                        }
                    }
                    entry.1.extend(f.pid);
                    if let Evidence::OtherCgroup { writer } | Evidence::DumpEntry { writer, .. } =
                        f.evidence
                    {
                        if reason == LeftAlone::WriterAlive {
                            entry.2 = Some(writer.pid);
                        }
                    }
                }
            }
        }
        for (reason, (tasks, pids, writer)) in left_alone {
            self.emit(Event::LeftAlone {
                reason,
                tasks,
                pids,
                writer,
            });
        }
        if stopping > 0 {
            self.recovery = Some(Recovery {
                started: now,
                stopped: 0,
                failed: 0,
            });
        } else {
            self.emit(Event::RecoveryFinished {
                stopped: 0,
                failed: 0,
                took: std::time::Duration::ZERO,
            });
        }
    }

    /// True while leftovers recovery found are being stopped.
    pub fn recovering(&self) -> bool {
        self.recovery.is_some()
    }
}
