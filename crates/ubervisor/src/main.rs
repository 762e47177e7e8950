//! `ubervisor`: a cluster scheduler replica on etcd.
//!
//! # Layout
//! - [`cli`]: flags and the `ctl` subcommands.
//! - [`view`]: the replica's copy of the cluster, one list-then-watch mirror of the prefix.
//! - [`reconcile`]: what should change (pure: view in, store operations out), on top of the
//!   `placement` crate.
//! - [`lost`]: node loss and its storm guards (pure): when a node is declared lost, which of
//!   its instances may move now, freezing moves in a storm, cordoning a node lost too often.
//! - [`leader`]: campaigning through etcd's Election API, and the leader's placement loop
//!   writing fenced transactions of at most 100 operations.
//! - [`jobs`]: validation of submitted jobs (the task object as a supervisor validates it).
//! - [`api`]: the HTTP API (axum); [`ctl`]: its command-line client.
//! - [`page`]: events for the on-call (`--page-command`, `--page-url`).
//! - [`reschedule`]: yo-yo moves under a budget kept in etcd, failed jobs and their recovery
//!   (pure: view, time and flags in, decisions out).
//!
//! # Theory of operation
//! State lives only in etcd. Every replica mirrors the prefix and serves reads from its
//! mirror; one replica at a time leads. The leader writes jobs, cordons and assignments, each
//! in a transaction whose first compare is its election key's create revision, so a leader
//! that was paused past its lease and wakes up changes nothing. Standbys answer writes with
//! 503 and the leader's address, which the leader publishes as its election value. Node
//! agents (supervisors in cluster mode, `cluster::NodeAgent`) register under their own leases
//! and run what is assigned to them; the leader sees them come and go in its view.
mod api;
mod cli;
mod ctl;
mod jobs;
mod leader;
mod lost;
mod page;
mod reconcile;
mod reschedule;
mod view;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cluster::Keys;
use tokio::sync::watch;

use crate::cli::{Cli, Ctl};
use crate::leader::{Role, Shared};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ubervisor: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Ctl::Ctl(args)) = cli.ctl {
        return ExitCode::from(rt.block_on(ctl::run(args)));
    }
    if cli.etcd.is_empty() || cli.etcd.iter().any(|e| !e.starts_with("http://")) {
        eprintln!("ubervisor: --etcd: expected one or more http://HOST:PORT URLs, comma-separated");
        return ExitCode::from(2);
    }
    if cli.election_ttl.as_secs() < 1 {
        eprintln!("ubervisor: --election-ttl: at least 1s (etcd leases are whole seconds)");
        return ExitCode::from(2);
    }
    if cli.max_moves.n == 0 {
        eprintln!("ubervisor: --max-moves: at least 1 per period (0 would never move anything)");
        return ExitCode::from(2);
    }
    let pager = match page::Pager::new(cli.page_command.clone(), cli.page_url.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ubervisor: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(serve(cli, pager)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ubervisor: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(cli: Cli, pager: page::Pager) -> anyhow::Result<()> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("--listen={}: cannot bind", cli.listen))?;
    let addr = listener.local_addr().context("local address")?.to_string();
    let id = cli
        .id
        .clone()
        .unwrap_or_else(|| format!("uv-{}", std::process::id()));
    let keys = Keys::new(&cli.prefix);
    let client = cluster::connect(&cli.etcd).await?;
    let view = view::spawn_mirror(cli.etcd.clone(), keys.clone());
    let (role, _) = watch::channel(Role::Standby);
    let shared = Arc::new(Shared {
        id: id.clone(),
        addr: addr.clone(),
        keys,
        client,
        view,
        role,
        pager,
        lost: lost::Config {
            grace: cli.lost_grace,
            freeze_share: cli.freeze_share,
            max_moves: cli.max_moves,
            cordon: cli.lost_cordon,
        },
        remediate: cli
            .remediate_command
            .clone()
            .filter(|c| !c.trim().is_empty())
            .map(Arc::from),
        resched: reschedule::Config {
            delay: cli.reschedule_delay,
            budget: cli.reschedule_budget.n,
            window: cli.reschedule_budget.period,
            recover_after: cli.recover_after,
        },
    });
    tracing::info!(%id, %addr, etcd = %cli.etcd.join(","), "ubervisor listening");
    tokio::spawn(leader::run(shared.clone(), cli.election_ttl));
    let app = api::router(shared.clone());
    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")?;
    if let Role::Leader(l) = shared.role.borrow().clone() {
        l.resign(&shared.client).await;
        tracing::info!("resigned leadership");
    }
    Ok(())
}
