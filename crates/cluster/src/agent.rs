//! The node agent: what a supervisor in cluster mode runs on a thread of its own.
//!
//! 1. Connect, grant the node lease (TTL `ttl`, kept alive at a third of it) and register
//!    `nodes/<node>/info` under it, only if no live process holds that name.
//! 2. List `assign/<node>/` and watch from the listed revision; after every change (and
//!    after every fresh list) call `apply` with the *whole* desired set: level, not edges, so
//!    a missed event or a reconnect cannot leave the node half-converged.
//! 3. Every `status_interval`, ask the status source and publish what changed under
//!    `status/<node>/<instance>` with the lease (only assigned instances; node-local tasks
//!    are not the scheduler's business), deleting statuses of instances gone.
//! 4. When etcd cannot be reached, or the lease is lost, keep the tasks as they are (apply is
//!    not called: an unreachable store is not an empty assignment), retry with backoff
//!    (100 ms doubling to a third of the TTL, at most 5 s), and start over at 1 once back:
//!    the old lease taken up again if etcd still has it (etcd renews every lease when its
//!    cluster comes back, so a node outlives an outage of all of etcd), else a new one; a
//!    fresh list, apply, statuses published again.
//! 5. On stop, revoke the lease: the node's info and statuses vanish at once.
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::keys::Keys;
use crate::records::{Assignment, Capacity, NodeInfo, TaskStatus, VERSION, decode, encode};
use crate::store::{Lease, Mirror, StoreError, connect};

/// How a node agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix (default `/uv/`).
    pub prefix: String,
    pub node: String,
    pub capacity: Capacity,
    /// Node lease TTL (whole seconds, at least 1); default 10 s.
    pub ttl: Duration,
    /// The supervisor's API address, published in the node's info.
    pub addr: Option<String>,
    /// How often the status source is asked; default 500 ms.
    pub status_interval: Duration,
}

impl AgentConfig {
    pub fn new(endpoints: Vec<String>, node: &str, capacity: Capacity) -> Self {
        AgentConfig {
            endpoints,
            prefix: crate::keys::DEFAULT_PREFIX.to_string(),
            node: node.to_string(),
            capacity,
            ttl: Duration::from_secs(10),
            addr: None,
            status_interval: Duration::from_millis(500),
        }
    }
}

/// Called with every task object assigned to the node (each with `name` = its instance).
pub type ApplyFn = Box<dyn FnMut(Vec<Value>) -> Result<(), String> + Send>;
/// Yields the current status of the node's tasks (all of them; the agent keeps the assigned).
pub type StatusFn = Box<dyn FnMut() -> Vec<TaskStatus> + Send>;

/// Told why the agent stopped by itself (from the agent's thread), so its host can act.
pub type FatalFn = Box<dyn FnOnce(&AgentError) + Send>;

/// Why the agent stopped by itself.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "node name {node:?} is registered by another live process (its info key outlived one \
         lease TTL): pick another --node or stop the other one"
    )]
    NameTaken { node: String },
    #[error("node agent: cannot start its runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("node agent thread panicked")]
    Panicked,
}

/// A running node agent. [`NodeAgent::stop`] (or dropping it) revokes the lease and joins.
pub struct NodeAgent {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), AgentError>>>,
}

impl NodeAgent {
    /// Starts the agent on a thread of its own (with its own tokio runtime).
    pub fn spawn(
        cfg: AgentConfig,
        apply: ApplyFn,
        status: StatusFn,
    ) -> Result<NodeAgent, AgentError> {
        Self::spawn_with_fatal(cfg, apply, status, Box::new(|_| {}))
    }

    /// [`NodeAgent::spawn`], with `fatal` called if the agent stops by itself (its node name
    /// is taken, its runtime fails).
    pub fn spawn_with_fatal(
        cfg: AgentConfig,
        apply: ApplyFn,
        status: StatusFn,
        fatal: FatalFn,
    ) -> Result<NodeAgent, AgentError> {
        let (tx, rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("node-agent-{}", cfg.node))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .map_err(AgentError::Runtime);
                let r = rt.and_then(|rt| rt.block_on(run(cfg, apply, status, rx)));
                if let Err(e) = &r {
                    fatal(e);
                }
                r
            })
            .map_err(AgentError::Runtime)?;
        Ok(NodeAgent {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// True once the agent ended by itself (see [`NodeAgent::stop`] for why).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the agent (revoking the lease) and says how it ended.
    pub fn stop(mut self) -> Result<(), AgentError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), AgentError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| AgentError::Panicked)?,
            None => Ok(()),
        }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

