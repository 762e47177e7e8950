//! Command-line flags. Every flag takes `--flag=value` and `--flag value`; durations take a bare
//! number of seconds (as the course's servers did) or a unit (`500ms`, `10s`).
use clap::{Args as ClapArgs, Parser, Subcommand};
use servicekit::duration::parse_duration_arg;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use supervisor_core::MAX_SETTING;
use supervisor_core::PortRange;

/// The default address of the HTTP API (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7171";

/// Runs, restarts and port-assigns the tasks of a JSON task list read from standard input.
///
/// Example: ./bin/supervisor --port-range=8000-8099 --dumpfile=run/supervisor.dump < etc/tasks.json
///
/// `supervisor ctl ...` talks to a running supervisor's API.
#[derive(Debug, Clone, Parser)]
#[command(name = "supervisor", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Args,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Talk to a running supervisor: status, health, top, restart/stop/start/add/remove tasks.
    Ctl(CtlArgs),
}

/// `supervisor ctl`.
///
/// Which supervisor: --api if given; else the one --dumpfile names (through its runtime file
/// DUMP.api); else, when run/supervisor.dump.api exists here (`make run`), that one; else
/// http://127.0.0.1:7171. When a runtime file named it, ctl acts on that supervisor only: any
/// other answering at its address refuses (HTTP 412) and ctl says who answered.
#[derive(Debug, Clone, ClapArgs)]
pub struct CtlArgs {
    /// The supervisor's API, e.g. http://127.0.0.1:7171.
    #[arg(long, value_name = "URL", env = "SUPERVISOR_API")]
    pub api: Option<String>,
    /// The supervisor's --dumpfile: find its API through DUMP.api, and act on it only.
    #[arg(long, value_name = "PATH", env = "SUPERVISOR_DUMPFILE")]
    pub dumpfile: Option<PathBuf>,
    /// File holding the API token (see the supervisor's --api-token-file). Default: the file
    /// the runtime file names, when ctl can read it.
    #[arg(long, value_name = "PATH", env = "SUPERVISOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum CtlAction {
    /// A table of every task (like `supervisorctl status`), with why a task is down.
    Status,
    /// The supervisor's health; exit status 1 when degraded.
    Health,
    /// Print the supervisor's pid, checked against its start time (so it is not a stale one):
    /// `pid=$(supervisor ctl pid) && kill "$pid"`.
    Pid,
    /// Stop a task and start it again.
    Restart { name: String },
    /// Stop a task and keep it down.
    Stop { name: String },
    /// Start a stopped task.
    Start { name: String },
    /// Add a task: one task object (as in the task list) on standard input.
    Add,
    /// Make the supervisor run exactly the task list on standard input (`PUT /tasks`): show
    /// the plan (+ added, - removed, ~ replaced) and apply it. Unchanged tasks are not touched.
    Apply,
    /// Show what `apply` would do with the task list on standard input, and change nothing.
    Diff,
    /// Stop a task and forget it.
    Remove { name: String },
    /// A live view of every task: state, restarts, CPU, memory, and for tasks with a port
    /// their request rate, errors and requests in flight (from their /metrics).
    Top {
        /// Print one frame (two samples --interval apart) and exit; also what happens when
        /// standard output is not a terminal.
        #[arg(long)]
        once: bool,
        /// Time between frames (and between the two samples of a frame).
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = top_interval)]
        interval: Duration,
    },
    /// Print a task's last lines of output (like `supervisorctl tail`); with -f, go on
    /// printing what it appends until interrupted.
    Logs {
        name: String,
        /// Follow: print appended lines as they come (a truncated file is followed from its
        /// start again, as after logrotate's copytruncate).
        #[arg(short = 'f', long)]
        follow: bool,
        /// The task's error file instead of its output file.
        #[arg(long)]
        stderr: bool,
        /// How many of the last lines to print first (at most 10000).
        #[arg(short = 'n', long = "lines", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
        lines: u32,
    },
}

/// `ctl top --interval`: from 100 ms (faster only measures the sampling) to a minute.
fn top_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration_arg(s)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&d) {
        return Err(format!("{s:?} is outside 100ms..60s"));
    }
    Ok(d)
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

