//! A minimal HTTP/1.1 client for 127.0.0.1 (no dependency needed for one GET), free ports, the
//! `GET /tasks` measurement of our supervisor's API, and a client that reads one path back to
//! back (the load of the "restart under API load" row); [`request`], any method with a body
//! (the APIs of `bench-apply` and `bench-cluster`).
use crate::stats::Summary;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A port that nothing listens on right now.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr().context("no local address")?.port())
}

/// `count` consecutive ports from `from` (inclusive) on which a bind succeeds now.
pub fn free_range(from: u16, count: u16) -> Option<u16> {
    let mut start = from;
    while start.checked_add(count).is_some() {
        match (start..start + count).find(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).is_err())
        {
            None => return Some(start),
            Some(busy) => start = busy + 1,
        }
    }
    None
}

/// GETs `path` from 127.0.0.1:`port`; returns the status code and the body length.
pub fn get(port: u16, path: &str, timeout: Duration) -> Result<(u16, usize)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_status(&buf).map(|code| (code, buf.len()))
}

/// One HTTP/1.1 request to `addr` (`127.0.0.1:PORT`), `Connection: close`: status and body.
/// `timeout` bounds the connect and each read and write.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String)> {
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("{addr:?} is not an IP:PORT address"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let status = parse_status(&buf)?;
    let text = String::from_utf8_lossy(&buf);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

/// The status code of an HTTP/1.x response.
pub fn parse_status(buf: &[u8]) -> Result<u16> {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let mut it = text.split_ascii_whitespace();
    match (it.next(), it.next().and_then(|c| c.parse().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => bail!("not an HTTP response: {:?}", text.trim()),
    }
}

/// Latency of `GET /tasks` (ms), `reps` times; every answer must be 200.
pub fn tasks_latency(port: u16, reps: usize) -> Result<Summary> {
    let mut ms = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let (code, len) = get(port, "/tasks", Duration::from_secs(10))
            .with_context(|| format!("GET http://127.0.0.1:{port}/tasks"))?;
        if code != 200 {
            bail!("GET /tasks answered {code}");
        }
        if len == 0 {
            bail!("GET /tasks answered nothing");
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Summary::of(&ms).context("no samples")
}

/// What one [`hammer`] client did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hammered {
    pub path: String,
    /// Requests answered 200.
    pub ok: u64,
    /// Requests that failed or were answered otherwise.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Size of the last 200 response (headers and body), bytes.
    pub last_bytes: usize,
}

impl Hammered {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

/// GETs `path` from 127.0.0.1:`port` back to back (one connection per request, as [`get`]) until
/// `stop` is set; the request under way when it is set is finished first.
pub fn hammer(port: u16, path: &str, stop: &AtomicBool) -> Hammered {
    let mut h = Hammered {
        path: path.to_string(),
        ..Hammered::default()
    };
    while !stop.load(Ordering::Relaxed) {
        match get(port, path, Duration::from_secs(10)) {
            Ok((200, len)) => {
                h.ok += 1;
                h.last_bytes = len;
            }
            Ok((code, _)) => h.error(format!("GET {path} answered {code}")),
            Err(e) => {
                h.error(format!("GET http://127.0.0.1:{port}{path}: {e:#}"));
                // A refused connection fails at once: do not spin.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nbody").unwrap(),
            200
        );
        assert_eq!(parse_status(b"HTTP/1.0 503 Busy\r\n").unwrap(), 503);
        assert!(parse_status(b"SSH-2.0-x\r\n").is_err());
        assert!(parse_status(b"").is_err());
    }
}
