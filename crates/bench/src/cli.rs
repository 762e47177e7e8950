//! Command-line flags.
use crate::kind::Kind;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Benchmarks our supervisor side by side with supervisord, runit, s6 and daemontools:
/// restart latency, scale (start, memory, idle CPU and wake-ups, restart storms), checkpoint
/// and a real timeserver's restart. Installs missing peers with apt-get and runs every
/// supervisor under a temporary folder; never touches the system's own services.
///
/// Example: cargo run --release -p bench -- --quick
#[derive(Debug, Clone, Parser)]
#[command(name = "bench", about, long_about = None)]
pub struct Args {
    /// Small N, fewer repetitions, short idle window: about two minutes.
    #[arg(long)]
    pub quick: bool,

    /// Measure only these (comma-separated: ours, bare, supervisord, runit, s6, daemontools;
    /// `bare` is the bare waitpid loop, the physical limit). Default: all.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND,...")]
    pub only: Vec<Kind>,

    /// Task counts for the scale measurements, e.g. 100,1000,10000.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub sizes: Option<Vec<usize>>,

    /// Length of the idle window, seconds.
    #[arg(long, value_name = "SECS")]
    pub idle_secs: Option<f64>,

    /// Restarts measured per series (default 20; 8 with --quick).
    #[arg(long, value_name = "N")]
    pub restarts: Option<usize>,

    /// Series per latency case (default 3; 1 with --quick).
    #[arg(long, value_name = "N")]
    pub series: Option<usize>,

    /// Run the peers' latency measurements at the same time (default with --quick).
    #[arg(long)]
    pub concurrent_peers: bool,

    /// Write the results as JSON here (default: target/bench-results.json).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write the table and the target checks as Markdown here (default: target/bench-results.md).
    #[arg(long, value_name = "PATH")]
    pub markdown: Option<PathBuf>,

    /// Measure `GET /tasks` of our supervisor even if its `--help` does not show `--listen`
    /// (by default the API is used when the supervisor has it).
    #[arg(long, conflicts_with = "no_api")]
    pub api: bool,

    /// Run our supervisor without passing `--listen` and skip the `GET /tasks` row.
    #[arg(long)]
    pub no_api: bool,

    /// Run only the proxy benchmark (ours against HAProxy and nginx): a few minutes.
    #[arg(long)]
    pub proxy_only: bool,

    /// Skip phases: latency, scale, timeserver, proxy (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "PHASE,...")]
    pub skip: Vec<String>,

    /// Do not install missing peers (they are then reported as missing).
    #[arg(long)]
    pub no_install: bool,

    /// Do not run `cargo build` for the supervisor, bench-task and timeserver first.
    #[arg(long)]
    pub no_build: bool,

    /// Where the temporary folders go (default: the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,

    /// Measure this supervisor binary instead of target/release/supervisor (e.g. a patched build).
    #[arg(long, value_name = "PATH")]
    pub supervisor: Option<PathBuf>,

    /// Keep the temporary folders (logs, configs, records) for inspection.
    #[arg(long)]
    pub keep_dirs: bool,

    /// How long a supervisor gets to bring all N tasks up (and to replace them in a storm).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub scale_timeout_secs: u64,
}

/// The flags resolved against the --quick / full defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub quick: bool,
    pub kinds: Vec<Kind>,
    pub sizes: Vec<usize>,
    pub idle: Duration,
    pub restarts: usize,
    pub series: usize,
    pub concurrent_peers: bool,
    pub timeserver_restarts: usize,
    pub stall: Duration,
    pub scale_timeout: Duration,
    pub latency: bool,
    pub scale: bool,
    pub timeserver: bool,
    pub proxy: bool,
}

impl Args {
    pub fn config(&self) -> Config {
        let q = self.quick;
        let skip = |p: &str| self.skip.iter().any(|s| s.eq_ignore_ascii_case(p));
        Config {
            quick: q,
            kinds: if self.only.is_empty() {
                Kind::ALL.to_vec()
            } else {
                Kind::ALL
                    .into_iter()
                    .filter(|k| self.only.contains(k))
                    .collect()
            },
            sizes: self.sizes.clone().unwrap_or_else(|| {
                if q {
                    vec![100]
                } else {
                    vec![100, 1000, 10_000]
                }
            }),
            idle: Duration::from_secs_f64(
                self.idle_secs
                    .unwrap_or(if q { 5.0 } else { 30.0 })
                    .max(0.1),
            ),
            restarts: self.restarts.unwrap_or(if q { 8 } else { 20 }).max(1),
            series: self.series.unwrap_or(if q { 1 } else { 3 }).max(1),
            concurrent_peers: self.concurrent_peers || q,
            timeserver_restarts: if q { 5 } else { 20 },
            stall: Duration::from_secs(if q { 10 } else { 15 }),
            scale_timeout: Duration::from_secs(self.scale_timeout_secs.max(1)),
            latency: !skip("latency") && !self.proxy_only,
            scale: !skip("scale") && !self.proxy_only,
            timeserver: !skip("timeserver") && !self.proxy_only,
            proxy: !skip("proxy"),
        }
    }
}
