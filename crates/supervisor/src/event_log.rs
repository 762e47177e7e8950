//! The event stream with ids: every task event gets an id `RUN.SEQ` (`RUN` tells this run of
//! the supervisor from an earlier one, `SEQ` counts from 1) and the last [`KEEP`] events are
//! kept, so a client of `GET /events` that reconnects with `Last-Event-ID` gets what it missed,
//! or, when that is no longer kept (or the id is of another run), a `resync` marker telling it
//! to read the whole state again (`GET /state`).
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events kept for reconnecting clients.
pub const KEEP: usize = 1024;

/// One event as sent: its sequence number and its JSON.
#[derive(Debug)]
pub struct Stamped {
    pub seq: u64,
    pub json: Arc<str>,
}

/// The shared log: the loop appends, the API replays. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    run: Arc<str>,
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<Arc<Stamped>>,
}

struct Inner {
    next: u64,
    kept: VecDeque<Arc<Stamped>>,
}

/// What a reconnecting client gets before the live events.
pub struct Replay {
    /// True when what it missed is not kept any more: it must read the whole state.
    pub resync: bool,
    pub missed: Vec<Arc<Stamped>>,
    /// Live events at or below this were replayed already.
    pub up_to: u64,
}

impl EventLog {
    pub fn new(run: String, tx: broadcast::Sender<Arc<Stamped>>) -> EventLog {
        EventLog {
            run: run.into(),
            inner: Arc::new(Mutex::new(Inner {
                next: 1,
                kept: VecDeque::with_capacity(KEEP),
            })),
            tx,
        }
    }

    pub fn sender(&self) -> &broadcast::Sender<Arc<Stamped>> {
        &self.tx
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stamped>> {
        self.tx.subscribe()
    }

    /// The SSE id of event `seq`.
    pub fn id(&self, seq: u64) -> String {
        format!("{}.{seq}", self.run)
    }

    /// Appends an event (the JSON gets its `id`) and broadcasts it.
    pub fn push(&self, mut json: serde_json::Value) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = inner.next;
        inner.next += 1;
        if let Some(m) = json.as_object_mut() {
            m.insert("id".into(), serde_json::Value::String(self.id(seq)));
        }
        let e = Arc::new(Stamped {
            seq,
            json: json.to_string().into(),
        });
        if inner.kept.len() >= KEEP {
            inner.kept.pop_front();
        }
        inner.kept.push_back(e.clone());
        // Sent under the lock, so that a replay and the live stream never overlap or miss.
        let _ = self.tx.send(e);
    }

    /// What a client that last saw `last_id` missed. Subscribe *before* calling this.
    pub fn replay(&self, last_id: Option<&str>) -> Replay {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newest = inner.next - 1;
        let Some(last) = last_id else {
            return Replay {
                resync: false,
                missed: Vec::new(),
                up_to: newest,
            };
        };
        let seq = last
            .strip_prefix(&*self.run)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|s| s.parse::<u64>().ok());
        let oldest = inner.kept.front().map_or(inner.next, |e| e.seq);
        match seq {
            Some(s) if s <= newest && s + 1 >= oldest => Replay {
                resync: false,
                missed: inner.kept.iter().filter(|e| e.seq > s).cloned().collect(),
                up_to: newest,
            },
            _ => Replay {
                resync: true,
                missed: Vec::new(),
                up_to: newest,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_what_is_kept_and_asks_for_a_resync_otherwise() {
        let (tx, _) = broadcast::channel(16);
        let log = EventLog::new("r1".into(), tx);
        for i in 0..(KEEP + 10) {
            log.push(serde_json::json!({"n": i}));
        }
        let newest = (KEEP + 10) as u64;
        let r = log.replay(Some(&log.id(newest - 3)));
        assert!(!r.resync);
        assert_eq!(
            r.missed.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [newest - 2, newest - 1, newest]
        );
        assert!(
            r.missed[0]
                .json
                .contains(&format!("\"id\":\"r1.{}\"", newest - 2))
        );
        assert!(log.replay(Some("r1.3")).resync, "no longer kept");
        assert!(log.replay(Some("r0.5")).resync, "another run");
        assert!(log.replay(Some("garbage")).resync);
        let r = log.replay(None);
        assert!(!r.resync && r.missed.is_empty() && r.up_to == newest);
    }
}