enum Ended {
    Stopped,
    NameTaken,
    /// A session failed; `registered` says whether it got as far as a lease and a list.
    Lost {
        registered: bool,
        error: String,
    },
}

async fn run(
    cfg: AgentConfig,
    mut apply: ApplyFn,
    mut status: StatusFn,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), AgentError> {
    let keys = Keys::new(&cfg.prefix);
    let mut backoff = Duration::from_millis(100);
    // Retried at least three times a lease TTL, so that a lease etcd kept (or revived on
    // its return) is taken up again before it expires.
    let most = (cfg.ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut last_lease = None;
    loop {
        match session(
            &cfg,
            &keys,
            &mut apply,
            &mut status,
            &mut stop,
            &mut last_lease,
        )
        .await
        {
            Ended::Stopped => return Ok(()),
            Ended::NameTaken => {
                return Err(AgentError::NameTaken {
                    node: cfg.node.clone(),
                });
            }
            Ended::Lost { registered, error } => {
                if registered {
                    backoff = Duration::from_millis(100);
                }
                tracing::warn!(node = %cfg.node, %error, retry_in = ?backoff,
                    "node agent lost etcd; tasks keep running");
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(most);
            }
        }
    }
}

async fn session(
    cfg: &AgentConfig,
    keys: &Keys,
    apply: &mut ApplyFn,
    status: &mut StatusFn,
    stop: &mut oneshot::Receiver<()>,
    last_lease: &mut Option<i64>,
) -> Ended {
    let lost = |registered: bool| {
        move |e: StoreError| Ended::Lost {
            registered,
            error: e.to_string(),
        }
    };
    let client = match connect(&cfg.endpoints).await {
        Ok(c) => c,
        Err(e) => return lost(false)(e),
    };
    // The previous session's lease, if etcd still has it: the node's info and statuses
    // hang on it, so taking it up again means the scheduler never saw the node go.
    let resumed = match *last_lease {
        Some(id) => match Lease::resume(&client, id, cfg.ttl).await {
            Ok(l) => l,
            Err(e) => return lost(false)(e),
        },
        None => None,
    };
    if let Some(l) = &resumed {
        tracing::info!(node = %cfg.node, lease = l.id(), "node lease still alive: taken up again");
    }
    let lease = match resumed {
        Some(l) => l,
        None => match Lease::grant(&client, cfg.ttl).await {
            Ok(l) => l,
            Err(e) => return lost(false)(e),
        },
    };
    *last_lease = Some(lease.id());
    match register(cfg, keys, &client, &lease).await {
        Ok(true) => {}
        Ok(false) => return Ended::NameTaken,
        Err(e) => return lost(false)(e),
    }
    let mut mirror = Mirror::new(client.clone(), keys.assign_node(&cfg.node));
    if let Err(e) = mirror.sync().await {
        return lost(false)(e);
    }
    tracing::info!(node = %cfg.node, lease = lease.id(), "node registered");
    let mut desired = desired_set(&mirror);
    let mut pending = Some(desired.clone());
    let mut published: BTreeMap<String, TaskStatus> = BTreeMap::new();
    // Instance -> the job generation last applied, reported with each status.
    let mut applied: BTreeMap<String, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(cfg.status_interval);
    loop {
        if let Some(set) = pending.take() {
            let tasks = set.iter().map(|d| d.task.clone()).collect();
            match tokio::task::block_in_place(|| apply(tasks)) {
                Ok(()) => {
                    applied = set.iter().map(|d| (d.name.clone(), d.generation)).collect();
                }
                Err(e) => {
                    tracing::warn!(node = %cfg.node, error = %e, "apply failed; retrying");
                    pending = Some(set);
                }
            }
        }
        tokio::select! {
            _ = &mut *stop => {
                lease.revoke(&client).await;
                return Ended::Stopped;
            }
            _ = lease.lost() => {
                return Ended::Lost { registered: true, error: "node lease lost".into() };
            }
            r = mirror.changed() => {
                if let Err(e) = r {
                    return lost(true)(e);
                }
                desired = desired_set(&mirror);
                pending = Some(desired.clone());
            }
            _ = tick.tick() => {
                let names: Vec<String> = desired.iter().map(|d| d.name.clone()).collect();
                let mut now = tokio::task::block_in_place(&mut *status);
                for s in &mut now {
                    s.applied_generation = applied.get(&s.name).copied();
                }
                if let Err(e) = publish(cfg, keys, &client, &lease, &names, now, &mut published).await {
                    return lost(true)(e);
                }
                if pending.is_some() {
                    tick.reset_after(Duration::from_millis(200).min(cfg.status_interval));
                }
            }
        }
    }
}

/// Puts the node's info under the lease unless a live process already holds the name. An
/// info key left by a crashed predecessor vanishes within a TTL, so it is waited for.
async fn register(
    cfg: &AgentConfig,
    keys: &Keys,
    client: &Client,
    lease: &Lease,
) -> Result<bool, StoreError> {
    let key = keys.node_info(&cfg.node);
    let info = NodeInfo {
        v: VERSION,
        name: cfg.node.clone(),
        capacity: cfg.capacity,
        addr: cfg.addr.clone(),
        pid: std::process::id(),
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    let deadline = tokio::time::Instant::now() + cfg.ttl + Duration::from_secs(2);
    let mut c = client.clone();
    loop {
        let txn = Txn::new()
            .when(vec![Compare::version(key.as_str(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(
                key.as_str(),
                encode(&info),
                Some(PutOptions::new().with_lease(lease.id())),
            )]);
        let r = c
            .txn(txn)
            .await
            .map_err(|e| StoreError::new(format!("register {key}"), e))?;
        if r.succeeded() {
            return Ok(true);
        }
        // Already there under this very lease (taken up again after etcd was away).
        let held = c
            .get(key.as_str(), None)
            .await
            .map_err(|e| StoreError::new(format!("read {key}"), e))?;
        if held
            .kvs()
            .first()
            .is_some_and(|kv| kv.lease() == lease.id())
        {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tracing::info!(node = %cfg.node, "node name still registered (a predecessor's lease?); waiting");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One assigned instance: its task object (named after the instance) and job generation.
#[derive(Debug, Clone)]
struct Desired {
    name: String,
    generation: u64,
    task: Value,
}

/// Every assigned task, in key order. A record this program cannot read is left out (and
/// logged), never guessed at.
fn desired_set(mirror: &Mirror) -> Vec<Desired> {
    let mut out = Vec::new();
    for (key, e) in mirror.entries() {
        match decode::<Assignment>(key, &e.value) {
            Ok(a) => {
                let mut task = a.task;
                if let Some(obj) = task.as_object_mut() {
                    obj.insert("name".into(), Value::String(a.instance.clone()));
                }
                out.push(Desired {
                    name: a.instance,
                    generation: a.generation,
                    task,
                });
            }
            Err(err) => tracing::warn!(error = %err, "assignment ignored"),
        }
    }
    out
}

/// Publishes the statuses of assigned instances that changed, and deletes those gone.
async fn publish(
    cfg: &AgentConfig,
    keys: &Keys,
    client: &Client,
    lease: &Lease,
    assigned: &[String],
    now: Vec<TaskStatus>,
    published: &mut BTreeMap<String, TaskStatus>,
) -> Result<(), StoreError> {
    let mut c = client.clone();
    let current: BTreeMap<String, TaskStatus> = now
        .into_iter()
        .filter(|s| assigned.contains(&s.name))
        .map(|s| (s.name.clone(), s))
        .collect();
    let mut ops = Vec::new();
    for (name, s) in &current {
        if published.get(name) != Some(s) {
            ops.push(TxnOp::put(
                keys.status(&cfg.node, name),
                encode(s),
                Some(PutOptions::new().with_lease(lease.id())),
            ));
        }
    }
    for name in published.keys() {
        if !current.contains_key(name) {
            ops.push(TxnOp::delete(keys.status(&cfg.node, name), None));
        }
    }
    for chunk in ops.chunks(100) {
        c.txn(Txn::new().and_then(chunk.to_vec()))
            .await
            .map_err(|e| StoreError::new(format!("publish statuses of {}", cfg.node), e))?;
    }
    *published = current;
    Ok(())
}
