//! `authserver`: the time service's session store.
//!
//! # Layout
//! - `cli`: flags. `store`: the map and its JSON dump format. `checkpoint`: writing the dump
//!   (interval and shutdown). `dumplock`: one server per dump file. `routes`: `/get`, `/set`,
//!   `/monitor`. `metrics`: `/metrics` (Prometheus).
//!
//! # Theory of operation
//! Start-up: flags (bad: exit 2), log config (bad: exit 2), bind (port taken: exit 1 at once),
//! then the dump file (`run/authserver.json` unless `--dumpfile` says otherwise, or `none`): its
//! folder is created, its lock taken (held by another auth server: exit 1), and it is loaded
//! (corrupt or unreadable: exit 1 and the file is left alone — starting empty would lose every
//! session at the next checkpoint). Connections that arrive meanwhile wait in the listener's
//! queue. While serving, a task writes the dump every `--checkpoint-interval` if
//! anything changed. On SIGTERM/SIGINT requests in flight get `--drain-timeout` to finish, then a
//! final dump is written and we exit 0 (1 if that dump failed: the sessions since the last
//! checkpoint are lost and the supervisor should know). After a `kill -9` the next start sees the
//! state of the last checkpoint.
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use servicekit::access_log::AccessLog;
use servicekit::server::{Listening, RUNTIME_ERROR, Server};

mod checkpoint;
mod cli;
mod dumplock;
mod metrics;
mod routes;
mod store;

use checkpoint::Checkpointer;
use cli::Cli;
use dumplock::DumpLock;
use metrics::Metrics;
use routes::App;
use store::Store;

fn main() -> ExitCode {
    let cli = Cli::parse(); // exits 2 on bad flags, 0 on --help/--version
    let server = match Server::start("authserver", &cli.server) {
        Ok(s) => s,
        Err(code) => return code,
    };
    server.run(cli.authport, |listening| run(&server, cli, listening))
}

/// Makes the dump file ours (its folder, its lock) and loads it.
fn open_dump(path: &Path) -> Result<(Store, DumpLock), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Fail now, not at the first checkpoint ten seconds after everyone logged in.
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the folder for the dump file {}: {e} (choose another with --dumpfile, or --dumpfile=none)",
                path.display()
            )
        })?;
    }
    // Lock before loading: the file is then no other server's to write.
    let lock = dumplock::lock(path).map_err(|e| e.to_string())?;
    let store = Store::load(path).map_err(|e| e.to_string())?;
    Ok((store, lock))
}

async fn run(server: &Server, cli: Cli, listening: Listening) -> ExitCode {
    // The lock is held until we return, after the final dump.
    let (store, _lock) = match cli.dumpfile.path().map(open_dump).transpose() {
        Ok(Some((store, lock))) => (store, Some(lock)),
        Ok(None) => (Store::default(), None),
        Err(e) => return server.fatal(RUNTIME_ERROR, &e),
    };
    let entries = store.len();
    let store = Arc::new(Mutex::new(store));
    let metrics = Metrics::default();
    let checkpoint = cli.dumpfile.path().map(|path| {
        Arc::new(Checkpointer::new(
            path.to_path_buf(),
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
        dumpfile = %cli.dumpfile.path().map_or("(none: memory only)".into(), |p| p.display().to_string()),
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
