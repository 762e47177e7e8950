//! The proxy's life: logging, runtime, listeners, the source, the accept loop, the drain.
//!
//! Both addresses are bound before anything else runs, so an address in use fails at once
//! (exit 1). The accept loop takes a permit of the connection cap before each accept: at the
//! cap, further clients wait in the kernel's listen queue instead of being refused. At SIGTERM
//! or SIGINT the listening socket is closed (new connections are refused from then on), idle
//! keep-alive connections are closed, and requests in flight get `--drain-timeout` to finish.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::admin;
use crate::backends::Registry;
use crate::balance::Balancer;
use crate::cli::{Admin, Cli, RUNTIME_ERROR, USAGE_ERROR};
use crate::forward::Proxy;
use crate::health;
use crate::metrics::Metrics;
use crate::source::Feed;

pub fn main(cli: Cli) -> ExitCode {
    let log = match servicekit::logconfig::init_from_flag(cli.log.as_deref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("proxy: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let fatal = |msg: String| {
        tracing::error!("{msg}");
        if !log.to_console() {
            eprintln!("proxy: {msg}");
        }
        ExitCode::from(RUNTIME_ERROR)
    };
    let mut rt = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if cli.threads > 1 {
            b.worker_threads(cli.threads);
        }
        b
    };
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fatal(format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async move {
        match run(cli).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fatal(e),
        }
    })
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} ({what}): {e}"))
}

async fn run(cli: Cli) -> Result<(), String> {
    let listener = bind(cli.listen, "--listen").await?;
    let admin_listener = match cli.admin {
        Admin::On(a) => Some(bind(a, "--admin").await?),
        Admin::Off => None,
    };
    let stop = servicekit::shutdown::shutdown_signal()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let token = cli.token()?;
    let source = cli.backends.clone().into_source(token);
    let metrics = Arc::new(Metrics::new());
    let registry = Arc::new(Registry::new(
        source.describe(),
        cli.max_idle_per_backend,
        metrics.clone(),
    ));
    let proxy = Arc::new(Proxy {
        registry: registry.clone(),
        balancer: Balancer::new(cli.balance),
        policy: health::Policy {
            eject_after: cli.eject_after,
            eject_for: cli.eject_for,
            eject_max: cli.eject_max,
        },
        metrics: metrics.clone(),
        connect_timeout: cli.connect_timeout,
        response_timeout: cli.response_timeout,
        retries: cli.retries,
        access_log: cli.access_log,
    });
    let listen_addr = listener
        .local_addr()
        .map_err(|e| format!("the listening socket has no address: {e}"))?;
    let admin_addr = match admin_listener {
        Some(l) => {
            let a = l
                .local_addr()
                .map_err(|e| format!("the admin socket has no address: {e}"))?;
            tokio::spawn(admin::serve(l, registry.clone(), metrics.clone()));
            a.to_string()
        }
        None => "none".to_string(),
    };
    tracing::info!(addr = %listen_addr, admin = %admin_addr, source = %source.describe(),
        balance = ?cli.balance, version = env!("CARGO_PKG_VERSION"), "proxy listening");
    tokio::spawn(source.run(Feed::new(registry.clone())));
    if let Some(path) = cli.health_path.clone() {
        tokio::spawn(health::active_checks(
            registry.clone(),
            path,
            cli.health_interval,
            cli.health_timeout,
        ));
    }
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cli.header_timeout)
        .max_header_size(cli.max_header_bytes as usize)
        .max_buf_size((cli.max_header_bytes as usize).max(8192) * 2)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let cap = Arc::new(Semaphore::new(cli.max_connections as usize));
    tokio::pin!(stop);
    let signal = loop {
        let permit = tokio::select! {
            s = &mut stop => break s,
            p = cap.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Err("the connection cap was closed".into()),
            },
        };
        let (tcp, peer) = tokio::select! {
            s = &mut stop => break s,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let proxy = proxy.clone();
        let service = service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, peer).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(tcp), service));
        let metrics = metrics.clone();
        metrics.connections.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            metrics.connections.dec();
            drop(permit);
        });
    };
    drop(listener);
    let open = graceful.count();
    tracing::info!(%signal, connections = open, drain_ms = cli.drain_timeout.as_millis() as u64,
        "stopping: no new connections; draining requests in flight");
    match tokio::time::timeout(cli.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!(%signal, "stopped cleanly"),
        Err(_) => tracing::warn!(%signal, in_flight = metrics.in_flight.get(),
            "stopped; some requests were cut off at the drain deadline"),
    }
    Ok(())
}
