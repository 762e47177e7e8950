//! Connections to one backend: connect under a deadline, keep idle ones for reuse.
//!
//! A connection goes back to the pool only when its response body has been read to the end
//! (see `body::Relay`), so a pooled connection is idle or about to be: hyper marks it ready a
//! moment after the end of the body, and [`Pool::take`] waits for that moment. A connection
//! whose peer went away (the backend died) shows as closed and is dropped there.
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::UpBody;

pub type Sender = SendRequest<UpBody>;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connection refused by {0}")]
    Refused(SocketAddr),
    #[error("no connection to {addr} within {} ms", .after.as_millis())]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("connecting to {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

pub struct Pool {
    idle: Mutex<Vec<Sender>>,
    max_idle: usize,
}

impl Pool {
    pub fn new(max_idle: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An idle connection that is still open, newest first (the one least likely to have been
    /// closed by the backend's idle timeout).
    pub async fn take(&self) -> Option<Sender> {
        loop {
            let mut s = self.lock().pop()?;
            if s.is_closed() {
                continue;
            }
            if s.is_ready() || s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    /// Keeps `s` for reuse, unless the pool is full.
    pub fn put(&self, s: Sender) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle && !s.is_closed() {
            idle.push(s);
        }
    }

    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender>> {
        // Each operation is one push or pop: a panic elsewhere cannot leave the list torn.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new connection to `addr`, within `timeout` (TCP connect and nothing else: HTTP/1's
/// handshake sends nothing).
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                addr,
                after: timeout,
            });
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ConnectError::Refused(addr));
        }
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(t)) => t,
    };
    let _ = tcp.set_nodelay(true);
    let (send, conn) = http1::Builder::new()
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "backend connection ended with an error");
        }
    });
    Ok(send)
}
