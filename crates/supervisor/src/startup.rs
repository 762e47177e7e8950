//! From `main` to a running event loop: read and validate the task list, set up the log, take
//! the dump lock, recover from a predecessor's crash, build the core and run.
//!
//! Exit statuses: 0 after a clean shutdown, 2 for bad usage or a bad task list (nothing was
//! started), 1 for a failure at run time (log file, dump lock, ...).
use crate::api::{self, ApiState, Token};
use crate::checkpoint_io::{self, DumpLock, DumpRead};
use crate::cli::{Args, DEFAULT_LISTEN, Listen};
use crate::daemon::{Daemon, DumpConfig};
use crate::greeting::Greeting;
use crate::logging::LogTarget;
use crate::metrics::Metrics;
use crate::report;
use crate::tracking::{Mode, Tracker};
use crate::{precheck, recovery};
use procio::procfs;
use servicekit::http_client::Url;
use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use supervisor_core::{ConfigErrors, Core, Policy, SupervisorIdentity, TaskSpec, parse_task_list};

const USAGE_STDIN: &str = "supervisor reads its task list, a JSON array of tasks, from standard input.\n\
Example:  ./bin/supervisor --port-range=8000-8099 < etc/tasks.json\n\
Each task: {\"command\": [\"prog\", \"arg\", ...], \"input\": PATH, \"output\": PATH, \"error\": PATH}\n\
(see supervisor --help)";

/// Entry point after flag parsing.
pub fn main(args: Args) -> ExitCode {
    if !(args.spawn_rate.is_finite() && args.spawn_rate > 0.0) {
        eprintln!(
            "supervisor: --spawn-rate must be a positive number of spawns per second, got {}",
            args.spawn_rate
        );
        return ExitCode::from(2);
    }
    if let Err(e) = check_dumpfile(&args) {
        eprintln!("supervisor: {e}");
        return ExitCode::from(2);
    }
    if let Some(Err(e)) = args.sd_file.as_deref().map(crate::sd_file::check) {
        eprintln!("supervisor: {e}");
        return ExitCode::from(2);
    }
    let api = match api_settings(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let cluster = !args.etcd.is_empty();
    if cluster && args.node.is_none() {
        eprintln!("supervisor: --etcd needs --node=NAME (this node's name in the cluster)");
        return ExitCode::from(2);
    }
    if !cluster && args.node.is_some() {
        eprintln!("supervisor: --node is for cluster mode: give --etcd=URL too");
        return ExitCode::from(2);
    }
    if cluster && !(args.node_cpu > 0.0 && args.node_cpu <= 4096.0) {
        eprintln!(
            "supervisor: --node-cpu={}: expected a number of cores above 0",
            args.node_cpu
        );
        return ExitCode::from(2);
    }
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        if !cluster {
            eprintln!("supervisor: standard input is a terminal.\n{USAGE_STDIN}");
            return ExitCode::from(2);
        }
    } else if let Err(e) = stdin.lock().read_to_string(&mut text) {
        eprintln!("supervisor: cannot read the task list from standard input: {e}");
        return ExitCode::from(2);
    }
    if text.trim().is_empty() {
        if !cluster {
            eprintln!("supervisor: standard input is empty.\n{USAGE_STDIN}");
            return ExitCode::from(2);
        }
        // Cluster mode without node-local tasks.
        text = "[]".into();
    }
    crate::limits_cgroup::init(!args.no_cgroups);
    let parsed = if text.trim() == "[]" && cluster {
        Ok(Vec::new())
    } else {
        parse_task_list(&text, args.port_range)
    };
    let specs = match parsed.and_then(check_files) {
        Ok(s) => s,
        Err(e) => {
            eprint!("supervisor: {e}");
            return ExitCode::from(2);
        }
    };
    let log = match &args.log {
        Some(p) => match LogTarget::file(p) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("supervisor: {e}");
                return ExitCode::from(1);
            }
        },
        None => LogTarget::stderr(),
    };
    log.install(args.log_level);
    log.tee_warnings(args.log.is_some() && std::io::stderr().is_terminal());
    let flush = log.clone();
    let code = match run(args, specs, log, api) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            // The log line first, when it goes to the terminal too; and never an exit held up
            // by a standard error that nobody reads.
            flush.flush(LOG_FLUSH);
            crate::logging::eprint_bounded(format!("supervisor: {e:#}\n"), LOG_FLUSH);
            if e.downcast_ref::<crate::control::FatalConfig>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    };
    // Bounded: a sink that takes nothing (a stderr pipe nobody reads) must not keep us here.
    flush.flush(LOG_FLUSH);
    code
}

/// How long an exit waits for the log to take its last lines.
const LOG_FLUSH: Duration = Duration::from_secs(2);

