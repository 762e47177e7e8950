//! The dump document written by `--dumpfile`: versioned JSON, read defensively.
//!
//! A process is identified by (pid, start time, boot id), never by pid alone: after the
//! supervisor's crash, a recorded pid may by now belong to a stranger.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The current format version. Older versions stay readable (see the frozen examples in
/// `tests/data/checkpoint-v*.json`). Version 2 added `supervisor.dumpfile`; version 3 the
/// identities (`uids`, `revision`, `next_generation`).
pub const VERSION: u32 = 3;

/// Who wrote the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorIdentity {
    /// Stable per dump file; every task carries it in its environment.
    pub instance: String,
    pub pid: u32,
    /// `/proc/self/stat` field 22 of the supervisor.
    pub start_time: u64,
    pub boot_id: String,
    pub version: String,
    /// The dump file this supervisor writes (absolute): where its lock is, so that a supervisor
    /// given a copy of this dump can tell whether its writer still runs. Absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumpfile: Option<String>,
}

/// One live task process at the time of the dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRecord {
    pub index: usize,
    pub name: String,
    pub argv: Vec<String>,
    pub port: Option<u16>,
    pub generation: u64,
    pub pid: u32,
    pub pgid: u32,
    /// `/proc/PID/stat` field 22 (clock ticks after boot), when it could be read.
    pub start_time: Option<u64>,
    /// The boot the process belongs to; filled in by the shell when writing.
    pub boot_id: Option<String>,
}

/// The whole document. `T` is how the task records are held: a list when read, or (in the
/// writer) the list already encoded, so an unchanged list is not encoded again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint<T = Vec<TaskRecord>> {
    pub version: u32,
    pub supervisor: SupervisorIdentity,
    /// Wall-clock time of writing, milliseconds since the Unix epoch.
    pub written_at_ms: u64,
    /// True when written at a clean shutdown: nothing is left running.
    pub clean: bool,
    pub tasks: T,
    /// Every task's uid by name (running or not): a restarted supervisor gives a task of the
    /// same name the same uid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub uids: BTreeMap<String, String>,
    /// The core's revision: a restarted supervisor continues above it.
    #[serde(default)]
    pub revision: u64,
    /// The generation the next spawn would have had: generations only grow.
    #[serde(default)]
    pub next_generation: u64,
}

/// Why a dump could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a valid dump: {0}")]
    Json(#[from] serde_json::Error),
    #[error("dump format version {found} is newer than this supervisor understands ({VERSION})")]
    FutureVersion { found: u32 },
    #[error("dump format version {found} is not a known version")]
    UnknownVersion { found: u32 },
    #[error("{0}")]
    Shape(String),
}

impl Checkpoint {
    /// Parses a dump, accepting every known format version.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let version = match &value {
            serde_json::Value::Object(m) => match m.get("version") {
                Some(v) => v
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        CheckpointError::Shape(format!(
                            "field \"version\" must be a whole number, got {v}"
                        ))
                    })?,
                None => {
                    return Err(CheckpointError::Shape(
                        "field \"version\" is missing".into(),
                    ));
                }
            },
            _ => {
                return Err(CheckpointError::Shape(
                    "a dump is a JSON object with a \"version\" field".into(),
                ));
            }
        };
        match version {
            // Versions 1 and 2 lack only optional fields: the same reader takes them all.
            1 | 2 | VERSION => Ok(serde_json::from_str(text)?),
            v if v > VERSION => Err(CheckpointError::FutureVersion { found: v }),
            v => Err(CheckpointError::UnknownVersion { found: v }),
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        s.push('\n');
        s
    }
}
