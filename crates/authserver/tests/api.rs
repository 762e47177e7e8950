//! `/get`, `/set`, `/monitor`.
use testkit::Spawner;

use crate::common::{A, B, authserver, lookup, monitor, set};

#[test]
fn set_get_and_delete() {
    let sp = Spawner::new();
    let auth = authserver(&sp, &[]);
    assert_eq!(lookup(&auth, A), None);
    set(&auth, A, "Ada%20Lovelace");
    set(&auth, B, "Zo%C3%AB+%26+co");
    assert_eq!(lookup(&auth, A).as_deref(), Some("Ada Lovelace"));
    assert_eq!(lookup(&auth, B).as_deref(), Some("Zoë & co"));
    let r = auth.get(&format!("/get?cookie={A}"));
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    set(&auth, A, ""); // an empty name deletes
    assert_eq!(lookup(&auth, A), None);
    assert_eq!(lookup(&auth, B).as_deref(), Some("Zoë & co"));
    // Upper-case UUIDs are the same cookie.
    assert_eq!(
        lookup(&auth, &B.to_uppercase()).as_deref(),
        Some("Zoë & co")
    );
}

#[test]
fn missing_or_malformed_parameters_are_400() {
    let sp = Spawner::new();
    let auth = authserver(&sp, &[]);
    let cases = [
        ("/get", "missing cookie"),
        ("/get?cookie=", "not a UUID"),
        ("/get?cookie=12345", "not a UUID"),
        ("/get?name=Ada", "missing cookie"),
        ("/set?name=Ada", "missing cookie"),
        ("/set?cookie=nope&name=Ada", "not a UUID"),
    ];
    for (path, why) in cases {
        let r = auth.get(path);
        assert_eq!(r.status, 400, "{path}");
        assert!(r.body.contains(why), "{path}: {}", r.body);
    }
    let r = auth.get(&format!("/set?cookie={A}"));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("missing name"), "{}", r.body);
    assert_eq!(lookup(&auth, A), None, "a refused /set stores nothing");
}

#[test]
fn monitor_counts_requests_and_entries() {
    let sp = Spawner::new();
    let auth = authserver(&sp, &[]);
    set(&auth, A, "Ada");
    assert_eq!(lookup(&auth, B), None);
    assert_eq!(auth.get("/get").status, 400);
    assert_eq!(auth.get("/elsewhere").status, 404);
    let m = monitor(&auth);
    assert_eq!(m["entries"], 1, "{m}");
    assert_eq!(m["requests"]["/set"]["200"], 1, "{m}");
    assert_eq!(m["requests"]["/get"]["404"], 1, "{m}");
    assert_eq!(m["requests"]["/get"]["400"], 1, "{m}");
    assert_eq!(m["requests"]["(unmatched)"]["404"], 1, "{m}");
    assert!(
        m["checkpoint"].is_null(),
        "--dumpfile=none, no checkpoints: {m}"
    );
}
