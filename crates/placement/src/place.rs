//! The placement pass: order the pending instances, filter the nodes, score, pick.
use std::cmp::Ordering;
use std::collections::HashMap;

use crate::model::{Input, Instance, Node, Placement, Plan, Resources, Unplaced};
use crate::reason::{eligible, explain};

/// Decides a node for every pending instance, or says why there is none.
///
/// 1. Nodes are taken in name order, instances largest first (dominant share of the live
///    cluster's capacity), then by job and instance name: the plan depends on the input's
///    content, never on its order.
/// 2. A node is feasible when it is live, not cordoned, not on the job's avoid list, and its
///    free CPU and memory (capacity − allocated − existing and new placements) both cover the
///    demand.
/// 3. Among feasible nodes, fewest instances of the same job first (spread: one node's loss
///    takes as few of a job's instances as can be), then best fit (the smallest larger
///    normalised leftover), then the node name.
pub fn place(input: &Input) -> Plan {
    let mut nodes: Vec<&Node> = input.nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();

    let mut used: Vec<Resources> = nodes.iter().map(|n| n.allocated).collect();
    // (job, node index) -> instances of that job on that node.
    let mut per_job: HashMap<(&str, usize), u32> = HashMap::new();
    for p in &input.existing {
        if let Some(&i) = index.get(p.node.as_str()) {
            used[i] = used[i].saturating_add(p.demand);
            *per_job.entry((p.job.as_str(), i)).or_default() += 1;
        }
    }

    let total = nodes
        .iter()
        .filter(|n| n.alive)
        .fold(Resources::default(), |t, n| t.saturating_add(n.capacity));
    let mut pending: Vec<&Instance> = input.pending.iter().collect();
    pending.sort_by(|a, b| {
        dominant_share(b.demand, total)
            .cmp(&dominant_share(a.demand, total))
            .then_with(|| a.job.cmp(&b.job))
            .then_with(|| a.instance.cmp(&b.instance))
    });

    let owned: Vec<Node> = nodes.iter().map(|n| (*n).clone()).collect();
    let mut plan = Plan::default();
    for inst in pending {
        let mut best: Option<(usize, u32, Share)> = None;
        for (i, node) in nodes.iter().enumerate() {
            if !eligible(node, inst) {
                continue;
            }
            let Some(free) = free(node, used[i]) else {
                continue;
            };
            let Some(left) = free.checked_sub(inst.demand) else {
                continue;
            };
            let same = per_job.get(&(inst.job.as_str(), i)).copied().unwrap_or(0);
            let fit = leftover(left, node.capacity);
            // Nodes are in name order, so keeping the first of equals breaks ties by name.
            let better = match &best {
                None => true,
                Some((_, bsame, bfit)) => (same, fit).cmp(&(*bsame, *bfit)) == Ordering::Less,
            };
            if better {
                best = Some((i, same, fit));
            }
        }
        match best {
            Some((i, _, _)) => {
                used[i] = used[i].saturating_add(inst.demand);
                *per_job.entry((inst.job.as_str(), i)).or_default() += 1;
                plan.placed.push(Placement {
                    job: inst.job.clone(),
                    instance: inst.instance.clone(),
                    node: nodes[i].name.clone(),
                    demand: inst.demand,
                });
            }
            None => {
                let frees: Vec<Resources> = nodes
                    .iter()
                    .zip(&used)
                    .map(|(n, u)| free(n, *u).unwrap_or_default())
                    .collect();
                plan.unplaced.push(Unplaced {
                    job: inst.job.clone(),
                    instance: inst.instance.clone(),
                    reason: explain(inst, &owned, &frees),
                });
            }
        }
    }
    plan
}

/// What is left on `node` when `used` is taken; `None` when it is already over-committed
/// (capacity shrank under its placements).
fn free(node: &Node, used: Resources) -> Option<Resources> {
    node.capacity.checked_sub(used)
}

/// An exact fraction `num / den`, compared by cross-multiplication: no floating point, so
/// the order (and the plan) is the same on every machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    num: u128,
    den: u128,
}

impl Share {
    fn new(num: u64, den: u64) -> Self {
        // A zero capacity counts as fully used: nothing of that resource is left to share.
        if den == 0 {
            return Share { num: 1, den: 1 };
        }
        Share {
            num: u128::from(num),
            den: u128::from(den),
        }
    }

    fn max(self, other: Share) -> Share {
        if self >= other { self } else { other }
    }
}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.num * other.den).cmp(&(other.num * self.den))
    }
}

/// The larger of an instance's two shares of the cluster: bigger first packs better.
fn dominant_share(d: Resources, total: Resources) -> Share {
    Share::new(d.cpu_m, total.cpu_m).max(Share::new(d.mem_mb, total.mem_mb))
}

/// Best fit: the larger of the two normalised leftovers; smaller is a tighter fit.
fn leftover(left: Resources, cap: Resources) -> Share {
    Share::new(left.cpu_m, cap.cpu_m).max(Share::new(left.mem_mb, cap.mem_mb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_compare_exactly() {
        assert!(Share::new(1, 3) < Share::new(34, 100));
        assert_eq!(Share::new(2, 4).cmp(&Share::new(1, 2)), Ordering::Equal);
        assert!(Share::new(5, 0) > Share::new(99, 100));
    }
}
