//! Paging the on-call: what the scheduler cannot fix by itself goes to a person.
//!
//! A [`Page`] is one event as JSON. The leader hands it to the [`Pager`], which runs
//! `--page-command` under `sh -c` with the event on its stdin and POSTs it to `--page-url`,
//! each in its own task with a deadline, so a hanging pager never holds up scheduling. A
//! command that fails or times out is logged at error level (with what it printed), never
//! retried in a loop: the event is also in the log and on `GET /events`.
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use servicekit::http_client::{Url, request};
use tokio::io::AsyncWriteExt;

/// How long a page command or POST may take before it is given up (the command is killed).
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// One event for the on-call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Page {
    /// What happened: `job_failed`, `node_cordoned`, `moves_frozen`, ...
    pub kind: String,
    /// The job or node it is about.
    pub subject: String,
    /// Why, in a sentence a person can act on.
    pub reason: String,
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// The replica that paged (the leader).
    pub by: String,
}

impl Page {
    pub fn new(kind: &str, subject: &str, reason: impl Into<String>, by: &str) -> Page {
        Page {
            kind: kind.to_string(),
            subject: subject.to_string(),
            reason: reason.into(),
            at_ms: now_ms(),
            by: by.to_string(),
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where pages go: a command, a URL, both, or (neither given) only the log.
#[derive(Debug, Clone, Default)]
pub struct Pager {
    command: Option<Arc<str>>,
    url: Option<Url>,
}

impl Pager {
    /// `url` must be `http://HOST:PORT/PATH`; an error names the flag.
    pub fn new(command: Option<String>, url: Option<&str>) -> Result<Pager, String> {
        let url = match url {
            Some(u) => Some(Url::parse(u).map_err(|e| format!("--page-url: {e}"))?),
            None => None,
        };
        Ok(Pager {
            command: command.filter(|c| !c.trim().is_empty()).map(Arc::from),
            url,
        })
    }

    /// Sends `page` everywhere configured, in the background.
    pub fn page(&self, page: Page) {
        tracing::error!(kind = %page.kind, subject = %page.subject, reason = %page.reason, "PAGE");
        let Ok(json) = serde_json::to_vec(&page) else {
            return;
        };
        if let Some(cmd) = self.command.clone() {
            let json = json.clone();
            let kind = page.kind.clone();
            tokio::spawn(async move {
                if let Err(e) = run_command(&cmd, &json).await {
                    tracing::error!(%kind, error = %e, "--page-command failed");
                }
            });
        }
        if let Some(url) = self.url.clone() {
            let kind = page.kind.clone();
            tokio::spawn(async move {
                let headers = [("content-type", "application/json")];
                match request("POST", &url, &headers, Some(&json), PAGE_TIMEOUT).await {
                    Ok(r) if (200..300).contains(&r.status) => {}
                    Ok(r) => {
                        tracing::error!(%kind, status = r.status, "--page-url refused the page")
                    }
                    Err(e) => tracing::error!(%kind, error = %e, "--page-url failed"),
                }
            });
        }
    }
}

/// Runs `sh -c cmd` with `stdin` as its input, within [`PAGE_TIMEOUT`].
pub async fn run_command(cmd: &str, stdin: &[u8]) -> Result<(), String> {
    run_command_with(cmd, stdin, &[]).await
}

/// [`run_command`] with `env` added to the command's environment.
pub async fn run_command_with(cmd: &str, stdin: &[u8], env: &[(&str, &str)]) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start sh -c {cmd:?}: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        // A command that does not read its input is fine: a broken pipe is not an error.
        let _ = input.write_all(stdin).await;
    }
    match tokio::time::timeout(PAGE_TIMEOUT, child.wait_with_output()).await {
        Err(_) => Err(format!(
            "{cmd:?} did not finish within {PAGE_TIMEOUT:?}; killed"
        )),
        Ok(Err(e)) => Err(format!("{cmd:?}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "{cmd:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_command_gets_the_event_on_stdin_and_failures_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("page.json");
        let page = Page::new("job_failed", "web", "crash loop on 3 nodes", "uv-1");
        let json = serde_json::to_vec(&page).unwrap();
        run_command(&format!("cat > {}", out.display()), &json)
            .await
            .unwrap();
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got["kind"], "job_failed");
        assert_eq!(got["subject"], "web");
        let e = run_command("echo nope >&2; exit 3", b"{}")
            .await
            .unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("nope"), "{e}");
        assert!(
            Pager::new(None, Some("ftp://x"))
                .unwrap_err()
                .contains("--page-url")
        );
    }
}
