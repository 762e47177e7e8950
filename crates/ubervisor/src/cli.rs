//! Flags and subcommands.
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use servicekit::duration::parse_duration_arg;

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
    /// How long an instance must be in yo-yo mode before it is moved to another node; doubles
    /// with each move of the same job within the budget's window.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub reschedule_delay: Duration,
    /// At most N yo-yo moves per job within WINDOW (kept in etcd, so a new leader goes on
    /// counting); one more marks the job failed and pages.
    #[arg(long, default_value = "3/1h", value_name = "N/WINDOW", value_parser = parse_budget)]
    pub reschedule_budget: Budget,
    /// A failed job whose instances all run (none in yo-yo mode) this long is no longer failed.
    #[arg(long, default_value = "10m", value_parser = parse_duration_arg)]
    pub recover_after: Duration,
}

/// `--reschedule-budget=N/WINDOW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub moves: u32,
    pub window: Duration,
}

fn parse_budget(s: &str) -> Result<Budget, String> {
    let want = "expected N/WINDOW, moves per job within a window, e.g. 3/1h";
    let (n, w) = s.split_once('/').ok_or_else(|| format!("{s:?}: {want}"))?;
    let moves = n
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("{s:?}: {n:?} is not a whole number of moves; {want}"))?;
    let window = parse_duration_arg(w.trim()).map_err(|e| format!("{s:?}: window: {e}"))?;
    if window.is_zero() {
        return Err(format!("{s:?}: the window must be longer than 0; {want}"));
    }
    Ok(Budget { moves, window })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            parse_budget("3/1h"),
            Ok(Budget {
                moves: 3,
                window: Duration::from_secs(3600)
            })
        );
        assert_eq!(parse_budget("0/10s").map(|b| b.moves), Ok(0));
        for bad in ["3", "x/1h", "3/", "3/0s", "-1/1h", "3/fortnight"] {
            let e = parse_budget(bad).unwrap_err();
            assert!(
                e.contains(bad) && (e.contains("N/WINDOW") || e.contains("window")),
                "{bad}: {e}"
            );
        }
    }
}
