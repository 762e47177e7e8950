//! What changes in the headers on the way through.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, not the message: they are
//! removed both ways, with every header the `Connection` header names. `Expect` is answered by
//! the proxy's own server (a `100 Continue` when the body is read), so it does not go on.
//! Requests get `X-Forwarded-For` (the client's address appended to any list already there),
//! `X-Forwarded-Proto` and `X-Forwarded-Host`. `Host`, cookies and `Location` pass untouched:
//! a time server's relative redirect and its `Path=/` cookie then work through the proxy.
use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes the hop-by-hop headers, those named in `Connection` first.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if let Some(listed) = h.get(header::CONNECTION) {
        let named: Vec<HeaderName> = listed
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::PROXY_AUTHENTICATE);
}

/// The request headers as a backend should see them.
pub fn to_backend(h: &mut HeaderMap, client: IpAddr) {
    strip_hop_by_hop(h);
    h.remove(header::EXPECT);
    let client = client.to_string();
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {client}"),
        _ => client,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert(X_FORWARDED_HOST.clone(), host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_the_ones_connection_names_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "secret"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("cookie", "timeservice-session=abc"),
            ("content-length", "12"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["cookie", "content-length"]);
    }

    #[test]
    fn forwarded_headers() {
        let mut h = map(&[("host", "127.0.0.1:8080"), ("expect", "100-continue")]);
        to_backend(&mut h, "127.0.0.9".parse().expect("ip"));
        assert_eq!(h["x-forwarded-for"], "127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "127.0.0.1:8080");
        assert_eq!(h["host"], "127.0.0.1:8080");
        assert!(h.get("expect").is_none());
        let mut h = map(&[("x-forwarded-for", "127.0.0.5")]);
        to_backend(&mut h, "127.0.0.1".parse().expect("ip"));
        assert_eq!(h["x-forwarded-for"], "127.0.0.5, 127.0.0.1");
        assert!(h.get("x-forwarded-host").is_none());
    }
}
