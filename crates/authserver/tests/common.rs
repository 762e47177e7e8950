//! Starting the auth server on a free loopback port and talking to it.
use std::path::Path;

use testkit::{ServerProc, Spawner, start_on_free_port};

pub use testkit::SOON;

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

pub fn set(s: &ServerProc, cookie: &str, name: &str) {
    let r = s.get(&format!("/set?cookie={cookie}&name={name}"));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The name stored for `cookie`, `None` on 404.
pub fn lookup(s: &ServerProc, cookie: &str) -> Option<String> {
    let r = s.get(&format!("/get?cookie={cookie}"));
    match r.status {
        200 => Some(r.body),
        404 => None,
        other => panic!("/get answered {other}: {}", r.body),
    }
}

pub fn monitor(s: &ServerProc) -> serde_json::Value {
    s.get_json("/monitor")
}

/// The dump file as a JSON object, if it exists and parses.
pub fn read_dump(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub const A: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
pub const B: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
pub const C: &str = "16fd2706-8baf-433b-82eb-8c7fada847da";
