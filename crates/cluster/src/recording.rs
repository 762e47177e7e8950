//! A node agent that runs nothing: it records every assigned set and reports each assigned
//! task `running` (on port 9000 + its position in the set). For tests and benchmarks of the
//! scheduler, where real supervisors would only add noise; everything else about the agent
//! (lease, registration, list-then-watch, status publishing) is the real one.
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::{AgentConfig, AgentError, NodeAgent, TaskStatus, VERSION};

/// Every set the agent was asked to apply, oldest first.
pub type Calls = Arc<Mutex<Vec<Vec<Value>>>>;

/// Starts a recording agent with `cfg`.
pub fn recording_agent(cfg: AgentConfig) -> Result<(NodeAgent, Calls), AgentError> {
    let calls: Calls = Arc::default();
    let c = calls.clone();
    let apply = Box::new(move |set: Vec<Value>| {
        c.lock().unwrap_or_else(PoisonError::into_inner).push(set);
        Ok(())
    });
    let c = calls.clone();
    let status = Box::new(move || {
        let calls = c.lock().unwrap_or_else(PoisonError::into_inner);
        calls
            .last()
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, t)| {
                Some(TaskStatus {
                    v: VERSION,
                    name: t.get("name")?.as_str()?.to_string(),
                    state: "running".into(),
                    host: Some("127.0.0.1".into()),
                    port: Some(9000 + i as u16),
                    pid: Some(std::process::id()),
                    restarts: 0,
                    yoyo: false,
                    generation: Some(1),
                    applied_generation: None,
                    detail: None,
                })
            })
            .collect()
    });
    Ok((NodeAgent::spawn(cfg, apply, status)?, calls))
}

/// The task names of the last set applied.
pub fn last_applied(calls: &Calls) -> Vec<String> {
    let c = calls.lock().unwrap_or_else(PoisonError::into_inner);
    c.last()
        .into_iter()
        .flatten()
        .filter_map(|t| Some(t.get("name")?.as_str()?.to_string()))
        .collect()
}
