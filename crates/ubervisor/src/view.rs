//! The ubervisor's copy of the cluster: one mirror of the whole prefix, parsed.
//!
//! Every replica keeps one (standbys serve reads from it). A task owns the [`Mirror`] and
//! publishes each new [`View`] on a watch channel: the HTTP handlers and the leader's loop
//! read the latest snapshot, and nothing else shares state with them.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster::{
    Assignment, Cordon, Job, Key, Keys, Mirror, Moves, NodeInfo, NodeLosses, Reschedule,
    TaskStatus, connect, decode,
};
use tokio::sync::watch;

/// One assignment as stored, with the revision it was created at (its allocation id).
#[derive(Debug, Clone)]
pub struct Placed {
    pub node: String,
    pub assignment: Assignment,
    pub create_revision: i64,
}

/// The cluster at one store revision.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub revision: i64,
    /// False until the first list succeeded (nothing is known yet).
    pub synced: bool,
    pub jobs: BTreeMap<String, (Job, i64)>,
    pub nodes: BTreeMap<String, NodeInfo>,
    pub cordons: BTreeMap<String, Cordon>,
    /// (node, instance) -> assignment.
    pub assigns: BTreeMap<(String, String), Placed>,
    /// (node, instance) -> status.
    pub statuses: BTreeMap<(String, String), TaskStatus>,
    /// node -> its losses (`losses/<node>`): whether it is declared lost, and when it was.
    pub losses: BTreeMap<String, NodeLosses>,
    /// Whether moves off lost nodes are frozen (`moves`); none stored means not frozen.
    pub moves: Option<Moves>,
    /// Records that could not be read, with why (shown by `GET /health`).
    pub bad: Vec<String>,
    /// Not from the store: the assignments on nodes without `info` that the leader's loss
    /// handling ([`crate::lost`]) lets go this round. Every other assignment on a node without
    /// `info` is kept, so a missed heartbeat moves nothing by itself.
    pub released: BTreeSet<(String, String)>,
    /// job -> its yo-yo moves and failure, with the record's mod revision (for compares).
    pub resched: BTreeMap<String, (Reschedule, i64)>,
    /// Set while etcd cannot be reached: this view is the last one known, not current.
    pub degraded: Option<Degraded>,
}

/// Why the view is stale, and since when (Unix ms), for `GET /health`.
#[derive(Debug, Clone, PartialEq)]
pub struct Degraded {
    pub reason: String,
    pub since_ms: u64,
}

impl View {
    fn build(keys: &Keys, mirror: &Mirror) -> View {
        let mut v = View {
            revision: mirror.revision(),
            synced: true,
            ..View::default()
        };
        for (key, e) in mirror.entries() {
            let r =
                match keys.parse(key) {
                    Some(Key::Job(j)) => decode::<Job>(key, &e.value).map(|x| {
                        v.jobs.insert(j, (x, e.mod_revision));
                    }),
                    Some(Key::NodeInfo(n)) => decode::<NodeInfo>(key, &e.value).map(|x| {
                        v.nodes.insert(n, x);
                    }),
                    Some(Key::Cordon(n)) => decode::<Cordon>(key, &e.value).map(|x| {
                        v.cordons.insert(n, x);
                    }),
                    Some(Key::Assign { node, instance }) => decode::<Assignment>(key, &e.value)
                        .map(|a| {
                            v.assigns.insert(
                                (node.clone(), instance),
                                Placed {
                                    node,
                                    assignment: a,
                                    create_revision: e.create_revision,
                                },
                            );
                        }),
                    Some(Key::Status { node, instance }) => decode::<TaskStatus>(key, &e.value)
                        .map(|s| {
                            v.statuses.insert((node, instance), s);
                        }),
                    Some(Key::Losses(n)) => decode::<NodeLosses>(key, &e.value).map(|x| {
                        v.losses.insert(n, x);
                    }),
                    Some(Key::Moves) => decode::<Moves>(key, &e.value).map(|x| {
                        v.moves = Some(x);
                    }),
                    Some(Key::Resched(j)) => decode::<Reschedule>(key, &e.value).map(|r| {
                        v.resched.insert(j, (r, e.mod_revision));
                    }),
                    None => Ok(()),
                };
            if let Err(err) = r {
                v.bad.push(err.to_string());
            }
        }
        v
    }

    /// The assignments of one job, in node then instance order.
    pub fn placements_of<'a>(&'a self, job: &'a str) -> impl Iterator<Item = &'a Placed> + 'a {
        self.assigns
            .values()
            .filter(move |p| p.assignment.job == job)
    }

    /// True while moves off lost nodes are frozen.
    pub fn frozen(&self) -> bool {
        self.moves.as_ref().is_some_and(|m| m.frozen)
    }

    /// Declared lost and not back (its `info` is gone and its losses record says lost).
    pub fn lost(&self, node: &str) -> bool {
        !self.nodes.contains_key(node) && self.losses.get(node).is_some_and(|l| l.lost)
    }

    /// The live nodes as the placement crate sees them (allocation is counted from the
    /// placements it is given).
    pub fn placement_nodes(&self) -> Vec<placement::Node> {
        self.nodes
            .values()
            .map(|n| placement::Node {
                name: n.name.clone(),
                capacity: placement::Resources::new(n.capacity.cpu, n.capacity.mem),
                allocated: placement::Resources::default(),
                cordoned: self.cordons.contains_key(&n.name),
                alive: true,
            })
            .collect()
    }

    /// Resources taken on `node` by its assignments.
    pub fn allocated(&self, node: &str) -> (u64, u64) {
        self.assigns
            .values()
            .filter(|p| p.node == node)
            .fold((0, 0), |(c, m), p| {
                (c + p.assignment.cpu, m + p.assignment.mem)
            })
    }
}

/// Keeps a [`View`] of the whole prefix current, for as long as the process runs. When etcd
/// is unreachable the last view stays published and the mirror is listed again with backoff.
pub fn spawn_mirror(endpoints: Vec<String>, keys: Keys) -> watch::Receiver<Arc<View>> {
    let (tx, rx) = watch::channel(Arc::new(View::default()));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let r: Result<(), cluster::StoreError> = async {
                let client = connect(&endpoints).await?;
                let mut m = Mirror::new(client, keys.prefix().to_string());
                m.sync().await?;
                backoff = Duration::from_millis(100);
                loop {
                    let _ = tx.send(Arc::new(View::build(&keys, &m)));
                    m.changed().await?;
                }
            }
            .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, retry_in = ?backoff, "store view lost; listing again");
                // The last view stays, marked stale: readers still answer from it, the
                // leader plans nothing from it, and `/health` says why and since when.
                let last = tx.borrow().clone();
                let since_ms = last
                    .degraded
                    .as_ref()
                    .map_or_else(crate::page::now_ms, |d| d.since_ms);
                let mut stale = (*last).clone();
                stale.degraded = Some(Degraded {
                    reason: e.to_string(),
                    since_ms,
                });
                let _ = tx.send(Arc::new(stale));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    rx
}

/// A live node with 1000 millicores and 1000 MB, for the unit tests of the decisions.
#[cfg(test)]
pub fn test_node(name: &str) -> NodeInfo {
    NodeInfo {
        v: cluster::VERSION,
        name: name.to_string(),
        capacity: cluster::Capacity {
            cpu: 1000,
            mem: 1000,
        },
        addr: None,
        pid: 1,
        started_at_ms: 0,
    }
}