/// The IO part of validation (see [`precheck`]), in the same all-at-once report.
fn check_files(specs: Vec<TaskSpec>) -> Result<Vec<TaskSpec>, ConfigErrors> {
    let errors = precheck::check(&specs, 1);
    if errors.is_empty() {
        Ok(specs)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `--dumpfile` must name a file: a folder (or a path ending in `/`) would make every
/// checkpoint fail, which is better said at once.
fn check_dumpfile(args: &Args) -> Result<(), String> {
    let Some(p) = &args.dumpfile else {
        return Ok(());
    };
    let text = p.as_os_str().to_string_lossy();
    if text.is_empty() {
        return Err("--dumpfile is empty: expected a file path such as run/supervisor.dump".into());
    }
    if text.ends_with('/') || p.is_dir() {
        return Err(format!(
            "--dumpfile={text} is a folder: expected a file path such as {}",
            p.join("supervisor.dump").display()
        ));
    }
    Ok(())
}

/// The API and report flags, checked before anything else happens.
struct ApiSettings {
    listen: Option<std::net::SocketAddr>,
    /// True when the address was given with --listen (the error message then names the flag).
    explicit: bool,
    token: Option<Token>,
    report: Option<Url>,
}

fn api_settings(args: &Args) -> Result<ApiSettings, String> {
    let token = match &args.api_token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("--api-token-file: cannot read {}: {e}", p.display()))?;
            let t = t.trim();
            if t.is_empty() || t.contains(char::is_whitespace) {
                return Err(format!(
                    "--api-token-file: {} must hold one token without spaces",
                    p.display()
                ));
            }
            Some(Token::new(t))
        }
        None => None,
    };
    let (listen, explicit) = match args.listen {
        Some(Listen::Off) => (None, true),
        Some(Listen::On(a)) => (Some(a), true),
        None => (DEFAULT_LISTEN.parse().ok(), false),
    };
    if let Some(a) = listen {
        if !a.ip().is_loopback() && token.is_none() {
            return Err(format!(
                "--listen={a} is not a loopback address: anyone who can reach it could stop your tasks; give --api-token-file too"
            ));
        }
    }
    let report = match &args.report_url {
        Some(u) => Some(Url::parse(u).map_err(|e| format!("--report-url: {e}"))?),
        None => None,
    };
    Ok(ApiSettings {
        listen,
        explicit,
        token,
        report,
    })
}

