//! Logging in and out across timeserver and authserver, and what happens when the auth
//! server is down or slow.
use std::time::{Duration, Instant};

use testkit::{Spawner, http_get};

use crate::common::{authserver, dead_port, get_with_cookie, monitor, port_of, timeserver};

/// The session cookie set by a `/login` answer.
fn session_from(r: &testkit::Response) -> String {
    let set = r
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no cookie in {r:?}"));
    let value = set
        .strip_prefix("timeservice-session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_eq!(value.len(), 36, "a UUID: {set}");
    assert!(set.contains("HttpOnly") && set.contains("Path=/"), "{set}");
    value.to_string()
}

#[test]
fn login_greets_on_time_page_then_logout_forgets() {
    let sp = Spawner::new();
    let auth = authserver(&sp, &[]);
    // Default --authhost (localhost), as in the brief's task list.
    let ts = timeserver(&sp, &["--authport", &port_of(&auth)]);

    let r = ts.get("/login?name=Ada%20Lovelace");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/"));
    let cookie = session_from(&r);

    let stored = http_get(auth.addr(), &format!("/get?cookie={cookie}"), &[]).unwrap();
    assert_eq!((stored.status, stored.body.as_str()), (200, "Ada Lovelace"));

    let time = get_with_cookie(&ts, "/time", &cookie);
    assert!(
        time.body.contains(" UTC), Ada Lovelace.</p>"),
        "{}",
        time.body
    );
    let home = get_with_cookie(&ts, "/", &cookie);
    assert!(
        home.body.contains("Greetings, Ada Lovelace"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("What is your name"));

    let bye = get_with_cookie(&ts, "/logout", &cookie);
    assert_eq!(bye.status, 200);
    assert!(
        bye.body
            .contains(r#"<meta http-equiv="refresh" content="10; url=/">"#),
        "{}",
        bye.body
    );
    let cleared = bye.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("timeservice-session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    let gone = http_get(auth.addr(), &format!("/get?cookie={cookie}"), &[]).unwrap();
    assert_eq!(gone.status, 404);
    let time = get_with_cookie(&ts, "/time", &cookie);
    assert!(
        time.body.contains(" UTC).</p>"),
        "anonymous again: {}",
        time.body
    );
    assert!(
        get_with_cookie(&ts, "/", &cookie)
            .body
            .contains("What is your name, Earthling?")
    );
    assert_eq!(monitor(&ts)["auth_errors"], 0);
}

#[test]
fn names_are_escaped_in_pages() {
    let sp = Spawner::new();
    let auth = authserver(&sp, &[]);
    let ts = timeserver(
        &sp,
        &["--authhost=127.0.0.1", "--authport", &port_of(&auth)],
    );
    let cookie = session_from(&ts.get("/login?name=%3Cb%3EBob%3C%2Fb%3E%20%26%20Zo%C3%AB"));
    let page = get_with_cookie(&ts, "/", &cookie).body;
    assert!(
        page.contains("Greetings, &lt;b&gt;Bob&lt;/b&gt; &amp; Zoë"),
        "{page}"
    );
    assert!(!page.contains("<b>Bob"));
}

#[test]
fn auth_server_down_means_anonymous_pages() {
    let sp = Spawner::new();
    let ts = timeserver(&sp, &["--authhost=127.0.0.1", "--authport", &dead_port()]);
    let someone = "5b0d7f5e-8a46-4b8e-9d41-0f5a3c1e2d77";

    let time = get_with_cookie(&ts, "/time", someone);
    assert_eq!(time.status, 200);
    assert!(time.body.contains(" UTC).</p>"), "{}", time.body);
    let home = get_with_cookie(&ts, "/", someone);
    assert_eq!(home.status, 200);
    assert!(home.body.contains("What is your name, Earthling?"));
    let login = ts.get("/login?name=Ada");
    assert_eq!(login.status, 502);
    assert!(
        login.body.contains("auth server is unavailable"),
        "{}",
        login.body
    );
    assert_eq!(login.header("set-cookie"), None);
    let bye = get_with_cookie(&ts, "/logout", someone);
    assert_eq!(bye.status, 200, "logout still clears the browser's cookie");

    assert_eq!(monitor(&ts)["auth_errors"], 4);
}

#[test]
fn slow_auth_server_times_out_to_anonymous() {
    let sp = Spawner::new();
    // A listener that never accepts: connections complete in the kernel, nobody answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let ts = timeserver(
        &sp,
        &[
            "--authhost=127.0.0.1",
            "--authport",
            &port,
            "--authtimeout-ms=300",
        ],
    );

    let started = Instant::now();
    let time = get_with_cookie(&ts, "/time", "5b0d7f5e-8a46-4b8e-9d41-0f5a3c1e2d77");
    let took = started.elapsed();
    assert_eq!(time.status, 200);
    assert!(time.body.contains(" UTC).</p>"), "{}", time.body);
    assert!(
        took >= Duration::from_millis(250),
        "waited for the auth server: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "but not much longer than the timeout: {took:?}"
    );
    assert_eq!(monitor(&ts)["auth_errors"], 1);
    drop(silent);
}
