//! Restart delays: exponential, jittered, capped, from a seeded generator.
use std::time::Duration;

/// A small, seedable generator (SplitMix64). The core must stay deterministic under test, so it
/// never asks the operating system for randomness; the shell seeds it once at start.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform fraction in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `base × 2ⁿ`, capped at `cap`, then jittered down by up to `jitter` (a fraction, 0..1) so that
/// tasks that crashed together do not come back in lock step. The result never exceeds `cap`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(30),
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// The un-jittered delay for the `n`th consecutive failure (n = 0 → `base`).
    pub fn nominal(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay for the `n`th consecutive failure, with jitter in `[(1 - jitter) × d, d]`.
    pub fn delay(&self, n: u32, rng: &mut SplitMix64) -> Duration {
        let d = self.nominal(n);
        // NaN would make `mul_f64` panic; treat a nonsensical jitter as none.
        let j = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        d.mul_f64(1.0 - j * rng.next_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::default();
        let want = [
            100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000,
        ];
        for (n, ms) in want.iter().enumerate() {
            assert_eq!(b.nominal(n as u32), Duration::from_millis(*ms), "n={n}");
        }
        assert_eq!(b.nominal(u32::MAX), b.cap);
    }

    #[test]
    fn same_seed_same_delays() {
        let b = Backoff::default();
        let (mut r1, mut r2) = (SplitMix64::new(7), SplitMix64::new(7));
        let a: Vec<_> = (0..20).map(|n| b.delay(n, &mut r1)).collect();
        let c: Vec<_> = (0..20).map(|n| b.delay(n, &mut r2)).collect();
        assert_eq!(a, c);
    }

    proptest! {
        #[test]
        fn delays_stay_within_jitter_band_and_cap(n in 0u32..200, seed: u64, base_ms in 1u64..5000, cap_ms in 1u64..100_000) {
            let b = Backoff { base: Duration::from_millis(base_ms), cap: Duration::from_millis(cap_ms), jitter: 0.25 };
            let mut rng = SplitMix64::new(seed);
            let d = b.delay(n, &mut rng);
            prop_assert!(d <= b.cap);
            prop_assert!(d <= b.nominal(n));
            prop_assert!(d >= b.nominal(n).mul_f64(0.75) - Duration::from_nanos(1));
        }
    }
}
