//! Simulated load on `/time`: a cap on requests in flight, and a random delay.
//!
//! The cap is checked *before* the delay, so an overloaded server says so at once (503 +
//! Retry-After) instead of making the client wait to be refused. The in-flight count is held by
//! an RAII guard: when a client disconnects mid-delay, hyper drops the handler future, the guard
//! drops with it, and the count goes back down. Nothing has to remember to decrement.
//!
//! The shed count is a Prometheus counter (an atomic), registered as-is for `/metrics`, so
//! `/monitor` and `/metrics` can never disagree.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rand_distr::{Distribution, Normal};

/// The longest simulated delay; keeps absurd flag values from overflowing a `Duration`.
const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The in-flight cap and its counters.
#[derive(Debug)]
pub struct Admission {
    /// 0 means no limit.
    limit: usize,
    in_flight: Arc<AtomicUsize>,
    shed: Counter,
}

/// Proof that a request was admitted; dropping it (however the request ends) releases its slot.
#[derive(Debug)]
pub struct InFlight {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    pub fn new(limit: usize) -> Self {
        Admission {
            limit,
            in_flight: Arc::new(AtomicUsize::new(0)),
            shed: Counter::default(),
        }
    }

    /// Takes a slot, or counts the request as shed when all slots are taken.
    pub fn try_admit(&self) -> Option<InFlight> {
        let limit = self.limit;
        // Check-and-increment in one step, so two racing requests cannot both take the last slot.
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (limit == 0 || n < limit).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Some(InFlight {
                in_flight: self.in_flight.clone(),
            })
        } else {
            self.shed.inc();
            None
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn shed(&self) -> u64 {
        self.shed.get()
    }

    /// The shed counter itself, to register for `/metrics`.
    pub fn shed_counter(&self) -> Counter {
        self.shed.clone()
    }
}

/// The simulated response time: normal with the given mean and deviation, never negative.
#[derive(Debug, Clone)]
pub struct Delay {
    /// `None` when both are 0: no delay, and no random numbers drawn.
    normal: Option<Normal<f64>>,
    avg_ms: u64,
}

impl Delay {
    pub fn new(avg_ms: u64, deviation_ms: u64) -> Self {
        // A finite deviation is Normal::new's only precondition, and a u64 as f64 is finite.
        let normal = (avg_ms > 0 || deviation_ms > 0)
            .then(|| Normal::new(avg_ms as f64, deviation_ms as f64).ok())
            .flatten();
        Delay { normal, avg_ms }
    }

    /// Draws one delay.
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match &self.normal {
            None => Duration::ZERO,
            Some(n) => clamp_ms(n.sample(rng)),
        }
    }

    /// What to put in `Retry-After` when shedding: about one mean response time, at least 1 s
    /// (the header counts whole seconds).
    pub fn retry_after_secs(&self) -> u64 {
        self.avg_ms.div_ceil(1000).max(1)
    }
}

/// Milliseconds drawn from the distribution → a delay in `0..=MAX_DELAY` (NaN counts as 0).
fn clamp_ms(ms: f64) -> Duration {
    if ms.is_nan() || ms <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(ms / 1000.0).map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn admits_up_to_the_limit_and_releases_on_drop() {
        let a = Admission::new(2);
        let first = a.try_admit().expect("slot 1");
        let second = a.try_admit().expect("slot 2");
        assert!(a.try_admit().is_none());
        assert_eq!((a.in_flight(), a.shed()), (2, 1));
        drop(first);
        let third = a.try_admit().expect("slot freed");
        drop(second);
        drop(third);
        assert_eq!((a.in_flight(), a.shed()), (0, 1));
    }

    #[test]
    fn zero_means_unlimited() {
        let a = Admission::new(0);
        let guards: Vec<_> = (0..1000)
            .map(|_| a.try_admit().expect("no limit"))
            .collect();
        assert_eq!(a.in_flight(), 1000);
        drop(guards);
        assert_eq!((a.in_flight(), a.shed()), (0, 0));
    }

    #[test]
    fn racing_threads_never_exceed_the_limit() {
        let a = Admission::new(3);
        let peak = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        if let Some(g) = a.try_admit() {
                            peak.fetch_max(a.in_flight(), Ordering::Relaxed);
                            drop(g);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn no_delay_by_default() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(Delay::new(0, 0).sample(&mut rng), Duration::ZERO);
        assert_eq!(Delay::new(0, 0).retry_after_secs(), 1);
    }

    #[test]
    fn delays_follow_the_mean_and_never_go_negative() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let d = Delay::new(100, 80);
        let samples: Vec<Duration> = (0..20_000).map(|_| d.sample(&mut rng)).collect();
        assert!(
            samples.contains(&Duration::ZERO),
            "clamping at 0 happens with dev 80 around 100"
        );
        let mean_ms = samples.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0 / 20_000.0;
        // Clamping negatives to 0 lifts the mean a little above 100 (about 104 for these values).
        assert!((100.0..110.0).contains(&mean_ms), "mean {mean_ms} ms");
    }

    #[test]
    fn zero_deviation_is_exact() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(
            Delay::new(250, 0).sample(&mut rng),
            Duration::from_millis(250)
        );
        assert_eq!(Delay::new(250, 0).retry_after_secs(), 1);
        assert_eq!(Delay::new(20_000, 1000).retry_after_secs(), 20);
    }

    #[test]
    fn clamping() {
        assert_eq!(clamp_ms(-5.0), Duration::ZERO);
        assert_eq!(clamp_ms(f64::NAN), Duration::ZERO);
        assert_eq!(clamp_ms(f64::INFINITY), MAX_DELAY);
        assert_eq!(clamp_ms(1e300), MAX_DELAY);
        assert_eq!(clamp_ms(1.5), Duration::from_micros(1500));
    }
}
