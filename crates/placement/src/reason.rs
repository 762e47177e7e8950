//! Why an instance has no node, in words an operator can act on.
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::model::{Instance, Node, Resources};

/// The resource that is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Mem,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Cpu => "cpu",
            Resource::Mem => "mem",
        })
    }
}

/// Why an instance of `job` cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// No node is registered and alive.
    NoLiveNode { job: String },
    /// Every live node is cordoned or on the job's avoid list.
    NoEligibleNode {
        job: String,
        cordoned: usize,
        avoided: usize,
    },
    /// No eligible node has enough of `resource` free: the most any has is `best_free`.
    Short {
        job: String,
        resource: Resource,
        need: u64,
        best_free: u64,
    },
    /// Some node has the CPU free and some the memory, but none both at once.
    NotTogether { job: String, need: Resources },
    /// No node's whole capacity could hold it, even empty (refused at submission).
    TooBig {
        job: String,
        resource: Resource,
        need: u64,
        largest: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoLiveNode { job } => write!(f, "job {job}: no live node"),
            Reason::NoEligibleNode {
                job,
                cordoned,
                avoided,
            } => write!(
                f,
                "job {job}: no eligible node ({cordoned} cordoned, {avoided} on the job's avoid list)"
            ),
            Reason::Short {
                job,
                resource,
                need,
                best_free,
            } => write!(
                f,
                "job {job}: not enough {resource} on any node: needs {need} {}, at most {best_free} free",
                unit(*resource)
            ),
            Reason::NotTogether { job, need } => write!(
                f,
                "job {job}: no node has {} cpu_m and {} mem_mb free at once",
                need.cpu_m, need.mem_mb
            ),
            Reason::TooBig {
                job,
                resource,
                need,
                largest,
            } => write!(
                f,
                "job {job}: needs {need} {} of {resource}, more than any node has ({largest})",
                unit(*resource)
            ),
        }
    }
}

fn unit(r: Resource) -> &'static str {
    match r {
        Resource::Cpu => "millicores",
        Resource::Mem => "MB",
    }
}

/// Explains why `inst` fits on none of `nodes`, given each node's free resources.
pub(crate) fn explain(inst: &Instance, nodes: &[Node], free: &[Resources]) -> Reason {
    let job = inst.job.clone();
    if !nodes.iter().any(|n| n.alive) {
        return Reason::NoLiveNode { job };
    }
    let eligible: Vec<usize> = (0..nodes.len())
        .filter(|&i| eligible(&nodes[i], inst))
        .collect();
    if eligible.is_empty() {
        let live = nodes.iter().filter(|n| n.alive);
        let cordoned = live.clone().filter(|n| n.cordoned).count();
        let avoided = live
            .filter(|n| !n.cordoned && inst.avoid.contains(&n.name))
            .count();
        return Reason::NoEligibleNode {
            job,
            cordoned,
            avoided,
        };
    }
    let best_cpu = eligible.iter().map(|&i| free[i].cpu_m).max().unwrap_or(0);
    let best_mem = eligible.iter().map(|&i| free[i].mem_mb).max().unwrap_or(0);
    if best_cpu < inst.demand.cpu_m {
        Reason::Short {
            job,
            resource: Resource::Cpu,
            need: inst.demand.cpu_m,
            best_free: best_cpu,
        }
    } else if best_mem < inst.demand.mem_mb {
        Reason::Short {
            job,
            resource: Resource::Mem,
            need: inst.demand.mem_mb,
            best_free: best_mem,
        }
    } else {
        Reason::NotTogether {
            job,
            need: inst.demand,
        }
    }
}

/// Live, not cordoned, not on the instance's avoid list.
pub(crate) fn eligible(node: &Node, inst: &Instance) -> bool {
    node.alive && !node.cordoned && !inst.avoid.contains(&node.name)
}

/// Whether a job needing `demand` could ever run on one of `nodes` (live ones, each empty).
/// With no live node at all it could still fit one that registers later, so that is `Ok`.
pub fn could_ever_fit(job: &str, demand: Resources, nodes: &[Node]) -> Result<(), Reason> {
    let live: Vec<&Node> = nodes.iter().filter(|n| n.alive).collect();
    if live.is_empty() || live.iter().any(|n| n.capacity.covers(demand)) {
        return Ok(());
    }
    let largest_cpu = live.iter().map(|n| n.capacity.cpu_m).max().unwrap_or(0);
    let largest_mem = live.iter().map(|n| n.capacity.mem_mb).max().unwrap_or(0);
    let (resource, need, largest) = if largest_cpu < demand.cpu_m {
        (Resource::Cpu, demand.cpu_m, largest_cpu)
    } else if largest_mem < demand.mem_mb {
        (Resource::Mem, demand.mem_mb, largest_mem)
    } else {
        return Err(Reason::NotTogether {
            job: job.to_string(),
            need: demand,
        });
    };
    Err(Reason::TooBig {
        job: job.to_string(),
        resource,
        need,
        largest,
    })
}
