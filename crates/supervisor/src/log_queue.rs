//! A bounded queue of finished log lines between the threads that log and one writer thread.
//!
//! Pushing never waits for IO: the lock is held only to append (or to take the whole queue), and
//! a full queue refuses the line. The writer takes everything queued at once and reports how
//! many lines it is done with, so that a flush can wait, with a deadline, for what was queued
//! before it.
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

pub struct LineQueue {
    state: Mutex<State>,
    /// The writer waits here for lines (or a kick).
    wake: Condvar,
    /// Flushes wait here for the writer to finish a batch.
    progress: Condvar,
    max_lines: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines taken in, and lines the writer is done with (written or failed).
    accepted: u64,
    done: u64,
    /// Wake the writer although no line is queued.
    kicked: bool,
}

impl LineQueue {
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        LineQueue {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            max_lines,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `line`; false (and the line is dropped) when the queue is full.
    pub fn push(&self, line: Vec<u8>) -> bool {
        let mut s = self.lock();
        if s.lines.len() >= self.max_lines || s.bytes + line.len() > self.max_bytes {
            return false;
        }
        s.bytes += line.len();
        s.accepted += 1;
        s.lines.push_back(line);
        let first = s.lines.len() == 1;
        drop(s);
        if first {
            self.wake.notify_one();
        }
        true
    }

    /// Wakes the writer even if nothing is queued (it has something else to do).
    pub fn kick(&self) {
        self.lock().kicked = true;
        self.wake.notify_one();
    }

    /// For the writer: waits for lines (or a kick) and takes them all.
    pub fn take(&self) -> VecDeque<Vec<u8>> {
        let mut s = self.lock();
        while s.lines.is_empty() && !s.kicked {
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.kicked = false;
        s.bytes = 0;
        std::mem::take(&mut s.lines)
    }

    /// For the writer: `n` lines taken are written (or failed).
    pub fn done(&self, n: usize) {
        self.lock().done += n as u64;
        self.progress.notify_all();
    }

    /// Waits until every line queued before this call is done, or `deadline` passes (false).
    pub fn wait_drained(&self, deadline: Instant) -> bool {
        let mut s = self.lock();
        let target = s.accepted;
        while s.done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .progress
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Lines waiting now.
    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bounded_by_lines_and_by_bytes() {
        let q = LineQueue::new(3, 10);
        assert!(q.push(b"aaaa".to_vec()));
        assert!(q.push(b"bbbb".to_vec()));
        assert!(!q.push(b"ccc".to_vec()), "11 bytes > 10");
        assert!(q.push(b"cc".to_vec()));
        assert!(!q.push(b"".to_vec()), "3 lines at most");
        assert_eq!(q.take().len(), 3);
        assert!(q.push(b"dddddddddd".to_vec()), "taking frees the room");
    }

    #[test]
    fn a_flush_waits_for_what_was_queued_before_it_and_no_longer_than_its_deadline() {
        let q = std::sync::Arc::new(LineQueue::new(10, 100));
        q.push(b"x".to_vec());
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(
            !q.wait_drained(soon),
            "nobody writes: the deadline ends the wait"
        );
        let w = q.clone();
        let writer = std::thread::spawn(move || {
            let batch = w.take();
            w.done(batch.len());
        });
        assert!(q.wait_drained(Instant::now() + Duration::from_secs(10)));
        writer.join().expect("writer");
        assert!(q.is_empty());
    }
}
