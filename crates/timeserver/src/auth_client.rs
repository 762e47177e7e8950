//! The auth server over plain HTTP (`servicekit::http_client`): one `GET` per connection,
//! bounded in time.
//!
//! Every call is wrapped in the `--authtimeout-ms` deadline, connect included, so a hung auth
//! server costs a page at most that long and the user is simply anonymous.
//!
//! Each call is counted for `/metrics` by what it was (`get`, `set`) and how it ended: `ok` (an
//! answer, "unknown cookie" included), `timeout`, `refused` (nobody listens: the auth server is
//! down or moving), or `error` (anything else: a reset, a bad answer, an unexpected status).
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use servicekit::http_client::{self, HttpError, Url};
use servicekit::serve::host_port;
use uuid::Uuid;

/// The labels of `timeserver_auth_calls_total`: a fixed set of 2 × 4.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: &'static str,
    pub outcome: &'static str,
}

/// Auth server calls by kind and outcome.
pub type CallCounts = Family<CallLabels, Counter>;

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

impl AuthError {
    /// The `outcome` label of a call that failed so.
    fn outcome(&self) -> &'static str {
        match self {
            AuthError::Timeout { .. } => "timeout",
            AuthError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                "refused"
            }
            AuthError::Io { .. } | AuthError::BadResponse { .. } | AuthError::Status { .. } => {
                "error"
            }
        }
    }
}

/// Talks to `http://HOST:PORT`.
#[derive(Debug, Clone)]
pub struct AuthClient {
    addr: String,
    timeout: Duration,
    calls: CallCounts,
}

impl AuthClient {
    /// A client that counts its calls in `calls`.
    pub fn new(host: &str, port: u16, timeout: Duration, calls: CallCounts) -> Self {
        AuthClient {
            addr: host_port(host, port),
            timeout,
            calls,
        }
    }

    /// The name stored for `cookie`, or `None` when the auth server does not know it.
    pub async fn lookup(&self, cookie: Uuid) -> Result<Option<String>, AuthError> {
        let result = self.lookup_uncounted(cookie).await;
        self.count("get", &result);
        result
    }

    /// Stores `cookie → name`; an empty name deletes the entry.
    pub async fn store(&self, cookie: Uuid, name: &str) -> Result<(), AuthError> {
        let result = self.store_uncounted(cookie, name).await;
        self.count("set", &result);
        result
    }

    fn count<T>(&self, call: &'static str, result: &Result<T, AuthError>) {
        let outcome = result.as_ref().map_or_else(AuthError::outcome, |_| "ok");
        self.calls
            .get_or_create(&CallLabels { call, outcome })
            .inc();
    }

    async fn lookup_uncounted(&self, cookie: Uuid) -> Result<Option<String>, AuthError> {
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

    async fn store_uncounted(&self, cookie: Uuid, name: &str) -> Result<(), AuthError> {
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

    /// `GET path_and_query` within the timeout: the status and the body, which must be UTF-8.
    async fn get(&self, path_and_query: &str) -> Result<(u16, String), AuthError> {
        let url = Url {
            authority: self.addr.clone(),
            path: path_and_query.to_string(),
        };
        let response =
            http_client::request_bytes("GET", &url, &[], None, self.timeout, MAX_RESPONSE)
                .await
                .map_err(|e| self.error(e))?;
        match String::from_utf8(response.body) {
            Ok(body) => Ok((response.status, body)),
            Err(_) => Err(AuthError::BadResponse {
                addr: self.addr.clone(),
                reason: "the body is not UTF-8".to_string(),
            }),
        }
    }

    /// The client's error, told in terms of the auth server.
    fn error(&self, e: HttpError) -> AuthError {
        let addr = self.addr.clone();
        match e {
            HttpError::Timeout { after, .. } => AuthError::Timeout { addr, after },
            HttpError::Io { source, .. } => AuthError::Io { addr, source },
            HttpError::Bad { reason, .. } => AuthError::BadResponse { addr, reason },
        }
    }
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
        let c = AuthClient::new(
            "127.0.0.1",
            port,
            Duration::from_secs(5),
            CallCounts::default(),
        );
        let err = c.lookup(Uuid::new_v4()).await.expect_err("nobody listens");
        assert!(matches!(err, AuthError::Io { .. }), "{err}");
        assert_eq!(counted(&c, "get", "refused"), 1);
        assert_eq!(counted(&c, "get", "ok"), 0);
    }

    fn counted(c: &AuthClient, call: &'static str, outcome: &'static str) -> u64 {
        c.calls
            .get(&CallLabels { call, outcome })
            .map_or(0, |n| n.get())
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
        let c = AuthClient::new(
            "127.0.0.1",
            port,
            Duration::from_millis(100),
            CallCounts::default(),
        );
        let started = std::time::Instant::now();
        let err = c.lookup(Uuid::new_v4()).await.expect_err("silence");
        assert!(matches!(err, AuthError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("100 ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(counted(&c, "get", "timeout"), 1);
        holder.abort();
    }

    #[tokio::test]
    async fn a_name_that_is_not_utf8_is_a_bad_response() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            // Read the whole request first: closing on unread data would reset the connection.
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(conn.read_u8().await.expect("read"));
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nA\xffa")
                .await
                .expect("write");
        });
        let c = AuthClient::new(
            "127.0.0.1",
            port,
            Duration::from_secs(5),
            CallCounts::default(),
        );
        let err = c.lookup(Uuid::new_v4()).await.expect_err("not UTF-8");
        assert!(matches!(err, AuthError::BadResponse { .. }), "{err}");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        assert_eq!(counted(&c, "get", "error"), 1);
        server.abort();
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(
            AuthClient::new("::1", 7070, Duration::ZERO, CallCounts::default()).addr,
            "[::1]:7070"
        );
        assert_eq!(
            AuthClient::new("localhost", 7070, Duration::ZERO, CallCounts::default()).addr,
            "localhost:7070"
        );
    }
}
