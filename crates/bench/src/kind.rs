//! The supervisors compared, and where their binaries are.
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A supervisor under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ours,
    /// `bench-baseline`: a bare waitpid loop, the physical limit (latency only).
    Bare,
    Supervisord,
    Runit,
    S6,
    Daemontools,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Ours,
        Kind::Bare,
        Kind::Supervisord,
        Kind::Runit,
        Kind::S6,
        Kind::Daemontools,
    ];
    pub const PEERS: [Kind; 4] = [Kind::Supervisord, Kind::Runit, Kind::S6, Kind::Daemontools];

    /// The other supervisors (not ours, not the bare loop).
    pub fn is_peer(self) -> bool {
        Kind::PEERS.contains(&self)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::Bare => "bare-loop",
            Kind::Supervisord => "supervisord",
            Kind::Runit => "runit",
            Kind::S6 => "s6",
            Kind::Daemontools => "daemontools",
        }
    }

    /// The Debian package that brings this peer.
    pub fn package(self) -> Option<&'static str> {
        match self {
            Kind::Ours | Kind::Bare => None,
            Kind::Supervisord => Some("supervisor"),
            Kind::Runit => Some("runit"),
            Kind::S6 => Some("s6"),
            Kind::Daemontools => Some("daemontools"),
        }
    }

    /// The binaries this peer needs on PATH (the first is the one the harness starts).
    pub fn binaries(self) -> &'static [&'static str] {
        match self {
            Kind::Ours | Kind::Bare => &[],
            Kind::Supervisord => &["supervisord"],
            Kind::Runit => &["runsvdir", "runsv"],
            Kind::S6 => &["s6-svscan", "s6-supervise"],
            Kind::Daemontools => &["svscan", "supervise"],
        }
    }

    /// Processes per supervised task when idle, counting the task (a per-service supervisor
    /// process for runit, s6 and daemontools).
    pub fn procs_per_task(self) -> usize {
        match self {
            Kind::Ours | Kind::Bare | Kind::Supervisord => 1,
            Kind::Runit | Kind::S6 | Kind::Daemontools => 2,
        }
    }
}

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The binaries the harness runs.
#[derive(Debug, Clone)]
pub struct Bins {
    pub supervisor: PathBuf,
    /// The task program (canonical path, as `/proc/PID/exe` shows it): the libc-free, static
    /// build of `crates/bench-task` (see [`crate::task`]).
    pub bench_task: PathBuf,
    pub baseline: PathBuf,
    pub timeserver: Option<PathBuf>,
}

impl Bins {
    /// The workspace's binaries next to the running `bench` binary (`target/release/`);
    /// `bench-task` from `target/bench-task/release/`.
    pub fn locate() -> Result<Bins> {
        let exe = std::env::current_exe().context("cannot find the bench binary's own path")?;
        let dir = exe.parent().context("the bench binary has no folder")?;
        let supervisor = dir.join("supervisor");
        let baseline = dir.join("bench-baseline");
        for p in [&supervisor, &baseline] {
            if !is_executable(p) {
                bail!(
                    "{} is missing; build it with `cargo build --release -p bench -p supervisor`",
                    p.display()
                );
            }
        }
        let task = crate::task::binary();
        if !is_executable(&task) {
            bail!(
                "{} is missing; build it with `cargo {}`",
                task.display(),
                crate::task::describe(&crate::task::build_command("cargo".as_ref()))
            );
        }
        let timeserver = Some(dir.join("timeserver"))
            .filter(|p| is_executable(p))
            .and_then(|p| p.canonicalize().ok());
        Ok(Bins {
            supervisor,
            bench_task: task
                .canonicalize()
                .context("cannot resolve bench-task's path")?,
            baseline,
            timeserver,
        })
    }
}
