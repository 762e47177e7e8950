//! What the pages say.
use std::time::{SystemTime, UNIX_EPOCH};

use testkit::Spawner;

use crate::common::{count, dead_port, get_with_cookie, monitor, timeserver};

/// "3:04:05 PM"
fn is_twelve_hour(s: &str) -> bool {
    let Some((clock, ampm)) = s.split_once(' ') else {
        return false;
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let hour_ok = parts
        .first()
        .and_then(|h| h.parse::<u32>().ok())
        .is_some_and(|h| (1..=12).contains(&h))
        && !parts[0].starts_with('0');
    let two_digits = |p: &&str| p.len() == 2 && p.parse::<u32>().is_ok_and(|v| v < 61);
    parts.len() == 3
        && hour_ok
        && parts[1..].iter().all(two_digits)
        && (ampm == "AM" || ampm == "PM")
}

/// "15:04:05" → seconds since midnight.
fn seconds_of_day(s: &str) -> Option<i64> {
    let parts: Vec<i64> = s
        .split(':')
        .map(|p| (p.len() == 2).then(|| p.parse().ok()).flatten())
        .collect::<Option<_>>()?;
    match parts[..] {
        [h, m, sec] if h < 24 && m < 60 && sec < 61 => Some(h * 3600 + m * 60 + sec),
        _ => None,
    }
}

#[test]
fn time_page_shows_local_and_utc_time() {
    let sp = Spawner::new();
    let ts = timeserver(&sp, &["--authport", &dead_port()]);
    let r = ts.get("/time");
    let now_utc = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 86_400) as i64;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let prefix = "The time is now <span class=\"time\">";
    let start = r
        .body
        .find(prefix)
        .unwrap_or_else(|| panic!("no time sentence in {}", r.body))
        + prefix.len();
    let rest = &r.body[start..];
    let (local, rest) = rest.split_once("</span> (").unwrap();
    let (utc, rest) = rest.split_once(" UTC)").unwrap();
    assert!(is_twelve_hour(local), "local time {local:?}");
    let utc_secs = seconds_of_day(utc).unwrap_or_else(|| panic!("utc time {utc:?}"));
    let skew = (utc_secs - now_utc)
        .rem_euclid(86_400)
        .min((now_utc - utc_secs).rem_euclid(86_400));
    assert!(
        skew <= 5,
        "page says {utc} UTC, the test's clock says {now_utc} s into the day"
    );
    assert!(
        rest.starts_with(".</p>"),
        "anonymous: no name after the time: {rest:?}"
    );
}

#[test]
fn home_about_stylesheet_and_not_found() {
    let sp = Spawner::new();
    let ts = timeserver(&sp, &["--authport", &dead_port()]);
    for path in ["/", "/index.html"] {
        let r = ts.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.body.contains("What is your name, Earthling?"),
            "{path}: {}",
            r.body
        );
        assert!(r.body.contains(r#"<form action="/login""#), "{path}");
        for item in [">Home<", ">Time<", ">Logout<", ">About Us<"] {
            assert!(r.body.contains(item), "menu item {item} on {path}");
        }
    }
    let about = ts.get("/about");
    assert_eq!(about.status, 200);
    assert!(about.body.contains("<h1>About Us</h1>"));

    let css = ts.get("/css/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.body.contains(".time"));

    for path in ["/nope", "/css/other.css", "/time/extra", "/monitor/x"] {
        let r = ts.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.body, "These are not the URLs you're looking for.",
            "{path}"
        );
    }

    let m = monitor(&ts);
    assert_eq!(count(&m, "(unmatched)", 404), 3);
    assert_eq!(count(&m, "/css/{file}", 404), 1);
    assert_eq!(count(&m, "/", 200), 1);
    assert_eq!(count(&m, "/index.html", 200), 1);
    assert_eq!(m["in_flight"], 0);
    assert_eq!(m["auth_errors"], 0, "no cookie, so no auth call: {m}");
}

#[test]
fn empty_name_is_refused() {
    let sp = Spawner::new();
    let ts = timeserver(&sp, &["--authport", &dead_port()]);
    for path in ["/login?name=", "/login?name=%20%20", "/login"] {
        let r = ts.get(path);
        assert_eq!(r.status, 400, "{path}");
        assert!(
            r.body.contains("C'mon, I need a name."),
            "{path}: {}",
            r.body
        );
        assert_eq!(r.header("set-cookie"), None);
    }
}

#[test]
fn malformed_cookie_is_anonymous_without_asking_the_auth_server() {
    let sp = Spawner::new();
    let ts = timeserver(&sp, &["--authport", &dead_port()]);
    let r = get_with_cookie(&ts, "/", "not-a-uuid");
    assert!(r.body.contains("What is your name, Earthling?"));
    assert_eq!(monitor(&ts)["auth_errors"], 0);
}

#[test]
fn templates_folder_overrides_built_ins() {
    let sp = Spawner::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("time.html"),
        "<p id=\"custom\">UTC is {{utc}}{{greeting}}</p>\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("style.css"), "body { color: teal; }\n").unwrap();
    let ts = timeserver(
        &sp,
        &[
            "--authport",
            &dead_port(),
            &format!("--templates={}", dir.path().display()),
        ],
    );
    let page = ts.get("/time").body;
    assert!(page.contains("<p id=\"custom\">UTC is "), "{page}");
    assert!(
        page.contains(">About Us<"),
        "header and footer still built in"
    );
    assert_eq!(ts.get("/css/style.css").body, "body { color: teal; }\n");
    assert!(ts.get("/about").body.contains("<h1>About Us</h1>"));
}

#[test]
fn version_flag() {
    let sp = Spawner::new();
    for flag in ["-V", "--version"] {
        let out = sp.bin("timeserver").arg(flag).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.trim(),
            format!("timeserver {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