/// Daemon flags.
#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    /// Ports for `{{port}}`, as FROM-TO; each start and restart takes the next one, round robin.
    #[arg(long, value_name = "FROM-TO", value_parser = parse_port_range)]
    pub port_range: Option<PortRange>,

    /// The supervisor's own log file (appended; reopened on SIGHUP). Default: standard error.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,

    /// A task that dies sooner than this after starting has crashed "quickly"; two quick deaths
    /// in a row put it in yo-yo mode (growing restart delays).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = bounded_duration)]
    pub min_uptime: Duration,

    /// Running this long without dying leaves yo-yo mode (a node reports the task as yo-yo
    /// until then).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = bounded_duration)]
    pub stable_after: Duration,

    /// How long a task has after SIGTERM before its process group gets SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = bounded_duration)]
    pub stop_timeout: Duration,

    /// Host-wide cap on spawns per second, so a mass death does not fork-bomb the machine.
    #[arg(long, value_name = "N", default_value_t = 5000.0)]
    pub spawn_rate: f64,

    /// Where to checkpoint the supervised processes (JSON), so that a restarted supervisor can
    /// stop what a crashed one left running.
    #[arg(long, value_name = "PATH")]
    pub dumpfile: Option<PathBuf>,

    /// How often to checkpoint (changes are also written within about 100 ms).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = bounded_duration)]
    pub checkpoint_interval: Duration,

    /// HTTP API, metrics and dashboard address, or `none`. [default: 127.0.0.1:7171]
    /// Any address other than loopback needs --api-token-file.
    #[arg(long, value_name = "ADDR:PORT|none", value_parser = parse_listen)]
    pub listen: Option<Listen>,

    /// File holding the API token; every request but GET /health must then send
    /// `Authorization: Bearer <token>`.
    #[arg(long, value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,

    /// Where to POST health heartbeats and yo-yo events (JSON), e.g. http://127.0.0.1:9000/report.
    #[arg(long, value_name = "URL")]
    pub report_url: Option<String>,

    /// How often to send a heartbeat to --report-url.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = bounded_duration)]
    pub report_interval: Duration,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: tracing::Level,

    /// Keep a Prometheus file_sd list in this file: the same JSON as GET /sd (running tasks with
    /// a port, and the supervisor), rewritten atomically whenever it changes. Its folder must
    /// exist.
    #[arg(long, value_name = "PATH")]
    pub sd_file: Option<PathBuf>,

    /// Track tasks by process group and environment markers instead of one cgroup per task
    /// instance (the default where a writable cgroup v2 hierarchy exists).
    #[arg(long)]
    pub no_cgroups: bool,

    /// Cluster mode: etcd client URLs (comma-separated). The supervisor registers as node
    /// `--node` and runs what the ubervisor assigns to it; a task list on stdin is optional
    /// (node-local tasks).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,

    /// This node's name in the cluster (required with --etcd).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,

    /// CPU cores this node offers to the scheduler (e.g. 2 or 1.5).
    #[arg(long, value_name = "CORES", default_value = "1")]
    pub node_cpu: f64,

    /// Memory this node offers to the scheduler, e.g. 512M or 4G.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size_mb)]
    pub node_mem: u64,

    /// The node's lease in etcd: the scheduler considers the node lost this long after the
    /// supervisor stopped renewing it (renewed every third of it).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = bounded_duration)]
    pub node_ttl: Duration,

    /// Key prefix in etcd (must match the ubervisor's).
    #[arg(long, value_name = "PREFIX", default_value = "/uv/")]
    pub etcd_prefix: String,
}

/// `512M`, `4G`, `1024` (MB) → megabytes.
fn parse_size_mb(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'G' | 'g')) => (&t[..i], 1024.0),
        Some((i, 'M' | 'm')) => (&t[..i], 1.0),
        Some((i, 'T' | 't')) => (&t[..i], 1024.0 * 1024.0),
        _ => (t, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * mult < 1e9 => Ok((v * mult).round() as u64),
        _ => Err(format!(
            "{s:?} is not a size: expected e.g. 512M, 4G or a number of MB"
        )),
    }
}

/// A duration flag, at most [`MAX_SETTING`] (a day): longer ones are surely typos, and would
/// only overflow the clock arithmetic.
fn bounded_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_arg(s)?;
    if d > MAX_SETTING {
        return Err(format!(
            "{s:?} is longer than the longest allowed, {}s (a day)",
            MAX_SETTING.as_secs()
        ));
    }
    Ok(d)
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    s.parse::<SocketAddr>().map(Listen::On).map_err(|_| {
        format!(
            "{s:?} is not an address: expected IP:PORT (e.g. 127.0.0.1:7171, [::1]:7171) or none"
        )
    })
}

fn parse_port_range(s: &str) -> Result<PortRange, String> {
    s.parse::<PortRange>().map_err(|e| e.to_string())
}
