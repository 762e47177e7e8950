//! What the leader should change: the view against the jobs, decided without IO.
//!
//! Per job, instances `1..=count` should each have exactly one live copy. An assignment whose
//! job is gone, whose index is beyond the count, or whose node is lost, is removed (a lost
//! node's instances become pending again). A copy on a draining node stays until its
//! replacement elsewhere reports `running`, so a drain never leaves an instance with no copy
//! running. A copy of an older job generation is rewritten in place, one running instance
//! per job at a time (a rolling replace): the next only once the node reports the previous
//! one running the new generation, so a new version that does not come up stops the rollout
//! at its first instance. Copies that are not running are rewritten at once (they serve
//! nothing). Each instance is itself replaced start-first on its node unless the task says
//! `"replace": "stop-first"`, so even a job of count 1 always has a running copy. Pending
//! instances go through [`placement::place`]; what it cannot place is returned with its
//! reason.
use std::collections::BTreeMap;

use cluster::{Assignment, Job, VERSION, instance_index, instance_name};
use placement::{Input, Instance, Placement, Resources, Unplaced};
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
    // A node without `info` keeps its assignments until the loss handling lets them go.
    let released = |n: &String, i: &String| {
        !view.nodes.contains_key(n) && view.released.contains(&(n.clone(), i.clone()))
    };
    // (job, index) -> nodes holding a live copy, in node order.
    let mut copies: BTreeMap<(&str, u32), Vec<&str>> = BTreeMap::new();
    let mut kept: Vec<Placement> = Vec::new();
    for ((node, instance), p) in &view.assigns {
        let job = view.jobs.get(&p.assignment.job).map(|(j, _)| j);
        let index = job.and_then(|j| instance_index(&j.name, instance));
        let keep = match (job, index) {
            (Some(j), Some(i)) if i <= j.count && !released(node, instance) => {
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
        // The rolling replace: instances of the new generation not yet running it, and
        // running copies of an older one waiting for their turn.
        let mut in_flight = 0;
        let mut waiting: Vec<(String, String)> = Vec::new();
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
                if p.assignment.generation >= j.generation {
                    if !runs_generation(view, n, &name, j.generation) {
                        in_flight += 1;
                    }
                } else if !reported_down(view, n, &name) {
                    waiting.push((n.to_string(), name.clone()));
                } else {
                    // Not serving anyway: nothing is lost by replacing it now (and the
                    // running ones wait until it runs).
                    in_flight += 1;
                    ops.push(Op::Update {
                        node: n.to_string(),
                        a: assignment(j, &name),
                    });
                }
            }
        }
        if in_flight == 0
            && let Some((node, name)) = waiting.first()
        {
            ops.push(Op::Update {
                node: node.clone(),
                a: assignment(j, name),
            });
        }
    }
    kept.dedup();
    let nodes = view.placement_nodes();
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

fn uses_port(task: &serde_json::Map<String, Value>) -> bool {
    task.get("command")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .any(|a| a.contains(supervisor_core::PORT_PLACEHOLDER))
        })
}

/// Whether `node` reports `instance` as not running (no report yet is not "down": it may be
/// serving, and simply not published yet).
fn reported_down(view: &View, node: &str, instance: &str) -> bool {
    view.statuses
        .get(&(node.to_string(), instance.to_string()))
        .is_some_and(|s| s.state != "running")
}

/// Whether `node` reports `instance` running after applying job generation `generation`.
fn runs_generation(view: &View, node: &str, instance: &str, generation: u64) -> bool {
    view.statuses
        .get(&(node.to_string(), instance.to_string()))
        .is_some_and(|s| s.state == "running" && s.applied_generation >= Some(generation))
}

