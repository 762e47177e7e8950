//! Polling waits with a deadline: tests wait for a condition, never for a fixed time.
use std::time::{Duration, Instant};

/// Generous bound for things that should happen "at once" (a loaded CI machine is slow).
pub const SOON: Duration = Duration::from_secs(10);

/// Polls `cond` every 10 ms until it holds (returns true) or `timeout` passes (returns false).
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_for_value(timeout, || cond().then_some(())).is_some()
}

/// Polls `f` every 10 ms until it returns `Some`, or `timeout` passes.
pub fn wait_for_value<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
