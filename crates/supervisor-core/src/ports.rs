//! `--port-range=FROM-TO` and round-robin port assignment.
//!
//! Every start or restart of a task that uses `{{port}}` takes the *next* port of the range, as
//! the brief asks, so a restarted server does not collide with a socket its predecessor left
//! lingering. Ports held by live tasks are skipped; ports that a bind probe in the shell found
//! busy are skipped until a full turn of the range finds nothing free.
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// An inclusive range of TCP ports, `first..=last`, both in 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// Why a `--port-range` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    #[error("--port-range {0:?} is malformed: expected FROM-TO, e.g. 8000-8099")]
    Malformed(String),
    #[error("--port-range {value:?}: port {port} is out of range: ports are 1 to 65535")]
    OutOfRange { value: String, port: String },
    #[error("--port-range {value:?} is reversed: {first} is greater than {last}")]
    Reversed {
        value: String,
        first: u16,
        last: u16,
    },
}

impl PortRange {
    /// How many ports the range holds. A parsed range holds at least one; a reversed range
    /// built by hand (the fields are public) holds none rather than overflowing.
    pub fn len(&self) -> usize {
        if self.first > self.last {
            0
        } else {
            usize::from(self.last - self.first) + 1
        }
    }

    /// True only for a reversed range built by hand: parsing refuses those.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let malformed = || PortRangeError::Malformed(value.to_string());
        let (a, b) = value.trim().split_once('-').ok_or_else(malformed)?;
        let parse = |s: &str| -> Result<u16, PortRangeError> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(malformed());
            }
            match s.parse::<u32>() {
                Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
                _ => Err(PortRangeError::OutOfRange {
                    value: value.to_string(),
                    port: s.to_string(),
                }),
            }
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if first > last {
            return Err(PortRangeError::Reversed {
                value: value.to_string(),
                first,
                last,
            });
        }
        Ok(PortRange { first, last })
    }
}

/// Round-robin allocation over a [`PortRange`].
#[derive(Debug, Clone)]
pub struct PortAllocator {
    range: PortRange,
    /// Offset (from `range.first`) of the next port to consider.
    cursor: usize,
    held: HashSet<u16>,
    /// Ports a probe found busy; forgotten after a full turn that found nothing free.
    busy: HashSet<u16>,
}

impl PortAllocator {
    pub fn new(range: PortRange) -> Self {
        PortAllocator {
            range,
            cursor: 0,
            held: HashSet::new(),
            busy: HashSet::new(),
        }
    }

    pub fn range(&self) -> PortRange {
        self.range
    }

    /// Takes the next port after the previous one handed out that is neither held by a live task
    /// nor known busy, and holds it. `None` when every port is held or busy: the caller waits and
    /// asks again (busy marks are cleared after each full, fruitless turn of the range, so a port
    /// that became free is found again).
    pub fn take(&mut self) -> Option<u16> {
        let n = self.range.len();
        if n == 0 {
            return None;
        }
        for step in 0..n {
            let off = (self.cursor + step) % n;
            let port = self.range.first + off as u16;
            if self.held.contains(&port) || self.busy.contains(&port) {
                continue;
            }
            self.cursor = (off + 1) % n;
            self.held.insert(port);
            return Some(port);
        }
        // A full, fruitless turn: report `None` now, and forget the busy marks so that the next
        // call probes those ports again.
        self.busy.clear();
        None
    }

    /// Gives a port back (its task exited or the spawn failed).
    /// Takes `port` itself when it is in the range, not held and not known busy (a sticky
    /// task's last port); the round robin's cursor does not move.
    pub fn take_exact(&mut self, port: u16) -> bool {
        if !self.range.contains(port) || self.held.contains(&port) || self.busy.contains(&port) {
            return false;
        }
        self.held.insert(port);
        true
    }

    pub fn release(&mut self, port: u16) {
        self.held.remove(&port);
    }