fn run(args: Args, specs: Vec<TaskSpec>, log: LogTarget, api: ApiSettings) -> anyhow::Result<()> {
    use anyhow::Context;
    // Before any thread exists, so that every thread has it blocked (see reaper.rs).
    crate::reaper::block_sigchld().context("cannot block SIGCHLD")?;
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot become a child subreaper; escaped grandchildren will be reparented to init");
    }
    crate::spawn::ensure_std_fds();
    crate::spawn::keep_task_nofile();
    raise_fd_limit();
    keep_large_buffers_out_of_the_heap();
    crate::spawn::cloexec_inherited_fds();
    let boot_id = procfs::boot_id().context("cannot read the boot id")?;
    let my_start = checkpoint_io::own_start_ticks();
    // The lock first: it creates the dump's folder, whose identity the instance id covers.
    let lock = args
        .dumpfile
        .as_deref()
        .map(DumpLock::acquire)
        .transpose()?;
    let instance = checkpoint_io::instance_id(args.dumpfile.as_deref());
    let identity = SupervisorIdentity {
        instance: instance.clone(),
        pid: std::process::id(),
        start_time: my_start,
        boot_id: boot_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        dumpfile: args
            .dumpfile
            .as_deref()
            .map(|p| checkpoint_io::absolute(p).display().to_string()),
    };
    // Before recovery and before any task: a taken API address is exit 1 with nothing started
    // or stopped (runtime.rs, api_listen.rs).
    let (listener, held) = crate::runtime::claim(
        lock,
        args.dumpfile.as_deref(),
        api.listen.map(|a| (a, api.explicit)),
        &instance,
        &boot_id,
        args.api_token_file.as_deref(),
    )?;
    let api_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
    // What a crashed predecessor left: found now, before anything is spawned; judged and
    // stopped by the core, in the loop, while the API answers and unrelated tasks start.
    let mut tracker = Tracker::new(&instance, !args.no_cgroups);
    match tracker.mode() {
        Mode::Cgroup { root } => {
            tracing::info!(cgroup = %root.display(), "tasks are tracked by cgroup")
        }
        Mode::ProcessGroup { reason } => {
            tracing::warn!(reason = %reason, "tasks are tracked by process group and markers, not cgroup")
        }
    }
    let mut found = Vec::new();
    let mut max_generation = 0;
    let mut identities = None;
    if let Some(path) = &args.dumpfile {
        let dump = match checkpoint_io::read_dump(path) {
            DumpRead::Missing => None,
            DumpRead::Valid(c) => Some(c),
            DumpRead::Corrupt { error, kept_as } => {
                match kept_as {
                    Some(aside) => {
                        tracing::error!(error = %error, kept_as = %aside.display(), "dump file is corrupt; kept aside, not trusted; recovering by cgroup and marker only")
                    }
                    None => {
                        tracing::error!(error = %error, "dump file is unreadable and could not be moved aside; recovering by cgroup and marker only")
                    }
                }
                None
            }
        };
        // Identities carry over only from this instance's own dump (a copy of another
        // supervisor's must not give two live tasks one uid).
        if let Some(d) = dump
            .as_deref()
            .filter(|d| d.supervisor.instance == instance)
        {
            identities = Some((d.uids.clone(), d.revision, d.next_generation));
        }
        let ctx = recovery::Context {
            dump: dump.as_deref(),
            instance: &instance,
            boot_id: &boot_id,
            dump_path: path,
        };
        (found, max_generation) = recovery::gather(&ctx, &mut tracker);
    }
    let _held = held;
    let policy = Policy {
        min_uptime: args.min_uptime,
        stable_after: args.stable_after,
        stop_timeout: args.stop_timeout,
        spawn_rate: args.spawn_rate,
        spawn_burst: args.spawn_rate.clamp(1.0, 1000.0),
        checkpoint_interval: args
            .dumpfile
            .as_ref()
            .map(|_| args.checkpoint_interval.max(Duration::from_millis(10))),
        ..Policy::default()
    };
    let seed = u64::from(std::process::id()) ^ checkpoint_io::unix_ms(std::time::SystemTime::now());
    let now = Instant::now();
    let mut core = Core::new(now, policy, args.port_range, seed);
    if let Some((uids, revision, next_generation)) = identities {
        core.adopt_identities(uids, revision, next_generation);
    }
    core.recover(now, found, max_generation);
    tracing::info!(
        pid = std::process::id(),
        version = env!("CARGO_PKG_VERSION"),
        tasks = specs.len(),
        port_range = %args.port_range.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
        dumpfile = %args.dumpfile.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into()),
        instance = %instance,
        "supervisor started"
    );
    if specs.is_empty() {
        tracing::warn!("the task list is empty: nothing to supervise");
    }
    for spec in specs {
        let name = spec.name.clone();
        core.add_task(now, spec)
            .with_context(|| format!("cannot add task {name}"))?;
    }
    let tasks = core.task_count();
    let dump = args.dumpfile.clone().map(|path| DumpConfig { path });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(256);
    let (events_tx, _) = tokio::sync::broadcast::channel(4096);
    let events_tx = crate::event_log::EventLog::new(
        format!("{:x}", checkpoint_io::unix_ms(std::time::SystemTime::now())),
        events_tx,
    );
    let metrics = Metrics::default();
    if let Some((listener, local)) = listener.zip(api_addr) {
        let state = ApiState {
            control: control_tx.clone(),
            events: events_tx.clone(),
            token: api.token.clone(),
            metrics: metrics.clone(),
            me: api::Me {
                instance: instance.as_str().into(),
                pid: std::process::id(),
                dump: args
                    .dumpfile
                    .as_deref()
                    .map(|d| crate::runtime::absolute(d).display().to_string()),
            },
            addr: Some(local),
            ports: args.port_range,
            node: args.node.clone().filter(|_| !args.etcd.is_empty()),
        };
        api::spawn_server(listener, state).context("cannot start the API thread")?;
        tracing::info!(addr = %local, auth = api.token.is_some(), "API listening: dashboard at http://{local}/");
    }
    crate::probes::spawn(control_tx.clone()).context("cannot start the probe thread")?;
    let agent = crate::node::start(&args, api_addr, control_tx.clone())?;
    if let Some(path) = args.sd_file.clone() {
        crate::sd_file::SdFile {
            path,
            instance: instance.clone(),
            api: api_addr,
            node: args.node.clone().filter(|_| !args.etcd.is_empty()),
        }
        .spawn(control_tx.clone(), events_tx.subscribe())
        .context("cannot start the --sd-file writer thread")?;
    }
    Greeting {
        api: api_addr,
        token: api.token.is_some(),
        log: args.log.clone(),
        dump: args.dumpfile.clone(),
        tasks,
        control: control_tx.clone(),
    }
    .start();
    let result = rt.block_on(async {
        if let Some(url) = api.report {
            tracing::info!(url = %format!("http://{}{}", url.authority, url.path), every = ?args.report_interval, "reporting upstream");
            tokio::spawn(report::run(url, args.report_interval, control_tx.clone(), events_tx.subscribe()));
        }
        drop(control_tx);
        let daemon = Daemon::new(
            core,
            identity,
            log,
            dump,
            tracker,
            Some(control_rx),
            events_tx,
            metrics,
        )
        .context("cannot start the checkpoint writer")?;
        daemon.run().await
    });
    if let Some(agent) = agent {
        // The lease goes at once: the scheduler need not wait a TTL to know.
        if let Err(e) = agent.stop() {
            tracing::warn!(error = %e, "node agent");
        }
    }
    result
}

/// Checkpoint documents and API answers of 10 000 tasks are buffers of a few MB, made and freed
/// every few seconds. glibc raises its mmap threshold after the first such buffer is freed, and
/// from then on they come from the heap, whose pages stay resident: a fixed threshold of 1 MiB
/// keeps them mmapped, so they go back to the system when freed (about 3 MB of RSS at 10 000).
fn keep_large_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// 10 000 tasks need more than the usual 1 024 descriptors at peaks (spawning, pidfds in
/// recovery): raise the soft limit to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: valid rlimit in-parameter.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}
