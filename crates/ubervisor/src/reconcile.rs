//! What the leader should change: the view against the jobs, decided without IO.
//!
//! Per job, instances `1..=count` should each have exactly one live copy. An assignment whose
//! job is gone, whose index is beyond the count, or whose node is lost, is removed (a lost
//! node's instances become pending again). A copy on a draining node stays until its
//! replacement elsewhere reports `running`, so a drain never leaves an instance with no copy
//! running. A copy of an older job generation is rewritten in place. Pending instances go
//! through [`placement::place`]; what it cannot place is returned with its reason.
use std::collections::BTreeMap;

use cluster::{Assignment, Job, VERSION, instance_index, instance_name};
use placement::{Input, Instance, Node, Placement, Resources, Unplaced};
use serde_json::Value;

use crate::view::View;

/// One change to the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create `assign/<node>/<instance>` (only if the node is alive and the key absent).
    Assign { node: String, a: Assignment },
    /// Rewrite an existing assignment (a newer job generation).
    Update { node: String, a: Assignment },
    /// Delete `assign/<node>/<instance>`.
    Unassign { node: String, instance: String },
}

/// The changes that bring the assignments in line with the jobs, and what cannot be placed.
pub fn reconcile(view: &View) -> (Vec<Op>, Vec<Unplaced>) {
    let mut ops = Vec::new();
    let draining = |n: &str| view.cordons.get(n).is_some_and(|c| c.reason == "drain");
    let running = |n: &str, i: &str| {
        view.statuses
            .get(&(n.to_string(), i.to_string()))
            .is_some_and(|s| s.state == "running")
    };
    // (job, index) -> nodes holding a live copy, in node order.
    let mut copies: BTreeMap<(&str, u32), Vec<&str>> = BTreeMap::new();
    let mut kept: Vec<Placement> = Vec::new();
    for ((node, instance), p) in &view.assigns {
        let job = view.jobs.get(&p.assignment.job).map(|(j, _)| j);
        let index = job.and_then(|j| instance_index(&j.name, instance));
        let keep = match (job, index) {
            (Some(j), Some(i)) if i <= j.count && view.nodes.contains_key(node) => {
                copies.entry((j.name.as_str(), i)).or_default().push(node);
                true
            }
            _ => false,
        };
        if !keep {
            ops.push(Op::Unassign {
                node: node.clone(),
                instance: instance.clone(),
            });
        }
    }
    let mut pending = Vec::new();
    for (j, _) in view.jobs.values() {
        for i in 1..=j.count {
            let name = instance_name(&j.name, i);
            let nodes = copies
                .get(&(j.name.as_str(), i))
                .cloned()
                .unwrap_or_default();
            let (drained, settled): (Vec<&str>, Vec<&str>) =
                nodes.iter().partition(|n| draining(n));
            if settled.is_empty() {
                pending.push(Instance {
                    job: j.name.clone(),
                    instance: name.clone(),
                    demand: Resources::new(j.cpu, j.mem),
                    // The job's avoid list and the nodes this instance yo-yoed on.
                    avoid: crate::reschedule::avoid(view, j, &name),
                });
            }
            let replaced = settled.iter().any(|n| running(n, &name));
            for n in &drained {
                if replaced {
                    ops.push(Op::Unassign {
                        node: n.to_string(),
                        instance: name.clone(),
                    });
                }
            }
            // Duplicates (two leaders' worth of history, or a manual write): keep the first.
            for n in settled.iter().skip(1) {
                ops.push(Op::Unassign {
                    node: n.to_string(),
                    instance: name.clone(),
                });
            }
            for n in settled
                .iter()
                .take(1)
                .chain(drained.iter().filter(|_| !replaced))
            {
                let key = (n.to_string(), name.clone());
                let Some(p) = view.assigns.get(&key) else {
                    continue;
                };
                kept.push(Placement {
                    job: j.name.clone(),
                    instance: name.clone(),
                    node: n.to_string(),
                    demand: Resources::new(p.assignment.cpu, p.assignment.mem),
                });
                if p.assignment.generation < j.generation {
                    ops.push(Op::Update {
                        node: n.to_string(),
                        a: assignment(j, &name),
                    });
                }
            }
        }
    }
    kept.dedup();
    let nodes = view
        .nodes
        .values()
        .map(|n| Node {
            name: n.name.clone(),
            capacity: Resources::new(n.capacity.cpu, n.capacity.mem),
            allocated: Resources::default(),
            cordoned: view.cordons.contains_key(&n.name),
            alive: true,
        })
        .collect();
    let plan = placement::place(&Input {
        nodes,
        pending,
        existing: kept,
    });
    for p in plan.placed {
        let Some((j, _)) = view.jobs.get(&p.job) else {
            continue;
        };
        ops.push(Op::Assign {
            node: p.node,
            a: assignment(j, &p.instance),
        });
    }
    (ops, plan.unplaced)
}

pub(crate) fn assignment(j: &Job, instance: &str) -> Assignment {
    let mut task = j.task.clone();
    if let Some(o) = task.as_object_mut() {
        o.insert("name".into(), Value::String(instance.to_string()));
    }
    Assignment {
        v: VERSION,
        job: j.name.clone(),
        instance: instance.to_string(),
        generation: j.generation,
        cpu: j.cpu,
        mem: j.mem,
        task,
    }
}
