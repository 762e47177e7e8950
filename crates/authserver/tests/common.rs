//! Starting the auth server on a free loopback port and talking to it.
use std::path::Path;
use std::time::Duration;

use testkit::{Response, ServerProc, Spawner, free_port, http_get};

/// Starts `authserver` on a free port with `args`, waits until it listens.
pub fn authserver(sp: &Spawner, args: &[&str]) -> ServerProc {
    let port = free_port();
    let mut cmd = sp.bin("authserver");
    cmd.arg(format!("--authport={port}")).args(args);
    ServerProc::start(cmd, &format!("127.0.0.1:{port}"))
}

/// Starts `authserver` with `--dumpfile=DUMP --checkpoint-interval=EVERY`.
pub fn with_dump(sp: &Spawner, dump: &Path, every: &str) -> ServerProc {
    authserver(
        sp,
        &[
            &format!("--dumpfile={}", dump.display()),
            &format!("--checkpoint-interval={every}"),
        ],
    )
}

pub fn get(s: &ServerProc, path: &str) -> Response {
    http_get(s.addr(), path, &[])
        .unwrap_or_else(|e| panic!("GET {path}: {e}; stderr:\n{}", s.stderr()))
}

pub fn set(s: &ServerProc, cookie: &str, name: &str) {
    let r = get(s, &format!("/set?cookie={cookie}&name={name}"));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The name stored for `cookie`, `None` on 404.
pub fn lookup(s: &ServerProc, cookie: &str) -> Option<String> {
    let r = get(s, &format!("/get?cookie={cookie}"));
    match r.status {
        200 => Some(r.body),
        404 => None,
        other => panic!("/get answered {other}: {}", r.body),
    }
}

pub fn monitor(s: &ServerProc) -> serde_json::Value {
    let r = get(s, "/monitor");
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.body).unwrap()
}

/// The dump file as a JSON object, if it exists and parses.
pub fn read_dump(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub const A: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
pub const B: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
pub const C: &str = "16fd2706-8baf-433b-82eb-8c7fada847da";

/// Generous bound for things that should happen "at once".
pub const SOON: Duration = Duration::from_secs(10);
