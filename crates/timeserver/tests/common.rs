//! Starting the servers on free loopback ports and talking to them.
use std::time::Duration;

use testkit::{Response, ServerProc, Spawner, free_port, http_get};

/// Starts `timeserver` on a free port with `args`, waits until it listens.
pub fn timeserver(sp: &Spawner, args: &[&str]) -> ServerProc {
    let port = free_port();
    let mut cmd = sp.bin("timeserver");
    cmd.arg(format!("--port={port}")).args(args);
    ServerProc::start(cmd, &format!("127.0.0.1:{port}"))
}

/// Starts `authserver` on a free port with `args`, waits until it listens.
pub fn authserver(sp: &Spawner, args: &[&str]) -> ServerProc {
    let port = free_port();
    let mut cmd = sp.bin("authserver");
    cmd.arg(format!("--authport={port}")).args(args);
    ServerProc::start(cmd, &format!("127.0.0.1:{port}"))
}

/// The port part of a server's address.
pub fn port_of(s: &ServerProc) -> String {
    s.addr().rsplit(':').next().unwrap().to_string()
}

/// A port nobody listens on (an auth server that is down).
pub fn dead_port() -> String {
    free_port().to_string()
}

pub fn get(s: &ServerProc, path: &str) -> Response {
    http_get(s.addr(), path, &[])
        .unwrap_or_else(|e| panic!("GET {path}: {e}; stderr:\n{}", s.stderr()))
}

pub fn get_with_cookie(s: &ServerProc, path: &str, cookie: &str) -> Response {
    let header = format!("timeservice-session={cookie}");
    http_get(s.addr(), path, &[("Cookie", &header)]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub fn monitor(s: &ServerProc) -> serde_json::Value {
    let r = get(s, "/monitor");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    serde_json::from_str(&r.body).unwrap()
}

/// `/monitor`'s count of `route` answered with `status`.
pub fn count(m: &serde_json::Value, route: &str, status: u16) -> u64 {
    m["requests"][route][status.to_string()]
        .as_u64()
        .unwrap_or(0)
}

/// Generous bound for things that should happen "at once".
pub const SOON: Duration = Duration::from_secs(10);
