//! Writing the dump file: on an interval when something changed, and once more at shutdown.
//!
//! Dumps are serialised by an async lock, and each takes its snapshot *inside* that lock, so a
//! slow periodic dump can never land after (and undo) the newer final one. The file write and
//! its fsyncs run on the blocking pool so request handling never waits on the disk.
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use servicekit::atomic_file::write_atomic;

use crate::store::Store;

/// Sessions are secrets: owner-only.
const DUMP_MODE: u32 = 0o600;

/// Owns the dump file.
#[derive(Debug)]
pub struct Checkpointer {
    path: PathBuf,
    store: Arc<Mutex<Store>>,
    /// The store generation last written (or loaded); held across a whole dump.
    written_generation: tokio::sync::Mutex<u64>,
    counts: DumpCounts,
    last_error: Mutex<Option<String>>,
}

/// Dumps written and failed: Prometheus counters (atomics), shared with `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct DumpCounts {
    pub written: Counter,
    pub failed: Counter,
}

/// Checkpoint counters for `/monitor`.
#[derive(Debug, Serialize)]
pub struct CheckpointStats {
    pub dumpfile: PathBuf,
    pub written: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

impl Checkpointer {
    /// `store` was just loaded from `path` (or `path` did not exist): its state counts as
    /// written, so an idle server does not rewrite an unchanged file. Dumps are counted in
    /// `counts`.
    pub fn new(path: PathBuf, store: Arc<Mutex<Store>>, counts: DumpCounts) -> Checkpointer {
        let generation = lock(&store).generation();
        Checkpointer {
            path,
            store,
            written_generation: tokio::sync::Mutex::new(generation),
            counts,
            last_error: Mutex::new(None),
        }
    }

    /// Writes the dump if the store changed since the last write. Returns whether it wrote.
    pub async fn dump_if_changed(&self) -> std::io::Result<bool> {
        let mut written_generation = self.written_generation.lock().await;
        let (generation, bytes, entries) = {
            let store = lock(&self.store);
            if store.generation() == *written_generation {
                return Ok(false);
            }
            (store.generation(), store.to_json(), store.len())
        };
        let path = self.path.clone();
        let result = tokio::task::spawn_blocking(move || write_atomic(&path, &bytes, DUMP_MODE))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("dump task failed: {e}"))));
        match result {
            Ok(()) => {
                *written_generation = generation;
                self.counts.written.inc();
                tracing::info!(path = %self.path.display(), entries, "dump written");
                Ok(true)
            }
            Err(e) => {
                self.counts.failed.inc();
                *self
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Dumps every `every` until `stop` fires; failures are logged and retried next time (the
    /// in-memory state is intact, only its copy on disk is stale).
    ///
    /// `stop` is only looked at between dumps, never during one: aborting a dump half-way would
    /// leave its blocking write running, free to land *after* the final dump with older data.
    pub async fn run_periodically(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = &mut stop => return,
            }
            if let Err(e) = self.dump_if_changed().await {
                tracing::error!(error = %e, "checkpoint failed; will retry at the next interval");
            }
        }
    }

    pub fn stats(&self) -> CheckpointStats {
        CheckpointStats {
            dumpfile: self.path.clone(),
            written: self.counts.written.get(),
            failed: self.counts.failed.get(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// The store's lock. Each update is a single map operation, so a panic while holding it cannot
/// leave the map half-changed: a poisoned lock is safe to keep using.
pub fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use uuid::Uuid;

    #[tokio::test]
    async fn writes_only_when_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        let store = Arc::new(Mutex::new(Store::default()));
        let cp = Checkpointer::new(path.clone(), store.clone(), DumpCounts::default());
        assert!(!cp.dump_if_changed().await.expect("nothing to do"));
        assert!(!path.exists());

        let id = Uuid::new_v4();
        lock(&store).set(id, "Ada");
        assert!(cp.dump_if_changed().await.expect("dump"));
        let on_disk = Store::load(&path).expect("load");
        assert_eq!(on_disk.get(&id), Some("Ada"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!cp.dump_if_changed().await.expect("unchanged"));
        assert_eq!(cp.stats().written, 1);
    }

    #[tokio::test]
    async fn failures_are_counted_and_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing-folder").join("auth.json");
        let store = Arc::new(Mutex::new(Store::default()));
        let cp = Checkpointer::new(path.clone(), store.clone(), DumpCounts::default());
        lock(&store).set(Uuid::new_v4(), "Ada");
        let err = cp.dump_if_changed().await.expect_err("no folder");
        assert!(err.to_string().contains("missing-folder"), "{err}");
        let stats = cp.stats();
        assert_eq!((stats.written, stats.failed), (0, 1));
        assert!(
            stats
                .last_error
                .is_some_and(|e| e.contains("missing-folder"))
        );

        std::fs::create_dir(dir.path().join("missing-folder")).expect("mkdir");
        assert!(
            cp.dump_if_changed().await.expect("retry works"),
            "still dirty after a failure"
        );
    }
}
