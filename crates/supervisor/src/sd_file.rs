//! `--sd-file=PATH`: the `GET /sd` document kept in a file, for Prometheus's `file_sd_configs`.
//!
//! # Theory of operation
//! A thread of its own (with a one-thread runtime) subscribes to the task events, and after
//! each burst of them (debounced: [`DEBOUNCE`] after the first, everything queued meanwhile
//! taken at once) asks the loop for a snapshot through the control channel, like any API
//! request. It builds the document with [`crate::sd`] and writes it only when it differs from
//! what the file last received: most events (a task without a port starting, a yo-yo retry)
//! change nothing there. The write is atomic (temp file in the same folder, fsync, rename,
//! fsync of the folder), so a reader sees the old list or the new one, never half of one.
//!
//! The loop never waits for this thread: the snapshot is a copy, the encoding and the fsync
//! happen here. A failed write is logged (naming the file) and retried at the next change, and
//! every [`RETRY`] while it keeps failing; it never stops the supervisor. The thread ends when
//! the loop stops answering.
use crate::control::{Envelope, Reply, Request};
use crate::sd;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How long a burst of events is gathered before the list is read again.
pub const DEBOUNCE: Duration = Duration::from_millis(75);
/// How often a failing write is tried again without any change.
const RETRY: Duration = Duration::from_secs(5);
/// At most one warning per this long while writes keep failing.
const COMPLAIN_EVERY: Duration = Duration::from_secs(60);
/// Readable by a Prometheus running as another user.
const MODE: u32 = 0o644;

/// What the thread needs.
pub struct SdFile {
    pub path: PathBuf,
    pub instance: String,
    /// The API's address: the supervisor's own target (none without an API).
    pub api: Option<SocketAddr>,
    /// Cluster mode: this node's name, a label of every target.
    pub node: Option<String>,
}

/// Checks `--sd-file` before anything starts: its folder must exist, and it must not itself
/// be a folder. The message names the flag and what was expected.
pub fn check(path: &Path) -> Result<(), String> {
    let text = path.display().to_string();
    if text.is_empty() || text.ends_with('/') || path.is_dir() {
        return Err(format!(
            "--sd-file={text} is not a file path: expected a file such as run/sd.json, in an existing folder"
        ));
    }
    let dir = folder_of(path);
    if !dir.is_dir() {
        return Err(format!(
            "--sd-file={text}: the folder {} does not exist (create it first, e.g. mkdir -p {})",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl SdFile {
    /// Starts the writer thread; it writes the file once at start, then after every change.
    pub fn spawn(
        self,
        control: mpsc::Sender<Envelope>,
        events: broadcast::Receiver<Arc<crate::event_log::Stamped>>,
    ) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("sd-file".into())
            .spawn(move || rt.block_on(self.run(control, events)))?;
        Ok(())
    }

    async fn run(
        self,
        control: mpsc::Sender<Envelope>,
        mut events: broadcast::Receiver<Arc<crate::event_log::Stamped>>,
    ) {
        let mut written: Option<String> = None;
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut complained_at: Option<tokio::time::Instant> = None;
        loop {
            let Some(doc) = self.document(&control).await else {
                return;
            };
            if written.as_deref() != Some(doc.as_str()) {
                match servicekit::atomic_file::write_atomic(&self.path, doc.as_bytes(), MODE) {
                    Ok(()) => {
                        if failing_since.take().is_some() {
                            tracing::info!(path = %self.path.display(), "--sd-file written again");
                        }
                        written = Some(doc);
                    }
                    Err(e) => {
                        let now = tokio::time::Instant::now();
                        failing_since.get_or_insert(now);
                        if complained_at.is_none_or(|t| now.duration_since(t) >= COMPLAIN_EVERY) {
                            tracing::warn!(path = %self.path.display(), error = %e, "cannot write --sd-file; retrying at the next change");
                            complained_at = Some(now);
                        }
                    }
                }
            }
            // The next change (or, while failing, the retry timer).
            let retry = async {
                match failing_since {
                    Some(_) => tokio::time::sleep(RETRY).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = events.recv() => {
                    if matches!(ev, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    loop {
                        match events.try_recv() {
                            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(broadcast::error::TryRecvError::Closed) => return,
                        }
                    }
                }
                _ = retry => {}
            }
        }
    }

    /// The current document, or `None` once the loop no longer answers (it is exiting).
    async fn document(&self, control: &mpsc::Sender<Envelope>) -> Option<String> {
        let (tx, rx) = oneshot::channel();
        control
            .send(Envelope {
                request: Request::Snapshot,
                reply: tx,
            })
            .await
            .ok()?;
        match rx.await.ok()? {
            Reply::Snapshot(snap) => Some(sd::document(&sd::groups_on(
                &snap.views,
                &self.instance,
                self.api,
                self.node.as_deref(),
            ))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_needs_an_existing_folder_and_a_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(check(&dir.path().join("sd.json")), Ok(()));
        assert_eq!(check(Path::new("sd.json")), Ok(()), "the working folder");
        let missing = check(&dir.path().join("nope/sd.json")).expect_err("no folder");
        assert!(
            missing.contains("--sd-file=") && missing.contains("does not exist"),
            "{missing}"
        );
        let folder = check(dir.path()).expect_err("a folder");
        assert!(folder.contains("is not a file path"), "{folder}");
    }
}
