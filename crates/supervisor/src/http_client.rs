//! A small HTTP/1.1 client for `supervisor ctl` and upstream reports: plain `http://` only, one
//! request per connection, bounded in time and size. The peers are a supervisor on this machine
//! or an ubervisor on a trusted network; a full client stack would be more code to trust.
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

/// `http://HOST:PORT/PATH`, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`, ready for `connect` (IPv6 literals keep their brackets).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| format!("{s:?} is not an http:// URL (https is not supported)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        let has_port = match authority.rfind(']') {
            Some(end) => authority[end..].contains(':'),
            None => authority.contains(':'),
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Url {
            authority,
            path: path.to_string(),
        })
    }

    /// This URL with `path` (which starts with `/`) appended to its own path.
    pub fn join(&self, path: &str) -> Url {
        let base = self.path.trim_end_matches('/');
        Url {
            authority: self.authority.clone(),
            path: format!("{base}{path}"),
        }
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: no answer within {} ms", .after.as_millis())]
    Timeout { url: String, after: Duration },
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: bad response: {reason}")]
    Bad { url: String, reason: String },
}

/// Sends one request and reads the whole response.
pub async fn request(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let shown = format!("{method} http://{}{}", url.authority, url.path);
    match tokio::time::timeout(timeout, exchange(method, url, headers, body, &shown)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            url: shown,
            after: timeout,
        }),
    }
}

async fn exchange(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    shown: &str,
) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io {
        url: shown.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(url.authority.as_str())
        .await
        .map_err(io)?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: supervisor\r\n",
        url.path, url.authority
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    if let Some(b) = body {
        stream.write_all(b).await.map_err(io)?;
    }
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(io)?;
    parse(&raw).map_err(|reason| HttpError::Bad {
        url: shown.to_string(),
        reason,
    })
}

fn parse(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:9000/report").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1:9000", "/report")
        );
        assert_eq!(
            Url::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert_eq!(
            Url::parse("http://[::1]:7171").unwrap().authority,
            "[::1]:7171"
        );
        assert_eq!(Url::parse("http://[::1]").unwrap().authority, "[::1]:80");
        assert_eq!(
            Url::parse("http://h:1/api/").unwrap().join("/tasks").path,
            "/api/tasks"
        );
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hi"));
        let r = parse(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "abcde"));
        assert!(parse(b"garbage").is_err());
    }
}
