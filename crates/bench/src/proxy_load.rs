//! Load for the proxy benchmark: a paced generator of our own (fixed rate, every failure
//! counted, latency from each request's scheduled send time so that a stall is not hidden by
//! the client waiting), and `wrk` for the most requests per second.
use crate::interrupt;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// What one paced run saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Paced {
    pub sent: u64,
    pub ok: u64,
    /// Answers other than 2xx.
    pub non_2xx: u64,
    /// Connections refused, reset or timed out, broken answers.
    pub transport: u64,
    /// The first few failures, described.
    pub examples: Vec<String>,
    pub secs: f64,
    #[serde(skip)]
    pub latencies_us: Vec<u64>,
}

impl Paced {
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.transport
    }

    /// The `q`-quantile of the latencies, ms.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let s: Vec<f64> = v.iter().map(|u| *u as f64 / 1000.0).collect();
        crate::stats::quantile(&s, q)
    }

    fn merge(&mut self, o: Paced) {
        self.sent += o.sent;
        self.ok += o.ok;
        self.non_2xx += o.non_2xx;
        self.transport += o.transport;
        for e in o.examples {
            if self.examples.len() < 5 {
                self.examples.push(e);
            }
        }
        self.latencies_us.extend(o.latencies_us);
    }
}

/// `GET path` at `rate` requests per second in all over `conns` keep-alive connections (each
/// to `targets[i % len]`), for `length`. A failed connection is opened again for the next
/// request.
pub fn paced(
    targets: &[SocketAddr],
    path: &str,
    conns: usize,
    rate: f64,
    length: Duration,
) -> Paced {
    let started = Instant::now();
    let per_conn = rate / conns as f64;
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let target = targets[i % targets.len()];
            let path = path.to_string();
            // Spread the connections' schedules over one period.
            let offset = Duration::from_secs_f64(i as f64 / rate);
            std::thread::spawn(move || one_connection(target, &path, per_conn, offset, length))
        })
        .collect();
    let mut total = Paced::default();
    for h in handles {
        if let Ok(p) = h.join() {
            total.merge(p);
        }
    }
    total.secs = started.elapsed().as_secs_f64();
    total
}

fn one_connection(
    target: SocketAddr,
    path: &str,
    rate: f64,
    offset: Duration,
    length: Duration,
) -> Paced {
    let mut out = Paced::default();
    let t0 = Instant::now() + offset;
    let end = Instant::now() + length;
    let mut conn: Option<BufReader<TcpStream>> = None;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let mut n = 0u64;
    loop {
        let due = t0 + Duration::from_secs_f64(n as f64 / rate);
        if due >= end || interrupt::received().is_some() {
            break;
        }
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        n += 1;
        out.sent += 1;
        match exchange(&mut conn, target, req.as_bytes()) {
            Ok(status) if (200..300).contains(&status) => {
                out.ok += 1;
                out.latencies_us.push(due.elapsed().as_micros() as u64);
            }
            Ok(status) => {
                out.non_2xx += 1;
                if out.examples.len() < 5 {
                    out.examples.push(format!("status {status}"));
                }
            }
            Err(e) => {
                conn = None;
                out.transport += 1;
                if out.examples.len() < 5 {
                    out.examples.push(e.to_string());
                }
            }
        }
    }
    out
}

fn exchange(
    conn: &mut Option<BufReader<TcpStream>>,
    target: SocketAddr,
    req: &[u8],
) -> std::io::Result<u16> {
    if conn.is_none() {
        let s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        *conn = Some(BufReader::new(s));
    }
    let Some(r) = conn.as_mut() else {
        return Err(std::io::Error::other("no connection"));
    };
    r.get_mut().write_all(req)?;
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("connection closed before an answer"));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        } else if l.starts_with("connection:") && l.contains("close") {
            close = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16)
                .map_err(|e| std::io::Error::other(format!("bad chunk size: {e}")))?;
            let mut skip = vec![0; n + 2];
            r.read_exact(&mut skip)?;
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        let mut skip = vec![0; n];
        r.read_exact(&mut skip)?;
    } else {
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)?;
        close = true;
    }
    if close {
        *conn = None;
    }
    Ok(status)
}

/// What `wrk` reported.
#[derive(Debug, Clone, Serialize)]
pub struct Wrk {
    pub requests: u64,
    pub rps: f64,
    pub non_2xx: u64,
    pub socket_errors: u64,
}

/// `wrk -t1 -cCONNS -dSECS` on `url`.
pub fn wrk(url: &str, conns: usize, secs: u64) -> Result<Wrk> {
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), url])
        .output()
        .context("cannot run wrk (Debian package wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse_wrk(&text)
}

pub fn parse_wrk(text: &str) -> Result<Wrk> {
    let find = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
    };
    let rps = find("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let requests = text
        .lines()
        .find_map(|l| {
            let (n, rest) = l.trim().split_once(' ')?;
            rest.starts_with("requests in").then(|| n.parse().ok())?
        })
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    let non_2xx = find("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let socket_errors = find("Socket errors:")
        .map(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Wrk {
        requests,
        rps,
        non_2xx,
        socket_errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_output() {
        let text = "Running 8s test @ http://127.0.0.1:1/time\n  1 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.20ms  300.00us  10.00ms   90.00%\n  123456 requests in 8.00s, 80.00MB read\n  Socket errors: connect 0, read 2, write 1, timeout 0\n  Non-2xx or 3xx responses: 7\nRequests/sec:  15432.10\nTransfer/sec:     10.00MB\n";
        let w = parse_wrk(text).unwrap();
        assert_eq!((w.requests, w.non_2xx, w.socket_errors), (123_456, 7, 3));
        assert!((w.rps - 15432.1).abs() < 1e-9);
        assert!(parse_wrk("nothing").is_err());
    }
}