    /// Records that a bind probe found `port` in use by someone else, and releases it.
    pub fn mark_busy(&mut self, port: u16) {
        self.held.remove(&port);
        if self.range.contains(port) {
            self.busy.insert(port);
        }
    }

    /// Holds a specific port (used when adopting a known state in tests and recovery).
    pub fn hold(&mut self, port: u16) {
        self.held.insert(port);
    }

    pub fn is_held(&self, port: u16) -> bool {
        self.held.contains(&port)
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(
            "8000-8099".parse(),
            Ok(PortRange {
                first: 8000,
                last: 8099
            })
        );
        assert_eq!("8000-8000".parse::<PortRange>().map(|r| r.len()), Ok(1));
        let bad = [
            ("8000", "malformed"),
            ("a-b", "malformed"),
            ("-8000", "malformed"),
            ("8000-", "malformed"),
            ("80 00-9000", "malformed"),
            ("+1-5", "malformed"),
            ("0-10", "out of range"),
            ("1-70000", "out of range"),
            ("9000-8000", "reversed"),
        ];
        for (v, want) in bad {
            let err = v.parse::<PortRange>().expect_err(v).to_string();
            assert!(err.contains(want), "{v}: {err}");
            assert!(err.contains(v.trim()), "{v}: error names the value: {err}");
        }
    }

    #[test]
    fn round_robin_moves_on_at_every_take() {
        let mut a = PortAllocator::new(PortRange {
            first: 10,
            last: 13,
        });
        assert_eq!(a.take(), Some(10));
        a.release(10);
        assert_eq!(
            a.take(),
            Some(11),
            "a restart gets the next port, not the same one"
        );
        assert_eq!(a.take(), Some(12));
        assert_eq!(a.take(), Some(13));
        assert_eq!(a.take(), Some(10), "wraps around, skipping held 11, 12, 13");
        assert_eq!(a.take(), None, "all held");
        a.release(12);
        assert_eq!(a.take(), Some(12));
    }

    #[test]
    fn busy_ports_are_skipped_then_retried_after_a_fruitless_turn() {
        let mut a = PortAllocator::new(PortRange { first: 1, last: 3 });
        let p = a.take().unwrap();
        a.mark_busy(p);
        let q = a.take().unwrap();
        assert_ne!(p, q);
        a.mark_busy(q);
        let r = a.take().unwrap();
        a.mark_busy(r);
        assert_eq!(a.take(), None, "every port busy");
        assert!(
            a.take().is_some(),
            "busy marks forgotten after the fruitless turn"
        );
    }

    proptest! {
        /// Whatever the sequence of takes, releases and busy marks, a port held by a live task
        /// is never handed out again until released.
        #[test]
        fn never_hands_out_a_held_port(ops in prop::collection::vec(0u8..3, 1..300), size in 1u16..20) {
            let mut a = PortAllocator::new(PortRange { first: 5000, last: 5000 + size - 1 });
            let mut live: Vec<u16> = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    0 => if let Some(p) = a.take() {
                        prop_assert!(!live.contains(&p), "port {} handed out twice", p);
                        prop_assert!((5000..5000 + size).contains(&p));
                        live.push(p);
                    } else {
                        prop_assert!(!live.is_empty() || size > 0);
                    },
                    1 => if !live.is_empty() { let p = live.remove(i % live.len()); a.release(p); },
                    _ => if !live.is_empty() { let p = live.remove(i % live.len()); a.mark_busy(p); },
                }
                prop_assert_eq!(a.held_count(), live.len());
            }
        }

        /// With nothing busy, a free port is always found while fewer than `len` are held.
        #[test]
        fn finds_a_port_while_any_is_free(size in 1u16..50, hold in 0usize..50) {
            let mut a = PortAllocator::new(PortRange { first: 100, last: 100 + size - 1 });
            let hold = hold.min(usize::from(size));
            for _ in 0..hold { prop_assert!(a.take().is_some()); }
            prop_assert_eq!(a.take().is_some(), hold < usize::from(size));
        }
    }
}
