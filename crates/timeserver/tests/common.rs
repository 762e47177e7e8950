//! Starting the servers on free loopback ports and talking to them.
use testkit::{Response, ServerProc, Spawner, free_port, http_get, start_on_free_port};

pub use testkit::SOON;

/// Starts `timeserver` on a free port with `args`, waits until it listens.
pub fn timeserver(sp: &Spawner, args: &[&str]) -> ServerProc {
    start_on_free_port(sp, "timeserver", "--port", args)
}

/// Starts `authserver` on a free port with `args`, waits until it listens. Unless `args` name
/// a `--dumpfile`, sessions stay in memory: the default file is relative to the working folder,
/// which parallel tests share.
pub fn authserver(sp: &Spawner, args: &[&str]) -> ServerProc {
    let mut all = args.to_vec();
    if !args.iter().any(|a| a.starts_with("--dumpfile")) {
        all.push("--dumpfile=none");
    }
    start_on_free_port(sp, "authserver", "--authport", &all)
}

/// The port part of a server's address.
pub fn port_of(s: &ServerProc) -> String {
    s.addr().rsplit(':').next().unwrap().to_string()
}

/// A port nobody listens on (an auth server that is down).
pub fn dead_port() -> String {
    free_port().to_string()
}

pub fn get_with_cookie(s: &ServerProc, path: &str, cookie: &str) -> Response {
    let header = format!("timeservice-session={cookie}");
    http_get(s.addr(), path, &[("Cookie", &header)]).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub fn monitor(s: &ServerProc) -> serde_json::Value {
    s.get_json("/monitor")
}

/// `/monitor`'s count of `route` answered with `status`.
pub fn count(m: &serde_json::Value, route: &str, status: u16) -> u64 {
    m["requests"][route][status.to_string()]
        .as_u64()
        .unwrap_or(0)
}
