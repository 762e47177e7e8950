//! Tunables, their bounds, and the one way the core adds a duration to an instant.
use crate::backoff::Backoff;
use std::time::{Duration, Instant};

/// The longest any duration setting may be. The shell refuses longer flags (exit 2); the core
/// also never adds a duration unchecked (see [`later`]), so even a bigger one cannot panic.
pub const MAX_SETTING: Duration = Duration::from_secs(24 * 3600);

/// The shortest periodic checkpoint interval; shorter ones are raised to it.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(10);

/// Tunables. Defaults follow DESIGN.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// A death sooner than this after a start is a "quick" death.
    pub min_uptime: Duration,
    /// Consecutive quick deaths that put a task in yo-yo mode (the first restart is immediate).
    pub yoyo_after: u32,
    /// Running this long leaves yo-yo mode.
    pub stable_after: Duration,
    /// Delays in yo-yo mode and after spawn failures.
    pub backoff: Backoff,
    /// TERM → KILL grace period.
    pub stop_timeout: Duration,
    /// After KILL, how long to wait for the group to be gone before giving up (and saying so).
    pub kill_timeout: Duration,
    /// How often to look again whether a group without a live leader is empty.
    pub group_poll: Duration,
    /// How long to wait before trying again when every port of the range is taken.
    pub port_retry: Duration,
    /// Rate-limited log lines come at most this often per task.
    pub log_every: Duration,
    /// Host-wide spawn rate cap: sustained spawns per second.
    pub spawn_rate: f64,
    /// Host-wide spawn rate cap: burst size.
    pub spawn_burst: f64,
    /// Periodic checkpoint; `None` when there is no dump file.
    pub checkpoint_interval: Option<Duration>,
    /// A change is checkpointed at most this long after it happened.
    pub checkpoint_coalesce: Duration,
    /// Grace period for strays the final sweep finds (they had their task's whole stop already).
    pub sweep_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_uptime: Duration::from_secs(1),
            yoyo_after: 2,
            stable_after: Duration::from_secs(60),
            backoff: Backoff::default(),
            stop_timeout: Duration::from_secs(10),
            kill_timeout: Duration::from_secs(5),
            group_poll: Duration::from_millis(20),
            port_retry: Duration::from_secs(1),
            log_every: Duration::from_secs(30),
            spawn_rate: 5_000.0,
            spawn_burst: 1_000.0,
            checkpoint_interval: None,
            checkpoint_coalesce: Duration::from_millis(100),
            sweep_grace: Duration::from_secs(2),
        }
    }
}

/// `now + d`, or, where that cannot be represented, a moment about a year away (nothing the
/// core waits for is meant to be further): never a panic.
pub fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR.min(d)))
        .unwrap_or(now)
}
