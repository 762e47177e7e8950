//! What placement reads and what it answers: plain data, serde only.
use serde::{Deserialize, Serialize};

/// An amount of the two resources placement counts: CPU in millicores, memory in MB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_m: u64,
    pub mem_mb: u64,
}

impl Resources {
    pub const fn new(cpu_m: u64, mem_mb: u64) -> Self {
        Resources { cpu_m, mem_mb }
    }

    /// `self - other`, or `None` when `other` does not fit in `self`.
    pub fn checked_sub(self, other: Resources) -> Option<Resources> {
        Some(Resources {
            cpu_m: self.cpu_m.checked_sub(other.cpu_m)?,
            mem_mb: self.mem_mb.checked_sub(other.mem_mb)?,
        })
    }

    /// `self + other`, saturating: capacities and demands come from users and may be absurd.
    pub fn saturating_add(self, other: Resources) -> Resources {
        Resources {
            cpu_m: self.cpu_m.saturating_add(other.cpu_m),
            mem_mb: self.mem_mb.saturating_add(other.mem_mb),
        }
    }

    /// True when both amounts of `demand` are at most ours.
    pub fn covers(self, demand: Resources) -> bool {
        self.cpu_m >= demand.cpu_m && self.mem_mb >= demand.mem_mb
    }
}

/// A machine as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub capacity: Resources,
    /// Taken by things placement does not place (node-local tasks). The instances in
    /// [`Input::existing`] are counted on top of it, so do not include them here.
    #[serde(default)]
    pub allocated: Resources,
    /// Takes no new work; what it runs stays.
    #[serde(default)]
    pub cordoned: bool,
    /// Its lease is live. A lost node takes nothing, whatever its capacity says.
    pub alive: bool,
}

/// One instance of a job waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub job: String,
    /// The instance's task name (`web-2`); it identifies the instance in the plan.
    pub instance: String,
    pub demand: Resources,
    /// Nodes this job must not go to (its instances failed there).
    #[serde(default)]
    pub avoid: Vec<String>,
}

/// An instance already on a node: it uses the node's resources and counts for spreading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub job: String,
    pub instance: String,
    pub node: String,
    pub demand: Resources,
}

/// Everything a plan depends on; the same input always gives the same plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub nodes: Vec<Node>,
    pub pending: Vec<Instance>,
    pub existing: Vec<Placement>,
}

/// A decision for each pending instance: a node, or why there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// New placements, in the order they were decided.
    pub placed: Vec<Placement>,
    pub unplaced: Vec<Unplaced>,
}

/// An instance no node can take now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    pub job: String,
    pub instance: String,
    pub reason: crate::Reason,
}
