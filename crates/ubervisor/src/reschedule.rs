//! Yo-yo moves under a budget kept in etcd, decided without IO: view, time and config in,
//! decisions out.
//!
//! An instance its node reports in yo-yo mode (`TaskStatus::yoyo`), or refuses (`refused`:
//! invalid on that machine), for longer than the delay is moved: its assignment is deleted and a new one created on a node that is neither on the
//! job's avoid list nor one this instance already yo-yoed on, in one fenced transaction that
//! also appends the move to `resched/<job>`. The delay is `--reschedule-delay` doubled for
//! every move of the job the record remembers. The record remembers the moves of the last
//! window (`--reschedule-budget=N/WINDOW`); older ones are pruned. With N moves remembered,
//! the next one is not made: the job is marked failed (in the same record) and paged, and its
//! instances stay where they are, in the supervisors' own yo-yo backoff. So is a job whose
//! yo-yo instance has no node left to go to.
//!
//! A failed job is never a dead end: once all its instances run, none in yo-yo mode, for
//! `--recover-after`, the failure is cleared (and paged as `job_recovered`); a changed task
//! (a newer job generation) clears it at once.
//!
//! Because the moves live in etcd, a new leader goes on counting where the old one stopped.
//! What stays in memory ([`Clocks`]: since when an instance is yo-yo, since when a failed job
//! is healthy) only starts afresh with a new leader, which delays a move or a recovery, never
//! hastens it.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster::{Assignment, Failure, Job, Keys, Move, Reschedule, VERSION, encode, instance_name};
use etcd_client::{Compare, CompareOp, TxnOp};
use placement::{Input, Instance, Placement, Resources};

use crate::view::View;

/// The reschedule flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `--reschedule-delay`: yo-yo this long before the first move.
    pub delay: Duration,
    /// `--reschedule-budget`: at most `budget` moves per job within `window`.
    pub budget: u32,
    pub window: Duration,
    /// `--recover-after`: a failed job healthy this long is failed no more.
    pub recover_after: Duration,
}

/// What the leader remembers between rounds (Unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clocks {
    /// (node, instance, allocation) -> first seen in yo-yo mode there.
    yoyo: BTreeMap<(String, String, i64), u64>,
    /// failed job -> first seen with every instance healthy.
    healthy: BTreeMap<String, u64>,
}

/// One change to a job's reschedule record (and, for a move, to its assignments).
/// `rev` is the record's mod revision in the view (0: absent), compared when written.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Delete `assign/<from>/<instance>` (created at `alloc`), create it on `to`.
    Move {
        from: String,
        alloc: i64,
        to: Assignment,
        to_node: String,
        record: Reschedule,
        rev: i64,
    },
    /// The job is failed: page `reason`.
    Fail { record: Reschedule, rev: i64 },
    /// The failure is cleared; `why` for the page.
    Recover {
        record: Reschedule,
        rev: i64,
        why: String,
    },
    /// Rewrite the record without moves older than the window.
    Prune { record: Reschedule, rev: i64 },
    /// The job is gone: delete its record.
    Forget { job: String, rev: i64 },
}

/// The nodes `instance` of `job` must not be placed on: the job's avoid list and every node
/// it yo-yoed on within the window.
pub fn avoid(view: &View, job: &Job, instance: &str) -> Vec<String> {
    let mut out = job.avoid.clone();
    if let Some((r, _)) = view.resched.get(&job.name) {
        for m in r.moves.iter().filter(|m| m.instance == instance) {
            if !out.contains(&m.from) {
                out.push(m.from.clone());
            }
        }
    }
    out
}

/// `--reschedule-delay` doubled `moves` times (saturating).
pub fn delay_after(cfg: &Config, moves: usize) -> Duration {
    let factor = 1u32.checked_shl(moves.min(31) as u32).unwrap_or(u32::MAX);
    cfg.delay.saturating_mul(factor)
}

