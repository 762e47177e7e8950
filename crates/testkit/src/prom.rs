//! Reading a `/metrics` page: `promtool check metrics` on it, and the value of one sample.
use std::io::Write;
use std::process::Stdio;

use crate::proc::Spawner;

/// Runs `promtool check metrics` (Debian package `prometheus`; `make test-deps` installs it) on
/// `text` and panics with its complaints unless it passes, lint included.
pub fn assert_promtool_passes(sp: &Spawner, text: &str) {
    let mut promtool = sp
        .command("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus; `make test-deps` installs it)");
    promtool
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = promtool.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\non:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample written exactly `series` (name and labels as they appear, e.g.
/// `x_total{path="/time",status="200"}`), or `None` when the page has no such line.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_samples_by_their_exact_series() {
        let page = "# HELP a_total A.\n# TYPE a_total counter\na_total{p=\"/x\"} 3\na_total{p=\"/xy\"} 4\nb 1.5\n";
        assert_eq!(sample(page, "a_total{p=\"/x\"}"), Some(3.0));
        assert_eq!(sample(page, "a_total{p=\"/xy\"}"), Some(4.0));
        assert_eq!(sample(page, "b"), Some(1.5));
        assert_eq!(
            sample(page, "a_total"),
            None,
            "labels are part of the series"
        );
        assert_eq!(sample(page, "c"), None);
    }
}
