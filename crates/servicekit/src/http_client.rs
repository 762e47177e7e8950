//! A small HTTP/1.1 client: plain `http://` only, one request per connection, bounded in time
//! and size. Its users talk to peers they know: `supervisor ctl` to a supervisor on this machine,
//! a supervisor's reports to an ubervisor on a trusted network, the timeserver to its auth
//! server on loopback. A full client stack (pools, TLS, redirects) would be more code to trust.
//!
//! Each request sends `Connection: close` and reads until the peer closes (at most a size
//! limit), then parses the lot: status, `Content-Length` or chunked body. The whole exchange,
//! connect included, runs under one deadline. The `User-Agent` is the name of the running
//! program (`supervisor`, `timeserver`).
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How much of a response [`request`] reads at most.
pub const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

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

/// A whole response: the body as text by default ([`request`]), or as bytes
/// ([`request_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<B = String> {
    pub status: u16,
    /// Header names as sent (compare them with [`Response::header`]).
    pub headers: Vec<(String, String)>,
    pub body: B,
}

impl<B> Response<B> {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
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

/// Sends one request and reads the whole response (at most [`MAX_RESPONSE`] bytes of it) within
/// `timeout`. A body that is not UTF-8 is converted lossily.
pub async fn request(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let r = request_bytes(method, url, headers, body, timeout, MAX_RESPONSE).await?;
    Ok(Response {
        status: r.status,
        headers: r.headers,
        body: String::from_utf8_lossy(&r.body).into_owned(),
    })
}

/// [`request`] with the body as bytes and a size limit of `max_response` bytes for the whole
/// response (anything beyond is not read).
pub async fn request_bytes(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
    max_response: u64,
) -> Result<Response<Vec<u8>>, HttpError> {
    let shown = format!("{method} http://{}{}", url.authority, url.path);
    let exchange = exchange(method, url, headers, body, max_response, &shown);
    match tokio::time::timeout(timeout, exchange).await {
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
    max_response: u64,
    shown: &str,
) -> Result<Response<Vec<u8>>, HttpError> {
    let io = |source| HttpError::Io {
        url: shown.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(url.authority.as_str())
        .await
        .map_err(io)?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: {}\r\n",
        url.path,
        url.authority,
        user_agent()
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
        .take(max_response)
        .read_to_end(&mut raw)
        .await
        .map_err(io)?;
    parse(&raw).map_err(|reason| HttpError::Bad {
        url: shown.to_string(),
        reason,
    })
}

/// The running program's file name, so a peer's log says who asked.
fn user_agent() -> &'static str {
    static AGENT: OnceLock<String> = OnceLock::new();
    AGENT.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .as_deref()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| env!("CARGO_PKG_NAME").to_string())
    })
}

/// Splits a complete HTTP/1.x response (the connection was closed after it) into status and
/// body. Handles `Content-Length`, chunked and close-delimited bodies.
fn parse(raw: &[u8]) -> Result<Response<Vec<u8>>, String> {
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
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        headers.push((name.to_string(), value.to_string()));
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
    Ok(Response {
        status,
        headers,
        body,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8]) -> Result<(u16, String), String> {
        parse(raw).map(|r| (r.status, String::from_utf8_lossy(&r.body).into_owned()))
    }

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:9000/report").expect("url");
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1:9000", "/report")
        );
        let authority = |s: &str| Url::parse(s).expect(s).authority;
        assert_eq!(authority("http://localhost"), "localhost:80");
        assert_eq!(authority("http://[::1]:7171"), "[::1]:7171");
        assert_eq!(authority("http://[::1]"), "[::1]:80");
        assert_eq!(
            Url::parse("http://h:1/api/")
                .expect("url")
                .join("/tasks")
                .path,
            "/api/tasks"
        );
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parsed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(r, Ok((200, "hi".to_string())));
        let r = parsed(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        assert_eq!(r, Ok((404, "abcde".to_string())));
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn parses_content_length_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nAdaXYZ";
        assert_eq!(parsed(raw), Ok((200, "Ada".to_string())));
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parsed(raw), Ok((404, String::new())));
    }

    #[test]
    fn parses_chunk_extensions_and_close_delimited_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nAda\r\n5;x=y\r\n Love\r\n0\r\n\r\n";
        assert_eq!(parsed(raw), Ok((200, "Ada Love".to_string())));
        let raw = b"HTTP/1.0 200 OK\r\n\r\nuntil close";
        assert_eq!(parsed(raw), Ok((200, "until close".to_string())));
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
            assert!(parse(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn bodies_are_bytes_until_asked_for_text() {
        let r = parse(b"HTTP/1.1 200 OK\r\n\r\n\xffok").expect("parses");
        assert_eq!(r.body, b"\xffok");
    }

    #[tokio::test]
    async fn round_trip_with_a_size_limit_and_the_program_as_user_agent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = Url::parse(&format!(
            "http://{}/x",
            listener.local_addr().expect("addr")
        ))
        .expect("url");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(conn.read_u8().await.expect("read"));
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n0123456789")
                .await
                .expect("write");
            String::from_utf8(head).expect("UTF-8 head")
        });
        let r = request_bytes("GET", &url, &[], None, Duration::from_secs(10), 23)
            .await
            .expect("answered");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"0123"[..]));
        let head = server.await.expect("server");
        assert!(head.starts_with("GET /x HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nUser-Agent: {}\r\n", user_agent())),
            "{head}"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_an_io_error_naming_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
        let err = request("GET", &url, &[], None, Duration::from_secs(5))
            .await
            .expect_err("nobody listens");
        assert!(matches!(err, HttpError::Io { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("GET http://127.0.0.1:{port}/: ")),
            "{err}"
        );
    }
}
