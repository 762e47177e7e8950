//! Cluster mode (`--etcd`, `--node`): the supervisor as a node agent of the ubervisor.
//!
//! `cluster::NodeAgent` runs on a thread of its own: it registers the node under a lease,
//! watches the node's assignments and hands the *whole* assigned set here whenever it changes;
//! this module applies it through the same desired-state apply a person uses (`PUT /tasks`),
//! limited to the tasks the cluster gave this node (node-local tasks from stdin are left
//! alone), and answers the agent's status polls from the loop's snapshot. An agent that stops
//! by itself (its `--node` name held by another live process) stops the supervisor: exit 2.
use crate::cli::Args;
use crate::control::{ApplyBody, Envelope, Reply, Request};
use anyhow::Context;
use std::net::SocketAddr;
use tokio::sync::{mpsc, oneshot};

/// Starts the node agent when `--etcd` was given.
pub fn start(
    args: &Args,
    api: Option<SocketAddr>,
    control: mpsc::Sender<Envelope>,
) -> anyhow::Result<Option<cluster::NodeAgent>> {
    let Some(node) = args.node.clone().filter(|_| !args.etcd.is_empty()) else {
        return Ok(None);
    };
    let capacity = cluster::Capacity {
        cpu: (args.node_cpu * 1000.0).round() as u64,
        mem: args.node_mem,
    };
    let mut cfg = cluster::AgentConfig::new(args.etcd.clone(), &node, capacity);
    cfg.ttl = args.node_ttl;
    cfg.prefix = args.etcd_prefix.clone();
    cfg.addr = api.map(|a| a.to_string());
    let apply_control = control.clone();
    let fatal_control = control.clone();
    let apply: cluster::ApplyFn = Box::new(move |tasks| {
        match ask(
            &apply_control,
            Request::Apply {
                body: ApplyBody::Cluster(tasks),
                dry_run: false,
            },
        ) {
            Some(Reply::Applied(plan)) => {
                if !plan.is_noop() {
                    tracing::info!(added = ?plan.added, removed = ?plan.removed, replaced = ?plan.replaced, "applied the cluster's assignments");
                }
                Ok(())
            }
            Some(Reply::Error(e)) => Err(e.error),
            _ => Err("the supervisor's loop did not answer".into()),
        }
    });
    let status: cluster::StatusFn = Box::new(move || {
        let Some(Reply::Snapshot(snap)) = ask(&control, Request::Snapshot) else {
            return Vec::new();
        };
        let refused = snap.refused.iter().map(|(name, why)| cluster::TaskStatus {
            v: 1,
            name: name.clone(),
            state: "refused".into(),
            host: None,
            port: None,
            pid: None,
            restarts: 0,
            yoyo: false,
            generation: None,
            applied_generation: None,
            detail: Some(why.clone()),
        });
        let refused_names: Vec<&String> = snap.refused.iter().map(|(n, _)| n).collect();
        snap.views
            .iter()
            .filter(|v| !refused_names.contains(&&v.spec.name))
            .map(|v| cluster::TaskStatus {
                v: 1,
                name: v.spec.name.clone(),
                state: if v.yoyo_since.is_some() {
                    "yoyo".into()
                } else {
                    v.state.as_str().into()
                },
                host: Some("127.0.0.1".into()),
                port: v.port,
                pid: v.pid,
                restarts: v.restarts,
                yoyo: v.yoyo_since.is_some(),
                generation: Some(v.generation),
                applied_generation: None,
                detail: None,
            })
            .chain(refused)
            .collect()
    });
    tracing::info!(node = %node, etcd = ?args.etcd, cpu_millicores = capacity.cpu, mem_mb = capacity.mem, "cluster mode: running the node agent");
    // The agent's thread runs a runtime of its own, where a blocking send may not wait: the
    // loop is told from a short-lived thread.
    let fatal: cluster::FatalFn = Box::new(move |e| {
        let request = Request::Fatal(e.to_string());
        let _ = std::thread::Builder::new()
            .name("node-agent-fatal".into())
            .spawn(move || ask(&fatal_control, request));
    });
    let agent = cluster::NodeAgent::spawn_with_fatal(cfg, apply, status, fatal)
        .context("cannot start the node agent")?;
    Ok(Some(agent))
}

/// A request to the loop from the agent's thread (which may block).
fn ask(control: &mpsc::Sender<Envelope>, request: Request) -> Option<Reply> {
    let (tx, rx) = oneshot::channel();
    control
        .blocking_send(Envelope { request, reply: tx })
        .ok()?;
    rx.blocking_recv().ok()
}