pub(crate) fn assignment(j: &Job, instance: &str) -> Assignment {
    let mut task = j.task.clone();
    if let Some(o) = task.as_object_mut() {
        o.insert("name".into(), Value::String(instance.to_string()));
        // A changed job replaces each instance new-before-old unless its task says otherwise,
        // where two copies can run side by side: each on its own {{port}}, or told apart by a
        // ready check (the supervisor refuses start-first otherwise).
        if !o.contains_key("replace") && (uses_port(o) || o.contains_key("ready")) {
            o.insert("replace".into(), Value::String("start-first".into()));
            // The old copy goes once the new one is ready: without a check of its own, once
            // its port accepts (not merely once it runs, which leaves a moment with neither).
            o.entry("ready")
                .or_insert_with(|| serde_json::json!({"tcp": true}));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Placed;
    use cluster::TaskStatus;
    use serde_json::json;

    fn view(count: u32, generation: u64) -> View {
        let mut v = View {
            synced: true,
            ..View::default()
        };
        let job = Job {
            v: VERSION,
            name: "web".into(),
            task: json!({"command": ["sleep", "1000"]}),
            count,
            cpu: 100,
            mem: 10,
            avoid: vec![],
            generation,
        };
        for n in ["n1", "n2", "n3"] {
            v.nodes.insert(n.into(), crate::view::test_node(n));
        }
        v.jobs.insert("web".into(), (job, 1));
        v
    }

    /// Instance `i` on node `n{i}`, assigned at `assigned` and reported `state` after
    /// applying `applied`.
    fn place(v: &mut View, i: u32, assigned: u64, state: &str, applied: u64) {
        let (node, name) = (format!("n{i}"), instance_name("web", i));
        let mut a = assignment(&v.jobs["web"].0, &name);
        a.generation = assigned;
        v.assigns.insert(
            (node.clone(), name.clone()),
            Placed {
                node: node.clone(),
                assignment: a,
                create_revision: i as i64,
            },
        );
        v.statuses.insert(
            (node, name.clone()),
            TaskStatus {
                v: VERSION,
                name,
                state: state.into(),
                host: None,
                port: None,
                pid: Some(i),
                restarts: 0,
                yoyo: false,
                generation: Some(1),
                applied_generation: Some(applied),
                detail: None,
            },
        );
    }

    fn updated(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .filter_map(|o| match o {
                Op::Update { a, .. } => Some(a.instance.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_changed_job_is_replaced_one_running_instance_at_a_time() {
        let mut v = view(3, 2);
        for i in 1..=3 {
            place(&mut v, i, 1, "running", 1);
        }
        let (ops, _) = reconcile(&v);
        assert_eq!(updated(&ops), ["web-1"], "only the first: {ops:?}");
        // Rewritten, not yet reported running the new generation: nobody else moves.
        place(&mut v, 1, 2, "running", 1);
        assert!(updated(&reconcile(&v).0).is_empty());
        place(&mut v, 1, 2, "starting", 2);
        assert!(updated(&reconcile(&v).0).is_empty());
        // Running the new one: the next goes.
        place(&mut v, 1, 2, "running", 2);
        assert_eq!(updated(&reconcile(&v).0), ["web-2"]);
        // A new version that crash-loops stops the rollout at its instance ...
        place(&mut v, 2, 2, "yoyo", 2);
        assert!(updated(&reconcile(&v).0).is_empty());
        // ... and a fix (generation 3) replaces the broken one at once, then the rest in turn.
        v.jobs.get_mut("web").unwrap().0.generation = 3;
        assert_eq!(updated(&reconcile(&v).0), ["web-2"]);
    }

    #[test]
    fn copies_that_serve_nothing_are_replaced_at_once_and_tasks_default_to_start_first() {
        let mut v = view(3, 2);
        place(&mut v, 1, 1, "running", 1);
        place(&mut v, 2, 1, "backoff", 1);
        place(&mut v, 3, 1, "yoyo", 1);
        let mut got = updated(&reconcile(&v).0);
        got.sort();
        assert_eq!(got, ["web-2", "web-3"], "the running one waits for them");
        // No report yet is not "down": such a copy waits its turn like a running one.
        v.statuses.clear();
        assert_eq!(updated(&reconcile(&v).0), ["web-1"]);
        let a = assignment(&v.jobs["web"].0, "web-1");
        assert_eq!(a.task["name"], "web-1");
        assert!(
            a.task.get("replace").is_none(),
            "no port and no ready check: two copies cannot run side by side"
        );
        v.jobs.get_mut("web").unwrap().0.task["command"] = json!(["srv", "--port={{port}}"]);
        let a = assignment(&v.jobs["web"].0, "web-1");
        assert_eq!(a.task["replace"], "start-first");
        assert_eq!(a.task["ready"], json!({"tcp": true}));
        v.jobs.get_mut("web").unwrap().0.task["replace"] = json!("stop-first");
        let a = assignment(&v.jobs["web"].0, "web-1");
        assert_eq!(
            a.task["replace"], "stop-first",
            "the task's own choice stays"
        );
    }
}
