//! `authserver`: the time service's session store.
//!
//! # Layout
//! - `cli`: flags. `store`: the map and its JSON dump format. `checkpoint`: writing the dump
//!   (interval and shutdown). `routes`: `/get`, `/set`, `/monitor`. `metrics`: `/metrics`
//!   (Prometheus).
//!
//! # Theory of operation
//! Start-up: flags (bad: exit 2), log config (bad: exit 2), dump file (corrupt or unreadable:
//! exit 1 and the file is left alone — starting empty would lose every session at the next
//! checkpoint), then bind (port taken: exit 1 at once). While serving, a task writes the dump
//! every `--checkpoint-interval` if anything changed. On SIGTERM/SIGINT requests in flight get
//! `--drain-timeout` to finish, then a final dump is written and we exit 0 (1 if that dump
//! failed: the sessions since the last checkpoint are lost and the supervisor should know).
//! After a `kill -9` the next start sees the state of the last checkpoint.
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use servicekit::access_log::AccessLog;
use servicekit::server::{Listening, RUNTIME_ERROR, Server};

mod checkpoint;
mod cli;
mod metrics;
mod routes;
mod store;

use checkpoint::Checkpointer;
use cli::Cli;
use metrics::Metrics;
use routes::App;
use store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on bad flags, 0 on --help/--version
    let server = match Server::start("authserver", &cli.server) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let store = match cli.dumpfile.as_deref().map(Store::load).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return server.fatal(RUNTIME_ERROR, &e),
    };
    if let Some(dir) = cli
        .dumpfile
        .as_deref()
        .and_then(|p| p.parent())
        .filter(|d| !d.as_os_str().is_empty())
    {
        // Fail now, not at the first checkpoint ten seconds after everyone logged in.
        if let Err(e) = std::fs::create_dir_all(dir) {
            let msg = format!(
                "cannot create the folder for the dump file {}: {e}",
                dir.display()
            );
            return server.fatal(RUNTIME_ERROR, &msg);
        }
    }
    server.run(cli.authport, |listening| {
        run(&server, cli, store, listening)
    })
}

async fn run(server: &Server, cli: Cli, store: Store, listening: Listening) -> ExitCode {
    let entries = store.len();
    let store = Arc::new(Mutex::new(store));
    let metrics = Metrics::default();
    let checkpoint = cli.dumpfile.clone().map(|path| {
        Arc::new(Checkpointer::new(
            path,
            store.clone(),
            metrics.dumps.clone(),
        ))
    });
    let periodic = checkpoint.clone().map(|c| {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        (
            stop,
            tokio::spawn(c.run_periodically(cli.checkpoint_interval, stopped)),
        )
    });
    let log = AccessLog {
        stats: Default::default(),
        metrics: metrics.http.clone(),
    };
    let app = Arc::new(App {
        store,
        log: log.clone(),
        metrics,
        checkpoint: checkpoint.clone(),
    });
    tracing::info!(
        addr = %listening.addr(),
        dumpfile = %cli.dumpfile.as_deref().map_or("(none: memory only)".into(), |p| p.display().to_string()),
        checkpoint_interval_ms = cli.checkpoint_interval.as_millis() as u64,
        entries,
        version = env!("CARGO_PKG_VERSION"),
        "authserver listening"
    );
    let served = listening.serve(routes::router(app), log).await;
    if let Some((stop, task)) = periodic {
        // Let a dump in progress finish before the final one (see `run_periodically`).
        let _ = stop.send(());
        if let Err(e) = task.await {
            tracing::error!(error = %e, "the checkpoint task failed");
        }
    }
    let final_dump = match &checkpoint {
        Some(c) => c.dump_if_changed().await.map(|_| ()),
        None => Ok(()),
    };
    match final_dump {
        // Reported first: the sessions since the last checkpoint are lost.
        Err(e) => server.fatal(RUNTIME_ERROR, &format!("final dump failed: {e}")),
        Ok(()) => server.stopped(served),
    }
}