/// What to change in the reschedule records, at most one decision per job.
pub fn plan(view: &View, now_ms: u64, cfg: &Config, clocks: &mut Clocks) -> Vec<Decision> {
    let mut out = Vec::new();
    let window = cfg.window.as_millis() as u64;
    let mut seen_yoyo = BTreeSet::new();
    for (name, (_, rev)) in &view.resched {
        if !view.jobs.contains_key(name) {
            out.push(Decision::Forget {
                job: name.clone(),
                rev: *rev,
            });
        }
    }
    for (j, _) in view.jobs.values() {
        let (stored, rev) = view
            .resched
            .get(&j.name)
            .map_or((None, 0), |(r, rev)| (Some(r), *rev));
        let mut rec = stored.cloned().unwrap_or_else(|| Reschedule {
            v: VERSION,
            job: j.name.clone(),
            ..Reschedule::default()
        });
        rec.moves
            .retain(|m| now_ms.saturating_sub(m.at_ms) < window);
        let pruned = stored.is_some_and(|s| s.moves.len() != rec.moves.len());
        let placed: Vec<_> = view.placements_of(&j.name).collect();
        let status = |node: &str, inst: &str| {
            view.statuses
                .get(&(node.to_string(), inst.to_string()))
                .filter(|_| view.nodes.contains_key(node))
        };
        if let Some(f) = rec.failed.clone() {
            let why = if f.generation < j.generation {
                Some(format!(
                    "the task changed (generation {} after {})",
                    j.generation, f.generation
                ))
            } else {
                let healthy = (1..=j.count).all(|i| {
                    let inst = instance_name(&j.name, i);
                    placed.iter().any(|p| {
                        p.assignment.instance == inst
                            && status(&p.node, &inst)
                                .is_some_and(|s| s.state == "running" && !s.yoyo)
                    })
                });
                if healthy {
                    let since = *clocks.healthy.entry(j.name.clone()).or_insert(now_ms);
                    let for_ms = now_ms.saturating_sub(since);
                    (for_ms >= cfg.recover_after.as_millis() as u64).then(|| {
                        format!(
                            "every instance has run, none in yo-yo mode, for {}",
                            secs(Duration::from_millis(for_ms))
                        )
                    })
                } else {
                    clocks.healthy.remove(&j.name);
                    None
                }
            };
            if let Some(why) = why {
                clocks.healthy.remove(&j.name);
                rec.failed = None;
                out.push(Decision::Recover {
                    record: rec,
                    rev,
                    why,
                });
            } else if pruned {
                out.push(Decision::Prune { record: rec, rev });
            }
            continue;
        }
        clocks.healthy.remove(&j.name);
        let mut decided = None;
        for p in &placed {
            let inst = &p.assignment.instance;
            // A node that refuses the instance (its program missing there) is as good as
            // one where it keeps dying: moved the same way, under the same budget.
            if !status(&p.node, inst).is_some_and(|s| s.yoyo || s.state == "refused") {
                continue;
            }
            let key = (p.node.clone(), inst.clone(), p.create_revision);
            let since = *clocks.yoyo.entry(key.clone()).or_insert(now_ms);
            seen_yoyo.insert(key);
            if decided.is_some() {
                continue;
            }
            let wait = delay_after(cfg, rec.moves.len());
            if now_ms.saturating_sub(since) < wait.as_millis() as u64 {
                continue;
            }
            let fail = |rec: &mut Reschedule, reason: String| {
                rec.failed = Some(Failure {
                    reason,
                    at_ms: now_ms,
                    generation: j.generation,
                });
            };
            if rec.moves.len() >= cfg.budget as usize {
                let when: Vec<String> = rec
                    .moves
                    .iter()
                    .map(|m| format!("{} {}→{}", m.instance, m.from, m.to))
                    .collect();
                let reason = format!(
                    "{inst} is in yo-yo mode on {} and the reschedule budget is spent: {} \
                     moves within {} (--reschedule-budget={}/{}): {}",
                    p.node,
                    rec.moves.len(),
                    secs(cfg.window),
                    cfg.budget,
                    secs(cfg.window),
                    when.join(", ")
                );
                fail(&mut rec, reason);
                decided = Some(Decision::Fail {
                    record: rec.clone(),
                    rev,
                });
                continue;
            }
            let mut avoided = avoid(view, j, inst);
            avoided.push(p.node.clone());
            match target(view, j, inst, &p.node, &avoided) {
                Ok(to_node) => {
                    rec.moves.push(Move {
                        instance: inst.clone(),
                        from: p.node.clone(),
                        to: to_node.clone(),
                        at_ms: now_ms,
                    });
                    decided = Some(Decision::Move {
                        from: p.node.clone(),
                        alloc: p.create_revision,
                        to: crate::reconcile::assignment(j, inst),
                        to_node,
                        record: rec.clone(),
                        rev,
                    });
                }
                Err(why) => {
                    avoided.sort();
                    avoided.dedup();
                    fail(
                        &mut rec,
                        format!(
                            "{inst} is in yo-yo mode on {} and no other node can take it ({why}; \
                             avoided: {})",
                            p.node,
                            avoided.join(", ")
                        ),
                    );
                    decided = Some(Decision::Fail {
                        record: rec.clone(),
                        rev,
                    });
                }
            }
        }
        match decided {
            Some(d) => out.push(d),
            None if pruned => out.push(Decision::Prune { record: rec, rev }),
            None => {}
        }
    }
    clocks.yoyo.retain(|k, _| seen_yoyo.contains(k));
    clocks.healthy.retain(|j, _| view.jobs.contains_key(j));
    out
}

