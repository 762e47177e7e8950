//! Flags and subcommands.
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use servicekit::duration::parse_duration_arg;

use crate::lost::{Rate, parse_share};

/// Cluster scheduler replica on etcd: takes jobs over HTTP, places their instances on the
/// registered supervisor nodes, and writes the placements for the nodes' agents.
#[derive(Debug, Parser)]
#[command(name = "ubervisor", version)]
pub struct Cli {
    #[command(subcommand)]
    pub ctl: Option<Ctl>,
    /// etcd client URLs, comma-separated (http://127.0.0.1:23790,...).
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Address of the HTTP API (port 0 picks a free port; the bound address is logged).
    #[arg(long, default_value = "127.0.0.1:7272")]
    pub listen: String,
    /// This replica's name (in logs and /health).
    #[arg(long)]
    pub id: Option<String>,
    /// Lease TTL of the leadership: a dead leader is replaced after about this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    pub election_ttl: Duration,
    /// Key prefix in etcd.
    #[arg(long, default_value = cluster::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Runs under `sh -c` for what needs a person (a job failed, moves frozen, a node
    /// cordoned automatically), with the event as JSON on stdin.
    #[arg(long)]
    pub page_command: Option<String>,
    /// Gets the same events POSTed as JSON (http://HOST:PORT/PATH).
    #[arg(long)]
    pub page_url: Option<String>,
    /// A new leader declares no node lost before it has led this long (its view of who
    /// heartbeats must be fresh); also the window in which losses count as one storm.
    /// Default: the node TTL's default.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub lost_grace: Duration,
    /// More than this share of the known nodes lost within one --lost-grace freezes moves off
    /// lost nodes (and pages `moves_frozen`); A/B or a decimal, 1 never freezes.
    #[arg(long, default_value = "1/3", value_parser = parse_share)]
    pub freeze_share: f64,
    /// At most N instances moved off lost nodes per PERIOD (N/PERIOD). The default is one
    /// transaction's worth a second: a lost node of up to 100 instances moves at once, a
    /// bigger loss under the freeze share is spread out rather than dumped on the survivors.
    #[arg(long, default_value = "100/1s", value_parser = Rate::parse)]
    pub max_moves: Rate,
    /// A node lost N times within PERIOD is cordoned automatically and paged (N/PERIOD; 0/1h
    /// never cordons).
    #[arg(long, default_value = "3/1h", value_parser = Rate::parse)]
    pub lost_cordon: Rate,
    /// Runs under `sh -c` when a node is declared lost, with the event as JSON on stdin and
    /// UV_NODE=<node> in its environment (e.g. to restart that node's supervisor); it must
    /// finish within 10 s (start long-lived processes in the background, output redirected).
    #[arg(long)]
    pub remediate_command: Option<String>,
    /// How long an instance must be in yo-yo mode before it is moved to another node; doubles
    /// with each move of the same job within the budget's window.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub reschedule_delay: Duration,
    /// At most N yo-yo moves per job within WINDOW (kept in etcd, so a new leader goes on
    /// counting); one more marks the job failed and pages.
    #[arg(long, default_value = "3/1h", value_name = "N/WINDOW", value_parser = Rate::parse)]
    pub reschedule_budget: Rate,
    /// A failed job whose instances all run (none in yo-yo mode) this long is no longer failed.
    #[arg(long, default_value = "10m", value_parser = parse_duration_arg)]
    pub recover_after: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Ctl {
    /// Talk to a running ubervisor.
    Ctl(CtlArgs),
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The ubervisor's API address.
    #[arg(long, default_value = "127.0.0.1:7272", global = true)]
    pub addr: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Every job, with how many instances are placed and running.
    Jobs,
    /// One job's instances: node, state, host:port; and why any is not placed.
    Job { name: String },
    /// Every node: health, cordon, allocation against capacity.
    Nodes,
    /// Submit the job JSON read from stdin.
    Submit,
    /// Delete a job (its instances are removed from their nodes).
    Delete { name: String },
    /// No new instances on this node.
    Cordon { name: String },
    /// Take new instances on this node again.
    Uncordon { name: String },
    /// Cordon, and move the node's instances elsewhere.
    Drain { name: String },
    /// Let moves off lost nodes resume after a storm froze them (accepts the losses so far).
    Unfreeze,
}
