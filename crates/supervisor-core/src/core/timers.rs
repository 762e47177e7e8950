//! The core's timers: at most one per owner (a task, or a stop job), so the queue never holds
//! more than two entries per task however often a timer is moved (a long stop polls its group
//! every few milliseconds; each poll moves the same entry instead of adding one).
use crate::core::io::GroupKey;
use crate::task::TaskId;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Who a timer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// A task's retry, or its yo-yo stability check.
    Task(TaskId),
    /// A stop job's next group check or deadline.
    Job(GroupKey),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_key: HashMap<TimerKey, Instant>,
    queue: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    /// Sets (or, with `None`, cancels) `key`'s timer; an earlier one of `key` is dropped.
    pub fn set(&mut self, key: TimerKey, at: Option<Instant>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.queue.remove(&(old, key));
        }
        if let Some(at) = at {
            self.by_key.insert(key, at);
            self.queue.insert((at, key));
        }
    }

    /// The timer of `key`, if one is set.
    #[cfg(test)]
    pub fn get(&self, key: TimerKey) -> Option<Instant> {
        self.by_key.get(&key).copied()
    }

    /// The earliest timer.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Takes the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let (at, key) = *self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.remove(&(at, key));
        self.by_key.remove(&key);
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_entry_per_key_however_often_it_moves() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let a = TimerKey::Task(TaskId(1));
        let b = TimerKey::Job(GroupKey::Instance(7));
        for i in 0..1000 {
            t.set(a, Some(t0 + Duration::from_millis(i)));
            t.set(b, Some(t0 + Duration::from_millis(2000 - i)));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(999)));
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), Some(a));
        assert_eq!(t.get(a), None);
        t.set(b, None);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next(), None);
    }
}
