//! A minimal HTTP/1.1 client for the auth server: one `GET` per connection, bounded in time.
//!
//! The auth server is a loopback neighbour speaking plain HTTP; a full client stack (pools, TLS,
//! redirects) would be more code to trust than these few lines. Every call is wrapped in the
//! `--authtimeout-ms` deadline, connect included, so a hung auth server costs a page at most
//! that long and the user is simply anonymous.
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// Responses bigger than this are not from our auth server.
const MAX_RESPONSE: u64 = 64 * 1024;

/// Why the auth server could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth server {addr} did not answer within {} ms", .after.as_millis())]
    Timeout { addr: String, after: Duration },
    #[error("cannot reach auth server {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("bad response from auth server {addr}: {reason}")]
    BadResponse { addr: String, reason: String },
    #[error("auth server {addr} answered {status} to {what}")]
    Status {
        addr: String,
        status: u16,
        what: &'static str,
    },
}

/// Talks to `http://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct AuthClient {
    addr: String,
    timeout: Duration,
}

impl AuthClient {
    pub fn new(host: &str, port: u16, timeout: Duration) -> Self {
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        AuthClient { addr, timeout }
    }

    /// The name stored for `cookie`, or `None` when the auth server does not know it.
    pub async fn lookup(&self, cookie: Uuid) -> Result<Option<String>, AuthError> {
        let (status, body) = self.get(&format!("/get?cookie={cookie}")).await?;
        match status {
            200 => Ok(Some(body)),
            404 => Ok(None),
            status => Err(AuthError::Status {
                addr: self.addr.clone(),
                status,
                what: "/get",
            }),
        }
    }

    /// Stores `cookie → name`; an empty name deletes the entry.
    pub async fn store(&self, cookie: Uuid, name: &str) -> Result<(), AuthError> {
        let path = format!("/set?cookie={cookie}&name={}", percent_encode(name));
        match self.get(&path).await? {
            (200, _) => Ok(()),
            (status, _) => Err(AuthError::Status {
                addr: self.addr.clone(),
                status,
                what: "/set",
            }),
        }
    }

    async fn get(&self, path_and_query: &str) -> Result<(u16, String), AuthError> {
        match tokio::time::timeout(self.timeout, self.exchange(path_and_query)).await {
            Ok(result) => result,
            Err(_) => Err(AuthError::Timeout {
                addr: self.addr.clone(),
                after: self.timeout,
            }),
        }
    }

    async fn exchange(&self, path_and_query: &str) -> Result<(u16, String), AuthError> {
        let io = |source| AuthError::Io {
            addr: self.addr.clone(),
            source,
        };
        let mut stream = TcpStream::connect(self.addr.as_str()).await.map_err(io)?;
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: timeserver\r\n\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .await
            .map_err(io)?;
        parse_response(&raw).map_err(|reason| AuthError::BadResponse {
            addr: self.addr.clone(),
            reason,
        })
    }
}

/// Splits a complete HTTP/1.1 response (the connection was closed after it) into status and
/// body. Handles `Content-Length` and chunked bodies.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("the response has no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .map_err(|_| format!("bad status line {status_line:?}"))?,
        _ => return Err(format!("bad status line {status_line:?}")),
    };
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = content_length {
        rest.get(..len)
            .ok_or("the body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    String::from_utf8(body)
        .map(|b| (status, b))
        .map_err(|_| "the body is not UTF-8".to_string())
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any name survives the
/// query string intact.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nAdaXYZ";
        assert_eq!(parse_response(raw), Ok((200, "Ada".to_string())));
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_response(raw), Ok((404, String::new())));
    }

    #[test]
    fn parses_chunked_and_close_delimited_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nAda\r\n5;x=y\r\n Love\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw), Ok((200, "Ada Love".to_string())));
        let raw = b"HTTP/1.0 200 OK\r\n\r\nuntil close";
        assert_eq!(parse_response(raw), Ok((200, "until close".to_string())));
    }

    #[test]
    fn rejects_garbage() {
        for raw in [
            &b""[..],
            b"hello",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(
                parse_response(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn encodes_names_for_the_query_string() {
        assert_eq!(percent_encode("Ada Lovelace"), "Ada%20Lovelace");
        assert_eq!(percent_encode("a&b=c+d"), "a%26b%3Dc%2Bd");
        assert_eq!(percent_encode("Zoë"), "Zo%C3%AB");
        assert_eq!(percent_encode("plain-name_1.0~"), "plain-name_1.0~");
    }

    #[tokio::test]
    async fn refused_connection_is_an_error_not_a_hang() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let c = AuthClient::new("127.0.0.1", port, Duration::from_secs(5));
        let err = c.lookup(Uuid::new_v4()).await.expect_err("nobody listens");
        assert!(matches!(err, AuthError::Io { .. }), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Accepts and then says nothing, holding the connection open.
        let holder = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(conn);
        });
        let c = AuthClient::new("127.0.0.1", port, Duration::from_millis(100));
        let started = std::time::Instant::now();
        let err = c.lookup(Uuid::new_v4()).await.expect_err("silence");
        assert!(matches!(err, AuthError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("100 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        holder.abort();
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(
            AuthClient::new("::1", 7070, Duration::ZERO).addr,
            "[::1]:7070"
        );
        assert_eq!(
            AuthClient::new("localhost", 7070, Duration::ZERO).addr,
            "localhost:7070"
        );
    }
}
