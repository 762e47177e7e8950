//! Reading what a server under test logged.
use std::path::Path;

use crate::wait::{SOON, wait_for};

/// The API address a supervisor logged last (`API listening ... addr=HOST:PORT`), if any.
pub fn logged_api_addr(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find(|l| l.contains("API listening"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .map(str::to_string)
        })
}

/// Waits (up to [`SOON`]) until the file at `path`, which may not exist yet, contains `needle`,
/// and returns its text. Panics, showing what the file holds, if that does not happen.
pub fn wait_for_file_containing(path: &Path, needle: &str) -> String {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        wait_for(SOON, || read().contains(needle)),
        "{} never contained {needle:?}; it holds:\n{}",
        path.display(),
        read()
    );
    read()
}

/// The one access-log line (servicekit's format: `method=GET path=/time status=200
/// duration_ms=0.3 peer=127.0.0.1:40000`) for `method path` in the log text `log`. Panics
/// unless there is exactly one line for that path and it has the method, `status`, a duration
/// and a loopback peer.
pub fn one_access_line<'a>(log: &'a str, method: &str, path: &str, status: u16) -> &'a str {
    let path_field = format!("path={path}");
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.split_whitespace().any(|field| field == path_field))
        .collect();
    let [line] = lines[..] else {
        panic!(
            "expected one line with {path_field}, found {}:\n{log}",
            lines.len()
        );
    };
    for field in [
        &format!("method={method}"),
        &format!("status={status}"),
        "duration_ms=",
        "peer=127.0.0.1:",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-01-01T00:00:00Z  INFO timeserver listening addr=127.0.0.1:8080
2026-01-01T00:00:01Z  INFO access: request method=GET path=/time status=200 duration_ms=0.4 peer=127.0.0.1:5000
2026-01-01T00:00:02Z  INFO access: request method=GET path=/timex status=404 duration_ms=0.1 peer=127.0.0.1:5001
";

    #[test]
    fn finds_the_one_line_for_a_path() {
        let line = one_access_line(LOG, "GET", "/time", 200);
        assert!(line.ends_with("peer=127.0.0.1:5000"), "{line}");
        one_access_line(LOG, "GET", "/timex", 404);
    }

    #[test]
    #[should_panic(expected = "status=500")]
    fn a_wrong_status_fails() {
        one_access_line(LOG, "GET", "/time", 500);
    }

    #[test]
    #[should_panic(expected = "expected one line with path=/nope, found 0")]
    fn a_missing_line_fails() {
        one_access_line(LOG, "GET", "/nope", 404);
    }

    #[test]
    fn waits_for_a_file_that_appears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("late.log");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                std::fs::write(path, "one\ntwo\n").expect("write");
            })
        };
        assert_eq!(wait_for_file_containing(&path, "two"), "one\ntwo\n");
        writer.join().expect("writer");
    }
}