/// Where `instance` (now on `from`) would go, placed as the scheduler places anything, with
/// every other assignment counted.
fn target(
    view: &View,
    j: &Job,
    instance: &str,
    from: &str,
    avoid: &[String],
) -> Result<String, String> {
    let nodes = view.placement_nodes();
    let existing = view
        .assigns
        .values()
        .filter(|p| !(p.node == from && p.assignment.instance == instance))
        .map(|p| Placement {
            job: p.assignment.job.clone(),
            instance: p.assignment.instance.clone(),
            node: p.node.clone(),
            demand: Resources::new(p.assignment.cpu, p.assignment.mem),
        })
        .collect();
    let plan = placement::place(&Input {
        nodes,
        pending: vec![Instance {
            job: j.name.clone(),
            instance: instance.to_string(),
            demand: Resources::new(j.cpu, j.mem),
            avoid: avoid.to_vec(),
        }],
        existing,
    });
    match (plan.placed.first(), plan.unplaced.first()) {
        (Some(p), _) => Ok(p.node.clone()),
        (None, Some(u)) => Err(u.reason.to_string()),
        (None, None) => Err("placement gave no answer".into()),
    }
}

/// The fenced transaction's compares and operations for one decision: the record must be
/// as the view saw it; a move also needs the old assignment to be the one seen, the target
/// node alive and the new key free.
pub fn txn(keys: &Keys, d: &Decision) -> (Vec<Compare>, Vec<TxnOp>) {
    let record_is = |job: &str, rev: i64| {
        let key = keys.resched(job);
        if rev == 0 {
            Compare::create_revision(key, CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key, CompareOp::Equal, rev)
        }
    };
    let put = |r: &Reschedule| TxnOp::put(keys.resched(&r.job), encode(r), None);
    match d {
        Decision::Move {
            from,
            alloc,
            to,
            to_node,
            record,
            rev,
        } => {
            let old = keys.assign(from, &to.instance);
            let new = keys.assign(to_node, &to.instance);
            (
                vec![
                    record_is(&record.job, *rev),
                    Compare::create_revision(old.clone(), CompareOp::Equal, *alloc),
                    Compare::version(keys.node_info(to_node), CompareOp::Greater, 0),
                    Compare::create_revision(new.clone(), CompareOp::Equal, 0),
                ],
                vec![
                    TxnOp::delete(old, None),
                    TxnOp::put(new, encode(to), None),
                    put(record),
                ],
            )
        }
        Decision::Fail { record, rev }
        | Decision::Recover { record, rev, .. }
        | Decision::Prune { record, rev } => {
            (vec![record_is(&record.job, *rev)], vec![put(record)])
        }
        Decision::Forget { job, rev } => (
            vec![record_is(job, *rev)],
            vec![TxnOp::delete(keys.resched(job), None)],
        ),
    }
}

fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
#[path = "reschedule_tests.rs"]
mod tests;
