//! The JSON documents stored under the keys of [`crate::keys`].
//!
//! Every record carries `v` (its format version, now 1). A reader refuses a version it does
//! not know rather than guessing, and new optional fields get `#[serde(default)]` so version 1
//! readers keep reading what newer writers add. Unknown fields are rejected where a typo would
//! silently change behaviour (the job a user submits); records written by programs are read
//! leniently so a newer writer does not break an older reader.
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The current format version of every record.
pub const VERSION: u32 = 1;

fn v1() -> u32 {
    VERSION
}

/// A job: `count` instances of one supervisor task, each needing `cpu` and `mem`.
/// Stored at `jobs/<name>`; the leader writes it from the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    #[serde(default = "v1")]
    pub v: u32,
    /// `[A-Za-z0-9._-]{1,64}`, like a task name; instances are `<name>-1 .. <name>-<count>`.
    pub name: String,
    /// A supervisor task object (`command`, `output`, ...). Its `name` is set per instance.
    pub task: Value,
    pub count: u32,
    /// CPU per instance, in millicores.
    pub cpu: u64,
    /// Memory per instance, in MB.
    pub mem: u64,
    /// Nodes this job must not run on (its instances failed there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<String>,
    /// Bumped on every change of `task`, so an assignment says which version it runs.
    #[serde(default)]
    pub generation: u64,
}

/// Capacity of a node, in the units jobs ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Millicores.
    pub cpu: u64,
    /// MB.
    pub mem: u64,
}

/// A live node: `nodes/<node>/info`, under the node's lease, so it vanishes with the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    #[serde(default = "v1")]
    pub v: u32,
    pub name: String,
    pub capacity: Capacity,
    /// The node's supervisor API address, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The agent's process id (for operators; nothing acts on it).
    #[serde(default)]
    pub pid: u32,
    /// Registration time, Unix milliseconds.
    #[serde(default)]
    pub started_at_ms: u64,
}

/// A cordon: `nodes/<node>/cordon`. No lease: it survives the node's restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cordon {
    #[serde(default = "v1")]
    pub v: u32,
    /// `cordon` or `drain` (drain also moves the node's instances away).
    pub reason: String,
}

/// One instance on one node: `assign/<node>/<instance>`, written by the leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    #[serde(default = "v1")]
    pub v: u32,
    pub job: String,
    pub instance: String,
    /// The job's generation this instance runs.
    #[serde(default)]
    pub generation: u64,
    pub cpu: u64,
    pub mem: u64,
    /// The supervisor task object to run, `name` already set to `instance`.
    pub task: Value,
}

/// What a node reports about one assigned instance: `status/<node>/<instance>`, node lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    #[serde(default = "v1")]
    pub v: u32,
    /// The task's name on the node (the instance name).
    pub name: String,
    /// The supervisor's state word: `running`, `backoff`, `yoyo`, `stopped`, ...; `refused`
    /// for an assignment the node cannot run (see `detail`).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default)]
    pub restarts: u64,
    #[serde(default)]
    pub yoyo: bool,
    /// The running instance's generation on its node (one per start), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The job generation of the assignment the node last applied for this instance: set by
    /// the node agent, so the leader knows a changed task has reached the node (a rolling
    /// replace moves on only then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<u64>,
    /// Why the state, where the node says: for `refused`, the supervisor's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A node's losses: `losses/<node>`, written by the leader (fenced), no lease, so a leader
/// change neither forgets that a node is lost nor resets how often it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLosses {
    #[serde(default = "v1")]
    pub v: u32,
    pub node: String,
    /// When the node was declared lost (Unix ms, oldest first), only those within the
    /// automatic-cordon window.
    #[serde(default)]
    pub lost_at_ms: Vec<u64>,
    /// Declared lost and not registered again since: its instances may be moved away.
    #[serde(default)]
    pub lost: bool,
}

/// Whether the leader may move instances off lost nodes: `moves`, written by the leader
/// (fenced), no lease, so a freeze outlives a leader change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moves {
    #[serde(default = "v1")]
    pub v: u32,
    pub frozen: bool,
    /// Why they were frozen or unfrozen, for `/health`, `GET /nodes` and the page.
    #[serde(default)]
    pub reason: String,
    /// When it was frozen or unfrozen (Unix ms).
    #[serde(default)]
    pub since_ms: u64,
    /// Losses declared before this (Unix ms) do not count towards a new freeze: an unfreeze
    /// accepts them.
    #[serde(default)]
    pub unfrozen_at_ms: u64,
}

/// A job's yo-yo moves: `resched/<job>`, written by the leader (fenced), no lease, so the
/// budget outlives any leader. Moves older than the budget's window are dropped when the
/// record is next written; they no longer count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reschedule {
    #[serde(default = "v1")]
    pub v: u32,
    pub job: String,
    /// Every move still remembered, oldest first.
    #[serde(default)]
    pub moves: Vec<Move>,
    /// Set when the budget is spent (or no node is left to try); cleared when the job is
    /// healthy again or its task changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Failure>,
}

/// One instance moved off a node where it was in yo-yo mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub instance: String,
    /// The node it yo-yoed on (avoided for this instance while the move is remembered).
    pub from: String,
    pub to: String,
    /// Unix milliseconds.
    pub at_ms: u64,
}

/// Why a job stopped being moved, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub reason: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The job generation that failed: a changed task (a newer generation) starts afresh.
    #[serde(default)]
    pub generation: u64,
}

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{key}: not a valid record: {source}")]
    Json {
        key: String,
        source: serde_json::Error,
    },
    #[error("{key}: format version {found} is newer than this program knows ({VERSION})")]
    Version { key: String, found: u32 },
}

/// A record that knows its format version.
pub trait Versioned {
    fn version(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(impl Versioned for $t { fn version(&self) -> u32 { self.v } })*};
}
versioned!(
    Job, NodeInfo, Cordon, Assignment, TaskStatus, NodeLosses, Moves, Reschedule
);

/// Reads the record stored at `key`, refusing versions from the future.
pub fn decode<T: for<'de> Deserialize<'de> + Versioned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, RecordError> {
    let t: T = serde_json::from_slice(bytes).map_err(|source| RecordError::Json {
        key: key.to_string(),
        source,
    })?;
    if t.version() > VERSION {
        return Err(RecordError::Version {
            key: key.to_string(),
            found: t.version(),
        });
    }
    Ok(t)
}

/// The JSON bytes of a record. Serializing these plain structs cannot fail.
pub fn encode<T: Serialize>(t: &T) -> Vec<u8> {
    serde_json::to_vec(t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_are_refused_and_old_readers_ignore_new_fields() {
        let s = br#"{"v":1,"name":"web-1","state":"running","port":8001,"later":true}"#;
        let t: TaskStatus = decode("k", s).unwrap();
        assert_eq!(t.port, Some(8001));
        let e = decode::<TaskStatus>("k", br#"{"v":2,"name":"a","state":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        let e = decode::<TaskStatus>("status/n/a", b"{").unwrap_err();
        assert!(e.to_string().starts_with("status/n/a"), "{e}");
    }
}
