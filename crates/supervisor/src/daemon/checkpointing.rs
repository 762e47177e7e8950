//! The dump: encoded on the loop (only when the core says something changed), written by the
//! writer thread; the final, clean one at exit with a bounded wait.
use super::Daemon;
use crate::checkpoint_io::{self, WriteResult};
use procio::procfs;
use std::time::{Duration, Instant, SystemTime};
use supervisor_core::checkpoint::VERSION;
use supervisor_core::{Checkpoint, TaskRecord};

/// How long the exit waits for the final dump (fsync on a sick disk can hang).
const FINAL_WRITE: Duration = Duration::from_secs(5);

impl Daemon {
    /// `/proc/PID/stat` start time of our live child `pid`, read once per process.
    fn start_ticks_of(&self, pid: u32) -> Option<u64> {
        let mut cache = self.start_ticks.borrow_mut();
        if let Some(t) = cache.get(&pid) {
            return Some(*t);
        }
        let t = procfs::stat(pid as i32).ok()?.start_ticks;
        cache.insert(pid, t);
        Some(t)
    }

    /// The checkpoint document around `tasks`, stamped now.
    fn checkpoint_doc<T>(&self, clean: bool, tasks: T) -> Checkpoint<T> {
        Checkpoint {
            version: VERSION,
            supervisor: self.identity.clone(),
            written_at_ms: checkpoint_io::unix_ms(SystemTime::now()),
            clean,
            tasks,
            uids: self.core.identities(),
            revision: self.core.revision(),
            next_generation: self.core.next_generation(),
        }
    }

    /// Encodes the checkpoint records of the live processes, unless the core reports no change
    /// since the last time: an idle supervisor of 10 000 tasks then only restamps the document.
    fn refresh_encoded_records(&mut self) -> serde_json::Result<()> {
        let changes = self.core.changes();
        if self
            .encoded_records
            .as_ref()
            .is_some_and(|(seen, _)| *seen == changes)
        {
            return Ok(());
        }
        let mut tasks = self.core.checkpoint_records();
        for t in &mut tasks {
            t.boot_id = Some(self.identity.boot_id.clone());
            if t.start_time.is_none() {
                t.start_time = self.start_ticks_of(t.pid);
            }
        }
        self.encoded_records = Some((changes, serde_json::value::to_raw_value(&tasks)?));
        Ok(())
    }

    pub(super) fn checkpoint(&mut self) {
        let encoded = self.refresh_encoded_records().and_then(|()| {
            let tasks = self.encoded_records.as_ref().map(|(_, raw)| &**raw);
            serde_json::to_vec(&self.checkpoint_doc(false, tasks))
        });
        let submitted = match (&self.writer, encoded) {
            (Some(w), Ok(mut bytes)) => {
                bytes.push(b'\n');
                w.submit(bytes)
            }
            (_, Err(e)) => {
                tracing::error!(error = %e, "cannot encode the checkpoint");
                false
            }
            (None, Ok(_)) => false,
        };
        if !submitted {
            self.core.checkpoint_written(Instant::now());
        }
    }

    pub(super) fn on_written(&mut self, r: WriteResult) {
        let now = Instant::now();
        self.metrics
            .checkpoint_duration
            .observe(r.took.as_secs_f64());
        match r.error {
            None => {
                self.last_checkpoint_ok = Some(now);
                if self.last_checkpoint_error.take().is_some() {
                    tracing::info!("checkpoint written again after earlier failures");
                }
                tracing::debug!(
                    took_ms = r.took.as_secs_f64() * 1e3,
                    bytes = r.bytes,
                    "checkpoint written"
                );
            }
            Some(e) => {
                self.metrics.checkpoint_errors.inc();
                let due = self.checkpoint_error_gate.is_none_or(|t| now >= t);
                if due {
                    tracing::error!(error = %e, "cannot write checkpoint; the previous dump stays in place, tasks keep running");
                    self.checkpoint_error_gate = Some(now + Duration::from_secs(30));
                }
                self.last_checkpoint_error = Some(e);
            }
        }
        self.core.checkpoint_written(now);
    }

    /// The clean dump (`clean: true`, no tasks), written from a thread of its own: a disk that
    /// hangs in fsync delays the exit by at most [`FINAL_WRITE`].
    pub(super) fn write_final_checkpoint(&self) {
        let Some(d) = &self.dump else { return };
        let doc = self.checkpoint_doc(true, Vec::<TaskRecord>::new());
        let mut bytes = match serde_json::to_vec(&doc) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the final checkpoint");
                return;
            }
        };
        bytes.push(b'\n');
        let path = d.path.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("final-checkpoint".into())
            .spawn(move || {
                let _ = tx.send(checkpoint_io::write_now(&path, &bytes));
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot write the final checkpoint");
            return;
        }
        match rx.recv_timeout(FINAL_WRITE) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the final checkpoint"),
            Err(_) => tracing::error!(
                after_secs = FINAL_WRITE.as_secs(),
                "the final checkpoint did not finish in time (a stuck disk?); exiting without it"
            ),
        }
    }
}
